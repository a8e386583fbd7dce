#!/usr/bin/python3
"""mailring benchmarks (issue 6): mailring-proxy vs Dovecot 2.3 as plain
proxy and as director, on loopback, and mailring-backend vs Dovecot as
backend.  Writes docs/bench/results.md and PNG plots (gnuplot).

    BENCH_SCALE=quick|default|large /usr/bin/python3 tests/bench/bench.py

Environment:
  BENCH_SCALE      quick (seconds; validation), default (<= ~10 min), large
  BENCH_ONLY       comma list of scenarios to run (1..7), default all
  BENCH_OUT        output directory (default docs/bench)
  MAILRING_BUILD   build directory (default build/)
  BENCH_TMPDIR     where the servers' directories go (default /tmp)
  BENCH_KEEP=1     keep the servers' directories (logs) afterwards

Every proxy scenario runs the same load against each target ("direct" to
the backend, "mailring" through mailring-proxy, "dovecot-proxy" through a
plain Dovecot proxy, "dovecot-director" through Dovecot's director), in
rounds whose order rotates, so drift of the (shared) machine hits every
target alike.  Proxy CPU is read from /proc: mailring-proxy is one
process; for Dovecot every process of the instance's tree is summed
(master, login, auth, director, anvil, log, config, stats), plus the
master's reaped children.
"""

import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_gen as gen  # noqa: E402
import bench_servers as srv  # noqa: E402
import bench_report as report  # noqa: E402
from harness.procs import ProcessManager  # noqa: E402
from harness.ports import PortAllocator  # noqa: E402

REPO = srv.REPO
BUILD = os.environ.get("MAILRING_BUILD") or os.path.join(REPO, "build")
GEN = os.path.join(BUILD, "tests", "bench", "mailring_bench")
PLACEMENT = os.path.join(BUILD, "tests", "bench", "placement_bench")
PROXY_BIN = os.path.join(BUILD, "mailring-proxy")
BACKEND_BIN = os.path.join(BUILD, "mailring-backend")

SCALES = {
    # storm: seconds per run; rounds: alternating rounds per scenario
    "quick": dict(storm=2, rounds=1, clients=50, idle=200, idle_rate=500,
                  idle_hold=2, fetch_users=1, fetch_msgs=5,
                  fetch_size=1 << 20, fetch_secs=2, lmtp_size=10000,
                  placement_secs=0.2, mixed_secs=2, mixed_clients=10,
                  backend_idle=20, ossl_secs=1),
    "default": dict(storm=4, rounds=3, clients=50, idle=10000,
                    idle_rate=2000, idle_hold=5, fetch_users=2,
                    fetch_msgs=10, fetch_size=10 << 20, fetch_secs=4,
                    lmtp_size=10000, placement_secs=1, mixed_secs=6,
                    mixed_clients=20, backend_idle=200, ossl_secs=3),
    "large": dict(storm=20, rounds=3, clients=50, idle=100000,
                  idle_rate=4000, idle_hold=10, fetch_users=1,
                  fetch_msgs=100, fetch_size=10 << 20, fetch_secs=20,
                  lmtp_size=10000, placement_secs=3, mixed_secs=20,
                  mixed_clients=20, backend_idle=1000, ossl_secs=3),
}

LMTP_DOMAIN = "example.com"
LMTP_USERS = 50

TARGETS = {
    "plain_login_cpu_ratio": 0.1,     # mailring / dovecot-proxy CPU per login
    "tls_floor_multiple": 1.5,        # mailring CPU per TLS login / floor
    "idle_rss_kib": 4.0,              # per session at N=100,000
    "fetch_plain_pct": 90.0,
    "fetch_tls_pct": 70.0,
    "placement_per_core": 5e6,        # at 500 backends
}


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---- machine -------------------------------------------------------------

def machine_info():
    info = {"kernel": platform.release(), "python": platform.python_version()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        keep = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core",
                "Core(s) per socket", "Socket(s)", "CPU max MHz", "BogoMIPS",
                "Hypervisor vendor", "L3 cache", "L2 cache")
        info["lscpu"] = [l.strip() for l in out.splitlines()
                         if l.split(":")[0].strip() in keep]
    except OSError:
        info["lscpu"] = []
    try:
        with open("/proc/meminfo") as f:
            for l in f:
                if l.startswith("MemTotal:"):
                    info["mem_gib"] = int(l.split()[1]) / 1048576.0
    except OSError:
        pass
    for cmd, key in (([srv.DovecotBackend and "/usr/sbin/dovecot",
                       "--version"], "dovecot"),
                     (["openssl", "version"], "openssl")):
        try:
            info[key] = subprocess.run(cmd, capture_output=True,
                                       text=True).stdout.strip()
        except OSError:
            info[key] = "?"
    try:
        info["git"] = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            info["git"] += " (+ uncommitted changes)"
    except OSError:
        pass
    try:
        info["loadavg"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return info


def openssl_floor(secs):
    """Pure crypto cost of one TLS 1.3 server handshake: 1 ECDSA P-256
    sign + 2 X25519 ops (keygen + derive), from `openssl speed`."""
    cmd = ["openssl", "speed", "-seconds", str(secs), "ecdsap256",
           "ecdhx25519"]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=120).stdout
    sign = x = None
    for l in out.splitlines():
        m = re.search(r"ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)",
                      l)
        if m:
            sign = float(m.group(1))
        m = re.search(r"ecdh \(X25519\)\s+\S+s\s+([\d.]+)", l)
        if m:
            x = float(m.group(1))
    if not sign or not x:
        raise RuntimeError("could not parse openssl speed output:\n" + out)
    floor = 1.0 / sign + 2.0 / x
    return {"cmd": " ".join(cmd), "sign_per_s": sign, "x25519_per_s": x,
            "floor_s": floor}


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(n, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (want, max(hard, want)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---- running alternating rounds -------------------------------------------

class Variant:
    def __init__(self, label, port, target, args=(), backend_target=None):
        self.label = label
        self.port = port
        self.target = target
        self.args = list(args)
        self.backend_target = backend_target


def alternate(name, variants, base_args, rounds, timeout, ctx):
    """Runs base_args against every variant, `rounds` times, rotating the
    order each round.  Returns {label: [GenRun]}."""
    runs = {v.label: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            args = list(base_args) + ["--host", "127.0.0.1",
                                      "--port", v.port] + v.args
            g = gen.run(GEN, args, target=v.target, timeout=timeout,
                        cmdlog=ctx["commands"])
            runs[v.label].append(g)
            log("%s [%s] round %d: rc=%s ops/s=%s cpu=%s err=%s%s" % (
                name, v.label, r + 1, g.rc, fmt(g.ops_per_s()),
                fmt(g.cpu), fmt(g.errors()),
                "" if g.ok else " stderr: " + g.stderr[-300:]))
    return runs


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.*f" % (nd, v)
    return str(v)


def summarize(runs, per=1000.0, kind=None):
    """Per label: median ops/s, CPU seconds per `per` ops (sum over the
    rounds), errors, latency (median of the rounds' p50/p99)."""
    out = {}
    for label, rs in runs.items():
        good = [g for g in rs if g.ok and g.ops_per_s()]
        s = {"runs": len(rs), "ok_runs": len(good)}
        if good:
            s["ops_per_s"] = statistics.median(g.ops_per_s() for g in good)
            ops = sum(g.ops() or 0 for g in good)
            cpu = sum(g.cpu or 0 for g in good)
            s["ops"] = ops
            s["cpu_s"] = cpu
            s["cpu_per"] = cpu / ops * per if ops else None
            s["errors"] = sum(g.errors() or 0 for g in good)
            for p in ("p50", "p99"):
                vals = [gen.latency(g.json, kind).get(p) for g in good]
                vals = [v for v in vals if v is not None]
                s[p] = statistics.median(vals) if vals else None
        else:
            s["why"] = "; ".join(sorted(set(
                ("rc=%s: %s" % (g.rc, g.stderr.strip().splitlines()[-1]
                                if g.stderr.strip() else "no output"))
                for g in rs)))[:400]
        out[label] = s
    return out


# ---- scenarios -------------------------------------------------------------

def users_arg(n):
    return "user%%d:1:%d" % n


def proxy_variants(ctx, proto, tls=False):
    dv, px, dr, mr = ctx["dovecot"], ctx["dvproxy"], ctx["dvdirector"], \
        ctx["mailring"]
    if proto == "imap":
        ports = (dv.imaps_port if tls else dv.imap_port,
                 mr.port("imaps") if tls else mr.port("imap"),
                 px.imaps_port if tls else px.imap_port,
                 (dr.imaps_port if tls else dr.imap_port) if dr else None)
    else:
        ports = (dv.pop3_port, mr.port("pop3"), px.pop3_port,
                 dr.pop3_port if dr else None)
    vs = [Variant("direct", ports[0], ctx["t_dovecot"]),
          Variant("mailring", ports[1], ctx["t_mailring"]),
          Variant("dovecot-proxy", ports[2], ctx["t_dvproxy"])]
    if dr is not None:
        vs.append(Variant("dovecot-director", ports[3], ctx["t_dvdirector"]))
    return vs


def scen_login(ctx, key, scenario, proto, tls):
    S = ctx["S"]
    args = ["--scenario", scenario, "--users", users_arg(ctx["users"]),
            "--password", "pass", "--concurrency", S["clients"],
            "--duration", S["storm"]]
    if tls:
        args += ["--tls", "implicit"]
    runs = alternate(key, proxy_variants(ctx, proto, tls), args,
                     S["rounds"], S["storm"] * 4 + 60, ctx)
    ctx["results"][key] = summarize(runs, 1000.0, "login")


def scen_lmtp(ctx):
    S = ctx["S"]
    dv, px, mr = ctx["dovecot"], ctx["dvproxy"], ctx["mailring"]
    vs = [Variant("direct", dv.lmtp_port, ctx["t_dovecot"]),
          Variant("mailring", mr.port("lmtp"), ctx["t_mailring"]),
          Variant("dovecot-proxy", px.lmtp_port, ctx["t_dvproxy"])]
    args = ["--scenario", "lmtp", "--users", users_arg(LMTP_USERS),
            "--domain", LMTP_DOMAIN, "--concurrency", min(S["clients"], 20),
            "--duration", S["storm"], "--message-size", S["lmtp_size"],
            "--per-session", 10]
    runs = alternate("lmtp", vs, args, S["rounds"], S["storm"] * 4 + 60,
                     ctx)
    ctx["results"]["lmtp"] = summarize(runs, 1000.0)


def scen_fetch(ctx, tls):
    S = ctx["S"]
    dv, px, mr = ctx["dovecot"], ctx["dvproxy"], ctx["mailring"]
    if tls:
        vs = [Variant("direct", dv.imaps_port, ctx["t_dovecot"]),
              Variant("mailring", mr.port("imaps"), ctx["t_mailring"]),
              Variant("dovecot-proxy", px.imaps_port, ctx["t_dvproxy"])]
    else:
        vs = [Variant("direct", dv.imap_port, ctx["t_dovecot"]),
              Variant("mailring", mr.port("imap"), ctx["t_mailring"]),
              Variant("dovecot-proxy", px.imap_port, ctx["t_dvproxy"])]
    args = ["--scenario", "imap-fetch", "--users",
            "fetch%%d:1:%d" % S["fetch_users"], "--password", "pass",
            "--concurrency", S["fetch_users"], "--duration", S["fetch_secs"],
            "--per-session", 1]
    if tls:
        args += ["--tls", "implicit"]
    key = "fetch_tls" if tls else "fetch_plain"
    runs = alternate(key, vs, args, S["rounds"], S["fetch_secs"] * 6 + 120,
                     ctx)
    out = summarize(runs, 1.0)
    for label, rs in runs.items():
        good = [g for g in rs if g.ok]
        bps = [gen.bytes_per_s(g.json) for g in good]
        bps = [b for b in bps if b]
        if bps:
            out[label]["mb_per_s"] = statistics.median(bps) / 1e6
            total_bytes = sum(gen.num(gen.first(g.json, "bytes.in"), 0) or
                              (gen.bytes_per_s(g.json) or 0) * g.wall
                              for g in good)
            cpu = sum(g.cpu or 0 for g in good)
            out[label]["cpu_per_gb"] = cpu / (total_bytes / 1e9) \
                if total_bytes else None
    ctx["results"][key] = out


def scen_idle(ctx):
    """Idle hold through each proxy to the null backend."""
    S = ctx["S"]
    n = S["idle"]
    res = {}
    for label in ("mailring", "dovecot-proxy"):
        port, target = ctx["idle_targets"][label]
        args = ["--scenario", "imap-idle", "--host", "127.0.0.1", "--port",
                port, "--users", users_arg(ctx["users"]), "--password",
                "pass", "--concurrency", n, "--hold", S["idle_hold"],
                "--rate", S["idle_rate"]]
        if n > 20000:
            args += ["--source-ips", "127.0.0.2-127.0.0.254"]
        timeout = n / S["idle_rate"] * 3 + S["idle_hold"] + 120
        g = gen.run(GEN, args, target=target, timeout=timeout,
                    sample_mem=True, cmdlog=ctx["commands"])
        held = gen.sessions(g.json) or (n if g.ok else None)
        r = {"rc": g.rc, "sessions": held, "errors": g.errors(),
             "rss_kb_base": g.mem.get("rss_kb_base"),
             "rss_kb_peak": g.mem.get("rss_kb_peak"),
             "pss_kb_base": g.mem.get("pss_kb_base"),
             "pss_kb_peak": g.mem.get("pss_kb_peak"),
             "procs": target.nprocs()}
        if held and r["rss_kb_peak"]:
            r["rss_kib_per_session"] = (r["rss_kb_peak"] -
                                        r["rss_kb_base"]) / held
            r["pss_kib_per_session"] = (r["pss_kb_peak"] -
                                        r["pss_kb_base"]) / held
        if not g.ok:
            r["why"] = g.stderr.strip()[-400:]
        res[label] = r
        log("idle [%s]: %s" % (label, r))
        time.sleep(2)  # let the proxy close the sessions
    ctx["results"]["idle"] = res


def _redis_stats(r):
    with r.client() as c:
        info = c.command("INFO", "commandstats")
        st = c.command("INFO", "stats")
    if isinstance(info, bytes):
        info = info.decode()
    if isinstance(st, bytes):
        st = st.decode()
    calls = {}
    for l in info.splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+)", l)
        if m:
            calls[m.group(1)] = int(m.group(2))
    m = re.search(r"total_commands_processed:(\d+)", st)
    return calls, int(m.group(1)) if m else None


def scen_redis(ctx):
    """The redis store: round trips and added latency per login, vs the
    embedded store, same load (scenario 1's) alternating."""
    from harness.redis import RedisServer
    S, pm, pa = ctx["S"], ctx["pm"], ctx["pa"]
    r = RedisServer(pm, pa, name="redis")
    mrr = srv.mailring_proxy(
        pm, pa, PROXY_BIN, ctx["dovecot"], ctx["users"],
        name="mailring-redis", lmtp=False, extra=ctx["extra_users"],
        settings={"director_store": "redis",
                  "redis_address": "127.0.0.1:%d" % r.port,
                  "proxy_name": "bench1"})
    mrr.wait_log("redis store .* connected", timeout=10, since_start=False)
    vs = [Variant("mailring (embedded)", ctx["mailring"].port("imap"),
                  ctx["t_mailring"]),
          Variant("mailring (redis)", mrr.port("imap"),
                  srv.mailring_target(mrr))]
    # one client: the login latency is then the path's, not queueing
    args = ["--scenario", "imap-login", "--users", users_arg(ctx["users"]),
            "--password", "pass", "--concurrency", 1,
            "--duration", S["storm"]]
    runs = {v.label: [] for v in vs}
    for rnd in range(S["rounds"]):
        order = vs if rnd % 2 == 0 else vs[::-1]
        for v in order:
            if v is vs[1]:
                b_calls, b_total = _redis_stats(r)
            g = gen.run(GEN, args + ["--host", "127.0.0.1", "--port",
                                     v.port], target=v.target,
                        timeout=S["storm"] * 4 + 60, cmdlog=ctx["commands"])
            runs[v.label].append(g)
            if v is vs[1]:
                a_calls, a_total = _redis_stats(r)
                g.redis_total = (a_total or 0) - (b_total or 0)
                g.redis_eval = sum(a_calls.get(k, 0) - b_calls.get(k, 0)
                                   for k in ("eval", "evalsha"))
            log("redis [%s] round %d: ops/s=%s" % (v.label, rnd + 1,
                                                   fmt(g.ops_per_s())))
    out = summarize(runs, 1000.0, "login")
    red = [g for g in runs[vs[1].label] if g.ok and g.ops()]
    ops = sum(g.ops() for g in red)
    if ops:
        out["redis_commands_per_login"] = sum(g.redis_total for g in red) \
            / ops
        out["redis_eval_per_login"] = sum(g.redis_eval for g in red) / ops
    ctx["results"]["redis"] = out
    mrr.stop()
    r.proc.stop()


def scen_placement(ctx):
    S = ctx["S"]
    cmd = [PLACEMENT, "--backends", "10,500", "--seconds",
           str(S["placement_secs"])]
    ctx["commands"].append(" ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    ctx["results"]["placement"] = json.loads(out.stdout)


def scen_backend(ctx):
    """mailring-backend vs Dovecot as backend: mixed workload and memory
    per idle IDLE session."""
    S = ctx["S"]
    pm, pa = ctx["pm"], ctx["pa"]
    res = {"mixed": {}, "idle": {}}
    ctx["results"]["backend"] = res
    nusers = max(S["mixed_clients"], S["backend_idle"])
    root_d = srv.prepare_root(os.path.join(pm.root, "mail-b7-dovecot"))
    root_m = srv.prepare_root(os.path.join(pm.root, "mail-b7-mailring"))
    for root in (root_d, root_m):
        for i in range(1, S["mixed_clients"] + 1):
            srv.fill_maildir(root, "user%d" % i, 50, 20000, seed=i)
    dv7 = srv.dovecot_backend(pm, pa, users=nusers,
                              idle_sessions=S["backend_idle"],
                              mail_root=root_d, name="dovecot-b7")
    try:
        mb = srv.mailring_backend(pm, pa, BACKEND_BIN, nusers, root_m)
    except Exception as e:  # noqa: BLE001
        res["error"] = "mailring-backend not started: %s" % str(e)[:500]
        log(res["error"])
        dv7.stop()
        return
    t_dv = srv.dovecot_target(dv7)
    t_mb = srv.Target("mailring-backend", mb.proc.pid, tree=False)
    vs = [Variant("dovecot", dv7.imap_port, t_dv),
          Variant("mailring-backend", mb.imap_port, t_mb)]
    args = ["--scenario", "imap-mixed", "--users",
            users_arg(S["mixed_clients"]), "--password", "pass",
            "--concurrency", S["mixed_clients"], "--duration",
            S["mixed_secs"]]
    runs = alternate("backend-mixed", vs, args, S["rounds"],
                     S["mixed_secs"] * 4 + 60, ctx)
    res["mixed"] = summarize(runs, 1000.0)
    n = S["backend_idle"]
    for v in vs:
        a = ["--scenario", "imap-idle", "--host", "127.0.0.1", "--port",
             v.port, "--users", users_arg(n), "--password", "pass",
             "--concurrency", n, "--hold", S["idle_hold"], "--rate",
             min(S["idle_rate"], 200)]
        g = gen.run(GEN, a, target=v.target, timeout=n / 50 + 120,
                    sample_mem=True, cmdlog=ctx["commands"])
        held = gen.sessions(g.json) or (n if g.ok else None)
        r = {"rc": g.rc, "sessions": held, "procs": v.target.nprocs()}
        r.update(g.mem)
        if held and g.mem.get("pss_kb_peak"):
            r["pss_kib_per_session"] = (g.mem["pss_kb_peak"] -
                                        g.mem["pss_kb_base"]) / held
            r["rss_kib_per_session"] = (g.mem["rss_kb_peak"] -
                                        g.mem["rss_kb_base"]) / held
        if not g.ok:
            r["why"] = g.stderr.strip()[-400:]
        res["idle"][v.label] = r
        log("backend idle [%s]: %s" % (v.label, r))
    mb.stop()
    dv7.stop()


# ---- main ----------------------------------------------------------------

def setup_proxies(ctx):
    S, pm, pa = ctx["S"], ctx["pm"], ctx["pa"]
    users = ctx["users"]
    mail_root = srv.prepare_root(os.path.join(pm.root, "mail"))
    for i in range(1, S["fetch_users"] + 1):
        srv.fill_maildir(mail_root, "fetch%d" % i, S["fetch_msgs"],
                         S["fetch_size"], seed=i)
    extra = ["fetch%d:{PLAIN}pass::::::" % i
             for i in range(1, S["fetch_users"] + 1)]
    # LMTP recipients are userN@example.com (the generator's --domain)
    extra += ["user%d@%s:{PLAIN}pass::::::" % (i, LMTP_DOMAIN)
              for i in range(1, LMTP_USERS + 1)]
    log("starting Dovecot backend (%d users)" % users)
    dv = srv.dovecot_backend(pm, pa, users=users, mail_root=mail_root,
                             extra_passwd_lines=extra,
                             idle_sessions=S["clients"] * 4)
    ctx["dovecot"], ctx["t_dovecot"] = dv, srv.dovecot_target(dv)
    ctx["extra_users"] = extra
    b = (dv.host, dv.imap_port, dv.pop3_port, dv.lmtp_port)
    log("starting Dovecot proxy")
    px = srv.DovecotProxy(pm, pa, "dvproxy", *b, users=users,
                          extra_passwd_lines=extra, clients=S["clients"] * 4)
    ctx["dvproxy"], ctx["t_dvproxy"] = px, px.target()
    log("starting Dovecot director")
    try:
        dr = srv.DovecotProxy(pm, pa, "dvdirector", *b, director=True,
                              users=users, extra_passwd_lines=extra,
                              clients=S["clients"] * 4)
        ctx["dvdirector"], ctx["t_dvdirector"] = dr, dr.target()
    except Exception as e:  # noqa: BLE001
        ctx["dvdirector"] = None
        ctx["notes"].append("Dovecot director did not start: %s" %
                            str(e)[:600])
    log("starting mailring-proxy")
    mr = srv.mailring_proxy(pm, pa, PROXY_BIN, dv, users, extra=extra)
    ctx["mailring"], ctx["t_mailring"] = mr, srv.mailring_target(mr)
    # Warm-up, not measured: every user's first login creates its maildir
    # and index files on the backend; whichever target ran first would
    # pay for that.
    log("warm-up: one login per user on the backend")
    for sc, port in (("imap-login", dv.imap_port),
                     ("pop3-login", dv.pop3_port)):
        g = gen.run(GEN, ["--scenario", sc, "--host", "127.0.0.1", "--port",
                          port, "--users", users_arg(users), "--password",
                          "pass", "--concurrency", S["clients"], "--count",
                          users if sc == "imap-login" else S["clients"]],
                    timeout=600)
        if not g.ok:
            ctx["notes"].append("warm-up %s failed: %s" % (sc, g.stderr[
                -300:]))


def setup_null(ctx):
    S, pm, pa = ctx["S"], ctx["pm"], ctx["pa"]
    n = S["idle"]
    nb = srv.null_backend(pm, pa, GEN, "imap")
    nullb = {"name": "null", "host": "127.0.0.1", "imap_port": nb.port,
             "pop3_port": 0, "lmtp_port": 0}
    many = n > 20000
    mr_settings = {}
    if many:
        mr_settings["source_ips"] = " ".join(
            "127.0.1.%d" % i for i in range(1, 9))
    mr = srv.mailring_proxy(pm, pa, PROXY_BIN, nullb, ctx["users"],
                            name="mailring-null", lmtp=False,
                            settings=mr_settings)
    px = srv.DovecotProxy(pm, pa, "dvproxy-null", "127.0.0.1", nb.port, 0,
                          0, users=ctx["users"], clients=n, ssl=False,
                          null_backend=True, source_ips=many)
    ctx["idle_targets"] = {
        "mailring": (mr.port("imap"), srv.mailring_target(mr)),
        "dovecot-proxy": (px.imap_port, px.target()),
    }
    ctx["null_procs"] = [mr, px, nb]


def main():
    scale = os.environ.get("BENCH_SCALE", "default")
    if scale not in SCALES:
        sys.exit("BENCH_SCALE must be one of %s" % ", ".join(SCALES))
    S = dict(SCALES[scale])
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
    outdir = os.environ.get("BENCH_OUT") or os.path.join(REPO, "docs",
                                                          "bench")
    os.makedirs(outdir, exist_ok=True)
    if os.geteuid() != 0:
        sys.exit("bench.py runs Dovecot sandboxes and needs root (as the "
                 "integration tests do)")
    for b in (PROXY_BIN, PLACEMENT):
        if not os.access(b, os.X_OK):
            sys.exit("%s missing: run make first" % b)
    have_gen = os.access(GEN, os.X_OK)
    nofile = raise_nofile(max(4 * S["idle"] + 20000, 65536))
    # A proxied idle session holds 2 fds in the proxy: N is capped by the
    # hard RLIMIT_NOFILE (no CAP_SYS_RESOURCE to raise it in containers).
    cap = (nofile[0] - 512) // 2
    if S["idle"] > cap:
        S["idle_wanted"] = S["idle"]
        S["idle"] = cap
    t_start = time.time()
    ctx = {"S": S, "scale": scale, "results": {}, "commands": [],
           "notes": [], "errors": {}, "users": max(1000, S["idle"]),
           "started": datetime.datetime.now(datetime.timezone.utc)}
    ctx["machine"] = machine_info()
    ctx["machine"]["nofile"] = nofile
    log("scale %s, machine %s" % (scale, ctx["machine"].get("lscpu")))

    def want(n):
        return not only or str(n) in only

    def guarded(key, fn, *a):
        try:
            log("scenario %s" % key)
            fn(*a)
        except Exception as e:  # noqa: BLE001
            ctx["errors"][key] = "%s: %s" % (type(e).__name__, str(e)[:1500])
            log("scenario %s failed: %s" % (key, traceback.format_exc()))

    if want(2):
        guarded("openssl", lambda: ctx["results"].__setitem__(
            "openssl", openssl_floor(S["ossl_secs"])))
    if want(6):
        guarded("placement", scen_placement, ctx)

    tmpbase = os.environ.get("BENCH_TMPDIR", "/tmp")
    root = tempfile.mkdtemp(prefix="mrb-", dir=tmpbase)
    os.chmod(root, 0o755)
    pm = ProcessManager(root)
    pa = PortAllocator()
    ctx["pm"], ctx["pa"] = pm, pa
    try:
        if not have_gen:
            ctx["notes"].append(
                "the load generator %s was not built: scenarios 1-5 and 7 "
                "were not run" % os.path.relpath(GEN, REPO))
        else:
            need_proxies = any(want(n) for n in (1, 2, 4, 5, 6))
            if need_proxies:
                guarded("setup", setup_proxies, ctx)
            if need_proxies and "setup" not in ctx["errors"]:
                if want(1):
                    guarded("login_imap", scen_login, ctx, "login_imap",
                            "imap-login", "imap", False)
                if want(2):
                    guarded("login_imaps", scen_login, ctx, "login_imaps",
                            "imap-login", "imap", True)
                if want(5):
                    guarded("login_pop3", scen_login, ctx, "login_pop3",
                            "pop3-login", "pop3", False)
                    guarded("lmtp", scen_lmtp, ctx)
                if want(6):
                    guarded("redis", scen_redis, ctx)
                if want(4):
                    guarded("fetch_plain", scen_fetch, ctx, False)
                    guarded("fetch_tls", scen_fetch, ctx, True)
                # the proxies' tree CPU at rest, as a sanity reference
                for k in ("dovecot", "dvproxy", "dvdirector", "mailring"):
                    p = ctx.get(k)
                    if p is not None:
                        p.stop()
            if want(3):
                guarded("setup_null", setup_null, ctx)
                if "setup_null" not in ctx["errors"]:
                    guarded("idle", scen_idle, ctx)
                for p in ctx.get("null_procs", ()):
                    p.stop()
            if want(7):
                guarded("backend", scen_backend, ctx)
    finally:
        errs = pm.stop_all()
        if errs:
            ctx["notes"].append("stop errors: %s" % errs)
        pa.release_all()
        if os.environ.get("BENCH_KEEP") == "1":
            log("server dirs kept in %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    ctx["wall_s"] = time.time() - t_start
    ctx["targets"] = TARGETS
    for k in ("pm", "pa", "dovecot", "dvproxy", "dvdirector", "mailring",
              "t_dovecot", "t_dvproxy", "t_dvdirector", "t_mailring",
              "idle_targets", "null_procs"):
        ctx.pop(k, None)
    ctx["started"] = ctx["started"].strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(ctx, f, indent=1, default=str)
    report.write(ctx, outdir)
    log("done in %.0f s: %s" % (ctx["wall_s"],
                                os.path.join(outdir, "results.md")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
