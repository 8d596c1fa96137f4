//! ZooKeeper four-letter words (`ruok`, `srvr`, `mntr`, `dump`, ...) over a plain std
//! `TcpStream` with a short timeout (no `nc`), and a parsed `mntr` reply.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Default timeout for connect, write and each read of a four-letter word.
pub const FLW_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `cmd` (e.g. "srvr") to `addr` and returns the whole reply (the server closes the
/// connection after answering). Errors on connect failure or timeout (e.g. paused server).
pub fn send(addr: SocketAddr, cmd: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The `Mode:` of a `srvr` reply ("standalone", "leader", "follower", ...), if any.
/// A member without quorum answers "This ZooKeeper instance is not currently serving
/// requests" and has no mode.
pub fn srvr_mode(srvr: &str) -> Option<String> {
    srvr.lines().find_map(|l| l.strip_prefix("Mode:")).map(|m| m.trim().to_string())
}

/// Parsed `mntr` reply: `key<TAB>value` lines.
#[derive(Debug, Clone, Default)]
pub struct Mntr {
    /// Raw values by key (e.g. "zk_packets_received" -> "42").
    pub values: BTreeMap<String, String>,
}

impl Mntr {
    /// Parses a `mntr` reply.
    pub fn parse(text: &str) -> Mntr {
        let values = text
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(2, '\t');
                let k = it.next()?.trim();
                let v = it.next()?.trim();
                (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
            })
            .collect();
        Mntr { values }
    }

    /// Integer value of `key` (None if absent or not an integer; floats are truncated).
    pub fn get(&self, key: &str) -> Option<i64> {
        let v = self.values.get(key)?;
        v.parse::<i64>().ok().or_else(|| v.parse::<f64>().ok().map(|f| f as i64))
    }

    /// Raw string value of `key` (e.g. "zk_server_state" -> "leader").
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// Parses a `wchp` reply: watched path -> the sessions (hex) watching it. (`wchp` lists data
/// watches only, not child watches.)
pub fn watchers_by_path(wchp: &str) -> std::collections::HashMap<String, Vec<String>> {
    let mut map: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut current = None;
    for line in wchp.lines() {
        if line.starts_with('/') {
            current = Some(line.trim().to_owned());
            map.entry(line.trim().to_owned()).or_default();
        } else if let (Some(p), true) = (&current, !line.trim().is_empty()) {
            map.get_mut(p).unwrap().push(line.trim().to_owned());
        }
    }
    map
}
