"""The director with the embedded store, in one mailring-proxy: sticky
mappings (I1, I2), expiry, and a state file that survives a restart."""

import os
import time


def _login_logout(p, user):
    m = p.imap(user=user)
    m.select("INBOX")
    m.logout()


def _placements(p, users):
    """user -> backend of that user's last Login line."""
    out = {}
    for ev in p.events("Login"):
        if ev.get("user") in users:
            out[ev["user"]] = ev["backend"]
    return out


def _backends(b1, b2, w1, w2):
    return [{"dovecot": b1, "name": "b1", "weight": w1},
            {"dovecot": b2, "name": "b2", "weight": w2}]


def test_mapped_users_do_not_move_on_weight_change(mailring_proxy,
                                                   dovecot_backend, mail_root):
    """I2: with mappings alive, reweighting (even draining) moves nobody;
    only users never seen before follow the new weights."""
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    p = mailring_proxy(backends=_backends(b1, b2, 100, 100))
    users = ["user%d" % i for i in range(1, 41)]
    for u in users:
        _login_logout(p, u)
    before = _placements(p, users)
    assert set(before.values()) == {"b1", "b2"}
    # everything new should now go to b2 ...
    p.reconfigure(backends=_backends(b1, b2, 1, 1000))
    n = len(p.events("Login"))
    for u in users:
        _login_logout(p, u)
    after = {e["user"]: e["backend"] for e in p.events("Login")[n:]}
    # ... but the mapped users stay where they are
    assert after == before
    fresh = ["user%d" % i for i in range(500, 520)]
    for u in fresh:
        _login_logout(p, u)
    placed = _placements(p, fresh)
    assert sum(1 for b in placed.values() if b == "b2") >= 18, placed


def test_mappings_expire(mailring_proxy, dovecot_backend, mail_root):
    """After user_expire without sessions the mapping is gone and the user
    is placed by the (new) weights."""
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    p = mailring_proxy(backends=_backends(b1, b2, 100, 100),
                       settings={"user_expire": "1s"})
    users = ["user%d" % i for i in range(1, 21)]
    for u in users:
        _login_logout(p, u)
    on_b1 = [u for u, b in _placements(p, users).items() if b == "b1"]
    assert on_b1
    p.reconfigure(backends=_backends(b1, b2, 0, 100))
    time.sleep(2.5)   # expire, plus the director's 1 s tick
    n = len(p.events("Login"))
    for u in on_b1:
        _login_logout(p, u)
    assert all(e["backend"] == "b2" for e in p.events("Login")[n:])


def test_state_file_survives_restart(mailring_proxy, dovecot_backend,
                                     mail_root, workdir):
    """Embedded store: mappings are saved to director_state_file and read
    at start, so after a restart with different weights every mapped user
    still goes to the same backend."""
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    state = os.path.join(str(workdir), "director.state")
    p = mailring_proxy(backends=_backends(b1, b2, 100, 100),
                       settings={"director_state_file": state})
    users = ["user%d" % i for i in range(1, 31)]
    for u in users:
        _login_logout(p, u)
    before = _placements(p, users)
    p.stop()
    assert os.path.exists(state)
    with open(state) as f:
        text = f.read()
    assert text.startswith("mailring-director-state 1\n")
    assert text.count("\nmap ") == len(users)

    # a restart where the weights would place everyone on b2
    p2 = mailring_proxy(backends=_backends(b1, b2, 1, 1000),
                        settings={"director_state_file": state})
    p2.wait_log(r"director: state loaded from .*: %d users mapped" % len(users),
                since_start=False)
    for u in users:
        _login_logout(p2, u)
    assert _placements(p2, users) == before


def test_corrupt_state_file_is_reported_not_fatal(mailring_proxy,
                                                  dovecot_backend, workdir):
    b1 = dovecot_backend()
    state = os.path.join(str(workdir), "director.state")
    with open(state, "w") as f:
        f.write("garbage\n")
    p = mailring_proxy(backends=[b1], settings={"director_state_file": state})
    p.wait_log(r"director: state file not loaded, starting empty: .*not a "
               r"director state file", since_start=False)
    _login_logout(p, "user1")


def test_add_remove_persist_in_state_file(mailring_proxy, dovecot_backend,
                                          mail_root, workdir, mailring_bin):
    """Embedded store: `mailring add IP:PORT WEIGHT` takes new users at
    once, survives a restart (state file), and `remove` drops it."""
    import json
    import subprocess
    import tempfile
    cli = mailring_bin("mailring")
    b1 = dovecot_backend(mail_root=mail_root)
    b2 = dovecot_backend(mail_root=mail_root)
    sock = os.path.join(tempfile.mkdtemp(prefix="mremb"), "a.sock")
    state = os.path.join(workdir, "director.state")
    p = mailring_proxy(backends=[{"dovecot": b1, "name": "b1"}],
                       settings={"admin_socket": sock,
                                 "director_state_file": state})

    def run(*args):
        r = subprocess.run([cli, "-s", sock, "--json"] + list(args),
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return json.loads(r.stdout)

    name = "127.0.0.1:%d" % b2.imap_port
    assert run("add", name, "100000")["added"] is True
    p.wait_log("reconfiguring", timeout=3, since_start=False)
    n = len(p.events("Login"))
    for i in range(700, 710):
        _login_logout(p, "user%d" % i)
    assert [e["backend"] for e in p.events("Login")[n:]].count(name) >= 9
    p.stop()
    with open(state) as f:
        assert "added %s %s\n" % (name, name) in f.read()
    p.start()
    p.wait_log("reconfiguring", count=2, timeout=3, since_start=False)
    assert name in [b["name"] for b in run("status")["backends"]]
    _login_logout(p, "user705")
    assert p.events("Login")[-1]["backend"] == name
    assert run("remove", name)["removed"] is True
    p.wait_log("reconfiguring", count=3, timeout=3, since_start=False)
    assert [b["name"] for b in run("status")["backends"]] == ["b1"]
    _login_logout(p, "user705")
    assert p.events("Login")[-1]["backend"] == "b1"


def test_flush_is_paced(mailring_proxy, dovecot_backend, mail_root,
                        mailring_bin):
    """flush with more users than director_flush_batch: the users are
    unmapped and their sessions closed a batch at a time,
    director_flush_interval apart, not all at once."""
    import json
    import subprocess
    import tempfile
    import time
    cli = mailring_bin("mailring")
    b1 = dovecot_backend(mail_root=mail_root)
    sock = os.path.join(tempfile.mkdtemp(prefix="mrfl"), "a.sock")
    p = mailring_proxy(backends=[{"dovecot": b1, "name": "b1"}],
                       settings={"admin_socket": sock,
                                 "director_flush_batch": 2,
                                 "director_flush_interval": "700ms"})
    held = []
    for i in range(900, 906):
        r = p.raw()
        r.command("a", "LOGIN user%d pass" % i)
        held.append(r)
    out = subprocess.run([cli, "-s", sock, "--json", "flush", "b1"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    ans = json.loads(out.stdout)
    assert ans["paced"] is True and ans["users"] == 6 and ans["batch"] == 2
    assert ans["kicked"] == 2 and ans["unmapped"] == 2

    def closed_count():
        return sum(1 for r in held if r.closed(timeout=0.05))

    time.sleep(0.2)
    assert closed_count() == 2          # the first batch only
    p.wait_log(r"backend b1 flushed: 6 users unmapped, 6 sessions closed "
               r"\(3 batches\)", timeout=5)
    assert closed_count() == 6
