//! What every lock-like handle is: one queue, and the policy of its kind of contender. The
//! recipes' public methods are one line each on top of it.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::guard::LockGuard;
use crate::held::Held;
use crate::participant::Participant;
use crate::path::LockPath;
use crate::queue::{Policy, Queue};

#[derive(Debug, Clone)]
pub(crate) struct Handle {
    queue: Arc<Queue>,
    policy: Arc<dyn Policy>,
}

impl Handle {
    pub(crate) fn new(queue: Arc<Queue>, policy: impl Policy + 'static) -> Handle {
        Handle { queue, policy: Arc::new(policy) }
    }

    pub(crate) fn path(&self) -> &LockPath {
        &self.queue.dir
    }

    pub(crate) fn server_path(&self) -> String {
        match self.queue.client.path() {
            "/" | "" => self.queue.dir.to_string(),
            chroot => format!("{chroot}{}", self.queue.dir),
        }
    }

    /// Waits for our turn (for at most `timeout` once queued); `name` names the call in traces.
    pub(crate) async fn acquire(&self, name: &'static str, timeout: Option<Duration>) -> Result<LockGuard> {
        let ticket = self.queue.acquire(name, &*self.policy, timeout, std::future::ready(Ok(()))).await?;
        Ok(LockGuard::new(Held::grant(&self.queue, ticket)))
    }

    pub(crate) async fn try_acquire(&self, name: &'static str) -> Result<LockGuard> {
        let ticket = self.queue.try_acquire(name, &*self.policy).await?;
        Ok(LockGuard::new(Held::grant(&self.queue, ticket)))
    }

    /// Releases `guard` and queues again, in one round trip.
    pub(crate) async fn reacquire(&self, name: &'static str, guard: LockGuard) -> Result<LockGuard> {
        // The release goes out first, then the create and the listing, all before any answer
        // is awaited.
        let ticket = self.queue.acquire(name, &*self.policy, None, guard.release()).await?;
        Ok(LockGuard::new(Held::grant(&self.queue, ticket)))
    }

    pub(crate) async fn participants(&self) -> Result<Vec<Participant>> {
        self.queue.participants().await
    }

    /// Asks the first contender (the holder) to let go; its node, `None` when nobody holds.
    pub(crate) async fn revoke_first(&self) -> Result<Option<String>> {
        // Each miss is a holder that left meanwhile: ask the next, a bounded number of times.
        for _ in 0..64 {
            let Some(first) = self.queue.first().await?.0 else { return Ok(None) };
            if crate::revoke::revoke(&self.queue.client, first.node()).await? {
                return Ok(Some(first.node().to_owned()));
            }
        }
        Ok(None)
    }

    /// The first contender now, and a watch that fires when that may change.
    pub(crate) async fn first(&self) -> Result<(Option<Participant>, zookeeper_client::OneshotWatcher)> {
        self.queue.first().await
    }
}
