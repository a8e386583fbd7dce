"""Self-tests of the harness: ports, process manager, failed-test logs."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from harness import plugin
from harness.ports import port_is_bindable
from harness.procs import ProcessStartError, group_members, tcp_greeting

PY = sys.executable
INTEGRATION_DIR = os.path.dirname(os.path.abspath(__file__))


def test_ports_distinct_and_free(ports):
    got = ports.get_many(40)
    assert len(set(got)) == 40
    assert all(port_is_bindable(p) for p in got)


def test_process_start_failure_shows_log_tail(procs, free_port):
    with pytest.raises(ProcessStartError) as ei:
        procs.start("boom", [PY, "-c", "import sys; print('kaboom-out'); "
                             "sys.stderr.write('kaboom-err\\n'); sys.exit(3)"],
                    ready=tcp_greeting("127.0.0.1", free_port, b"* OK"),
                    timeout=5)
    text = str(ei.value)
    assert "exited with status 3" in text
    assert "kaboom-out" in text and "kaboom-err" in text


def test_process_ready_timeout(procs, free_port):
    t = time.monotonic()
    with pytest.raises(ProcessStartError) as ei:
        procs.start("sleeper", [PY, "-c", "import time; time.sleep(60)"],
                    ready=tcp_greeting("127.0.0.1", free_port, b"* OK"),
                    timeout=0.5)
    assert time.monotonic() - t < 5
    assert "not ready" in str(ei.value)
    assert not procs.procs[-1].running()


def test_tcp_greeting_and_group_stop(procs, free_port):
    server = textwrap.dedent("""
        import os, socket, subprocess, sys
        # a grandchild in the same process group, ignoring SIGTERM
        subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); time.sleep(120)"])
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET,
            socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", %d)); s.listen()
        while True:
            c, _ = s.accept(); c.sendall(b"* OK hello\\r\\n"); c.close()
        """ % free_port)
    p = procs.start("greeter", [PY, "-c", server],
                    ready=tcp_greeting("127.0.0.1", free_port, b"* OK"),
                    timeout=10)
    deadline = time.monotonic() + 5
    while len(group_members(p.pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(group_members(p.pgid)) == 2
    p.stop(grace=0.5)
    assert not p.running()
    assert group_members(p.pgid) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", free_port)) != 0


def test_keep_logs_copies_and_skips_sockets(tmp_path):
    src = tmp_path / "work"
    (src / "dovecot1" / "run").mkdir(parents=True)
    (src / "dovecot1" / "dovecot.log").write_text("line1\nline2\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "dovecot1" / "run" / "auth-master"))
    try:
        dest = plugin.keep_logs([str(src)], str(tmp_path / "logs" / "t"))
    finally:
        sock.close()
    kept = tmp_path / "logs" / "t"
    assert (kept / "dovecot1" / "dovecot.log").read_text() == "line1\nline2\n"
    assert (kept / "dovecot1" / "run").is_dir()
    assert not (kept / "dovecot1" / "run" / "auth-master").exists()
    # a second copy (refresh at teardown) merges and overwrites
    (src / "dovecot1" / "dovecot.log").write_text("line1\nline2\nline3\n")
    plugin.keep_logs([str(src)], dest)
    assert (kept / "dovecot1" / "dovecot.log").read_text().endswith("line3\n")
    assert dest == str(tmp_path / "logs" / "t")
    assert plugin.test_log_name("test_x.py::test_y[a b/c]") == \
        "test_x.py__test_y[a_b_c]"


def test_failed_test_logs_are_kept(tmp_path):
    """Run an inner pytest session with a failing and a passing test that
    start processes; the failing one's dirs land in MAILRING_LOGS_DIR and the
    path is printed, the passing one leaves nothing behind."""
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text(
        "import sys\nsys.path.insert(0, %r)\n"
        "from harness.plugin import *  # noqa\n" % INTEGRATION_DIR)
    (inner / "test_inner.py").write_text(textwrap.dedent("""
        import sys
        def test_fails(procs):
            procs.start("chatty", [sys.executable, "-c",
                        "print('inner-marker', flush=True); "
                        "import time; time.sleep(60)"])
            import time; time.sleep(0.3)
            assert False, "deliberate"
        def test_passes(procs):
            procs.start("quiet", [sys.executable, "-c", "print('ok')"])
        """))
    logs = tmp_path / "logs"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, MAILRING_LOGS_DIR=str(logs),
               MAILRING_TMPDIR=str(tmpdir))
    r = subprocess.run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(inner)],
                       cwd=str(inner), env=env, capture_output=True,
                       text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    kept = logs / "test_inner.py__test_fails"
    assert str(kept) in out, out
    logfile = kept / "chatty" / "stdout.log"
    assert "inner-marker" in logfile.read_text()
    assert not (logs / "test_inner.py__test_passes").exists()
    assert os.listdir(tmpdir) == []  # session temp root removed


def test_dovecot_config_error_is_reported(dovecot_backend):
    t = time.monotonic()
    with pytest.raises(ProcessStartError) as ei:
        dovecot_backend(extra_conf="no_such_setting_xyz = 1\n")
    assert time.monotonic() - t < 10
    assert "no_such_setting_xyz" in str(ei.value)


def test_dovecot_restart_keeps_ports_and_mail(dovecot_backend, corpus):
    from harness import mail
    b = dovecot_backend()
    ports = (b.imap_port, b.pop3_port, b.lmtp_port)
    c = mail.imap_connect(b.host, b.imap_port, "user9")
    uid = mail.imap_append(c, corpus["01-plain-ascii.eml"])
    mail.imap_logout(c)
    b.restart()
    assert (b.imap_port, b.pop3_port, b.lmtp_port) == ports
    c = mail.imap_connect(b.host, b.imap_port, "user9")
    c.select("INBOX")
    assert mail.imap_fetch_uid(c, uid) == corpus["01-plain-ascii.eml"]
    mail.imap_logout(c)


def test_redis_kill_and_start_same_port(redis_server):
    r = redis_server
    port, pid = r.port, r.proc.pid
    r.kill()
    assert not r.running()
    with pytest.raises(OSError):
        socket.create_connection((r.host, port), timeout=1).close()
    r.start()
    assert r.port == port and r.proc.pid != pid
    assert r.command("PING") == "PONG"
