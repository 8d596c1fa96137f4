//! Client-side helpers: connecting, waiting for session states, forcing session expiry,
//! and small znode utilities.
#![allow(dead_code)]

use std::time::Duration;

use zookeeper_client::{Acls, Client, CreateMode, SessionState, StateWatcher};

/// Connects to `connect` with the given session timeout (the server clamps it to
/// [2, 20] x tickTime, i.e. 1 s ..= 10 s with the harness's tickTime=500). Panics if no
/// session is established within `session_timeout + 10 s`.
pub async fn connect(connect: &str, session_timeout: Duration) -> Client {
    let fut = Client::connector().with_session_timeout(session_timeout).connect(connect);
    match tokio::time::timeout(session_timeout + Duration::from_secs(10), fut).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("cannot connect to ZooKeeper at {connect}: {e}"),
        Err(_) => panic!("timed out connecting to ZooKeeper at {connect}"),
    }
}

/// Waits until `watcher` reports a state for which `pred` holds (the current state
/// counts). Returns Ok(state), or Err(last state seen) after `timeout`.
pub async fn wait_for_state(
    watcher: &mut StateWatcher,
    timeout: Duration,
    pred: impl Fn(SessionState) -> bool,
) -> Result<SessionState, SessionState> {
    let mut last = watcher.state();
    if pred(last) {
        return Ok(last);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, watcher.changed()).await {
            Ok(s) => {
                last = s;
                if pred(s) {
                    return Ok(s);
                }
            }
            Err(_) => return Err(last),
        }
    }
}

/// Waits until `client.state()` is `state`; panics after `timeout` with what was seen.
pub async fn expect_state(client: &Client, state: SessionState, timeout: Duration) {
    let mut w = client.state_watcher();
    if client.state() == state {
        return;
    }
    if let Err(last) = wait_for_state(&mut w, timeout, |s| s == state).await {
        panic!("client did not reach {state:?} within {timeout:?} (last: {last:?})");
    }
}

/// ZooKeeper derives a session's password from its id: `new java.util.Random(id ^
/// 0xB3415C00).nextBytes(byte[16])` (`ZooKeeperServer.generatePasswd`). zookeeper-client does
/// not expose the password, so the harness recomputes it (a wrong guess is detected: the
/// server then answers the connect request with timeout 0).
pub fn session_password(session_id: i64) -> [u8; 16] {
    const MULT: u64 = 0x5DEECE66D;
    const MASK: u64 = (1 << 48) - 1;
    let mut seed = ((session_id ^ 0xB341_5C00) as u64 ^ MULT) & MASK;
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(4) {
        seed = (seed.wrapping_mul(MULT).wrapping_add(0xB)) & MASK;
        let mut rnd = (seed >> 16) as u32; // next(32)
        for b in chunk {
            *b = rnd as u8;
            rnd >>= 8;
        }
    }
    out
}

/// Outcome of one raw close attempt on one server.
#[derive(Debug, PartialEq, Eq)]
enum RawClose {
    /// The server acknowledged closeSession: the session is gone.
    Closed,
    /// The session was reattached and closeSession sent, then the server closed the
    /// connection without a reply (the usual case: it closes the connection of a closed
    /// session). Almost always closed; a racing reconnect of the victim may have won.
    ProbablyClosed,
    /// The server refused to reattach (session already expired, or password mismatch).
    Rejected,
    /// Connection closed/failed before the acknowledgement (e.g. the victim reconnected
    /// first and took the session back): retry.
    Lost(String),
}

/// Reattaches `session_id` on a fresh raw connection to `host` and sends closeSession in
/// the same write (pipelined, so the victim's immediate reconnect rarely wins the race).
async fn raw_close_session(host: &str, session_id: i64, timeout_ms: i32) -> RawClose {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut sock = tokio::net::TcpStream::connect(host).await?;
        sock.set_nodelay(true)?;
        let mut connect = Vec::with_capacity(64);
        connect.extend_from_slice(&0i32.to_be_bytes()); // protocolVersion
        connect.extend_from_slice(&0i64.to_be_bytes()); // lastZxidSeen
        connect.extend_from_slice(&timeout_ms.to_be_bytes());
        connect.extend_from_slice(&session_id.to_be_bytes());
        connect.extend_from_slice(&16i32.to_be_bytes());
        connect.extend_from_slice(&session_password(session_id));
        connect.push(0); // readOnly
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&(connect.len() as i32).to_be_bytes());
        buf.extend_from_slice(&connect);
        buf.extend_from_slice(&8i32.to_be_bytes()); // RequestHeader { xid: 1, type: closeSession }
        buf.extend_from_slice(&1i32.to_be_bytes());
        buf.extend_from_slice(&(-11i32).to_be_bytes());
        sock.write_all(&buf).await?;
        // ConnectResponse { protocolVersion, timeOut, sessionId, passwd, readOnly }
        let len = sock.read_i32().await?;
        let mut resp = vec![0u8; len.clamp(0, 1024) as usize];
        sock.read_exact(&mut resp).await?;
        let negotiated = i32::from_be_bytes(resp[4..8].try_into().unwrap());
        if negotiated <= 0 {
            return Ok(RawClose::Rejected);
        }
        // ReplyHeader { xid, zxid, err }
        let Ok(len) = sock.read_i32().await else {
            return Ok(RawClose::ProbablyClosed);
        };
        let mut reply = vec![0u8; len.clamp(0, 1024) as usize];
        sock.read_exact(&mut reply).await?;
        let err = i32::from_be_bytes(reply[12..16].try_into().unwrap());
        Ok::<_, std::io::Error>(if err == 0 {
            RawClose::Closed
        } else {
            RawClose::Lost(format!("closeSession error code {err}"))
        })
    };
    match tokio::time::timeout(Duration::from_secs(5), io).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => RawClose::Lost(e.to_string()),
        Err(_) => RawClose::Lost("timed out".into()),
    }
}

/// Hosts of a connect string ("h1:p1,tcp://h2:p2/chroot" -> ["h1:p1", "h2:p2"]).
fn hosts(connect: &str) -> Vec<String> {
    let no_scheme = connect.replace("tcp://", "");
    let no_chroot = no_scheme.split('/').next().unwrap_or("");
    no_chroot.split(',').map(str::trim).filter(|h| !h.is_empty()).map(String::from).collect()
}

/// Library-level fallback: opens a second `Client` on the same session and drops it.
async fn close_with_second_client(connect: &str, client: &Client) {
    let second = Client::connector()
        .with_session(client.session().clone())
        .with_session_timeout(client.session_timeout())
        .connect(connect);
    match tokio::time::timeout(Duration::from_secs(10), second).await {
        Ok(Ok(second)) => {
            let mut w = second.state_watcher();
            drop(second); // last handle: the session task sends CloseSession
            let _ = wait_for_state(&mut w, Duration::from_secs(5), |s| s.is_terminated()).await;
        }
        Ok(Err(e)) => eprintln!("expire_session: second client on {connect}: {e}"),
        Err(_) => eprintln!("expire_session: second client on {connect} timed out"),
    }
}

/// One forced-expiry attempt (the Kazoo/Curator "same session from a second connection,
/// then close it" trick, done on a raw socket): reattaches `client`'s session on a new
/// connection and closes it. Returns true once closeSession was delivered (the session and
/// its ephemerals are then gone, barring a rare race with the client's own reconnect),
/// false if this attempt failed. Does not wait for `client` to notice.
pub async fn expire_session_nowait(connect: &str, client: &Client) -> bool {
    let id = client.session_id().0;
    let timeout_ms = client.session_timeout().as_millis() as i32;
    let mut rejected = false;
    for host in hosts(connect) {
        match raw_close_session(&host, id, timeout_ms).await {
            RawClose::Closed | RawClose::ProbablyClosed => return true,
            RawClose::Rejected => rejected = true,
            // lost the race with the victim's own reconnect (or the host is down): retry
            RawClose::Lost(_) => {}
        }
    }
    if rejected && client.state() != SessionState::Expired {
        // Password scheme differs from what we assume (or already expired): use the
        // library-level trick instead.
        close_with_second_client(connect, client).await;
    }
    false
}

/// Forces expiry of `client`'s session and returns once `client` itself reports
/// [`SessionState::Expired`] (up to 5 attempts, ≤ ~25 s; panics otherwise; usually a few ms,
/// at most about the client's connection timeout, 2/5 of its session timeout). The server
/// deletes the session's ephemeral nodes before acknowledging the close.
/// For a client that cannot currently reach the server, use [`expire_session_nowait`].
pub async fn expire_session(connect: &str, client: &Client) {
    for _ in 0..5 {
        if client.state() == SessionState::Expired {
            return;
        }
        let closed = expire_session_nowait(connect, client).await;
        let wait = if closed { Duration::from_secs(4) } else { Duration::from_millis(500) };
        let mut w = client.state_watcher();
        if wait_for_state(&mut w, wait, |s| s == SessionState::Expired).await.is_ok() {
            return;
        }
    }
    panic!(
        "expire_session: client session {} not Expired after 5 attempts (state {:?})",
        client.session_id(),
        client.state()
    );
}

/// Creates `path` and all missing ancestors as persistent nodes (like `mkdir -p`).
pub async fn ensure_path(client: &Client, path: &str) {
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    match client.mkdir(path, &opts).await {
        Ok(()) | Err(zookeeper_client::Error::NodeExists) => {}
        Err(e) => panic!("ensure_path({path}): {e}"),
    }
}

/// Sorted children of `path` (empty if it does not exist).
pub async fn children(client: &Client, path: &str) -> Vec<String> {
    match client.list_children(path).await {
        Ok(mut c) => {
            c.sort();
            c
        }
        Err(zookeeper_client::Error::NoNode) => Vec::new(),
        Err(e) => panic!("children({path}): {e}"),
    }
}

/// True if `path` exists.
pub async fn exists(client: &Client, path: &str) -> bool {
    client.check_stat(path).await.unwrap_or_else(|e| panic!("exists({path}): {e}")).is_some()
}

/// Deletes `path` and everything below it (ignores nodes that vanish meanwhile).
/// Bounded: at most 10_000 nodes.
pub async fn delete_recursive(client: &Client, path: &str) {
    let mut stack = vec![(path.to_string(), false)];
    let mut budget = 10_000;
    while let Some((p, expanded)) = stack.pop() {
        budget -= 1;
        assert!(budget > 0, "delete_recursive({path}): too many nodes");
        if expanded {
            match client.delete(&p, None).await {
                Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => panic!("delete_recursive: delete {p}: {e}"),
            }
            continue;
        }
        stack.push((p.clone(), true));
        for c in children(client, &p).await {
            let child = if p == "/" { format!("/{c}") } else { format!("{p}/{c}") };
            stack.push((child, false));
        }
    }
}

/// `n` clients of `connect`, each its own session with `session_timeout`.
pub async fn connect_many(connect_string: &str, n: usize, session_timeout: Duration) -> Vec<Client> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect(connect_string, session_timeout).await);
    }
    out
}

/// Waits (5 s at most) until `path` has `n` children; panics with what it has otherwise.
pub async fn wait_for_children(client: &Client, path: &str, n: usize) {
    let ok =
        super::wait_until_async(Duration::from_secs(5), || async { children(client, path).await.len() == n }).await;
    assert!(ok, "expected {n} nodes under {path}: {:?}", children(client, path).await);
}
