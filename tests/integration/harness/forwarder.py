"""A TCP forwarder for tests: a loopback port that relays to a target, and
that a test can cut (like a broken network path) and restore.

    f = TcpForwarder(target_port=b.imap_port, port=ports.get())
    f.host, f.port                 # where to connect instead of the target
    f.cut()                        # = cut(mode="refuse")
    f.cut(mode="blackhole")
    f.restore()
    f.close()

One thread runs a selectors loop for everything (listener, forwarded
pairs, blackholed sockets); cut()/restore()/close() are executed by that
thread and return once done, so after cut() returns no byte moves any
more through an old connection.

Modes:
  * "forward"   (normal): every accepted connection gets its own
    connection to the target; bytes are relayed both ways, EOF is passed
    on (half-close), a reset or a failed connect to the target closes
    both sides with a reset (RST).
  * "refuse":   accepted connections are closed at once with a reset (the
    client sees its connect succeed, then ECONNRESET/EOF on the first
    read: what a peer that is gone looks like to a proxy's health check).
    The listening socket stays bound, so the port is never lost.
  * "blackhole": accepted connections are kept open and never answered
    (what they send is read and dropped): the client's read times out.

cut(mode, existing="close") also ends the connections forwarded so far:
"close" resets both sides of each; "hang" keeps both sockets open but
stops relaying (a path that silently drops everything).  restore()
closes blackholed / hung sockets and forwards new connections again.
"""

import errno
import selectors
import socket
import struct
import threading
import time

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
BUF_LIMIT = 256 * 1024
MODES = ("forward", "refuse", "blackhole")


def _abort(sock):
    """Close with RST (SO_LINGER 0), ignoring errors."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Pair:
    """One forwarded connection: client <-> upstream."""

    def __init__(self, fwd, client, upstream):
        self.fwd = fwd
        self.client = client
        self.upstream = upstream
        self.connecting = True
        self.c2u = bytearray()
        self.u2c = bytearray()
        self.c_eof = self.u_eof = False        # read EOF from that side
        self.c_shut = self.u_shut = False      # sent EOF (SHUT_WR) to it
        self.masks = {client: 0, upstream: 0}
        self.closed = False

    def handle(self, sock, mask):
        try:
            if sock is self.upstream and self.connecting:
                if mask & (_WRITE | _READ):
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self.abort()
                        return
                    self.connecting = False
            if mask & _READ:
                self._read(sock)
            if self.closed:
                return
            if mask & _WRITE:
                self._write(sock)
        except OSError:
            self.abort()
            return
        if not self.closed:
            self.update()

    def _read(self, sock):
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        if sock is self.client:
            if data:
                self.c2u += data
                self.fwd.bytes_in += len(data)
            else:
                self.c_eof = True
        else:
            if data:
                self.u2c += data
                self.fwd.bytes_out += len(data)
            else:
                self.u_eof = True

    def _write(self, sock):
        buf = self.c2u if sock is self.upstream else self.u2c
        if not buf:
            return
        try:
            n = sock.send(buf)
        except (BlockingIOError, InterruptedError):
            return
        del buf[:n]

    def update(self):
        """Pass EOFs on, close when both directions are done, and
        (re)register the sockets for what they wait for."""
        if self.closed:
            return
        if not self.connecting:
            if self.c_eof and not self.c2u and not self.u_shut:
                self.u_shut = True
                try:
                    self.upstream.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            if self.u_eof and not self.u2c and not self.c_shut:
                self.c_shut = True
                try:
                    self.client.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            if self.c_eof and self.u_eof and not self.c2u and not self.u2c:
                self.close()
                return
        cm = 0
        if not self.c_eof and len(self.c2u) < BUF_LIMIT:
            cm |= _READ
        if self.u2c:
            cm |= _WRITE
        if self.connecting:
            um = _WRITE
        else:
            um = 0
            if not self.u_eof and len(self.u2c) < BUF_LIMIT:
                um |= _READ
            if self.c2u:
                um |= _WRITE
        self._set(self.client, cm)
        self._set(self.upstream, um)

    def _set(self, sock, mask):
        old = self.masks[sock]
        if mask == old:
            return
        sel = self.fwd._sel
        if old and mask:
            sel.modify(sock, mask, self)
        elif mask:
            sel.register(sock, mask, self)
        else:
            sel.unregister(sock)
        self.masks[sock] = mask

    def _unregister(self):
        for s in (self.client, self.upstream):
            if self.masks.get(s):
                try:
                    self.fwd._sel.unregister(s)
                except (KeyError, ValueError, OSError):
                    pass
                self.masks[s] = 0

    def close(self):
        if self.closed:
            return
        self.closed = True
        self._unregister()
        for s in (self.client, self.upstream):
            try:
                s.close()
            except OSError:
                pass
        self.fwd._pairs.discard(self)

    def abort(self):
        """Both sides get a reset."""
        if self.closed:
            return
        self.closed = True
        self._unregister()
        _abort(self.client)
        _abort(self.upstream)
        self.fwd._pairs.discard(self)

    def hang(self):
        """Stop relaying but keep both sockets open; returns them."""
        self._unregister()
        self.closed = True
        self.fwd._pairs.discard(self)
        return [self.client, self.upstream]


class _Hole:
    """A blackholed socket: read and drop, never answer."""

    def __init__(self, fwd, sock, read=True):
        self.fwd = fwd
        self.sock = sock
        self.registered = False
        if read:
            fwd._sel.register(sock, _READ, self)
            self.registered = True

    def handle(self, sock, mask):
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()

    def close(self):
        if self.registered:
            try:
                self.fwd._sel.unregister(self.sock)
            except (KeyError, ValueError, OSError):
                pass
            self.registered = False
        try:
            self.sock.close()
        except OSError:
            pass
        self.fwd._holes.discard(self)


class TcpForwarder:
    """See the module docstring.

    Attributes: host, port (listening), target (host, port), mode,
    name; counters accepted, forwarded, refused, blackholed, bytes_in
    (client -> target), bytes_out; active() = live forwarded pairs."""

    def __init__(self, target_port, target_host="127.0.0.1", port=None,
                 host="127.0.0.1", name=None):
        self.target = (target_host, int(target_port))
        self.host = host
        self.name = name or "fwd->%s:%d" % self.target
        self.mode = "forward"
        self.accepted = self.forwarded = self.refused = self.blackholed = 0
        self.bytes_in = self.bytes_out = 0
        self._sel = selectors.DefaultSelector()
        self._pairs = set()
        self._holes = set()
        self._cmds = []
        self._cmd_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port or 0))
        self._lsock.listen(512)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._lsock, _READ, "listen")
        self._sel.register(self._wake_r, _READ, "wake")
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="forwarder:%d" % self.port)
        self._thread.start()

    # -- public API (any thread) -------------------------------------------
    def addr(self):
        return (self.host, self.port)

    def cut(self, mode="refuse", existing="close"):
        """Cut the path: existing connections are closed ("close", with
        a reset) or frozen ("hang"); new ones are refused (reset right
        after accept) or blackholed (accepted, never answered)."""
        if mode not in ("refuse", "blackhole"):
            raise ValueError("cut mode must be 'refuse' or 'blackhole'")
        if existing not in ("close", "hang"):
            raise ValueError("existing must be 'close' or 'hang'")
        self._call(self._do_cut, mode, existing)

    def restore(self):
        """Forward new connections again; blackholed/hung sockets are
        closed."""
        self._call(self._do_restore)

    def set_target(self, port, host=None):
        """Forward new connections to another target."""
        def do():
            self.target = (host or self.target[0], int(port))
        self._call(do)

    def active(self):
        return len(self._pairs)

    def close(self):
        if self._closed:
            return
        self._closing = True
        self._wake()
        self._thread.join(timeout=5)
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<TcpForwarder %s:%d -> %s:%d %s>" % (
            self.host, self.port, self.target[0], self.target[1], self.mode)

    # -- loop thread ---------------------------------------------------------
    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _call(self, fn, *args):
        if self._closed or self._closing:
            raise RuntimeError("forwarder is closed")
        if threading.current_thread() is self._thread:
            fn(*args)
            return
        done = threading.Event()
        box = {}

        def run():
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised below
                box["error"] = e
            finally:
                done.set()
        with self._cmd_lock:
            self._cmds.append(run)
        self._wake()
        if not done.wait(10):
            raise RuntimeError("forwarder thread did not answer")
        if "error" in box:
            raise box["error"]

    def _run(self):
        try:
            while not self._closing:
                for key, mask in self._sel.select(timeout=0.5):
                    data = key.data
                    if data == "listen":
                        self._accept()
                    elif data == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                    else:
                        data.handle(key.fileobj, mask)
                self._run_cmds()
        finally:
            self._run_cmds()
            self._shutdown()

    def _run_cmds(self):
        with self._cmd_lock:
            cmds, self._cmds = self._cmds, []
        for c in cmds:
            c()

    def _accept(self):
        for _ in range(64):
            try:
                s, _addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                               errno.ENOMEM, errno.ECONNABORTED):
                    time.sleep(0.01)
                    return
                raise
            self.accepted += 1
            if self.mode == "refuse":
                self.refused += 1
                _abort(s)
                continue
            s.setblocking(False)
            if self.mode == "blackhole":
                self.blackholed += 1
                self._holes.add(_Hole(self, s))
                continue
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            up.setblocking(False)
            err = up.connect_ex(self.target)
            if err not in (0, errno.EINPROGRESS):
                _abort(s)
                up.close()
                continue
            self.forwarded += 1
            pair = _Pair(self, s, up)
            self._pairs.add(pair)
            pair.update()

    def _do_cut(self, mode, existing):
        self.mode = mode
        for p in list(self._pairs):
            if existing == "close":
                p.abort()
            else:
                for s in p.hang():
                    self._holes.add(_Hole(self, s, read=False))

    def _do_restore(self):
        self.mode = "forward"
        for h in list(self._holes):
            h.close()

    def _shutdown(self):
        for p in list(self._pairs):
            p.abort()
        for h in list(self._holes):
            h.close()
        for s in (self._lsock, self._wake_r, self._wake_w):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError, OSError):
                pass
            try:
                s.close()
            except OSError:
                pass
        try:
            self._sel.close()
        except OSError:
            pass
