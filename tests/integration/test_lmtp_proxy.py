"""LMTP through mailring-proxy (proxy/lmtp.c) against real Dovecot backends.

Recipients are routed one by one (host= pinning in the proxy's passdb, or
the director), the message goes to each backend involved, and the MTA gets
one reply per recipient carrying the backend's own answer.

smtplib.LMTP handles LHLO/MAIL/RCPT; DATA is sent by hand because
smtplib reads only one reply after the message, and LMTP gives one per
accepted recipient.

Recipients carry a domain (MTAs always send one, and the SMTP parser wants
one outside <Postmaster>): the backends get "userN@example.com" users on
top of their domain-less ones."""

import re
import smtplib
import socket

from harness import mail
from harness.dovecot import passwd_line
from harness.mailring import RawClient

LMTP = {"imap": {}, "lmtp": {"protocol": "lmtp"}}
DOM = "@example.com"
U1, U2, U3 = ("user%d%s" % (i, DOM) for i in (1, 2, 3))


def _dovecot(dovecot_backend, name):
    return dovecot_backend(name=name, users=3, extra_passwd_lines=[
        passwd_line(u) for u in (U1, U2, U3)])


def _msg(subject, extra=b""):
    return (b"From: sender@example.com\r\n"
            b"To: whoever@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"\r\n"
            b"first line\r\n"
            b".a line that starts with a dot\r\n"
            b"..and one with two\r\n"
            b".\tdot tab\r\n" + extra +
            b"last line\r\n")


def _stuff(msg):
    return re.sub(rb"(?m)^\.", b"..", msg)


def _lmtp(p):
    s = smtplib.LMTP(p.host, p.port("lmtp"), timeout=15)
    code, _ = s.ehlo()
    assert code == 250
    return s


def _send_data(s, msg, naccepted):
    """DATA, the message, and the per-recipient replies."""
    code, text = s.docmd("DATA")
    assert code == 354, (code, text)
    s.send(_stuff(msg) + b".\r\n")
    return [s.getreply() for _ in range(naccepted)]


def _imap_inbox(host, port, user):
    """Bodies (BODY.PEEK[]) of user's INBOX, in UID order."""
    c = mail.imap_connect(host, port, user=user)
    try:
        typ, data = c.select("INBOX")
        assert typ == "OK", data
        typ, data = c.uid("SEARCH", None, "ALL")
        uids = [int(u) for u in data[0].split()]
        return [mail.imap_fetch_uid(c, u) for u in uids]
    finally:
        mail.imap_logout(c)


def _pinned(*pairs):
    return ["%s:{PLAIN}pass::::::host=%s" % pair for pair in pairs]


def test_lmtp_three_backends_per_recipient(mailring_proxy, dovecot_backend):
    """Three recipients on three backends (host= pins them): each backend
    gets the message, each recipient its backend's own reply; an unknown
    recipient is refused at RCPT time with Dovecot's 550 5.1.1."""
    bs = [_dovecot(dovecot_backend, "b%d" % i) for i in (1, 2, 3)]
    p = mailring_proxy(backends=bs, listeners=LMTP, users=0,
                       passwd_lines=_pinned((U1, "b1"), (U2, "b2"),
                                            (U3, "b3")))
    msg = _msg("three backends")
    s = _lmtp(p)
    for cap in ("pipelining", "8bitmime", "enhancedstatuscodes", "size"):
        assert s.has_extn(cap), s.esmtp_features
    assert s.esmtp_features["size"] == str(50 * 1024 * 1024)
    assert s.verify(U1)[0] == 252
    assert s.noop()[0] == 250
    assert s.mail("sender@example.com")[0] == 250
    assert s.rcpt(U1)[0] == 250
    code, text = s.rcpt("nosuchuser" + DOM)
    assert code == 550, (code, text)
    assert text.startswith(b"5.1.1 <nosuchuser@example.com> User doesn't exist"), text
    assert s.rcpt(U2)[0] == 250
    assert s.rcpt(U3)[0] == 250
    replies = _send_data(s, msg, 3)
    # in RCPT order, each the backend's own 250 (Dovecot: "<user> ... Saved")
    for (code, text), user in zip(replies, (U1, U2, U3)):
        assert code == 250, (user, code, text)
        assert text.startswith(b"2.0.0 <%s>" % user.encode()), text
        assert b"Saved" in text, text
    # the session goes on: RSET, then QUIT
    assert s.rset()[0] == 250
    assert s.quit()[0] == 221

    for i, b in enumerate(bs, 1):
        user = "user%d%s" % (i, DOM)
        # through the proxy (IMAP follows the same pinning) ...
        got = _imap_inbox(p.host, p.port("imap"), user)
        assert len(got) == 1, (user, got)
        assert got[0].endswith(msg), got[0][-300:]
        assert b"\r\nSubject: three backends\r\n" in got[0]
        # ... and only on its own backend
        other = bs[i % 3]
        assert _imap_inbox(other.host, other.imap_port, user) == []
    ev = p.events("lmtp")
    delivered = sorted((e["rcpt"], e["backend"]) for e in ev
                       if e.get("result") == "delivered")
    assert delivered == [(U1, "b1"), (U2, "b2"), (U3, "b3")]
    assert any(e.get("result") == "unknown-user" and
               e["rcpt"] == "nosuchuser" + DOM for e in ev)


def test_lmtp_backend_down_only_its_recipient_deferred(mailring_proxy,
                                                       dovecot_backend):
    """A backend that is down: its recipient gets 451 4.4.0, the others
    are delivered, and nothing is acknowledged that was not delivered."""
    b1 = _dovecot(dovecot_backend, "b1")
    b2 = _dovecot(dovecot_backend, "b2")
    p = mailring_proxy(backends=[b1, b2], listeners=LMTP, users=0,
                       passwd_lines=_pinned((U1, "b1"), (U2, "b2")))
    b2.stop()
    s = _lmtp(p)
    assert s.mail("sender@example.com")[0] == 250
    assert s.rcpt(U2)[0] == 250
    assert s.rcpt(U1)[0] == 250
    (c2, t2), (c1, t1) = _send_data(s, _msg("one down"), 2)
    assert (c2, t2) == (451, b"4.4.0 <%s> Backend unavailable" % U2.encode())
    assert c1 == 250 and t1.startswith(b"2.0.0 <%s>" % U1.encode()), t1
    # the session is still usable after a partial failure
    assert s.mail("sender@example.com")[0] == 250
    assert s.rcpt(U1)[0] == 250
    assert _send_data(s, _msg("second"), 1)[0][0] == 250
    s.quit()
    got = _imap_inbox(b1.host, b1.imap_port, U1)
    assert len(got) == 2 and got[0].endswith(_msg("one down"))
    p.wait_log(r"lmtp: backend failed: connect\(.*\) failed.*"
               r"\(1 recipients deferred\)")


def test_lmtp_oversize_552_and_session_continues(mailring_proxy,
                                                 dovecot_backend):
    """Over lmtp_max_message_size: 552 5.3.4 for each recipient once the
    message has ended, nothing delivered, and the next message on the same
    connection goes through. Users here are routed by the director (no
    host=)."""
    b = _dovecot(dovecot_backend, "b1")
    p = mailring_proxy(backends=[b], listeners=LMTP, users=0,
                       passwd_lines=[passwd_line(u) for u in (U1, U2)],
                       settings={"lmtp_max_message_size": "10k"})
    s = _lmtp(p)
    assert s.esmtp_features["size"] == "10240"
    # a declared SIZE over the limit is refused at MAIL
    code, text = s.mail("sender@example.com", ["SIZE=20000"])
    assert code == 552 and text.startswith(b"5.3.4"), text
    big = _msg("too big", (b"z" * 76 + b"\r\n") * 300)
    assert len(big) > 20000
    assert s.mail("sender@example.com")[0] == 250
    assert s.rcpt(U1)[0] == 250
    assert s.rcpt(U2)[0] == 250
    replies = _send_data(s, big, 2)
    assert replies == [
        (552, b"5.3.4 <%s> Message too big for system" % U1.encode()),
        (552, b"5.3.4 <%s> Message too big for system" % U2.encode())]
    # same connection, a message that fits
    small = _msg("fits")
    assert s.mail("sender@example.com")[0] == 250
    assert s.rcpt(U1)[0] == 250
    (code, text), = _send_data(s, small, 1)
    assert code == 250, text
    assert s.quit()[0] == 221
    got = _imap_inbox(p.host, p.port("imap"), U1)
    assert len(got) == 1 and got[0].endswith(small)
    assert _imap_inbox(b.host, b.imap_port, U2) == []
    ev = [e for e in p.events("lmtp") if e.get("result") == "delivered"]
    assert [(e["rcpt"], e["backend"]) for e in ev] == [(U1, "b1")]


def test_lmtp_refused_outside_trusted_networks(mailring_proxy, free_port):
    """LMTP is for MTAs: a client outside login_trusted_networks gets 554
    and is disconnected."""
    dead = {"name": "x", "host": "127.0.0.1", "imap_port": free_port,
            "pop3_port": free_port, "lmtp_port": free_port}
    p = mailring_proxy(backends=[dead], listeners=LMTP, users=1,
                       settings={"login_trusted_networks": "127.0.0.1/32"})
    sock = socket.create_connection(p.addr("lmtp"), timeout=5,
                                    source_address=("127.0.0.2", 0))
    c = RawClient(sock)
    assert c.line().startswith(b"554 5.7.1 ")
    assert c.closed()
    p.wait_log(r"lmtp: client not in login_trusted_networks")


def test_lmtp_protocol_errors(mailring_proxy, free_port):
    """Sequence and syntax errors and the recipient limit get their codes
    (no backend is needed before DATA)."""
    dead = {"name": "x", "host": "127.0.0.1", "imap_port": free_port,
            "pop3_port": free_port, "lmtp_port": free_port}
    p = mailring_proxy(backends=[dead], listeners=LMTP, users=0,
                       passwd_lines=[passwd_line(U1)],
                       settings={"lmtp_max_recipients": 2})
    c = p.raw("lmtp")
    for line, want in [
            (b"MAIL FROM:<a@b>", b"503 5.5.1 "),   # LHLO first
            (b"EHLO x", b"500 5.5.1 "),             # this is LMTP
            (b"LHLO x", b"250-"),
    ]:
        c.send(line + b"\r\n")
        assert c.line().startswith(want), line
    while not c.line().startswith(b"250 "):
        pass
    for line, want in [
            (b"RCPT TO:<user1@example.com>", b"503 5.5.1 "),  # MAIL first
            (b"DATA", b"503 5.5.1 "),
            (b"MAIL FROM:<a@b>", b"250 2.1.0 "),
            (b"DATA", b"554 5.5.1 "),               # no recipients
            (b"RCPT TO:<user1@example.com> NOTIFY=NEVER", b"555 5.5.4 "),
            (b"RCPT TO:<no-domain>", b"501 5.1.3 "),
            (b"RCPT TO:<%s>" % U1.encode(), b"250 2.1.5 "),
            (b"RCPT TO:<%s>" % U1.encode(), b"250 2.1.5 "),
            (b"RCPT TO:<%s>" % U1.encode(), b"452 4.5.3 "),  # limit 2
            (b"RSET", b"250 2.0.0 "),
            (b"BDAT 10 LAST", b"502 5.5.1 "),
            (b"FOO", b"500 5.5.2 "),
            (b"QUIT", b"221 2.0.0 "),
    ]:
        c.send(line + b"\r\n")
        assert c.line().startswith(want), line
    assert c.closed()


def test_lmtp_pipelined_and_backend_refusal_verbatim(mailring_proxy,
                                                     dovecot_backend):
    """A pipelined transaction (MAIL, RCPTs and DATA in one write, the
    message and the next command in another) gets its replies in order;
    a recipient the proxy knows but the backend refuses gets the backend's
    own 5xx verbatim after DATA, and nothing is said before the backend
    said it."""
    b = _dovecot(dovecot_backend, "b1")
    ghost = "ghost" + DOM
    p = mailring_proxy(backends=[b], listeners=LMTP, users=0,
                       passwd_lines=[passwd_line(u) for u in (U1, U2, ghost)])
    s = _lmtp(p)
    s.send(("MAIL FROM:<sender@example.com>\r\nRCPT TO:<%s>\r\n"
            "RCPT TO:<nosuch%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
            % (U1, DOM, ghost, U2)).encode())
    got = [s.getreply() for _ in range(6)]
    assert [c for c, _ in got] == [250, 250, 550, 250, 250, 354], got
    msg = _msg("pipelined")
    s.send(_stuff(msg) + b".\r\nNOOP\r\n")
    replies = [s.getreply() for _ in range(3)]
    assert replies[0][0] == 250 and replies[2][0] == 250, replies
    # Dovecot's own words for a user it does not have
    assert replies[1] == (550, b"5.1.1 <%s> User doesn't exist: %s"
                          % (ghost.encode(), ghost.encode())), replies[1]
    assert s.noop()[0] == 250
    s.quit()
    for u in (U1, U2):
        inbox = _imap_inbox(b.host, b.imap_port, u)
        assert len(inbox) == 1 and inbox[0].endswith(msg)
    ev = {e["rcpt"]: e["result"] for e in p.events("lmtp")}
    assert ev == {U1: "delivered", U2: "delivered", ghost: "rejected",
                  "nosuch" + DOM: "unknown-user"}


def test_lmtp_idle_timeout(mailring_proxy, free_port):
    """An MTA silent for lmtp_timeout gets 421 4.4.2 and is disconnected."""
    dead = {"name": "x", "host": "127.0.0.1", "imap_port": free_port,
            "pop3_port": free_port, "lmtp_port": free_port}
    p = mailring_proxy(backends=[dead], listeners=LMTP, users=1,
                       settings={"lmtp_timeout": "1s"})
    c = p.raw("lmtp")
    c.send(b"LHLO x\r\n")
    while not c.line().startswith(b"250 "):
        pass
    assert c.line(timeout=5).startswith(b"421 4.4.2 ")
    assert c.closed()
