#!/usr/bin/env bash
# Single-quoted bash -c bodies are meant not to expand here; cleanup runs via trap.
# shellcheck disable=SC2016,SC2317
# testenv/selftest.sh — proves testenv/zk's acceptance points for real, in
# native mode, on a free non-default port (22181 unless taken; override the
# first candidate with SELFTEST_PORT) and in a temporary state directory, so it
# never touches a user's server. Prints "N passed, M failed"; exit 1 on failure.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ZK="$HERE/zk"
HOST=127.0.0.1

PASSED=0
FAILED=0
LISTENER_PID=""
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zk-testenv-selftest.XXXXXX")
export ZK_TESTENV_DIR="$WORK/state"
export ZK_TESTENV_MODE=native
export ZK_TESTENV_TIMEOUT=40

say() { printf '%s\n' "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); say "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); say "FAIL - $1"; }
check() { # description, then a command: pass if it succeeds
  local desc=$1
  shift
  if "$@"; then pass "$desc"; else fail "$desc"; fi
}

# PIDs of java processes whose command line names a config in our state dir.
our_pids() {
  local f pid cmd
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    if [[ $cmd == *QuorumPeerMain*"$ZK_TESTENV_DIR/"* ]]; then echo "$pid"; fi
  done
}
count_procs() { our_pids | wc -l | tr -d ' '; }

# Live servers per pid files: pid file present, process alive, ours.
count_pidfiles_alive() {
  local f pid n=0
  for f in "$ZK_TESTENV_DIR"/m*/pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$ZK_TESTENV_DIR/"; then
      n=$((n + 1))
    fi
  done
  echo "$n"
}

four_lw() { # port cmd
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1; printf %s "$3" >&3; cat <&3' \
    _ "$HOST" "$1" "$2" 2>/dev/null
}
mode_of() { four_lw "$1" srvr | sed -n 's/^Mode: *//p'; }
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$1" 2>/dev/null; }

cleanup() {
  local pid n
  trap - EXIT INT TERM
  timeout 60 "$ZK" down >/dev/null 2>&1 || true
  if [[ -n $LISTENER_PID ]]; then kill "$LISTENER_PID" 2>/dev/null || true; fi
  # Anything of ours still alive (started under our private state dir): by pid.
  for pid in $(our_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for ((n = 0; n < 50; n++)); do
    [[ -z $(our_pids) ]] && break
    sleep 0.1
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- pick a base port whose client/quorum/election ports are all free ----
all_free() {
  local b=$1 o i
  for o in 0 1000 2000; do
    for i in 0 1 2; do
      if port_open $((b + o + i)); then return 1; fi
    done
  done
}
PORT=""
for cand in "${SELFTEST_PORT:-22181}" 22281 22381 22481 22581 23581 24581 25581; do
  if all_free "$cand"; then PORT=$cand; break; fi
done
if [[ -z $PORT ]]; then say "no free base port found among candidates"; exit 1; fi
export ZK_PORT=$PORT
say "selftest: port $PORT, state dir $ZK_TESTENV_DIR"

OUT="$WORK/out" ERR="$WORK/err"
mkdir -p "$WORK"
run() { # run zk with a time bound; stdout -> $OUT, stderr -> $ERR; sets RC
  RC=0
  timeout 90 "$ZK" "$@" >"$OUT" 2>"$ERR" || RC=$?
}
last_line() { tail -n 1 "$OUT"; }

# ---- standalone ----
run up
check "up exits 0" test "$RC" -eq 0
check "up prints the connect string as its last stdout line" test "$(last_line)" = "$HOST:$PORT"
check "server answers ruok with imok after up returned" test "$(four_lw "$PORT" ruok)" = imok
check "srvr reports Mode: standalone" test "$(mode_of "$PORT")" = standalone
check "one server process after first up" test "$(count_procs)" -eq 1

FIRST_PID=$(cat "$ZK_TESTENV_DIR/m1/pid" 2>/dev/null || echo none)
run up
check "second up exits 0" test "$RC" -eq 0
check "second up reprints the connect string" test "$(last_line)" = "$HOST:$PORT"
check "still exactly one server process (/proc scan)" test "$(count_procs)" -eq 1
check "still exactly one live pid file" test "$(count_pidfiles_alive)" -eq 1
check "second up kept the same server" test "$(cat "$ZK_TESTENV_DIR/m1/pid" 2>/dev/null)" = "$FIRST_PID"
CONNECT=$(timeout 90 "$ZK" up 2>/dev/null | tail -1)
check 'ZOOKEEPER_CONNECT=$(zk up | tail -1) works' test "$CONNECT" = "$HOST:$PORT"

run status
check "status exits 0 when up" test "$RC" -eq 0
check "status names mode, role and connect string" \
  bash -c 'grep -q "^up: native standalone" "$0" && grep -q "member 1: .* standalone" "$0" &&
           grep -q "^connect: $1\$" "$0"' "$OUT" "$HOST:$PORT"
run env
check "env prints an export line" test "$(cat "$OUT")" = "export ZOOKEEPER_CONNECT=$HOST:$PORT"
check "env output evals" bash -c 'eval "$1" && test "$ZOOKEEPER_CONNECT" = "$2"' _ "$(cat "$OUT")" "$HOST:$PORT"

run up --ensemble
check "up --ensemble while standalone runs is refused (non-zero)" test "$RC" -ne 0

run down
check "down exits 0" test "$RC" -eq 0
check "no server process after down" test "$(count_procs)" -eq 0
check "port closed after down" bash -c '! timeout 2 bash -c "exec 3<>/dev/tcp/$0/$1" 2>/dev/null' "$HOST" "$PORT"
check "no pid files after down" bash -c '! ls "$0"/m*/pid >/dev/null 2>&1' "$ZK_TESTENV_DIR"
run status
check "status exits 3 when down" test "$RC" -eq 3
run env
check "env exits non-zero when down" test "$RC" -ne 0
run down
check "down when nothing runs is a no-op (exit 0, message)" \
  bash -c 'test "$0" -eq 0 && grep -qi "nothing" "$1"' "$RC" "$ERR"

# ---- ensemble ----
ENS="$HOST:$PORT,$HOST:$((PORT + 1)),$HOST:$((PORT + 2))"
count_leaders() {
  local i n=0
  for i in 0 1 2; do
    if [[ $(mode_of $((PORT + i))) == leader ]]; then n=$((n + 1)); fi
  done
  echo "$n"
}
count_followers() {
  local i n=0
  for i in 0 1 2; do
    if [[ $(mode_of $((PORT + i))) == follower ]]; then n=$((n + 1)); fi
  done
  echo "$n"
}
run up --ensemble
check "up --ensemble exits 0" test "$RC" -eq 0
check "up --ensemble prints the 3-member connect string last" test "$(last_line)" = "$ENS"
check "three server processes" test "$(count_procs)" -eq 3
check "exactly one leader" test "$(count_leaders)" -eq 1
check "two followers" test "$(count_followers)" -eq 2
run up --ensemble
check "second up --ensemble exits 0 and reprints" \
  bash -c 'test "$0" -eq 0 && test "$(tail -n1 "$1")" = "$2"' "$RC" "$OUT" "$ENS"
check "still exactly three server processes" test "$(count_procs)" -eq 3
check "still exactly three live pid files" test "$(count_pidfiles_alive)" -eq 3
run status
check "status shows the ensemble with one leader" \
  bash -c 'test "$0" -eq 0 && test "$(grep -c " leader" "$1")" -eq 1 && test "$(grep -c " follower" "$1")" -eq 2' "$RC" "$OUT"

# A member killed by a fault test is restarted by the next up.
VICTIM=$(cat "$ZK_TESTENV_DIR/m2/pid" 2>/dev/null || echo "")
if [[ -n $VICTIM ]]; then kill -KILL "$VICTIM" 2>/dev/null || true; fi
for ((n = 0; n < 50; n++)); do [[ -d /proc/$VICTIM ]] || break; sleep 0.1; done
run status
check "status reports a degraded ensemble (exit 0)" \
  bash -c 'test "$0" -eq 0 && grep -q degraded "$1"' "$RC" "$OUT"
run up --ensemble
check "up --ensemble restarts the killed member" \
  bash -c 'test "$0" -eq 0 && test "$(tail -n1 "$1")" = "$2"' "$RC" "$OUT" "$ENS"
check "three server processes after repair" test "$(count_procs)" -eq 3
check "exactly one leader after repair" test "$(count_leaders)" -eq 1

run up
check "standalone up while the ensemble runs is refused (non-zero)" test "$RC" -ne 0
run down
check "down (ensemble) exits 0" test "$RC" -eq 0
check "no server process after ensemble down" test "$(count_procs)" -eq 0

# ---- bad input ----
run frobnicate
check "bad subcommand exits 2 with usage on stderr" \
  bash -c 'test "$0" -eq 2 && grep -q "^Usage:" "$1" && ! test -s "$2"' "$RC" "$ERR" "$OUT"
run up --bogus
check "bad argument to up exits 2 with usage" \
  bash -c 'test "$0" -eq 2 && grep -q "^Usage:" "$1"' "$RC" "$ERR"
run up --port notaport
check "bad port exits 2 with usage" \
  bash -c 'test "$0" -eq 2 && grep -q "^Usage:" "$1"' "$RC" "$ERR"
run
check "no subcommand exits 2 with usage" test "$RC" -eq 2
check "no server process after bad input" test "$(count_procs)" -eq 0

# ---- port already in use by someone else ----
command -v python3 >/dev/null 2>&1 || say "python3 is needed for the taken-port test"
python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
time.sleep(120)
' "$PORT" &
LISTENER_PID=$!
for ((n = 0; n < 50; n++)); do port_open "$PORT" && break; sleep 0.1; done
check "test listener is up" port_open "$PORT"
T0=$SECONDS
run up
T1=$SECONDS
check "up on a taken port exits non-zero" test "$RC" -ne 0
check "up on a taken port fails quickly (< 5 s)" test $((T1 - T0)) -lt 5
check "up on a taken port says so clearly" grep -q "already in use" "$ERR"
check "no server process started on a taken port" test "$(count_procs)" -eq 0
run up --ensemble
check "up --ensemble on a taken port exits non-zero with a clear error" \
  bash -c 'test "$0" -ne 0 && grep -q "already in use" "$1"' "$RC" "$ERR"
kill "$LISTENER_PID" 2>/dev/null || true
wait "$LISTENER_PID" 2>/dev/null || true
LISTENER_PID=""

printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
if ((FAILED > 0)); then
  say "logs of the failed run: (state dir $ZK_TESTENV_DIR)"
  tail -n 20 "$ZK_TESTENV_DIR"/logs/*.log >&2 2>/dev/null || true
  exit 1
fi
exit 0
