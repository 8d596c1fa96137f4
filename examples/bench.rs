//! Benchmark program for zk-lock and the peers it is compared with; see
//! `/work/shared/bench-contract.md` (the contract this follows) and `testenv/bench` (the
//! driver that runs every workload for every peer and prints medians).
//!
//! ```text
//! cargo run --release --example bench -- <W1|W2|W3|W4|RW1|S1|E1> --connect HOST:PORT [--mntr HOST:PORT]
//!     [--clients N] [--cycles N] [--warmup N] [--waiters N] [--session-timeout-ms 10000]
//!     [--path /bench/<random>] [--recipe mutex|rwlock|semaphore|election]
//!     [--read-ratio 0.9] [--seed 1] [--permits 4] [--terms 200] [--hold-ms 0]
//!     [--peer zk-lock|zookeeper-client] [--deadline-s 180]
//! ```
//!
//! The recipe workloads (RW1 read/write lock, S1 semaphore, E1 election) are measured for
//! zk-lock here, and for Curator by `bench/peers/curator/run`; the Kazoo driver runs the mutex
//! workloads only.
//!
//! It prints exactly one JSON object on stdout; logs go to stderr (`RUST_LOG`, default `warn`).
//!
//! # Lock paths
//!
//! Under the base path `--path` (default `/bench/<uuid>`): the measured phase uses
//! `<path>/lock` (W1, W2, W4) or `<path>/lock-<i>` per client (W3); the warm-up uses
//! `<path>/warmup` (W1, W2, W4) or `<path>/warmup-<i>` (W3). The recipe workloads use
//! `<path>/recipe`, and `<path>/warmup-<i>` per client.
//!
//! # Server counters (ZooKeeper 3.8 `mntr`), deltas over the measured phase
//!
//! - `zk_packets`: `zk_packets_received`, minus 1 for the `mntr` command that reads the
//!   "after" value (a four-letter word counts as one received packet on 3.8).
//! - `zk_writes`: `zk_cnt_updatelatency`. The server adds one sample per request that has a
//!   transaction header when it leaves `FinalRequestProcessor`
//!   (`ServerStats::updateLatency`): create, delete, setData, multi (one per multi, whatever
//!   its size), createSession/closeSession, and also writes that fail (NodeExists, NoNode: they
//!   carry an error transaction).
//! - `zk_reads`: `zk_cnt_readlatency`: every other request that reaches
//!   `FinalRequestProcessor`: getChildren, getData, exists, sync, ... and also pings (a
//!   session that idles for a third of its timeout pings) and setWatches after a reconnect.
//!   3.8 has no per-opcode counters in `mntr`, so pings cannot be told apart; they are few
//!   (at most one per session per ~3 s with the default 10 s timeout).
//! - `watch_events_per_handoff` (W4): the sum of `zk_sum_node_created_watch_count`,
//!   `zk_sum_node_deleted_watch_count`, `zk_sum_node_changed_watch_count` and
//!   `zk_sum_node_children_watch_count`, divided by the handoffs. The server adds the number
//!   of watchers it notified each time it fires an event of that type (`WatchManager`), so
//!   the sum is the number of watch notifications sent to clients. One per handoff is the
//!   herd-free ideal.
//!
//! # Peers
//!
//! - `zk-lock`: [`zk_lock::Mutex`], released with [`zk_lock::MutexGuard::release`].
//! - `zookeeper-client`: `Client::lock` with a Curator-compatible prefix (`_c_<uuid>-lock-`),
//!   released by deleting its lock node explicitly and awaiting the reply ("release awaited"),
//!   then forgetting the `LockClient` so that its drop does not issue a second, background
//!   delete (this leaks the lock path string, ~70 bytes per cycle).
//!
//! # W4
//!
//! One extra session (the holder) takes the lock; then `--waiters` contenders, spread round
//! robin over the `--clients` sessions, ask for it; once the listing shows all their nodes, the
//! measured phase starts and the holder releases. Each waiter releases right after it is
//! granted, so the lock is passed down the whole queue once. `cycles` is the number of waiters
//! granted, `cycles_per_s` handoffs per second over the pass. The acquire times of W4 count
//! from the start of the pass (all waiters asked before it), i.e. they are the time from the
//! holder's release to the grant.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use zk_lock::zk;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(clippy::upper_case_acronyms)]
enum Workload {
    W1,
    W2,
    W3,
    W4,
    /// Read/write lock, `--read-ratio` reads.
    RW1,
    /// Semaphore of `--permits`.
    S1,
    /// Leader election, `--terms` leaderships in all.
    E1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    #[value(name = "zk-lock")]
    ZkLock,
    #[value(name = "zookeeper-client")]
    ZookeeperClient,
    /// The physical floor, not a lock: one ephemeral sequential create and one delete per
    /// cycle, each awaited (W1 and W3 only: nothing is exclusive).
    #[value(name = "raw")]
    Raw,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::ZkLock => "zk-lock",
            Peer::ZookeeperClient => "zookeeper-client",
            Peer::Raw => "raw",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Recipe {
    Mutex,
    Rwlock,
    Semaphore,
    Election,
}

/// Lock benchmark (see the bench contract).
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Workload: W1 uncontended, W2 contended, W3 many locks, W4 long queue.
    #[arg(value_enum, ignore_case = true)]
    workload: Workload,
    /// ZooKeeper connect string (loopback).
    #[arg(long)]
    connect: String,
    /// Server whose `mntr` is read before and after the measured phase (default: first host of
    /// --connect).
    #[arg(long)]
    mntr: Option<String>,
    /// Sessions (default W1 1, W2 16, W3 16, W4 16).
    #[arg(long)]
    clients: Option<usize>,
    /// Measured acquisitions per client (default W1 2000, W2 100, W3 200; W4: one per waiter).
    #[arg(long)]
    cycles: Option<usize>,
    /// Warm-up acquisitions per client on a separate path (default W1 200, W2 10, W3 20, W4 2).
    #[arg(long)]
    warmup: Option<usize>,
    /// W4: contenders queued behind the holder.
    #[arg(long, default_value_t = 256)]
    waiters: usize,
    /// Session timeout asked for.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
    /// Base lock path (default /bench/<random>).
    #[arg(long)]
    path: Option<String>,
    /// Lock recipe; must agree with the workload (RW1 rwlock, S1 semaphore, E1 election, else
    /// mutex). Default: the workload's.
    #[arg(long, value_enum)]
    recipe: Option<Recipe>,
    /// RW1: share of reads.
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    /// RW1: seed of each client's choice of read or write (client i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// S1: permits of the semaphore.
    #[arg(long, default_value_t = 4)]
    permits: u32,
    /// E1: leaderships in all.
    #[arg(long, default_value_t = 200)]
    terms: usize,
    /// RW1, S1, E1: how long the critical section lasts (0: one scheduler yield).
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// Library under test.
    #[arg(long, value_enum, default_value = "zk-lock")]
    peer: Peer,
    /// Global deadline in seconds: whatever is still running then stops and `timed_out` is true.
    #[arg(long, default_value_t = 180)]
    deadline_s: u64,
    /// zk-lock only: release and re-acquire with separate calls (`release().await` then
    /// `lock().await`) instead of `Mutex::relock`, which pipelines them in one round trip.
    #[arg(long)]
    no_relock: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ------------------------------------------------------------------------------ lock adapter --

/// One contender handle for one lock path in one session.
#[derive(Clone)]
enum Locker {
    ZkLock(zk_lock::Mutex),
    ZookeeperClient { client: zk::Client, dir: Arc<str> },
    Raw { client: zk::Client, prefix: Arc<str> },
}

enum Held<'a> {
    ZkLock(zk_lock::MutexGuard),
    ZookeeperClient(zk::LockClient<'a>),
    Raw { client: &'a zk::Client, path: String, sequence: i64 },
}

impl Locker {
    fn new(peer: Peer, client: &zk::Client, dir: &str) -> Result<Locker, BoxError> {
        Ok(match peer {
            Peer::ZkLock => Locker::ZkLock(zk_lock::Mutex::new(client, dir)?),
            Peer::ZookeeperClient => Locker::ZookeeperClient { client: client.clone(), dir: Arc::from(dir) },
            Peer::Raw => Locker::Raw { client: client.clone(), prefix: Arc::from(format!("{dir}/raw-")) },
        })
    }

    async fn acquire(&self) -> Result<Held<'_>, BoxError> {
        match self {
            Locker::ZkLock(mutex) => Ok(Held::ZkLock(mutex.lock().await?)),
            Locker::ZookeeperClient { client, dir } => {
                let prefix = zk::LockPrefix::new_curator(dir, "lock-")?;
                let options = zk::LockOptions::new(zk::Acls::anyone_all())
                    .with_ancestor_options(zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))?;
                Ok(Held::ZookeeperClient(client.lock(prefix, b"", options).await?))
            }
            Locker::Raw { client, prefix } => {
                let options = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
                let created = match client.create(prefix, b"", &options).await {
                    Err(zk::Error::NoNode) => {
                        let dir = &prefix[..prefix.rfind('/').unwrap_or(0)];
                        client.mkdir(dir, &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await?;
                        client.create(prefix, b"", &options).await?
                    }
                    other => other?,
                };
                let sequence = created.1.into_i64();
                Ok(Held::Raw { client, path: format!("{prefix}{}", created.1), sequence })
            }
        }
    }
}

impl<'a> Held<'a> {
    /// Releases `self` and acquires again: pipelined in one round trip with zk-lock's
    /// `Mutex::relock` when `pipelined`, else a release followed by an acquire.
    async fn reacquire(self, locker: &'a Locker, pipelined: bool) -> Result<Held<'a>, BoxError> {
        match (self, locker) {
            (Held::ZkLock(guard), Locker::ZkLock(mutex)) if pipelined => Ok(Held::ZkLock(mutex.relock(guard).await?)),
            (held, locker) => {
                held.release().await?;
                locker.acquire().await
            }
        }
    }

    /// Sequence number of the lock node (its place in arrival order).
    fn sequence(&self) -> i64 {
        match self {
            Held::ZkLock(guard) => guard.sequence(),
            Held::ZookeeperClient(lock) => {
                let path = lock.lock_path();
                // `..._c_<uuid>-lock-<10 digits>`
                path.get(path.len().saturating_sub(10)..).and_then(|s| s.parse().ok()).unwrap_or(-1)
            }
            Held::Raw { sequence, .. } => *sequence,
        }
    }

    async fn release(self) -> Result<(), BoxError> {
        match self {
            Held::ZkLock(guard) => Ok(guard.release().await?),
            Held::Raw { client, path, .. } => Ok(client.delete(&path, None).await?),
            Held::ZookeeperClient(lock) => {
                let client = lock.client();
                match client.delete(lock.lock_path(), None).await {
                    Ok(()) => {
                        // Deleted: skip the drop's background delete (leaks the path string).
                        std::mem::forget(lock);
                        Ok(())
                    }
                    // Not deleted: the drop deletes in the background.
                    Err(err) => Err(err.into()),
                }
            }
        }
    }
}

// ------------------------------------------------------------------------- shared counters --

/// In-process view of one lock path: holders now, most holders seen, and the grant order.
#[derive(Default)]
struct PathStats {
    holders: AtomicUsize,
    max_holders: AtomicUsize,
    /// Sequence numbers of the grants, in grant order (None: not tracked, W3).
    grants: Option<std::sync::Mutex<Vec<i64>>>,
}

impl PathStats {
    fn tracked() -> PathStats {
        PathStats { grants: Some(std::sync::Mutex::new(Vec::new())), ..PathStats::default() }
    }

    fn enter(&self, sequence: i64) {
        let now = self.holders.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_holders.fetch_max(now, Ordering::SeqCst);
        if let Some(grants) = &self.grants {
            grants.lock().unwrap_or_else(|e| e.into_inner()).push(sequence);
        }
    }

    fn leave(&self) {
        self.holders.fetch_sub(1, Ordering::SeqCst);
    }

    fn fifo_inversions(&self) -> Option<usize> {
        let grants = self.grants.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        Some(grants.windows(2).filter(|w| w[1] <= w[0]).count())
    }
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    acquired: usize,
    errors: usize,
    timed_out: bool,
    latencies_ms: Vec<f64>,
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `cycles` acquire/release cycles on `locker`; errors are counted, not fatal. Stops at the
/// deadline.
///
/// With `pipelined` (zk-lock's `relock`), each cycle's release goes out together with the next
/// cycle's acquire; the acquire latency then includes that release.
async fn run_cycles(
    locker: &Locker,
    stats: &PathStats,
    cycles: usize,
    deadline: Instant,
    what: &str,
    pipelined: bool,
) -> WorkerResult {
    let mut result = WorkerResult { latencies_ms: Vec::with_capacity(cycles), ..WorkerResult::default() };
    let mut carried: Option<Held<'_>> = None;
    for i in 0..cycles {
        let left = remaining(deadline);
        if left.is_zero() {
            result.timed_out = true;
            break;
        }
        let asked = Instant::now();
        let acquire = async {
            match carried.take() {
                Some(prev) => prev.reacquire(locker, true).await,
                None => locker.acquire().await,
            }
        };
        let held = match tokio::time::timeout(left, acquire).await {
            Err(_) => {
                result.timed_out = true;
                break;
            }
            Ok(Err(err)) => {
                tracing::warn!("{what}: acquire failed: {err}");
                result.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Ok(Ok(held)) => held,
        };
        result.latencies_ms.push(asked.elapsed().as_secs_f64() * 1e3);
        result.acquired += 1;
        stats.enter(held.sequence());
        stats.leave();
        if pipelined && i + 1 < cycles {
            carried = Some(held);
            continue;
        }
        match tokio::time::timeout(remaining(deadline).max(Duration::from_secs(1)), held.release()).await {
            Err(_) => {
                result.timed_out = true;
                break;
            }
            Ok(Err(err)) => {
                tracing::warn!("{what}: release failed: {err}");
                result.errors += 1;
            }
            Ok(Ok(())) => {}
        }
    }
    if let Some(held) = carried {
        if let Err(err) = held.release().await {
            tracing::warn!("{what}: release failed: {err}");
            result.errors += 1;
        }
    }
    result
}

// ------------------------------------------------------------------------------- measuring --

/// The `mntr` counters we use, read over a fresh TCP connection.
#[derive(Debug, Clone, Copy, Default)]
struct Mntr {
    packets_received: i64,
    writes: i64,
    reads: i64,
    watch_events: i64,
}

fn read_mntr(addr: &str) -> Result<Mntr, BoxError> {
    let sock = addr.to_socket_addrs()?.next().ok_or_else(|| format!("cannot resolve {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"mntr")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let get = |key: &str| -> Result<i64, BoxError> {
        text.lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse::<i64>().ok())
            .ok_or_else(|| format!("mntr on {addr} has no integer {key} (is mntr whitelisted?)").into())
    };
    Ok(Mntr {
        packets_received: get("zk_packets_received")?,
        writes: get("zk_cnt_updatelatency")?,
        reads: get("zk_cnt_readlatency")?,
        watch_events: get("zk_sum_node_created_watch_count")?
            + get("zk_sum_node_deleted_watch_count")?
            + get("zk_sum_node_changed_watch_count")?
            + get("zk_sum_node_children_watch_count")?,
    })
}

/// User + system CPU seconds of this process.
fn self_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// User + system CPU seconds of process `pid`, from `/proc/PID/stat`.
fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    Some((utime + stime) / ticks as f64)
}

/// Counters taken at one instant.
struct Snapshot {
    at: Instant,
    mntr: Mntr,
    client_cpu: f64,
    server_cpu: Option<f64>,
}

fn snapshot(mntr_addr: &str, server_pid: Option<u32>) -> Result<Snapshot, BoxError> {
    let mntr = read_mntr(mntr_addr)?;
    Ok(Snapshot { at: Instant::now(), mntr, client_cpu: self_cpu_s(), server_cpu: server_pid.and_then(proc_cpu_s) })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn num(x: Option<f64>, digits: i32) -> Value {
    match x {
        Some(x) if x.is_finite() => json!(round(x, digits)),
        _ => Value::Null,
    }
}

// ------------------------------------------------------------------------------------ main --

struct Setup {
    args: Args,
    clients: usize,
    cycles: usize,
    warmup: usize,
    base: String,
    mntr_addr: String,
    server_pid: Option<u32>,
    deadline: Instant,
}

/// What a workload reports besides the counters.
struct Outcome {
    before: Snapshot,
    after: Snapshot,
    results: Vec<WorkerResult>,
    max_holders: usize,
    fifo_inversions: Option<usize>,
    timed_out: bool,
    /// Paths to delete afterwards (best effort), children first.
    cleanup: Vec<String>,
    /// W4: RSS growth while the waiters queued, per waiter (after `malloc_trim`, and before).
    rss_per_waiter: Option<f64>,
    rss_per_waiter_untrimmed: Option<f64>,
    /// The recipe workloads' own fields.
    extra: serde_json::Map<String, Value>,
}

async fn connect(setup: &Setup) -> Result<zk::Client, BoxError> {
    let timeout = Duration::from_millis(setup.args.session_timeout_ms);
    let connecting = zk::Client::connector().with_session_timeout(timeout).connect(&setup.args.connect);
    let limit = remaining(setup.deadline).min(Duration::from_secs(30));
    match tokio::time::timeout(limit, connecting).await {
        Err(_) => Err(format!("connecting to {} timed out", setup.args.connect).into()),
        Ok(result) => Ok(result?),
    }
}

async fn connect_all(setup: &Setup, n: usize) -> Result<Vec<zk::Client>, BoxError> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect(setup).await?);
    }
    Ok(clients)
}

/// W1, W2, W3: every client runs warm-up then `cycles` cycles; all start on a barrier.
async fn run_loops(setup: &Setup, shared: bool) -> Result<Outcome, BoxError> {
    let clients = connect_all(setup, setup.clients).await?;
    let peer = setup.args.peer;
    let pipelined = peer == Peer::ZkLock && !setup.args.no_relock;
    let lock_path = |i: usize| if shared { format!("{}/lock", setup.base) } else { format!("{}/lock-{i}", setup.base) };
    let warm_path =
        |i: usize| if shared { format!("{}/warmup", setup.base) } else { format!("{}/warmup-{i}", setup.base) };
    let shared_stats = Arc::new(PathStats::tracked());
    let warm_stats = Arc::new(PathStats::default());
    let barrier = Arc::new(Barrier::new(setup.clients + 1));
    let mut tasks = Vec::with_capacity(setup.clients);
    for (i, client) in clients.iter().enumerate() {
        let locker = Locker::new(peer, client, &lock_path(i))?;
        let warm = Locker::new(peer, client, &warm_path(i))?;
        let stats = if shared { shared_stats.clone() } else { Arc::new(PathStats::default()) };
        let (warm_stats, barrier) = (warm_stats.clone(), barrier.clone());
        let (cycles, warmup, deadline) = (setup.cycles, setup.warmup, setup.deadline);
        tasks.push(tokio::spawn(async move {
            let warmed = run_cycles(&warm, &warm_stats, warmup, deadline, "warm-up", pipelined).await;
            if warmed.errors > 0 {
                tracing::warn!("client {i}: {} errors during warm-up", warmed.errors);
            }
            barrier.wait().await; // everyone warmed up
            barrier.wait().await; // counters read: go
            let result = run_cycles(&locker, &stats, cycles, deadline, "measured", pipelined).await;
            (result, stats.max_holders.load(Ordering::SeqCst))
        }));
    }
    barrier.wait().await;
    tracing::info!("all {} clients warmed up; measuring", setup.clients);
    let before = snapshot(&setup.mntr_addr, setup.server_pid);
    barrier.wait().await;
    let before = before?;
    let mut results = Vec::with_capacity(tasks.len());
    let mut max_holders = 0;
    for task in tasks {
        let (result, max) = task.await?;
        max_holders = max_holders.max(max);
        results.push(result);
    }
    let after = snapshot(&setup.mntr_addr, setup.server_pid)?;
    let timed_out = results.iter().any(|r| r.timed_out);
    let mut cleanup = Vec::new();
    for i in 0..if shared { 1 } else { setup.clients } {
        cleanup.push(lock_path(i));
        cleanup.push(warm_path(i));
    }
    drop(clients);
    Ok(Outcome {
        before,
        after,
        results,
        max_holders,
        fifo_inversions: if shared { shared_stats.fifo_inversions() } else { None },
        timed_out,
        cleanup,
        rss_per_waiter: None,
        rss_per_waiter_untrimmed: None,
        extra: Default::default(),
    })
}

/// W4: a holder, `waiters` queued contenders over `clients` sessions, one pass down the queue.
async fn run_queue(setup: &Setup) -> Result<Outcome, BoxError> {
    let peer = setup.args.peer;
    let deadline = setup.deadline;
    let holder_client = connect(setup).await?;
    let clients = connect_all(setup, setup.clients).await?;
    let lock_path = format!("{}/lock", setup.base);
    let warm_path = format!("{}/warmup", setup.base);

    // Warm-up: every waiter session, contended, on the warm-up path.
    let warm_stats = Arc::new(PathStats::default());
    let mut warmers = Vec::new();
    for client in clients.iter().chain(std::iter::once(&holder_client)) {
        let warm = Locker::new(peer, client, &warm_path)?;
        let (warm_stats, warmup) = (warm_stats.clone(), setup.warmup);
        warmers.push(tokio::spawn(
            async move { run_cycles(&warm, &warm_stats, warmup, deadline, "warm-up", false).await },
        ));
    }
    for warmer in warmers {
        let warmed = warmer.await?;
        if warmed.errors > 0 {
            tracing::warn!("{} errors during warm-up", warmed.errors);
        }
    }

    let stats = Arc::new(PathStats::tracked());
    let holder_locker = Locker::new(peer, &holder_client, &lock_path)?;
    let mut timed_out = false;
    let holder = match tokio::time::timeout(remaining(deadline), holder_locker.acquire()).await {
        Err(_) => return Err("the holder did not get the free lock before the deadline".into()),
        Ok(result) => result?,
    };
    stats.enter(holder.sequence());

    let waiters = setup.args.waiters;
    trim_heap();
    let rss_before = rss_bytes();
    let lockers = clients.iter().map(|c| Locker::new(peer, c, &lock_path)).collect::<Result<Vec<_>, _>>()?;
    let mut tasks = Vec::with_capacity(waiters);
    for j in 0..waiters {
        let locker = lockers[j % lockers.len()].clone();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = WorkerResult::default();
            let asked = Instant::now();
            let held = match tokio::time::timeout(remaining(deadline), locker.acquire()).await {
                Err(_) => {
                    result.timed_out = true;
                    return (result, asked, None);
                }
                Ok(Err(err)) => {
                    tracing::warn!("waiter {j}: acquire failed: {err}");
                    result.errors += 1;
                    return (result, asked, None);
                }
                Ok(Ok(held)) => held,
            };
            let granted = Instant::now();
            result.acquired = 1;
            stats.enter(held.sequence());
            stats.leave();
            match tokio::time::timeout(remaining(deadline).max(Duration::from_secs(1)), held.release()).await {
                Err(_) => result.timed_out = true,
                Ok(Err(err)) => {
                    tracing::warn!("waiter {j}: release failed: {err}");
                    result.errors += 1;
                }
                Ok(Ok(())) => {}
            }
            (result, asked, Some(granted))
        }));
    }

    // Wait until every waiter's node is in the queue (nodes of the Curator layout name
    // `..-lock-<seq>`; the holder's is one of them).
    let want = waiters + 1;
    let mut seen = 0;
    while seen < want {
        if remaining(deadline).is_zero() {
            tracing::warn!("only {seen} of {want} lock nodes appeared before the deadline");
            timed_out = true;
            break;
        }
        match holder_client.list_children(&lock_path).await {
            Ok(children) => seen = children.iter().filter(|c| c.contains("lock-")).count(),
            Err(err) => tracing::warn!("listing {lock_path}: {err}"),
        }
        if seen < want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tracing::info!("{seen} contenders queued; passing the lock down the queue");
    // Client memory per queued waiter: RSS growth over the queue-up phase / waiters. It counts
    // everything a waiter costs this process: our task and future, the library's state, the
    // client's watch registration.
    // Measured twice: as the OS sees it, and after handing freed heap back to the OS. Every
    // waiter lists the queue once when it enqueues (n names for the n-th), and the allocator
    // keeps much of that freed transient memory; the trimmed figure is what the waiters really
    // hold.
    let per_waiter = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) if waiters > 0 => Some(after.saturating_sub(before) as f64 / waiters as f64),
        _ => None,
    };
    let rss_per_waiter_untrimmed = per_waiter(rss_before, rss_bytes());
    trim_heap();
    let rss_per_waiter = per_waiter(rss_before, rss_bytes());

    let before = snapshot(&setup.mntr_addr, setup.server_pid)?;
    let mut errors = 0;
    stats.leave();
    match tokio::time::timeout(remaining(deadline).max(Duration::from_secs(1)), holder.release()).await {
        Err(_) => timed_out = true,
        Ok(Err(err)) => {
            tracing::warn!("holder: release failed: {err}");
            errors += 1;
        }
        Ok(Ok(())) => {}
    }
    let mut results = Vec::with_capacity(waiters + 1);
    for task in tasks {
        let (mut result, asked, granted) = task.await?;
        if let Some(granted) = granted {
            // Acquire time within the measured phase: from the pass's start at the latest.
            let from = asked.max(before.at);
            result.latencies_ms.push(granted.saturating_duration_since(from).as_secs_f64() * 1e3);
        }
        timed_out |= result.timed_out;
        results.push(result);
    }
    let after = snapshot(&setup.mntr_addr, setup.server_pid)?;
    results.push(WorkerResult { errors, ..WorkerResult::default() });
    drop(lockers);
    drop(holder_locker);
    drop(clients);
    drop(holder_client);
    Ok(Outcome {
        before,
        after,
        results,
        max_holders: stats.max_holders.load(Ordering::SeqCst),
        fifo_inversions: stats.fifo_inversions(),
        timed_out,
        cleanup: vec![lock_path, warm_path],
        rss_per_waiter,
        rss_per_waiter_untrimmed,
        extra: Default::default(),
    })
}

// --------------------------------------------------------------------- recipe workloads --

/// What one recipe operation needs of the arguments.
#[derive(Clone, Copy)]
struct OpArgs {
    read_ratio: f64,
    hold_ms: u64,
}

/// A critical section that others may share: one yield, or `--hold-ms`.
async fn hold(args: OpArgs) {
    match args.hold_ms {
        0 => tokio::task::yield_now().await,
        ms => tokio::time::sleep(Duration::from_millis(ms)).await,
    }
}

/// In-process counters of the recipe workloads.
#[derive(Default)]
struct RecipeStats {
    readers: AtomicUsize,
    writers: AtomicUsize,
    max_readers: AtomicUsize,
    max_writers: AtomicUsize,
    violations: AtomicUsize,
    reads: AtomicUsize,
    holders: AtomicUsize,
    max_holders: AtomicUsize,
    terms: AtomicUsize,
    failovers_ms: std::sync::Mutex<Vec<f64>>,
    /// When the last leader called `resign`.
    resigned_at: std::sync::Mutex<Option<Instant>>,
}

/// One operation of a recipe workload; returns its acquire latency.
async fn recipe_op(args: OpArgs, handle: &RecipeHandle, stats: &RecipeStats, rng: &mut u64) -> Result<f64, BoxError> {
    let asked = Instant::now();
    match handle {
        RecipeHandle::RwLock(lock) => {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let read = (*rng % 1_000_000) as f64 / 1e6 < args.read_ratio;
            let guard = if read { lock.read().await? } else { lock.write().await? };
            let latency = asked.elapsed().as_secs_f64() * 1e3;
            if read {
                stats.reads.fetch_add(1, Ordering::SeqCst);
                let now = stats.readers.fetch_add(1, Ordering::SeqCst) + 1;
                stats.max_readers.fetch_max(now, Ordering::SeqCst);
                if stats.writers.load(Ordering::SeqCst) != 0 {
                    stats.violations.fetch_add(1, Ordering::SeqCst);
                }
            } else {
                let now = stats.writers.fetch_add(1, Ordering::SeqCst) + 1;
                stats.max_writers.fetch_max(now, Ordering::SeqCst);
                if now != 1 || stats.readers.load(Ordering::SeqCst) != 0 {
                    stats.violations.fetch_add(1, Ordering::SeqCst);
                }
            }
            hold(args).await;
            if read {
                stats.readers.fetch_sub(1, Ordering::SeqCst);
            } else {
                stats.writers.fetch_sub(1, Ordering::SeqCst);
            }
            guard.release().await?;
            Ok(latency)
        }
        RecipeHandle::Semaphore(semaphore) => {
            let permit = semaphore.acquire().await?;
            let latency = asked.elapsed().as_secs_f64() * 1e3;
            let now = stats.holders.fetch_add(1, Ordering::SeqCst) + 1;
            stats.max_holders.fetch_max(now, Ordering::SeqCst);
            hold(args).await;
            stats.holders.fetch_sub(1, Ordering::SeqCst);
            permit.release().await?;
            Ok(latency)
        }
        RecipeHandle::Election(election) => {
            let leadership = election.campaign().await?;
            let led = Instant::now();
            let latency = led.duration_since(asked).as_secs_f64() * 1e3;
            if let Some(resigned) = stats.resigned_at.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let failover = led.duration_since(resigned).as_secs_f64() * 1e3;
                stats.failovers_ms.lock().unwrap_or_else(|e| e.into_inner()).push(failover);
            }
            let now = stats.holders.fetch_add(1, Ordering::SeqCst) + 1;
            stats.max_holders.fetch_max(now, Ordering::SeqCst);
            stats.terms.fetch_add(1, Ordering::SeqCst);
            hold(args).await;
            stats.holders.fetch_sub(1, Ordering::SeqCst);
            *stats.resigned_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            leadership.resign().await?;
            Ok(latency)
        }
    }
}

#[derive(Clone)]
enum RecipeHandle {
    RwLock(zk_lock::RwLock),
    Semaphore(zk_lock::Semaphore),
    Election(zk_lock::LeaderElection),
}

impl RecipeHandle {
    fn new(setup: &Setup, client: &zk::Client, path: &str) -> Result<RecipeHandle, BoxError> {
        Ok(match setup.args.workload {
            Workload::RW1 => RecipeHandle::RwLock(zk_lock::RwLock::new(client, path)?),
            Workload::S1 => RecipeHandle::Semaphore(zk_lock::Semaphore::new(client, path, setup.args.permits)?),
            _ => RecipeHandle::Election(zk_lock::LeaderElection::new(client, path)?),
        })
    }
}

/// RW1, S1, E1: every client warms up on its own path, then all loop on one path from a barrier.
async fn run_recipe(setup: &Setup) -> Result<Outcome, BoxError> {
    if setup.args.peer != Peer::ZkLock {
        return Err("the recipe workloads are measured for zk-lock here (peers: bench/peers)".into());
    }
    let clients = connect_all(setup, setup.clients).await?;
    let (lock_path, warm_path) = (format!("{}/recipe", setup.base), format!("{}/warmup", setup.base));
    let stats = Arc::new(RecipeStats::default());
    let barrier = Arc::new(Barrier::new(setup.clients + 1));
    let election = setup.args.workload == Workload::E1;
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let handle = RecipeHandle::new(setup, client, &lock_path)?;
        let warm = RecipeHandle::new(setup, client, &format!("{warm_path}-{i}"))?;
        let (stats, barrier) = (stats.clone(), barrier.clone());
        let (cycles, warmup, terms, deadline) = (setup.cycles, setup.warmup, setup.args.terms, setup.deadline);
        let args = OpArgs { read_ratio: setup.args.read_ratio, hold_ms: setup.args.hold_ms };
        let seed = setup.args.seed;
        tasks.push(tokio::spawn(async move {
            let mut rng = seed.wrapping_add(i as u64) | 1;
            let warm_stats = RecipeStats::default();
            for _ in 0..warmup {
                let _ = recipe_op(args, &warm, &warm_stats, &mut rng).await;
            }
            barrier.wait().await;
            barrier.wait().await;
            let mut result = WorkerResult::default();
            let mut op = 0;
            loop {
                let enough = if election { stats.terms.load(Ordering::SeqCst) >= terms } else { op >= cycles };
                if enough || remaining(deadline).is_zero() {
                    result.timed_out = !enough;
                    break;
                }
                op += 1;
                match tokio::time::timeout(remaining(deadline), recipe_op(args, &handle, &stats, &mut rng)).await {
                    Ok(Ok(latency)) => {
                        result.acquired += 1;
                        result.latencies_ms.push(latency);
                    }
                    Ok(Err(err)) => {
                        tracing::warn!("client {i}: {err}");
                        result.errors += 1;
                    }
                    Err(_) => {
                        result.timed_out = true;
                        break;
                    }
                }
            }
            result
        }));
    }
    barrier.wait().await;
    let before = snapshot(&setup.mntr_addr, setup.server_pid);
    barrier.wait().await;
    let before = before?;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await?);
    }
    let after = snapshot(&setup.mntr_addr, setup.server_pid)?;
    let timed_out = results.iter().any(|r| r.timed_out);
    let mut extra = serde_json::Map::new();
    let load = |a: &AtomicUsize| a.load(Ordering::SeqCst);
    let acquired: usize = results.iter().map(|r| r.acquired).sum();
    match setup.args.workload {
        Workload::RW1 => {
            extra.insert("reads".into(), json!(load(&stats.reads)));
            extra.insert("writes".into(), json!(acquired - load(&stats.reads)));
            extra.insert("max_readers".into(), json!(load(&stats.max_readers)));
            extra.insert("max_writers".into(), json!(load(&stats.max_writers)));
            extra.insert("rw_violations".into(), json!(load(&stats.violations)));
        }
        Workload::S1 => {
            extra.insert("permits".into(), json!(setup.args.permits));
        }
        _ => {
            let mut failovers = stats.failovers_ms.lock().unwrap_or_else(|e| e.into_inner()).clone();
            failovers.sort_by(f64::total_cmp);
            extra.insert("terms".into(), json!(load(&stats.terms)));
            extra.insert("failover_p50_ms".into(), num(percentile(&failovers, 0.50), 3));
            extra.insert("failover_p99_ms".into(), num(percentile(&failovers, 0.99), 3));
            extra.insert("failover_max_ms".into(), num(failovers.last().copied(), 3));
            extra.insert("max_leaders".into(), json!(load(&stats.max_holders)));
        }
    }
    let mut cleanup = vec![lock_path];
    cleanup.extend((0..setup.clients).map(|i| format!("{warm_path}-{i}")));
    drop(clients);
    Ok(Outcome {
        before,
        after,
        results,
        max_holders: load(&stats.max_holders).max(load(&stats.max_writers)),
        fifo_inversions: None,
        timed_out,
        cleanup,
        rss_per_waiter: None,
        rss_per_waiter_untrimmed: None,
        extra,
    })
}

/// Returns freed heap memory to the OS (glibc's `malloc_trim`), so that RSS shows live memory.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size of this process, from `/proc/self/statm`.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Deletes the benchmark's directories if they are empty (best effort; zk-lock's are
/// containers that the server removes anyway, zookeeper-client's are persistent).
async fn cleanup(setup: &Setup, paths: &[String]) {
    let Ok(client) = connect(setup).await else { return };
    for path in paths.iter().map(String::as_str).chain(std::iter::once(setup.base.as_str())) {
        let limit = Duration::from_secs(2);
        if let Ok(Err(err)) = tokio::time::timeout(limit, client.delete(path, None)).await {
            if !matches!(err, zk::Error::NoNode) {
                tracing::debug!("cleanup of {path}: {err}");
            }
        }
    }
}

async fn run(args: Args) -> Result<Value, BoxError> {
    let started = Instant::now();
    let (clients, cycles, warmup) = match args.workload {
        Workload::W1 => (1, 2000, 200),
        Workload::W2 => (16, 100, 10),
        Workload::W3 => (16, 200, 20),
        Workload::W4 => (16, 1, 2),
        Workload::RW1 | Workload::S1 | Workload::E1 => (16, 100, 10),
    };
    let recipe = match args.workload {
        Workload::RW1 => Recipe::Rwlock,
        Workload::S1 => Recipe::Semaphore,
        Workload::E1 => Recipe::Election,
        _ => Recipe::Mutex,
    };
    if args.recipe.is_some_and(|r| r != recipe) {
        return Err(format!("--recipe {:?} does not fit workload {:?}", args.recipe.unwrap(), args.workload).into());
    }
    let clients = args.clients.unwrap_or(clients);
    let cycles = args.cycles.unwrap_or(cycles);
    let warmup = args.warmup.unwrap_or(warmup);
    if clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let base = args.path.clone().unwrap_or_else(|| format!("/bench/{}", uuid::Uuid::new_v4().simple()));
    let mntr_addr = match &args.mntr {
        Some(addr) => addr.clone(),
        None => {
            let first = args.connect.split(',').next().unwrap_or_default();
            // A chroot suffix is not part of the address.
            first.split('/').next().unwrap_or_default().to_string()
        }
    };
    let server_pid = match std::env::var("ZK_SERVER_PID") {
        Ok(pid) if !pid.trim().is_empty() => {
            Some(pid.trim().parse::<u32>().map_err(|_| format!("ZK_SERVER_PID is not a pid: {pid:?}"))?)
        }
        _ => None,
    };
    if let Some(pid) = server_pid {
        proc_cpu_s(pid).ok_or_else(|| format!("cannot read /proc/{pid}/stat (ZK_SERVER_PID)"))?;
    }
    read_mntr(&mntr_addr)?; // fail early when mntr does not answer
    let deadline = started + Duration::from_secs(args.deadline_s);
    let setup = Setup { args, clients, cycles, warmup, base, mntr_addr, server_pid, deadline };
    tracing::info!(
        "{} {:?}: clients {clients}, cycles {cycles}/client, warm-up {warmup}/client, path {}",
        setup.args.peer.name(),
        setup.args.workload,
        setup.base
    );

    if setup.args.peer == Peer::Raw && matches!(setup.args.workload, Workload::W2 | Workload::W4) {
        return Err("the raw floor (create + delete, no lock) is only measured for W1 and W3".into());
    }
    let outcome = match setup.args.workload {
        Workload::W1 | Workload::W2 => run_loops(&setup, true).await?,
        Workload::W3 => run_loops(&setup, false).await?,
        Workload::W4 => run_queue(&setup).await?,
        Workload::RW1 | Workload::S1 | Workload::E1 => run_recipe(&setup).await?,
    };
    // Let dropped sessions send their closeSession, then tidy up (outside the measured phase).
    tokio::time::sleep(Duration::from_millis(100)).await;
    cleanup(&setup, &outcome.cleanup).await;

    let Outcome {
        before,
        after,
        results,
        max_holders,
        fifo_inversions,
        timed_out,
        rss_per_waiter,
        rss_per_waiter_untrimmed,
        extra,
        ..
    } = outcome;
    let acquired: usize = results.iter().map(|r| r.acquired).sum();
    let errors: usize = results.iter().map(|r| r.errors).sum();
    let mut latencies: Vec<f64> = results.iter().flat_map(|r| r.latencies_ms.iter().copied()).collect();
    latencies.sort_by(f64::total_cmp);
    let elapsed = after.at.duration_since(before.at).as_secs_f64();
    let packets = after.mntr.packets_received - before.mntr.packets_received - 1;
    let writes = after.mntr.writes - before.mntr.writes;
    let reads = after.mntr.reads - before.mntr.reads;
    let per_cycle = |n: i64| if acquired > 0 { Some(n as f64 / acquired as f64) } else { None };
    if timed_out {
        tracing::warn!("the deadline of {} s passed before the run finished", setup.args.deadline_s);
    }

    let mut out = serde_json::Map::new();
    out.insert("peer".into(), json!(setup.args.peer.name()));
    out.insert("workload".into(), json!(format!("{:?}", setup.args.workload)));
    out.insert("clients".into(), json!(setup.clients));
    // How a client released and re-acquired in W1-W3: zk-lock's pipelined `relock`, or a
    // release followed by an acquire.
    let relock = setup.args.peer == Peer::ZkLock && !setup.args.no_relock && setup.args.workload != Workload::W4;
    out.insert("release_api".into(), json!(if relock { "relock" } else { "release+lock" }));
    out.insert("cycles".into(), json!(acquired));
    out.insert("elapsed_s".into(), num(Some(elapsed), 4));
    out.insert("cycles_per_s".into(), num(if elapsed > 0.0 { Some(acquired as f64 / elapsed) } else { None }, 1));
    out.insert("acq_p50_ms".into(), num(percentile(&latencies, 0.50), 3));
    out.insert("acq_p99_ms".into(), num(percentile(&latencies, 0.99), 3));
    out.insert("acq_max_ms".into(), num(latencies.last().copied(), 3));
    out.insert("max_holders".into(), json!(max_holders));
    out.insert("fifo_inversions".into(), json!(fifo_inversions));
    out.insert("errors".into(), json!(errors));
    out.insert("timed_out".into(), json!(timed_out));
    out.insert("zk_packets".into(), json!(packets));
    out.insert("zk_writes".into(), json!(writes));
    out.insert("zk_reads".into(), json!(reads));
    out.insert("req_per_cycle".into(), num(per_cycle(packets), 3));
    out.insert("writes_per_cycle".into(), num(per_cycle(writes), 3));
    out.insert("reads_per_cycle".into(), num(per_cycle(reads), 3));
    out.insert("client_cpu_s".into(), num(Some(after.client_cpu - before.client_cpu), 4));
    if setup.server_pid.is_some() {
        let server = after.server_cpu.zip(before.server_cpu).map(|(a, b)| a - b);
        out.insert("server_cpu_s".into(), num(server, 3));
    }
    if setup.args.workload == Workload::W4 {
        out.insert("waiters".into(), json!(setup.args.waiters));
        let events = after.mntr.watch_events - before.mntr.watch_events;
        out.insert("watch_events_per_handoff".into(), num(per_cycle(events), 3));
        out.insert("rss_per_waiter_bytes".into(), num(rss_per_waiter, 0));
        out.insert("rss_per_waiter_untrimmed_bytes".into(), num(rss_per_waiter_untrimmed, 0));
    }
    out.extend(extra);
    Ok(Value::Object(out))
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench: cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(args));
    // Do not wait for background tasks (sessions closing) beyond this point.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(value) => println!("{value}"),
        Err(err) => {
            eprintln!("bench: {err}");
            std::process::exit(1);
        }
    }
}
