"""mailring-backend IMAP: session semantics (RFC 3501 + IDLE, UIDPLUS,
MOVE, CONDSTORE, SPECIAL-USE, LITERAL+), each test run against Dovecot
(the reference) and mailring-backend through the `server` fixture.

Dovecot is configured like mailring-backend (harness.imapwire.
DOVECOT_LIKE_MAILRING): auto-created SPECIAL-USE folders, 8 KiB command
lines.  The hierarchy separator is read from LIST "" "" (Dovecot's Maildir++
uses "."), never assumed.  Raw protocol checks use harness.imapwire.ImapWire
(strict parser, untagged responses in order); imaplib is used where it is
the natural client.

Known differences, asserted as such:
  * RENAME INBOX: Dovecot's Maildir++ layout answers NO [CANNOT]; the
    RFC 3501 semantics are checked on mailring-backend only.
  * APPEND over the size limit: Dovecot 2.3 has no APPEND size limit
    (it answers "+ OK" to a 2 GiB literal); checked on mailring only.
"""

import datetime
import imaplib
import re
import socket
import time

import pytest

from harness.imapwire import (DOVECOT_LIKE_MAILRING, LMTP_USER, ImapWire,
                              fetch_items, quote, start_imap_server)
from harness.mail import imap_connect, imap_logout, lmtp_deliver

MSG = (b"From: a@example.org\r\nTo: user1@example.org\r\n"
       b"Subject: test %d\r\nMessage-ID: <m%d@example.org>\r\n\r\nbody %d\r\n")


def msg(i):
    return MSG % (i, i, i)


@pytest.fixture(params=["dovecot", "mailring"])
def server(request):
    return start_imap_server(request, request.param,
                             dovecot_conf=DOVECOT_LIKE_MAILRING)


def wire(server, user="user1", select=None):
    c = ImapWire(server.host, server.imap_port, timeout=10)
    assert c.greeting.kind == "status" and c.greeting.status == "OK", \
        c.greeting.raw
    c.login(user)
    if select:
        c.ok(b"SELECT " + quote(select))
    return c


def fill(c, n, mailbox="INBOX"):
    """APPEND n small messages; returns their UIDs (APPENDUID)."""
    uids = []
    for i in range(1, n + 1):
        _, t = c.command(b"APPEND " + quote(mailbox), literal=msg(i),
                         check="OK")
        assert t.code == "APPENDUID", t.raw
        uids.append(t.code_args[1])
    return uids


def uid_list(c):
    """[uid of seq 1, uid of seq 2, ...] of the selected mailbox."""
    res = c.fetch("1:* (UID)", uid=False) if exists(c) else {}
    return [res[s]["UID"] for s in sorted(res)]


def exists(c):
    n = None
    for r in c.ok(b"NOOP"):
        if r.name == "EXISTS":
            n = r.number
    if n is None:
        st = c.ok(b"STATUS INBOX (MESSAGES)")
        n = [r for r in st if r.name == "STATUS"][0].values[1][1]
    return n


def apply_expunges(uids, untagged):
    """The client's view: remove seq n for each * n EXPUNGE, in order."""
    view = list(uids)
    for r in untagged:
        if r.name == "EXPUNGE":
            assert 1 <= r.number <= len(view), (r.raw, view)
            del view[r.number - 1]
    return view


def sep_of(c):
    lst = [r for r in c.ok(b'LIST "" ""') if r.name == "LIST"]
    assert len(lst) == 1, lst
    sep = lst[0].values[1]
    assert isinstance(sep, bytes) and len(sep) == 1, lst[0].raw
    return sep.decode()


def list_names(c, ref, pattern, cmd=b"LIST"):
    out = {}
    for r in c.ok(b"%s %s %s" % (cmd, quote(ref), quote(pattern))):
        if r.name == cmd.decode():
            name = r.values[2]
            name = name.decode() if isinstance(name, bytes) else str(name)
            out[name] = {str(a).lower() for a in r.values[0]}
    return out


# ---- capabilities ------------------------------------------------------

CAPS = ("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE "
        "UNSELECT CHILDREN SPECIAL-USE CONDSTORE LIST-STATUS").split()


def test_capabilities(server):
    c = ImapWire(server.host, server.imap_port, timeout=10)
    pre = [r for r in c.ok(b"CAPABILITY") if r.name == "CAPABILITY"]
    assert len(pre) == 1
    pre = {str(v).upper() for v in pre[0].values}
    assert "IMAP4REV1" in pre and "AUTH=PLAIN" in pre, pre
    # SASL-IR: AUTHENTICATE PLAIN with an initial response
    _, t = c.command(b"AUTHENTICATE PLAIN AHVzZXIxAHBhc3M=")   # \0user1\0pass
    assert t.status == "OK", t.raw
    post = [r for r in c.ok(b"CAPABILITY") if r.name == "CAPABILITY"][0]
    post = {str(v).upper() for v in post.values}
    missing = [x for x in CAPS if x.upper() not in post]
    assert not missing, (missing, post)
    c.logout()


# ---- two sessions ------------------------------------------------------


def test_expunge_renumbering_two_sessions(server):
    a = wire(server)
    uids = fill(a, 6)
    a.ok(b"SELECT INBOX")
    b = wire(server, select="INBOX")
    assert uid_list(a) == uids and uid_list(b) == uids
    a.ok(b"UID STORE %d,%d,%d +FLAGS.SILENT (\\Deleted)"
         % (uids[1], uids[3], uids[4]))
    ua = a.ok(b"EXPUNGE")
    seqs_a = [r.number for r in ua if r.name == "EXPUNGE"]
    assert len(seqs_a) == 3, ua
    want = [uids[0], uids[2], uids[5]]
    assert apply_expunges(uids, ua) == want, seqs_a
    # the other session learns at its next command, with correct numbers
    ub = b.ok(b"NOOP")
    seqs_b = [r.number for r in ub if r.name == "EXPUNGE"]
    assert len(seqs_b) == 3, ub
    assert apply_expunges(uids, ub) == want, seqs_b
    assert uid_list(b) == want and uid_list(a) == want
    # seq numbers in FETCH answers follow the new numbering
    f = b.fetch("2 (UID)", uid=False)
    assert f == {2: {"UID": uids[2]}}, f
    a.logout()
    b.logout()


def test_store_in_one_session_seen_by_other(server):
    a = wire(server)
    uids = fill(a, 3)
    a.ok(b"SELECT INBOX")
    b = wire(server, select="INBOX")
    a.ok(b"UID STORE %d +FLAGS (\\Flagged $Work)" % uids[1])
    ub = b.ok(b"NOOP")
    fetches = [r for r in ub if r.name == "FETCH"]
    assert [r.number for r in fetches] == [2], ub
    flags = {str(f).lower() for f in fetch_items(fetches[0].values)["FLAGS"]}
    assert {"\\flagged", "$work"} <= flags, flags
    a.ok(b"UID STORE %d -FLAGS (\\Flagged)" % uids[1])
    ub = b.ok(b"NOOP")
    fetches = [r for r in ub if r.name == "FETCH"]
    assert len(fetches) == 1 and "\\flagged" not in {
        str(f).lower() for f in fetch_items(fetches[0].values)["FLAGS"]}
    a.logout()
    b.logout()


def test_idle_wakes_within_a_second_of_lmtp_delivery(server):
    assert server.lmtp_port, "server without LMTP"
    c = wire(server, user=LMTP_USER, select="INBOX")
    c.send(b"i1 IDLE\r\n")
    r = c.read()
    assert r.kind == "continuation", r.raw
    time.sleep(0.2)
    t0 = time.monotonic()
    res = lmtp_deliver(server.host, server.lmtp_port, [LMTP_USER], msg(1))
    assert res[LMTP_USER][0] == 250, res
    t_delivered = time.monotonic()
    c.sock.settimeout(3)
    r = c.read()
    t_seen = time.monotonic()
    assert r.name == "EXISTS" and r.number == 1, r.raw
    assert t_seen - t_delivered < 1.0, (t_seen - t_delivered,
                                        t_delivered - t0)
    c.send(b"DONE\r\n")
    t = c.until_tagged("i1")
    assert t.status == "OK", t.raw
    c.sock.settimeout(10)
    body = c.fetch("1 (BODY.PEEK[TEXT])", uid=False)[1]["BODY[TEXT]"]
    assert body == b"body 1\r\n"
    c.logout()


def test_idle_wakes_on_append_from_other_session(server):
    c = wire(server, select="INBOX")
    other = wire(server)
    c.send(b"i1 IDLE\r\n")
    assert c.read().kind == "continuation"
    fill(other, 1)
    t0 = time.monotonic()
    c.sock.settimeout(3)
    r = c.read()
    assert r.name == "EXISTS" and r.number == 1, r.raw
    assert time.monotonic() - t0 < 1.0
    c.send(b"DONE\r\n")
    assert c.until_tagged("i1").status == "OK"
    c.logout()
    other.logout()


# ---- UIDPLUS: APPEND / COPY / MOVE -------------------------------------


def parse_uidset(s):
    out = []
    for part in str(s).split(","):
        lo, _, hi = part.partition(":")
        lo, hi = int(lo), int(hi or lo)
        out.extend(range(min(lo, hi), max(lo, hi) + 1))
    return out


def test_copy_move_uidplus(server):
    c = wire(server)
    c.ok(b"CREATE Dest")
    st = [r for r in c.ok(b"STATUS Dest (UIDVALIDITY UIDNEXT)")
          if r.name == "STATUS"][0].values[1]
    dest_v = dict(zip(map(str, st[::2]), st[1::2]))["UIDVALIDITY"]
    uids = fill(c, 4)
    sel = c.ok(b"SELECT INBOX")
    inbox_v = [r.code_args[0] for r in sel if r.code == "UIDVALIDITY"][0]
    _, t = c.command(b"APPEND Dest {6+}\r\nX: y\r\n", check="OK")
    assert t.code == "APPENDUID" and t.code_args[0] == dest_v, t.raw
    first_dest = t.code_args[1]

    _, t = c.command(b"UID COPY %d:%d Dest" % (uids[0], uids[1]),
                     check="OK")
    assert t.code == "COPYUID", t.raw
    v, src, dst = t.code_args
    assert v == dest_v
    assert parse_uidset(src) == uids[:2]
    dst = parse_uidset(dst)
    assert len(dst) == 2 and min(dst) > first_dest, t.raw

    um, t = c.command(b"UID MOVE %d Dest" % uids[2], check="OK")
    copyuid = [r for r in um + [t] if r.code == "COPYUID"]
    assert len(copyuid) == 1, (um, t.raw)
    v, src, mdst = copyuid[0].code_args
    assert v == dest_v and parse_uidset(src) == [uids[2]]
    mdst = parse_uidset(mdst)[0]
    assert mdst > max(dst)
    assert [r.number for r in um if r.name == "EXPUNGE"] == [3], um
    assert uid_list(c) == [uids[0], uids[1], uids[3]]

    # the copies hold the same bodies
    c.ok(b"SELECT Dest")
    f = c.fetch("%d,%d,%d (BODY.PEEK[TEXT])" % (dst[0], dst[1], mdst))
    assert [f[u]["BODY[TEXT]"] for u in (dst[0], dst[1], mdst)] == [
        b"body 1\r\n", b"body 2\r\n", b"body 3\r\n"]
    # COPY to a missing mailbox: NO [TRYCREATE]
    _, t = c.command(b"UID COPY %d NoSuchBox" % dst[0])
    assert t.status == "NO" and t.code == "TRYCREATE", t.raw
    assert inbox_v != 0
    c.logout()


# ---- mailboxes ---------------------------------------------------------


def test_rename_inbox(server):
    c = wire(server)
    fill(c, 3)
    _, t = c.command(b"RENAME INBOX Old-Inbox")
    if server.kind == "dovecot":
        assert t.status == "NO" and t.code == "CANNOT", t.raw
        c.logout()
        pytest.skip("Dovecot (Maildir++) cannot RENAME INBOX: NO [CANNOT]")
    assert t.status == "OK", t.raw
    st = {}
    for box in ("Old-Inbox", "INBOX"):
        r = [r for r in c.ok(b"STATUS %s (MESSAGES)" % box.encode())
             if r.name == "STATUS"][0]
        st[box] = r.values[1][1]
    assert st == {"Old-Inbox": 3, "INBOX": 0}
    c.ok(b"SELECT Old-Inbox")
    f = c.fetch("1:* (BODY.PEEK[TEXT])", uid=False)
    assert sorted(v["BODY[TEXT]"] for v in f.values()) == [
        b"body 1\r\n", b"body 2\r\n", b"body 3\r\n"]
    c.ok(b"SELECT INBOX")   # INBOX still there, empty, still usable
    fill(c, 1)
    assert len(uid_list(c)) == 1
    c.logout()


def test_list_lsub_wildcards(server):
    c = wire(server)
    s = sep_of(c)
    for box in ("Work", "Work%sa" % s, "Work%sb" % s, "Work%sa%sdeep" % (s, s),
                "Play"):
        c.ok(b"CREATE " + quote(box))
    top = list_names(c, "", "%")
    assert {"INBOX", "Work", "Play"} <= set(top), top
    assert not [n for n in top if s in n], top
    assert "\\haschildren" in top["Work"] and "\\hasnochildren" in top["Play"]
    every = list_names(c, "", "*")
    want = {"Work", "Work%sa" % s, "Work%sb" % s, "Work%sa%sdeep" % (s, s)}
    assert want | {"INBOX", "Play"} <= set(every), every
    assert set(list_names(c, "", "Work%s%%" % s)) == {"Work%sa" % s,
                                                      "Work%sb" % s}
    assert set(list_names(c, "Work%s" % s, "*")) == want - {"Work"}
    assert set(list_names(c, "", "W*")) == want
    assert set(list_names(c, "", "nothing*")) == set()
    # LIST "" "" answers the separator and the root only
    assert list(list_names(c, "", "")) == [""]
    # LSUB shows subscriptions only
    c.ok(b"SUBSCRIBE " + quote("Work%sa" % s))
    c.ok(b"SUBSCRIBE Play")
    assert set(list_names(c, "", "*", b"LSUB")) >= {"Work%sa" % s, "Play"}
    assert "Work%sb" % s not in list_names(c, "", "*", b"LSUB")
    assert set(list_names(c, "", "Work%s%%" % s, b"LSUB")) == {"Work%sa" % s}
    c.ok(b"UNSUBSCRIBE Play")
    assert "Play" not in list_names(c, "", "*", b"LSUB")
    c.logout()


def test_create_delete_rename_hierarchy(server):
    c = wire(server)
    s = sep_of(c)
    deep = "p%sq%sr" % (s, s)
    c.ok(b"CREATE p")   # a real mailbox, not only a \\Noselect parent name
    c.ok(b"CREATE " + quote(deep))
    assert {"p", "p%sq" % s, deep} <= set(list_names(c, "", "p*"))
    _, t = c.command(b"CREATE " + quote(deep))
    assert t.status == "NO", t.raw                # exists already
    fill(c, 2, deep)
    c.ok(b"RENAME p x")
    names = set(list_names(c, "", "*"))
    assert {"x", "x%sq" % s, "x%sq%sr" % (s, s)} <= names, names
    assert not [n for n in names if n == "p" or n.startswith("p" + s)]
    r = [r for r in c.ok(b"STATUS %s (MESSAGES)" % quote("x%sq%sr" % (s, s)))
         if r.name == "STATUS"][0]
    assert r.values[1] == [ra for ra in r.values[1]] and r.values[1][1] == 2
    _, t = c.command(b"RENAME x Play")          # to a free name: ok
    assert t.status == "OK", t.raw
    c.ok(b"CREATE Other")
    c.ok(b"CREATE Src")
    _, t = c.command(b"RENAME Src Other")       # to an existing name: NO
    assert t.status == "NO", t.raw
    c.ok(b"DELETE " + quote("Play%sq%sr" % (s, s)))
    assert "Play%sq%sr" % (s, s) not in list_names(c, "", "*")
    for bad in (b"DELETE INBOX", b"DELETE NoSuchBox",
                b"RENAME NoSuchBox Foo"):
        _, t = c.command(bad)
        assert t.status == "NO", (bad, t.raw)
    _, t = c.command(b"SELECT " + quote("Play%sq%sr" % (s, s)))
    assert t.status == "NO", t.raw
    c.logout()


def test_special_use_folders_after_first_login(server):
    c = wire(server, user="user2")
    every = list_names(c, "", "*")
    want = {"Drafts": "\\drafts", "Sent": "\\sent", "Trash": "\\trash",
            "Junk": "\\junk", "Archive": "\\archive"}
    for box, attr in want.items():
        assert box in every, (box, every)
        assert attr in every[box], (box, every[box])
    # selectable and usable like any folder
    for box in want:
        c.ok(b"SELECT " + box.encode())
    assert "\\noselect" not in every["Drafts"]
    c.logout()


def test_status(server):
    c = wire(server)
    uids = fill(c, 3)
    c.ok(b"SELECT INBOX")
    c.ok(b"UID STORE %d +FLAGS.SILENT (\\Seen)" % uids[0])
    c.ok(b"CREATE Other")
    c.ok(b"SELECT Other")             # STATUS of a not-selected mailbox
    r = [r for r in c.ok(b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY "
                         b"UNSEEN RECENT)") if r.name == "STATUS"]
    assert len(r) == 1 and r[0].values[0] in (b"INBOX", "INBOX"), r
    st = dict(zip(map(str, r[0].values[1][::2]), r[0].values[1][1::2]))
    assert st["MESSAGES"] == 3 and st["UNSEEN"] == 2, st
    assert st["UIDNEXT"] == uids[-1] + 1 and st["UIDVALIDITY"] > 0, st
    _, t = c.command(b"STATUS NoSuchBox (MESSAGES)")
    assert t.status == "NO", t.raw
    # imaplib agrees
    im = imap_connect(server.host, server.imap_port, user="user1")
    typ, data = im.status("INBOX", "(MESSAGES UNSEEN)")
    assert typ == "OK" and re.search(rb"MESSAGES 3\b", data[0]) \
        and re.search(rb"UNSEEN 2\b", data[0]), data
    imap_logout(im)
    c.logout()


def test_examine_is_read_only(server):
    c = wire(server)
    uids = fill(c, 2)
    c.ok(b"SELECT INBOX")
    c.ok(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uids[1])
    un, t = c.command(b"EXAMINE INBOX", check="OK")
    assert t.code == "READ-ONLY", t.raw
    _, t = c.command(b"UID STORE %d +FLAGS (\\Seen)" % uids[0])
    if server.kind == "dovecot":
        # Dovecot: "OK Store ignored with read-only mailbox"
        assert t.status == "OK" and b"read-only" in t.text, t.raw
    else:
        assert t.status == "NO", t.raw
    # EXPUNGE in a read-only mailbox removes nothing (Dovecot answers OK,
    # a NO is as good)
    un, t = c.command(b"EXPUNGE")
    assert t.status in ("OK", "NO"), t.raw
    assert not [r for r in un if r.name == "EXPUNGE"], un
    assert exists(c) == 2
    # BODY[] (not PEEK) does not set \Seen in a read-only mailbox
    c.fetch("%d (BODY[])" % uids[0])
    f = c.fetch("%d (FLAGS)" % uids[0])[uids[0]]
    assert "\\Seen" not in [str(x) for x in f["FLAGS"]], f
    _, t = c.command(b"SELECT INBOX", check="OK")
    assert t.code == "READ-WRITE", t.raw
    c.logout()


def test_append_flags_date_and_literal_plus(server):
    im = imap_connect(server.host, server.imap_port, user="user1")
    typ, data = im.append("INBOX", r"(\Flagged $Work)",
                          '"05-Mar-2025 10:11:12 +0200"', msg(1))
    assert typ == "OK", data
    im.select("INBOX")
    typ, data = im.fetch("1", "(FLAGS INTERNALDATE)")
    assert typ == "OK"
    line = data[0]
    # the same instant; Dovecot's Maildir keeps only the mtime and answers
    # in +0000, so the zone itself is not compared
    d = re.search(rb'INTERNALDATE "([^"]+)"', line).group(1).decode()
    assert datetime.datetime.strptime(d, "%d-%b-%Y %H:%M:%S %z") == \
        datetime.datetime(2025, 3, 5, 8, 11, 12,
                          tzinfo=datetime.timezone.utc), line
    flags = set(re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split())
    assert {b"\\Flagged", b"$Work"} <= flags, line
    assert b"\\Seen" not in flags
    imap_logout(im)

    c = wire(server)
    # LITERAL+: no continuation, the literal follows the command line at
    # once, also for LOGIN-style string arguments
    body = msg(2)
    c.send(b"t1 APPEND INBOX (\\Seen) {%d+}\r\n%s\r\n" % (len(body), body))
    t = c.until_tagged("t1")
    assert t.status == "OK" and t.code == "APPENDUID", t.raw
    uid = t.code_args[1]
    c.send(b"t2 SELECT {5+}\r\nINBOX\r\n")
    assert c.until_tagged("t2").status == "OK"
    f = c.fetch("%d (FLAGS BODY.PEEK[])" % uid)[uid]
    assert f["BODY[]"] == body and "\\Seen" in map(str, f["FLAGS"]), f
    # two literals in one command, mixed synchronizing styles
    c.send(b"t3 CREATE {3+}\r\nL+1\r\n")
    assert c.until_tagged("t3").status == "OK"
    c.send(b"t4 RENAME {3+}\r\nL+1 {3+}\r\nL+2\r\n")
    assert c.until_tagged("t4").status == "OK"
    assert "L+2" in list_names(c, "", "L*")
    c.logout()


# ---- CONDSTORE ---------------------------------------------------------


def modseqs(c, what="1:*"):
    out = {}
    for uid, it in c.fetch("%s (MODSEQ)" % what).items():
        ms = it["MODSEQ"]
        assert isinstance(ms, list) and len(ms) == 1 and ms[0] > 0, ms
        out[uid] = ms[0]
    return out


def highest(untagged):
    v = [r.code_args[0] for r in untagged if r.code == "HIGHESTMODSEQ"]
    assert len(v) == 1, untagged
    return v[0]


def test_condstore(server):
    c = wire(server)
    uids = fill(c, 3)
    en = c.ok(b"ENABLE CONDSTORE")
    assert [r for r in en if r.name == "ENABLED"
            and "CONDSTORE" in map(str, r.values)], en
    h0 = highest(c.ok(b"SELECT INBOX"))
    ms0 = modseqs(c)
    assert sorted(ms0) == uids and max(ms0.values()) <= h0
    # a flag change raises the message's MODSEQ and HIGHESTMODSEQ
    un = c.ok(b"UID STORE %d +FLAGS (\\Seen)" % uids[0])
    f = [r for r in un if r.name == "FETCH"]
    assert f and "MODSEQ" in str(f[0].raw), un
    ms1 = modseqs(c)
    assert ms1[uids[0]] > ms0[uids[0]] and ms1[uids[0]] > h0
    assert ms1[uids[1]] == ms0[uids[1]]
    st = [r for r in c.ok(b"STATUS INBOX (HIGHESTMODSEQ)")
          if r.name == "STATUS"][0].values[1]
    assert str(st[0]).upper() == "HIGHESTMODSEQ" and st[1] >= ms1[uids[0]]
    # UNCHANGEDSINCE older than the message's MODSEQ: refused, [MODIFIED]
    _, t = c.command(b"UID STORE %d (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)"
                     % (uids[0], ms0[uids[0]]))
    assert t.status == "OK" and t.code == "MODIFIED", t.raw
    assert parse_uidset(t.code_args[0]) == [uids[0]]
    assert "\\Flagged" not in map(
        str, c.fetch("%d (FLAGS)" % uids[0])[uids[0]]["FLAGS"])
    # UNCHANGEDSINCE current: applied
    _, t = c.command(b"UID STORE %d (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)"
                     % (uids[1], ms1[uids[1]]), check="OK")
    assert t.code != "MODIFIED", t.raw
    ms2 = modseqs(c)
    assert ms2[uids[1]] > ms1[uids[1]]
    # FETCH CHANGEDSINCE / SEARCH MODSEQ
    ch = c.fetch("1:* (FLAGS) (CHANGEDSINCE %d)" % ms1[uids[0]])
    assert sorted(ch) == [uids[1]], ch
    h3 = highest(c.ok(b"SELECT INBOX (CONDSTORE)"))
    assert h3 >= ms2[uids[1]] > h0
    c.logout()


# ---- limits ------------------------------------------------------------


def test_overlong_command_line(server):
    """A 100 KB command line: BAD, then the session goes on -- or the
    server says BYE / closes.  Never OK, never a hang."""
    c = wire(server)
    c.send(b'L1 LIST "" ' + b"x" * 100000 + b"\r\n")
    closed = False
    bad = False
    try:
        while True:
            r = c.read()
            if r.kind == "tagged":
                assert r.status == "BAD", r.raw
                bad = True
                break
            if r.kind == "status" and r.status == "BAD":
                bad = True
                continue
            if r.kind == "status" and r.status == "BYE":
                closed = True
                break
            assert r.name != "LIST", "listed a 100 KB name?"
    except (EOFError, ConnectionResetError):
        closed = True
    assert bad or closed
    if closed:
        c.sock.settimeout(5)
        try:
            assert c.sock.recv(100) == b""
        except ConnectionResetError:
            pass
    else:
        c.ok(b"NOOP")
        c.ok(b"SELECT INBOX")
        c.logout()
    # the server is fine either way
    d = wire(server, select="INBOX")
    d.logout()


def test_append_over_size_limit_is_toobig(server):
    if server.kind == "dovecot":
        pytest.skip("Dovecot 2.3 has no APPEND size limit (answers '+ OK' "
                    "to a 2 GiB literal)")
    c = wire(server)
    c.send(b"T1 APPEND INBOX {2147483648}\r\n")
    r = c.read()
    assert r.kind == "tagged" and r.status == "NO" and r.code == "TOOBIG", \
        r.raw
    c.ok(b"NOOP")    # no literal is pending: the connection is in sync
    c.ok(b"SELECT INBOX")
    assert exists(c) == 0
    c.logout()
