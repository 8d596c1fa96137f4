//! A 3-member ZooKeeper ensemble on 127.0.0.1 with distinct free ports ([`ZkEnsemble`]),
//! with kill/pause/resume/restart per member and, as root with iptables, partitions.
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::four_letter::{self, Mntr, FLW_TIMEOUT};
use super::process;

/// Number of members.
pub const MEMBERS: usize = 3;

/// How long [`ZkEnsemble::start`] / [`ZkEnsemble::restart`] wait before panicking.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug)]
struct Member {
    dir: PathBuf,
    client_port: u16,
    quorum_port: u16,
    election_port: u16,
    child: Option<Child>,
}

impl Member {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }
}

/// Three ZooKeeper members (`server.1..3`) on 127.0.0.1, `tickTime=500`, `initLimit=10`,
/// `syncLimit=4`. Indexes are 0-based (`myid` = index + 1). When running as root with a
/// working `iptables` (owner match), each member runs under its own uid so that
/// [`Self::partition`] can drop its quorum/election traffic. Drop kills every member, removes
/// the iptables chain and the data dirs. Members also die with the test process (watchdog).
#[derive(Debug)]
pub struct ZkEnsemble {
    members: Vec<Member>,
    /// Per-member uids when partitioning is supported, else None.
    uids: Option<Vec<u32>>,
    /// Why partitions are unsupported (None if supported).
    no_partition_reason: Option<String>,
    /// iptables chain of this ensemble (created on first partition).
    chain: String,
    chain_created: bool,
    partitioned: [bool; MEMBERS],
}

static ENSEMBLE_COUNTER: AtomicU32 = AtomicU32::new(0);

fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("iptables not runnable: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("iptables {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Why partitions cannot work here, or None if they can (root + iptables with owner match).
fn partition_unsupported_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not supported: partitions need root (per-member uids + iptables)".into());
    }
    if let Err(e) = iptables(&["-S", "OUTPUT"]) {
        return Some(format!("not supported: {e} (apt-get install -y iptables)"));
    }
    None
}

/// Removes chains left by test processes that died without running Drop.
fn remove_stale_chains() {
    let Ok(rules) = iptables(&["-S"]) else { return };
    for line in rules.lines() {
        let Some(chain) = line.strip_prefix("-N ZKT") else {
            continue;
        };
        let Some(pid) = chain.split('_').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !process::pid_alive(pid) {
            let name = format!("ZKT{chain}");
            let _ = iptables(&["-D", "OUTPUT", "-j", &name]);
            let _ = iptables(&["-F", &name]);
            let _ = iptables(&["-X", &name]);
        }
    }
}

impl ZkEnsemble {
    /// Starts 3 members and waits (≤ 40 s) until all serve (leader + 2 followers); panics
    /// with the members' log tails otherwise. Retries with new ports on a port race.
    pub fn start() -> ZkEnsemble {
        process::require_zookeeper();
        let n = ENSEMBLE_COUNTER.fetch_add(1, Ordering::SeqCst);
        let no_partition_reason = partition_unsupported_reason();
        let uids = no_partition_reason.is_none().then(|| {
            let base = 200_000 + (std::process::id() % 100_000) * 100 + n * MEMBERS as u32;
            (0..MEMBERS as u32).map(|i| base + i).collect::<Vec<_>>()
        });
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let ports = process::free_ports(3 * MEMBERS);
            let members = (0..MEMBERS)
                .map(|i| Member {
                    dir: process::fresh_dir(&format!("ens{n}-m{i}")),
                    client_port: ports[3 * i],
                    quorum_port: ports[3 * i + 1],
                    election_port: ports[3 * i + 2],
                    child: None,
                })
                .collect();
            let mut ens = ZkEnsemble {
                members,
                uids: uids.clone(),
                no_partition_reason: no_partition_reason.clone(),
                chain: format!("ZKT{}_{n}", std::process::id()),
                chain_created: false,
                partitioned: [false; MEMBERS],
            };
            for i in 0..MEMBERS {
                ens.write_config(i);
                ens.launch(i);
            }
            match ens.wait_all_serving(STARTUP_TIMEOUT) {
                Ok(()) => return ens,
                Err(e) if ens.members.iter().any(|m| process::log_says_bind_failed(&m.dir)) => {
                    last_err = e;
                    continue;
                }
                Err(e) => panic!("ZooKeeper ensemble could not be started: {e}"),
            }
        }
        panic!("ZooKeeper ensemble could not be started after 3 port attempts: {last_err}");
    }

    fn write_config(&self, i: usize) {
        let m = &self.members[i];
        let data = m.dir.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("write myid");
        let mut cfg = format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=4\ndataDir={}\n\
             clientPortAddress=127.0.0.1\nclientPort={}\n4lw.commands.whitelist=*\n\
             admin.enableServer=false\nmaxClientCnxns=0\nforceSync=no\n\
             cnxTimeout=1000\n",
            data.display(),
            m.client_port
        );
        for (j, o) in self.members.iter().enumerate() {
            cfg.push_str(&format!("server.{}=127.0.0.1:{}:{}\n", j + 1, o.quorum_port, o.election_port));
        }
        fs::write(m.dir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
    }

    fn launch(&mut self, i: usize) {
        let uid = self.uids.as_ref().map(|u| u[i]);
        let m = &mut self.members[i];
        m.child = Some(process::spawn_zookeeper(&m.dir, &m.dir.join("zoo.cfg"), uid));
    }

    fn all_log_tails(&self) -> String {
        self.members.iter().map(|m| process::log_tail(&m.dir, 25)).collect()
    }

    fn wait_all_serving(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, m) in self.members.iter_mut().enumerate() {
                if let Some(Ok(Some(st))) = m.child.as_mut().map(|c| c.try_wait()) {
                    return Err(format!("member {i} exited early ({st})\n{}", self.all_log_tails()));
                }
            }
            if (0..MEMBERS).all(|i| self.is_serving(i)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("ensemble not serving after {timeout:?}\n{}", self.all_log_tails()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Connect string with all three members: "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3".
    pub fn connect_string(&self) -> String {
        (0..MEMBERS).map(|i| self.member_connect(i)).collect::<Vec<_>>().join(",")
    }

    /// Connect string of member `i` only.
    pub fn member_connect(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Client address of member `i`.
    pub fn member_addr(&self, i: usize) -> SocketAddr {
        self.members[i].addr()
    }

    /// JVM pid of member `i` (current incarnation).
    pub fn pid(&self, i: usize) -> u32 {
        self.members[i].child.as_ref().expect("member not started").id()
    }

    /// All current pids (for leak checks).
    pub fn pids(&self) -> Vec<u32> {
        (0..MEMBERS).map(|i| self.pid(i)).collect()
    }

    /// `srvr` mode of member `i` ("leader"/"follower"), None if it does not answer or has
    /// no quorum. Short timeout (500 ms), never panics.
    pub fn mode(&self, i: usize) -> Option<String> {
        four_letter::send(self.members[i].addr(), "srvr", Duration::from_millis(500))
            .ok()
            .and_then(|s| four_letter::srvr_mode(&s))
    }

    fn is_serving(&self, i: usize) -> bool {
        matches!(self.mode(i).as_deref(), Some("leader" | "follower"))
    }

    /// Index of the member whose `srvr` says "Mode: leader", if any (one pass, no wait).
    pub fn leader(&self) -> Option<usize> {
        (0..MEMBERS).find(|&i| self.mode(i).as_deref() == Some("leader"))
    }

    /// Polls (every 100 ms) until some member is leader; panics after `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            if Instant::now() >= deadline {
                panic!("no leader elected within {timeout:?}\n{}", self.all_log_tails());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a four-letter word to member `i`; panics if it does not answer.
    pub fn four_letter(&self, i: usize, cmd: &str) -> String {
        four_letter::send(self.members[i].addr(), cmd, FLW_TIMEOUT)
            .unwrap_or_else(|e| panic!("four-letter word {cmd:?} to member {i} failed: {e}"))
    }

    /// `srvr` of member `i` (panics if it does not answer).
    pub fn srvr(&self, i: usize) -> String {
        self.four_letter(i, "srvr")
    }

    /// Parsed `mntr` of member `i` (panics if it does not answer).
    pub fn mntr(&self, i: usize) -> Mntr {
        Mntr::parse(&self.four_letter(i, "mntr"))
    }

    /// SIGKILLs member `i` and reaps it (data dir kept for [`Self::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(c) = self.members[i].child.as_mut() {
            process::kill_child(c);
        }
    }

    /// SIGSTOPs member `i`.
    pub fn pause(&mut self, i: usize) {
        process::stop_process(self.pid(i));
    }

    /// SIGCONTs member `i`.
    pub fn resume(&mut self, i: usize) {
        process::signal(self.pid(i), libc::SIGCONT);
    }

    /// True while member `i`'s JVM exists.
    pub fn is_running(&mut self, i: usize) -> bool {
        matches!(self.members[i].child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills member `i` if running, starts it again (same ports and data), and waits
    /// (≤ 40 s) until it serves as leader or follower (needs a quorum); panics otherwise.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !self.is_serving(i) {
            if let Some(Ok(Some(st))) = self.members[i].child.as_mut().map(|c| c.try_wait()) {
                panic!("member {i} exited after restart ({st})\n{}", self.all_log_tails());
            }
            if Instant::now() >= deadline {
                panic!("member {i} not serving after restart\n{}", self.all_log_tails());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether [`Self::partition`] can work on this machine (root + iptables).
    pub fn partition_supported(&self) -> Result<(), String> {
        match &self.no_partition_reason {
            None => Ok(()),
            Some(r) => Err(r.clone()),
        }
    }

    /// Cuts member `i` off from the other members (quorum and election traffic, both
    /// directions) while its client port keeps answering, with iptables rules (owner match
    /// on its uid + its quorum/election ports) in this ensemble's own chain. Clients of
    /// member `i` stay connected to it but it loses quorum after ~syncLimit (2 s).
    /// Err("not supported: ...") when not root or iptables is missing.
    pub fn partition(&mut self, i: usize) -> Result<(), String> {
        self.partition_supported()?;
        if self.partitioned[i] {
            return Ok(());
        }
        if !self.chain_created {
            remove_stale_chains();
            let _ = iptables(&["-F", &self.chain]);
            let _ = iptables(&["-N", &self.chain]);
            iptables(&["-I", "OUTPUT", "1", "-j", &self.chain])?;
            self.chain_created = true;
        }
        for rule in self.partition_rules(i) {
            let mut args = vec!["-A", self.chain.as_str()];
            args.extend(rule.iter().map(String::as_str));
            iptables(&args)?;
        }
        self.partitioned[i] = true;
        Ok(())
    }

    /// Name of this ensemble's iptables chain (exists only after a partition).
    pub fn chain_name(&self) -> &str {
        &self.chain
    }

    /// Removes the rules added by [`Self::partition`] for member `i`.
    pub fn heal(&mut self, i: usize) {
        if !self.partitioned[i] {
            return;
        }
        for rule in self.partition_rules(i) {
            let mut args = vec!["-D", self.chain.as_str()];
            args.extend(rule.iter().map(String::as_str));
            if let Err(e) = iptables(&args) {
                eprintln!("warning: heal({i}): {e}");
            }
        }
        self.partitioned[i] = false;
    }

    fn partition_rules(&self, i: usize) -> Vec<Vec<String>> {
        let uid = self.uids.as_ref().expect("uids")[i];
        let m = &self.members[i];
        let own_ports = format!("{},{}", m.quorum_port, m.election_port);
        let rule = |s: String| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        vec![
            // everything member i sends, except replies from its client port
            rule(format!("-p tcp -m owner --uid-owner {uid} ! --sport {} -j DROP", m.client_port)),
            // everything sent to member i's quorum/election ports (by anyone)
            rule(format!("-p tcp -m multiport --dports {own_ports} -j DROP")),
        ]
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        for i in 0..MEMBERS {
            self.kill(i);
        }
        if self.chain_created {
            let _ = iptables(&["-D", "OUTPUT", "-j", &self.chain]);
            let _ = iptables(&["-F", &self.chain]);
            let _ = iptables(&["-X", &self.chain]);
        }
        for m in &self.members {
            let _ = fs::remove_dir_all(&m.dir);
        }
    }
}
