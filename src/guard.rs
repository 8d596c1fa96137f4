//! The guard of a held lock: the one guard every lock-like recipe returns.

use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Result;
use crate::fenced::FencedWrite;
use crate::held::Held;
use crate::state::LockState;
use crate::token::FencingToken;

/// Proof that we hold a lock (a [`Mutex`](crate::Mutex), either side of a
/// [`RwLock`](crate::RwLock), any [`Lock`](crate::Lock)): owned, `'static`, `Send + Sync`.
///
/// Release it with [`release`](LockGuard::release), which returns once our node is deleted.
/// Dropping it without `release` deletes the node in the background, with the same retries; it
/// never blocks and never panics.
///
/// # Examples
///
/// ```no_run
/// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
/// let guard = mutex.lock().await?;
/// println!("token {}, node {}", guard.fencing_token(), guard.node());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "if unused the lock is released at once"]
pub struct LockGuard {
    held: Arc<Held>,
}

impl LockGuard {
    pub(crate) fn new(held: Held) -> LockGuard {
        LockGuard { held: Arc::new(held) }
    }

    /// The fencing token of this hold: the creation zxid of our node. Strictly larger than the
    /// token of every earlier holder we conflict with: every earlier holder of a mutex, every
    /// earlier writer for a reader, everyone earlier for a writer. (Readers that hold together,
    /// or a semaphore's holders, are not ordered among themselves by grant: fence per holder.)
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// let token = guard.fencing_token();
    /// // send `token.as_i64()` with every write to the protected resource
    /// # }
    /// ```
    pub fn fencing_token(&self) -> FencingToken {
        self.held.token
    }

    /// Full path of our lock node.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// assert!(guard.node().starts_with("/locks/orders/_c_"));
    /// # }
    /// ```
    pub fn node(&self) -> &str {
        self.held.node()
    }

    /// The ZooKeeper session this hold belongs to (with a [`Session`](crate::Session), the
    /// one that was current when it was granted).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// println!("held by session {}", guard.session_id());
    /// # }
    /// ```
    pub fn session_id(&self) -> zookeeper_client::SessionId {
        self.held.client().session_id()
    }

    /// Sequence number of our lock node (its place in arrival order).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// println!("we were number {}", guard.sequence());
    /// # }
    /// ```
    pub fn sequence(&self) -> i64 {
        self.held.seq
    }

    /// How many contenders were ahead of us when we joined the queue (0: the lock was free).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// println!("waited behind {} others", guard.queued_behind());
    /// # }
    /// ```
    pub fn queued_behind(&self) -> usize {
        self.held.ahead
    }

    /// The state of the lock now: [`LockState::Held`], [`LockState::Suspended`] or
    /// [`LockState::Lost`]. After the process itself was paused for longer than the session
    /// allows, this is `Lost` at once, before any task had a chance to run.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// if guard.state() != zk_lock::LockState::Held {
    ///     return; // do not touch the resource without fencing
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> LockState {
        self.held.state()
    }

    /// Why the lock was lost, once [`state`](LockGuard::state) is `Lost` (`None` before).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// guard.lost().await;
    /// eprintln!("lost: {}", guard.lost_reason().expect("lost"));
    /// # }
    /// ```
    pub fn lost_reason(&self) -> Option<crate::LostReason> {
        self.held.tracker.lost_reason()
    }

    /// Moves the end of the lease to `lease` from now (see
    /// [`LockBuilder::lease`](crate::LockBuilder::lease)), and records it in the node's data.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidLease`](crate::Error::InvalidLease): `lease` is zero, or the lock was
    ///   built without a lease. Nothing is written.
    /// * [`Error::LockLost`](crate::Error::LockLost): the lock is lost (the lease may have run
    ///   out already).
    ///
    /// # Cancel safety
    ///
    /// The new end applies locally at once, even if the future is dropped before the write to
    /// the node returns.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) -> zk_lock::Result<()> {
    /// guard.extend(std::time::Duration::from_secs(60)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, lease: std::time::Duration) -> Result<()> {
        self.held.extend(lease).await
    }

    /// A watch of the lock's state, to follow `Held` → `Suspended` → `Held`/`Lost`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// let mut states = guard.state_watcher();
    /// while states.changed().await.is_ok() {
    ///     println!("lock is now {:?}", *states.borrow());
    /// }
    /// # }
    /// ```
    pub fn state_watcher(&self) -> watch::Receiver<LockState> {
        self.held.tracker.subscribe()
    }

    /// Resolves once the lock is [`LockState::Lost`]; use it in `select!` to stop work.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn work() {}
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// tokio::select! {
    ///     _ = work() => {}
    ///     _ = guard.lost() => eprintln!("lock lost, work abandoned"),
    /// }
    /// # }
    /// ```
    pub async fn lost(&self) {
        let mut rx = self.held.tracker.subscribe();
        loop {
            if *rx.borrow_and_update() == LockState::Lost || self.held.state() == LockState::Lost {
                return;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Resolves once someone asked us to let go (a lock built
    /// [`revocable`](crate::LockBuilder::revocable); for any other it never resolves). What to
    /// do is ours to decide: finish up and [`release`](LockGuard::release), or keep the lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn work() {}
    /// # async fn example(guard: zk_lock::LockGuard) -> zk_lock::Result<()> {
    /// tokio::select! {
    ///     _ = work() => {}
    ///     _ = guard.revocation_requested() => println!("asked to let go"),
    /// }
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn revocation_requested(&self) {
        let mut asked = self.held.tracker.revocation();
        if asked.wait_for(|asked| *asked).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether someone asked us to let go (see
    /// [`revocation_requested`](LockGuard::revocation_requested)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// if guard.is_revocation_requested() {
    ///     // wind down
    /// }
    /// # }
    /// ```
    pub fn is_revocation_requested(&self) -> bool {
        *self.held.tracker.revocation().borrow()
    }

    /// Enters the lock again through this guard: the returned guard shares our node, and the
    /// node is deleted when the last of them is released or dropped. Reentrancy is explicit and
    /// counted, never tied to a thread.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// let outer = mutex.lock().await?;
    /// let inner = outer.reenter();
    /// assert_eq!(outer.hold_count(), 2);
    /// inner.release().await?; // still held by `outer`
    /// outer.release().await?; // now deleted
    /// # Ok(()) }
    /// ```
    pub fn reenter(&self) -> LockGuard {
        LockGuard { held: self.held.clone() }
    }

    /// How many guards share this hold (1 unless [`reenter`](LockGuard::reenter) was used).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) {
    /// assert_eq!(guard.hold_count(), 1);
    /// # }
    /// ```
    pub fn hold_count(&self) -> usize {
        Arc::strong_count(&self.held)
    }

    /// A write to ZooKeeper that applies only while our lock node exists.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) -> zk_lock::Result<()> {
    /// let mut write = guard.fenced();
    /// write.set_data("/app/state", b"v2", None)?;
    /// write.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn fenced(&self) -> FencedWrite<'_> {
        FencedWrite::new(&self.held)
    }

    /// Releases the lock: returns once our node is deleted, retrying through connection loss
    /// (for at most twice the session timeout of consecutive failures). With re-entered guards
    /// alive, it only gives up this one (when the last two are released at the same moment, the
    /// node is deleted by the last guard's drop, in the background).
    ///
    /// What the result promises:
    ///
    /// * `Ok(())`: our node is gone, by our delete, and the guard was never `Lost`: nobody else
    ///   could be granted the lock before our delete was applied. (If a delete of ours had an
    ///   unknown outcome and the retry then found the node gone, whose delete removed it cannot
    ///   be told; it counts as ours.) For a re-entered guard: the lock is still held, by the
    ///   other guards.
    /// * `Err(LockLost)`: the guard turned [`LockState::Lost`](crate::LockState::Lost) before or
    ///   during the release, or our node had already been deleted by someone else: someone else
    ///   may have held the lock meanwhile. The node is gone, or, when the session is over,
    ///   goes when the server expires the session: at the latest one session timeout (plus
    ///   one server tick) after the server last heard from us. The client itself may declare
    ///   the session over a little earlier than the server does.
    ///
    /// # Errors
    ///
    /// [`Error::LockLost`](crate::Error::LockLost) as above;
    /// [`Error::NotAuthorized`](crate::Error::NotAuthorized) if the directory's ACL refuses the
    /// delete (someone took DELETE away while we held the lock): the node is not abandoned, the
    /// delete is retried in the background every second for ten minutes, so that the lock is
    /// freed as soon as the permission is given back, and in any case when the session ends;
    /// [`Error::ConnectionLoss`](crate::Error::ConnectionLoss) after twice the session timeout
    /// of failures (the delete goes on in the background).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it finishes, the delete goes on in the
    /// background, as for a dropped guard.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::LockGuard) -> zk_lock::Result<()> {
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<()> {
        match Arc::try_unwrap(self.held) {
            Ok(held) => held.release().await,
            Err(shared) if shared.state() == LockState::Lost => {
                Err(crate::Error::LockLost { path: shared.lock.to_string() })
            }
            Err(_shared) => Ok(()),
        }
    }
}

/// The guard of a [`Mutex`](crate::Mutex): a [`LockGuard`].
pub type MutexGuard = LockGuard;
