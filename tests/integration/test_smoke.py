"""Smoke tests: the harness brings up real Dovecot and redis-server.

What Dovecot 2.3.19 does with the awkward corpus messages (asserted below,
not skipped):
  * 08-bare-lf: stored with LF, every line ending comes back as CRLF in
    BODY[] (159 bytes in, 167 out; RFC822.SIZE 167).
  * 07-nul-and-8bit: APPEND of a literal containing NUL is accepted and the
    NUL is stored on disk as is; FETCH BODY[] returns it replaced by 0x80
    (same size, 164), while FETCH BINARY[] (literal8) and POP3 RETR return
    the original NUL byte.
  * every other message (CRLF) comes back byte-identical.
  * LMTP delivery prepends Return-Path:, Delivered-To: and Received:
    headers; the original message follows unchanged.
"""

import imaplib
import os
import re

import pytest

from harness import mail
from harness.dovecot import CRYPT_USER
from harness.redis import RespClient, RespError

IDENTICAL = ["01-plain-ascii.eml", "03-mixed-attachment.eml",
             "13-large-1mb.eml"]


def expected_body(name, msg):
    """BODY[] Dovecot returns for an APPENDed corpus message."""
    out = mail.imap_crlf(msg)            # bare LF -> CRLF (08-bare-lf)
    return out.replace(b"\x00", b"\x80")  # NUL -> 0x80 (07-nul-and-8bit)


def rfc822_size(c, uid):
    typ, data = c.uid("FETCH", str(uid), "(RFC822.SIZE)")
    assert typ == "OK"
    return int(re.search(rb"RFC822\.SIZE (\d+)", data[0]).group(1))


def test_two_backends_imap_append_fetch(dovecot_backend, corpus):
    b1 = dovecot_backend()
    b2 = dovecot_backend()
    assert b1.running() and b2.running()
    assert len({b1.imap_port, b1.pop3_port, b1.lmtp_port,
                b2.imap_port, b2.pop3_port, b2.lmtp_port}) == 6
    assert b1.base_dir != b2.base_dir
    assert b1.instance_name != b2.instance_name
    assert b1.mail_root != b2.mail_root

    for b in (b1, b2):
        c = mail.imap_connect(b.host, b.imap_port, "user1")
        try:
            typ, data = c.select("INBOX")
            assert (typ, data) == ("OK", [b"0"])  # fresh, separate mail roots
            for name in IDENTICAL:
                uid, got = mail.append_and_fetch(c, corpus[name])
                assert got == corpus[name], name
                assert rfc822_size(c, uid) == len(corpus[name])
        finally:
            mail.imap_logout(c)
        assert b.log_errors() == []


def test_trusted_proxy_id_x_originating_ip(dovecot_backend):
    """127.0.0.0/8 is in login_trusted_networks, so Dovecot takes the
    client address from ID x-originating-ip (what a proxy sends)."""
    b = dovecot_backend()
    c = mail.imap_connect(b.host, b.imap_port)
    try:
        mail.imap_id(c, {"x-originating-ip": "192.0.2.7",
                         "x-originating-port": "40000",
                         "x-session-ext-id": "mrtest1"})
        c.login("user7", "pass")
    finally:
        mail.imap_logout(c)
    b.wait_log(r"Login: user=<user7>, .*rip=192\.0\.2\.7")


def test_awkward_messages_exact_transformations(dovecot_backend, corpus):
    b = dovecot_backend()
    c = mail.imap_connect(b.host, b.imap_port, "user2")
    try:
        # Bare LF: every line ending comes back as CRLF.
        lf = corpus["08-bare-lf.eml"]
        assert b"\r\n" not in lf
        uid, got = mail.append_and_fetch(c, lf)
        assert got == lf.replace(b"\n", b"\r\n")
        assert rfc822_size(c, uid) == len(lf) + lf.count(b"\n") == 167

        # NUL: accepted; BODY[] shows 0x80 in its place, BINARY[] the NUL.
        nul = corpus["07-nul-and-8bit.eml"]
        assert nul.count(b"\x00") == 1
        uid, got = mail.append_and_fetch(c, nul)
        assert got == nul.replace(b"\x00", b"\x80")
        assert rfc822_size(c, uid) == len(nul)
        assert mail.imap_fetch_uid(c, uid, "BINARY.PEEK[]") == nul

        # Everything else in the corpus is byte-identical.
        for name, msg in corpus.items():
            uid, got = mail.append_and_fetch(c, msg, mailbox="INBOX")
            assert got == expected_body(name, msg), name
            if name not in ("07-nul-and-8bit.eml", "08-bare-lf.eml"):
                assert got == msg, name
    finally:
        mail.imap_logout(c)

    # On disk the NUL is kept as is (Maildir stores LF line endings).
    cur = os.path.join(b.maildir("user2"), "cur")
    stored = [open(os.path.join(cur, f), "rb").read() for f in os.listdir(cur)]
    assert any(b"before\x00after\n" in s for s in stored)


def test_pop3_stat_matches_imap(dovecot_backend, corpus):
    b = dovecot_backend()
    names = ["01-plain-ascii.eml", "07-nul-and-8bit.eml", "08-bare-lf.eml",
             "05-folded-headers-no-date.eml", "13-large-1mb.eml"]
    c = mail.imap_connect(b.host, b.imap_port, "user3")
    sizes = []
    try:
        for name in names:
            uid = mail.imap_append(c, corpus[name])
            c.select("INBOX")
            sizes.append(rfc822_size(c, uid))
    finally:
        mail.imap_logout(c)

    p = mail.pop3_connect(b.host, b.pop3_port, "user3")
    try:
        count, total = p.stat()
        assert count == len(names)
        assert total == sum(sizes)
        _resp, listing, _ = p.list()
        assert [int(l.split()[1]) for l in listing] == sizes
        # RETR gives the CRLF form, and the NUL byte unchanged.
        for i, name in enumerate(names, 1):
            assert mail.pop3_retr(p, i) == mail.imap_crlf(corpus[name]), name
    finally:
        p.quit()


def test_lmtp_delivery_appears_in_inbox(dovecot_backend, corpus):
    b = dovecot_backend()
    msg = corpus["14-reply-thread.eml"]
    res = mail.lmtp_deliver(b.host, b.lmtp_port,
                            ["user4", CRYPT_USER, "nosuchuser"], msg)
    assert res["user4"][0] == 250
    assert res[CRYPT_USER][0] == 250
    assert res["nosuchuser"][0] == 550

    for user in ("user4", CRYPT_USER):  # cryptuser: SHA512-CRYPT password
        c = mail.imap_connect(b.host, b.imap_port, user)
        try:
            typ, data = c.select("INBOX")
            assert data == [b"1"]
            got = mail.imap_fetch_uid(c, 1)
        finally:
            mail.imap_logout(c)
        assert got.endswith(msg)
        headers = got[:len(got) - len(msg)]
        assert headers.startswith(b"Return-Path: <sender@example.com>\r\n")
        # (no Delivered-To: Dovecot adds it only for single-RCPT deliveries)
        assert b"Received: from [127.0.0.1]" in headers
        assert b"by %s with LMTP" % b.name.encode() in headers

    # Single recipient: Delivered-To is added too.
    res = mail.lmtp_deliver(b.host, b.lmtp_port, "user4", msg)
    assert res["user4"][0] == 250
    c = mail.imap_connect(b.host, b.imap_port, "user4")
    try:
        c.select("INBOX")
        got = mail.imap_fetch_uid(c, 2)
    finally:
        mail.imap_logout(c)
    assert got.endswith(msg)
    assert b"\r\nDelivered-To: user4\r\n" in got[:len(got) - len(msg)]


def test_shared_mail_root_between_backends(dovecot_backend, mail_root,
                                           corpus):
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    msg = corpus["02-multipart-alternative.eml"]
    c = mail.imap_connect(b1.host, b1.imap_port, "user5")
    try:
        uid = mail.imap_append(c, msg)
    finally:
        mail.imap_logout(c)
    c = mail.imap_connect(b2.host, b2.imap_port, "user5")
    try:
        c.select("INBOX")
        assert mail.imap_fetch_uid(c, uid) == msg
    finally:
        mail.imap_logout(c)
    assert os.path.isdir(os.path.join(mail_root, "user5", "Maildir", "cur"))


def test_tls_backend_starttls_and_implicit(dovecot_backend):
    b = dovecot_backend(ssl=True)
    assert b.imaps_port and b.pop3s_port and os.path.exists(b.cert)
    c = mail.imap_connect(b.host, b.imaps_port, "user6", ssl=True)
    mail.imap_logout(c)
    c = mail.imap_connect(b.host, b.imap_port, "user6", starttls=True)
    mail.imap_logout(c)
    p = mail.pop3_connect(b.host, b.pop3s_port, "user6", ssl=True)
    assert p.stat() == (0, 0)
    p.quit()
    # Plaintext login is still allowed without TLS (disable_plaintext_auth=no)
    c = mail.imap_connect(b.host, b.imap_port, "user6")
    mail.imap_logout(c)


def test_extra_conf_and_passwd_lines(dovecot_backend):
    b = dovecot_backend(
        extra_conf="protocol imap {\n  imap_capability = +XMAILRINGTEST\n}\n",
        extra_passwd_lines=["alice@example.com:{PLAIN}secret::::::"])
    c = mail.imap_connect(b.host, b.imap_port, "alice@example.com", "secret")
    try:
        typ, data = c.capability()
        assert b"XMAILRINGTEST" in data[0]
    finally:
        mail.imap_logout(c)
    # Lines added while running are picked up without a reload.
    b.add_passwd_lines("bob:{PLAIN}hunter2::::::")
    c = mail.imap_connect(b.host, b.imap_port, "bob", "hunter2")
    mail.imap_logout(c)
    with pytest.raises(imaplib.IMAP4.error):
        mail.imap_connect(b.host, b.imap_port, "user1", "wrong")
    b.wait_log(r"Login: user=<bob>")
    # Config snippets added later are applied with a reload.
    b.add_config("protocol imap {\n  imap_capability = +XMAILRINGLATER\n}\n")
    c = mail.imap_connect(b.host, b.imap_port, "user1")
    try:
        assert b"XMAILRINGLATER" in c.capability()[1][0]
    finally:
        mail.imap_logout(c)


def test_redis_ping_set_get_restart(redis_server):
    r = redis_server
    with RespClient(r.host, r.port) as c:
        assert c.command("PING") == "PONG"
        assert c.command("SET", "k", b"v\x00\r\nbin") == "OK"
        assert c.command("GET", "k") == b"v\x00\r\nbin"
        assert c.command("GET", "missing") is None
        assert c.command("INCR", "n") == 1
        assert c.command("RPUSH", "l", "a", "b") == 2
        assert c.command("LRANGE", "l", 0, -1) == [b"a", b"b"]
        with pytest.raises(RespError):
            c.command("NOSUCHCOMMAND")
        assert c.pipeline(("SET", "a", 1), ("GET", "a")) == ["OK", b"1"]
    port = r.port
    r.restart()
    assert r.port == port and r.running()
    assert r.command("PING") == "PONG"
    assert r.command("GET", "k") is None  # --save '' --appendonly no
