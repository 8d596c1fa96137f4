//! The fair mutex.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::guard::MutexGuard;
use crate::held::Held;
use crate::node::Layout;
use crate::participant::Participant;
use crate::path::LockPath;
use crate::queue::{Exclusive, Queue};

/// A fair, herd-free mutual-exclusion lock shared by every process that uses the same
/// ZooKeeper path.
///
/// Contenders are granted the lock strictly in the order they asked for it, and one release
/// wakes exactly one waiter. The node layout is Apache Curator's `InterProcessMutex`
/// (`_c_<uuid>-lock-<sequence>`), so a Curator process on the same path takes its turn in the
/// same queue.
///
/// A `Mutex` is a cheap handle: clone it to share it between tasks. Every call to
/// [`lock`](Mutex::lock) is a new contender, also on the same handle and in the same task: a
/// second `lock()` while a guard from the first is alive waits behind it (in the same task that
/// is a deadlock, as with `tokio::sync::Mutex`). To enter again while holding, use
/// [`MutexGuard::reenter`].
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use zk_lock::{zk, Mutex};
///
/// let client = zk::Client::connect("127.0.0.1:2181").await?;
/// let mutex = Mutex::new(&client, "/locks/orders")?;
/// let guard = mutex.lock().await?;
/// println!("holding with token {}", guard.fencing_token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Mutex {
    queue: Arc<Queue>,
}

/// The name Apache Curator users know this lock by.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// use zk_lock::InterProcessMutex;
/// let mutex = InterProcessMutex::new(&client, "/locks/orders")?;
/// mutex.lock().await?.release().await?;
/// # Ok(()) }
/// ```
pub type InterProcessMutex = Mutex;

/// Options for a [`Mutex`]: node data and ACLs.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// let mutex = zk_lock::Mutex::builder(&client, "/locks/orders")
///     .data(format!("host-a pid {}", std::process::id()))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct MutexBuilder {
    client: zk::Client,
    path: String,
    data: Vec<u8>,
    acls: Vec<zk::Acl>,
}

impl MutexBuilder {
    /// Data stored in our lock node, readable by others through
    /// [`Mutex::participants`] (for example who holds it: host and pid). Empty by default.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) {
    /// let builder = zk_lock::Mutex::builder(&client, "/locks/a").data("worker-3");
    /// # }
    /// ```
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> MutexBuilder {
        self.data = data.into();
        self
    }

    /// ACLs of the lock nodes and of any directory the lock creates. `world:anyone` with all
    /// permissions by default. Note that who may delete a lock node is decided by the DELETE
    /// permission of its parent: with an open directory anyone can delete the holder's node.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) {
    /// use zk_lock::zk::Acls;
    /// let builder = zk_lock::Mutex::builder(&client, "/locks/a").acls(Acls::creator_all());
    /// # }
    /// ```
    pub fn acls(mut self, acls: zk::Acls<'_>) -> MutexBuilder {
        self.acls = acls.iter().cloned().collect();
        self
    }

    /// Checks the path and makes the mutex. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for a path [`LockPath::new`] refuses.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/a").build()?;
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<Mutex> {
        let dir = LockPath::new(self.path)?;
        if self.acls.is_empty() {
            return Err(Error::ZooKeeper(zk::Error::InvalidAcl));
        }
        let queue = Queue::new(self.client, dir, Layout::MUTEX, 0, self.data, self.acls);
        Ok(Mutex { queue: Arc::new(queue) })
    }
}

impl Mutex {
    /// A mutex on `path` with default options. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for a path [`LockPath::new`] refuses.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let mutex = zk_lock::Mutex::new(&client, "/locks/orders")?;
    /// assert!(zk_lock::Mutex::new(&client, "locks/orders").is_err());
    /// # Ok(()) }
    /// ```
    pub fn new(client: &zk::Client, path: impl Into<String>) -> Result<Mutex> {
        Mutex::builder(client, path).build()
    }

    /// A builder for a mutex on `path` with node data or ACLs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/orders").data("me").build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(client: &zk::Client, path: impl Into<String>) -> MutexBuilder {
        MutexBuilder {
            client: client.clone(),
            path: path.into(),
            data: Vec::new(),
            acls: zk::Acls::anyone_all().iter().cloned().collect(),
        }
    }

    /// The lock path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let mutex = zk_lock::Mutex::new(&client, "/locks/orders")?;
    /// assert_eq!(mutex.path().as_str(), "/locks/orders");
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &LockPath {
        &self.queue.dir
    }

    /// Waits for the lock, in arrival order, and returns its guard.
    ///
    /// An uncontended acquire costs one round trip (the create and the listing are pipelined).
    /// A waiter watches only the contender just before it. Missing directories are created as
    /// container nodes, which the server removes once they are empty.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] when the path lies under an ephemeral node,
    /// [`Error::NotAuthorized`] when an ACL refuses us, [`Error::SessionExpired`] /
    /// [`Error::SessionClosed`] when the session ends meanwhile, [`Error::LockLost`] when our
    /// node is deleted by someone else while we wait. Connection loss is not an error: the wait
    /// goes on through reconnects.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: dropping the future at any point (for example in
    /// `tokio::time::timeout` or `select!`) leaves no node behind and no lock held; our node, if
    /// it was created, is deleted in the background, retried until it is gone or the session is
    /// over. You lose your place in the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// use std::time::Duration;
    ///
    /// let guard = mutex.lock().await?;
    /// // ... critical section ...
    /// guard.release().await?;
    ///
    /// // With a deadline:
    /// match tokio::time::timeout(Duration::from_secs(5), mutex.lock()).await {
    ///     Ok(guard) => guard?.release().await?,
    ///     Err(_) => println!("still busy after 5 s"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self) -> Result<MutexGuard> {
        let span = tracing::debug_span!("zk_lock::lock", lock = %self.queue.dir);
        async {
            let mut ticket = self.queue.enqueue().await?;
            self.queue.wait_turn(&mut ticket, &Exclusive).await?;
            Ok(MutexGuard::new(Held::grant(&self.queue, ticket)))
        }
        .instrument(span)
        .await
    }

    /// [`lock`](Mutex::lock) with a deadline.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the lock was not granted within `timeout` (our node, if it was
    /// created, is then deleted in the background, as for a dropped `lock()`), or any error of
    /// [`lock`](Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`lock`](Mutex::lock).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// use std::time::Duration;
    /// match mutex.lock_timeout(Duration::from_secs(2)).await {
    ///     Ok(guard) => guard.release().await?,
    ///     Err(zk_lock::Error::Timeout(_)) => println!("busy"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard> {
        tokio::time::timeout(timeout, self.lock()).await.map_err(|_| Error::Timeout(timeout))?
    }

    /// Takes the lock only if nobody holds or waits for it; never waits.
    ///
    /// A read comes first: when the lock is busy this returns [`Error::WouldBlock`] without
    /// writing anything. When it looks free, we enqueue; if someone got in first after all, our
    /// node is deleted again before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the lock is busy, or any error of [`lock`](Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// match mutex.try_lock().await {
    ///     Ok(guard) => guard.release().await?,
    ///     Err(zk_lock::Error::WouldBlock { .. }) => println!("busy, try later"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_lock(&self) -> Result<MutexGuard> {
        let span = tracing::debug_span!("zk_lock::try_lock", lock = %self.queue.dir);
        async {
            let busy = || Error::WouldBlock { path: self.queue.dir.to_string() };
            let children = self.queue.list().await?;
            if self.queue.would_block(&self.queue.contenders(&children), &Exclusive) {
                return Err(busy());
            }
            let mut ticket = self.queue.enqueue().await?;
            if self.queue.is_granted(&mut ticket, &Exclusive)? {
                return Ok(MutexGuard::new(Held::grant(&self.queue, ticket)));
            }
            ticket.cleanup.delete_now().await?;
            Err(busy())
        }
        .instrument(span)
        .await
    }

    /// Releases `guard` and queues again for the lock, in one round trip: the delete of the old
    /// node, the create of the new one and the listing go out back to back. The new contender
    /// joins the back of the queue, like any newcomer; uncontended, this is a whole
    /// release-and-acquire cycle for the price of one round trip.
    ///
    /// `guard` should be a guard of this mutex (of another lock it is released all the same,
    /// just not pipelined with anything useful). Like [`MutexGuard::release`], with re-entered
    /// guards still alive it only gives up this one, and then waits behind itself.
    ///
    /// # Errors
    ///
    /// Those of [`MutexGuard::release`] (then the new contender is withdrawn) and of
    /// [`lock`](Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the old node is still deleted and the new one, if
    /// created, too, both in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn step() {}
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// let mut guard = mutex.lock().await?;
    /// for _ in 0..10 {
    ///     step().await;
    ///     guard = mutex.relock(guard).await?; // let others in, then take our next turn
    /// }
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn relock(&self, guard: MutexGuard) -> Result<MutexGuard> {
        let span = tracing::debug_span!("zk_lock::relock", lock = %self.queue.dir);
        async {
            // `join!` polls in order on the first poll: the delete goes out first, then the
            // create and the listing, all before any answer is awaited.
            let (released, enqueued) = tokio::join!(guard.release(), self.queue.enqueue());
            let mut ticket = enqueued?;
            released?;
            self.queue.wait_turn(&mut ticket, &Exclusive).await?;
            Ok(MutexGuard::new(Held::grant(&self.queue, ticket)))
        }
        .instrument(span)
        .await
    }

    /// The contenders in the queue now, holder first, with their nodes, sessions and data.
    ///
    /// # Errors
    ///
    /// [`Error::NotAuthorized`] when an ACL refuses the read, session errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// let queue = mutex.participants().await?;
    /// println!("{} in line", queue.len());
    /// # Ok(()) }
    /// ```
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        self.queue.participants().await
    }
}
