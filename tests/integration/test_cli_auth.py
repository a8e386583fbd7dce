"""`mailring auth test` and `mailring auth lookup`, like doveadm auth test:
the same auth library and routing as the proxy, with doveadm's exit codes."""

import json
import os
import subprocess


def _run(bin_, conf, *args, stdin=None):
    r = subprocess.run([bin_, "-c", conf] + list(args), input=stdin,
                       capture_output=True, timeout=20)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def _config(workdir):
    d = str(workdir)
    passwd = os.path.join(d, "passwd")
    with open(passwd, "w") as f:
        f.write("user1:{PLAIN}pass\n")
        f.write("user2:{PLAIN}secret::::::host=b2 pass=backendpw\n")
        f.write("user3:{PLAIN}x::::::nologin reason=Moved\n")
        # made with: doveadm pw -s SHA512-CRYPT -p pass
        f.write("user4:{SHA512-CRYPT}$6$U1wi2eCDgYtyaRUF$Pg0scljLSgjADmseZk4p"
                "gHW1sU3SL45et7jP1k/D4fGJd8kID/W1NKJo9AkZlDDmr1vYbxfPBB.LsP4Y"
                "h9.2g0\n")
    conf = os.path.join(d, "proxy.conf")
    with open(conf, "w") as f:
        f.write("passdb {\n  args = %s\n}\n"
                "listener imap {\n  address = 127.0.0.1:14399\n}\n"
                "backend b1 {\n  host = 127.0.0.1\n}\n"
                "backend b2 {\n  host = 127.0.0.2\n}\n"
                "backend b3 {\n  host = 127.0.0.3\n}\n" % passwd)
    return conf


def test_auth_test_results_and_exit_codes(mailring_bin, workdir):
    cli = mailring_bin("mailring")
    conf = _config(workdir)
    rc, out, _ = _run(cli, conf, "auth", "test", "user1", "pass")
    assert rc == 0 and out.startswith("passdb: user1 auth succeeded"), out
    assert "backend   : b" in out and "(hashed)" in out
    rc, out, _ = _run(cli, conf, "auth", "test", "user1", "wrong")
    assert rc == 77 and "password mismatch" in out, out
    rc, out, _ = _run(cli, conf, "auth", "test", "nobody", "x")
    assert rc == 67 and "unknown user" in out, out
    rc, out, _ = _run(cli, conf, "auth", "test", "user3", "x")
    assert rc == 77 and "nologin" in out and "reason=Moved" in out, out
    # password from standard input; a real crypt hash
    rc, out, _ = _run(cli, conf, "auth", "test", "user4", stdin=b"pass\n")
    assert rc == 0 and "user4 auth succeeded" in out, out
    rc, out, _ = _run(cli, conf, "auth", "test", "user4", stdin=b"Pass\n")
    assert rc == 77, out
    # usage errors
    rc, _, err = _run(cli, conf, "auth", "frobnicate", "user1")
    assert rc == 64 and "usage" in err


def test_auth_lookup_and_json(mailring_bin, workdir):
    cli = mailring_bin("mailring")
    conf = _config(workdir)
    rc, out, _ = _run(cli, conf, "auth", "lookup", "user2")
    assert rc == 0, out
    assert "host=b2" in out and "pinned by host=" in out
    assert "backendpw" not in out and "pass=<hidden>" in out
    rc, out, _ = _run(cli, conf, "--json", "auth", "test", "user2", "secret")
    assert rc == 0
    doc = json.loads(out)
    assert doc["result"] == "ok" and doc["route"] == {"how": "pinned",
                                                      "backend": "b2"}
    assert doc["fields"]["pass"] == "<hidden>"
    rc, out, _ = _run(cli, conf, "--json", "auth", "test", "user1", "pass")
    doc = json.loads(out)
    assert doc["route"]["how"] == "hashed" and len(doc["route"]["backends"]) == 3


def test_bad_config_is_reported(mailring_bin, workdir):
    cli = mailring_bin("mailring")
    conf = os.path.join(str(workdir), "bad.conf")
    with open(conf, "w") as f:
        f.write("no_such_key = 1\n")
    rc, _, err = _run(cli, conf, "auth", "test", "user1", "pass")
    assert rc == 78 and "bad.conf:1: unknown setting 'no_such_key'" in err, err
