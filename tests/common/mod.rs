//! Integration-test harness for zk-lock: real ZooKeeper 3.8 servers (Debian package, no
//! Docker), ensembles, a fault-injecting TCP proxy, forced session expiry.
//!
//! Use from a test file with `mod common;` then e.g. `use common::*;`.
//!
//! - [`server`]: [`ZkServer`] (one standalone server per test), [`shared_connect`] (one
//!   server per test binary, or `$ZOOKEEPER_CONNECT`).
//! - [`ensemble`]: [`ZkEnsemble`] (3 members; kill/pause/resume/restart/partition).
//! - [`proxy`]: [`TcpProxy`] / [`ProxyMode`] (Pass, Refuse, Blackhole).
//! - [`four_letter`]: four-letter words and [`Mntr`].
//! - [`session`]: [`connect`], [`expire_session`], [`wait_for_state`], znode helpers.
//! - here: [`unique_path`], [`wait_until`], [`wait_until_async`], [`init_tracing`].
//!
//! Every server dies with the test process (a bash watchdog blocked on a pipe from it), so a
//! panicking or SIGKILLed test run leaves no JVM behind. Tests needing ZooKeeper panic with
//! an install hint if it is missing; they never skip.
//!
//! Tests mixing blocking harness calls (start, kill, wait_for_leader, ...) with async clients
//! or a [`TcpProxy`] should use `#[tokio::test(flavor = "multi_thread")]`, so the blocking
//! call does not stall the client's session task or the proxy.
#![allow(dead_code, unused_imports)]

pub mod delay;
pub mod ensemble;
pub mod four_letter;
pub mod process;
pub mod proxy;
pub mod rng;
pub mod server;
pub mod session;

use std::future::Future;
use std::time::Duration;

pub use delay::DelayProxy;
pub use ensemble::ZkEnsemble;
pub use four_letter::Mntr;
pub use process::{pid_alive, port_accepts};
pub use proxy::{ProxyMode, TcpProxy};
pub use rng::Rng;
pub use server::{shared_connect, ServerOptions, ZkServer};
pub use session::{
    children, connect, connect_many, delete_recursive, ensure_path, exists, expect_state, expire_session,
    expire_session_nowait, wait_for_children, wait_for_state,
};

/// Root under which [`unique_path`] puts per-test paths.
pub const TEST_ROOT: &str = "/zk-lock-test";

/// A fresh path `/zk-lock-test/<prefix>-<random 12 hex>` (not created), to isolate tests on
/// a shared server. Create it with [`ensure_path`] if needed.
pub fn unique_path(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{TEST_ROOT}/{prefix}-{}", &id[..12])
}

/// Polls `cond` every 20 ms until it is true (returns true) or `timeout` passes (false).
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait_until`] with an async condition (e.g. listing children); each evaluation is
/// itself bounded by the remaining time.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(true) = tokio::time::timeout_at(deadline, cond()).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Installs a `tracing` subscriber honouring `RUST_LOG` (once; later calls are no-ops).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
