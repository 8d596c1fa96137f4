//! Several locks taken together: all or nothing, in one canonical order, under one deadline.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::guard::LockGuard;
use crate::lock::Lock;
use crate::state::LockState;
use crate::token::FencingToken;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Several locks of any kind (through [`Lock`]) taken together: all or nothing.
///
/// * **No deadlock between multi-locks**: the members are always taken in one canonical order,
///   by the znode's full path on the server (chroot included), whatever order they were given in, so two multi-locks over overlapping sets never
///   wait for each other in a cycle.
/// * **One deadline** for the whole operation ([`acquire_timeout`](MultiLock::acquire_timeout)),
///   not one per member, as in Curator's `InterProcessMultiLock`.
/// * **Nothing half-held**: on an error or a timeout, the members already taken are released in
///   reverse order before the call returns (a release that fails goes on in the background, as
///   for a dropped guard), and the member that failed leaves no node. That rollback is not part
///   of the deadline.
///
/// Two members on the same path (for example both sides of one [`RwLock`](crate::RwLock)) are
/// refused: the second would wait for the first.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// use zk_lock::{Lock, MultiLock, Mutex, RwLock, Semaphore};
///
/// let catalog = RwLock::new(&client, "/locks/catalog")?;
/// let both = MultiLock::new(vec![
///     Box::new(Mutex::new(&client, "/locks/orders")?) as Box<dyn Lock>,
///     Box::new(catalog.write_lock().clone()),
///     Box::new(Semaphore::new(&client, "/limits/db", 4)?),
/// ])?;
/// let held = both.acquire_timeout(std::time::Duration::from_secs(5)).await?;
/// println!("all three held, token {}", held.fencing_token());
/// held.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MultiLock {
    /// In canonical order.
    locks: Vec<Box<dyn Lock>>,
}

/// All the members of a [`MultiLock`], held; released together by
/// [`release`](MultiGuard::release) (in reverse order), or in the background when dropped.
///
/// # Examples
///
/// ```no_run
/// # async fn example(multi: zk_lock::MultiLock) -> zk_lock::Result<()> {
/// let held = multi.acquire().await?;
/// for guard in held.guards() {
///     println!("{} with token {}", guard.node(), guard.fencing_token());
/// }
/// held.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "if unused the locks are released at once"]
pub struct MultiGuard {
    /// In acquisition (canonical) order.
    guards: Vec<LockGuard>,
    /// The members' lock paths, in the same order.
    paths: Vec<String>,
}

impl MultiLock {
    /// A multi-lock over `locks`, which it orders by path. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLockSet`] for an empty set, or two members on the same path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// use zk_lock::{Lock, MultiLock, Mutex};
    /// let pair = MultiLock::new(vec![
    ///     Box::new(Mutex::new(&client, "/locks/b")?) as Box<dyn Lock>,
    ///     Box::new(Mutex::new(&client, "/locks/a")?),
    /// ])?; // taken as /locks/a, then /locks/b
    /// # Ok(()) }
    /// ```
    pub fn new(locks: impl IntoIterator<Item = Box<dyn Lock>>) -> Result<MultiLock> {
        let mut locks: Vec<Box<dyn Lock>> = locks.into_iter().collect();
        if locks.is_empty() {
            return Err(Error::InvalidLockSet { reason: "no locks" });
        }
        // By the znode's full path on the server (a client's chroot and the lock path), so that
        // clients with different chroots agree on the order and on what is the same lock.
        locks.sort_by_cached_key(|l| l.server_path());
        if locks.windows(2).any(|w| w[0].server_path() == w[1].server_path()) {
            return Err(Error::InvalidLockSet { reason: "two members on the same path" });
        }
        Ok(MultiLock { locks })
    }

    /// The members, in the order they are taken.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(multi: zk_lock::MultiLock) {
    /// for lock in multi.locks() {
    ///     println!("{}", lock.path());
    /// }
    /// # }
    /// ```
    pub fn locks(&self) -> impl Iterator<Item = &dyn Lock> {
        self.locks.iter().map(|l| &**l)
    }

    /// Waits for every member, in canonical order.
    ///
    /// # Errors
    ///
    /// The first member's error (the members taken before it are released first).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future releases what was taken, in the background, and the
    /// member being acquired leaves no node.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(multi: zk_lock::MultiLock) -> zk_lock::Result<()> {
    /// multi.acquire().await?.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self) -> Result<MultiGuard> {
        self.take(|lock| lock.acquire()).await
    }

    /// Like [`acquire`](MultiLock::acquire), with one deadline for the whole operation: each
    /// member may wait only for what is left of it (a member reached with nothing left is still
    /// taken if it is free, as [`Mutex::lock_timeout`](crate::Mutex::lock_timeout) with a zero
    /// deadline). As for one lock, the deadline covers the waits, not the round trips that
    /// queue each member.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (with the path of the member that was waited for, and the whole
    /// deadline) after releasing, in reverse order, what was taken; the member's node is
    /// withdrawn. Any error of [`acquire`](MultiLock::acquire).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`acquire`](MultiLock::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(multi: zk_lock::MultiLock) -> zk_lock::Result<()> {
    /// match multi.acquire_timeout(std::time::Duration::from_secs(2)).await {
    ///     Ok(held) => held.release().await?,
    ///     Err(zk_lock::Error::Timeout { .. }) => println!("not all free within 2 s; none held"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<MultiGuard> {
        let deadline = Instant::now().checked_add(timeout);
        let taken = self
            .take(|lock| {
                let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
                lock.acquire_timeout(left)
            })
            .await;
        match taken {
            Err(Error::Timeout { path, .. }) => Err(Error::Timeout { path, after: timeout }),
            other => other,
        }
    }

    /// Takes every member only if each is free; never waits, and a busy member writes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] (with the busy member's path) after releasing what was taken; any
    /// error of [`acquire`](MultiLock::acquire).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`acquire`](MultiLock::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(multi: zk_lock::MultiLock) -> zk_lock::Result<()> {
    /// if let Ok(held) = multi.try_acquire().await {
    ///     held.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self) -> Result<MultiGuard> {
        self.take(|lock| lock.try_acquire()).await
    }

    /// Takes the members in order with `one`; on the first error, releases in reverse order what
    /// was taken and returns that error. A member lost while the later ones were taken (its
    /// session expired: with a [`Session`](crate::Session) the later ones were granted on the
    /// next one) makes it start again, a bounded number of times: a multi-guard is never
    /// returned with a member already lost.
    async fn take<'a>(
        &'a self,
        mut one: impl FnMut(&'a dyn Lock) -> BoxFuture<'a, Result<LockGuard>>,
    ) -> Result<MultiGuard> {
        const ROUNDS: usize = 8;
        for _ in 0..ROUNDS {
            let mut guards = Vec::with_capacity(self.locks.len());
            for lock in &self.locks {
                match one(&**lock).await {
                    Ok(guard) => guards.push(guard),
                    Err(e) => {
                        // The acquire's error is the one to report; the rollback releases all
                        // the same, and a member that cannot be deleted goes on in the background.
                        let _ = release_all(guards).await;
                        return Err(e);
                    }
                }
            }
            if guards.iter().all(|g| g.state() != LockState::Lost) {
                let paths = self.locks.iter().map(|l| l.path().to_string()).collect();
                return Ok(MultiGuard { guards, paths });
            }
            let _ = release_all(guards).await;
        }
        Err(Error::LockLost { path: self.locks[0].path().to_string() })
    }
}

/// Releases `guards` in reverse order; the first error, if any.
async fn release_all(guards: Vec<LockGuard>) -> Result<()> {
    let mut first = Ok(());
    for guard in guards.into_iter().rev() {
        let released = guard.release().await;
        if first.is_ok() {
            first = released;
        }
    }
    first
}

impl MultiGuard {
    /// The members' guards, in acquisition order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(held: zk_lock::MultiGuard) {
    /// assert!(held.guards().iter().all(|g| g.state() == zk_lock::LockState::Held));
    /// # }
    /// ```
    pub fn guards(&self) -> &[LockGuard] {
        &self.guards
    }

    /// The largest of the members' fencing tokens. It grows from one holder of this *same set*
    /// of locks to the next, so it fences a resource that only multi-locks over this set write.
    /// It does **not** fence a resource that one member protects and other holders of that
    /// member write too (a multi-lock's later members are queued only once the earlier ones are
    /// granted, so its largest token can exceed that of a later plain holder of a member): give
    /// such a resource that member's own token, [`fencing_token_of`](MultiGuard::fencing_token_of).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(held: zk_lock::MultiGuard) {
    /// let token = held.fencing_token();
    /// # }
    /// ```
    pub fn fencing_token(&self) -> FencingToken {
        self.guards.iter().map(LockGuard::fencing_token).max().expect("a multi-lock has members")
    }

    /// The fencing token of the member on `path` (as that member's [`Lock::path`] gives it),
    /// which fences what that member protects exactly as its own guard's would.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(held: zk_lock::MultiGuard) {
    /// if let Some(token) = held.fencing_token_of("/locks/orders") {
    ///     // send it with every write to the orders table
    /// }
    /// # }
    /// ```
    pub fn fencing_token_of(&self, path: &str) -> Option<FencingToken> {
        self.paths.iter().position(|p| p == path).map(|i| self.guards[i].fencing_token())
    }

    /// The worst state of any member: `Lost` if one is lost, else `Suspended` if one is
    /// suspended, else `Held`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(held: zk_lock::MultiGuard) {
    /// if held.state() != zk_lock::LockState::Held {
    ///     return;
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> LockState {
        worst(self.guards.iter().map(LockGuard::state))
    }

    /// Why the multi-lock was lost: the reason of the first member (in acquisition order) that
    /// is `Lost`; `None` while none is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: zk_lock::MultiGuard) {
    /// guard.lost().await;
    /// eprintln!("lost: {}", guard.lost_reason().expect("lost"));
    /// # }
    /// ```
    pub fn lost_reason(&self) -> Option<crate::LostReason> {
        self.guards.iter().find_map(LockGuard::lost_reason)
    }

    /// Moves the end of every member's lease to `lease` from now (see
    /// [`LockGuard::extend`]); the first error, after trying every member.
    ///
    /// # Cancel safety
    ///
    /// As [`LockGuard::extend`], member by member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(held: zk_lock::MultiGuard) -> zk_lock::Result<()> {
    /// held.extend(std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, lease: Duration) -> Result<()> {
        let mut first = Ok(());
        for guard in &self.guards {
            let extended = guard.extend(lease).await;
            if first.is_ok() {
                first = extended;
            }
        }
        first
    }

    /// A watch of [`state`](MultiGuard::state): it changes whenever the worst state of the
    /// members does, and stays `Lost` once a member is lost.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime: a task follows the members.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(held: zk_lock::MultiGuard) {
    /// let mut states = held.state_watcher();
    /// while states.changed().await.is_ok() {
    ///     println!("now {:?}", *states.borrow());
    /// }
    /// # }
    /// ```
    pub fn state_watcher(&self) -> watch::Receiver<LockState> {
        let mut members: Vec<_> = self.guards.iter().map(LockGuard::state_watcher).collect();
        let (tx, rx) = watch::channel(self.state());
        tokio::spawn(async move {
            loop {
                let now = worst(members.iter_mut().map(|m| *m.borrow_and_update()));
                tx.send_if_modified(|cur| std::mem::replace(cur, now) != now);
                if now == LockState::Lost {
                    return;
                }
                let changes = members.iter_mut().map(|m| Box::pin(m.changed()));
                tokio::select! {
                    changed = first_of(changes) => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        rx
    }

    /// Resolves once any member is [`LockState::Lost`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn work() {}
    /// # async fn example(held: zk_lock::MultiGuard) {
    /// tokio::select! {
    ///     _ = work() => {}
    ///     _ = held.lost() => eprintln!("one of the locks is lost: stop"),
    /// }
    /// # }
    /// ```
    pub async fn lost(&self) {
        first_of(self.guards.iter().map(|g| Box::pin(g.lost()))).await;
    }

    /// Releases every member, in reverse acquisition order.
    ///
    /// # Errors
    ///
    /// The first error of a member's [`LockGuard::release`]; every member is released all the
    /// same.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: what is not released yet is deleted in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(held: zk_lock::MultiGuard) -> zk_lock::Result<()> {
    /// held.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<()> {
        release_all(self.guards).await
    }
}

fn worst(states: impl Iterator<Item = LockState>) -> LockState {
    let rank = |s: LockState| match s {
        LockState::Held => 0,
        LockState::Suspended => 1,
        _ => 2,
    };
    states.max_by_key(|s| rank(*s)).unwrap_or(LockState::Held)
}

/// The output of the first of `futures` to finish (never, for none).
async fn first_of<F: std::future::Future + Unpin>(futures: impl IntoIterator<Item = F>) -> F::Output {
    let mut futures: Vec<F> = futures.into_iter().collect();
    std::future::poll_fn(move |cx| {
        for f in &mut futures {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
