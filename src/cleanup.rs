//! The duty to delete our lock node, armed before the create is sent.
//!
//! A [`NodeCleanup`] exists from before an acquire attempt sends its create until its node is
//! known to be gone. Whatever ends the attempt or the hold (an error, a timeout, the caller
//! dropping the future, a guard dropped without `release`), dropping an armed cleanup queues the
//! delete at once (requests are sent when called, so this works even from a synchronous `Drop`)
//! and then retries it in the background, whatever deadline the caller had: until the node is
//! gone or the session is over, within the bounds of `retry` (twice the session timeout of
//! consecutive connection failures) and, for a delete refused for lack of permission,
//! [`REFUSED_FOR`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use zookeeper_client as zk;

use crate::error::{outcome, Error, Outcome, Result};
use crate::events;
use crate::node::AttemptName;
use crate::path::LockPath;
use crate::retry::{until_known, Retry};

/// How often, and for how long, the background retries a delete the server refused for lack of
/// permission (someone took DELETE away from the lock directory while we held it): an operator
/// who gives it back frees the lock without anyone restarting. In any case the node goes when the
/// session ends.
const REFUSED_EVERY: Duration = Duration::from_secs(1);
const REFUSED_FOR: Duration = Duration::from_secs(600);

/// Deletes `node` until it is gone or the session is over, whoever holds the duty (a lease
/// that ran out, while its guard may still be alive): each round is the usual bounded retry,
/// and a failure or refusal is tried again every [`REFUSED_EVERY`] for [`REFUSED_FOR`], as the
/// background does.
pub(crate) async fn delete_insisting(client: &zk::Client, node: &str) -> Result<()> {
    let until = tokio::time::Instant::now() + REFUSED_FOR;
    loop {
        let error = match until_known(client, node, || client.delete(node, None)).await {
            Ok(Ok(()) | Err(zk::Error::NoNode)) => return Ok(()),
            Ok(Err(e)) if outcome(&e) == Outcome::Terminal => return Ok(()),
            Ok(Err(e)) => Error::from_zk(e, node),
            Err(Error::SessionExpired | Error::SessionClosed) => return Ok(()),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= until {
            return Err(error);
        }
        tracing::debug!(target: "zk_lock", node, %error, "could not delete the node; trying again");
        tokio::time::sleep(REFUSED_EVERY).await;
    }
}

/// Deletes the node of a hold that has ended on its own (`Lost` for `why`, and marked as
/// released by us, so that the delete is not taken for a loss, nor sent as a handoff), with
/// [`delete_insisting`].
pub(crate) async fn delete_lost(tracker: std::sync::Arc<crate::state::Tracker>, client: zk::Client, why: &'static str) {
    let node = tracker.node.clone();
    let lock = tracker.lock().to_owned();
    drop(tracker);
    match delete_insisting(&client, &node).await {
        Ok(()) => tracing::debug!(target: "zk_lock", lock, node, "{why}: node deleted"),
        Err(error) => {
            tracing::error!(target: "zk_lock", lock, node, %error, "{why}, but the node could not be deleted")
        }
    }
}

/// What a delete does when the server refuses it for lack of permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnRefusal {
    /// Report it (a `release()` the caller awaits).
    Fail,
    /// Keep trying (the background), see [`REFUSED_FOR`].
    Insist,
}

/// The nodes of one queue whose delete the server refused for lack of permission, for as long
/// as they are there: the queue neither creates more nodes nor waits behind one of them.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    nodes: StdMutex<HashSet<String>>,
    changed: Notify,
}

impl Refused {
    fn nodes(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, node: &str) {
        if self.nodes().insert(node.to_owned()) {
            self.changed.notify_waiters();
        }
    }

    fn remove(&self, node: &str) {
        self.nodes().remove(node);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nodes().is_empty()
    }

    pub(crate) fn contains(&self, node: &str) -> bool {
        self.nodes().contains(node)
    }

    /// Resolves when a node is added (create it, and `enable` it, before looking).
    pub(crate) fn added(&self) -> Notified<'_> {
        self.changed.notified()
    }
}

type Reply<'a> = Pin<Box<dyn Future<Output = Result<(), zk::Error>> + Send + 'a>>;

#[derive(Debug)]
pub(crate) struct NodeCleanup {
    client: zk::Client,
    dir: LockPath,
    attempt: AttemptName,
    /// Full path of our node once the create's answer told it.
    node: Option<String>,
    /// The node is a granted lock: release it with a handoff (see [`delete_request`]).
    handoff: bool,
    /// Other nodes of this attempt (a create retried after an unknown outcome that committed
    /// twice): deleted with ours.
    duplicates: Vec<String>,
    /// The queue's record of nodes whose delete was refused.
    refused: Arc<Refused>,
    armed: bool,
}

impl NodeCleanup {
    pub(crate) fn arm(client: zk::Client, dir: LockPath, attempt: AttemptName, refused: Arc<Refused>) -> NodeCleanup {
        NodeCleanup { client, dir, attempt, node: None, handoff: false, duplicates: Vec::new(), refused, armed: true }
    }

    pub(crate) fn set_node(&mut self, node: String) {
        self.node = Some(node);
    }

    pub(crate) fn client(&self) -> &zk::Client {
        &self.client
    }

    /// The node now holds the lock: its delete becomes a handoff.
    pub(crate) fn set_handoff(&mut self) {
        self.handoff = true;
    }

    /// Another node of this attempt showed up: delete it now, and again with ours.
    pub(crate) fn add_duplicate(&mut self, path: String) {
        if !self.duplicates.contains(&path) {
            drop(self.client.delete(&path, None));
            self.duplicates.push(path);
        }
    }

    /// Whether the node may still exist and is ours to delete.
    pub(crate) fn is_armed(&self) -> bool {
        self.armed
    }

    /// Nothing was created (the create definitely failed): nothing to clean.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    fn deleter(&self) -> Deleter<'_> {
        Deleter { client: &self.client, dir: &self.dir, attempt: &self.attempt, refused: &self.refused }
    }

    /// Deletes our node now, retrying through connection trouble, and disarms once it is gone.
    ///
    /// Cancel safety: if the future is dropped before it finishes, or it fails, the cleanup
    /// stays armed and its `Drop` goes on in the background.
    pub(crate) async fn delete_now(&mut self) -> Result<Gone> {
        // Ours first (the duplicates' deletes were sent when they were found).
        let sent = self.node.as_deref().map(|node| delete_request(&self.client, node, self.handoff));
        delete_duplicates(&self.client, &self.duplicates).await;
        let deleter = self.deleter();
        let gone = deleter.until_gone(self.node.clone(), sent, self.handoff, false, OnRefusal::Fail).await?;
        self.armed = false;
        Ok(gone)
    }
}

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Send the delete right away (requests go out when called, not when polled): it goes out
        // even if no task ever runs. A handoff is followed by a plain delete, which finds the
        // node gone if the handoff worked and frees it if the handoff was refused.
        let rt = tokio::runtime::Handle::try_current();
        let sent: Option<Reply<'static>> = self.node.as_deref().map(|node| {
            if self.handoff {
                drop(send_handoff(&self.client, node));
            }
            Box::pin(self.client.delete(node, None)) as Reply<'static>
        });
        for duplicate in &self.duplicates {
            drop(self.client.delete(duplicate, None));
        }
        let Ok(rt) = rt else {
            match &self.node {
                Some(node) => {
                    tracing::warn!(target: "zk_lock", lock = %self.dir, node, "lock node cleanup outside a tokio runtime: delete sent once, not retried")
                }
                None => {
                    tracing::warn!(target: "zk_lock", lock = %self.dir, "lock node cleanup outside a tokio runtime: the node's name is unknown, nothing sent; it goes when the session ends")
                }
            }
            return;
        };
        let (client, dir, attempt, node) =
            (self.client.clone(), self.dir.clone(), self.attempt.clone(), self.node.clone());
        let refused = self.refused.clone();
        let duplicates = std::mem::take(&mut self.duplicates);
        let after_handoff = self.handoff;
        rt.spawn(async move {
            delete_duplicates(&client, &duplicates).await;
            let deleter = Deleter { client: &client, dir: &dir, attempt: &attempt, refused: &refused };
            let gone = deleter.until_gone(node.clone(), sent, false, after_handoff, OnRefusal::Insist).await;
            events::background_delete(dir.as_str(), node.as_deref(), gone.as_ref().map(|g| g.as_str()));
        });
    }
}

/// Finds the node of `attempt` by its unique name, owned by our session.
pub(crate) async fn find_by_name(
    client: &zk::Client,
    dir: &LockPath,
    attempt: &AttemptName,
) -> Result<Option<(String, zk::Stat)>> {
    // A sync first, so that a create sent before a reconnect is seen by the read.
    let listed = until_known(client, dir.as_str(), || async {
        client.sync(dir.as_str()).await?;
        client.list_children(dir.as_str()).await
    });
    let children = match listed.await? {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(Error::from_zk(e, dir.as_str())),
    };
    let Some(name) = children.into_iter().find(|c| attempt.is_mine(c)) else { return Ok(None) };
    let path = dir.child(&name);
    match until_known(client, &path, || client.check_stat(&path)).await? {
        Ok(Some(stat)) if stat.ephemeral_owner == client.session_id().0 => Ok(Some((path, stat))),
        Ok(_) => Ok(None),
        Err(e) => Err(Error::from_zk(e, &path)),
    }
}

/// Sends the delete of `node` at once (requests go out when called) and returns its answer.
///
/// A granted node is released with a *handoff*: one multi-op that empties the node's data and
/// then deletes it. The data change fires the successor's watch as `NodeDataChanged` on a
/// zk-lock node, which only a holder's release produces: the successor knows it is first
/// without listing the directory again. Any other library's waiter just sees an event and
/// re-checks, as it would for a delete.
fn delete_request<'a>(client: &'a zk::Client, node: &str, handoff: bool) -> Reply<'a> {
    if !handoff {
        return Box::pin(client.delete(node, None));
    }
    match send_handoff(client, node) {
        Ok(commit) => Box::pin(async move {
            match commit.await {
                Ok(_) => Ok(()),
                Err(zk::MultiWriteError::OperationFailed { source, .. }) => Err(source),
                Err(zk::MultiWriteError::RequestFailed { source }) => Err(source),
            }
        }),
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

/// Sends the handoff multi-op (empty the data, then delete) at once.
fn send_handoff<'a>(
    client: &'a zk::Client,
    node: &str,
) -> Result<impl Future<Output = Result<Vec<zk::MultiWriteResult>, zk::MultiWriteError>> + Send + 'a, zk::Error> {
    let mut writer = client.new_multi_writer();
    writer.add_set_data(node, b"", None)?;
    writer.add_delete(node, None)?;
    Ok(writer.commit())
}

/// Deletes `paths`, retrying unknown outcomes (bounded, see `retry`); best effort.
async fn delete_duplicates(client: &zk::Client, paths: &[String]) {
    for path in paths {
        let _ = until_known(client, path, || client.delete(path, None)).await;
    }
}

/// How a node we meant to delete went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Our delete did it (or a retry found it gone after a delete of ours with an unknown
    /// outcome), or nothing had been created.
    Deleted,
    /// It was gone before our first delete reached it: deleted by someone else.
    Earlier,
    /// The session is over: the server deletes the session's nodes (when the client declared
    /// it over on its own, once the server expires it too).
    SessionOver,
}

impl Gone {
    fn as_str(self) -> &'static str {
        match self {
            Gone::Deleted => "deleted",
            Gone::Earlier => "already gone",
            Gone::SessionOver => "session over",
        }
    }
}

/// What deletes one attempt's node.
struct Deleter<'a> {
    client: &'a zk::Client,
    dir: &'a LockPath,
    attempt: &'a AttemptName,
    refused: &'a Refused,
}

impl<'a> Deleter<'a> {
    /// Deletes `node` (found by name if the create's answer never told it) until it is gone;
    /// `sent`, if given, is the answer to a delete of `node` already sent, `after_handoff`
    /// when a handoff of ours went out just before it (then a first `NoNode` is our doing).
    async fn until_gone(
        &self,
        node: Option<String>,
        sent: Option<Reply<'a>>,
        handoff: bool,
        after_handoff: bool,
        on_refusal: OnRefusal,
    ) -> Result<Gone> {
        let mut node = node;
        let gone = self.delete_loop(&mut node, sent, handoff, after_handoff, on_refusal).await;
        if let (Some(node), Ok(_)) = (&node, &gone) {
            self.refused.remove(node);
        }
        gone
    }

    async fn delete_loop(
        &self,
        node: &mut Option<String>,
        mut sent: Option<Reply<'a>>,
        mut handoff: bool,
        after_handoff: bool,
        on_refusal: OnRefusal,
    ) -> Result<Gone> {
        let client = self.client;
        let mut retry = Retry::new(client);
        let mut first = !after_handoff;
        let mut refused_since: Option<tokio::time::Instant> = None;
        loop {
            let path = match node {
                Some(path) => path.clone(),
                None => match find_by_name(client, self.dir, self.attempt).await {
                    Ok(Some((path, _))) => {
                        *node = Some(path.clone());
                        path
                    }
                    Ok(None) => return Ok(Gone::Deleted),
                    Err(Error::SessionExpired | Error::SessionClosed) => return Ok(Gone::SessionOver),
                    Err(e) => return Err(e),
                },
            };
            let answer = match sent.take() {
                Some(sent) => sent.await,
                None => delete_request(client, &path, handoff).await,
            };
            match answer {
                Ok(()) => return Ok(Gone::Deleted),
                Err(zk::Error::NoNode) if first => return Ok(Gone::Earlier),
                Err(zk::Error::NoNode) => return Ok(Gone::Deleted),
                Err(e) => match outcome(&e) {
                    Outcome::Terminal => return Ok(Gone::SessionOver),
                    Outcome::Unknown => {
                        tracing::debug!(target: "zk_lock", node = %path, error = %e, "delete of lock node failed, retrying");
                        first = false;
                        retry.wait(&path).await?;
                    }
                    // The handoff's data change was refused (e.g. an ACL without WRITE): a plain
                    // delete still frees the lock; the successor then lists once more.
                    Outcome::Definite if handoff => {
                        tracing::debug!(target: "zk_lock", node = %path, error = %e, "handoff refused, deleting plainly");
                        retry.reset();
                        handoff = false;
                    }
                    Outcome::Definite if e == zk::Error::NoAuth => {
                        // The queue will neither add nodes nor wait behind this one meanwhile.
                        self.refused.add(&path);
                        let since = *refused_since.get_or_insert_with(tokio::time::Instant::now);
                        if on_refusal == OnRefusal::Fail || since.elapsed() >= REFUSED_FOR {
                            return Err(Error::from_zk(e, &path));
                        }
                        retry.reset();
                        tokio::time::sleep(REFUSED_EVERY).await;
                    }
                    Outcome::Definite => return Err(Error::from_zk(e, &path)),
                },
            }
        }
    }
}
