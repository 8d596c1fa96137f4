//! Revocation against a real ZooKeeper server: a holder that opted in is asked to let go, by
//! zk-lock or by a Curator-style `__REVOKE__` write; other holders cannot be asked; a revocable
//! holder's node can be written without passing the lock on.

mod common;

use std::time::Duration;

use common::{children, connect, shared_connect, unique_path, wait_for_children};
use zk_lock::{Error, LockState, Mutex};

const T: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocable_holder_is_asked_to_let_go_and_does() {
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let path = unique_path("revoke");
    let make = |c: &zk_lock::zk::Client| Mutex::builder(c, path.clone()).revocable(true).build().unwrap();
    let (ma, mb) = (make(&a), make(&b));
    let guard = ma.lock().await.unwrap();
    assert!(!guard.is_revocation_requested());
    // The holder lets go when asked.
    let holder = tokio::spawn(async move {
        guard.revocation_requested().await;
        assert_eq!(guard.state(), LockState::Held, "a request is not a loss");
        guard.release().await.unwrap();
    });
    let waiter = tokio::spawn({
        let mb = mb.clone();
        async move { mb.lock().await.unwrap() }
    });
    wait_for_children(&a, &path, 2).await;
    let asked = mb.revoke_holder().await.unwrap().expect("someone holds");
    assert!(asked.starts_with(&path));
    tokio::time::timeout(Duration::from_secs(2), holder).await.expect("the holder was told").unwrap();
    let next = tokio::time::timeout(Duration::from_secs(2), waiter).await.expect("and let go").unwrap();
    next.release().await.unwrap();
    assert!(ma.revoke_holder().await.unwrap().is_none(), "nobody holds");
    assert!(children(&a, &path).await.is_empty());
}

#[tokio::test]
async fn a_curator_style_revoke_write_is_a_request_too() {
    let cs = shared_connect();
    let (a, plain) = (connect(&cs, T).await, connect(&cs, T).await);
    let mutex = Mutex::builder(&a, unique_path("revoke-curator")).revocable(true).build().unwrap();
    let guard = mutex.lock().await.unwrap();
    // What Curator's `Revoker.attemptRevoke` does: setData of the holder's node.
    plain.set_data(guard.node(), b"__REVOKE__", None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), guard.revocation_requested()).await.expect("told");
    assert!(guard.is_revocation_requested());
    assert!(zk_lock::revoke(&plain, guard.node()).await.unwrap(), "asking again is fine");
    let node = guard.node().to_owned();
    guard.release().await.unwrap();
    assert!(!zk_lock::revoke(&plain, &node).await.unwrap(), "a node that is gone");
}

#[tokio::test]
async fn a_holder_that_did_not_opt_in_cannot_be_asked() {
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let path = unique_path("revoke-refused");
    let guard = Mutex::new(&a, path.clone()).unwrap().lock().await.unwrap();
    let other = Mutex::new(&b, path.clone()).unwrap();
    assert!(matches!(other.revoke_holder().await, Err(Error::NotAuthorized { .. })));
    assert!(matches!(zk_lock::revoke(&b, guard.node()).await, Err(Error::NotAuthorized { .. })));
    assert!(matches!(zk_lock::revoke(&b, "relative").await, Err(Error::InvalidPath { .. })));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!guard.is_revocation_requested());
    assert_eq!(guard.state(), LockState::Held);
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_a_revocable_holders_node_passes_nothing_on() {
    let cs = shared_connect();
    let (a, b, stranger) = (connect(&cs, T).await, connect(&cs, T).await, connect(&cs, T).await);
    let path = unique_path("revoke-no-handoff");
    let make = |c: &zk_lock::zk::Client| Mutex::builder(c, path.clone()).revocable(true).build().unwrap();
    let (ma, mb) = (make(&a), make(&b));
    let guard = ma.lock().await.unwrap();
    let waiter = tokio::spawn(async move { mb.lock().await.unwrap() });
    wait_for_children(&a, &path, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Anyone may write a revocable node; a write that is no request changes nothing: the
    // waiter does not take it for a handoff, the holder neither for a loss nor for a request.
    stranger.set_data(guard.node(), b"", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "a write must not pass the lock on");
    assert_eq!(guard.state(), LockState::Held);
    assert!(!guard.is_revocation_requested());
    guard.release().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("granted by the delete").unwrap();
    next.release().await.unwrap();
    assert!(children(&a, &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_waiter_of_a_revocable_semaphore_stalls_nobody() {
    let server = common::ZkServer::start();
    let cs = server.connect_string();
    let clients = common::connect_many(&cs, 3, T).await;
    let path = "/revoke/sem";
    let sems: Vec<zk_lock::Semaphore> = clients
        .iter()
        .map(|c| zk_lock::Semaphore::builder(c, path).permits(1).revocable(true).build().unwrap())
        .collect();
    let a = sems[0].acquire().await.unwrap();
    let spawn = |s: &zk_lock::Semaphore| {
        let s = s.clone();
        tokio::spawn(async move { s.acquire().await.unwrap() })
    };
    let b = spawn(&sems[1]);
    wait_for_children(&clients[0], path, 2).await;
    let c = spawn(&sems[2]);
    wait_for_children(&clients[0], path, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Ask the waiting B to let go: C, which watches B, must not take that write for B's grant
    // over and over.
    let queue = sems[0].participants().await.unwrap();
    assert!(zk_lock::revoke(&clients[0], queue[1].node()).await.unwrap());
    let before = server.mntr().get("zk_packets_received").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = server.mntr().get("zk_packets_received").unwrap() - before;
    assert!(spent < 60, "{spent} requests in a second: the waiter behind a revoked node spins");
    // And the grant of B still wakes C.
    a.release().await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(3), b).await.expect("B granted").unwrap();
    tokio::time::timeout(Duration::from_secs(2), b.revocation_requested()).await.expect("the request waited for B");
    b.release().await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(3), c).await.expect("C granted").unwrap();
    c.release().await.unwrap();
}

/// A holder asked to let go that does not, and whose node someone then deletes, reads `Lost`
/// with the reason `Revoked`.
#[tokio::test]
async fn a_forced_revocation_reads_revoked() {
    let cs = shared_connect();
    let (a, plain) = (connect(&cs, T).await, connect(&cs, T).await);
    let path = unique_path("revoke-forced");
    let mutex = Mutex::builder(&a, &path).revocable(true).build().unwrap();
    let guard = mutex.lock().await.unwrap();
    assert!(zk_lock::revoke(&plain, guard.node()).await.unwrap());
    tokio::time::timeout(Duration::from_secs(2), guard.revocation_requested()).await.expect("told");
    plain.delete(guard.node(), None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), guard.lost()).await.expect("lost");
    assert_eq!(guard.lost_reason(), Some(zk_lock::LostReason::Revoked));
    assert!(matches!(guard.release().await, Err(Error::LockLost { .. })));
    assert!(children(&a, &path).await.is_empty());
}
