//! A contender as others see it.

use zookeeper_client as zk;

use crate::token::FencingToken;

/// One contender in a lock's queue, as listed by [`Mutex::participants`](crate::Mutex::participants).
///
/// # Examples
///
/// ```no_run
/// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
/// for (place, p) in mutex.participants().await?.iter().enumerate() {
///     println!("{place}: {} session {} data {:?}", p.node(), p.session_id(), p.data());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    node: String,
    sequence: i64,
    session_id: zk::SessionId,
    data: Option<Vec<u8>>,
    token: FencingToken,
    /// Creation time of the node, Unix milliseconds (the server's clock).
    ctime: i64,
}

impl Participant {
    /// The contender of `node` (at `sequence`) as its stat describes it: owner, token (the
    /// creation zxid), creation time.
    pub(crate) fn from_stat(node: String, sequence: i64, data: Option<Vec<u8>>, stat: &zk::Stat) -> Participant {
        Participant {
            node,
            sequence,
            session_id: zk::SessionId(stat.ephemeral_owner),
            data,
            token: FencingToken::from_i64(stat.czxid),
            ctime: stat.ctime,
        }
    }

    /// Full path of the contender's lock node.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// if let Some(holder) = mutex.participants().await?.first() {
    ///     println!("held through {}", holder.node());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's sequence number (its place in arrival order).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// let seqs: Vec<i64> = mutex.participants().await?.iter().map(|p| p.sequence()).collect();
    /// assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    /// # Ok(()) }
    /// ```
    pub fn sequence(&self) -> i64 {
        self.sequence
    }

    /// The ZooKeeper session that owns the node (its `ephemeralOwner`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex, client: zk_lock::zk::Client) -> zk_lock::Result<()> {
    /// let mine = mutex.participants().await?.iter().any(|p| p.session_id() == client.session_id());
    /// # Ok(()) }
    /// ```
    pub fn session_id(&self) -> zk::SessionId {
        self.session_id
    }

    /// The node's data: what the contender gave as its data (without the lease end, if the
    /// lock has a lease). `None` when its ACL does not let us read it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// for p in mutex.participants().await? {
    ///     println!("{}", String::from_utf8_lossy(p.data().unwrap_or_default()));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn data(&self) -> Option<&[u8]> {
        self.data.as_deref().map(|d| crate::lease::split(d).0)
    }

    /// When the holder's lease ends, as written into its node (see
    /// [`LockBuilder::lease`](crate::LockBuilder::lease)); `None` without a lease, or for a
    /// contender not granted yet.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// if let Some(holder) = mutex.participants().await?.first() {
    ///     println!("lease ends at {:?}", holder.lease_until());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lease_until(&self) -> Option<std::time::SystemTime> {
        self.data.as_deref().and_then(|d| crate::lease::split(d).1)
    }

    /// The fencing token the contender has (or will have once granted).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// if let Some(holder) = mutex.participants().await?.first() {
    ///     println!("current token {}", holder.fencing_token());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn fencing_token(&self) -> FencingToken {
        self.token
    }

    /// When the contender joined the queue: its node's creation time, by the server's clock.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mutex: zk_lock::Mutex) -> zk_lock::Result<()> {
    /// for p in mutex.participants().await? {
    ///     let age = std::time::SystemTime::now().duration_since(p.created()).unwrap_or_default();
    ///     println!("{} queued {age:?} ago", p.node());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn created(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.ctime.max(0) as u64)
    }
}
