//! The `zk-lock` command, driven as a user would: the built binary against a real server.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{children, connect, shared_connect, unique_path, ProxyMode, TcpProxy};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_zk-lock");
const T: Duration = Duration::from_secs(10);

/// The command as cron or CI runs it: in a session of its own, without a controlling terminal
/// (also when the tests run from one), so that it puts the command in a process group of its
/// own. (`the_progress_line_on_a_terminal` checks the other case.)
fn zk_lock(connect: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("ZOOKEEPER_CONNECT", connect).kill_on_drop(true);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    c
}

fn scratch(tag: &str) -> PathBuf {
    common::process::fresh_dir(tag)
}

async fn output(mut c: Command) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("zk-lock finished").expect("zk-lock ran")
}

fn signal(child: &Child, sig: libc::c_int) {
    common::process::signal(child.id().expect("running"), sig);
}

/// 6 shell workers started together: never two inside at once (a marker file), served in
/// queue order, tokens strictly increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_shell_workers_take_turns_in_queue_order() {
    let cs = shared_connect();
    let dir = scratch("cli-workers");
    let path = unique_path("cli-workers");
    let script = "if [ -e inside ]; then echo DOUBLE >> log; fi; touch inside; \
                  echo \"$ZK_LOCK_TOKEN $ZK_LOCK_NODE\" >> log; sleep 0.2; rm inside";
    let mut workers = Vec::new();
    for _ in 0..6 {
        let mut c = zk_lock(&cs);
        c.current_dir(&dir).args(["run", "--quiet", &path, "--", "sh", "-c", script]);
        workers.push(c.spawn().unwrap());
    }
    for mut w in workers {
        let status = tokio::time::timeout(Duration::from_secs(30), w.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status:?}");
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(!log.contains("DOUBLE"), "two inside at once:\n{log}");
    let lines: Vec<(i64, i64)> = log
        .lines()
        .map(|l| {
            let (token, node) = l.split_once(' ').unwrap();
            (token.parse().unwrap(), node.rsplit('-').next().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 6, "{log}");
    for pair in lines.windows(2) {
        assert!(pair[1].0 > pair[0].0, "tokens must increase: {log}");
        assert!(pair[1].1 > pair[0].1, "grants in queue (sequence) order: {log}");
    }
    let client = connect(&cs, T).await;
    assert!(children(&client, &path).await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--try` on a busy lock: the conflict code at once, nothing written; `--timeout 1s`: the
/// conflict code after about 1 s, no node left; `-E` sets the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_and_timeout_on_a_busy_lock() {
    let cs = shared_connect();
    let path = unique_path("cli-busy");
    let client = connect(&cs, T).await;
    let holder = zk_lock::Mutex::new(&client, &path).unwrap().lock().await.unwrap();
    // Sessions are transactions of their own (the server's zxid moves when one is created or
    // closed): what must not change is the lock directory, its child version and the zxid of
    // its last child change.
    let dir_stat = || async { client.check_stat(&path).await.unwrap().map(|s| (s.cversion, s.pzxid)) };
    let before = dir_stat().await;
    let mut c = zk_lock(&cs);
    c.args(["run", "--try", "-E", "9", &path, "--", "true"]);
    let started = Instant::now();
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    assert_eq!(dir_stat().await, before, "--try on a busy lock wrote nothing");

    let mut c = zk_lock(&cs);
    c.args(["run", "--timeout", "1s", &path, "--", "true"]);
    let started = Instant::now();
    let out = output(c).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(children(&client, &path).await.len(), 1, "the timed-out waiter left no node");
    holder.release().await.unwrap();
}

/// The command's exit status is passed through: 0, 3, and 128+n when a signal killed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_exit_status_is_passed_through() {
    let cs = shared_connect();
    let path = unique_path("cli-status");
    for (script, code) in [("exit 0", 0), ("exit 3", 3), ("kill -KILL $$", 128 + 9), ("kill -TERM $$", 128 + 15)] {
        let mut c = zk_lock(&cs);
        c.args(["run", &path, "--", "sh", "-c", script]);
        assert_eq!(output(c).await.status.code(), Some(code), "{script}");
    }
    let mut c = zk_lock(&cs);
    c.args(["run", &path, "--", "/no/such/command"]);
    assert_eq!(output(c).await.status.code(), Some(127));
    let client = connect(&cs, T).await;
    assert!(children(&client, &path).await.is_empty());
}

/// Errors are one line on stderr with a documented code, and leave nothing on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_their_code() {
    let cs = shared_connect();
    let port = common::process::free_ports(1)[0];
    for (args, code) in [
        (vec!["run".to_owned(), "relative/path".into(), "--".into(), "true".into()], 2),
        (vec!["run".into(), "--permits".into(), "0".into(), "/x".into(), "--".into(), "true".into()], 2),
        (vec!["run".into(), "--lease".into(), "0s".into(), "/x".into(), "--".into(), "true".into()], 2),
        (
            vec![
                "run".into(),
                "--connect".into(),
                format!("127.0.0.1:{port}"),
                "/x".into(),
                "--".into(),
                "true".into(),
            ],
            69,
        ),
        (vec!["list".into(), "--connect".into(), "".into(), "/x".into()], 2),
        (vec!["run".into(), "--timeout".into(), "soon".into(), "/x".into(), "--".into(), "true".into()], 2),
        (vec!["run".into(), "/x".into()], 2),
        (vec!["run".into(), "-E".into(), "256".into(), "/x".into(), "--".into(), "true".into()], 2),
    ] {
        let mut c = zk_lock(&cs);
        c.args(&args);
        let out = output(c).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.starts_with("zk-lock: "), "{stderr}");
    }
    // Not authorized: a directory only another identity may use.
    let owner = zk_lock::Session::builder(&cs).auth("digest", "owner:secret").connect().await.unwrap();
    // The parents open to all, made first: those the lock makes get its ACLs, which would
    // close the shared test root to the other tests.
    let root = unique_path("cli-acl");
    common::ensure_path(&connect(&cs, T).await, &root).await;
    let path = format!("{root}/lock");
    let m = zk_lock::Mutex::builder(&owner, &path).acls(zk_lock::zk::Acls::creator_all()).build().unwrap();
    let held = m.lock().await.unwrap(); // keeps the directory from being reaped meanwhile
    let mut c = zk_lock(&cs);
    c.args(["run", &path, "--", "true"]);
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(77), "{}", String::from_utf8_lossy(&out.stderr));
    held.release().await.unwrap();
}

/// The lock is lost while the command runs (the server expires zk-lock's session during a
/// cut): the command, and what it started, get SIGTERM within one session timeout; zk-lock
/// exits with 75.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_lock_stops_the_command() {
    let cs = shared_connect();
    let proxy = TcpProxy::start(cs.parse().unwrap());
    let dir = scratch("cli-lost");
    let path = unique_path("cli-lost");
    let mut c = zk_lock(&proxy.connect_string());
    c.current_dir(&dir).args([
        "run",
        "--session-timeout",
        "4s",
        &path,
        "--",
        "sh",
        "-c",
        "sleep 60 & echo $! > grandchild; trap 'echo TERM > got; exit 0' TERM; touch started; \
         while :; do sleep 0.05; done",
    ]);
    c.stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || dir.join("started").exists()).await);
    let cut = Instant::now();
    proxy.set_mode(ProxyMode::Refuse);
    let got = dir.join("got");
    assert!(common::wait_until(Duration::from_secs(10), || got.exists()).await, "the command never got SIGTERM");
    let took = cut.elapsed();
    assert!(took < Duration::from_secs(4), "SIGTERM within one session timeout: {took:?}");
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.expect("zk-lock exits").unwrap();
    assert_eq!(status.code(), Some(75));
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "TERM");
    let grandchild: u32 = std::fs::read_to_string(dir.join("grandchild")).unwrap().trim().parse().unwrap();
    let stopped = common::wait_until(Duration::from_secs(2), || !common::pid_alive(grandchild)).await;
    assert!(stopped, "what the command started runs on without the lock");
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("lost"), "{stderr}");
    // The server expires the session: its node goes with it.
    let client = connect(&cs, T).await;
    let gone = common::wait_until_async(Duration::from_secs(5), || async { children(&client, &path).await.is_empty() });
    assert!(gone.await, "the node of the expired session stays");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGINT to zk-lock while the command runs: forwarded, the command stops, the lock is
/// released; SIGTERM while it still waits: it exits within a second and leaves no node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_while_running_and_while_waiting() {
    let cs = shared_connect();
    let dir = scratch("cli-signals");
    let path = unique_path("cli-signals");
    let client = connect(&cs, T).await;
    let mut c = zk_lock(&cs);
    c.current_dir(&dir).args(["run", "--quiet", &path, "--", "sh", "-c", "touch started; exec sleep 30"]);
    let mut running = c.spawn().unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || dir.join("started").exists()).await);
    signal(&running, libc::SIGINT);
    let status = tokio::time::timeout(Duration::from_secs(5), running.wait()).await.expect("stopped").unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "the command's status");
    assert!(children(&client, &path).await.is_empty(), "released");

    let holder = zk_lock::Mutex::new(&client, &path).unwrap().lock().await.unwrap();
    let mut c = zk_lock(&cs);
    c.args(["run", &path, "--", "true"]);
    let mut waiting = c.spawn().unwrap();
    common::wait_for_children(&client, &path, 2).await;
    let sent = Instant::now();
    signal(&waiting, libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting.wait()).await.expect("exits").unwrap();
    assert!(sent.elapsed() < Duration::from_secs(1), "took {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert_eq!(children(&client, &path).await.len(), 1, "the waiter left no node");
    // SIGINT while waiting: 130, no node either.
    let mut c = zk_lock(&cs);
    c.args(["run", "--quiet", &path, "--", "true"]);
    let mut waiting = c.spawn().unwrap();
    common::wait_for_children(&client, &path, 2).await;
    signal(&waiting, libc::SIGINT);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting.wait()).await.expect("exits").unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    assert_eq!(children(&client, &path).await.len(), 1, "the waiter left no node");
    holder.release().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `list`: the holder first, the waiters in order; `--json` parses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_queue_holder_first() {
    let cs = shared_connect();
    let path = unique_path("cli-list");
    let clients = common::connect_many(&cs, 3, T).await;
    let holder = zk_lock::Mutex::builder(&clients[0], &path).data("first").build().unwrap().lock().await.unwrap();
    let mut waiters = Vec::new();
    for (i, client) in clients[1..].iter().enumerate() {
        let m = zk_lock::Mutex::builder(client, &path).data(format!("waiter-{i}")).build().unwrap();
        waiters.push(tokio::spawn(async move { m.lock().await.unwrap().release().await.unwrap() }));
        common::wait_for_children(&clients[0], &path, i + 2).await;
    }
    let mut c = zk_lock(&cs);
    c.args(["list", "--json", &path]);
    let out = output(c).await;
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = rows.as_array().unwrap();
    let data: Vec<_> = rows.iter().map(|r| r["data"].as_str().unwrap().to_owned()).collect();
    assert_eq!(data, ["first", "waiter-0", "waiter-1"]);
    assert_eq!(rows[0]["token"].as_i64().unwrap(), holder.fencing_token().as_i64());
    assert_eq!(rows[0]["session"].as_str().unwrap(), clients[0].session_id().to_string());
    let mut c = zk_lock(&cs);
    c.args(["list", &path]);
    let table = String::from_utf8(output(c).await.stdout).unwrap();
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[1].starts_with('0') && lines[1].ends_with("first"), "{table}");
    assert!(lines[3].starts_with('2') && lines[3].ends_with("waiter-1"), "{table}");
    holder.release().await.unwrap();
    for w in waiters {
        w.await.unwrap();
    }
}

/// On a terminal, the progress line shows how many are ahead: 2, then 1, then the command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_progress_line_on_a_terminal() {
    let cs = shared_connect();
    let dir = scratch("cli-tty");
    let path = unique_path("cli-tty");
    let clients = common::connect_many(&cs, 2, T).await;
    let holder = zk_lock::Mutex::new(&clients[0], &path).unwrap().lock().await.unwrap();
    let second = zk_lock::Mutex::new(&clients[1], &path).unwrap();
    let second = tokio::spawn(async move { second.lock().await.unwrap() });
    common::wait_for_children(&clients[0], &path, 2).await;
    // `script` gives the command a pseudo-terminal and copies what it writes to `typescript`.
    // The command records its process group and zk-lock's: on a terminal they are the same (job
    // control works for it as for any command).
    let line = format!(
        "ZOOKEEPER_CONNECT={cs} {BIN} run {path} -- sh -c \
         'awk \"{{print \\$5}}\" /proc/$$/stat > child; awk \"{{print \\$5}}\" /proc/$PPID/stat > parent; touch ran'"
    );
    let mut c = Command::new("script");
    c.current_dir(&dir).args(["-qfec", &line, "typescript"]).stdout(Stdio::null()).kill_on_drop(true);
    let mut script = c.spawn().expect("`script` (util-linux) runs the command on a pseudo-terminal");
    let typescript = dir.join("typescript");
    let shows = |text: &'static str, file: PathBuf| async move {
        common::wait_until(Duration::from_secs(6), || read_lossy(&file).contains(text)).await
    };
    assert!(shows("2 ahead", typescript.clone()).await, "{}", read_lossy(&typescript));
    holder.release().await.unwrap();
    let second = second.await.unwrap();
    assert!(shows("1 ahead", typescript.clone()).await, "{}", read_lossy(&typescript));
    assert!(!dir.join("ran").exists());
    second.release().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), script.wait()).await.unwrap().unwrap();
    assert!(status.success());
    assert!(dir.join("ran").exists());
    let group = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap().trim().to_owned();
    assert!(group("child").parse::<u32>().is_ok(), "no process group recorded: {:?}", group("child"));
    assert_eq!(group("child"), group("parent"), "on a terminal the command shares zk-lock's group");
    let text = read_lossy(&typescript);
    assert!(text.contains("holder session 0x"), "{text}");
    assert!(text.find("2 ahead").unwrap() < text.find("1 ahead").unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// `--help` reads like a man page: examples and the exit codes.
#[test]
fn help_has_examples_and_exit_codes() {
    let out = std::process::Command::new(BIN).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in ["EXAMPLES", "EXIT STATUS", "--try", "--permits", "--lease", "ZK_LOCK_TOKEN", "75"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

/// `--lease`: a command that ignores SIGTERM is killed `--kill-after` later, and zk-lock exits
/// with 75; `--permits 2`: two run at once, a third waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_kill_after_and_permits() {
    let cs = shared_connect();
    let path = unique_path("cli-lease");
    let mut c = zk_lock(&cs);
    c.args(["run", "--lease", "1s", "--kill-after", "500ms", &path, "--", "sh", "-c", "trap '' TERM; sleep 30"]);
    let started = Instant::now();
    let out = output(c).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "took {took:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("lease ran out"));
    let client = connect(&cs, T).await;
    assert!(children(&client, &path).await.is_empty());

    let dir = scratch("cli-permits");
    let path = unique_path("cli-permits");
    let script = "echo in >> log; sleep 1.5; echo out >> log";
    let mut workers = Vec::new();
    for _ in 0..3 {
        let mut c = zk_lock(&cs);
        c.current_dir(&dir).args(["run", "--quiet", "--permits", "2", &path, "--", "sh", "-c", script]);
        workers.push(c.spawn().unwrap());
    }
    for mut w in workers {
        assert!(tokio::time::timeout(Duration::from_secs(20), w.wait()).await.unwrap().unwrap().success());
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    let (mut inside, mut most) = (0, 0);
    for line in log.lines() {
        inside += if line == "in" { 1 } else { -1 };
        most = most.max(inside);
    }
    assert_eq!(most, 2, "two at once, never three:\n{log}");
    assert!(children(&client, &path).await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A lock the command's ACLs (open, its default) cannot use: a directory made under
/// `creator_all` by the credential-less sessions of this (test) process. The command is refused
/// with the not-authorized code (77) and writes nothing; this process's own sessions go on
/// taking turns. (`edges::another_process_without_credentials_is_refused_a_creator_all_lock`
/// checks a contender of another process with the same restricted ACLs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_without_credentials_is_refused_a_creator_all_lock() {
    use zk_lock::zk::Acls;
    let cs = shared_connect();
    let (a, b) = (connect(&cs, T).await, connect(&cs, T).await);
    // Parents open to all, made first: those a lock makes get its ACLs, which would close
    // the shared test root to every other client.
    let root = unique_path("cli-creator-all");
    common::ensure_path(&a, &root).await;
    let path = format!("{root}/lock");
    let ma = zk_lock::Mutex::builder(&a, path.clone()).acls(Acls::creator_all()).build().unwrap();
    let mb = zk_lock::Mutex::builder(&b, path.clone()).acls(Acls::creator_all()).build().unwrap();
    // Held meanwhile, so that the directory is not reaped.
    let held = ma.lock().await.unwrap();
    let before = a.get_children(&path).await.unwrap().1;
    let mut c = zk_lock(&cs);
    c.args(["run", &path, "--", "true"]);
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(77), "{}", String::from_utf8_lossy(&out.stderr));
    let after = a.get_children(&path).await.unwrap().1;
    assert_eq!((after.cversion, after.pzxid), (before.cversion, before.pzxid), "nothing was written");
    held.release().await.unwrap();
    mb.lock().await.unwrap().release().await.unwrap();
    assert!(children(&a, &path).await.is_empty());
}
