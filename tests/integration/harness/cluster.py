"""Several mailring-proxy instances sharing one redis-server and a set of
Dovecot backends sharing one mail root: the multi-proxy director ring.

    c = mailring_cluster(proxies=3, backends=3)          # plugin.py fixture
    c.proxies[k]          MailringProxy (proxy_name = c.names[k] = proxy<k+1>)
    c.backends[i]         DovecotBackend, backend section name c.bnames[i]
                          (= b<i+1>); all share c.mail_root
    c.redis               RedisServer (None with store="embedded", redis=False)
    c.forwarders[k][i]    TcpForwarder proxy k -> backend i (forwarders=True)
    c.sockets[k]          admin socket of proxy k

Indexes are 0-based everywhere: "proxy 1" of a test plan is c.proxies[0].

Every proxy gets its own ports, admin socket, proxy_name and log; with
store="redis" (the default) also director_store = redis, redis_address,
a redis_prefix of its own per cluster, and the ring timings below.  With
forwarders=True the backend sections of proxy k point to forwarder (k, i)
instead of the Dovecot itself (IMAP port only: that is what logins and
health checks use; POP3/LMTP go directly), so a test can cut one proxy's
path to one backend: c.cut(k, i) / c.restore(k, i).

Helpers: cli(k, *args, json=True), cli_run(), admin() (raw HTTP on the
admin socket), status(), map_user(), map_users() (thousands of /map
requests), restart_redis() / kill_redis() / start_redis() / stop_redis()
(same port; the data is gone), kill_backend(i) (kill -9) /
start_backend(i) / stop_backend(i), sessions() (every proxied session
from the proxies' logs) and find_overlaps() (I1 violations).

director_store_support() tells whether the built proxy knows the
director_store setting at all (the Redis store is being built): tests
that need it skip, with that reason, only while it does not.
"""

import calendar
import json as _json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import namedtuple
from urllib.parse import quote

from .mailring import parse_fields, wait_until
from .procs import ProcessStartError, call_check

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

# Health checks fast enough for tests: a backend is down after
# fall * (interval + timeout) at worst.
CLUSTER_HEALTH = {"health_interval": "300ms", "health_timeout": "300ms",
                  "health_fall": 2, "health_rise": 2}
# The ring's own timings (see the brief of the Redis store).
RING_TIMINGS = {"redis_timeout": "500ms",
                "proxy_heartbeat_interval": "1s",
                "proxy_dead_timeout": "3s",
                "director_move_timeout": "3s"}


def build_dir():
    """MAILRING_BUILD or <repo>/build (like the mailring_build fixture)."""
    return os.path.abspath(os.environ.get("MAILRING_BUILD")
                           or os.path.join(REPO_ROOT, "build"))


# ---- does the proxy know the Redis store yet? ---------------------------

_support_cache = {}

_PROBE_CONF = """\
director_store = redis
redis_address = 127.0.0.1:6379
passdb {
  args = %(passwd)s
}
listener imap {
  protocol = imap
  address = 127.0.0.1:143
}
backend b1 {
  host = 127.0.0.1
  imap_port = 143
}
"""


def director_store_support(binary=None):
    """(supported, reason): runs `mailring-proxy -t` on a minimal config
    with `director_store = redis`.  Not supported only if the binary is
    missing or its config check complains about director_store itself
    (unknown setting / value); any other outcome counts as supported, so
    tests turn on by themselves once the setting exists (and then fail
    loudly if the rest is not right)."""
    binary = binary or os.path.join(build_dir(), "mailring-proxy")
    if binary in _support_cache:
        return _support_cache[binary]
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        res = (False, "%s is not built" % binary)
    else:
        d = tempfile.mkdtemp(prefix="mrprobe-")
        try:
            passwd = os.path.join(d, "passwd")
            with open(passwd, "w") as f:
                f.write("user1:{PLAIN}pass::::::\n")
            conf = os.path.join(d, "proxy.conf")
            with open(conf, "w") as f:
                f.write(_PROBE_CONF % {"passwd": passwd})
            r = subprocess.run([binary, "-t", "-c", conf],
                               capture_output=True, text=True, timeout=20)
            out = (r.stdout + r.stderr).strip()
            if r.returncode != 0 and "director_store" in out:
                res = (False, "mailring-proxy does not support "
                       "`director_store = redis` yet (the Redis-shared "
                       "director store): %s" % out.splitlines()[0])
            else:
                res = (True, out)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    _support_cache[binary] = res
    return res


def cli_supports(command, cli_binary=None):
    """True if `mailring --help` lists COMMAND (e.g. "add")."""
    cli_binary = cli_binary or os.path.join(build_dir(), "mailring")
    try:
        r = subprocess.run([cli_binary, "--help"], capture_output=True,
                           text=True, timeout=10)
    except OSError:
        return False
    return re.search(r"^\s+%s\b" % re.escape(command),
                     r.stdout + r.stderr, re.M) is not None


# ---- sessions from the proxies' logs ---------------------------------------

Session = namedtuple("Session", "proxy id user backend start end reason")
Session.__doc__ = """One proxied session: proxy index, session id, user,
backend name, start (epoch s of the `Login:` line), end (epoch s of the
matching `Logout:`/`Disconnected:` line, None while open), reason."""

_LOG_LINE_RE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z \S+: \w+: "
    r"(Login|Logout|Disconnected): (.*)$")


def parse_log_time(stamp, frac=""):
    """'2026-11-24T03:48:09' + '.077' (UTC) -> epoch seconds (float)."""
    t = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    return t + (float(frac) if frac else 0.0)


def sessions_from_lines(lines, proxy=0):
    """Sessions of one proxy's log lines: each `Login:` line (user,
    backend, session id) is matched with the next `Logout:` or
    `Disconnected:` line of the same session id."""
    out = []
    open_ = {}
    for line in lines:
        m = _LOG_LINE_RE.match(line)
        if not m:
            continue
        f = parse_fields(m.group(4))
        sid = f.get("session")
        if not sid:
            continue
        t = parse_log_time(m.group(1), m.group(2))
        if m.group(3) == "Login":
            if "backend" not in f:
                continue
            open_[sid] = len(out)
            out.append(Session(proxy, sid, f.get("user", ""), f["backend"],
                               t, None, None))
        elif sid in open_:
            i = open_.pop(sid)
            out[i] = out[i]._replace(end=t, reason=f.get("reason"))
    return out


def find_overlaps(sessions, now=None):
    """I1 violations: pairs (a, b) of sessions of the same user on
    different backends whose [start, end) intervals intersect by more
    than nothing (max(starts) < min(ends), strictly: the proxies'
    timestamps have millisecond precision, and a Logout logged in the
    same millisecond as the other backend's Login is no overlap).  An open session
    (end None) lasts until `now` (default: forever)."""
    inf = float("inf") if now is None else now
    by_user = {}
    for s in sessions:
        by_user.setdefault(s.user, []).append(s)
    bad = []
    for user, ss in by_user.items():
        if len({s.backend for s in ss}) < 2:
            continue
        ss.sort(key=lambda s: s.start)
        active = []
        for s in ss:
            active = [a for a in active
                      if (a.end if a.end is not None else inf) > s.start]
            s_end = s.end if s.end is not None else inf
            for a in active:
                a_end = a.end if a.end is not None else inf
                if a.backend != s.backend and \
                        max(a.start, s.start) < min(a_end, s_end):
                    bad.append((a, s))
            active.append(s)
    return bad


def describe_overlap(a, b):
    def one(s):
        end = "open" if s.end is None else "%.3f" % s.end
        return "proxy%d session %s on %s [%.3f, %s)" % (
            s.proxy + 1, s.id, s.backend, s.start, end)
    ov_end = min(x for x in (a.end, b.end, float("inf")) if x is not None)
    return "user %s: %s overlaps %s (by %s)" % (
        a.user, one(a), one(b),
        "%.3fs" % (ov_end - b.start) if ov_end != float("inf") else "ever")


# ---- the cluster -------------------------------------------------------------

class CliError(AssertionError):
    def __init__(self, argv, rc, stdout, stderr):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr
        try:
            self.json = _json.loads(stdout)
        except ValueError:
            self.json = None
        super().__init__("%s: exit %d\nstdout: %s\nstderr: %s" % (
            " ".join(argv), rc, stdout, stderr))


class MailringCluster:
    """See the module docstring; made by the mailring_cluster fixture."""

    def __init__(self, *, make_proxy, make_backend, make_redis,
                 make_forwarder, mail_root, cli_binary, procs=None,
                 proxies=3, backends=3, store="redis", redis=None,
                 sentinels=0, forwarders=False, users=1000, settings=None,
                 proxy_settings=None, health=None, ring=None,
                 spare_backends=0, backend_extra_conf="", passwd_lines=None,
                 listeners=None, prefix=None, sockdir=None, start=True):
        self.make_proxy = make_proxy
        self.cli_binary = cli_binary
        self.procs = procs
        self.store = store
        self.mail_root = mail_root
        self.users = users
        self.n = proxies
        self.names = ["proxy%d" % (k + 1) for k in range(proxies)]
        self.bnames = ["b%d" % (i + 1) for i in range(backends)]
        self.prefix = prefix or "mrt-%s:" % uuid.uuid4().hex[:10]
        # unix socket paths must fit sun_path (108 bytes): a short dir
        self._own_sockdir = sockdir is None
        self.sockdir = sockdir or tempfile.mkdtemp(prefix="mrc-")
        os.makedirs(self.sockdir, exist_ok=True)
        os.chmod(self.sockdir, 0o755)
        self.sockets = [os.path.join(self.sockdir, "p%d.sock" % (k + 1))
                        for k in range(proxies)]
        self.proxies = []
        self.sentinels = []
        self.sentinel_master = "mailring"
        use_redis = (store == "redis") if redis is None else redis
        self.redis = make_redis(name="redis") if use_redis else None
        if sentinels:
            self._start_sentinels(sentinels)
        self.backends = [make_backend(name=n, mail_root=mail_root,
                                      users=users,
                                      extra_conf=backend_extra_conf)
                         for n in self.bnames]
        # started, sharing the mail root, but in no proxy's config: for
        # `mailring add` (see add_backend)
        self.spares = [make_backend(name="b%d" % (backends + j + 1),
                                    mail_root=mail_root, users=users,
                                    extra_conf=backend_extra_conf)
                       for j in range(spare_backends)]
        self.forwarders = None
        if forwarders:
            self.forwarders = [
                [make_forwarder(b.imap_port, name="p%d->%s" % (k + 1, bn))
                 for b, bn in zip(self.backends, self.bnames)]
                for k in range(proxies)]
        self.settings = []
        for k in range(proxies):
            s = {"admin_socket": self.sockets[k],
                 "max_connections_per_ip": 0}
            s.update(CLUSTER_HEALTH if health is None else health)
            if store == "redis":
                s.update(self.store_settings(k))
                s.update(RING_TIMINGS if ring is None else ring)
            s.update(settings or {})
            if proxy_settings and k < len(proxy_settings) \
                    and proxy_settings[k]:
                s.update(proxy_settings[k])
            self.settings.append(s)
        self._proxy_kw = dict(users=users, passwd_lines=passwd_lines,
                              listeners=listeners)
        if start:
            self.start()

    # -- configuration ---------------------------------------------------
    def store_settings(self, k):
        s = {"director_store": "redis", "redis_prefix": self.prefix,
             "proxy_name": self.names[k]}
        if self.sentinels:
            s["redis_sentinels"] = ["127.0.0.1:%d" % p
                                    for p, _ in self.sentinels]
            s["redis_sentinel_master"] = self.sentinel_master
        elif self.redis is not None:
            s["redis_address"] = "%s:%d" % (self.redis.host, self.redis.port)
        return s

    def backend_sections(self, k):
        """Backend sections of proxy k (through its forwarders if any)."""
        out = []
        for i, (b, bn) in enumerate(zip(self.backends, self.bnames)):
            if self.forwarders is None:
                out.append({"dovecot": b, "name": bn})
            else:
                f = self.forwarders[k][i]
                out.append({"name": bn, "host": f.host, "imap_port": f.port,
                            "pop3_port": b.pop3_port,
                            "lmtp_port": b.lmtp_port})
        return out

    def start(self):
        """Start the proxies (in order, from the calling = main thread)."""
        for k in range(self.n):
            p = self.make_proxy(backends=self.backend_sections(k),
                                name=self.names[k],
                                settings=self.settings[k], **self._proxy_kw)
            self.proxies.append(p)
        for k in range(self.n):
            self.wait_admin(k)
        return self

    def wait_admin(self, k, timeout=5.0):
        wait_until(lambda: os.path.exists(self.sockets[k]), timeout,
                   "admin socket %s of %s" % (self.sockets[k], self.names[k]))

    def begin_stop(self):
        """SIGTERM every proxy at once (the fixture then waits for each)."""
        for p in self.proxies:
            if p.proc is not None:
                p.proc.begin_stop()

    def cleanup(self):
        if self._own_sockdir:
            shutil.rmtree(self.sockdir, ignore_errors=True)

    # -- CLI and admin API -------------------------------------------------
    def cli_run(self, k, *args, json=False, timeout=20):
        """`mailring -s SOCKET [--json] args...` -> CompletedProcess."""
        argv = [self.cli_binary, "-s", self.sockets[k]] + \
            (["--json"] if json else []) + [str(a) for a in args]
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout)

    def cli(self, k, *args, json=True, timeout=20):
        """json=True: the parsed JSON answer (CliError if the exit
        status is not 0); json=False: (exit status, stdout)."""
        r = self.cli_run(k, *args, json=json, timeout=timeout)
        if not json:
            return r.returncode, r.stdout
        if r.returncode != 0:
            raise CliError(r.args, r.returncode, r.stdout, r.stderr)
        return _json.loads(r.stdout)

    def admin(self, k, method, path, body=None, timeout=10.0):
        """One HTTP request on proxy k's admin socket -> (status, body):
        body parsed as JSON when it is JSON, else text."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = _json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        req = "%s %s HTTP/1.1\r\nHost: mailring\r\n" % (method, path)
        if body is not None:
            req += "Content-Type: application/json\r\nContent-Length: %d\r\n" \
                % len(body)
        raw = req.encode() + b"\r\n" + (body or b"")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.sockets[k])
            s.sendall(raw)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        try:
            return status, _json.loads(payload)
        except ValueError:
            return status, payload.decode("utf-8", "replace")

    def status(self, k):
        """{backend name: status entry} of proxy k (GET /status)."""
        st, body = self.admin(k, "GET", "/status")
        assert st == 200, (st, body)
        return {b["name"]: b for b in body["backends"]}

    def states(self, backend):
        """[state of backend on proxy k for every k]."""
        return [self.status(k)[backend]["state"] for k in range(self.n)]

    def map_user(self, k, user):
        st, body = self.admin(k, "GET", "/map?user=%s" % quote(user, safe=""))
        assert st == 200, (st, body)
        return body

    def map_users(self, k, users):
        """{user: backend} of GET /map for every user, on proxy k."""
        return {u: self.map_user(k, u).get("backend") for u in users}

    def map_all(self, users):
        """[{user: backend} of proxy k for each k], proxies in parallel
        threads (each proxy serves one admin client at a time)."""
        out = [None] * self.n
        errors = []

        def run(k):
            try:
                out[k] = self.map_users(k, users)
            except Exception as e:  # noqa: BLE001 - re-raised below
                errors.append(e)
        ts = [threading.Thread(target=run, args=(k,)) for k in range(self.n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]
        return out

    def wait_all(self, fn, timeout=5.0, what="condition", interval=0.05):
        """Poll until fn(k) is true for every proxy k; returns the time it
        took (s)."""
        t0 = time.monotonic()
        wait_until(lambda: all(fn(k) for k in range(self.n)), timeout, what,
                   interval)
        return time.monotonic() - t0

    def add_backend(self, k, spare=0, weight=100):
        """`mailring add HOST:PORT WEIGHT` (--json) of spare backend
        `spare` through proxy k (docs/director.md: PORT is the IMAP port,
        the other settings come from director_backend_template; the new
        backend's name is "HOST:PORT").  Returns (name,
        CompletedProcess)."""
        b = self.spares[spare]
        name = "%s:%d" % (b.host, b.imap_port)
        return name, self.cli_run(k, "add", name, weight, json=True)

    # -- Redis --------------------------------------------------------------
    def kill_redis(self):
        self.redis.kill()

    def stop_redis(self):
        self.redis.stop()

    def start_redis(self):
        """Start again on the same port (empty: nothing is persisted)."""
        self.redis.start()

    def restart_redis(self, down_seconds=0.0):
        self.redis.restart(down_seconds=down_seconds)

    def redis_keys(self):
        """Keys under this cluster's prefix."""
        with self.redis.client() as c:
            return c.command("KEYS", self.prefix + "*")

    def _start_sentinels(self, n):
        """n redis sentinels (redis-server --sentinel) watching self.redis
        as master `mailring`, quorum 1."""
        from .redis import REDIS_SERVER, RespClient
        for j in range(n):
            port = self.redis.ports.get()
            d = self.redis.procs.new_dir("sentinel%d" % (j + 1))
            conf = os.path.join(d, "sentinel.conf")
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\nprotected-mode no\n"
                        "dir %s\nsentinel monitor %s %s %d 1\n"
                        "sentinel down-after-milliseconds %s 1000\n"
                        "sentinel failover-timeout %s 5000\n" % (
                            port, d, self.sentinel_master, self.redis.host,
                            self.redis.port, self.sentinel_master,
                            self.sentinel_master))

            def ping(port=port):
                with RespClient("127.0.0.1", port, timeout=1.0) as c:
                    return c.command("PING") == "PONG"
            proc = self.redis.procs.start(
                "sentinel%d" % (j + 1), [REDIS_SERVER, conf, "--sentinel"],
                dir=d, ready=call_check(ping, "answering PING"), timeout=10)
            self.sentinels.append((port, proc))

    def sentinel_master_addr(self, j=0):
        from .redis import RespClient
        with RespClient("127.0.0.1", self.sentinels[j][0]) as c:
            host, port = c.command("SENTINEL", "get-master-addr-by-name",
                                   self.sentinel_master)
        return host.decode(), int(port)

    # -- backends and paths -------------------------------------------------
    def kill_backend(self, i):
        """kill -9 Dovecot i (master and all its children)."""
        self.backends[i].kill()

    def stop_backend(self, i):
        self.backends[i].stop()

    def start_backend(self, i):
        """Start Dovecot i again (same ports, same mail root)."""
        self.backends[i].start()

    def cut(self, k, i, mode="refuse", existing="close"):
        """Cut proxy k's path to backend i (forwarders=True)."""
        self.forwarders[k][i].cut(mode=mode, existing=existing)

    def restore(self, k, i):
        self.forwarders[k][i].restore()

    # -- logs -----------------------------------------------------------------
    def sessions(self):
        """Every session of every proxy (see Session), from the logs."""
        out = []
        for k, p in enumerate(self.proxies):
            out.extend(sessions_from_lines(p.log_lines(), proxy=k))
        return out

    def events(self, kind):
        """p.events(kind) of every proxy, each with "proxy": k."""
        out = []
        for k, p in enumerate(self.proxies):
            for e in p.events(kind, since_start=False):
                e["proxy"] = k
                out.append(e)
        return out

    def login_backend(self, k, user, count=1, timeout=5.0):
        """The backend of user's count-th Login line on proxy k (waits)."""
        def get():
            evs = [e for e in self.proxies[k].events("Login",
                                                     since_start=False)
                   if e.get("user") == user]
            return evs[count - 1]["backend"] if len(evs) >= count else None
        return wait_until(get, timeout, "Login %d of %s on %s" % (
            count, user, self.names[k]))

    def __repr__(self):
        return "<MailringCluster %d proxies, backends %s, store %s>" % (
            self.n, self.bnames, self.store)


__all__ = ["MailringCluster", "Session", "CliError", "CLUSTER_HEALTH",
           "RING_TIMINGS", "build_dir", "director_store_support",
           "cli_supports", "sessions_from_lines", "find_overlaps",
           "describe_overlap", "parse_log_time", "ProcessStartError"]
