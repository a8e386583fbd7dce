"""Active health checks in one proxy (a quorum of one): a killed backend
goes down within the fall time, its users land elsewhere, other users
never notice, and it comes back up; checks end politely."""

import re
import time

HEALTH = {"health_interval": "300ms", "health_timeout": "500ms",
          "health_fall": 2, "health_rise": 2}


def _login_logout(p, user):
    m = p.imap(user=user)
    m.select("INBOX")
    m.logout()


def _backend_of(p, user):
    for ev in reversed(p.events("Login")):
        if ev.get("user") == user:
            return ev.get("backend")
    return None


def test_killed_backend_goes_down_and_comes_back(mailring_proxy,
                                                 dovecot_backend, mail_root):
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    p = mailring_proxy(backends=[{"dovecot": b1, "name": "b1"},
                                 {"dovecot": b2, "name": "b2"}],
                       settings=HEALTH)
    users = ["user%d" % i for i in range(1, 31)]
    for u in users:
        _login_logout(p, u)
    on_b2 = [u for u in users if _backend_of(p, u) == "b2"]
    on_b1 = [u for u in users if _backend_of(p, u) == "b1"]
    assert on_b1 and on_b2

    t0 = time.monotonic()
    b2.kill()
    p.wait_log(r"health: backend b2 is down after 2 failed checks", timeout=5)
    # fall time: 2 checks 300 ms apart, each failing within 500 ms
    assert time.monotonic() - t0 < 2.5
    # b2's users are placed anew and log in; b1's users never fail
    n = len(p.events("Login"))
    for u in on_b2 + on_b1:
        _login_logout(p, u)
    after = {e["user"]: e["backend"] for e in p.events("Login")[n:]}
    assert all(after[u] == "b1" for u in on_b2 + on_b1), after

    b2.start()
    p.wait_log(r"health: backend b2 is up again", timeout=10)
    # mapped users stay on b1 (I2); new users use b2 again
    fresh = ["user%d" % i for i in range(100, 130)]
    for u in fresh:
        _login_logout(p, u)
    assert any(_backend_of(p, u) == "b2" for u in fresh)
    assert all(_backend_of(p, u) == "b1" for u in on_b2)


def test_checks_end_politely(mailring_proxy, dovecot_backend):
    """Each check says LOGOUT: the backend logs an orderly end, never
    thousands of aborted connections."""
    b = dovecot_backend()
    start = len(b.log_text())
    p = mailring_proxy(backends=[b], settings=HEALTH)
    time.sleep(2.0)
    text = b.log_text()[start:]
    checks = re.findall(r"imap-login: Info: Disconnected: Aborted login by logging out", text)
    assert len(checks) >= 3, text[-2000:]
    # the fixture's own readiness probe aside, nothing was dropped rudely
    rude = re.findall(r"Disconnected: Connection closed \(no auth attempts",
                      text)
    assert len(rude) <= 1, rude
    assert p.running()


def test_admin_down_is_not_undone_by_health(mailring_proxy, dovecot_backend,
                                            mail_root, workdir):
    """A backend taken down by the operator stays down although its
    checks pass."""
    import subprocess
    import os
    sock = os.path.join(str(workdir), "admin.sock")
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    settings = dict(HEALTH, admin_socket=sock)
    p = mailring_proxy(backends=[{"dovecot": b1, "name": "b1"},
                                 {"dovecot": b2, "name": "b2"}],
                       settings=settings)
    cli = os.path.join(os.environ["MAILRING_BUILD"], "mailring")
    r = subprocess.run([cli, "-s", sock, "down", "b2"], capture_output=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    time.sleep(1.5)   # several good checks of b2
    r = subprocess.run([cli, "-s", sock, "--json", "status"],
                       capture_output=True, timeout=10)
    assert b'"name":"b2","state":"down"' in r.stdout, r.stdout
    assert not p.log_lines(r"health: backend b2 is up again")


def test_check_user_login(mailring_proxy, dovecot_backend):
    """health_user: each check logs in as that user and logs out (the
    backend logs a normal login and logout); a check user the backend
    refuses takes the backend down, with the backend's answer in the
    log line and no password anywhere in the log."""
    b = dovecot_backend()
    p = mailring_proxy(backends=[{"dovecot": b, "name": "b1"}],
                       settings=dict(HEALTH, health_user="user7",
                                     health_password="pass"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(re.findall(r"imap\(user7\)<\d+><[^>]*>: Info: Logged out",
                          b.log_text())) >= 2:
            break
        time.sleep(0.1)
    text = b.log_text()
    assert len(re.findall(r"imap-login: Info: Login: user=<user7>", text)) >= 2
    assert len(re.findall(r"imap\(user7\).*Logged out", text)) >= 2
    assert not p.log_lines(r"health: backend b1 is down")

    bad = mailring_proxy(backends=[{"dovecot": b, "name": "b1"}],
                         settings=dict(HEALTH, health_user="user7",
                                       health_password="wrong-secret"))
    line = bad.wait_log(r"health: backend b1 is down after 2 failed checks",
                        timeout=10)[0]
    assert "check login as user7 failed: l NO" in line, line
    assert "wrong-secret" not in bad.log_text()


def test_failed_login_connects_count_as_failed_checks(mailring_proxy,
                                                      dovecot_backend,
                                                      mail_root):
    """Passive health: logins that cannot connect to a backend count as a
    failed check at the next round, before that round's own check."""
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    p = mailring_proxy(backends=[{"dovecot": b1, "name": "b1"},
                                 {"dovecot": b2, "name": "b2"}],
                       settings={"health_interval": "3s",
                                 "health_timeout": "500ms",
                                 "health_fall": 1, "health_rise": 1})
    # the first round ran at start; the next is 3 s later: log in, kill
    # and fail well before it
    t0 = time.monotonic()
    users = ["user%d" % i for i in range(1, 13)]
    for u in users:
        _login_logout(p, u)
    on_b2 = [u for u in users if _backend_of(p, u) == "b2"]
    assert on_b2
    b2.kill()
    for u in on_b2[:3]:
        try:
            _login_logout(p, u)
        except Exception:
            pass      # the mapped backend refuses: the login may fail
    assert time.monotonic() - t0 < 2.5, "too slow to beat the next round"
    line = p.wait_log(r"health: backend b2 is down after 1 failed checks",
                      timeout=6)[0]
    assert "logins could not connect" in line, line
