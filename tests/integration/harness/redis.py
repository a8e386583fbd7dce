"""A real redis-server for tests, and a tiny RESP2 client (no redis-py)."""

import os
import socket
import time

from .procs import ProcessStartError, call_check

REDIS_SERVER = os.environ.get("MAILRING_REDIS_SERVER", "/usr/bin/redis-server")


class RespError(Exception):
    """An error reply (-ERR ...) from the server."""


class RespClient:
    """Minimal blocking RESP2 client.

        c = RespClient("127.0.0.1", port)
        c.command("SET", "k", "v")  -> "OK"
        c.command("GET", "k")       -> b"v"

    Replies: simple string -> str, error -> raises RespError,
    integer -> int, bulk -> bytes (None for nil), array -> list (None for
    nil).  For pub/sub, send with send_command() and read with read_reply().
    """

    def __init__(self, host="127.0.0.1", port=6379, timeout=5.0):
        self.host = host
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buf = b""

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, bytes):
                b = a
            elif isinstance(a, str):
                b = a.encode()
            elif isinstance(a, (int, float)):
                b = str(a).encode()
            else:
                raise TypeError("unsupported RESP argument %r" % (a,))
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def send_command(self, *args):
        self.sock.sendall(self.encode(*args))

    def command(self, *args):
        self.send_command(*args)
        return self.read_reply()

    def pipeline(self, *commands):
        """Send several commands at once; list of replies (errors are
        returned as RespError instances, not raised)."""
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        out = []
        for _ in commands:
            try:
                out.append(self.read_reply())
            except RespError as e:
                out.append(e)
        return out

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self._buf += chunk

    def _line(self):
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line, self._buf = self._buf[:i], self._buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n):
        while len(self._buf) < n + 2:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n + 2:]
        return data

    def read_reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RespError(rest.decode("utf-8", "replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            out = []
            for _ in range(n):
                try:
                    out.append(self.read_reply())
                except RespError as e:
                    out.append(e)
            return out
        raise RespError("protocol error: unexpected reply line %r" % line)


def redis_ping(host, port, timeout=1.0):
    """True if a RESP PING gets +PONG."""
    try:
        with RespClient(host, port, timeout=timeout) as c:
            return c.command("PING") == "PONG"
    except (OSError, RespError, ValueError):
        return False


class RedisServer:
    """A redis-server managed by a ProcessManager.

    Attributes: host, port, dir (its working/data dir), proc
    (ManagedProcess), url ("redis://host:port").
    """

    def __init__(self, procs, ports, name="redis", extra_args=(),
                 password=None, timeout=10.0):
        self.procs = procs
        self.ports = ports
        self.host = "127.0.0.1"
        self.port = ports.get()
        self.name = name
        self.password = password
        self.extra_args = list(extra_args)
        self.timeout = timeout
        self.dir = procs.new_dir(name)
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://%s:%d" % (self.host, self.port)

    def argv(self):
        a = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host,
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--logfile", "", "--loglevel", "notice",
             "--protected-mode", "no", "--databases", "16"]
        if self.password:
            a += ["--requirepass", self.password]
        return a + self.extra_args

    def _ready(self):
        def ping():
            try:
                with RespClient(self.host, self.port, timeout=1.0) as c:
                    if self.password:
                        c.command("AUTH", self.password)
                    return c.command("PING") == "PONG"
            except (OSError, RespError, ValueError):
                return False
        return call_check(ping, "answering PING")

    def start(self):
        """Start (again) on the same port and dir."""
        if self.proc is None:
            for attempt in range(3):
                try:
                    self.proc = self.procs.start(
                        self.name, self.argv(), dir=self.dir,
                        ready=self._ready(), timeout=self.timeout)
                    break
                except ProcessStartError as e:
                    # Port grabbed by someone else meanwhile: new port.
                    if attempt == 2 or "Address already in use" not in str(e):
                        raise
                    self.port = self.ports.get()
        else:
            if self.proc.running():
                return self
            self.proc._launch()
            try:
                self.proc.wait_ready(self._ready(), self.timeout)
            except ProcessStartError:
                self.proc.stop(grace=1.0)
                raise
        return self

    def stop(self, grace=5.0):
        if self.proc is not None:
            self.proc.stop(grace=grace)

    def kill(self):
        """SIGKILL (crash simulation)."""
        if self.proc is not None:
            self.proc.kill()

    def restart(self, down_seconds=0.0):
        """Stop, optionally stay down for a while, start on the same port."""
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        return self.start()

    def running(self):
        return self.proc is not None and self.proc.running()

    def client(self, timeout=5.0):
        c = RespClient(self.host, self.port, timeout=timeout)
        if self.password:
            c.command("AUTH", self.password)
        return c

    def command(self, *args):
        """One-shot command on a fresh connection."""
        with self.client() as c:
            return c.command(*args)

    def log_text(self):
        return self.proc.stdout_text() if self.proc else ""

    def __repr__(self):
        return "<RedisServer %s:%d>" % (self.host, self.port)
