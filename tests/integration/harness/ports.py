"""Free loopback TCP ports for test servers.

Ports are picked at random *below* the kernel's ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range), so an outgoing connection made by a
client or proxy between "port chosen" and "server bound" can never be given
the same port as its local port.  A candidate is accepted only if a plain
bind() to it on 127.0.0.1 succeeds (and is then released).

Two kinds of reservation keep concurrently started servers apart:
  * in-process: a port handed out once is never handed out again in this
    pytest session (so two servers started by one test never collide);
  * cross-process: each handed-out port is locked with flock() on
    /tmp/mailring-ports/<port>.lock for the life of this process, so another
    pytest session on the same machine (another engineer) skips it.
    The kernel drops the locks when the process exits, crash or not.

If the out-of-range pick fails repeatedly, fall back to bind-to-port-0.
"""

import errno
import fcntl
import os
import random
import socket
import threading

LOCK_DIR = os.environ.get("MAILRING_PORT_LOCK_DIR", "/tmp/mailring-ports")
LOW_DEFAULT = 20000


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def port_is_bindable(port, host="127.0.0.1"):
    """True if nothing is bound to host:port right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class PortAllocator:
    """Hands out distinct free loopback ports; thread-safe."""

    def __init__(self, host="127.0.0.1", lock_dir=LOCK_DIR):
        self.host = host
        self.lock_dir = lock_dir
        self._given = set()
        self._lock_fds = {}
        self._mutex = threading.Lock()
        lo, _hi = _ephemeral_range()
        # [LOW_DEFAULT, ephemeral_low) unless that range is silly.
        if lo - LOW_DEFAULT >= 2000:
            self._range = (LOW_DEFAULT, lo - 1)
        else:
            self._range = None
        try:
            os.makedirs(self.lock_dir, exist_ok=True)
            os.chmod(self.lock_dir, 0o1777)
        except OSError:
            self.lock_dir = None

    def _try_lock(self, port):
        if self.lock_dir is None:
            return True
        path = os.path.join(self.lock_dir, "%d.lock" % port)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return True  # cannot lock: rely on the bind check alone
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            return True
        self._lock_fds[port] = fd
        return True

    def _unlock(self, port):
        fd = self._lock_fds.pop(port, None)
        if fd is not None:
            os.close(fd)

    def _from_kernel(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((self.host, 0))
            return s.getsockname()[1]
        finally:
            s.close()

    def get(self):
        """One free port, never returned before by this allocator."""
        with self._mutex:
            for _ in range(200):
                if self._range is not None:
                    port = random.randint(*self._range)
                else:
                    port = self._from_kernel()
                if port in self._given:
                    continue
                if not self._try_lock(port):
                    continue
                if not port_is_bindable(port, self.host):
                    self._unlock(port)
                    continue
                self._given.add(port)
                return port
            # Last resort: whatever the kernel gives.
            for _ in range(50):
                port = self._from_kernel()
                if port not in self._given:
                    self._given.add(port)
                    return port
        raise RuntimeError("could not find a free loopback TCP port")

    def get_many(self, n):
        return [self.get() for _ in range(n)]

    def release_all(self):
        with self._mutex:
            for port in list(self._lock_fds):
                self._unlock(port)


_default = None


def default_allocator():
    """The process-wide allocator (one per pytest session)."""
    global _default
    if _default is None:
        _default = PortAllocator()
    return _default


def free_port():
    """Convenience: one free loopback port from the process-wide allocator."""
    return default_allocator().get()
