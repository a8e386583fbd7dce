"""mailring-backend POP3 (issue 5): RFC 1939/2449/5034 over Maildir.

Messages are delivered like an MDA: written to tmp/ and renamed into new/.
POP3 sizes count the message as sent: bare LFs become CRLF.
"""

import base64
import itertools
import os
import poplib
import re
import socket
import subprocess
import time

import pytest

from harness.mail import pop3_retr

_seq = itertools.count(1)


def crlf(data):
    """data with every bare LF turned into CRLF (what the server sends)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def deliver(maildir, data):
    """Write a message into maildir/new like an MDA; returns the name."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    name = "%d.M%dP%d.testhost" % (time.time(), next(_seq), os.getpid())
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(maildir, "new", name))
    return name


def files(maildir):
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if os.path.isdir(d):
            out.extend(os.listdir(d))
    return sorted(out)


def login(b, user="user1", password="pass"):
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p.user(user)
    p.pass_(password)
    return p


def uidls(p):
    return [l.split()[1] for l in p.uidl()[1]]


@pytest.fixture
def node(mailring_backend):
    return mailring_backend()


def test_greeting_capa_and_logins(node):
    p = poplib.POP3(node.host, node.pop3_port, timeout=10)
    assert p.getwelcome() == b"+OK mailring-backend ready."
    capa = p.capa()
    for c in ("TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING",
              "AUTH-RESP-CODE"):
        assert c in capa
    assert capa["SASL"] == ["PLAIN"]
    p.user("user1")
    assert p.pass_("pass").startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()

    # AUTH PLAIN with an initial response
    s = socket.create_connection((node.host, node.pop3_port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    ir = base64.b64encode(b"\0user2\0pass")
    s.sendall(b"AUTH PLAIN " + ir + b"\r\n")
    assert f.readline() == b"+OK Logged in.\r\n"
    s.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"+OK")
    s.close()

    # AUTH PLAIN with a continuation; "*" cancels
    s = socket.create_connection((node.host, node.pop3_port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"AUTH PLAIN\r\n")
    assert f.readline() == b"+ \r\n"
    s.sendall(b"*\r\n")
    assert f.readline().startswith(b"-ERR")
    s.sendall(b"AUTH PLAIN\r\n")
    assert f.readline() == b"+ \r\n"
    s.sendall(base64.b64encode(b"\0user3\0pass") + b"\r\n")
    assert f.readline() == b"+OK Logged in.\r\n"
    s.sendall(b"STAT\r\n")
    assert f.readline() == b"+OK 0 0\r\n"
    s.close()


def test_wrong_password(node):
    p = poplib.POP3(node.host, node.pop3_port, timeout=10)
    p.user("user1")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert e.value.args[0] == b"-ERR [AUTH] Authentication failed."
    with pytest.raises(poplib.error_proto):
        p.stat()  # still not logged in
    p.user("nosuchuser")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("pass")
    assert e.value.args[0] == b"-ERR [AUTH] Authentication failed."
    p.user("user1")
    assert p.pass_("pass").startswith(b"+OK")
    p.quit()


def test_failure_delay_is_the_auth_librarys(mailring_backend):
    b = mailring_backend(settings={"auth_failure_delay": "1s"})
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p.user("user1")
    t0 = time.monotonic()
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong")
    assert time.monotonic() - t0 >= 0.9
    p.quit()


def test_sizes_and_content_match_corpus(node, corpus):
    md = node.maildir("user1")
    names = sorted(corpus)
    for n in names:
        deliver(md, corpus[n])
    p = login(node)
    count, size = p.stat()
    assert count == len(names)
    want = [len(crlf(corpus[n])) for n in names]
    assert size == sum(want)
    # delivery order = UID order = message numbers
    listed = [int(l.split()[1]) for l in p.list()[1]]
    assert listed == want
    for i, n in enumerate(names, 1):
        assert p.list(i) == b"+OK %d %d" % (i, want[i - 1])
        resp = p._shortcmd("RETR %d" % i)  # noqa: SLF001 - check the text
        assert resp == b"+OK %d octets" % want[i - 1]
        lines = []
        while True:
            line = p._getline()[0]  # noqa: SLF001
            if line == b".":
                break
            if line.startswith(b".."):
                line = line[1:]
            lines.append(line)
        got = b"".join(l + b"\r\n" for l in lines)
        assert got == crlf(corpus[n]), n
    # new/ was moved to cur/ (as Dovecot does)
    assert os.listdir(os.path.join(md, "new")) == []
    p.quit()
    # RETR leaves flags alone (no \Seen): the names keep an empty info
    assert all(f.endswith(":2,") for f in files(md))


def test_dot_stuffing_and_bare_lf(node):
    md = node.maildir("user1")
    msg = b"Subject: dots\n\n.starts with a dot\n..two\n.\nend\n"
    deliver(md, msg)
    p = login(node)
    assert p.list(1) == b"+OK 1 %d" % len(crlf(msg))
    assert pop3_retr(p, 1) == crlf(msg)
    p.quit()


def test_top(node, corpus):
    md = node.maildir("user1")
    msg = b"Subject: top\r\nFrom: a@b\r\n\r\nl1\r\nl2\r\n.l3\r\nl4\r\n"
    deliver(md, msg)
    deliver(md, corpus["10-headers-only.eml"])
    p = login(node)
    _r, lines, _o = p.top(1, 0)
    assert lines == [b"Subject: top", b"From: a@b", b""]
    _r, lines, _o = p.top(1, 3)
    assert lines == [b"Subject: top", b"From: a@b", b"", b"l1", b"l2", b".l3"]
    _r, lines, _o = p.top(1, 100)
    assert lines[-1] == b"l4"
    _r, lines, _o = p.top(2, 5)
    assert b"".join(l + b"\r\n" for l in lines) == \
        crlf(corpus["10-headers-only.eml"])
    with pytest.raises(poplib.error_proto):
        p.top(3, 1)
    p.quit()


def test_uidl_stable_and_format(node, corpus):
    md = node.maildir("user1")
    deliver(md, corpus["01-plain-ascii.eml"])
    deliver(md, corpus["02-multipart-alternative.eml"])
    p = login(node)
    first = uidls(p)
    assert len(first) == 2 and len(set(first)) == 2
    for u in first:
        assert re.fullmatch(rb"[0-9a-f]{16}", u)
    assert first[0][:8] == b"00000001" and first[1][:8] == b"00000002"
    assert first[0][8:] == first[1][8:]  # one UIDVALIDITY
    assert p.uidl(2) == b"+OK 2 " + first[1]
    p.quit()

    p = login(node)
    assert uidls(p) == first
    p.quit()

    deliver(md, corpus["03-mixed-attachment.eml"])
    p = login(node)
    now = uidls(p)
    assert now[:2] == first and len(now) == 3
    assert now[2][:8] == b"00000003"
    # delete the first: the others keep their UIDLs
    p.dele(1)
    p.quit()
    p = login(node)
    assert uidls(p) == now[1:]
    p.quit()


def test_dele_quit_rset_and_drop(node, corpus):
    md = node.maildir("user1")
    for n in ("01-plain-ascii.eml", "02-multipart-alternative.eml",
              "03-mixed-attachment.eml"):
        deliver(md, corpus[n])

    # DELE + RSET keeps
    p = login(node)
    assert p.dele(1) == b"+OK Marked to be deleted."
    with pytest.raises(poplib.error_proto) as e:
        p.retr(1)
    assert e.value.args[0] == b"-ERR Message is deleted."
    assert p.stat()[0] == 2
    p.rset()
    assert p.stat()[0] == 3
    p.quit()
    assert len(files(md)) == 3

    # DELE then a dropped connection (no QUIT) keeps
    p = login(node)
    p.dele(2)
    p.sock.close()
    time.sleep(0.3)
    assert len(files(md)) == 3

    # DELE + QUIT removes the file
    p = login(node)
    before = files(md)
    target = uidls(p)[1]
    p.dele(2)
    assert p.quit() == b"+OK Logging out, messages deleted."
    after = files(md)
    assert len(after) == 2 and set(after) < set(before)
    p = login(node)
    assert target not in uidls(p)
    assert p.stat()[1] == len(crlf(corpus["01-plain-ascii.eml"])) + \
        len(crlf(corpus["03-mixed-attachment.eml"]))
    p.quit()


def test_concurrent_sessions_see_same_uidls(node, corpus):
    md = node.maildir("user1")
    for n in sorted(corpus)[:5]:
        deliver(md, corpus[n])
    a = login(node)
    b = login(node)
    assert uidls(a) == uidls(b)
    assert a.stat() == b.stat()
    a.quit()
    b.quit()


def test_errors_and_limits(mailring_backend):
    b = mailring_backend(settings={"max_bad_commands": 3,
                                   "max_line_length": 256})
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    with pytest.raises(poplib.error_proto) as e:
        p.stat()
    assert e.value.args[0] == b"-ERR Unknown command."
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("x")
    assert e.value.args[0] == b"-ERR No username given."
    p.close()

    p = login(b)
    for arg, text in (("0", b"-ERR Invalid message number: 0"),
                      ("x", b"-ERR Invalid message number: x"),
                      ("7", b"-ERR There's no message 7.")):
        with pytest.raises(poplib.error_proto) as e:
            p.list(arg)
        assert e.value.args[0] == text
    with pytest.raises(poplib.error_proto) as e:
        p._shortcmd("XYZZY")  # noqa: SLF001
    assert e.value.args[0] == b"-ERR Unknown command: XYZZY"
    assert p.noop() == b"+OK"
    p.close()

    # a too long line is an error; the bad-command limit closes
    s = socket.create_connection((b.host, b.pop3_port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER " + b"a" * 400 + b"\r\n")
    assert f.readline() == b"-ERR Input line too long.\r\n"
    s.sendall(b"FOO\r\nBAR\r\n")
    assert f.readline() == b"-ERR Unknown command.\r\n"
    assert f.readline() == b"-ERR Unknown command.\r\n"
    assert f.readline() == b"-ERR Too many bad commands.\r\n"
    assert f.readline() == b""
    s.close()


def test_pipelining(node, corpus):
    md = node.maildir("user1")
    deliver(md, corpus["01-plain-ascii.eml"])
    s = socket.create_connection((node.host, node.pop3_port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER user1\r\nPASS pass\r\nSTAT\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
    assert f.readline() == b"+OK\r\n"
    assert f.readline() == b"+OK Logged in.\r\n"
    size = len(crlf(corpus["01-plain-ascii.eml"]))
    assert f.readline() == b"+OK 1 %d\r\n" % size
    assert f.readline() == b"+OK %d octets\r\n" % size
    body = b""
    while True:
        line = f.readline()
        if line == b".\r\n":
            break
        body += line
    assert body == crlf(corpus["01-plain-ascii.eml"])
    assert f.readline() == b"+OK\r\n"
    assert f.readline() == b"+OK Logging out.\r\n"
    s.close()


def test_large_message_slow_reader(node, corpus):
    """A 1 MB RETR read slowly arrives whole (streamed, back-pressure)."""
    md = node.maildir("user1")
    msg = corpus["13-large-1mb.eml"]
    deliver(md, msg)
    s = socket.create_connection((node.host, node.pop3_port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER user1\r\nPASS pass\r\nRETR 1\r\n")
    assert f.readline() == b"+OK\r\n"
    assert f.readline() == b"+OK Logged in.\r\n"
    assert f.readline() == b"+OK %d octets\r\n" % len(crlf(msg))
    time.sleep(0.5)  # the server is blocked on a full socket meanwhile
    data = b""
    while not data.endswith(b"\r\n.\r\n"):
        chunk = f.read1(65536)
        assert chunk
        data += chunk
    assert data[:-3] == crlf(msg)
    s.close()


def test_userip_connection_limit(mailring_backend):
    b = mailring_backend(settings={"mail_max_userip_connections": 2})
    a1, a2 = login(b), login(b)
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p.user("user1")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("pass")
    assert e.value.args[0].startswith(b"-ERR [IN-USE]")
    a1.quit()
    time.sleep(0.2)
    p.user("user1")
    assert p.pass_("pass").startswith(b"+OK")
    for c in (a2, p):
        c.quit()


def test_config_checks(mailring_backend, mailring_bin, workdir):
    binary = mailring_bin("mailring-backend")
    b = mailring_backend(start=False)
    base = b.config_text()

    def check(text):
        path = os.path.join(workdir, "t.conf")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([binary, "-t", "-c", path], capture_output=True,
                              text=True, timeout=10)

    assert check(base).returncode == 0
    r = check(base + "listener imaps {\n  protocol = imap\n  ssl = yes\n"
              "  address = 127.0.0.1:1\n}\n")
    assert r.returncode != 0 and "needs ssl_cert" in r.stderr
    r = check(base + "ssl_cert = /x.pem\n")
    assert r.returncode != 0 and "ssl_cert and ssl_key go together" in r.stderr
    r = check(base.replace("/%u/Maildir", "/%u/../x"))
    assert r.returncode != 0 and "mail_location" in r.stderr
    r = check(base.replace("/%u/Maildir", "/%q"))
    assert r.returncode != 0 and "unknown %-code" in r.stderr


def test_user_domain_template(mailring_backend, corpus):
    b = mailring_backend(passwd_lines=["alice@example.com:{PLAIN}pass::::::"])
    b.settings["mail_location"] = b.mail_root + "/%d/%n"
    b.write_config()
    b.proc.signal(__import__("signal").SIGHUP)
    deadline = time.monotonic() + 5
    while "configuration reloaded" not in b.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    deliver(os.path.join(b.mail_root, "example.com", "alice"),
            corpus["01-plain-ascii.eml"])
    p = login(b, "alice@example.com")
    assert p.stat()[0] == 1
    p.quit()
    # a user without a domain gives "/root//user": refused, not created
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p.user("user1")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("pass")
    assert e.value.args[0].startswith(b"-ERR [SYS/TEMP]")
    p.quit()


def test_resync_and_index_dump(node, corpus):
    """POP3 logins build the index (mailbox layer); `mailring-backend resync
    USER` rebuilds it from the Maildir keeping the UIDs POP3 handed out,
    `index dump` shows them, and a dump of a mailbox without an index says
    so (exit 1)."""
    import subprocess
    md = node.maildir("user3")
    for name in sorted(corpus)[:3]:
        deliver(md, corpus[name])
    p = login(node, "user3")
    before = uidls(p)
    p.quit()

    def run(*args):
        return subprocess.run([node.binary, "-c", node.conf_path] + list(args),
                              capture_output=True, text=True, timeout=30)

    # POP3 goes through the mailbox layer: the index exists already
    r = run("index", "dump", "user3", "INBOX")
    assert r.returncode == 0 and "messages=3" in r.stdout, r.stderr
    for f in ("mailring-index", "mailring-index.log"):
        if os.path.exists(os.path.join(md, f)):
            os.unlink(os.path.join(md, f))
    r = run("index", "dump", "user3", "INBOX")
    assert r.returncode == 1 and "no index" in r.stderr, (r.stdout, r.stderr)
    r = run("resync", "user3")
    assert r.returncode == 0 and "resynced" in r.stdout, r.stderr
    r = run("index", "dump", "user3", "INBOX")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("uidvalidity=") and "messages=3" in lines[0]
    uids = [int(l.split()[1]) for l in lines[1:]]
    validity = int(lines[0].split()[0].split("=")[1])
    assert ["%08x%08x" % (u, validity) for u in uids] == \
        [u.decode() for u in before]
    assert run("resync").returncode == 64
    assert run("index", "dump", "user3").returncode == 64
