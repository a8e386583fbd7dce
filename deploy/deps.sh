#!/bin/sh
# Installs every build and test dependency of mailring from Debian's packages.
# Idempotent: installs only what is missing. Never leaves a system service
# running: Debian's own dovecot and redis units are stopped and disabled,
# because the tests and the demo start their own instances on free ports.
set -eu

PACKAGES="
build-essential pkg-config clang llvm libclang-rt-14-dev
libssl-dev openssl libevent-dev libhiredis-dev libldns-dev ldnsutils
libcmocka-dev libcrypt-dev
redis-server
dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd
python3 python3-pytest curl isync faketime libfaketime gnuplot-nox
"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi

echo "deps: installing:$missing"
# policy-rc.d with exit 101 tells invoke-rc.d not to start services that a
# package installs; we remove it afterwards only if we created it.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing

# Debian's own services must not hold the ports or the files we use.
for svc in dovecot redis-server; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
    if [ -x "/etc/init.d/$svc" ]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done
echo "deps: done"
