//! Workers share a semaphore: at most PERMITS of them work at once, served in arrival order.
//!
//! ```text
//! cargo run --example semaphore -- [CONNECT] [WORKERS] [PERMITS]
//! ```
//! CONNECT defaults to `$ZOOKEEPER_CONNECT`, then `127.0.0.1:2181`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zk_lock::{zk, Semaphore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let connect =
        args.next().or_else(|| std::env::var("ZOOKEEPER_CONNECT").ok()).unwrap_or_else(|| "127.0.0.1:2181".to_owned());
    let workers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(6);
    let permits: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let path = format!("/zk-lock-examples/semaphore-{}", std::process::id());
    println!("{workers} workers, {permits} permits, 2 turns each, on {path} at {connect}");

    let working = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for id in 0..workers {
        let client = zk::Client::connector().with_session_timeout(Duration::from_secs(10)).connect(&connect).await?;
        let semaphore =
            Semaphore::builder(&client, path.clone()).permits(permits).data(format!("worker-{id}")).build()?;
        let working = working.clone();
        tasks.push(tokio::spawn(async move {
            for turn in 0..2 {
                let permit = semaphore.acquire().await?;
                let now = working.fetch_add(1, Ordering::SeqCst) + 1;
                println!("worker-{id} works (turn {turn}): {now} of {permits} permits in use");
                tokio::time::sleep(Duration::from_millis(50)).await;
                working.fetch_sub(1, Ordering::SeqCst);
                permit.release().await?;
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
