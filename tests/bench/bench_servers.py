"""Servers of the benchmark: Dovecot as backend / plain proxy / director,
mailring-proxy, mailring-backend, the load generator's null backend.

Everything reuses tests/integration/harness (ProcessManager, PortAllocator,
DovecotBackend, MailringProxy, MailringBackend); this module only adds the
Dovecot proxy and director configurations and /proc accounting.
"""

import os
import pwd
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from harness.dovecot import DovecotBackend, MAIL_USER  # noqa: E402
from harness.dovecot import prepare_mail_root as prepare_root  # noqa: E402,F401
from harness.mailring import MailringProxy  # noqa: E402
from harness.backend import MailringBackend, imap_supported  # noqa: E402
from harness.procs import tcp_greeting, ProcessStartError  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---- /proc accounting ----------------------------------------------------

def _stat(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        s = f.read()
    fields = s[s.rfind(b")") + 2:].split()
    # fields[0] = state (field 3); utime = field 14 -> index 11
    return {"ppid": int(fields[1]), "pgrp": int(fields[2]),
            "utime": int(fields[11]), "stime": int(fields[12]),
            "cutime": int(fields[13]), "cstime": int(fields[14]),
            "rss_pages": int(fields[21])}


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def process_tree(root):
    """root and all its live descendants (by ppid)."""
    children = {}
    for pid in all_pids():
        try:
            st = _stat(pid)
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(st["ppid"], []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return _status_kb(pid, "VmRSS")


class Target:
    """CPU and memory of one server: a single process (mailring) or a
    process tree (Dovecot: master + login/auth/director/proxy/log/...).

    cpu() = user+sys of every live process of the tree, plus the root's
    cutime/cstime (children that exited and were reaped: Dovecot's master
    reaps its own children, so a login process that served 1 login and
    exited is still counted)."""

    def __init__(self, name, pid, tree):
        self.name = name
        self.pid = pid
        self.tree = tree

    def pids(self):
        return process_tree(self.pid) if self.tree else [self.pid]

    def cpu(self):
        total = 0
        for p in self.pids():
            try:
                st = _stat(p)
            except (OSError, ValueError, IndexError):
                continue
            total += st["utime"] + st["stime"]
            if p == self.pid:
                total += st["cutime"] + st["cstime"]
        return total / CLK_TCK

    def rss_kb(self):
        return sum(_status_kb(p, "VmRSS") for p in self.pids())

    def pss_kb(self):
        return sum(_pss_kb(p) for p in self.pids())

    def nprocs(self):
        return len(self.pids())


# ---- Dovecot as proxy / director ---------------------------------------

_PASSDB_RE = re.compile(r"passdb \{\n  driver = passwd-file\n  args = [^\n]*\n\}")


def _port_expr(imap_port, pop3_port, lmtp_port):
    # %s = the service (imap, pop3, lmtp).
    return "%%{if;%%s;eq;pop3;%d;%%{if;%%s;eq;lmtp;%d;%d}}" % (
        pop3_port, lmtp_port, imap_port)


def _perf_login(n_clients):
    """High-performance login mode (Dovecot's recommendation for proxies:
    one login process per core, each serving many clients), sized for
    n_clients concurrent sessions."""
    per = max(1000, n_clients + 100)
    return """
service imap-login {
  service_count = 0
  process_min_avail = %(cores)d
  client_limit = %(per)d
  vsz_limit = 2G
}
service pop3-login {
  service_count = 0
  process_min_avail = %(cores)d
  client_limit = %(per)d
  vsz_limit = 2G
}
service auth {
  client_limit = %(auth)d
}
service anvil {
  client_limit = %(auth)d
}
service log {
  client_limit = %(auth)d
}
ssl_curve_list = X25519
""" % {"cores": os.cpu_count() or 1, "per": per, "auth": per + 1000}


class DovecotProxy(DovecotBackend):
    """Dovecot 2.3 as a plain proxy (proxy=y passdb with host=) or as a
    director + proxy (director=True: host= left out, the director picks
    from director_mail_servers).  The client's password is forwarded (the
    same passwd-file as the backend, checked here first like mailring).
    """

    def __init__(self, procs, ports, name, backend_host, imap_port,
                 pop3_port, lmtp_port, director=False, clients=1000,
                 null_backend=False, source_ips=False, **kw):
        self.director = director
        self.backend_host = backend_host
        self.b_ports = (imap_port, pop3_port, lmtp_port)
        self.clients = clients
        self.director_port = ports.get() if director else None
        extra = _perf_login(clients)
        extra += "lmtp_proxy = yes\nlogin_proxy_max_disconnect_delay = 0\n"
        if source_ips:
            extra += "login_source_ips = %s\n" % " ".join(
                "127.0.1.%d" % i for i in range(1, 9))
        if director:
            extra += """
director_servers = 127.0.0.1:%(dport)d
director_mail_servers = %(host)s
director_user_expire = 15 min
service director {
  unix_listener login/director {
    mode = 0666
  }
  fifo_listener login/proxy-notify {
    mode = 0666
  }
  unix_listener director-userdb {
    mode = 0600
  }
  inet_listener {
    address = 127.0.0.1
    port = %(dport)d
  }
  client_limit = %(cl)d
}
service imap-login {
  executable = imap-login director
}
service pop3-login {
  executable = pop3-login director
}
protocol lmtp {
  auth_socket_path = director-userdb
}
""" % {"dport": self.director_port, "host": backend_host,
                "cl": clients + 1000}
        kw.setdefault("ssl", True)
        super().__init__(procs, ports, name=name, extra_conf=extra, **kw)

    def config_text(self):
        text = super().config_text()
        fields = "proxy=y port=%s" % _port_expr(*self.b_ports)
        if not self.director:
            fields += " host=%s" % self.backend_host
        passdb = ("passdb {\n  driver = passwd-file\n"
                  "  args = scheme=PLAIN username_format=%%Lu %s\n"
                  "  override_fields = %s\n}" % (self.passwd_path, fields))
        text, n = _PASSDB_RE.subn(lambda m: passdb, text)
        assert n == 1, "passdb block not found in the Dovecot template"
        return text

    def _ready_checks(self):
        return [tcp_greeting(self.host, self.imap_port, b"* OK"),
                tcp_greeting(self.host, self.pop3_port, b"+OK")]

    def target(self):
        return Target(self.name, self.proc.pid, tree=True)


def dovecot_backend(procs, ports, users, idle_sessions=1000,
                    name="dovecot", **kw):
    extra = _perf_login(idle_sessions) + """
service imap {
  process_limit = %(pl)d
  client_limit = 1
  vsz_limit = 1G
}
service pop3 {
  process_limit = 1000
}
service lmtp {
  process_min_avail = 2
  client_limit = 1
  process_limit = 200
}
mail_fsync = never
""" % {"pl": idle_sessions + 200}
    return DovecotBackend(procs, ports, name=name, ssl=True,
                          users=users, extra_conf=extra, **kw)


def dovecot_target(dv):
    return Target(dv.name, dv.proc.pid, tree=True)


# ---- mailring ----------------------------------------------------------

def mailring_proxy(procs, ports, binary, backend, users, name="mailring",
                   lmtp=True, settings=None, extra=()):
    """mailring-proxy with the embedded director in front of backend (a
    DovecotBackend or a dict of backend settings)."""
    listeners = {"imap": {}, "imaps": {}, "pop3": {}}
    if lmtp:
        listeners["lmtp"] = {"protocol": "lmtp"}
    st = {"workers": 0, "log_level": "info", "max_connections": 1000000,
          "max_connections_per_ip": 0, "idle_timeout": "1h",
          "login_timeout": "1m", "backend_login_timeout": "30s"}
    st.update(settings or {})
    st = {k: v for k, v in st.items() if v is not None}
    return MailringProxy(procs, ports, binary, name=name,
                         backends=[backend], listeners=listeners,
                         settings=st, users=users, tls=True, timeout=30,
                         passwd_lines=list(extra))


def mailring_target(p, name="mailring-proxy"):
    return Target(name, p.pid, tree=False)


def mailring_backend(procs, ports, binary, users, mail_root):
    ok, why = imap_supported(binary)
    if not ok:
        raise RuntimeError("mailring-backend has no IMAP yet: %s" % why)
    return MailringBackend(procs, ports, binary, name="mrbackend",
                           users=users, mail_root=mail_root, imap=True,
                           lmtp=True, settings={"workers": 0,
                                                "log_level": "info"})


# ---- the load generator's null backend -----------------------------------

def null_backend(procs, ports, gen_binary, proto="imap", message_size=None):
    port = ports.get()
    argv = [gen_binary, "--serve", proto, "--listen", "127.0.0.1:%d" % port]
    if message_size:
        argv += ["--message-size", str(message_size)]
    greet = b"* OK" if proto == "imap" else b"+OK"
    p = procs.start("null-%s" % proto, argv,
                    ready=[tcp_greeting("127.0.0.1", port, greet)],
                    timeout=15)
    p.port = port
    return p


# ---- mail ----------------------------------------------------------------

def fill_maildir(mail_root, user, count, size, seed=1):
    """count messages of ~size bytes into <mail_root>/<user>/Maildir/cur,
    owned by the mail user (Dovecot reads them as uid 8)."""
    pw = pwd.getpwnam(MAIL_USER)
    base = os.path.join(mail_root, user.lower(), "Maildir")
    for sub in ("", "cur", "new", "tmp"):
        d = os.path.join(base, sub)
        os.makedirs(d, exist_ok=True)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    os.chown(os.path.join(mail_root, user.lower()), pw.pw_uid, pw.pw_gid)
    line = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, "
            b"sed do eiusmod tempor incididunt ut labore 0123456789\r\n")
    body_lines = max(1, size // len(line))
    body = line * body_lines
    now = int(time.time())
    for i in range(count):
        hdr = ("From: bench%d@example.com\r\nTo: %s@example.com\r\n"
               "Subject: bench message %d\r\nMessage-ID: <b%d.%d@bench>\r\n"
               "Date: Tue, 24 Nov 2026 09:00:00 +0000\r\n\r\n"
               % (seed, user, i, seed, i)).encode()
        name = "%d.M%dP%d.bench,S=%d:2,S" % (now, i, seed,
                                             len(hdr) + len(body))
        path = os.path.join(base, "cur", name)
        with open(path, "wb") as f:
            f.write(hdr)
            f.write(body)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return base


__all__ = ["Target", "DovecotProxy", "dovecot_backend", "dovecot_target",
           "mailring_proxy", "mailring_target", "mailring_backend",
           "null_backend", "fill_maildir", "process_tree",
           "ProcessStartError"]
