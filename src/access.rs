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
/// The process's peer identity (see `identity`), also one of ours.
pub(crate) const PEER_USER_PREFIX: &str = "zk-lock-peer-";

use zk::Permission as P;

/// Whether `name` is one of our own digest users: `zk-lock-<32 hex>` (a session's) or
/// `zk-lock-peer-<32 hex>` (a process's), as `identity` makes them.
pub(crate) fn is_own_user(name: &str) -> bool {
    let rest = name.strip_prefix(PEER_USER_PREFIX).or_else(|| name.strip_prefix(OWN_USER_PREFIX));
    rest.is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Every permission `user`'s ACLs give to anyone.
fn granted(user: &[zk::Acl]) -> P {
    user.iter().fold(P::NONE, |all, acl| all | acl.permission())
}

fn world_has(user: &[zk::Acl], perms: P) -> bool {
    user.iter().any(|acl| acl.auth_id() == &zk::AuthId::anyone() && acl.permission().has(perms))
}

/// Whether `user`'s ACLs already give `perms` to every session (`world:anyone`), or to the
/// session's own identities (`auth`, which the server expands to the peer identity too).
fn covers(user: &[zk::Acl], perms: P) -> bool {
    world_has(user, perms) || user.iter().any(|acl| acl.scheme() == "auth" && acl.permission().has(perms))
}

/// Whether a session without credentials needs the process's peer identity for `user`'s ACLs:
/// unless they give every session all a contender does (the default, `world:anyone` ALL).
pub(crate) fn needs_peer(user: &[zk::Acl]) -> bool {
    !world_has(user, P::READ | P::WRITE | P::CREATE | P::DELETE)
}

/// The peer identities (of this process or another) that `acls`, a lock directory's, name.
pub(crate) fn peers_in(acls: &[zk::Acl]) -> Vec<zk::AuthId> {
    acls.iter()
        .filter(|acl| acl.scheme() == "digest")
        .filter(|acl| match acl.id().split_once(':') {
            // `user:<28 base64>` exactly: the request size is bounded for such entries.
            Some((user, hash)) => user.starts_with(PEER_USER_PREFIX) && is_own_user(user) && hash.len() == 28,
            None => false,
        })
        .map(|acl| acl.auth_id().clone())
        .collect()
}

/// ACLs of the directories we create: the user's, plus, on a session without credentials
/// (`peer` given), what this process's other credential-less contenders need (list, join,
/// leave, and write the setting a semaphore keeps there), as far as the user's ACLs give it to
/// anyone at all and do not give it to them already.
pub(crate) fn dir_acls(user: &[zk::Acl], peer: Option<&zk::AuthId>) -> Vec<zk::Acl> {
    let mut out = user.to_vec();
    let perms = granted(user) & (P::READ | P::WRITE | P::CREATE | P::DELETE);
    if let Some(peer) = peer.filter(|_| perms != P::NONE && !covers(user, perms)) {
        out.push(zk::Acl::new(perms, peer.clone()));
    }
    out
}

/// ACLs of our lock nodes: every entry of the user's without WRITE (unless `others_write`: a
/// revocable lock's node, which others write to ask it to let go) and ADMIN; the same for this
/// process's peer identity on a session without credentials (`peer`) and for the peer
/// identities the directory names (`dir_peers`: credential-less contenders of the process
/// that made it, who must be able to follow our node), as far as the user's ACLs give those
/// permissions to anyone; plus everything for `owner`, the session's own identity.
///
/// `auth` entries are kept: the server expands them to the session's credentials (and to our
/// own identities), so that clients sharing those credentials can read and watch each other's
/// nodes, but not write them.
pub(crate) fn node_acls(
    user: &[zk::Acl],
    owner: zk::Acl,
    peer: Option<&zk::AuthId>,
    dir_peers: &[zk::AuthId],
    others_write: bool,
) -> Vec<zk::Acl> {
    let kept = if others_write { P::READ | P::WRITE | P::CREATE | P::DELETE } else { P::READ | P::CREATE | P::DELETE };
    let mut out: Vec<zk::Acl> = user
        .iter()
        .filter_map(|acl| {
            let keep = acl.permission() & kept;
            (keep != P::NONE).then(|| zk::Acl::new(keep, acl.auth_id().clone()))
        })
        .collect();
    let perms = granted(user) & kept;
    if perms != P::NONE {
        if let Some(peer) = peer.filter(|_| !covers(user, perms)) {
            out.push(zk::Acl::new(perms, peer.clone()));
        }
        // Another process's peer: an `auth` entry of ours does not name it.
        if !world_has(user, perms) {
            out.extend(dir_peers.iter().filter(|p| Some(*p) != peer).map(|p| zk::Acl::new(perms, p.clone())));
        }
    }
    out.push(owner);
    out
}

/// Whether the session has credentials of its own (not counting `ip`, which every session has,
/// and our own identity), from the server's `whoAmI` answer.
pub(crate) fn has_credentials(me: &[zk::AuthUser]) -> bool {
    me.iter().any(|u| match u.scheme() {
        "ip" | "world" => false,
        "digest" => !is_own_user(u.user()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use zk::{Acl, AuthId, AuthUser, Permission as P};

    fn owner() -> Acl {
        Acl::new(P::ALL, AuthId::new("digest", "zk-lock-me:x"))
    }

    #[test]
    fn only_the_owner_may_write_and_everyone_named_keeps_the_rest() {
        let acls = node_acls(&zk::Acls::anyone_all(), owner(), None, &[], false);
        assert_eq!(acls, [Acl::new(P::READ | P::CREATE | P::DELETE, AuthId::anyone()), owner()]);
        // creator_all: the session's credentials keep READ (and what else is not WRITE/ADMIN).
        let acls = node_acls(&zk::Acls::creator_all(), owner(), None, &[], false);
        assert_eq!(acls, [Acl::new(P::READ | P::CREATE | P::DELETE, AuthId::authed()), owner()]);
        // An entry left with nothing is dropped.
        let write_only = [Acl::new(P::WRITE, AuthId::anyone())];
        assert_eq!(node_acls(&write_only, owner(), None, &[], false), [owner()]);
        // A revocable lock keeps WRITE for those the ACLs give it to, never ADMIN.
        let acls = node_acls(&zk::Acls::anyone_all(), owner(), None, &[], true);
        assert_eq!(acls[0], Acl::new(P::READ | P::WRITE | P::CREATE | P::DELETE, AuthId::anyone()));
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_process_peers_get_what_the_acls_give_anyone_and_not_already_them() {
        let peer = AuthId::new("digest", &format!("zk-lock-peer-{HEX}:{}", "h".repeat(28)));
        let rcd = P::READ | P::CREATE | P::DELETE;
        // Explicit digest ACLs name someone else: this process's peers get their own entry.
        let team = [Acl::new(P::ALL, AuthId::new("digest", "team:hash="))];
        let acls = node_acls(&team, owner(), Some(&peer), &[], false);
        assert_eq!(acls, [Acl::new(rcd, team[0].auth_id().clone()), Acl::new(rcd, peer.clone()), owner()]);
        let dir = dir_acls(&team, Some(&peer));
        assert_eq!(dir, [team[0].clone(), Acl::new(P::READ | P::WRITE | P::CREATE | P::DELETE, peer.clone())]);
        // `auth` (expanded by the server to the peer identity too) and `world:anyone` already do.
        for user in [zk::Acls::creator_all(), zk::Acls::anyone_all()] {
            assert_eq!(node_acls(&user, owner(), Some(&peer), &[], false).len(), 2, "{user:?}");
            assert_eq!(dir_acls(&user, Some(&peer)), user.to_vec());
        }
        // No more than the ACLs give anyone: without DELETE for anybody, none for the peers.
        let no_delete = [Acl::new(P::READ | P::CREATE, AuthId::new("digest", "team:hash="))];
        assert_eq!(dir_acls(&no_delete, Some(&peer))[1], Acl::new(P::READ | P::CREATE, peer.clone()));
        // A session with credentials has no peer identity: the ACLs are the user's alone, but
        // the peers the directory names (its maker's) may follow its node.
        assert_eq!(dir_acls(&team, None), team);
        let acls = node_acls(&team, owner(), None, std::slice::from_ref(&peer), false);
        assert_eq!(acls[1], Acl::new(rcd, peer.clone()));
        assert!(!needs_peer(&zk::Acls::anyone_all()) && needs_peer(&zk::Acls::creator_all()) && needs_peer(&team));
        let dir = [
            team[0].clone(),
            Acl::new(P::ALL, peer.clone()),
            Acl::new(P::ALL, AuthId::new("digest", "zk-lock-peer-x:y")),
        ];
        assert_eq!(peers_in(&dir), [peer]);
    }

    #[test]
    fn credentials_are_the_users_not_ip_nor_ours() {
        let ip = AuthUser::new("ip", "127.0.0.1");
        let ours = AuthUser::new("digest", &format!("zk-lock-{HEX}"));
        let peer = AuthUser::new("digest", &format!("zk-lock-peer-{HEX}"));
        assert!(!has_credentials(&[ip.clone(), ours.clone(), peer]));
        // A user's own credentials that merely look like ours are the user's.
        assert!(has_credentials(&[AuthUser::new("digest", "zk-lock-admin")]));
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
