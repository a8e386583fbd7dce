"""A canned DNS server for tests: ldns-testns serving records described in
Python, and a UDP black hole for timeouts.

    s = dns_server(records=[
            ("b1.example.net", "A", "127.0.0.5", 30),
            ("b1.example.net", "AAAA", "::5", 30),
            ("_imap._tcp.example.net", "SRV", (10, 60, 1143, "b1.example.net"), 30),
            ("mail.example.net", "CNAME", "b1.example.net", 60),
        ], nxdomain=["gone.example.net"])
    s.host, s.port, s.addr ("127.0.0.1:PORT"), s.data_path, s.proc
    s.set_zone(records=[...], nxdomain=[...])   # rewrite + restart, same port
    s.query("b1.example.net", "A") -> (rcode, [answer rdata text...])

Records are (name, type, value[, ttl]) with type A, AAAA, CNAME, TXT or SRV
(value "prio weight port target" or a 4-tuple); the default TTL is 300.
Names are absolute without their trailing dot.

What it answers (ldns-testns picks the first matching entry; the harness
writes one entry per name and type, so every answer has the question
section, which ldns-testns's own copy_query leaves out):
  * a name with records: NOERROR with the records of the asked type,
    following CNAMEs the way a recursive server would (the chain and the
    target's records); NODATA (NOERROR, SOA in authority) for other types;
  * a name in `nxdomain`: NXDOMAIN with the SOA;
  * a name in `servfail`: SERVFAIL;
  * a name in `truncate`: over UDP an empty answer with TC set, over TCP
    the real answer;
  * any other name: no answer at all (the client times out).
The SOA's TTL and minimum are `negative_ttl` (default 5). Only A, AAAA,
SRV and TXT entries are written.

ldns-testns reads its data file at start only: set_zone() restarts it on
the same port (UDP and TCP on 127.0.0.1; it binds 0.0.0.0).
"""

import os
import random
import socket
import struct
import time

import pytest

from .procs import ProcessStartError, call_check

LDNS_TESTNS = os.environ.get("MAILRING_LDNS_TESTNS", "/usr/bin/ldns-testns")

QTYPES = {"A": 1, "CNAME": 5, "SOA": 6, "TXT": 16, "AAAA": 28, "SRV": 33}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED"}
ANSWER_TYPES = ("A", "AAAA", "SRV", "TXT")
READY_NAME = "ready.mailring.test"
DEFAULT_TTL = 300


def _fqdn(name):
    return name if name.endswith(".") else name + "."


def _norm(name):
    return name.rstrip(".").lower()


def _rdata(rtype, value):
    if rtype == "SRV" and isinstance(value, (tuple, list)):
        prio, weight, port, target = value
        return "%d %d %d %s" % (prio, weight, port, _fqdn(target))
    if rtype == "SRV":
        parts = str(value).split()
        parts[3] = _fqdn(parts[3])
        return " ".join(parts)
    if rtype == "CNAME":
        return _fqdn(value)
    if rtype == "TXT":
        return '"%s"' % value
    return str(value)


class Zone:
    """The Python description of what the server answers."""

    def __init__(self, records=(), nxdomain=(), servfail=(), truncate=(),
                 origin="example.net", negative_ttl=5):
        self.records = []
        for r in records:
            name, rtype, value = r[0], r[1].upper(), r[2]
            ttl = r[3] if len(r) > 3 else DEFAULT_TTL
            if rtype not in QTYPES or rtype == "SOA":
                raise ValueError("unsupported record type %r" % rtype)
            self.records.append((_norm(name), rtype, value, int(ttl)))
        self.nxdomain = [_norm(n) for n in nxdomain]
        self.servfail = [_norm(n) for n in servfail]
        self.truncate = [_norm(n) for n in truncate]
        self.origin = _norm(origin)
        self.negative_ttl = int(negative_ttl)

    def _soa(self):
        o = _fqdn(self.origin)
        return "%s %d IN SOA ns.%s hostmaster.%s 1 3600 600 86400 %d" % (
            o, self.negative_ttl, o, o, self.negative_ttl)

    def _rr(self, name, rtype, value, ttl):
        return "%s %d IN %s %s" % (_fqdn(name), ttl, rtype,
                                   _rdata(rtype, value))

    def answer(self, name, qtype):
        """The answer section lines for name/qtype ([] = NODATA)."""
        out = []
        cur = name
        for _ in range(16):
            cnames = [r for r in self.records
                      if r[0] == cur and r[1] == "CNAME"]
            if not cnames:
                break
            out.append(self._rr(*cnames[0]))
            cur = _norm(cnames[0][2])
        out += [self._rr(*r) for r in self.records
                if r[0] == cur and r[1] == qtype]
        return out

    @staticmethod
    def _entry(name, qtype, flags, answer=(), authority=(), transport=""):
        lines = ["ENTRY_BEGIN",
                 "MATCH opcode qtype qname" + (" " + transport
                                               if transport else ""),
                 "ADJUST copy_id",
                 "REPLY " + flags,
                 "SECTION QUESTION",
                 "%s IN %s" % (_fqdn(name), qtype)]
        if answer:
            lines.append("SECTION ANSWER")
            lines += list(answer)
        if authority:
            lines.append("SECTION AUTHORITY")
            lines += list(authority)
        lines.append("ENTRY_END")
        return "\n".join(lines) + "\n"

    def data_file(self):
        """The ldns-testns data file text."""
        out = ["; generated by tests/integration/harness/dns.py\n"]
        out.append(self._entry(READY_NAME, "TXT", "QR AA NOERROR",
                               ['%s. 0 IN TXT "ready"' % READY_NAME]))
        names = []
        for n in ([r[0] for r in self.records] + self.nxdomain +
                  self.servfail + self.truncate):
            if n not in names:
                names.append(n)
        for name in names:
            for qtype in ANSWER_TYPES:
                if name in self.nxdomain:
                    out.append(self._entry(name, qtype, "QR AA RD RA NXDOMAIN",
                                           authority=[self._soa()]))
                    continue
                if name in self.servfail:
                    out.append(self._entry(name, qtype, "QR RD RA SERVFAIL"))
                    continue
                answer = self.answer(name, qtype)
                authority = [] if answer else [self._soa()]
                if name in self.truncate:
                    out.append(self._entry(name, qtype,
                                           "QR AA TC RD RA NOERROR",
                                           transport="UDP"))
                out.append(self._entry(name, qtype, "QR AA RD RA NOERROR",
                                       answer, authority))
        return "".join(out)


def build_query(name, qtype, qid):
    """A plain DNS query (RD set) as bytes."""
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in _norm(name).split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", QTYPES[qtype], 1)


def udp_query(host, port, name, qtype, timeout=1.0):
    """Sends one query; returns (rcode, ancount, raw answer) or raises
    socket.timeout / OSError."""
    qid = random.randint(0, 0xffff)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(build_query(name, qtype, qid))
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(65535)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                flags, _qd, ancount = struct.unpack(">HHH", data[2:8])
                return flags & 0x0f, ancount, data


class DnsServer:
    """ldns-testns on 127.0.0.1:port under a ProcessManager."""

    def __init__(self, procs, ports, name="dns", timeout=10.0, **zone):
        self.procs = procs
        self.ports = ports
        self.name = name
        self.host = "127.0.0.1"
        self.port = ports.get()
        self.timeout = timeout
        self.dir = procs.new_dir(name)
        self.data_path = os.path.join(self.dir, "zone.data")
        self.proc = None
        self.zone = Zone(**zone)
        self._write()
        self.start()

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def argv(self):
        return [LDNS_TESTNS, "-v", "-p", str(self.port), self.data_path]

    def _write(self):
        tmp = self.data_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.zone.data_file())
        os.replace(tmp, self.data_path)

    def _ready(self):
        def probe():
            rcode, ancount, _ = udp_query(self.host, self.port, READY_NAME,
                                          "TXT", timeout=0.3)
            return rcode == 0 and ancount == 1
        return call_check(probe, "answering DNS queries")

    def start(self):
        """Start (again) on the same port; a first start that finds the
        port taken moves to a new one."""
        for attempt in range(5):
            try:
                if self.proc is None:
                    self.proc = self.procs.start(
                        self.name, self.argv(), dir=self.dir,
                        ready=self._ready(), timeout=self.timeout)
                else:
                    if self.proc.running():
                        return self
                    self.proc._launch()
                    self.proc.wait_ready(self._ready(), self.timeout)
                return self
            except ProcessStartError as e:
                if self.proc is not None:
                    self.proc.stop(grace=1.0)
                if attempt == 4 or "bind" not in str(e).lower():
                    raise
                if self.proc is None or self.proc.starts == 0:
                    self.port = self.ports.get()
                    self.proc = None
                else:
                    time.sleep(0.2)  # same port: wait for it to free up
        return self

    def stop(self, grace=2.0):
        if self.proc is not None:
            self.proc.stop(grace=grace)

    def running(self):
        return self.proc is not None and self.proc.running()

    def set_zone(self, **zone):
        """Replace what the server answers: rewrite the data file and
        restart ldns-testns (it cannot reload) on the same port."""
        self.zone = Zone(**zone)
        self._write()
        self.stop()
        return self.start()

    def query(self, name, qtype, timeout=1.0):
        """(rcode name, ancount) of a direct query, for checks."""
        rcode, ancount, _ = udp_query(self.host, self.port, name, qtype,
                                      timeout)
        return RCODES.get(rcode, str(rcode)), ancount

    def log_text(self):
        return self.proc.stdout_text() if self.proc else ""

    def __repr__(self):
        return "<DnsServer %s>" % self.addr


class UdpBlackhole:
    """A bound UDP socket on 127.0.0.1 that never answers (queries queue in
    the kernel and are dropped), so a client sees a timeout rather than a
    port-unreachable error."""

    def __init__(self, ports):
        self.host = "127.0.0.1"
        for _ in range(20):
            port = ports.get()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((self.host, port))
            except OSError:
                s.close()
                continue
            self.sock, self.port = s, port
            return
        raise RuntimeError("no free UDP port for the black hole")

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture
def dns_server(procs, ports):
    """Factory: dns_server(name=None, records=(), nxdomain=(), servfail=(),
    truncate=(), origin="example.net", negative_ttl=5) -> DnsServer
    (started).  Skips the test when ldns-testns (ldnsutils) is missing."""
    if not os.access(LDNS_TESTNS, os.X_OK):
        pytest.skip("%s not installed (Debian package ldnsutils)"
                    % LDNS_TESTNS)
    seq = [0]

    def make(name=None, **zone):
        seq[0] += 1
        return DnsServer(procs, ports, name=name or "dns%d" % seq[0], **zone)

    return make


@pytest.fixture
def udp_blackhole(ports):
    """A UdpBlackhole (.addr, .port), closed at teardown."""
    b = UdpBlackhole(ports)
    yield b
    b.close()
