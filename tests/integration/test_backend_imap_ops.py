"""mailring-backend operations (issue 5): kick, the shared-storage guard,
TLS (STARTTLS, implicit IMAPS, POP3 STLS), and the IMAP limits
(command line, APPEND size, folders per user, bad commands, sessions per
user and IP).  Each limit answers with a clear protocol error and the
node keeps serving.
"""

import imaplib
import os
import poplib
import re
import socket
import ssl
import subprocess
import time

import pytest

from harness.dovecot import make_self_signed_cert
from harness.procs import call_check


def imap(b, user="user1", password="pass", login=True):
    m = imaplib.IMAP4(b.host, b.imap_port, timeout=10)
    if login:
        m.login(user, password)
    return m


def wait_log(b, pattern, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(pattern, b.log_text())
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError("no log line %r in:\n%s" % (pattern, b.log_text()[-3000:]))


def with_block(b, text):
    """Starts b (made with start=False) with text added to its config."""
    base = b.config_text()
    b.config_text = lambda: base + text
    b.write_config()
    b.start()
    return b


def raw(b, port=None):
    s = socket.create_connection((b.host, port or b.imap_port), timeout=10)
    f = s.makefile("rwb", buffering=0)
    assert f.readline().startswith(b"* OK")
    return s, f


def test_kick_closes_imap_and_pop3_sessions(mailring_backend, workdir):
    sock = os.path.join(workdir, "node.sock")
    b = mailring_backend(imap=True, settings={"admin_socket": sock})
    m1 = imap(b)
    m1.select("INBOX")
    m2 = imap(b, "user2")
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p.user("user1")
    p.pass_("pass")
    r = subprocess.run([b.binary, "-c", b.conf_path, "kick", "user1"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK kicked=2"
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        m1.noop()
        m1.noop()
    with pytest.raises((poplib.error_proto, OSError)):
        p.stat()
        p.stat()
    # other users keep their sessions
    assert m2.noop()[0] == "OK"
    m2.logout()
    wait_log(b, r"admin: kick user1: 2 sessions closed")
    # unknown command and a user without sessions
    r = subprocess.run([b.binary, "-c", b.conf_path, "kick", "nobody"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout.strip() == "OK kicked=0"


def test_shared_storage_guard_names_both_hosts(mailring_backend, workdir):
    root = os.path.join(workdir, "shared-mail")
    os.makedirs(root)
    a = mailring_backend(name="nodeA", imap=True, mail_root=root,
                         settings={"hostname": "mail-a.example"})
    b = mailring_backend(name="nodeB", imap=True, mail_root=root,
                         settings={"hostname": "mail-b.example"})
    ma = imap(a)
    md = a.maildir("user1")
    owners = [f for f in os.listdir(md) if f.startswith("mailring-owner.")]
    assert owners == ["mailring-owner.mail-a.example.%d" % a.proc.pid]
    with open(os.path.join(md, owners[0])) as f:
        assert f.read().startswith("host=mail-a.example pid=%d " % a.proc.pid)
    mb = imap(b)
    m = wait_log(b, r"error: Shared storage guard: user user1 is open on "
                 r"host mail-a\.example \(pid (\d+), since \d+\) and on this "
                 r"host mail-b\.example")
    assert int(m.group(1)) == a.proc.pid
    assert "Shared storage guard" not in a.log_text()
    mb.logout()
    ma.logout()
    # each process removes its own file when its last session ends
    deadline = time.time() + 5
    while time.time() < deadline and any(
            f.startswith("mailring-owner.") for f in os.listdir(md)):
        time.sleep(0.05)
    assert not [f for f in os.listdir(md) if f.startswith("mailring-owner.")]
    # one node alone: no error
    before = b.log_text().count("Shared storage guard")
    m2 = imap(b, "user2")
    m2.logout()
    assert b.log_text().count("Shared storage guard") == before


def test_tls_starttls_imaps_and_stls(mailring_backend, workdir, ports):
    cert, key = make_self_signed_cert(os.path.join(workdir, "ssl"))
    b = mailring_backend(imap=True, settings={"ssl_cert": "<" + cert,
                                              "ssl_key": key},
                         start=False)
    # an implicit TLS listener next to the plain ones
    imaps_port = ports.get()
    text = b.config_text() + ("listener imaps {\n  protocol = imap\n  ssl = yes\n"
                              "  address = 127.0.0.1:%d\n}\n" % imaps_port)
    b.config_text = lambda: text
    b.write_config()
    b.start()
    ctx = ssl.create_default_context(cafile=cert)
    m = imap(b, login=False)
    assert "STARTTLS" in m.capabilities
    m.starttls(ssl_context=ctx)
    assert "STARTTLS" not in m.capabilities
    assert m.login("user1", "pass")[0] == "OK"
    m.select("INBOX")
    m.logout()
    m = imaplib.IMAP4_SSL(b.host, imaps_port, ssl_context=ctx, timeout=10)
    assert "STARTTLS" not in m.capabilities
    assert m.login("user1", "pass")[0] == "OK"
    m.logout()
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    assert "STLS" in p.capa()
    p.stls(context=ctx)
    p.user("user1")
    assert p.pass_("pass").startswith(b"+OK")
    p.quit()
    # bytes pipelined after STARTTLS are dropped, not run inside TLS
    s, f = raw(b)
    f.write(b"a STARTTLS\r\nb LOGIN user1 pass\r\n")
    assert f.readline() == b"a OK Begin TLS negotiation now.\r\n"
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.sendall(b"c CAPABILITY\r\n")
    data = b""
    while not data.endswith(b"\r\n") or b"c OK" not in data:
        chunk = t.recv(4096)
        assert chunk
        data += chunk
    assert b"b OK" not in data and b"b NO" not in data
    t.close()


def test_imap_limits(mailring_backend):
    b = mailring_backend(imap=True, settings={
        "imap_max_line_length": "2k", "imap_max_append_size": "4k",
        "imap_max_mailboxes": 8, "max_bad_commands": 3,
        "mail_max_userip_connections": 3})
    m = imap(b)
    # APPEND over imap_max_append_size: NO [TOOBIG] before the literal
    typ, data = m.append("INBOX", None, None, b"x" * 5000)
    assert typ == "NO" and b"[TOOBIG]" in data[0]
    typ, data = m.append("INBOX", None, None, b"Subject: ok\r\n\r\nfits\r\n")
    assert typ == "OK" and b"[APPENDUID " in data[0]
    # folders per user (5 special-use ones exist already)
    for i in range(3):
        assert m.create("f%d" % i)[0] == "OK"
    typ, data = m.create("toomany")
    assert typ == "NO" and b"[LIMIT]" in data[0]
    m.logout()
    # an over-long command line: BAD, then the connection is closed
    s, f = raw(b)
    f.write(b"a LOGIN " + b"x" * 4000 + b" y\r\n")
    line = f.readline()
    assert line.startswith(b"* BAD") and b"Too long" in line, line
    assert f.readline() == b""
    s.close()
    # bad commands: the connection ends after max_bad_commands
    s, f = raw(b)
    for i in range(3):
        f.write(b"t%d FROB\r\n" % i)
        assert b"BAD" in f.readline()
    assert f.readline().startswith(b"* BYE")
    s.close()
    # sessions per user and IP
    held = [imap(b) for _ in range(3)]
    m4 = imap(b, login=False)
    with pytest.raises(imaplib.IMAP4.error) as e:
        m4.login("user1", "pass")
    assert "mail_max_userip_connections" in str(e.value)
    for h in held:
        h.logout()
    m5 = imap(b)  # released again
    assert m5.select("INBOX")[0] == "OK"
    m5.logout()
    # the node still serves
    assert wait_log(b, r"Login refused: too many sessions")


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def session_pid(b, m):
    """The node process serving imaplib session m (by its socket)."""
    port = m.sock.getsockname()[1]
    out = subprocess.run(["ss", "-Htnp", "sport = :%d" % b.imap_port],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "127.0.0.1:%d " % port in line + " ":
            found = re.search(r"pid=(\d+)", line)
            if found:
                return int(found.group(1))
    return None


def test_supervisor_restarts_a_dead_node_process(mailring_backend, workdir):
    sock = os.path.join(workdir, "node.sock")
    b = mailring_backend(imap=True, settings={
        "processes": 2, "workers": 1, "admin_socket": sock})
    kids = children(b.proc.pid)
    assert len(kids) == 2, kids
    # enough sessions that both processes hold some (SO_REUSEPORT hashing)
    sessions = [imap(b, "user%d" % (i % 5 + 1)) for i in range(24)]
    owners = {}
    for m in sessions:
        owners.setdefault(session_pid(b, m), []).append(m)
    assert set(owners) == set(kids), (owners.keys(), kids)
    victim = kids[0]
    os.kill(victim, 9)
    wait_log(b, r"error: supervisor: node process \d \(pid %d\) killed by "
             r"signal 9; its sessions are gone, restarting it" % victim)
    # the other process's sessions did not notice
    for m in owners[kids[1]]:
        assert m.noop()[0] == "OK"
    wait_log(b, r"supervisor: node process \d started", timeout=5)
    deadline = time.time() + 5
    while len(children(b.proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    new = children(b.proc.pid)
    assert len(new) == 2 and victim not in new and kids[1] in new
    for i in range(6):
        m = imap(b, "user9")
        assert m.select("INBOX")[0] == "OK"
        m.logout()
    # the supervisor's admin socket asks every process
    r = subprocess.run([b.binary, "-c", b.conf_path, "kick", "user1"],
                       capture_output=True, text=True, timeout=10)
    # user1 holds sessions 0, 5, 10, ...: those of the surviving process
    # are still open (the killed process's went with it)
    n = sum(1 for m in owners[kids[1]] if m in sessions[0::5])
    assert r.stdout.strip() == "OK kicked=%d" % n, (r.stdout, n)


def test_master_user_and_proxy_client_address(mailring_backend, workdir):
    master = os.path.join(workdir, "masters")
    with open(master, "w") as f:
        f.write("admin:{PLAIN}secret::::::\n")
    b = with_block(mailring_backend(imap=True, start=False, settings={
        "login_trusted_networks": "127.0.0.0/8"}),
        "master_passdb {\n  args = %s\n}\n" % master)
    # LOGIN user*master
    m = imap(b, "user3*admin", "secret")
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    wait_log(b, r"imap: Master user admin logs in as user3 user=<user3>")
    # SASL PLAIN with authzid
    m = imap(b, login=False)
    typ, _ = m.authenticate("PLAIN", lambda _: b"user4\0admin\0secret")
    assert typ == "OK"
    m.logout()
    wait_log(b, r"Master user admin logs in as user4")
    # a wrong master password, and a master login as a user who does not
    # exist, both fail
    with pytest.raises(imaplib.IMAP4.error):
        imap(b, "user3*admin", "wrong")
    with pytest.raises(imaplib.IMAP4.error):
        imap(b, "nosuch*admin", "secret")
    # ID from a trusted proxy: logs show the real client and session
    m = imap(b, login=False)
    m._simple_command("ID", '("x-originating-ip" "192.0.2.7" '
                      '"x-originating-port" "51234" "x-session-id" '
                      '"proxysess123")')
    m.login("user5", "pass")
    m.logout()
    wait_log(b, r"imap: Logged in user=<user5> rip=192\.0\.2\.7 "
             r"session=<proxysess123>")
    # POP3: XCLIENT announced to the trusted proxy
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    assert b"[XCLIENT]" in p.getwelcome()
    assert p._shortcmd("XCLIENT ADDR=198.51.100.9 PORT=4000 "
                       "SESSION=popsess77 TTL=5").startswith(b"+OK")
    p.user("user6*admin")
    assert p.pass_("secret").startswith(b"+OK")
    p.quit()
    wait_log(b, r"pop3: Master user admin logs in as user6 user=<user6> "
             r"rip=198\.51\.100\.9 session=<popsess77>")


def test_untrusted_clients_get_no_master_or_id(mailring_backend, workdir):
    master = os.path.join(workdir, "masters")
    with open(master, "w") as f:
        f.write("admin:{PLAIN}secret::::::\n")
    b = with_block(mailring_backend(imap=True, start=False, settings={
        "login_trusted_networks": "192.0.2.0/24"}),
        "master_passdb {\n  args = %s\n}\n" % master)
    with pytest.raises(imaplib.IMAP4.error):
        imap(b, "user3*admin", "secret")
    m = imap(b, login=False)
    m._simple_command("ID", '("x-originating-ip" "192.0.2.7")')
    m.login("user5", "pass")
    m.logout()
    wait_log(b, r"imap: Logged in user=<user5> rip=127\.0\.0\.1 ")
    p = poplib.POP3(b.host, b.pop3_port, timeout=10)
    assert b"[XCLIENT]" not in p.getwelcome()
    with pytest.raises(poplib.error_proto):
        p._shortcmd("XCLIENT ADDR=198.51.100.9")
    p.quit()


def test_cache_serves_structure_and_survives_corruption(mailring_backend,
                                                        corpus):
    b = mailring_backend(imap=True)
    m = imap(b)
    names = sorted(corpus)[:4]
    for n in names:
        assert m.append("INBOX", None, None, corpus[n])[0] == "OK"
    m.select("INBOX")
    typ, first = m.fetch("1:4", "(ENVELOPE BODYSTRUCTURE BODY)")
    assert typ == "OK"
    md = b.maildir("user1")
    cache = os.path.join(md, "mailring-cache")
    assert os.path.getsize(cache) > 32
    # the parsed data now comes from the cache: even a message file
    # emptied behind the server's back still answers as parsed before
    cur = os.path.join(md, "cur")
    victim = sorted(os.listdir(cur))[0]
    with open(os.path.join(cur, victim), "rb") as f:
        original = f.read()
    with open(os.path.join(cur, victim), "r+b") as f:
        f.truncate(0)
    typ, second = m.fetch("1:4", "(ENVELOPE BODYSTRUCTURE BODY)")
    assert second == first
    m.logout()
    # a corrupted cache is detected and rebuilt; answers stay right
    with open(os.path.join(cur, victim), "wb") as f:
        f.write(original)
    with open(cache, "r+b") as f:
        f.seek(40)
        f.write(os.urandom(200))
    m = imap(b)
    m.select("INBOX")
    typ, third = m.fetch("1:4", "(ENVELOPE BODYSTRUCTURE BODY)")
    assert third == first
    # SEARCH SENT* uses the cached Date
    typ, d1 = m.search(None, "SENTSINCE 1-Jan-2000")
    typ, d2 = m.search(None, "SENTSINCE 1-Jan-2000")
    assert d1 == d2 and d1[0].split()
    m.logout()


def test_slow_disk_of_one_user_does_not_stall_others(mailring_backend):
    """One worker thread; user1's disk work takes 3 s (test hook
    MAILRING_TEST_SLOW_USER): user2's commands on the same worker are
    answered meanwhile, because disk work runs on the I/O pool."""
    b = mailring_backend(imap=True, lmtp=True, start=False, settings={
        "workers": 1, "auth_username_format": "%Ln"})
    env = dict(os.environ, MAILRING_TEST_SLOW_USER="user1:3000")
    b.proc = b.procs.start(
        b.name, [b.binary, "-c", b.conf_path], env=env, dir=b.dir,
        ready=[call_check(lambda: "mailring-backend started" in b.log_text(),
                          "logging 'mailring-backend started'")])
    slow = imap(b, "user1")
    fast = imap(b, "user2")
    fast.select("INBOX")
    s, f = raw(b)
    f.write(b"a LOGIN user1 pass\r\n")
    assert f.readline().startswith(b"a OK")
    t0 = time.time()
    f.write(b"b SELECT INBOX\r\n")  # 3 s on user1's disk
    time.sleep(0.2)
    for i in range(5):
        t = time.time()
        assert fast.noop()[0] == "OK"
        assert time.time() - t < 1.0
    assert time.time() - t0 < 2.5
    while True:
        line = f.readline()
        assert line, "connection closed"
        if line.startswith(b"b "):
            break
    assert line.startswith(b"b OK") and time.time() - t0 >= 2.9
    s.close()
    slow.logout()
    fast.logout()
    # POP3 the same: user1's STAT waits on its disk, user2's does not
    p1 = socket.create_connection((b.host, b.pop3_port), timeout=10)
    f1 = p1.makefile("rwb", buffering=0)
    assert f1.readline().startswith(b"+OK")
    f1.write(b"USER user1\r\n")
    assert f1.readline().startswith(b"+OK")
    f1.write(b"PASS pass\r\n")  # the login's disk work: 3 s
    time.sleep(0.2)
    t = time.time()
    p2 = poplib.POP3(b.host, b.pop3_port, timeout=10)
    p2.user("user2")
    p2.pass_("pass")
    assert p2.stat()[0] >= 0
    p2.quit()
    assert time.time() - t < 1.5
    assert f1.readline().startswith(b"+OK Logged in")
    p1.close()
    # LMTP: a delivery to user1 waits on its disk (3 s); user2's session
    # on the same worker is answered meanwhile
    import smtplib
    l1 = socket.create_connection((b.host, b.lmtp_port), timeout=10)
    g = l1.makefile("rwb", buffering=0)
    assert g.readline().startswith(b"220")
    g.write(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<user1@example.com>\r\n"
            b"DATA\r\n")
    lines = [g.readline() for _ in range(5 + 1 + 1 + 1)]
    assert lines[-1].startswith(b"354"), lines
    g.write(b"Subject: slow\r\n\r\nx\r\n.\r\n")
    time.sleep(0.2)
    t = time.time()
    l2 = smtplib.LMTP(b.host, b.lmtp_port)
    l2.sendmail("a@b", ["user2@example.com"], b"Subject: fast\r\n\r\nx\r\n")
    l2.quit()
    assert time.time() - t < 1.5
    assert g.readline().startswith(b"250")
    l1.close()


def test_lmtp_detail_delivery(mailring_backend):
    import smtplib
    b = mailring_backend(imap=True, lmtp=True, settings={
        "auth_username_format": "%Ln",
        "lmtp_save_to_detail_mailbox": "yes"})
    m = imap(b)
    assert m.create("Work")[0] == "OK"
    l = smtplib.LMTP(b.host, b.lmtp_port)
    for rcpt, subject in (("user1+Work@example.com", "to work"),
                          ("user1+nosuch@example.com", "to inbox"),
                          ("user1@example.com", "plain")):
        l.sendmail("a@example.org", [rcpt],
                   b"Subject: " + subject.encode() + b"\r\n\r\nx\r\n")
    l.quit()
    m.select("Work")
    typ, data = m.search(None, "SUBJECT", '"to work"')
    assert data[0] == b"1"
    assert m.select("Work")[1] == [b"1"]
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (Subject Delivered-To)])")
    text = b"".join(x[1] for x in data if isinstance(x, tuple))
    assert b"to inbox" in text and b"plain" in text and b"to work" not in text
    # Delivered-To keeps the address as sent
    assert b"Delivered-To: user1+nosuch@example.com" in text
    m.logout()
