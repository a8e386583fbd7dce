"""Running the load generator (build/tests/bench/mailring_bench) and reading
its JSON defensively: key names are looked up from a list of candidates so
small changes on the generator's side do not break the harness."""

import json
import os
import subprocess
import tempfile
import threading
import time


def _walk(d, path):
    cur = d
    for k in path.split("."):
        if isinstance(cur, dict) and k in cur:
            cur = cur[k]
        else:
            return None
    return cur


def first(d, *paths, default=None):
    """The first of the dotted paths present in d (and not None)."""
    for p in paths:
        v = _walk(d, p)
        if v is not None:
            return v
    return default


def num(v, default=None):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


# Which count is "the" rate of a scenario (mailring_bench JSON: sessions,
# deliveries, ops).
METRIC = {"imap-login": "sessions", "pop3-login": "sessions",
          "lmtp": "deliveries", "imap-mixed": "ops", "imap-fetch": "ops",
          "imap-idle": "sessions"}


def metric_of(j):
    return METRIC.get(j.get("scenario") if isinstance(j, dict) else None,
                      "ops")


def ops_per_s(j):
    m = metric_of(j)
    v = num(first(j, m + ".per_s"))
    if v is not None:
        return v
    v = num(first(j, "ops_per_sec", "ops_per_s", "ops/s", "rate",
                  "summary.ops_per_sec", "summary.ops_per_s",
                  "totals.ops_per_sec", "throughput.ops_per_sec"))
    if v is None:
        ops, dur = ops_total(j), num(first(j, "elapsed_s", "duration",
                                           "duration_s",
                                           "elapsed", "elapsed_s",
                                           "wall_s"))
        if ops is not None and dur:
            v = ops / dur
    return v


def ops_total(j):
    m = metric_of(j)
    v = num(first(j, m + ".completed", m + ".count", m + ".total"))
    if v is not None:
        return v
    return num(first(j, "ops", "ops_total", "completed", "count",
                     "summary.ops", "totals.ops", "ok"))


def errors_total(j):
    e = first(j, "errors.total", "errors", "summary.errors",
              "totals.errors")
    if isinstance(e, dict):
        return sum(num(v, 0) for v in e.values()
                   if not isinstance(v, (dict, list)))
    return num(e, 0)


def errors_by_kind(j):
    e = first(j, "errors.by_kind", "errors", "summary.errors")
    return e if isinstance(e, dict) else {}


def latency(j, kind=None):
    """{p50, p90, p99} in ms for op kind (or the overall one)."""
    byk = first(j, "ops_by_kind")
    if isinstance(byk, dict) and byk:
        if kind and isinstance(byk.get(kind), dict):
            return dict(byk[kind].get("latency_ms") or {})
        for k in ("session", "login", "delivery"):
            if isinstance(byk.get(k), dict):
                return dict(byk[k].get("latency_ms") or {})
    lat = first(j, "latency", "latencies", "latency_ms")
    if not isinstance(lat, dict):
        return {}
    cand = lat.get(kind) if kind and isinstance(lat.get(kind), dict) else None
    if cand is None:
        if any(k in lat for k in ("p50", "p50_ms")):
            cand = lat
        else:
            for k in ("login", "session", "total", "all", "op"):
                if isinstance(lat.get(k), dict):
                    cand = lat[k]
                    break
            if cand is None:
                vals = [v for v in lat.values() if isinstance(v, dict)]
                cand = vals[0] if vals else {}
    out = {}
    for p in ("p50", "p90", "p99"):
        v = num(first(cand, p + "_ms", p))
        if v is None:
            us = num(first(cand, p + "_us"))
            v = us / 1000.0 if us is not None else None
        out[p] = v
    return out


def bytes_per_s(j):
    """Message (literal) bytes per second received by the clients."""
    mb = num(first(j, "bytes.literal_mb_per_s"))
    if mb is not None:
        return mb * 1e6
    v = num(first(j, "bytes_per_sec", "bytes_per_s", "summary.bytes_per_sec",
                  "throughput.bytes_per_sec"))
    if v is None:
        b = num(first(j, "bytes", "bytes_in", "bytes_read", "rx_bytes",
                      "summary.bytes", "totals.bytes"))
        dur = num(first(j, "duration", "duration_s", "elapsed",
                        "elapsed_s", "wall_s"))
        if b is not None and dur:
            v = b / dur
    return v


def sessions(j):
    return num(first(j, "idle.peak_held", "idle.held", "established", "sessions_established",
                     "connected", "held", "summary.sessions",
                     "idle.sessions"))


class GenRun:
    def __init__(self, argv, rc, wall, j, stderr, cpu, mem):
        self.argv = argv
        self.rc = rc
        self.wall = wall
        self.json = j or {}
        self.stderr = stderr
        self.cpu = cpu     # CPU seconds of the measured server(s)
        self.mem = mem     # {"rss_kb_base", "rss_kb_peak", "pss_kb_*"}

    @property
    def ok(self):
        return self.rc == 0 and bool(self.json)

    def ops_per_s(self):
        return ops_per_s(self.json)

    def ops(self):
        v = ops_total(self.json)
        if v is None and self.ops_per_s() is not None:
            v = self.ops_per_s() * self.wall
        return v

    def errors(self):
        return errors_total(self.json)


def run(binary, args, target=None, timeout=600, sample_mem=False,
        cmdlog=None, mem_settle=None):
    """Runs the generator with args (+ --json FILE --quiet); measures the
    CPU of target (bench_servers.Target) over the run and, sample_mem,
    samples its RSS/PSS every 0.5 s (peak kept)."""
    fd, jpath = tempfile.mkstemp(prefix="mrbench-", suffix=".json")
    os.close(fd)
    os.unlink(jpath)
    argv = [binary] + [str(a) for a in args] + ["--json", jpath, "--quiet"]
    if cmdlog is not None:
        cmdlog.append(" ".join(argv[:1] + [os.path.basename(argv[0])][:0]
                               + argv[1:]).replace(jpath, "OUT.json"))
    mem = {}
    stop = threading.Event()

    def sampler():
        peak_rss = peak_pss = 0
        while not stop.wait(0.5):
            try:
                r = target.rss_kb()
                peak_rss = max(peak_rss, r)
                if mem_settle is None:
                    peak_pss = max(peak_pss, target.pss_kb())
            except Exception:  # noqa: BLE001
                pass
            mem["rss_kb_peak"] = peak_rss
            mem["pss_kb_peak"] = peak_pss

    th = None
    if target is not None:
        if sample_mem:
            mem["rss_kb_base"] = target.rss_kb()
            mem["pss_kb_base"] = target.pss_kb()
            th = threading.Thread(target=sampler, daemon=True)
            th.start()
        c0 = target.cpu()
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        rc, err = p.returncode, p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, err = -999, "timeout after %ss: %s" % (
            timeout, (e.stderr or b"").decode("utf-8", "replace"))
    wall = time.monotonic() - t0
    cpu = target.cpu() - c0 if target is not None else None
    if th is not None:
        stop.set()
        th.join()
    j = None
    try:
        with open(jpath) as f:
            j = json.load(f)
    except (OSError, ValueError):
        pass
    finally:
        try:
            os.unlink(jpath)
        except OSError:
            pass
    return GenRun(argv, rc, wall, j, err[-2000:], cpu, mem)
