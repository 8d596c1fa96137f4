//! A standalone ZooKeeper server owned by a test ([`ZkServer`]) and the per-test-binary
//! shared server ([`shared_connect`]).
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::four_letter::{self, Mntr, FLW_TIMEOUT};
use super::process;

/// Options for [`ZkServer::start_with`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `tickTime` in ms (default 500: negotiable session timeouts are 1 s ..= 10 s).
    pub tick_time_ms: u32,
    /// Extra `zoo.cfg` lines, appended verbatim (later lines override earlier ones).
    pub extra_config: Vec<String>,
    /// How long to wait for the server to serve (`srvr` shows `Mode:`) before panicking.
    pub startup_timeout: Duration,
    /// Extra JVM arguments (e.g. `-Djava.security.auth.login.config=...` for SASL).
    pub jvm_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tick_time_ms: 500,
            extra_config: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            jvm_args: Vec::new(),
        }
    }
}

/// A fresh standalone ZooKeeper 3.8 on a free 127.0.0.1 port with its own temp data dir.
/// Dropping it SIGKILLs the JVM (SIGCONT first if paused) and removes the data dir. The JVM
/// also dies at once if the test process dies (watchdog, see `process`), even on SIGKILL.
#[derive(Debug)]
pub struct ZkServer {
    dir: PathBuf,
    port: u16,
    opts: ServerOptions,
    child: Option<Child>,
    paused: bool,
}

impl ZkServer {
    /// Starts a server with default [`ServerOptions`]; panics (with the log tail) if it does
    /// not serve within 30 s.
    pub fn start() -> ZkServer {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with `opts`. Retries with a new port (3 attempts) if the port picked
    /// by binding port 0 was taken in between.
    pub fn start_with(opts: ServerOptions) -> ZkServer {
        process::require_zookeeper();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let dir = process::fresh_dir("standalone");
            let port = process::free_ports(1)[0];
            let mut server = ZkServer { dir, port, opts: opts.clone(), child: None, paused: false };
            server.write_config();
            match server.launch_and_wait() {
                Ok(()) => return server,
                Err(e) if process::log_says_bind_failed(&server.dir) => {
                    last_err = e;
                    continue; // port race: drop (kills + removes dir) and retry
                }
                Err(e) => panic!("ZooKeeper could not be started: {e}"),
            }
        }
        panic!("ZooKeeper could not be started after 3 port attempts: {last_err}");
    }

    fn write_config(&self) {
        let mut cfg = format!(
            "tickTime={}\n\
             dataDir={}\n\
             clientPortAddress=127.0.0.1\n\
             clientPort={}\n\
             4lw.commands.whitelist=*\n\
             admin.enableServer=false\n\
             maxClientCnxns=0\n\
             forceSync=no\n",
            self.opts.tick_time_ms,
            self.dir.join("data").display(),
            self.port
        );
        for l in &self.opts.extra_config {
            cfg.push_str(l);
            cfg.push('\n');
        }
        fs::create_dir_all(self.dir.join("data")).expect("create data dir");
        fs::write(self.dir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
    }

    /// Spawns the JVM and waits until `srvr` reports a `Mode:` line.
    fn launch_and_wait(&mut self) -> Result<(), String> {
        let child = process::spawn_zookeeper_with(&self.dir, &self.dir.join("zoo.cfg"), None, &self.opts.jvm_args);
        self.child = Some(child);
        self.paused = false;
        let deadline = Instant::now() + self.opts.startup_timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().ok().flatten() {
                return Err(format!(
                    "server on port {} exited early ({status})\n{}",
                    self.port,
                    process::log_tail(&self.dir, 40)
                ));
            }
            if self.is_serving() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = process::log_tail(&self.dir, 40);
                if let Some(c) = self.child.as_mut() {
                    process::kill_child(c);
                }
                return Err(format!(
                    "server on port {} not serving after {:?}\n{tail}",
                    self.port, self.opts.startup_timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// "127.0.0.1:PORT".
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding zoo.cfg, data/, zookeeper.log, stdout.log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// JVM pid (of the current incarnation; changes on [`Self::restart`]).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// True while the JVM process exists (paused counts as running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILLs the server and reaps it. The data dir is kept, so [`Self::restart`] works.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            process::kill_child(c);
        }
        self.paused = false;
    }

    /// SIGSTOPs the server: connections stay open but nothing is answered.
    pub fn pause(&mut self) {
        process::stop_process(self.pid());
        self.paused = true;
    }

    /// SIGCONTs a paused server.
    pub fn resume(&mut self) {
        process::signal(self.pid(), libc::SIGCONT);
        self.paused = false;
    }

    /// Kills the server (if running) and starts it again on the same port with the same
    /// data dir (sessions and znodes survive); waits until it serves, panics otherwise.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.launch_and_wait() {
            panic!("ZooKeeper could not be restarted: {e}");
        }
    }

    /// True if `srvr` answers with a `Mode:` line (short timeout, never panics).
    pub fn is_serving(&self) -> bool {
        four_letter::send(self.addr(), "srvr", Duration::from_millis(500))
            .map(|s| four_letter::srvr_mode(&s).is_some())
            .unwrap_or(false)
    }

    /// Sends a four-letter word; panics (with the log tail) if the server does not answer.
    pub fn four_letter(&self, cmd: &str) -> String {
        four_letter::send(self.addr(), cmd, FLW_TIMEOUT).unwrap_or_else(|e| {
            panic!("four-letter word {cmd:?} to {} failed: {e}\n{}", self.addr(), process::log_tail(&self.dir, 20))
        })
    }

    /// `srvr` reply (contains "Mode: standalone").
    pub fn srvr(&self) -> String {
        self.four_letter("srvr")
    }

    /// Parsed `mntr` reply.
    pub fn mntr(&self) -> Mntr {
        Mntr::parse(&self.four_letter("mntr"))
    }

    /// `dump` reply (sessions and their ephemeral nodes).
    pub fn dump(&self) -> String {
        self.four_letter("dump")
    }

    /// Last `n` lines of the server log (for assertion messages).
    pub fn log_tail(&self, n: usize) -> String {
        process::log_tail(&self.dir, n)
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

static SHARED: OnceLock<ZkServer> = OnceLock::new();
/// Connect string of a plain server shared by all tests of this test binary:
/// `$ZOOKEEPER_CONNECT` if set, else ONE lazily started [`ZkServer`] (started on first call).
/// That server is never dropped (it is a static): when the test process exits or dies (even
/// by SIGKILL) its watchdog sees the pipe close, SIGKILLs it and removes its data dir. Do not kill/pause it; use
/// [`super::unique_path`] to isolate tests from each other.
pub fn shared_connect() -> String {
    if let Ok(c) = std::env::var("ZOOKEEPER_CONNECT") {
        if !c.trim().is_empty() {
            return c;
        }
    }
    SHARED.get_or_init(ZkServer::start).connect_string()
}
