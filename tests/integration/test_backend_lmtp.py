"""mailring-backend LMTP (issue 5): RFC 2033 delivery into the users'
Maildir INBOX, one reply per recipient, 250 only once the file is durable.

The harness node has a POP3 listener only; node() adds an LMTP listener
to its config, so one process serves both (deliver by LMTP, read by POP3).
"""

import os
import poplib
import re
import smtplib
import socket
import time

import pytest

DOM = "@example.com"
USERS = ["alice", "bob", "carol"]
HERE = os.path.dirname(os.path.abspath(__file__))
MAIL_DIR = os.path.join(HERE, "..", "data", "mail")


def crlf(data):
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def stuff(msg):
    return re.sub(rb"(?m)^\.", b"..", msg)


def sample(name="01-plain-ascii.eml"):
    with open(os.path.join(MAIL_DIR, name), "rb") as f:
        return crlf(f.read())


def stored(sender, rcpt, msg):
    """What the backend writes: Dovecot's two headers, then the message."""
    return (b"Return-Path: <%s>\r\nDelivered-To: %s\r\n"
            % (sender.encode(), rcpt.encode())) + msg


@pytest.fixture
def node(mailring_backend, ports):
    def make(settings=None):
        b = mailring_backend(
            start=False, settings=settings, users=0,
            passwd_lines=["%s%s:{PLAIN}pass::::::" % (u, DOM)
                          for u in USERS])
        b.lmtp_port = ports.get()
        base = b.config_text

        def config_text():
            return base() + ("listener lmtp {\n  protocol = lmtp\n"
                             "  address = 127.0.0.1:%d\n}\n" % b.lmtp_port)
        b.config_text = config_text
        b.write_config()
        return b.start()
    return make


def new_files(b, user):
    d = os.path.join(b.maildir(user + DOM), "new")
    if not os.path.isdir(d):
        return []
    return [os.path.join(d, n) for n in sorted(os.listdir(d))]


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Raw:
    """A raw LMTP client: smtplib reads one reply after DATA."""

    def __init__(self, b):
        self.s = socket.create_connection((b.host, b.lmtp_port), timeout=15)
        self.f = self.s.makefile("rb")

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            assert line.endswith(b"\r\n"), (lines, line)
            lines.append(line[:-2])
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def close(self):
        self.f.close()
        self.s.close()


def lmtp(b):
    s = smtplib.LMTP(b.host, b.lmtp_port, timeout=15)
    code, _ = s.ehlo()
    assert code == 250
    return s


def test_greeting_lhlo_and_one_recipient(node):
    b = node()
    r = Raw(b)
    code, lines = r.reply()
    assert code == 220 and lines[0].endswith(b" mailring-backend ready"), lines
    r.close()

    s = lmtp(b)
    for cap in ("pipelining", "8bitmime", "enhancedstatuscodes", "size"):
        assert s.has_extn(cap), s.esmtp_features
    assert s.esmtp_features["size"] == str(50 * 1024 * 1024)
    assert s.verify("alice" + DOM)[0] == 252
    assert s.noop()[0] == 250
    msg = sample()
    assert s.mail("sender@example.org", ["BODY=8BITMIME", "SIZE=%d"
                                         % len(msg)])[0] == 250
    assert s.rcpt("alice" + DOM)[0] == 250
    code, text = s.data(msg)
    assert code == 250, text
    assert re.match(rb"2\.0\.0 <alice@example\.com> \S+ Saved$", text), text
    assert s.quit()[0] == 221

    files = new_files(b, "alice")
    assert len(files) == 1, files
    assert read(files[0]) == stored("sender@example.org", "alice" + DOM, msg)
    # the name carries the size and the size as IMAP counts it (CRLF),
    # Maildir/Dovecot style
    size = os.path.getsize(files[0])
    vsize = size + read(files[0]).count(b"\n") - read(files[0]).count(b"\r\n")
    assert files[0].endswith(",S=%d,W=%d" % (size, vsize)), files[0]
    assert not os.listdir(os.path.join(b.maildir("alice" + DOM), "tmp"))


def test_three_recipients_unknown_one_and_durable_at_reply(node):
    b = node()
    msg = (b"From: x@example.org\r\nSubject: dots\r\n\r\n"
           b".leading dot\r\n..two dots\r\nlast\r\n")
    r = Raw(b)
    assert r.reply()[0] == 220
    r.send(b"LHLO client\r\n")
    assert r.reply()[0] == 250
    r.send(b"MAIL FROM:<>\r\n")
    assert r.reply()[0] == 250
    for u in ("alice", "nosuchuser", "bob", "carol"):
        r.send(b"RCPT TO:<%s%s>\r\n" % (u.encode(), DOM.encode()))
        code, lines = r.reply()
        if u == "nosuchuser":
            assert code == 550, lines
            assert lines[0] == (b"550 5.1.1 <nosuchuser@example.com> User "
                                b"doesn't exist: nosuchuser@example.com")
        else:
            assert code == 250, lines
    r.send(b"DATA\r\n")
    assert r.reply()[0] == 354
    r.send(stuff(msg) + b".\r\n")
    for u in ("alice", "bob", "carol"):
        code, lines = r.reply()
        assert code == 250, lines
        assert lines[0].startswith(b"250 2.0.0 <%s%s> " % (u.encode(),
                                                          DOM.encode()))
        # at the moment the reply arrives the file is complete in new/
        files = new_files(b, u)
        assert len(files) == 1, (u, files)
        assert read(files[0]) == stored("", u + DOM, msg)
    r.send(b"QUIT\r\n")
    assert r.reply()[0] == 221
    r.close()
    assert not os.path.exists(b.maildir("nosuchuser" + DOM))


def test_pipelined_commands(node):
    b = node()
    msg = sample("02-multipart-alternative.eml")
    r = Raw(b)
    assert r.reply()[0] == 220
    r.send(b"LHLO client\r\nMAIL FROM:<s@example.org>\r\n"
           b"RCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\n"
           b"RCPT TO:<bob@example.com>\r\nDATA\r\n")
    codes = [r.reply()[0] for _ in range(6)]
    assert codes == [250, 250, 250, 550, 250, 354], codes
    # the message, the end, and the next commands in one write
    r.send(stuff(msg) + b".\r\nNOOP\r\nRSET\r\nVRFY alice\r\nQUIT\r\n")
    codes = [r.reply()[0] for _ in range(6)]
    assert codes == [250, 250, 250, 250, 252, 221], codes
    r.close()
    for u in ("alice", "bob"):
        files = new_files(b, u)
        assert len(files) == 1
        assert read(files[0]) == stored("s@example.org", u + DOM, msg)


def test_size_limit_and_session_goes_on(node):
    b = node({"lmtp_max_message_size": "4k"})
    s = lmtp(b)
    assert s.esmtp_features["size"] == "4096"
    code, text = s.mail("s@example.org", ["SIZE=5000"])
    assert code == 552 and text.startswith(b"5.3.4"), (code, text)
    assert s.mail("s@example.org")[0] == 250
    assert s.rcpt("alice" + DOM)[0] == 250
    assert s.rcpt("bob" + DOM)[0] == 250
    big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
    big = big * 100
    code, _ = s.docmd("DATA")
    assert code == 354
    s.send(stuff(big) + b".\r\n")
    for u in ("alice", "bob"):
        code, text = s.getreply()
        assert code == 552, text
        assert text == b"5.3.4 <%s%s> Message too big for system" % (
            u.encode(), DOM.encode())
    assert new_files(b, "alice") == [] and new_files(b, "bob") == []
    # the session goes on with the next transaction
    small = b"Subject: small\r\n\r\nok\r\n"
    assert s.mail("s@example.org")[0] == 250
    assert s.rcpt("alice" + DOM)[0] == 250
    assert s.data(small)[0] == 250
    assert s.quit()[0] == 221
    files = new_files(b, "alice")
    assert len(files) == 1
    assert read(files[0]) == stored("s@example.org", "alice" + DOM, small)


def test_large_message_spooled_to_file(node):
    """Past the 128 KiB in memory the spool is a file: every recipient
    still gets the exact bytes."""
    b = node()
    body = b"".join(b"line %06d %s\r\n" % (i, b"." * (i % 50))
                    for i in range(20000))
    msg = b"Subject: large\r\n\r\n" + body
    assert len(msg) > 512 * 1024
    s = lmtp(b)
    assert s.mail("s@example.org")[0] == 250
    for u in USERS:
        assert s.rcpt(u + DOM)[0] == 250
    code, _ = s.docmd("DATA")
    assert code == 354
    s.send(stuff(msg) + b".\r\n")
    for u in USERS:
        code, text = s.getreply()
        assert code == 250, text
    s.quit()
    for u in USERS:
        files = new_files(b, u)
        assert len(files) == 1
        assert read(files[0]) == stored("s@example.org", u + DOM, msg)
        assert not os.listdir(os.path.join(b.maildir(u + DOM), "tmp"))


def test_errors_and_sequence(node):
    b = node({"max_line_length": "512"})
    r = Raw(b)
    assert r.reply()[0] == 220
    r.send(b"MAIL FROM:<a@example.org>\r\n")
    assert r.reply()[0] == 503
    r.send(b"EHLO x\r\n")
    assert r.reply()[0] == 500
    r.send(b"LHLO x\r\n")
    assert r.reply()[0] == 250
    r.send(b"RCPT TO:<alice@example.com>\r\n")
    assert r.reply()[0] == 503
    r.send(b"MAIL FROM:<a@example.org>\r\nDATA\r\n")
    assert r.reply()[0] == 250
    assert r.reply()[0] == 554
    r.send(b"NOOP " + b"x" * 1000 + b"\r\n")
    code, lines = r.reply()
    assert code == 500 and b"5.5.2" in lines[0], lines
    r.send(b"NOOP\r\n")
    assert r.reply()[0] == 250
    r.close()


def test_idle_timeout(node):
    b = node({"lmtp_timeout": "1s"})
    r = Raw(b)
    assert r.reply()[0] == 220
    t0 = time.monotonic()
    code, lines = r.reply()
    assert code == 421 and b"4.4.2" in lines[0], lines
    assert time.monotonic() - t0 < 5
    r.close()


def test_untrusted_client_refused(node):
    b = node({"lmtp_trusted_networks": "10.0.0.0/8"})
    r = Raw(b)
    code, lines = r.reply()
    assert code == 554 and b"5.7.1" in lines[0], lines
    r.close()


def test_deliver_by_lmtp_read_by_pop3(node):
    b = node()
    msgs = [sample("01-plain-ascii.eml"), sample("03-mixed-attachment.eml")]
    s = lmtp(b)
    for m in msgs[:1]:
        assert s.mail("s@example.org")[0] == 250
        assert s.rcpt("alice" + DOM)[0] == 250
        assert s.data(m)[0] == 250

    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p.user("alice" + DOM)
    p.pass_("pass")
    uidl1 = [l.split()[1] for l in p.uidl()[1]]
    assert len(uidl1) == 1 and re.match(rb"^[0-9a-f]{16}$", uidl1[0]), uidl1
    got = b"\r\n".join(p.retr(1)[1]) + b"\r\n"
    assert got == stored("s@example.org", "alice" + DOM, msgs[0])
    p.quit()

    # a second delivery: the first keeps its UIDL, the new one follows
    assert s.mail("s@example.org")[0] == 250
    assert s.rcpt("alice" + DOM)[0] == 250
    assert s.data(msgs[1])[0] == 250
    s.quit()
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p.user("alice" + DOM)
    p.pass_("pass")
    uidl2 = [l.split()[1] for l in p.uidl()[1]]
    assert len(uidl2) == 2 and uidl2[0] == uidl1[0], (uidl1, uidl2)
    assert int(uidl2[1][:8], 16) > int(uidl2[0][:8], 16)
    got = b"\r\n".join(p.retr(2)[1]) + b"\r\n"
    assert got == stored("s@example.org", "alice" + DOM, msgs[1])
    p.quit()


def test_sigterm_during_data(node):
    """A session inside DATA gets 421 at SIGTERM, nothing is saved, and
    the node exits 0 (checked at teardown)."""
    b = node()
    r = Raw(b)
    assert r.reply()[0] == 220
    r.send(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\n"
           b"DATA\r\n")
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    r.send(b"Subject: half\r\n\r\nnot finished\r\n")
    time.sleep(0.2)
    b.stop()
    code, lines = r.reply()
    assert code == 421 and b"4.3.2" in lines[0], lines
    r.close()
    assert new_files(b, "alice") == []
