//! The fair mutex.

use std::sync::Arc;
use std::time::Duration;

use zookeeper_client as zk;

use crate::error::Result;
use crate::guard::MutexGuard;
use crate::held::Held;
use crate::limits::DEFAULT_MAX_REQUEST;
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
/// [`MutexGuard::reenter`]. Unlike Curator's `InterProcessMutex`, which a thread that holds it
/// can acquire again, this lock is **not reentrant**: there is no thread identity in async
/// code, so entering again is explicit.
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

/// Options for a [`Mutex`]: node data, ACLs, the server's request size limit.
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
    max_request: usize,
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
    /// permissions by default.
    ///
    /// * **Directories** the lock creates get these ACLs as given. Every contender needs READ,
    ///   CREATE and DELETE on the lock directory: DELETE of a node is decided by its *parent*,
    ///   so with an open directory anyone can delete the holder's node and pass the lock on.
    ///   Before its first create, a lock checks that the directory (or, if it must create it,
    ///   these ACLs) lets it delete its node, and fails with
    ///   [`Error::NotAuthorized`](crate::Error::NotAuthorized) instead of leaving a node it could
    ///   not remove. The check is exact for `world`, `auth` and `digest` entries (by user name:
    ///   the server does not tell a session its password hashes) and counts `ip` entries and
    ///   other schemes as ours when in doubt. If a delete is refused all the same (or DELETE is
    ///   taken away later), the node is deleted in the background as soon as the permission is
    ///   back, and meanwhile the lock creates no more nodes and does not wait behind that one:
    ///   its acquires fail with `NotAuthorized`.
    /// * **Lock nodes** get these ACLs without WRITE and ADMIN, plus all permissions for the
    ///   session's own identity: only the owner can write its node, so nobody can fake its
    ///   handoff. Every contender needs READ on the others' nodes: a waiter watches the node
    ///   before it, and the server does not deliver watch events on a node the watcher may
    ///   not read (a waiter refused READ fails with
    ///   [`Error::NotAuthorized`](crate::Error::NotAuthorized) and withdraws).
    /// * An `auth` entry, as in [`zk::Acls::creator_all`], names the session's own credentials
    ///   (`digest`, `sasl`, `x509`...), as in ZooKeeper: clients sharing those credentials can
    ///   read each other's nodes and use a directory one of them created, and nobody else can.
    ///   On a session without credentials it names nobody but that one session, which no other
    ///   contender could then follow: the first acquire fails with
    ///   [`Error::InvalidAcl`](crate::Error::InvalidAcl) before writing anything, as ZooKeeper
    ///   itself refuses such ACLs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use zk_lock::zk::{self, Acls};
    /// // Every worker of the fleet connects with the same credentials.
    /// let client = zk::Client::connector().with_auth("digest", b"fleet:secret").connect("127.0.0.1:2181").await?;
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/a").acls(Acls::creator_all()).build()?;
    /// # Ok(()) }
    /// ```
    pub fn acls(mut self, acls: zk::Acls<'_>) -> MutexBuilder {
        self.acls = acls.iter().cloned().collect();
        self
    }

    /// The largest request the server accepts, in bytes: its `jute.maxbuffer` setting,
    /// `0xfffff` (1 MiB - 1) unless the server is configured otherwise. A server that receives
    /// a larger packet drops the connection without an answer, so [`build`](Self::build)
    /// refuses a lock whose create request (path, data and ACLs) would not fit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// // The servers run with -Djute.maxbuffer=4194304.
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/a")
    ///     .max_request_size(4 << 20)
    ///     .data(vec![0; 2 << 20])
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn max_request_size(mut self, bytes: usize) -> MutexBuilder {
        self.max_request = bytes;
        self
    }

    /// Checks the path, the ACLs and the request size, and makes the mutex. Nothing is sent to
    /// the server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`](crate::Error::InvalidPath) for a path [`LockPath::new`] refuses,
    /// [`Error::InvalidAcl`](crate::Error::InvalidAcl) for an empty ACL list,
    /// [`Error::TooLarge`](crate::Error::TooLarge) when the path or the data would make a
    /// request larger than [`max_request_size`](Self::max_request_size).
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
        let queue = Queue::new(self.client, dir, Layout::MUTEX, 0, self.data, self.acls, self.max_request)?;
        Ok(Mutex { queue: Arc::new(queue) })
    }
}

impl Mutex {
    /// A mutex on `path` with default options. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// Those of [`MutexBuilder::build`].
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
            max_request: DEFAULT_MAX_REQUEST,
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
    /// The first acquire through a `Mutex` (and its clones) costs one more: it checks the
    /// directory's ACL and, once per session, gives the session its own identity (see
    /// [`MutexBuilder::acls`]). So keep a `Mutex` and reuse it, rather than building one for
    /// every acquire. A waiter watches only the contender just before it. Missing
    /// directories are created as container nodes, which the server removes once they are
    /// empty.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidPath`](crate::Error::InvalidPath) when the path lies under an ephemeral
    ///   node.
    /// * [`Error::NotAuthorized`](crate::Error::NotAuthorized) when an ACL refuses us, also before
    ///   anything is created when the directory would not let us delete our node.
    /// * [`Error::InvalidAcl`](crate::Error::InvalidAcl) for `auth` (creator) ACLs on a session
    ///   without credentials (see [`MutexBuilder::acls`]); nothing is written.
    /// * [`Error::SessionExpired`](crate::Error::SessionExpired) /
    ///   [`Error::SessionClosed`](crate::Error::SessionClosed) when the session ends meanwhile.
    /// * [`Error::LockLost`](crate::Error::LockLost) when our node is deleted by someone else
    ///   while we wait.
    /// * [`Error::ConnectionLoss`](crate::Error::ConnectionLoss) when one request keeps failing
    ///   with connection errors for twice the session timeout while the session lives on.
    ///
    /// A connection that comes back is not an error: the wait goes on through reconnects. One
    /// that does not ends the session (the client declares it expired about 1.4 session
    /// timeouts after the last contact), which ends the wait with `SessionExpired`.
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
        self.acquire("zk_lock::lock", None).await
    }

    async fn acquire(&self, name: &'static str, timeout: Option<Duration>) -> Result<MutexGuard> {
        let ticket = self.queue.acquire(name, &Exclusive, timeout, std::future::ready(Ok(()))).await?;
        Ok(MutexGuard::new(Held::grant(&self.queue, ticket)))
    }

    /// [`lock`](Mutex::lock) with a deadline for the *wait*.
    ///
    /// The deadline covers waiting for our turn, counted from the moment we are in the queue,
    /// not the round trip that puts us there: that one is always completed, so
    /// `lock_timeout(Duration::ZERO)` takes a free lock (as Curator's `acquire(0, …)` does) and
    /// returns `Timeout` at once on a busy one, having created and withdrawn its node, without
    /// setting a watch. [`try_lock`](Mutex::try_lock) does the same without writing anything
    /// when the lock is busy. The call as a whole therefore takes longer than `timeout` by the
    /// enqueue's round trip (two on a handle's first acquire; more while the connection is
    /// troubled, within the retry bound) and, on a timeout, the withdrawal's. Wrap it in
    /// `tokio::time::timeout` for a bound on the whole call: it is cancel safe.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](crate::Error::Timeout), with the lock path and the deadline, when the
    /// lock was not granted within `timeout`; our node is deleted before this returns. Any
    /// error of [`lock`](Mutex::lock).
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
    ///     Err(zk_lock::Error::Timeout { .. }) => println!("busy"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard> {
        self.acquire("zk_lock::lock_timeout", Some(timeout)).await
    }

    /// Takes the lock only if nobody holds or waits for it; never waits.
    ///
    /// A read comes first: when the lock is busy this returns [`Error::WouldBlock`](crate::Error::WouldBlock) without
    /// writing anything. When it looks free, we enqueue; if someone got in first after all, our
    /// node is deleted again before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) when the lock is busy, or any error of
    /// [`lock`](Mutex::lock).
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
        let ticket = self.queue.try_acquire("zk_lock::try_lock", &Exclusive).await?;
        Ok(MutexGuard::new(Held::grant(&self.queue, ticket)))
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
    /// Those of [`MutexGuard::release`] (then the new contender is withdrawn, in the background)
    /// and of
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
        // The release goes out first, then the create and the listing, all before any answer
        // is awaited.
        let ticket = self.queue.acquire("zk_lock::relock", &Exclusive, None, guard.release()).await?;
        Ok(MutexGuard::new(Held::grant(&self.queue, ticket)))
    }

    /// The contenders in the queue now, holder first, with their nodes, sessions and data.
    ///
    /// The nodes are read in multi-reads of at most 100 (and at most half the request size
    /// limit), all sent at once: a queue of thousands is read
    /// in about one round trip more than a short one, and no request comes near the server's
    /// size limit.
    ///
    /// # Errors
    ///
    /// [`Error::NotAuthorized`](crate::Error::NotAuthorized) when an ACL refuses listing the
    /// directory (a node whose data we may not read is listed with
    /// [`Participant::data`](crate::Participant::data) `None`), session errors,
    /// [`Error::ConnectionLoss`](crate::Error::ConnectionLoss) as for [`lock`](Mutex::lock).
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
