"""TLS between mailring-proxy and its backends (STARTTLS and implicit,
certificate verification on by default) and master-user logins, against
real Dovecot backends."""

import os
import re
import time

from harness import mail


def _login_ok(p, user="user1", listener="imap"):
    m = p.imap(listener=listener, user=user)
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    m.logout()


def test_backend_starttls_verified(mailring_proxy, dovecot_backend):
    """ssl = starttls with the backend's CA: the proxy upgrades before
    sending credentials, and the session works."""
    b = dovecot_backend(ssl=True)
    p = mailring_proxy(backends=[{"dovecot": b, "ssl": "starttls",
                                  "ssl_ca": b.cert, "ssl_host": "localhost"}])
    _login_ok(p)
    line = [l for l in b.wait_log(r"Login: user=<user1>").splitlines()
            if "Login: user=<user1>" in l][-1]
    assert "TLS" in line, line  # Dovecot marks logins over TLS


def test_backend_implicit_tls_verified(mailring_proxy, dovecot_backend):
    b = dovecot_backend(ssl=True)
    p = mailring_proxy(backends=[{"dovecot": b, "imap_port": b.imaps_port,
                                  "pop3_port": b.pop3s_port, "ssl": "yes",
                                  "ssl_ca": b.cert, "ssl_host": "localhost"}],
                       listeners=["imap", "pop3"])
    _login_ok(p)
    c = mail.pop3_connect(p.host, p.port("pop3"), user="user2")
    assert c.stat()[0] == 0
    c.quit()


def test_backend_certificate_is_verified_by_default(mailring_proxy,
                                                    dovecot_backend):
    """Without a CA that knows the backend's self-signed certificate the
    login fails (no credentials are sent), with a clear log line."""
    b = dovecot_backend(ssl=True)
    p = mailring_proxy(backends=[{"dovecot": b, "ssl": "starttls"}])
    r = p.raw()
    _, tagged = r.command("a", "LOGIN user1 pass")
    assert tagged.startswith(b"a NO [UNAVAILABLE]"), tagged
    r.close()
    p.wait_log(r"TLS to the backend failed: .*certificate verify failed")
    time.sleep(0.3)
    assert "Login: user=<user1>" not in b.log_text()


def test_backend_hostname_mismatch_fails(mailring_proxy, dovecot_backend):
    b = dovecot_backend(ssl=True)
    p = mailring_proxy(backends=[{"dovecot": b, "ssl": "starttls",
                                  "ssl_ca": b.cert,
                                  "ssl_host": "mail.example.net"}])
    r = p.raw()
    _, tagged = r.command("a", "LOGIN user1 pass")
    assert tagged.startswith(b"a NO [UNAVAILABLE]"), tagged
    r.close()
    p.wait_log(r"TLS to the backend failed")


def test_backend_verification_can_be_disabled(mailring_proxy, dovecot_backend):
    b = dovecot_backend(ssl=True)
    p = mailring_proxy(backends=[{"dovecot": b, "ssl": "starttls",
                                  "ssl_verify": False}])
    _login_ok(p)


def test_master_user_login(mailring_proxy, dovecot_backend):
    """With master_user the proxy logs in as the master user for the user
    (SASL PLAIN authzid): the backend never needs the user's password."""
    b = dovecot_backend(start=False)
    master_file = os.path.join(b.dir, "masters")
    with open(master_file, "w") as f:
        f.write("proxymaster:{PLAIN}masterpw\n")
    b.add_config("""
passdb {
  driver = passwd-file
  args = scheme=PLAIN %s
  master = yes
  result_success = continue
}
""" % master_file, reload=False)
    b.start()
    # user9's password at the proxy ("frontpw") is not the backend's
    # ("pass"): only a master-user login can get user9 in
    p = mailring_proxy(backends=[{"dovecot": b, "master_user": "proxymaster",
                                  "master_password": "masterpw"}],
                       users=5, passwd_lines=["user9:{PLAIN}frontpw"])
    m = p.imap(user="user9", password="frontpw")
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    b.wait_log(r"Login: user=<user9>")
    # without the master user the same login is refused by the backend
    p2 = mailring_proxy(backends=[b], users=5,
                        passwd_lines=["user9:{PLAIN}frontpw"])
    r = p2.raw()
    _, tagged = r.command("a", "LOGIN user9 frontpw")
    assert tagged.startswith(b"a NO"), tagged
    r.close()


def test_health_checks_speak_tls_to_implicit_tls_backends(mailring_proxy,
                                                         dovecot_backend):
    """A backend with ssl = yes is checked over TLS (handshake, greeting,
    check-user login, LOGOUT): it stays up, and Dovecot logs the check
    user's logins as TLS ones."""
    b = dovecot_backend(ssl=True)
    p = mailring_proxy(backends=[{"dovecot": b, "name": "b1",
                                  "imap_port": b.imaps_port, "ssl": "yes",
                                  "ssl_ca": b.cert, "ssl_host": "localhost"}],
                       settings={"health_interval": "300ms",
                                 "health_timeout": "1s", "health_fall": 2,
                                 "health_user": "user9",
                                 "health_password": "pass"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(re.findall(r"Login: user=<user9>.*TLS", b.log_text())) >= 3:
            break
        time.sleep(0.1)
    assert len(re.findall(r"Login: user=<user9>.*TLS", b.log_text())) >= 3
    assert not p.log_lines(r"health: backend b1 is down")
    _login_ok(p)
