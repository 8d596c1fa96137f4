//! Fair, herd-free distributed locks on Apache ZooKeeper.
#![forbid(unsafe_code)]

pub use zookeeper_client as zk;
