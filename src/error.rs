//! The one error type of the crate.

use std::time::Duration;

use zookeeper_client as zk;

/// Everything that can go wrong in this crate.
///
/// Errors are `Send + Sync + Clone`, and their messages are lowercase, as the Rust API guidelines
/// ask. New variants may be added, so match with a wildcard arm.
///
/// # Examples
///
/// ```
/// use zk_lock::{Error, LockPath};
///
/// let err = LockPath::new("relative/path").unwrap_err();
/// assert!(matches!(err, Error::InvalidPath { .. }));
/// assert_eq!(err.to_string(), "invalid lock path \"relative/path\": must start with '/'");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The lock path is not a valid ZooKeeper path, or cannot hold lock nodes (for example it
    /// lies under an ephemeral node). Nothing was written to the server.
    #[error("invalid lock path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The ZooKeeper session expired: every ephemeral node of it, lock nodes included, is gone.
    /// The `Client` is dead for good; connect a new one.
    #[error("zookeeper session expired")]
    SessionExpired,

    /// The ZooKeeper client was closed, or its authentication failed for good.
    #[error("zookeeper client closed")]
    SessionClosed,

    /// The lock is no longer held: our lock node was deleted (by session expiry or by someone
    /// else), or the session may have expired while we could not reach the server.
    #[error("lock {path} lost")]
    LockLost {
        /// The lock path.
        path: String,
    },

    /// The server refused the request for lack of permission (ACL).
    #[error("not authorized on {path}")]
    NotAuthorized {
        /// The path the request was about.
        path: String,
    },

    /// `try_lock` found the lock taken: nothing was written.
    #[error("lock {path} is held by another contender")]
    WouldBlock {
        /// The lock path.
        path: String,
    },

    /// The lock was not granted within the deadline given to
    /// [`Mutex::lock_timeout`](crate::Mutex::lock_timeout). Our node, if one was created, is
    /// withdrawn.
    #[error("lock {path} not granted within {after:?}")]
    Timeout {
        /// The lock path.
        path: String,
        /// The deadline that passed.
        after: Duration,
    },

    /// Requests about `path` kept failing with connection errors (each retried with backoff)
    /// for `after`, twice the session timeout, without the session ending: the server may be
    /// refusing them (for example a request larger than its `jute.maxbuffer` makes it drop the
    /// connection), or it is unreachable. Any node we created is deleted in the background.
    /// Also from a `try_` acquire granted while the connection was in doubt, which would
    /// return a hold lost from the start: on a hold that ends on a suspension
    /// ([`LockBuilder::lose_on_suspend`](crate::LockBuilder::lose_on_suspend)), or on any hold
    /// after 85 % of the session timeout without contact. Then `after` is zero.
    #[error("connection trouble: requests about {path} kept failing for {after:?}")]
    ConnectionLoss {
        /// The path of the request that kept failing.
        path: String,
        /// How long it was retried.
        after: Duration,
    },

    /// The ACLs given to a lock cannot work: the list is empty (refused when the lock is
    /// built), or the server refused them (an unknown scheme, a malformed id). Nothing was
    /// written.
    #[error("invalid acl for {path}: {reason}")]
    InvalidAcl {
        /// The lock path.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A request would be larger than the server accepts (its `jute.maxbuffer`, 1 MiB unless
    /// configured otherwise; see [`MutexBuilder::max_request_size`](crate::MutexBuilder::max_request_size)).
    /// Refused before anything is sent.
    #[error("{what} too large: a request of {size} bytes, the limit is {limit}")]
    TooLarge {
        /// What is too large: `"lock path"` or `"node data"`.
        what: &'static str,
        /// The size of the request it makes, in bytes.
        size: usize,
        /// The limit it was checked against.
        limit: usize,
    },

    /// A [`MultiLock`](crate::MultiLock) needs at least one member, and at most one per path
    /// (a second member on the same path would wait for the first). Refused when it is made.
    #[error("invalid multi-lock: {reason}")]
    InvalidLockSet {
        /// Why it was refused.
        reason: &'static str,
    },

    /// A semaphore needs at least one permit. Refused when it is built.
    #[error("semaphore {path} needs at least one permit")]
    InvalidPermits {
        /// The semaphore's path.
        path: String,
    },

    /// The semaphore's directory says another permit count than ours: every client of one
    /// semaphore must agree on it. Nothing was written.
    #[error("semaphore {path} has {stored:?} permits, not {permits}")]
    PermitMismatch {
        /// The semaphore's path.
        path: String,
        /// The count we asked for.
        permits: u32,
        /// What the directory holds.
        stored: String,
    },

    /// An operation of a [fenced write](crate::FencedWrite) failed (the lock node itself was
    /// still there): nothing of the write was applied.
    #[error("fenced write: operation {index} on {path} failed: {source}")]
    OperationFailed {
        /// Index of the failing operation, in the order they were added.
        index: usize,
        /// Its path.
        path: String,
        /// What the server said.
        source: zk::Error,
    },

    /// The connect string given to a [`Session`](crate::Session) is empty or malformed (a
    /// host without a name, a port that is not 1 to 65535, an unknown scheme, a bad chroot).
    /// Nothing was sent.
    #[error("invalid connect string {connect:?}: {reason}")]
    InvalidConnectString {
        /// The connect string as given.
        connect: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A [`Session`](crate::Session) needs a session timeout above zero. Nothing was sent.
    #[error("invalid session timeout: it must be above zero")]
    InvalidSessionTimeout,

    /// Credentials given to [`SessionBuilder::auth`](crate::SessionBuilder::auth) that cannot
    /// work: an unknown scheme, or `digest` credentials that are not `user:password`. Nothing
    /// was sent.
    #[error("invalid {scheme:?} credentials: {reason}")]
    InvalidAuth {
        /// The scheme as given.
        scheme: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A [`Session`](crate::Session) could not establish a ZooKeeper session: `attempts`
    /// attempts in a row failed (the servers are unreachable, refused the TLS handshake, ...),
    /// or one failed for good (authentication). The session has given up.
    #[error("could not connect to zookeeper at {connect:?} ({attempts} attempts): {source}{}", connect_hint(*.tls, source))]
    Connect {
        /// The connect string.
        connect: String,
        /// How many attempts failed.
        attempts: u32,
        /// What the last attempt failed with.
        source: zk::Error,
        /// Whether TLS was asked for (then a refused handshake shows as "no available hosts").
        tls: bool,
    },

    /// A lease (maximum hold time) must be above zero, and only a lock built with a lease can
    /// extend one. Refused when the lock is built or the lease extended; nothing was written.
    #[error("invalid lease {lease:?}: {reason}")]
    InvalidLease {
        /// The lease given.
        lease: Duration,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Any other error the ZooKeeper client reported, with the path it was about.
    #[error("zookeeper error on {path}: {source}")]
    ZooKeeper {
        /// The path of the request.
        path: String,
        /// The client's error.
        source: zk::Error,
    },
}

fn connect_hint(tls: bool, source: &zk::Error) -> &'static str {
    match (tls, source) {
        (true, zk::Error::NoHosts | zk::Error::Timeout) => {
            " (with TLS: a server certificate that the given CA did not sign, or whose names do not match the host, \
             is refused; so is a port that does not speak TLS)"
        }
        _ => "",
    }
}

/// Result with this crate's [`Error`].
///
/// # Examples
///
/// ```no_run
/// async fn work(mutex: &zk_lock::Mutex) -> zk_lock::Result<()> {
///     let guard = mutex.lock().await?;
///     guard.release().await
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do with an error from the ZooKeeper client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The request may or may not have been applied (connection trouble): look, then retry.
    Unknown,
    /// The session is over for good.
    Terminal,
    /// The server answered with a definite error.
    Definite,
}

/// Sorts a client error into what the caller must do about it.
///
/// `zookeeper-client` 0.11 can fail requests that were in flight when a connection died with a
/// raw transport error (`Custom`, `UnexpectedError`) or `Timeout` instead of `ConnectionLoss`; all
/// of them mean "outcome unknown".
pub(crate) fn outcome(err: &zk::Error) -> Outcome {
    use zk::Error as E;
    match err {
        E::SessionExpired | E::ClientClosed | E::AuthFailed => Outcome::Terminal,
        E::ConnectionLoss
        | E::Timeout
        | E::Custom(_)
        | E::UnexpectedError(_)
        | E::SessionMoved
        | E::Throttled
        | E::NotReadOnly
        | E::NoHosts => Outcome::Unknown,
        _ => Outcome::Definite,
    }
}

impl Error {
    /// Converts a client error about `path` into ours, giving ACL and session errors their own
    /// variants.
    pub(crate) fn from_zk(err: zk::Error, path: &str) -> Error {
        match err {
            zk::Error::SessionExpired => Error::SessionExpired,
            zk::Error::ClientClosed | zk::Error::AuthFailed => Error::SessionClosed,
            zk::Error::NoAuth => Error::NotAuthorized { path: path.to_owned() },
            zk::Error::InvalidAcl => Error::InvalidAcl { path: path.to_owned(), reason: "refused by the server" },
            source => Error::ZooKeeper { path: path.to_owned(), source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert<T: Send + Sync + 'static + std::error::Error>() {}
        assert::<Error>();
    }

    #[test]
    fn raw_transport_errors_mean_unknown_outcome() {
        assert_eq!(outcome(&zk::Error::ConnectionLoss), Outcome::Unknown);
        assert_eq!(outcome(&zk::Error::Timeout), Outcome::Unknown);
        assert_eq!(outcome(&zk::Error::UnexpectedError("reset".into())), Outcome::Unknown);
        assert_eq!(outcome(&zk::Error::SessionExpired), Outcome::Terminal);
        assert_eq!(outcome(&zk::Error::NoNode), Outcome::Definite);
    }

    #[test]
    fn session_and_acl_errors_get_their_own_variants() {
        assert_eq!(Error::from_zk(zk::Error::SessionExpired, "/a"), Error::SessionExpired);
        assert_eq!(Error::from_zk(zk::Error::NoAuth, "/a"), Error::NotAuthorized { path: "/a".into() });
        assert_eq!(
            Error::from_zk(zk::Error::NoNode, "/a"),
            Error::ZooKeeper { path: "/a".into(), source: zk::Error::NoNode }
        );
    }
}
