"""mailring-backend storage repair (issue 5): the index (`mailring-index`),
its log (`mailring-index.log`) and the UID list (`mailring-uidlist`) of an
INBOX with messages and flags are overwritten with random bytes, truncated,
deleted, or (the log of an empty folder) replaced by a 200 MB garbage file,
while the node runs. Each time the next SELECT must work and:

  * index/log damaged, UID list intact: UIDVALIDITY, UIDs and flags are as
    before (flags live in the file names too; docs/backend.md);
  * UID list damaged, index intact: the list is rebuilt keeping the
    UIDVALIDITY, UIDNEXT and the UIDs the index knows (messages here have
    distinct sizes, so matching by size + date is unambiguous); flags stay;
  * both damaged: flags stay; UIDs may be new, but then UIDVALIDITY must be
    new (greater) too: never the old UIDVALIDITY with other UIDs;
  * the files are rebuilt: `mailring-backend -c CONF index dump USER INBOX`
    reads them (magic and CRCs ok) and agrees with IMAP;
  * the node's peak RSS (VmHWM) stays under 64 MB.
"""

import imaplib
import os
import re
import subprocess
import time

import pytest

from harness.backend import imap_supported

USER = "corrupt@example.com"
RSS_LIMIT_KB = 64 * 1024
SANITIZED = bool(os.environ.get("MAILRING_SANITIZED"))
# (flags to STORE, size of the body) per message; sizes all differ
MESSAGES = [
    ("(\\Seen)", 300),
    ("(\\Seen \\Flagged)", 1400),
    ("(\\Answered)", 2500),
    ("()", 3600),
    ("(\\Draft \\Seen)", 4700),
    ("(\\Deleted)", 5800),
    ("(\\Flagged $Work)", 6900),
]


def msg(i, size):
    head = ("From: a@example.org\r\nTo: %s\r\nSubject: m%d\r\n"
            "Message-ID: <corrupt-%d@test>\r\n\r\n" % (USER, i, i)).encode()
    body = (b"x" * 70 + b"\r\n") * (size // 72 + 1)
    return head + body[:size]


@pytest.fixture
def node(mailring_backend, mailring_bin):
    ok, why = imap_supported(mailring_bin("mailring-backend"))
    if not ok:
        pytest.skip("IMAP not built: %s" % why)
    b = mailring_backend(imap=True, users=0,
                         passwd_lines=["%s:{PLAIN}pass::::::" % USER])
    b.binary_path = mailring_bin("mailring-backend")
    return b


def imap(b):
    c = imaplib.IMAP4(b.host, b.imap_port, timeout=30)
    c.login(USER, "pass")
    return c


FLAGS_RE = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID "
                      rb"(\d+)")


def snapshot(b, mailbox="INBOX"):
    """(uidvalidity, uidnext, {uid: frozenset(flags)}) after a SELECT."""
    c = imap(b)
    try:
        t = time.monotonic()
        typ, data = c.select(mailbox)
        elapsed = time.monotonic() - t
        assert typ == "OK", (typ, data, b.log_text()[-2000:])
        uv = int(c.untagged_responses["UIDVALIDITY"][-1])
        un = int(c.untagged_responses["UIDNEXT"][-1])
        exists = int(data[0])
        flags = {}
        mids = {}
        if exists:
            typ, data = c.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS "
                                       "(MESSAGE-ID)])")
            assert typ == "OK", data
            for d in data:
                if not isinstance(d, tuple):
                    continue
                m = FLAGS_RE.search(d[0])
                assert m, d
                if m.group(1):
                    uid, fl = int(m.group(1)), m.group(2)
                else:
                    uid, fl = int(m.group(4)), m.group(3)
                mid = re.search(rb"<corrupt-(\d+)@test>", d[1])
                assert mid, d
                flags[uid] = frozenset(fl.decode().split())
                mids[uid] = int(mid.group(1))
        assert len(flags) == exists, (flags, exists)
        c.logout()
        return uv, un, flags, elapsed, mids
    finally:
        try:
            c.shutdown()
        except Exception:
            pass


def populate(b):
    c = imap(b)
    assert c.select("INBOX")[0] == "OK"
    for i, (fl, size) in enumerate(MESSAGES):
        typ, data = c.append("INBOX", None, None, msg(i, size))
        assert typ == "OK", data
    for i, (fl, size) in enumerate(MESSAGES):
        if fl != "()":
            typ, data = c.store(str(i + 1), "+FLAGS", fl)
            assert typ == "OK", (fl, data)
    # a flag change that goes only to the log (and the file name)
    typ, data = c.store("4", "+FLAGS", "(\\Seen)")
    assert typ == "OK", data
    c.logout()
    before = snapshot(b)
    assert len(before[2]) == len(MESSAGES)
    assert "\\Seen" in before[2][4] and "$Work" in before[2][7], before
    return before


def dump(b, mailbox="INBOX"):
    r = subprocess.run([b.binary_path, "-c", b.conf_path, "index", "dump",
                        USER, mailbox], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, ("index dump failed", r.stdout, r.stderr)
    lines = r.stdout.decode().splitlines()
    m = re.match(r"uidvalidity=(\d+) uidnext=(\d+) highest_modseq=\d+ "
                 r"messages=(\d+)$", lines[0])
    assert m, lines[0]
    count = int(m.group(3))
    recs = {}
    for line in lines[1:]:
        m = re.match(r"\d+ (\d+) \(([^)]*)\) (\S+) ", line)
        assert m, line
        recs[int(m.group(1))] = frozenset(m.group(2).split())
    assert len(recs) == count, (count, lines)
    return int(lines[0].split()[0].split("=")[1]), recs


def vmhwm_kb(b):
    with open("/proc/%d/status" % b.proc.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def path(b, name, mailbox_dir=None):
    return os.path.join(mailbox_dir or b.maildir(USER), name)


def system_flags(flags):
    """Flags minus keywords, for the dump (which prints keyword letters
    apart)."""
    return frozenset(f for f in flags if f.startswith("\\"))


def check_after(b, before, uids_kept=True):
    uv0, un0, flags0, _, mids0 = before
    uv, un, flags, elapsed, mids = snapshot(b)
    # flags survive, message by message (by Message-ID)
    assert flags0 and len(flags) == len(flags0), (flags0, flags)
    assert sorted(mids.values()) == sorted(mids0.values()), (mids0, mids)
    by_mid0 = {mids0[u]: f for u, f in flags0.items()}
    by_mid = {mids[u]: f for u, f in flags.items()}
    assert by_mid == by_mid0, ("flags changed", by_mid0, by_mid)
    if uids_kept:
        assert uv == uv0, ("UIDVALIDITY changed", uv0, uv)
        assert mids == mids0, ("UIDs changed", mids0, mids)
        assert un >= un0, (un0, un)
    else:
        assert (uv == uv0 and mids == mids0) or uv > uv0, (
            "UIDs changed under the same UIDVALIDITY", uv0, mids0, uv,
            mids)
    assert all(u < un for u in flags), (un, flags)
    # rebuilt files are readable and agree with what IMAP said
    duv, recs = dump(b)
    assert duv == uv, (duv, uv)
    assert sorted(recs) == sorted(flags), (recs, flags)
    for u in flags:
        assert recs[u] == system_flags(flags[u]), (u, recs[u], flags[u])
    for name in ("mailring-index", "mailring-uidlist"):
        assert os.path.exists(path(b, name)), name
    if not SANITIZED:
        hwm = vmhwm_kb(b)
        assert hwm < RSS_LIMIT_KB, "VmHWM %d kB" % hwm
    return uv, un, flags


def random_bytes(p, n=None):
    n = os.path.getsize(p) if n is None else n
    with open(p, "wb") as f:
        f.write(os.urandom(max(n, 1)))


def truncate(p, frac):
    n = os.path.getsize(p)
    os.truncate(p, int(n * frac))


def remove(p):
    os.unlink(p)


IDX = "mailring-index"
LOG = "mailring-index.log"
UIDL = "mailring-uidlist"

INDEX_CASES = {
    "index-random": [(IDX, random_bytes)],
    "log-random": [(LOG, random_bytes)],
    "both-random": [(IDX, random_bytes), (LOG, random_bytes)],
    "index-truncated-half": [(IDX, lambda p: truncate(p, 0.5))],
    "index-truncated-empty": [(IDX, lambda p: truncate(p, 0))],
    "log-truncated-torn": [(LOG, lambda p: os.truncate(
        p, os.path.getsize(p) - 5))],
    "log-truncated-header": [(LOG, lambda p: truncate(p, 0) or
                              open(p, "ab").write(b"MRIDXLOG\x01"))],
    "index-deleted": [(IDX, remove)],
    "log-deleted": [(LOG, remove)],
    "both-deleted": [(IDX, remove), (LOG, remove)],
}


@pytest.mark.parametrize("case", sorted(INDEX_CASES))
def test_index_or_log_damaged(node, case):
    b = node
    before = populate(b)
    for name, damage in INDEX_CASES[case]:
        p = path(b, name)
        assert os.path.exists(p), name
        damage(p)
    after = check_after(b, before, uids_kept=True)
    # and it stays repaired: a second SELECT gives the same
    assert snapshot(b)[:3] == after


def flip_record_digit(p):
    data = bytearray(open(p, "rb").read())
    lines = data.split(b"\n")
    # line 1 is the first record "<uid> <name>": change its UID
    rec = lines[1]
    uid, rest = rec.split(b" ", 1)
    lines[1] = str(int(uid) + 1000).encode() + b" " + rest
    with open(p, "wb") as f:
        f.write(b"\n".join(lines))


def drop_trailer(p):
    data = open(p, "rb").read()
    i = data.rfind(b"# end ")
    assert i > 0, data
    with open(p, "wb") as f:
        f.write(data[:i])


UIDLIST_CASES = {
    "uidlist-random": random_bytes,
    "uidlist-truncated": drop_trailer,
    "uidlist-bad-crc": flip_record_digit,
    "uidlist-deleted": remove,
    "uidlist-empty": lambda p: truncate(p, 0),
}


@pytest.mark.parametrize("case", sorted(UIDLIST_CASES))
def test_uidlist_damaged_index_intact(node, case):
    b = node
    before = populate(b)
    UIDLIST_CASES[case](path(b, UIDL))
    check_after(b, before, uids_kept=True)
    assert "uidlist" in b.log_text() or case == "uidlist-deleted"


@pytest.mark.parametrize("case", ["uidlist-random", "uidlist-deleted"])
def test_uidlist_and_index_damaged(node, case):
    b = node
    before = populate(b)
    UIDLIST_CASES[case](path(b, UIDL))
    for name in (IDX, LOG):
        random_bytes(path(b, name))
    uv, un, flags = check_after(b, before, uids_kept=False)
    # docs/backend.md: nothing knows the UIDs any more -> new UIDVALIDITY
    assert uv > before[0], (before[0], uv)
    # a new client sees a consistent mailbox: every UID fetches
    c = imap(b)
    try:
        assert c.select("INBOX")[0] == "OK"
        for u in flags:
            typ, data = c.uid("FETCH", str(u), "(BODY.PEEK[HEADER])")
            assert typ == "OK" and isinstance(data[0], tuple), (u, data)
        c.logout()
    finally:
        try:
            c.shutdown()
        except OSError:
            pass


def test_200mb_garbage_log_on_empty_folder(node):
    b = node
    populate(b)
    c = imap(b)
    assert c.create("Empty")[0] == "OK"
    typ, data = c.select("Empty")
    assert typ == "OK" and data == [b"0"], data
    uv0 = int(c.untagged_responses["UIDVALIDITY"][-1])
    c.logout()
    folder = os.path.join(b.maildir(USER), ".Empty")
    log = os.path.join(folder, LOG)
    assert os.path.exists(log), os.listdir(folder)
    with open(log, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"MRIDXLOG", header
    # a valid header, 8 MB of random bytes, then a sparse tail to 200 MB
    with open(log, "wb") as f:
        f.write(header)
        for _ in range(8):
            f.write(os.urandom(1 << 20))
        f.truncate(200 * 1024 * 1024)
    hwm0 = vmhwm_kb(b)
    uv, un, flags, elapsed, _ = snapshot(b, "Empty")
    assert flags == {} and uv == uv0, (uv0, uv, flags)
    assert elapsed < 5, "SELECT of the empty folder took %.1f s" % elapsed
    assert os.path.getsize(log) < 1024 * 1024, os.path.getsize(log)
    duv, recs = dump(b, "Empty")
    assert duv == uv and recs == {}
    if not SANITIZED:
        hwm = vmhwm_kb(b)
        assert hwm < RSS_LIMIT_KB, "VmHWM %d kB (was %d)" % (hwm, hwm0)
    # the INBOX is untouched
    assert len(snapshot(b)[2]) == len(MESSAGES)
