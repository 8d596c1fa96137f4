//! Leader election: candidates queue, the first leads.

use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use crate::builder::LeaderElectionBuilder;
use crate::connection::Connection;
use crate::error::Result;
use crate::guard::LockGuard;
use crate::handle::Handle;
use crate::node::Contender;
use crate::node::Layout;
use crate::participant::Participant;
use crate::path::LockPath;
use crate::queue::{Blocked, Policy};
use crate::state::LockState;
use crate::token::FencingToken;

/// Candidates wait for the one just before them, like a mutex's contenders, but take no data
/// change of the leader's node for a handoff: a leader may well write its own node (to publish
/// something), and that must never make the next candidate lead. A resignation is a plain
/// delete; the next candidate lists once more.
#[derive(Debug, Clone, Copy)]
struct Candidates;

impl Policy for Candidates {
    fn blocker(&self, _queue: &[Contender], me: usize) -> Option<Blocked> {
        me.checked_sub(1).map(Blocked::By)
    }
}

/// A leader election shared by every process that uses the same ZooKeeper path: candidates
/// queue in arrival order and the first one leads, until it resigns or its session ends; then
/// the next in line leads. Only the next in line is woken (no herd).
///
/// Leading means: our node is first, and it is our current session's (a node is adopted only
/// if its `ephemeralOwner` is our session). A [`Leadership`] knows when it ends: by default, as
/// with Apache Curator's `LeaderLatch`, the first moment the connection is in doubt ends it
/// (`Lost` with [`LostReason::ConnectionSuspended`](crate::LostReason::ConnectionSuspended)),
/// and its node is deleted as soon as the connection is back, so the next candidate leads. So
/// even a session the server closes on someone else's request (a forced expiry, which no timer
/// can foresee) reads `Lost`, in practice, before the next candidate leads: the server drops the
/// leader's connection as it closes the session, and the next candidate still has to list the
/// queue once more. That is a race won by a round trip, not a guarantee (a leader connected to
/// another member of an ensemble, or cut off already, learns later).
/// Build it with [`lose_on_suspend(false)`](crate::LockBuilder::lose_on_suspend) to ride out
/// short blips instead: then it is `Suspended` while in doubt and `Lost` *before* the server
/// can expire the session for want of contact. Fence what the leader writes with its epoch
/// all the same. Its
/// [`fencing_token`](Leadership::fencing_token) is an epoch: strictly larger for every later
/// leader.
///
/// The node layout is Apache Curator's `LeaderLatch` (`_c_<uuid>-latch-<seq>`), so Curator
/// latches on the same path take part in the same election. Anyone, candidate or not, can ask
/// [`leader`](LeaderElection::leader) or follow the changes with
/// [`observe`](LeaderElection::observe).
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// use zk_lock::LeaderElection;
///
/// let election = LeaderElection::builder(&client, "/election/scheduler").data("host-a").build()?;
/// let leadership = election.campaign().await?;
/// println!("leading, epoch {}", leadership.fencing_token());
/// tokio::select! {
///     _ = async { /* lead */ } => {}
///     _ = leadership.lost() => eprintln!("no longer leading"),
/// }
/// leadership.resign().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeaderElection {
    handle: Handle,
}

/// The name Apache Curator users know this recipe by.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// let latch = zk_lock::LeaderLatch::new(&client, "/election/scheduler")?;
/// latch.campaign().await?.resign().await?;
/// # Ok(()) }
/// ```
pub type LeaderLatch = LeaderElection;

/// Our leadership, from [`LeaderElection::campaign`]: the state, `lost()` and fencing token of
/// a guard, and [`resign`](Leadership::resign).
///
/// # Examples
///
/// ```no_run
/// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
/// let leadership = election.campaign().await?;
/// assert_eq!(leadership.state(), zk_lock::LockState::Held);
/// leadership.resign().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "if unused the leadership is given up at once"]
pub struct Leadership {
    guard: LockGuard,
}

impl LeaderElectionBuilder {
    /// Checks the path, the ACLs and the request size, and makes the election. Nothing is sent
    /// to the server.
    ///
    /// # Errors
    ///
    /// Those of [`MutexBuilder::build`](crate::MutexBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let election = zk_lock::LeaderElection::builder(&client, "/election/a").data("me").build()?;
    /// # Ok(()) }
    /// ```
    pub fn build(mut self) -> Result<LeaderElection> {
        self.lose_on_suspend_by_default(true);
        let lanes = self.lanes(Layout::LATCH, &[0], None)?;
        Ok(LeaderElection { handle: Handle::new(lanes, 0, Candidates, self.requeues()) })
    }
}

impl LeaderElection {
    /// An election on `path`. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// Those of [`MutexBuilder::build`](crate::MutexBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let election = zk_lock::LeaderElection::new(&client, "/election/a")?;
    /// # Ok(()) }
    /// ```
    pub fn new(conn: impl Into<Connection>, path: impl Into<String>) -> Result<LeaderElection> {
        LeaderElection::builder(conn, path).build()
    }

    /// A builder for an election on `path`: the candidate's node data (what
    /// [`leader`](LeaderElection::leader) shows others), ACLs, request size limit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let election = zk_lock::LeaderElection::builder(&client, "/election/a").data("host-a").build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(conn: impl Into<Connection>, path: impl Into<String>) -> LeaderElectionBuilder {
        LeaderElectionBuilder::new(conn.into(), path.into())
    }

    /// The election's path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(election: zk_lock::LeaderElection) {
    /// println!("{}", election.path());
    /// # }
    /// ```
    pub fn path(&self) -> &LockPath {
        self.handle.path()
    }

    /// Stands as a candidate and waits until we lead. Every call is a new candidate, at the
    /// back of the line.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future withdraws the candidate (its node is deleted).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
    /// let leadership = election.campaign().await?;
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub async fn campaign(&self) -> Result<Leadership> {
        Ok(Leadership { guard: self.handle.acquire("zk_lock::campaign", None, None).await? })
    }

    /// [`campaign`](LeaderElection::campaign), giving up if we do not lead within `timeout`
    /// (see [`Mutex::lock_timeout`](crate::Mutex::lock_timeout) for what it covers).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](crate::Error::Timeout), our candidate withdrawn; those of
    /// [`campaign`](LeaderElection::campaign).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`campaign`](LeaderElection::campaign).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
    /// if let Ok(leadership) = election.campaign_timeout(std::time::Duration::from_secs(1)).await {
    ///     leadership.resign().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn campaign_timeout(&self, timeout: Duration) -> Result<Leadership> {
        Ok(Leadership { guard: self.handle.acquire("zk_lock::campaign_timeout", Some(timeout), None).await? })
    }

    /// Campaigns (for at most `timeout`, if given), reporting how many candidates are ahead
    /// through `progress` (see [`Progress`](crate::Progress)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`campaign`](LeaderElection::campaign).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
    /// let (progress, position) = zk_lock::Progress::new();
    /// let leadership = election.campaign_with(None, &progress).await?;
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub async fn campaign_with(&self, timeout: Option<Duration>, progress: &crate::Progress) -> Result<Leadership> {
        Ok(Leadership { guard: self.handle.acquire("zk_lock::campaign_with", timeout, Some(progress)).await? })
    }

    /// Who leads now (the first candidate in line), or `None` when nobody does. Anyone can ask.
    ///
    /// # Errors
    ///
    /// [`Error::NotAuthorized`](crate::Error::NotAuthorized) when an ACL refuses the reads,
    /// session errors, [`Error::ConnectionLoss`](crate::Error::ConnectionLoss).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
    /// match election.leader().await? {
    ///     Some(leader) => println!("{} leads", String::from_utf8_lossy(leader.data().unwrap_or(b"?"))),
    ///     None => println!("nobody leads"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn leader(&self) -> Result<Option<Participant>> {
        Ok(self.handle.first().await?.0)
    }

    /// Follows who leads: see [`LeaderWatch`]. Its first [`changed`](LeaderWatch::changed)
    /// answers at once with who leads now, every later one with the next change.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
    /// let mut leaders = election.observe();
    /// loop {
    ///     let leader = leaders.changed().await?;
    ///     println!("now leading: {:?}", leader.map(|l| l.node().to_owned()));
    /// }
    /// # }
    /// ```
    pub fn observe(&self) -> LeaderWatch {
        LeaderWatch { handle: self.handle.clone(), last: None, started: false, watcher: None }
    }

    /// The candidates in line now, the leader first.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::participants`](crate::Mutex::participants).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
    /// println!("{} candidates", election.participants().await?.len());
    /// # Ok(()) }
    /// ```
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        self.handle.participants().await
    }
}

/// Who leads an election, as it changes: from [`LeaderElection::observe`]. Each change is
/// reported once, in order; a leadership shorter than one round trip can pass unseen (the next
/// report names whoever leads then), and so can a candidate first in line for an instant (a
/// duplicate of a retried create, one cancelled at once), which may be reported. Each look costs
/// a listing and a read with a watch on the leader's node (on the directory while nobody leads),
/// once per change of the leader's node.
///
/// # Examples
///
/// ```no_run
/// # async fn example(election: zk_lock::LeaderElection) -> zk_lock::Result<()> {
/// let mut leaders = election.observe();
/// let now = leaders.changed().await?; // who leads now
/// let next = leaders.changed().await?; // the next leader (or None)
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaderWatch {
    handle: Handle,
    /// The node of the leader reported last.
    last: Option<String>,
    started: bool,
    /// The watch of the last look, and the session it is on.
    watcher: Option<(zk::OneshotWatcher, zk::Client)>,
}

impl LeaderWatch {
    /// Waits for the leader to change and returns the new one (`None`: nobody leads). The first
    /// call returns who leads now.
    ///
    /// # Errors
    ///
    /// Those of [`LeaderElection::leader`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a change that happens while no call is waiting is reported by the next.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mut leaders: zk_lock::LeaderWatch) -> zk_lock::Result<()> {
    /// while let Some(leader) = leaders.changed().await? {
    ///     println!("{} leads", leader.node());
    /// }
    /// println!("nobody leads");
    /// # Ok(()) }
    /// ```
    pub async fn changed(&mut self) -> Result<Option<Participant>> {
        loop {
            // (If this future is dropped while it waits, the watch goes with it: the next call
            // then looks at once, so nothing that changed meanwhile is missed.)
            if let Some((watcher, client)) = self.watcher.take() {
                // A new session (with a `Session`) is a change too: the old one's watch is
                // dead, look again on the new one.
                tokio::select! {
                    _ = watcher.changed() => {}
                    () = self.handle.replaced(&client) => {}
                }
            }
            let (leader, watcher, client) = self.handle.first().await?;
            self.watcher = Some((watcher, client));
            let node = leader.as_ref().map(|l| l.node().to_owned());
            if !self.started || node != self.last {
                self.started = true;
                self.last = node;
                return Ok(leader);
            }
        }
    }
}

impl Leadership {
    /// The leader's epoch: the creation zxid of its node, strictly larger for every later
    /// leader. Hand it to what the leader writes to, to fence a deposed leader out.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// let epoch = leadership.fencing_token();
    /// # }
    /// ```
    pub fn fencing_token(&self) -> FencingToken {
        self.guard.fencing_token()
    }

    /// Full path of our candidate node.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// println!("leading through {}", leadership.node());
    /// # }
    /// ```
    pub fn node(&self) -> &str {
        self.guard.node()
    }

    /// Whether we still lead: `Held` or `Lost` (we do not lead any more, or the server may
    /// already let the next lead). By default a suspension of the connection ends leadership at
    /// once (`Lost`); built with [`lose_on_suspend(false)`](crate::LockBuilder::lose_on_suspend),
    /// it reads `Suspended` while the connection is lost (we can no longer be sure).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// if leadership.state() != zk_lock::LockState::Held {
    ///     return; // stop leading
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> LockState {
        self.guard.state()
    }

    /// Why we stopped leading, once [`state`](Leadership::state) is `Lost` (`None` before):
    /// see [`LockGuard::lost_reason`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// leadership.lost().await;
    /// eprintln!("no longer leading: {}", leadership.lost_reason().expect("lost"));
    /// # }
    /// ```
    pub fn lost_reason(&self) -> Option<crate::LostReason> {
        self.guard.lost_reason()
    }

    /// Moves the end of the lease to `lease` from now: see [`LockGuard::extend`].
    ///
    /// # Cancel safety
    ///
    /// As [`LockGuard::extend`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) -> zk_lock::Result<()> {
    /// leadership.extend(std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, lease: Duration) -> Result<()> {
        self.guard.extend(lease).await
    }

    /// The ZooKeeper session we lead with: see [`LockGuard::session_id`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// println!("leading on session {}", leadership.session_id());
    /// # }
    /// ```
    pub fn session_id(&self) -> zk::SessionId {
        self.guard.session_id()
    }

    /// A watch of [`state`](Leadership::state).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// let mut states = leadership.state_watcher();
    /// while states.changed().await.is_ok() {
    ///     println!("leadership now {:?}", *states.borrow());
    /// }
    /// # }
    /// ```
    pub fn state_watcher(&self) -> watch::Receiver<LockState> {
        self.guard.state_watcher()
    }

    /// A write to ZooKeeper that applies only while we lead (our node still exists): see
    /// [`LockGuard::fenced`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) -> zk_lock::Result<()> {
    /// let mut write = leadership.fenced();
    /// write.set_data("/scheduler/leader", b"host-a", None)?;
    /// write.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn fenced(&self) -> crate::FencedWrite<'_> {
        self.guard.fenced()
    }

    /// Resolves once someone asked us to step down (an election built
    /// [`revocable`](crate::LockBuilder::revocable)): see [`LockGuard::revocation_requested`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) -> zk_lock::Result<()> {
    /// leadership.revocation_requested().await;
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub async fn revocation_requested(&self) {
        self.guard.revocation_requested().await
    }

    /// Whether someone asked us to step down.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// let asked = leadership.is_revocation_requested();
    /// # }
    /// ```
    pub fn is_revocation_requested(&self) -> bool {
        self.guard.is_revocation_requested()
    }

    /// Resolves once the leadership is `Lost` (see [`LeaderElection`] for when that is).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn lead() {}
    /// # async fn example(leadership: zk_lock::Leadership) {
    /// tokio::select! {
    ///     _ = lead() => {}
    ///     _ = leadership.lost() => eprintln!("deposed"),
    /// }
    /// # }
    /// ```
    pub async fn lost(&self) {
        self.guard.lost().await
    }

    /// Steps down: deletes our node, so that the next candidate leads (woken alone).
    ///
    /// # Errors
    ///
    /// Those of [`LockGuard::release`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the delete goes on in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(leadership: zk_lock::Leadership) -> zk_lock::Result<()> {
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub async fn resign(self) -> Result<()> {
        self.guard.release().await
    }
}
