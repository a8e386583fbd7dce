"""mailring-proxy, IMAP side, against real Dovecot backends.

Every test starts its own proxy (harness/mailring.py) with short timeouts;
tests that never log in use a backend port with nothing listening instead
of a Dovecot, to stay fast.
"""

import base64
import imaplib
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor


from harness import mail
from harness.dovecot import passwd_line
from harness.mailring import RawClient, dovecot_logins, wait_until

PRELOGIN_CAPS = {"IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE",
                 "IDLE", "LITERAL+", "AUTH=PLAIN"}


def dead_backend(ports, name="dead"):
    """Backend settings for a port nothing listens on."""
    return {"name": name, "host": "127.0.0.1", "imap_port": ports.get()}


def caps_of(line):
    """Capabilities in '... [CAPABILITY a b c] ...' or '* CAPABILITY a b'."""
    if isinstance(line, bytes):
        line = line.decode("ascii", "replace")
    m = re.search(r"\[CAPABILITY ([^\]]*)\]", line)
    if m:
        return m.group(1).split()
    m = re.match(r"\* CAPABILITY (.*)", line.strip())
    assert m, line
    return m.group(1).split()


def b64(data):
    return base64.b64encode(data).decode()


def login_raw(p, user, password="pass", listener="imap"):
    c = p.raw(listener)
    _, tagged = c.command("L", 'LOGIN "%s" "%s"' % (user, password))
    assert tagged.startswith(b"L OK"), tagged
    return c


# ---- login, capabilities ------------------------------------------------


def test_login_and_authenticate_plain(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b])

    # LOGIN
    c = p.imap()
    typ, data = c.login("user1", "pass")
    assert typ == "OK"
    typ, data = c.select("INBOX")
    assert (typ, data) == ("OK", [b"0"])
    mail.imap_logout(c)

    # AUTHENTICATE PLAIN (continuation, no SASL-IR in imaplib)
    c = p.imap()
    typ, data = c.authenticate("PLAIN", lambda _ch: b"\0user2\0pass")
    assert typ == "OK", data
    assert c.select("INBOX")[0] == "OK"
    mail.imap_logout(c)

    # AUTHENTICATE PLAIN with SASL-IR, LOGIN mechanism
    r = p.raw()
    _, tagged = r.command("A", "AUTHENTICATE PLAIN " + b64(b"\0user3\0pass"))
    assert tagged.startswith(b"A OK ["), tagged
    _, tagged = r.command("S", "SELECT INBOX")
    assert tagged.startswith(b"S OK"), tagged
    r.close()

    logins = p.wait_log(r"info: Login: ", count=3)
    ev = p.events("Login")
    assert [e["user"] for e in ev] == ["user1", "user2", "user3"]
    assert all(e["backend"] == b.name and e["method"] == "PLAIN" and
               e["rip"] == "127.0.0.1" and
               e["backend_addr"] == "127.0.0.1:%d" % b.imap_port
               for e in ev), logins
    # The backend saw the same three users, in the proxy's sessions.
    seen = dovecot_logins(b, count=3)
    assert [u for u, _ in seen] == ["user1", "user2", "user3"]
    assert [f["session"] for _, f in seen] == [e["session"] for e in ev]
    assert b.log_errors() == []


def test_greeting_and_post_login_capability(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b])

    r = p.raw()
    assert re.match(rb"\* OK \[CAPABILITY [^\]]+\] .*\r\n$", r.greeting)
    greet_caps = caps_of(r.greeting)
    assert PRELOGIN_CAPS <= set(greet_caps), greet_caps
    assert "LOGINDISABLED" not in greet_caps
    assert "STARTTLS" not in greet_caps       # no ssl_cert
    untagged, tagged = r.command("C", "CAPABILITY")
    assert tagged.startswith(b"C OK")
    assert len(untagged) == 1 and caps_of(untagged[0]) == greet_caps
    # The tagged OK of the login carries the backend's post-login list.
    _, tagged = r.command("L", "LOGIN user4 pass")
    assert tagged.startswith(b"L OK [CAPABILITY "), tagged
    via_proxy = caps_of(tagged)
    r.close()

    d = _raw_direct(b, None)
    _, tagged = d.command("L", "LOGIN user4 pass")
    assert tagged.startswith(b"L OK [CAPABILITY "), tagged
    direct = caps_of(tagged)
    d.close()
    assert via_proxy == direct
    assert "UIDPLUS" in via_proxy and "AUTH=PLAIN" not in via_proxy


def test_corpus_append_fetch_identical(mailring_proxy, dovecot_backend,
                                       mail_root, corpus):
    """Every corpus message, APPENDed through the proxy, FETCHes through
    the proxy byte-identical to a FETCH of the same UID straight from the
    backends (shared mail root): Dovecot's own quirks (NUL -> 0x80 in
    BODY[], bare LF -> CRLF) are the same on both paths."""
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    p = mailring_proxy(backends=[b1])
    user = "user5"

    c = p.imap(user=user)
    uids = {name: mail.imap_append(c, msg) for name, msg in corpus.items()}
    assert c.select("INBOX")[0] == "OK"
    items = ("BODY.PEEK[]", "BINARY.PEEK[]", "BODY.PEEK[HEADER]",
             "BODY.PEEK[TEXT]")
    via_proxy = {(n, i): mail.imap_fetch_uid(c, u, i)
                 for n, u in uids.items() for i in items}
    mail.imap_logout(c)
    raw_proxy = login_raw(p, user)
    raw_proxy.command("S", "SELECT INBOX")
    whole_proxy = raw_proxy.command(
        "F", "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[] BINARY.PEEK[])")
    raw_proxy.close()

    for b in (b1, b2):
        d = mail.imap_connect(b.host, b.imap_port, user=user)
        assert d.select("INBOX")[0] == "OK"
        for (name, item), got in via_proxy.items():
            direct = mail.imap_fetch_uid(d, uids[name], item)
            assert got == direct, "%s %s differs via the proxy (%s)" % (
                name, item, b.name)
        mail.imap_logout(d)
    # The whole FETCH response, literal framing included, is identical.
    direct_raw = _raw_direct(b2, user)
    direct_raw.command("S", "SELECT INBOX")
    whole_direct = direct_raw.command(
        "F", "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[] BINARY.PEEK[])")
    direct_raw.close()
    assert whole_proxy[0] == whole_direct[0]
    assert len(whole_proxy[0]) == len(corpus)
    # And the messages without Dovecot quirks are the originals.
    for name, msg in corpus.items():
        if name not in ("07-nul-and-8bit.eml", "08-bare-lf.eml"):
            assert via_proxy[(name, "BODY.PEEK[]")] == msg, name
    assert b"\x00" in via_proxy[("07-nul-and-8bit.eml", "BINARY.PEEK[]")]


def _raw_direct(b, user):
    r = RawClient(socket.create_connection((b.host, b.imap_port), timeout=10),
                  timeout=10)
    assert r.line().startswith(b"* OK")
    if user is not None:
        _, tagged = r.command("L", "LOGIN %s pass" % user)
        assert tagged.startswith(b"L OK")
    return r


# ---- ID, ENABLE -------------------------------------------------------------


def test_id_before_login_forwarded(mailring_proxy, dovecot_backend):
    b = dovecot_backend(extra_conf="imap_id_log = *\n")
    p = mailring_proxy(backends=[b])
    r = p.raw()
    # The client cannot forge the proxy's own x-* fields.
    untagged, tagged = r.command(
        "a", 'ID ("name" "Roundcube" "version" "1.6" '
             '"x-originating-ip" "6.6.6.6" "x-session-id" "forged")')
    assert untagged == [b"* ID NIL\r\n"]
    assert tagged.startswith(b"a OK"), tagged
    _, tagged = r.command("L", "LOGIN user6 pass")
    assert tagged.startswith(b"L OK"), tagged
    _, tagged = r.command("N", "NOOP")
    assert tagged.startswith(b"N OK")
    r.close()

    ev = p.wait_log(r"info: Login: ") and p.events("Login")[0]
    seen = dovecot_logins(b, count=1)
    assert len(seen) == 1 and seen[0][0] == "user6"
    f = seen[0][1]
    # Dovecot took the client address and session from the proxy's ID.
    assert f["rip"] == "127.0.0.1"
    assert f["session"] == ev["session"]
    log = b.log_text()
    assert "6.6.6.6" not in log and "forged" not in log
    assert re.search(r"ID sent: .*name=Roundcube", log), log


def test_enable_before_login_is_bad(mailring_proxy, ports):
    p = mailring_proxy(backends=[dead_backend(ports)])
    r = p.raw()
    _, tagged = r.command("e", "ENABLE CONDSTORE")
    assert tagged.startswith(b"e BAD"), tagged
    _, tagged = r.command("n", "NOOP")
    assert tagged.startswith(b"n OK"), tagged
    r.close()


# ---- failed logins --------------------------------------------------------


def test_wrong_password_delay_does_not_block_others(mailring_proxy,
                                                    dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], settings={"auth_failure_delay": "1s"})
    bad = p.raw()
    good = p.raw()
    result = {}
    start = threading.Barrier(2)

    def run(name, conn, user, password):
        start.wait()
        t0 = time.monotonic()
        _, tagged = conn.command("L", "LOGIN %s %s" % (user, password))
        result[name] = (time.monotonic() - t0, tagged, time.monotonic())

    threads = [threading.Thread(target=run, args=("bad", bad, "user7",
                                                  "wrong")),
               threading.Thread(target=run, args=("good", good, "user8",
                                                  "pass"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    bad_t, bad_line, bad_end = result["bad"]
    good_t, good_line, good_end = result["good"]
    assert bad_line == b"L NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    assert 0.9 <= bad_t < 2.5, bad_t
    assert good_line.startswith(b"L OK"), good_line
    assert good_t < 0.5, good_t
    assert good_end < bad_end - 0.4
    # The failed connection may try again.
    _, tagged = bad.command("M", "LOGIN user7 pass")
    assert tagged.startswith(b"M OK"), tagged
    bad.close()
    good.close()
    failed = p.events("Login failed")
    assert len(failed) == 1 and failed[0]["user"] == "user7"
    assert failed[0]["reason"] == "password mismatch"
    # Nothing of the failed attempt reached the backend.
    assert sorted(u for u, _ in dovecot_logins(b, count=2)) == \
        ["user7", "user8"]
    assert "wrong" not in b.log_text()


# ---- placement --------------------------------------------------------------


def _login_logout(p, user):
    c = p.imap(user=user)
    mail.imap_logout(c)


def test_same_user_same_backend_and_spread(mailring_proxy, dovecot_backend,
                                           mail_root):
    bs = [dovecot_backend(mail_root=mail_root) for _ in range(3)]
    p = mailring_proxy(backends=bs)
    users = ["user%d" % i for i in range(1, 51)]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda u: _login_logout(p, u), users))
        p.wait_log(r"info: Login: ", count=50)
        # Each user again, twice: always the same backend.
        list(ex.map(lambda u: _login_logout(p, u), users + users[:10]))
    p.wait_log(r"info: Login: ", count=110)
    placed = {}
    for e in p.events("Login"):
        placed.setdefault(e["user"], set()).add(e["backend"])
    assert sorted(placed) == sorted(users)
    moved = {u: s for u, s in placed.items() if len(s) != 1}
    assert not moved, moved
    per_backend = {b.name: sorted(u for u, s in placed.items()
                                  if b.name in s) for b in bs}
    counts = {n: len(u) for n, u in per_backend.items()}
    assert all(n >= 5 for n in counts.values()), counts
    # The Dovecot logs agree with the proxy's.
    for b in bs:
        dovecot_logins(b, count=2 * len(per_backend[b.name]))
        assert sorted({u for u, _ in dovecot_logins(b)}) == \
            per_backend[b.name], b.name


def test_dead_backend_falls_back(mailring_proxy, dovecot_backend, ports):
    b = dovecot_backend()
    dead = dead_backend(ports)
    p = mailring_proxy(backends=[b, dead])
    users = ["user%d" % i for i in range(1, 31)]

    def warned_users(round_sessions):
        out = []
        for l in p.log_lines(r"trying the next backend", since_start=True):
            s = re.search(r"session=<([^>]*)>", l).group(1)
            if s in round_sessions:
                assert "connect(127.0.0.1:%d) failed: Connection refused" % \
                    dead["imap_port"] in l, l
                assert "backend=dead" in l, l
                out.append(round_sessions[s])
        return out

    rounds = []
    for n in range(2):
        for u in users:
            _login_logout(p, u)
        logins = p.wait_log(r"info: Login: ", count=30 * (n + 1))
        evs = p.events("Login")[30 * n:]
        assert sorted(e["user"] for e in evs) == sorted(users)
        assert all(e["backend"] == b.name for e in evs), logins
        rounds.append(warned_users({e["session"]: e["user"] for e in evs}))
    # Round 1: exactly one warning per login that tried the dead backend
    # first. Round 2: none, because the director mapped those users to the
    # backend that served them (sticky mappings), so nobody is sent to the
    # dead backend again while the mapping lives.
    assert len(rounds[0]) == len(set(rounds[0])), rounds[0]
    assert 0 < len(rounds[0]) < 30
    assert rounds[1] == []
    assert len(p.log_lines(r"trying the next backend")) == len(rounds[0])


# ---- user name injection ----------------------------------------------------


def test_username_injection_rejected(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b])
    r = p.raw()

    def expect_fail(tagged, tag):
        assert re.match(rb"%s (NO|BAD) " % tag, tagged), tagged
        # the connection is still sane: nothing was taken as a command
        untagged, t = r.command("Z", "NOOP")
        assert untagged == [] and t.startswith(b"Z OK"), (untagged, t)

    # 1. literal user with CRLF + a command
    evil = b"user1\r\nx LOGOUT"
    r.send(b"a LOGIN {%d}\r\n" % len(evil))
    assert r.line().startswith(b"+ ")
    r.send(evil + b" pass\r\n")
    _, tagged = r.until_tagged("a")
    expect_fail(tagged, b"a")
    # 1b. the same with a non-synchronizing literal
    r.send(b"b LOGIN {%d+}\r\n" % len(evil) + evil + b" pass\r\n")
    _, tagged = r.until_tagged("b")
    expect_fail(tagged, b"b")
    # 2. quotes inside a quoted user name
    _, tagged = r.command("c", r'LOGIN "user1\" x LOGOUT" pass')
    expect_fail(tagged, b"c")
    _, tagged = r.command("d", 'LOGIN "user1" x LOGOUT" pass')
    expect_fail(tagged, b"d")
    # 3. 8-bit bytes
    r.send(b'e LOGIN "us\xe9r1" pass\r\n')
    _, tagged = r.until_tagged("e")
    expect_fail(tagged, b"e")
    r.send(b"f LOGIN {6}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"us\xc3\xa9r1 pass\r\n")
    _, tagged = r.until_tagged("f")
    expect_fail(tagged, b"f")
    # 4. AUTHENTICATE PLAIN with CRLF in the authcid (IR and continuation)
    _, tagged = r.command("g", "AUTHENTICATE PLAIN " +
                          b64(b"\0user1\r\nx LOGOUT\0pass"))
    expect_fail(tagged, b"g")
    r.send(b"h AUTHENTICATE PLAIN\r\n")
    assert r.line().startswith(b"+")
    r.send(b64(b"\0user1\r\nx LOGOUT\0pass").encode() + b"\r\n")
    _, tagged = r.until_tagged("h")
    expect_fail(tagged, b"h")
    # 5. someone else's authzid (no master user configured)
    _, tagged = r.command("i", "AUTHENTICATE PLAIN " +
                          b64(b"user2\0user1\0pass"))
    expect_fail(tagged, b"i")
    r.close()

    assert p.events("Login") == []
    failed = p.events("Login failed")
    assert len(failed) >= 6, failed
    assert "disallowed character" in failed[0]["reason"], failed[0]
    # Nothing reached the backend: no login attempt, no injected text.
    log = b.log_text()
    assert "LOGOUT" not in log and "user1\r" not in log
    attempts = [l for l in log.splitlines()
                if re.search(r"imap-login:|auth:|auth-worker", l) and
                "no auth attempts" not in l]  # the harness's ready probe
    assert attempts == [], attempts
    # and every proxy log line is a log line (no injected line breaks)
    for l in p.log_lines():
        assert l.startswith("==== ") or re.match(r"\d{4}-\d\d-\d\dT", l), l


# ---- pre-login limits ------------------------------------------------------


def test_prelogin_line_too_long(mailring_proxy, ports):
    p = mailring_proxy(backends=[dead_backend(ports)],
                       settings={"max_line_length": "1k"})
    other = p.raw()
    r = p.raw()
    r.send(b"a NOOP " + b"x" * 1500 + b"\r\n")
    line = r.line()
    assert line.startswith(b"* BYE "), line
    assert r.closed(3.0)
    # others are still served
    _, tagged = other.command("c", "CAPABILITY")
    assert tagged.startswith(b"c OK")
    other.close()
    n = p.raw()
    _, tagged = n.command("c", "NOOP")
    assert tagged.startswith(b"c OK")
    n.close()
    # a line just under the limit is fine
    ok = p.raw()
    _, tagged = ok.command("d", "NOOP " + "y" * 900)
    assert re.match(rb"d (OK|BAD) ", tagged)
    ok.close()


def test_prelogin_literal_too_big(mailring_proxy, ports):
    p = mailring_proxy(backends=[dead_backend(ports)],
                       settings={"max_literal_size": "1k"})
    r = p.raw()
    r.send(b"a LOGIN {2000}\r\n")
    line = r.line()
    assert line.startswith(b"a BAD [TOOBIG]"), line
    _, tagged = r.command("b", "NOOP")
    assert tagged.startswith(b"b OK"), tagged
    # a literal within the limit is accepted
    r.send(b"c LOGIN {6}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"nosuch pass\r\n")
    _, tagged = r.until_tagged("c")
    assert tagged.startswith(b"c NO"), tagged
    # non-synchronizing: the bytes are coming anyway, so BYE and close
    r2 = p.raw()
    r2.send(b"a LOGIN {2000+}\r\n" + b"x" * 2000 + b" pass\r\n")
    line = r2.line()
    assert line.startswith(b"* BYE"), line
    assert r2.closed(3.0)
    _, tagged = r.command("d", "NOOP")
    assert tagged.startswith(b"d OK"), tagged
    r.close()


def test_max_connections_per_ip(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], settings={"max_connections_per_ip": 3})
    conns = [p.raw() for _ in range(3)]
    fourth = p.raw(greeting=False)
    line = fourth.line()
    assert line.startswith(b"* BYE ") and b"Too many connections" in line, \
        line
    assert fourth.closed(3.0)
    p.wait_log(r"Too many connections")
    # the three keep working, up to a login and a SELECT
    for i, c in enumerate(conns):
        _, tagged = c.command("n", "NOOP")
        assert tagged.startswith(b"n OK")
    _, tagged = conns[0].command("L", "LOGIN user9 pass")
    assert tagged.startswith(b"L OK"), tagged
    _, tagged = conns[0].command("S", "SELECT INBOX")
    assert tagged.startswith(b"S OK"), tagged
    # closing one makes room again
    conns[1].close()
    deadline = time.monotonic() + 3
    while True:
        c = p.raw(greeting=False)
        line = c.line()
        if line.startswith(b"* OK"):
            break
        assert time.monotonic() < deadline, line
        c.close()
        time.sleep(0.05)
    c.close()
    for c in conns:
        c.close()


# ---- plaintext policy, TLS -------------------------------------------------


def test_logindisabled_when_untrusted(mailring_proxy, ports):
    p = mailring_proxy(backends=[dead_backend(ports)],
                       settings={"login_trusted_networks": "10.0.0.0/8"})
    r = p.raw()
    caps = caps_of(r.greeting)
    assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps, caps
    _, tagged = r.command("a", "LOGIN user1 pass")
    assert tagged.startswith(b"a NO [PRIVACYREQUIRED]"), tagged
    _, tagged = r.command("b", "AUTHENTICATE PLAIN " + b64(b"\0user1\0pass"))
    assert tagged.startswith(b"b NO [PRIVACYREQUIRED]"), tagged
    r.close()
    assert p.events("Login") == []


def test_starttls_then_login(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], tls=True,
                       settings={"login_trusted_networks": "10.0.0.0/8"})
    c = imaplib.IMAP4(p.host, p.port(), timeout=10)
    caps = c.capabilities
    assert "STARTTLS" in caps and "LOGINDISABLED" in caps
    typ, _ = c.starttls(ssl_context=p.client_ssl_context())
    assert typ == "OK"
    caps = c.capabilities
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    assert "AUTH=PLAIN" in caps
    typ, _ = c.login("user10", "pass")
    assert typ == "OK"
    uid, got = mail.append_and_fetch(c, mail.load_message("01-plain-ascii"))
    assert got == mail.load_message("01-plain-ascii")
    mail.imap_logout(c)
    ev = p.wait_log(r"info: Login: ") and p.events("Login")[0]
    assert ev["user"] == "user10" and ev.get("tls") == "yes", ev


def test_starttls_plaintext_injection_ignored(mailring_proxy, ports):
    """Commands pipelined after STARTTLS in plaintext must be dropped,
    not run inside the TLS session (CVE-2011-0411)."""
    p = mailring_proxy(backends=[dead_backend(ports)], tls=True)
    r = p.raw()
    r.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
    line = r.line()
    assert line.startswith(b"a OK"), line
    assert r.buf == b""
    ctx = p.client_ssl_context()
    tls = ctx.wrap_socket(r.sock, server_hostname="127.0.0.1")
    t = RawClient(tls)
    untagged, tagged = t.command("c", "NOOP")
    assert untagged == [] and tagged.startswith(b"c OK"), (untagged, tagged)
    t.close()


def test_implicit_tls_listener(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners=["imap", "imaps"],
                       settings={"login_trusted_networks": "10.0.0.0/8"})
    c = imaplib.IMAP4_SSL(p.host, p.port("imaps"),
                          ssl_context=p.client_ssl_context(), timeout=10)
    caps = caps_of(c.welcome)
    assert "AUTH=PLAIN" in caps and "STARTTLS" not in caps
    assert "LOGINDISABLED" not in caps
    assert c.login("user11", "pass")[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    mail.imap_logout(c)
    # the plain listener next to it still refuses plaintext
    r = p.raw("imap")
    assert "LOGINDISABLED" in caps_of(r.greeting)
    r.close()
    ev = p.wait_log(r"info: Login: ") and p.events("Login")[0]
    assert ev["user"] == "user11" and ev.get("tls") == "yes"
    assert ev["lip"] == "127.0.0.1"


# ---- timeouts, signals -----------------------------------------------------


def test_login_timeout(mailring_proxy, ports):
    p = mailring_proxy(backends=[dead_backend(ports)],
                       settings={"login_timeout": "2s"})
    t0 = time.monotonic()
    r = p.raw()
    line = r.line(timeout=5)
    elapsed = time.monotonic() - t0
    assert line.startswith(b"* BYE "), line
    assert 1.5 <= elapsed <= 3.0, elapsed
    assert r.closed(2.0)
    p.wait_log(r"info: Disconnected: .*inactivity")


def test_sigterm_graceful(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], settings={"shutdown_grace": "1s"})
    r = login_raw(p, "user12")
    _, tagged = r.command("S", "SELECT INBOX")
    assert tagged.startswith(b"S OK")
    pre = p.raw()  # not logged in: closed at once

    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    # new connections are refused
    deadline = time.monotonic() + 1.0
    while True:
        try:
            s = socket.create_connection(p.addr(), timeout=1)
        except (ConnectionRefusedError, ConnectionResetError):
            # reset: the connection hit the listener while it was closed
            break
        s.close()
        assert time.monotonic() < deadline, "still accepting after SIGTERM"
        time.sleep(0.02)
    line = pre.line(timeout=1.0)
    assert line.startswith(b"* BYE"), line
    assert pre.closed(1.0)
    # the logged-in session can still work during the grace time...
    _, tagged = r.command("N", "NOOP", timeout=1.0)
    assert tagged.startswith(b"N OK"), tagged
    # ... then gets a BYE and is closed
    line = r.line(timeout=3.0)
    elapsed = time.monotonic() - t0
    assert line.startswith(b"* BYE"), line
    assert 0.8 <= elapsed <= 2.0, elapsed
    assert r.closed(2.0)
    p.proc.popen.wait(timeout=5)
    assert p.proc.returncode == 0
    assert "mailring-proxy stopped" in p.log_text()


def test_sighup_reload_keeps_sessions(mailring_proxy, dovecot_backend,
                                      mail_root):
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    p = mailring_proxy(backends=[b1, b2])
    # one logged-in session on each backend
    sessions = {}  # backend name -> (user, session id, RawClient)
    for i in range(1, 21):
        r = login_raw(p, "user%d" % i)
        p.wait_log(r"info: Login: ", count=i)
        ev = p.events("Login")[-1]
        if ev["backend"] in sessions:
            r.close()
            continue
        sessions[ev["backend"]] = (ev["user"], ev["session"], r)
        if len(sessions) == 2:
            break
    assert set(sessions) == {b1.name, b2.name}
    user1, sid1, sess1 = sessions[b1.name]
    _, tagged = sess1.command("S", "SELECT INBOX")
    assert tagged.startswith(b"S OK")

    # b1 drained (weight 0), b2 reweighted, a new backend in the list
    line = p.reconfigure(backends=[{"dovecot": b1, "weight": 0},
                                   {"dovecot": b2, "weight": 200},
                                   {"dovecot": b2, "name": "b2bis"}])
    assert "configuration reloaded: 3 backends" in line
    # existing sessions are untouched, still on their backends
    for user, sid, r in sessions.values():
        _, tagged = r.command("N", "NOOP")
        assert tagged.startswith(b"N OK"), tagged
    assert [e for e in p.events("Logout")
            if e["session"] in (sid1, sessions[b2.name][1])] == []
    # Drained means no NEW users: user1 still has a session on b1, so its
    # next login must go there too (I1: one user, one backend), while
    # users never seen before follow the new weights and avoid b1.
    n_before = len(p.events("Login"))
    c = p.imap(user=user1)
    uid = mail.imap_append(c, mail.load_message("01-plain-ascii"))
    mail.imap_logout(c)
    for i in range(30, 40):
        _login_logout(p, "user%d" % i)
    p.wait_log(r"info: Login: ", count=n_before + 11)
    new = p.events("Login")[n_before:]
    assert new[0]["user"] == user1 and new[0]["backend"] == b1.name, new[0]
    assert all(e["backend"] != b1.name for e in new[1:]), new
    # the old session on b1 sees the message appended by the new one
    sess1.command("N2", "NOOP")
    untagged, tagged = sess1.command("F", "UID FETCH %d (BODY.PEEK[])" % uid)
    assert tagged.startswith(b"F OK"), tagged
    assert any(mail.load_message("01-plain-ascii") in l for l in untagged)
    for _, _, r in sessions.values():
        r.close()


# ---- more of the login path ---------------------------------------------

SPECIAL_PW = 'p"a s\\w\u00f6rd{3}'      # quote, space, backslash, UTF-8, {


def _special_pw_setup(mailring_proxy, dovecot_backend):
    b = dovecot_backend(extra_passwd_lines=[passwd_line("special",
                                                        SPECIAL_PW)])
    p = mailring_proxy(backends=[b],
                       passwd_lines=["special:{PLAIN}%s::::::" % SPECIAL_PW])
    return b, p


def test_login_password_special_chars_literal(mailring_proxy,
                                              dovecot_backend):
    """A password with quotes, spaces, backslashes and UTF-8 reaches the
    backend unchanged (the proxy logs in with SASL PLAIN)."""
    b, p = _special_pw_setup(mailring_proxy, dovecot_backend)
    pw = SPECIAL_PW.encode()
    r = p.raw()
    r.send(b"a LOGIN special {%d}\r\n" % len(pw))
    assert r.line().startswith(b"+ ")
    r.send(pw + b"\r\n")
    _, tagged = r.until_tagged("a")
    assert tagged.startswith(b"a OK"), tagged
    r.close()
    # quoted with escapes (7-bit part) and AUTHENTICATE PLAIN
    r = p.raw()
    _, tagged = r.command("b", "AUTHENTICATE PLAIN " +
                          b64(b"\0special\0" + pw))
    assert tagged.startswith(b"b OK"), tagged
    r.close()
    p.wait_log(r"info: Login: ", count=2)
    assert [u for u, _ in dovecot_logins(b, count=2)] == \
        ["special", "special"]


def test_login_password_8bit_quoted(mailring_proxy, dovecot_backend):
    """A UTF-8 password in a quoted string, as Thunderbird sends it:
    Dovecot takes it, so the proxy must too."""
    b, p = _special_pw_setup(mailring_proxy, dovecot_backend)
    quoted = SPECIAL_PW.replace("\\", "\\\\").replace('"', '\\"').encode()
    # Dovecot itself takes it:
    d = RawClient(socket.create_connection((b.host, b.imap_port)))
    d.line()
    d.send(b'a LOGIN special "' + quoted + b'"\r\n')
    _, tagged = d.until_tagged("a")
    assert tagged.startswith(b"a OK"), tagged
    d.close()
    r = p.raw()
    r.send(b'a LOGIN special "' + quoted + b'"\r\n')
    _, tagged = r.until_tagged("a")
    r.close()
    assert tagged.startswith(b"a OK"), tagged


def test_pipelined_commands_after_login(mailring_proxy, dovecot_backend):
    """Commands sent right behind LOGIN (same packet) go to the backend
    after the login, in order."""
    b = dovecot_backend()
    p = mailring_proxy(backends=[b])
    r = p.raw()
    r.send(b'I ID ("name" "pipeliner")\r\nL LOGIN user13 pass\r\n'
           b"S SELECT INBOX\r\nN NOOP\r\nO LOGOUT\r\n")
    _, tagged = r.until_tagged("I")
    assert tagged.startswith(b"I OK")
    _, tagged = r.until_tagged("L")
    assert tagged.startswith(b"L OK"), tagged
    untagged, tagged = r.until_tagged("S")
    assert tagged.startswith(b"S OK"), (untagged, tagged)
    _, tagged = r.until_tagged("N")
    assert tagged.startswith(b"N OK"), tagged
    _, tagged = r.until_tagged("O")
    assert tagged.startswith(b"O OK"), tagged
    assert r.closed(3.0)


def test_idle_through_proxy_and_idle_timeout(mailring_proxy,
                                             dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], settings={"idle_timeout": "2s"})
    r = login_raw(p, "user14")
    r.command("S", "SELECT INBOX")
    r.send(b"I IDLE\r\n")
    assert r.line().startswith(b"+ ")
    c = mail.imap_connect(b.host, b.imap_port, user="user14")
    mail.imap_append(c, mail.load_message("01-plain-ascii"))
    mail.imap_logout(c)
    line = r.line(timeout=5)
    assert re.match(rb"\* 1 EXISTS", line), line
    r.send(b"DONE\r\n")
    _, tagged = r.until_tagged("I")
    assert tagged.startswith(b"I OK"), tagged
    # now silent: closed by idle_timeout with a BYE
    t0 = time.monotonic()
    line = r.line(timeout=5)
    assert line.startswith(b"* BYE"), line
    assert 1.5 <= time.monotonic() - t0 <= 3.5
    assert r.closed(2.0)
    p.wait_log(r"info: Logout: .*inactivity")


def test_max_bad_commands(mailring_proxy, ports):
    p = mailring_proxy(backends=[dead_backend(ports)],
                       settings={"max_bad_commands": 3})
    r = p.raw()
    for i in range(2):
        _, tagged = r.command("x%d" % i, "BOGUS")
        assert tagged.startswith(b"x%d BAD" % i), tagged
    r.send(b"x2 BOGUS\r\n")
    assert r.line().startswith(b"* BYE"), r.buf
    assert r.closed(2.0)


def test_backend_refuses_login(mailring_proxy, dovecot_backend):
    """The proxy knows the user, the backend does not: the client gets
    a NO, not a hang, and may log in again."""
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], passwd_lines=["ghost:{PLAIN}pass::::::"])
    r = p.raw()
    _, tagged = r.command("a", "LOGIN ghost pass")
    assert tagged.startswith(b"a NO"), tagged
    _, tagged = r.command("b", "LOGIN user15 pass")
    assert tagged.startswith(b"b OK"), tagged
    r.close()
    p.wait_log(r"warning: .*backend refused login")


def test_passdb_extra_fields(mailring_proxy, dovecot_backend, mail_root):
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    lines = [
        "pin1:{PLAIN}pass::::::host=%s destuser=user31" % b1.name,
        "pin2:{PLAIN}pass::::::host=%s destuser=user31" % b2.name,
        "renamed:{PLAIN}pass::::::user=user32",
        "other:{PLAIN}clientpw::::::pass=pass destuser=user33",
        "nopw:::::::nopassword pass=pass destuser=user34",
    ]
    p = mailring_proxy(backends=[b1, b2], passwd_lines=lines)
    for user, pw in (("pin1", "pass"), ("pin2", "pass"), ("pin1", "pass"),
                     ("renamed", "pass"), ("other", "clientpw"),
                     ("nopw", "anything")):
        r = p.raw()
        _, tagged = r.command("L", "LOGIN %s %s" % (user, pw))
        assert tagged.startswith(b"L OK"), (user, tagged)
        r.close()
    p.wait_log(r"info: Login: ", count=6)
    ev = p.events("Login")
    assert [e["backend"] for e in ev[:3]] == [b1.name, b2.name, b1.name]
    assert ev[3]["user"] == "user32"
    wait_until(lambda: sum(len(dovecot_logins(b)) for b in (b1, b2)) >= 6,
               what="6 logins at the backends")
    on_backends = sorted(u for b in (b1, b2) for u, _ in dovecot_logins(b))
    assert on_backends == ["user31", "user31", "user31", "user32", "user33",
                           "user34"]


def test_passdb_nologin_reason_shown(mailring_proxy, ports):
    """passdb 'nologin reason=...': the reason reaches the client (as
    Dovecot does: 'NO [CONTACTADMIN] <reason>')."""
    p = mailring_proxy(backends=[dead_backend(ports)], passwd_lines=[
        "moved:{PLAIN}pass::::::nologin reason=Moved-to-mail2"])
    r = p.raw()
    _, tagged = r.command("a", "LOGIN moved pass")
    r.close()
    assert tagged.startswith(b"a NO"), tagged
    assert b"Moved-to-mail2" in tagged, tagged


def test_long_tag_echoed(mailring_proxy, dovecot_backend):
    """The tagged answer to LOGIN carries the client's tag, however long
    (Dovecot accepts any tag that fits in the line)."""
    b = dovecot_backend()
    p = mailring_proxy(backends=[b])
    tag = "T" + "0123456789" * 10
    d = _raw_direct(b, None)
    _, tagged = d.command(tag, "LOGIN user16 pass")
    assert tagged.startswith(tag.encode() + b" OK"), tagged
    d.close()
    r = p.raw()
    # one line each: an untagged answer must fail the test, not hang it
    r.send("%s LOGIN user16 wrong\r\n" % tag)
    line = r.line()
    assert line.startswith(tag.encode() + b" NO"), line
    r.send("%s LOGIN user16 pass\r\n" % tag)
    line = r.line()
    assert line.startswith(tag.encode() + b" OK"), line
    r.close()


def test_authenticate_login_mechanism_and_case(mailring_proxy,
                                               dovecot_backend):
    b1 = dovecot_backend()
    b2 = dovecot_backend()
    p = mailring_proxy(backends=[b1, b2])
    r = p.raw()
    r.send(b"A AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ VXNlcm5hbWU6\r\n"
    r.send(b64(b"user17").encode() + b"\r\n")
    assert r.line() == b"+ UGFzc3dvcmQ6\r\n"
    r.send(b64(b"pass").encode() + b"\r\n")
    _, tagged = r.until_tagged("A")
    assert tagged.startswith(b"A OK"), tagged
    r.close()
    # user names are lower-cased: USER17 is user17, on the same backend
    r = login_raw(p, "USER17")
    r.close()
    p.wait_log(r"info: Login: ", count=2)
    ev = p.events("Login")
    assert ev[0]["method"] == "LOGIN"
    assert [e["user"] for e in ev] == ["user17", "user17"]
    assert ev[0]["backend"] == ev[1]["backend"]


def _fake_backend(mode):
    """A TCP server thread: mode "silent" accepts and never speaks,
    "slam" closes every connection at once.  Returns (port, stop)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    held = []
    done = threading.Event()

    def loop():
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if mode == "slam":
                c.close()
            else:
                held.append(c)

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def stop():
        done.set()
        t.join(2)
        srv.close()
        for c in held:
            c.close()

    return srv.getsockname()[1], stop


def test_misbehaving_backends(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    silent_port, stop_silent = _fake_backend("silent")
    slam_port, stop_slam = _fake_backend("slam")
    try:
        # a backend that closes at once: the next one is tried
        p = mailring_proxy(backends=[
            b, {"name": "slam", "host": "127.0.0.1", "imap_port": slam_port}])
        for i in range(1, 16):
            r = login_raw(p, "user%d" % i)
            r.close()
        p.wait_log(r"info: Login: ", count=15)
        assert all(e["backend"] == b.name for e in p.events("Login"))
        assert p.log_lines(r"trying the next backend.*backend=slam")
        # a backend that never greets: NO [UNAVAILABLE] after
        # backend_login_timeout, and the client may retry
        q = mailring_proxy(backends=[{"name": "silent", "host": "127.0.0.1",
                                      "imap_port": silent_port}],
                           settings={"backend_login_timeout": "1s"})
        r = q.raw()
        t0 = time.monotonic()
        _, tagged = r.command("a", "LOGIN user1 pass", timeout=5)
        assert tagged.startswith(b"a NO [UNAVAILABLE]"), tagged
        assert 0.8 <= time.monotonic() - t0 <= 3.0
        _, tagged = r.command("b", "NOOP")
        assert tagged.startswith(b"b OK")
        r.close()
    finally:
        stop_silent()
        stop_slam()


def test_client_gone_during_login(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], settings={"auth_failure_delay": "1s"})
    for i in range(20):
        s = p.connect()
        s.recv(1000)
        pw = "pass" if i % 2 else "wrong"
        s.sendall(b"a LOGIN user%d %s\r\nb SELECT INBOX\r\n" % (i + 1,
                                                               pw.encode()))
        if i % 3 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()
    time.sleep(1.5)
    assert p.running()
    r = login_raw(p, "user40")
    _, tagged = r.command("S", "SELECT INBOX")
    assert tagged.startswith(b"S OK")
    r.close()


def test_max_connections_total(mailring_proxy, ports):
    p = mailring_proxy(backends=[dead_backend(ports)],
                       settings={"max_connections": 2})
    a, b = p.raw(), p.raw()
    c = p.raw(greeting=False)
    line = c.line()
    assert line.startswith(b"* BYE") and b"busy" in line, line
    assert c.closed(2.0)
    _, tagged = a.command("n", "NOOP")
    assert tagged.startswith(b"n OK")
    a.close()
    b.close()


def test_reload_with_broken_config_keeps_running(mailring_proxy,
                                                 dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b])
    r = login_raw(p, "user18")
    good = open(p.conf_path).read()
    with open(p.conf_path, "a") as f:
        f.write("no_such_setting = 1\n")
    p.signal(signal.SIGHUP)
    p.wait_log(r"reload failed")
    assert p.running()
    _, tagged = r.command("N", "NOOP")
    assert tagged.startswith(b"N OK")
    r.close()
    # the old configuration is still in force
    r = login_raw(p, "user19")
    r.close()
    # a listener change is refused by a reload
    with open(p.conf_path, "w") as f:
        f.write(good.replace("127.0.0.1:%d" % p.port(),
                             "127.0.0.1:%d" % (p.port() + 1)))
    p.signal(signal.SIGHUP)
    p.wait_log(r"reload failed", count=2)
    r = login_raw(p, "user20")
    r.close()


def test_half_close_and_backend_kick(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b])
    # LOGOUT then shutdown(SHUT_WR): the answers still arrive
    r = login_raw(p, "user21")
    r.send(b"O LOGOUT\r\n")
    r.sock.shutdown(socket.SHUT_WR)
    untagged, tagged = r.until_tagged("O")
    assert untagged and untagged[0].startswith(b"* BYE"), untagged
    assert tagged.startswith(b"O OK"), tagged
    assert r.closed(3.0)
    r.close()
    # the backend ends the session (doveadm kick): the client gets the
    # backend's BYE and the proxy closes and logs it
    r = login_raw(p, "user22")
    r.command("S", "SELECT INBOX")
    b.doveadm("kick", "user22")
    line = r.line(timeout=5)
    assert line.startswith(b"* BYE"), line
    assert r.closed(3.0)
    # the session ends with the backend's EOF, not when the client
    # eventually closes its side
    ev = p.wait_log(r"info: Logout: .*user=<user22>", timeout=3)
    assert "Disconnected by server" in ev[0], ev
    r.close()


# ---- placement by domain, IPv6 -------------------------------------------


def _login_select(p, user, password="pass"):
    r = p.raw()
    _, tagged = r.command("L", 'LOGIN "%s" "%s"' % (user, password))
    assert tagged.startswith(b"L OK"), (user, tagged)
    _, tagged = r.command("S", "SELECT INBOX")
    assert tagged.startswith(b"S OK"), tagged
    r.close()


def test_user_hash_key_domain(mailring_proxy, dovecot_backend, mail_root):
    domains = ["d%d.example" % i for i in range(6)]
    users = ["u%d@%s" % (i, d) for d in domains for i in range(4)]
    bs = [dovecot_backend(mail_root=mail_root,
                          extra_passwd_lines=[passwd_line(u) for u in users])
          for _ in range(3)]
    p = mailring_proxy(backends=bs, settings={"user_hash_key": "domain"},
                       passwd_lines=["%s:{PLAIN}pass::::::" % u
                                     for u in users])
    for u in users:
        _login_select(p, u)
    p.wait_log(r"info: Login: ", count=len(users))
    by_domain = {}
    for e in p.events("Login"):
        by_domain.setdefault(e["user"].split("@")[1], set()).add(e["backend"])
    assert sorted(by_domain) == sorted(domains)
    assert all(len(s) == 1 for s in by_domain.values()), by_domain
    assert len({next(iter(s)) for s in by_domain.values()}) >= 2, by_domain


def test_ipv6_listener(mailring_proxy, dovecot_backend, ports):
    b = dovecot_backend()
    port = ports.get()
    p = mailring_proxy(backends=[b], listeners={
        "imap": {"address": "127.0.0.1:%d [::1]:%d" % (port, port),
                 "port": port}})
    s = socket.create_connection(("::1", port), timeout=5)
    r = RawClient(s)
    assert r.line().startswith(b"* OK")
    _, tagged = r.command("L", "LOGIN user1 pass")
    assert tagged.startswith(b"L OK"), tagged
    r.close()
    c = mail.imap_connect("127.0.0.1", port, user="user2")
    mail.imap_logout(c)
    p.wait_log(r"info: Login: ", count=2)
    ev = p.events("Login")
    assert [(e["user"], e["rip"], e["lip"]) for e in ev] == [
        ("user1", "::1", "::1"), ("user2", "127.0.0.1", "127.0.0.1")]
    rips = [re.search(r"rip=([0-9a-f:.]+)", l).group(1)
            for l in [f["_line"] for _u, f in dovecot_logins(b, count=2)]]
    assert rips == ["::1", "127.0.0.1"]
