//! Options every lock recipe shares, set once, checked once.

use std::marker::PhantomData;
use std::sync::Arc;

use zookeeper_client as zk;

use crate::connection::Connection;
use crate::error::Result;
use crate::handle::Lanes;
use crate::limits::DEFAULT_MAX_REQUEST;
use crate::node::Layout;
use crate::path::LockPath;
use crate::queue::{Mark, Spec};

/// Options for a lock ([`Mutex`](crate::Mutex), [`RwLock`](crate::RwLock)): node data, ACLs,
/// the server's request size limit. Made by `Mutex::builder`, `RwLock::builder`; the options
/// are the same for every recipe, `build()` makes the recipe.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// let mutex = zk_lock::Mutex::builder(&client, "/locks/orders")
///     .data(format!("host-a pid {}", std::process::id()))
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until .build() is called"]
pub struct LockBuilder<R> {
    conn: Connection,
    path: String,
    data: Vec<u8>,
    acls: Vec<zk::Acl>,
    max_request: usize,
    /// A semaphore's permit count.
    permits: u32,
    revocable: bool,
    /// Whether a suspension ends a hold (`None`: the recipe's default).
    lose_on_suspend: Option<bool>,
    requeue: bool,
    lease: Option<std::time::Duration>,
    recipe: PhantomData<fn() -> R>,
}

/// The builder of a [`Mutex`](crate::Mutex).
pub type MutexBuilder = LockBuilder<crate::Mutex>;

/// The builder of a [`RwLock`](crate::RwLock).
pub type RwLockBuilder = LockBuilder<crate::RwLock>;

/// The builder of a [`LeaderElection`](crate::LeaderElection).
pub type LeaderElectionBuilder = LockBuilder<crate::LeaderElection>;

/// The builder of a [`Semaphore`](crate::Semaphore).
pub type SemaphoreBuilder = LockBuilder<crate::Semaphore>;

impl<R> std::fmt::Debug for LockBuilder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockBuilder")
            .field("path", &self.path)
            .field("data_len", &self.data.len())
            .field("acls", &self.acls)
            .field("max_request", &self.max_request)
            .finish_non_exhaustive()
    }
}

impl<R> Clone for LockBuilder<R> {
    fn clone(&self) -> Self {
        LockBuilder {
            conn: self.conn.clone(),
            path: self.path.clone(),
            data: self.data.clone(),
            acls: self.acls.clone(),
            max_request: self.max_request,
            permits: self.permits,
            revocable: self.revocable,
            lose_on_suspend: self.lose_on_suspend,
            requeue: self.requeue,
            lease: self.lease,
            recipe: PhantomData,
        }
    }
}

impl<R> LockBuilder<R> {
    pub(crate) fn new(conn: Connection, path: String) -> LockBuilder<R> {
        LockBuilder {
            conn,
            path,
            data: Vec::new(),
            acls: zk::Acls::anyone_all().iter().cloned().collect(),
            max_request: DEFAULT_MAX_REQUEST,
            permits: 1,
            revocable: false,
            lose_on_suspend: None,
            requeue: true,
            lease: None,
            recipe: PhantomData,
        }
    }

    /// Checks the path, the ACLs and the request size, and makes the queue of one kind of
    /// contender (`kind`: index of its marker in `layout`), in a directory that holds `mark`.
    /// The checked queues of this lock, one per kind of contender in its directory.
    pub(crate) fn lanes(&self, layout: Layout, kinds: &[usize], mark: Option<Mark>) -> Result<Arc<Lanes>> {
        let dir = LockPath::new(self.path.clone())?;
        if let Some(lease) = self.lease {
            crate::lease::check(lease)?;
        }
        let mut specs = Vec::with_capacity(kinds.len());
        for &kind in kinds {
            let spec = Spec::new(dir.clone(), layout, kind, self.data.clone(), self.acls.clone(), self.max_request)?;
            let spec = spec
                .with_revocation(self.revocable)
                .with_lose_on_suspend(self.lose_on_suspend.unwrap_or(false))
                .with_lease(self.lease)?;
            specs.push(match &mark {
                Some(mark) => spec.with_mark(mark.clone()),
                None => spec,
            });
        }
        Ok(Lanes::new(self.conn.clone(), specs))
    }

    /// Sets the recipe's default for [`lose_on_suspend`](Self::lose_on_suspend), unless the
    /// user chose.
    pub(crate) fn lose_on_suspend_by_default(&mut self, default: bool) {
        self.lose_on_suspend.get_or_insert(default);
    }

    /// Whether a waiting acquire queues again on a new session.
    pub(crate) fn requeues(&self) -> bool {
        self.requeue
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// A semaphore's permit count.
    pub(crate) fn permit_count(&self) -> u32 {
        self.permits
    }

    pub(crate) fn set_permits(&mut self, permits: u32) {
        self.permits = permits;
    }

    /// Data stored in our lock node, readable by others through
    /// [`Mutex::participants`](crate::Mutex::participants) (for example who holds it: host and
    /// pid). Empty by default.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) {
    /// let builder = zk_lock::Mutex::builder(&client, "/locks/a").data("worker-3");
    /// # }
    /// ```
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// ACLs of the lock nodes and of any directory the lock creates. `world:anyone` with all
    /// permissions by default.
    ///
    /// * **Directories** the lock creates get these ACLs (plus, on a session without
    ///   credentials, an entry for this process's identity: see below), its missing *parents*
    ///   too, as with Curator: with restricted ACLs, make the parents that other clients share
    ///   yourself (say, open), or they are closed to them as well. Every contender needs READ,
    ///   CREATE and DELETE on the lock directory: DELETE of a node is decided by its *parent*,
    ///   so with an open directory anyone can delete the holder's node and pass the lock on.
    ///   Before its first create, a lock checks that the directory (or, if it must create it,
    ///   the ACLs it would give it) lets it delete its node, and fails with
    ///   [`Error::NotAuthorized`](crate::Error::NotAuthorized) instead of leaving a node it could
    ///   not remove. The check is exact for `world`, `auth` and `digest` entries (by user name:
    ///   the server does not tell a session its password hashes) and counts `ip` entries and
    ///   other schemes as ours when in doubt. If a delete is refused all the same (or DELETE is
    ///   taken away later), the node is deleted in the background as soon as the permission is
    ///   back, and meanwhile the lock creates no more nodes and does not wait behind that one:
    ///   its acquires fail with `NotAuthorized`.
    /// * **Lock nodes** get these ACLs without WRITE and ADMIN, plus all permissions for the
    ///   session's own identity: only the owner can write its node, so nobody can fake its
    ///   handoff. Every contender needs READ on the others' nodes: a waiter watches the node
    ///   before it, and the server does not deliver watch events on a node the watcher may
    ///   not read (a waiter refused READ fails with
    ///   [`Error::NotAuthorized`](crate::Error::NotAuthorized) and withdraws).
    /// * An `auth` entry, as in [`zk::Acls::creator_all`], names the session's own credentials
    ///   (`digest`, `sasl`, `x509`...), as in ZooKeeper: clients sharing those credentials can
    ///   read each other's nodes and use a directory one of them created, and nobody else can.
    /// * A session **without credentials**, with ACLs that are not open to everyone, is given
    ///   this process's own identity: a random `digest` user, one per process, whose password
    ///   only this process and the server know (it travels as any `digest` credential does:
    ///   in clear text unless the connection uses TLS), shared by every credential-less session
    ///   of the process. An `auth` entry then names this process's contenders, and explicit
    ///   ACLs (say, `digest` entries for another user) get one more entry for it, on the nodes
    ///   (without WRITE and ADMIN, as above) and on the directories the lock creates, never
    ///   with a permission the ACLs give nobody: the sessions of one process take turns, and
    ///   every other client is refused as those ACLs say. Credentialed contenders that join
    ///   such a directory let its maker's credential-less sessions follow their nodes (as the
    ///   directory was when they first used it through this handle on this session: should it be
    ///   reaped and made again by another process meanwhile, that process's sessions cannot
    ///   follow them until they build the lock again).
    ///   Contenders in *other* processes need credentials that the ACLs name: to them, a
    ///   directory made this way answers [`Error::NotAuthorized`](crate::Error::NotAuthorized)
    ///   before anything is written, and so it does to the same program's next run, until the
    ///   server reaps the directory and its parents once they are empty (container nodes,
    ///   checked every 60 s by default; a parent that holds anything else stays closed). A
    ///   WARN event says so when such a lock is first used. For a lock shared across processes
    ///   or runs, give the sessions credentials. (Plain ZooKeeper refuses an `auth` entry on a
    ///   session without credentials with `InvalidACL`.)
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use zk_lock::zk::{self, Acls};
    /// // Every worker of the fleet connects with the same credentials.
    /// let client = zk::Client::connector().with_auth("digest", b"fleet:secret").connect("127.0.0.1:2181").await?;
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/a").acls(Acls::creator_all()).build()?;
    /// # Ok(()) }
    /// ```
    pub fn acls(mut self, acls: zk::Acls<'_>) -> Self {
        self.acls = acls.iter().cloned().collect();
        self
    }

    /// A maximum hold time: a guard held for `lease` (counted from its grant, or from the last
    /// [`extend`](crate::LockGuard::extend)) turns `Lost` with
    /// [`LostReason::LeaseExpired`](crate::LostReason::LeaseExpired), then its node is deleted
    /// (retried like any release), so that the lock passes on even when the holder's code is
    /// stuck while its process still heartbeats. Zero is refused by `build()` with
    /// [`Error::InvalidLease`](crate::Error::InvalidLease).
    ///
    /// The lease end is written into the node's data just after the grant (in the background)
    /// and at each `extend`, after
    /// the holder's own data, as a line `#zk-lock lease-until-ms=<Unix milliseconds>`:
    /// [`Participant::lease_until`](crate::Participant::lease_until) reads it, and so can any
    /// tool. That write is why a leased lock gives up the handoff, as a revocable one does: its
    /// successors list the directory once more before they know they are first.
    ///
    /// What a lease cannot do: it is a timer in this process's tokio runtime. A runtime that is
    /// itself stuck (a blocked worker thread, a paused process) stops the timer too; then the
    /// session's heartbeats stop as well, the server expires the session and frees the lock
    /// anyway, after the session timeout. There is one timer per hold (re-entered guards share
    /// it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// use std::time::Duration;
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/report").lease(Duration::from_secs(30)).build()?;
    /// let guard = mutex.lock().await?;
    /// guard.extend(Duration::from_secs(30)).await?; // 30 s from now
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// What an acquire that is waiting when its session ends does, on a lock built from a
    /// [`Session`](crate::Session): queue again on the new session, at the back (`true`, the
    /// default; a waiting [`campaign`](crate::LeaderElection::campaign) campaigns again), or
    /// return [`Error::SessionExpired`](crate::Error::SessionExpired) (`false`). Either way the
    /// old session's node is gone with it. A lock built from a plain `zk::Client` always returns
    /// the error: its session cannot be replaced.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: zk_lock::Session) -> zk_lock::Result<()> {
    /// let mutex = zk_lock::Mutex::builder(&session, "/locks/once").requeue_on_expiry(false).build()?;
    /// match mutex.lock().await {
    ///     Err(zk_lock::Error::SessionExpired) => eprintln!("lost our place in the queue"),
    ///     other => other?.release().await?,
    /// }
    /// # Ok(()) }
    /// ```
    pub fn requeue_on_expiry(mut self, requeue: bool) -> Self {
        self.requeue = requeue;
        self
    }

    /// Lets holders be asked to let go (off by default), with Apache Curator's protocol: a
    /// revoker writes `__REVOKE__` into the holder's node, by [`revoke`](crate::revoke),
    /// [`Mutex::revoke_holder`](crate::Mutex::revoke_holder) or a Curator `Revoker`; the holder
    /// sees it as [`LockGuard::revocation_requested`](crate::LockGuard::revocation_requested)
    /// and decides whether to release. Nothing is released by itself.
    ///
    /// The price, chosen on purpose: a revocable lock's nodes are writable by everyone its ACLs
    /// give WRITE to (that is how they can be asked), so their data changes can no longer be
    /// trusted as a handoff. A revocable holder releases with a plain delete, and its successor
    /// lists the directory once more before it knows it is first (one more round trip per
    /// contended handoff). A write to a revocable holder's node never passes the lock on, and
    /// is not taken for a loss either. Non-revocable locks keep their nodes writable by their
    /// owner alone, and refuse revocation with `NotAuthorized`. A request replaces the node's
    /// data: [`participants`](crate::Mutex::participants) (and an election's `leader()`) then show
    /// `__REVOKE__` instead of the holder's own data, as with Curator.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/reports").revocable(true).build()?;
    /// let guard = mutex.lock().await?;
    /// tokio::select! {
    ///     _ = async { /* long work */ } => {}
    ///     _ = guard.revocation_requested() => eprintln!("asked to let go: stopping early"),
    /// }
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn revocable(mut self, revocable: bool) -> Self {
        self.revocable = revocable;
        self
    }

    /// Whether a hold ends as soon as its connection is suspended, as Apache Curator's
    /// `LeaderLatch` does under its default `StandardConnectionStateErrorPolicy`: `true` by
    /// default for a [`LeaderElection`](crate::LeaderElection), `false` for the locks.
    ///
    /// With `true`, the first moment we cannot be sure of the connection, as the session's
    /// monitor or a look at the state sees it (the client lost it, or the server has not
    /// answered for half the session timeout), turns the guard (or
    /// leadership) `Lost` with [`LostReason::ConnectionSuspended`](crate::LostReason::ConnectionSuspended),
    /// never merely `Suspended`, and the node is deleted in the background as soon as the
    /// connection is back (if the session is still alive), so the next in line goes ahead. An
    /// acquire granted while the connection is already in doubt queues again (at the back)
    /// instead of returning a hold that is lost from the start; a `try_` acquire returns
    /// [`Error::ConnectionLoss`](crate::Error::ConnectionLoss). (Any lock does the same with a
    /// grant that comes after 85 % of the session timeout without contact, already `Lost`.) Even a session the server closes
    /// under us on someone else's request (a forced expiry, which no timer can foresee) is then
    /// reported lost as soon as its connection drops, which in practice comes before the next
    /// contender, woken by the server, has listed the queue again (a race won by a round trip,
    /// not a guarantee). A short network blip costs the hold, and you acquire (or campaign)
    /// again.
    ///
    /// With `false` (the locks' default, Curator's `SessionConnectionStateErrorPolicy`), a hold
    /// is `Suspended` while the connection is in doubt, `Held` again if it comes back in time,
    /// and `Lost` at 85 % of the session timeout without contact, before the server can expire
    /// the session.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// // A leader that rides out short blips (Curator's SessionConnectionStateErrorPolicy).
    /// let election = zk_lock::LeaderElection::builder(&client, "/election/a").lose_on_suspend(false).build()?;
    /// // A mutex whose holder stops at the first doubt.
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/strict").lose_on_suspend(true).build()?;
    /// # Ok(()) }
    /// ```
    pub fn lose_on_suspend(mut self, lose: bool) -> Self {
        self.lose_on_suspend = Some(lose);
        self
    }

    /// The largest request the server accepts, in bytes: its `jute.maxbuffer` setting,
    /// `0xfffff` (1 MiB - 1) unless the server is configured otherwise. A server that receives
    /// a larger packet drops the connection without an answer, so [`build`](Self::build)
    /// refuses a lock whose create request (path, data and ACLs) would not fit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// // The servers run with -Djute.maxbuffer=4194304.
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/a")
    ///     .max_request_size(4 << 20)
    ///     .data(vec![0; 2 << 20])
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request = bytes;
        self
    }
}

impl MutexBuilder {
    /// Checks the path, the ACLs and the request size, and makes the mutex. Nothing is sent to
    /// the server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`](crate::Error::InvalidPath) for a path [`LockPath::new`] refuses,
    /// [`Error::InvalidAcl`](crate::Error::InvalidAcl) for an empty ACL list,
    /// [`Error::TooLarge`](crate::Error::TooLarge) when the path or the data would make a
    /// request larger than [`max_request_size`](Self::max_request_size).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let mutex = zk_lock::Mutex::builder(&client, "/locks/a").build()?;
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<crate::Mutex> {
        crate::Mutex::from_builder(&self)
    }
}
