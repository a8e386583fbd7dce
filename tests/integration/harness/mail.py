"""Mail helpers: the test corpus and IMAP/POP3/LMTP client shortcuts."""

import imaplib
import os
import poplib
import re
import smtplib
import ssl as _ssl

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "data", "mail"))

# poplib refuses lines over 2048 bytes; the corpus has a 5000-byte line.
poplib._MAXLINE = 1 << 20
# imaplib's limit applies to response lines outside literals.
imaplib._MAXLINE = max(imaplib._MAXLINE, 1 << 20)


def corpus_names():
    """Sorted file names of the .eml messages in tests/data/mail."""
    return sorted(n for n in os.listdir(CORPUS_DIR) if n.endswith(".eml"))


def load_message(name):
    """Bytes of tests/data/mail/<name> (".eml" may be omitted)."""
    if not name.endswith(".eml") and not name.endswith(".mbox"):
        name += ".eml"
    with open(os.path.join(CORPUS_DIR, name), "rb") as f:
        return f.read()


def load_corpus():
    """{file name: bytes} for every .eml message, in name order."""
    return {n: load_message(n) for n in corpus_names()}


def imap_crlf(msg):
    """What an IMAP server that stores lines (Dovecot) returns for BODY[]
    of an APPENDed message: every line ending (LF or CRLF) as CRLF."""
    return re.sub(rb"\r?\n", b"\r\n", msg)


def no_tls_verify_context():
    ctx = _ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = _ssl.CERT_NONE
    return ctx


def imap_connect(host, port, user=None, password="pass", timeout=10.0,
                 ssl=False, starttls=False, ssl_context=None):
    """imaplib connection with a socket timeout; logged in (plain LOGIN) if
    user is given.  ssl=True: implicit TLS; starttls=True: STARTTLS first.
    Certificates are not verified unless ssl_context is given."""
    ctx = ssl_context or no_tls_verify_context()
    if ssl:
        c = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=timeout)
    else:
        c = imaplib.IMAP4(host, port, timeout=timeout)
        if starttls:
            c.starttls(ssl_context=ctx)
    if user is not None:
        c.login(user, password)
    return c


imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))


def imap_id(c, fields=None):
    """Send ID (RFC 2971) with {key: value} (None -> NIL); returns the
    server's untagged ID response (list of bytes) ."""
    if fields:
        arg = "(%s)" % " ".join('"%s" "%s"' % (k, v)
                                for k, v in fields.items())
    else:
        arg = "NIL"
    typ, data = c._simple_command("ID", arg)
    if typ != "OK":
        raise imaplib.IMAP4.error("ID failed: %r" % (data,))
    return c._untagged_response(typ, data, "ID")[1]


def imap_logout(c):
    try:
        c.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


def imap_append(c, msg, mailbox="INBOX", flags=None, date_time=None):
    """APPEND msg (bytes); returns the new UID (UIDPLUS APPENDUID).
    Raises imaplib.IMAP4.error on NO/BAD."""
    typ, data = c.append(mailbox, flags, date_time, msg)
    if typ != "OK":
        raise imaplib.IMAP4.error("APPEND failed: %r %r" % (typ, data))
    for d in data:
        if isinstance(d, bytes):
            m = _APPENDUID.search(d)
            if m:
                return int(m.group(2))
    raise imaplib.IMAP4.error("no APPENDUID in %r" % (data,))


def imap_fetch_uid(c, uid, item="BODY.PEEK[]"):
    """UID FETCH one literal item (default BODY.PEEK[]) of an already
    SELECTed message; returns the bytes."""
    typ, data = c.uid("FETCH", str(uid), "(%s)" % item)
    if typ != "OK":
        raise imaplib.IMAP4.error("FETCH failed: %r %r" % (typ, data))
    for d in data:
        if isinstance(d, tuple) and re.search(rb"\bUID %d\b" % uid, d[0]):
            return d[1]
    raise imaplib.IMAP4.error("UID %s not in FETCH response %r" % (uid, data))


def append_and_fetch(c, msg, mailbox="INBOX", item="BODY.PEEK[]"):
    """APPEND msg to mailbox, SELECT it and FETCH it back by UID.
    Returns (uid, bytes)."""
    uid = imap_append(c, msg, mailbox)
    typ, data = c.select(mailbox)
    if typ != "OK":
        raise imaplib.IMAP4.error("SELECT %s failed: %r" % (mailbox, data))
    return uid, imap_fetch_uid(c, uid, item)


def pop3_connect(host, port, user=None, password="pass", timeout=10.0,
                 ssl=False, stls=False, ssl_context=None):
    """poplib connection; USER/PASS login if user is given."""
    ctx = ssl_context or no_tls_verify_context()
    if ssl:
        p = poplib.POP3_SSL(host, port, timeout=timeout, context=ctx)
    else:
        p = poplib.POP3(host, port, timeout=timeout)
        if stls:
            p.stls(context=ctx)
    if user is not None:
        p.user(user)
        p.pass_(password)
    return p


def pop3_retr(p, which):
    """RETR as bytes with CRLF line ends (dot-unstuffed by poplib)."""
    _resp, lines, _octets = p.retr(which)
    return b"".join(line + b"\r\n" for line in lines)


def lmtp_deliver(host, port, rcpts, msg, mail_from="sender@example.com",
                 timeout=10.0):
    """Deliver msg (bytes) over LMTP to one or more recipients.

    Returns {rcpt: (code, text)}: the RCPT reply for refused recipients,
    the per-recipient DATA reply (LMTP gives one each) for accepted ones.
    smtplib.LMTP.sendmail() reads only one DATA reply, so it is not used."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    result = {}
    with smtplib.LMTP(host, port, timeout=timeout) as s:
        s.ehlo_or_helo_if_needed()
        code, text = s.mail(mail_from)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, text, mail_from)
        accepted = []
        for r in rcpts:
            code, text = s.rcpt(r)
            if code in (250, 251):
                accepted.append(r)
            else:
                result[r] = (code, text)
        if accepted:
            result[accepted[0]] = s.data(msg)
            for r in accepted[1:]:
                result[r] = s.getreply()
        else:
            s.rset()
    return result
