"""pytest fixtures and hooks of the integration harness.

conftest.py re-exports everything here; see tests/integration/README.md.
"""

import os
import re
import shutil
import stat
import tempfile

import pytest

from . import mail as _mail
from .dovecot import DovecotBackend, prepare_mail_root
from .mailring import MailringProxy
from .ports import default_allocator
from .procs import ProcessManager
from .redis import RedisServer

__all__ = [
    "pytest_runtest_makereport", "pytest_sessionfinish",
    "mailring_tmp_root", "workdir", "ports", "free_port", "procs",
    "redis_server", "redis_factory", "dovecot_backend", "mail_root",
    "corpus", "mailring_build", "mailring_bin", "mailring_proxy",
]

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION_DIR = os.path.dirname(HERE)
REPO_ROOT = os.path.normpath(os.path.join(INTEGRATION_DIR, "..", ".."))

_session_root = None  # see mailring_tmp_root


def logs_dir():
    """Where failed tests' server dirs are kept (MAILRING_LOGS_DIR or
    tests/integration/logs)."""
    return os.environ.get("MAILRING_LOGS_DIR") or os.path.join(
        INTEGRATION_DIR, "logs")


# ---- failed-test log keeping ------------------------------------------

def test_log_name(nodeid):
    """Directory name for a test under logs/: 'test_x.py::test_y[a-b]' ->
    'test_x.py__test_y[a-b]' with anything odd replaced by '_'."""
    name = nodeid.replace("::", "__").replace("/", "_")
    name = re.sub(r"[^A-Za-z0-9_.\[\]=+,-]", "_", name)
    return name[:150] or "test"


def _ignore_special(src, names):
    """copytree ignore: skip sockets, fifos, devices (Dovecot's base_dir)."""
    out = []
    for n in names:
        try:
            m = os.lstat(os.path.join(src, n)).st_mode
        except OSError:
            out.append(n)
            continue
        if not (stat.S_ISREG(m) or stat.S_ISDIR(m) or stat.S_ISLNK(m)):
            out.append(n)
    return out


def keep_logs(src_dirs, dest):
    """Copy the contents of each directory in src_dirs into dest (merging,
    newer files overwrite), skipping sockets/fifos.  Returns dest."""
    os.makedirs(dest, exist_ok=True)
    for src in src_dirs:
        if os.path.isdir(src):
            shutil.copytree(src, dest, symlinks=True, ignore=_ignore_special,
                            ignore_dangling_symlinks=True, dirs_exist_ok=True)
    return dest


def _kept_note(dest):
    return "server dirs and logs of this test were kept in:\n  %s\n" % dest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    dirs = getattr(item, "_mailring_dirs", None)
    if rep.failed:
        item._mailring_failed = True
    if not dirs:
        return
    dest = os.path.join(logs_dir(), test_log_name(item.nodeid))
    if rep.failed:
        if not getattr(item, "_mailring_kept", False):
            # A fresh copy per test run: drop what an older run left.
            shutil.rmtree(dest, ignore_errors=True)
            item._mailring_kept = True
        try:
            keep_logs(dirs, dest)
            rep.sections.append(("mailring logs", _kept_note(dest)))
        except Exception as e:  # noqa: BLE001 - never hide the real failure
            rep.sections.append(("mailring logs",
                                 "could not keep logs in %s: %r" % (dest, e)))
    if rep.when == "teardown":
        # All function fixtures are finalized: servers are stopped and
        # their logs complete.  Refresh the copy of a failed test, then
        # drop the temp dirs.
        if getattr(item, "_mailring_failed", False) and not rep.failed:
            try:
                keep_logs(dirs, dest)
            except Exception:  # noqa: BLE001
                pass
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        item._mailring_dirs = []


def pytest_sessionfinish(session, exitstatus):
    global _session_root
    if _session_root is not None:
        shutil.rmtree(_session_root, ignore_errors=True)
        _session_root = None
    default_allocator().release_all()


# ---- fixtures ---------------------------------------------------------


@pytest.fixture(scope="session")
def mailring_tmp_root():
    """Session temp root (/tmp/mrit-XXXX, mode 0755 so the unprivileged
    mail user can reach mail roots below it).  MAILRING_TMPDIR overrides
    /tmp.  Kept short: Dovecot's unix socket paths live below it."""
    global _session_root
    if _session_root is None:
        base = os.environ.get("MAILRING_TMPDIR") or "/tmp"
        _session_root = tempfile.mkdtemp(prefix="mrit-", dir=base)
        os.chmod(_session_root, 0o755)
    return _session_root


_dir_seq = [0]


@pytest.fixture
def workdir(request, mailring_tmp_root):
    """Per-test directory (str) under the session root; every server of
    the test lives below it.  Removed after a passing test; copied to
    tests/integration/logs/<test-name>/ when the test fails."""
    _dir_seq[0] += 1
    short = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:32]
    path = os.path.join(mailring_tmp_root, "%s-%d" % (short, _dir_seq[0]))
    os.makedirs(path)
    os.chmod(path, 0o755)
    dirs = getattr(request.node, "_mailring_dirs", None)
    if dirs is None:
        dirs = request.node._mailring_dirs = []
    dirs.append(path)
    return path


@pytest.fixture(scope="session")
def ports():
    """PortAllocator: ports.get() -> int, ports.get_many(n) -> [int]."""
    return default_allocator()


@pytest.fixture
def free_port(ports):
    """One free loopback TCP port (int), reserved for this session."""
    return ports.get()


@pytest.fixture
def procs(workdir):
    """ProcessManager rooted at workdir; stops what it started on
    teardown (SIGTERM, then SIGKILL of the process group)."""
    pm = ProcessManager(workdir)
    yield pm
    errors = pm.stop_all()
    if errors:
        raise RuntimeError("could not stop: %s" % "; ".join(errors))


@pytest.fixture
def redis_factory(procs, ports):
    """redis_factory(name="redis", extra_args=(), password=None) ->
    RedisServer (started)."""
    seq = [0]

    def make(name=None, **kw):
        seq[0] += 1
        return RedisServer(procs, ports, name=name or "redis%d" % seq[0], **kw)

    return make


@pytest.fixture
def redis_server(redis_factory):
    """A started RedisServer (.host, .port, .url, .command(), .client(),
    .stop(), .start(), .restart(), .kill())."""
    return redis_factory(name="redis")


@pytest.fixture
def mail_root(workdir):
    """A mail root (str) owned by the mail user, to share between
    backends: dovecot_backend(mail_root=mail_root)."""
    return prepare_mail_root(os.path.join(workdir, "mail"))


@pytest.fixture
def dovecot_backend(procs, ports):
    """Factory: dovecot_backend(name=None, mail_root=None, ssl=False,
    users=1000, password="pass", extra_conf="", extra_passwd_lines=(),
    mail_debug=False, auth_debug=False, start=True, timeout=15.0)
    -> DovecotBackend (started unless start=False).  Names default to
    dovecot1, dovecot2, ...; every instance gets its own ports, base_dir
    and instance_name."""
    seq = [0]

    def make(name=None, **kw):
        seq[0] += 1
        return DovecotBackend(procs, ports, name=name or "dovecot%d" % seq[0],
                              **kw)

    return make


@pytest.fixture(scope="session")
def corpus():
    """{file name: bytes} of tests/data/mail/*.eml."""
    return _mail.load_corpus()


@pytest.fixture(scope="session")
def mailring_build():
    """Absolute path of the build dir (MAILRING_BUILD, default <repo>/build)."""
    return os.path.abspath(os.environ.get("MAILRING_BUILD")
                           or os.path.join(REPO_ROOT, "build"))


@pytest.fixture(scope="session")
def mailring_bin(mailring_build):
    """mailring_bin("mailring-proxy") -> absolute path of that binary, or
    skip the test if it has not been built."""

    def get(name):
        path = os.path.join(mailring_build, name)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.skip("%s not built (looked in %s)" % (name, mailring_build))
        return path

    return get


@pytest.fixture
def mailring_proxy(procs, ports, mailring_bin):
    """Factory: mailring_proxy(backends=[...], listeners=None,
    settings=None, extra_conf="", passwd_lines=None, users=1000,
    password="pass", tls=False, name=None, start=True, timeout=10.0)
    -> MailringProxy (started unless start=False); the binary is
    $MAILRING_BUILD/mailring-proxy (the test is skipped if it is not
    built).  At teardown every proxy still running gets SIGTERM and must
    exit 0, and no proxy log may hold sanitizer reports or fatal lines
    (MailringProxy.teardown_check; set p.expect_unclean_exit = True to
    skip).  See harness/mailring.py and README.md."""
    binary = mailring_bin("mailring-proxy")  # skips before any server starts
    seq = [0]
    made = []

    def make(backends=(), name=None, **kw):
        seq[0] += 1
        p = MailringProxy(procs, ports, binary,
                          name=name or "proxy%d" % seq[0],
                          backends=backends, **kw)
        made.append(p)
        return p

    yield make
    problems = []
    for p in made:
        problems.extend(p.teardown_check())
    if problems:
        pytest.fail("mailring-proxy teardown check:\n" + "\n".join(problems),
                    pytrace=False)


# ---- multi-proxy ring: TCP forwarders and clusters (appended) ---------

from .cluster import MailringCluster  # noqa: E402
from .forwarder import TcpForwarder  # noqa: E402

__all__ += ["tcp_forwarder", "cluster_sockroot", "mailring_cluster"]


@pytest.fixture
def tcp_forwarder(ports):
    """Factory: tcp_forwarder(target_port, target_host="127.0.0.1",
    name=None, port=None) -> started TcpForwarder listening on a free
    loopback port (.host, .port); .cut(mode="refuse"|"blackhole",
    existing="close"|"hang"), .restore(), .close().  All are closed at
    teardown.  See harness/forwarder.py."""
    made = []

    def make(target_port, target_host="127.0.0.1", name=None, port=None):
        f = TcpForwarder(target_port, target_host=target_host,
                         port=port or ports.get(), name=name)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def cluster_sockroot():
    """A short directory for the clusters' admin sockets (sun_path is
    108 bytes); set up before and so removed after mailring_proxy."""
    d = tempfile.mkdtemp(prefix="mrc-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mailring_cluster(cluster_sockroot, procs, mailring_proxy,
                     dovecot_backend, redis_factory, mail_root,
                     tcp_forwarder, mailring_bin):
    """Factory: mailring_cluster(proxies=3, backends=3, store="redis",
    redis=None, sentinels=0, forwarders=False, users=1000,
    settings=None, proxy_settings=None, health=None, ring=None,
    spare_backends=0, backend_extra_conf="", passwd_lines=None,
    listeners=None, prefix=None, start=True) -> MailringCluster:
    N proxies (mailring_proxy, so the teardown checks apply) sharing one
    redis-server, M Dovecot backends sharing one mail root.  See
    harness/cluster.py."""
    cli_binary = mailring_bin("mailring")
    made = []

    def make(**kw):
        kw.setdefault("sockdir", os.path.join(cluster_sockroot,
                                              "c%d" % len(made)))
        c = MailringCluster(make_proxy=mailring_proxy,
                            make_backend=dovecot_backend,
                            make_redis=redis_factory,
                            make_forwarder=tcp_forwarder,
                            mail_root=mail_root, cli_binary=cli_binary,
                            procs=procs, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.begin_stop()   # all proxies at once; mailring_proxy waits


# ---- the mail node: mailring-backend (appended) -------------------------

from .backend import MailringBackend  # noqa: E402

__all__ += ["mailring_backend"]


@pytest.fixture
def mailring_backend(procs, ports, mailring_bin):
    """Factory: mailring_backend(name=None, settings=None, users=10,
    password="pass", passwd_lines=(), mail_root=None, start=True)
    -> MailringBackend (started unless start=False) running
    $MAILRING_BUILD/mailring-backend with one POP3 listener (.pop3_port)
    and mail_location = <mail_root>/%u/Maildir.  At teardown each must
    exit 0 on SIGTERM with no sanitizer or fatal line in its log.  See
    harness/backend.py."""
    binary = mailring_bin("mailring-backend")
    seq = [0]
    made = []

    def make(name=None, **kw):
        seq[0] += 1
        b = MailringBackend(procs, ports, binary,
                            name=name or "backend%d" % seq[0], **kw)
        made.append(b)
        return b

    yield make
    problems = []
    for b in made:
        problems.extend(b.teardown_check())
    if problems:
        pytest.fail("mailring-backend teardown check:\n" + "\n".join(problems),
                    pytrace=False)
