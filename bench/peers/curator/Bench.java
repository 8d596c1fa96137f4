// Apache Curator peer of the zk-lock benchmark (see /work/shared/bench-contract.md and
// examples/bench.rs, whose options, workloads, lock paths and JSON fields this mirrors).
// Recipes: InterProcessMutex (W1-W4), InterProcessReadWriteLock (RW1), InterProcessSemaphoreV2 (S1),
// LeaderLatch (E1). Every client is its
// own CuratorFramework (own ZooKeeper session). Server counters come from `mntr` exactly as in
// examples/bench.rs: packets = zk_packets_received delta - 1 (the closing mntr), writes =
// zk_cnt_updatelatency, reads = zk_cnt_readlatency (includes pings), watch events = sum of
// zk_sum_node_{created,deleted,changed,children}_watch_count.
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.curator.retry.ExponentialBackoffRetry;

public class Bench {
  /** InterProcessMutex that tells its lock node (getLockPath is protected). */
  static final class Mutex extends InterProcessMutex {
    Mutex(CuratorFramework c, String path) { super(c, path); }
    long sequence() {
      String p = getLockPath();
      if (p == null || p.length() < 10) return -1;
      try { return Long.parseLong(p.substring(p.length() - 10)); } catch (NumberFormatException e) { return -1; }
    }
  }

  static final class PathStats {
    int holders, maxHolders;
    final List<Long> grants;
    PathStats(boolean tracked) { grants = tracked ? new ArrayList<>() : null; }
    synchronized void enter(long seq) {
      holders++;
      maxHolders = Math.max(maxHolders, holders);
      if (grants != null) grants.add(seq);
    }
    synchronized void leave() { holders--; }
    synchronized Integer inversions() {
      if (grants == null) return null;
      int n = 0;
      for (int i = 1; i < grants.size(); i++) if (grants.get(i) <= grants.get(i - 1)) n++;
      return n;
    }
  }

  static final class Result {
    int acquired, errors;
    boolean timedOut;
    final List<Double> lat = new ArrayList<>();
  }

  static final class Snap {
    long at; Map<String, Long> mntr; double cpu; Double server;
  }

  /** In-process counters of the recipe workloads (RW1, S1, E1). */
  static final class RecipeStats {
    final AtomicInteger readers = new AtomicInteger(), writers = new AtomicInteger();
    final AtomicInteger maxReaders = new AtomicInteger(), maxWriters = new AtomicInteger();
    final AtomicInteger violations = new AtomicInteger(), reads = new AtomicInteger();
    final AtomicInteger holders = new AtomicInteger(), maxHolders = new AtomicInteger();
    final AtomicInteger terms = new AtomicInteger();
    final AtomicLong resignedAt = new AtomicLong(0);
    final List<Double> failovers = new ArrayList<>();
  }

  static double readRatio = 0.9;
  static long seed = 1, holdMs = 0;
  static int permits = 4, terms = 200;

  static void hold() {
    if (holdMs == 0) Thread.yield(); else sleep(holdMs);
  }

  /** One operation of a recipe workload; returns its acquire latency in ms. */
  static double recipeOp(CuratorFramework c, String path, RecipeStats s, long[] rng) throws Exception {
    long asked = System.nanoTime();
    switch (workload) {
      case "RW1": {
        rng[0] ^= rng[0] << 13;
        rng[0] ^= rng[0] >>> 7;
        rng[0] ^= rng[0] << 17;
        boolean read = Long.remainderUnsigned(rng[0], 1_000_000) / 1e6 < readRatio;
        InterProcessReadWriteLock rw = new InterProcessReadWriteLock(c, path);
        InterProcessMutex m = read ? rw.readLock() : rw.writeLock();
        m.acquire();
        double lat = (System.nanoTime() - asked) / 1e6;
        if (read) {
          s.reads.incrementAndGet();
          s.maxReaders.accumulateAndGet(s.readers.incrementAndGet(), Math::max);
          if (s.writers.get() != 0) s.violations.incrementAndGet();
        } else {
          int now = s.writers.incrementAndGet();
          s.maxWriters.accumulateAndGet(now, Math::max);
          if (now != 1 || s.readers.get() != 0) s.violations.incrementAndGet();
        }
        hold();
        if (read) s.readers.decrementAndGet(); else s.writers.decrementAndGet();
        m.release();
        return lat;
      }
      case "S1": {
        InterProcessSemaphoreV2 sem = new InterProcessSemaphoreV2(c, path, permits);
        Lease lease = sem.acquire();
        double lat = (System.nanoTime() - asked) / 1e6;
        s.maxHolders.accumulateAndGet(s.holders.incrementAndGet(), Math::max);
        hold();
        s.holders.decrementAndGet();
        sem.returnLease(lease);
        return lat;
      }
      default: { // E1
        LeaderLatch latch = new LeaderLatch(c, path);
        latch.start();
        latch.await();
        long led = System.nanoTime();
        double lat = (led - asked) / 1e6;
        long resigned = s.resignedAt.getAndSet(0);
        if (resigned != 0) synchronized (s.failovers) { s.failovers.add((led - resigned) / 1e6); }
        s.maxHolders.accumulateAndGet(s.holders.incrementAndGet(), Math::max);
        s.terms.incrementAndGet();
        hold();
        s.holders.decrementAndGet();
        s.resignedAt.set(System.nanoTime());
        latch.close();
        return lat;
      }
    }
  }

  // ------------------------------------------------------------------------ options --
  static String workload, connect, mntrAddr, base;
  static int clients, cycles, warmup, waiters = 256, sessionTimeoutMs = 10000;
  static double deadlineS = 180;
  static long deadline; // System.nanoTime()
  static Integer serverPid;

  static long left() { return deadline - System.nanoTime(); }

  static Map<String, Long> readMntr() throws Exception {
    int i = mntrAddr.lastIndexOf(':');
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(mntrAddr.substring(0, i), Integer.parseInt(mntrAddr.substring(i + 1))), 5000);
      s.setSoTimeout(5000);
      OutputStream o = s.getOutputStream();
      o.write("mntr".getBytes(StandardCharsets.US_ASCII));
      o.flush();
      InputStream in = s.getInputStream();
      ByteArrayOutputStream buf = new ByteArrayOutputStream();
      byte[] b = new byte[65536];
      int n;
      while ((n = in.read(b)) > 0) buf.write(b, 0, n);
      Map<String, String> kv = new HashMap<>();
      for (String line : buf.toString(StandardCharsets.UTF_8).split("\n")) {
        int t = line.indexOf('\t');
        if (t > 0) kv.put(line.substring(0, t), line.substring(t + 1).trim());
      }
      Map<String, Long> m = new HashMap<>();
      m.put("packets", get(kv, "zk_packets_received"));
      m.put("writes", get(kv, "zk_cnt_updatelatency"));
      m.put("reads", get(kv, "zk_cnt_readlatency"));
      long w = 0;
      for (String t2 : new String[] {"created", "deleted", "changed", "children"})
        w += get(kv, "zk_sum_node_" + t2 + "_watch_count");
      m.put("watch", w);
      return m;
    }
  }

  static long get(Map<String, String> kv, String k) {
    String v = kv.get(k);
    if (v == null) throw new IllegalStateException("mntr on " + mntrAddr + " has no " + k);
    return Long.parseLong(v);
  }

  static double selfCpu() {
    // utime+stime of this JVM from /proc/self/stat (all threads).
    Double d = procCpu("self");
    return d == null ? Double.NaN : d;
  }

  static Double procCpu(String pid) {
    try {
      String st = new String(Files.readAllBytes(Paths.get("/proc/" + pid + "/stat")), StandardCharsets.US_ASCII);
      String[] f = st.substring(st.lastIndexOf(')') + 1).trim().split("\\s+");
      // Linux USER_HZ: 100 on every mainstream architecture (Java cannot call sysconf).
      return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
    } catch (Exception e) {
      return null;
    }
  }

  static Snap snapshot() throws Exception {
    Snap s = new Snap();
    s.mntr = readMntr();
    s.at = System.nanoTime();
    s.cpu = selfCpu();
    s.server = serverPid == null ? null : procCpu(serverPid.toString());
    return s;
  }

  static CuratorFramework newClient() throws Exception {
    CuratorFramework c = CuratorFrameworkFactory.newClient(connect, sessionTimeoutMs,
        Math.max(1000, Math.min(30000, sessionTimeoutMs)), new ExponentialBackoffRetry(100, 3));
    c.start();
    if (!c.blockUntilConnected((int) Math.max(1, Math.min(30, left() / 1_000_000_000L)), TimeUnit.SECONDS))
      throw new TimeoutException("connecting to " + connect + " timed out");
    return c;
  }

  static void runCycles(CuratorFramework c, String path, PathStats stats, int n, Result r) {
    Mutex m = new Mutex(c, path);
    for (int i = 0; i < n; i++) {
      long l = left();
      if (l <= 0) { r.timedOut = true; return; }
      long asked = System.nanoTime();
      boolean got;
      try {
        got = m.acquire(l, TimeUnit.NANOSECONDS);
      } catch (Exception e) {
        System.err.println("bench: acquire failed: " + e);
        r.errors++;
        sleep(10);
        continue;
      }
      if (!got) { r.timedOut = true; return; }
      r.lat.add((System.nanoTime() - asked) / 1e6);
      r.acquired++;
      stats.enter(m.sequence());
      stats.leave();
      try {
        m.release();
      } catch (Exception e) {
        System.err.println("bench: release failed: " + e);
        r.errors++;
      }
    }
  }

  static void sleep(long ms) {
    try { Thread.sleep(ms); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
  }

  static void await(CyclicBarrier b) {
    try {
      b.await(Math.max(1, left() / 1_000_000 + 10_000), TimeUnit.MILLISECONDS);
    } catch (InterruptedException | BrokenBarrierException | TimeoutException e) {
      throw new IllegalStateException("barrier: " + e);
    }
  }

  /** The threads `ts` meet the main thread twice on `barrier` (warmed up; go): the counters
   *  are read between the two meetings and after every thread is done. */
  static Snap[] measuredPhase(List<Thread> ts, CyclicBarrier barrier) throws Exception {
    await(barrier);
    Snap before = snapshot();
    await(barrier);
    join(ts, 10_000);
    return new Snap[] {before, snapshot()};
  }

  static void join(List<Thread> ts, long extraMs) throws InterruptedException {
    for (Thread t : ts) t.join(Math.max(1, left() / 1_000_000 + extraMs));
  }

  public static void main(String[] argv) throws Exception {
    try {
      run(argv);
    } catch (Exception e) {
      System.err.println("bench: " + e);
      System.exit(1);
    }
    System.exit(0);
  }

  static void run(String[] argv) throws Exception {
    long started = System.nanoTime();
    Integer oc = null, on = null, ow = null;
    for (int i = 0; i < argv.length; i++) {
      String a = argv[i];
      if (!a.startsWith("--")) { workload = a.toUpperCase(Locale.ROOT); continue; }
      String v = i + 1 < argv.length ? argv[++i] : null;
      if (v == null) throw new IllegalArgumentException(a + " needs a value");
      switch (a) {
        case "--connect": connect = v; break;
        case "--mntr": mntrAddr = v; break;
        case "--clients": oc = Integer.parseInt(v); break;
        case "--cycles": on = Integer.parseInt(v); break;
        case "--warmup": ow = Integer.parseInt(v); break;
        case "--waiters": waiters = Integer.parseInt(v); break;
        case "--session-timeout-ms": sessionTimeoutMs = Integer.parseInt(v); break;
        case "--path": base = v; break;
        case "--deadline-s": deadlineS = Double.parseDouble(v); break;
        case "--recipe": break; // checked against the workload below
        case "--read-ratio": readRatio = Double.parseDouble(v); break;
        case "--seed": seed = Long.parseLong(v); break;
        case "--permits": permits = Integer.parseInt(v); break;
        case "--terms": terms = Integer.parseInt(v); break;
        case "--hold-ms": holdMs = Long.parseLong(v); break;
        case "--peer": if (!v.equals("curator")) throw new IllegalArgumentException("peer: only curator"); break;
        default: throw new IllegalArgumentException("unknown option " + a);
      }
    }
    if (connect == null || workload == null) throw new IllegalArgumentException("usage: W1|W2|W3|W4 --connect HOST:PORT ...");
    int[] d;
    switch (workload) {
      case "W1": d = new int[] {1, 2000, 200}; break;
      case "W2": d = new int[] {16, 100, 10}; break;
      case "W3": d = new int[] {16, 200, 20}; break;
      case "W4": d = new int[] {16, 1, 2}; break;
      case "RW1": case "S1": case "E1": d = new int[] {16, 100, 10}; break;
      default: throw new IllegalArgumentException("unknown workload " + workload);
    }
    clients = oc != null ? oc : d[0];
    cycles = on != null ? on : d[1];
    warmup = ow != null ? ow : d[2];
    if (base == null) base = "/bench/" + UUID.randomUUID().toString().replace("-", "");
    if (mntrAddr == null) mntrAddr = connect.split(",")[0].split("/")[0];
    String pid = System.getenv("ZK_SERVER_PID");
    if (pid != null && !pid.trim().isEmpty()) {
      serverPid = Integer.parseInt(pid.trim());
      if (procCpu(serverPid.toString()) == null) throw new IllegalStateException("cannot read /proc/" + pid + "/stat");
    }
    deadline = started + (long) (deadlineS * 1e9);
    readMntr();

    List<CuratorFramework> all = new ArrayList<>();
    List<Result> results = new ArrayList<>();
    List<String> cleanup = new ArrayList<>();
    Snap before, after;
    int maxHolders;
    Integer fifo;
    boolean timedOut = false;
    String extraFields = "";
    boolean recipe = workload.equals("RW1") || workload.equals("S1") || workload.equals("E1");
    if (recipe) {
      for (int i = 0; i < clients; i++) all.add(newClient());
      String lock = base + "/recipe";
      cleanup.add(lock);
      RecipeStats rs = new RecipeStats();
      CyclicBarrier barrier = new CyclicBarrier(clients + 1);
      List<Thread> ts = new ArrayList<>();
      for (int i = 0; i < clients; i++) {
        final int k = i;
        String warm = base + "/warmup-" + i;
        cleanup.add(warm);
        Result r = new Result();
        results.add(r);
        Thread t = new Thread(() -> {
          long[] rng = {(seed + k) | 1};
          RecipeStats ws = new RecipeStats();
          for (int j = 0; j < warmup; j++) {
            try { recipeOp(all.get(k), warm, ws, rng); } catch (Exception e) { System.err.println("bench: warm-up: " + e); }
          }
          await(barrier);
          await(barrier);
          int op = 0;
          while (true) {
            boolean enough = workload.equals("E1") ? rs.terms.get() >= terms : op >= cycles;
            if (enough) break;
            if (left() <= 0) { r.timedOut = true; break; }
            op++;
            try {
              r.lat.add(recipeOp(all.get(k), lock, rs, rng));
              r.acquired++;
            } catch (Exception e) {
              System.err.println("bench: client " + k + ": " + e);
              r.errors++;
            }
          }
        });
        t.setDaemon(true);
        ts.add(t);
        t.start();
      }
      Snap[] phase = measuredPhase(ts, barrier);
      before = phase[0];
      after = phase[1];
      for (Thread t : ts) timedOut |= t.isAlive();
      maxHolders = Math.max(rs.maxHolders.get(), rs.maxWriters.get());
      fifo = null;
      StringBuilder x = new StringBuilder();
      int total = 0;
      for (Result r : results) total += r.acquired;
      switch (workload) {
        case "RW1":
          field(x, "reads", rs.reads.get());
          field(x, "writes", total - rs.reads.get());
          field(x, "max_readers", rs.maxReaders.get());
          field(x, "max_writers", rs.maxWriters.get());
          field(x, "rw_violations", rs.violations.get());
          break;
        case "S1":
          field(x, "permits", permits);
          break;
        default:
          List<Double> f;
          synchronized (rs.failovers) { f = new ArrayList<>(rs.failovers); }
          Collections.sort(f);
          field(x, "terms", rs.terms.get());
          field(x, "failover_p50_ms", pct(f, 0.5));
          field(x, "failover_p99_ms", pct(f, 0.99));
          field(x, "failover_max_ms", f.isEmpty() ? "null" : num(f.get(f.size() - 1), 3));
          field(x, "max_leaders", rs.maxHolders.get());
      }
      extraFields = x.toString();
    } else if (!workload.equals("W4")) {
      boolean shared = !workload.equals("W3");
      for (int i = 0; i < clients; i++) all.add(newClient());
      PathStats sharedStats = new PathStats(true), warmStats = new PathStats(false);
      List<PathStats> stats = new ArrayList<>();
      CyclicBarrier barrier = new CyclicBarrier(clients + 1);
      List<Thread> ts = new ArrayList<>();
      for (int i = 0; i < clients; i++) {
        final int k = i;
        String lock = shared ? base + "/lock" : base + "/lock-" + i;
        String warm = shared ? base + "/warmup" : base + "/warmup-" + i;
        if (k == 0 || !shared) { cleanup.add(lock); cleanup.add(warm); }
        PathStats st = shared ? sharedStats : new PathStats(false);
        stats.add(st);
        Result r = new Result();
        results.add(r);
        Thread t = new Thread(() -> {
          Result w = new Result();
          runCycles(all.get(k), warm, warmStats, warmup, w);
          if (w.errors > 0) System.err.println("bench: client " + k + ": " + w.errors + " errors during warm-up");
          await(barrier);
          await(barrier);
          runCycles(all.get(k), lock, st, cycles, r);
        });
        t.setDaemon(true);
        ts.add(t);
        t.start();
      }
      Snap[] phase = measuredPhase(ts, barrier);
      before = phase[0];
      after = phase[1];
      maxHolders = 0;
      for (PathStats s : stats) maxHolders = Math.max(maxHolders, s.maxHolders);
      fifo = shared ? sharedStats.inversions() : null;
      for (Thread t : ts) timedOut |= t.isAlive();
    } else {
      CuratorFramework holderClient = newClient();
      for (int i = 0; i < clients; i++) all.add(newClient());
      all.add(holderClient);
      String lock = base + "/lock", warm = base + "/warmup";
      cleanup.add(lock);
      cleanup.add(warm);
      PathStats warmStats = new PathStats(false);
      List<Thread> ws = new ArrayList<>();
      for (CuratorFramework c : all) {
        Thread t = new Thread(() -> runCycles(c, warm, warmStats, warmup, new Result()));
        t.setDaemon(true);
        ws.add(t);
        t.start();
      }
      join(ws, 0);
      PathStats stats = new PathStats(true);
      Mutex holder = new Mutex(holderClient, lock);
      if (!holder.acquire(Math.max(1, left()), TimeUnit.NANOSECONDS))
        throw new TimeoutException("the holder did not get the free lock before the deadline");
      stats.enter(holder.sequence());
      long[][] times = new long[waiters][];
      List<Thread> ts = new ArrayList<>();
      for (int j = 0; j < waiters; j++) {
        final int k = j;
        Result r = new Result();
        results.add(r);
        Thread t = new Thread(() -> {
          Mutex m = new Mutex(all.get(k % clients), lock);
          long asked = System.nanoTime();
          boolean got;
          try {
            got = m.acquire(Math.max(1, left()), TimeUnit.NANOSECONDS);
          } catch (Exception e) {
            System.err.println("bench: waiter " + k + ": acquire failed: " + e);
            r.errors++;
            return;
          }
          if (!got) { r.timedOut = true; return; }
          long granted = System.nanoTime();
          r.acquired = 1;
          stats.enter(m.sequence());
          stats.leave();
          times[k] = new long[] {asked, granted};
          try {
            m.release();
          } catch (Exception e) {
            System.err.println("bench: waiter " + k + ": release failed: " + e);
            r.errors++;
          }
        });
        t.setDaemon(true);
        ts.add(t);
        t.start();
      }
      int want = waiters + 1, seen = 0;
      while (seen < want) {
        if (left() <= 0) {
          System.err.println("bench: only " + seen + " of " + want + " lock nodes appeared before the deadline");
          timedOut = true;
          break;
        }
        seen = 0;
        for (String ch : holderClient.getChildren().forPath(lock)) if (ch.contains("lock-")) seen++;
        if (seen < want) sleep(20);
      }
      before = snapshot();
      Result extra = new Result();
      stats.leave();
      try {
        holder.release();
      } catch (Exception e) {
        System.err.println("bench: holder: release failed: " + e);
        extra.errors++;
      }
      join(ts, 10_000);
      after = snapshot();
      for (int j = 0; j < waiters; j++) {
        if (times[j] != null) results.get(j).lat.add(Math.max(0, times[j][1] - Math.max(times[j][0], before.at)) / 1e6);
      }
      results.add(extra);
      maxHolders = stats.maxHolders;
      fifo = stats.inversions();
      for (Thread t : ts) timedOut |= t.isAlive();
    }
    for (CuratorFramework c : all) {
      try { c.close(); } catch (Exception e) { /* closing */ }
    }
    try { // best-effort cleanup of the lock directories (Curator makes containers)
      CuratorFramework c = newClient();
      cleanup.add(base);
      for (String p : cleanup) {
        try { c.delete().forPath(p); } catch (Exception e) { /* not empty or gone */ }
      }
      c.close();
    } catch (Exception e) { /* best effort */ }

    int acquired = 0, errors = 0;
    List<Double> lat = new ArrayList<>();
    for (Result r : results) {
      acquired += r.acquired;
      errors += r.errors;
      timedOut |= r.timedOut;
      lat.addAll(r.lat);
    }
    Collections.sort(lat);
    double elapsed = (after.at - before.at) / 1e9;
    long packets = after.mntr.get("packets") - before.mntr.get("packets") - 1;
    long writes = after.mntr.get("writes") - before.mntr.get("writes");
    long reads = after.mntr.get("reads") - before.mntr.get("reads");
    long watch = after.mntr.get("watch") - before.mntr.get("watch");
    StringBuilder o = new StringBuilder("{");
    field(o, "peer", "\"curator\"");
    field(o, "workload", "\"" + workload + "\"");
    field(o, "clients", clients);
    field(o, "cycles", acquired);
    field(o, "elapsed_s", num(elapsed, 4));
    field(o, "cycles_per_s", elapsed > 0 ? num(acquired / elapsed, 1) : "null");
    field(o, "acq_p50_ms", pct(lat, 0.5));
    field(o, "acq_p99_ms", pct(lat, 0.99));
    field(o, "acq_max_ms", lat.isEmpty() ? "null" : num(lat.get(lat.size() - 1), 3));
    field(o, "max_holders", maxHolders);
    field(o, "fifo_inversions", fifo == null ? "null" : fifo.toString());
    field(o, "errors", errors);
    field(o, "timed_out", timedOut);
    field(o, "zk_packets", packets);
    field(o, "zk_writes", writes);
    field(o, "zk_reads", reads);
    field(o, "req_per_cycle", per(packets, acquired));
    field(o, "writes_per_cycle", per(writes, acquired));
    field(o, "reads_per_cycle", per(reads, acquired));
    field(o, "client_cpu_s", num(after.cpu - before.cpu, 4));
    if (serverPid != null)
      field(o, "server_cpu_s", after.server == null || before.server == null ? "null" : num(after.server - before.server, 3));
    if (workload.equals("W4")) {
      field(o, "waiters", waiters);
      field(o, "watch_events_per_handoff", per(watch, acquired));
    }
    o.append(extraFields);
    o.setLength(o.length() - 1);
    o.append("}");
    System.out.println(o);
    System.out.flush();
  }

  static void field(StringBuilder o, String k, Object v) { o.append('"').append(k).append("\":").append(v).append(','); }
  static String num(double x, int digits) {
    if (Double.isNaN(x) || Double.isInfinite(x)) return "null";
    return String.valueOf(Math.round(x * Math.pow(10, digits)) / Math.pow(10, digits));
  }
  static String per(long n, int cycles) { return cycles > 0 ? num((double) n / cycles, 3) : "null"; }
  static String pct(List<Double> sorted, double q) {
    if (sorted.isEmpty()) return "null";
    int rank = Math.min(Math.max((int) Math.ceil(q * sorted.size()), 1), sorted.size());
    return num(sorted.get(rank - 1), 3);
  }
}
