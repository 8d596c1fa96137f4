//! The session monitor: when did the server last hear from us, and is the connection up?
//!
//! One monitor runs per ZooKeeper session (and chroot) while locks are held or awaited on it. It
//! keeps `last_heard`, a lower bound of the last moment the *leader* received something from us:
//! the send time of the latest write or `sync` that got an answer (reads are not counted: a
//! follower cut off from the leader still answers them while the leader expires the session).
//! The server cannot expire the session before `last_heard + session_timeout`, so a holder that
//! declares its lock lost at `last_heard + LOST_AFTER` is always earlier than the server. While
//! locks are held or awaited, a heartbeat (a `sync`) keeps `last_heard` fresh, and after a lock
//! has been held for one heartbeat period a data watch on its own node tells when someone deletes
//! or writes it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use zookeeper_client as zk;

use crate::error::{outcome, Outcome};
use crate::state::{LostReason, Tracker};

/// Share of the session timeout after `last_heard` at which held locks are declared lost.
const LOST_AFTER: (u32, u32) = (17, 20);
/// Share of the session timeout without contact after which held locks are suspended (the
/// client itself notices a dead connection after 0.4 of it; this catches what it does not).
const SUSPEND_AFTER: (u32, u32) = (1, 2);
/// Share of the session timeout between heartbeats while locks are held.
const HEARTBEAT_EVERY: (u32, u32) = (1, 10);

fn share(d: Duration, (n, m): (u32, u32)) -> Duration {
    d * n / m
}

type Registry = StdMutex<HashMap<(i64, String), Weak<SessionShared>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// What every lock on one session shares.
#[derive(Debug)]
pub(crate) struct SessionShared {
    client: zk::Client,
    base: Instant,
    /// Nanoseconds after `base` of the last send whose answer came back.
    heard: AtomicU64,
    trackers: StdMutex<Vec<Weak<Tracker>>>,
    /// Contenders of this session waiting for their turn.
    waiting: std::sync::atomic::AtomicUsize,
    wake: Arc<Notify>,
    /// The monitor is running its timers (something is held or awaited): a newcomer needs no
    /// wake-up, the next tick takes it in.
    active: AtomicBool,
    terminated: AtomicBool,
    pub(crate) lost_after: Duration,
    pub(crate) suspend_after: Duration,
    pub(crate) heartbeat_every: Duration,
}

impl SessionShared {
    /// The shared state of `client`'s session, made (and its monitor started) on first use.
    /// Must be called within a tokio runtime.
    pub(crate) fn for_client(client: &zk::Client) -> Arc<SessionShared> {
        let key = (client.session_id().0, client.path().to_owned());
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = map.get(&key).and_then(Weak::upgrade) {
            return shared;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let timeout = client.session_timeout();
        // Far enough in the past that a send time is never before it: `last_heard` starts out
        // long ago, until the first answer.
        let now = Instant::now();
        let base = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
        let shared = Arc::new(SessionShared {
            client: client.clone(),
            base,
            heard: AtomicU64::new(0),
            trackers: StdMutex::new(Vec::new()),
            waiting: Default::default(),
            wake: Arc::new(Notify::new()),
            active: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            lost_after: share(timeout, LOST_AFTER),
            suspend_after: share(timeout, SUSPEND_AFTER),
            heartbeat_every: share(timeout, HEARTBEAT_EVERY).max(Duration::from_millis(10)),
        });
        map.insert(key, Arc::downgrade(&shared));
        tokio::spawn(monitor(Arc::downgrade(&shared), shared.wake.clone()));
        shared
    }

    /// Counts a contender of this session as waiting until the returned token is dropped: the
    /// monitor keeps `last_heard` fresh meanwhile, so that a lock granted after a long wait
    /// starts out `Held`.
    pub(crate) fn waiting(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.wake_if_idle();
        Waiting(self.clone())
    }

    pub(crate) fn session_id(&self) -> zk::SessionId {
        self.client.session_id()
    }

    /// Whether the client is connected right now.
    pub(crate) fn connected(&self) -> bool {
        self.client.state() == zk::SessionState::SyncConnected
    }

    /// Records that a write or `sync` sent at `sent` was answered.
    pub(crate) fn heard(&self, sent: Instant) {
        let nanos = sent.saturating_duration_since(self.base).as_nanos() as u64;
        self.heard.fetch_max(nanos, Ordering::AcqRel);
    }

    fn last_heard(&self) -> Instant {
        self.base + Duration::from_nanos(self.heard.load(Ordering::Acquire))
    }

    /// Whether we cannot be sure of the connection at `now`: it is down, or the server has not
    /// answered for half the session timeout.
    pub(crate) fn in_doubt(&self, now: Instant) -> bool {
        !self.connected() || now >= self.last_heard() + self.suspend_after
    }

    /// Whether the session is known to be over.
    pub(crate) fn is_over(&self) -> bool {
        self.terminated.load(Ordering::Acquire) || self.client.state().is_terminated()
    }

    /// Whether the server may have expired the session by `now`, as far as we can know.
    pub(crate) fn may_have_expired(&self, now: Instant) -> bool {
        self.terminated.load(Ordering::Acquire) || now >= self.last_heard() + self.lost_after
    }

    pub(crate) fn register(&self, tracker: &Arc<Tracker>) {
        if self.is_over() {
            tracker.lose_session(LostReason::SessionExpired);
        }
        let mut trackers = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        if trackers.len() >= 16 {
            trackers.retain(|w| w.strong_count() > 0);
        }
        trackers.push(Arc::downgrade(tracker));
        drop(trackers);
        if tracker.revocable {
            // Its self-watch is due at once: a busy monitor would see it only at its next tick.
            self.wake.notify_one();
        } else {
            self.wake_if_idle();
        }
    }

    /// Wakes the monitor if it sleeps without timers. Paired with the monitor's "clear `active`,
    /// then look again" (both `SeqCst`), no newcomer is missed.
    fn wake_if_idle(&self) {
        if !self.active.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    fn live_trackers(&self) -> Vec<Arc<Tracker>> {
        let mut trackers = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        trackers.retain(|w| w.strong_count() > 0);
        trackers.iter().filter_map(Weak::upgrade).collect()
    }
}

/// See [`SessionShared::waiting`].
#[derive(Debug)]
pub(crate) struct Waiting(Arc<SessionShared>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for SessionShared {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

type Heartbeat<'a> = Pin<Box<dyn std::future::Future<Output = (Instant, Result<(), zk::Error>)> + Send + 'a>>;

async fn monitor(weak: Weak<SessionShared>, wake: Arc<Notify>) {
    let Some(client) = weak.upgrade().map(|s| s.client.clone()) else { return };
    let mut states = client.state_watcher();
    let mut heartbeat: Option<Heartbeat<'_>> = None;
    // When the connection last changed (lost, or re-established): an answer to a request sent
    // before that says nothing about the session now, so `Held` comes back only with one sent
    // after it. (Any change counts: the state watch may skip the `Disconnected` in between.)
    let mut broken: Option<Instant> = None;
    loop {
        let Some(s) = weak.upgrade() else { return };
        let now = Instant::now();
        let state = client.state();
        let mut trackers = s.live_trackers();
        if state.is_terminated() {
            s.terminated.store(true, Ordering::Release);
            for t in &trackers {
                t.lose_session(LostReason::SessionExpired);
            }
            return;
        }
        let idle =
            |s: &SessionShared, trackers: &[Arc<Tracker>]| trackers.is_empty() && s.waiting.load(Ordering::SeqCst) == 0;
        if idle(&s, &trackers) {
            s.active.store(false, Ordering::SeqCst);
            trackers = s.live_trackers();
            if idle(&s, &trackers) {
                heartbeat = None;
                drop(s);
                wake.notified().await;
                // What the connection did while nothing was held or awaited says nothing about
                // what comes next: a grant from now on is proven by its own answer.
                states.state();
                broken = None;
                continue;
            }
        }
        s.active.store(true, Ordering::SeqCst);
        let heard = s.last_heard();
        let connected = state == zk::SessionState::SyncConnected;
        if now >= heard + s.lost_after {
            for t in &trackers {
                t.lose_session(LostReason::SuspendedTooLong);
            }
        }
        let confirmed = broken.is_none_or(|broken| heard > broken);
        let fresh = connected && confirmed && now < heard + s.suspend_after;
        // A hold that a suspension ends is lost only on real doubt: no connection, or no answer
        // for half the session timeout. (A change of connection noticed late, with the session
        // alive and our node still there, let nobody else in.)
        let sure = !s.in_doubt(now);
        let mut next = now + s.heartbeat_every;
        for t in &trackers {
            t.set_connected(if t.loses_on_suspend() { sure } else { fresh });
            if t.take_withdrawal() {
                // A suspension ended the hold: our node goes as soon as the connection is back.
                tokio::spawn(crate::cleanup::delete_lost(t.clone(), client.clone(), "hold ended by a suspension"));
            }
            if !t.watched.load(Ordering::Acquire) {
                // A revocable hold watches its node at once: a request to let go is news.
                let due = if t.revocable { t.since } else { t.since + s.heartbeat_every };
                if connected && now >= due {
                    t.watched.store(true, Ordering::Release);
                    tokio::spawn(watch_node(Arc::downgrade(t), client.clone()));
                } else if due > now {
                    next = next.min(due);
                }
            }
        }
        if heartbeat.is_none() && connected && (!confirmed || now >= heard + s.heartbeat_every) {
            // A sync goes through the leader: its answer proves the leader heard from us.
            let sent = now;
            let probe = client.sync("/");
            heartbeat = Some(Box::pin(async move { (sent, probe.await) }));
        }
        for at in [heard + s.heartbeat_every, heard + s.suspend_after, heard + s.lost_after] {
            if at > now {
                next = next.min(at);
            }
        }
        drop(trackers);
        drop(s);
        tokio::select! {
            _ = states.changed() => broken = Some(Instant::now()),
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = wake.notified() => {}
            (sent, result) = async { heartbeat.as_mut().expect("guarded").await }, if heartbeat.is_some() => {
                heartbeat = None;
                if result.is_ok() {
                    if let Some(s) = weak.upgrade() {
                        s.heard(sent);
                    }
                }
            }
        }
    }
}

/// What a revoker writes into a holder's node: Apache Curator's `Revoker` protocol.
pub(crate) const REVOKE: &[u8] = b"__REVOKE__";

/// Watches the holder's own node, so that its deletion by anyone but the holder is a loss.
async fn watch_node(tracker: Weak<Tracker>, client: zk::Client) {
    for _ in 0..u32::MAX {
        let Some(t) = tracker.upgrade() else { return };
        if t.is_releasing() {
            return;
        }
        let path = t.node.clone();
        let own_writes = t.own_writes;
        let writes_hand_off = t.writes_hand_off;
        let revocable = t.revocable;
        let session = t.session().clone();
        let retry_in = session.heartbeat_every;
        drop(t);
        let result = client.get_and_watch_data(&path).await;
        let lose = |reason: LostReason| {
            if let Some(t) = tracker.upgrade() {
                t.lose_node(reason);
            }
        };
        match result {
            Ok((data, stat, watcher)) => {
                drop(session);
                if stat.ephemeral_owner != client.session_id().0 {
                    lose(LostReason::NodeTaken);
                    return;
                }
                // Only our own release (and a semaphore's grant, counted in `own_writes`)
                // writes our node: anyone else's write may have handed the lock on.
                if revocable && data == REVOKE {
                    // Others may write a revocable node: only a request to let go means anything.
                    if let Some(t) = tracker.upgrade() {
                        t.request_revocation();
                    }
                }
                // (A node whose writes hand nothing on may be written: a leader publishing, a
                // revoker asking.)
                if writes_hand_off && stat.version > own_writes {
                    lose(LostReason::NodeTaken);
                    return;
                }
                let event = watcher.changed().await;
                match event.event_type {
                    zk::EventType::NodeDeleted => {
                        lose(LostReason::NodeDeleted);
                        return;
                    }
                    zk::EventType::Session => return,
                    // Look again: whose write it was shows in the version.
                    _ => continue,
                }
            }
            Err(zk::Error::NoNode) => {
                lose(LostReason::NodeDeleted);
                return;
            }
            Err(e) if outcome(&e) == Outcome::Terminal => return,
            Err(_) => {
                drop(session);
                tokio::time::sleep(retry_in).await;
            }
        }
    }
}
