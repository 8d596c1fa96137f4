//! The `tracing` events of the engine, defined once so that every recipe emits the same ones.
//!
//! All have target `zk_lock`. Fields: `lock` (the lock path), `node` (our node's full path),
//! `session` (the session id, hex), `token` (the fencing token, hex), `waited_ms` / `held_ms`
//! (milliseconds since the acquire began / since the grant). They are listed in the crate
//! documentation, under "Tracing".

use std::time::Duration;

use tracing::{debug, error, info, warn};
use zookeeper_client as zk;

use crate::state::LockState;
use crate::token::FencingToken;

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

pub(crate) fn enqueued(lock: &str, node: &str, session: zk::SessionId, token: FencingToken) {
    debug!(target: "zk_lock", lock, node, %session, %token, "enqueued");
}

pub(crate) fn granted(
    lock: &str,
    node: &str,
    session: zk::SessionId,
    token: FencingToken,
    ahead: usize,
    waited: Duration,
    by: &'static str,
) {
    debug!(target: "zk_lock", lock, node, %session, %token, ahead, waited_ms = ms(waited), by, "granted");
}

pub(crate) fn busy(lock: &str, session: zk::SessionId) {
    debug!(target: "zk_lock", lock, %session, "busy: try_lock wrote nothing");
}

/// An acquire that ended without a grant: `why` is `"cancelled"`, `"timed out"`, `"busy"` (a
/// `try_lock` that enqueued and found someone first) or the error.
pub(crate) fn abandoned(lock: &str, node: Option<&str>, session: zk::SessionId, waited: Duration, why: &str) {
    debug!(target: "zk_lock", lock, node, %session, waited_ms = ms(waited), why, "acquire abandoned");
}

pub(crate) fn released(lock: &str, node: &str, session: zk::SessionId, token: FencingToken, held: Duration) {
    debug!(target: "zk_lock", lock, node, %session, %token, held_ms = ms(held), "released");
}

pub(crate) fn guard_dropped(lock: &str, node: &str, session: zk::SessionId, token: FencingToken, held: Duration) {
    debug!(target: "zk_lock", lock, node, %session, %token, held_ms = ms(held), "guard dropped: deleting in the background");
}

pub(crate) fn background_delete(lock: &str, node: Option<&str>, outcome: Result<&'static str, &crate::Error>) {
    match outcome {
        Ok(outcome) => debug!(target: "zk_lock", lock, node, outcome, "background delete done"),
        Err(error) => {
            error!(target: "zk_lock", lock, node, %error, "background delete failed: the node stays until the session ends")
        }
    }
}

pub(crate) fn state_changed(lock: &str, node: &str, session: zk::SessionId, state: LockState) {
    info!(target: "zk_lock", lock, node, %session, ?state, "lock state changed");
}

pub(crate) fn lost(lock: &str, node: &str, session: zk::SessionId, reason: crate::LostReason) {
    warn!(target: "zk_lock", lock, node, %session, %reason, "lock lost");
}

pub(crate) fn connection_state(state: crate::ConnectionState, session: zk::SessionId) {
    match state {
        crate::ConnectionState::Lost | crate::ConnectionState::Suspended => {
            warn!(target: "zk_lock", ?state, %session, "connection state changed")
        }
        _ => info!(target: "zk_lock", ?state, %session, "connection state changed"),
    }
}

/// An acquire granted while the connection was in doubt (so lost at once) queues again.
pub(crate) fn requeued_in_doubt(lock: &str, session: zk::SessionId) {
    info!(target: "zk_lock", lock, session = %session, "granted while the connection was in doubt: queueing again");
}

/// A waiting acquire whose session ended queues again on the new one.
pub(crate) fn requeued(lock: &str, old: zk::SessionId) {
    info!(target: "zk_lock", lock, old_session = %old, "session lost while waiting: queueing again on the new session");
}
