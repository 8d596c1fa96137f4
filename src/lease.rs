//! Leases: a maximum hold time, its record in the node's data, and the timer that ends it.

use std::sync::Weak;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::state::{LockState, LostReason, Tracker};

/// What precedes the lease end in a node's data.
const MARK: &[u8] = b"\n#zk-lock lease-until-ms=";

/// The longest lease: a hundred years, far beyond any use and far below any overflow.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) fn check(lease: Duration) -> Result<()> {
    if lease.is_zero() {
        return Err(Error::InvalidLease { lease, reason: "it must be above zero" });
    }
    if lease > LONGEST {
        return Err(Error::InvalidLease { lease, reason: "it must be at most a hundred years" });
    }
    Ok(())
}

/// When a lease of `lease` (checked) from now ends: on the local clock, and in Unix
/// milliseconds.
pub(crate) fn until(lease: Duration) -> (Instant, u64) {
    let lease = lease.min(LONGEST);
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + lease;
    let local = Instant::now().checked_add(lease).unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
    (local, unix.as_millis().min(u64::MAX as u128) as u64)
}

/// `data` with the lease end recorded after it.
pub(crate) fn with_lease(data: &[u8], until_ms: u64) -> Vec<u8> {
    let mut out = data.to_vec();
    out.extend_from_slice(MARK);
    out.extend_from_slice(until_ms.to_string().as_bytes());
    out
}

/// Splits a node's data into the holder's own data and the lease end it records, if any.
pub(crate) fn split(data: &[u8]) -> (&[u8], Option<SystemTime>) {
    let Some(at) = data.windows(MARK.len()).rposition(|w| w == MARK) else { return (data, None) };
    let digits = &data[at + MARK.len()..];
    let ms = std::str::from_utf8(digits).ok().and_then(|d| d.parse::<u64>().ok());
    match ms {
        Some(ms) => (&data[..at], Some(UNIX_EPOCH + Duration::from_millis(ms))),
        None => (data, None),
    }
}

/// Ends the hold when its lease runs out: `Lost` first (so that the holder knows before anyone
/// else can be granted), then the node is deleted.
pub(crate) async fn timer(tracker: Weak<Tracker>, client: zk::Client) {
    loop {
        let Some(t) = tracker.upgrade() else { return };
        let Some(mut end) = t.lease_end() else { return };
        drop(t);
        let at = *end.borrow_and_update();
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            changed = end.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let Some(t) = tracker.upgrade() else { return };
        if *end.borrow() > Instant::now() {
            continue;
        }
        if t.is_releasing() || t.state() == LockState::Lost {
            return;
        }
        t.lose_session(LostReason::LeaseExpired);
        t.start_release();
        crate::cleanup::delete_lost(t, client, "lease ran out").await;
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trips_through_the_data() {
        let data = with_lease(b"host-a", 1_700_000_000_123);
        assert_eq!(data, b"host-a\n#zk-lock lease-until-ms=1700000000123");
        let (own, until) = split(&data);
        assert_eq!(own, b"host-a");
        assert_eq!(until, Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)));
        assert_eq!(split(b"plain"), (&b"plain"[..], None));
        assert_eq!(split(&with_lease(b"", 5)).0, b"");
    }
}
