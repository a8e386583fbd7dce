"""Backends from DNS (proxy/discovery.c) against a real DNS server:
ldns-testns on loopback (harness/dns.py) serving A and SRV records, and
real Dovecot backends.  Rewriting the zone changes what the proxy uses
within the TTL (1 s here, with dns_min_ttl = 1s).

  * a backend whose host is a name: unresolved at first (logins fail with
    UNAVAILABLE), then its A record, then another address, then gone;
  * backend_srv: the SRV records are the backends (status through the
    admin socket), logins are placed on them, and the set follows the
    zone (added, removed: sessions on a removed backend get * BYE).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from harness.dns import dns_server  # noqa: F401 (fixture)
from harness.forwarder import TcpForwarder
from harness.mailring import dovecot_logins, wait_until

TTL = 1
SRV_NAME = "_imap._tcp.backends.example.net"

# Fast re-resolution; a short per-try timeout so the moment ldns-testns
# restarts (set_zone) costs little.
DNS_SETTINGS = {
    "dns_min_ttl": "1s",
    "dns_timeout": "300ms",
    "dns_retries": 1,
}


def dns_settings(server, **more):
    s = dict(DNS_SETTINGS)
    s["dns_servers"] = server.addr
    s.update(more)
    return s


def login_result(p, user):
    """The tagged answer to LOGIN through the proxy (bytes)."""
    c = p.raw()
    try:
        _, tagged = c.command("a", "LOGIN %s pass" % user)
        if tagged.startswith(b"a OK"):
            c.command("b", "LOGOUT")
        return tagged
    finally:
        c.close()


def login_held(p, user):
    """A logged-in raw session kept open; returns (client, backend)."""
    before = len([e for e in p.events("Login") if e.get("user") == user])
    c = p.raw()
    _, tagged = c.command("a", "LOGIN %s pass" % user)
    assert tagged.startswith(b"a OK"), tagged
    p.wait_log(r"info: Login: .*user=<%s>" % re.escape(user),
               count=before + 1)
    ev = [e for e in p.events("Login") if e.get("user") == user][-1]
    return c, ev["backend"]


def expect_bye(c, timeout=5.0):
    """Reads until the proxy closes; asserts a * BYE came first."""
    data = c.buf
    c.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = c.sock.recv(4096)
        except (ConnectionResetError, OSError):
            break
        if not chunk:
            break
        data += chunk
    assert b"* BYE" in data, data
    c.close()


@pytest.fixture
def forwarders():
    """TcpForwarder(target_port, port=, host=) objects closed at teardown
    (the harness fixture binds 127.0.0.1 only)."""
    made = []

    def make(target_port, port, host):
        f = TcpForwarder(target_port, port=port, host=host)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def sockdir():
    # unix socket paths are limited to 108 bytes: keep them short
    d = tempfile.mkdtemp(prefix="mrdns")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def status(mailring_bin):
    """status(sock) -> {name: backend} from `mailring -s SOCK --json
    status`."""
    binary = mailring_bin("mailring")

    def run(sock):
        r = subprocess.run([binary, "-s", sock, "--json", "status"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, (r.stdout, r.stderr)
        return {b["name"]: b for b in json.loads(r.stdout)["backends"]}
    return run


def test_backend_host_name(dns_server, dovecot_backend, mailring_proxy,
                           forwarders):
    """host = a DNS name: unresolved until the name exists, then its A
    record's address; another address is followed after the TTL, and a
    name that is gone leaves the backend unresolved again."""
    b1 = dovecot_backend(name="b1")
    b2 = dovecot_backend(name="b2")
    # 127.0.0.2 with b1's port leads to b2: an address change moves the
    # backend from one Dovecot to the other
    forwarders(b2.imap_port, port=b1.imap_port, host="127.0.0.2")
    dns = dns_server(nxdomain=["mail.example.net"], negative_ttl=TTL)
    p = mailring_proxy(
        backends=[{"dovecot": b1, "name": "b1", "host": "mail.example.net"}],
        settings=dns_settings(dns))

    # no address yet: the login fails like any unreachable backend
    p.wait_log(r"warning: dns: backend b1 \(mail\.example\.net\): "
               r"mail\.example\.net.*NXDOMAIN.*: the backend stays "
               r"unresolved", since_start=False)
    assert login_result(p, "user1").startswith(b"a NO [UNAVAILABLE]")
    p.wait_log(r"warning: proxy: backend b1: its host name is not resolved "
               r"yet .*user=<user1>")

    dns.set_zone(records=[("mail.example.net", "A", "127.0.0.1", TTL)],
                 negative_ttl=TTL)
    p.wait_log(r"notice: dns: backend b1 \(mail\.example\.net\) is "
               r"127\.0\.0\.1 \(ttl 1s\)", timeout=10)
    p.wait_log(r"reconfiguring \(DNS: backend b1 \(mail\.example\.net\) is "
               r"127\.0\.0\.1\)")
    p.wait_log(r"configuration reloaded: 1 backends")
    assert login_result(p, "user1").startswith(b"a OK")
    ev = [e for e in p.events("Login") if e.get("user") == "user1"][-1]
    assert ev["backend"] == "b1"
    assert ev["backend_addr"] == "127.0.0.1:%d" % b1.imap_port
    dovecot_logins(b1, count=1)

    dns.set_zone(records=[("mail.example.net", "A", "127.0.0.2", TTL)],
                 negative_ttl=TTL)
    p.wait_log(r"notice: dns: backend b1 \(mail\.example\.net\) is "
               r"127\.0\.0\.2", timeout=10)
    p.wait_log(r"configuration reloaded: 1 backends", count=2)
    assert login_result(p, "user2").startswith(b"a OK")
    ev = [e for e in p.events("Login") if e.get("user") == "user2"][-1]
    assert ev["backend_addr"] == "127.0.0.2:%d" % b1.imap_port
    # the session really went to the other Dovecot
    assert [u for u, _ in dovecot_logins(b2, count=1)] == ["user2"]

    # the name goes away: unresolved again
    dns.set_zone(nxdomain=["mail.example.net"], negative_ttl=TTL)
    p.wait_log(r"warning: dns: backend b1 \(mail\.example\.net\): .*NXDOMAIN"
               r".*: the backend is unresolved now", timeout=10)
    p.wait_log(r"configuration reloaded: 1 backends", count=3)
    assert login_result(p, "user3").startswith(b"a NO [UNAVAILABLE]")
    # one warning per change of error, not one per lookup
    time.sleep(2.5 * TTL)
    assert len(p.log_lines(r"the backend is unresolved now")) == 1


def test_backend_srv(dns_server, dovecot_backend, mailring_proxy, sockdir,
                     status):
    """backend_srv: each SRV record is a backend named after its target;
    the set follows the zone; sessions on a removed backend get * BYE."""
    bs = [dovecot_backend(name="b%d" % i) for i in (1, 2, 3)]

    def zone(n):
        recs = [("mail%d.example.net" % i, "A", "127.0.0.1", TTL)
                for i in (1, 2, 3)]
        recs += [(SRV_NAME, "SRV", (10, 50, bs[i].imap_port,
                                    "mail%d.example.net" % (i + 1)), TTL)
                 for i in range(n)]
        return recs

    dns = dns_server(records=zone(2), negative_ttl=TTL)
    sock = os.path.join(sockdir, "admin.sock")
    # no backend sections at all: the SRV records are every backend
    p = mailring_proxy(backends=[], settings=dns_settings(
        dns, backend_srv=SRV_NAME, admin_socket=sock))

    p.wait_log(r"notice: dns: %s: 2 backends \(added mail1\.example\.net, "
               r"added mail2\.example\.net\)" % re.escape(SRV_NAME),
               since_start=False, timeout=10)
    wait_until(lambda: os.path.exists(sock), 5, "the admin socket")
    wait_until(lambda: set(status(sock)) == {"mail1.example.net",
                                             "mail2.example.net"},
               5, "status showing both SRV backends")
    st = status(sock)
    assert st["mail1.example.net"]["weight"] == 50
    assert st["mail1.example.net"]["state"] == "up"
    p.wait_log(r"notice: dns: SRV target mail2\.example\.net is 127\.0\.0\.1",
               since_start=False)
    wait_until(lambda: p.log_lines(r"configuration reloaded: 2 backends")
               and not p.log_lines(r"not resolved yet"), 5,
               "a generation with both addresses")

    # logins are placed on both
    held = {}
    for i in range(1, 41):
        c, backend = login_held(p, "user%d" % i)
        if backend in held:
            c.command("z", "LOGOUT")
            c.close()
        else:
            held[backend] = c
        if len(held) == 2:
            break
    assert set(held) == {"mail1.example.net", "mail2.example.net"}
    dovecot_logins(bs[0], count=1)
    dovecot_logins(bs[1], count=1)

    # a third record: a third backend, and new users reach it
    dns.set_zone(records=zone(3), negative_ttl=TTL)
    p.wait_log(r"notice: dns: %s: 3 backends \(added mail3\.example\.net\)"
               % re.escape(SRV_NAME), timeout=10)
    wait_until(lambda: len(status(sock)) == 3, 5, "status showing 3")
    wait_until(lambda: p.log_lines(r"configuration reloaded: 3 backends"),
               5, "a generation with 3 backends")
    for i in range(100, 200):
        c, backend = login_held(p, "user%d" % i)
        if backend == "mail3.example.net":
            held[backend] = c
            break
        c.command("z", "LOGOUT")
        c.close()
    assert "mail3.example.net" in held
    dovecot_logins(bs[2], count=1)

    # down to one record: the others go, and so do their sessions
    dns.set_zone(records=zone(1), negative_ttl=TTL)
    p.wait_log(r"notice: dns: %s: 1 backend \(removed mail2\.example\.net, "
               r"removed mail3\.example\.net\)" % re.escape(SRV_NAME),
               timeout=10)
    wait_until(lambda: set(status(sock)) == {"mail1.example.net"}, 5,
               "status showing one backend")
    expect_bye(held.pop("mail2.example.net"))
    expect_bye(held.pop("mail3.example.net"))
    p.wait_log(r"backend mail3\.example\.net removed: closing its 1 sessions")
    # the remaining backend's session is untouched
    c = held.pop("mail1.example.net")
    _, tagged = c.command("n", "NOOP")
    assert tagged.startswith(b"n OK"), tagged
    c.command("z", "LOGOUT")
    c.close()
