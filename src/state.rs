//! What a holder knows about its lock: held, suspended or lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::events;
use crate::monitor::SessionShared;
use crate::queue::{Spec, Ticket};

/// The state of a held lock, as far as its holder can know it.
///
/// It follows Apache Curator's contract, per lock rather than per connection:
///
/// * [`Held`](LockState::Held): the session is connected and our lock node exists.
/// * [`Suspended`](LockState::Suspended): we cannot reach the server right now, so we can no
///   longer be sure; stop work that needs the lock, or fence it. It goes back to `Held` when the
///   connection comes back in time.
/// * [`Lost`](LockState::Lost): we certainly do not hold the lock, or the server may already have
///   given it to someone else: the session expired or was closed, our node was deleted, or we have
///   not heard from the server for so long that it may have expired the session. `Lost` is final.
///
/// `Lost` is reported *before* the server can expire the session: the clock starts at the last
/// moment the server is known to have heard from us, and `Lost` is declared at 85 % of the
/// negotiated session timeout after it, whatever the connection is doing. A process that was
/// itself paused (SIGSTOP, a long GC-like stall) finds its guards `Lost` as soon as it looks.
///
/// # Examples
///
/// ```no_run
/// # async fn example(guard: zk_lock::MutexGuard) {
/// use zk_lock::LockState;
///
/// match guard.state() {
///     LockState::Held => { /* go on */ }
///     LockState::Suspended => { /* pause, or write only with the fencing token */ }
///     LockState::Lost => { /* stop: someone else may hold it now */ }
///     _ => {}
/// }
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockState {
    /// Connected, and our lock node exists.
    Held,
    /// The connection is lost for now; we can no longer be sure we hold the lock.
    Suspended,
    /// We do not hold the lock (any more), or may not. Final.
    Lost,
}

/// Why a lock was lost: from [`LockGuard::lost_reason`](crate::LockGuard::lost_reason) once its
/// state is [`LockState::Lost`], and in the `lock lost` event (at WARN).
///
/// # Examples
///
/// ```no_run
/// # async fn example(guard: zk_lock::LockGuard) {
/// use zk_lock::LostReason;
///
/// guard.lost().await;
/// match guard.lost_reason() {
///     Some(LostReason::LeaseExpired) => eprintln!("we held it longer than the lease allows"),
///     Some(reason) => eprintln!("lost: {reason}"),
///     None => unreachable!("lost() resolved"),
/// }
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostReason {
    /// The session is over: the server expired or closed it (every node of it is gone).
    SessionExpired,
    /// We could not reach the server for 85 % of the session timeout: it may expire the session
    /// any moment now, so we may no longer count on holding the lock.
    SuspendedTooLong,
    /// Our lock node was deleted by someone else.
    NodeDeleted,
    /// Our lock node was written by someone else, or belongs to another session: it may have
    /// passed the lock on.
    NodeTaken,
    /// The lease (maximum hold time) ran out: see [`LockBuilder::lease`](crate::LockBuilder::lease).
    LeaseExpired,
    /// Someone asked us to let go ([`revoke`](crate::revoke)) and then deleted our node.
    Revoked,
    /// The connection was suspended, and this hold ends on a suspension: a leadership by
    /// default, or a lock built with
    /// [`lose_on_suspend(true)`](crate::LockBuilder::lose_on_suspend). Our node is deleted as
    /// soon as the connection is back, if the session is still alive.
    ConnectionSuspended,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LostReason::SessionExpired => "session expired",
            LostReason::SuspendedTooLong => "no contact with the server for 85% of the session timeout",
            LostReason::NodeDeleted => "lock node deleted by someone else",
            LostReason::NodeTaken => "lock node written by someone else, or owned by another session",
            LostReason::LeaseExpired => "lease ran out",
            LostReason::Revoked => "revoked: lock node deleted after a request to let go",
            LostReason::ConnectionSuspended => "connection suspended, which ends this hold",
        })
    }
}

/// The state of one held lock, shared by its guards and the session monitor.
#[derive(Debug)]
pub(crate) struct Tracker {
    tx: watch::Sender<LockState>,
    session: Arc<SessionShared>,
    /// The lock path.
    lock: String,
    /// Full path of our lock node.
    pub(crate) node: String,
    /// When it was granted.
    pub(crate) since: Instant,
    /// Set while the holder deletes its own node on purpose, so that the deletion (or the
    /// handoff's write) is not taken for a loss. A loss of the session still is one.
    releasing: AtomicBool,
    /// Set once a watch on our own node has been armed by the monitor.
    pub(crate) watched: AtomicBool,
    /// How many times we wrote our node ourselves while holding: its expected data version.
    pub(crate) own_writes: i32,
    /// Whether a write to our node would pass the lock on (see `Ticket::writes_hand_off`).
    pub(crate) writes_hand_off: bool,
    /// Others may write our node to ask us to let go (see `LockBuilder::revocable`).
    pub(crate) revocable: bool,
    /// A suspension ends the hold (see `LockBuilder::lose_on_suspend`).
    lose_on_suspend: bool,
    /// Set once someone asked us to let go.
    revocation: watch::Sender<bool>,
    /// Why we lost it, once we did.
    reason: std::sync::OnceLock<LostReason>,
    /// When the lease ends, if the lock has one.
    lease: Option<watch::Sender<tokio::time::Instant>>,
}

impl Tracker {
    pub(crate) fn new(
        session: Arc<SessionShared>,
        lock: String,
        node: String,
        ticket: &Ticket,
        spec: &Spec,
    ) -> Arc<Tracker> {
        let doubt = if spec.lose_on_suspend { session.in_doubt(Instant::now()) } else { !session.connected() };
        let initial = if doubt { LockState::Suspended } else { LockState::Held };
        let (tx, _) = watch::channel(initial);
        let tracker = Arc::new(Tracker {
            tx,
            session,
            lock,
            node,
            since: Instant::now(),
            releasing: AtomicBool::new(false),
            watched: AtomicBool::new(false),
            own_writes: ticket.own_writes,
            writes_hand_off: ticket.writes_hand_off,
            revocable: spec.revocable,
            lose_on_suspend: spec.lose_on_suspend,
            revocation: watch::channel(false).0,
            reason: std::sync::OnceLock::new(),
            lease: ticket.lease.map(|(at, _)| watch::channel(at).0),
        });
        if initial == LockState::Suspended {
            tracker.set_connected(false);
        }
        tracker.session.register(&tracker);
        tracker
    }

    /// The state now, noticing a passed deadline even if no task ran since (e.g. after the
    /// process was paused).
    pub(crate) fn state(&self) -> LockState {
        if *self.tx.borrow() != LockState::Lost {
            if self.session.may_have_expired(Instant::now()) {
                let reason =
                    if self.session.is_over() { LostReason::SessionExpired } else { LostReason::SuspendedTooLong };
                self.lose_session(reason);
            } else if self.lose_on_suspend && self.session.in_doubt(Instant::now()) {
                // Seen here before the monitor's task could run: the connection just dropped.
                self.set_connected(false);
            }
        }
        *self.tx.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<LockState> {
        self.state();
        self.tx.subscribe()
    }

    /// Moves between `Held` and `Suspended`; never out of `Lost`. A hold that a suspension ends
    /// goes to `Lost` instead of `Suspended`.
    pub(crate) fn set_connected(&self, connected: bool) {
        if !connected && self.lose_on_suspend {
            let over = self.session.is_over();
            self.lose_session(if over { LostReason::SessionExpired } else { LostReason::ConnectionSuspended });
            return;
        }
        let next = if connected { LockState::Held } else { LockState::Suspended };
        self.tx.send_if_modified(|cur| {
            if *cur == LockState::Lost || *cur == next {
                return false;
            }
            events::state_changed(&self.lock, &self.node, self.session.session_id(), next);
            *cur = next;
            true
        });
    }

    /// Declares the lock lost, once, because of the session: it may have expired (or has), so
    /// the server may give the lock to someone else. Also while we release: a release that did
    /// not finish before the session was lost does not make the lock ours until then.
    pub(crate) fn lose_session(&self, reason: LostReason) {
        self.tx.send_if_modified(|cur| {
            if *cur == LockState::Lost {
                return false;
            }
            let _ = self.reason.set(reason);
            events::lost(&self.lock, &self.node, self.session.session_id(), reason);
            *cur = LockState::Lost;
            true
        });
    }

    /// Declares the lock lost because something happened to our node (deleted or written by
    /// someone else); not while we release it ourselves, when that is our own doing.
    pub(crate) fn lose_node(&self, reason: LostReason) {
        if !self.releasing.load(Ordering::Acquire) {
            // Deleted after someone asked us to let go: that was the revoker.
            let reason = match reason {
                LostReason::NodeDeleted if *self.revocation.borrow() => LostReason::Revoked,
                other => other,
            };
            self.lose_session(reason);
        }
    }

    /// Why the lock was lost; `None` while it is not `Lost`.
    pub(crate) fn lost_reason(&self) -> Option<LostReason> {
        match self.state() {
            LockState::Lost => self.reason.get().copied(),
            _ => None,
        }
    }

    /// Whether a suspension ends this hold.
    pub(crate) fn loses_on_suspend(&self) -> bool {
        self.lose_on_suspend
    }

    /// Whether the node of this hold, which a suspension ended, is still to be deleted; `true`
    /// once, to the caller that is to delete it, which it marks as releasing it (unless the
    /// holder already releases it).
    pub(crate) fn take_withdrawal(&self) -> bool {
        self.lose_on_suspend
            && matches!(self.reason.get(), Some(LostReason::ConnectionSuspended | LostReason::SuspendedTooLong))
            && !self.releasing.swap(true, Ordering::AcqRel)
    }

    /// Someone asked us to let go: says so once.
    pub(crate) fn request_revocation(&self) {
        self.revocation.send_if_modified(|asked| {
            if *asked {
                return false;
            }
            tracing::info!(target: "zk_lock", lock = %self.lock, node = %self.node, "revocation requested");
            *asked = true;
            true
        });
    }

    pub(crate) fn revocation(&self) -> watch::Receiver<bool> {
        self.revocation.subscribe()
    }

    /// The lease end, to follow; `None` without a lease.
    pub(crate) fn lease_end(&self) -> Option<watch::Receiver<tokio::time::Instant>> {
        self.lease.as_ref().map(watch::Sender::subscribe)
    }

    /// Moves the lease end; `false` without a lease.
    pub(crate) fn set_lease_end(&self, at: tokio::time::Instant) -> bool {
        match &self.lease {
            Some(tx) => {
                tx.send_replace(at);
                true
            }
            None => false,
        }
    }

    pub(crate) fn lock(&self) -> &str {
        &self.lock
    }

    pub(crate) fn start_release(&self) {
        self.releasing.store(true, Ordering::Release);
    }

    pub(crate) fn is_releasing(&self) -> bool {
        self.releasing.load(Ordering::Acquire)
    }

    pub(crate) fn session(&self) -> &Arc<SessionShared> {
        &self.session
    }
}
