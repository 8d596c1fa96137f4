//! The session's own identity: the only one allowed to write its lock nodes.
//!
//! A handoff (see `queue`) is a data change of the holder's node, so nobody but the holder may
//! be able to change that data. On first use, each session is given a random `digest` user of
//! its own, and lock nodes grant WRITE (and ADMIN) to that user alone: not to the `auth` scheme,
//! which would include every credential the session shares with other clients.
//!
//! The identity is kept per session id for the life of the process, so a session authenticates
//! once however many `Mutex` handles come and go (the client re-sends it on reconnects).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use base64::Engine;
use tokio::sync::OnceCell;
use zookeeper_client as zk;

use crate::access::OWN_USER_PREFIX;

type Identities = StdMutex<HashMap<i64, Arc<OnceCell<zk::Acl>>>>;

fn identities() -> &'static Identities {
    static IDENTITIES: OnceLock<Identities> = OnceLock::new();
    IDENTITIES.get_or_init(Default::default)
}

/// The ACL entry that gives all permissions to `client`'s session, and to nobody else;
/// authenticates the session with its own identity the first time.
pub(crate) async fn owner_acl(client: &zk::Client) -> Result<zk::Acl, zk::Error> {
    let cell = {
        let mut map = identities().lock().unwrap_or_else(|e| e.into_inner());
        map.entry(client.session_id().0).or_default().clone()
    };
    let acl = cell
        .get_or_try_init(|| async {
            let user = format!("{OWN_USER_PREFIX}{}", uuid::Uuid::new_v4().simple());
            let password = uuid::Uuid::new_v4().simple().to_string();
            let credentials = format!("{user}:{password}");
            client.auth("digest", credentials.as_bytes()).await?;
            Ok::<_, zk::Error>(zk::Acl::new(
                zk::Permission::ALL,
                zk::AuthId::new("digest", &digest_id(&user, &password)),
            ))
        })
        .await?;
    Ok(acl.clone())
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
