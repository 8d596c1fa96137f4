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

/// One forced-expiry attempt: opens a second connection with the same session id and
/// password and closes it, so the server closes the session. Returns once the second
/// connection's close completed (or after 5 s). Does not wait for `client` to notice.
pub async fn expire_session_nowait(connect: &str, client: &Client) {
    let second = Client::connector()
        .with_session(client.session().clone())
        .with_session_timeout(client.session_timeout())
        .connect(connect);
    let second = match tokio::time::timeout(Duration::from_secs(10), second).await {
        Ok(Ok(c)) => c,
        // session already gone: nothing to do
        Ok(Err(zookeeper_client::Error::SessionExpired)) => return,
        Ok(Err(e)) => panic!("expire_session: second connection to {connect} failed: {e}"),
        Err(_) => panic!("expire_session: second connection to {connect} timed out"),
    };
    let mut w = second.state_watcher();
    drop(second); // last handle: the session task sends CloseSession
    let _ = wait_for_state(&mut w, Duration::from_secs(5), |s| s.is_terminated()).await;
}

/// Forces expiry of `client`'s session (the Kazoo/Curator same-session trick) and returns
/// once `client` itself reports [`SessionState::Expired`] (retried up to 3 times, ≤ ~15 s;
/// panics otherwise). The client's ephemeral nodes are deleted by the server.
/// For a client that cannot currently reach the server, use [`expire_session_nowait`].
pub async fn expire_session(connect: &str, client: &Client) {
    for _ in 0..3 {
        if client.state() == SessionState::Expired {
            return;
        }
        expire_session_nowait(connect, client).await;
        let mut w = client.state_watcher();
        if wait_for_state(&mut w, Duration::from_secs(4), |s| s == SessionState::Expired).await.is_ok() {
            return;
        }
    }
    panic!(
        "expire_session: client session {} not Expired after 3 attempts (state {:?})",
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
