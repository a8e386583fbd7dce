"""Integration-test harness for mailring: real Dovecot, redis-server and
(once built) mailring binaries, managed as child processes.  Standard
library + pytest only.  See tests/integration/README.md."""
