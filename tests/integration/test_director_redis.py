"""The director with the redis store: mappings shared by several proxies
(I1), first writer wins, kick rounds for move/flush/down (I4), health
votes with a quorum (I3), degraded mode and reconcile (I5)."""

import json
import os
import shutil
import subprocess
import tempfile
import threading

import pytest

from harness.mailring import wait_until


@pytest.fixture
def cli_bin(mailring_bin):
    return mailring_bin("mailring")


@pytest.fixture
def sockdir():
    # unix socket paths are limited to 108 bytes: keep them short
    d = tempfile.mkdtemp(prefix="mrrds")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _backends(bs, weights=None):
    return [{"dovecot": b, "name": "b%d" % (i + 1),
             "weight": (weights or {}).get(i, 100)}
            for i, b in enumerate(bs)]


def _settings(redis, name, **extra):
    s = {"director_store": "redis",
         "redis_address": "127.0.0.1:%d" % redis.port,
         "redis_prefix": "t:",
         "redis_timeout": "300ms",
         "proxy_name": name,
         "proxy_heartbeat_interval": "200ms",
         "proxy_dead_timeout": "1s",
         "director_move_timeout": "2s",
         "health_interval": "0"}
    s.update(extra)
    return s


def _cli(p, *args):
    out = subprocess.run([p.cli_bin, "-s", p.admin_sock, "--json"] +
                         list(args), capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return json.loads(out.stdout)


def _proxy(mailring_proxy, redis, backends, name, cli_bin, sockdir, **extra):
    sock = os.path.join(sockdir, name + ".sock")
    p = mailring_proxy(backends=backends,
                       settings=_settings(redis, name, admin_socket=sock,
                                          **extra))
    p.admin_sock = sock
    p.cli_bin = cli_bin
    return p


def _proxies(mailring_proxy, redis, backends, n, cli_bin, sockdir, **extra):
    ps = [_proxy(mailring_proxy, redis, backends, "proxy%d" % (i + 1), cli_bin,
                 sockdir, **extra) for i in range(n)]
    for p in ps:
        p.wait_log("redis store .* connected", timeout=5, since_start=False)
    return ps


def _metric(p, name):
    out = subprocess.run(["curl", "-sf", "--unix-socket", p.admin_sock,
                          "http://admin/metrics"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric %s in:\n%s" % (name, out.stdout))


def _login_backend(p, user):
    """Logs user in and out through p; the backend of its Login line."""
    n = len(p.events("Login"))
    m = p.imap(user=user)
    m.select("INBOX")
    m.logout()
    evs = [e for e in p.events("Login")[n:] if e.get("user") == user]
    assert evs, user
    return evs[-1]["backend"]


def test_proxies_share_mappings(mailring_proxy, dovecot_backend, mail_root,
                                redis_server, cli_bin, sockdir):
    """A user mapped through one proxy goes to the same backend through the
    others, even after the weights change so placement would differ (I1,
    I2 across proxies); the mapping is in Redis."""
    bs = [dovecot_backend(mail_root=mail_root) for _ in range(3)]
    p1, p2, p3 = _proxies(mailring_proxy, redis_server, _backends(bs), 3, cli_bin, sockdir)
    users = ["user%d" % i for i in range(1, 31)]
    first = {u: _login_backend(p1, u) for u in users}
    assert len(set(first.values())) == 3
    # drain the backend most users went to: placement changes, mappings not
    _cli(p2, "update", "b1", "1")
    _cli(p2, "update", "b2", "1")
    for u in users:
        assert _login_backend(p2, u) == first[u], u
        assert _login_backend(p3, u) == first[u], u
    r = redis_server.client()
    assert _text(r.command("HGET", "t:u:user1", "b")) == first["user1"]
    st = _cli(p3, "status")
    assert st["store"] == "redis"
    assert {b["name"]: b["weight"] for b in st["backends"]} == \
        {"b1": 1, "b2": 1, "b3": 100}
    m = _cli(p1, "map", "user2")
    assert m["backend"] == first["user2"] and m["why"] == "mapped"


def test_concurrent_first_logins_agree(mailring_proxy, dovecot_backend,
                                       mail_root, redis_server, cli_bin, sockdir):
    """Two proxies with different weight views place the same new users at
    once: first writer wins, every user ends on one backend (I1)."""
    bs = [dovecot_backend(mail_root=mail_root) for _ in range(2)]
    p1 = _proxy(mailring_proxy, redis_server, _backends(bs, {0: 1000, 1: 1}),
                "proxy1", cli_bin, sockdir)
    p1.wait_log("redis store .* connected", timeout=5, since_start=False)
    # p2's config says the opposite; the ring's table (seeded first by p1)
    # is what counts, but even with different candidate lists the first
    # writer wins
    p2 = _proxy(mailring_proxy, redis_server, _backends(bs, {0: 1, 1: 1000}),
                "proxy2", cli_bin, sockdir)
    p2.wait_log("redis store .* connected", timeout=5, since_start=False)
    users = ["user%d" % i for i in range(100, 140)]
    seen = {}
    errors = []
    lock = threading.Lock()

    def run(p):
        try:
            for u in users:
                b = _login_backend(p, u)
                with lock:
                    seen.setdefault(u, set()).add(b)
        except Exception as e:   # reported by the assertion below
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(p,)) for p in (p1, p2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert len(seen) == len(users)
    assert all(len(v) == 1 for v in seen.values()), seen


def test_move_kicks_on_every_proxy(mailring_proxy, dovecot_backend, mail_root,
                                   redis_server, cli_bin, sockdir):
    """I4 across proxies: a user with a session through p1 is moved from
    p2: the session gets BYE, the ring maps it to the target once every
    proxy acknowledged, and the next login through p3 lands there."""
    bs = [dovecot_backend(mail_root=mail_root) for _ in range(2)]
    p1, p2, p3 = _proxies(mailring_proxy, redis_server, _backends(bs), 3, cli_bin, sockdir)
    src = _login_backend(p1, "user200")
    dst = "b2" if src == "b1" else "b1"
    raw = p1.raw()
    raw.command("a", "LOGIN user200 pass")
    res = _cli(p2, "move", "user200", dst)
    assert res["backend"] == dst and res["acked"] == res["proxies"] == 3, res
    line = raw.line(timeout=3)
    assert line.startswith(b"* BYE"), line
    assert _login_backend(p3, "user200") == dst
    assert _cli(p1, "map", "user200")["backend"] == dst


def test_flush_and_down_reach_all_proxies(mailring_proxy, dovecot_backend,
                                          mail_root, redis_server, cli_bin, sockdir):
    """flush through p1 closes the backend's sessions on p2; down through
    p2 makes every proxy route elsewhere; up brings it back."""
    bs = [dovecot_backend(mail_root=mail_root) for _ in range(2)]
    p1, p2 = _proxies(mailring_proxy, redis_server, _backends(bs), 2, cli_bin, sockdir)
    users = ["user%d" % i for i in range(300, 320)]
    where = {u: _login_backend(p2, u) for u in users}
    on_b1 = [u for u, b in where.items() if b == "b1"]
    assert on_b1
    raw = p2.raw()
    raw.command("a", "LOGIN %s pass" % on_b1[0])
    res = _cli(p1, "flush", "b1")
    assert res["unmapped"] >= len(on_b1) and res["acked"] == 2, res
    assert raw.line(timeout=3).startswith(b"* BYE")
    assert _cli(p2, "users", "b1")["users"] == []
    res = _cli(p2, "down", "b1")
    assert res["state"] == "down"
    wait_until(lambda: {b["name"]: b["state"] for b in
                        _cli(p1, "status")["backends"]}["b1"] == "down",
               timeout=2, what="b1 down on p1")
    for u in on_b1:
        assert _login_backend(p1, u) == "b2"
    _cli(p1, "up", "b1")
    wait_until(lambda: {b["name"]: b["state"] for b in
                        _cli(p2, "status")["backends"]}["b1"] == "up",
               timeout=2, what="b1 up on p2")


def test_degraded_and_reconcile(mailring_proxy, dovecot_backend, mail_root,
                                redis_server, cli_bin, sockdir):
    """I5: with Redis gone logins go on (cache and placement), the proxy
    says it is degraded once; when Redis returns empty, the proxies
    re-assert the mappings of their live sessions and agree again."""
    bs = [dovecot_backend(mail_root=mail_root) for _ in range(3)]
    p1, p2 = _proxies(mailring_proxy, redis_server, _backends(bs), 2, cli_bin, sockdir)
    users = ["user%d" % i for i in range(400, 430)]
    before = {u: _login_backend(p1, u) for u in users}
    held = p1.imap(user="user401")
    redis_server.kill()
    for u in users:
        assert _login_backend(p1, u) == before[u]
        assert _login_backend(p2, u) == before[u]   # same hash, same view
    assert _cli(p1, "ring", "status")["degraded"] is True
    assert _metric(p1, "mailring_ring_degraded") == 1
    p1.wait_log("director: degraded", timeout=3)
    assert len(p1.log_lines("director: degraded")) == 1
    redis_server.start()
    for p in (p1, p2):
        p.wait_log("redis store reconciled", timeout=10)
    assert _cli(p2, "ring", "status")["degraded"] is False
    assert _metric(p2, "mailring_ring_degraded") == 0
    assert _metric(p1, "mailring_ring_lookups_total") >= len(users)
    r = redis_server.client()
    # user401 still has a session through p1: asserted into the new Redis
    assert _text(r.command("HGET", "t:u:user401", "b")) == before["user401"]
    for u in users:
        assert _cli(p1, "map", u)["backend"] == _cli(p2, "map", u)["backend"]
    held.logout()


def test_lmtp_follows_the_ring(mailring_proxy, dovecot_backend, cli_bin,
                               sockdir, redis_server):
    """LMTP deliveries go where the ring maps the user (I1 for deliveries):
    a user moved through p1 to a backend its hash would not pick gets its
    mail through p2 on that backend."""
    import smtplib
    from harness.dovecot import passwd_line
    user = "user1@example.com"
    bs = [dovecot_backend(users=3, extra_passwd_lines=[passwd_line(user)])
          for _ in range(3)]
    listeners = {"imap": {}, "lmtp": {"protocol": "lmtp"}}
    ps = []
    for i in (1, 2):
        sock = os.path.join(sockdir, "l%d.sock" % i)
        p = mailring_proxy(backends=_backends(bs), listeners=listeners,
                           passwd_lines=["%s:{PLAIN}pass::::::" % user],
                           settings=_settings(redis_server, "lmtp%d" % i,
                                              admin_socket=sock))
        p.admin_sock, p.cli_bin = sock, cli_bin
        p.wait_log("redis store .* connected", timeout=5, since_start=False)
        ps.append(p)
    p1, p2 = ps
    hashed = _cli(p2, "map", user)
    assert hashed["why"] == "hashed"
    target = next(b for b in ("b1", "b2", "b3") if b != hashed["backend"])
    assert _cli(p1, "move", user, target)["backend"] == target
    s = smtplib.LMTP(p2.host, p2.port("lmtp"), timeout=15)
    assert s.ehlo()[0] == 250
    assert s.mail("sender@example.com")[0] == 250
    assert s.rcpt(user)[0] == 250
    code, text = s.docmd("DATA")
    assert code == 354
    s.send(b"Subject: ring\r\n\r\nbody\r\n.\r\n")
    code, text = s.getreply()
    assert code == 250, text
    s.quit()
    delivered = [e for e in p2.events("lmtp") if e.get("result") == "delivered"]
    assert [e["backend"] for e in delivered] == [target]


def _sentinel(procs, ports, master_port, name):
    """A redis-server in sentinel mode watching master_port."""
    from harness.procs import call_check
    from harness.redis import redis_ping
    port = ports.get()
    d = procs.new_dir(name)
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"
                "sentinel monitor mymaster 127.0.0.1 %d 1\n"
                "sentinel down-after-milliseconds mymaster 600\n"
                "sentinel failover-timeout mymaster 3000\n"
                "sentinel parallel-syncs mymaster 1\n" % (port, d, master_port))
    procs.start(name, ["redis-server", conf, "--sentinel"], dir=d,
                ready=call_check(lambda: redis_ping("127.0.0.1", port),
                                 "answering PING"), timeout=10)
    return port


def test_sentinel_failover(mailring_proxy, dovecot_backend, mail_root,
                           redis_factory, procs, ports, cli_bin, sockdir):
    """Sentinel: the proxy finds the master through the sentinels; when the
    master dies and a replica is promoted, the proxy follows it, re-asserts
    the mappings of its live sessions there, and logins go on."""
    master = redis_factory(name="master")
    replica = redis_factory(name="replica", extra_args=[
        "--replicaof", "127.0.0.1", str(master.port)])
    wait_until(lambda: "master_link_status:up" in
               _text(replica.command("INFO", "replication")),
               timeout=10, what="replica in sync")
    s1 = _sentinel(procs, ports, master.port, "sentinel1")
    bs = [dovecot_backend(mail_root=mail_root) for _ in range(2)]
    sock = os.path.join(sockdir, "s.sock")
    settings = _settings(master, "sp1", admin_socket=sock,
                         redis_sentinels="127.0.0.1:%d" % s1,
                         redis_address="")
    p = mailring_proxy(backends=_backends(bs), settings=settings)
    p.admin_sock, p.cli_bin = sock, cli_bin
    p.wait_log("redis store 127.0.0.1:%d connected" % master.port, timeout=5,
               since_start=False)
    held = p.imap(user="user501")
    before = _login_backend(p, "user502")
    master.kill()
    # down-after 600 ms, then the failover; the proxy reconnects by itself
    p.wait_log("redis store 127.0.0.1:%d reachable again" % replica.port,
               timeout=20)
    p.wait_log("redis store reconciled", timeout=10)
    assert _cli(p, "ring", "status")["master"] == "127.0.0.1:%d" % replica.port
    assert _login_backend(p, "user502") in ("b1", "b2")
    # the live session's mapping was asserted on the new master
    assert _text(replica.command("HGET", "t:u:user501", "b")) in ("b1", "b2")
    assert before in ("b1", "b2")
    held.logout()


def test_add_and_remove_reach_all_proxies(mailring_proxy, dovecot_backend,
                                          mail_root, redis_server, cli_bin,
                                          sockdir):
    """`mailring add IP:PORT` through p1: p2 learns it from the ring and
    places new users there; `remove` closes its sessions everywhere and
    drops it on every proxy; a backend of the config file cannot be
    removed from the CLI."""
    b1, b2 = [dovecot_backend(mail_root=mail_root) for _ in range(2)]
    p1, p2 = _proxies(mailring_proxy, redis_server, _backends([b1]), 2,
                      cli_bin, sockdir)
    name = "127.0.0.1:%d" % b2.imap_port
    res = _cli(p1, "add", name, "1000")
    assert res["added"] is True and res["weight"] == 1000
    for p in (p1, p2):
        wait_until(lambda p=p: name in [b["name"] for b in
                                        _cli(p, "status")["backends"]],
                   timeout=3, what="added backend on %s" % p.name)
        p.wait_log("reconfiguring", timeout=3)
    # weight 1000 against 100: about 91% of new users (the backend's name
    # holds a random port, so which users varies from run to run)
    placed = [_login_backend(p2, "user%d" % i) for i in range(600, 640)]
    assert placed.count(name) >= 28, placed
    on_new = next(u for u, b in zip(range(600, 640), placed) if b == name)
    raw = p2.raw()
    raw.command("a", "LOGIN user%d pass" % on_new)
    res = _cli(p1, "remove", name)
    assert res["removed"] is True, res
    assert raw.line(timeout=3).startswith(b"* BYE")
    for p in (p1, p2):
        wait_until(lambda p=p: name not in [b["name"] for b in
                                            _cli(p, "status")["backends"]],
                   timeout=3, what="backend gone on %s" % p.name)
    assert _login_backend(p2, "user%d" % on_new) == "b1"
    out = subprocess.run([cli_bin, "-s", p1.admin_sock, "remove", "b1"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 65 and "config file" in out.stderr, out


def test_kill9_backend_with_two_proxies(mailring_proxy, dovecot_backend,
                                        mail_root, redis_server, cli_bin,
                                        sockdir):
    """kill -9 of a backend with two proxies voting: its open sessions are
    closed, both proxies see it down within the fall time (2 of 2 votes),
    its users are placed anew, and logins of users on the other backend
    never fail meanwhile."""
    import time
    b1, b2 = [dovecot_backend(mail_root=mail_root) for _ in range(2)]
    health = {"health_interval": "300ms", "health_timeout": "500ms",
              "health_fall": "2", "health_rise": "2"}
    p1, p2 = _proxies(mailring_proxy, redis_server, _backends([b1, b2]), 2,
                      cli_bin, sockdir, **health)
    users = ["user%d" % i for i in range(800, 840)]
    where = {u: _login_backend(p1, u) for u in users}
    on_b1 = [u for u in users if where[u] == "b1"]
    on_b2 = [u for u in users if where[u] == "b2"]
    assert on_b1 and on_b2
    held = p2.raw()
    held.command("a", "LOGIN %s pass" % on_b2[0])
    failures = []
    stop = threading.Event()

    def b1_logins():
        i = 0
        while not stop.is_set():
            u = on_b1[i % len(on_b1)]
            i += 1
            try:
                if _login_backend(p2, u) != "b1":
                    failures.append((u, "moved"))
            except Exception as e:   # any failed login is a failure
                failures.append((u, repr(e)))

    t = threading.Thread(target=b1_logins)
    t.start()
    try:
        t0 = time.monotonic()
        b2.kill()
        assert held.closed(timeout=3)
        for p in (p1, p2):
            wait_until(lambda p=p: {b["name"]: b["state"] for b in
                                    _cli(p, "status")["backends"]}["b2"] ==
                       "down", timeout=5, what="b2 down on %s" % p.name)
        # 2 checks 300 ms apart, each failing within 500 ms, plus a vote
        assert time.monotonic() - t0 < 3.5
        # the quorum took it down: both votes counted
        assert any(p.log_lines("2 of 2 live proxies see it failing")
                   for p in (p1, p2))
        for u in on_b2:
            assert _login_backend(p1, u) == "b1"
    finally:
        stop.set()
        t.join()
    assert not failures, failures[:5]


def test_paced_flush_across_proxies(mailring_proxy, dovecot_backend,
                                    mail_root, redis_server, cli_bin, sockdir):
    """A flush of more users than director_flush_batch goes in batches,
    each a kick round on every proxy, director_flush_interval apart."""
    import time
    b1 = dovecot_backend(mail_root=mail_root)
    p1, p2 = _proxies(mailring_proxy, redis_server, _backends([b1]), 2,
                      cli_bin, sockdir, director_flush_batch="2",
                      director_flush_interval="700ms")
    held = []
    for i, p in zip(range(950, 956), (p1, p2) * 3):
        r = p.raw()
        r.command("a", "LOGIN user%d pass" % i)
        held.append(r)
    ans = _cli(p1, "flush", "b1")
    assert ans["paced"] is True and ans["users"] == 6 and ans["batch"] == 2
    assert ans["unmapped"] == 2

    def closed_count():
        return sum(1 for r in held if r.closed(timeout=0.05))

    time.sleep(0.2)
    assert closed_count() == 2
    p1.wait_log(r"backend b1 flushed: 6 users unmapped", timeout=6)
    assert closed_count() == 6
    assert _cli(p2, "users", "b1")["users"] == []
    assert _login_backend(p2, "user950") == "b1"   # placed anew, works
