//! Sizes the server refuses, checked before anything is sent.
//!
//! A ZooKeeper server closes the connection of a client that sends a packet larger than its
//! `jute.maxbuffer` (1 MiB - 1 byte unless configured otherwise), without an error answer: the
//! client can only see a connection loss. So the sizes of our requests are checked when a lock
//! is built, against a limit that defaults to the server's default.

use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::path::LockPath;

/// The server's default `jute.maxbuffer`: `0xfffff` bytes.
pub(crate) const DEFAULT_MAX_REQUEST: usize = 0xfffff;

/// `_c_` + uuid + `-`.
const UNIQUE_PREFIX_LEN: usize = 3 + 36 + 1;
/// The ACL entry of the session's own identity: `digest`, `zk-lock-<32 hex>:<28 base64>`.
const OWNER_ACL_LEN: usize = 4 + (4 + 6) + (4 + 8 + 32 + 1 + 28);
/// The ACL entry of a process's peer identity (ours, on a session without credentials, and the
/// one the directory names, at most one each): `digest`, `zk-lock-peer-<32 hex>:<28 base64>`.
const PEER_ACL_LEN: usize = 4 + (4 + 6) + (4 + 13 + 32 + 1 + 28);

/// Bytes of a serialized string or buffer: a length, then the bytes.
fn buffer(len: usize) -> usize {
    4 + len
}

/// The size of the create request of a lock node (the largest request a lock sends): header,
/// path, data, ACLs, flags.
fn create_request(dir: &LockPath, marker: &str, data: &[u8], acls: &[zk::Acl]) -> usize {
    let path = dir.as_str().len() + 1 + UNIQUE_PREFIX_LEN + marker.len();
    let acls: usize = acls.iter().map(|a| 4 + buffer(a.scheme().len()) + buffer(a.id().len())).sum();
    // xid, op code; path; data; ACL vector; create flags
    8 + buffer(path) + buffer(data.len()) + 4 + acls + OWNER_ACL_LEN + 2 * PEER_ACL_LEN + 4
}

/// Checks that a lock node of `dir` with `data` fits in a request of `limit` bytes.
pub(crate) fn check_create(dir: &LockPath, marker: &str, data: &[u8], acls: &[zk::Acl], limit: usize) -> Result<()> {
    let without_data = create_request(dir, marker, &[], acls);
    if without_data > limit {
        return Err(Error::TooLarge { what: "lock path", size: without_data, limit });
    }
    let size = without_data + data.len();
    if size > limit {
        return Err(Error::TooLarge { what: "node data", size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_near_the_limit_is_refused_and_well_below_it_accepted() {
        let dir = LockPath::new("/locks/a").unwrap();
        let acls: Vec<zk::Acl> = zk::Acls::anyone_all().iter().cloned().collect();
        let check = |len: usize| check_create(&dir, "lock-", &vec![0; len], &acls, DEFAULT_MAX_REQUEST);
        assert!(check(0).is_ok());
        assert!(check(DEFAULT_MAX_REQUEST - 1024).is_ok());
        assert!(matches!(check(DEFAULT_MAX_REQUEST - 100), Err(Error::TooLarge { what: "node data", .. })));
        assert!(matches!(check(DEFAULT_MAX_REQUEST + 1), Err(Error::TooLarge { what: "node data", .. })));
        let long = LockPath::new(format!("/{}", "x".repeat(DEFAULT_MAX_REQUEST))).unwrap();
        let refused = check_create(&long, "lock-", &[], &acls, DEFAULT_MAX_REQUEST);
        assert!(matches!(refused, Err(Error::TooLarge { what: "lock path", .. })));
    }
}
