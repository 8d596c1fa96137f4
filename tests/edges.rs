//! The mutex at its edges: ACLs, a directory that refuses deletes, requests the server would
//! refuse, long queues, zero deadlines, a loss while releasing, re-entered guards.

mod common;

use std::time::{Duration, Instant};

use common::{children, connect, shared_connect, unique_path, ProxyMode, TcpProxy, ZkServer};
use zk_lock::zk::{self, Acl, Acls, AuthId, CreateMode, Permission};
use zk_lock::{Error, LockState, Mutex};

const T: Duration = Duration::from_secs(4);

async fn with_digest(cs: &str, credentials: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(T)
        .with_auth("digest", credentials.as_bytes())
        .connect(cs)
        .await
        .unwrap()
}

/// ZooKeeper's digest id of `user:password`.
fn digest_id(user: &str, password: &str) -> String {
    use base64::Engine;
    let hash = sha1_smol::Sha1::from(format!("{user}:{password}")).digest().bytes();
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// `a` holds, `b` queues behind it and is granted on `a`'s release; returns `b`'s guard.
async fn take_turns(ma: &Mutex, mb: &Mutex) -> zk_lock::MutexGuard {
    let ga = ma.lock().await.expect("first contender");
    let mb = mb.clone();
    let waiter = tokio::spawn(async move { mb.lock().await });
    let dir = ma.path().as_str().to_owned();
    let queued = common::wait_until_async(Duration::from_secs(5), || async {
        ma.participants().await.map(|p| p.len() == 2).unwrap_or(false)
    })
    .await;
    assert!(queued, "second contender did not queue under {dir}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "the second contender must wait: {:?}", waiter.await);
    ga.release().await.expect("release of the first");
    tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("second granted").unwrap().expect("second lock")
}

/// What a party without rights can do to `node` (the holder's) in `dir`: nothing.
async fn stranger_can_do_nothing(stranger: &zk::Client, dir: &str, node: &str) {
    assert_eq!(stranger.set_data(node, b"", None).await, Err(zk::Error::NoAuth), "fake handoff");
    assert_eq!(stranger.set_data(node, b"__REVOKE__", None).await, Err(zk::Error::NoAuth));
    assert_eq!(stranger.delete(node, None).await, Err(zk::Error::NoAuth), "delete of the holder's node");
    assert_eq!(stranger.list_children(dir).await, Err(zk::Error::NoAuth));
    let mutex = Mutex::new(stranger, dir).unwrap();
    assert!(matches!(mutex.lock().await.map(drop), Err(Error::NotAuthorized { .. })));
    assert!(matches!(mutex.try_lock().await.map(drop), Err(Error::NotAuthorized { .. })));
}

#[tokio::test]
async fn shared_digest_credentials_take_turns_on_a_creator_all_lock() {
    let cs = shared_connect();
    let (one, two) = (with_digest(&cs, "fleet:secret").await, with_digest(&cs, "fleet:secret").await);
    let stranger = connect(&cs, T).await;
    let root = unique_path("creator-all");
    common::ensure_path(&one, &root).await;
    let dir = format!("{root}/lock");
    let make = |c: &zk::Client| Mutex::builder(c, dir.clone()).acls(Acls::creator_all()).build().unwrap();
    let (ma, mb) = (make(&one), make(&two));
    let gb = take_turns(&ma, &mb).await;
    // The fleet reads every node (participants), the stranger nothing.
    let p = ma.participants().await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].node(), gb.node());
    stranger_can_do_nothing(&stranger, &dir, gb.node()).await;
    // Sharing credentials is not owning: another fleet member cannot fake the handoff either.
    assert_eq!(one.set_data(gb.node(), b"", None).await, Err(zk::Error::NoAuth));
    gb.release().await.unwrap();
    assert!(children(&one, &dir).await.is_empty());
}

#[tokio::test]
async fn shared_digest_credentials_take_turns_on_explicit_digest_acls() {
    let cs = shared_connect();
    let (one, two) = (with_digest(&cs, "team:pw").await, with_digest(&cs, "team:pw").await);
    let stranger = connect(&cs, T).await;
    // Parents open to all, made first: those a lock makes get its ACLs, which would close
    // the shared test root to every other client.
    let root = unique_path("digest-acl");
    common::ensure_path(&one, &root).await;
    let dir = format!("{root}/lock");
    let acl = [Acl::new(Permission::ALL, AuthId::new("digest", &digest_id("team", "pw")))];
    let make = |c: &zk::Client| Mutex::builder(c, dir.clone()).acls(Acls::new(&acl)).build().unwrap();
    let (ma, mb) = (make(&one), make(&two));
    let gb = take_turns(&ma, &mb).await;
    stranger_can_do_nothing(&stranger, &dir, gb.node()).await;
    gb.release().await.unwrap();
    assert!(children(&one, &dir).await.is_empty());
}

/// What a client that never used the crate can do to `node` in `dir`: nothing.
async fn raw_client_can_do_nothing(raw: &zk::Client, dir: &str, node: &str) {
    assert_eq!(raw.get_data(node).await.map(drop), Err(zk::Error::NoAuth), "read of the holder's node");
    assert_eq!(raw.set_data(node, b"", None).await, Err(zk::Error::NoAuth), "fake handoff");
    assert_eq!(raw.delete(node, None).await, Err(zk::Error::NoAuth), "delete of the holder's node");
    assert_eq!(raw.list_children(dir).await, Err(zk::Error::NoAuth));
    let opts = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    assert_eq!(raw.create(&format!("{dir}/x-"), b"", &opts).await.map(drop), Err(zk::Error::NoAuth));
}

#[tokio::test]
async fn unauthenticated_sessions_take_turns_on_a_creator_all_lock() {
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    // Strangers: a session with other credentials that uses the crate, and one that never did.
    let (stranger, raw) = (with_digest(&cs, "other:pw").await, connect(&cs, T).await);
    let root = unique_path("creator-all-anon");
    common::ensure_path(&a, &root).await;
    let dir = format!("{root}/locks/a");
    let make = |c: &zk::Client| Mutex::builder(c, dir.clone()).acls(Acls::creator_all()).build().unwrap();
    let (ma, mb) = (make(&a), make(&b));
    let gb = take_turns(&ma, &mb).await;
    assert_eq!(ma.participants().await.unwrap()[0].node(), gb.node(), "a reads b's node");
    stranger_can_do_nothing(&stranger, &dir, gb.node()).await;
    raw_client_can_do_nothing(&raw, &dir, gb.node()).await;
    // Reading and following is not owning: a cannot fake b's handoff.
    assert_eq!(a.set_data(gb.node(), b"", None).await, Err(zk::Error::NoAuth));
    gb.release().await.unwrap();
    // And the other way round, on the directory b did not create.
    let ga = take_turns(&mb, &ma).await;
    ga.release().await.unwrap();
    assert!(children(&a, &dir).await.is_empty());
}

#[tokio::test]
async fn unauthenticated_sessions_take_turns_on_explicit_digest_acls() {
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let (stranger, raw) = (with_digest(&cs, "other:pw").await, connect(&cs, T).await);
    let team = with_digest(&cs, "team:pw").await;
    // Parents open to all, made first: those a lock makes get its ACLs, which would close
    // the shared test root to every other client.
    let root = unique_path("digest-acl-anon");
    common::ensure_path(&a, &root).await;
    let dir = format!("{root}/lock");
    let acl = [Acl::new(Permission::ALL, AuthId::new("digest", &digest_id("team", "pw")))];
    let make = |c: &zk::Client| Mutex::builder(c, dir.clone()).acls(Acls::new(&acl)).build().unwrap();
    let (ma, mb) = (make(&a), make(&b));
    let gb = take_turns(&ma, &mb).await;
    stranger_can_do_nothing(&stranger, &dir, gb.node()).await;
    raw_client_can_do_nothing(&raw, &dir, gb.node()).await;
    // The ACLs' own user keeps what they give it, except writing a node: reading it, and
    // deleting children of the directory.
    assert_eq!(team.get_data(gb.node()).await.map(|(d, _)| d), Ok(Vec::new()));
    assert_eq!(team.set_data(gb.node(), b"", None).await, Err(zk::Error::NoAuth), "fake handoff");
    assert_eq!(a.set_data(gb.node(), b"", None).await, Err(zk::Error::NoAuth), "fake handoff");
    gb.release().await.unwrap();
    // A team member takes part too, and a, without credentials, follows the team's node.
    let ga = take_turns(&make(&team), &ma).await;
    team.delete(ga.node(), None).await.expect("the team may delete children, as its ACL says");
    assert!(matches!(ga.release().await, Err(Error::LockLost { .. })));
    // And the team member follows b's node.
    let gt = take_turns(&mb, &make(&team)).await;
    gt.release().await.unwrap();
    assert!(children(&team, &dir).await.is_empty());
}

const CHILD_LOCK: &str = "ZK_LOCK_TEST_CHILD_LOCK";

/// Two credential-less sessions of this process hold a `creator_all` lock; a credential-less
/// contender in another process (this test binary again, run as a child) with the same ACLs
/// has an identity of its own and is refused with `NotAuthorized`, writing nothing.
#[tokio::test]
async fn another_process_without_credentials_is_refused_a_creator_all_lock() {
    if let Ok(dir) = std::env::var(CHILD_LOCK) {
        // The child's part.
        let c = connect(&shared_connect(), T).await;
        let mutex = Mutex::builder(&c, dir).acls(Acls::creator_all()).build().unwrap();
        let result = mutex.try_lock().await.map(drop);
        println!(
            "CHILD-RESULT: {}",
            if matches!(result, Err(Error::NotAuthorized { .. })) { "refused" } else { "other" }
        );
        return;
    }
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    // Parents open to all, made first: those a lock makes get its ACLs, which would close
    // the shared test root to every other client.
    let root = unique_path("creator-all-other-process");
    common::ensure_path(&a, &root).await;
    let dir = format!("{root}/lock");
    let make = |c: &zk::Client| Mutex::builder(c, dir.clone()).acls(Acls::creator_all()).build().unwrap();
    let (ma, mb) = (make(&a), make(&b));
    let held = ma.lock().await.unwrap(); // keeps the directory from being reaped
    let before = a.get_children(&dir).await.unwrap().1;
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["another_process_without_credentials_is_refused_a_creator_all_lock", "--exact", "--nocapture"])
        .env(CHILD_LOCK, &dir)
        .env("ZOOKEEPER_CONNECT", &cs)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child).await.expect("child finished").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CHILD-RESULT: refused"), "{stdout}");
    let after = a.get_children(&dir).await.unwrap().1;
    assert_eq!((after.cversion, after.pzxid), (before.cversion, before.pzxid), "the child wrote nothing");
    let waiter = tokio::spawn(async move { mb.lock().await });
    held.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap().release().await.unwrap();
    assert!(children(&a, &dir).await.is_empty());
}

#[tokio::test]
async fn a_directory_that_refuses_deletes_is_detected_before_creating() {
    let cs = shared_connect();
    let a = connect(&cs, T).await;
    let dir = format!("{}/lock", unique_path("no-delete"));
    common::ensure_path(&a, dir.rsplit_once('/').unwrap().0).await;
    let no_delete = [Acl::new(Permission::READ | Permission::CREATE, AuthId::anyone())];
    a.create(&dir, b"", &CreateMode::Persistent.with_acls(Acls::new(&no_delete))).await.unwrap();
    let mutex = Mutex::new(&a, dir.clone()).unwrap();
    for result in [mutex.lock().await.map(drop), mutex.try_lock().await.map(drop)] {
        match result {
            Err(Error::NotAuthorized { path }) => assert_eq!(path, dir),
            other => panic!("expected NotAuthorized, got {other:?}"),
        }
    }
    assert!(children(&a, &dir).await.is_empty(), "no node may be created that cannot be deleted");
    // Nor with ACLs of our own that would create such a directory, on a session with
    // credentials or without (this process's own identity gets no more than the ACLs give).
    let c = with_digest(&cs, "someone:pw").await;
    for session in [&a, &c] {
        let fresh = format!("{}/lock", unique_path("no-delete-own"));
        let mutex = Mutex::builder(session, fresh.clone()).acls(Acls::new(&no_delete)).build().unwrap();
        assert!(matches!(mutex.lock().await.map(drop), Err(Error::NotAuthorized { .. })));
        assert!(children(&a, &fresh).await.is_empty());
    }
}

#[tokio::test]
async fn a_delete_refused_at_release_goes_on_in_the_background() {
    let cs = shared_connect();
    let a = connect(&cs, Duration::from_secs(10)).await;
    let admin = connect(&cs, T).await;
    let dir = unique_path("delete-revoked");
    common::ensure_path(&admin, &dir).await;
    let mutex = Mutex::new(&a, dir.clone()).unwrap();
    let guard = mutex.lock().await.unwrap();
    // The operator takes DELETE away while we hold the lock.
    let no_delete =
        [Acl::new(Permission::READ | Permission::WRITE | Permission::CREATE | Permission::ADMIN, AuthId::anyone())];
    admin.set_acl(&dir, &no_delete, None).await.unwrap();
    match guard.release().await {
        Err(Error::NotAuthorized { .. }) => {}
        other => panic!("expected NotAuthorized, got {other:?}"),
    }
    // The next acquire on the same handle does not queue behind its own orphan: it checks its
    // rights again first and writes nothing.
    for result in [mutex.lock_timeout(Duration::from_secs(2)).await.map(drop), mutex.try_lock().await.map(drop)] {
        assert!(matches!(result, Err(Error::NotAuthorized { .. })), "{result:?}");
    }
    assert_eq!(children(&admin, &dir).await.len(), 1, "only the refused node: nothing new");
    // The node is not abandoned: once DELETE is given back, it goes, and the lock is free.
    tokio::time::sleep(Duration::from_millis(500)).await;
    admin.set_acl(&dir, &Acls::anyone_all(), None).await.unwrap();
    let gone =
        common::wait_until_async(Duration::from_secs(5), || async { children(&admin, &dir).await.is_empty() }).await;
    assert!(gone, "the refused node must still be deleted: {:?}", children(&admin, &dir).await);
    let again = mutex.try_lock().await.expect("not queued behind our own orphan");
    again.release().await.unwrap();

    // The same with a dropped guard and an acquire sent before the refusal is back: the new
    // contender, queued behind our orphan, gives up with NotAuthorized instead of waiting for
    // our own session to end.
    let guard = mutex.lock().await.unwrap();
    admin.set_acl(&dir, &no_delete, None).await.unwrap();
    drop(guard);
    let started = std::time::Instant::now();
    match mutex.lock_timeout(Duration::from_secs(3)).await.map(drop) {
        Err(Error::NotAuthorized { .. }) => {}
        other => panic!("expected NotAuthorized, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "gave up at once: {:?}", started.elapsed());
    assert!(children(&admin, &dir).await.len() <= 2);
    admin.set_acl(&dir, &Acls::anyone_all(), None).await.unwrap();
    let gone =
        common::wait_until_async(Duration::from_secs(5), || async { children(&admin, &dir).await.is_empty() }).await;
    assert!(gone, "every refused node is deleted once DELETE is back: {:?}", children(&admin, &dir).await);
    mutex.try_lock().await.expect("free again").release().await.unwrap();
}

#[tokio::test]
async fn oversized_requests_are_refused_at_build_time() {
    let cs = shared_connect();
    let a = connect(&cs, T).await;
    let dir = unique_path("too-large");
    let started = Instant::now();
    for size in [1024 * 1024, 1024 * 1024 - 100] {
        match Mutex::builder(&a, dir.clone()).data(vec![b'x'; size]).build() {
            Err(Error::TooLarge { .. }) => {}
            other => panic!("{size} bytes of data: expected TooLarge, got {:?}", other.map(drop)),
        }
    }
    let long = format!("/{}", "p".repeat(1024 * 1024));
    assert!(matches!(Mutex::new(&a, long).map(drop), Err(Error::TooLarge { .. })));
    // The limit is the server's `jute.maxbuffer` (1 MiB by default) unless told otherwise.
    let small = Mutex::builder(&a, dir.clone()).max_request_size(4096).data(vec![b'x'; 8192]).build();
    assert!(matches!(small.map(drop), Err(Error::TooLarge { .. })));
    assert!(Mutex::builder(&a, dir.clone()).data(vec![b'x'; 512 * 1024]).build().is_ok());
    assert!(started.elapsed() < Duration::from_millis(100), "refused at once: {:?}", started.elapsed());
    assert!(!common::exists(&a, &dir).await, "nothing may be written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_server_drops_fails_within_the_documented_bound() {
    let server = ZkServer::start();
    let timeout = Duration::from_secs(2);
    let a = connect(&server.connect_string(), timeout).await;
    // Told the server takes more than it does: the create makes it drop the connection, every time.
    let mutex =
        Mutex::builder(&a, "/dropped/lock").max_request_size(4 << 20).data(vec![b'x'; 2 << 20]).build().unwrap();
    let started = Instant::now();
    let result = mutex.lock().await.map(drop);
    let took = started.elapsed();
    assert!(matches!(result, Err(Error::ConnectionLoss { .. })), "{result:?}");
    // Bound: twice the session timeout of retries, plus the round trips.
    assert!(took < 2 * timeout + Duration::from_secs(3), "retried for {took:?}");
    assert!(children(&a, "/dropped/lock").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_answers_for_five_thousand_contenders() {
    let server = ZkServer::start();
    let cs = server.connect_string();
    // Paths of about 250 bytes: one multi-read of all 5,000 would be over a megabyte.
    let dir = &format!("/long-queue/{}/lock", "q".repeat(180));
    let owners = [connect(&cs, Duration::from_secs(10)).await, connect(&cs, Duration::from_secs(10)).await];
    common::ensure_path(&owners[0], dir).await;
    let data = vec![b'd'; 300];
    let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    for batch in 0..50 {
        let client = &owners[batch % 2];
        let prefixes: Vec<String> =
            (0..100).map(|i| format!("{dir}/_c_{:08x}-0000-4000-8000-{:012x}-lock-", batch, i)).collect();
        let creates: Vec<_> = prefixes.iter().map(|prefix| client.create(prefix, &data, &options)).collect();
        for c in creates {
            c.await.unwrap();
        }
    }
    let mutex = Mutex::new(&owners[0], dir).unwrap();
    let started = Instant::now();
    let p = tokio::time::timeout(Duration::from_secs(30), mutex.participants())
        .await
        .expect("participants() must answer in seconds")
        .unwrap();
    assert_eq!(p.len(), 5000);
    assert!(p.windows(2).all(|w| w[0].sequence() < w[1].sequence()));
    eprintln!("participants() of 5000 took {:?}", started.elapsed());
}

#[tokio::test]
async fn participants_of_long_paths_are_read_in_chunks_that_fit() {
    let cs = shared_connect();
    let client = connect(&cs, T).await;
    // 100 nodes with paths of 12 KB: one multi-read of a hundred would be over a megabyte.
    let dir = format!("{}/{}", unique_path("long-paths"), "p".repeat(12_000));
    let mutex = Mutex::new(&client, dir.clone()).unwrap();
    let guard = mutex.lock().await.unwrap();
    common::ensure_path(&client, &dir).await;
    let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let prefixes: Vec<String> = (0..99).map(|i| format!("{dir}/_c_00000000-0000-4000-8000-{i:012x}-lock-")).collect();
    let creates: Vec<_> = prefixes.iter().map(|prefix| client.create(prefix, b"", &options)).collect();
    for c in creates {
        c.await.unwrap();
    }
    let p = tokio::time::timeout(Duration::from_secs(10), mutex.participants()).await.expect("in seconds").unwrap();
    assert_eq!(p.len(), 100);
    assert_eq!(p[0].node(), guard.node());
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_zero_deadline_takes_a_free_lock_and_never_waits() {
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let path = unique_path("zero-deadline");
    let (ma, mb) = (Mutex::new(&a, path.clone()).unwrap(), Mutex::new(&b, path.clone()).unwrap());
    for deadline in [Duration::ZERO, Duration::from_nanos(1)] {
        let guard = ma.lock_timeout(deadline).await.expect("a free lock is taken whatever the deadline");
        let started = Instant::now();
        match mb.lock_timeout(deadline).await {
            Err(Error::Timeout { .. }) => {}
            other => panic!("expected Timeout, got {:?}", other.map(drop)),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(children(&a, &path).await.len(), 1, "the timed-out contender leaves no node");
        guard.release().await.unwrap();
    }
    // No deadline is too far.
    ma.lock_timeout(Duration::MAX).await.expect("no overflow").release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_while_releasing_is_reported_before_the_next_grant() {
    let server = ZkServer::start();
    let proxy = TcpProxy::start(server.addr());
    let timeout = Duration::from_secs(2);
    let holder = connect(&proxy.connect_string(), timeout).await;
    let other = connect(&server.connect_string(), timeout).await;
    let guard = Mutex::new(&holder, "/release-lost/lock").unwrap().lock().await.unwrap();
    let mut states = guard.state_watcher();
    let seen = tokio::spawn(async move {
        let mut seen = vec![*states.borrow_and_update()];
        while states.changed().await.is_ok() {
            let s = *states.borrow_and_update();
            seen.push(s);
            if s == LockState::Lost {
                return (seen, Instant::now());
            }
        }
        (seen, Instant::now())
    });
    let next = Mutex::new(&other, "/release-lost/lock").unwrap();
    let waiter = tokio::spawn(async move {
        let g = next.lock().await.unwrap();
        (Instant::now(), g)
    });
    common::wait_until_async(Duration::from_secs(5), || async {
        children(&other, "/release-lost/lock").await.len() == 2
    })
    .await;
    // The connection dies with the release's delete in flight.
    proxy.set_mode(ProxyMode::Blackhole);
    let release = tokio::spawn(guard.release());
    let (granted_at, next_guard) = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    let (seen, lost_at) = tokio::time::timeout(Duration::from_secs(5), seen).await.expect("Lost must be seen").unwrap();
    assert_eq!(seen.last(), Some(&LockState::Lost), "states seen: {seen:?}");
    assert!(lost_at < granted_at, "Lost must come before the next grant");
    proxy.set_mode(ProxyMode::Pass);
    let released = tokio::time::timeout(Duration::from_secs(10), release).await.unwrap().unwrap();
    assert!(matches!(released, Err(Error::LockLost { .. })), "{released:?}");
    next_guard.release().await.unwrap();
}

#[tokio::test]
async fn releasing_a_reentered_guard_after_a_loss_reports_it() {
    let cs = shared_connect();
    let a = connect(&cs, Duration::from_secs(10)).await;
    let other = connect(&cs, T).await;
    let guard = Mutex::new(&a, unique_path("reenter-lost")).unwrap().lock().await.unwrap();
    let inner = guard.reenter();
    other.delete(guard.node(), None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), guard.lost()).await.expect("loss seen");
    assert!(matches!(inner.release().await, Err(Error::LockLost { .. })), "a re-entered release must report the loss");
    assert!(matches!(guard.release().await, Err(Error::LockLost { .. })));
}

#[tokio::test]
async fn errors_carry_their_context() {
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    let root = unique_path("errors");
    let path = format!("{root}/lock");
    // An empty ACL list is refused when building, with a typed error.
    match Mutex::builder(&a, path.clone()).acls(Acls::new(&[])).build().map(drop) {
        Err(Error::InvalidAcl { path: p, reason }) => {
            assert_eq!((p.as_str(), reason), (path.as_str(), "the acl list is empty"))
        }
        other => panic!("expected InvalidAcl, got {other:?}"),
    }
    let ma = Mutex::new(&a, path.clone()).unwrap();
    let guard = ma.lock().await.unwrap();
    // A timeout names the lock and the deadline.
    let mb = Mutex::new(&b, path.clone()).unwrap();
    match mb.lock_timeout(Duration::from_millis(50)).await.map(drop) {
        Err(Error::Timeout { path: p, after }) => assert_eq!((p, after), (path.clone(), Duration::from_millis(50))),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // A fenced write names the failing operation: its index and path.
    common::ensure_path(&a, &format!("{root}/data")).await;
    let mut w = guard.fenced();
    w.set_data(&format!("{root}/data"), b"v", None).unwrap();
    w.set_data(&format!("{root}/missing"), b"v", None).unwrap();
    match w.commit().await {
        Err(Error::OperationFailed { index, path: p, source }) => {
            assert_eq!((index, p, source), (1, format!("{root}/missing"), zk::Error::NoNode))
        }
        other => panic!("expected OperationFailed, got {other:?}"),
    }
    assert_eq!(a.get_data(&format!("{root}/data")).await.unwrap().0, b"", "nothing of it applied");
    // A sequential create names its parent with a trailing '/': fine, unless it is the lock's own.
    let mut w = guard.fenced();
    let sequential = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
    w.create(&format!("{root}/data/"), b"job", &sequential).unwrap();
    w.commit().await.expect("a fenced sequential create");
    assert_eq!(children(&a, &format!("{root}/data")).await.len(), 1);
    let mut w = guard.fenced();
    assert!(matches!(w.create(&format!("{path}/"), b"", &sequential), Err(Error::InvalidPath { .. })));
    // A relative path in a fenced write is an invalid path, as for a lock.
    let mut w = guard.fenced();
    assert!(matches!(w.set_data("relative/x", b"", None), Err(Error::InvalidPath { .. })));
    assert!(matches!(w.check_version("relative/x", 0), Err(Error::InvalidPath { .. })));
    assert!(matches!(w.delete("/a//b", None), Err(Error::InvalidPath { .. })));
    // The participant's session is the client's session id type.
    let p = ma.participants().await.unwrap();
    assert_eq!(p[0].session_id(), a.session_id());
    guard.release().await.unwrap();
}
