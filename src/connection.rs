//! What a recipe is built on: one fixed ZooKeeper client, or a [`Session`] that heals.

use std::time::Duration;

use zookeeper_client as zk;

use crate::error::Result;
use crate::session::Session;

/// What every recipe is built from: a plain [`zk::Client`] (one ZooKeeper session: when it
/// expires, the recipe is done for, and its acquires return [`Error::SessionExpired`]) or a
/// [`Session`] (a new ZooKeeper session replaces an expired one, and the recipe goes on with
/// it). Every constructor takes `impl Into<Connection>`, so `&client`, `client`, `&session`
/// and `session` all work; the engine is the same for both.
///
/// [`Error::SessionExpired`]: crate::Error::SessionExpired
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client) -> zk_lock::Result<()> {
/// use zk_lock::{Mutex, Session};
///
/// let fixed = Mutex::new(&client, "/locks/a")?; // this session only
/// let session = Session::connect("127.0.0.1:2181").await?;
/// let healing = Mutex::new(&session, "/locks/a")?; // whatever session is current
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connection(Source);

#[derive(Debug, Clone)]
enum Source {
    Client(zk::Client),
    Session(Session),
}

impl From<zk::Client> for Connection {
    fn from(client: zk::Client) -> Connection {
        Connection(Source::Client(client))
    }
}

impl From<&zk::Client> for Connection {
    fn from(client: &zk::Client) -> Connection {
        Connection(Source::Client(client.clone()))
    }
}

impl From<Session> for Connection {
    fn from(session: Session) -> Connection {
        Connection(Source::Session(session))
    }
}

impl From<&Session> for Connection {
    fn from(session: &Session) -> Connection {
        Connection(Source::Session(session.clone()))
    }
}

impl Connection {
    /// Whether a new session replaces an expired one.
    pub(crate) fn heals(&self) -> bool {
        matches!(self.0, Source::Session(_))
    }

    /// The client to use now: for a session, the current one, waiting (until `deadline`) while
    /// a new one is being established. `None`: the deadline passed first.
    pub(crate) async fn client(&self, deadline: Option<tokio::time::Instant>) -> Result<Option<zk::Client>> {
        match &self.0 {
            Source::Client(client) => Ok(Some(client.clone())),
            Source::Session(session) => session.current(deadline).await,
        }
    }

    /// The client now, if there is one, without waiting.
    pub(crate) fn client_now(&self) -> Option<zk::Client> {
        match &self.0 {
            Source::Client(client) => Some(client.clone()),
            Source::Session(session) => session.client(),
        }
    }

    /// Whether `client` is still the one to use.
    pub(crate) fn is_current(&self, client: &zk::Client) -> bool {
        match &self.0 {
            Source::Client(_) => true,
            Source::Session(session) => session.client().is_some_and(|c| c.session_id() == client.session_id()),
        }
    }

    /// Resolves once `client` is no longer the one to use (never, for a fixed client).
    pub(crate) async fn replaced(&self, client: &zk::Client) {
        match &self.0 {
            Source::Client(_) => std::future::pending().await,
            Source::Session(session) => session.replaced(client).await,
        }
    }

    /// How long a call that must not wait may wait for a session to be established: twice
    /// the session timeout, as long as any request is retried.
    pub(crate) fn patience(&self) -> Duration {
        match &self.0 {
            Source::Client(client) => crate::retry::budget(client),
            Source::Session(session) => crate::retry::budget_for(session.session_timeout()),
        }
    }
}
