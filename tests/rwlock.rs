//! The read/write lock against a real ZooKeeper server: sharing, exclusion, FIFO among
//! conflicting requests, a randomized mix that never deadlocks, cancel safety, the lock trait.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{
    children, connect, connect_many, four_letter::watchers_by_path, shared_connect, unique_path, wait_for_children, Rng,
};
use zk_lock::{Error, Lock, LockGuard, Mutex, RwLock};

const T: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_readers_hold_together_in_curators_layout() {
    let clients = connect_many(&shared_connect(), 5, T).await;
    let path = unique_path("rw-readers");
    let mut guards = Vec::new();
    for c in &clients {
        let lock = RwLock::new(c, path.clone()).unwrap();
        guards.push(tokio::time::timeout(Duration::from_secs(5), lock.read()).await.expect("readers share").unwrap());
    }
    let names = children(&clients[0], &path).await;
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| n.starts_with("_c_") && n.contains("-__READ__")), "{names:?}");
    for g in guards {
        assert_eq!(g.state(), zk_lock::LockState::Held);
        g.release().await.unwrap();
    }
    assert!(children(&clients[0], &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_excludes_everyone_and_a_busy_try_writes_nothing() {
    let clients = connect_many(&shared_connect(), 3, T).await;
    let path = unique_path("rw-writer");
    let (a, b) = (RwLock::new(&clients[0], path.clone()).unwrap(), RwLock::new(&clients[1], path.clone()).unwrap());
    let w = a.write().await.unwrap();
    assert!(w.node().contains("-__WRIT__"));
    assert!(matches!(b.try_read().await.map(drop), Err(Error::WouldBlock { .. })));
    assert!(matches!(b.try_write().await.map(drop), Err(Error::WouldBlock { .. })));
    assert_eq!(children(&clients[0], &path).await.len(), 1, "a busy try_* writes nothing");
    assert!(matches!(b.read_timeout(Duration::from_millis(200)).await.map(drop), Err(Error::Timeout { .. })));
    assert!(matches!(b.write_timeout(Duration::ZERO).await.map(drop), Err(Error::Timeout { .. })));
    assert_eq!(children(&clients[0], &path).await.len(), 1, "timed-out contenders withdraw");
    // A reader excludes writers but not readers.
    w.release().await.unwrap();
    let r = a.read().await.unwrap();
    let r2 = b.try_read().await.expect("readers share");
    assert!(matches!(b.try_write().await.map(drop), Err(Error::WouldBlock { .. })));
    r.release().await.unwrap();
    r2.release().await.unwrap();
    let w = b.try_write().await.expect("free again");
    w.release().await.unwrap();
    assert!(children(&clients[0], &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_queued_behind_readers_goes_before_readers_that_came_after_it() {
    let clients = connect_many(&shared_connect(), 3, T).await;
    let path = unique_path("rw-fifo");
    let locks: Vec<RwLock> = clients.iter().map(|c| RwLock::new(c, path.clone()).unwrap()).collect();
    let r1 = locks[0].read().await.unwrap();
    let writer = tokio::spawn({
        let lock = locks[1].clone();
        async move { lock.write().await.unwrap() }
    });
    wait_for_children(&clients[0], &path, 2).await;
    let late_reader = tokio::spawn({
        let lock = locks[2].clone();
        async move { lock.read().await.unwrap() }
    });
    wait_for_children(&clients[0], &path, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer waits for the earlier reader");
    assert!(!late_reader.is_finished(), "a reader that queued after a writer waits for it");
    r1.release().await.unwrap();
    let w = tokio::time::timeout(Duration::from_secs(5), writer).await.expect("writer granted").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!late_reader.is_finished(), "still behind the writer");
    w.release().await.unwrap();
    let r3 = tokio::time::timeout(Duration::from_secs(5), late_reader).await.expect("reader granted").unwrap();
    r3.release().await.unwrap();
    assert!(children(&clients[0], &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_random_mix_of_twelve_contenders_never_deadlocks_and_never_shares_a_write() {
    let clients = connect_many(&shared_connect(), 12, T).await;
    let path = unique_path("rw-mix");
    let readers = Arc::new(AtomicUsize::new(0));
    let writers = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(AtomicUsize::new(0));
    let max_readers = Arc::new(AtomicUsize::new(0));
    let mut rng = Rng::new("RW_MIX_SEED");
    let mut tasks = Vec::new();
    for c in &clients {
        let lock = RwLock::new(c, path.clone()).unwrap();
        let ops: Vec<(bool, u64)> = (0..30).map(|_| (rng.below(10) < 7, rng.below(3))).collect();
        let (readers, writers, violations, max_readers) =
            (readers.clone(), writers.clone(), violations.clone(), max_readers.clone());
        tasks.push(tokio::spawn(async move {
            for (read, hold_ms) in ops {
                let guard = if read { lock.read().await } else { lock.write().await }.expect("acquire");
                // The invariant, at every grant: a writer is alone.
                if read {
                    let now = readers.fetch_add(1, Ordering::SeqCst) + 1;
                    max_readers.fetch_max(now, Ordering::SeqCst);
                    if writers.load(Ordering::SeqCst) != 0 {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                } else if writers.fetch_add(1, Ordering::SeqCst) != 0 || readers.load(Ordering::SeqCst) != 0 {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                if read {
                    readers.fetch_sub(1, Ordering::SeqCst);
                } else {
                    writers.fetch_sub(1, Ordering::SeqCst);
                }
                guard.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await.expect("deadlock: no progress").unwrap();
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0, "a writer was granted beside someone");
    eprintln!("max readers at once: {}", max_readers.load(Ordering::SeqCst));
    assert!(max_readers.load(Ordering::SeqCst) > 1, "readers never shared");
    assert!(children(&clients[0], &path).await.is_empty(), "nodes left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_reads_and_writes_leave_no_node() {
    let clients = connect_many(&shared_connect(), 2, T).await;
    let path = unique_path("rw-cancel");
    let (a, b) = (RwLock::new(&clients[0], path.clone()).unwrap(), RwLock::new(&clients[1], path.clone()).unwrap());
    let mut rng = Rng::new("RW_CANCEL_SEED");
    let mut cancelled = 0;
    for i in 0..60 {
        // A writer holds every other round, so that the cancel hits a queued waiter.
        let holder = if i % 2 == 0 { Some(b.write().await.unwrap()) } else { None };
        let deadline = Duration::from_micros(rng.below(4000));
        type Acquire<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = zk_lock::Result<LockGuard>> + Send + 'a>>;
        let acquire: Acquire<'_> = match rng.below(6) {
            0 => Box::pin(a.read()),
            1 => Box::pin(a.write()),
            2 => Box::pin(a.read_timeout(Duration::from_secs(5))),
            3 => Box::pin(a.write_timeout(Duration::from_secs(5))),
            4 => Box::pin(a.try_read()),
            _ => Box::pin(a.write_lock().acquire()),
        };
        match tokio::time::timeout(deadline, acquire).await {
            Ok(Ok(guard)) => guard.release().await.unwrap(),
            Ok(Err(Error::WouldBlock { .. })) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => cancelled += 1,
        }
        if let Some(h) = holder {
            h.release().await.unwrap();
        }
    }
    assert!(cancelled >= 15, "the test must really cancel: {cancelled}");
    let clean =
        common::wait_until_async(Duration::from_secs(10), || async { children(&clients[0], &path).await.is_empty() })
            .await;
    assert!(clean, "nodes left behind: {:?}", children(&clients[0], &path).await);
    a.write_timeout(Duration::from_secs(5)).await.expect("nobody stalls").release().await.unwrap();
}

#[tokio::test]
async fn any_mix_of_locks_goes_through_the_lock_trait() {
    let clients = connect_many(&shared_connect(), 1, T).await;
    let root = unique_path("trait");
    let rw = RwLock::new(&clients[0], format!("{root}/rw")).unwrap();
    // Each lock, and whether a second acquire of it is refused while the first holds.
    let locks: Vec<(Box<dyn Lock>, bool)> = vec![
        (Box::new(Mutex::new(&clients[0], format!("{root}/m")).unwrap()), true),
        (Box::new(rw.read_lock().clone()), false),
        (Box::new(rw.write_lock().clone()), true),
    ];
    let tokens = Arc::new(StdMutex::new(Vec::new()));
    for (lock, exclusive) in &locks {
        let guard = lock.acquire().await.unwrap();
        assert_eq!(guard.state(), zk_lock::LockState::Held);
        assert!(guard.node().starts_with(lock.path().as_str()));
        tokens.lock().unwrap().push(guard.fencing_token());
        match lock.try_acquire().await {
            Err(Error::WouldBlock { .. }) => assert!(*exclusive, "{lock:?}"),
            Ok(second) => {
                assert!(!*exclusive, "{lock:?}");
                second.release().await.unwrap();
            }
            Err(e) => panic!("{e}"),
        }
        guard.release().await.unwrap();
        lock.acquire_timeout(Duration::from_secs(1)).await.unwrap().release().await.unwrap();
        lock.try_acquire().await.unwrap().release().await.unwrap();
    }
    for dir in ["m", "rw"] {
        assert!(children(&clients[0], &format!("{root}/{dir}")).await.is_empty());
    }
    let t = tokens.lock().unwrap().clone();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "tokens grow across recipes too: {t:?}");
    fn check<T: Send + Sync + 'static>() {}
    check::<RwLock>();
    check::<zk_lock::ReadLock>();
    check::<zk_lock::WriteLock>();
    check::<Box<dyn Lock>>();
    check::<LockGuard>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_watch_the_nearest_earlier_writer_and_no_reader_watches_a_reader() {
    let server = common::ZkServer::start();
    let cs = server.connect_string();
    let path = "/herd/rw";
    // W holds; then R1..R5, W2, R6 queue, in that order.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connect(&cs, Duration::from_secs(10)).await);
    }
    let locks: Vec<RwLock> = clients.iter().map(|c| RwLock::new(c, path).unwrap()).collect();
    let w = locks[0].write().await.unwrap();
    let mut waiting = Vec::new();
    for (i, lock) in locks.iter().enumerate().skip(1) {
        let lock = lock.clone();
        let write = i == 6;
        waiting.push(tokio::spawn(async move { if write { lock.write().await } else { lock.read().await }.unwrap() }));
        wait_for_children(&clients[0], path, i + 1).await;
    }
    let session = |i: usize| format!("{:#x}", clients[i].session_id().0);
    let nodes: Vec<String> = locks[0].participants().await.unwrap().iter().map(|p| p.node().to_owned()).collect();
    let expected = |wchp: &std::collections::HashMap<String, Vec<String>>| {
        let on = |node: &str| -> Vec<String> {
            let mut w: Vec<String> = wchp.get(node).cloned().unwrap_or_default();
            w.retain(|s| *s != session(0)); // W's watch on its own node
            w.sort();
            w
        };
        let mut readers: Vec<String> = (1..=5).map(session).collect();
        readers.sort();
        on(&nodes[0]) == readers
            && (1..5).all(|i| on(&nodes[i]).is_empty())
            && on(&nodes[5]) == [session(6)]
            && on(&nodes[6]) == [session(7)]
    };
    let ok =
        common::wait_until(Duration::from_secs(10), || expected(&watchers_by_path(&server.four_letter("wchp")))).await;
    assert!(ok, "watches: {}\nnodes: {nodes:?}", server.four_letter("wchp"));
    w.release().await.unwrap();
    // R1..R5 are granted together; W2 waits for all of them; R6 for W2.
    let mut readers = Vec::new();
    for t in waiting.drain(..5) {
        readers.push(tokio::time::timeout(Duration::from_secs(5), t).await.expect("readers granted").unwrap());
    }
    for r in readers {
        r.release().await.unwrap();
    }
    for t in waiting {
        let g = tokio::time::timeout(Duration::from_secs(5), t).await.expect("granted in turn").unwrap();
        g.release().await.unwrap();
    }
    assert!(children(&clients[0], path).await.is_empty());
}

#[tokio::test]
async fn a_refused_delete_on_one_side_stops_the_other_side_too() {
    use zk_lock::zk::{Acl, Acls, AuthId, Permission};
    let cs = shared_connect();
    let a = connect(&cs, Duration::from_secs(10)).await;
    let admin = connect(&cs, T).await;
    let path = unique_path("rw-refused");
    common::ensure_path(&admin, &path).await;
    let lock = RwLock::new(&a, path.clone()).unwrap();
    let r = lock.read().await.unwrap();
    let no_delete =
        [Acl::new(Permission::READ | Permission::WRITE | Permission::CREATE | Permission::ADMIN, AuthId::anyone())];
    admin.set_acl(&path, &no_delete, None).await.unwrap();
    assert!(matches!(r.release().await, Err(Error::NotAuthorized { .. })));
    // Neither side adds a node behind our orphan.
    assert!(matches!(lock.write_timeout(Duration::from_secs(2)).await.map(drop), Err(Error::NotAuthorized { .. })));
    assert!(matches!(lock.try_read().await.map(drop), Err(Error::NotAuthorized { .. })));
    assert_eq!(children(&admin, &path).await.len(), 1);
    admin.set_acl(&path, &Acls::anyone_all(), None).await.unwrap();
    let gone =
        common::wait_until_async(Duration::from_secs(5), || async { children(&admin, &path).await.is_empty() }).await;
    assert!(gone);
    lock.try_write().await.expect("free again").release().await.unwrap();
}
