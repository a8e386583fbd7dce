"""mailring-backend with real clients: mbsync (Debian package isync), curl
(imap:// and pop3://), Python's smtplib LMTP + imaplib.

Parametrized like the other IMAP files; the "dovecot" cases are a sanity
check of the test itself against the reference.  The client binaries are
listed in deploy/deps.sh (`make deps`): isync, curl.
"""

import os
import shutil
import smtplib
import subprocess
import textwrap

import pytest

from harness.imapwire import (DOVECOT_LIKE_MAILRING, LMTP_USER, ImapWire,
                              quote, start_imap_server)
from harness.mail import imap_connect, imap_logout

MBSYNC = shutil.which("mbsync")
CURL = shutil.which("curl")


def msg(subject, body="hello\r\n"):
    return ("From: a@example.org\r\nTo: user1@example.org\r\n"
            "Subject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n%s"
            % (subject, subject.replace(" ", "-"), body)).encode()


@pytest.fixture(params=["dovecot", "mailring"])
def server(request):
    return start_imap_server(request, request.param,
                             dovecot_conf=DOVECOT_LIKE_MAILRING)


def run(argv, timeout=60, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s" % (
            argv, r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    return r


# ---- mbsync ------------------------------------------------------------


def server_state(server, user="user1"):
    """{mailbox: sorted [(subject header line, sorted flags)]} over every
    selectable mailbox but the SPECIAL-USE ones."""
    c = ImapWire(server.host, server.imap_port, timeout=10, allow_8bit=True)
    c.login(user)
    out = {}
    boxes = []
    for r in c.ok(b'LIST "" "*"'):
        if r.name == "LIST" and "\\noselect" not in {
                str(a).lower() for a in r.values[0]}:
            n = r.values[2]
            boxes.append(n.decode() if isinstance(n, bytes) else str(n))
    for box in boxes:
        c.ok(b"EXAMINE " + quote(box))
        items = []
        for uid, it in c.fetch(
                "1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])").items():
            if uid is None:
                continue
            items.append((it["BODY[HEADER.FIELDS (SUBJECT)]"].strip(),
                          sorted(str(f) for f in it["FLAGS"]
                                 if str(f) != "\\Recent")))
        out[box] = sorted(items)
    c.logout()
    return out


def local_state(root):
    """{relative Maildir dir: sorted [(Subject line, maildir flags)]}."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.basename(dirpath) not in ("cur", "new"):
            continue
        box = os.path.relpath(os.path.dirname(dirpath), root)
        for fn in filenames:
            with open(os.path.join(dirpath, fn), "rb") as f:
                subj = [l for l in f.read().split(b"\n")
                        if l.lower().startswith(b"subject:")][0].strip()
            flags = fn.split(":2,")[1] if ":2," in fn else ""
            out.setdefault(box, []).append((subj, flags))
    return {k: sorted(v) for k, v in out.items()}


def write_maildir(path, messages):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i, (data, flags) in enumerate(messages):
        name = "1700000000.M%dP1.test:2,%s" % (i, flags)
        with open(os.path.join(path, "cur", name), "wb") as f:
            f.write(data)


@pytest.mark.skipif(MBSYNC is None, reason="mbsync not installed "
                    "(Debian package isync; make deps)")
def test_mbsync_two_way_then_idempotent(server, workdir):
    s = server
    c = ImapWire(s.host, s.imap_port, timeout=10)
    c.login("user1")
    sep = [r for r in c.ok(b'LIST "" ""') if r.name == "LIST"][0].values[1]
    sep = sep.decode()
    c.ok(b"CREATE Remote")
    c.ok(b"CREATE " + quote("Remote%sSub" % sep))
    for box, subj in (("INBOX", "r inbox 1"), ("INBOX", "r inbox 2"),
                      ("Remote", "r remote"),
                      ("Remote%sSub" % sep, "r remote sub")):
        c.command(b"APPEND %s (\\Seen)" % quote(box), literal=msg(subj),
                  check="OK")
    c.logout()

    local = os.path.join(workdir, "local")
    write_maildir(os.path.join(local, "INBOX"), [(msg("l inbox"), "S")])
    write_maildir(os.path.join(local, "Local"), [(msg("l local a"), "S"),
                                                 (msg("l local b"), "FS")])
    write_maildir(os.path.join(local, "Local", "Deep"),
                  [(msg("l deep"), "S")])
    cfg = os.path.join(workdir, "mbsyncrc")
    with open(cfg, "w") as f:
        f.write(textwrap.dedent("""\
            IMAPAccount acc
            Host %s
            Port %d
            User user1
            Pass pass
            SSLType None
            AuthMechs LOGIN
            Timeout 20

            IMAPStore remote
            Account acc

            MaildirStore local
            Path %s/
            Inbox %s/INBOX
            SubFolders Verbatim

            Channel ch
            Far :remote:
            Near :local:
            Patterns * !Drafts !Sent !Trash !Junk !Archive
            Create Both
            Expunge Both
            SyncState *
            """ % (s.host, s.imap_port, local, local)))
    r1 = run([MBSYNC, "-c", cfg, "-a"])
    srv1, loc1 = server_state(s), local_state(local)
    # both ways: every folder and message on both sides
    want_boxes = {"INBOX", "Remote", "Remote%sSub" % sep, "Local",
                  "Local%sDeep" % sep}
    assert want_boxes <= set(srv1), (srv1, r1.stderr)
    assert {"INBOX", "Remote", "Remote/Sub", "Local", "Local/Deep"} <= \
        set(loc1), loc1
    subjects = lambda st, b: [x[0] for x in st[b]]   # noqa: E731
    assert subjects(srv1, "INBOX") == [b"Subject: l inbox", b"Subject: r "
                                       b"inbox 1", b"Subject: r inbox 2"]
    assert subjects(loc1, "INBOX") == subjects(srv1, "INBOX")
    assert subjects(srv1, "Local") == [b"Subject: l local a",
                                       b"Subject: l local b"]
    assert subjects(loc1, "Remote/Sub") == [b"Subject: r remote sub"]
    flagged = [x for x in srv1["Local"] if x[0].endswith(b"local b")][0]
    assert "\\Flagged" in flagged[1] and "\\Seen" in flagged[1], srv1

    # a second run changes nothing on either side
    r2 = run([MBSYNC, "-c", cfg, "-a"])
    assert server_state(s) == srv1, r2.stderr
    assert local_state(local) == loc1, r2.stderr

    # a change on the server travels down, a local flag change travels up
    c = ImapWire(s.host, s.imap_port, timeout=10)
    c.login("user1")
    c.ok(b"SELECT Remote")
    c.ok(b"STORE 1 +FLAGS (\\Flagged)")
    c.logout()
    run([MBSYNC, "-c", cfg, "-a"])
    remote = local_state(local)["Remote"]
    assert remote == [(b"Subject: r remote", "FS")], remote


# ---- curl --------------------------------------------------------------


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_imap_list_and_fetch(server):
    s = server
    im = imap_connect(s.host, s.imap_port, user="user1")
    body = msg("curl imap", "line one\r\nline two\r\n")
    typ, data = im.append("INBOX", None, None, body)
    assert typ == "OK", data
    im.create("CurlBox")
    imap_logout(im)
    base = "imap://%s:%d/" % (s.host, s.imap_port)
    r = run([CURL, "-sS", "--max-time", "20", "-u", "user1:pass", base])
    lines = r.stdout.decode().splitlines()
    assert any(l.startswith("* LIST") and l.endswith("INBOX")
               for l in lines), lines
    assert any("CurlBox" in l for l in lines), lines
    r = run([CURL, "-sS", "--max-time", "20", "-u", "user1:pass",
             base + "INBOX;UID=1"])
    assert r.stdout == body, r.stdout
    # a section of it
    r = run([CURL, "-sS", "--max-time", "20", "-u", "user1:pass",
             base + "INBOX;UID=1;SECTION=TEXT"])
    assert r.stdout == b"line one\r\nline two\r\n", r.stdout
    # wrong password: curl fails (67 = login denied)
    r = run([CURL, "-sS", "--max-time", "20", "-u", "user1:wrong",
             base + "INBOX;UID=1"], check=False)
    assert r.returncode == 67, (r.returncode, r.stderr)


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_pop3_list_and_retrieve(server):
    s = server
    im = imap_connect(s.host, s.imap_port, user="user1")
    body1, body2 = msg("pop one"), msg("pop two", "x\r\n.dot line\r\n")
    for b in (body1, body2):
        assert im.append("INBOX", None, None, b)[0] == "OK"
    imap_logout(im)
    base = "pop3://%s:%d/" % (s.host, s.pop3_port)
    r = run([CURL, "-sS", "--max-time", "20", "-u", "user1:pass", base])
    listing = [l.split() for l in r.stdout.decode().splitlines()]
    assert listing == [["1", str(len(body1))], ["2", str(len(body2))]], \
        listing
    r = run([CURL, "-sS", "--max-time", "20", "-u", "user1:pass",
             base + "2"])
    assert r.stdout == body2, r.stdout


# ---- smtplib LMTP ------------------------------------------------------


def test_smtplib_lmtp_delivers_and_imap_sees_it(server):
    s = server
    im = imap_connect(s.host, s.imap_port, user=LMTP_USER)
    im.select("INBOX")
    with smtplib.LMTP(s.host, s.lmtp_port, timeout=10) as lm:
        refused = lm.sendmail("sender@example.org", [LMTP_USER],
                              msg("via lmtp", "delivered\r\n"))
        assert refused == {}
    typ, data = im.noop()
    assert typ == "OK"
    typ, data = im.uid("SEARCH", None, "SUBJECT", '"via lmtp"')
    assert typ == "OK" and len(data[0].split()) == 1, data
    uid = data[0].split()[0].decode()
    typ, data = im.uid("FETCH", uid, "(BODY.PEEK[TEXT] BODY.PEEK[HEADER])")
    assert typ == "OK"
    parts = {d[0].split(b" ")[-2]: d[1] for d in data if isinstance(d, tuple)}
    assert b"delivered\r\n" in parts.values(), data
    header = [v for v in parts.values() if v.startswith(b"Return-Path")]
    assert header and b"Return-Path: <sender@example.org>" in header[0], data
    imap_logout(im)
