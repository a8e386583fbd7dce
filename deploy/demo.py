#!/usr/bin/python3
"""The `make run` demo: a small mail cluster on loopback.

Starts three mailring-backend mail nodes sharing one Maildir root, with
users user1..user1000 (password "pass"), and mailring-proxy in front of
them with its embedded director. Prints how to connect, then shows the
logs until Ctrl-C, which stops everything it started.

It reuses the integration-test harness (tests/integration/harness) so the
demo and the tests configure the nodes the same way.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness.backend import MailringBackend  # noqa: E402
from harness.dovecot import make_self_signed_cert  # noqa: E402
from harness.ports import PortAllocator  # noqa: E402
from harness.procs import ProcessManager  # noqa: E402

BACKENDS = 3
PORTS = {"imap": 1143, "imaps": 1993, "pop3": 1110, "pop3s": 1995}

PROXY_CONF = """# written by deploy/demo.py for `make run`
workers = 2
log_level = info
# like Dovecot, treat local connections as secure
login_trusted_networks = 127.0.0.0/8 ::1/128
ssl_cert = <{cert}
ssl_key = <{key}
auth_failure_delay = 2s
director_state_file = {state}
admin_socket = {admin}
passdb {{
  args = {passwd}
}}
listener imap {{
  protocol = imap
  address = 127.0.0.1:{imap}
}}
listener imaps {{
  protocol = imap
  address = 127.0.0.1:{imaps}
  ssl = yes
}}
listener pop3 {{
  protocol = pop3
  address = 127.0.0.1:{pop3}
}}
listener pop3s {{
  protocol = pop3
  address = 127.0.0.1:{pop3s}
  ssl = yes
}}
{backends}
"""


def write_proxy_conf(root, backends):
    cert, key = make_self_signed_cert(os.path.join(root, "proxy-ssl"))
    passwd = os.path.join(root, "users")
    with open(passwd, "w") as f:
        for i in range(1, 1001):
            f.write("user%d:{PLAIN}pass\n" % i)
    blocks = "".join(
        "backend %s {\n  host = %s\n  imap_port = %d\n  pop3_port = %d\n"
        "  lmtp_port = %d\n}\n" % (b.name, b.host, b.imap_port, b.pop3_port,
                                   b.lmtp_port) for b in backends)
    conf = os.path.join(root, "mailring-proxy.conf")
    with open(conf, "w") as f:
        f.write(PROXY_CONF.format(cert=cert, key=key, passwd=passwd,
                                  state=os.path.join(root, "director.state"),
                                  admin=os.path.join(root, "admin.sock"),
                                  backends=blocks, **PORTS))
    return conf, cert


def port_busy(port):
    import socket
    s = socket.socket()
    # as the proxy binds: connections of a demo just stopped (TIME_WAIT)
    # do not make the port busy, a listener does
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


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
        mail_root = os.path.join(root, "mail")
        os.makedirs(mail_root, exist_ok=True)
        node = os.path.join(build, "mailring-backend")
        backends = []
        for i in range(BACKENDS):
            name = "backend%d" % (i + 1)
            backends.append(MailringBackend(
                procs, ports, node, name=name, users=1000,
                mail_root=mail_root, imap=True, lmtp=True,
                settings={"hostname": name, "log_level": "info",
                          "auth_username_format": "%Ln",
                          "auth_failure_delay": "2s",
                          "admin_socket": os.path.join(root, name + ".sock")}))
        print()
        print("mailring demo (directory %s)" % root)
        print()
        print("Running now: %d mailring-backend nodes sharing one Maildir root "
              "(%s):" % (BACKENDS, mail_root))
        for b in backends:
            print("  %-9s IMAP %s:%d  POP3 %s:%d  LMTP %s:%d" % (
                b.name, b.host, b.imap_port, b.host, b.pop3_port, b.host,
                b.lmtp_port))
        print("Users: user1 ... user1000, password: pass")
        print()
        proxy = os.path.join(build, "mailring-proxy")
        busy = [p for p in PORTS.values() if port_busy(p)]
        if busy:
            sys.exit("demo: ports %s are in use (another demo running?)" % busy)
        conf, cert = write_proxy_conf(root, backends)
        from harness.procs import tcp_greeting
        proc = procs.start("mailring-proxy", [proxy, "-c", conf],
                           ready=[tcp_greeting("127.0.0.1", PORTS["imap"], b"* OK"),
                                  tcp_greeting("127.0.0.1", PORTS["pop3"], b"+OK")])
        print("Running: mailring-proxy (pid %d), config %s" % (proc.pid, conf))
        print("  IMAP  127.0.0.1:%(imap)d (STARTTLS)   IMAPS 127.0.0.1:%(imaps)d" % PORTS)
        print("  POP3  127.0.0.1:%(pop3)d (STLS)       POP3S 127.0.0.1:%(pop3s)d" % PORTS)
        print("  self-signed certificate: %s" % cert)
        print()
        print("Try:")
        print("  curl -u user1:pass 'imap://127.0.0.1:%d/INBOX?ALL'" % PORTS["imap"])
        print("  curl --cacert %s -u user2:pass 'imaps://localhost:%d/INBOX?ALL'" % (cert, PORTS["imaps"]))
        print("  curl -u user3:pass 'pop3://127.0.0.1:%d/'" % PORTS["pop3"])
        print("  python3 -c \"import imaplib; m=imaplib.IMAP4('127.0.0.1', %d); "
              "print(m.login('user1','pass'))\"" % PORTS["imap"])
        print()
        cli = os.path.join(build, "mailring")
        sock = os.path.join(root, "admin.sock")
        print("The director (where users go, and the operator's controls):")
        print("  $ %s -s %s status" % (cli, sock))
        # what it says now: the backends, their state, weights, users
        status = subprocess.run([cli, "-s", sock, "status"],
                                capture_output=True, text=True, timeout=10)
        for line in (status.stdout or status.stderr).splitlines():
            print("    " + line)
        print("  %s -s %s map user1" % (cli, sock))
        print("  %s -s %s move user1 backend2" % (cli, sock))
        print("  %s -s %s drain backend3" % (cli, sock))
        print()
        print("Each user always lands on the same backend; the proxy log shows which.")
        print("Deliver over LMTP through the proxy or to a node, e.g.:")
        print("  python3 -c \"import smtplib; s=smtplib.LMTP('127.0.0.1', %d); "
              "s.sendmail('a@example.org', ['user1@localhost'], b'Subject: hi\\r\\n\\r\\nhello\\r\\n')\""
              % backends[0].lmtp_port)
        print("Kick a user off a node: %s -c %s kick user1" % (
            node, backends[0].conf_path))
        print("Logs: %s (proxy on stderr, below; nodes in backend*/stderr.log)." % root)
        print("Ctrl-C stops everything.")
        print()
        follow([proc], stopping)
    finally:
        print("\nstopping demo ...")
        procs.stop_all()
        ports.release_all()
        print("stopped; logs kept in %s" % root)


def follow(procs_, stopping):
    """Prints the proxy's log lines until asked to stop."""
    offsets = {p.stderr_path: 0 for p in procs_}
    while not stopping:
        for path in offsets:
            try:
                with open(path, "rb") as f:
                    f.seek(offsets[path])
                    data = f.read()
                    offsets[path] += len(data)
            except OSError:
                continue
            for line in data.decode("utf-8", "replace").splitlines():
                print(line, flush=True)
        time.sleep(0.3)


if __name__ == "__main__":
    main()
