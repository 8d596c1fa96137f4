//! Names of lock nodes: how ours are made and how everyone's are read.
//!
//! The layout is Apache Curator's: `_c_<uuid>-<marker><sequence>`, where the uuid is new for every
//! attempt (so a node whose create had an unknown outcome can be found by name), the marker names
//! the kind of contender (`lock-` for a mutex) and the sequence is the server's ten-digit counter.
//!
//! Our uuids are random but carry version 8 (custom) where Curator's and `zookeeper-client`'s
//! carry version 4: that tells a zk-lock node from theirs by name alone, which the handoff
//! (see `queue`) relies on. A revocable or leased lock's nodes, which others (or the holder, for
//! its lease end) may write, carry version 4 too: their data changes are never trusted either.

use uuid::Uuid;

/// Curator's protected-name prefix.
const PROTECTED: &str = "_c_";

/// One node in a lock directory that parses as a contender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Contender<'a> {
    /// The child name (not the full path), borrowed from the listing.
    pub(crate) name: &'a str,
    /// The sequence suffix.
    pub(crate) seq: i64,
    /// Index into the layout's markers of the marker this node carries.
    pub(crate) kind: usize,
}

/// Which child names count as contenders, and how new ones are named.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Markers before the sequence suffix, e.g. `["lock-"]`.
    pub(crate) markers: &'static [&'static str],
}

impl Layout {
    /// The layout of a mutex (Curator's `InterProcessMutex`).
    pub(crate) const MUTEX: Layout = Layout { markers: &["lock-"] };

    /// The layout of a read/write lock (Curator's `InterProcessReadWriteLock`): readers, then
    /// writers.
    pub(crate) const RWLOCK: Layout = Layout { markers: &["__READ__", "__WRIT__"] };

    /// The layout of a leader election (Curator's `LeaderLatch`: `_c_<uuid>-latch-<seq>`).
    pub(crate) const LATCH: Layout = Layout { markers: &["latch-"] };

    /// The layout of a semaphore: leases in one queue (not Curator's `InterProcessSemaphoreV2`,
    /// which needs an internal mutex beside them).
    pub(crate) const SEMAPHORE: Layout = Layout { markers: &["lease-"] };

    /// Reads `name` as a contender: the text after the last marker must be a sequence number.
    /// Anything else in the directory is foreign and ignored.
    pub(crate) fn parse<'a>(&self, name: &'a str) -> Option<Contender<'a>> {
        self.markers.iter().enumerate().find_map(|(kind, marker)| {
            let at = name.rfind(marker)?;
            let suffix = &name[at + marker.len()..];
            // The server formats the counter with `%010d`: ten digits, or a minus sign and nine
            // digits once the signed 32-bit counter has wrapped.
            let (digits, min) = match suffix.strip_prefix('-') {
                Some(digits) => (digits, 9),
                None => (suffix, 10),
            };
            if digits.len() < min || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let seq: i64 = suffix.parse().ok()?;
            Some(Contender { name, seq, kind })
        })
    }

    /// The contenders among `children` in queue order as seen from a contender with sequence
    /// `me`: ordered by signed 32-bit distance from `me`, so that a queue that spans the wrap of
    /// the server's counter (after 2^31 creates under one parent) stays in arrival order.
    pub(crate) fn contenders_around<'a>(
        &self,
        children: impl IntoIterator<Item = &'a String>,
        me: i64,
    ) -> Vec<Contender<'a>> {
        let mut v: Vec<Contender<'a>> = children.into_iter().filter_map(|c| self.parse(c)).collect();
        let key = |c: &Contender<'_>| (c.seq as i32).wrapping_sub(me as i32);
        v.sort_unstable_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.name.cmp(b.name)));
        v
    }

    /// The contenders among `children`, in queue order: ordered around any one of them (see
    /// [`Layout::contenders_around`]), which gives arrival order across the counter's wrap too.
    pub(crate) fn contenders<'a>(&self, children: &'a [String]) -> Vec<Contender<'a>> {
        let anchor = children.iter().find_map(|c| self.parse(c)).map_or(0, |c| c.seq);
        self.contenders_around(children, anchor)
    }
}

/// Whether `name` is the node of a zk-lock contender (not Curator's or anyone else's).
pub(crate) fn is_zk_lock_node(name: &str) -> bool {
    // `_c_` + 8 + `-` + 4 + `-` then the version digit.
    name.starts_with(PROTECTED) && name.as_bytes().get(PROTECTED.len() + 14) == Some(&b'8')
}

/// The name of one acquire attempt: unique, so that its node can be found by name.
#[derive(Debug, Clone)]
pub(crate) struct AttemptName {
    /// `_c_<uuid>-`: identifies our node among the children.
    pub(crate) unique: String,
    /// `_c_<uuid>-<marker>`: what the create is sent with (the server appends the sequence).
    pub(crate) prefix: String,
}

impl AttemptName {
    /// A new attempt of a `marker` contender. Its uuid carries version 8 when its data changes
    /// can be trusted as handoffs (only the owner may write the node), version 4, as
    /// Curator's, when they cannot (a revocable or leased lock's node, which others or the holder write).
    pub(crate) fn new(marker: &str, trusted: bool) -> AttemptName {
        let mut unique = String::with_capacity(PROTECTED.len() + 37 + marker.len());
        unique.push_str(PROTECTED);
        let random = Uuid::new_v4();
        let id = if trusted { Uuid::new_v8(random.into_bytes()) } else { random };
        unique.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        unique.push('-');
        let mut prefix = unique.clone();
        prefix.push_str(marker);
        AttemptName { unique, prefix }
    }

    /// Whether `child` is the node of this attempt.
    pub(crate) fn is_mine(&self, child: &str) -> bool {
        child.starts_with(&self.unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curator_and_ignores_foreign_children() {
        let l = Layout::MUTEX;
        let c = l.parse("_c_0f4e36e2-8c8b-4b5e-9d2c-1b7c8a3e4f5a-lock-0000000042").unwrap();
        assert_eq!(c.seq, 42);
        assert!(l.parse("lock-0000000007").is_some());
        assert!(l.parse("config").is_none());
        assert!(l.parse("_c_x-lock-12").is_none());
        assert!(l.parse("_c_x-lock-00000000ab").is_none());
        assert_eq!(l.parse("x-lock--2147483648").unwrap().seq, -2147483648);
        assert_eq!(l.parse("x-lock--000000005").unwrap().seq, -5);
        assert!(l.parse("x-lock--00000005").is_none());
    }

    #[test]
    fn contenders_sort_by_sequence_not_by_name() {
        let children: Vec<String> = vec![
            "_c_b-lock-0000000002".into(),
            "junk".into(),
            "_c_a-lock-0000000003".into(),
            "_c_z-lock-0000000001".into(),
        ];
        let order: Vec<i64> = Layout::MUTEX.contenders(&children).iter().map(|c| c.seq).collect();
        assert_eq!(order, [1, 2, 3]);
    }

    #[test]
    fn a_queue_across_the_counter_wrap_keeps_arrival_order() {
        let children: Vec<String> =
            ["a-lock-2147483646", "b-lock-2147483647", "c-lock--2147483648", "d-lock--2147483647"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let names = |me| Layout::MUTEX.contenders_around(&children, me).into_iter().map(|c| c.name).collect::<Vec<_>>();
        let arrival = ["a-lock-2147483646", "b-lock-2147483647", "c-lock--2147483648", "d-lock--2147483647"];
        assert_eq!(names(-2147483648), arrival);
        assert_eq!(names(2147483647), arrival);
    }

    #[test]
    fn attempt_names_are_unique_and_recognised() {
        let a = AttemptName::new("lock-", true);
        let b = AttemptName::new("lock-", true);
        assert_ne!(a.unique, b.unique);
        assert!(a.prefix.ends_with("-lock-"));
        assert!(a.is_mine(&format!("{}0000000001", a.prefix)));
        assert!(!b.is_mine(&format!("{}0000000001", a.prefix)));
        assert_eq!(a.unique.len(), 3 + 36 + 1);
    }

    #[test]
    fn our_nodes_are_told_from_curators() {
        let ours = format!("{}0000000001", AttemptName::new("lock-", true).prefix);
        assert!(is_zk_lock_node(&ours), "{ours}");
        assert!(!is_zk_lock_node("_c_0f4e36e2-8c8b-4b5e-9d2c-1b7c8a3e4f5a-lock-0000000042"));
        assert!(!is_zk_lock_node("lock-0000000001"));
        assert!(!is_zk_lock_node("_c_"));
        // A revocable lock's node (others may write it) is never taken for a handoff.
        assert!(!is_zk_lock_node(&format!("{}0000000001", AttemptName::new("lock-", false).prefix)));
    }
}
