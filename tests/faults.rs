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

async fn queue_waiter(mutex: Mutex) -> tokio::task::JoinHandle<(Instant, MutexGuard)> {
    tokio::spawn(async move {
        let guard = mutex.lock().await.expect("waiter lock");
        (Instant::now(), guard)
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
    guard: MutexGuard,
    states: Arc<StdMutex<Vec<(Instant, LockState)>>>,
    waiter: tokio::task::JoinHandle<(Instant, MutexGuard)>,
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
        let waiter = queue_waiter(Mutex::new(&waiter_client, "/faults/lock").unwrap()).await;
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
    let (granted, next) =
        tokio::time::timeout(Duration::from_secs(15), waiter).await.expect("waiter never granted").unwrap();
    let log = states.lock().unwrap().clone();
    let suspended = first(&log, LockState::Suspended).expect("holder never Suspended");
    let lost = first(&log, LockState::Lost).expect("holder not Lost when the next waiter was granted");
    eprintln!(
        "suspended after {:?}, lost after {:?}, next holder granted after {:?}",
        suspended - cut,
        lost - cut,
        granted - cut
    );
    assert!(suspended < lost);
    assert!(lost < granted, "Lost must come before anyone else is granted");
    assert_eq!(guard.state(), LockState::Lost);
    assert!(next.fencing_token() > guard.fencing_token());
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_force_expired_holder_leaves_held_before_the_next_grant_and_turns_lost() {
    // A long session: the guard's own timer would say Lost only after 8.5 s, so a quick Lost
    // can only come from the server's doing (the session taken over, closed, the node deleted).
    let HolderAndWaiter { server, proxy: _p, holder_client, waiter_client: _w, guard, states, waiter } =
        HolderAndWaiter::start(Duration::from_secs(10), Duration::from_millis(1500)).await;
    // The holder stays connected: the harness takes its session over on a raw connection and
    // closes it there.
    let expired = Instant::now();
    assert!(common::expire_session_nowait(&server.connect_string(), &holder_client).await, "expiry failed");
    let (granted, next) =
        tokio::time::timeout(Duration::from_secs(15), waiter).await.expect("waiter never granted").unwrap();
    tokio::time::timeout(Duration::from_secs(3), guard.lost()).await.expect("holder must turn Lost quickly");
    eprintln!("next holder granted after {:?}, holder Lost after {:?}", granted - expired, expired.elapsed());
    let log = states.lock().unwrap().clone();
    let left_held = log.iter().find(|(_, s)| *s != LockState::Held).map(|(t, _)| *t).expect("never left Held");
    assert!(left_held < granted, "the holder must leave Held before the next grant: {log:?}");
    assert_eq!(guard.state(), LockState::Lost);
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
    guard.release().await.expect("release after a short cut");
    let (_, next) = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    next.release().await.unwrap();
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
