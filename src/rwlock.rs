//! The fair read/write lock.

use std::time::Duration;

use crate::builder::RwLockBuilder;
use crate::connection::Connection;
use crate::error::Result;
use crate::guard::LockGuard;
use crate::handle::Handle;
use crate::lock::impl_lock;
use crate::node::{Contender, Layout};
use crate::participant::Participant;
use crate::path::LockPath;
use crate::queue::{Blocked, Policy};

/// Index of the readers' marker in [`Layout::RWLOCK`].
const READ: usize = 0;
/// Index of the writers' marker.
const WRITE: usize = 1;

/// Readers wait only for the nearest *earlier* writer: never for later ones (that would
/// deadlock two readers around a writer, Kazoo #649), never for other readers.
#[derive(Debug, Clone, Copy)]
struct Readers;

impl Policy for Readers {
    fn blocker(&self, queue: &[Contender], me: usize) -> Option<Blocked> {
        queue[..me].iter().rposition(|c| c.kind == WRITE).map(Blocked::By)
    }

    /// The nearest earlier writer hands off only once it held the lock, so first in the
    /// queue: no writer is left before us.
    fn trusts_handoff(&self, _queue: &[Contender], _me: usize, _blocker: usize) -> bool {
        true
    }
}

/// Writers wait for the contender just before them, reader or writer: FIFO among conflicting
/// requests, so a stream of readers cannot starve a writer.
#[derive(Debug, Clone, Copy)]
struct Writers;

impl Policy for Writers {
    fn blocker(&self, _queue: &[Contender], me: usize) -> Option<Blocked> {
        me.checked_sub(1).map(Blocked::By)
    }

    /// A writer that held was first; a reader that held may have had other readers beside it.
    fn trusts_handoff(&self, queue: &[Contender], _me: usize, blocker: usize) -> bool {
        queue[blocker].kind == WRITE
    }

    fn hands_off(&self) -> bool {
        true
    }
}

/// A fair read/write lock shared by every process that uses the same ZooKeeper path: many
/// readers hold it together, a writer holds it alone.
///
/// Requests are served in arrival order among those that conflict: a reader waits only while a
/// writer that asked *earlier* is queued or holds, and watches the nearest such writer; a
/// writer waits for everyone that asked before it, and watches the node just before its own.
/// So a stream of readers never starves a writer, and readers that queued after a writer wait
/// for it. A release wakes only the contenders that watch its node: a writer's, every reader up
/// to the next writer (all of which it lets in) or the writer right after it; a reader's, at
/// most the writer just behind it (which may still wait for readers before it). No reader ever
/// watches a reader.
///
/// The node layout is Apache Curator's `InterProcessReadWriteLock` (`_c_<uuid>-__READ__<seq>`,
/// `_c_<uuid>-__WRIT__<seq>`), so Curator processes on the same path share the queue. Both
/// sides return the same [`LockGuard`] as a [`Mutex`](crate::Mutex), with fencing token
/// (a writer's token is larger than that of every earlier holder, a reader's larger than every
/// earlier writer's), state,
/// `lost()` and fenced writes. The two sides, [`ReadLock`] and [`WriteLock`], implement
/// [`Lock`](crate::Lock).
///
/// A `RwLock` is a cheap handle: clone it to share it between tasks. Like the mutex it is not
/// reentrant: a `write()` while holding `read()` on the same lock waits for itself.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// use zk_lock::RwLock;
///
/// let lock = RwLock::new(&client, "/locks/catalog")?;
/// let reading = lock.read().await?; // others may read too
/// reading.release().await?;
/// let writing = lock.write().await?; // alone
/// writing.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RwLock {
    read: ReadLock,
    write: WriteLock,
}

/// The name Apache Curator users know this lock by.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// let lock = zk_lock::InterProcessReadWriteLock::new(&client, "/locks/catalog")?;
/// lock.read().await?.release().await?;
/// # Ok(()) }
/// ```
pub type InterProcessReadWriteLock = RwLock;

/// The read side of a [`RwLock`], as a [`Lock`](crate::Lock) (Curator's `readLock()`).
///
/// # Examples
///
/// ```no_run
/// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
/// use zk_lock::Lock;
/// let guard = lock.read_lock().acquire().await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReadLock {
    handle: Handle,
}

/// The write side of a [`RwLock`], as a [`Lock`](crate::Lock) (Curator's `writeLock()`).
///
/// # Examples
///
/// ```no_run
/// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
/// use zk_lock::Lock;
/// let guard = lock.write_lock().acquire().await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WriteLock {
    handle: Handle,
}

impl_lock!(ReadLock, "zk_lock::read", "zk_lock::read_timeout", "zk_lock::try_read", "zk_lock::read_with");
impl_lock!(WriteLock, "zk_lock::write", "zk_lock::write_timeout", "zk_lock::try_write", "zk_lock::write_with");

impl RwLockBuilder {
    /// Checks the path, the ACLs and the request size, and makes the read/write lock. Nothing is
    /// sent to the server.
    ///
    /// # Errors
    ///
    /// As [`MutexBuilder::build`](crate::MutexBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let lock = zk_lock::RwLock::builder(&client, "/locks/catalog").data("reporter-2").build()?;
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<RwLock> {
        // One directory: the two sides share what the first acquire learns and the record of
        // nodes whose delete was refused.
        let lanes = self.lanes(Layout::RWLOCK, &[READ, WRITE], None)?;
        Ok(RwLock {
            read: ReadLock { handle: Handle::new(lanes.clone(), 0, Readers, self.requeues()) },
            write: WriteLock { handle: Handle::new(lanes, 1, Writers, self.requeues()) },
        })
    }
}

impl RwLock {
    /// A read/write lock on `path` with default options. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// Those of [`MutexBuilder::build`](crate::MutexBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let lock = zk_lock::RwLock::new(&client, "/locks/catalog")?;
    /// # Ok(()) }
    /// ```
    pub fn new(conn: impl Into<Connection>, path: impl Into<String>) -> Result<RwLock> {
        RwLock::builder(conn, path).build()
    }

    /// A builder for a read/write lock on `path` with node data, ACLs or a request size limit
    /// (the options of every lock, see [`LockBuilder`](crate::LockBuilder)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let lock = zk_lock::RwLock::builder(&client, "/locks/catalog").data("me").build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(conn: impl Into<Connection>, path: impl Into<String>) -> RwLockBuilder {
        RwLockBuilder::new(conn.into(), path.into())
    }

    /// The lock path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(lock: zk_lock::RwLock) {
    /// assert_eq!(lock.path().as_str(), "/locks/catalog");
    /// # }
    /// ```
    pub fn path(&self) -> &LockPath {
        self.read.handle.path()
    }

    /// The read side, as a [`Lock`](crate::Lock).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(lock: zk_lock::RwLock) {
    /// let locks: Vec<Box<dyn zk_lock::Lock>> = vec![Box::new(lock.read_lock().clone())];
    /// # }
    /// ```
    pub fn read_lock(&self) -> &ReadLock {
        &self.read
    }

    /// The write side, as a [`Lock`](crate::Lock).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(lock: zk_lock::RwLock) {
    /// let locks: Vec<Box<dyn zk_lock::Lock>> = vec![Box::new(lock.write_lock().clone())];
    /// # }
    /// ```
    pub fn write_lock(&self) -> &WriteLock {
        &self.write
    }

    /// Waits to read: until no writer that asked before us is queued or holds. Other readers
    /// do not block us. Costs what [`Mutex::lock`](crate::Mutex::lock) costs: one round trip
    /// uncontended.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind; you lose your place in the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
    /// let guard = lock.read().await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn read(&self) -> Result<LockGuard> {
        self.read.handle.acquire("zk_lock::read", None, None).await
    }

    /// [`read`](RwLock::read) with a deadline for the wait (see
    /// [`Mutex::lock_timeout`](crate::Mutex::lock_timeout) for what it covers).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](crate::Error::Timeout), our node withdrawn; those of
    /// [`read`](RwLock::read).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`read`](RwLock::read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
    /// let guard = lock.read_timeout(std::time::Duration::from_secs(1)).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn read_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        self.read.handle.acquire("zk_lock::read_timeout", Some(timeout), None).await
    }

    /// Reads only if no earlier writer blocks us; never waits, and writes nothing when a writer
    /// is queued or holds.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) when a writer is in the way; those of
    /// [`read`](RwLock::read).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
    /// if let Ok(guard) = lock.try_read().await {
    ///     guard.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_read(&self) -> Result<LockGuard> {
        self.read.handle.try_acquire("zk_lock::try_read").await
    }

    /// Waits to write: until everyone who asked before us, reader or writer, is gone. Nobody
    /// else holds the lock while we do.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind; you lose your place in the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
    /// let guard = lock.write().await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self) -> Result<LockGuard> {
        self.write.handle.acquire("zk_lock::write", None, None).await
    }

    /// [`write`](RwLock::write) with a deadline for the wait (see
    /// [`Mutex::lock_timeout`](crate::Mutex::lock_timeout) for what it covers).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](crate::Error::Timeout), our node withdrawn; those of
    /// [`write`](RwLock::write).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`write`](RwLock::write).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
    /// let guard = lock.write_timeout(std::time::Duration::from_secs(1)).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn write_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        self.write.handle.acquire("zk_lock::write_timeout", Some(timeout), None).await
    }

    /// Writes only if nobody is queued or holds; never waits, writes nothing when busy.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) when anyone is in the way; those of
    /// [`write`](RwLock::write).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
    /// if let Ok(guard) = lock.try_write().await {
    ///     guard.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_write(&self) -> Result<LockGuard> {
        self.write.handle.try_acquire("zk_lock::try_write").await
    }

    /// The contenders in the queue now, readers and writers, in arrival order (the node name
    /// says which: `__READ__` or `__WRIT__`).
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::participants`](crate::Mutex::participants).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: zk_lock::RwLock) -> zk_lock::Result<()> {
    /// let writers = lock.participants().await?.iter().filter(|p| p.node().contains("__WRIT__")).count();
    /// # Ok(()) }
    /// ```
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        self.read.handle.participants().await
    }
}
