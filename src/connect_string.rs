//! Checking a connect string and credentials before anything is sent, and one connection
//! attempt with them.

use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::path::LockPath;

/// Where and how a [`Session`](crate::Session) connects.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The connect string as given (for messages).
    pub(crate) display: String,
    /// The connect string handed to the client, chroot included.
    cluster: String,
    /// TLS options were given: hosts without a scheme use TLS.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) tls: bool,
    pub(crate) connector: Option<zk::Connector>,
}

impl Target {
    /// One attempt: every host tried once.
    pub(crate) async fn connect(&self) -> std::result::Result<zk::Client, zk::Error> {
        let connector = self.connector.clone().unwrap_or_else(zk::Client::connector);
        #[cfg(feature = "tls")]
        if self.tls {
            return connector.secure_connect(&self.cluster).await;
        }
        connector.connect(&self.cluster).await
    }
}

fn invalid(connect: &str, reason: &'static str) -> Error {
    Error::InvalidConnectString { connect: connect.to_owned(), reason }
}

/// Checks `connect` (`host[:port][,host[:port]...][/chroot]`, hosts optionally `tcp://` or
/// `tcp+tls://`, IPv6 addresses in brackets) and an extra `chroot`.
pub(crate) fn parse(connect: &str, chroot: Option<&str>) -> Result<Target> {
    let bad = |reason| invalid(connect, reason);
    if connect.trim().is_empty() {
        return Err(bad("no host given"));
    }
    // The chroot starts at the first '/' that is not part of a scheme's "://".
    let mut rest = connect;
    let mut hosts_end = connect.len();
    let mut offset = 0;
    while let Some(i) = rest.find('/') {
        if rest[i..].starts_with("//") && rest[..i].ends_with(':') {
            offset += i + 2;
            rest = &rest[i + 2..];
            continue;
        }
        hosts_end = offset + i;
        break;
    }
    let (hosts, suffix) = connect.split_at(hosts_end);
    for host in hosts.split(',') {
        check_host(host.trim()).map_err(bad)?;
    }
    let suffix_chroot = (!suffix.is_empty() && suffix != "/").then_some(suffix);
    let chroot = match (suffix_chroot, chroot) {
        (Some(_), Some(_)) => return Err(bad("a chroot is given both in the connect string and as an option")),
        (one, other) => one.or(other),
    };
    if let Some(chroot) = chroot {
        if chroot != "/" {
            LockPath::new(chroot).map_err(|_| bad("the chroot is not a valid absolute path"))?;
        }
    }
    let cluster = match chroot {
        Some(chroot) if chroot != "/" => format!("{hosts}{chroot}"),
        _ => hosts.to_owned(),
    };
    Ok(Target { display: connect.to_owned(), cluster, tls: false, connector: None })
}

fn check_host(entry: &str) -> std::result::Result<(), &'static str> {
    let address = if let Some(a) = entry.strip_prefix("tcp+tls://") {
        if !cfg!(feature = "tls") {
            return Err("tcp+tls:// needs the crate's `tls` feature");
        }
        a
    } else if let Some(a) = entry.strip_prefix("tcp://") {
        a
    } else if entry.contains("://") {
        return Err("unknown scheme: use tcp:// or tcp+tls://");
    } else {
        entry
    };
    if address.is_empty() {
        return Err("empty host");
    }
    let (host, port) = if let Some(v6) = address.strip_prefix('[') {
        let Some(end) = v6.find(']') else { return Err("unclosed '[' in an IPv6 address") };
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("garbage after an IPv6 address"),
        };
        (&v6[..end], port)
    } else {
        match address.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err("empty host");
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return Err("invalid character in a host name");
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err("the port must be a number from 1 to 65535"),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Checks one credential given to [`SessionBuilder::auth`](crate::SessionBuilder::auth).
pub(crate) fn check_auth(scheme: &str, auth: &[u8]) -> Result<()> {
    let bad = |reason| Err(Error::InvalidAuth { scheme: scheme.to_owned(), reason });
    match scheme {
        "digest" => match auth.iter().position(|&b| b == b':') {
            Some(0) => bad("the user name is empty"),
            Some(_) => Ok(()),
            None => bad("digest credentials are `user:password`"),
        },
        "x509" => bad("x509 authenticates with a TLS client certificate: see SessionBuilder::tls"),
        "sasl" => bad("SASL has its own option: see SessionBuilder::sasl"),
        _ => bad("unknown scheme (the server knows digest, x509 and sasl)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_connect_strings() {
        for s in ["127.0.0.1:2181", "a:1,b:2,c", "tcp://a:1/app", "a:1,b:2/apps/x", "[::1]:2181", "[::1]", "h/"] {
            parse(s, None).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        assert_eq!(parse("a:1/app", None).unwrap().cluster, "a:1/app");
        assert_eq!(parse("a:1", Some("/app")).unwrap().cluster, "a:1/app");
    }

    #[test]
    fn bad_connect_strings() {
        for s in ["", "  ", ":2181", "a:0", "a:x", "a:70000", "a:1,,b:2", "http://a:1", "[::1", "a:1/app/", "a b:1"] {
            assert!(matches!(parse(s, None), Err(Error::InvalidConnectString { .. })), "{s:?} accepted");
        }
        assert!(parse("a:1/x", Some("/y")).is_err());
    }

    #[test]
    fn credentials() {
        assert!(check_auth("digest", b"app:secret").is_ok());
        assert!(check_auth("digest", b"app").is_err());
        assert!(check_auth("digest", b":x").is_err());
        assert!(check_auth("kerberos", b"x").is_err());
    }
}
