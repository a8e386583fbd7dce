"""mailring-backend under a wall clock that steps backwards (issue 5).

The node runs under libfaketime (Debian packages `faketime` +
`libfaketime`: LD_PRELOAD of libfaketimeMT.so.1) with
FAKETIME_TIMESTAMP_FILE + FAKETIME_NO_CACHE=1, so rewriting the file moves
its CLOCK_REALTIME at once; CLOCK_MONOTONIC is left alone
(FAKETIME_DONT_FAKE_MONOTONIC=1), as with a real clock step. While
messages arrive over LMTP and IMAP APPEND the clock jumps back by an hour,
then by a day, then stands still, then returns to real time:

  * no base name twice in cur/ + new/ (Maildir names carry the time; pid +
    counter + random keep them unique: backend/maildir.h);
  * UIDs keep increasing in delivery order, every message is present once,
    byte-identical;
  * the node logs each step back ("maildir: clock moved backwards by N
    seconds ..."), rate-limited to one line per 10 s.
"""

import imaplib
import os
import re
import smtplib
import threading
import time

import pytest

from harness.backend import imap_supported
from harness.procs import call_check, tcp_greeting

USER = "clock@example.com"
SENDER = "s@example.org"
LIBS = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1"]
WARN_RE = re.compile(r"maildir: clock moved backwards by (\d+) seconds; "
                     r"unique names stay unique \(pid\+counter\+random\)")
WARN_INTERVAL = 10  # CLOCK_WARN_INTERVAL in backend/maildir.c
APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


def faketime_lib():
    for p in LIBS:
        if os.path.exists(p):
            return p
    return None


def message(tag):
    return ("From: a@example.org\r\nTo: %s\r\nSubject: %s\r\n"
            "Message-ID: <clock-%s@test>\r\n\r\nbody %s\r\n"
            % (USER, tag, tag, tag)).encode() + os.urandom(8).hex().encode() \
        + b"\r\n"


def lmtp_stored(msg):
    return (b"Return-Path: <%s>\r\nDelivered-To: %s\r\n"
            % (SENDER.encode(), USER.encode())) + msg


@pytest.fixture
def node(mailring_backend, mailring_bin):
    ok, why = imap_supported(mailring_bin("mailring-backend"))
    if not ok:
        pytest.skip("IMAP not built: %s" % why)
    lib = faketime_lib()
    if lib is None:
        pytest.skip("libfaketime not installed (apt-get install faketime "
                    "libfaketime)")
    b = mailring_backend(imap=True, lmtp=True, users=0, start=False,
                         passwd_lines=["%s:{PLAIN}pass::::::" % USER])
    b.clock_file = os.path.join(b.dir, "faketime")
    set_clock(b, "+0")
    env = dict(os.environ)
    if os.environ.get("MAILRING_SANITIZED"):
        # libfaketime is preloaded before the ASan runtime: allowed
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                               ":verify_asan_link_order=0").lstrip(":")
    env.update({
        "LD_PRELOAD": lib,
        "FAKETIME_TIMESTAMP_FILE": b.clock_file,
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    })
    # MailringBackend.start() without env: the same checks, with env
    checks = [call_check(lambda: "mailring-backend started" in b.log_text(),
                         "logging 'mailring-backend started'"),
              tcp_greeting(b.host, b.pop3_port, expect=b"+OK"),
              tcp_greeting(b.host, b.imap_port, expect=b"* OK")]
    b.proc = b.procs.start(b.name, [b.binary, "-c", b.conf_path],
                           ready=checks, timeout=b.timeout, env=env,
                           dir=b.dir)
    return b


def set_clock(b, spec):
    with open(b.clock_file + ".tmp", "w") as f:
        f.write(spec + "\n")
    os.replace(b.clock_file + ".tmp", b.clock_file)


def imap(b):
    c = imaplib.IMAP4(b.host, b.imap_port, timeout=30)
    c.login(USER, "pass")
    return c


def warnings(b):
    return [int(m.group(1)) for m in WARN_RE.finditer(b.log_text())]


class Deliverer:
    """Delivers one message at a time, alternating LMTP and APPEND, and
    learns each one's UID right after its acknowledgement through a
    session that keeps INBOX selected."""

    def __init__(self, b):
        self.b = b
        self.lmtp = smtplib.LMTP(b.host, b.lmtp_port, timeout=30)
        self.lmtp.ehlo()
        self.app = imap(b)
        self.obs = imap(b)
        assert self.obs.select("INBOX")[0] == "OK"
        self.uidvalidity = int(self.obs.untagged_responses["UIDVALIDITY"][-1])
        self.n = 0
        self.order = []   # (tag, uid) in delivery order
        self.stored = {}  # tag -> bytes as stored

    def one(self, label):
        self.n += 1
        tag = "%s-%d" % (label, self.n)
        msg = message(tag)
        if self.n % 2:
            assert self.lmtp.mail(SENDER)[0] == 250
            assert self.lmtp.rcpt(USER)[0] == 250
            code, text = self.lmtp.data(msg)
            assert code == 250, (tag, text)
            self.stored[tag] = lmtp_stored(msg)
        else:
            typ, data = self.app.append("INBOX", None, None, msg)
            assert typ == "OK", (tag, data)
            self.stored[tag] = msg
        assert self.obs.noop()[0] == "OK"  # let the session see it
        typ, data = self.obs.uid("SEARCH", None, "HEADER", "Message-ID",
                                 "<clock-%s@test>" % tag)
        assert typ == "OK", data
        uids = [int(x) for x in data[0].split()]
        assert len(uids) == 1, (tag, uids)
        if self.order:
            assert uids[0] > self.order[-1][1], (
                "UID went down: %s got %d after %s=%d"
                % (tag, uids[0], self.order[-1][0], self.order[-1][1]))
        self.order.append((tag, uids[0]))

    def close(self):
        self.lmtp.quit()
        for c in (self.app, self.obs):
            c.logout()


def test_clock_steps_back_during_deliveries(node):
    b = node
    d = Deliverer(b)
    for _ in range(6):
        d.one("real")
    assert warnings(b) == []

    # an hour back, with a concurrent LMTP stream in the other worker
    stop = threading.Event()
    side = {"n": 0, "err": None, "stored": {}}

    def stream():
        try:
            s = smtplib.LMTP(b.host, b.lmtp_port, timeout=30)
            s.ehlo()
            while not stop.is_set():
                side["n"] += 1
                tag = "side-%d" % side["n"]
                msg = message(tag)
                assert s.mail(SENDER)[0] == 250
                assert s.rcpt(USER)[0] == 250
                code, text = s.data(msg)
                assert code == 250, text
                side["stored"][tag] = lmtp_stored(msg)
                time.sleep(0.02)  # keep the mailbox small (test time)
            s.quit()
        except Exception as e:  # reported below
            side["err"] = repr(e)

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    time.sleep(0.3)
    set_clock(b, "-3600")
    t_hour = time.monotonic()
    for _ in range(6):
        d.one("hour")
    deadline = time.monotonic() + 5
    while not warnings(b) and time.monotonic() < deadline:
        time.sleep(0.05)
    w = warnings(b)
    assert len(w) == 1 and 3595 <= w[0] <= 3601, w
    # more deliveries at the new time: no new warning (nothing stepped)
    for _ in range(4):
        d.one("hour2")
    assert len(warnings(b)) == 1, warnings(b)

    # a day back (from -1 h to -1 d: 23 h more) once the rate limit allows
    time.sleep(max(0.0, WARN_INTERVAL + 0.5 - (time.monotonic() - t_hour)))
    set_clock(b, "-86400")
    for _ in range(6):
        d.one("day")
    deadline = time.monotonic() + 5
    while len(warnings(b)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    w = warnings(b)
    assert len(w) == 2 and 82795 <= w[1] <= 82801, w

    # the clock stands still (a frozen time, a day ago): every name gets
    # the same seconds and microseconds
    set_clock(b, time.strftime("%Y-%m-%d %H:%M:%S",
                               time.localtime(time.time() - 86400)))
    for _ in range(6):
        d.one("frozen")
    # back to real time: a step forward, not logged
    set_clock(b, "+0")
    for _ in range(6):
        d.one("after")
    stop.set()
    th.join(30)
    assert side["err"] is None, side["err"]
    assert side["n"] >= 5, side
    d.close()
    # rate limit: the frozen clock may add one more line (it stepped
    # back a little against the concurrent stream), never a flood
    assert 2 <= len(warnings(b)) <= 3, warnings(b)

    # no base name twice in cur/ + new/
    md = b.maildir(USER)
    names = []
    for sub in ("cur", "new"):
        names += [n.split(":", 1)[0] for n in os.listdir(os.path.join(md,
                                                                      sub))]
    assert len(names) == len(set(names)), sorted(names)
    stored = dict(d.stored)
    stored.update(side["stored"])
    assert len(names) == len(stored), (len(names), len(stored))
    # day-old names really were made (the fake clock did reach the node)
    secs = sorted(int(n.split(".", 1)[0]) for n in names)
    assert secs[0] < time.time() - 80000, secs[:3]

    # every message present once, byte-identical, UIDs unchanged
    c = imap(b)
    typ, data = c.select("INBOX")
    assert typ == "OK" and int(data[0]) == len(stored), (data, len(stored))
    assert int(c.untagged_responses["UIDVALIDITY"][-1]) == d.uidvalidity
    uidnext = int(c.untagged_responses["UIDNEXT"][-1])
    typ, data = c.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    assert typ == "OK", data
    got = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            m = re.search(rb"<clock-([\w-]+)@test>", item[1])
            assert m, item
            tag = m.group(1).decode()
            assert tag not in got.values(), tag
            got[uid] = tag
            assert item[1] == stored[tag], tag
    assert sorted(got.values()) == sorted(stored), (len(got), len(stored))
    assert max(got) < uidnext
    for tag, uid in d.order:
        assert got[uid] == tag, (tag, uid, got.get(uid))
    c.logout()
