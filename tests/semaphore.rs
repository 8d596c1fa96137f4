//! The semaphore against a real ZooKeeper server: at most N holders, arrival order, one watch
//! per release, the permit count stored and checked, cancel safety.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    children, connect, connect_many, four_letter::watchers_by_path, shared_connect, unique_path, wait_for_children,
    Rng, ZkServer,
};
use zk_lock::{Error, Semaphore};

const T: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_contenders_never_exceed_three_permits() {
    let cs = shared_connect();
    let clients = connect_many(&cs, 12, T).await;
    let path = unique_path("sem-load");
    let holders = Arc::new(AtomicUsize::new(0));
    let max_holders = Arc::new(AtomicUsize::new(0));
    let mut rng = Rng::new("SEM_SEED");
    let mut tasks = Vec::new();
    for c in &clients {
        let sem = Semaphore::new(c, path.clone(), 3).unwrap();
        let holds: Vec<u64> = (0..10).map(|_| 2 + rng.below(3)).collect();
        let (holders, max_holders) = (holders.clone(), max_holders.clone());
        tasks.push(tokio::spawn(async move {
            for hold in holds {
                let permit = sem.acquire().await.expect("acquire");
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                max_holders.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(hold)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                permit.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await.expect("no progress").unwrap();
    }
    let max = max_holders.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} holders at once");
    // Sharing shows (that all three permits can be held at once is checked exactly, without
    // timing, by the arrival-order test).
    assert!(max >= 2, "the permits were really shared: at most {max} at once");
    assert!(children(&clients[0], &path).await.is_empty(), "nodes left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_are_granted_in_arrival_order() {
    let cs = shared_connect();
    let clients = connect_many(&cs, 9, T).await;
    let path = unique_path("sem-fifo");
    let sems: Vec<Semaphore> = clients.iter().map(|c| Semaphore::new(c, path.clone(), 3).unwrap()).collect();
    let mut held = Vec::new();
    for s in &sems[..3] {
        held.push(s.try_acquire().await.expect("a free permit"));
    }
    // Six waiters, queued one after the other.
    let (tx, mut granted) = tokio::sync::mpsc::unbounded_channel();
    for (i, s) in sems[3..].iter().enumerate() {
        let (s, tx) = (s.clone(), tx.clone());
        tokio::spawn(async move {
            let permit = s.acquire().await.unwrap();
            tx.send((i, permit)).unwrap();
        });
        wait_for_children(&clients[0], &path, 4 + i).await;
    }
    assert!(matches!(sems[0].try_acquire().await.map(drop), Err(Error::WouldBlock { .. })));
    // Each release lets in exactly the next waiter in arrival order, whichever holder leaves.
    let mut order = Vec::new();
    while let Some(permit) = if held.is_empty() { None } else { Some(held.remove(held.len() / 2)) } {
        permit.release().await.unwrap();
        let (i, next) = tokio::time::timeout(Duration::from_secs(5), granted.recv()).await.expect("granted").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(granted.try_recv().is_err(), "one release, one grant");
        order.push(i);
        held.push(next);
        if order.len() == 6 {
            break;
        }
    }
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    for p in held {
        p.release().await.unwrap();
    }
    assert!(children(&clients[0], &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_release_fires_one_watch_whatever_the_queue() {
    let server = ZkServer::start();
    let cs = server.connect_string();
    let path = "/herd/sem";
    let clients = connect_many(&cs, 3 + 12, Duration::from_secs(10)).await;
    let sems: Vec<Semaphore> = clients.iter().map(|c| Semaphore::new(c, path, 3).unwrap()).collect();
    let mut held = Vec::new();
    for s in &sems[..3] {
        held.push(s.acquire().await.unwrap());
    }
    let (tx, mut granted) = tokio::sync::mpsc::unbounded_channel();
    for s in &sems[3..] {
        let (s, tx) = (s.clone(), tx.clone());
        tokio::spawn(async move {
            let permit = s.acquire().await.unwrap();
            tx.send(permit).unwrap();
        });
    }
    // Every waiter has set its one watch: the first on the directory (a child watch, which
    // `wchp` does not list), each of the eleven others on the node of the waiter before it.
    let waiters: Vec<String> = clients[3..].iter().map(|c| format!("{:#x}", c.session_id().0)).collect();
    let ready = common::wait_until(Duration::from_secs(20), || {
        let wchp = watchers_by_path(&server.four_letter("wchp"));
        wchp.values().flatten().filter(|s| waiters.contains(s)).count() == 11
    })
    .await;
    assert!(ready, "waiters did not queue: {}", server.four_letter("wchp"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wchp = watchers_by_path(&server.four_letter("wchp"));
    for p in held.iter().map(|g| g.node()) {
        let others = wchp.get(p).map_or(0, |w| w.len()).saturating_sub(1);
        assert!(others == 0, "nobody but its own session watches a holder: {p} {:?}", wchp.get(p));
    }
    let own_watches: i64 = held.iter().map(|g| wchp.get(g.node()).map_or(0, |w| w.len()) as i64).sum();
    let before = server.mntr();
    let holder = held.remove(1);
    let own = wchp.get(holder.node()).map_or(0, |w| w.len()) as i64;
    holder.release().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), granted.recv()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = server.mntr();
    let fired = |key: &str| after.get(key).unwrap_or(0) - before.get(key).unwrap_or(0);
    // The release fires the first waiter's directory watch only; its grant then wakes the next
    // waiter (one data watch, by the grant's write): two in all, for a queue of twelve.
    assert_eq!(fired("zk_sum_node_children_watch_count"), 1, "one directory watch");
    let data = fired("zk_sum_node_deleted_watch_count") + fired("zk_sum_node_changed_watch_count");
    assert_eq!(data - own, 1, "one data watch: the next waiter's (own watches on holders: {own_watches})");
    assert!(granted.try_recv().is_err(), "one release, one grant");
    drop(first);
    drop(held);
}

#[tokio::test]
async fn a_different_permit_count_is_refused_and_writes_nothing() {
    let server = ZkServer::start();
    let cs = server.connect_string();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    assert!(matches!(Semaphore::new(&a, "/sem/x", 0).map(drop), Err(Error::InvalidPermits { .. })));
    let three = Semaphore::new(&a, "/sem/x", 3).unwrap();
    let permit = three.acquire().await.unwrap();
    assert_eq!(a.get_data("/sem/x").await.unwrap().0, b"3", "the count is stored on the semaphore's node");
    let zxid = || server.srvr().lines().find(|l| l.starts_with("Zxid:")).unwrap().to_owned();
    let before = zxid();
    let four = Semaphore::new(&b, "/sem/x", 4).unwrap();
    for result in [four.acquire().await.map(drop), four.try_acquire().await.map(drop)] {
        match result {
            Err(Error::PermitMismatch { path, permits, stored }) => {
                assert_eq!((path.as_str(), permits, stored.as_str()), ("/sem/x", 4, "3"))
            }
            other => panic!("expected PermitMismatch, got {other:?}"),
        }
    }
    assert_eq!(zxid(), before, "nothing written");
    permit.release().await.unwrap();
    // A node made by someone else, empty: the first semaphore writes its count into it.
    common::ensure_path(&a, "/sem/empty").await;
    Semaphore::new(&b, "/sem/empty", 2).unwrap().acquire().await.unwrap().release().await.unwrap();
    assert_eq!(a.get_data("/sem/empty").await.unwrap().0, b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquires_leave_no_node() {
    let cs = shared_connect();
    let clients = connect_many(&cs, 3, T).await;
    let path = unique_path("sem-cancel");
    let sems: Vec<Semaphore> = clients.iter().map(|c| Semaphore::new(c, path.clone(), 2).unwrap()).collect();
    let mut rng = Rng::new("SEM_CANCEL_SEED");
    let mut cancelled = 0;
    for i in 0..60 {
        // Both permits are held every other round, so that the cancel hits a waiter.
        let holders = if i % 2 == 0 {
            vec![sems[1].acquire().await.unwrap(), sems[2].acquire().await.unwrap()]
        } else {
            Vec::new()
        };
        type Acquire<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = zk_lock::Result<zk_lock::LockGuard>> + Send + 'a>>;
        let attempt: Acquire<'_> = match rng.below(3) {
            0 => Box::pin(sems[0].acquire()),
            1 => Box::pin(sems[0].acquire_timeout(Duration::from_secs(5))),
            _ => Box::pin(sems[0].try_acquire()),
        };
        match tokio::time::timeout(Duration::from_micros(rng.below(4000)), attempt).await {
            Ok(Ok(permit)) => permit.release().await.unwrap(),
            Ok(Err(Error::WouldBlock { .. })) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => cancelled += 1,
        }
        for h in holders {
            h.release().await.unwrap();
        }
    }
    assert!(cancelled >= 15, "the test must really cancel: {cancelled}");
    let clean =
        common::wait_until_async(Duration::from_secs(10), || async { children(&clients[0], &path).await.is_empty() })
            .await;
    assert!(clean, "nodes left behind: {:?}", children(&clients[0], &path).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_waiter_a_release_fires_exactly_one_watch() {
    let server = ZkServer::start();
    let cs = server.connect_string();
    let path = "/herd/sem1";
    let clients = connect_many(&cs, 3, Duration::from_secs(10)).await;
    let sems: Vec<Semaphore> = clients.iter().map(|c| Semaphore::new(c, path, 2).unwrap()).collect();
    let (h1, h2) = (sems[0].acquire().await.unwrap(), sems[1].acquire().await.unwrap());
    let waiter = tokio::spawn({
        let s = sems[2].clone();
        async move { s.acquire().await.unwrap() }
    });
    wait_for_children(&clients[0], path, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wchp = watchers_by_path(&server.four_letter("wchp"));
    let own = wchp.get(h1.node()).map_or(0, |w| w.len()) as i64;
    let before = server.mntr();
    h1.release().await.unwrap();
    let granted = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("granted").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = server.mntr();
    let fired = |key: &str| after.get(key).unwrap_or(0) - before.get(key).unwrap_or(0);
    assert_eq!(fired("zk_sum_node_children_watch_count"), 1, "the first waiter's directory watch");
    let data = fired("zk_sum_node_deleted_watch_count") + fired("zk_sum_node_changed_watch_count");
    assert_eq!(data - own, 0, "nothing else: nobody is behind the waiter, so its grant writes nothing");
    granted.release().await.unwrap();
    h2.release().await.unwrap();
}
