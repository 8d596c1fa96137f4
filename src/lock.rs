//! The one trait every lock-like recipe implements, for code that takes "any lock".

use std::time::Duration;

use crate::error::Result;
use crate::guard::LockGuard;
use crate::path::LockPath;

/// Any lock of this crate: a [`Mutex`](crate::Mutex), the [`ReadLock`](crate::ReadLock) or
/// [`WriteLock`](crate::WriteLock) side of a [`RwLock`](crate::RwLock). Object safe: generic code
/// and `Vec<Box<dyn Lock>>` can hold any mix of them. Every acquire returns the same
/// [`LockGuard`], with its fencing token, state, state watcher, `lost()` and
/// `release().await`.
///
/// The methods are those of the recipes under their generic names: for a mutex, `acquire` is
/// [`Mutex::lock`](crate::Mutex::lock), `acquire_timeout` is
/// [`Mutex::lock_timeout`](crate::Mutex::lock_timeout) and `try_acquire` is
/// [`Mutex::try_lock`](crate::Mutex::try_lock); their documentation (errors, cancel safety,
/// what a deadline covers) holds here.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// use zk_lock::{Lock, Mutex, RwLock};
///
/// let rw = RwLock::new(&client, "/locks/catalog")?;
/// let locks: Vec<Box<dyn Lock>> = vec![
///     Box::new(Mutex::new(&client, "/locks/orders")?),
///     Box::new(rw.read_lock().clone()),
/// ];
/// for lock in &locks {
///     let guard = lock.acquire().await?;
///     println!("{} held with token {}", lock.path(), guard.fencing_token());
///     guard.release().await?;
/// }
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait Lock: Send + Sync + std::fmt::Debug {
    /// The lock path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(lock: &dyn zk_lock::Lock) {
    /// println!("locking {}", lock.path());
    /// # }
    /// ```
    fn path(&self) -> &LockPath;

    /// The lock's znode path on the server: the client's chroot, then [`path`](Lock::path).
    /// Two handles on the same lock through clients with different chroots have the same one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(lock: &dyn zk_lock::Lock) {
    /// println!("{} is {} on the server", lock.path(), lock.server_path());
    /// # }
    /// ```
    fn server_path(&self) -> String;

    /// Waits for the lock, in arrival order.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind; you lose your place in the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: &dyn zk_lock::Lock) -> zk_lock::Result<()> {
    /// let guard = lock.acquire().await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    async fn acquire(&self) -> Result<LockGuard>;

    /// [`acquire`](Lock::acquire) with a deadline for the wait.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`acquire`](Lock::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: &dyn zk_lock::Lock) -> zk_lock::Result<()> {
    /// let guard = lock.acquire_timeout(std::time::Duration::from_secs(2)).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    async fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard>;

    /// Takes the lock only if nobody blocks us; never waits, writes nothing when busy.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: &dyn zk_lock::Lock) -> zk_lock::Result<()> {
    /// match lock.try_acquire().await {
    ///     Ok(guard) => guard.release().await?,
    ///     Err(zk_lock::Error::WouldBlock { .. }) => println!("busy"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    async fn try_acquire(&self) -> Result<LockGuard>;

    /// Waits for the lock (for at most `timeout`, if given, as
    /// [`acquire_timeout`](Lock::acquire_timeout)), reporting where it stands through
    /// `progress` (see [`Progress`](crate::Progress) for what that costs).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves no node behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(lock: &dyn zk_lock::Lock) -> zk_lock::Result<()> {
    /// let (progress, position) = zk_lock::Progress::new();
    /// let guard = lock.acquire_with(None, &progress).await?;
    /// assert_eq!(*position.borrow(), zk_lock::Position::Granted);
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// The default, for locks of your own, ignores `progress`.
    async fn acquire_with(&self, timeout: Option<Duration>, progress: &crate::Progress) -> Result<LockGuard> {
        let _ = progress;
        match timeout {
            Some(timeout) => self.acquire_timeout(timeout).await,
            None => self.acquire().await,
        }
    }
}

/// Implements [`Lock`] for a recipe type with a `handle: Handle` field.
macro_rules! impl_lock {
    ($ty:ty, $acquire:literal, $timeout:literal, $try:literal, $with:literal) => {
        #[async_trait::async_trait]
        impl $crate::lock::Lock for $ty {
            fn path(&self) -> &$crate::path::LockPath {
                self.handle.path()
            }

            fn server_path(&self) -> String {
                self.handle.server_path()
            }

            async fn acquire(&self) -> $crate::error::Result<$crate::guard::LockGuard> {
                self.handle.acquire($acquire, None, None).await
            }

            async fn acquire_timeout(
                &self,
                timeout: std::time::Duration,
            ) -> $crate::error::Result<$crate::guard::LockGuard> {
                self.handle.acquire($timeout, Some(timeout), None).await
            }

            async fn try_acquire(&self) -> $crate::error::Result<$crate::guard::LockGuard> {
                self.handle.try_acquire($try).await
            }

            async fn acquire_with(
                &self,
                timeout: Option<std::time::Duration>,
                progress: &$crate::progress::Progress,
            ) -> $crate::error::Result<$crate::guard::LockGuard> {
                self.handle.acquire($with, timeout, Some(progress)).await
            }
        }
    };
}
pub(crate) use impl_lock;
