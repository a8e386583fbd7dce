"""mailring-proxy (the IMAP/POP3 front proxy) under test.

Layout of one proxy (<dir> = ProcessManager dir, e.g. /tmp/mrit-XXXX/<test>/proxy):
    <dir>/proxy.conf      generated config (see MailringProxy.config_text)
    <dir>/passwd          Dovecot passwd-file: user1..user<N> {PLAIN}pass
                          plus passwd_lines
    <dir>/ssl/            self-signed cert/key (tls=True or an ssl listener)
    <dir>/stdout.log      (empty: the proxy logs to stderr)
    <dir>/stderr.log      the proxy's log, one line per event

    p = mailring_proxy(backends=[b1, b2], listeners=None, settings=None,
                       extra_conf="", passwd_lines=None, users=1000,
                       password="pass", tls=False, start=True, timeout=10)

backends: DovecotBackend objects (name, host, imap/pop3/lmtp_port taken
  from them) and/or dicts of backend settings with a "name" key, e.g.
  {"name": "dead", "host": "127.0.0.1", "imap_port": 20001, "weight": 50};
  a dict with "dovecot": DovecotBackend takes name/host/ports from it and
  the other keys as extra settings ({"dovecot": b1, "weight": 0}).
listeners: None = one plain IMAP listener "imap"; or a list of names
  ("imap", "imaps", "pop3", "pop3s": the protocol is pop3 for names
  starting with "pop3", ssl = yes for names ending in "s"); or a dict
  {name: {protocol, ssl, haproxy, address, port}}; missing ports are
  allocated, address defaults to 127.0.0.1:<port>.  LMTP listeners
  ({"lmtp": {"protocol": "lmtp"}}) are probed for their "220 " greeting.
settings: top-level settings overriding DEFAULT_SETTINGS (values: str,
  int, bool -> yes/no, list/tuple -> space separated).  Top-level
  `key = value` lines of extra_conf also override (the config loader
  rejects duplicate keys, so they are merged, not appended); sections in
  extra_conf are appended as they are.
"""

import os
import re
import signal
import socket
import ssl as _ssl
import subprocess
import time

from . import mail as _mail
from .dovecot import make_self_signed_cert
from .procs import ProcessStartError, call_check

# Test-friendly defaults: fast failures, no penalties, short shutdown.
DEFAULT_SETTINGS = {
    "workers": 2,
    "log_level": "info",
    "login_trusted_networks": "127.0.0.0/8 ::1/128",
    "haproxy_trusted_networks": "127.0.0.0/8 ::1/128",
    "auth_failure_delay": "0",
    "auth_penalty_max": "0",
    "shutdown_grace": "1s",
    "backend_connect_timeout": "2s",
    "backend_login_timeout": "5s",
    # health checks would mark the tests' fake backends down mid-test;
    # the health tests turn them on
    "health_interval": "0",
}

# Settings of a backend section taken from a DovecotBackend.
_BACKEND_KEYS = ("host", "imap_port", "pop3_port", "lmtp_port", "weight",
                 "tag", "ssl", "ssl_verify", "ssl_ca", "ssl_host", "trusted",
                 "master_user", "master_password")

# Log lines that mean the proxy is broken whatever the test expected:
# sanitizer reports (make asan) and fatal errors.
BROKEN_LOG_RE = re.compile(
    r"ERROR: (?:Address|Leak|Thread|Memory)Sanitizer|runtime error:|"
    r"SUMMARY: \w+Sanitizer|mailring-proxy: fatal: ")

# PROXY protocol v2 signature.
PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def conf_value(v):
    """A Python value in the config syntax."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return " ".join(conf_value(x) for x in v)
    return str(v)


def parse_duration_secs(v):
    """Seconds of a config duration ("250ms", "30s", "15m", "2h", "1d",
    "1w", a plain number = seconds)."""
    m = re.match(r"^\s*(\d+)\s*(ms|s|m|h|d|w)?\s*$", str(v))
    if not m:
        raise ValueError("bad duration %r" % (v,))
    mult = {"ms": 0.001, None: 1, "s": 1, "m": 60, "h": 3600,
            "d": 86400, "w": 604800}[m.group(2)]
    return int(m.group(1)) * mult


def split_extra_conf(text):
    """(top-level {key: value}, the rest) of a config snippet."""
    top = {}
    rest = []
    depth = 0
    for line in (text or "").splitlines():
        stripped = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_]+)\s*=\s*(.*)$", stripped)
        if depth == 0 and m and "{" not in stripped:
            top[m.group(1)] = m.group(2).strip()
        else:
            rest.append(line)
        depth += stripped.count("{") - stripped.count("}")
    return top, "\n".join(rest)


_FIELD_RE = re.compile(r"(\w+)=(<[^>]*>|\S+)")


def parse_fields(line):
    """{key: value} of the key=value / key=<value> fields of a log line
    (the <> are removed)."""
    out = {}
    for k, v in _FIELD_RE.findall(line):
        if v.startswith("<") and v.endswith(">"):
            v = v[1:-1]
        out[k] = v
    return out


def proxy_v2_header(src, dst=("127.0.0.1", 143), command="PROXY",
                    family=None, tlvs=b""):
    """A PROXY protocol v2 header claiming client src=(ip, port) connected
    to dst=(ip, port).  family: "TCP4"/"TCP6" (default from src's ip);
    command "LOCAL" sends no addresses."""
    import ipaddress
    import struct
    if command == "LOCAL":
        return PROXY_V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    sip = ipaddress.ip_address(src[0])
    dip = ipaddress.ip_address(dst[0])
    if family is None:
        family = "TCP6" if sip.version == 6 else "TCP4"
    if family == "TCP6":
        def b(ip):
            return (ip if ip.version == 6 else
                    ipaddress.IPv6Address("::ffff:%s" % ip)).packed
        body = b(sip) + b(dip) + struct.pack("!HH", src[1], dst[1])
        fam = 0x21
    else:
        body = sip.packed + dip.packed + struct.pack("!HH", src[1], dst[1])
        fam = 0x11
    body += tlvs
    return PROXY_V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) \
        + body


def proxy_v1_header(src, dst=("127.0.0.1", 143)):
    fam = "TCP6" if ":" in src[0] else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src[0], dst[0], src[1],
                                           dst[1])).encode()


class MailringProxy:
    """One mailring-proxy process; see the module docstring."""

    def __init__(self, procs, ports, binary, name="proxy", backends=(),
                 listeners=None, settings=None, extra_conf="",
                 passwd_lines=None, users=1000, password="pass", tls=False,
                 start=True, timeout=10.0):
        self.procs = procs
        self.ports_alloc = ports
        self.binary = binary
        self.name = name
        self.timeout = timeout
        self.users = users
        self.password = password
        self.passwd_lines = list(passwd_lines or ())
        self.dir = procs.new_dir(name)
        self.conf_path = os.path.join(self.dir, "proxy.conf")
        self.passwd_path = os.path.join(self.dir, "passwd")
        self.proc = None
        # Set True in a test that makes the proxy exit uncleanly on
        # purpose: the fixture then skips its teardown check.
        self.expect_unclean_exit = False
        self.backends = list(backends)
        self.listeners = self._norm_listeners(listeners)
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update(settings or {})
        top, self.extra_conf = split_extra_conf(extra_conf)
        self.settings.update(top)
        self.cert = self.key = None
        if tls or any(l["ssl"] for l in self.listeners.values()):
            self.cert, self.key = make_self_signed_cert(
                os.path.join(self.dir, "ssl"))
            self.settings.setdefault("ssl_cert", self.cert)
            self.settings.setdefault("ssl_key", self.key)
        self.write_passwd()
        self.write_config()
        if start:
            self.start()

    # -- configuration -------------------------------------------------
    def _norm_listeners(self, listeners):
        if listeners is None:
            listeners = ["imap"]
        if isinstance(listeners, (list, tuple)):
            listeners = {n: {} for n in listeners}
        out = {}
        for name, opts in listeners.items():
            o = dict(opts or {})
            o.setdefault("protocol", "pop3" if name.startswith("pop3")
                         else "imap")
            o.setdefault("ssl", name in ("imaps", "pop3s"))
            o.setdefault("haproxy", False)
            if "address" not in o:
                o.setdefault("port", self.ports_alloc.get())
                o["address"] = "127.0.0.1:%d" % o["port"]
                o["_auto_port"] = True
            elif "port" not in o:
                m = re.search(r":(\d+)\s*$", o["address"].split()[0])
                o["port"] = int(m.group(1)) if m else None
            out[name] = o
        return out

    def backend_sections(self):
        secs = []
        for b in self.backends:
            if isinstance(b, dict):
                d = dict(b)
                dv = d.pop("dovecot", None)
            else:
                d, dv = {}, b
            if dv is not None:
                base = {"name": dv.name, "host": dv.host,
                        "imap_port": dv.imap_port, "pop3_port": dv.pop3_port,
                        "lmtp_port": dv.lmtp_port}
                base.update(d)
                d = base
            name = d.pop("name")
            secs.append((name, d))
        return secs

    def config_text(self):
        out = ["# Generated by tests/integration/harness/mailring.py"]
        for k, v in self.settings.items():
            if v is None:
                continue
            out.append("%s = %s" % (k, conf_value(v)))
        out.append("passdb {\n  args = %s\n}" % self.passwd_path)
        for name, l in self.listeners.items():
            out.append("listener %s {" % name)
            out.append("  protocol = %s" % l["protocol"])
            out.append("  address = %s" % l["address"])
            out.append("  ssl = %s" % conf_value(bool(l["ssl"])))
            out.append("  haproxy = %s" % conf_value(bool(l["haproxy"])))
            out.append("}")
        for name, d in self.backend_sections():
            out.append("backend %s {" % name)
            for k, v in d.items():
                out.append("  %s = %s" % (k, conf_value(v)))
            out.append("}")
        if self.extra_conf.strip():
            out.append(self.extra_conf)
        return "\n".join(out) + "\n"

    def write_config(self):
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.config_text())
        os.replace(tmp, self.conf_path)

    def write_passwd(self):
        lines = ["user%d:{PLAIN}%s::::::" % (i, self.password)
                 for i in range(1, self.users + 1)]
        lines.extend(self.passwd_lines)
        tmp = self.passwd_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.passwd_path)

    def check_config(self):
        """`mailring-proxy -t -c conf`; raises with its output on error."""
        r = subprocess.run([self.binary, "-t", "-c", self.conf_path],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise ProcessStartError(
                "%s -t rejected %s (status %d):\n%s%s\n--- config ---\n%s" % (
                    self.binary, self.conf_path, r.returncode, r.stdout,
                    r.stderr, self.config_text()))

    # -- lifecycle -------------------------------------------------------
    def _ready_checks(self):
        checks = [call_check(
            lambda: "mailring-proxy started" in self.log_text(),
            "logging 'mailring-proxy started'")]
        self._probes = 0
        for name, l in self.listeners.items():
            # PROXY-header listeners are not probed: an unexpected header
            # (or none) is logged, which tests about it would see.
            if l["haproxy"]:
                continue
            checks.append(self._greeting_check(name))
        return checks

    def _greeting_check(self, name):
        def probe():
            s = self.connect(name, timeout=2.0)
            try:
                self._probes += 1
                return self._read_line(s).startswith(self.greeting_prefix(name))
            finally:
                s.close()
        return call_check(probe, "greeting on listener %s" % name)

    def greeting_prefix(self, listener="imap"):
        return {"pop3": b"+OK", "lmtp": b"220 "}.get(
            self.listeners[listener]["protocol"], b"* OK")

    @staticmethod
    def _read_line(s):
        data = b""
        while b"\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def start(self):
        self.check_config()
        argv = [self.binary, "-c", self.conf_path]
        first = self.proc is None
        for attempt in range(3):
            try:
                if first:
                    self.proc = self.procs.start(
                        self.name, argv, dir=self.dir,
                        ready=self._ready_checks(), timeout=self.timeout,
                        grace=5.0)
                else:
                    self.proc._launch()
                    try:
                        self.proc.wait_ready(self._ready_checks(),
                                             self.timeout)
                    except ProcessStartError:
                        self.proc.stop(grace=1.0)
                        raise
                break
            except ProcessStartError as e:
                auto = [l for l in self.listeners.values()
                        if l.get("_auto_port")]
                # A port taken by someone else since we picked it: pick
                # new ones and try again (first start only; the failed
                # ManagedProcess stays in procs, stopped).
                if attempt == 2 or "Address already in use" not in str(e) \
                        or not auto or not first:
                    raise
                for l in auto:
                    l["port"] = self.ports_alloc.get()
                    l["address"] = "127.0.0.1:%d" % l["port"]
                self.write_config()
        # Let the probe connections be closed on the proxy side too, so
        # they neither count against max_connections_per_ip nor show up
        # later in the log.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and \
                self.log_text().count("info: Disconnected:") < self._probes:
            time.sleep(0.01)
        self.log_mark = len(self.log_text())
        return self

    def stop(self, grace=None):
        """SIGTERM, wait (grace, default 5 s), SIGKILL; returns the exit
        status."""
        if self.proc is None:
            return None
        return self.proc.stop(grace=grace)

    def kill(self):
        """SIGKILL (crash simulation); also sets expect_unclean_exit."""
        self.expect_unclean_exit = True
        if self.proc is not None:
            self.proc.kill()

    def teardown_check(self):
        """Stops a still running proxy with SIGTERM (waiting
        shutdown_grace + 5 s) and returns a list of problems: an exit
        status other than 0 (at teardown, or earlier: a crash during the
        test), sanitizer reports or fatal lines in the log.
        The mailring_proxy fixture fails the test's teardown on any."""
        if self.proc is None or self.expect_unclean_exit:
            return []
        problems = []
        if self.running():
            try:
                grace = parse_duration_secs(
                    self.settings.get("shutdown_grace", "30s")) + 5
            except ValueError:
                grace = 35
            rc = self.proc.stop(grace=grace)
            if rc != 0:
                problems.append("%s: exit status %s after SIGTERM at "
                                "teardown (negative: killed by that "
                                "signal)" % (self.name, rc))
        elif self.proc.returncode not in (0, None):
            # died during the test (crash) or a stop() that needed SIGKILL
            problems.append("%s: exited with status %s during the test "
                            "(negative: killed by that signal)" % (
                                self.name, self.proc.returncode))
        bad = [l for l in self.log_lines() if BROKEN_LOG_RE.search(l)]
        if bad:
            problems.append("%s: broken log lines:\n  %s" % (
                self.name, "\n  ".join(bad[:20])))
        return problems

    def running(self):
        return self.proc is not None and self.proc.running()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def signal(self, sig):
        self.proc.signal(sig)

    def reload(self, wait=True, timeout=5.0):
        """SIGHUP; wait=True: wait for 'configuration reloaded' or 'reload
        failed' and return that log line (raises if the reload failed)."""
        markers = ("configuration reloaded", "reload failed")
        before = sum(self.log_text().count(m) for m in markers)
        self.proc.signal(signal.SIGHUP)
        if not wait:
            return None
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in self.log_text().splitlines()
                     if any(m in l for m in markers)]
            if len(lines) > before:
                line = lines[-1]
                if "reload failed" in line:
                    raise AssertionError("reload failed: %s" % line)
                return line
            if time.monotonic() > deadline or not self.running():
                self.proc.fail("did not log the reload")
            time.sleep(0.02)

    def reconfigure(self, backends=None, settings=None, extra_conf=None,
                    wait=True):
        """Change backends / settings / extra sections, rewrite the
        config and reload.  Returns reload()'s line."""
        if backends is not None:
            self.backends = list(backends)
        if settings is not None:
            self.settings.update(settings)
        if extra_conf is not None:
            top, self.extra_conf = split_extra_conf(extra_conf)
            self.settings.update(top)
        self.write_config()
        self.check_config()
        return self.reload(wait=wait)

    # -- addresses and clients ---------------------------------------------
    def port(self, listener="imap"):
        return self.listeners[listener]["port"]

    @property
    def ports(self):
        return {n: l["port"] for n, l in self.listeners.items()}

    @property
    def host(self):
        return "127.0.0.1"

    def addr(self, listener="imap"):
        return (self.host, self.port(listener))

    def connect(self, listener="imap", timeout=5.0, tls=None, header=None):
        """A raw socket to a listener (TLS-wrapped for ssl listeners
        unless tls=False; certificates are not verified); header bytes
        (PROXY header) are sent first."""
        l = self.listeners[listener]
        s = socket.create_connection(self.addr(listener), timeout=timeout)
        if header:
            s.sendall(header)
        if tls if tls is not None else l["ssl"]:
            s = _mail.no_tls_verify_context().wrap_socket(
                s, server_hostname="localhost")
        return s

    def imap(self, listener="imap", user=None, password="pass", timeout=10.0,
             starttls=False, ssl_context=None):
        """imaplib connection (logged in if user is given)."""
        return _mail.imap_connect(
            self.host, self.port(listener), user=user, password=password,
            timeout=timeout, ssl=bool(self.listeners[listener]["ssl"]),
            starttls=starttls, ssl_context=ssl_context)

    def raw(self, listener="imap", timeout=5.0, greeting=True, **kw):
        """RawClient on a new connection; greeting=True reads and checks
        the greeting (kept in .greeting)."""
        c = RawClient(self.connect(listener, timeout=timeout, **kw), timeout)
        c.greeting = None
        if greeting:
            c.greeting = c.line()
            if not c.greeting.startswith(self.greeting_prefix(listener)):
                raise AssertionError("unexpected greeting %r" % c.greeting)
        return c

    def client_ssl_context(self):
        """An SSL context that trusts (only) this proxy's certificate."""
        ctx = _ssl.create_default_context(cafile=self.cert)
        return ctx

    # -- logs ----------------------------------------------------------------
    def log_text(self):
        """The whole log (stderr.log, with the harness's '==== start'
        markers)."""
        try:
            with open(os.path.join(self.dir, "stderr.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self, pattern=None, since_start=False):
        """Log lines (matching regex pattern if given).  since_start=True:
        only what was logged after the readiness probes."""
        text = self.log_text()
        if since_start:
            text = text[getattr(self, "log_mark", 0):]
        lines = text.splitlines()
        if pattern is None:
            return lines
        rx = re.compile(pattern)
        return [l for l in lines if rx.search(l)]

    def events(self, kind, since_start=True):
        """Parsed fields of the '<level>: <kind>: ...' lines, e.g.
        events("Login") -> [{"user": "user1", "backend": "b1", ...}]."""
        rx = re.compile(r"\b(?:debug|info|notice|warning|error): %s: "
                        % re.escape(kind))
        out = []
        for l in self.log_lines(since_start=since_start):
            m = rx.search(l)
            if m:
                f = parse_fields(l[m.end():])
                f["_line"] = l
                out.append(f)
        return out

    def wait_log(self, pattern, count=1, timeout=5.0, since_start=True):
        """Wait until >= count lines match pattern; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines(pattern, since_start=since_start)
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    "%s: no %d log lines matching %r in %.1fs; log tail:\n%s"
                    % (self.name, count, pattern, timeout,
                       "\n".join(self.log_lines()[-30:])))
            time.sleep(0.02)

    def rss_kb(self):
        """VmRSS of the proxy process in KiB."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for pid %s" % self.pid)

    def __repr__(self):
        return "<MailringProxy %s pid=%s %s>" % (self.name, self.pid,
                                                  self.ports)


class RawClient:
    """A line-oriented raw socket client for byte-exact protocol tests.

        c = RawClient(sock)          # or proxy.raw("imap")
        c.line()        -> b"* OK ...\\r\\n" (one line, with its CRLF)
        c.send(b"a NOOP\\r\\n")
        c.command(b"a", b"NOOP") -> (untagged lines, tagged line)
        c.closed(timeout) -> True once the peer closed (EOF or reset)
    """

    def __init__(self, sock, timeout=5.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; unread: %r" % self.buf[-300:])
        self.buf += chunk

    def line(self, timeout=None):
        """Next line including CRLF (EOFError if the peer closes first)."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line; have %r" % self.buf[-300:])
            self._fill(left)
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("short read: %d of %d" % (len(self.buf),
                                                              n))
            self._fill(left)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def until_tagged(self, tag, timeout=None):
        """Lines up to and including the one starting with `tag `.
        Returns (other lines, tagged line).  Literals in responses are
        read as part of the line they follow."""
        if isinstance(tag, str):
            tag = tag.encode()
        lines = []
        while True:
            l = self.line(timeout)
            while True:
                m = re.search(rb"\{(\d+)\}\r\n$", l)
                if not m:
                    break
                l += self.read_exact(int(m.group(1)), timeout)
                l += self.line(timeout)
            if l.startswith(tag + b" "):
                return lines, l
            lines.append(l)

    def command(self, tag, text, timeout=None):
        if isinstance(tag, str):
            tag = tag.encode()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tagged(tag, timeout)

    def closed(self, timeout=3.0):
        """True if the peer closes within timeout (pending lines are
        dropped into self.rest)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except EOFError:
                return True
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- waiting for other servers' logs --------------------------------------

def wait_until(fn, timeout=5.0, what="condition", interval=0.02):
    """Poll fn() until it returns something true (returned) or raise
    AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


_DOVECOT_LOGIN_RE = re.compile(
    r"imap-login: (?:Info: )?Login: user=<([^>]*)>(.*)")


def dovecot_logins(b, count=0, timeout=5.0):
    """[(user, {field: value, "_line": line})] of a DovecotBackend's
    'imap-login: Login:' lines, in order.  count > 0: wait (up to timeout)
    until there are at least that many -- Dovecot's log process writes a
    moment after the login was answered, so right after the proxy's own
    Login line the backend's may not be there yet."""
    def get():
        out = []
        for l in b.log_text().splitlines():
            m = _DOVECOT_LOGIN_RE.search(l)
            if m:
                f = dict(re.findall(r"(\w+)=<?([^,>]*)>?", m.group(2)))
                f["_line"] = l
                out.append((m.group(1), f))
        return out
    if count:
        wait_until(lambda: len(get()) >= count, timeout,
                   "%d Dovecot logins in %s" % (count, b.log_path))
    return get()
