//! `zk-lock run`: wait for the lock, run the command while holding it, release it.

use std::io::{IsTerminal, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use zk_lock::{Error, Lock, LockGuard, Mutex, Participant, Position, Progress, Semaphore, Session};

use crate::{exit, fail, RunArgs};

/// The lock `run` takes: the mutex, or a permit of a semaphore.
#[derive(Clone)]
pub(crate) enum Recipe {
    Mutex(Mutex),
    Semaphore(Semaphore),
}

impl Recipe {
    fn lock(&self) -> &dyn Lock {
        match self {
            Recipe::Mutex(m) => m,
            Recipe::Semaphore(s) => s,
        }
    }

    async fn participants(&self) -> zk_lock::Result<Vec<Participant>> {
        match self {
            Recipe::Mutex(m) => m.participants().await,
            Recipe::Semaphore(s) => s.participants().await,
        }
    }

    async fn holder(&self) -> zk_lock::Result<Option<Participant>> {
        match self {
            Recipe::Mutex(m) => m.holder().await,
            Recipe::Semaphore(s) => s.holder().await,
        }
    }
}

fn default_data() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{} pid {}", host.trim(), std::process::id())
}

fn build(session: &Session, args: &RunArgs) -> zk_lock::Result<Recipe> {
    let data = args.data.clone().unwrap_or_else(default_data);
    match args.permits {
        None => {
            let mut b = Mutex::builder(session, &args.path).data(data);
            if let Some(lease) = args.lease {
                b = b.lease(lease);
            }
            b.build().map(Recipe::Mutex)
        }
        Some(permits) => {
            let mut b = Semaphore::builder(session, &args.path).permits(permits).data(data);
            if let Some(lease) = args.lease {
                b = b.lease(lease);
            }
            b.build().map(Recipe::Semaphore)
        }
    }
}

fn status_code(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => exit::SOFTWARE,
    }
}

/// Checks what can be checked before connecting: a bad path, permit count or lease is a usage
/// error even when the server is down.
fn check(args: &RunArgs) -> Result<(), i32> {
    let usage = |e: Error| fail(exit::USAGE, e);
    zk_lock::LockPath::new(args.path.as_str()).map_err(usage)?;
    if args.permits == Some(0) {
        return Err(usage(Error::InvalidPermits { path: args.path.clone() }));
    }
    if args.lease.is_some_and(|l| l.is_zero()) {
        return Err(fail(exit::USAGE, "invalid lease 0ns: it must be above zero"));
    }
    Ok(())
}

/// A signal that came while we waited.
enum Interrupted {
    Signal(libc::c_int),
}

pub(crate) async fn run(args: RunArgs) -> i32 {
    if let Err(code) = check(&args) {
        return code;
    }
    let (Ok(mut sigint), Ok(mut sigterm)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return fail(exit::SOFTWARE, "cannot install signal handlers");
    };
    // Signals count from here on, connecting included.
    let session = tokio::select! {
        connected = crate::connect(&args.connect) => match connected {
            Ok(session) => session,
            Err(code) => return code,
        },
        _ = sigint.recv() => return 128 + libc::SIGINT,
        _ = sigterm.recv() => return 128 + libc::SIGTERM,
    };
    let code = match build(&session, &args) {
        Ok(recipe) => take_and_run(&args, &session, recipe, &mut sigint, &mut sigterm).await,
        Err(e) => fail(exit::for_error(&e, args.conflict_exit_code), e),
    };
    crate::close(session).await;
    code
}

async fn take_and_run(
    args: &RunArgs,
    session: &Session,
    recipe: Recipe,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> i32 {
    let (progress, position) = Progress::new();
    let show = !args.quiet && !args.try_only;
    let tty = std::io::stderr().is_terminal();
    let period = if tty { Duration::from_secs(2) } else { Duration::from_secs(5) };
    let progress = if show { progress.refresh_every(period) } else { progress };
    let display = show.then(|| Display::start(position, &recipe, &args.path, tty));
    let acquire = async {
        if args.try_only {
            recipe.lock().try_acquire().await
        } else {
            recipe.lock().acquire_with(args.timeout, &progress).await
        }
    };
    let acquired = tokio::select! {
        acquired = acquire => Ok(acquired),
        _ = sigint.recv() => Err(Interrupted::Signal(libc::SIGINT)),
        _ = sigterm.recv() => Err(Interrupted::Signal(libc::SIGTERM)),
    };
    if let Some(display) = display {
        display.stop();
    }
    match acquired {
        Err(Interrupted::Signal(sig)) => {
            // The dropped acquire deletes its node in the background: wait until it is gone.
            withdrawn(&recipe, session).await;
            128 + sig
        }
        Ok(Err(e @ (Error::WouldBlock { .. } | Error::Timeout { .. }))) => fail(args.conflict_exit_code, e),
        Ok(Err(e)) => fail(exit::for_error(&e, args.conflict_exit_code), e),
        Ok(Ok(guard)) => hold(args, guard, sigint, sigterm).await,
    }
}

/// Whether we have a controlling terminal (as `timeout --foreground` asks): then the command
/// stays in our process group, so that job control (Ctrl-Z, `fg`, `bg`, reading the terminal)
/// and the terminal's Ctrl-C work for it as for any command of the shell.
fn controlling_terminal() -> bool {
    std::fs::OpenOptions::new().read(true).open("/dev/tty").is_ok()
}

/// How the command is signalled: its own process group (everything it started), or, when it
/// shares ours (a controlling terminal), the command alone.
#[derive(Clone, Copy)]
enum Target {
    Group(libc::pid_t),
    Process(libc::pid_t),
    Gone,
}

impl Target {
    fn send(self, sig: libc::c_int) {
        let pid = match self {
            Target::Group(group) => -group,
            Target::Process(pid) => pid,
            Target::Gone => return,
        };
        // SAFETY: kill(2) of our child (or its process group) with a valid signal number.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Runs the command while `guard` holds.
async fn hold(
    args: &RunArgs,
    guard: LockGuard,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> i32 {
    let mut command = tokio::process::Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("ZK_LOCK_PATH", &args.path)
        .env("ZK_LOCK_NODE", guard.node())
        .env("ZK_LOCK_TOKEN", guard.fencing_token().as_i64().to_string());
    let terminal = controlling_terminal();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (signal, prctl, getppid, _exit, setpgid).
    unsafe {
        command.pre_exec(move || {
            // Our handlers are inherited until exec: the defaults first, so that a signal for
            // the command (PDEATHSIG included) acts on it from here on.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            // If zk-lock dies, the command must not run on without the lock; if it died
            // already, do not start.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != parent {
                libc::_exit(128 + libc::SIGTERM);
            }
            if !terminal {
                // Its own process group: a signal for it reaches everything it started.
                libc::setpgid(0, 0);
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = guard.release().await;
            let code = if e.kind() == std::io::ErrorKind::NotFound { exit::NOT_FOUND } else { exit::CANNOT_RUN };
            return fail(code, format!("cannot run {:?}: {e}", args.command[0]));
        }
    };
    let target = match child.id().map(|pid| pid as libc::pid_t) {
        Some(pid) if terminal => Target::Process(pid),
        Some(pid) => Target::Group(pid),
        None => Target::Gone,
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = match status {
                    Ok(status) => status_code(status),
                    Err(e) => fail(exit::SOFTWARE, format!("cannot wait for the command: {e}")),
                };
                if let Err(e) = guard.release().await {
                    eprintln!("zk-lock: {e} (after the command ended)");
                }
                return code;
            }
            () = guard.lost() => {
                // Signal first, then say so.
                target.send(libc::SIGTERM);
                let why = guard.lost_reason().map(|r| r.to_string()).unwrap_or_else(|| "lost".into());
                eprintln!("zk-lock: lock {} lost ({why}): stopping the command", args.path);
                let stopped = async {
                    loop {
                        tokio::select! {
                            _ = child.wait() => return,
                            _ = sigint.recv(), if !terminal => target.send(libc::SIGINT),
                            _ = sigterm.recv() => target.send(libc::SIGTERM),
                        }
                    }
                };
                if tokio::time::timeout(args.kill_after, stopped).await.is_err() {
                    target.send(libc::SIGKILL);
                    let _ = child.wait().await;
                }
                if let Target::Group(_) = target {
                    // What it started may outlive it: the rest of the group goes too.
                    target.send(libc::SIGKILL);
                }
                // No release to wait for: the node went with the session or the lease, or goes
                // when the server expires the session.
                drop(guard);
                return exit::LOST;
            }
            // With a controlling terminal, its Ctrl-C has reached the command already (same
            // process group): only a SIGINT without one is passed on.
            _ = sigint.recv() => if !terminal { target.send(libc::SIGINT) },
            _ = sigterm.recv() => target.send(libc::SIGTERM),
        }
    }
}

/// Waits (up to 3 s) until no node of our session is left in the queue.
async fn withdrawn(recipe: &Recipe, session: &Session) {
    let Some(ours) = session.client().map(|c| c.session_id()) else { return };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match recipe.participants().await {
            Ok(queue) if queue.iter().all(|p| p.session_id() != ours) => return,
            Err(_) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The progress line while waiting: live on a terminal, a line every 5 s otherwise.
struct Display {
    task: tokio::task::JoinHandle<()>,
    tty: bool,
}

impl Display {
    fn start(position: watch::Receiver<Position>, recipe: &Recipe, path: &str, tty: bool) -> Display {
        let task = tokio::spawn(show(position, recipe.clone(), path.to_owned(), tty));
        Display { task, tty }
    }

    fn stop(self) {
        self.task.abort();
        if self.tty {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

async fn show(mut position: watch::Receiver<Position>, recipe: Recipe, path: String, tty: bool) {
    let since = Instant::now();
    let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(5) };
    let mut holder_session: Option<String> = None;
    let mut looked_for: Option<usize> = None;
    let mut next_line = Instant::now() + every;
    loop {
        let ahead = position.borrow_and_update().ahead();
        if let Some(ahead) = ahead.filter(|a| *a > 0) {
            if looked_for != Some(ahead) {
                // Who holds: a listing and a read at each change of our place.
                looked_for = Some(ahead);
                holder_session = recipe.holder().await.ok().flatten().map(|p| p.session_id().to_string());
            }
            let line = format!(
                "waiting for {path}: {ahead} ahead, holder session {}, for {} s",
                holder_session.as_deref().unwrap_or("?"),
                since.elapsed().as_secs()
            );
            if tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else if Instant::now() >= next_line {
                eprintln!("zk-lock: {line}");
                next_line = Instant::now() + every;
            }
        }
        let tick = if tty { every } else { next_line.saturating_duration_since(Instant::now()) };
        tokio::select! {
            changed = position.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(tick.max(Duration::from_millis(50))) => {}
        }
    }
}
