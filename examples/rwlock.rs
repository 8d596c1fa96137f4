//! Readers share a read/write lock, writers take it alone, in arrival order among conflicting
//! requests: a writer is never starved by a stream of readers.
//!
//! ```text
//! cargo run --example rwlock -- [CONNECT] [READERS] [WRITERS]
//! ```
//! CONNECT defaults to `$ZOOKEEPER_CONNECT`, then `127.0.0.1:2181`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zk_lock::{zk, RwLock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let connect =
        args.next().or_else(|| std::env::var("ZOOKEEPER_CONNECT").ok()).unwrap_or_else(|| "127.0.0.1:2181".to_owned());
    let readers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let writers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let path = format!("/zk-lock-examples/rwlock-{}", std::process::id());
    println!("{readers} readers and {writers} writers, 3 turns each, on {path} at {connect}");

    let reading = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for id in 0..readers + writers {
        let client = zk::Client::connector().with_session_timeout(Duration::from_secs(10)).connect(&connect).await?;
        let lock = RwLock::builder(&client, path.clone()).data(format!("worker-{id}")).build()?;
        let reading = reading.clone();
        let writer = id >= readers;
        tasks.push(tokio::spawn(async move {
            for turn in 0..3 {
                if writer {
                    let guard = lock.write().await?;
                    println!("worker-{id} writes (turn {turn}), alone; token {}", guard.fencing_token());
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    guard.release().await?;
                } else {
                    let guard = lock.read().await?;
                    let now = reading.fetch_add(1, Ordering::SeqCst) + 1;
                    println!("worker-{id} reads (turn {turn}), {now} reading now");
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    reading.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await?;
                }
            }
            drop(client);
            Ok::<_, zk_lock::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!("done");
    Ok(())
}
