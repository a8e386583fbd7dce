"""mailring-backend UIDs at the 2^31 limit (issue 5, backend/uidlist.h).

A hand-written `mailring-uidlist` (format and CRC: top of backend/uidlist.c)
puts an INBOX at UIDNEXT = 2^31 - 10 with three messages. Then messages
carrying `X-UID: 4294967290`, `X-IMAPbase:` and `Status:` headers (which
must never be read) arrive over LMTP and IMAP APPEND, past the limit:

  * no UID reaches 2^31 - 1 (UIDNEXT may be 2^31 - 1, no UID above 2^31 - 2);
  * UIDVALIDITY changes exactly once (renumbering), with one log line;
  * clients get consistent answers: every UID FETCH works, UIDNEXT is above
    every UID, no UID twice, every message present once, APPENDUIDs given
    under the final UIDVALIDITY still name their message.
"""

import imaplib
import os
import re
import smtplib
import zlib

import pytest

from harness.backend import imap_supported

USER = "limit@example.com"
UIDNEXT_MAX = 0x7fffffff          # 2^31 - 1: highest UIDNEXT
START_UIDNEXT = UIDNEXT_MAX - 10  # "a UID list at 2^31 - 10"
OLD_UIDVALIDITY = 1000
N_LMTP = 12
N_APPEND = 12
APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
MID_RE = re.compile(rb"<limit-(\w+)@test>")


def message(tag):
    return ("From: a@example.org\r\nTo: %s\r\nSubject: %s\r\n"
            "Message-ID: <limit-%s@test>\r\n"
            "X-UID: 4294967290\r\n"
            "X-IMAPbase: 1 4294967290\r\n"
            "X-IMAP: 1 0000000007\r\n"
            "Status: RO\r\nX-Status: A\r\n\r\n"
            "body of %s\r\n" % (USER, tag, tag, tag)).encode()


def write_uidlist(maildir, uidvalidity, uidnext, records):
    lines = ["mailring-uidlist 1 V%d N%d\n" % (uidvalidity, uidnext)]
    lines += ["%d %s\n" % (u, n) for u, n in records]
    data = "".join(lines).encode()
    data += b"# end %d %08x\n" % (len(records), zlib.crc32(data))
    with open(os.path.join(maildir, "mailring-uidlist"), "wb") as f:
        f.write(data)


@pytest.fixture
def node(mailring_backend, mailring_bin):
    ok, why = imap_supported(mailring_bin("mailring-backend"))
    if not ok:
        pytest.skip("IMAP not built: %s" % why)
    b = mailring_backend(imap=True, lmtp=True, users=0, start=False,
                         passwd_lines=["%s:{PLAIN}pass::::::" % USER])
    md = b.maildir(USER)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub))
    records = []
    for i in range(3):
        base = "1700000%03d.M%dP4242Q%d.testhost" % (i, i, i)
        with open(os.path.join(md, "cur", base + ":2,S"), "wb") as f:
            f.write(message("old%d" % i))
        records.append((START_UIDNEXT - 3 + i, base))
    write_uidlist(md, OLD_UIDVALIDITY, START_UIDNEXT, records)
    b.start()
    return b


def imap(b):
    c = imaplib.IMAP4(b.host, b.imap_port, timeout=30)
    c.login(USER, "pass")
    return c


def close(c):
    try:
        c.logout()
    except Exception:
        pass
    try:
        c.shutdown()
    except Exception:
        pass


def listing(c):
    """{uid: tag} of the selected mailbox, checked for duplicates."""
    typ, data = c.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS "
                                      "(MESSAGE-ID)])")
    assert typ == "OK", data
    out = {}
    for d in data:
        if not isinstance(d, tuple):
            continue
        uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
        m = MID_RE.search(d[1])
        assert m, d
        assert uid not in out, ("UID twice", uid)
        out[uid] = m.group(1).decode()
    return out


def test_uids_stay_below_2_31_and_uidvalidity_changes_once(node):
    b = node
    c = imap(b)
    typ, data = c.select("INBOX")
    assert typ == "OK", data
    assert int(c.untagged_responses["UIDVALIDITY"][-1]) == OLD_UIDVALIDITY
    assert int(c.untagged_responses["UIDNEXT"][-1]) == START_UIDNEXT
    first = listing(c)
    assert first == {START_UIDNEXT - 3: "old0", START_UIDNEXT - 2: "old1",
                     START_UIDNEXT - 1: "old2"}, first
    close(c)

    appended = {}  # tag -> (uidvalidity, uid)
    lm = smtplib.LMTP(b.host, b.lmtp_port, timeout=30)
    lm.ehlo()
    obs = imap(b)  # a session that keeps INBOX selected all along
    assert obs.select("INBOX")[0] == "OK"
    obs_events = []
    for i in range(max(N_LMTP, N_APPEND)):
        if i < N_LMTP:
            tag = "lmtp%d" % i
            assert lm.mail("s@example.org")[0] == 250
            assert lm.rcpt(USER)[0] == 250
            code, text = lm.data(message(tag))
            assert code == 250, text
        if i < N_APPEND:
            tag = "imap%d" % i
            a = imap(b)
            typ, data = a.append("INBOX", None, None, message(tag))
            assert typ == "OK", data
            m = APPENDUID_RE.search(b" ".join(
                d for d in data if isinstance(d, bytes)))
            assert m, data
            uv, uid = int(m.group(1)), int(m.group(2))
            assert 1 <= uid < UIDNEXT_MAX, (tag, uid)
            appended[tag] = (uv, uid)
            close(a)
        # the observer: NOOP must keep working or end the session cleanly
        if obs is not None:
            try:
                typ, data = obs.noop()
                obs_events.append((typ, dict(obs.untagged_responses)))
                obs.untagged_responses.clear()
            except (imaplib.IMAP4.abort, OSError) as e:
                obs_events.append(("closed", str(e)))
                obs = None
    lm.quit()
    if obs is not None:
        close(obs)

    # APPENDUID: one UIDVALIDITY change, UIDs grow under each UIDVALIDITY
    uvs = [appended["imap%d" % i][0] for i in range(N_APPEND)]
    changes = [i for i in range(1, len(uvs)) if uvs[i] != uvs[i - 1]]
    assert len(changes) <= 1, uvs
    for i in range(1, len(uvs)):
        if uvs[i] == uvs[i - 1]:
            assert appended["imap%d" % i][1] > appended["imap%d" % (i - 1)][1]
        else:
            assert uvs[i] > uvs[i - 1], uvs

    c = imap(b)
    typ, data = c.select("INBOX")
    assert typ == "OK", data
    uv = int(c.untagged_responses["UIDVALIDITY"][-1])
    uidnext = int(c.untagged_responses["UIDNEXT"][-1])
    total = 3 + N_LMTP + N_APPEND
    assert int(data[0]) == total, data
    assert uv != OLD_UIDVALIDITY and uv > OLD_UIDVALIDITY, uv
    assert uvs[-1] == uv, (uvs, uv)
    final = listing(c)
    assert len(final) == total, final
    tags = sorted(final.values())
    assert len(set(tags)) == total, tags  # no message twice
    assert max(final) < UIDNEXT_MAX and max(final) < uidnext, (final,
                                                               uidnext)
    assert uidnext <= UIDNEXT_MAX, uidnext
    # nothing took its UID from X-UID / X-IMAPbase
    assert 4294967290 not in final and uidnext != 4294967291
    for uid, tag in final.items():
        typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple), (uid, data)
        assert data[0][1].endswith(message(tag)), (uid, tag)
    for tag, (auv, auid) in appended.items():
        if auv == uv:
            assert final.get(auid) == tag, (tag, auid, final.get(auid))
    # STATUS agrees with SELECT
    typ, data = c.status("INBOX", "(UIDNEXT UIDVALIDITY MESSAGES)")
    assert typ == "OK", data
    st = data[0].decode()
    assert "UIDNEXT %d" % uidnext in st and "UIDVALIDITY %d" % uv in st \
        and "MESSAGES %d" % total in st, st
    close(c)

    # exactly one renumbering, logged
    log = b.log_text()
    renum = [l for l in log.splitlines() if "renumbered" in l]
    assert len(renum) == 1, renum
    assert "old_uidvalidity=%d" % OLD_UIDVALIDITY in renum[0], renum
    print("observer:", obs_events)
    print("\n".join(renum))
    # the observer saw a consistent world: it either was disconnected or
    # was told about the new UIDVALIDITY; it never got an error back
    for typ, info in obs_events:
        assert typ in ("OK", "closed"), obs_events
    told = [info for typ, info in obs_events
            if (typ == "closed" and "UIDVALIDITY" in info) or
            (typ == "OK" and str(uv).encode() in info.get("UIDVALIDITY", []))]
    assert told, ("the selected session never learnt of the renumbering",
                  obs_events)
    # the UID list on disk is valid and at the new UIDVALIDITY
    with open(os.path.join(b.maildir(USER), "mailring-uidlist"), "rb") as f:
        head = f.readline().decode()
    assert head.startswith("mailring-uidlist 1 V%d N%d\n" % (uv, uidnext)), \
        (head, uv, uidnext)
