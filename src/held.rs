//! What every guard of a held lock shares: the node, its token, its state, and the duty to
//! delete it.

use std::sync::Arc;

use tracing::Instrument;

use zookeeper_client as zk;

use crate::cleanup::{Gone, NodeCleanup};
use crate::error::{Error, Result};
use crate::events;
use crate::path::LockPath;
use crate::queue::{Queue, Ticket};
use crate::state::{LockState, Tracker};
use crate::token::FencingToken;

#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) lock: LockPath,
    pub(crate) seq: i64,
    pub(crate) token: FencingToken,
    /// Contenders ahead of us when we queued.
    pub(crate) ahead: usize,
    pub(crate) tracker: Arc<Tracker>,
    /// The holder's own node data (the lease end is written after it).
    data: Vec<u8>,
    cleanup: NodeCleanup,
}

impl Held {
    pub(crate) fn grant(queue: &Queue, ticket: Ticket) -> Held {
        let tracker = Tracker::new(queue.session().clone(), queue.dir.to_string(), ticket.node.clone(), &ticket, queue);
        if ticket.lease.is_some() {
            tokio::spawn(crate::lease::timer(Arc::downgrade(&tracker), queue.client.clone()));
        }
        Held {
            data: queue.data_bytes().to_vec(),
            lock: queue.dir.clone(),
            seq: ticket.seq,
            token: ticket.token,
            ahead: ticket.ahead.unwrap_or(0),
            tracker,
            cleanup: ticket.cleanup,
        }
    }

    pub(crate) fn node(&self) -> &str {
        &self.tracker.node
    }

    pub(crate) fn client(&self) -> &zk::Client {
        self.cleanup.client()
    }

    pub(crate) fn state(&self) -> LockState {
        self.tracker.state()
    }

    /// Ends the lease `lease` from now, and records it in the node.
    pub(crate) async fn extend(&self, lease: std::time::Duration) -> Result<()> {
        crate::lease::check(lease)?;
        let (at, until_ms) = crate::lease::until(lease);
        if self.state() == LockState::Lost {
            return Err(Error::LockLost { path: self.lock.to_string() });
        }
        if !self.tracker.set_lease_end(at) {
            return Err(Error::InvalidLease { lease, reason: "the lock was built without a lease" });
        }
        let (client, node) = (self.client(), self.node());
        let lost = || Error::LockLost { path: self.lock.to_string() };
        // At the version read: a request to let go written meanwhile (a revocable lock) stays.
        for _ in 0..8 {
            let (stored, stat) = match crate::retry::until_known(client, node, || client.get_data(node)).await? {
                Ok(read) => read,
                Err(zk::Error::NoNode) => return Err(lost()),
                Err(e) => return Err(Error::from_zk(e, node)),
            };
            if stored == crate::monitor::REVOKE {
                break;
            }
            let data = crate::lease::with_lease(&self.data, until_ms);
            match crate::retry::until_known(client, node, || client.set_data(node, &data, Some(stat.version))).await? {
                Ok(_) => break,
                Err(zk::Error::BadVersion) => continue,
                Err(zk::Error::NoNode) => return Err(lost()),
                Err(e) => return Err(Error::from_zk(e, node)),
            }
        }
        // The old end may have passed while we wrote: then the lease already ran out.
        if self.state() == LockState::Lost {
            return Err(lost());
        }
        Ok(())
    }

    /// Deletes the node; `Err(LockLost)` (after the delete) if the guard was or became `Lost`
    /// before the delete finished, or the node was already gone.
    pub(crate) async fn release(mut self) -> Result<()> {
        let span = tracing::debug_span!(target: "zk_lock", "zk_lock::release", lock = %self.lock, node = %self.node());
        async move {
            self.tracker.start_release();
            let gone = self.cleanup.delete_now().await?;
            if gone == Gone::Deleted {
                let session = self.client().session_id();
                events::released(self.lock.as_str(), self.node(), session, self.token, self.tracker.since.elapsed());
            }
            // Lost before or during the release: someone else may have been granted meanwhile.
            // Gone before our delete reached it: someone else deleted it, or the session ended.
            if gone != Gone::Deleted || self.tracker.state() == LockState::Lost {
                Err(Error::LockLost { path: self.lock.to_string() })
            } else {
                Ok(())
            }
        }
        .instrument(span)
        .await
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Our own delete must not be taken for a loss; the cleanup's Drop deletes if still armed.
        let released = self.tracker.is_releasing();
        self.tracker.start_release();
        if self.cleanup.is_armed() && !released {
            let session = self.client().session_id();
            events::guard_dropped(self.lock.as_str(), self.node(), session, self.token, self.tracker.since.elapsed());
        }
    }
}
