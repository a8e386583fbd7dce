"""The admin API (proxy/admin.c) and the `mailring` director commands
(ring/main_cli.c), against a real mailring-proxy and real Dovecot backends.

Every command runs with and without --json; the effects are checked from
the outside: the backend a login used (the proxy's `Login: ... backend=`
line), `* BYE` on kicked sessions, where the next login lands."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from harness.procs import ProcessStartError

EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69


# ---- helpers ------------------------------------------------------------------

@pytest.fixture
def sockdir():
    # unix socket paths are limited to 108 bytes: keep them short
    d = tempfile.mkdtemp(prefix="mradm")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cli(mailring_bin):
    binary = mailring_bin("mailring")

    def run(sock, *args, json_out=False, check=None):
        argv = [binary, "-s", sock] + (["--json"] if json_out else []) + \
            [str(a) for a in args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if check is not None:
            assert r.returncode == check, (argv, r.returncode, r.stdout,
                                           r.stderr)
        return r
    run.binary = binary
    return run


@pytest.fixture
def admin_setup(mailring_proxy, dovecot_backend, sockdir):
    """(proxy, [b1, b2], socket path): a proxy with two Dovecot backends
    and the admin API on."""
    def make(**kw):
        b1 = dovecot_backend(name="b1")
        b2 = dovecot_backend(name="b2")
        sock = os.path.join(sockdir, "admin.sock")
        settings = {"admin_socket": sock}
        settings.update(kw.pop("settings", {}))
        try:
            p = mailring_proxy(backends=[b1, b2], settings=settings, **kw)
        except ProcessStartError as e:
            if "admin_socket" in str(e):
                pytest.skip("mailring-proxy does not know the admin_socket "
                            "setting yet")
            raise
        deadline = time.monotonic() + 3
        while not os.path.exists(sock):
            if time.monotonic() > deadline:
                pytest.skip("mailring-proxy accepts admin_socket but does not "
                            "serve it (main.c must call admin_start)")
            time.sleep(0.02)
        return p, [b1, b2], sock
    return make


def http(sock, raw, timeout=10):
    """Sends raw bytes to the admin socket; returns (status, headers dict,
    body bytes) of the answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(raw)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert int(headers["content-length"]) == len(body), data
    return status, headers, body


def get(sock, path):
    return http(sock, ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())


def post(sock, path, body):
    if not isinstance(body, bytes):
        body = body.encode()
    return http(sock, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                b"\r\n\r\n%s" % (path.encode(), len(body), body))


def login(p, user):
    """A logged-in raw IMAP session; returns (client, backend name)."""
    before = len([e for e in p.events("Login") if e.get("user") == user])
    c = p.raw()
    _, tagged = c.command("a", "LOGIN %s pass" % user)
    assert tagged.startswith(b"a OK"), tagged
    p.wait_log(r"info: Login: .*user=<%s>" % re.escape(user), count=before + 1)
    ev = [e for e in p.events("Login") if e.get("user") == user][-1]
    return c, ev["backend"]


def expect_bye(c, timeout=5.0):
    """Reads until the proxy closes; asserts a * BYE came first."""
    data = c.buf
    c.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = c.sock.recv(4096)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    assert b"* BYE" in data, data
    c.close()


def status_json(cli, sock):
    r = cli(sock, "status", json_out=True, check=0)
    return {b["name"]: b for b in json.loads(r.stdout)["backends"]}


def other(name):
    return "b2" if name == "b1" else "b1"


# ---- tests ---------------------------------------------------------------------

def test_status_text_and_json(admin_setup, cli):
    p, _, sock = admin_setup()
    r = cli(sock, "status", check=0)
    lines = r.stdout.splitlines()
    header = [l for l in lines if l.startswith("NAME")]
    assert header, r.stdout
    assert header[0].split() == ["NAME", "STATE", "WEIGHT", "TAG", "USERS",
                                 "SESSIONS"], r.stdout
    rows = {l.split()[0]: l.split() for l in lines[lines.index(header[0]) + 1:]
            if l.strip()}
    assert rows["b1"][1:3] == ["up", "100"] and rows["b2"][1] == "up", r.stdout
    st = status_json(cli, sock)
    assert set(st) == {"b1", "b2"}
    assert st["b1"]["state"] == "up" and st["b1"]["weight"] == 100


def test_map_users_after_login(admin_setup, cli):
    p, _, sock = admin_setup()
    c, used = login(p, "user1")
    m = json.loads(cli(sock, "map", "user1", json_out=True, check=0).stdout)
    assert m["backend"] == used and m["why"] == "mapped", m
    assert m["sessions"] == 1, m
    r = cli(sock, "map", "user1", check=0)
    assert re.search(r"backend\s*: %s\b" % used, r.stdout), r.stdout
    assert re.search(r"why\s*: mapped", r.stdout), r.stdout
    # a user nobody has seen is hashed, with the other as fallback
    m = json.loads(cli(sock, "map", "user999", json_out=True, check=0).stdout)
    assert m["why"] == "hashed" and m["backend"] in ("b1", "b2"), m
    assert "hashed" in cli(sock, "map", "user999", check=0).stdout

    u = json.loads(cli(sock, "users", used, json_out=True, check=0).stdout)
    assert {"user": "user1", "sessions": 1} in u["users"], u
    r = cli(sock, "users", used, check=0)
    assert re.search(r"^USER\s+SESSIONS$", r.stdout, re.M), r.stdout
    assert re.search(r"^user1\s+1$", r.stdout, re.M), r.stdout
    r = cli(sock, "users", other(used), check=0)
    assert "(none)" in r.stdout and "user1" not in r.stdout, r.stdout
    st = status_json(cli, sock)
    assert st[used]["users"] == 1 and st[used]["sessions"] == 1, st
    c.close()


def test_kick_closes_session_with_bye(admin_setup, cli):
    p, _, sock = admin_setup()
    c, _ = login(p, "user2")
    r = cli(sock, "kick", "user2", check=0)
    assert re.search(r"kicked\s*: 1", r.stdout), r.stdout
    expect_bye(c)
    c, _ = login(p, "user2")
    out = json.loads(cli(sock, "kick", "user2", json_out=True, check=0).stdout)
    assert out == {"user": "user2", "kicked": 1}, out
    expect_bye(c)


def test_move_closes_and_next_login_lands_on_target(admin_setup, cli):
    p, _, sock = admin_setup()
    c, used = login(p, "user3")
    target = other(used)
    r = cli(sock, "move", "user3", target, check=0)
    assert re.search(r"backend\s*: %s" % target, r.stdout), r.stdout
    expect_bye(c)
    c, now = login(p, "user3")
    assert now == target
    # and back, with --json
    out = json.loads(cli(sock, "move", "user3", used, json_out=True,
                         check=0).stdout)
    assert out["backend"] == used and out["kicked"] == 1, out
    expect_bye(c)
    c, now = login(p, "user3")
    assert now == used
    c.close()


def test_flush_drops_mappings_and_kicks(admin_setup, cli):
    p, _, sock = admin_setup()
    c, used = login(p, "user4")
    r = cli(sock, "flush", used, check=0)
    assert re.search(r"unmapped\s*: 1", r.stdout), r.stdout
    assert re.search(r"kicked\s*: 1", r.stdout), r.stdout
    expect_bye(c)
    m = json.loads(cli(sock, "map", "user4", json_out=True, check=0).stdout)
    assert m["why"] == "hashed", m
    c, used = login(p, "user4")
    out = json.loads(cli(sock, "flush", used, json_out=True, check=0).stdout)
    assert out == {"backend": used, "unmapped": 1, "kicked": 1}, out
    expect_bye(c)


def test_down_then_logins_avoid_backend(admin_setup, cli):
    p, _, sock = admin_setup()
    r = cli(sock, "down", "b1", check=0)
    assert re.search(r"state\s*: down", r.stdout), r.stdout
    assert status_json(cli, sock)["b1"]["state"] == "down"
    for i in range(10, 20):
        c, used = login(p, "user%d" % i)
        assert used == "b2", (i, used)
        c.close()
    out = json.loads(cli(sock, "up", "b1", json_out=True, check=0).stdout)
    assert out["state"] == "up", out
    assert re.search(r"state\s*: up", cli(sock, "up", "b1", check=0).stdout)
    # --json down works the same
    out = json.loads(cli(sock, "down", "b2", json_out=True, check=0).stdout)
    assert out["state"] == "down", out
    for i in range(20, 26):
        c, used = login(p, "user%d" % i)
        assert used == "b1", (i, used)
        c.close()


def test_drain_new_users_avoid_mapped_user_stays(admin_setup, cli):
    p, _, sock = admin_setup()
    # find a user that lands on b1, keep its session (its mapping holds)
    kept = None
    for i in range(30, 60):
        c, used = login(p, "user%d" % i)
        if used == "b1":
            kept = (c, "user%d" % i)
            break
        c.close()
    assert kept is not None
    r = cli(sock, "drain", "b1", check=0)
    assert re.search(r"weight\s*: 0", r.stdout), r.stdout
    assert status_json(cli, sock)["b1"]["weight"] == 0
    for i in range(60, 70):
        c, used = login(p, "user%d" % i)
        assert used == "b2", (i, used)
        c.close()
    c2, used = login(p, kept[1])
    assert used == "b1"
    c2.close()
    kept[0].close()
    # update back, text and --json
    r = cli(sock, "update", "b1", "70", check=0)
    assert re.search(r"weight\s*: 70", r.stdout), r.stdout
    out = json.loads(cli(sock, "update", "b1", "100", json_out=True,
                         check=0).stdout)
    assert out == {"backend": "b1", "weight": 100}, out
    out = json.loads(cli(sock, "drain", "b2", json_out=True, check=0).stdout)
    assert out == {"backend": "b2", "weight": 0}, out


def test_metrics(admin_setup, cli):
    p, _, sock = admin_setup()
    c, used = login(p, "user5")
    status, headers, body = get(sock, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    m = re.search(r"^mailring_connections (\d+)$", text, re.M)
    assert m and int(m.group(1)) >= 1, text
    assert "# TYPE mailring_connections gauge" in text
    for b in ("b1", "b2"):
        assert re.search(r'^mailring_backend_up\{backend="%s"\} 1$' % b,
                         text, re.M), text
        assert re.search(r'^mailring_backend_weight\{backend="%s"\} 100$' % b,
                         text, re.M), text
    assert re.search(r'^mailring_backend_users\{backend="%s"\} 1$' % used,
                     text, re.M), text
    assert re.search(r'^mailring_backend_sessions\{backend="%s"\} 1$' % used,
                     text, re.M), text
    cli(sock, "down", other(used), check=0)
    text = get(sock, "/metrics")[2].decode()
    assert re.search(r'^mailring_backend_up\{backend="%s"\} 0$' % other(used),
                     text, re.M), text
    c.close()


def test_cli_errors_and_exit_codes(admin_setup, cli, sockdir):
    p, _, sock = admin_setup()
    r = cli(sock, "up", "nosuch", check=EX_DATAERR)
    assert "unknown backend" in r.stderr and r.stdout == "", r
    r = cli(sock, "users", "nosuch", json_out=True, check=EX_DATAERR)
    assert json.loads(r.stdout) == {"error": "unknown backend"}
    cli(sock, "move", "user1", "nosuch", check=EX_DATAERR)
    cli(sock, "update", "b1", check=EX_USAGE)
    cli(sock, "update", "b1", "lots", check=EX_USAGE)
    cli(sock, "update", "b1", "1000001", check=EX_USAGE)
    cli(sock, "kick", check=EX_USAGE)
    cli(sock, "nosuchcommand", check=EX_USAGE)
    r = cli(os.path.join(sockdir, "missing.sock"), "status",
            check=EX_UNAVAILABLE)
    assert "cannot reach" in r.stderr
    # a user with characters that need escaping in a query and in JSON
    m = json.loads(cli(sock, "map", 'we"ird&user=x y', json_out=True,
                       check=0).stdout)
    assert m["user"] == 'we"ird&user=x y', m


def test_http_errors(admin_setup):
    p, _, sock = admin_setup()
    st, h, body = get(sock, "/nope")
    assert st == 404 and "error" in json.loads(body)
    assert h["content-type"] == "application/json"
    st, h, body = post(sock, "/status", "{}")
    assert st == 405 and h["allow"] == "GET"
    st, _, body = get(sock, "/kick")
    assert st == 405
    st, _, body = post(sock, "/up", "{\"backend\":")
    assert st == 400 and "JSON" in json.loads(body)["error"]
    st, _, body = post(sock, "/up", "{\"backend\":1}")
    assert st == 400
    st, _, body = post(sock, "/update", "{\"backend\":\"b1\",\"weight\":-1}")
    assert st == 400
    st, _, body = post(sock, "/update", "{\"backend\":\"b1\",\"weight\":1000001}")
    assert st == 400
    st, _, _ = get(sock, "/map")
    assert st == 400
    st, _, _ = get(sock, "/map?user=%zz")
    assert st == 400
    st, _, _ = http(sock, b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked"
                    b"\r\n\r\n0\r\n\r\n")
    assert st == 411
    st, _, _ = http(sock, b"POST /up HTTP/1.1\r\nContent-Length: 4097\r\n\r\n")
    assert st == 413
    st, _, _ = http(sock, b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n")
    assert st == 414
    st, _, _ = http(sock, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 33 + b"\r\n")
    assert st == 431
    st, _, _ = http(sock, b"GET / HTTP/2.0\r\n\r\n")
    assert st == 505
    # percent-encoded query
    st, _, body = get(sock, "/map?user=user%31")
    assert st == 200 and json.loads(body)["user"] == "user1"


def test_slow_admin_client_does_not_block(admin_setup, cli):
    """A client that sends half a request holds the one admin slot, but
    the main loop goes on (a reload is handled) and the client is dropped
    after the admin timeout; then the CLI works again."""
    p, _, sock = admin_setup()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"GET /status HTTP/1.1\r\nHo")
    p.reload()
    t0 = time.monotonic()
    s.settimeout(15)
    assert s.recv(100) == b""  # closed by the timeout
    assert time.monotonic() - t0 < 12
    s.close()
    p.wait_log(r"admin: client timed out")
    cli(sock, "status", check=0)


def test_socket_mode_and_stale_file(admin_setup, mailring_proxy, sockdir):
    p, backends, sock = admin_setup()
    assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
    p.stop()
    assert not os.path.exists(sock)
    # a stale socket file left by a crash is replaced at start
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)
    stale.close()
    p.start()
    get(sock, "/status")


def test_auth_commands_still_work(admin_setup, cli):
    p, _, sock = admin_setup()
    r = subprocess.run([cli.binary, "-c", p.conf_path, "auth", "lookup",
                        "user1"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    assert "user1 lookup succeeded" in r.stdout


def test_ring_status(mailring_proxy, dovecot_backend, workdir):
    """`mailring ring status`: the embedded store, one proxy, never
    degraded, and whether the state file is being written."""
    import json
    import os
    import subprocess
    sock = os.path.join(str(workdir), "ring.sock")
    state = os.path.join(str(workdir), "director.state")
    b = dovecot_backend()
    mailring_proxy(backends=[b], settings={"admin_socket": sock,
                                           "director_state_file": state})
    cli = os.path.join(os.environ["MAILRING_BUILD"], "mailring")
    r = subprocess.run([cli, "-s", sock, "--json", "ring", "status"],
                       capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["store"] == "embedded" and doc["proxies_alive"] == 1
    assert doc["degraded"] is False and doc["state_file"] == state
    assert doc["state_saved"] is True
    r = subprocess.run([cli, "-s", sock, "ring", "status"],
                       capture_output=True, timeout=10)
    assert r.returncode == 0 and b"embedded" in r.stdout, r.stdout


def test_admin_over_tcp_needs_bearer_token(mailring_proxy, dovecot_backend,
                                           ports):
    """admin_listen serves the same API over TCP; every request needs
    `Authorization: Bearer <admin_token>`: none or a wrong one is 401 and
    logged, the right one works."""
    b1 = dovecot_backend(name="b1")
    port = ports.get()
    token = "s3cret-token-0123456789"
    p = mailring_proxy(backends=[{"dovecot": b1, "name": "b1"}],
                       settings={"admin_listen": "127.0.0.1:%d" % port,
                                 "admin_token": token})

    def get(path, auth=None):
        argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}",
                "http://127.0.0.1:%d%s" % (port, path)]
        if auth is not None:
            argv[1:1] = ["-H", "Authorization: " + auth]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        body, _, code = r.stdout.rpartition("\n")
        return int(code), body

    code, body = get("/status")
    assert code == 401 and "bearer token" in body
    assert get("/status", "Bearer wrong-token-0123456789")[0] == 401
    assert get("/status", "Basic " + token)[0] == 401
    code, body = get("/status", "Bearer " + token)
    assert code == 200, body
    assert json.loads(body)["backends"][0]["name"] == "b1"
    assert get("/metrics", "bearer " + token)[0] == 200
    assert len(p.log_lines("over TCP without the right bearer token")) == 3
    # an idle TCP client loses the one client slot after 2 s, not 10 s
    idle = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    code, body = get("/status", "Bearer " + token)
    assert code == 200 and time.monotonic() - t0 < 4, time.monotonic() - t0
    idle.close()


def test_admin_listen_without_token_is_refused(mailring_proxy, ports):
    """admin_listen without a long enough admin_token does not start."""
    with pytest.raises(ProcessStartError):
        mailring_proxy(backends=[{"host": "127.0.0.1", "name": "b1",
                                  "imap_port": ports.get()}],
                       settings={"admin_listen": "127.0.0.1:%d" % ports.get(),
                                 "admin_token": "short"})
