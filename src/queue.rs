//! The queue engine: the one wait loop every recipe runs, with a policy saying who blocks whom.
//!
//! 1. **Enqueue**: create an `EPHEMERAL_SEQUENTIAL` node with a name unique to this attempt and,
//!    back to back on the same session, list the directory. Both requests go out before either
//!    answer is read, so an uncontended acquire costs one round trip.
//! 2. **Wait**: sort the contenders by sequence, ask the policy what blocks us, and watch exactly
//!    that node with `get_and_watch_data` (a data watch, which unlike `exists` leaves nothing
//!    behind when the node is already gone), or, when any of the contenders ahead may let us in
//!    (a semaphore's first waiter), the directory's children. When it changes, list again. A
//!    release therefore wakes only the contenders that watch it, however long the queue.
//! 3. **Dequeue**: delete our node, retried until it is gone or the session is over.
//!
//! Any connection-ish error means "outcome unknown": after an unknown create we look for our
//! node by its unique name and adopt it only if its `ephemeralOwner` is our session.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::Instrument;

use zookeeper_client as zk;

use crate::access::{dir_acls, has_credentials, may_delete_children, needs_peer, node_acls, peers_in};
use crate::cleanup::{find_by_name, NodeCleanup, Refused};
use crate::error::{outcome, Error, Outcome, Result};
use crate::events;
use crate::identity::{owner_acl, peer_id};
use crate::limits;
use crate::monitor::SessionShared;
use crate::node::{is_zk_lock_node, AttemptName, Contender, Layout};
use crate::path::LockPath;
use crate::progress::{self, Position, Progress};
use crate::retry::{until_known, Retry};
use crate::token::FencingToken;

/// How many times a vanished lock directory is re-created within one acquire.
const MAX_DIR_RECREATES: u32 = 16;
/// Reads per multi-read of `participants`, at most; a chunk also stays under half the request
/// size limit, so that no request comes near the server's buffer. (Answers carry the nodes'
/// data and are not bounded by this; the client reads answers of any size.)
const READ_CHUNK: usize = 100;

/// `paths` cut into chunks of at most [`READ_CHUNK`] paths and about `budget` request bytes
/// (a single path larger than that is a chunk of its own).
fn chunks(paths: &[String], budget: usize) -> Vec<&[String]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, path) in paths.iter().enumerate() {
        // op header, path, watch flag
        let cost = 16 + path.len();
        if i > start && (i - start == READ_CHUNK || bytes + cost > budget) {
            chunks.push(&paths[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += cost;
    }
    if start < paths.len() {
        chunks.push(&paths[start..]);
    }
    chunks
}

/// What a blocked contender waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// The contender at this index in the queue: watch its node.
    By(usize),
    /// Any one of the contenders ahead leaving (a semaphore's first waiter, which any holder's
    /// release lets in): watch the directory's children.
    ByAny,
}

/// Who blocks whom: the one thing recipes change.
pub(crate) trait Policy: Send + Sync + std::fmt::Debug {
    /// What the contender at `me` in `queue` (sorted, holder first) must wait for, or `None`
    /// when it may proceed. It should name the nearest blocker, so that one release wakes one
    /// waiter.
    fn blocker(&self, queue: &[Contender], me: usize) -> Option<Blocked>;

    /// Whether a handoff by `queue[blocker]` (the data change a granted holder's release makes
    /// of its node, see `cleanup::delete_request`) means that the contender at `me` may proceed,
    /// without listing again. False unless the policy can prove it.
    fn trusts_handoff(&self, _queue: &[Contender], _me: usize, _blocker: usize) -> bool {
        false
    }

    /// Whether a holder of this kind should release with a handoff: only worth it when the
    /// contenders that watch it trust it.
    fn hands_off(&self) -> bool {
        false
    }

    /// Whether a contender granted after waiting must wake the one behind it by writing its
    /// own node: when a grant, not only a release, changes what its successor waits for (a
    /// semaphore's next waiter becomes the first, which watches the whole directory).
    fn touches_on_grant(&self) -> bool {
        false
    }
}

/// One at a time, first come first served: everyone waits for the contender just before it (a
/// mutex, a leader election).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exclusive;

impl Policy for Exclusive {
    fn blocker(&self, _queue: &[Contender], me: usize) -> Option<Blocked> {
        me.checked_sub(1).map(Blocked::By)
    }

    /// Only the holder hands off, and the holder's successor is then first.
    fn trusts_handoff(&self, _queue: &[Contender], _me: usize, _blocker: usize) -> bool {
        true
    }

    fn hands_off(&self) -> bool {
        true
    }
}

/// A queue on one session: what it is (its [`Spec`], reached through `Deref`), the client, and
/// what it learns on that session.
#[derive(Debug)]
pub(crate) struct Queue {
    spec: Spec,
    pub(crate) client: zk::Client,
    /// The creation zxid of the directory whose mark we checked last (0: none yet): a
    /// directory created again since (a container reaped, then made by someone else) is
    /// checked again.
    marked: Arc<std::sync::atomic::AtomicI64>,
    /// Made on the first enqueue: see [`Queue::prepare`].
    prepared: Arc<OnceCell<Prepared>>,
    /// Our nodes whose delete was refused for lack of permission (someone took DELETE away),
    /// while they are there: no acquire creates a node or waits behind one of them meanwhile.
    refused: Arc<Refused>,
    session: OnceLock<Arc<SessionShared>>,
}

impl std::ops::Deref for Queue {
    type Target = Spec;

    fn deref(&self) -> &Spec {
        &self.spec
    }
}

/// What a queue is, whatever session it runs on: checked once, when the lock is built.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) dir: LockPath,
    layout: Layout,
    /// Index of this queue's own marker in `layout`.
    kind: usize,
    data: Vec<u8>,
    /// ACLs of the directories we create: the user's.
    acls: Vec<zk::Acl>,
    /// The largest request the server accepts.
    max_request: usize,
    /// What the directory's data must be, if anything.
    mark: Option<Mark>,
    /// Holders may be asked to let go (others may write their nodes): no handoff.
    pub(crate) revocable: bool,
    /// Holds end after this long (see `LockBuilder::lease`).
    pub(crate) lease: Option<Duration>,
    /// A suspension ends a hold (see `LockBuilder::lose_on_suspend`).
    pub(crate) lose_on_suspend: bool,
}

impl Spec {
    /// A queue on `dir`; checks that its requests fit in `max_request` bytes.
    pub(crate) fn new(
        dir: LockPath,
        layout: Layout,
        kind: usize,
        data: Vec<u8>,
        acls: Vec<zk::Acl>,
        max_request: usize,
    ) -> Result<Spec> {
        if acls.is_empty() {
            return Err(Error::InvalidAcl { path: dir.to_string(), reason: "the acl list is empty" });
        }
        limits::check_create(&dir, layout.markers[kind], &data, &acls, max_request)?;
        Ok(Spec {
            dir,
            layout,
            kind,
            data,
            acls,
            max_request,
            mark: None,
            revocable: false,
            lease: None,
            lose_on_suspend: false,
        })
    }

    /// A suspension ends a hold (see `LockBuilder::lose_on_suspend`).
    pub(crate) fn with_lose_on_suspend(mut self, lose: bool) -> Spec {
        self.lose_on_suspend = lose;
        self
    }

    /// Holders may be asked to let go (see `LockBuilder::revocable`).
    pub(crate) fn with_revocation(mut self, revocable: bool) -> Spec {
        self.revocable = revocable;
        self
    }

    /// Holds end after `lease` (see `LockBuilder::lease`); the data with the lease end written
    /// after it must fit too.
    pub(crate) fn with_lease(mut self, lease: Option<Duration>) -> Result<Spec> {
        if lease.is_some() {
            let longest = crate::lease::with_lease(&self.data, u64::MAX);
            limits::check_create(&self.dir, self.layout.markers[self.kind], &longest, &self.acls, self.max_request)?;
        }
        self.lease = lease;
        Ok(self)
    }

    /// The directory must hold `mark` (written when we create it, checked otherwise).
    pub(crate) fn with_mark(mut self, mark: Mark) -> Spec {
        self.mark = Some(mark);
        self
    }

    pub(crate) fn dir(&self) -> &LockPath {
        &self.dir
    }

    pub(crate) fn kind(&self) -> usize {
        self.kind
    }

    /// The queue on `client`'s session: what it learns (rights, refused nodes) starts afresh.
    pub(crate) fn bind(&self, client: zk::Client) -> Queue {
        Queue {
            spec: self.clone(),
            client,
            marked: Arc::default(),
            prepared: Arc::default(),
            refused: Arc::default(),
            session: OnceLock::new(),
        }
    }
}

/// What the lock directory's own data must say, for recipes that keep a setting there (a
/// semaphore's permit count), and the error for a directory that says otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Mark {
    pub(crate) data: Vec<u8>,
    pub(crate) mismatch: fn(path: &str, ours: &[u8], stored: &[u8]) -> Error,
}

/// What the first enqueue learns once for the queue's life.
#[derive(Debug)]
struct Prepared {
    /// ACLs of our lock nodes (see `access::node_acls`).
    node_acls: Vec<zk::Acl>,
    /// ACLs of the directories we create (see `access::dir_acls`).
    dir_acls: Vec<zk::Acl>,
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
    /// Whether someone was queued behind us at our last listing.
    pub(crate) behind: bool,
    /// How many times we wrote our own node (see `Policy::touches_on_grant`): its data version
    /// when nobody else wrote it.
    pub(crate) own_writes: i32,
    /// Whether a write to our node, once we hold, would pass the lock on (our successors take
    /// data changes for handoffs): then any write but ours is a loss.
    pub(crate) writes_hand_off: bool,
    /// When the lease ends, if the lock has one: the local clock and Unix milliseconds.
    pub(crate) lease: Option<(tokio::time::Instant, u64)>,
    /// `_c_<uuid>-` of this attempt: any other node with it is a duplicate of ours.
    unique: String,
    children: Vec<String>,
}

/// Whether [`Queue::wait_turn`] waits for its turn or only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    No,
}

/// One acquire, from its call to its end: says how it ended in a `tracing` event, also when
/// it is dropped half-way (cancelled).
struct Attempt<'a> {
    queue: &'a Queue,
    started: Instant,
    node: Option<String>,
    ended: bool,
}

impl<'a> Attempt<'a> {
    fn new(queue: &'a Queue) -> Attempt<'a> {
        Attempt { queue, started: Instant::now(), node: None, ended: false }
    }

    fn end(&mut self, why: &str) {
        self.ended = true;
        let q = self.queue;
        events::abandoned(q.dir.as_str(), self.node.as_deref(), q.client.session_id(), self.started.elapsed(), why);
    }

    /// Passes `result` on, saying so if it is an error.
    fn check<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.end(&e.to_string());
        }
        result
    }

    /// The ticket holds now. A holder that had to wait most likely has a waiter behind it:
    /// it releases with a handoff, if its successors trust one. One that did not (the
    /// uncontended path) deletes plainly, which is cheaper; a successor that came later then
    /// lists once more.
    fn granted(&mut self, ticket: &mut Ticket, policy: &dyn Policy, by: &'static str) {
        let trusted = self.queue.trusts_writes();
        if ticket.waited && policy.hands_off() && trusted {
            ticket.cleanup.set_handoff();
        }
        ticket.writes_hand_off = policy.hands_off() && trusted;
        if let Some(lease) = self.queue.lease {
            // The lease end goes into our node's data; that write also wakes a successor that
            // waits for our grant, as a touch would.
            let until = crate::lease::until(lease);
            ticket.lease = Some(until);
            self.queue.touch(ticket, Some(crate::lease::with_lease(&self.queue.data, until.1)));
        } else if ticket.behind && policy.touches_on_grant() {
            // Also when granted at once: a contender behind us may have listed before we did
            // and be watching us as a waiter.
            self.queue.touch(ticket, None);
        }
        self.ended = true;
        let q = self.queue;
        let ahead = ticket.ahead.unwrap_or(0);
        let waited = self.started.elapsed();
        events::granted(q.dir.as_str(), &ticket.node, q.client.session_id(), ticket.token, ahead, waited, by);
    }

    /// We found ourselves blocked without waiting: withdraw our node, then say why.
    async fn withdraw(&mut self, ticket: &mut Ticket, why: &str, error: Error) -> Result<Ticket> {
        let withdrawn = ticket.cleanup.delete_now().await;
        self.check(withdrawn)?;
        self.end(why);
        Err(error)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.end("cancelled");
        }
    }
}

impl Queue {
    /// A queue of another kind of contender in the same directory (the other side of a
    /// read/write lock): it shares what this one learns once and its record of refused nodes.
    pub(crate) fn sibling(&self, kind: usize) -> Queue {
        Queue {
            spec: Spec { kind, ..self.spec.clone() },
            client: self.client.clone(),
            marked: self.marked.clone(),
            prepared: self.prepared.clone(),
            refused: self.refused.clone(),
            session: OnceLock::new(),
        }
    }

    pub(crate) fn data_bytes(&self) -> &[u8] {
        &self.data
    }

    pub(crate) fn session(&self) -> &Arc<SessionShared> {
        self.session.get_or_init(|| SessionShared::for_client(&self.client))
    }

    fn marker(&self) -> &'static str {
        self.layout.markers[self.kind]
    }

    /// Once per queue, before its first create: gives the session its own identity (see
    /// `identity`), and checks, in the same round trip, that we may read the directory and
    /// delete what we create in it (a session without credentials, on ACLs not open to everyone,
    /// first takes the process's identity too, one more round trip). While a
    /// node of ours could not be deleted, refuses to create another: it could not be deleted
    /// either, and would queue behind the first.
    async fn prepare(&self) -> Result<&Prepared> {
        if !self.refused.is_empty() {
            return Err(Error::NotAuthorized { path: self.dir.to_string() });
        }
        self.prepared.get_or_try_init(|| self.check_access()).await
    }

    /// Whether a node of ours that could not be deleted is ahead of `me`: then we would wait for
    /// it until our own session ends.
    fn behind_refused(&self, queue: &[Contender], me: usize) -> bool {
        !self.refused.is_empty() && queue[..me].iter().any(|c| self.refused.contains(&self.dir.child(c.name)))
    }

    async fn check_access(&self) -> Result<Prepared> {
        let dir = self.dir.as_str();
        let answers = until_known(&self.client, dir, || async {
            // Both are sent now; the identity's `auth`, if still needed, right after them.
            let acl = self.client.get_acl(dir);
            let who = self.client.list_auth_users();
            let (acl, who, owner) = tokio::join!(acl, who, owner_acl(&self.client));
            let unknown = [acl.as_ref().err(), who.as_ref().err(), owner.as_ref().err()]
                .into_iter()
                .flatten()
                .find(|e| outcome(e) == Outcome::Unknown);
            match unknown {
                Some(e) => Err(e.clone()),
                None => Ok((acl, who, owner)),
            }
        });
        let (acl, who, owner) = answers.await?.map_err(|e| Error::from_zk(e, dir))?;
        let owner = owner.map_err(|e| Error::from_zk(e, dir))?;
        // `whoAmI` needs ZooKeeper 3.7; before it, we cannot tell who we are.
        let me = match who {
            Ok(me) => Some(me),
            Err(zk::Error::Unimplemented) => None,
            Err(e) => return Err(Error::from_zk(e, dir)),
        };
        // A session without credentials of its own joins this process's other credential-less
        // contenders (see `identity`): an `auth` entry names them all, explicit ACLs get an
        // entry for them. (Before ZooKeeper 3.7 we cannot tell, and add nothing.)
        let mut me = me;
        let mut acl = acl;
        let peer = match &mut me {
            // (Also with open ACLs, when the directory is closed to us: one made under
            // restricted ACLs by this process's other sessions lets its peers in.)
            Some(me) if !has_credentials(me) && (needs_peer(&self.acls) || acl == Err(zk::Error::NoAuth)) => {
                let peer = until_known(&self.client, dir, || peer_id(&self.client)).await?;
                let peer = peer.map_err(|e| Error::from_zk(e, dir))?;
                // `whoAmI` answered before it: we are the peer user now too.
                let user = peer.id().split(':').next().unwrap_or_default();
                me.push(zk::AuthUser::new("digest", user));
                // Reading a directory's ACL takes READ, which the peer identity may give.
                if acl == Err(zk::Error::NoAuth) {
                    acl = until_known(&self.client, dir, || self.client.get_acl(dir)).await?;
                }
                if matches!(acl, Err(zk::Error::NoNode)) && needs_peer(&self.acls) {
                    tracing::warn!(
                        target: "zk_lock",
                        lock = dir,
                        "restricted ACLs on a session without credentials: of the sessions without credentials, only \
                         this process's can use the directories this lock creates, until the server reaps them once \
                         empty; give the sessions credentials for a lock shared with other processes or later runs"
                    );
                }
                Some(peer)
            }
            _ => None,
        };
        let existing = match acl {
            Ok((acls, _)) => Some(acls),
            Err(zk::Error::NoNode) => None,
            Err(e) => return Err(Error::from_zk(e, dir)),
        };
        let dir_acls = dir_acls(&self.acls, peer.as_ref());
        if let Some(me) = &me {
            if !may_delete_children(existing.as_deref().unwrap_or(&dir_acls), me) {
                return Err(Error::NotAuthorized { path: dir.to_owned() });
            }
        }
        if self.mark.is_some() {
            // A directory that holds a setting is made now, with ours, or checked: not left
            // for another client to make with another one between this check and our create.
            match existing {
                Some(_) => self.verify_mark().await?,
                None => self.make_dir(&dir_acls).await?,
            }
        }
        // Credential-less contenders of the process that made the directory must be able to
        // follow our node too (one of them at most: the request size is bounded for one).
        let dir_peers: Vec<zk::AuthId> = existing
            .as_deref()
            .map(peers_in)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| Some(p) != peer.as_ref() && !self.acls.iter().any(|a| a.auth_id() == p))
            .take(1)
            .collect();
        let node_acls = node_acls(&self.acls, owner, peer.as_ref(), &dir_peers, self.revocable);
        Ok(Prepared { node_acls, dir_acls })
    }

    /// Checks that an existing directory holds our mark; writes it into a directory that holds
    /// nothing (made by someone else), never over anything else.
    async fn verify_mark(&self) -> Result<()> {
        let Some(mark) = &self.mark else { return Ok(()) };
        let dir = self.dir.as_str();
        loop {
            let (data, stat) = match until_known(&self.client, dir, || self.client.get_data(dir)).await? {
                Ok(answer) => answer,
                // Gone meanwhile: we create it, with our mark.
                Err(zk::Error::NoNode) => return Ok(()),
                Err(e) => return Err(Error::from_zk(e, dir)),
            };
            if data == mark.data {
                self.marked.store(stat.czxid, std::sync::atomic::Ordering::Release);
                return Ok(());
            }
            if !data.is_empty() {
                return Err((mark.mismatch)(dir, &mark.data, &data));
            }
            let write = || self.client.set_data(dir, &mark.data, Some(stat.version));
            match until_known(&self.client, dir, write).await? {
                Ok(stat) => {
                    self.marked.store(stat.czxid, std::sync::atomic::Ordering::Release);
                    return Ok(());
                }
                // Written meanwhile, or gone: look again.
                Err(zk::Error::BadVersion | zk::Error::NoNode) => continue,
                Err(e) => return Err(Error::from_zk(e, dir)),
            }
        }
    }

    /// A directory other than the one whose mark we checked: check it, and withdraw our node
    /// from it if it says otherwise.
    async fn check_marked(&self, czxid: i64, cleanup: &mut NodeCleanup) -> Result<()> {
        if czxid == self.marked.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        if let Err(e) = self.verify_mark().await {
            cleanup.delete_now().await?;
            return Err(e);
        }
        Ok(())
    }

    /// Creates our node and lists the directory, pipelined.
    ///
    /// Cancel safety: the returned ticket's cleanup is armed before the create is sent; dropping
    /// this future at any point leaves no node behind.
    async fn enqueue(&self) -> Result<Ticket> {
        let prepared = self.prepare().await?;
        let attempt = AttemptName::new(self.marker(), self.trusts_writes());
        let prefix = self.dir.child(&attempt.prefix);
        let mut cleanup =
            NodeCleanup::arm(self.client.clone(), self.dir.clone(), attempt.clone(), self.refused.clone());
        let options = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::new(&prepared.node_acls));
        let mut recreated = 0;
        let mut retry = Retry::new(&self.client);
        loop {
            let sent = std::time::Instant::now();
            let create = self.client.create(&prefix, &self.data, &options);
            // With a mark, the listing also says which directory it is (polled, so sent, right
            // after the create).
            let list = async {
                match &self.mark {
                    None => self.client.list_children(self.dir.as_str()).await.map(|c| (c, None)),
                    Some(_) => self.client.get_children(self.dir.as_str()).await.map(|(c, s)| (c, Some(s))),
                }
            };
            let (created, listed) = tokio::join!(create, list);
            let (node, stat) = match created {
                Ok((stat, seq)) => {
                    self.session().heard(sent);
                    (format!("{prefix}{seq}"), stat)
                }
                Err(zk::Error::NoNode) if recreated < MAX_DIR_RECREATES => {
                    recreated += 1;
                    if let Err(e) = self.make_dir(&prepared.dir_acls).await {
                        cleanup.disarm();
                        return Err(e);
                    }
                    continue;
                }
                Err(e) if outcome(&e) == Outcome::Unknown => {
                    match find_by_name(&self.client, &self.dir, &attempt).await? {
                        Some((node, stat)) => {
                            tracing::debug!(target: "zk_lock", node = %node, "create had an unknown outcome; found and adopted our node");
                            // The search began with a sync, answered after this instant.
                            self.session().heard(sent);
                            (node, stat)
                        }
                        None => {
                            // Still armed: a create that committed late is found and deleted.
                            retry.wait(&prefix).await?;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    cleanup.disarm();
                    return Err(self.create_error(e));
                }
            };
            cleanup.set_node(node.clone());
            let name = node[self.dir.as_str().len() + 1..].to_owned();
            let seq = self.layout.parse(&name).map(|c| c.seq).unwrap_or(-1);
            let children = match listed {
                Ok((children, dir)) if children.contains(&name) => {
                    if let Some(dir) = dir {
                        self.check_marked(dir.czxid, &mut cleanup).await?;
                    }
                    children
                }
                _ => self.list().await?,
            };
            let token = FencingToken::from_i64(stat.czxid);
            events::enqueued(self.dir.as_str(), &node, self.client.session_id(), token);
            return Ok(Ticket {
                cleanup,
                node,
                name,
                seq,
                token,
                ahead: None,
                waited: false,
                behind: false,
                own_writes: 0,
                writes_hand_off: false,
                lease: None,
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
    async fn make_dir(&self, acls: &[zk::Acl]) -> Result<()> {
        let options = zk::CreateMode::Container.with_acls(zk::Acls::new(acls));
        let dir = self.dir.as_str();
        let Some(mark) = &self.mark else {
            return until_known(&self.client, dir, || self.client.mkdir(dir, &options))
                .await?
                .map_err(|e| self.create_error(e));
        };
        // The directory itself is created with the mark, its parents plainly.
        let made = loop {
            let create = || self.client.create(dir, &mark.data, &options);
            match until_known(&self.client, dir, create).await? {
                Err(zk::Error::NoNode) => match dir.rsplit_once('/') {
                    Some((parent, _)) if !parent.is_empty() => {
                        let mkdir = || self.client.mkdir(parent, &options);
                        match until_known(&self.client, parent, mkdir).await? {
                            Ok(()) | Err(zk::Error::NodeExists) => continue,
                            Err(e) => break Err(e),
                        }
                    }
                    _ => break Err(zk::Error::NoNode),
                },
                Ok((stat, _)) => {
                    self.marked.store(stat.czxid, std::sync::atomic::Ordering::Release);
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        match made {
            Ok(()) => Ok(()),
            // Made by someone else meanwhile: with our mark?
            Err(zk::Error::NodeExists) => self.verify_mark().await,
            Err(e) => Err(self.create_error(e)),
        }
    }

    /// Lists the directory, retrying unknown outcomes.
    pub(crate) async fn list(&self) -> Result<Vec<String>> {
        // A read proves nothing about the leader: it does not count as heard.
        let dir = self.dir.as_str();
        match until_known(&self.client, dir, || self.client.list_children(dir)).await? {
            Ok(children) => Ok(children),
            Err(zk::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(Error::from_zk(e, dir)),
        }
    }

    /// Whether data changes of our nodes can be trusted as handoffs: only their owner may
    /// write them, and the owner writes them only to hand off (not revocable, no lease).
    pub(crate) fn trusts_writes(&self) -> bool {
        !self.revocable && self.lease.is_none()
    }

    /// Writes our node to wake the contender behind it: its own data again, or `data`; retried
    /// in the background. The self-watch of the hold (see `monitor`) expects the version it
    /// makes.
    fn touch(&self, ticket: &mut Ticket, data: Option<Vec<u8>>) {
        ticket.own_writes += 1;
        let (client, node) = (self.client.clone(), ticket.node.clone());
        let data = data.unwrap_or_else(|| self.data.clone());
        let revocable = self.revocable;
        tokio::spawn(async move {
            // Only from version 0: a retry after an unknown outcome must not write twice (the
            // self-watch would take a second write for someone else's). A revocable node may
            // have been written by a revoker already: write back what it holds, at its version.
            let version = match revocable {
                false => Some((data, 0)),
                true => match until_known(&client, &node, || client.get_data(&node)).await {
                    // A request to let go stays; so does a later lease end (an early `extend`).
                    Ok(Ok((stored, stat))) => {
                        let keep = stored == crate::monitor::REVOKE || crate::lease::split(&stored).1.is_some();
                        Some((if keep { stored } else { data }, stat.version))
                    }
                    _ => None,
                },
            };
            let Some((data, version)) = version else { return };
            let written = until_known(&client, &node, || client.set_data(&node, &data, Some(version))).await;
            match written {
                Ok(Ok(_) | Err(zk::Error::BadVersion | zk::Error::NoNode)) => {}
                Ok(Err(e)) => {
                    let error = Error::from_zk(e, &node);
                    tracing::debug!(target: "zk_lock", node, %error, "could not write our node at the grant; our release will wake the next waiter");
                }
                Err(error) => {
                    tracing::debug!(target: "zk_lock", node, %error, "could not write our node at the grant; our release will wake the next waiter")
                }
            }
        });
    }

    /// Whether a new contender of our kind would have to wait behind `queue`.
    fn would_block(&self, queue: &[Contender], policy: &dyn Policy) -> bool {
        let mut with_me = queue.to_vec();
        with_me.push(Contender { name: "", seq: i64::MAX, kind: self.kind });
        policy.blocker(&with_me, with_me.len() - 1).is_some()
    }

    fn find_me(&self, queue: &[Contender], ticket: &mut Ticket) -> Result<usize> {
        // A create retried after an unknown outcome may have committed twice: the node we did
        // not adopt is deleted, so it cannot block anyone, and again with ours.
        for c in queue.iter().filter(|c| c.name != ticket.name && c.name.starts_with(&ticket.unique)) {
            let duplicate = self.dir.child(c.name);
            tracing::warn!(target: "zk_lock", lock = %self.dir, node = %duplicate, "deleting a duplicate of our lock node");
            ticket.cleanup.add_duplicate(duplicate);
        }
        match queue.iter().position(|c| c.name == ticket.name) {
            Some(me) => Ok(me),
            None if self.client.state().is_terminated() => Err(Error::SessionExpired),
            None => Err(Error::LockLost { path: self.dir.to_string() }),
        }
    }

    /// Joins the queue (after `first`, sent before our create: [`Mutex::relock`]'s release) and
    /// waits until the policy lets us proceed. `timeout` bounds the *wait*, counted from the
    /// moment we are in the queue: the enqueue's round trip is always completed, so a zero
    /// timeout takes a free lock, and never sends a watch. On a timeout our node is deleted
    /// before this returns (one more round trip).
    ///
    /// Cancel safety: the ticket's cleanup is armed before the create is sent; dropping this
    /// future at any point leaves no node behind.
    ///
    /// [`Mutex::relock`]: crate::Mutex::relock
    pub(crate) async fn acquire(
        &self,
        name: &'static str,
        policy: &dyn Policy,
        timeout: Option<Duration>,
        first: impl Future<Output = Result<()>>,
        progress: Option<&Progress>,
    ) -> Result<Ticket> {
        let span = tracing::debug_span!(target: "zk_lock", "acquire", name, lock = %self.dir);
        async {
            let mut attempt = Attempt::new(self);
            let (first, enqueued) = tokio::join!(first, self.enqueue());
            let mut ticket = attempt.check(enqueued)?;
            attempt.node = Some(ticket.node.clone());
            attempt.check(first)?;
            let timed_out = |after| Error::Timeout { path: self.dir.to_string(), after };
            let waited = match timeout {
                None => self.wait_turn(&mut ticket, policy, Wait::Yes, progress).await,
                Some(after) if after.is_zero() => self.wait_turn(&mut ticket, policy, Wait::No, progress).await,
                Some(after) => {
                    let wait = self.wait_turn(&mut ticket, policy, Wait::Yes, progress);
                    tokio::time::timeout(after, wait).await.unwrap_or(Ok(None))
                }
            };
            match attempt.check(waited)? {
                Some(by) => {
                    attempt.granted(&mut ticket, policy, by);
                    Ok(ticket)
                }
                None => attempt.withdraw(&mut ticket, "timed out", timed_out(timeout.unwrap_or_default())).await,
            }
        }
        .instrument(span)
        .await
    }

    /// Takes our turn only if nobody blocks us; never waits. A read comes first: when the lock is
    /// busy nothing is written. If someone got in between, our node is deleted before this
    /// returns [`Error::WouldBlock`].
    ///
    /// Cancel safety: as [`Queue::acquire`].
    pub(crate) async fn try_acquire(&self, name: &'static str, policy: &dyn Policy) -> Result<Ticket> {
        let span = tracing::debug_span!(target: "zk_lock", "acquire", name, lock = %self.dir);
        async {
            let busy = || Error::WouldBlock { path: self.dir.to_string() };
            let mut attempt = Attempt::new(self);
            // Also made before the first read, so that refused rights show before "busy".
            attempt.check(self.prepare().await.map(drop))?;
            let children = attempt.check(self.list().await)?;
            if self.would_block(&self.layout.contenders(&children), policy) {
                attempt.ended = true;
                events::busy(self.dir.as_str(), self.client.session_id());
                return Err(busy());
            }
            let mut ticket = attempt.check(self.enqueue().await)?;
            attempt.node = Some(ticket.node.clone());
            match attempt.check(self.wait_turn(&mut ticket, policy, Wait::No, None).await)? {
                Some(by) => {
                    attempt.granted(&mut ticket, policy, by);
                    Ok(ticket)
                }
                None => attempt.withdraw(&mut ticket, "busy", busy()).await,
            }
        }
        .instrument(span)
        .await
    }

    /// Waits (or, with [`Wait::No`], only looks) until the policy lets the ticket proceed; says
    /// how we learnt it (`"listing"` or `"handoff"`), `None` when blocked and not waiting.
    ///
    /// Cancel safety: this future may be dropped at any point; the ticket keeps the cleanup duty.
    async fn wait_turn(
        &self,
        ticket: &mut Ticket,
        policy: &dyn Policy,
        wait: Wait,
        progress: Option<&Progress>,
    ) -> Result<Option<&'static str>> {
        let mut waiting = None;
        let mut retry = Retry::new(&self.client);
        let mut dir_watch: Option<zk::OneshotWatcher> = None;
        // The node (and data version) we last found already written and listed again for.
        let mut seen_written: Option<(String, i32)> = None;
        loop {
            // The listing is not kept while we wait: with a long queue it is the bulk of a
            // waiter's memory.
            let children = std::mem::take(&mut ticket.children);
            let queue = self.layout.contenders_around(&children, ticket.seq);
            let me = self.find_me(&queue, ticket)?;
            ticket.ahead.get_or_insert(me);
            // Armed before we look, so that a refusal recorded from now on wakes us.
            let refusal = self.refused.added();
            tokio::pin!(refusal);
            refusal.as_mut().enable();
            if self.behind_refused(&queue, me) {
                return Err(Error::NotAuthorized { path: self.dir.to_string() });
            }
            ticket.behind = me + 1 < queue.len();
            let blocked = policy.blocker(&queue, me);
            if blocked.is_some() && wait == Wait::No {
                return Ok(None);
            }
            if blocked.is_some() {
                progress::report(progress, Position::Waiting { ahead: me });
            }
            let blocker = match blocked {
                None => return Ok(Some("listing")),
                Some(Blocked::By(blocker)) => blocker,
                Some(Blocked::ByAny) => {
                    waiting.get_or_insert_with(|| self.session().waiting());
                    ticket.waited = true;
                    drop(queue);
                    drop(children);
                    // Wait for the directory to change (first time round: list it with a watch
                    // right away, the listing we have was taken without one).
                    if let Some(watcher) = dir_watch.take() {
                        tokio::select! {
                            _ = watcher.changed() => {}
                            () = &mut refusal => {}
                            // Time to look how far we are (see `Progress`): the listing below sets
                            // the directory watch again (the dropped one is removed).
                            () = progress::tick(progress) => {}
                        }
                    }
                    let dir = self.dir.as_str();
                    match self.client.list_and_watch_children(dir).await {
                        Ok((children, watcher)) => {
                            retry.reset();
                            ticket.children = children;
                            dir_watch = Some(watcher);
                        }
                        Err(e) => match outcome(&e) {
                            Outcome::Unknown => {
                                retry.wait(dir).await?;
                                ticket.children = self.list().await?;
                            }
                            _ => return Err(Error::from_zk(e, dir)),
                        },
                    }
                    continue;
                }
            };
            // Blocked by one node now: a directory watch, if we had one, is removed.
            dir_watch = None;
            waiting.get_or_insert_with(|| self.session().waiting());
            let watched = self.dir.child(queue[blocker].name);
            // A handoff (see `cleanup::delete_request`) shows as a data change of the zk-lock
            // node that blocks us; the policy says whether that lets us in without listing again.
            let handoff_grants = policy.trusts_handoff(&queue, me, blocker) && is_zk_lock_node(queue[blocker].name);
            drop(queue);
            drop(children);
            tracing::trace!(target: "zk_lock", lock = %self.dir, node = %ticket.node, position = me, waits_for = %watched, "waiting");
            ticket.waited = true;
            // A data watch: unlike `exists`, it leaves nothing behind on a node that is gone.
            // (Without READ on the node we could not be woken at all: the server does not
            // deliver watch events on nodes the watcher may not read.)
            let mut relisted = None;
            match self.client.get_and_watch_data(&watched).await {
                // Written before our watch was set: the grant that touched it already happened.
                // (A revocable node may have been written by a revoker instead: look again only
                // once per version, then wait.)
                Ok((_, stat, _))
                    if stat.version > 0
                        && policy.touches_on_grant()
                        && seen_written.as_ref() != Some(&(watched.clone(), stat.version)) =>
                {
                    retry.reset();
                    seen_written = Some((watched.clone(), stat.version));
                }
                Ok((_, _, watcher)) => {
                    retry.reset();
                    let changed = watcher.changed();
                    tokio::pin!(changed);
                    loop {
                        tokio::select! {
                            event = &mut changed => {
                                if handoff_grants && event.event_type == zk::EventType::NodeDataChanged {
                                    return Ok(Some("handoff"));
                                }
                                break;
                            }
                            // One of our nodes could not be deleted: look whether it is ahead of us.
                            () = &mut refusal => break,
                            // Time to look how far we are (see `Progress`): one listing, without a
                            // watch; while the same node blocks us, we keep waiting on our watch.
                            () = progress::tick(progress) => {
                                let children = self.list().await?;
                                let queue = self.layout.contenders_around(&children, ticket.seq);
                                let me = queue.iter().position(|c| c.name == ticket.name);
                                let same = me.and_then(|me| match policy.blocker(&queue, me) {
                                    Some(Blocked::By(b)) => Some(self.dir.child(queue[b].name) == watched),
                                    _ => None,
                                });
                                if let (Some(me), Some(true)) = (me, same) {
                                    progress::report(progress, Position::Waiting { ahead: me });
                                    continue;
                                }
                                drop(queue);
                                relisted = Some(children);
                                break;
                            }
                        }
                    }
                }
                Err(zk::Error::NoNode) => retry.reset(),
                Err(e) => match outcome(&e) {
                    Outcome::Unknown => retry.wait(&watched).await?,
                    _ => return Err(Error::from_zk(e, &watched)),
                },
            }
            ticket.children = match relisted.take() {
                Some(children) => children,
                None => self.list().await?,
            };
        }
    }

    /// The first contender in the queue now, with a watch that fires when that may change:
    /// on its node while there is one (its deletion or a write), on the directory's children
    /// while the queue is empty.
    pub(crate) async fn first(&self) -> Result<(Option<crate::Participant>, zk::OneshotWatcher)> {
        let dir = self.dir.as_str();
        loop {
            let children = self.list().await?;
            let first = self.layout.contenders(&children).first().map(|c| (self.dir.child(c.name), c.seq));
            match first {
                Some((node, seq)) => {
                    match until_known(&self.client, &node, || self.client.get_and_watch_data(&node)).await? {
                        Ok((data, stat, watcher)) => {
                            return Ok((Some(crate::Participant::from_stat(node, seq, Some(data), &stat)), watcher));
                        }
                        // Gone meanwhile: look again.
                        Err(zk::Error::NoNode) => continue,
                        Err(e) => return Err(Error::from_zk(e, &node)),
                    }
                }
                None => match until_known(&self.client, dir, || self.client.list_and_watch_children(dir)).await? {
                    Ok((children, watcher)) if self.layout.contenders(&children).is_empty() => {
                        return Ok((None, watcher));
                    }
                    Ok(_) => continue,
                    // No directory (yet): nobody leads; wait for someone to make it.
                    Err(zk::Error::NoNode) => {
                        let exists = || self.client.check_and_watch_stat(dir);
                        match until_known(&self.client, dir, exists).await? {
                            Ok((None, watcher)) => return Ok((None, watcher)),
                            Ok((Some(_), _)) => continue,
                            Err(e) => return Err(Error::from_zk(e, dir)),
                        }
                    }
                    Err(e) => return Err(Error::from_zk(e, dir)),
                },
            }
        }
    }

    /// The nodes in the queue with their owners and data, in queue order. Read in multi-reads
    /// of at most [`READ_CHUNK`] nodes and half the request size limit, all sent at once: a long
    /// queue costs about one round trip more than a short one.
    pub(crate) async fn participants(&self) -> Result<Vec<crate::Participant>> {
        let children = self.list().await?;
        let queue = self.layout.contenders(&children);
        let paths: Vec<String> = queue.iter().map(|c| self.dir.child(c.name)).collect();
        let chunks = chunks(&paths, self.max_request / 2);
        let sent: Vec<_> = chunks.iter().map(|chunk| self.read_chunk(chunk)).collect();
        let mut read = Vec::with_capacity(paths.len());
        for (chunk, sent) in chunks.iter().zip(sent) {
            let results = match sent.await {
                Err(e) if outcome(&e) == Outcome::Unknown => {
                    until_known(&self.client, self.dir.as_str(), || self.read_chunk(chunk)).await?
                }
                answer => answer,
            };
            read.extend(results.map_err(|e| Error::from_zk(e, self.dir.as_str()))?);
        }
        // An ACL that hides the data does not hide the contender: its stat needs no permission.
        let hidden: Vec<_> = paths
            .iter()
            .zip(&read)
            .map(|(path, r)| {
                matches!(r, zk::MultiReadResult::Error { err: zk::Error::NoAuth }).then(|| self.client.check_stat(path))
            })
            .collect();
        let mut out = Vec::with_capacity(queue.len());
        for ((c, path), (result, hidden)) in queue.iter().zip(&paths).zip(read.into_iter().zip(hidden)) {
            let (data, stat) = match (result, hidden) {
                (zk::MultiReadResult::Data { data, stat }, _) => (Some(data), stat),
                (_, Some(sent)) => {
                    let stat = match sent.await {
                        Err(e) if outcome(&e) == Outcome::Unknown => {
                            until_known(&self.client, path, || self.client.check_stat(path)).await?
                        }
                        answer => answer,
                    };
                    match stat.map_err(|e| Error::from_zk(e, path))? {
                        Some(stat) => (None, stat),
                        None => continue,
                    }
                }
                // Gone meanwhile.
                _ => continue,
            };
            out.push(crate::Participant::from_stat(path.clone(), c.seq, data, &stat));
        }
        Ok(out)
    }

    /// Sends one multi-read of `paths` at once.
    fn read_chunk(&self, paths: &[String]) -> impl Future<Output = Result<Vec<zk::MultiReadResult>, zk::Error>> + '_ {
        let mut reader = self.client.new_multi_reader();
        let added: Result<(), zk::Error> = paths.iter().try_for_each(|p| reader.add_get_data(p));
        let sent = added.map(|()| reader.commit());
        async move { sent?.await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_bounded_by_count_and_by_bytes() {
        let short: Vec<String> = (0..250).map(|i| format!("/a/{i}")).collect();
        let sizes: Vec<usize> = chunks(&short, 1 << 19).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let long: Vec<String> = (0..10).map(|i| format!("/{}/{i}", "x".repeat(1000))).collect();
        let cut = chunks(&long, 3000);
        assert!(cut.iter().all(|c| c.len() == 2), "{:?}", cut.iter().map(|c| c.len()).collect::<Vec<_>>());
        assert_eq!(cut.concat(), long);
        let huge = vec!["/".to_owned() + &"y".repeat(5000)];
        assert_eq!(chunks(&huge, 3000), [&huge[..]]);
        assert!(chunks(&[], 3000).is_empty());
    }
}
