//! `zk-lock list`: a lock's queue, holder first.

use std::time::SystemTime;

use zk_lock::{LeaderElection, Mutex, Participant, RwLock, Semaphore};

use crate::{exit, fail, ListArgs};

/// Which recipe's layout the queue at `path` has, from its children's names.
async fn participants(session: &zk_lock::Session, path: &str) -> zk_lock::Result<Vec<Participant>> {
    let client = session.client().ok_or(zk_lock::Error::SessionClosed)?;
    zk_lock::LockPath::new(path)?;
    let children = match client.list_children(path).await {
        Ok(children) => children,
        Err(zk_lock::zk::Error::NoNode) => Vec::new(),
        Err(zk_lock::zk::Error::NoAuth) => return Err(zk_lock::Error::NotAuthorized { path: path.to_owned() }),
        Err(source) => return Err(zk_lock::Error::ZooKeeper { path: path.to_owned(), source }),
    };
    let has = |marker: &str| children.iter().any(|c| c.contains(marker));
    if has("__READ__") || has("__WRIT__") {
        RwLock::new(session, path)?.participants().await
    } else if has("-latch-") {
        LeaderElection::new(session, path)?.participants().await
    } else if has("-lease-") {
        Semaphore::builder(session, path).build()?.participants().await
    } else {
        Mutex::new(session, path)?.participants().await
    }
}

pub(crate) async fn list(args: ListArgs) -> i32 {
    if let Err(e) = zk_lock::LockPath::new(args.path.as_str()) {
        return fail(exit::USAGE, e);
    }
    let session = match crate::connect(&args.connect).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    let queue = participants(&session, &args.path).await;
    crate::close(session).await;
    let queue = match queue {
        Ok(queue) => queue,
        Err(e) => return fail(exit::for_error(&e, exit::CONFLICT), e),
    };
    let now = SystemTime::now();
    let age_ms = |p: &Participant| now.duration_since(p.created()).unwrap_or_default().as_millis() as u64;
    let data = |p: &Participant| p.data().map(|d| String::from_utf8_lossy(d).into_owned());
    if args.json {
        let rows: Vec<_> = queue
            .iter()
            .enumerate()
            .map(|(i, p)| {
                serde_json::json!({
                    "position": i,
                    "node": p.node(),
                    "session": p.session_id().to_string(),
                    "data": data(p),
                    "age_ms": age_ms(p),
                    "token": p.fencing_token().as_i64(),
                    "lease_until_ms": p.lease_until().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_millis() as u64),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return 0;
    }
    println!("{:<4} {:<18} {:>9} {:>14}  {:<40} DATA", "POS", "SESSION", "AGE", "TOKEN", "NODE");
    for (i, p) in queue.iter().enumerate() {
        let node = p.node().rsplit('/').next().unwrap_or(p.node());
        let age = age_ms(p) as f64 / 1000.0;
        let data = data(p).unwrap_or_else(|| "(hidden)".into()).escape_debug().to_string();
        println!(
            "{:<4} {:<18} {:>8.1}s {:>14}  {:<40} {data}",
            i,
            p.session_id().to_string(),
            age,
            p.fencing_token().as_i64(),
            node
        );
    }
    0
}
