"""Process manager for integration tests.

Every process is started
  * in its own directory (<root>/<name>/) which is also its cwd,
  * with stdout/stderr captured to <dir>/stdout.log and <dir>/stderr.log,
  * in its own session / process group (start_new_session=True), so that the
    whole tree it forks (e.g. Dovecot's master and its children) can be
    stopped without touching anything else,
  * with PR_SET_PDEATHSIG=SIGKILL, so it dies if the pytest process dies.

stop() sends SIGTERM to the main pid, waits `grace` seconds, then SIGKILLs the
process group it created; it then makes sure no member of that group is left.
Only processes started by a ProcessManager are ever signalled.
"""

import atexit
import ctypes
import os
import re
import signal
import socket
import subprocess
import time

PR_SET_PDEATHSIG = 1

_live = set()  # every ManagedProcess still running, for the atexit net


class ProcessStartError(RuntimeError):
    """A managed process exited early or did not become ready in time."""


def _preexec_pdeathsig():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def tail_file(path, lines=40, max_bytes=64 * 1024):
    """Last `lines` lines of a text file ('' if missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def group_members(pgid):
    """Pids of live (non-zombie) processes in process group pgid."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % n, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces/parens.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) < 3:
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            out.append(int(n))
    return out


def _group_alive(pgid):
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies nobody has reaped yet.
    return bool(group_members(pgid))


class ManagedProcess:
    def __init__(self, manager, name, argv, dir, env=None, cwd=None,
                 extra_logs=(), stop_signal=signal.SIGTERM, grace=5.0):
        self.manager = manager
        self.name = name
        self.argv = [str(a) for a in argv]
        self.dir = dir
        self.cwd = cwd or dir
        self.env = env
        self.stdout_path = os.path.join(dir, "stdout.log")
        self.stderr_path = os.path.join(dir, "stderr.log")
        self.extra_logs = list(extra_logs)
        self.stop_signal = stop_signal
        self.grace = grace
        self.popen = None
        self.pgid = None
        self.starts = 0
        self._stop_sent_to = None

    # -- lifecycle ---------------------------------------------------
    def _launch(self):
        with open(self.stdout_path, "ab") as out, \
                open(self.stderr_path, "ab") as err:
            marker = ("==== start #%d: %s\n" % (self.starts + 1,
                                                 " ".join(self.argv))).encode()
            out.write(marker)
            err.write(marker)
            out.flush()
            err.flush()
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, preexec_fn=_preexec_pdeathsig,
                close_fds=True)
        self.pgid = self.popen.pid
        self.starts += 1
        _live.add(self)

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    @property
    def returncode(self):
        return self.popen.poll() if self.popen else None

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace=None):
        """SIGTERM (or stop_signal), wait, SIGKILL the group. Idempotent.

        Returns the exit status of the main process (None if never started).
        """
        if self.popen is None:
            return None
        grace = self.grace if grace is None else grace
        p = self.popen
        if p.poll() is None:
            self.begin_stop()
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._kill_group()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        # The main process is gone; let its children notice, then kill.
        deadline = time.monotonic() + min(grace, 2.0)
        while _group_alive(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _group_alive(self.pgid):
            self._kill_group()
            deadline = time.monotonic() + 5
            while _group_alive(self.pgid) and time.monotonic() < deadline:
                time.sleep(0.02)
        _live.discard(self)
        return p.returncode

    def begin_stop(self):
        """Send the stop signal once (no wait); stop() finishes the job."""
        if self._stop_sent_to is self.popen or not self.running():
            return
        self._stop_sent_to = self.popen
        try:
            os.kill(self.popen.pid, self.stop_signal)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL the whole group at once (crash simulation)."""
        if self.popen is None:
            return None
        self._kill_group()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return self.stop(grace=0.5)

    def _kill_group(self):
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def signal(self, sig):
        if self.running():
            os.kill(self.popen.pid, sig)

    def restart(self, ready=None, timeout=10.0):
        """Stop (if running) and start again with the same argv and dir."""
        self.stop()
        self._launch()
        if ready is not None:
            self.wait_ready(ready, timeout)
        return self

    # -- logs ----------------------------------------------------------
    def stdout_text(self):
        return _read(self.stdout_path)

    def stderr_text(self):
        return _read(self.stderr_path)

    def log_tail(self, lines=40):
        parts = []
        for path in [self.stdout_path, self.stderr_path] + self.extra_logs:
            t = tail_file(path, lines)
            parts.append("--- %s (last %d lines) ---\n%s" % (path, lines, t))
        return "\n".join(parts)

    # -- readiness -------------------------------------------------------
    def fail(self, reason):
        rc = self.returncode
        status = "exited with status %s" % rc if rc is not None else "running"
        raise ProcessStartError(
            "%s (pid %s, %s): %s\nargv: %s\nlogs in %s\n%s" % (
                self.name, self.pid, status, reason, " ".join(self.argv),
                self.dir, self.log_tail()))

    def wait_ready(self, checks, timeout=10.0):
        """Run readiness checks in order, all within `timeout` seconds.

        A check is a callable (proc, deadline) -> None that raises
        ProcessStartError (usually via proc.fail) or returns when ready;
        see tcp_greeting()."""
        if callable(checks):
            checks = [checks]
        deadline = time.monotonic() + timeout
        for check in checks:
            check(self, deadline)
        return self

    def __repr__(self):
        return "<ManagedProcess %s pid=%s>" % (self.name, self.pid)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def tcp_greeting(host, port, expect=None, read_timeout=2.0):
    """Readiness check: TCP connect succeeds and the server's first bytes
    match `expect` (bytes prefix, or compiled bytes regex searched in the
    data).  expect=None: connect only.  Returns the check callable."""

    def check(proc, deadline):
        last_err = None
        while True:
            if not proc.running():
                proc.fail("exited before %s:%d was ready" % (host, port))
            if time.monotonic() > deadline:
                proc.fail("not ready on %s:%d (expected %r) in time; last "
                          "error: %s" % (host, port, expect, last_err))
            try:
                data = _probe(host, port, expect, read_timeout, deadline)
                if data is not None:
                    return
                last_err = "unexpected greeting"
            except OSError as e:
                last_err = repr(e)
            time.sleep(0.02)

    return check


def _probe(host, port, expect, read_timeout, deadline):
    with socket.create_connection((host, port), timeout=read_timeout) as s:
        if expect is None:
            return b""
        data = b""
        while time.monotonic() < deadline:
            if _greeting_matches(data, expect):
                return data
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                return None
            if not chunk:
                return None
            data += chunk
            if len(data) > 64 * 1024:
                break
        return data if _greeting_matches(data, expect) else None


def _greeting_matches(data, expect):
    if isinstance(expect, bytes):
        return data.startswith(expect) and b"\n" in data
    if isinstance(expect, re.Pattern):
        return expect.search(data) is not None
    raise TypeError("expect must be bytes or a compiled bytes regex")


def call_check(fn, what="ready"):
    """Readiness check from a plain predicate fn() -> bool (polled)."""

    def check(proc, deadline):
        last_err = None
        while True:
            if not proc.running():
                proc.fail("exited before it was %s" % what)
            try:
                if fn():
                    return
            except Exception as e:  # noqa: BLE001 - reported below
                last_err = repr(e)
            if time.monotonic() > deadline:
                proc.fail("not %s in time; last error: %s" % (what, last_err))
            time.sleep(0.02)

    return check


class ProcessManager:
    """Starts processes under `root` and stops them all on teardown."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.procs = []

    def new_dir(self, name):
        """A fresh, unique directory <root>/<name>[-N]."""
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "proc"
        path = os.path.join(self.root, base)
        n = 2
        while os.path.exists(path):
            path = os.path.join(self.root, "%s-%d" % (base, n))
            n += 1
        os.makedirs(path)
        os.chmod(path, 0o755)
        return path

    def start(self, name, argv, *, ready=None, timeout=10.0, env=None,
              cwd=None, dir=None, extra_logs=(), stop_signal=signal.SIGTERM,
              grace=5.0):
        """Start argv; wait for `ready` (check or list of checks).

        dir: use this (existing) directory instead of a fresh one.
        On readiness failure the process is stopped and ProcessStartError
        (with log tails) is raised."""
        if dir is None:
            dir = self.new_dir(name)
        else:
            os.makedirs(dir, exist_ok=True)
        p = ManagedProcess(self, name, argv, dir, env=env, cwd=cwd,
                           extra_logs=extra_logs, stop_signal=stop_signal,
                           grace=grace)
        self.procs.append(p)
        p._launch()
        if ready is not None:
            try:
                p.wait_ready(ready, timeout)
            except ProcessStartError:
                p.stop(grace=1.0)
                raise
        return p

    def stop_all(self):
        """Stop every process this manager started.

        The stop signal goes to all of them first (so slow shutdowns, e.g.
        Dovecot's ~1 s, overlap), then each is waited for / killed."""
        errors = []
        for p in reversed(self.procs):
            p.begin_stop()
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001
                errors.append("%s: %r" % (p.name, e))
        return errors


@atexit.register
def _kill_leftovers():
    for p in list(_live):
        try:
            p.stop(grace=1.0)
        except Exception:
            pass
