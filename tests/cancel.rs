//! Cancelling `lock()` anywhere leaves nothing behind and stalls nobody.

mod common;

use std::time::{Duration, Instant};

use common::{children, connect, shared_connect, unique_path, Rng};
use zk_lock::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cancelled_locks_leave_no_node_and_stall_nobody() {
    let cs = shared_connect();
    let path = unique_path("cancel");
    let a = connect(&cs, Duration::from_secs(4)).await;
    let b = connect(&cs, Duration::from_secs(4)).await;
    let ma = Mutex::new(&a, path.clone()).unwrap();
    let mb = Mutex::new(&b, path.clone()).unwrap();
    let mut rng = Rng::new("CANCEL_SEED");
    let mut granted = 0;
    let mut cancelled = 0;
    for i in 0..200 {
        // Every other round the lock is held by someone else, so the cancel hits a queued waiter.
        let holder = if i % 2 == 0 { Some(mb.lock().await.unwrap()) } else { None };
        let deadline = Duration::from_micros(rng.below(4000));
        if rng.below(2) == 0 {
            match tokio::time::timeout(deadline, ma.lock()).await {
                Ok(guard) => {
                    granted += 1;
                    guard.unwrap().release().await.unwrap();
                }
                Err(_) => cancelled += 1,
            }
        } else {
            // Abort a spawned acquire at a random point, including while it waits.
            let m = ma.clone();
            let task = tokio::spawn(async move { m.lock().await.map(drop) });
            tokio::time::sleep(deadline).await;
            task.abort();
            match task.await {
                Err(e) if e.is_cancelled() => cancelled += 1,
                Ok(result) => {
                    result.unwrap();
                    granted += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        if let Some(holder) = holder {
            holder.release().await.unwrap();
        }
    }
    eprintln!("granted {granted}, cancelled {cancelled}");
    assert!(cancelled >= 50, "the test must really cancel: {cancelled} cancelled");
    let clean =
        common::wait_until_async(Duration::from_secs(10), || async { children(&a, &path).await.is_empty() }).await;
    assert!(clean, "nodes left behind: {:?}", children(&a, &path).await);
    // Nobody stalls afterwards: both contenders take the lock at once.
    let started = Instant::now();
    mb.lock_timeout(Duration::from_secs(5)).await.unwrap().release().await.unwrap();
    ma.lock_timeout(Duration::from_secs(5)).await.unwrap().release().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn cancelled_try_lock_and_timeouts_leave_nothing() {
    let cs = shared_connect();
    let path = unique_path("cancel-try");
    let client = connect(&cs, Duration::from_secs(4)).await;
    let mutex = Mutex::new(&client, path.clone()).unwrap();
    // How long a whole try_lock takes here; the deadlines sweep from 0 to twice that, so that
    // cancels land before, between and after its requests.
    mutex.try_lock().await.unwrap().release().await.unwrap(); // first use: directory, identity
    let started = Instant::now();
    mutex.try_lock().await.unwrap().release().await.unwrap();
    let whole = started.elapsed();
    let (mut completed, mut cancelled) = (0, 0);
    for i in 0..40u32 {
        match tokio::time::timeout(whole * i / 20, mutex.try_lock()).await {
            Ok(Ok(guard)) => {
                completed += 1;
                drop(guard); // deleted in the background
            }
            Ok(Err(e)) => panic!("try_lock on a free lock: {e}"),
            Err(_) => cancelled += 1,
        }
        // Let a dropped guard's or cancelled attempt's background delete finish first.
        let empty =
            common::wait_until_async(Duration::from_secs(5), || async { children(&client, &path).await.is_empty() });
        assert!(empty.await, "nodes left behind: {:?}", children(&client, &path).await);
    }
    eprintln!("try_lock takes {whole:?}: {completed} completed, {cancelled} cancelled");
    assert!(cancelled > 0 && completed > 0, "the sweep must both cancel and complete");
    let clean =
        common::wait_until_async(Duration::from_secs(10), || async { children(&client, &path).await.is_empty() }).await;
    assert!(clean, "nodes left behind: {:?}", children(&client, &path).await);
}
