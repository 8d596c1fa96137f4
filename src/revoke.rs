//! Asking a holder to let go (Apache Curator's `Revoker` protocol).

use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::monitor::REVOKE;

/// Asks the holder of lock node `node` to let go, as Curator's `Revoker.attemptRevoke` does: writes
/// `__REVOKE__` into the node. A holder whose lock is
/// [`revocable`](crate::LockBuilder::revocable) (a zk-lock guard, or a Curator lock with a
/// revocation listener) is told and decides; nothing is released by itself. Returns `false` when
/// the node is already gone.
///
/// # Errors
///
/// [`Error::NotAuthorized`] when the node does not take requests: its lock is not revocable
/// (zk-lock nodes are writable by their owner alone then), or the ACLs do not give us WRITE.
///
/// # Cancel safety
///
/// The request is sent when the future is first polled; once sent, dropping the future does not
/// withdraw it.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: zk_lock::zk::Client, node: String) -> zk_lock::Result<()> {
/// if zk_lock::revoke(&client, &node).await? {
///     println!("asked {node} to let go");
/// }
/// # Ok(()) }
/// ```
pub async fn revoke(client: &zk::Client, node: &str) -> Result<bool> {
    crate::path::check_node_path(node)?;
    match crate::retry::until_known(client, node, || client.set_data(node, REVOKE, None)).await? {
        Ok(_) => Ok(true),
        Err(zk::Error::NoNode) => Ok(false),
        Err(e) => Err(Error::from_zk(e, node)),
    }
}
