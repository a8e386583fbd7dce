"""mailring-proxy: the byte pipeline after login and around it --
back-pressure with a slow client, the PROXY protocol in front, the raw
traffic log."""

import base64
import glob
import hashlib
import os
import re
import signal
import socket
import time

from harness import mail
from harness.dovecot import passwd_line
from harness.mailring import (RawClient, dovecot_logins, proxy_v1_header,
                              proxy_v2_header)

BIG_SIZE = 50 * 1024 * 1024
RSS_GROWTH_MAX_KB = 8 * 1024
SANITIZED = bool(os.environ.get("MAILRING_SANITIZED"))


def big_message(size):
    head = (b"From: big@example.org\r\nTo: user1@example.org\r\n"
            b"Subject: 50 MB\r\nMessage-ID: <big-1@example.org>\r\n"
            b"Date: Thu, 01 Jan 2026 15:00:00 +0000\r\n\r\n")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" \
           b"-=+*/0123456789\r\n"   # 78 bytes
    n = (size - len(head)) // len(line)
    body = line * n
    pad = size - len(head) - len(body)
    return head + body + b"x" * (pad - 2) + b"\r\n" if pad >= 2 else \
        head + body


def _login(r, user="user1", password="pass"):
    _, tagged = r.command("L", "LOGIN %s %s" % (user, password))
    assert tagged.startswith(b"L OK"), tagged


def _slow_fetch(p, listener, size, digest):
    """FETCH the big message without reading for 3 s; returns the RSS
    growth (KiB) while the client did not read."""
    r = p.raw(listener, timeout=20)
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    _login(r)
    _, tagged = r.command("S", "SELECT INBOX")
    assert tagged.startswith(b"S OK"), tagged
    time.sleep(0.2)
    base = p.rss_kb()
    r.send(b"F FETCH 1 BODY.PEEK[]\r\n")
    peak = base
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        peak = max(peak, p.rss_kb())
        time.sleep(0.1)
    # now read it all
    first = r.line(timeout=20)
    m = re.match(rb"\* 1 FETCH \(BODY\[\] \{(\d+)\}\r\n$", first)
    assert m, first
    n = int(m.group(1))
    assert n == size
    h = hashlib.sha256()
    left = n
    while left > 0:
        chunk = r.read_exact(min(left, 1 << 20), timeout=20)
        h.update(chunk)
        left -= len(chunk)
    assert h.hexdigest() == digest
    assert r.line() == b")\r\n"
    tagged = r.line()
    assert tagged.startswith(b"F OK"), tagged
    _, tagged = r.command("O", "LOGOUT")
    r.close()
    return peak - base


def test_slow_client_bounded_memory(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners=["imap", "imaps"])
    msg = big_message(BIG_SIZE)
    assert len(msg) == BIG_SIZE
    digest = hashlib.sha256(msg).hexdigest()
    d = mail.imap_connect(b.host, b.imap_port, user="user1", timeout=60)
    mail.imap_append(d, msg)
    mail.imap_logout(d)
    del msg

    growth_plain = _slow_fetch(p, "imap", BIG_SIZE, digest)
    growth_tls = _slow_fetch(p, "imaps", BIG_SIZE, digest)
    # Under ASan (make asan sets MAILRING_SANITIZED=1) RSS is the
    # sanitizer's shadow memory and quarantine, not ours: only the data is
    # checked then.
    if not SANITIZED:
        assert growth_plain < RSS_GROWTH_MAX_KB, growth_plain
        assert growth_tls < RSS_GROWTH_MAX_KB, growth_tls
    logouts = p.wait_log(r"info: Logout: ", count=2)
    outs = [int(re.search(r" out=(\d+)", l).group(1)) for l in logouts]
    assert all(o > BIG_SIZE for o in outs), logouts

    # SIGTERM while a client sits on an unread FETCH: the proxy still
    # stops after shutdown_grace (1 s) instead of waiting for the client.
    stuck = []
    for listener in ("imap", "imaps"):
        r = p.raw(listener, timeout=20)
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        _login(r)
        r.command("S", "SELECT INBOX")
        r.send(b"F FETCH 1 BODY.PEEK[]\r\n")
        stuck.append(r)
    time.sleep(0.5)
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    p.proc.popen.wait(timeout=10)
    assert time.monotonic() - t0 < 3.0
    assert p.proc.returncode == 0
    for r in stuck:
        r.close()


# ---- PROXY protocol --------------------------------------------------------


def _dovecot_login_rips(b, count):
    return [(u, f["rip"]) for u, f in dovecot_logins(b, count=count)]


def test_proxy_protocol_v2_and_v1(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    # Plaintext logins are judged by the real client's address.
    trusted = "127.0.0.0/8 203.0.113.0/24 198.51.100.0/24 2001:db8::/32"
    p = mailring_proxy(backends=[b],
                       listeners={"imap": {}, "hap": {"haproxy": True}},
                       settings={"login_trusted_networks": trusted})
    port = p.port("hap")
    cases = [
        ("user1", proxy_v2_header(("203.0.113.7", 4242),
                                  ("127.0.0.1", port)),
         "203.0.113.7", "127.0.0.1"),
        # an IPv6 client behind an IPv4 balancer
        ("user2", proxy_v2_header(("2001:db8::7", 4243),
                                  ("2001:db8::1", 143)),
         "2001:db8::7", "2001:db8::1"),
        ("user3", proxy_v1_header(("198.51.100.9", 5555),
                                  ("127.0.0.1", port)),
         "198.51.100.9", "127.0.0.1"),
        # with TLVs (authority, unique id), as haproxy sends them
        ("user7", proxy_v2_header(("198.51.100.70", 7000),
                                  ("127.0.0.1", port),
                                  tlvs=b"\x02\x00\x0bexample.com"
                                       b"\x05\x00\x04abcd"),
         "198.51.100.70", "127.0.0.1"),
        # LOCAL (the balancer's health check): the socket's own addresses
        ("user4", proxy_v2_header(None, command="LOCAL"),
         "127.0.0.1", "127.0.0.1"),
    ]
    for user, header, rip, lip in cases:
        r = p.raw("hap", header=header)
        assert r.greeting.startswith(b"* OK")
        _login(r, user)
        _, tagged = r.command("N", "NOOP")
        assert tagged.startswith(b"N OK")
        r.close()
    p.wait_log(r"info: Login: ", count=len(cases))
    ev = {e["user"]: e for e in p.events("Login")}
    rips = dict(_dovecot_login_rips(b, len(cases)))
    for user, _h, rip, lip in cases:
        assert ev[user]["rip"] == rip, ev[user]
        assert ev[user]["lip"] == lip, ev[user]
        # forwarded to Dovecot in ID x-originating-ip
        assert rips[user] == rip, (user, rips)

    # a client outside login_trusted_networks behind a trusted balancer
    r = p.raw("hap", header=proxy_v2_header(("192.0.2.99", 4000),
                                            ("127.0.0.1", port)))
    assert b"LOGINDISABLED" in r.greeting, r.greeting
    _, tagged = r.command("L", "LOGIN user6 pass")
    assert tagged.startswith(b"L NO [PRIVACYREQUIRED]"), tagged
    r.close()

    # garbage instead of a header: closed, warning logged
    r = p.raw("hap", greeting=False)
    r.send(b"HELLO THERE\r\n\r\n")
    assert r.closed(3.0) and r.buf == b""
    p.wait_log(r"warning: .*invalid PROXY header")
    # a plain listener of the same proxy takes no header
    r = p.raw("imap")
    _login(r, "user5")
    r.close()


def test_proxy_protocol_pieces_and_tls(mailring_proxy, dovecot_backend):
    """A header that arrives in pieces, and a header in front of implicit
    TLS (the ClientHello right behind it)."""
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners={
        "hap": {"haproxy": True}, "haps": {"haproxy": True, "ssl": True}},
        settings={"login_trusted_networks": "127.0.0.0/8 203.0.113.0/24"})
    header = proxy_v2_header(("203.0.113.8", 4000),
                             ("127.0.0.1", p.port("hap")))
    s = socket.create_connection(p.addr("hap"), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in (header[:5], header[5:14], header[14:20], header[20:]):
        s.sendall(piece)
        time.sleep(0.05)
    r = RawClient(s)
    assert r.line().startswith(b"* OK")
    _login(r, "user1")
    r.close()
    # v1 in pieces too
    header = proxy_v1_header(("203.0.113.9", 4001), ("127.0.0.1", 143))
    s = socket.create_connection(p.addr("hap"), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in (header[:3], header[3:20], header[20:]):
        s.sendall(piece)
        time.sleep(0.05)
    r = RawClient(s)
    assert r.line().startswith(b"* OK")
    _login(r, "user2")
    r.close()
    r = p.raw("haps", header=proxy_v2_header(("203.0.113.10", 4002),
                                             ("127.0.0.1", p.port("haps"))))
    _login(r, "user3")
    r.close()
    p.wait_log(r"info: Login: ", count=3)
    ev = p.events("Login")
    assert [(e["user"], e["rip"]) for e in ev] == [
        ("user1", "203.0.113.8"), ("user2", "203.0.113.9"),
        ("user3", "203.0.113.10")]
    assert ev[2].get("tls") == "yes"
    rips = dict(_dovecot_login_rips(b, 3))
    assert rips == {"user1": "203.0.113.8", "user2": "203.0.113.9",
                    "user3": "203.0.113.10"}


def test_proxy_protocol_per_ip_limit_uses_real_client(mailring_proxy, ports):
    """Behind a balancer every connection comes from its address: the
    per-IP limit counts the client named in the header."""
    dead = {"name": "dead", "host": "127.0.0.1", "imap_port": ports.get()}
    p = mailring_proxy(backends=[dead], listeners={"hap": {"haproxy": True}},
                       settings={"max_connections_per_ip": 2})
    port = p.port("hap")
    conns = [p.raw("hap", header=proxy_v2_header(("192.0.2.%d" % i, 1000),
                                                 ("127.0.0.1", port)))
             for i in range(1, 6)]
    same, lines = [], []
    for i in range(3):  # one after the other: workers accept in parallel
        c = p.raw("hap", greeting=False,
                  header=proxy_v2_header(("192.0.2.77", 1000 + i),
                                         ("127.0.0.1", port)))
        same.append(c)
        lines.append(c.line())
    assert [l[:4] for l in lines] == [b"* OK", b"* OK", b"* BY"], lines
    for c in conns + same:
        c.close()


def test_proxy_protocol_untrusted_peer(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b],
                       listeners={"imap": {}, "hap": {"haproxy": True}},
                       settings={"haproxy_trusted_networks": "10.0.0.0/8"})
    r = p.raw("hap", greeting=False,
              header=proxy_v2_header(("203.0.113.7", 4242),
                                     ("127.0.0.1", p.port("hap"))))
    assert r.closed(3.0)
    assert r.buf == b""
    p.wait_log(r"warning: .*haproxy_trusted_networks")
    assert p.events("Login") == []
    assert "203.0.113.7" not in b.log_text()
    # the plain listener is unaffected
    r = p.raw("imap")
    _login(r, "user1")
    r.close()


# ---- raw traffic log -------------------------------------------------------


def test_rawlog_user(mailring_proxy, dovecot_backend, workdir):
    secret = "S3cret-Pw-9x"
    b = dovecot_backend(extra_passwd_lines=[passwd_line("rawuser", secret)])
    rawdir = os.path.join(workdir, "rawlog")
    os.makedirs(rawdir)
    p = mailring_proxy(backends=[b],
                       passwd_lines=["rawuser:{PLAIN}%s::::::" % secret],
                       settings={"rawlog_dir": rawdir,
                                 "rawlog_users": "rawuser"})
    # LOGIN and AUTHENTICATE, both must keep the password out
    for how in ("login", "authenticate"):
        r = p.raw()
        if how == "login":
            _login(r, "rawuser", secret)
        else:
            ir = base64.b64encode(b"\0rawuser\0" + secret.encode()).decode()
            _, tagged = r.command("A", "AUTHENTICATE PLAIN " + ir)
            assert tagged.startswith(b"A OK"), tagged
        _, tagged = r.command("S", "SELECT INBOX")
        assert tagged.startswith(b"S OK")
        _, tagged = r.command("X", "STATUS INBOX (MESSAGES MARKER%s)" % how)
        r.command("O", "LOGOUT")
        r.close()
    # someone not in rawlog_users
    r = p.raw()
    _login(r, "user1")
    r.command("S", "SELECT INBOX")
    r.command("O", "LOGOUT")
    r.close()
    p.wait_log(r"info: Logout: ", count=3)

    sessions = [e["session"] for e in p.events("Login")
                if e["user"] == "rawuser"]
    assert len(sessions) == 2
    files = sorted(os.listdir(rawdir))
    assert files and all(f.startswith("rawuser-") for f in files), files
    data = {f: open(os.path.join(rawdir, f), "rb").read() for f in files}
    both = b"".join(data.values())
    ins = b"".join(v for f, v in data.items() if f.endswith(".in"))
    outs = b"".join(v for f, v in data.items() if f.endswith(".out"))
    # .in: what the client sent, .out: what the backend answered
    assert b"S SELECT INBOX" in ins and b"MARKERlogin" in ins
    assert b"MARKERauthenticate" in ins
    assert b"* FLAGS" in outs and b"S OK" in outs
    assert b"* FLAGS" not in ins and b"S SELECT" not in outs
    # one in/out pair per session, named after it
    for s in sessions:
        safe = s.replace("/", "_")
        assert any(safe in f and f.endswith(".in") for f in files), (s, files)
        assert any(safe in f and f.endswith(".out") for f in files), (s, files)
    assert secret.encode() not in both
    assert base64.b64encode(b"\0rawuser\0" + secret.encode()) not in both
    assert not glob.glob(os.path.join(rawdir, "user1*"))
