//! Who may do what to a lock: the ACLs of our nodes and of the directories we create, and the
//! check, made before the first create, that we will be allowed to delete what we create.
//!
//! What each participant needs, as ZooKeeper decides it:
//!
//! | on | permission | for |
//! |---|---|---|
//! | the lock directory | READ | listing the queue (every acquire, `participants`) |
//! | the lock directory | CREATE | joining the queue |
//! | the lock directory | DELETE | leaving it: release, withdraw, cleanup (DELETE is checked on the *parent*) |
//! | the parents of the directory | CREATE | only when the lock creates missing directories |
//! | a lock node | READ | watching it (the waiter behind it), reading its data (`participants`): the server delivers no watch event on a node the watcher may not read, so a waiter refused READ fails with `NotAuthorized` |
//! | a lock node | WRITE, ADMIN | the owner alone: the handoff writes the node, so nobody else may |

use zookeeper_client as zk;

/// Our own digest users are named `zk-lock-<hex>` (see `identity`): they are not the user's.
pub(crate) const OWN_USER_PREFIX: &str = "zk-lock-";

/// ACLs of our lock nodes: every entry of the user's without WRITE (unless `others_write`: a
/// revocable lock's node, which others write to ask it to let go) and ADMIN, plus everything for
/// `owner`, the session's own identity.
///
/// `auth` entries are kept: the server expands them to the session's credentials (and to our
/// own identity, which is harmless), so that clients sharing those credentials can read and
/// watch each other's nodes, but not write them.
pub(crate) fn node_acls(user: &[zk::Acl], owner: zk::Acl, others_write: bool) -> Vec<zk::Acl> {
    use zk::Permission as P;
    let kept: &[P] =
        if others_write { &[P::READ, P::WRITE, P::CREATE, P::DELETE] } else { &[P::READ, P::CREATE, P::DELETE] };
    let mut out: Vec<zk::Acl> = user
        .iter()
        .filter_map(|acl| {
            let keep = kept.iter().copied().filter(|p| acl.permission().has(*p)).fold(P::NONE, |a, b| a | b);
            (keep != P::NONE).then(|| zk::Acl::new(keep, acl.auth_id().clone()))
        })
        .collect();
    out.push(owner);
    out
}

/// Whether the session has credentials of its own (not counting `ip`, which every session has,
/// and our own identity), from the server's `whoAmI` answer.
pub(crate) fn has_credentials(me: &[zk::AuthUser]) -> bool {
    me.iter().any(|u| match u.scheme() {
        "ip" | "world" => false,
        "digest" => !u.user().starts_with(OWN_USER_PREFIX),
        _ => true,
    })
}

/// Whether `acls` (of a lock directory) let a session known as `me` delete its children.
/// `false` only when no entry with DELETE can be ours; entries we cannot judge from the client
/// (ip masks, other schemes' naming) count as ours.
pub(crate) fn may_delete_children(acls: &[zk::Acl], me: &[zk::AuthUser]) -> bool {
    if me.iter().any(|u| u.scheme() == "super") {
        return true;
    }
    acls.iter().filter(|acl| acl.permission().has(zk::Permission::DELETE)).any(|acl| match acl.scheme() {
        "world" => acl.id() == "anyone",
        // In ACLs we give ourselves: the server expands it to the session's identities.
        "auth" => true,
        // `whoAmI` names digest users without their password hash: a name match counts.
        "digest" => {
            let user = acl.id().split(':').next().unwrap_or_default();
            me.iter().any(|u| u.scheme() == "digest" && u.user() == user)
        }
        "ip" => true,
        scheme => me.iter().any(|u| u.scheme() == scheme),
    })
}

/// Whether `acls` hold an `auth` entry (as [`zk::Acls::creator_all`] does).
pub(crate) fn names_the_creator(acls: &[zk::Acl]) -> bool {
    acls.iter().any(|acl| acl.scheme() == "auth")
}

#[cfg(test)]
mod tests {
    use super::*;
    use zk::{Acl, AuthId, AuthUser, Permission as P};

    fn owner() -> Acl {
        Acl::new(P::ALL, AuthId::new("digest", "zk-lock-me:x"))
    }

    #[test]
    fn only_the_owner_may_write_and_everyone_named_keeps_the_rest() {
        let acls = node_acls(&zk::Acls::anyone_all(), owner(), false);
        assert_eq!(acls, [Acl::new(P::READ | P::CREATE | P::DELETE, AuthId::anyone()), owner()]);
        // creator_all: the session's credentials keep READ (and what else is not WRITE/ADMIN).
        let acls = node_acls(&zk::Acls::creator_all(), owner(), false);
        assert_eq!(acls, [Acl::new(P::READ | P::CREATE | P::DELETE, AuthId::authed()), owner()]);
        // An entry left with nothing is dropped.
        let write_only = [Acl::new(P::WRITE, AuthId::anyone())];
        assert_eq!(node_acls(&write_only, owner(), false), [owner()]);
        // A revocable lock keeps WRITE for those the ACLs give it to, never ADMIN.
        let acls = node_acls(&zk::Acls::anyone_all(), owner(), true);
        assert_eq!(acls[0], Acl::new(P::READ | P::WRITE | P::CREATE | P::DELETE, AuthId::anyone()));
    }

    #[test]
    fn credentials_are_the_users_not_ip_nor_ours() {
        let ip = AuthUser::new("ip", "127.0.0.1");
        let ours = AuthUser::new("digest", "zk-lock-0123");
        assert!(!has_credentials(&[ip.clone(), ours.clone()]));
        assert!(has_credentials(&[ip.clone(), ours, AuthUser::new("digest", "app")]));
        assert!(has_credentials(&[ip, AuthUser::new("x509", "CN=client")]));
    }

    #[test]
    fn delete_permission_is_judged_from_the_sessions_identities() {
        let me = [AuthUser::new("ip", "127.0.0.1"), AuthUser::new("digest", "app")];
        let open = zk::Acls::anyone_all();
        assert!(may_delete_children(&open, &me));
        let no_delete = [Acl::new(P::READ | P::CREATE, AuthId::anyone())];
        assert!(!may_delete_children(&no_delete, &me));
        let app = [Acl::new(P::ALL, AuthId::new("digest", "app:hash="))];
        assert!(may_delete_children(&app, &me));
        let other = [Acl::new(P::ALL, AuthId::new("digest", "other:hash="))];
        assert!(!may_delete_children(&other, &me));
        assert!(may_delete_children(&other, &[AuthUser::new("super", "")]));
        let x509 = [Acl::new(P::ALL, AuthId::new("x509", "CN=a"))];
        assert!(!may_delete_children(&x509, &me));
        assert!(may_delete_children(&zk::Acls::creator_all(), &me));
    }
}
