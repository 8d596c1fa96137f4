//! The multi-lock against a real ZooKeeper server: a mutex, a write lock and a semaphore
//! permit taken together, in any order, without deadlock; one deadline; nothing half-held.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{children, connect, shared_connect, unique_path};
use zk_lock::{Error, Lock, LockState, MultiLock, Mutex, RwLock, Semaphore};

const T: Duration = Duration::from_secs(4);

/// The three members on `root`, in the order `order` gives (indices into mutex, write, permit).
fn members(client: &zk_lock::zk::Client, root: &str, order: [usize; 3]) -> Vec<Box<dyn Lock>> {
    let mut all: Vec<Option<Box<dyn Lock>>> = vec![
        Some(Box::new(Mutex::new(client, format!("{root}/a-mutex")).unwrap())),
        Some(Box::new(RwLock::new(client, format!("{root}/b-rw")).unwrap().write_lock().clone())),
        Some(Box::new(Semaphore::new(client, format!("{root}/c-sem"), 1).unwrap())),
    ];
    order.iter().map(|&i| all[i].take().unwrap()).collect()
}

async fn nodes(client: &zk_lock::zk::Client, root: &str) -> usize {
    let mut n = 0;
    for dir in ["a-mutex", "b-rw", "c-sem"] {
        n += children(client, &format!("{root}/{dir}")).await.len();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tasks_taking_one_set_in_opposite_orders_never_deadlock() {
    let cs = shared_connect();
    let root = unique_path("multi");
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for order in [[0, 1, 2], [2, 1, 0]] {
        let client = connect(&cs, T).await;
        let multi = MultiLock::new(members(&client, &root, order)).unwrap();
        let (inside, overlaps) = (inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let held = multi.acquire().await.expect("acquire");
                assert_eq!(held.guards().len(), 3);
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                held.release().await.expect("release");
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(tokio::time::timeout(Duration::from_secs(120), t).await.expect("deadlock: no progress").unwrap());
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two multi-locks held the same set at once");
    assert_eq!(nodes(&clients[0], &root).await, 0, "nodes left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_leaves_no_partial_hold_and_no_node() {
    let cs = shared_connect();
    let root = unique_path("multi-timeout");
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    // Someone else holds the last member in canonical order: the first two are taken, then
    // the wait for the third runs out.
    let permit = Semaphore::new(&b, format!("{root}/c-sem"), 1).unwrap().acquire().await.unwrap();
    let multi = MultiLock::new(members(&a, &root, [1, 2, 0])).unwrap();
    let started = std::time::Instant::now();
    match multi.acquire_timeout(Duration::from_millis(400)).await.map(drop) {
        Err(Error::Timeout { path, after }) => {
            assert_eq!(path, format!("{root}/c-sem"));
            assert_eq!(after, Duration::from_millis(400));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(2), "one deadline: {took:?}");
    assert_eq!(nodes(&a, &root).await, 1, "only the other holder's permit is left");
    // Nor does a busy try.
    assert!(matches!(multi.try_acquire().await.map(drop), Err(Error::WouldBlock { .. })));
    assert_eq!(nodes(&a, &root).await, 1);
    permit.release().await.unwrap();
    let held = multi.try_acquire().await.expect("all free");
    held.release().await.unwrap();
    assert_eq!(nodes(&a, &root).await, 0);
}

#[tokio::test]
async fn the_guard_covers_every_member() {
    let cs = shared_connect();
    let root = unique_path("multi-guard");
    let (a, other) = (connect(&cs, Duration::from_secs(10)).await, connect(&cs, T).await);
    let multi = MultiLock::new(members(&a, &root, [0, 1, 2])).unwrap();
    let held = multi.acquire().await.unwrap();
    let paths: Vec<&str> = multi.locks().map(|l| l.path().as_str()).collect();
    assert!(paths.windows(2).all(|w| w[0] < w[1]), "canonical order: {paths:?}");
    let max = held.guards().iter().map(|g| g.fencing_token()).max().unwrap();
    assert_eq!(held.fencing_token(), max);
    assert_eq!(held.state(), LockState::Held);
    let mut states = held.state_watcher();
    // One member lost (its node deleted by someone else): the whole is lost.
    tokio::time::sleep(Duration::from_millis(1200)).await; // the members' own-node watches are armed
    other.delete(held.guards()[1].node(), None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), held.lost()).await.expect("lost() resolves");
    assert_eq!(held.state(), LockState::Lost);
    tokio::time::timeout(Duration::from_secs(2), states.wait_for(|s| *s == LockState::Lost))
        .await
        .expect("the watcher shows it")
        .unwrap();
    assert!(matches!(held.release().await, Err(Error::LockLost { .. })));
    assert_eq!(nodes(&a, &root).await, 0, "every other member released all the same");
}

#[tokio::test]
async fn an_empty_set_or_two_members_on_one_path_are_refused() {
    let client = connect(&shared_connect(), T).await;
    assert!(matches!(MultiLock::new(Vec::new()).map(drop), Err(Error::InvalidLockSet { .. })));
    let rw = RwLock::new(&client, unique_path("multi-dup")).unwrap();
    let both: Vec<Box<dyn Lock>> = vec![Box::new(rw.read_lock().clone()), Box::new(rw.write_lock().clone())];
    assert!(matches!(MultiLock::new(both).map(drop), Err(Error::InvalidLockSet { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_covers_every_member() {
    let cs = shared_connect();
    let root = unique_path("multi-deadline");
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    // Someone else holds both the first and the last member; the first is freed after 300 ms.
    let first = Mutex::new(&b, format!("{root}/a-mutex")).unwrap().lock().await.unwrap();
    let last = Semaphore::new(&b, format!("{root}/c-sem"), 1).unwrap().acquire().await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.release().await.unwrap();
    });
    let multi = MultiLock::new(members(&a, &root, [0, 1, 2])).unwrap();
    let started = std::time::Instant::now();
    let result = multi.acquire_timeout(Duration::from_millis(400)).await.map(drop);
    let took = started.elapsed();
    assert!(matches!(result, Err(Error::Timeout { ref path, .. }) if path.ends_with("/c-sem")), "{result:?}");
    // 300 ms for the first member leave 100 ms for the others: one deadline, not one each.
    assert!(took < Duration::from_millis(650), "took {took:?}");
    assert_eq!(nodes(&a, &root).await, 1, "only the other holder's permit is left");
    last.release().await.unwrap();
}

#[tokio::test]
async fn the_order_and_the_duplicates_are_those_of_the_server_paths() {
    let cs = shared_connect();
    let root = unique_path("multi-chroot");
    let plain = connect(&cs, T).await;
    common::ensure_path(&plain, &root).await;
    let chrooted = connect(&format!("{cs}{root}"), T).await;
    // One znode named through two chroots is one member twice.
    let same: Vec<Box<dyn Lock>> = vec![
        Box::new(Mutex::new(&plain, format!("{root}/x")).unwrap()),
        Box::new(Mutex::new(&chrooted, "/x").unwrap()),
    ];
    assert!(matches!(MultiLock::new(same).map(drop), Err(Error::InvalidLockSet { .. })));
    // The same relative path under two chroots is two locks, ordered by their server paths.
    let two: Vec<Box<dyn Lock>> =
        vec![Box::new(Mutex::new(&chrooted, "/x").unwrap()), Box::new(Mutex::new(&plain, "/x").unwrap())];
    let multi = MultiLock::new(two).unwrap();
    let order: Vec<String> = multi.locks().map(|l| l.server_path()).collect();
    assert_eq!(order, ["/x".to_owned(), format!("{root}/x")]);
    multi.acquire().await.unwrap().release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_multi_acquires_leave_no_node() {
    let cs = shared_connect();
    let root = unique_path("multi-cancel");
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let multi = MultiLock::new(members(&a, &root, [0, 1, 2])).unwrap();
    let mut rng = common::Rng::new("MULTI_CANCEL_SEED");
    let mut cancelled = 0;
    for i in 0..40 {
        // Every other round someone else holds the last member, so the cancel can hit a wait
        // with the first two held.
        let holder = if i % 2 == 0 {
            Some(Semaphore::new(&b, format!("{root}/c-sem"), 1).unwrap().acquire().await.unwrap())
        } else {
            None
        };
        let deadline = Duration::from_micros(rng.below(8000));
        let attempt: std::pin::Pin<Box<dyn std::future::Future<Output = zk_lock::Result<zk_lock::MultiGuard>> + Send>> =
            match rng.below(3) {
                0 => Box::pin(multi.acquire()),
                1 => Box::pin(multi.acquire_timeout(Duration::from_secs(5))),
                _ => Box::pin(multi.try_acquire()),
            };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(held)) => held.release().await.unwrap(),
            Ok(Err(Error::WouldBlock { .. })) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => cancelled += 1,
        }
        if let Some(h) = holder {
            h.release().await.unwrap();
        }
    }
    assert!(cancelled >= 10, "the test must really cancel: {cancelled}");
    let clean = common::wait_until_async(Duration::from_secs(10), || async { nodes(&a, &root).await == 0 }).await;
    assert!(clean, "nodes left behind: {}", nodes(&a, &root).await);
    multi.acquire_timeout(Duration::from_secs(5)).await.expect("nobody stalls").release().await.unwrap();
}
