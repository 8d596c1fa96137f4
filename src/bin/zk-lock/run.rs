//! `zk-lock run`: wait for the lock, run the command while holding it, release it.

use std::io::{IsTerminal, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use zk_lock::{Error, Lock, LockGuard, Mutex, Participant, Position, Progress, Semaphore, Session};

use crate::{exit, fail, RunArgs};

/// The lock `run` takes: the mutex, or a permit of a semaphore.
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

/// Sends `sig` to the child `pid`.
fn kill(pid: Option<u32>, sig: libc::c_int) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a pid of our own child and a valid signal number has no memory
        // effects.
        unsafe {
            libc::kill(pid, sig);
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

pub(crate) async fn run(args: RunArgs) -> i32 {
    let (Ok(mut sigint), Ok(mut sigterm)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return fail(exit::SOFTWARE, "cannot install signal handlers");
    };
    let session = match crate::connect(&args.connect).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    let recipe = match build(&session, &args) {
        Ok(recipe) => recipe,
        Err(e) => return fail(exit::for_error(&e, args.conflict_exit_code), e),
    };
    let (progress, position) = Progress::new();
    let show = !args.quiet && !args.try_only;
    let progress = if show { progress.refresh_every(Duration::from_secs(2)) } else { progress };
    let display = show.then(|| Display::start(position, &recipe, &args.path));
    let acquire = async {
        if args.try_only {
            recipe.lock().try_acquire().await
        } else {
            recipe.lock().acquire_with(args.timeout, &progress).await
        }
    };
    let acquired = tokio::select! {
        acquired = acquire => Ok(acquired),
        _ = sigint.recv() => Err(libc::SIGINT),
        _ = sigterm.recv() => Err(libc::SIGTERM),
    };
    if let Some(display) = display {
        display.stop();
    }
    let guard = match acquired {
        Err(sig) => {
            // The dropped acquire deletes its node in the background: wait until it is gone.
            withdrawn(&recipe, &session).await;
            return 128 + sig;
        }
        Ok(Err(e @ (Error::WouldBlock { .. } | Error::Timeout { .. }))) => {
            let code = args.conflict_exit_code;
            return fail(code, format!("{e}"));
        }
        Ok(Err(e)) => return fail(exit::for_error(&e, args.conflict_exit_code), e),
        Ok(Ok(guard)) => guard,
    };
    hold(&args, guard, &mut sigint, &mut sigterm).await
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
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = guard.release().await;
            let code = if e.kind() == std::io::ErrorKind::NotFound { exit::NOT_FOUND } else { exit::CANNOT_RUN };
            return fail(code, format!("cannot run {:?}: {e}", args.command[0]));
        }
    };
    let pid = child.id();
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
                let why = guard.lost_reason().map(|r| r.to_string()).unwrap_or_else(|| "lost".into());
                eprintln!("zk-lock: lock {} lost ({why}): stopping the command", args.path);
                kill(pid, libc::SIGTERM);
                if tokio::time::timeout(args.kill_after, child.wait()).await.is_err() {
                    kill(pid, libc::SIGKILL);
                    let _ = child.wait().await;
                }
                // No release to wait for: the node went with the session or the lease, or goes
                // when the server expires the session.
                drop(guard);
                return exit::LOST;
            }
            _ = sigint.recv() => kill(pid, libc::SIGINT),
            _ = sigterm.recv() => kill(pid, libc::SIGTERM),
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
    fn start(position: watch::Receiver<Position>, recipe: &Recipe, path: &str) -> Display {
        let tty = std::io::stderr().is_terminal();
        let lock = match recipe {
            Recipe::Mutex(m) => Recipe::Mutex(m.clone()),
            Recipe::Semaphore(s) => Recipe::Semaphore(s.clone()),
        };
        let task = tokio::spawn(show(position, lock, path.to_owned(), tty));
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
    let mut holder: Option<String> = None;
    let mut looked_for: Option<usize> = None;
    let mut next_line = Instant::now() + every;
    loop {
        let ahead = position.borrow_and_update().ahead();
        if let Some(ahead) = ahead.filter(|a| *a > 0) {
            if looked_for != Some(ahead) {
                // Who holds: one more read of the queue at each change of our place.
                looked_for = Some(ahead);
                holder = match recipe.participants().await {
                    Ok(queue) => queue.first().map(|p| p.session_id().to_string()),
                    Err(_) => None,
                };
            }
            let line = format!(
                "waiting for {path}: {ahead} ahead, holder session {}, for {} s",
                holder.as_deref().unwrap_or("?"),
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
