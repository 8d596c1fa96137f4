//! How long a request with an unknown outcome is retried: the one bound every retry loop of the
//! crate shares.
//!
//! A request that fails with a connection error may or may not have been applied; the engine
//! looks, then sends it again, waiting 5 ms, then twice as long each time up to 500 ms. While the
//! client cannot reach the server at all, the session ends by itself (the client declares it
//! expired about 1.4 session timeouts after the last contact), and the loop stops with
//! [`Error::SessionExpired`]. But the connection can also come back every time and the request
//! keep failing (a server that drops the connection on a request it refuses): such a loop ends
//! after **twice the session timeout** of consecutive failures, with [`Error::ConnectionLoss`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use zookeeper_client as zk;

use crate::error::{outcome, Error, Outcome, Result};

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(500);

/// The retry budget of one request: twice the session timeout of `client`.
pub(crate) fn budget(client: &zk::Client) -> Duration {
    budget_for(client.session_timeout())
}

/// The retry budget of one request on a session of `timeout`.
pub(crate) fn budget_for(timeout: Duration) -> Duration {
    timeout * 2
}

/// Backoff between retries of one request, bounded by [`budget`] from the first failure.
#[derive(Debug)]
pub(crate) struct Retry {
    budget: Duration,
    delay: Duration,
    since: Option<Instant>,
}

impl Retry {
    pub(crate) fn new(client: &zk::Client) -> Retry {
        Retry::with_budget(budget(client))
    }

    pub(crate) fn with_budget(budget: Duration) -> Retry {
        Retry { budget, delay: FIRST_DELAY, since: None }
    }

    /// Waits before the next try of a request about `path`, or fails with
    /// [`Error::ConnectionLoss`] once the budget is spent.
    pub(crate) async fn wait(&mut self, path: &str) -> Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.budget {
            return Err(Error::ConnectionLoss { path: path.to_owned(), after: self.budget });
        }
        tokio::time::sleep(self.delay.min(self.budget.saturating_sub(since.elapsed()))).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Ok(())
    }

    /// A request went through: the next failure starts a new budget.
    pub(crate) fn reset(&mut self) {
        self.delay = FIRST_DELAY;
        self.since = None;
    }
}

/// Sends `request` (about `path`) again and again, with [`Retry`]'s backoff, until its outcome is
/// known: the server's answer, success or a definite error, or a terminal session error.
/// `Err(ConnectionLoss)` once the budget is spent.
pub(crate) async fn until_known<T, Fut>(
    client: &zk::Client,
    path: &str,
    mut request: impl FnMut() -> Fut,
) -> Result<Result<T, zk::Error>>
where
    Fut: Future<Output = Result<T, zk::Error>>,
{
    let mut retry = Retry::new(client);
    loop {
        match request().await {
            Err(e) if outcome(&e) == Outcome::Unknown => retry.wait(path).await?,
            answer => return Ok(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_budget_and_starts_again_after_a_success() {
        let mut retry = Retry::with_budget(Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        let mut tries = 0;
        while retry.wait("/a").await.is_ok() {
            tries += 1;
        }
        let spent = start.elapsed();
        assert!(spent >= Duration::from_secs(2) && spent < Duration::from_millis(2600), "{spent:?}");
        assert!(tries > 5, "{tries}");
        assert!(
            matches!(retry.wait("/a").await, Err(Error::ConnectionLoss { after, .. }) if after == Duration::from_secs(2))
        );
        retry.reset();
        assert!(retry.wait("/a").await.is_ok());
    }
}
