//! The command's exit codes, and which error gets which.

use zk_lock::Error;

/// A lock busy for `--try`, or not granted within `--timeout` (flock's `-E` default).
pub const CONFLICT: i32 = 1;
/// Bad arguments: a bad path, duration, connect string, permit count, lease.
pub const USAGE: i32 = 2;
/// No ZooKeeper session: unreachable servers, refused TLS, failed authentication, a session
/// lost while waiting.
pub const UNAVAILABLE: i32 = 69;
/// Any other ZooKeeper error.
pub const SOFTWARE: i32 = 70;
/// The lock was lost while the command ran: it was sent SIGTERM (then SIGKILL).
pub const LOST: i32 = 75;
/// Not authorized (ACLs).
pub const NO_PERMISSION: i32 = 77;
/// The command could not be run / was not found (as a shell says).
pub const CANNOT_RUN: i32 = 126;
pub const NOT_FOUND: i32 = 127;

/// The exit code for an error of the library (`conflict` for a busy lock or a timeout).
pub fn for_error(error: &Error, conflict: i32) -> i32 {
    match error {
        Error::WouldBlock { .. } | Error::Timeout { .. } => conflict,
        Error::InvalidPath { .. }
        | Error::InvalidConnectString { .. }
        | Error::InvalidSessionTimeout
        | Error::InvalidAuth { .. }
        | Error::InvalidLease { .. }
        | Error::InvalidPermits { .. }
        | Error::PermitMismatch { .. }
        | Error::InvalidAcl { .. }
        | Error::TooLarge { .. } => USAGE,
        Error::NotAuthorized { .. } => NO_PERMISSION,
        Error::Connect { .. } | Error::ConnectionLoss { .. } | Error::SessionExpired | Error::SessionClosed => {
            UNAVAILABLE
        }
        _ => SOFTWARE,
    }
}

/// The table printed by `--help`.
pub const TABLE: &str = "\
EXIT STATUS
    N        the command ran: its own exit status (128+n if a signal n killed it)
    1        --try found the lock busy, or --timeout passed (see --conflict-exit-code)
    2        bad arguments: path, duration, connect string, permits, lease
    69       no ZooKeeper session: unreachable, or the credentials refused
    70       another ZooKeeper error
    75       the lock was lost while the command ran (it got SIGTERM, then SIGKILL)
    77       not authorized by the lock's ACLs
    126/127  the command could not be run / was not found
    130/143  zk-lock was interrupted (SIGINT/SIGTERM) while waiting";
