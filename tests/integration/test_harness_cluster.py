"""Self-tests of the multi-proxy harness pieces: the TCP forwarder (cut /
restore), the cluster helper (start, CLI wrapper, admin API, sessions from
the logs, a cut path, backend kill -9 / restart, Redis kill / restart on the
same port, sentinels) and the I1 overlap detector.  They run with the
embedded store, so they pass before the Redis store exists."""

import os
import re
import socket
import threading
import time

import pytest

from harness.cluster import (CliError, Session, describe_overlap,
                             director_store_support, find_overlaps,
                             parse_log_time, sessions_from_lines)
from harness.mail import imap_connect
from harness.mailring import wait_until
from harness.redis import RespClient, redis_ping


# ---- the forwarder --------------------------------------------------------------

class EchoServer:
    """Echoes every byte; on EOF from the client it closes."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = port
        self.conns = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.sock.close()


def _connect(f, timeout=2.0):
    return socket.create_connection((f.host, f.port), timeout=timeout)


def _echo_ok(f, data=b"hello\r\n"):
    with _connect(f) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got == data


def _dead(s, timeout=1.0):
    """True if the peer closed or reset s within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _new_conn_dead(f, timeout=1.0):
    """A new connection is reset or closed (at connect or first read)."""
    try:
        s = _connect(f)
    except (ConnectionResetError, ConnectionRefusedError):
        return True
    with s:
        return _dead(s, timeout)


def test_forwarder_forwards_cuts_and_restores(tcp_forwarder, free_port):
    echo = EchoServer(free_port)
    f = tcp_forwarder(echo.port)
    try:
        assert _echo_ok(f)
        # a large transfer arrives intact (and flow control works)
        blob = os.urandom(3 * 1024 * 1024)
        with _connect(f, timeout=10) as s:
            got = bytearray()
            sender = threading.Thread(target=s.sendall, args=(blob,))
            sender.start()
            while len(got) < len(blob):
                chunk = s.recv(1 << 20)
                assert chunk, "closed after %d bytes" % len(got)
                got += chunk
            sender.join()
        assert bytes(got) == blob
        # half-close is passed on: the echo server then closes
        with _connect(f) as s:
            s.sendall(b"bye")
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b"bye"
            assert _dead(s)

        # refuse: the open connection is reset, new ones too
        live = _connect(f)
        live.sendall(b"x")
        assert live.recv(1) == b"x"
        t0 = time.monotonic()
        f.cut()
        assert f.mode == "refuse" and f.active() == 0
        assert _dead(live)
        live.close()
        assert _new_conn_dead(f)
        assert time.monotonic() - t0 < 1.5
        assert f.refused >= 1

        # blackhole: connects, but nothing ever comes back
        f.cut(mode="blackhole")
        hole = _connect(f)
        hole.sendall(b"anyone there?\r\n")
        assert not _dead(hole, 0.5)
        f.restore()
        assert _dead(hole)   # blackholed sockets go at restore
        hole.close()
        assert _echo_ok(f)

        # existing="hang": the open connection stays, but is frozen
        live = _connect(f)
        live.sendall(b"a")
        assert live.recv(1) == b"a"
        f.cut(mode="blackhole", existing="hang")
        live.sendall(b"b")
        assert not _dead(live, 0.5)
        f.restore()
        assert _dead(live)
        live.close()
        assert _echo_ok(f)
    finally:
        echo.close()
    # a target nobody listens on: the client is reset
    assert _new_conn_dead(f)
    f.close()
    with pytest.raises(OSError):
        _connect(f).close()
    with pytest.raises(RuntimeError):
        f.cut()


# ---- I1 overlap detection and log parsing -----------------------------------------

def _s(user, backend, start, end, proxy=0, sid="s"):
    return Session(proxy, sid, user, backend, start, end, None)


def test_find_overlaps():
    ok = [_s("u1", "b1", 0, 10), _s("u1", "b1", 5, 20),   # same backend
          _s("u1", "b2", 20, 30),                         # touches only
          _s("u2", "b2", 0, 1), _s("u2", "b1", 1, 2),
          _s("u3", "b1", 0, 5), _s("u3", "b2", 3, 3)]     # empty session
    assert find_overlaps(ok) == []
    bad = ok + [_s("u1", "b3", 29.999, 31, proxy=2, sid="x")]
    got = find_overlaps(bad)
    assert len(got) == 1 and got[0][0].backend == "b2" and \
        got[0][1].id == "x"
    assert "user u1" in describe_overlap(*got[0])
    # an open session overlaps everything after it
    opened = [_s("u4", "b1", 0, None), _s("u4", "b2", 100, 101)]
    assert len(find_overlaps(opened)) == 1
    assert find_overlaps(opened, now=50) == []


def test_sessions_from_log_lines():
    lines = [
        "==== start #1: mailring-proxy -c x",
        "2026-11-24T03:48:09.096Z mailring-proxy: info: Disconnected: "
        "lip=127.0.0.1 reason=<Disconnected: Connection closed (no auth "
        "attempts)> auth_attempts=0 duration=0 rip=127.0.0.1 session=<P1>",
        "2026-11-24T03:48:09.124Z mailring-proxy: info: Login: method=PLAIN "
        "lip=127.0.0.1 backend_addr=127.0.0.1:23280 user=<user1> "
        "rip=127.0.0.1 backend=b1 session=<S1>",
        "2026-11-24T03:48:09.200Z mailring-proxy: info: Login: method=PLAIN "
        "lip=127.0.0.1 backend_addr=127.0.0.1:23281 user=<user2> "
        "rip=127.0.0.1 backend=b2 session=<S2>",
        "2026-11-24T03:48:15.175Z mailring-proxy: info: Logout: "
        "lip=127.0.0.1 result=ok reason=<Disconnected: Server shutting "
        "down.> duration=6 in=20 out=548 user=<user1> rip=127.0.0.1 "
        "backend=b1 session=<S1>",
    ]
    ss = sessions_from_lines(lines, proxy=2)
    assert len(ss) == 2
    s1, s2 = ss
    assert (s1.proxy, s1.id, s1.user, s1.backend) == (2, "S1", "user1", "b1")
    assert s1.start == parse_log_time("2026-11-24T03:48:09", ".124")
    assert abs(s1.end - s1.start - 6.051) < 1e-6
    assert s1.reason == "Disconnected: Server shutting down."
    assert s2.end is None


def test_director_store_support_probe():
    ok, reason = director_store_support()
    assert isinstance(ok, bool)
    if not ok:
        assert "director_store" in reason or "not built" in reason, reason


# ---- the cluster (embedded store: works today) ---------------------------------

FAST_HEALTH = {"health_interval": "200ms", "health_timeout": "200ms",
               "health_fall": 2, "health_rise": 2}


def _login(p, user):
    m = p.imap(user=user)
    m.select("INBOX")
    m.logout()


def test_cluster_cli_sessions_and_cut_path(mailring_cluster):
    c = mailring_cluster(proxies=3, backends=3, store="embedded",
                         forwarders=True, health=FAST_HEALTH, users=50)
    assert c.redis is None and len(c.proxies) == 3
    assert [len(fs) for fs in c.forwarders] == [3, 3, 3]
    # every proxy: its own admin socket, every backend up, CLI both ways
    for k in range(3):
        st = c.cli(k, "status")
        assert {b["name"]: b["state"] for b in st["backends"]} == \
            {"b1": "up", "b2": "up", "b3": "up"}, st
        rc, out = c.cli(k, "status", json=False)
        assert rc == 0 and re.search(r"^NAME\s+STATE", out, re.M), out
        assert c.status(k)["b1"]["weight"] == 100
        assert c.cli(k, "ring", "status")["store"] == "embedded"
    with pytest.raises(CliError) as ei:
        c.cli(0, "up", "nosuch")
    assert ei.value.rc == 65 and ei.value.json == {"error": "unknown backend"}
    rc, out = c.cli(1, "up", "nosuch", json=False)
    assert rc == 65 and out == ""

    # logins through every proxy go through the forwarders
    for k, p in enumerate(c.proxies):
        for u in ("user1", "user2", "user3"):
            _login(p, u)
    for k in range(3):
        assert sum(f.forwarded for f in c.forwarders[k]) >= 3
    wait_until(lambda: len([s for s in c.sessions() if s.end]) == 9, 5,
               "9 ended sessions")
    ss = c.sessions()
    assert sorted((s.proxy, s.user) for s in ss) == sorted(
        (k, u) for k in range(3) for u in ("user1", "user2", "user3"))
    for s in ss:
        assert s.backend in c.bnames and s.end >= s.start
        assert s.backend == c.login_backend(s.proxy, s.user)
    # the three proxies are independent (embedded store): each place
    # user1 by the same hash, so no overlaps in this sequential run
    assert find_overlaps(ss) == []
    m = c.map_users(0, ["user1", "user40"])
    assert m["user1"] == c.login_backend(0, "user1")
    assert m["user40"] in c.bnames
    assert c.map_all(["user1"]) == [{"user1": c.login_backend(k, "user1")}
                                    for k in range(3)]

    # a cut path: proxy 1 loses b2 (a quorum of one with the embedded
    # store), the others keep it; restored, it comes back
    c.cut(0, 1)
    c.proxies[0].wait_log(r"health: backend b2 is down", timeout=5)
    assert c.states("b2") == ["down", "up", "up"]
    c.restore(0, 1)
    c.proxies[0].wait_log(r"health: backend b2 is up again", timeout=5)
    assert c.states("b2") == ["up", "up", "up"]
    # blackhole: the checks time out instead
    c.cut(1, 2, mode="blackhole")
    c.proxies[1].wait_log(r"health: backend b3 is down", timeout=5)
    assert c.states("b3") == ["up", "down", "up"]
    c.restore(1, 2)
    c.proxies[1].wait_log(r"health: backend b3 is up again", timeout=5)


def test_cluster_backend_kill_and_redis_restart(mailring_cluster):
    c = mailring_cluster(proxies=2, backends=2, store="embedded",
                         redis=True, health=FAST_HEALTH, users=20)
    assert c.redis is not None
    # kill -9 of a backend: down on every proxy; restarted on the same
    # ports with the same mail: up again, logins work
    b = c.backends[1]
    port = b.imap_port
    mc = imap_connect(b.host, port, user="user5")
    mc.select("INBOX")
    pid = b.proc.pid
    c.kill_backend(1)
    assert not b.running()
    with pytest.raises(OSError):
        socket.create_connection((b.host, port), timeout=1).close()
    for p in c.proxies:
        p.wait_log(r"health: backend b2 is down", timeout=5)
    c.start_backend(1)
    assert b.running() and b.imap_port == port and b.proc.pid != pid
    for p in c.proxies:
        p.wait_log(r"health: backend b2 is up again", timeout=5)
    imap_connect(b.host, port, user="user5").logout()
    for p in c.proxies:
        _login(p, "user6")

    # Redis: restart on the same port, empty afterwards; kill -9 + start
    rport = c.redis.port
    c.redis.command("SET", c.prefix + "k", "v")
    assert c.redis_keys() == [(c.prefix + "k").encode()]
    c.restart_redis(down_seconds=0.2)
    assert c.redis.port == rport and redis_ping("127.0.0.1", rport)
    assert c.redis_keys() == []
    c.kill_redis()
    assert not redis_ping("127.0.0.1", rport)
    c.start_redis()
    assert redis_ping("127.0.0.1", rport)
    c.stop_redis()
    assert not c.redis.running()
    c.start_redis()
    assert c.redis.port == rport and c.redis.command("PING") == "PONG"


def test_cluster_redis_settings_and_sentinel(mailring_cluster):
    """The store settings each proxy would get, and a sentinel that knows
    the master (no proxies started: the Redis store may not exist yet)."""
    c = mailring_cluster(proxies=3, backends=1, sentinels=1, start=False,
                         users=5)
    names = set()
    for k in range(3):
        s = c.settings[k]
        assert s["director_store"] == "redis"
        assert s["redis_prefix"] == c.prefix and s["redis_prefix"] != ""
        assert s["redis_sentinels"] == ["127.0.0.1:%d" % c.sentinels[0][0]]
        assert s["redis_sentinel_master"] == "mailring"
        assert s["admin_socket"] == c.sockets[k]
        names.add(s["proxy_name"])
    assert names == {"proxy1", "proxy2", "proxy3"}
    assert c.sentinel_master_addr() == ("127.0.0.1", c.redis.port)
    with RespClient("127.0.0.1", c.sentinels[0][0]) as r:
        assert r.command("PING") == "PONG"
    c2 = mailring_cluster(proxies=2, backends=1, start=False, users=5,
                          prefix="mrt-fixed:",
                          proxy_settings=[None, {"workers": 1}])
    assert c2.settings[0]["redis_address"] == "127.0.0.1:%d" % c2.redis.port
    assert c2.settings[1]["workers"] == 1
    assert c2.settings[1]["redis_prefix"] == "mrt-fixed:"
    assert c2.sockets[0] != c.sockets[0]
