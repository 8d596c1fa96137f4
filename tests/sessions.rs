//! Locks that outlive a ZooKeeper session: the self-healing `Session`, its connection states,
//! acquires across an expiry, and the errors of bad session options.

mod common;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{children, connect, expire_session, ProxyMode, TcpProxy, ZkServer};
use zk_lock::zk::{Client, SessionId};
use zk_lock::{ConnectionState, Error, LeaderElection, LockGuard, LockState, LostReason, Mutex, Session};

const TIMEOUT: Duration = Duration::from_secs(2);

async fn session(connect: &str) -> Session {
    Session::builder(connect).session_timeout(TIMEOUT).reconnect_attempts(100).connect().await.expect("session")
}

/// The owners of every node under `path`.
async fn owners(client: &Client, path: &str) -> Vec<SessionId> {
    let mut out = Vec::new();
    for child in children(client, path).await {
        if let Ok(Some(stat)) = client.check_stat(&format!("{path}/{child}")).await {
            out.push(SessionId(stat.ephemeral_owner));
        }
    }
    out
}

/// Records every state a guard goes through.
fn follow(guard: &LockGuard) -> Arc<StdMutex<Vec<LockState>>> {
    let seen = Arc::new(StdMutex::new(vec![guard.state()]));
    let mut rx = guard.state_watcher();
    let out = seen.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            out.lock().unwrap().push(*rx.borrow_and_update());
        }
    });
    seen
}

struct Hold {
    guard: LockGuard,
    session: SessionId,
    at: Instant,
    states: Arc<StdMutex<Vec<LockState>>>,
}

/// A worker that takes the lock, keeps it until it is lost, and takes it again, forever;
/// every hold is kept (not dropped) so that its state can be checked afterwards.
type Holds = Arc<StdMutex<Vec<Hold>>>;

fn worker(mutex: Mutex) -> (Holds, tokio::task::JoinHandle<Result<(), Error>>) {
    let holds = Arc::new(StdMutex::new(Vec::<Hold>::new()));
    let out = holds.clone();
    let task = tokio::spawn(async move {
        for _ in 0..20 {
            let guard = match mutex.lock().await {
                Ok(guard) => guard,
                Err(e) => {
                    // Said where the test looks: the next hold never comes.
                    eprintln!("the worker's lock() failed: {e}");
                    return Err(e);
                }
            };
            let session = guard.session_id();
            let states = follow(&guard);
            let mut rx = guard.state_watcher();
            out.lock().unwrap().push(Hold { guard, session, at: Instant::now(), states });
            while *rx.borrow_and_update() != LockState::Lost {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    });
    (holds, task)
}

async fn wait_for_holds(holds: &Arc<StdMutex<Vec<Hold>>>, n: usize, within: Duration) -> Instant {
    let ok = common::wait_until(within, || holds.lock().unwrap().len() >= n).await;
    assert!(ok, "hold {n} not granted within {within:?} (see the worker's error above, if any)");
    holds.lock().unwrap()[n - 1].at
}

/// A worker on a `Session` survives three forced expiries in a row and a cut of twice the
/// session timeout: each time it is granted again within session timeout + 3 s, on a new
/// session; old holds read `Lost` (and never `Held` again), and no node of an old session stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_survives_expiries_and_a_long_cut() {
    common::init_tracing();
    let server = ZkServer::start();
    let proxy = TcpProxy::start(server.addr());
    let session = session(&proxy.connect_string()).await;
    let observer = connect(&server.connect_string(), Duration::from_secs(10)).await;
    let path = common::unique_path("heal");
    let mutex = Mutex::new(&session, &path).unwrap();
    let (holds, task) = worker(mutex);
    wait_for_holds(&holds, 1, Duration::from_secs(5)).await;
    let bound = TIMEOUT + Duration::from_secs(3);

    for round in 1..=3 {
        let client = session.client().expect("a current session");
        let old = client.session_id();
        expire_session(&server.connect_string(), &client).await;
        let expired = Instant::now();
        drop(client);
        let at = wait_for_holds(&holds, round + 1, bound + Duration::from_secs(2)).await;
        assert!(at.duration_since(expired) <= bound, "round {round}: granted again after {:?}", at - expired);
        let holds = holds.lock().unwrap();
        assert_ne!(holds[round].session, old, "round {round}: the new hold is on the old session");
        assert_eq!(holds[round - 1].guard.state(), LockState::Lost, "round {round}: the old hold");
        assert_eq!(holds[round - 1].guard.lost_reason(), Some(LostReason::SessionExpired));
    }

    // A cut of twice the session timeout: the server expires the session meanwhile.
    let old = session.client().expect("a current session").session_id();
    proxy.set_mode(ProxyMode::Refuse);
    tokio::time::sleep(TIMEOUT * 2).await;
    proxy.set_mode(ProxyMode::Pass);
    let healed = Instant::now();
    let at = wait_for_holds(&holds, 5, bound + Duration::from_secs(2)).await;
    assert!(at.duration_since(healed) <= bound, "after the cut: granted again after {:?}", at - healed);

    let current = {
        let holds = holds.lock().unwrap();
        assert_ne!(holds[4].session, old);
        for (i, hold) in holds.iter().enumerate().take(4) {
            assert_eq!(hold.guard.state(), LockState::Lost, "hold {i}");
            let states = hold.states.lock().unwrap();
            let lost = states.iter().position(|s| *s == LockState::Lost).expect("seen lost");
            assert!(states[lost..].iter().all(|s| *s == LockState::Lost), "hold {i} left Lost: {states:?}");
        }
        let sessions: std::collections::HashSet<i64> = holds.iter().map(|h| h.session.0).collect();
        assert_eq!(sessions.len(), 5, "five holds on five sessions");
        assert_eq!(holds[4].guard.state(), LockState::Held);
        holds[4].session
    };
    // The old sessions' nodes are gone (the server deleted them with their sessions).
    let only_current =
        common::wait_until_async(Duration::from_secs(5), || async { owners(&observer, &path).await == vec![current] })
            .await;
    assert!(only_current, "nodes left: {:?} (current {current})", owners(&observer, &path).await);
    task.abort();
    let _ = task.await;
    let holds = std::mem::take(&mut *holds.lock().unwrap());
    for hold in holds {
        let _ = hold.guard.release().await;
    }
    assert!(children(&observer, &path).await.is_empty());
}

/// Collects connection states until `last` arrives, then for `quiet` more.
async fn collect_until(
    states: &mut zk_lock::ConnectionStates,
    last: ConnectionState,
    within: Duration,
    quiet: Duration,
) -> Vec<ConnectionState> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(state)) = tokio::time::timeout_at(deadline, states.next()).await {
        seen.push(state);
        if state == last {
            break;
        }
    }
    while let Ok(Some(state)) = tokio::time::timeout(quiet, states.next()).await {
        seen.push(state);
    }
    seen
}

/// One forced expiry reads, exactly: (`Suspended`, if the connection dropped first) `Lost`,
/// `NewSession`, `Connected`; a short cut reads `Suspended`, `Reconnected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_states_are_reported_once_in_order() {
    use ConnectionState::*;
    common::init_tracing();
    let server = ZkServer::start();
    let proxy = TcpProxy::start(server.addr());
    let session = session(&proxy.connect_string()).await;
    assert_eq!(session.state(), Connected);
    let mut states = session.state_changes();

    // The harness takes the session over on a raw connection and closes it there. The server
    // then drops our connection; the client would reconnect at once and take the session back
    // before the close (a genuine Suspended, Reconnected of its own), so the proxy refuses new
    // connections meanwhile, as in tests/faults.rs.
    let client = session.client().unwrap();
    let old = client.session_id();
    proxy.set_mode(ProxyMode::RefuseNew);
    let mut closed = false;
    for _ in 0..5 {
        closed = common::expire_session_nowait(&server.connect_string(), &client).await;
        if closed {
            break;
        }
    }
    assert!(closed, "the harness could not close the session");
    proxy.set_mode(ProxyMode::Pass);
    drop(client);
    let seen = collect_until(&mut states, Connected, Duration::from_secs(10), Duration::from_secs(1)).await;
    // The connection dropped first (Suspended), then the client learnt the session is over.
    assert_eq!(seen, [Suspended, Lost, NewSession, Connected]);
    assert_ne!(session.client().unwrap().session_id(), old);

    let id = session.client().unwrap().session_id();
    proxy.set_mode(ProxyMode::Refuse);
    tokio::time::sleep(TIMEOUT / 4).await;
    proxy.set_mode(ProxyMode::Pass);
    let seen = collect_until(&mut states, Reconnected, Duration::from_secs(10), Duration::from_secs(1)).await;
    assert_eq!(seen, [Suspended, Reconnected]);
    assert_eq!(session.client().unwrap().session_id(), id, "a short cut keeps the session");
    assert_eq!(session.state(), Reconnected);
}

/// An acquire waiting when the session expires queues again on the new session (the default),
/// or returns `SessionExpired` (by option); either way no node is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_acquire_across_an_expiry() {
    common::init_tracing();
    let server = ZkServer::start();
    let holder = connect(&server.connect_string(), Duration::from_secs(10)).await;
    for requeue in [true, false] {
        let path = common::unique_path("wait-expiry");
        let held = Mutex::new(&holder, &path).unwrap().lock().await.unwrap();
        let session = session(&server.connect_string()).await;
        let mutex = Mutex::builder(&session, &path).requeue_on_expiry(requeue).build().unwrap();
        let waiter = tokio::spawn(async move { mutex.lock().await });
        common::wait_for_children(&holder, &path, 2).await;
        let client = session.client().unwrap();
        let old = client.session_id();
        expire_session(&server.connect_string(), &client).await;
        drop(client);
        if requeue {
            // Queued again, on the new session, behind the holder.
            let requeued = common::wait_until_async(Duration::from_secs(10), || async {
                let owners = owners(&holder, &path).await;
                owners.len() == 2 && !owners.contains(&old)
            })
            .await;
            assert!(requeued, "not queued again: {:?}", owners(&holder, &path).await);
            assert!(!waiter.is_finished());
            held.release().await.unwrap();
            let guard = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
            assert_ne!(guard.session_id(), old);
            assert_eq!(guard.state(), LockState::Held);
            guard.release().await.unwrap();
        } else {
            let got = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
            assert_eq!(got.unwrap_err(), Error::SessionExpired);
            // A new acquire simply works on the new session.
            let mutex = Mutex::builder(&session, &path).requeue_on_expiry(false).build().unwrap();
            held.release().await.unwrap();
            let guard = mutex.lock().await.unwrap();
            assert_ne!(guard.session_id(), old);
            guard.release().await.unwrap();
        }
        let empty =
            common::wait_until_async(Duration::from_secs(5), || async { children(&holder, &path).await.is_empty() })
                .await;
        assert!(empty, "left: {:?}", children(&holder, &path).await);
    }
}

/// Every recipe takes the session the same way; a waiting campaign campaigns again on the new
/// session, and a semaphore, a read/write lock and a multi-lock work on it after an expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_recipe_goes_on_after_an_expiry() {
    common::init_tracing();
    let server = ZkServer::start();
    let other = connect(&server.connect_string(), Duration::from_secs(10)).await;
    let session = session(&server.connect_string()).await;
    let base = common::unique_path("recipes");

    let leader = LeaderElection::new(&other, format!("{base}/election")).unwrap().campaign().await.unwrap();
    let election = LeaderElection::new(&session, format!("{base}/election")).unwrap();
    let mut observer = election.observe();
    assert_eq!(observer.changed().await.unwrap().map(|p| p.node().to_owned()), Some(leader.node().to_owned()));
    let campaign = tokio::spawn(async move { election.campaign().await });
    common::wait_for_children(&other, &format!("{base}/election"), 2).await;

    let client = session.client().unwrap();
    let old = client.session_id();
    expire_session(&server.connect_string(), &client).await;
    drop(client);
    let requeued = common::wait_until_async(Duration::from_secs(10), || async {
        let owners = owners(&other, &format!("{base}/election")).await;
        owners.len() == 2 && !owners.contains(&old)
    })
    .await;
    assert!(requeued, "the campaign did not queue again");
    leader.resign().await.unwrap();
    let leadership = tokio::time::timeout(Duration::from_secs(5), campaign).await.unwrap().unwrap().unwrap();
    assert_eq!(leadership.state(), LockState::Held);
    // The observer follows the election across the expiry.
    let next = tokio::time::timeout(Duration::from_secs(5), observer.changed()).await.unwrap().unwrap();
    assert_eq!(next.map(|p| p.node().to_owned()), Some(leadership.node().to_owned()));
    leadership.resign().await.unwrap();

    let semaphore = zk_lock::Semaphore::new(&session, format!("{base}/semaphore"), 2).unwrap();
    let rw = zk_lock::RwLock::new(&session, format!("{base}/rw")).unwrap();
    let mutex = Mutex::new(&session, format!("{base}/mutex")).unwrap();
    let multi = zk_lock::MultiLock::new(vec![
        Box::new(mutex.clone()) as Box<dyn zk_lock::Lock>,
        Box::new(rw.write_lock().clone()),
        Box::new(semaphore.clone()),
    ])
    .unwrap();
    let all = multi.acquire().await.unwrap();
    let id = session.client().unwrap().session_id();
    let client = session.client().unwrap();
    expire_session(&server.connect_string(), &client).await;
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), all.lost()).await.expect("the multi-guard is lost");
    assert_eq!(all.lost_reason(), Some(LostReason::SessionExpired));
    let _ = all.release().await;
    let again = tokio::time::timeout(Duration::from_secs(10), multi.acquire()).await.unwrap().unwrap();
    assert_eq!(again.state(), LockState::Held);
    assert_ne!(session.client().unwrap().session_id(), id);
    let reading = rw.try_read().await;
    assert!(matches!(reading, Err(Error::WouldBlock { .. })), "{reading:?}");
    again.release().await.unwrap();
    let read = rw.read().await.unwrap();
    let permit = semaphore.acquire().await.unwrap();
    read.release().await.unwrap();
    permit.release().await.unwrap();
    for dir in ["election", "semaphore", "rw", "mutex"] {
        assert!(children(&other, &format!("{base}/{dir}")).await.is_empty(), "{dir} not empty");
    }
}

/// Bad session options are typed errors, found before anything is sent.
#[tokio::test]
async fn bad_session_options_are_refused_before_connecting() {
    let started = Instant::now();
    for bad in
        ["", "   ", "localhost:0", "localhost:http", "a:1,,b:2", "ftp://a:1", "a:1/chroot/", "[::1", "tcp+tls://a:1"]
    {
        let got = Session::connect(bad).await;
        assert!(matches!(got, Err(Error::InvalidConnectString { .. })), "{bad:?}: {got:?}");
    }
    let zero = Session::builder("127.0.0.1:2181").session_timeout(Duration::ZERO).connect().await;
    assert_eq!(zero.unwrap_err(), Error::InvalidSessionTimeout);
    let scheme = Session::builder("127.0.0.1:2181").auth("kerberos", "x").connect().await;
    assert!(matches!(scheme, Err(Error::InvalidAuth { .. })), "{scheme:?}");
    let digest = Session::builder("127.0.0.1:2181").auth("digest", "no-colon").connect().await;
    assert!(matches!(digest, Err(Error::InvalidAuth { .. })), "{digest:?}");
    assert!(started.elapsed() < Duration::from_millis(200), "took {:?}", started.elapsed());
}

/// An unreachable server is a typed error after the allowed attempts; a digest session works
/// and its credentials are applied again to every new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_servers_and_credentials() {
    let port = common::process::free_ports(1)[0];
    let started = Instant::now();
    let got = Session::builder(format!("127.0.0.1:{port}")).reconnect_attempts(3).connect().await;
    assert!(matches!(got, Err(Error::Connect { attempts: 3, .. })), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    let server = ZkServer::start();
    let session = Session::builder(server.connect_string())
        .session_timeout(TIMEOUT)
        .auth("digest", "app:secret")
        .connect()
        .await
        .unwrap();
    let path = common::unique_path("digest");
    let acls = zk_lock::zk::Acls::creator_all();
    let mutex = Mutex::builder(&session, &path).acls(acls).build().unwrap();
    mutex.lock().await.unwrap().release().await.unwrap();
    let client = session.client().unwrap();
    expire_session(&server.connect_string(), &client).await;
    drop(client);
    // The new session has the credentials again: the creator_all directory lets it in.
    let guard = tokio::time::timeout(Duration::from_secs(10), mutex.lock()).await.unwrap().unwrap();
    guard.release().await.unwrap();
    let stranger = connect(&server.connect_string(), Duration::from_secs(10)).await;
    let denied = Mutex::new(&stranger, &path).unwrap().lock().await;
    assert!(matches!(denied, Err(Error::NotAuthorized { .. })), "{denied:?}");
}

/// A chroot given as an option (or in the connect string) puts every lock under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chroot_puts_the_locks_under_it() {
    let cs = common::shared_connect();
    let plain = connect(&cs, Duration::from_secs(10)).await;
    let root = common::unique_path("chroot");
    common::ensure_path(&plain, &root).await;
    for session in [
        Session::builder(&cs).chroot(&root).connect().await.unwrap(),
        Session::connect(format!("{cs}{root}")).await.unwrap(),
    ] {
        let mutex = Mutex::new(&session, "/jobs").unwrap();
        let guard = mutex.lock().await.unwrap();
        assert_eq!(children(&plain, &format!("{root}/jobs")).await.len(), 1);
        assert!(guard.node().starts_with("/jobs/"), "{}", guard.node());
        guard.release().await.unwrap();
    }
    let both = Session::builder(format!("{cs}{root}")).chroot(&root).connect().await;
    assert!(matches!(both, Err(Error::InvalidConnectString { .. })), "{both:?}");
}

/// A `lock()` without a deadline waits through a cut of four session timeouts (the session is
/// replaced, reconnecting takes several attempts) and is granted after it; a `relock` and a
/// multi-lock waiting across an expiry are granted on the new session, every member held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waits_go_on_through_long_cuts_relocks_and_multi_locks() {
    common::init_tracing();
    let server = ZkServer::start();
    let proxy = TcpProxy::start(server.addr());
    let other = connect(&server.connect_string(), Duration::from_secs(10)).await;
    let session = session(&proxy.connect_string()).await;
    let path = common::unique_path("long-cut");
    let held = Mutex::new(&other, &path).unwrap().lock().await.unwrap();
    let mutex = Mutex::new(&session, &path).unwrap();
    let waiting = {
        let mutex = mutex.clone();
        tokio::spawn(async move { mutex.lock().await })
    };
    common::wait_for_children(&other, &path, 2).await;
    proxy.set_mode(ProxyMode::Refuse);
    tokio::time::sleep(TIMEOUT * 4).await;
    assert!(!waiting.is_finished(), "gave up during the cut: {:?}", waiting.await);
    proxy.set_mode(ProxyMode::Pass);
    let requeued =
        common::wait_until_async(Duration::from_secs(10), || async { owners(&other, &path).await.len() == 2 });
    assert!(requeued.await, "not queued again: {:?}", owners(&other, &path).await);
    held.release().await.unwrap();
    let guard = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(guard.state(), LockState::Held);

    // relock: released, queued behind the other, then the session expires under it.
    let other_mutex = Mutex::new(&other, &path).unwrap();
    let other_waits = tokio::spawn(async move { other_mutex.lock().await.unwrap() });
    common::wait_for_children(&other, &path, 2).await;
    let relocking = {
        let mutex = mutex.clone();
        tokio::spawn(async move { mutex.relock(guard).await })
    };
    let other_holds = tokio::time::timeout(Duration::from_secs(5), other_waits).await.unwrap().unwrap();
    common::wait_for_children(&other, &path, 2).await;
    let client = session.client().unwrap();
    let old = client.session_id();
    expire_session(&server.connect_string(), &client).await;
    drop(client);
    let requeued = common::wait_until_async(Duration::from_secs(10), || async {
        let owners = owners(&other, &path).await;
        owners.len() == 2 && !owners.contains(&old)
    });
    assert!(requeued.await, "the relock did not queue again: {:?}", owners(&other, &path).await);
    other_holds.release().await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(5), relocking).await.unwrap().unwrap().unwrap();
    assert_eq!(again.state(), LockState::Held);
    assert_ne!(again.session_id(), old);
    again.release().await.unwrap();

    // A multi-lock holding its first member and waiting for its second when the session ends.
    let (first, second) = (common::unique_path("multi-a"), common::unique_path("multi-b"));
    let blocker = Mutex::new(&other, &second).unwrap().lock().await.unwrap();
    let multi = zk_lock::MultiLock::new(vec![
        Box::new(Mutex::new(&session, &first).unwrap()) as Box<dyn zk_lock::Lock>,
        Box::new(Mutex::new(&session, &second).unwrap()),
    ])
    .unwrap();
    let taking = tokio::spawn(async move { multi.acquire().await });
    common::wait_for_children(&other, &second, 2).await;
    let client = session.client().unwrap();
    let old = client.session_id();
    expire_session(&server.connect_string(), &client).await;
    drop(client);
    let requeued = common::wait_until_async(Duration::from_secs(10), || async {
        let owners = owners(&other, &second).await;
        owners.len() == 2 && !owners.contains(&old)
    });
    assert!(requeued.await, "the multi-lock did not queue again");
    blocker.release().await.unwrap();
    let all = tokio::time::timeout(Duration::from_secs(10), taking).await.unwrap().unwrap().unwrap();
    assert!(all.guards().iter().all(|g| g.state() == LockState::Held && g.session_id() != old), "{all:?}");
    all.release().await.unwrap();
    for p in [&path, &first, &second] {
        assert!(children(&other, p).await.is_empty(), "{p} not empty");
    }
}

/// A mutex built with `lose_on_suspend(true)`: a short cut ends the hold at once
/// (`ConnectionSuspended`), its node is deleted as soon as the connection is back, on the same
/// session, and the waiter behind it is granted then, well before any expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_ends_on_suspension_lets_the_next_in_after_a_short_cut() {
    let server = ZkServer::start();
    let proxy = TcpProxy::start(server.addr());
    let timeout = Duration::from_secs(10); // a server stall of half of it must not end the hold
    let (a, b) = (connect(&proxy.connect_string(), timeout).await, connect(&server.connect_string(), timeout).await);
    let path = common::unique_path("strict");
    let guard = Mutex::builder(&a, path.clone()).lose_on_suspend(true).build().unwrap().lock().await.unwrap();
    let mb = Mutex::new(&b, path.clone()).unwrap();
    let waiter = tokio::spawn(async move { mb.lock().await });
    assert!(common::wait_until_async(Duration::from_secs(5), || async { children(&b, &path).await.len() == 2 }).await);
    proxy.set_mode(ProxyMode::Refuse);
    let cut = Instant::now();
    assert!(common::wait_until(Duration::from_secs(2), || guard.state() == LockState::Lost).await);
    assert_eq!(guard.lost_reason(), Some(LostReason::ConnectionSuspended));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the node is still there while cut");
    proxy.set_mode(ProxyMode::Pass);
    let next = tokio::time::timeout(Duration::from_secs(7), waiter).await.expect("granted").unwrap().unwrap();
    assert!(cut.elapsed() < timeout * 3 / 4, "granted {:?} after the cut", cut.elapsed());
    assert_eq!(a.state(), zk_lock::zk::SessionState::SyncConnected, "the session outlived the cut");
    assert!(matches!(guard.release().await, Err(Error::LockLost { .. })));
    next.release().await.unwrap();
    assert!(children(&b, &path).await.is_empty());
}
