"""POP3 through mailring-proxy with Python's poplib, against real Dovecot:
the session must match what the backend gives directly."""

import poplib
import ssl
import time

import pytest

from harness import mail


def _deliver(b, user, names):
    msgs = mail.load_corpus()
    for n in names:
        res = mail.lmtp_deliver(b.host, b.lmtp_port, [user], msgs[n])
        assert all(code == 250 for code, _ in res.values()), res


def _session_view(p3):
    """STAT, LIST, UIDL and every RETR of a POP3 session."""
    count, size = p3.stat()
    listing = p3.list()[1]
    uidl = p3.uidl()[1]
    bodies = [mail.pop3_retr(p3, i) for i in range(1, count + 1)]
    return count, size, listing, uidl, bodies


NAMES = ["01-plain-ascii.eml", "03-mixed-attachment.eml", "04-nested-rfc822.eml",
         "13-large-1mb.eml", "11-utf8-headers.eml"]


def test_pop3_session_matches_backend(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners=["pop3"])
    _deliver(b, "user5", NAMES)

    direct = mail.pop3_connect(b.host, b.pop3_port, user="user5")
    want = _session_view(direct)
    direct.quit()

    via = mail.pop3_connect(p.host, p.port("pop3"), user="user5")
    got = _session_view(via)
    assert got == want
    assert got[0] == len(NAMES)
    # DELE is applied at QUIT, as the backend does it
    assert via.dele(1).startswith(b"+OK")
    assert via.quit().startswith(b"+OK")
    after = mail.pop3_connect(p.host, p.port("pop3"), user="user5")
    count, _ = after.stat()
    assert count == len(NAMES) - 1
    assert after.uidl()[1] == want[3][1:] or \
        [u.split()[1] for u in after.uidl()[1]] == [u.split()[1] for u in want[3][1:]]
    after.quit()
    login = p.events("Login")[-1]
    assert login["user"] == "user5" and login["backend"] == b.name


def test_pop3_capa_and_plaintext_refusal(mailring_proxy, dovecot_backend):
    """Outside login_trusted_networks and without TLS, USER/PASS are refused
    with Dovecot's [AUTH] text and CAPA hides USER; STLS then works."""
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners=["pop3"], tls=True,
                       settings={"login_trusted_networks": "10.0.0.0/8"})
    c = poplib.POP3(p.host, p.port("pop3"), timeout=10)
    caps = c.capa()
    assert "STLS" in caps and "USER" not in caps
    with pytest.raises(poplib.error_proto) as e:
        c.user("user1")
    assert b"-ERR [AUTH] Plaintext authentication disallowed on non-secure " \
        b"(SSL/TLS) connections." in str(e.value).encode()
    c.stls(context=p.client_ssl_context())
    caps = c.capa()
    assert "USER" in caps and "STLS" not in caps
    c.user("user1")
    assert c.pass_("pass").startswith(b"+OK")
    assert c.stat()[0] == 0
    c.quit()
    assert p.events("Login")[-1].get("tls") == "yes"


def test_pop3s_implicit_tls(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners=["pop3s"])
    c = poplib.POP3_SSL(p.host, p.port("pop3s"), timeout=10,
                        context=p.client_ssl_context())
    assert c.getwelcome().startswith(b"+OK")
    c.user("user2")
    c.pass_("pass")
    assert c.stat()[0] == 0
    assert c.sock.version() in ("TLSv1.3", "TLSv1.2")
    c.quit()


def test_pop3_auth_plain_and_failures(mailring_proxy, dovecot_backend):
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners=["pop3"],
                       settings={"auth_failure_delay": "1s"})
    r = p.raw("pop3")
    # SASL PLAIN with an initial response: \0user3\0pass
    r.send(b"AUTH PLAIN AHVzZXIzAHBhc3M=\r\n")
    assert r.line().rstrip(b"\r\n").startswith(b"+OK"), "AUTH PLAIN failed"
    r.send(b"STAT\r\n")
    assert r.line().rstrip(b"\r\n").startswith(b"+OK 0 0")
    r.send(b"QUIT\r\n")
    r.close()

    r = p.raw("pop3")
    t0 = time.monotonic()
    r.send(b"USER user3\r\nPASS wrong\r\n")
    assert r.line().rstrip(b"\r\n") == b"+OK"
    line = r.line(timeout=5).rstrip(b"\r\n")
    assert line == b"-ERR [AUTH] Authentication failed.", line
    assert time.monotonic() - t0 >= 0.9
    r.close()


def test_pop3_backend_down_is_temporary(mailring_proxy, ports):
    """No backend reachable: -ERR [SYS/TEMP], and the session can retry."""
    dead = {"name": "dead", "host": "127.0.0.1", "imap_port": ports.get(),
            "pop3_port": ports.get()}
    p = mailring_proxy(backends=[dead], listeners=["pop3"])
    r = p.raw("pop3")
    r.send(b"USER user1\r\nPASS pass\r\n")
    assert r.line().rstrip(b"\r\n") == b"+OK"
    line = r.line(timeout=10).rstrip(b"\r\n")
    assert line.startswith(b"-ERR [SYS/TEMP]"), line
    r.send(b"QUIT\r\n")
    assert r.line().rstrip(b"\r\n").startswith(b"+OK")
    r.close()
    p.wait_log(r"no backend could be reached")
