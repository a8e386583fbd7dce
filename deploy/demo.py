#!/usr/bin/python3
"""The `make run` demo: a small mail cluster on loopback.

Starts three Dovecot backends (Debian's package) sharing one Maildir root,
with users user1..user1000 (password "pass"), and mailring's own daemons as
far as they exist in the build directory. Prints how to connect, then
shows the logs until Ctrl-C, which stops everything it started.

It reuses the integration-test harness (tests/integration/harness) so the
demo and the tests configure Dovecot the same way.
"""

import os
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness.dovecot import DovecotBackend, prepare_mail_root  # noqa: E402
from harness.ports import PortAllocator  # noqa: E402
from harness.procs import ProcessManager  # noqa: E402

BACKENDS = 3


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    root = tempfile.mkdtemp(prefix="mailring-demo-")
    os.chmod(root, 0o755)
    procs = ProcessManager(root)
    ports = PortAllocator()
    stopping = []

    def stop(*_):
        stopping.append(True)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        mail_root = prepare_mail_root(os.path.join(root, "mail"))
        backends = []
        for i in range(BACKENDS):
            backends.append(DovecotBackend(procs, ports, name="backend%d" % (i + 1),
                                           mail_root=mail_root))
        print()
        print("mailring demo (directory %s)" % root)
        print()
        print("Running now: %d Dovecot backends sharing one Maildir root:" % BACKENDS)
        for b in backends:
            print("  %-9s IMAP %s:%d  POP3 %s:%d  LMTP %s:%d" % (
                b.name, b.host, b.imap_port, b.host, b.pop3_port, b.host,
                b.lmtp_port))
        print("Users: user1 ... user1000, password: pass")
        print()
        proxy = os.path.join(build, "mailring-proxy")
        if not os.path.exists(proxy):
            print("NOT running: mailring-proxy is not built yet (issue: the front")
            print("proxy). Until it exists this demo can only offer the backends it")
            print("will sit in front of. Try one directly:")
        b = backends[0]
        print("  curl -u user1:pass 'imap://%s:%d/INBOX?ALL'" % (b.host, b.imap_port))
        print("  python3 -c \"import imaplib; m=imaplib.IMAP4('%s', %d); "
              "print(m.login('user1','pass'))\"" % (b.host, b.imap_port))
        print()
        print("Logs: %s/backend*/dovecot.log (shown below). Ctrl-C stops everything." % root)
        print()
        follow(backends, stopping)
    finally:
        print("\nstopping demo ...")
        procs.stop_all()
        ports.release_all()
        print("stopped; logs kept in %s" % root)


def follow(backends, stopping):
    """Prints new log lines of every backend until asked to stop."""
    offsets = {b.name: 0 for b in backends}
    while not stopping:
        for b in backends:
            try:
                with open(b.log_path, "rb") as f:
                    f.seek(offsets[b.name])
                    data = f.read()
                    offsets[b.name] += len(data)
            except OSError:
                continue
            for line in data.decode("utf-8", "replace").splitlines():
                print("[%s] %s" % (b.name, line), flush=True)
        time.sleep(0.3)


if __name__ == "__main__":
    main()
