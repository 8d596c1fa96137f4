//! The fair semaphore.

use std::time::Duration;

use crate::builder::SemaphoreBuilder;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::guard::LockGuard;
use crate::handle::Handle;
use crate::lock::impl_lock;
use crate::node::{Contender, Layout};
use crate::participant::Participant;
use crate::path::LockPath;
use crate::queue::{Blocked, Mark, Policy};

/// `n` permits, in arrival order. The first `n` contenders hold; the first waiter (the
/// `n + 1`-th) is let in by whichever holder leaves first, so it watches the directory's
/// children; every later waiter watches the contender just before it, which wakes it by leaving
/// or, once granted, by writing its own node (then the next waiter is the first). So a release
/// fires one watch, and the grant it causes one more, whatever the queue's length.
#[derive(Debug, Clone, Copy)]
struct Permits(usize);

impl Policy for Permits {
    fn blocker(&self, _queue: &[Contender], me: usize) -> Option<Blocked> {
        match me.checked_sub(self.0) {
            None => None,
            Some(0) => Some(Blocked::ByAny),
            Some(_) => Some(Blocked::By(me - 1)),
        }
    }

    fn touches_on_grant(&self) -> bool {
        true
    }
}

fn mismatch(path: &str, ours: &[u8], stored: &[u8]) -> Error {
    Error::PermitMismatch {
        path: path.to_owned(),
        permits: std::str::from_utf8(ours).ok().and_then(|s| s.parse().ok()).unwrap_or_default(),
        stored: String::from_utf8_lossy(stored).into_owned(),
    }
}

/// A fair, herd-free counting semaphore shared by every process that uses the same ZooKeeper
/// path: at most `permits` holders at once, granted strictly in arrival order.
///
/// Every contender creates an `EPHEMERAL_SEQUENTIAL` lease node; the first `permits` hold. The
/// first waiter watches the directory, since any holder's release lets it in (a contender that
/// joins or leaves behind it wakes it too, for one listing); each later waiter watches only the
/// contender just before it, which, once granted, rewrites its own node to wake it. A release
/// therefore fires one watch, and the grant it causes one more, whatever the queue's length:
/// no event ever fires more than one watch. That second one cannot be saved while the first
/// waiter must see any holder leave, crashed or not: when it is granted, the waiter after it
/// must start watching the holders before the next release, so it must be woken, and a watch
/// it had armed earlier would have fired at this release too (Curator's
/// `InterProcessSemaphoreV2` also wakes two: the lease watcher, then its internal mutex's next
/// waiter). An uncontended acquire costs one round trip, as for a [`Mutex`](crate::Mutex)
/// (Curator's takes an internal mutex for every acquire).
///
/// The permit count is stored in the semaphore's node (as decimal text, like Kazoo's
/// `Semaphore`): a client asking for another count gets [`Error::PermitMismatch`] and writes
/// nothing. It is checked on the first acquire through a handle (which creates the node with its
/// count if there is none), and again whenever the node turns out to have been made again since
/// (a container reaped when empty, then made by another client): then the acquire withdraws the
/// node it had just created and fails with `PermitMismatch`. The layout (`_c_<uuid>-lease-<seq>`) is zk-lock's own: Curator's and Kazoo's
/// semaphores on the same path do not share its count.
///
/// A permit is a [`LockGuard`]: fencing token (strictly larger for every later grant, but
/// `permits` holders hold at once: fence per holder, not for exclusion), state, `lost()`,
/// `release().await`. `Semaphore` implements [`Lock`](crate::Lock).
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// use zk_lock::Semaphore;
///
/// let crawlers = Semaphore::new(&client, "/limits/crawlers", 4)?; // at most 4 at once
/// let permit = crawlers.acquire().await?;
/// // ... crawl ...
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    handle: Handle,
    permits: u32,
}

/// The name Apache Curator users know this recipe by (a different node layout: see
/// [`Semaphore`]).
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// let s = zk_lock::InterProcessSemaphore::new(&client, "/limits/crawlers", 4)?;
/// s.acquire().await?.release().await?;
/// # Ok(()) }
/// ```
pub type InterProcessSemaphore = Semaphore;

impl_lock!(Semaphore, "zk_lock::acquire", "zk_lock::acquire_timeout", "zk_lock::try_acquire", "zk_lock::acquire_with");

impl SemaphoreBuilder {
    /// How many holders at once (1 by default). Every client of one semaphore must use the same
    /// count.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let s = zk_lock::Semaphore::builder(&client, "/limits/db").permits(8).data("api-3").build()?;
    /// # Ok(()) }
    /// ```
    pub fn permits(mut self, permits: u32) -> SemaphoreBuilder {
        self.set_permits(permits);
        self
    }

    /// Checks the path, the permit count, the ACLs and the request size, and makes the
    /// semaphore. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPermits`] for zero permits, and those of
    /// [`MutexBuilder::build`](crate::MutexBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let s = zk_lock::Semaphore::builder(&client, "/limits/db").permits(8).build()?;
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<Semaphore> {
        let permits = self.permit_count();
        let path = LockPath::new(self.path().to_owned())?;
        if permits == 0 {
            return Err(Error::InvalidPermits { path: path.to_string() });
        }
        let mark = Mark { data: permits.to_string().into_bytes(), mismatch };
        let lanes = self.lanes(Layout::SEMAPHORE, &[0], Some(mark))?;
        Ok(Semaphore { handle: Handle::new(lanes, 0, Permits(permits as usize), self.requeues()), permits })
    }
}

impl Semaphore {
    /// A semaphore of `permits` on `path`. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// Those of [`SemaphoreBuilder::build`](crate::LockBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let s = zk_lock::Semaphore::new(&client, "/limits/crawlers", 4)?;
    /// assert!(zk_lock::Semaphore::new(&client, "/limits/crawlers", 0).is_err());
    /// # Ok(()) }
    /// ```
    pub fn new(conn: impl Into<Connection>, path: impl Into<String>, permits: u32) -> Result<Semaphore> {
        Semaphore::builder(conn, path).permits(permits).build()
    }

    /// A builder for a semaphore on `path` (the options of every lock, see
    /// [`LockBuilder`](crate::LockBuilder), and the permit count).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let s = zk_lock::Semaphore::builder(&client, "/limits/crawlers").permits(4).build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(conn: impl Into<Connection>, path: impl Into<String>) -> SemaphoreBuilder {
        SemaphoreBuilder::new(conn.into(), path.into())
    }

    /// The semaphore's path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(s: zk_lock::Semaphore) {
    /// println!("{}", s.path());
    /// # }
    /// ```
    pub fn path(&self) -> &LockPath {
        self.handle.path()
    }

    /// How many holders at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// assert_eq!(zk_lock::Semaphore::new(&client, "/limits/a", 4)?.permits(), 4);
    /// # Ok(()) }
    /// ```
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// Waits for a permit, in arrival order.
    ///
    /// # Errors
    ///
    /// [`Error::PermitMismatch`] when the semaphore's node holds another count (nothing
    /// written), and those of [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind; you lose your place in the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(s: zk_lock::Semaphore) -> zk_lock::Result<()> {
    /// let permit = s.acquire().await?;
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self) -> Result<LockGuard> {
        self.handle.acquire("zk_lock::acquire", None, None).await
    }

    /// [`acquire`](Semaphore::acquire) with a deadline for the wait (see
    /// [`Mutex::lock_timeout`](crate::Mutex::lock_timeout) for what it covers).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], our node withdrawn; those of [`acquire`](Semaphore::acquire).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`acquire`](Semaphore::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(s: zk_lock::Semaphore) -> zk_lock::Result<()> {
    /// let permit = s.acquire_timeout(std::time::Duration::from_secs(5)).await?;
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        self.handle.acquire("zk_lock::acquire_timeout", Some(timeout), None).await
    }

    /// Takes a permit only if one is free and nobody waits; never waits, writes nothing when
    /// none is free.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when no permit is free; those of [`acquire`](Semaphore::acquire).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(s: zk_lock::Semaphore) -> zk_lock::Result<()> {
    /// if let Ok(permit) = s.try_acquire().await {
    ///     permit.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self) -> Result<LockGuard> {
        self.handle.try_acquire("zk_lock::try_acquire").await
    }

    /// The holders and waiters now, in arrival order: the first [`permits`](Semaphore::permits)
    /// hold.
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
    /// # async fn example(s: zk_lock::Semaphore) -> zk_lock::Result<()> {
    /// let queue = s.participants().await?;
    /// let waiting = queue.len().saturating_sub(s.permits() as usize);
    /// # Ok(()) }
    /// ```
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        self.handle.participants().await
    }

    /// The first contender in the queue now (the earliest holder), or `None` when nobody holds
    /// a permit: a listing and one read (whatever the queue's length), plus the removal of the
    /// watch that read sets.
    ///
    /// # Errors
    ///
    /// As [`participants`](Semaphore::participants).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(s: zk_lock::Semaphore) -> zk_lock::Result<()> {
    /// if let Some(first) = s.holder().await? {
    ///     println!("held since {:?}", first.created());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn holder(&self) -> Result<Option<Participant>> {
        Ok(self.handle.first().await?.0)
    }
}
