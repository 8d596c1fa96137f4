//! Leader election against a real ZooKeeper server: arrival order, resign hands over, a leader
//! whose session is force-expired knows before the next one leads, observers see each change once.

mod common;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{children, connect, shared_connect, unique_path, ProxyMode, TcpProxy, ZkServer};
use zk_lock::{LeaderElection, LockState, LostReason};

/// The longest the harness's servers grant: a leadership ends on a suspension, and a server
/// that stalls for half a short timeout (several servers starting at once on two cores) would
/// end it before the test looks.
const T: Duration = Duration::from_secs(10);

/// Every leader an observer reported (its node), with the time.
type Seen = Arc<StdMutex<Vec<(Instant, Option<String>)>>>;

fn record(election: &LeaderElection) -> Seen {
    let seen: Seen = Arc::default();
    let mut watch = election.observe();
    let out = seen.clone();
    tokio::spawn(async move {
        while let Ok(leader) = watch.changed().await {
            out.lock().unwrap().push((Instant::now(), leader.map(|l| l.node().to_owned())));
        }
    });
    seen
}

fn nodes(seen: &StdMutex<Vec<(Instant, Option<String>)>>) -> Vec<Option<String>> {
    seen.lock().unwrap().iter().map(|(_, n)| n.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_lead_in_arrival_order_and_resign_hands_over() {
    let cs = shared_connect();
    let path = unique_path("election");
    let (a, b, c, o) = (connect(&cs, T).await, connect(&cs, T).await, connect(&cs, T).await, connect(&cs, T).await);
    let observer = LeaderElection::new(&o, path.clone()).unwrap();
    assert!(observer.leader().await.unwrap().is_none(), "nobody leads yet");
    let seen = record(&observer);
    // The observer's first report (nobody leads) comes before anyone campaigns.
    assert!(common::wait_until(Duration::from_secs(5), || nodes(&seen) == [None]).await, "{:?}", nodes(&seen));
    let ea = LeaderElection::builder(&a, path.clone()).data("a").build().unwrap();
    let la = ea.campaign().await.unwrap();
    assert!(la.node().contains("-latch-"), "Curator's LeaderLatch layout: {}", la.node());
    let leader = observer.leader().await.unwrap().unwrap();
    assert_eq!((leader.node(), leader.data()), (la.node(), Some(&b"a"[..])));
    let eb = LeaderElection::new(&b, path.clone()).unwrap();
    let ec = LeaderElection::new(&c, path.clone()).unwrap();
    let wb = tokio::spawn(async move { eb.campaign().await.unwrap() });
    common::wait_until_async(Duration::from_secs(5), || async { children(&a, &path).await.len() == 2 }).await;
    let wc = tokio::spawn(async move { ec.campaign().await.unwrap() });
    common::wait_until_async(Duration::from_secs(5), || async { children(&a, &path).await.len() == 3 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!wb.is_finished() && !wc.is_finished(), "one leader at a time");
    // Each leader resigns once the observer has seen it: then every change is reported.
    let seen_lead = |node: String| {
        let seen = seen.clone();
        async move {
            let ok = common::wait_until(Duration::from_secs(5), || nodes(&seen).contains(&Some(node.clone()))).await;
            assert!(ok, "observer never saw {node}: {:?}", nodes(&seen));
        }
    };
    let first_epoch = la.fencing_token();
    let a_node = la.node().to_owned();
    seen_lead(a_node.clone()).await;
    la.resign().await.unwrap();
    let lb = tokio::time::timeout(Duration::from_secs(5), wb).await.expect("the next in line leads").unwrap();
    assert!(lb.fencing_token() > first_epoch, "epochs grow");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!wc.is_finished());
    let b_node = lb.node().to_owned();
    seen_lead(b_node.clone()).await;
    lb.resign().await.unwrap();
    let lc = tokio::time::timeout(Duration::from_secs(5), wc).await.expect("then the last").unwrap();
    let c_node = lc.node().to_owned();
    seen_lead(c_node.clone()).await;
    lc.resign().await.unwrap();
    let done = common::wait_until(Duration::from_secs(5), || nodes(&seen).len() == 5).await;
    assert!(done, "{:?}", nodes(&seen));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(nodes(&seen), [None, Some(a_node), Some(b_node), Some(c_node), None], "each change once, in order");
    assert!(children(&a, &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_expired_leader_knows_before_the_next_one_leads() {
    let server = ZkServer::start();
    let cs = server.connect_string();
    let path = "/election/expiry";
    // Long enough that a stalled server (several starting at once) does not end A's leadership
    // before the test expires it; short enough for the harness's forced expiry.
    let timeout = Duration::from_secs(6);
    let (a, b, o) = (connect(&cs, timeout).await, connect(&cs, timeout).await, connect(&cs, timeout).await);
    let observer = LeaderElection::new(&o, path).unwrap();
    let la = Arc::new(LeaderElection::new(&a, path).unwrap().campaign().await.unwrap());
    let seen = record(&observer);
    let eb = LeaderElection::new(&b, path).unwrap();
    // When B leads, it looks at A's leadership at once (`state()` reads the clock and the
    // session, so no task scheduling stands between the two).
    let old = Arc::downgrade(&la);
    let wb = tokio::spawn(async move {
        let lb = eb.campaign().await.unwrap();
        let old_state = old.upgrade().map(|la| la.state());
        (old_state, lb)
    });
    common::wait_until_async(Duration::from_secs(5), || async { children(&b, path).await.len() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(la.state(), LockState::Held);
    common::expire_session(&cs, &a).await;
    let (old_state, lb) =
        tokio::time::timeout(Duration::from_secs(10), wb).await.expect("the next in line leads").unwrap();
    // The server closed A's session under it: no timer can foresee that, but the server drops
    // A's connection as it does so, and a leadership ends on a suspension: A reads Lost by the
    // time B leads, and its reason says why.
    assert_eq!(old_state, Some(LockState::Lost), "A at B's grant");
    let reason = la.lost_reason();
    assert!(
        matches!(reason, Some(LostReason::ConnectionSuspended | LostReason::SessionExpired)),
        "A's reason: {reason:?}"
    );
    let done = common::wait_until(Duration::from_secs(5), || nodes(&seen).len() == 2).await;
    assert!(done, "{:?}", nodes(&seen));
    assert_eq!(nodes(&seen), [Some(la.node().to_owned()), Some(lb.node().to_owned())]);
    let la = Arc::into_inner(la).expect("only this test holds it");
    assert!(matches!(la.resign().await, Err(zk_lock::Error::LockLost { .. })));
    lb.resign().await.unwrap();
}

/// A short cut of the leader's connection ends its leadership at once (Curator's default
/// policy): `Lost` with `ConnectionSuspended` while cut, its node deleted once the connection is
/// back on the same session, and the next candidate leads. With `lose_on_suspend(false)` the
/// same cut only suspends it, and it leads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_cut_ends_leadership_unless_told_otherwise() {
    let server = ZkServer::start();
    let proxy = TcpProxy::start(server.addr());
    let timeout = T;
    for lose in [true, false] {
        let path = format!("/election/cut-{lose}");
        let (a, b) =
            (connect(&proxy.connect_string(), timeout).await, connect(&server.connect_string(), timeout).await);
        let la =
            LeaderElection::builder(&a, path.clone()).lose_on_suspend(lose).build().unwrap().campaign().await.unwrap();
        let eb = LeaderElection::new(&b, path.clone()).unwrap();
        let wb = tokio::spawn(async move { eb.campaign().await });
        common::wait_until_async(Duration::from_secs(5), || async { children(&b, &path).await.len() == 2 }).await;
        proxy.set_mode(ProxyMode::Refuse);
        let cut = Instant::now();
        let while_cut = if lose { LockState::Lost } else { LockState::Suspended };
        assert!(
            common::wait_until(Duration::from_secs(2), || la.state() == while_cut).await,
            "lose {lose}: {:?}",
            la.state()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!wb.is_finished(), "lose {lose}: nobody else may lead while A's node is there");
        proxy.set_mode(ProxyMode::Pass);
        if lose {
            assert_eq!(la.lost_reason(), Some(LostReason::ConnectionSuspended));
            let lb = tokio::time::timeout(Duration::from_secs(7), wb).await.expect("B leads").unwrap().unwrap();
            // Well within the session timeout: A deleted its node, the server did not expire it.
            assert!(cut.elapsed() < timeout * 3 / 4, "B led {:?} after the cut", cut.elapsed());
            assert_eq!(a.state(), zk_lock::zk::SessionState::SyncConnected, "the session outlived the cut");
            assert_eq!(children(&b, &path).await.len(), 1, "A's node is gone");
            assert!(matches!(la.resign().await, Err(zk_lock::Error::LockLost { .. })));
            lb.resign().await.unwrap();
            // Nothing held: the connection breaks and comes back while the session's monitor
            // idles. A leadership won afterwards is not taken for one in doubt.
            proxy.set_mode(ProxyMode::Refuse);
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.set_mode(ProxyMode::Pass);
            assert!(
                common::wait_until(Duration::from_secs(5), || a.state() == zk_lock::zk::SessionState::SyncConnected)
                    .await
            );
            let again = LeaderElection::new(&a, path.clone()).unwrap().campaign().await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(again.state(), LockState::Held, "{:?}", again.lost_reason());
            again.resign().await.unwrap();
        } else {
            assert!(common::wait_until(Duration::from_secs(7), || la.state() == LockState::Held).await);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!wb.is_finished(), "A still leads");
            la.resign().await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), wb)
                .await
                .expect("B leads")
                .unwrap()
                .unwrap()
                .resign()
                .await
                .unwrap();
        }
        assert!(children(&b, &path).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_candidate_leaves_no_node() {
    let cs = shared_connect();
    let path = unique_path("election-cancel");
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let leading = LeaderElection::new(&a, path.clone()).unwrap().campaign().await.unwrap();
    let eb = LeaderElection::new(&b, path.clone()).unwrap();
    for i in 0..20u64 {
        let _ = tokio::time::timeout(Duration::from_millis(i * 2), eb.campaign()).await;
    }
    assert!(matches!(
        eb.campaign_timeout(Duration::from_millis(100)).await.map(drop),
        Err(zk_lock::Error::Timeout { .. })
    ));
    let clean =
        common::wait_until_async(Duration::from_secs(5), || async { children(&a, &path).await.len() == 1 }).await;
    assert!(clean, "{:?}", children(&a, &path).await);
    leading.resign().await.unwrap();
    eb.campaign().await.unwrap().resign().await.unwrap();
    assert!(children(&a, &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_writes_its_own_node_stays_the_only_leader() {
    let cs = shared_connect();
    let path = unique_path("election-write");
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let la = LeaderElection::new(&a, path.clone()).unwrap().campaign().await.unwrap();
    let eb = LeaderElection::new(&b, path.clone()).unwrap();
    let wb = tokio::spawn(async move { eb.campaign().await.unwrap() });
    common::wait_until_async(Duration::from_secs(5), || async { children(&a, &path).await.len() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The leader publishes something in its own node, with its own session.
    a.set_data(la.node(), b"serving on :8080", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!wb.is_finished(), "a write to the leader's node must not elect the next candidate");
    assert_eq!(la.state(), LockState::Held, "nor cost the leader its leadership");
    la.resign().await.unwrap();
    let lb = tokio::time::timeout(Duration::from_secs(5), wb).await.expect("elected by the resign").unwrap();
    lb.resign().await.unwrap();
}
