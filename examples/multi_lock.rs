//! Two workers take the same three locks (a mutex, a write lock and a semaphore permit), each
//! listing them in its own order: the multi-lock takes them in one canonical order, so they
//! never deadlock, and with one deadline for the whole set.
//!
//! ```text
//! cargo run --example multi_lock -- [CONNECT]
//! ```
//! CONNECT defaults to `$ZOOKEEPER_CONNECT`, then `127.0.0.1:2181`.

use std::time::Duration;

use zk_lock::{zk, Lock, MultiLock, Mutex, RwLock, Semaphore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let connect = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ZOOKEEPER_CONNECT").ok())
        .unwrap_or_else(|| "127.0.0.1:2181".to_owned());
    let root = format!("/zk-lock-examples/multi-{}", std::process::id());
    println!("two workers, three locks under {root} at {connect}");

    let mut tasks = Vec::new();
    for (id, reversed) in [(0, false), (1, true)] {
        let client = zk::Client::connector().with_session_timeout(Duration::from_secs(10)).connect(&connect).await?;
        let mut locks: Vec<Box<dyn Lock>> = vec![
            Box::new(Mutex::new(&client, format!("{root}/orders"))?),
            Box::new(RwLock::new(&client, format!("{root}/catalog"))?.write_lock().clone()),
            Box::new(Semaphore::new(&client, format!("{root}/db"), 1)?),
        ];
        if reversed {
            locks.reverse();
        }
        let multi = MultiLock::new(locks)?;
        tasks.push(tokio::spawn(async move {
            for turn in 0..3 {
                let held = multi.acquire_timeout(Duration::from_secs(10)).await?;
                println!("worker-{id} holds all three (turn {turn}), token {}", held.fencing_token());
                tokio::time::sleep(Duration::from_millis(20)).await;
                held.release().await?;
            }
            drop(client);
            Ok::<_, zk_lock::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!("done: no deadlock, whatever order each worker listed the locks in");
    Ok(())
}
