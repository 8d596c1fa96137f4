//! Candidates elect a leader; each leads for a moment, resigns and campaigns again at the back,
//! while an observer prints every change of leader.
//!
//! ```text
//! cargo run --example election -- [CONNECT] [CANDIDATES]
//! ```
//! CONNECT defaults to `$ZOOKEEPER_CONNECT`, then `127.0.0.1:2181`.

use std::time::Duration;

use zk_lock::{zk, LeaderElection};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let connect =
        args.next().or_else(|| std::env::var("ZOOKEEPER_CONNECT").ok()).unwrap_or_else(|| "127.0.0.1:2181".to_owned());
    let candidates: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let path = format!("/zk-lock-examples/election-{}", std::process::id());
    println!("{candidates} candidates, 2 terms each, on {path} at {connect}");

    let observer_client = zk::Client::connect(&connect).await?;
    let mut leaders = LeaderElection::new(&observer_client, path.clone())?.observe();
    let observer = tokio::spawn(async move {
        for _ in 0..(2 * candidates + 1) {
            match leaders.changed().await {
                Ok(Some(leader)) => {
                    println!("observer: {} leads", String::from_utf8_lossy(leader.data().unwrap_or(b"?")))
                }
                Ok(None) => println!("observer: nobody leads"),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });

    let mut tasks = Vec::new();
    for id in 0..candidates {
        let client = zk::Client::connector().with_session_timeout(Duration::from_secs(10)).connect(&connect).await?;
        let election = LeaderElection::builder(&client, path.clone()).data(format!("candidate-{id}")).build()?;
        tasks.push(tokio::spawn(async move {
            for term in 0..2 {
                let leadership = election.campaign().await?;
                println!("candidate-{id} leads (term {term}), epoch {}", leadership.fencing_token());
                tokio::time::sleep(Duration::from_millis(100)).await;
                leadership.resign().await?;
            }
            drop(client);
            Ok::<_, zk_lock::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), observer).await;
    println!("done");
    Ok(())
}
