//! Leases: a maximum hold time that frees the lock even when the holder is stuck.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{children, connect, shared_connect};
use zk_lock::{Error, LockState, LostReason, Mutex, Semaphore};

/// A holder that sleeps past its 2 s lease: `lost()` fires with the lease reason within 100 ms
/// of the lease end, the next waiter is granted within 1 s of it, and the node is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_holder_loses_its_lease_and_the_next_waiter_gets_the_lock() {
    let client = connect(&shared_connect(), Duration::from_secs(10)).await;
    let path = common::unique_path("lease");
    let lease = Duration::from_secs(2);
    let mutex = Mutex::builder(&client, &path).data("holder").lease(lease).build().unwrap();
    let before = SystemTime::now();
    let guard = mutex.lock().await.unwrap();
    let granted = Instant::now();
    // The lease end is in the node's data, for anyone to see; the holder's data is intact.
    // (Written just after the grant, in the background.)
    let recorded = common::wait_until_async(Duration::from_secs(2), || async {
        mutex.participants().await.unwrap()[0].lease_until().is_some()
    });
    assert!(recorded.await, "the lease end is never recorded");
    let holder = &mutex.participants().await.unwrap()[0];
    assert_eq!(holder.data(), Some(&b"holder"[..]));
    let until = holder.lease_until().expect("lease end recorded");
    let expect = before + lease;
    assert!(until >= expect && until <= expect + Duration::from_secs(1), "{until:?} vs {expect:?}");

    let waiter_client = connect(&shared_connect(), Duration::from_secs(10)).await;
    let waiter = Mutex::new(&waiter_client, &path).unwrap();
    let next = tokio::spawn(async move {
        let g = waiter.lock().await.unwrap();
        (Instant::now(), g)
    });
    common::wait_for_children(&client, &path, 2).await;
    // The holder is "stuck": it does nothing but wait to be told.
    guard.lost().await;
    let lost_at = Instant::now();
    let end = granted + lease;
    assert!(lost_at >= end - Duration::from_millis(5), "lost {:?} before the lease end", end - lost_at);
    assert!(lost_at <= end + Duration::from_millis(100), "lost {:?} after the lease end", lost_at - end);
    assert_eq!(guard.state(), LockState::Lost);
    assert_eq!(guard.lost_reason(), Some(LostReason::LeaseExpired));
    let (next_at, next_guard) = tokio::time::timeout(Duration::from_secs(3), next).await.unwrap().unwrap();
    assert!(next_at <= end + Duration::from_secs(1), "next granted {:?} after the lease end", next_at - end);
    assert!(next_guard.fencing_token() > guard.fencing_token());
    assert!(!common::exists(&client, guard.node()).await, "the holder's node is gone");
    // The late holder's release says it had lost the lock, and removes nothing of the next.
    assert!(matches!(guard.release().await, Err(Error::LockLost { .. })));
    assert_eq!(next_guard.state(), LockState::Held);
    next_guard.release().await.unwrap();
    assert!(children(&client, &path).await.is_empty());
}

/// `extend` keeps the lock past the first lease end and records the new end; bad leases are
/// typed errors that write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extend_keeps_the_lock_and_bad_leases_are_refused() {
    let client = connect(&shared_connect(), Duration::from_secs(10)).await;
    let path = common::unique_path("lease-extend");
    for bad in [Duration::ZERO, Duration::MAX] {
        let refused = Mutex::builder(&client, &path).lease(bad).build();
        assert!(matches!(refused, Err(Error::InvalidLease { .. })), "{refused:?}");
    }

    let mutex = Mutex::builder(&client, &path).lease(Duration::from_millis(800)).build().unwrap();
    let guard = mutex.lock().await.unwrap();
    let recorded = common::wait_until_async(Duration::from_secs(2), || async {
        mutex.participants().await.unwrap()[0].lease_until().is_some()
    });
    assert!(recorded.await);
    let first = mutex.participants().await.unwrap()[0].lease_until().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    guard.extend(Duration::from_secs(2)).await.unwrap();
    let second = mutex.participants().await.unwrap()[0].lease_until().unwrap();
    assert!(second >= first + Duration::from_millis(1000), "{second:?} vs {first:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(guard.state(), LockState::Held, "extended past the first end");
    assert!(matches!(guard.extend(Duration::ZERO).await, Err(Error::InvalidLease { .. })));
    assert!(matches!(guard.extend(Duration::MAX).await, Err(Error::InvalidLease { .. })));
    guard.release().await.unwrap();

    let plain = Mutex::new(&client, &path).unwrap().lock().await.unwrap();
    let refused = plain.extend(Duration::from_secs(1)).await;
    assert!(matches!(refused, Err(Error::InvalidLease { .. })), "{refused:?}");
    assert!(mutex.participants().await.unwrap()[0].lease_until().is_none(), "nothing written");
    plain.release().await.unwrap();
    assert!(children(&client, &path).await.is_empty());
}

/// Every recipe's guard has the lease: a semaphore permit held past its lease passes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_semaphore_permit_lease_runs_out_too() {
    let client = connect(&shared_connect(), Duration::from_secs(10)).await;
    let path = common::unique_path("lease-sem");
    let sem = Semaphore::builder(&client, &path).permits(1).lease(Duration::from_millis(500)).build().unwrap();
    let permit = sem.acquire().await.unwrap();
    let other = Semaphore::builder(&client, &path).permits(1).build().unwrap();
    let next = tokio::time::timeout(Duration::from_secs(3), other.acquire()).await.unwrap().unwrap();
    assert_eq!(permit.lost_reason(), Some(LostReason::LeaseExpired));
    next.release().await.unwrap();
    let _ = permit.release().await;
    assert!(children(&client, &path).await.is_empty());
}
