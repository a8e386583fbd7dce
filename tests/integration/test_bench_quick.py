"""mailring-bench (tests/bench/mailring_bench.c) in quick mode, so the load
generator and its null backend cannot rot: a few seconds of imap-login
against the null backend directly, and through a real mailring-proxy in
front of it with --pids measuring the proxy.
"""

import json
import os
import subprocess

from harness.procs import tcp_greeting

BENCH = os.path.join("tests", "bench", "mailring_bench")


def start_null_backend(procs, ports, bench, proto="imap", extra=()):
    port = ports.get()
    greeting = {"imap": b"* OK", "pop3": b"+OK", "lmtp": b"220 "}[proto]
    p = procs.start("null-" + proto,
                    [bench, "--serve", proto, "--listen", "127.0.0.1:%d" % port]
                    + list(extra),
                    ready=tcp_greeting("127.0.0.1", port, greeting))
    return p, port


def run_bench(bench, workdir, name, args, timeout=30):
    out = os.path.join(workdir, name + ".json")
    r = subprocess.run([bench, "--json", out, "--quiet"] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    with open(out) as f:
        return json.load(f)


def assert_clean(res, scenario):
    assert res["scenario"] == scenario
    assert res["ops"]["total"] > 0, res
    assert res["errors"]["total"] == 0, res["errors"]
    assert res["sessions"]["failed"] == 0, res["sessions"]
    assert res["sessions"]["completed"] > 0, res["sessions"]


def test_bench_imap_login_null_backend(procs, ports, workdir, mailring_bin):
    bench = mailring_bin(BENCH)
    nb, port = start_null_backend(procs, ports, bench)
    res = run_bench(bench, workdir, "direct",
                    ["--scenario", "imap-login", "--port", str(port),
                     "--concurrency", "4", "--duration", "2",
                     "--pids", str(nb.pid)])
    assert_clean(res, "imap-login")
    kinds = res["ops_by_kind"]
    for k in ("connect", "login", "select", "logout", "session"):
        assert kinds[k]["count"] > 0, k
        lat = kinds[k]["latency_ms"]
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
    (proc,) = res["processes"]
    assert proc["pid"] == nb.pid and proc["found"]
    assert proc["cpu_s"]["delta"] >= 0
    assert proc["rss_kb"]["after"] > 0


def test_bench_imap_login_through_proxy(procs, ports, workdir, mailring_bin,
                                        mailring_proxy):
    bench = mailring_bin(BENCH)
    nb, port = start_null_backend(procs, ports, bench)
    # trusted: the proxy sends ID before its AUTHENTICATE PLAIN
    p = mailring_proxy(backends=[{"name": "null", "host": "127.0.0.1",
                                  "imap_port": port, "trusted": True}])
    res = run_bench(bench, workdir, "proxy",
                    ["--scenario", "imap-login", "--port", str(p.port()),
                     "--concurrency", "4", "--duration", "2",
                     "--users", "user%d:1:100", "--password", "pass",
                     "--pids", str(p.pid)])
    assert_clean(res, "imap-login")
    (proc,) = res["processes"]
    assert proc["pid"] == p.pid and proc["found"]
    assert proc["cpu_s"]["delta"] >= 0
    assert proc["rss_kb"]["after"] > 0
    assert proc["hwm_kb"]["after"] >= proc["rss_kb"]["after"]


def test_bench_other_scenarios_null_backend(procs, ports, workdir,
                                            mailring_bin):
    """pop3-login, lmtp and imap-idle for half a second each."""
    bench = mailring_bin(BENCH)
    _, pop3 = start_null_backend(procs, ports, bench, "pop3")
    res = run_bench(bench, workdir, "pop3",
                    ["--scenario", "pop3-login", "--port", str(pop3),
                     "--concurrency", "2", "--duration", "0.5"])
    assert_clean(res, "pop3-login")
    _, lmtp = start_null_backend(procs, ports, bench, "lmtp")
    res = run_bench(bench, workdir, "lmtp",
                    ["--scenario", "lmtp", "--port", str(lmtp),
                     "--concurrency", "2", "--duration", "0.5",
                     "--message-size", "2000"])
    assert_clean(res, "lmtp")
    assert res["deliveries"]["count"] > 0
    _, imap = start_null_backend(procs, ports, bench, "imap",
                                 ["--tls", "starttls", "--exists", "3"])
    res = run_bench(bench, workdir, "idle",
                    ["--scenario", "imap-idle", "--port", str(imap),
                     "--tls", "starttls", "--concurrency", "20",
                     "--hold", "0.5"])
    assert res["errors"]["total"] == 0, res["errors"]
    assert res["idle"]["held"] == 20, res["idle"]
    assert res["tls_info"]["version"].startswith("TLS")
    res = run_bench(bench, workdir, "mixed",
                    ["--scenario", "imap-mixed", "--port", str(imap),
                     "--tls", "starttls", "--concurrency", "2",
                     "--duration", "0.5"])
    assert_clean(res, "imap-mixed")
    assert res["ops_by_kind"]["append"]["count"] > 0
    assert res["bytes"]["literal_in"] > 0
