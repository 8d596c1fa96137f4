//! Fencing tokens.

use std::fmt;

/// A number that grows strictly from one holder of a lock to the next: the creation zxid
/// (`czxid`) of the holder's own lock node.
///
/// ZooKeeper gives every write a zxid that grows across the whole ensemble, across leader
/// changes, and across the reaping and re-creation of the lock directory; holders are granted in
/// the order their nodes were created, so a later holder always has a larger token. Hand the token
/// to the resource you protect and have it refuse any write that carries a token smaller than the
/// largest it has seen: a holder that was paused or cut off and lost the lock without knowing it
/// is then stopped by the resource itself.
///
/// # Examples
///
/// ```
/// use zk_lock::FencingToken;
///
/// let older = FencingToken::from_i64(0x1_0000_0002);
/// let newer = FencingToken::from_i64(0x1_0000_0009);
/// assert!(older < newer);
/// assert_eq!(newer.as_i64(), 0x1_0000_0009);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(i64);

impl FencingToken {
    /// Wraps a raw czxid, for example one that a resource stored earlier.
    ///
    /// # Examples
    ///
    /// ```
    /// # use zk_lock::FencingToken;
    /// assert_eq!(FencingToken::from_i64(7).as_i64(), 7);
    /// ```
    pub const fn from_i64(zxid: i64) -> FencingToken {
        FencingToken(zxid)
    }

    /// The raw value, to store or send to the resource.
    ///
    /// # Examples
    ///
    /// ```
    /// # use zk_lock::FencingToken;
    /// let t = FencingToken::from_i64(42);
    /// let stored: i64 = t.as_i64();
    /// assert_eq!(stored, 42);
    /// ```
    pub const fn as_i64(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FencingToken({:#x})", self.0)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl From<FencingToken> for i64 {
    fn from(t: FencingToken) -> i64 {
        t.0
    }
}
