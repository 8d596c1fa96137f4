//! Where a waiting acquire stands: how many contenders are ahead of it, as it learns it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Where an acquire stands, as reported through a [`Progress`].
///
/// # Examples
///
/// ```
/// use zk_lock::Position;
///
/// let p = Position::Waiting { ahead: 2 };
/// assert_eq!(p.ahead(), Some(2));
/// assert_eq!(Position::Granted.ahead(), Some(0));
/// assert_eq!(Position::Joining.ahead(), None);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Position {
    /// Not in the queue yet (connecting, or the create is on its way).
    #[default]
    Joining,
    /// In the queue, behind `ahead` contenders (for a semaphore or a reader: everyone ahead,
    /// holders included, not only those it waits for).
    Waiting {
        /// How many contenders are ahead of us.
        ahead: usize,
    },
    /// Granted.
    Granted,
}

impl Position {
    /// How many are ahead: `None` before we are in the queue, 0 once granted.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(zk_lock::Position::Waiting { ahead: 3 }.ahead(), Some(3));
    /// ```
    pub fn ahead(&self) -> Option<usize> {
        match self {
            Position::Joining => None,
            Position::Waiting { ahead } => Some(*ahead),
            Position::Granted => Some(0),
        }
    }
}

/// A report channel for an acquire: give it to [`Lock::acquire_with`](crate::Lock::acquire_with)
/// (or [`Mutex::lock_with`](crate::Mutex::lock_with), [`LeaderElection::campaign_with`](crate::LeaderElection::campaign_with)),
/// and follow the [`Position`] on the receiver.
///
/// What it costs: nothing by default; the position is updated from the listings the acquire
/// makes anyway (when it joins, and each time it is woken, that is when the contender it waits
/// for goes). Contenders further ahead that leave do not wake a waiter (that is what keeps the
/// queue herd-free), so with [`refresh_every`](Progress::refresh_every) the waiter also lists
/// the queue again on that period: one listing (`getChildren`, no watch) per period, per
/// waiter, while the same contender blocks it (it keeps waiting on its watch). A semaphore's
/// first waiter, which watches the directory, lists it again with its watch (the client also
/// removes the old one: two requests). Keep the period long (seconds) for long queues.
///
/// `ahead` counts every contender before us in the queue: for a semaphore's waiter that
/// includes the holders (with 4 permits held, its first waiter is 4 ahead), for a reader the
/// readers it shares with.
///
/// # Examples
///
/// ```no_run
/// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
/// use std::time::Duration;
/// use zk_lock::Progress;
///
/// let (progress, mut position) = Progress::new();
/// let progress = progress.refresh_every(Duration::from_secs(5));
/// tokio::spawn(async move {
///     while position.changed().await.is_ok() {
///         eprintln!("{:?}", *position.borrow());
///     }
/// });
/// let guard = mutex.lock_with(None, &progress).await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Progress {
    tx: Arc<watch::Sender<Position>>,
    refresh: Option<Duration>,
}

impl Progress {
    /// A report channel, and its receiver (which starts at [`Position::Joining`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let (progress, position) = zk_lock::Progress::new();
    /// assert_eq!(*position.borrow(), zk_lock::Position::Joining);
    /// ```
    pub fn new() -> (Progress, watch::Receiver<Position>) {
        let (tx, rx) = watch::channel(Position::Joining);
        (Progress { tx: Arc::new(tx), refresh: None }, rx)
    }

    /// Also lists the queue again every `every` while waiting (see the cost above). A zero
    /// period turns it off.
    ///
    /// # Examples
    ///
    /// ```
    /// let (progress, _position) = zk_lock::Progress::new();
    /// let progress = progress.refresh_every(std::time::Duration::from_secs(2));
    /// ```
    pub fn refresh_every(mut self, every: Duration) -> Progress {
        self.refresh = (!every.is_zero()).then_some(every);
        self
    }

    pub(crate) fn report(&self, position: Position) {
        self.tx.send_if_modified(|cur| {
            let changed = *cur != position;
            *cur = position;
            changed
        });
    }

    /// Resolves when the next refresh is due (never without one).
    pub(crate) async fn tick(&self) {
        match self.refresh {
            Some(every) => tokio::time::sleep(every).await,
            None => std::future::pending().await,
        }
    }
}

/// Reports to an optional [`Progress`].
pub(crate) fn report(progress: Option<&Progress>, position: Position) {
    if let Some(p) = progress {
        p.report(position);
    }
}

/// Resolves when an optional [`Progress`]'s refresh is due.
pub(crate) async fn tick(progress: Option<&Progress>) {
    match progress {
        Some(p) => p.tick().await,
        None => std::future::pending().await,
    }
}
