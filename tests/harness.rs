//! Proves the test harness in `tests/common` against real ZooKeeper servers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zookeeper_client::{Acls, Client, CreateMode, SessionState};

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

/// Retries `create` on connection-ish errors for up to `timeout` (an ensemble in failover).
async fn create_with_retry(client: &Client, path: &str, data: &[u8], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(3), client.create(path, data, &persistent())).await {
            Ok(Ok(_)) | Ok(Err(zookeeper_client::Error::NodeExists)) => return,
            Ok(Err(e @ zookeeper_client::Error::NoNode)) => panic!("create {path}: {e}"),
            // connection loss, raw transport errors, ...: outcome unknown, retry
            Ok(Err(e)) => last = Some(format!("{e}")),
            Err(_) => last = Some("timeout".into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("create {path} did not succeed within {timeout:?}: {last:?}");
}

/// 1. A standalone server answers four-letter words and serves a client.
#[tokio::test(flavor = "multi_thread")]
async fn standalone_server_serves_clients_and_four_letter_words() {
    let t = Instant::now();
    let server = ZkServer::start();
    eprintln!("standalone started in {:?} (pid {})", t.elapsed(), server.pid());
    assert_eq!(server.four_letter("ruok"), "imok");
    assert!(server.srvr().contains("Mode: standalone"), "srvr: {}", server.srvr());
    assert_eq!(server.connect_string(), format!("127.0.0.1:{}", server.addr().port()));

    let client = connect(&server.connect_string(), Duration::from_secs(4)).await;
    client.create("/harness", b"hello", &persistent()).await.unwrap();
    let (data, _) = client.get_data("/harness").await.unwrap();
    assert_eq!(data, b"hello");

    let mntr = server.mntr();
    assert!(mntr.get("zk_packets_received").unwrap() > 0, "mntr: {mntr:?}");
    assert_eq!(mntr.get_str("zk_server_state"), Some("standalone"));
    assert!(server.dump().contains(&format!("0x{:x}", client.session_id().0)));
}

/// 2. The shared server works and unique paths isolate tests.
#[tokio::test]
async fn shared_server_and_unique_paths_isolate() {
    let cs = shared_connect();
    assert_eq!(cs, shared_connect(), "one shared server per test binary");
    let client = connect(&cs, Duration::from_secs(4)).await;
    let (a, b) = (unique_path("iso"), unique_path("iso"));
    assert_ne!(a, b);
    assert!(a.starts_with("/zk-lock-test/iso-"), "{a}");
    ensure_path(&client, &a).await;
    ensure_path(&client, &b).await;
    client.create(&format!("{a}/only-a"), b"", &persistent()).await.unwrap();
    assert_eq!(children(&client, &a).await, vec!["only-a".to_string()]);
    assert!(children(&client, &b).await.is_empty());
    assert!(children(&client, &format!("{b}/missing")).await.is_empty());
    delete_recursive(&client, &a).await;
    delete_recursive(&client, &b).await;
    assert!(!exists(&client, &a).await);
}

/// 3. An ensemble elects a leader, re-elects a different one after the leader is killed,
/// and a client of the ensemble can still write; (7) nothing is left after Drop.
#[tokio::test(flavor = "multi_thread")]
async fn ensemble_fails_over_and_cleans_up() {
    let t = Instant::now();
    let mut ens = ZkEnsemble::start();
    let leader = ens.wait_for_leader(Duration::from_secs(20));
    eprintln!("ensemble up in {:?}, leader {leader}", t.elapsed());
    let followers = (0..3).filter(|&i| ens.mode(i).as_deref() == Some("follower")).count();
    assert_eq!(followers, 2);
    assert!(ens.mntr(leader).get("zk_synced_followers").unwrap_or(0) >= 1);

    let client = connect(&ens.connect_string(), Duration::from_secs(6)).await;
    create_with_retry(&client, "/before", b"1", Duration::from_secs(10)).await;

    let t = Instant::now();
    ens.kill(leader);
    assert!(!ens.is_running(leader));
    let new_leader = ens.wait_for_leader(Duration::from_secs(20));
    eprintln!("new leader {new_leader} after {:?}", t.elapsed());
    assert_ne!(new_leader, leader);
    create_with_retry(&client, "/after", b"2", Duration::from_secs(15)).await;
    assert_eq!(client.get_data("/before").await.unwrap().0, b"1");

    // the killed member comes back as a follower
    ens.restart(leader);
    assert_eq!(ens.mode(leader).as_deref(), Some("follower"));
    drop(client);

    let pids = ens.pids();
    let addrs: Vec<_> = (0..3).map(|i| ens.member_addr(i)).collect();
    drop(ens);
    for pid in pids {
        assert!(!pid_alive(pid), "ensemble pid {pid} still alive after drop");
    }
    for addr in addrs {
        assert!(!port_accepts(addr), "{addr} still accepts after drop");
    }
}

/// 4. Forced expiry really expires the session and deletes its ephemeral node.
#[tokio::test]
async fn forced_expiry_expires_session_and_ephemerals() {
    let cs = shared_connect();
    let path = unique_path("expiry");
    let victim = connect(&cs, Duration::from_secs(6)).await;
    let observer = connect(&cs, Duration::from_secs(6)).await;
    ensure_path(&observer, &path).await;
    let node = format!("{path}/eph");
    victim.create(&node, b"", &ephemeral()).await.unwrap();
    assert!(exists(&observer, &node).await);

    let mut states = victim.state_watcher();
    let t = Instant::now();
    expire_session(&cs, &victim).await;
    eprintln!("session expired in {:?}", t.elapsed());
    assert_eq!(
        wait_for_state(&mut states, Duration::from_secs(1), |s| s == SessionState::Expired).await,
        Ok(SessionState::Expired)
    );
    assert!(!exists(&observer, &node).await, "ephemeral survived expiry");
    assert!(matches!(victim.get_data(&path).await, Err(zookeeper_client::Error::SessionExpired)));
    delete_recursive(&observer, &path).await;
}

/// 5. The proxy passes, black-holes (requests hang, client disconnects), passes again
/// (client reconnects within the session timeout, same session) and refuses.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_pass_blackhole_pass_refuse() {
    let server = ZkServer::start();
    let proxy = TcpProxy::start(server.addr());
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    let session_timeout = Duration::from_secs(10);
    let client = Client::connector()
        .with_session_timeout(session_timeout)
        .with_connection_timeout(Duration::from_secs(2))
        .connect(&proxy.connect_string())
        .await
        .expect("connect through proxy");
    let session = client.session_id();
    client.create("/p", b"x", &persistent()).await.unwrap();
    let mut states = client.state_watcher();

    // Blackhole: requests never complete and the client notices the dead connection.
    let cut = Instant::now();
    proxy.set_mode(ProxyMode::Blackhole);
    let r = tokio::time::timeout(Duration::from_secs(1), client.get_data("/p")).await;
    assert!(r.is_err(), "request completed through a black-holed proxy: {r:?}");
    let s = wait_for_state(&mut states, Duration::from_secs(5), |s| s == SessionState::Disconnected).await;
    assert_eq!(s, Ok(SessionState::Disconnected));
    eprintln!("disconnected {:?} after blackhole", cut.elapsed());

    // Pass again: new connections work; the session survives.
    proxy.set_mode(ProxyMode::Pass);
    let s = wait_for_state(&mut states, Duration::from_secs(8), |s| s != SessionState::Disconnected).await;
    assert_eq!(s, Ok(SessionState::SyncConnected));
    assert!(cut.elapsed() < session_timeout, "reconnect took {:?}", cut.elapsed());
    eprintln!("reconnected {:?} after the cut", cut.elapsed());
    assert_eq!(client.session_id(), session);
    assert_eq!(client.get_data("/p").await.unwrap().0, b"x");

    // Refuse: the live connection is closed and new connections fail.
    proxy.set_mode(ProxyMode::Refuse);
    let s = wait_for_state(&mut states, Duration::from_secs(3), |s| s == SessionState::Disconnected).await;
    assert_eq!(s, Ok(SessionState::Disconnected));
    let proxy_cs = proxy.connect_string();
    let fresh = Client::connector().with_session_timeout(Duration::from_secs(2)).with_fail_eagerly().connect(&proxy_cs);
    match tokio::time::timeout(Duration::from_secs(5), fresh).await {
        Ok(Ok(_)) => panic!("connected through a refusing proxy"),
        Ok(Err(e)) => eprintln!("refused connect failed as expected: {e}"),
        Err(_) => panic!("connect through a refusing proxy neither failed nor succeeded in 5 s"),
    }
    assert!(proxy.accepted() >= 3);
    drop(client);
}

/// 6. Pausing a standalone server disconnects its client; resuming lets it recover.
#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_are_observable() {
    let mut server = ZkServer::start();
    let client = Client::connector()
        .with_session_timeout(Duration::from_secs(8))
        .with_connection_timeout(Duration::from_secs(2))
        .connect(&server.connect_string())
        .await
        .unwrap();
    client.create("/paused", b"", &persistent()).await.unwrap();
    let mut states = client.state_watcher();

    server.pause();
    assert!(!server.is_serving());
    let r = tokio::time::timeout(Duration::from_millis(500), client.check_stat("/paused")).await;
    assert!(r.is_err(), "request answered by a paused server");
    let s = wait_for_state(&mut states, Duration::from_secs(5), |s| s == SessionState::Disconnected).await;
    assert_eq!(s, Ok(SessionState::Disconnected));

    server.resume();
    let s = wait_for_state(&mut states, Duration::from_secs(8), |s| s != SessionState::Disconnected).await;
    assert_eq!(s, Ok(SessionState::SyncConnected));
    assert!(exists(&client, "/paused").await);
}

/// 7. Restart keeps port and data; Drop leaves no process and no listener behind
/// (also for a paused server).
#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_data_and_drop_cleans_up() {
    let mut server = ZkServer::start();
    let addr = server.addr();
    {
        let client = connect(&server.connect_string(), Duration::from_secs(4)).await;
        client.create("/durable", b"d", &persistent()).await.unwrap();
    }
    let old_pid = server.pid();
    server.restart();
    assert_ne!(server.pid(), old_pid);
    assert!(!pid_alive(old_pid));
    assert_eq!(server.addr(), addr);
    let client = connect(&server.connect_string(), Duration::from_secs(4)).await;
    assert_eq!(client.get_data("/durable").await.unwrap().0, b"d");
    drop(client);

    server.kill();
    assert!(!pid_alive(old_pid) && !server.is_running());
    assert!(!port_accepts(addr));
    server.restart();

    server.pause();
    let (pid, dir) = (server.pid(), server.dir().to_path_buf());
    drop(server);
    assert!(!pid_alive(pid), "pid {pid} alive after drop");
    assert!(!port_accepts(addr), "{addr} still accepts after drop");
    assert!(!dir.exists(), "data dir {} left behind", dir.display());
}

/// 8. Partitioning the leader: it loses quorum (no Mode in srvr) while the other two elect
/// a leader and serve writes; healing brings it back as a follower.
#[tokio::test(flavor = "multi_thread")]
async fn partition_isolates_a_member() {
    let mut ens = ZkEnsemble::start();
    if let Err(e) = ens.partition_supported() {
        panic!("partition test cannot run on this machine: {e}");
    }
    let leader = ens.wait_for_leader(Duration::from_secs(20));
    let chain = ens.chain_name().to_string();
    let t = Instant::now();
    ens.partition(leader).expect("partition");
    let lost = wait_until(Duration::from_secs(15), || ens.mode(leader).is_none()).await;
    assert!(lost, "isolated member still reports {:?}", ens.mode(leader));
    eprintln!("isolated leader lost quorum after {:?}", t.elapsed());
    assert!(ens.four_letter(leader, "srvr").contains("not currently serving"));
    let ok = wait_until(Duration::from_secs(15), || ens.leader().is_some_and(|l| l != leader)).await;
    assert!(ok, "the majority did not elect a leader");
    eprintln!("majority has leader {:?} after {:?}", ens.leader(), t.elapsed());

    let others: Vec<_> = (0..3).filter(|&i| i != leader).map(|i| ens.member_connect(i)).collect();
    let client = connect(&others.join(","), Duration::from_secs(6)).await;
    create_with_retry(&client, "/majority", b"", Duration::from_secs(10)).await;
    drop(client);

    ens.heal(leader);
    let back = wait_until(Duration::from_secs(20), || ens.mode(leader).as_deref() == Some("follower")).await;
    assert!(back, "healed member did not rejoin: {:?}", ens.mode(leader));

    ens.partition((leader + 1) % 3).expect("second partition");
    let pids = ens.pids();
    drop(ens);
    let rules = std::process::Command::new("iptables").arg("-S").output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains(&chain), "iptables chain {chain} left behind");
    assert!(pids.iter().all(|&p| !pid_alive(p)));
}
