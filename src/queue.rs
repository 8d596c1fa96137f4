//! The queue engine: the one wait loop every recipe runs, with a policy saying who blocks whom.
//!
//! 1. **Enqueue**: create an `EPHEMERAL_SEQUENTIAL` node with a name unique to this attempt and,
//!    back to back on the same session, list the directory. Both requests go out before either
//!    answer is read, so an uncontended acquire costs one round trip.
//! 2. **Wait**: sort the contenders by sequence, ask the policy which earlier node blocks us,
//!    and watch exactly that node with `get_and_watch_data` (a data watch, which unlike `exists`
//!    leaves nothing behind when the node is already gone). When it changes or is gone, list again.
//!    One release therefore wakes one waiter, however long the queue.
//! 3. **Dequeue**: delete our node, retried until it is gone or the session is over.
//!
//! Any connection-ish error means "outcome unknown": after an unknown create we look for our
//! node by its unique name and adopt it only if its `ephemeralOwner` is our session.

use std::sync::{Arc, OnceLock};

use std::time::Instant;
use tokio::sync::OnceCell;

use zookeeper_client as zk;

use crate::cleanup::{find_by_name, Backoff, NodeCleanup};
use crate::error::{outcome, Error, Outcome, Result};
use crate::identity::{owner_acl, owner_writable};
use crate::node::{is_zk_lock_node, AttemptName, Contender, Layout};
use crate::path::LockPath;
use crate::session::SessionShared;
use crate::token::FencingToken;

/// How many times a vanished lock directory is re-created within one acquire.
const MAX_DIR_RECREATES: u32 = 16;
/// Bound on creates retried after an unknown outcome (each waits for an answer or a reconnect,
/// with a backoff of up to 500 ms).
const MAX_CREATE_RETRIES: u32 = 100;
/// Bound on retries of one read after unknown outcomes.
const MAX_READ_RETRIES: u32 = 10_000;

/// Who blocks whom: the one thing recipes change.
pub(crate) trait Policy: Send + Sync {
    /// The index in `queue` (sorted, holder first) of the contender that the contender at `me`
    /// must wait for, or `None` when it may proceed. It should name the nearest blocker, so that
    /// one release wakes one waiter.
    fn blocker(&self, queue: &[Contender], me: usize) -> Option<usize>;

    /// Whether a handoff from the contender just before us means we may proceed. True for a
    /// mutex: only the holder hands off, and the holder's successor is then first.
    fn trusts_handoff(&self) -> bool {
        false
    }
}

/// A mutex: everyone waits for the contender just before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exclusive;

impl Policy for Exclusive {
    fn blocker(&self, _queue: &[Contender], me: usize) -> Option<usize> {
        me.checked_sub(1)
    }

    fn trusts_handoff(&self) -> bool {
        true
    }
}

/// The fixed part of a queue: where, how nodes are named, what they carry.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) client: zk::Client,
    pub(crate) dir: LockPath,
    layout: Layout,
    /// Index of this queue's own marker in `layout`.
    kind: usize,
    data: Vec<u8>,
    /// ACLs of the directories we create: the user's.
    acls: Vec<zk::Acl>,
    /// ACLs of our lock nodes: the user's without WRITE and ADMIN, plus everything for the
    /// session's own identity, so that only the owner can write (hand off) a lock node. Made on
    /// the first enqueue (see `identity`).
    node_acls: OnceCell<Vec<zk::Acl>>,
    session: OnceLock<Arc<SessionShared>>,
}

/// One contender's place in the queue: our node, its cleanup duty, and the last listing seen.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) cleanup: NodeCleanup,
    /// Full path of our node.
    pub(crate) node: String,
    /// Child name of our node.
    pub(crate) name: String,
    pub(crate) seq: i64,
    pub(crate) token: FencingToken,
    /// How many contenders were ahead of us at our first listing.
    pub(crate) ahead: Option<usize>,
    /// Whether we had to wait for someone: then someone likely waits behind us too, and our
    /// release is worth a handoff.
    pub(crate) waited: bool,
    /// `_c_<uuid>-` of this attempt: any other node with it is a duplicate of ours.
    unique: String,
    children: Vec<String>,
}

impl Queue {
    pub(crate) fn new(
        client: zk::Client,
        dir: LockPath,
        layout: Layout,
        kind: usize,
        data: Vec<u8>,
        acls: Vec<zk::Acl>,
    ) -> Queue {
        Queue { client, dir, layout, kind, data, acls, node_acls: OnceCell::new(), session: OnceLock::new() }
    }

    pub(crate) fn session(&self) -> &Arc<SessionShared> {
        self.session.get_or_init(|| SessionShared::for_client(&self.client))
    }

    fn marker(&self) -> &'static str {
        self.layout.markers[self.kind]
    }

    /// Creates our node and lists the directory, pipelined.
    ///
    /// Cancel safety: the returned ticket's cleanup is armed before the create is sent; dropping
    /// this future at any point leaves no node behind.
    pub(crate) async fn enqueue(&self) -> Result<Ticket> {
        let attempt = AttemptName::new(self.marker());
        let prefix = self.dir.child(&attempt.prefix);
        let mut cleanup = NodeCleanup::arm(self.client.clone(), self.dir.clone(), attempt.clone());
        let node_acls = self
            .node_acls
            .get_or_try_init(|| async {
                Ok::<_, zk::Error>(owner_writable(&self.acls, owner_acl(&self.client).await?))
            })
            .await
            .map_err(|e| Error::from_zk(e, self.dir.as_str()))?;
        let options = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::new(node_acls));
        let mut recreated = 0;
        let mut unknown = 0;
        let mut backoff = Backoff::new();
        loop {
            let sent = Instant::now();
            let create = self.client.create(&prefix, &self.data, &options);
            let list = self.client.list_children(self.dir.as_str());
            let (created, listed) = tokio::join!(create, list);
            let (node, stat) = match created {
                Ok((stat, seq)) => {
                    self.session().heard(sent);
                    (format!("{prefix}{seq}"), stat)
                }
                Err(zk::Error::NoNode) if recreated < MAX_DIR_RECREATES => {
                    recreated += 1;
                    self.make_dir().await?;
                    continue;
                }
                Err(e) => match outcome(&e) {
                    Outcome::Unknown => match find_by_name(&self.client, &self.dir, &attempt).await? {
                        Some((node, stat)) => {
                            tracing::debug!(node = %node, "create had an unknown outcome; found and adopted our node");
                            // The search began with a sync, answered after this instant.
                            self.session().heard(sent);
                            (node, stat)
                        }
                        None if unknown < MAX_CREATE_RETRIES => {
                            unknown += 1;
                            backoff.wait().await;
                            continue;
                        }
                        None => {
                            cleanup.disarm();
                            return Err(self.create_error(e));
                        }
                    },
                    _ => {
                        cleanup.disarm();
                        return Err(self.create_error(e));
                    }
                },
            };
            cleanup.set_node(node.clone());
            let name = node[self.dir.as_str().len() + 1..].to_owned();
            let seq = self.layout.parse(&name).map(|c| c.seq).unwrap_or(-1);
            let children = match listed {
                Ok(children) if children.contains(&name) => children,
                _ => self.list().await?,
            };
            tracing::debug!(lock = %self.dir, node = %node, token = stat.czxid, "enqueued");
            return Ok(Ticket {
                cleanup,
                node,
                name,
                seq,
                token: FencingToken::from_i64(stat.czxid),
                ahead: None,
                waited: false,
                unique: attempt.unique.clone(),
                children,
            });
        }
    }

    fn create_error(&self, e: zk::Error) -> Error {
        match e {
            zk::Error::NoChildrenForEphemerals => {
                Error::InvalidPath { path: self.dir.to_string(), reason: "lies under an ephemeral node" }
            }
            zk::Error::NoNode => {
                Error::InvalidPath { path: self.dir.to_string(), reason: "its directory keeps vanishing" }
            }
            e => Error::from_zk(e, self.dir.as_str()),
        }
    }

    /// Creates the lock directory and its missing parents as container nodes.
    async fn make_dir(&self) -> Result<()> {
        let options = zk::CreateMode::Container.with_acls(zk::Acls::new(&self.acls));
        let mut backoff = Backoff::new();
        for _ in 0..MAX_READ_RETRIES {
            match self.client.mkdir(self.dir.as_str(), &options).await {
                Ok(()) => return Ok(()),
                Err(e) if outcome(&e) == Outcome::Unknown => backoff.wait().await,
                Err(e) => return Err(self.create_error(e)),
            }
        }
        Err(Error::ZooKeeper(zk::Error::ConnectionLoss))
    }

    /// Lists the directory, retrying unknown outcomes.
    pub(crate) async fn list(&self) -> Result<Vec<String>> {
        let mut backoff = Backoff::new();
        for _ in 0..MAX_READ_RETRIES {
            // A read proves nothing about the leader: it does not count as heard.
            match self.client.list_children(self.dir.as_str()).await {
                Ok(children) => return Ok(children),
                Err(zk::Error::NoNode) => return Ok(Vec::new()),
                Err(e) if outcome(&e) == Outcome::Unknown => backoff.wait().await,
                Err(e) => return Err(Error::from_zk(e, self.dir.as_str())),
            }
        }
        Err(Error::ZooKeeper(zk::Error::ConnectionLoss))
    }

    /// The contenders now in the directory, in queue order.
    pub(crate) fn contenders<'a>(&self, children: &'a [String]) -> Vec<Contender<'a>> {
        self.layout.contenders(children)
    }

    /// Whether a new contender of our kind would have to wait behind `queue`.
    pub(crate) fn would_block(&self, queue: &[Contender], policy: &dyn Policy) -> bool {
        let mut with_me = queue.to_vec();
        with_me.push(Contender { name: "", seq: i64::MAX, kind: self.kind });
        policy.blocker(&with_me, with_me.len() - 1).is_some()
    }

    /// Whether the ticket may proceed now, from its last listing, without waiting.
    pub(crate) fn is_granted(&self, ticket: &mut Ticket, policy: &dyn Policy) -> Result<bool> {
        let children = std::mem::take(&mut ticket.children);
        let queue = self.layout.contenders_around(&children, ticket.seq);
        let me = self.find_me(&queue, ticket)?;
        ticket.ahead.get_or_insert(me);
        Ok(policy.blocker(&queue, me).is_none())
    }

    fn find_me(&self, queue: &[Contender], ticket: &mut Ticket) -> Result<usize> {
        // A create retried after an unknown outcome may have committed twice: the node we did
        // not adopt is deleted, so it cannot block anyone, and again with ours.
        for c in queue.iter().filter(|c| c.name != ticket.name && c.name.starts_with(&ticket.unique)) {
            tracing::warn!(lock = %self.dir, node = %c.name, "deleting a duplicate of our lock node");
            ticket.cleanup.add_duplicate(self.dir.child(c.name));
        }
        match queue.iter().position(|c| c.name == ticket.name) {
            Some(me) => Ok(me),
            None if self.client.state().is_terminated() => Err(Error::SessionExpired),
            None => Err(Error::LockLost { path: self.dir.to_string() }),
        }
    }

    /// Waits until the policy lets the ticket proceed.
    ///
    /// Cancel safety: this future may be dropped at any point; the ticket keeps the cleanup duty.
    pub(crate) async fn wait_turn(&self, ticket: &mut Ticket, policy: &dyn Policy) -> Result<()> {
        let _waiting = self.session().waiting();
        let mut backoff = Backoff::new();
        loop {
            // The listing is not kept while we wait: with a long queue it is the bulk of a
            // waiter's memory.
            let children = std::mem::take(&mut ticket.children);
            let queue = self.layout.contenders_around(&children, ticket.seq);
            let me = self.find_me(&queue, ticket)?;
            ticket.ahead.get_or_insert(me);
            let Some(blocker) = policy.blocker(&queue, me) else {
                tracing::debug!(lock = %self.dir, node = %ticket.node, token = %ticket.token, "granted");
                return Ok(());
            };
            let watched = self.dir.child(queue[blocker].name);
            // A handoff (see `cleanup::delete_request`) shows as a data change of the zk-lock
            // node just before us; then we are first and need not list again.
            let handoff_grants = blocker + 1 == me && policy.trusts_handoff() && is_zk_lock_node(queue[blocker].name);
            drop(queue);
            drop(children);
            tracing::trace!(lock = %self.dir, node = %ticket.node, position = me, waits_for = %watched, "waiting");
            ticket.waited = true;
            match self.client.get_and_watch_data(&watched).await {
                Ok((_, _, watcher)) => {
                    let event = watcher.changed().await;
                    if handoff_grants && event.event_type == zk::EventType::NodeDataChanged {
                        tracing::debug!(lock = %self.dir, node = %ticket.node, token = %ticket.token, "granted by handoff");
                        return Ok(());
                    }
                }
                Err(zk::Error::NoNode) => {}
                Err(e) => match outcome(&e) {
                    Outcome::Unknown => backoff.wait().await,
                    _ => return Err(Error::from_zk(e, &watched)),
                },
            }
            ticket.children = self.list().await?;
        }
    }

    /// The nodes in the queue with their owners and data, in queue order.
    pub(crate) async fn participants(&self) -> Result<Vec<crate::Participant>> {
        let mut backoff = Backoff::new();
        for _ in 0..MAX_READ_RETRIES {
            let children = self.list().await?;
            let queue = self.contenders(&children);
            if queue.is_empty() {
                return Ok(Vec::new());
            }
            let mut reader = self.client.new_multi_reader();
            for c in &queue {
                reader.add_get_data(&self.dir.child(c.name)).map_err(|e| Error::from_zk(e, self.dir.as_str()))?;
            }
            let results = match reader.commit().await {
                Ok(results) => results,
                Err(e) if outcome(&e) == Outcome::Unknown => {
                    backoff.wait().await;
                    continue;
                }
                Err(e) => return Err(Error::from_zk(e, self.dir.as_str())),
            };
            let mut out = Vec::with_capacity(queue.len());
            for (c, r) in queue.into_iter().zip(results) {
                if let zk::MultiReadResult::Data { data, stat } = r {
                    out.push(crate::Participant::new(
                        self.dir.child(c.name),
                        c.seq,
                        stat.ephemeral_owner,
                        data,
                        FencingToken::from_i64(stat.czxid),
                    ));
                }
            }
            return Ok(out);
        }
        Err(Error::ZooKeeper(zk::Error::ConnectionLoss))
    }
}
