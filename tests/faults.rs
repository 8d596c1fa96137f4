//! The mutex under faults: connection cuts, a cut-off holder, forced expiry, a killed leader.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{children, connect, ProxyMode, TcpProxy, ZkEnsemble, ZkServer};
use zk_lock::{LockState, Mutex, MutexGuard};

/// Records every state the guard goes through, with the time it was seen.
fn record_states(guard: &MutexGuard) -> Arc<StdMutex<Vec<(Instant, LockState)>>> {
    let log = Arc::new(StdMutex::new(vec![(Instant::now(), guard.state())]));
    let mut rx = guard.state_watcher();
    let out = log.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let s = *rx.borrow_and_update();
            out.lock().unwrap().push((Instant::now(), s));
            if s == LockState::Lost {
                return;
            }
        }
    });
    log
}

fn first(log: &[(Instant, LockState)], state: LockState) -> Option<Instant> {
    log.iter().find(|(_, s)| *s == state).map(|(t, _)| *t)
}

/// What the waiter saw when it was granted.
struct Granted {
    at: Instant,
    guard: MutexGuard,
    /// The holder's state at that moment (None: the holder had released).
    holder_state: Option<LockState>,
}

/// Queues a waiter; when granted, it looks at the holder's guard at once (its `state()` reads
/// the clock, so no task scheduling stands between the two).
async fn queue_waiter(mutex: Mutex, holder: std::sync::Weak<MutexGuard>) -> tokio::task::JoinHandle<Granted> {
    tokio::spawn(async move {
        let guard = mutex.lock().await.expect("waiter lock");
        let holder_state = holder.upgrade().map(|h| h.state());
        Granted { at: Instant::now(), guard, holder_state }
    })
}

async fn wait_for_children(client: &zk_lock::zk::Client, path: &str, n: usize) {
    let ok =
        common::wait_until_async(Duration::from_secs(10), || async { children(client, path).await.len() == n }).await;
    assert!(ok, "expected {n} children under {path}: {:?}", children(client, path).await);
}

/// A fresh server; a holder that reaches it through a proxy, holding the lock, with its states
/// recorded; a waiter (direct) queued behind it; both sessions with `timeout`.
struct HolderAndWaiter {
    server: ZkServer,
    proxy: TcpProxy,
    holder_client: zk_lock::zk::Client,
    waiter_client: zk_lock::zk::Client,
    guard: Arc<MutexGuard>,
    states: Arc<StdMutex<Vec<(Instant, LockState)>>>,
    waiter: tokio::task::JoinHandle<Granted>,
}

impl HolderAndWaiter {
    /// Sets it up, then lets the holder hold for `settle` (heartbeats, own-node watch armed).
    async fn start(timeout: Duration, settle: Duration) -> HolderAndWaiter {
        let server = ZkServer::start();
        let proxy = TcpProxy::start(server.addr());
        let holder_client = connect(&proxy.connect_string(), timeout).await;
        let waiter_client = connect(&server.connect_string(), timeout).await;
        let guard = Mutex::new(&holder_client, "/faults/lock").unwrap().lock().await.unwrap();
        let states = record_states(&guard);
        let guard = Arc::new(guard);
        let waiter = queue_waiter(Mutex::new(&waiter_client, "/faults/lock").unwrap(), Arc::downgrade(&guard)).await;
        wait_for_children(&waiter_client, "/faults/lock", 2).await;
        tokio::time::sleep(settle).await;
        HolderAndWaiter { server, proxy, holder_client, waiter_client, guard, states, waiter }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_holder_is_lost_before_the_next_waiter_is_granted() {
    // Every field is bound: a field left to `..` would be dropped (the server killed) at once.
    let HolderAndWaiter { server: _server, proxy, holder_client: _h, waiter_client: _w, guard, states, waiter } =
        HolderAndWaiter::start(Duration::from_secs(2), Duration::from_millis(300)).await;

    let cut = Instant::now();
    proxy.set_mode(ProxyMode::Blackhole);
    let granted = tokio::time::timeout(Duration::from_secs(15), waiter).await.expect("waiter never granted").unwrap();
    // The decisive check: the holder's own view at the moment the next holder got the lock.
    assert_eq!(granted.holder_state, Some(LockState::Lost), "Lost must come before anyone else is granted");
    let log = states.lock().unwrap().clone();
    let suspended = first(&log, LockState::Suspended).expect("holder never Suspended");
    let lost = first(&log, LockState::Lost).expect("the state watch must show Lost");
    eprintln!(
        "suspended after {:?}, lost (as watched) after {:?}, next holder granted after {:?}",
        suspended - cut,
        lost - cut,
        granted.at - cut
    );
    assert!(suspended < lost);
    assert_eq!(guard.state(), LockState::Lost);
    assert_eq!(guard.lost_reason(), Some(zk_lock::LostReason::SuspendedTooLong));
    assert!(granted.guard.fencing_token() > guard.fencing_token());
    granted.guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_force_expired_holder_leaves_held_before_the_next_grant_and_turns_lost() {
    // A long session (10 s): the guard's own timer says Lost after 8.5 s at the latest; the
    // server's doing (session taken over, closed, node deleted) usually tells it in milliseconds,
    // unless the client's reconnect was caught mid-handshake by the close.
    let HolderAndWaiter { server, proxy, holder_client, waiter_client: _w, guard, states, waiter } =
        HolderAndWaiter::start(Duration::from_secs(10), Duration::from_millis(1500)).await;
    // The holder stays connected: the harness takes its session over on a raw connection and
    // closes it there. The server then drops the holder's connection; `zookeeper-client` would
    // reconnect within a millisecond and take the session back before the close, so the proxy
    // refuses new connections (only) meanwhile.
    proxy.set_mode(ProxyMode::RefuseNew);
    let expired = Instant::now();
    let mut closed = false;
    for _ in 0..5 {
        // An attempt can lose the race against the client's own immediate reconnect.
        closed = common::expire_session_nowait(&server.connect_string(), &holder_client).await;
        if closed {
            break;
        }
    }
    assert!(closed, "the harness could not close the holder's session");
    let granted = tokio::time::timeout(Duration::from_secs(15), waiter).await.expect("waiter never granted").unwrap();
    assert_ne!(granted.holder_state, Some(LockState::Held), "the holder must leave Held before the next grant");
    let (granted, next) = (granted.at, granted.guard);
    proxy.set_mode(ProxyMode::Pass);
    // Reconnecting, the holder is told its session expired: Lost long before its own timer.
    tokio::time::timeout(Duration::from_secs(3), guard.lost()).await.expect("holder must turn Lost");
    eprintln!("next holder granted after {:?}, holder Lost after {:?}", granted - expired, expired.elapsed());
    let log = states.lock().unwrap().clone();
    let left_held = log.iter().position(|(_, s)| *s != LockState::Held).expect("never left Held");
    assert!(log[left_held].0 < granted, "the holder must leave Held before the next grant: {log:?}");
    // Once the connection broke, only an answer to a request sent afterwards brings Held back:
    // a session closed meanwhile never looks held again.
    assert!(log[left_held..].iter().all(|(_, s)| *s != LockState::Held), "Held again after the expiry: {log:?}");
    assert_eq!(guard.state(), LockState::Lost);
    assert_eq!(guard.lost_reason(), Some(zk_lock::LostReason::SessionExpired));
    let guard = Arc::into_inner(guard).expect("the waiter kept no reference");
    assert!(matches!(guard.release().await, Err(zk_lock::Error::LockLost { .. })));
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_cut_suspends_and_the_lock_is_kept() {
    let HolderAndWaiter { server: _server, proxy, holder_client: _h, waiter_client, guard, states, waiter } =
        HolderAndWaiter::start(Duration::from_secs(10), Duration::from_millis(500)).await;

    // Long enough for the client to notice (0.4 x timeout), well short of the timeout.
    proxy.set_mode(ProxyMode::Pause);
    tokio::time::sleep(Duration::from_millis(5000)).await;
    proxy.set_mode(ProxyMode::Pass);
    let back = common::wait_until(Duration::from_secs(3), || guard.state() == LockState::Held).await;
    let log = states.lock().unwrap().clone();
    assert!(back, "not Held again after a short cut: {log:?}");
    let suspended = first(&log, LockState::Suspended).expect("a cut of 5 s must suspend the lock");
    assert!(log.iter().any(|(t, s)| *s == LockState::Held && *t > suspended), "{log:?}");
    assert!(first(&log, LockState::Lost).is_none(), "{log:?}");
    assert!(!waiter.is_finished(), "nobody else may be granted");
    assert_eq!(children(&waiter_client, "/faults/lock").await.len(), 2);
    let guard = Arc::into_inner(guard).expect("the waiter keeps only a weak reference");
    guard.release().await.expect("release after a short cut");
    let granted = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    granted.guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_orphan_node_under_connection_cuts() {
    let server = ZkServer::start();
    let cs = server.connect_string();
    let observer = connect(&cs, Duration::from_secs(4)).await;
    let path = "/orphans/lock";
    let stop = Arc::new(AtomicBool::new(false));
    let holders = Arc::new(AtomicUsize::new(0));
    let max_holders = Arc::new(AtomicUsize::new(0));
    let cycles = Arc::new(AtomicUsize::new(0));
    let mut proxies = Vec::new();
    let mut sessions = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let proxy = TcpProxy::start(server.addr());
        let client = connect(&proxy.connect_string(), Duration::from_secs(4)).await;
        sessions.push(client.session_id().0);
        let mutex = Mutex::new(&client, path).unwrap();
        let (stop, holders, max_holders, cycles) = (stop.clone(), holders.clone(), max_holders.clone(), cycles.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            for _ in 0..10_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let guard = match mutex.lock().await {
                    Ok(g) => g,
                    Err(e) => {
                        errors += 1;
                        eprintln!("lock error: {e}");
                        continue;
                    }
                };
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                max_holders.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.expect("release");
                cycles.fetch_add(1, Ordering::SeqCst);
            }
            // The client goes back alive: closing its session would delete its nodes, orphans
            // included, and hide them from the final check.
            (errors, client)
        }));
        proxies.push(proxy);
    }

    // Chaos: cut a random connection every 100 ms, for 6 s; check the directory every 25 ms.
    let started = Instant::now();
    let mut rng = started.elapsed().subsec_nanos() as usize | 1;
    let mut next_cut = started;
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(6) {
        if Instant::now() >= next_cut {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let p = &proxies[(rng >> 33) % proxies.len()];
            p.set_mode(if (rng >> 20) % 4 == 0 { ProxyMode::Blackhole } else { ProxyMode::Refuse });
            tokio::time::sleep(Duration::from_millis(5 + ((rng >> 40) % 40) as u64)).await;
            p.set_mode(ProxyMode::Pass);
            next_cut = Instant::now() + Duration::from_millis(100);
        }
        let mut per_session: HashMap<i64, usize> = HashMap::new();
        for name in children(&observer, path).await {
            if let Ok(Some(stat)) = observer.check_stat(&format!("{path}/{name}")).await {
                *per_session.entry(stat.ephemeral_owner).or_default() += 1;
            }
        }
        for (session, n) in &per_session {
            assert!(sessions.contains(session), "node of unknown session {session:#x}");
            assert!(*n <= 1, "session {session:#x} has {n} nodes: an orphan");
        }
        checks += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for p in &proxies {
        p.set_mode(ProxyMode::Pass);
    }
    let mut errors = 0;
    let mut clients = Vec::new();
    for t in tasks {
        let (e, client) = tokio::time::timeout(Duration::from_secs(30), t).await.expect("contender stalled").unwrap();
        errors += e;
        clients.push(client);
    }
    let done = cycles.load(Ordering::SeqCst);
    eprintln!("{done} cycles, {checks} checks, {errors} lock errors");
    assert!(done >= 20, "too little progress: {done} cycles");
    assert_eq!(errors, 0, "connection cuts must not fail lock()");
    assert_eq!(max_holders.load(Ordering::SeqCst), 1);
    // With every contender's session still open.
    let empty =
        common::wait_until_async(Duration::from_secs(10), || async { children(&observer, path).await.is_empty() })
            .await;
    assert!(empty, "nodes left at the end: {:?}", children(&observer, path).await);
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_while_eight_contenders_cycle() {
    let mut ensemble = ZkEnsemble::start();
    let cs = ensemble.connect_string();
    let leader = tokio::task::block_in_place(|| ensemble.wait_for_leader(Duration::from_secs(30)));
    let path = "/ensemble/lock";
    let stop = Arc::new(AtomicBool::new(false));
    let holders = Arc::new(AtomicUsize::new(0));
    let max_holders = Arc::new(AtomicUsize::new(0));
    let cycles = Arc::new(AtomicUsize::new(0));
    // A read-modify-write that takes a while: any overlap of two holders loses an increment.
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = connect(&cs, Duration::from_secs(8)).await;
        let mutex = Mutex::new(&client, path).unwrap();
        let (stop, holders, max_holders, cycles) = (stop.clone(), holders.clone(), max_holders.clone(), cycles.clone());
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let guard = mutex.lock().await.expect("lock");
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                max_holders.fetch_max(now, Ordering::SeqCst);
                let seen = counter.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                counter.store(seen + 1, Ordering::SeqCst);
                holders.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.expect("release");
                cycles.fetch_add(1, Ordering::SeqCst);
            }
            client // kept alive until the final check (its close would delete orphans)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = cycles.load(Ordering::SeqCst);
    assert!(before > 0, "no progress before the fault");
    tokio::task::block_in_place(|| ensemble.kill(leader));
    let new_leader = tokio::task::block_in_place(|| ensemble.wait_for_leader(Duration::from_secs(30)));
    assert_ne!(new_leader, leader);
    let at_election = cycles.load(Ordering::SeqCst);
    let resumed =
        common::wait_until(Duration::from_secs(20), || cycles.load(Ordering::SeqCst) > at_election + 20).await;
    assert!(resumed, "no progress after re-election");
    stop.store(true, Ordering::SeqCst);
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(tokio::time::timeout(Duration::from_secs(30), t).await.expect("contender stalled").unwrap());
    }
    let total = cycles.load(Ordering::SeqCst);
    eprintln!("{before} cycles before the kill, {total} in all");
    assert_eq!(max_holders.load(Ordering::SeqCst), 1, "double grant");
    assert_eq!(counter.load(Ordering::SeqCst), total, "an increment was lost: two holders overlapped");
    let observer = connect(&ensemble.member_connect(new_leader), Duration::from_secs(4)).await;
    let empty =
        common::wait_until_async(Duration::from_secs(10), || async { children(&observer, path).await.is_empty() })
            .await;
    assert!(empty, "nodes left at the end: {:?}", children(&observer, path).await);
    drop(clients);
}
