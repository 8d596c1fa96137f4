//! Lock paths, validated once.

use std::fmt;

use crate::error::{Error, Result};

/// An absolute ZooKeeper path under which lock nodes are created, checked once when it is made.
///
/// Refused: the empty path, relative paths, the root `/`, a trailing `/`, empty, `.` or `..`
/// components, NUL and the other characters ZooKeeper does not accept, and anything under the
/// reserved `/zookeeper` tree. A path under an *ephemeral* node can only be told by the server:
/// the first acquire refuses it with [`Error::InvalidPath`] and writes nothing.
///
/// # Examples
///
/// ```
/// use zk_lock::LockPath;
///
/// let path = LockPath::new("/locks/orders").unwrap();
/// assert_eq!(path.as_str(), "/locks/orders");
/// assert!(LockPath::new("/locks/orders/").is_err());
/// assert!(LockPath::new("/locks/../orders").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LockPath(String);

impl LockPath {
    /// Checks `path` and wraps it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] saying what is wrong with it.
    ///
    /// # Examples
    ///
    /// ```
    /// use zk_lock::{Error, LockPath};
    ///
    /// assert!(matches!(LockPath::new(""), Err(Error::InvalidPath { .. })));
    /// ```
    pub fn new(path: impl Into<String>) -> Result<LockPath> {
        let path = path.into();
        match check(&path) {
            Ok(()) => Ok(LockPath(path)),
            Err(reason) => Err(Error::InvalidPath { path, reason }),
        }
    }

    /// The path as text.
    ///
    /// # Examples
    ///
    /// ```
    /// # use zk_lock::LockPath;
    /// assert_eq!(LockPath::new("/a/b").unwrap().as_str(), "/a/b");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full path of child `name` of this path.
    pub(crate) fn child(&self, name: &str) -> String {
        let mut s = String::with_capacity(self.0.len() + 1 + name.len());
        s.push_str(&self.0);
        s.push('/');
        s.push_str(name);
        s
    }
}

/// Checks a path given for a write (a fenced write): any valid absolute ZooKeeper path, the root
/// and `/zookeeper` included.
pub(crate) fn check_node_path(path: &str) -> Result<()> {
    match path {
        "/" => Ok(()),
        _ => match check_syntax(path) {
            Ok(()) => Ok(()),
            Err(reason) => Err(Error::InvalidPath { path: path.to_owned(), reason }),
        },
    }
}

fn check(path: &str) -> std::result::Result<(), &'static str> {
    check_syntax(path)?;
    if path == "/zookeeper" || path.starts_with("/zookeeper/") {
        return Err("/zookeeper is reserved by the server");
    }
    Ok(())
}

fn check_syntax(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("must not be empty");
    }
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path == "/" {
        return Err("must not be the root");
    }
    if path.ends_with('/') {
        return Err("must not end with '/'");
    }
    for c in path.chars() {
        let u = c as u32;
        let bad = matches!(u, 0x0000..=0x001f | 0x007f..=0x009f | 0xd800..=0xf8ff | 0xfff0..=0xffff);
        if bad {
            return Err("contains a character zookeeper does not accept");
        }
    }
    for component in path[1..].split('/') {
        match component {
            "" => return Err("must not contain an empty component"),
            "." | ".." => return Err("must not contain '.' or '..' components"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for LockPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LockPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for LockPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for LockPath {
    type Error = Error;

    fn try_from(path: &str) -> Result<LockPath> {
        LockPath::new(path)
    }
}

impl TryFrom<String> for LockPath {
    type Error = Error;

    fn try_from(path: String) -> Result<LockPath> {
        LockPath::new(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_absolute_paths() {
        for p in ["/a", "/locks/orders", "/a/b-c_d.e/f", "/ünïcode"] {
            assert!(LockPath::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn refuses_bad_paths_with_a_reason() {
        let cases = [
            ("", "must not be empty"),
            ("a/b", "must start with '/'"),
            ("/", "must not be the root"),
            ("/a/", "must not end with '/'"),
            ("/a//b", "must not contain an empty component"),
            ("/a/./b", "must not contain '.' or '..' components"),
            ("/a/..", "must not contain '.' or '..' components"),
            ("/a\0b", "contains a character zookeeper does not accept"),
            ("/a\u{1}", "contains a character zookeeper does not accept"),
            ("/zookeeper/x", "/zookeeper is reserved by the server"),
        ];
        for (p, why) in cases {
            match LockPath::new(p) {
                Err(Error::InvalidPath { path, reason }) => {
                    assert_eq!(path, p);
                    assert_eq!(reason, why, "{p:?}");
                }
                other => panic!("{p:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn child_joins_with_one_slash() {
        assert_eq!(LockPath::new("/a").unwrap().child("b"), "/a/b");
    }
}
