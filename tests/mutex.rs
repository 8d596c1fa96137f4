//! The fair mutex against a real ZooKeeper server: exclusion, FIFO, tokens, herd-freedom,
//! try-lock without writes, bad input, participants, reentrancy, fencing, loss by deletion.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{children, connect, four_letter::watchers_by_path, shared_connect, unique_path, ZkServer};
use zk_lock::zk::{self, Acls, CreateMode};
use zk_lock::{Error, FencingToken, LockState, Mutex};

const T: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_contenders_fifty_cycles_fifo_exclusive_and_tokens_grow() {
    let connect_string = shared_connect();
    let path = unique_path("fifo");
    let holders = Arc::new(AtomicUsize::new(0));
    let max_holders = Arc::new(AtomicUsize::new(0));
    let grants: Arc<StdMutex<Vec<(i64, FencingToken)>>> = Arc::default();
    // A read-modify-write that takes a while: any overlap of two holders loses an increment.
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = connect(&connect_string, T).await;
        let mutex = Mutex::new(&client, path.clone()).unwrap();
        let (holders, max_holders, grants) = (holders.clone(), max_holders.clone(), grants.clone());
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let guard = mutex.lock().await.expect("lock");
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                max_holders.fetch_max(now, Ordering::SeqCst);
                grants.lock().unwrap().push((guard.sequence(), guard.fencing_token()));
                let seen = counter.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                counter.store(seen + 1, Ordering::SeqCst);
                holders.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.expect("release");
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(tokio::time::timeout(Duration::from_secs(120), t).await.expect("no progress").unwrap());
    }
    assert_eq!(max_holders.load(Ordering::SeqCst), 1, "two holders at once");
    assert_eq!(counter.load(Ordering::SeqCst), 16 * 50, "an increment was lost: two holders overlapped");
    let grants = grants.lock().unwrap().clone();
    assert_eq!(grants.len(), 16 * 50);
    let inversions = grants.windows(2).filter(|w| w[1].0 <= w[0].0).count();
    assert_eq!(inversions, 0, "grants out of node-sequence order");
    assert!(grants.windows(2).all(|w| w[1].1 > w[0].1), "fencing tokens must grow from holder to holder");
    assert!(children(&clients[0], &path).await.is_empty(), "nodes left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_release_wakes_exactly_one_of_64_waiters() {
    let server = ZkServer::start();
    let cs = server.connect_string();
    let path = "/herd/lock";
    let holder_client = connect(&cs, Duration::from_secs(10)).await;
    let holder = Mutex::new(&holder_client, path).unwrap().lock().await.unwrap();
    let holder_session = format!("{:#x}", holder_client.session_id().0);

    let (granted_tx, mut granted_rx) = tokio::sync::mpsc::unbounded_channel();
    // Waiters hold until the counters of the first handoff have been read.
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    // One session per waiter: the server counts watches per (path, session).
    let mut waiter_clients = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let client = connect(&cs, Duration::from_secs(10)).await;
        let mutex = Mutex::new(&client, path).unwrap();
        let tx = granted_tx.clone();
        let mut go = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            let guard = mutex.lock().await.expect("lock");
            tx.send(guard.sequence()).unwrap();
            go.wait_for(|go| *go).await.unwrap();
            guard.release().await.expect("release");
        }));
        waiter_clients.push(client);
    }
    // All 64 queued, each with its watch set, and the holder's watch on its own node armed (so
    // that nothing changes between the snapshot and the release).
    let ready = common::wait_until(Duration::from_secs(20), || {
        let wchp = watchers_by_path(&server.four_letter("wchp"));
        wchp.keys().filter(|p| p.starts_with("/herd/lock/")).count() >= 64
            && wchp.get(holder.node()).is_some_and(|w| w.contains(&holder_session))
    })
    .await;
    assert!(ready, "64 waiters did not queue: {}", server.four_letter("wchp"));
    assert_eq!(children(&holder_client, path).await.len(), 65);

    let wchp = watchers_by_path(&server.four_letter("wchp"));
    let holder_watchers = &wchp[holder.node()];
    let other_watchers: Vec<_> = holder_watchers.iter().filter(|s| **s != holder_session).collect();
    assert_eq!(other_watchers.len(), 1, "exactly one waiter watches the holder: {holder_watchers:?}");
    for (p, sessions) in &wchp {
        if p.starts_with("/herd/lock/") && p != holder.node() {
            assert_eq!(sessions.len(), 1, "{p} watched by {sessions:?}");
        }
        assert_ne!(p, "/herd/lock", "nobody may watch the directory");
    }
    let before = server.mntr();
    holder.release().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), granted_rx.recv()).await.unwrap().unwrap();
    let after = server.mntr();
    let fired_by = |key: &str| after.get(key).unwrap() - before.get(key).unwrap();
    // The release is a handoff (data change, then delete, in one multi-op): the successor's
    // watch fires on the data change; a watch the holder keeps on its own node, if armed, too.
    let fired = fired_by("zk_sum_node_changed_watch_count") + fired_by("zk_sum_node_deleted_watch_count");
    assert_eq!(fired as usize, holder_watchers.len(), "watch notifications on one release");
    assert_eq!(
        after.get("zk_sum_node_children_watch_count").unwrap_or(0),
        before.get("zk_sum_node_children_watch_count").unwrap_or(0),
        "no child watch may fire"
    );
    go_tx.send(true).unwrap();
    let mut order = vec![first];
    for _ in 1..64 {
        order.push(tokio::time::timeout(Duration::from_secs(20), granted_rx.recv()).await.unwrap().unwrap());
    }
    assert!(order.windows(2).all(|w| w[0] < w[1]), "FIFO: {order:?}");
    for t in tasks {
        t.await.unwrap();
    }
    drop(waiter_clients);
}

fn zxid(server: &ZkServer) -> String {
    server.srvr().lines().find(|l| l.starts_with("Zxid:")).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_lock_on_a_busy_lock_writes_nothing() {
    let server = ZkServer::start();
    let a = connect(&server.connect_string(), T).await;
    let b = connect(&server.connect_string(), T).await;
    let ma = Mutex::new(&a, "/busy/lock").unwrap();
    let mb = Mutex::new(&b, "/busy/lock").unwrap();
    let guard = ma.try_lock().await.expect("free lock is taken by try_lock");
    let before = zxid(&server);
    for _ in 0..20 {
        match mb.try_lock().await {
            Err(Error::WouldBlock { path }) => assert_eq!(path, "/busy/lock"),
            other => panic!("expected WouldBlock, got {other:?}"),
        }
    }
    assert_eq!(zxid(&server), before, "a busy try_lock must not write");
    assert_eq!(children(&a, "/busy/lock").await.len(), 1);
    guard.release().await.unwrap();
    let g = mb.try_lock().await.expect("free again");
    g.release().await.unwrap();
}

#[tokio::test]
async fn bad_paths_are_refused_and_nothing_is_created() {
    let client = connect(&shared_connect(), T).await;
    for bad in ["", "relative/lock", "/", "/trailing/", "/a//b", "/a/./b", "/a/../b", "/nul\0byte", "/zookeeper/x"] {
        match Mutex::new(&client, bad) {
            Err(Error::InvalidPath { path, .. }) => assert_eq!(path, bad),
            other => panic!("{bad:?}: expected InvalidPath, got {other:?}"),
        }
    }
    // A path under an ephemeral node: refused by the first acquire, nothing created.
    let root = unique_path("eph");
    common::ensure_path(&client, &root).await;
    let eph = format!("{root}/ephemeral");
    client.create(&eph, b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    for under in [format!("{eph}/lock"), format!("{eph}/deeper/lock")] {
        let mutex = Mutex::new(&client, under.clone()).unwrap();
        for result in [mutex.lock().await.map(drop), mutex.try_lock().await.map(drop)] {
            match result {
                Err(Error::InvalidPath { path, reason }) => {
                    assert_eq!(path, under);
                    assert_eq!(reason, "lies under an ephemeral node");
                }
                other => panic!("{under}: expected InvalidPath, got {other:?}"),
            }
        }
    }
    assert!(children(&client, &eph).await.is_empty());
    assert_eq!(children(&client, &root).await, ["ephemeral"]);
}

#[tokio::test]
async fn participants_list_the_queue_in_order_with_data() {
    let cs = shared_connect();
    let path = unique_path("participants");
    let a = connect(&cs, T).await;
    let b = connect(&cs, T).await;
    let ma = Mutex::builder(&a, path.clone()).data("host-a pid 1").build().unwrap();
    let mb = Mutex::builder(&b, path.clone()).data("host-b pid 2").build().unwrap();
    let ga = ma.lock().await.unwrap();
    let waiter = tokio::spawn(async move { mb.lock().await.map(|g| (g.sequence(), g)) });
    assert!(
        common::wait_until_async(Duration::from_secs(5), || async { ma.participants().await.unwrap().len() == 2 })
            .await
    );
    let p = ma.participants().await.unwrap();
    assert_eq!(p[0].node(), ga.node());
    assert_eq!(ga.queued_behind(), 0);
    assert_eq!(p[0].data(), Some(&b"host-a pid 1"[..]));
    assert_eq!(p[0].session_id(), a.session_id());
    assert_eq!(p[0].fencing_token(), ga.fencing_token());
    assert_eq!(p[1].data(), Some(&b"host-b pid 2"[..]));
    assert_eq!(p[1].session_id(), b.session_id());
    assert!(p[0].sequence() < p[1].sequence());
    ga.release().await.unwrap();
    let (seq, gb) = waiter.await.unwrap().unwrap();
    assert_eq!(seq, p[1].sequence());
    assert_eq!(gb.queued_behind(), 1);
    gb.release().await.unwrap();
    assert!(ma.participants().await.unwrap().is_empty());
}

#[tokio::test]
async fn reentered_guard_keeps_the_node_until_the_last_release() {
    let client = connect(&shared_connect(), T).await;
    let path = unique_path("reenter");
    let mutex = Mutex::new(&client, path.clone()).unwrap();
    let outer = mutex.lock().await.unwrap();
    let inner = outer.reenter();
    assert_eq!(outer.hold_count(), 2);
    assert_eq!(inner.fencing_token(), outer.fencing_token());
    inner.release().await.unwrap();
    assert_eq!(outer.hold_count(), 1);
    assert_eq!(children(&client, &path).await.len(), 1, "still held by the outer guard");
    outer.release().await.unwrap();
    assert!(children(&client, &path).await.is_empty());
}

#[tokio::test]
async fn a_second_lock_on_the_same_handle_queues_behind_the_first() {
    let client = connect(&shared_connect(), T).await;
    let path = unique_path("same-handle");
    let mutex = Mutex::new(&client, path.clone()).unwrap();
    let first = mutex.lock().await.unwrap();
    assert!(matches!(mutex.lock_timeout(Duration::from_millis(300)).await, Err(Error::Timeout { .. })));
    let second = tokio::spawn({
        let mutex = mutex.clone();
        async move { mutex.lock().await }
    });
    // The second contender is really queued (its node exists, after ours), and waits.
    assert!(
        common::wait_until_async(Duration::from_secs(5), || async { children(&client, &path).await.len() == 2 }).await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "a second lock() on the same handle must wait behind the first");
    let first_seq = first.sequence();
    first.release().await.unwrap();
    let second = second.await.unwrap().unwrap();
    assert!(second.sequence() > first_seq);
    second.release().await.unwrap();
}

#[tokio::test]
async fn fenced_write_applies_only_while_the_node_exists() {
    let cs = shared_connect();
    let client = connect(&cs, T).await;
    let other = connect(&cs, T).await;
    let root = unique_path("fenced");
    common::ensure_path(&client, &format!("{root}/data")).await;
    let mutex = Mutex::new(&client, format!("{root}/lock")).unwrap();
    let guard = mutex.lock().await.unwrap();
    let mut w = guard.fenced();
    w.set_data(&format!("{root}/data"), b"v1", None).unwrap();
    w.commit().await.expect("fenced write while held");
    assert_eq!(client.get_data(&format!("{root}/data")).await.unwrap().0, b"v1");
    // Lock nodes are the lock's own: a fenced write may not touch them.
    let mut w = guard.fenced();
    assert!(matches!(w.set_data(guard.node(), b"x", None), Err(Error::InvalidPath { .. })));
    assert!(matches!(w.delete(guard.node(), None), Err(Error::InvalidPath { .. })));

    // Someone deletes our node (an open directory lets anyone do it): the lock is lost.
    other.delete(guard.node(), None).await.unwrap();
    let mut w = guard.fenced();
    w.set_data(&format!("{root}/data"), b"v2", None).unwrap();
    assert!(matches!(w.commit().await, Err(Error::LockLost { .. })));
    assert_eq!(client.get_data(&format!("{root}/data")).await.unwrap().0, b"v1", "fenced write must not apply");
    assert_eq!(guard.state(), LockState::Lost);
    assert!(matches!(guard.release().await, Err(Error::LockLost { .. })));
}

#[tokio::test]
async fn deletion_of_the_holders_node_by_someone_else_is_reported_as_lost() {
    let cs = shared_connect();
    // A long session: a loss within half a second can only come from the deletion.
    let client = connect(&cs, Duration::from_secs(10)).await;
    let other = connect(&cs, T).await;
    let mutex = Mutex::new(&client, unique_path("deleted")).unwrap();
    let guard = mutex.lock().await.unwrap();
    // Let the monitor arm its watch on our node (one heartbeat period: 1/10 of the timeout).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(guard.state(), LockState::Held);
    other.delete(guard.node(), None).await.unwrap();
    tokio::time::timeout(Duration::from_millis(500), guard.lost()).await.expect("lost() must resolve at once");
    assert_eq!(guard.state(), LockState::Lost);
    assert_eq!(guard.lost_reason(), Some(zk_lock::LostReason::NodeDeleted));
}

#[tokio::test(flavor = "current_thread")]
async fn a_paused_process_finds_its_guard_lost_at_once() {
    let cs = shared_connect();
    let client = connect(&cs, Duration::from_secs(2)).await;
    let mutex = Mutex::new(&client, unique_path("paused")).unwrap();
    let guard = mutex.lock().await.unwrap();
    assert_eq!(guard.state(), LockState::Held);
    // Block the only runtime thread: no task runs, no ping is sent, as if the process were stopped.
    std::thread::sleep(Duration::from_millis(2200));
    // First look after "resume", before any task could run.
    assert_eq!(guard.state(), LockState::Lost);
    assert_eq!(guard.lost_reason(), Some(zk_lock::LostReason::SuspendedTooLong));
}

#[tokio::test]
async fn dropping_a_guard_deletes_its_node_in_the_background() {
    let client = connect(&shared_connect(), T).await;
    let path = unique_path("drop");
    let mutex = Mutex::new(&client, path.clone()).unwrap();
    let guard = mutex.lock().await.unwrap();
    drop(guard);
    assert!(
        common::wait_until_async(Duration::from_secs(5), || async { children(&client, &path).await.is_empty() }).await
    );
    mutex.lock_timeout(Duration::from_secs(5)).await.expect("free again").release().await.unwrap();
}

#[tokio::test]
async fn session_expiry_while_waiting_is_a_typed_error() {
    let cs = shared_connect();
    let holder = connect(&cs, T).await;
    let waiter = connect(&cs, T).await;
    let path = unique_path("expire-waiting");
    let guard = Mutex::new(&holder, path.clone()).unwrap().lock().await.unwrap();
    let mutex = Mutex::new(&waiter, path.clone()).unwrap();
    let waiting = tokio::spawn(async move { mutex.lock().await.map(drop) });
    assert!(
        common::wait_until_async(Duration::from_secs(5), || async { children(&holder, &path).await.len() == 2 }).await
    );
    common::expire_session(&cs, &waiter).await;
    let result = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert_eq!(result, Err(Error::SessionExpired));
    guard.release().await.unwrap();
}

#[test]
fn public_types_are_send_sync_and_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Mutex>();
    check::<zk_lock::MutexGuard>();
    check::<zk_lock::Participant>();
    check::<zk_lock::LockState>();
    check::<Error>();
    fn lock_future_is_send(m: &Mutex) -> impl Send + '_ {
        m.lock()
    }
    let _ = lock_future_is_send;
    let _: fn(&zk::Client) = |_| {};
}

#[tokio::test]
async fn a_locked_down_directory_refuses_strangers_with_not_authorized() {
    let cs = shared_connect();
    let owner = zk::Client::connector().with_auth("digest", b"owner:secret").connect(&cs).await.unwrap();
    let stranger = connect(&cs, T).await;
    let root = unique_path("acl");
    common::ensure_path(&owner, &root).await;
    let dir = format!("{root}/locked");
    owner.create(&dir, b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
    let mutex = Mutex::new(&stranger, format!("{dir}/lock")).unwrap();
    match mutex.lock().await {
        Err(Error::NotAuthorized { .. }) => {}
        other => panic!("expected NotAuthorized, got {:?}", other.map(|g| g.node().to_owned())),
    }
    // The owner can lock under it, and nothing of the stranger's is there.
    let own = Mutex::new(&owner, format!("{dir}/lock")).unwrap().lock().await.unwrap();
    assert_eq!(children(&owner, &format!("{dir}/lock")).await.len(), 1);
    own.release().await.unwrap();
}

#[tokio::test]
async fn relock_releases_and_requeues_in_fifo_order() {
    let cs = shared_connect();
    let path = unique_path("relock");
    let a = connect(&cs, T).await;
    let b = connect(&cs, T).await;
    let ma = Mutex::new(&a, path.clone()).unwrap();
    let mb = Mutex::new(&b, path.clone()).unwrap();
    // Uncontended: relock gives a new node at once and leaves exactly one node.
    let mut guard = ma.lock().await.unwrap();
    for _ in 0..20 {
        let before = (guard.sequence(), guard.fencing_token());
        guard = ma.relock(guard).await.unwrap();
        assert!(guard.sequence() > before.0 && guard.fencing_token() > before.1);
        assert_eq!(children(&a, &path).await, [guard.node().rsplit('/').next().unwrap().to_owned()]);
    }
    // Contended: a waiter queued before the relock goes first.
    let waiter = tokio::spawn(async move {
        let g = mb.lock().await.unwrap();
        let seq = g.sequence();
        g.release().await.unwrap();
        seq
    });
    assert!(common::wait_until_async(Duration::from_secs(5), || async { children(&a, &path).await.len() == 2 }).await);
    let old = guard.sequence();
    let guard = ma.relock(guard).await.unwrap();
    let waiter_seq = waiter.await.unwrap();
    assert!(old < waiter_seq && waiter_seq < guard.sequence(), "{old} {waiter_seq} {}", guard.sequence());
    guard.release().await.unwrap();
    assert!(children(&a, &path).await.is_empty());
}

/// A holds the lock on `path`; B, then C, queue behind it; each its own session with `timeout`,
/// its mutex made by `make`.
struct ThreeInLine {
    a: zk::Client,
    b: zk::Client,
    _c: zk::Client,
    ga: zk_lock::MutexGuard,
    wb: tokio::task::JoinHandle<zk_lock::Result<zk_lock::MutexGuard>>,
    wc: tokio::task::JoinHandle<zk_lock::Result<zk_lock::MutexGuard>>,
}

async fn three_in_line(path: &str, timeout: Duration, make: impl Fn(&zk::Client) -> Mutex) -> ThreeInLine {
    let cs = shared_connect();
    let (a, b, c) = (connect(&cs, timeout).await, connect(&cs, timeout).await, connect(&cs, timeout).await);
    let ga = make(&a).lock().await.unwrap();
    let mb = make(&b);
    let wb = tokio::spawn(async move { mb.lock().await });
    assert!(common::wait_until_async(Duration::from_secs(5), || async { children(&a, path).await.len() == 2 }).await);
    let mc = make(&c);
    let wc = tokio::spawn(async move { mc.lock().await });
    assert!(common::wait_until_async(Duration::from_secs(5), || async { children(&a, path).await.len() == 3 }).await);
    ThreeInLine { a, b, _c: c, ga, wb, wc }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_handed_over_after_a_long_wait_starts_held() {
    // The waiter's session has nothing else going on while it waits longer than its timeout.
    let path = unique_path("long-wait");
    let ThreeInLine { ga, wb: waiter_b, wc: waiter_c, .. } =
        three_in_line(&path, Duration::from_secs(4), |client| Mutex::new(client, path.clone()).unwrap()).await;
    // B is granted by A's release, C by B's handoff after waiting 5 s on a 4 s session.
    ga.release().await.unwrap();
    let gb = waiter_b.await.unwrap().unwrap();
    assert_eq!(gb.state(), LockState::Held);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_ne!(gb.state(), LockState::Lost);
    gb.release().await.unwrap();
    let gc = waiter_c.await.unwrap().unwrap();
    assert_eq!(gc.state(), LockState::Held, "granted by handoff after a long wait");
    gc.release().await.expect("a lock that was held is released cleanly");
}

#[tokio::test]
async fn lock_nodes_are_writable_only_by_their_owner() {
    let cs = shared_connect();
    let path = unique_path("owner-only");
    let a = connect(&cs, T).await;
    let stranger = connect(&cs, T).await;
    let guard = Mutex::new(&a, path.clone()).unwrap().lock().await.unwrap();
    // A Curator revoker or `zkCli set` on our node would fake a handoff: refused, and so is
    // taking WRITE by changing the node's ACL.
    assert_eq!(stranger.set_data(guard.node(), b"__REVOKE__", None).await, Err(zk::Error::NoAuth));
    assert_eq!(stranger.set_acl(guard.node(), &zk::Acls::anyone_all(), None).await.map(drop), Err(zk::Error::NoAuth));
    // Reading it is fine (participants, Curator waiters).
    assert!(stranger.get_data(guard.node()).await.is_ok());
    guard.release().await.unwrap();

    // Clients that share credentials (one digest user for a whole fleet) cannot write each
    // other's lock nodes either: only the session's own identity can.
    let fleet = |cs: String| async move {
        zk::Client::connector().with_auth("digest", b"fleet:secret").connect(&cs).await.unwrap()
    };
    let (one, two) = (fleet(cs.clone()).await, fleet(cs.clone()).await);
    let guard = Mutex::new(&one, path.clone()).unwrap().lock().await.unwrap();
    assert_eq!(two.set_data(guard.node(), b"x", None).await, Err(zk::Error::NoAuth));
    guard.release().await.unwrap();
}

#[tokio::test]
async fn least_privilege_acls_still_hand_off_and_leave_nothing() {
    use zk::{Acl, AuthId, Permission};
    let cs = shared_connect();
    let path = unique_path("least-privilege");
    let acls = [Acl::new(Permission::READ | Permission::CREATE | Permission::DELETE, AuthId::anyone())];
    let ThreeInLine { a, ga, wb, wc, .. } = three_in_line(&path, T, |client| {
        Mutex::builder(client, path.clone()).acls(zk::Acls::new(&acls)).build().unwrap()
    })
    .await;
    ga.release().await.unwrap();
    let gb = wb.await.unwrap().unwrap();
    // B waited, so its release is a handoff: a data change before the delete. Watch it happen.
    let observer = connect(&cs, T).await;
    let (_, _, watcher) = observer.get_and_watch_data(gb.node()).await.unwrap();
    gb.release().await.unwrap();
    assert_eq!(watcher.changed().await.event_type, zk::EventType::NodeDataChanged);
    let gc = wc.await.unwrap().unwrap();
    gc.release().await.unwrap();
    assert!(children(&a, &path).await.is_empty());
}

#[tokio::test]
async fn releasing_a_node_someone_else_deleted_reports_the_loss() {
    let cs = shared_connect();
    let client = connect(&cs, Duration::from_secs(10)).await;
    let other = connect(&cs, T).await;
    let guard = Mutex::new(&client, unique_path("deleted-before-release")).unwrap().lock().await.unwrap();
    other.delete(guard.node(), None).await.unwrap();
    assert!(matches!(guard.release().await, Err(Error::LockLost { .. })));
}

#[tokio::test]
async fn lock_directories_are_containers_reaped_when_empty_and_recreated() {
    let client = connect(&shared_connect(), T).await;
    let root = unique_path("container");
    let dir = format!("{root}/locks/a");
    let mutex = Mutex::new(&client, dir.clone()).unwrap();
    let guard = mutex.lock().await.unwrap();
    let before = guard.fencing_token();
    guard.release().await.unwrap();
    // The harness's servers reap empty containers every 500 ms; parents go in later passes.
    let reaped = common::wait_until_async(Duration::from_secs(10), || async {
        client.check_stat(&root).await.unwrap().is_none()
    })
    .await;
    assert!(reaped, "the lock directory and its parents must be container nodes");
    // The next acquire recreates them; the token still grows.
    let guard = mutex.lock().await.unwrap();
    assert!(guard.fencing_token() > before);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn foreign_children_of_the_lock_directory_are_ignored() {
    let client = connect(&shared_connect(), T).await;
    let dir = unique_path("foreign");
    common::ensure_path(&client, &dir).await;
    let mutex = Mutex::new(&client, dir.clone()).unwrap();
    // Children that are not contenders, by name or by suffix, are ignored.
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    for name in ["config", "x-lock-12", "x-lock-00000000ab", "_c_junk"] {
        client.create(&format!("{dir}/{name}"), b"", &persistent).await.unwrap();
    }
    let guard = mutex.try_lock().await.expect("foreign children must not block");
    assert_eq!(mutex.participants().await.unwrap().len(), 1);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_refused_handoff_falls_back_to_a_plain_delete() {
    use zk::{Acl, AuthId, Permission};
    let path = unique_path("refused-handoff");
    let ThreeInLine { a, b, ga, wb, wc, .. } =
        three_in_line(&path, T, |client| Mutex::new(client, path.clone()).unwrap()).await;
    ga.release().await.unwrap();
    let gb = wb.await.unwrap().unwrap();
    // B's node loses WRITE for everyone, B included: its handoff's data change is refused.
    let read_only = [Acl::new(Permission::READ, AuthId::anyone())];
    b.set_acl(gb.node(), &read_only, None).await.unwrap();
    gb.release().await.expect("the release falls back to a plain delete");
    let gc = tokio::time::timeout(Duration::from_secs(5), wc).await.expect("C is granted").unwrap().unwrap();
    gc.release().await.unwrap();
    assert!(children(&a, &path).await.is_empty());
}

/// A waiter with two contenders ahead reports 2, then 1 (the refresh timer sees the holder go,
/// which does not wake it), then is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_reports_how_many_are_ahead() {
    let cs = shared_connect();
    let path = unique_path("progress");
    let (a, b, c) = (connect(&cs, T).await, connect(&cs, T).await, connect(&cs, T).await);
    let holder = Mutex::new(&a, &path).unwrap().lock().await.unwrap();
    let second = Mutex::new(&b, &path).unwrap();
    let second = tokio::spawn(async move { second.lock().await.unwrap() });
    common::wait_for_children(&a, &path, 2).await;
    let third = Mutex::new(&c, &path).unwrap();
    let (progress, mut position) = zk_lock::Progress::new();
    let progress = progress.refresh_every(Duration::from_millis(200));
    let waiter = tokio::spawn(async move { third.lock_with(None, &progress).await.unwrap() });
    async fn wait_for(rx: &mut tokio::sync::watch::Receiver<zk_lock::Position>, want: zk_lock::Position) {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|p| *p == want)).await.is_ok();
        assert!(got, "never reported {want:?}; last {:?}", *rx.borrow());
    }
    use zk_lock::Position::*;
    wait_for(&mut position, Waiting { ahead: 2 }).await;
    holder.release().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap();
    // The holder's release does not wake us (we wait for the second): the refresh sees it.
    wait_for(&mut position, Waiting { ahead: 1 }).await;
    assert!(!waiter.is_finished());
    second.release().await.unwrap();
    let guard = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert_eq!(*position.borrow(), Granted);
    guard.release().await.unwrap();
}
