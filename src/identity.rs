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
            let user = format!("zk-lock-{}", uuid::Uuid::new_v4().simple());
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

/// `acls` with WRITE and ADMIN taken from everyone (and `auth` entries dropped), plus `owner`.
pub(crate) fn owner_writable(acls: &[zk::Acl], owner: zk::Acl) -> Vec<zk::Acl> {
    use zk::Permission as P;
    let mut out: Vec<zk::Acl> = acls
        .iter()
        .filter(|acl| acl.scheme() != "auth")
        .filter_map(|acl| {
            let keep = [P::READ, P::CREATE, P::DELETE]
                .into_iter()
                .filter(|p| acl.permission().has(*p))
                .fold(P::NONE, |a, b| a | b);
            (keep != P::NONE).then(|| zk::Acl::new(keep, acl.auth_id().clone()))
        })
        .collect();
    out.push(owner);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_id_is_zookeepers() {
        // As `DigestAuthenticationProvider.generateDigest("super:test")` gives it.
        assert_eq!(digest_id("super", "test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn only_the_owner_may_write() {
        let owner = zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", "me:x"));
        let acls = owner_writable(&zk::Acls::anyone_all(), owner.clone());
        assert_eq!(acls.len(), 2);
        assert!(!acls[0].permission().has(zk::Permission::WRITE));
        assert!(!acls[0].permission().has(zk::Permission::ADMIN));
        assert!(acls[0].permission().has(zk::Permission::READ));
        assert_eq!(acls[1], owner);
        assert_eq!(owner_writable(&zk::Acls::creator_all(), owner.clone()), [owner]);
    }
}
