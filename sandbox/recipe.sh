#!/bin/sh
# recipe.sh: turns a Debian root filesystem into the rpibroker sandbox.
#
# Runs as root inside the target: in a chroot of a fresh debootstrap (called
# by build-image.sh) or in a `RUN` step on top of debian:bookworm-slim (called
# by the Dockerfile). Both builds share this one file, so both images hold the
# same packages, files and settings.
#
#   recipe.sh SRC_DIR      SRC_DIR holds rootfs/ (files copied into /)
#
# Environment: RPIBROKER_DEBIAN_MIRROR, RPIBROKER_DEBIAN_SECURITY_MIRROR
# (the image's apt sources; defaults are Debian's public mirrors).
set -eu

SUITE=bookworm
PACKAGES="
    openssh-server
    ca-certificates
    iproute2
    procps
    python3
    less
    nano
    vim-tiny
    curl
    iptables
"
MIRROR=${RPIBROKER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${RPIBROKER_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SRC=${1:?usage: recipe.sh SRC_DIR}

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
step() { echo "recipe: $*"; }

step "dpkg: no documentation, man pages or translations"
mkdir -p /etc/dpkg/dpkg.cfg.d
cat >/etc/dpkg/dpkg.cfg.d/rpibroker-nodoc <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF

step "apt sources: $MIRROR $SUITE $SUITE-updates, $SECURITY_MIRROR $SUITE-security"
rm -f /etc/apt/sources.list
mkdir -p /etc/apt/sources.list.d
cat >/etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# No service may start while packages are installed.
policy_rc_d=
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_rc_d=1
fi

apt_get() {
    apt-get -q -y -o APT::Install-Recommends=false -o APT::Install-Suggests=false \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}
step "apt-get update"
apt_get update
step "apt-get dist-upgrade (security updates)"
apt_get dist-upgrade
# shellcheck disable=SC2086 # a word list on purpose
step "apt-get install" $PACKAGES
# shellcheck disable=SC2086
apt_get install $PACKAGES

step "installing rootfs/ files"
(cd "$SRC/rootfs" && find . -type l) | grep -q . && {
    echo "recipe: symlinks are not supported in rootfs/" >&2
    exit 1
}
(cd "$SRC/rootfs" && find . -type f | LC_ALL=C sort) | while IFS= read -r f; do
    f=${f#./}
    mode=0644
    [ -x "$SRC/rootfs/$f" ] && mode=0755
    install -D -o root -g root -m "$mode" "$SRC/rootfs/$f" "/$f"
    echo "  /$f ($mode)"
done

step "checking the sshd configuration"
check=$(mktemp -d)
ssh-keygen -q -t ed25519 -N '' -C '' -f "$check/key"
mkdir -p /run/sshd
/usr/sbin/sshd -t -h "$check/key"
rm -rf "$check"

step "cleaning up"
[ -z "$policy_rc_d" ] || rm -f /usr/sbin/policy-rc.d
apt_get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
# Files installed before the dpkg excludes were in place.
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/groff/* /usr/share/info/* /usr/share/lintian/* /usr/share/linda/*
find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
# Every container makes its own host keys (rpibroker-sandbox-init).
rm -f /etc/ssh/ssh_host_*
rm -f /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/log/bootstrap.log
rm -f /var/cache/ldconfig/aux-cache
rm -rf /tmp/* /var/tmp/* /root/.cache /run/sshd /run/adduser
step "done"
