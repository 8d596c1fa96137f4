//! What every lock-like handle is: one queue, and the policy of its kind of contender. The
//! recipes' public methods are one line each on top of it.
//!
//! The queue runs on the current session of the handle's [`Connection`]: the same one for
//! life with a plain client, a new one after each expiry with a [`Session`](crate::Session).
//! The engine does not know the difference: a new session gets a new queue.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::events;
use crate::guard::LockGuard;
use crate::held::Held;
use crate::participant::Participant;
use crate::path::LockPath;
use crate::progress::{Position, Progress};
use crate::queue::{Policy, Queue, Spec};
use crate::state::{LockState, LostReason};

/// The queues of one lock on the current session: one per kind of contender sharing the
/// directory (both sides of a read/write lock), so that they share what they learn.
#[derive(Debug)]
pub(crate) struct Lanes {
    conn: Connection,
    specs: Vec<Spec>,
    bound: StdMutex<Option<Vec<Arc<Queue>>>>,
}

impl Lanes {
    pub(crate) fn new(conn: Connection, specs: Vec<Spec>) -> Arc<Lanes> {
        let lanes = Arc::new(Lanes { conn, specs, bound: StdMutex::new(None) });
        if let Some(client) = lanes.conn.client_now() {
            lanes.bind(&client);
        }
        lanes
    }

    fn bind(&self, client: &zk::Client) -> Vec<Arc<Queue>> {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queues) = &*bound {
            if queues[0].client.session_id() == client.session_id() {
                return queues.clone();
            }
        }
        let first = self.specs[0].bind(client.clone());
        let mut queues = Vec::with_capacity(self.specs.len());
        for spec in &self.specs[1..] {
            queues.push(Arc::new(first.sibling(spec.kind())));
        }
        queues.insert(0, Arc::new(first));
        *bound = Some(queues.clone());
        queues
    }

    /// The queues now, if a session has been seen.
    fn last(&self) -> Option<Vec<Arc<Queue>>> {
        self.bound.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Whether `guard` was already lost for doubt about the connection when granted: on a hold
/// that a suspension ends, or because the server had not been heard from for long (say, just
/// after a reconnect), while its session lives on.
fn lost_in_doubt(guard: &LockGuard) -> bool {
    guard.state() == LockState::Lost
        && matches!(guard.lost_reason(), Some(LostReason::ConnectionSuspended | LostReason::SuspendedTooLong))
}

/// Whether `guard` is already lost with its session.
fn lost_with_session(guard: &LockGuard) -> bool {
    guard.state() == LockState::Lost
        && matches!(guard.lost_reason(), Some(LostReason::SessionExpired | LostReason::SuspendedTooLong))
}

#[derive(Debug, Clone)]
pub(crate) struct Handle {
    lanes: Arc<Lanes>,
    lane: usize,
    policy: Arc<dyn Policy>,
    /// A waiting acquire whose session ended queues again on the next one.
    requeue: bool,
}

impl Handle {
    pub(crate) fn new(lanes: Arc<Lanes>, lane: usize, policy: impl Policy + 'static, requeue: bool) -> Handle {
        Handle { lanes, lane, policy: Arc::new(policy), requeue }
    }

    pub(crate) fn path(&self) -> &LockPath {
        self.lanes.specs[self.lane].dir()
    }

    pub(crate) fn server_path(&self) -> String {
        let chroot = match self.lanes.last() {
            Some(queues) => queues[0].client.path().to_owned(),
            None => self.lanes.conn.client_now().map(|c| c.path().to_owned()).unwrap_or_default(),
        };
        match chroot.as_str() {
            "/" | "" => self.path().to_string(),
            chroot => format!("{chroot}{}", self.path()),
        }
    }

    /// Our queue on the current session, waiting for one until `deadline`; `None` if it passed.
    async fn queue(&self, deadline: Option<Instant>) -> Result<Option<Arc<Queue>>> {
        Ok(self.lanes.conn.client(deadline).await?.map(|client| self.lanes.bind(&client)[self.lane].clone()))
    }

    /// Our queue on the current session, for a call that does not wait for its turn: it waits
    /// for a session at most as long as any request is retried.
    async fn queue_now(&self) -> Result<Arc<Queue>> {
        let patience = self.lanes.conn.patience();
        match self.queue(Some(Instant::now() + patience)).await? {
            Some(queue) => Ok(queue),
            None => Err(Error::ConnectionLoss { path: self.path().to_string(), after: patience }),
        }
    }

    /// Runs `attempt` on the current session's queue; when that session ends first (with a
    /// [`Session`](crate::Session)), starts again on the next one, if we re-queue. Without a
    /// deadline, `bounded` calls (those that never wait for their turn) wait for a session at
    /// most as long as any request is retried; the others as long as the session keeps trying.
    async fn on_sessions<F, Fut>(&self, deadline: Option<Instant>, bounded: bool, mut attempt: F) -> Result<LockGuard>
    where
        F: FnMut(Arc<Queue>, Option<Duration>) -> Fut,
        Fut: std::future::Future<Output = Result<LockGuard>>,
    {
        let timed_out = || Error::Timeout { path: self.path().to_string(), after: Duration::ZERO };
        let conn = &self.lanes.conn;
        loop {
            let queue = match deadline {
                Some(at) => self.queue(Some(at)).await?.ok_or_else(timed_out)?,
                None if bounded => self.queue_now().await?,
                None => self.queue(None).await?.ok_or_else(timed_out)?,
            };
            let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
            let client = queue.client.clone();
            let result = tokio::select! {
                // Our session is over, though the client may not have said so yet: dropping the
                // attempt deletes its node (if the session still lives), and we go on. (First:
                // a grant on a session already replaced is not worth keeping.)
                biased;
                () = conn.replaced(&client) => Err(Error::SessionExpired),
                result = attempt(queue, left) => result,
            };
            let result = match result {
                // Granted while the connection was in doubt (a hold that a suspension ends, or
                // any hold after 85 % of the session timeout without contact), the session
                // still ours: ours for no moment at all. Its node is deleted; queue again (at
                // the back, as Curator's latch does after a suspension), or report it to a call
                // that does not wait.
                Ok(guard) if lost_in_doubt(&guard) && conn.is_current(&client) && !client.state().is_terminated() => {
                    drop(guard);
                    if bounded {
                        return Err(Error::ConnectionLoss { path: self.path().to_string(), after: Duration::ZERO });
                    }
                    if deadline.is_some_and(|at| Instant::now() >= at) {
                        return Err(timed_out());
                    }
                    events::requeued_in_doubt(self.path().as_str(), client.session_id());
                    continue;
                }
                // Granted, but the session ended meanwhile: that hold is worth nothing (a plain
                // client reports it; a `Session` may queue again below).
                Ok(guard) if !conn.is_current(&client) || lost_with_session(&guard) => {
                    drop(guard);
                    Err(Error::SessionExpired)
                }
                other => other,
            };
            match result {
                Err(Error::SessionExpired | Error::SessionClosed) if self.requeue && conn.heals() => {
                    events::requeued(self.path().as_str(), client.session_id());
                    // Not on the dead session again: wait for the next one.
                    match deadline {
                        Some(at) => {
                            tokio::time::timeout_at(at, conn.replaced(&client)).await.map_err(|_| timed_out())?
                        }
                        None => conn.replaced(&client).await,
                    }
                }
                other => return other,
            }
        }
    }

    /// Waits for our turn (for at most `timeout`); `name` names the call in traces.
    pub(crate) async fn acquire(
        &self,
        name: &'static str,
        timeout: Option<Duration>,
        progress: Option<&Progress>,
    ) -> Result<LockGuard> {
        // A deadline too far to represent is no deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let policy = &*self.policy;
        let result = self
            .on_sessions(deadline, false, |queue, left| async move {
                crate::progress::report(progress, Position::Joining);
                // Without a deadline, we wait as long as it takes (`left` is `None`).
                let ticket = queue.acquire(name, policy, left, std::future::ready(Ok(())), progress).await?;
                Ok(LockGuard::new(Held::grant(&queue, ticket)))
            })
            .await;
        if result.is_ok() {
            // Only now: a grant on a session that was replaced meanwhile is not kept.
            crate::progress::report(progress, Position::Granted);
        }
        match (result, timeout) {
            // The deadline passed while no session was up: it is the caller's deadline.
            (Err(Error::Timeout { path, .. }), Some(after)) => Err(Error::Timeout { path, after }),
            (result, _) => result,
        }
    }

    pub(crate) async fn try_acquire(&self, name: &'static str) -> Result<LockGuard> {
        let policy = &*self.policy;
        self.on_sessions(None, true, |queue, _| async move {
            let ticket = queue.try_acquire(name, policy).await?;
            Ok(LockGuard::new(Held::grant(&queue, ticket)))
        })
        .await
    }

    /// Releases `guard` and queues again, in one round trip (on the guard's session; on a new
    /// one, the old guard is dropped, its node deleted in the background if the session lives).
    pub(crate) async fn reacquire(&self, name: &'static str, guard: LockGuard) -> Result<LockGuard> {
        let policy = &*self.policy;
        let mut old = Some(guard);
        self.on_sessions(None, false, |queue, _| {
            let old = old.take();
            async move {
                let release = async {
                    match old {
                        // The release goes out first, then the create and the listing, all
                        // before any answer is awaited.
                        Some(old) if old.session_id() == queue.client.session_id() => old.release().await,
                        _ => Ok(()),
                    }
                };
                let ticket = queue.acquire(name, policy, None, release, None).await?;
                Ok(LockGuard::new(Held::grant(&queue, ticket)))
            }
        })
        .await
    }

    pub(crate) async fn participants(&self) -> Result<Vec<Participant>> {
        self.queue_now().await?.participants().await
    }

    /// Asks the first contender (the holder) to let go; its node, `None` when nobody holds.
    pub(crate) async fn revoke_first(&self) -> Result<Option<String>> {
        let queue = self.queue_now().await?;
        // Each miss is a holder that left meanwhile: ask the next, a bounded number of times.
        for _ in 0..64 {
            let Some(first) = queue.first().await?.0 else { return Ok(None) };
            if crate::revoke::revoke(&queue.client, first.node()).await? {
                return Ok(Some(first.node().to_owned()));
            }
        }
        Ok(None)
    }

    /// The first contender now, a watch that fires when that may change, and the client (the
    /// session) the watch is on.
    pub(crate) async fn first(&self) -> Result<(Option<Participant>, zk::OneshotWatcher, zk::Client)> {
        let queue = self.queue_now().await?;
        let (first, watcher) = queue.first().await?;
        Ok((first, watcher, queue.client.clone()))
    }

    /// Resolves once `client`'s session is no longer the one to use (never for a plain client).
    pub(crate) async fn replaced(&self, client: &zk::Client) {
        self.lanes.conn.replaced(client).await
    }
}
