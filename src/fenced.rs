//! Writes to ZooKeeper that only apply while we hold the lock.

use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::held::Held;
use crate::state::LockState;

/// A multi-op write to ZooKeeper that the server applies only if our lock node still exists:
/// the operations and a check of our node commit together, or not at all.
///
/// Made by [`MutexGuard::fenced`](crate::MutexGuard::fenced).
///
/// # Examples
///
/// ```no_run
/// # async fn example(guard: zk_lock::MutexGuard) -> zk_lock::Result<()> {
/// let mut write = guard.fenced();
/// write.set_data("/config/leader", b"worker-7", None)?;
/// write.commit().await?; // Err(Error::LockLost) if our lock node is gone
/// # Ok(()) }
/// ```
pub struct FencedWrite<'a> {
    writer: zk::CheckWriter<'a>,
    held: &'a Held,
    /// The path of each operation, to name it in an error.
    paths: Vec<String>,
}

impl std::fmt::Debug for FencedWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedWrite").field("lock_node", &self.held.node()).finish_non_exhaustive()
    }
}

impl<'a> FencedWrite<'a> {
    /// Lock nodes are the lock's own: writing or deleting them by hand would break the queue
    /// (a data change of a holder's node reads as its handoff to the next contender).
    fn check_target(&self, path: &str) -> Result<()> {
        crate::path::check_node_path(path)?;
        let dir = self.held.lock.as_str();
        if path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/' {
            return Err(Error::InvalidPath { path: path.to_owned(), reason: "lock nodes are managed by the lock" });
        }
        Ok(())
    }

    pub(crate) fn new(held: &'a Held) -> FencedWrite<'a> {
        let writer = held.client().new_check_writer(held.node(), None).expect("lock node path was valid when created");
        FencedWrite { writer, held, paths: Vec::new() }
    }

    /// Adds a `setData` of `path`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not a valid absolute path or is a node in the lock's
    /// directory (lock nodes are the lock's own).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::MutexGuard) -> zk_lock::Result<()> {
    /// let mut write = guard.fenced();
    /// write.set_data("/app/state", b"v2", Some(1))?;
    /// write.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn set_data(&mut self, path: &str, data: &[u8], expected_version: Option<i32>) -> Result<()> {
        self.check_target(path)?;
        self.writer.add_set_data(path, data, expected_version).map_err(|e| Error::from_zk(e, path))?;
        self.paths.push(path.to_owned());
        Ok(())
    }

    /// Adds a `create` of `path`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not a valid absolute path (a trailing `/`, for a
    /// sequential create, is fine) or is in the lock's directory, [`Error::ZooKeeper`] if
    /// `options` are not valid for it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::MutexGuard) -> zk_lock::Result<()> {
    /// use zk_lock::zk::{Acls, CreateMode};
    /// let mut write = guard.fenced();
    /// write.create("/app/job-17", b"done", &CreateMode::Persistent.with_acls(Acls::anyone_all()))?;
    /// write.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn create(&mut self, path: &str, data: &[u8], options: &zk::CreateOptions<'_>) -> Result<()> {
        // A sequential create may name its parent with a trailing '/' (the server appends the
        // sequence): then the parent is what must be valid, and must not be the lock's own.
        match path.strip_suffix('/').filter(|parent| !parent.is_empty()) {
            Some(parent) => {
                self.check_target(parent)?;
                if parent == self.held.lock.as_str() {
                    return Err(Error::InvalidPath {
                        path: path.to_owned(),
                        reason: "lock nodes are managed by the lock",
                    });
                }
            }
            None => self.check_target(path)?,
        }
        self.writer.add_create(path, data, options).map_err(|e| Error::from_zk(e, path))?;
        self.paths.push(path.to_owned());
        Ok(())
    }

    /// Adds a `delete` of `path`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not a valid absolute path or is a node in the lock's
    /// directory.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::MutexGuard) -> zk_lock::Result<()> {
    /// let mut write = guard.fenced();
    /// write.delete("/app/job-17", None)?;
    /// write.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn delete(&mut self, path: &str, expected_version: Option<i32>) -> Result<()> {
        self.check_target(path)?;
        self.writer.add_delete(path, expected_version).map_err(|e| Error::from_zk(e, path))?;
        self.paths.push(path.to_owned());
        Ok(())
    }

    /// Adds a check that `path` has `version`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not a valid absolute path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::MutexGuard) -> zk_lock::Result<()> {
    /// let mut write = guard.fenced();
    /// write.check_version("/app/schema", 3)?;
    /// write.set_data("/app/state", b"v4", None)?;
    /// write.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn check_version(&mut self, path: &str, version: i32) -> Result<()> {
        crate::path::check_node_path(path)?;
        self.writer.add_check_version(path, version).map_err(|e| Error::from_zk(e, path))?;
        self.paths.push(path.to_owned());
        Ok(())
    }

    /// Sends the write. It applies only if our lock node still exists at that moment.
    ///
    /// # Errors
    ///
    /// [`Error::LockLost`] if our lock node is gone (nothing applied) or the lock is already known
    /// to be lost (nothing sent); [`Error::OperationFailed`] with the index (in the order the
    /// operations were added), path and error of the first failing operation (nothing applied);
    /// session errors.
    ///
    /// # Cancel safety
    ///
    /// The request is sent when the future is first polled; once sent, dropping the future does
    /// not withdraw it, you only lose its answer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::MutexGuard) -> zk_lock::Result<()> {
    /// let mut write = guard.fenced();
    /// write.set_data("/app/state", b"v2", None)?;
    /// match write.commit().await {
    ///     Ok(_) => println!("written under the lock"),
    ///     Err(zk_lock::Error::LockLost { .. }) => println!("not written: lock lost"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn commit(self) -> Result<Vec<zk::MultiWriteResult>> {
        let (held, paths) = (self.held, self.paths);
        let lost = || Error::LockLost { path: held.lock.to_string() };
        if held.state() == LockState::Lost {
            return Err(lost());
        }
        match self.writer.commit().await {
            Ok(results) => Ok(results),
            Err(zk::CheckWriteError::CheckFailed { source: zk::Error::NoNode }) => {
                held.tracker.lose_node(crate::state::LostReason::NodeDeleted);
                Err(lost())
            }
            Err(zk::CheckWriteError::CheckFailed { source } | zk::CheckWriteError::RequestFailed { source }) => {
                Err(Error::from_zk(source, held.node()))
            }
            Err(zk::CheckWriteError::OperationFailed { source, index }) => {
                let path = paths.get(index).cloned().unwrap_or_default();
                Err(Error::OperationFailed { index, path, source })
            }
        }
    }
}
