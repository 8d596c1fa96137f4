//! Fair, herd-free distributed locks on Apache ZooKeeper, with fencing tokens and a lock that
//! knows when it is lost.
//!
//! # The algorithm
//!
//! Every contender creates an `EPHEMERAL_SEQUENTIAL` node under the lock path; the server numbers
//! them in arrival order. A contender holds the lock when no node that blocks it is left before
//! its own; for a [`Mutex`] that means it is first. Otherwise it watches exactly the one node
//! that blocks it (for a mutex, the node just before its own) and waits. When the holder
//! deletes its node, only the contenders that watch it are woken: for a mutex its successor
//! alone, so one release wakes one waiter whatever the length of the queue (no thundering
//! herd), and the lock passes strictly in arrival order (FIFO). The other recipes (below) keep
//! arrival order among the requests that conflict and wake only whom a release concerns.
//!
//! * An uncontended acquire costs one round trip: the create and the listing of the directory
//!   are sent back to back and answered together. (The first acquire through a lock handle
//!   costs one more, to check its rights, once for both sides of a [`RwLock`]: see
//!   [`Mutex::lock`].)
//! * Every node carries a name unique to its attempt (Curator's `_c_<uuid>-lock-` layout), so a
//!   create whose answer was lost to a connection failure is found again by name, and adopted
//!   only if its owner is our own session.
//! * The duty to delete our node is armed *before* the create is sent and runs on every way out:
//!   error, timeout, a dropped future, a dropped guard. It retries until the node is gone or the
//!   session is over, within bounds (see Retries below). No orphan node is left to block
//!   everyone behind it.
//! * Lock directories are created as container nodes, which the server reaps once empty.
//! * A contended release of a mutex or a writer is a *handoff*: one multi-op empties the
//!   holder's node and deletes it.
//!   The successor, which watches that node, sees the data change and knows it is first without
//!   listing the directory again: a handoff costs one notification, not a round trip. To make
//!   the signal unforgeable, lock nodes are created writable only by their owner: the session is
//!   given a random `digest` identity of its own on first use, and the node's ACL grants WRITE
//!   and ADMIN to that identity alone (not to credentials the session may share with other
//!   clients), whatever ACLs you choose otherwise. A
//!   Curator `Revoker` or a `zkCli set` on a zk-lock node is refused; zk-lock nodes are told from
//!   Curator's by their uuid version, and a data change of anyone else's node is never taken
//!   for a handoff. Other libraries' waiters behind a zk-lock holder just see an event and look
//!   again. If the handoff's write is refused anyway, the release falls back to a plain delete.
//! * [`Mutex::relock`] releases and queues again in one round trip: a worker that takes turns
//!   in a loop pays one round trip per turn when the lock is free.
//!
//! # Recipes
//!
//! Each recipe is a small policy ("which earlier node blocks me") on the one queue engine, so
//! they share everything else: the one-round-trip enqueue, the cleanup, the lost-lock signal,
//! fencing, the bounds on retries, the tracing events, and the guard, [`LockGuard`].
//!
//! * [`Mutex`] (alias [`InterProcessMutex`]): everyone waits for the node just before it.
//! * [`RwLock`] (alias [`InterProcessReadWriteLock`]): a reader waits only for the nearest
//!   *earlier* writer, a writer for the node just before it: readers share, a writer is alone,
//!   and conflicting requests are served in arrival order.
//! * [`Semaphore`] (alias [`InterProcessSemaphore`]): `n` permits in arrival order; the first
//!   waiter watches the directory (any holder's release lets it in), every later waiter only the
//!   contender before it, so a release fires one watch and the grant it causes one more,
//!   whatever the queue's length; the permit count is stored on the semaphore's node and
//!   checked.
//! * [`LeaderElection`] (alias [`LeaderLatch`]): candidates queue, the first leads;
//!   [`campaign`](LeaderElection::campaign) returns a [`Leadership`] with the guard's state,
//!   `lost()` and `resign()`; [`leader`](LeaderElection::leader) and
//!   [`observe`](LeaderElection::observe) tell anyone who leads.
//! * [`MultiLock`]: several locks of any kind taken together, all or nothing, in one canonical
//!   order (by path, so overlapping multi-locks never deadlock), under one deadline; on
//!   failure, what was taken is released in reverse order before the call returns.
//! * Revocation: a lock built [`revocable`](LockBuilder::revocable) can be asked to let go
//!   ([`revoke`], [`Mutex::revoke_holder`], or Curator's `Revoker`), which its holder sees as
//!   [`LockGuard::revocation_requested`].
//! * [`Lock`]: the object-safe trait that every lock-like recipe implements ([`Mutex`],
//!   [`ReadLock`], [`WriteLock`], [`Semaphore`]), for code that takes any lock, or a
//!   `Vec<Box<dyn Lock>>`.
//!
//! Every recipe is built the same way, with the same options ([`LockBuilder`]: node data,
//! ACLs, request size limit, revocation, a lease, what a waiting acquire does when its session
//! ends), from either a plain `zk::Client` or a self-healing [`Session`] (see below).
//!
//! # Across sessions
//!
//! A `zk::Client` is one ZooKeeper session for life: once it expires, every lock built on it is
//! done for (its acquires return [`Error::SessionExpired`]). Build locks from a [`Session`]
//! instead: it replaces an expired session with a new one (with the same options and
//! credentials, backing off, giving up with [`Error::Connect`] after
//! [`reconnect_attempts`](SessionBuilder::reconnect_attempts) failures in a row), and reports
//! [`ConnectionState`]s in Curator's vocabulary on [`Session::state_changes`]. Every
//! constructor takes `impl Into<`[`Connection`]`>`, so the two are used the same way, on the
//! same engine (a new session simply gets a new queue). Across an expiry, for every recipe:
//!
//! * a guard (or leadership, or multi-guard) held when the session is lost turns
//!   [`LockState::Lost`] (with [`LostReason::SessionExpired`],
//!   [`LostReason::SuspendedTooLong`] when the server could not be reached, or
//!   [`LostReason::ConnectionSuspended`] for a hold that ends on a suspension, as a leadership
//!   does by default) and stays `Lost`:
//!   it never becomes `Held` on the new session. Release or drop it promptly (its node is gone
//!   with its session, or, should the old session turn out alive after all, deleted then), and
//!   take the lock again. A lost [`Leadership`] is final in the same way: call
//!   [`campaign`](LeaderElection::campaign) again, which campaigns on the new session.
//! * a [`MultiLock`] whose member is lost while the others are taken starts again: it never
//!   returns a multi-guard with a member already lost.
//! * an acquire (or campaign) that is waiting queues again on the new session, at the back
//!   (its deadline, if any, still counts from the call); with
//!   [`requeue_on_expiry(false)`](LockBuilder::requeue_on_expiry) it returns
//!   [`Error::SessionExpired`] instead. Either way its node went with the old session.
//! * a new acquire simply works on the new session; an observer
//!   ([`LeaderElection::observe`]) follows the election on it.
//! * a session we could not reach for a whole session timeout is treated as lost (the server
//!   normally expires it then; an ensemble that lost its quorum restarts the clocks, so it may
//!   live on for a while, with the nodes of guards not yet released): the `Session` starts a
//!   new one then, without waiting for the client to find out.
//!
//! # Leases and reasons
//!
//! A lock built with a [`lease`](LockBuilder::lease) ends each hold after that long (from the
//! grant, or from the last [`extend`](LockGuard::extend)): the guard turns `Lost` with
//! [`LostReason::LeaseExpired`] first, then its node is deleted, so the lock passes on even if
//! the holder is stuck. Every `Lost` carries a [`LostReason`]
//! ([`LockGuard::lost_reason`]): the session expired, no contact for too long, the node
//! deleted or written by someone else, the lease, a revocation.
//!
//! # Secure connections
//!
//! With the `tls` feature, `SessionBuilder::tls` connects over TLS (and `tcp+tls://` hosts
//! in connect strings); a client certificate authenticates as `x509`. With the `sasl` feature,
//! `SessionBuilder::sasl` authenticates with SASL `DIGEST-MD5` (GSSAPI is the `sasl-gssapi`
//! feature; it needs the system's Kerberos headers and libclang to build). Plain `digest`
//! credentials need no feature: [`SessionBuilder::auth`]. A refused handshake or a failed
//! authentication ends in [`Error::Connect`]; authentication is never retried.
//!
//! # What a lock on ZooKeeper can promise
//!
//! While the session lives and our node exists, no other contender of the same lock is granted.
//! But a holder can be paused (GC, SIGSTOP, a slow VM) or cut off, its session can expire, and the
//! lock can pass to the next contender while the old holder still runs: no lock service can
//! prevent that. This crate does two things about it:
//!
//! * **The lost-lock signal.** Each guard has a [`LockState`]: `Held`, `Suspended` while the
//!   connection is down (or at once `Lost`, for a hold built to end on a suspension, as a
//!   leadership is by default), and `Lost` once the server *may* have expired the session. The clock
//!   counts from the last moment the server is known to have heard from us, and `Lost` is raised
//!   at 85 % of the session timeout after it, so before the server can give the lock to anyone
//!   else. A process that was itself paused sees `Lost` as soon as it looks.
//! * **Fencing tokens.** [`MutexGuard::fencing_token`] is the creation zxid of our node: strictly
//!   larger for every later holder, across leader changes. A resource that remembers the largest
//!   token it has seen and refuses smaller ones is safe even from a holder that does not know it
//!   lost the lock. For data in ZooKeeper itself, [`MutexGuard::fenced`] writes only if our node
//!   still exists, in one atomic multi-op.
//!
//! # Requirements
//!
//! * **ZooKeeper 3.6 or later** (multi-reads, used by [`Mutex::participants`]); lock
//!   directories are container nodes (3.5.3). On 3.7 and later the first acquire also checks,
//!   with `whoAmI`, that the ACLs let us delete what we create (see [`MutexBuilder::acls`]);
//!   before 3.7 that check is skipped, and so is the process-wide identity of sessions without
//!   credentials: on such servers give every session credentials when you restrict ACLs.
//!   Tested with 3.8.0 (Debian's package).
//! * A tokio runtime (the crate spawns its session monitor and background deletes on it).
//!
//! # Choosing the session timeout
//!
//! The session timeout (set on the client, `Connector::with_session_timeout`, and clamped by
//! the server to 2–20 ticks) drives everything a holder knows about its lock:
//!
//! | after this share of the timeout | without contact with the server |
//! |---|---|
//! | 10 % | a heartbeat (`sync`) is sent while locks are held or awaited; a holder's watch on its own node is armed after holding this long |
//! | 50 % | held locks turn [`LockState::Suspended`] (holds that end on a suspension, as a leadership by default, turn `Lost`: see [`LockBuilder::lose_on_suspend`]) |
//! | 85 % | held locks turn [`LockState::Lost`], before the server may expire the session |
//! | 100 % (+ a tick) | the server expires the session and deletes its nodes: the lock passes on |
//! | 200 % of consecutive failures | a request is given up with [`Error::ConnectionLoss`] |
//!
//! So a short timeout (2–4 s) hands the lock of a crashed or partitioned holder on quickly but
//! turns a GC pause or a network blip of that length into a lost lock; a long one (10–30 s)
//! rides out blips but leaves the lock stuck for that long when a holder dies. A process that
//! exits (or crashes) **without releasing** keeps its locks until its session expires. A
//! session is closed (and its nodes deleted at once by the server) when the last clone of its
//! `zk::Client` is dropped, inside the tokio runtime: the crate's own handles (every `Mutex`,
//! guard, the session monitor, a background delete still running) hold clones too, so drop
//! the locks and guards, then the client, before the runtime ends.
//!
//! # Size limits
//!
//! The server drops the connection of a client that sends a request larger than its
//! `jute.maxbuffer` (1 MiB - 1 byte by default): so a lock checks, when it is built, that its
//! path, node data and ACLs fit ([`Error::TooLarge`], limit set by
//! [`MutexBuilder::max_request_size`]). Long queues are listed in chunks, whatever their
//! length.
//!
//! # Retries
//!
//! A request that fails with a connection error may or may not have been applied: the engine
//! looks (a create is found again by its unique name), then retries with a backoff of 5 ms
//! doubling to 500 ms. While the server cannot be reached the session ends by itself and the
//! call returns [`Error::SessionExpired`]; a request that keeps failing while the session lives
//! on (a server that drops each attempt) is given up after twice the session timeout with
//! [`Error::ConnectionLoss`]. Background deletes follow the same bound; a delete refused for
//! lack of permission is retried in the background every second for ten minutes (the node
//! goes anyway when the session ends).
//!
//! # Tracing
//!
//! The crate emits [`tracing`](https://docs.rs/tracing) events with target `zk_lock`, inside a
//! span `acquire` (field `name`: `zk_lock::lock`, `zk_lock::lock_timeout`,
//! `zk_lock::try_lock`, `zk_lock::relock`) or `zk_lock::release`. Fields: `lock` (path),
//! `node`, `session` and `token` (hex), `waited_ms`, `held_ms`.
//!
//! The main events (others, at DEBUG, trace retries and cleanups):
//!
//! | level | message | fields | when |
//! |---|---|---|---|
//! | DEBUG | `enqueued` | lock, node, session, token | our node is created |
//! | DEBUG | `granted` | lock, node, session, token, ahead, waited_ms, by (`listing` or `handoff`) | we hold the lock |
//! | DEBUG | `busy: try_lock wrote nothing` | lock, session | `try_lock` on a busy lock |
//! | DEBUG | `acquire abandoned` | lock, node, session, waited_ms, why (`cancelled`, `timed out`, `busy`, or the error) | an acquire ended without a grant |
//! | DEBUG | `released` | lock, node, session, token, held_ms | `release()` deleted the node |
//! | DEBUG | `guard dropped: deleting in the background` | lock, node, session, token, held_ms | a guard dropped without `release` |
//! | DEBUG | `background delete done` | lock, node, outcome (`deleted`, `already gone`, `session over`) | a background delete ended |
//! | ERROR | `background delete failed: the node stays until the session ends` | lock, node, error | it gave up |
//! | INFO | `lock state changed` | lock, node, session, state | `Held` ⇄ `Suspended` |
//! | WARN | `lock lost` | lock, node, session, reason (a [`LostReason`]) | the guard turned `Lost` |
//! | INFO / WARN | `connection state changed` | state (a [`ConnectionState`]; WARN for `Suspended` and `Lost`), session | a [`Session`]'s connection changed (and its first `Connected`) |
//! | INFO | `session lost while waiting: queueing again on the new session` | lock, old_session | a waiting acquire re-queues |
//! | WARN | `could not establish a zookeeper session` | connect, attempt, error | a connection attempt of a [`Session`] failed |
//! | ERROR | `giving up on zookeeper: no new session` | error | a [`Session`] gave up |
//! | INFO | `granted while the connection was in doubt: queueing again` | lock, session | a grant lost at once (see [`LockBuilder::lose_on_suspend`], or after 85 % of the session timeout without contact) re-queues |
//! | DEBUG / ERROR | `lease ran out: node deleted` / `lease ran out, but the node could not be deleted` | lock, node (, error) | a lease ended a hold |
//! | DEBUG / ERROR | `hold ended by a suspension: node deleted` / `…, but the node could not be deleted` | lock, node (, error) | a hold that ends on a suspension was withdrawn |
//! | WARN | `restricted ACLs on a session without credentials: …` | lock | first use of such a lock, see [`MutexBuilder::acls`] |
//!
//! # Limits
//!
//! * Anyone allowed to DELETE children of the lock directory can delete the holder's node and
//!   so give the lock to the next contender; the holder sees `Lost` within a tenth of the session
//!   timeout (a watch on its own node is armed after that long). Lock the directory down with
//!   ACLs where that matters (see [`MutexBuilder::acls`] for what each participant needs).
//! * The clock behind `Lost` is the monotonic clock, which does not run while the whole machine
//!   is suspended (a laptop asleep, a VM frozen): after such a suspend the guard learns of the
//!   loss from the server, not from its own timer.
//! * The session gets an extra `digest` identity (see above), once per session for the life of
//!   the process. It never stands for your credentials: an `auth` ACL entry of a lock names the
//!   session's own credentials. A session without any credentials, on a lock whose ACLs are
//!   not open to everyone, also gets the process's own `digest` identity, shared by this
//!   process's credential-less sessions and known to this process and the server only: for
//!   them, `auth` means "this process", so that a lock with restricted ACLs works between the
//!   sessions of one process and refuses everyone else (see [`MutexBuilder::acls`]).
//! * Do not write a mutex's or a writer's lock node yourself, even with the holder's own
//!   session: a data change of a holder's node is its handoff, and lets its successor in.
//!   Write what you protect with [`LockGuard::fenced`], which refuses lock nodes. (A leader may
//!   write its own node: the election takes no handoff.)
//! * [`Mutex`] (alias [`InterProcessMutex`]) is not reentrant the way Curator's is (by thread):
//!   a second `lock()` queues behind the first; re-enter explicitly with [`MutexGuard::reenter`].
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use zk_lock::{zk, LockState, Mutex};
//!
//! let client = zk::Client::connect("127.0.0.1:2181").await?;
//! let mutex = Mutex::builder(&client, "/locks/orders").data("worker-1").build()?;
//!
//! let guard = mutex.lock().await?;
//! assert_eq!(guard.state(), LockState::Held);
//! println!("my turn, token {}", guard.fencing_token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod access;
mod builder;
mod cleanup;
mod connect_string;
mod connection;
mod election;
mod error;
mod events;
mod fenced;
mod guard;
mod handle;
mod held;
mod identity;
mod lease;
mod limits;
mod lock;
mod monitor;
mod multi;
mod mutex;
mod node;
mod participant;
mod path;
mod progress;
mod queue;
mod retry;
mod revoke;
mod rwlock;
mod semaphore;
mod session;
mod state;
mod token;

pub use builder::{LeaderElectionBuilder, LockBuilder, MutexBuilder, RwLockBuilder, SemaphoreBuilder};
pub use connection::Connection;
pub use election::{LeaderElection, LeaderLatch, LeaderWatch, Leadership};
pub use error::{Error, Result};
pub use fenced::FencedWrite;
pub use guard::{LockGuard, MutexGuard};
pub use lock::Lock;
pub use multi::{MultiGuard, MultiLock};
pub use mutex::{InterProcessMutex, Mutex};
pub use participant::Participant;
pub use path::LockPath;
pub use progress::{Position, Progress};
pub use revoke::revoke;
pub use rwlock::{InterProcessReadWriteLock, ReadLock, RwLock, WriteLock};
pub use semaphore::{InterProcessSemaphore, Semaphore};
pub use session::{ConnectionState, ConnectionStates, Session, SessionBuilder};
pub use state::{LockState, LostReason};
pub use token::FencingToken;
/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The ZooKeeper client this crate is built on ([`zookeeper-client`](https://docs.rs/zookeeper-client)
/// 0.11), re-exported so that your client and ours are the same version.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), zk_lock::zk::Error> {
/// let client = zk_lock::zk::Client::connector()
///     .with_session_timeout(std::time::Duration::from_secs(10))
///     .connect("127.0.0.1:2181")
///     .await?;
/// # Ok(()) }
/// ```
pub mod zk {
    pub use zookeeper_client::*;
}
