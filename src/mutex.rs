//! The fair mutex.

use std::time::Duration;

use crate::builder::MutexBuilder;
use crate::connection::Connection;
use crate::error::Result;
use crate::guard::MutexGuard;
use crate::handle::Handle;
use crate::lock::impl_lock;
use crate::node::Layout;
use crate::participant::Participant;
use crate::path::LockPath;
use crate::queue::Exclusive;

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
    handle: Handle,
}

impl_lock!(Mutex, "zk_lock::lock", "zk_lock::lock_timeout", "zk_lock::try_lock", "zk_lock::lock_with");

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

impl Mutex {
    pub(crate) fn from_builder(builder: &MutexBuilder) -> Result<Mutex> {
        let lanes = builder.lanes(Layout::MUTEX, &[0], None)?;
        Ok(Mutex { handle: Handle::new(lanes, 0, Exclusive, builder.requeues()) })
    }

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
    pub fn new(conn: impl Into<Connection>, path: impl Into<String>) -> Result<Mutex> {
        Mutex::builder(conn, path).build()
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
    pub fn builder(conn: impl Into<Connection>, path: impl Into<String>) -> MutexBuilder {
        MutexBuilder::new(conn.into(), path.into())
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
        self.handle.path()
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
    /// * [`Error::InvalidAcl`](crate::Error::InvalidAcl) for ACLs the server refuses (see
    ///   [`MutexBuilder::acls`]); nothing is written.
    /// * [`Error::SessionExpired`](crate::Error::SessionExpired) /
    ///   [`Error::SessionClosed`](crate::Error::SessionClosed) when the session ends meanwhile:
    ///   on a plain `zk::Client`, or on a [`Session`](crate::Session) built with
    ///   [`requeue_on_expiry(false)`](crate::LockBuilder::requeue_on_expiry). By default a
    ///   `Session`'s waiting acquire queues again on the next session instead.
    /// * [`Error::Connect`](crate::Error::Connect) when a `Session` gave up establishing a new
    ///   session.
    /// * [`Error::LockLost`](crate::Error::LockLost) when our node is deleted by someone else
    ///   while we wait.
    /// * [`Error::ConnectionLoss`](crate::Error::ConnectionLoss) when one request keeps failing
    ///   with connection errors for twice the session timeout while the session lives on.
    ///
    /// A connection that comes back is not an error: the wait goes on through reconnects. One
    /// that does not ends the session (the client declares it expired about 1.4 session
    /// timeouts after the last contact; a `Session` gives it up after one), which ends the wait
    /// with `SessionExpired` or, with a `Session`, queues it again on the next session.
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
        self.handle.acquire("zk_lock::lock", None, None).await
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
        self.handle.acquire("zk_lock::lock_timeout", Some(timeout), None).await
    }

    /// Waits for the lock (for at most `timeout`, if given, as [`lock_timeout`](Mutex::lock_timeout)),
    /// reporting how many contenders are ahead through `progress` (see
    /// [`Progress`](crate::Progress) for what that costs).
    ///
    /// # Errors
    ///
    /// Those of [`lock`](Mutex::lock) and [`lock_timeout`](Mutex::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Mutex::lock).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// let (progress, mut position) = zk_lock::Progress::new();
    /// tokio::spawn(async move {
    ///     while position.changed().await.is_ok() {
    ///         if let Some(ahead) = position.borrow().ahead() {
    ///             eprintln!("{ahead} ahead");
    ///         }
    ///     }
    /// });
    /// mutex.lock_with(None, &progress).await?.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_with(&self, timeout: Option<Duration>, progress: &crate::Progress) -> Result<MutexGuard> {
        self.handle.acquire("zk_lock::lock_with", timeout, Some(progress)).await
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
        self.handle.try_acquire("zk_lock::try_lock").await
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
        self.handle.reacquire("zk_lock::relock", guard).await
    }

    /// Asks the holder of this mutex, whoever it is, to let go (see [`revoke`](crate::revoke)).
    /// Returns the holder's node, `None` when nobody holds the lock.
    ///
    /// # Errors
    ///
    /// [`Error::NotAuthorized`](crate::Error::NotAuthorized) when the holder's lock is not
    /// [`revocable`](crate::LockBuilder::revocable), session errors.
    ///
    /// # Cancel safety
    ///
    /// Once the request is sent, dropping the future does not withdraw it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// if let Some(node) = mutex.revoke_holder().await? {
    ///     println!("asked {node} to let go");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn revoke_holder(&self) -> Result<Option<String>> {
        self.handle.revoke_first().await
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
        self.handle.participants().await
    }

    /// The holder now (the first contender in the queue), or `None` when the lock is free: a
    /// listing and one read (whatever the queue's length), plus the removal of the watch the
    /// read sets.
    ///
    /// # Errors
    ///
    /// As [`participants`](Mutex::participants).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// if let Some(holder) = mutex.holder().await? {
    ///     println!("held by session {}", holder.session_id());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn holder(&self) -> Result<Option<Participant>> {
        Ok(self.handle.first().await?.0)
    }
}
