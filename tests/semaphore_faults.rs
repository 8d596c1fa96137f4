//! The semaphore under orderings that only slow answers and dropped connections produce: no
//! wake-up is lost, a retried touch is not taken for a foreign write, a directory made again with
//! another count is noticed.

mod common;

use std::time::{Duration, Instant};

use common::{children, connect, DelayProxy, ZkServer};
use zk_lock::{LockState, Semaphore};

const S: Duration = Duration::from_secs(10);

async fn wait_nodes(c: &zk_lock::zk::Client, path: &str, n: usize) {
    assert!(
        common::wait_until_async(Duration::from_secs(10), || async { children(c, path).await.len() == n }).await,
        "{:?}",
        children(c, path).await
    );
}

/// A fresh server; two sessions holding both permits of a 2-permit semaphore on `path`; one
/// more session direct and one through a [`DelayProxy`] (no delay yet).
struct TwoHolders {
    server: ZkServer,
    proxy: DelayProxy,
    h2: zk_lock::zk::Client,
    direct: zk_lock::zk::Client,
    delayed: zk_lock::zk::Client,
    g1: zk_lock::LockGuard,
    g2: zk_lock::LockGuard,
    _h1: zk_lock::zk::Client,
}

async fn two_holders(path: &str) -> TwoHolders {
    let server = ZkServer::start();
    let cs = server.connect_string();
    let (h1, h2, direct) = (connect(&cs, S).await, connect(&cs, S).await, connect(&cs, S).await);
    let proxy = DelayProxy::start(server.addr(), Duration::ZERO).await;
    let delayed = connect(&proxy.addr.to_string(), S).await;
    let g1 = sem(&h1, path).acquire().await.unwrap();
    let g2 = sem(&h2, path).acquire().await.unwrap();
    TwoHolders { server, proxy, h2, direct, delayed, g1, g2, _h1: h1 }
}

fn sem(c: &zk_lock::zk::Client, path: &str) -> Semaphore {
    Semaphore::new(c, path, 2).unwrap()
}

/// The grant's touch lands between the successor's listing and its `get_and_watch_data`: the
/// successor must see that the node was written already, not wait for a change to come.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_touch_before_the_successors_watch_still_wakes_it() {
    let path = "/r/a";
    let TwoHolders { server: _server, proxy, h2, direct: p, delayed: w, g1, g2, .. } = two_holders(path).await;
    let h1 = h2.clone();
    proxy.set_delay(Duration::from_millis(800));
    let sem = |c: &zk_lock::zk::Client| sem(c, path);
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
    let ps = sem(&p);
    tokio::spawn(async move { ptx.send(ps.acquire().await.unwrap()).unwrap() });
    wait_nodes(&h1, path, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (wtx, mut wrx) = tokio::sync::mpsc::unbounded_channel();
    let ws = sem(&w);
    tokio::spawn(async move { wtx.send(ws.acquire().await.unwrap()).unwrap() });
    wait_nodes(&h1, path, 4).await;
    g1.release().await.unwrap();
    let pg = tokio::time::timeout(Duration::from_secs(2), prx.recv()).await.expect("P granted").unwrap();
    let touched = common::wait_until_async(Duration::from_secs(2), || async {
        h2.get_data(pg.node()).await.map(|(_, s)| s.version).unwrap_or(0) == 1
    })
    .await;
    assert!(touched, "P touched");
    tokio::time::sleep(Duration::from_millis(2000)).await; // W now has its stale listing and watch
    g2.release().await.unwrap();
    let t = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(5), wrx.recv()).await;
    eprintln!("W granted after a free permit: {:?} after {:?}", got.is_ok(), t.elapsed());
    let ok = got.is_ok();
    pg.release().await.unwrap();
    if !ok {
        let wg = tokio::time::timeout(Duration::from_secs(5), wrx.recv()).await;
        eprintln!("W granted only after P's release: {}", wg.is_ok());
    }
    assert!(ok, "a permit was free for 5 s while W waited (lost wakeup)");
}

/// P is granted on its first listing while W, whose listing came first, watches P as a waiter:
/// P must wake W all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_contender_granted_at_once_wakes_the_one_watching_it() {
    let path = "/r/b";
    let TwoHolders { server: _server, proxy, h2, direct: w, delayed: p, g1, g2, .. } = two_holders(path).await;
    let h1 = h2.clone();
    let sem = |c: &zk_lock::zk::Client| sem(c, path);
    let ps = sem(&p);
    // P's rights check done beforehand (its first acquire costs one more round trip).
    ps.try_acquire().await.map(drop).unwrap_err();
    proxy.set_delay(Duration::from_millis(3000));
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { ptx.send(ps.acquire().await.unwrap()).unwrap() });
    wait_nodes(&h1, path, 3).await;
    let (wtx, mut wrx) = tokio::sync::mpsc::unbounded_channel();
    let ws = sem(&w);
    tokio::spawn(async move { wtx.send(ws.acquire().await.unwrap()).unwrap() });
    wait_nodes(&h1, path, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // W watches P
    g1.release().await.unwrap();
    proxy.set_delay(Duration::ZERO);
    proxy.kill(); // P's create answer is lost: it finds its node and lists afresh
    let pg = tokio::time::timeout(Duration::from_secs(8), prx.recv()).await.expect("P granted").unwrap();
    eprintln!("P granted, its node version {:?}", h2.get_data(pg.node()).await.map(|(_, s)| s.version));
    tokio::time::sleep(Duration::from_millis(300)).await;
    g2.release().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), wrx.recv()).await;
    let ok = got.is_ok();
    pg.release().await.unwrap();
    assert!(ok, "a permit was free for 5 s while W waited (lost wakeup)");
}

/// The touch's answer is lost and it is sent again: it must not write twice, or the holder's
/// self-watch takes the second write for someone else's and declares the permit lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_touch_is_not_taken_for_a_foreign_write() {
    let path = "/r/c";
    let TwoHolders { server: _server, proxy, h2, direct: w, delayed: p, g1, g2, .. } = two_holders(path).await;
    let h1 = h2.clone();
    let sem = |c: &zk_lock::zk::Client| sem(c, path);
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
    let ps = sem(&p);
    tokio::spawn(async move { ptx.send(ps.acquire().await.unwrap()).unwrap() });
    wait_nodes(&h1, path, 3).await;
    let (wtx, mut wrx) = tokio::sync::mpsc::unbounded_channel();
    let ws = sem(&w);
    tokio::spawn(async move { wtx.send(ws.acquire().await.unwrap()).unwrap() });
    wait_nodes(&h1, path, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kids = children(&h1, path).await;
    let mut sorted = kids.clone();
    sorted.sort_by_key(|k| k[k.len() - 10..].to_owned());
    let pnode = format!("{path}/{}", sorted[2]);
    proxy.set_delay(Duration::from_millis(1000));
    g1.release().await.unwrap();
    let touched = common::wait_until_async(Duration::from_secs(8), || async {
        h2.get_data(&pnode).await.map(|(_, s)| s.version).unwrap_or(0) >= 1
    })
    .await;
    assert!(touched);
    proxy.set_delay(Duration::ZERO);
    proxy.kill();
    let pg = tokio::time::timeout(Duration::from_secs(8), prx.recv()).await.expect("P granted").unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let v = h2.get_data(&pnode).await.map(|(_, s)| s.version);
    eprintln!("P's node version now {v:?}, P's state {:?}", pg.state());
    let state = pg.state();
    drop(pg);
    drop(g2);
    let _ = tokio::time::timeout(Duration::from_secs(5), wrx.recv()).await;
    assert_ne!(state, LockState::Lost, "the holder lost its permit to its own retried touch (version {v:?})");
}

/// The directory reaped and made again by a client with another count: a handle that checked
/// the old one notices, withdraws and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_made_again_with_another_count_is_noticed() {
    let server = ZkServer::start();
    let (a, b) = (connect(&server.connect_string(), S).await, connect(&server.connect_string(), S).await);
    let three = Semaphore::new(&a, "/r/d", 3).unwrap();
    three.acquire().await.unwrap().release().await.unwrap();
    a.delete("/r/d", None).await.unwrap(); // what the container reaper does
    let four = Semaphore::new(&b, "/r/d", 4).unwrap();
    let held = four.acquire().await.unwrap();
    assert_eq!(a.get_data("/r/d").await.unwrap().0, b"4");
    let r = three.acquire().await.map(drop);
    drop(held);
    assert!(matches!(r, Err(zk_lock::Error::PermitMismatch { .. })), "got {r:?}");
}
