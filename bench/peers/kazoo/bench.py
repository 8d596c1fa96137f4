#!/usr/bin/env python3
"""Kazoo peer of the zk-lock benchmark (see /work/shared/bench-contract.md and
examples/bench.rs, whose options, workloads, lock paths and JSON fields this mirrors).

Workloads use kazoo.recipe.lock.Lock (client.Lock(path)). Every client is its own
KazooClient (own session, own threads). Server counters come from `mntr`, exactly as in
examples/bench.rs: packets = zk_packets_received delta - 1 (the closing mntr),
writes = zk_cnt_updatelatency delta, reads = zk_cnt_readlatency delta (includes pings),
watch events = sum of zk_sum_node_{created,deleted,changed,children}_watch_count deltas.
"""
import argparse
import json
import logging
import math
import os
import resource
import socket
import sys
import threading
import time
import uuid

from kazoo.client import KazooClient

log = logging.getLogger("bench-kazoo")

DEFAULTS = {
    "W1": (1, 2000, 200),
    "W2": (16, 100, 10),
    "W3": (16, 200, 20),
    "W4": (16, 1, 2),
    "RW1": (16, 100, 10),
    "S1": (16, 100, 10),
    "E1": (16, 100, 10),
}
MASK = (1 << 64) - 1


def read_mntr(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"mntr")
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    kv = {}
    for line in b"".join(chunks).decode().splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            kv[k] = v.strip()

    def get(k):
        if k not in kv:
            raise RuntimeError("mntr on %s has no %s" % (addr, k))
        return int(kv[k])

    return {
        "packets": get("zk_packets_received"),
        "writes": get("zk_cnt_updatelatency"),
        "reads": get("zk_cnt_readlatency"),
        "watch": sum(get("zk_sum_node_%s_watch_count" % t) for t in ("created", "deleted", "changed", "children")),
    }


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid):
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 1 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot(mntr_addr, pid):
    m = read_mntr(mntr_addr)
    return {"at": time.monotonic(), "mntr": m, "cpu": self_cpu(), "server": proc_cpu(pid) if pid else None}


def sequence(lock):
    node = lock.node or ""
    try:
        return int(node[-10:])
    except ValueError:
        return -1


class PathStats:
    def __init__(self, tracked):
        self.mu = threading.Lock()
        self.holders = 0
        self.max_holders = 0
        self.grants = [] if tracked else None

    def enter(self, seq):
        with self.mu:
            self.holders += 1
            self.max_holders = max(self.max_holders, self.holders)
            if self.grants is not None:
                self.grants.append(seq)

    def leave(self):
        with self.mu:
            self.holders -= 1

    def inversions(self):
        if self.grants is None:
            return None
        return sum(1 for a, b in zip(self.grants, self.grants[1:]) if b <= a)


class Result:
    def __init__(self):
        self.acquired = 0
        self.errors = 0
        self.timed_out = False
        self.lat = []


def release(lock, res, who):
    """Releases `lock`; a failure is logged and counted in `res.errors`, never raised."""
    try:
        lock.release()
    except Exception as e:  # noqa: BLE001
        log.warning("%s: release failed: %r", who, e)
        res.errors += 1


def run_cycles(client, path, stats, cycles, deadline, res):
    for _ in range(cycles):
        left = deadline - time.monotonic()
        if left <= 0:
            res.timed_out = True
            return
        lock = client.Lock(path)
        asked = time.monotonic()
        try:
            got = lock.acquire(timeout=left)
        except Exception as e:  # noqa: BLE001 - counted, not fatal
            log.warning("acquire failed: %r", e)
            res.errors += 1
            time.sleep(0.01)
            continue
        if not got:
            res.timed_out = True
            return
        res.lat.append((time.monotonic() - asked) * 1e3)
        res.acquired += 1
        stats.enter(sequence(lock))
        stats.leave()
        release(lock, res, "client")


def connect(args, deadline):
    c = KazooClient(hosts=args.connect, timeout=args.session_timeout_ms / 1000.0)
    c.start(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
    return c


def measured_phase(worker, n, barrier, setup):
    """Starts `n` threads of `worker(i)`, which meet the main thread twice on `barrier` (warmed
    up; go); reads the counters between the two meetings and after every thread is done."""
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    before = snapshot(setup["mntr"], setup["pid"])
    barrier.wait()
    for t in threads:
        t.join(max(1.0, setup["deadline"] - time.monotonic() + 10))
    return threads, before, snapshot(setup["mntr"], setup["pid"])


def run_loops(args, setup, shared):
    clients = [connect(args, setup["deadline"]) for _ in range(setup["clients"])]
    base = setup["base"]
    lock_path = lambda i: base + "/lock" if shared else "%s/lock-%d" % (base, i)
    warm_path = lambda i: base + "/warmup" if shared else "%s/warmup-%d" % (base, i)
    shared_stats = PathStats(True)
    warm_stats = PathStats(False)
    barrier = threading.Barrier(setup["clients"] + 1, timeout=max(1.0, setup["deadline"] - time.monotonic() + 5))
    results = [Result() for _ in clients]
    stats = [shared_stats if shared else PathStats(False) for _ in clients]

    def worker(i):
        warm = Result()
        run_cycles(clients[i], warm_path(i), warm_stats, setup["warmup"], setup["deadline"], warm)
        if warm.errors:
            log.warning("client %d: %d errors during warm-up", i, warm.errors)
        barrier.wait()
        barrier.wait()
        run_cycles(clients[i], lock_path(i), stats[i], setup["cycles"], setup["deadline"], results[i])

    threads, before, after = measured_phase(worker, len(clients), barrier, setup)
    paths = []
    for i in range(1 if shared else len(clients)):
        paths += [lock_path(i), warm_path(i)]
    return {
        "before": before,
        "after": after,
        "results": results,
        "clients": clients,
        "max_holders": max(s.max_holders for s in stats),
        "fifo": shared_stats.inversions() if shared else None,
        "timed_out": any(r.timed_out for r in results) or any(t.is_alive() for t in threads),
        "cleanup": paths,
    }


class RecipeStats:
    def __init__(self):
        self.mu = threading.Lock()
        self.readers = self.writers = self.max_readers = self.max_writers = 0
        self.violations = self.reads = self.holders = self.max_holders = self.terms = 0
        self.resigned_at = None
        self.failovers = []


def hold(args):
    time.sleep(args.hold_ms / 1000.0 if args.hold_ms else 0)


def recipe_op(args, client, path, s, rng):
    """One operation of RW1, S1 or E1; returns its acquire latency in ms."""
    asked = time.monotonic()
    if args.workload == "RW1":
        x = rng[0]
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        rng[0] = x
        read = (x % 1_000_000) / 1e6 < args.read_ratio
        lock = client.ReadLock(path) if read else client.WriteLock(path)
        lock.acquire()
        lat = (time.monotonic() - asked) * 1e3
        with s.mu:
            if read:
                s.reads += 1
                s.readers += 1
                s.max_readers = max(s.max_readers, s.readers)
                s.violations += s.writers != 0
            else:
                s.writers += 1
                s.max_writers = max(s.max_writers, s.writers)
                s.violations += s.writers != 1 or s.readers != 0
        hold(args)
        with s.mu:
            if read:
                s.readers -= 1
            else:
                s.writers -= 1
        lock.release()
        return lat
    if args.workload == "S1":
        sem = client.Semaphore(path, max_leases=args.permits)
        sem.acquire()
        lat = (time.monotonic() - asked) * 1e3
        with s.mu:
            s.holders += 1
            s.max_holders = max(s.max_holders, s.holders)
        hold(args)
        with s.mu:
            s.holders -= 1
        sem.release()
        return lat
    # E1: Kazoo's Election runs the function while it leads, and resigns when it returns.
    lat = [None]

    def lead():
        led = time.monotonic()
        lat[0] = (led - asked) * 1e3
        with s.mu:
            if s.resigned_at is not None:
                s.failovers.append((led - s.resigned_at) * 1e3)
                s.resigned_at = None
            s.holders += 1
            s.max_holders = max(s.max_holders, s.holders)
            s.terms += 1
        hold(args)
        with s.mu:
            s.holders -= 1
            s.resigned_at = time.monotonic()

    client.Election(path).run(lead)
    return lat[0]


def run_recipe(args, setup):
    clients = [connect(args, setup["deadline"]) for _ in range(setup["clients"])]
    base = setup["base"]
    lock_path = base + "/recipe"
    s = RecipeStats()
    barrier = threading.Barrier(setup["clients"] + 1, timeout=max(1.0, setup["deadline"] - time.monotonic() + 5))
    results = [Result() for _ in clients]

    def worker(i):
        rng = [(args.seed + i) | 1]
        warm = RecipeStats()
        for _ in range(setup["warmup"]):
            try:
                recipe_op(args, clients[i], "%s/warmup-%d" % (base, i), warm, rng)
            except Exception as e:  # noqa: BLE001
                log.warning("warm-up: %r", e)
        barrier.wait()
        barrier.wait()
        op = 0
        while True:
            enough = s.terms >= args.terms if args.workload == "E1" else op >= setup["cycles"]
            if enough:
                return
            if time.monotonic() >= setup["deadline"]:
                results[i].timed_out = True
                return
            op += 1
            try:
                results[i].lat.append(recipe_op(args, clients[i], lock_path, s, rng))
                results[i].acquired += 1
            except Exception as e:  # noqa: BLE001
                log.warning("client %d: %r", i, e)
                results[i].errors += 1

    threads, before, after = measured_phase(worker, len(clients), barrier, setup)
    total = sum(r.acquired for r in results)
    if args.workload == "RW1":
        extra = {
            "reads": s.reads,
            "writes": total - s.reads,
            "max_readers": s.max_readers,
            "max_writers": s.max_writers,
            "rw_violations": s.violations,
        }
    elif args.workload == "S1":
        extra = {"permits": args.permits}
    else:
        f = sorted(s.failovers)
        extra = {
            "terms": s.terms,
            "failover_p50_ms": rnd(pct(f, 0.5), 3),
            "failover_p99_ms": rnd(pct(f, 0.99), 3),
            "failover_max_ms": rnd(f[-1] if f else None, 3),
            "max_leaders": s.max_holders,
        }
    return {
        "before": before,
        "after": after,
        "results": results,
        "clients": clients,
        "max_holders": max(s.max_holders, s.max_writers),
        "fifo": None,
        "timed_out": any(r.timed_out for r in results) or any(t.is_alive() for t in threads),
        "cleanup": [lock_path] + ["%s/warmup-%d" % (base, i) for i in range(len(clients))],
        "extra": extra,
    }


def run_queue(args, setup):
    deadline = setup["deadline"]
    holder_client = connect(args, deadline)
    clients = [connect(args, deadline) for _ in range(setup["clients"])]
    lock_path = setup["base"] + "/lock"
    warm_path = setup["base"] + "/warmup"
    warm_stats = PathStats(False)
    warmers = []
    for c in clients + [holder_client]:
        t = threading.Thread(target=run_cycles, args=(c, warm_path, warm_stats, setup["warmup"], deadline, Result()))
        t.daemon = True
        t.start()
        warmers.append(t)
    for t in warmers:
        t.join(max(1.0, deadline - time.monotonic()))

    stats = PathStats(True)
    holder = holder_client.Lock(lock_path)
    if not holder.acquire(timeout=max(1.0, deadline - time.monotonic())):
        raise RuntimeError("the holder did not get the free lock before the deadline")
    stats.enter(sequence(holder))

    waiters = args.waiters
    results = [Result() for _ in range(waiters)]
    times = [None] * waiters

    def waiter(j):
        lock = clients[j % len(clients)].Lock(lock_path)
        asked = time.monotonic()
        res = results[j]
        try:
            got = lock.acquire(timeout=max(0.001, deadline - time.monotonic()))
        except Exception as e:  # noqa: BLE001
            log.warning("waiter %d: acquire failed: %r", j, e)
            res.errors += 1
            return
        if not got:
            res.timed_out = True
            return
        granted = time.monotonic()
        res.acquired = 1
        stats.enter(sequence(lock))
        stats.leave()
        times[j] = (asked, granted)
        release(lock, res, "waiter %d" % j)

    threads = [threading.Thread(target=waiter, args=(j,), daemon=True) for j in range(waiters)]
    for t in threads:
        t.start()
    timed_out = False
    want, seen = waiters + 1, 0
    while seen < want:
        if time.monotonic() >= deadline:
            log.warning("only %d of %d lock nodes appeared before the deadline", seen, want)
            timed_out = True
            break
        seen = sum(1 for c in holder_client.get_children(lock_path) if "lock" in c)
        if seen < want:
            time.sleep(0.02)
    before = snapshot(setup["mntr"], setup["pid"])
    extra = Result()
    stats.leave()
    release(holder, extra, "holder")
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 10))
    after = snapshot(setup["mntr"], setup["pid"])
    for j, tg in enumerate(times):
        if tg is not None:
            asked, granted = tg
            results[j].lat.append(max(0.0, granted - max(asked, before["at"])) * 1e3)
    return {
        "before": before,
        "after": after,
        "results": results + [extra],
        "clients": clients + [holder_client],
        "max_holders": stats.max_holders,
        "fifo": stats.inversions(),
        "timed_out": timed_out or any(r.timed_out for r in results) or any(t.is_alive() for t in threads),
        "cleanup": [lock_path, warm_path],
    }


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    rank = min(max(int(math.ceil(q * len(sorted_vals))), 1), len(sorted_vals))
    return sorted_vals[rank - 1]


def rnd(x, d):
    return None if x is None else round(x, d)


def main():
    p = argparse.ArgumentParser(description="Kazoo peer of the zk-lock benchmark")
    p.add_argument("workload", type=str.upper, choices=["W1", "W2", "W3", "W4", "RW1", "S1", "E1"])
    p.add_argument("--connect", required=True)
    p.add_argument("--mntr")
    p.add_argument("--clients", type=int)
    p.add_argument("--cycles", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--waiters", type=int, default=256)
    p.add_argument("--session-timeout-ms", type=int, default=10000)
    p.add_argument("--path")
    p.add_argument("--recipe", choices=["mutex", "rwlock", "semaphore", "election"])
    p.add_argument("--read-ratio", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--permits", type=int, default=4)
    p.add_argument("--terms", type=int, default=200)
    p.add_argument("--hold-ms", type=int, default=0)
    p.add_argument("--peer", default="kazoo", choices=["kazoo"])
    p.add_argument("--deadline-s", type=float, default=180)
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("BENCH_LOG", "WARNING"))
    started = time.monotonic()
    dc, dn, dw = DEFAULTS[args.workload]
    pid = os.environ.get("ZK_SERVER_PID", "").strip()
    setup = {
        "clients": args.clients or dc,
        "cycles": dn if args.cycles is None else args.cycles,
        "warmup": dw if args.warmup is None else args.warmup,
        "base": args.path or "/bench/" + uuid.uuid4().hex,
        "mntr": args.mntr or args.connect.split(",")[0].split("/")[0],
        "pid": int(pid) if pid else None,
        "deadline": started + args.deadline_s,
    }
    if setup["pid"] is not None and proc_cpu(setup["pid"]) is None:
        raise SystemExit("bench: cannot read /proc/%d/stat (ZK_SERVER_PID)" % setup["pid"])
    read_mntr(setup["mntr"])
    if args.workload in ("RW1", "S1", "E1"):
        o = run_recipe(args, setup)
    elif args.workload == "W4":
        o = run_queue(args, setup)
    else:
        o = run_loops(args, setup, args.workload != "W3")
    for c in o["clients"]:
        try:
            c.stop()
            c.close()
        except Exception:  # noqa: BLE001
            pass
    try:  # best-effort cleanup of the (persistent) lock directories
        c = connect(args, time.monotonic() + 5)
        for path in o["cleanup"] + [setup["base"]]:
            try:
                c.delete(path)
            except Exception:  # noqa: BLE001
                pass
        c.stop()
        c.close()
    except Exception:  # noqa: BLE001
        pass

    before, after, results = o["before"], o["after"], o["results"]
    acquired = sum(r.acquired for r in results)
    lat = sorted(x for r in results for x in r.lat)
    elapsed = after["at"] - before["at"]
    d = {k: after["mntr"][k] - before["mntr"][k] for k in before["mntr"]}
    d["packets"] -= 1
    per = lambda n: n / acquired if acquired else None
    out = {
        "peer": "kazoo",
        "workload": args.workload,
        "clients": setup["clients"],
        "cycles": acquired,
        "elapsed_s": round(elapsed, 4),
        "cycles_per_s": round(acquired / elapsed, 1) if elapsed > 0 else None,
        "acq_p50_ms": rnd(pct(lat, 0.5), 3),
        "acq_p99_ms": rnd(pct(lat, 0.99), 3),
        "acq_max_ms": rnd(lat[-1] if lat else None, 3),
        "max_holders": o["max_holders"],
        "fifo_inversions": o["fifo"],
        "errors": sum(r.errors for r in results),
        "timed_out": o["timed_out"],
        "zk_packets": d["packets"],
        "zk_writes": d["writes"],
        "zk_reads": d["reads"],
        "req_per_cycle": rnd(per(d["packets"]), 3),
        "writes_per_cycle": rnd(per(d["writes"]), 3),
        "reads_per_cycle": rnd(per(d["reads"]), 3),
        "client_cpu_s": round(after["cpu"] - before["cpu"], 4),
    }
    if setup["pid"] is not None:
        s = None if after["server"] is None or before["server"] is None else after["server"] - before["server"]
        out["server_cpu_s"] = rnd(s, 3)
    if args.workload == "W4":
        out["waiters"] = args.waiters
        out["watch_events_per_handoff"] = rnd(per(d["watch"]), 3)
    out.update(o.get("extra", {}))
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        print("bench: %r" % (e,), file=sys.stderr)
        sys.exit(1)
