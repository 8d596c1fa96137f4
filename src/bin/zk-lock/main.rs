//! `zk-lock`: run a program under a fair ZooKeeper lock (or a semaphore's permit), or show a
//! lock's queue. See `zk-lock --help`.

mod duration;
mod exit;
mod list;
mod run;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Fair distributed locks on Apache ZooKeeper, from the shell";

const LONG_ABOUT: &str = "\
Fair distributed locks on Apache ZooKeeper, from the shell.

`zk-lock run` waits for a lock in strict arrival order (FIFO), runs a command while holding it,
and releases it when the command exits. Each waiter watches only the one before it, so a
release wakes one waiter, however long the queue. The command gets the lock's fencing token
(ZK_LOCK_TOKEN): pass it to what it writes, so that a holder that lost the lock without
knowing it cannot overwrite a newer one. If the lock is lost while the command runs (the
ZooKeeper session expired, a lease ran out), the command gets SIGTERM, then SIGKILL.

`zk-lock list` shows a lock's queue, holder first.

The lock's nodes are Apache Curator's layout (InterProcessMutex, InterProcessSemaphoreV2
leases), so Curator and zk-lock clients on one path share one queue.";

const RUN_ABOUT: &str = "\
Wait for the lock in strict arrival order, run CMD while holding it, release it when CMD exits,
and exit with CMD's status.

While waiting, a progress line on stderr says how many are ahead and who holds the lock (live
on a terminal, every 5 s otherwise; --quiet turns it off). CMD gets ZK_LOCK_PATH, ZK_LOCK_NODE
and ZK_LOCK_TOKEN. Without a controlling terminal (cron, systemd, CI) CMD runs in its own
process group: SIGINT and SIGTERM sent to zk-lock are passed on to the group, and a lost lock
stops everything CMD started. With a controlling terminal CMD stays in zk-lock's process group,
as any command of the shell (job control works, Ctrl-C reaches it once), and only CMD itself is
signalled (SIGTERM passed on; the terminal's SIGINT reaches it directly). If the lock is lost
while CMD runs (the session expired, we could not reach ZooKeeper for most of the session
timeout, a --lease ran out), CMD gets SIGTERM, then SIGKILL after --kill-after, and zk-lock
exits with 75: until then CMD may overlap the next holder, which is what the fencing token
(ZK_LOCK_TOKEN) is for. If zk-lock itself dies, CMD gets SIGTERM. Interrupted while waiting,
zk-lock leaves the queue and exits with
130 (SIGINT) or 143 (SIGTERM).";

const EXAMPLES: &str = "\
EXAMPLES
    One deploy at a time, across machines:
        zk-lock run /locks/deploy -- ./deploy.sh

    A cron job that skips its turn when the last run is still going:
        zk-lock run --try /locks/nightly -- ./nightly.sh

    At most 4 crawlers at once, in arrival order:
        zk-lock run --permits 4 /limits/crawlers -- ./crawl.sh

    Give up after a minute of waiting; kill a run that holds the lock for over an hour:
        zk-lock run --timeout 1m --lease 1h /locks/report -- ./report.sh

    Who holds it, who waits:
        zk-lock list /locks/deploy
        zk-lock list --json /locks/deploy | jq '.[0].session'

ENVIRONMENT
    ZOOKEEPER_CONNECT    default for --connect (else 127.0.0.1:2181)
    The command gets:
    ZK_LOCK_PATH         the lock path
    ZK_LOCK_NODE         our lock node
    ZK_LOCK_TOKEN        the fencing token (a decimal integer, larger for every later holder)
";

#[derive(Parser, Debug)]
#[command(name = "zk-lock", version, about = ABOUT, long_about = LONG_ABOUT)]
#[command(after_long_help = after_help())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn after_help() -> String {
    format!("{EXAMPLES}\n{}", exit::TABLE)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Wait for the lock in arrival order, run CMD while holding it, release it when CMD exits
    #[command(long_about = RUN_ABOUT, after_long_help = after_help())]
    Run(RunArgs),
    /// Show the queue of a lock, holder first
    #[command(long_about = LIST_ABOUT)]
    List(ListArgs),
}

const LIST_ABOUT: &str = "\
Show the queue of a lock, holder first: position, session, age, fencing token, node and data.
The layout (mutex, semaphore, read/write lock, leader election) is found from the node names.
With --json: one array of objects with the fields position, node, session (hex), data (text,
or null when an ACL hides it), age_ms, token and lease_until_ms (Unix milliseconds, or null).
Exit status: 0, or as for `zk-lock run` (2 bad path, 69 unreachable, 77 not authorized).";

/// How to reach ZooKeeper.
#[derive(Args, Debug, Clone)]
struct ConnectArgs {
    /// ZooKeeper servers, `host:port[,host:port...][/chroot]`
    #[arg(long, value_name = "HOSTS", env = "ZOOKEEPER_CONNECT", default_value = "127.0.0.1:2181")]
    connect: String,
    /// Session timeout: how long a lock outlives a zk-lock that died without releasing it
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::parse)]
    session_timeout: Duration,
    /// Digest credentials for the session (`user:password`), for locks with ACLs
    #[arg(long, value_name = "USER:PASSWORD", env = "ZK_LOCK_DIGEST", hide_env_values = true)]
    digest: Option<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Give up waiting after DURATION (exit with the conflict code)
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, conflicts_with = "try_only")]
    timeout: Option<Duration>,
    /// Never wait: exit with the conflict code at once if the lock is taken (writes nothing)
    #[arg(long = "try")]
    try_only: bool,
    /// Exit code for --try on a busy lock and for --timeout
    #[arg(long, short = 'E', value_name = "N", default_value_t = exit::CONFLICT,
          value_parser = clap::value_parser!(i32).range(0..=255))]
    conflict_exit_code: i32,
    /// Take one permit of an N-permit semaphore instead of the mutex
    #[arg(long, value_name = "N")]
    permits: Option<u32>,
    /// Maximum hold time: the lock is released (and CMD stopped) after DURATION
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    lease: Option<Duration>,
    /// After the lock is lost, how long CMD has between SIGTERM and SIGKILL (it may overlap the
    /// next holder meanwhile: fence with ZK_LOCK_TOKEN)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::parse)]
    kill_after: Duration,
    /// Data for our lock node (what `list` shows; default: this host's name and our pid)
    #[arg(long, value_name = "TEXT")]
    data: Option<String>,
    /// No progress line while waiting
    #[arg(long, short)]
    quiet: bool,
    /// The lock path (absolute ZooKeeper path)
    path: String,
    /// The command and its arguments (after `--`)
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// One JSON array of objects instead of a table
    #[arg(long)]
    json: bool,
    /// The lock path
    path: String,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                e.exit();
            }
            // One line, as every other error.
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            std::process::exit(fail(exit::USAGE, format!("{line} (see zk-lock --help)")));
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::List(args) => list::list(args).await,
        }
    });
    // Background work (a session still closing) is not waited for: every node of ours is
    // deleted before we get here.
    runtime.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

/// Prints `zk-lock: <message>` on stderr (one line) and returns `code`.
fn fail(code: i32, message: impl std::fmt::Display) -> i32 {
    eprintln!("zk-lock: {message}");
    code
}

/// Connects, mapping errors to exit codes.
async fn connect(args: &ConnectArgs) -> Result<zk_lock::Session, i32> {
    let mut builder =
        zk_lock::Session::builder(&args.connect).session_timeout(args.session_timeout).reconnect_attempts(3);
    if let Some(digest) = &args.digest {
        builder = builder.auth("digest", digest.as_bytes());
    }
    builder.connect().await.map_err(|e| fail(exit::for_error(&e, exit::CONFLICT), e))
}

/// Drops what uses the session, then closes it, so that the server deletes what is left of
/// ours at once (not after the session timeout).
async fn close(session: zk_lock::Session) {
    session.close(Duration::from_secs(1)).await;
}
