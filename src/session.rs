//! A session that outlives ZooKeeper sessions: [`Session`] replaces an expired session with a
//! new one and says so in Apache Curator's connection-state vocabulary.

use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use zookeeper_client as zk;

use crate::connect_string::{self as connect, Target};
use crate::error::{Error, Result};

/// How a [`Session`]'s connection to ZooKeeper stands, in Apache Curator's vocabulary, with a
/// state of its own for the start of a new session.
///
/// A session's life reads, on [`Session::state_changes`]: `Connected`, then any number of
/// `Suspended` → `Reconnected` (short cuts the session survived), then, if it ends, `Lost`; then
/// `NewSession` and `Connected` for its replacement, and so on. Each transition is reported
/// once, in this order. So a forced expiry reads `Lost`, `NewSession`, `Connected` when the
/// client learns it on a live connection, and `Suspended`, `Lost`, `NewSession`, `Connected`
/// when the connection dropped first; a short cut reads `Suspended`, `Reconnected`.
///
/// # Examples
///
/// ```no_run
/// # async fn example(session: zk_lock::Session) {
/// use zk_lock::ConnectionState;
///
/// let mut states = session.state_changes();
/// while let Some(state) = states.next().await {
///     match state {
///         ConnectionState::Lost => eprintln!("session lost: every lock of it is gone"),
///         ConnectionState::NewSession => eprintln!("a new session replaces it"),
///         other => eprintln!("{other:?}"),
///     }
/// }
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Connected to a server of the ensemble, on the current session: at the start of each
    /// session.
    Connected,
    /// The connection is lost for now; the session may still live (locks turn `Suspended`).
    Suspended,
    /// Connected again on the same session after `Suspended`: nothing was lost.
    Reconnected,
    /// The session is over: it expired, was closed by the server, or we could not reach the
    /// server for a whole session timeout (then the server has expired it, or will). Every lock
    /// held on it is `Lost`.
    Lost,
    /// A new session replaces the lost one (a new session id). `Connected` follows.
    NewSession,
}

/// The connection-state changes of a [`Session`], from [`Session::state_changes`]: each one
/// once, in order, from the moment of the call.
///
/// # Examples
///
/// ```no_run
/// # async fn example(session: zk_lock::Session) {
/// let mut states = session.state_changes();
/// if let Some(state) = states.next().await {
///     println!("now {state:?}");
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ConnectionStates {
    rx: mpsc::UnboundedReceiver<ConnectionState>,
}

impl ConnectionStates {
    /// The next change; `None` once the session has ended for good (closed, or it gave up
    /// reconnecting).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a change that comes while no call waits is returned by the next call.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mut states: zk_lock::ConnectionStates) {
    /// while let Some(state) = states.next().await {
    ///     println!("{state:?}");
    /// }
    /// # }
    /// ```
    pub async fn next(&mut self) -> Option<ConnectionState> {
        self.rx.recv().await
    }
}

/// A ZooKeeper session that heals: when the server expires or closes it (or we cannot reach the
/// server for a whole session timeout), it establishes a new one with the same options and
/// credentials, and every lock built on it goes on with the new session.
///
/// A `zookeeper-client` [`Client`](zk::Client) is one session for life: once it expires, every
/// lock made from it is dead for good. Build locks from a `Session` instead (every recipe takes
/// either, see [`Connection`](crate::Connection)) and, across an expiry:
///
/// * a guard held on the old session turns [`Lost`](crate::LockState::Lost) and stays `Lost`:
///   it never becomes `Held` on the new session;
/// * an acquire that is waiting queues again on the new session, at the back (or returns
///   [`Error::SessionExpired`], see [`LockBuilder::requeue_on_expiry`](crate::LockBuilder::requeue_on_expiry));
///   a waiting [`campaign`](crate::LeaderElection::campaign) campaigns again the same way;
/// * a new acquire simply works on the new session.
///
/// Reconnecting backs off from 100 ms, doubling up to 2 s, and gives up after
/// [`reconnect_attempts`](SessionBuilder::reconnect_attempts) failures in a row (10 by default):
/// then every acquire that needs a session returns [`Error::Connect`], and
/// [`state_changes`](Session::state_changes) ends. A failed authentication is never retried.
///
/// Cloning is cheap: clones share the session. The session closes when the last clone and the
/// last lock built on it are dropped.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> zk_lock::Result<()> {
/// use std::time::Duration;
/// use zk_lock::{Mutex, Session};
///
/// let session = Session::builder("127.0.0.1:2181")
///     .session_timeout(Duration::from_secs(10))
///     .auth("digest", "app:secret")
///     .connect()
///     .await?;
/// let mutex = Mutex::new(&session, "/locks/orders")?;
/// loop {
///     let guard = mutex.lock().await?; // on whatever session is current
///     // ... work ...
///     guard.release().await.ok();
/// #   break;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// How a [`Session`] connects: from [`Session::builder`].
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> zk_lock::Result<()> {
/// let session = zk_lock::Session::builder("zk1:2181,zk2:2181,zk3:2181/apps/billing")
///     .session_timeout(std::time::Duration::from_secs(6))
///     .reconnect_attempts(30)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .connect() is called"]
pub struct SessionBuilder {
    connect: String,
    chroot: Option<String>,
    session_timeout: Duration,
    connection_timeout: Option<Duration>,
    auth: Vec<(String, Vec<u8>)>,
    attempts: u32,
    #[cfg(feature = "tls")]
    tls: Option<zk::TlsOptions>,
    #[cfg(feature = "sasl")]
    sasl: Option<zk::SaslOptions>,
}

#[derive(Debug, Clone)]
enum Current {
    Up(zk::Client),
    Connecting,
    Failed(Error),
}

#[derive(Debug)]
struct Shared {
    current: watch::Sender<Current>,
    listeners: StdMutex<Vec<mpsc::UnboundedSender<ConnectionState>>>,
    last: StdMutex<ConnectionState>,
    session_timeout: Duration,
    stop: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Session {
    /// Options for a session on `connect` (`host:port[,host:port...][/chroot]`, each host
    /// optionally `tcp://` or, with the `tls` feature, `tcp+tls://`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::builder("127.0.0.1:2181").connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(connect: impl Into<String>) -> SessionBuilder {
        SessionBuilder {
            connect: connect.into(),
            chroot: None,
            session_timeout: Duration::from_secs(6),
            connection_timeout: None,
            auth: Vec::new(),
            attempts: 10,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "sasl")]
            sasl: None,
        }
    }

    /// Connects with the default options: see [`SessionBuilder::connect`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped before it returns, it keeps no session open (one the server had
    /// already created times out there, with nothing in it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::connect("127.0.0.1:2181").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(connect: impl Into<String>) -> Result<Session> {
        Session::builder(connect).connect().await
    }

    /// The client of the current session, `None` while a new one is being established (or after
    /// the session gave up). A client is one session: keep it only for one operation.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: zk_lock::Session) {
    /// if let Some(client) = session.client() {
    ///     println!("session {}", client.session_id());
    /// }
    /// # }
    /// ```
    pub fn client(&self) -> Option<zk::Client> {
        match &*self.shared.current.borrow() {
            Current::Up(client) => Some(client.clone()),
            _ => None,
        }
    }

    /// The connection state now (the last one reported).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: zk_lock::Session) {
    /// println!("{:?}", session.state());
    /// # }
    /// ```
    pub fn state(&self) -> ConnectionState {
        *lock(&self.shared.last)
    }

    /// Every connection-state change from now on, each once, in order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: zk_lock::Session) {
    /// let mut states = session.state_changes();
    /// while let Some(state) = states.next().await {
    ///     println!("{state:?}");
    /// }
    /// # }
    /// ```
    pub fn state_changes(&self) -> ConnectionStates {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut listeners = lock(&self.shared.listeners);
        // Not once the session has given up: the stream ends at once.
        if !matches!(*self.shared.current.borrow(), Current::Failed(_)) {
            listeners.push(tx);
        }
        ConnectionStates { rx }
    }

    /// Drops this handle and waits, for at most `within`, until the ZooKeeper session is
    /// closed: the server then deletes its nodes at once instead of after the session timeout.
    /// The session closes when nothing uses it any more: drop (or release) every lock and guard
    /// built on it, and every clone of it, before. Returns whether it closed in time.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the handle is dropped either way; only the wait is cut short.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: zk_lock::Session, mutex: zk_lock::Mutex) {
    /// drop(mutex);
    /// if !session.close(std::time::Duration::from_secs(1)).await {
    ///     eprintln!("the session is still in use (or the server is unreachable)");
    /// }
    /// # }
    /// ```
    pub async fn close(self, within: Duration) -> bool {
        let Some(client) = self.client() else { return true };
        let mut states = client.state_watcher();
        drop(client);
        drop(self);
        let closed = async {
            let mut state = states.state();
            while !state.is_terminated() {
                state = states.changed().await;
            }
        };
        tokio::time::timeout(within, closed).await.is_ok()
    }

    /// The session timeout asked for.
    pub(crate) fn session_timeout(&self) -> Duration {
        self.shared.session_timeout
    }

    /// The current session's client, waiting (until `deadline`, if any) while a new session is
    /// being established.
    pub(crate) async fn current(&self, deadline: Option<tokio::time::Instant>) -> Result<Option<zk::Client>> {
        let mut rx = self.shared.current.subscribe();
        let wait = async {
            loop {
                match &*rx.borrow_and_update() {
                    Current::Up(client) => return Ok(client.clone()),
                    Current::Failed(error) => return Err(error.clone()),
                    Current::Connecting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(Error::SessionClosed);
                }
            }
        };
        match deadline {
            None => wait.await.map(Some),
            Some(at) => match tokio::time::timeout_at(at, wait).await {
                Ok(client) => client.map(Some),
                Err(_) => Ok(None),
            },
        }
    }

    /// Resolves once `client`'s session is no longer the current one.
    pub(crate) async fn replaced(&self, client: &zk::Client) {
        let id = client.session_id();
        let mut rx = self.shared.current.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Current::Up(c) if c.session_id() == id => {}
                _ => return,
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl SessionBuilder {
    /// The session timeout to ask the server for (default 6 s; the server bounds it between 2
    /// and 20 ticks). It drives how soon locks turn `Suspended` (50 %) and `Lost` (85 %) while
    /// the server cannot be reached: see the crate docs. Zero is refused by
    /// [`connect`](SessionBuilder::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::builder("127.0.0.1:2181")
    ///     .session_timeout(std::time::Duration::from_secs(10))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long one connection attempt to one server may take (default: the client's, a share of
    /// the session timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::builder("127.0.0.1:2181")
    ///     .connection_timeout(std::time::Duration::from_secs(2))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = Some(timeout);
        self
    }

    /// Every path of the session's locks is under `chroot` (as a `/chroot` suffix of the connect
    /// string would do; give one or the other).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::builder("127.0.0.1:2181").chroot("/apps/billing").connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn chroot(mut self, chroot: impl Into<String>) -> Self {
        self.chroot = Some(chroot.into());
        self
    }

    /// Credentials to add to every session, re-applied to each new one: `digest` with
    /// `user:password`, as `zkCli`'s `addauth digest user:password`. Other schemes are refused
    /// by [`connect`](SessionBuilder::connect) with [`Error::InvalidAuth`]: TLS client
    /// certificates (`x509`) and SASL have their own options, with the `tls` and `sasl`
    /// features.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::builder("127.0.0.1:2181").auth("digest", "app:secret").connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn auth(mut self, scheme: impl Into<String>, auth: impl Into<Vec<u8>>) -> Self {
        self.auth.push((scheme.into(), auth.into()));
        self
    }

    /// How many connection attempts in a row may fail (for the first session and for each
    /// replacement) before the session gives up with [`Error::Connect`] (default 10; at least 1).
    /// Attempts back off from 100 ms, doubling up to 2 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::builder("127.0.0.1:2181").reconnect_attempts(100).connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn reconnect_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Connects over TLS with these options (certificates of the CA to trust, and a client
    /// identity for `x509` authentication if the server wants one). Hosts without a scheme then
    /// use TLS; `tcp://host` still means plain text.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(ca_pem: &str) -> zk_lock::Result<()> {
    /// use zk_lock::zk::TlsOptions;
    /// let tls = TlsOptions::new().with_pem_ca(ca_pem).expect("a PEM certificate");
    /// let session = zk_lock::Session::builder("127.0.0.1:2281").tls(tls).connect().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, options: zk::TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// Authenticates every session with SASL (`DIGEST-MD5`, with the `sasl` feature).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// use zk_lock::zk::SaslOptions;
    /// let sasl = SaslOptions::digest_md5("app", "secret");
    /// let session = zk_lock::Session::builder("127.0.0.1:2181").sasl(sasl).connect().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sasl")]
    pub fn sasl(mut self, options: impl Into<zk::SaslOptions>) -> Self {
        self.sasl = Some(options.into());
        self
    }

    /// Checks the options, connects the first session and starts keeping a session up.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidConnectString`]: an empty or malformed connect string or chroot.
    /// * [`Error::InvalidSessionTimeout`]: a zero session timeout.
    /// * [`Error::InvalidAuth`]: an unknown auth scheme, or `digest` credentials without `:`.
    /// * [`Error::Connect`]: no session after the allowed attempts, or authentication failed.
    ///
    /// The first three are found before anything is sent.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped before it returns, it keeps no session open (one the server had
    /// already created times out there, with nothing in it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> zk_lock::Result<()> {
    /// let session = zk_lock::Session::builder("127.0.0.1:2181").connect().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<Session> {
        let target = self.target()?;
        let stop = Arc::new(Notify::new());
        let client = connect_with_retries(&target, self.attempts).await?;
        crate::events::connection_state(ConnectionState::Connected, client.session_id());
        let (current, _) = watch::channel(Current::Up(client.clone()));
        let shared = Arc::new(Shared {
            current,
            listeners: StdMutex::new(Vec::new()),
            last: StdMutex::new(ConnectionState::Connected),
            session_timeout: self.session_timeout,
            stop: stop.clone(),
        });
        tokio::spawn(keep_up(Arc::downgrade(&shared), client, target, self.attempts, stop));
        Ok(Session { shared })
    }

    fn target(&self) -> Result<Target> {
        if self.session_timeout.is_zero() {
            return Err(Error::InvalidSessionTimeout);
        }
        let mut target = connect::parse(&self.connect, self.chroot.as_deref())?;
        #[cfg(feature = "tls")]
        let tls_given = self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls_given = false;
        if self.connect.contains("tcp+tls://") && !tls_given {
            return Err(Error::InvalidConnectString {
                connect: self.connect.clone(),
                reason: "tcp+tls:// hosts need TLS options: see SessionBuilder::tls",
            });
        }
        for (scheme, auth) in &self.auth {
            connect::check_auth(scheme, auth)?;
        }
        let mut connector =
            zk::Client::connector().with_session_timeout(self.session_timeout).with_readonly(false).with_fail_eagerly();
        if let Some(timeout) = self.connection_timeout {
            connector = connector.with_connection_timeout(timeout);
        }
        for (scheme, auth) in &self.auth {
            connector = connector.with_auth(scheme, auth);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            connector = connector.with_tls(tls.clone());
            target.tls = true;
        }
        #[cfg(feature = "sasl")]
        if let Some(sasl) = &self.sasl {
            connector = connector.with_sasl(sasl.clone());
        }
        target.connector = Some(connector);
        Ok(target)
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn publish(&self, state: ConnectionState, session: zk::SessionId) {
        *lock(&self.last) = state;
        crate::events::connection_state(state, session);
        lock(&self.listeners).retain(|tx| tx.send(state).is_ok());
    }
}

/// One attempt after another, backing off, until `attempts` failed in a row (or one failed
/// for good: authentication).
async fn connect_with_retries(target: &Target, attempts: u32) -> Result<zk::Client> {
    let mut backoff = BACKOFF_FIRST;
    let mut failed = 0;
    loop {
        match target.connect().await {
            Ok(client) => return Ok(client),
            Err(source) => {
                failed += 1;
                let fatal = matches!(source, zk::Error::AuthFailed | zk::Error::BadArguments(_));
                tracing::warn!(target: "zk_lock", connect = %target.display, attempt = failed, error = %source, "could not establish a zookeeper session");
                if fatal || failed >= attempts {
                    return Err(Error::Connect {
                        connect: target.display.clone(),
                        attempts: failed,
                        source,
                        tls: target.tls,
                    });
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Follows the current session; when it is over, says so and establishes the next.
async fn keep_up(weak: Weak<Shared>, mut client: zk::Client, target: Target, attempts: u32, stop: Arc<Notify>) {
    loop {
        let mut states = client.state_watcher();
        let timeout = client.session_timeout();
        let mut suspended: Option<Instant> = None;
        let mut state = states.state();
        loop {
            match state {
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    if suspended.take().is_some() {
                        publish(&weak, ConnectionState::Reconnected, client.session_id());
                    }
                }
                zk::SessionState::Disconnected => {
                    if suspended.is_none() {
                        suspended = Some(Instant::now());
                        publish(&weak, ConnectionState::Suspended, client.session_id());
                    }
                }
                _ => break,
            }
            // The server expires a session it has not heard from for a session timeout: once we
            // have been cut off that long, it is over (or about to be), whatever the client says.
            let give_up = suspended.map(|at| at + timeout);
            tokio::select! {
                next = states.changed() => state = next,
                _ = sleep_until(give_up), if give_up.is_some() => {
                    tracing::warn!(target: "zk_lock", session = %client.session_id(), "no contact with zookeeper for a whole session timeout: starting a new session");
                    break;
                }
                _ = stop.notified() => return,
            }
        }
        let Some(shared) = weak.upgrade() else { return };
        shared.current.send_replace(Current::Connecting);
        shared.publish(ConnectionState::Lost, client.session_id());
        drop(shared);
        drop(client);
        let next = tokio::select! {
            next = connect_with_retries(&target, attempts) => next,
            _ = stop.notified() => return,
        };
        let Some(shared) = weak.upgrade() else { return };
        match next {
            Ok(new) => {
                tracing::info!(target: "zk_lock", session = %new.session_id(), "new zookeeper session");
                shared.current.send_replace(Current::Up(new.clone()));
                shared.publish(ConnectionState::NewSession, new.session_id());
                shared.publish(ConnectionState::Connected, new.session_id());
                client = new;
            }
            Err(error) => {
                tracing::error!(target: "zk_lock", %error, "giving up on zookeeper: no new session");
                shared.current.send_replace(Current::Failed(error));
                lock(&shared.listeners).clear();
                return;
            }
        }
    }
}

fn publish(weak: &Weak<Shared>, state: ConnectionState, session: zk::SessionId) {
    if let Some(shared) = weak.upgrade() {
        shared.publish(state, session);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
