"""ring/dns (the director's asynchronous resolver) against a real DNS
server: ldns-testns serving canned records (harness/dns.py), driven through
the build/tests/dnsq tool.

dnsq prints one line per record ("addr 127.0.0.5 ttl=30",
"srv 10 60 1143 b1.example.net ttl=30") and exits 0, or prints
"error STATUS: MESSAGE" and exits 1."""

import os
import subprocess
import time

import pytest

from harness.dns import dns_server, udp_blackhole  # noqa: F401 (fixtures)

ZONE = [
    ("b1.example.net", "A", "127.0.0.5", 30),
    ("b2.example.net", "A", "127.0.0.6", 20),
    ("b2.example.net", "A", "127.0.0.7", 40),
    ("b2.example.net", "AAAA", "::7", 10),
    ("b3.example.net", "AAAA", "fd00::3", 30),
    ("mail.example.net", "CNAME", "b1.example.net", 15),
    ("_imap._tcp.example.net", "SRV", (10, 60, 1143, "b1.example.net"), 30),
    ("_imap._tcp.example.net", "SRV", (10, 40, 1143, "b2.example.net"), 30),
    ("_imap._tcp.example.net", "SRV", (20, 0, 2143, "b3.example.net"), 60),
]


@pytest.fixture
def dnsq(mailring_bin):
    binary = mailring_bin(os.path.join("tests", "dnsq"))

    def run(*args, timeout=20):
        argv = [binary] + [str(a) for a in args]
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=timeout)
        r.elapsed = time.monotonic() - t0
        r.lines = r.stdout.splitlines()
        return r
    run.binary = binary
    return run


def lookup(dnsq, server, kind, name, *extra):
    return dnsq("-s", server.addr, "-t", 1000, "-r", 1, *extra, kind, name)


def test_addr_a_and_aaaa(dns_server, dnsq):
    s = dns_server(records=ZONE)
    r = lookup(dnsq, s, "addr", "b1.example.net")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.lines == ["addr 127.0.0.5 ttl=30"]

    r = lookup(dnsq, s, "addr", "b2.example.net")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.lines == ["addr 127.0.0.6 ttl=20", "addr 127.0.0.7 ttl=40",
                       "addr ::7 ttl=10"]

    r = lookup(dnsq, s, "addr", "B3.Example.NET.")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.lines == ["addr fd00::3 ttl=30"]


def test_addr_cname(dns_server, dnsq):
    s = dns_server(records=ZONE)
    r = lookup(dnsq, s, "addr", "mail.example.net")
    assert r.returncode == 0, (r.stdout, r.stderr)
    # the TTL is the smallest on the way: CNAME 15 < A 30
    assert r.lines == ["addr 127.0.0.5 ttl=15"]


def test_srv(dns_server, dnsq):
    s = dns_server(records=ZONE)
    r = lookup(dnsq, s, "srv", "_imap._tcp.example.net")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.lines == [
        "srv 10 60 1143 b1.example.net ttl=30",
        "srv 10 40 1143 b2.example.net ttl=30",
        "srv 20 0 2143 b3.example.net ttl=60",
    ]


def test_zone_change_changes_answer(dns_server, dnsq):
    s = dns_server(records=ZONE)
    r = lookup(dnsq, s, "addr", "b1.example.net")
    assert r.lines == ["addr 127.0.0.5 ttl=30"]
    r = lookup(dnsq, s, "srv", "_imap._tcp.example.net")
    assert len(r.lines) == 3

    port = s.port
    s.set_zone(records=[
        ("b1.example.net", "A", "127.0.0.50", 5),
        ("_imap._tcp.example.net", "SRV", (5, 100, 1143, "b9.example.net"),
         7),
    ], nxdomain=["b2.example.net"])
    assert s.port == port
    r = lookup(dnsq, s, "addr", "b1.example.net")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.lines == ["addr 127.0.0.50 ttl=5"]
    r = lookup(dnsq, s, "srv", "_imap._tcp.example.net")
    assert r.lines == ["srv 5 100 1143 b9.example.net ttl=7"]
    r = lookup(dnsq, s, "addr", "b2.example.net")
    assert r.returncode == 1
    assert r.lines[0].startswith("error nxdomain:"), r.lines


def test_watch_reresolves_after_ttl(dns_server, dnsq):
    """A dns_watch looks the name up again once the TTL ran out, and sees
    the zone change."""
    s = dns_server(records=[("b1.example.net", "A", "127.0.0.5", 1)])
    p = subprocess.Popen(
        [dnsq.binary, "-s", s.addr, "-t", "300", "-r", "3", "-w", "30",
         "-m", "200", "addr", "b1.example.net"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline().strip()
        end = p.stdout.readline().strip()
        assert first == "addr 127.0.0.5 ttl=1", (first, end)
        assert end.startswith("end ok ttl=1 "), end
        # the second result comes after the TTL (1 s), not before
        p.stdout.readline()
        end2 = p.stdout.readline().strip()
        msecs = int(end2.rsplit("msecs=", 1)[1])
        assert 900 <= msecs - int(end.rsplit("msecs=", 1)[1]) <= 3000, \
            (end, end2)
        s.set_zone(records=[("b1.example.net", "A", "127.0.0.9", 1)])
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            line = p.stdout.readline().strip()
            if not line:
                break
            seen.append(line)
            if line == "addr 127.0.0.9 ttl=1":
                break
        assert "addr 127.0.0.9 ttl=1" in seen, seen
    finally:
        p.kill()
        p.wait(timeout=5)
        p.stdout.close()
        p.stderr.close()


def test_nxdomain_nodata_servfail(dns_server, dnsq):
    s = dns_server(records=ZONE, nxdomain=["gone.example.net"],
                   servfail=["broken.example.net"])
    r = lookup(dnsq, s, "addr", "gone.example.net")
    assert r.returncode == 1
    assert r.lines == ["error nxdomain: gone.example.net: no such name "
                       "(NXDOMAIN)"]

    r = lookup(dnsq, s, "srv", "b1.example.net")
    assert r.returncode == 1
    assert r.lines == ["error nodata: b1.example.net: no SRV records"]

    r = lookup(dnsq, s, "addr", "broken.example.net")
    assert r.returncode == 1
    assert r.lines[0].startswith("error servfail: broken.example.net A: "
                                 "SERVFAIL from %s" % s.addr), r.lines
    # 1 server, -r 1: two tries
    assert "(2 tries)" in r.lines[0], r.lines


def test_truncated_answer_retried_over_tcp(dns_server, dnsq):
    s = dns_server(records=ZONE, truncate=["b2.example.net"])
    assert s.query("b2.example.net", "A") == ("NOERROR", 0)
    r = lookup(dnsq, s, "addr", "b2.example.net")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.lines == ["addr 127.0.0.6 ttl=20", "addr 127.0.0.7 ttl=40",
                       "addr ::7 ttl=10"]
    assert "TCP" in s.log_text()


def test_timeout(udp_blackhole, dnsq):
    r = dnsq("-s", udp_blackhole.addr, "-t", 300, "-r", 1, "addr",
             "b1.example.net")
    assert r.returncode == 1
    assert r.lines[0].startswith("error timeout: b1.example.net A: no answer "
                                 "from %s in 300 ms (2 tries)"
                                 % udp_blackhole.addr), r.lines
    # 2 tries of 300 ms, A and AAAA in parallel
    assert 0.55 <= r.elapsed < 2.0, r.elapsed


def test_next_server_after_timeout(dns_server, udp_blackhole, dnsq):
    s = dns_server(records=ZONE)
    r = dnsq("-s", "%s %s" % (udp_blackhole.addr, s.addr), "-t", 300,
             "-r", 0, "addr", "b1.example.net")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.lines == ["addr 127.0.0.5 ttl=30"]
    assert 0.25 <= r.elapsed < 2.0, r.elapsed


def test_unknown_name_no_answer_is_timeout(dns_server, dnsq):
    # ldns-testns has no entry for it and stays silent
    s = dns_server(records=ZONE)
    r = dnsq("-s", s.addr, "-t", 200, "-r", 0, "addr", "nope.example.net")
    assert r.returncode == 1
    assert r.lines[0].startswith("error timeout:"), r.lines


def test_refused_port(ports, dnsq):
    port = ports.get()  # nothing listens there: ICMP port unreachable
    r = dnsq("-s", "127.0.0.1:%d" % port, "-t", 1000, "-r", 0, "addr",
             "b1.example.net")
    assert r.returncode == 1
    assert r.lines[0].startswith("error error: b1.example.net A: recv("), \
        r.lines
    assert "Connection refused" in r.lines[0]
    assert r.elapsed < 1.0


def test_invalid_name_and_usage(dnsq):
    r = dnsq("-s", "127.0.0.1:9", "addr", "bad..name")
    assert r.returncode == 1
    assert r.lines == ["error error: invalid DNS name <bad..name>"]
    r = dnsq("-s", "not-an-address", "addr", "b1.example.net")
    assert r.returncode == 64
    assert "invalid DNS server address" in r.stderr
    r = dnsq("addr")
    assert r.returncode == 64
