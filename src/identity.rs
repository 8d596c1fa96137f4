//! The crate's own identities: the session's, the only one allowed to write its lock nodes, and
//! the process's, shared by this process's sessions that have no credentials of their own.
//!
//! A handoff (see `queue`) is a data change of the holder's node, so nobody but the holder may
//! be able to change that data. On first use, each session is given a random `digest` user of
//! its own (its *owner* identity), and lock nodes grant WRITE (and ADMIN) to that user alone:
//! not to the `auth` scheme, which would include every credential the session shares with other
//! clients.
//!
//! A session without credentials (no `digest`, `sasl`, `x509`...) is also given the process's
//! *peer* identity, one random `digest` user per process. An `auth` entry (as in
//! `Acls::creator_all`) then names this process's credential-less contenders, as it names the
//! holders of shared credentials for a fleet that has them; explicit ACLs get an entry for it
//! (see `access`). Nobody but this process and the server knows its password, so a third
//! party never has it. A session with credentials never gets it, so sessions of other
//! credentials in the same process stay strangers to each other's locks; nor does a lock whose
//! ACLs are open to everyone, which would gain nothing by it.
//!
//! Both are kept per session id for the life of the process, so a session authenticates once
//! however many lock handles come and go (the client re-sends them on reconnects).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use base64::Engine;
use tokio::sync::OnceCell;
use zookeeper_client as zk;

use crate::access::{OWN_USER_PREFIX, PEER_USER_PREFIX};

#[derive(Debug, Default)]
struct SessionIds {
    owner: OnceCell<zk::Acl>,
    peer: OnceCell<zk::AuthId>,
}

type Identities = StdMutex<HashMap<i64, Arc<SessionIds>>>;

fn identities() -> &'static Identities {
    static IDENTITIES: OnceLock<Identities> = OnceLock::new();
    IDENTITIES.get_or_init(Default::default)
}

fn of_session(client: &zk::Client) -> Arc<SessionIds> {
    let mut map = identities().lock().unwrap_or_else(|e| e.into_inner());
    map.entry(client.session_id().0).or_default().clone()
}

/// A random `digest` user and password.
fn random_user(prefix: &str) -> (String, String) {
    (format!("{prefix}{}", uuid::Uuid::new_v4().simple()), uuid::Uuid::new_v4().simple().to_string())
}

/// The ACL entry that gives all permissions to `client`'s session, and to nobody else;
/// authenticates the session with its own identity the first time.
pub(crate) async fn owner_acl(client: &zk::Client) -> Result<zk::Acl, zk::Error> {
    let ids = of_session(client);
    let acl = ids
        .owner
        .get_or_try_init(|| async {
            let (user, password) = random_user(OWN_USER_PREFIX);
            client.auth("digest", format!("{user}:{password}").as_bytes()).await?;
            Ok::<_, zk::Error>(zk::Acl::new(
                zk::Permission::ALL,
                zk::AuthId::new("digest", &digest_id(&user, &password)),
            ))
        })
        .await?;
    Ok(acl.clone())
}

/// The process's peer identity (see the module's docs); authenticates `client`'s session with
/// it the first time. Only for sessions without credentials of their own.
pub(crate) async fn peer_id(client: &zk::Client) -> Result<zk::AuthId, zk::Error> {
    static PEER: OnceLock<(String, String)> = OnceLock::new();
    let (user, password) = PEER.get_or_init(|| random_user(PEER_USER_PREFIX));
    let ids = of_session(client);
    let id = ids
        .peer
        .get_or_try_init(|| async {
            client.auth("digest", format!("{user}:{password}").as_bytes()).await?;
            Ok::<_, zk::Error>(zk::AuthId::new("digest", &digest_id(user, password)))
        })
        .await?;
    Ok(id.clone())
}

/// ZooKeeper's digest id for `user:password`: `user:base64(sha1("user:password"))`.
fn digest_id(user: &str, password: &str) -> String {
    let hash = sha1_smol::Sha1::from(format!("{user}:{password}")).digest().bytes();
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_id_is_zookeepers() {
        // As `DigestAuthenticationProvider.generateDigest("super:test")` gives it.
        assert_eq!(digest_id("super", "test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }
}
