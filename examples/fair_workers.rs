//! N workers, each with its own ZooKeeper session, take turns on one lock in arrival order.
//!
//! ```text
//! cargo run --example fair_workers -- [CONNECT] [WORKERS] [ROUNDS]
//! ```
//! CONNECT defaults to `$ZOOKEEPER_CONNECT`, then `127.0.0.1:2181`.

use std::time::Duration;

use zk_lock::{zk, Mutex};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let connect =
        args.next().or_else(|| std::env::var("ZOOKEEPER_CONNECT").ok()).unwrap_or_else(|| "127.0.0.1:2181".to_owned());
    let workers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let path = format!("/zk-lock-examples/fair-workers-{}", std::process::id());
    println!("{workers} workers x {rounds} rounds on {path} at {connect}");

    let mut tasks = Vec::new();
    for id in 0..workers {
        let client = zk::Client::connector().with_session_timeout(Duration::from_secs(10)).connect(&connect).await?;
        let mutex =
            Mutex::builder(&client, path.clone()).data(format!("worker-{id} pid {}", std::process::id())).build()?;
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let guard = mutex.lock().await?;
                let queue = mutex.participants().await?;
                let waiting: Vec<String> =
                    queue.iter().skip(1).map(|p| String::from_utf8_lossy(p.data().unwrap_or(b"?")).into_owned()).collect();
                println!(
                    "worker-{id} holds the lock (round {round}): queued behind {}, seq {}, token {}; waiting now: {waiting:?}",
                    guard.queued_behind(),
                    guard.sequence(),
                    guard.fencing_token()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                guard.release().await?;
            }
            drop(client);
            Ok::<_, zk_lock::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!("done: every worker had its turns, one at a time, in arrival order");
    Ok(())
}
