//! Low-level process plumbing shared by [`super::server`] and [`super::ensemble`]:
//! launching a ZooKeeper JVM under a watchdog, free loopback ports, temp dirs,
//! signals and liveness probes. Everything here is blocking std code.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where Debian's `zookeeper` package puts the server jar.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// Classpath that works with Debian's ZooKeeper 3.8.0 (the jar manifest pulls in the rest).
pub const CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:\
/usr/share/java/log4j-1.2.jar:/usr/share/java/netty-codec.jar:/usr/share/java/netty-resolver.jar:\
/usr/share/java/netty-transport-native-unix-common.jar";

/// Main class; standalone when the config has no `server.N` lines.
pub const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// Name of the server log file inside a data dir.
pub const LOG_FILE: &str = "zookeeper.log";
/// Name of the JVM stdout/stderr file inside a data dir.
pub const STDOUT_FILE: &str = "stdout.log";

/// Watchdog wrapper. The spawned bash gets a pipe as stdin whose write end only the test
/// process holds (std pipes are close-on-exec). It forks a subshell that blocks reading that
/// pipe, then `exec`s the server command (stdin from /dev/null), so the child's pid IS the
/// JVM's pid. If the test process dies in any way (panic, exit, SIGKILL) the kernel closes
/// the write end: the subshell reads EOF, SIGKILLs the JVM at once and removes its temp dir.
/// A normal shutdown ([`kill_child`]) reaps the JVM first and then writes "quit", so the
/// watchdog exits without signalling a pid that may have been reused.
/// (Polling `kill -0 <test pid>` was tried first: with pid_max=32768 and a `sleep` fork
/// every 0.2 s per server, pids wrapped within seconds and a reused test pid kept orphaned
/// JVMs alive.) Args: data dir, command...
const WATCHDOG: &str = r#"dir="$1"; shift; me=$$
exec 3<&0
( exec 0<&3 3<&- >/dev/null 2>&1
  if IFS= read -r line <&0 && [ "$line" = quit ]; then exit 0; fi
  kill -9 "$me" 2>/dev/null; sleep 0.5
  case "$dir" in */zk-lock-test-*) rm -rf -- "$dir" ;; esac ) &
exec "$@" 0</dev/null 3<&-"#;

/// Panics with an installation hint unless ZooKeeper and java are usable.
pub fn require_zookeeper() {
    if !Path::new(ZOOKEEPER_JAR).exists() {
        panic!(
            "ZooKeeper could not be started: {ZOOKEEPER_JAR} missing; install with \
             `apt-get install -y zookeeper`"
        );
    }
    static JAVA_OK: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let ok = JAVA_OK.get_or_init(|| {
        match Command::new("java").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("`java -version` exited with {s}")),
            Err(e) => Err(format!("`java` not runnable ({e})")),
        }
    });
    if let Err(e) = ok {
        panic!("ZooKeeper could not be started: {e}; install a JRE (e.g. `apt-get install -y default-jre-headless`)");
    }
}

/// Spawns ZooKeeper with `cfg` under the watchdog, optionally as `uid` (via `setpriv`).
/// stdout/stderr go to `dir/stdout.log`, log4j to `dir/zookeeper.log`.
pub fn spawn_zookeeper(dir: &Path, cfg: &Path, uid: Option<u32>) -> Child {
    spawn_zookeeper_with(dir, cfg, uid, &[])
}

/// [`spawn_zookeeper`] with extra JVM arguments (system properties such as a JAAS file).
pub fn spawn_zookeeper_with(dir: &Path, cfg: &Path, uid: Option<u32>, jvm_args: &[String]) -> Child {
    require_zookeeper();
    let log4j = dir.join("log4j.properties");
    fs::write(
        &log4j,
        format!(
            "log4j.rootLogger=INFO, FILE\n\
             log4j.appender.FILE=org.apache.log4j.FileAppender\n\
             log4j.appender.FILE.File={}\n\
             log4j.appender.FILE.Append=true\n\
             log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} [myid:%X{{myid}}] %-5p [%t:%C{{1}}@%L] - %m%n\n",
            dir.join(LOG_FILE).display()
        ),
    )
    .expect("write log4j.properties");
    let out = fs::OpenOptions::new().create(true).append(true).open(dir.join(STDOUT_FILE)).expect("open stdout.log");
    let err = out.try_clone().expect("dup stdout.log");
    if let Some(uid) = uid {
        chown_recursive(dir, uid);
    }
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(WATCHDOG).arg("zk-watchdog").arg(dir);
    if let Some(uid) = uid {
        cmd.arg("setpriv").arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).arg("--clear-groups");
    }
    cmd.arg("java")
        .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k"])
        .arg("-Djava.net.preferIPv4Stack=true")
        .arg("-Dzookeeper.jmx.log4j.disable=true")
        .arg("-Dzookeeper.admin.enableServer=false")
        .arg("-Dzookeeper.preAllocSize=1024")
        // Reap empty container nodes every 500 ms (default 60 s), so tests can see it happen.
        .arg("-Dznode.container.checkIntervalMs=500")
        .arg(format!("-Dlog4j.configuration=file:{}", log4j.display()))
        .args(jvm_args)
        .arg("-cp")
        .arg(CLASSPATH)
        .arg(MAIN_CLASS)
        .arg(cfg)
        .current_dir(dir)
        .stdin(Stdio::piped()) // watchdog pipe, see WATCHDOG
        .stdout(out)
        .stderr(err);
    cmd.spawn().unwrap_or_else(|e| panic!("ZooKeeper could not be started: cannot spawn bash/java: {e}"))
}

/// `chown -R uid:uid dir` (used when members run under their own uid).
pub fn chown_recursive(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).expect("chown data dir");
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                chown_recursive(&p, uid);
            } else {
                let _ = std::os::unix::fs::chown(&p, Some(uid), Some(uid));
            }
        }
    }
}

/// Last `n` lines of the server log and stdout in `dir`, for panic messages.
pub fn log_tail(dir: &Path, n: usize) -> String {
    let mut s = String::new();
    for f in [LOG_FILE, STDOUT_FILE] {
        let text = fs::read_to_string(dir.join(f)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(n);
        s.push_str(&format!("--- {}/{f} (last {n} lines) ---\n", dir.display()));
        for l in &lines[start..] {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

/// True if the log says the server failed to bind (port race): retry with new ports.
pub fn log_says_bind_failed(dir: &Path) -> bool {
    let text = fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default()
        + &fs::read_to_string(dir.join(STDOUT_FILE)).unwrap_or_default();
    text.contains("Address already in use") || text.contains("BindException")
}

/// Picks `n` distinct free ports on 127.0.0.1 (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Removes `$TMPDIR/zk-lock-test-<pid>-*` dirs of test processes that no longer exist
/// (left when a test process died between creating a dir and starting its server).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("zk-lock-test-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !pid_alive(pid) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Fresh, empty temp dir `$TMPDIR/zk-lock-test-<pid>-<n>-<tag>-<random>`, world-traversable.
/// The first call in a process also removes dirs left by dead test processes.
pub fn fresh_dir(tag: &str) -> PathBuf {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(remove_stale_dirs);
    let n = DIR_COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "zk-lock-test-{}-{n}-{tag}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp data dir");
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
    dir
}

/// Sends `sig` to `pid` (ignores errors: the process may be gone).
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we spawned; no memory is touched.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGSTOPs `pid` and waits (bounded: 5 s) until every thread of it is stopped: `kill`
/// returns before a multi-threaded JVM has really stopped.
pub fn stop_process(pid: u32) {
    signal(pid, libc::SIGSTOP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let all_stopped = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .map(|st| st.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')))
                        .unwrap_or(true)
                })
            })
            .unwrap_or(true);
        if all_stopped {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("process {pid} did not stop within 5 s of SIGSTOP");
}

/// SIGKILLs a child (SIGCONT first, harmless if not stopped), reaps it (bounded: 10 s) and
/// disarms its watchdog.
pub fn kill_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        signal(child.id(), libc::SIGCONT);
        signal(child.id(), libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("warning: pid {} did not die within 10 s of SIGKILL", child.id());
                return; // keep the watchdog armed
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(mut pipe) = child.stdin.take() {
        use std::io::Write;
        let _ = pipe.write_all(b"quit\n");
    }
}

/// True if a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the ")" closing the command name
            let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// True if something accepts TCP connections on `addr` (200 ms timeout).
pub fn port_accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
