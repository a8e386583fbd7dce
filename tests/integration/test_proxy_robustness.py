"""Regression tests for defects found in review: misbehaving backends and
TLS clients must neither crash nor spin the proxy, and a client always
gets a tagged answer. Fake backends are tiny socket servers in threads."""

import socket
import struct
import threading
import time


class FakeBackend:
    """A TCP server on loopback that runs handler(sock) per connection."""

    def __init__(self, ports, handler):
        self.port = ports.get()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(64)
        self.handler = handler
        self.threads = []
        t = threading.Thread(target=self._serve, daemon=True)
        t.start()

    def _serve(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            t = threading.Thread(target=self.handler, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def close(self):
        self.ls.close()

    def settings(self, name="fake"):
        return {"name": name, "host": "127.0.0.1", "imap_port": self.port}


def _greet_then_reset(s):
    s.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake ready\r\n")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _never_greet(s):
    time.sleep(10)
    s.close()


def test_backend_reset_after_greeting(mailring_proxy, ports):
    """The backend resets the connection while the proxy writes the login:
    the client gets NO [UNAVAILABLE], again and again, and the proxy lives
    (under `make asan` the fixture fails the test on any sanitizer report)."""
    fake = FakeBackend(ports, _greet_then_reset)
    try:
        p = mailring_proxy(backends=[fake.settings()])
        for i in range(5):
            r = p.raw()
            _, tagged = r.command("a", "LOGIN user1 pass")
            assert tagged.startswith(b"a NO [UNAVAILABLE]"), tagged
            r.close()
        assert p.running()
    finally:
        fake.close()


def test_backend_that_never_greets_gets_a_tagged_answer(mailring_proxy, ports):
    """A backend that accepts but never speaks: after backend_login_timeout
    the client gets a tagged NO (not a BYE), and may try again."""
    fake = FakeBackend(ports, _never_greet)
    try:
        p = mailring_proxy(backends=[fake.settings()],
                           settings={"backend_login_timeout": "1s",
                                     "login_timeout": "30s"})
        r = p.raw(timeout=10)
        t0 = time.monotonic()
        _, tagged = r.command("a", "LOGIN user1 pass")
        assert tagged.startswith(b"a NO [UNAVAILABLE]"), tagged
        assert 0.8 < time.monotonic() - t0 < 4.0
        _, tagged = r.command("b", "NOOP")
        assert tagged.startswith(b"b OK"), tagged
        r.close()
        p.wait_log(r"login timed out")
    finally:
        fake.close()


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / float(__import__("os").sysconf("SC_CLK_TCK"))


def test_partial_tls_record_does_not_spin(mailring_proxy, dovecot_backend):
    """A logged-in TLS client sends only part of a TLS record: the worker
    must wait for the rest, not spin on it."""
    import ssl
    b = dovecot_backend()
    p = mailring_proxy(backends=[b], listeners=["imaps"])
    raw = socket.create_connection(p.addr("imaps"), timeout=10)
    ctx = ssl.create_default_context(cafile=p.cert)
    ctx.check_hostname = False
    # a memory BIO lets the test send a record in pieces
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")

    def pump():
        data = out.read()
        if data:
            raw.sendall(data)

    def recv_into_bio():
        inc.write(raw.recv(65536))

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
            recv_into_bio()
    pump()

    def read_line():
        buf = b""
        while not buf.endswith(b"\r\n"):
            try:
                buf += obj.read(65536)
            except ssl.SSLWantReadError:
                recv_into_bio()
        return buf

    assert read_line().startswith(b"* OK")
    obj.write(b"a LOGIN user1 pass\r\n")
    pump()
    while b"a OK" not in read_line():
        pass
    obj.write(b"c NOOP\r\n")
    record = out.read()
    assert len(record) > 10
    raw.sendall(record[:-5])           # all but the last 5 bytes
    cpu0 = _cpu_seconds(p.pid)
    time.sleep(2.0)
    spent = _cpu_seconds(p.pid) - cpu0
    assert spent < 0.3, "proxy burnt %.2f s of CPU on half a record" % spent
    raw.sendall(record[-5:])           # the rest: the command goes through
    while b"c OK" not in read_line():
        pass
    raw.close()


def test_backend_connect_timeout_tries_next(mailring_proxy, dovecot_backend,
                                            ports):
    """A backend whose accept queue is full never completes the TCP
    handshake: after backend_connect_timeout the next backend is tried."""
    b = dovecot_backend()
    port = ports.get()
    ls = socket.socket()
    ls.bind(("127.0.0.1", port))
    ls.listen(0)
    # fill the accept queue: further SYNs are dropped, connects hang
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.2)
    try:
        p = mailring_proxy(backends=[{"name": "stuck", "host": "127.0.0.1",
                                      "imap_port": port}, b],
                           settings={"backend_connect_timeout": "1s"})
        users = ["user%d" % i for i in range(1, 15)]
        for u in users:
            r = p.raw(timeout=10)
            _, tagged = r.command("a", "LOGIN %s pass" % u)
            assert tagged.startswith(b"a OK"), tagged
            r.close()
        timeouts = p.log_lines(r"connect timed out; trying the next backend")
        assert timeouts, "no user was ranked on the stuck backend first"
        assert all("backend=stuck" in l for l in timeouts)
    finally:
        for f in fillers:
            f.close()
        ls.close()
