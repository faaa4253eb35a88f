#!/usr/bin/env bash
# build-image.sh: builds the rpibroker sandbox image without any image registry.
#
# Makes a Debian bookworm root filesystem with `debootstrap --variant=minbase`
# from a Debian package mirror, runs recipe.sh in it (packages, rootfs/ files,
# clean-up), and imports it with `docker import`. Needs root and a running
# Docker Engine; installs debootstrap with apt-get when it is missing.
#
# The image carries the label org.rpibroker.sandbox.recipe, a SHA-256 of
# everything the build depends on (this script, recipe.sh, rootfs/, suite,
# architecture). When the image already has the current recipe, the script
# says so and exits 0 at once; --force rebuilds anyway (e.g. to pick up
# Debian security updates).
#
# Usage: build-image.sh [--name IMAGE] [--mirror URL] [--security-mirror URL]
#                       [--force] [--print-recipe]
#   --name IMAGE          image to build      (env RPIBROKER_SANDBOX_IMAGE,
#                                               default rpibroker-sandbox:latest)
#   --mirror URL          Debian mirror       (env RPIBROKER_DEBIAN_MIRROR, default:
#                                               the one this machine's apt uses,
#                                               else http://deb.debian.org/debian)
#   --security-mirror URL (env RPIBROKER_DEBIAN_SECURITY_MIRROR, likewise,
#                                               else http://deb.debian.org/debian-security)
#   --force               rebuild even if the image is up to date
#   --print-recipe        print the recipe hash and exit (for the Dockerfile:
#                         docker build --build-arg RECIPE=$(build-image.sh --print-recipe))
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SUITE=bookworm
readonly RECIPE_LABEL=org.rpibroker.sandbox.recipe
# The capabilities the sandbox needs (see README.md). The agent may read them
# from this label; smoke-test.sh does.
readonly CAPS=AUDIT_WRITE,CHOWN,KILL,SETGID,SETUID,SYS_CHROOT

image=${RPIBROKER_SANDBOX_IMAGE:-rpibroker-sandbox:latest}
mirror=${RPIBROKER_DEBIAN_MIRROR:-}
security_mirror=${RPIBROKER_DEBIAN_SECURITY_MIRROR:-}
force=0
print_recipe=0

usage() {
    sed -n '/^# Usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
while (($#)); do
    case $1 in
        --name) image=${2:?--name needs a value}; shift 2 ;;
        --name=*) image=${1#*=}; shift ;;
        --mirror) mirror=${2:?--mirror needs a value}; shift 2 ;;
        --mirror=*) mirror=${1#*=}; shift ;;
        --security-mirror) security_mirror=${2:?--security-mirror needs a value}; shift 2 ;;
        --security-mirror=*) security_mirror=${1#*=}; shift ;;
        --force) force=1; shift ;;
        --print-recipe) print_recipe=1; shift ;;
        -h | --help) usage ;;
        *) echo "build-image.sh: unknown argument: $1" >&2; usage ;;
    esac
done

SECONDS=0
say() { printf '[sandbox %4ds] %s\n' "$SECONDS" "$*"; }
die() { echo "build-image.sh: error: $*" >&2; exit 1; }

arch() {
    if command -v dpkg >/dev/null 2>&1; then
        dpkg --print-architecture
    else
        case $(uname -m) in
            x86_64) echo amd64 ;;
            aarch64 | arm64) echo arm64 ;;
            armv7l | armv6l) echo armhf ;;
            *) uname -m ;;
        esac
    fi
}
ARCH=$(arch)

# recipe_hash: SHA-256 over every input of the build. File modes count only
# as executable or not (that is all git keeps, and all recipe.sh installs).
recipe_hash() {
    (
        cd "$here"
        echo "rpibroker-sandbox recipe v1 suite=$SUITE arch=$ARCH"
        for f in build-image.sh recipe.sh; do
            echo "$f $(sha256sum <"$f" | cut -d' ' -f1)"
        done
        find rootfs \( -type f -o -type l \) -print | LC_ALL=C sort | while IFS= read -r f; do
            if [[ -L $f ]]; then
                echo "symlink $f"
            elif [[ -x $f ]]; then
                echo "$f 0755 $(sha256sum <"$f" | cut -d' ' -f1)"
            else
                echo "$f 0644 $(sha256sum <"$f" | cut -d' ' -f1)"
            fi
        done
    ) | sha256sum | cut -d' ' -f1
}
recipe=$(recipe_hash)
if ((print_recipe)); then
    echo "$recipe"
    exit 0
fi

command -v docker >/dev/null 2>&1 || die "docker is not installed"
image_recipe() {
    docker image inspect --format "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$image" 2>/dev/null || true
}
if ((!force)) && [[ $(image_recipe) == "$recipe" ]]; then
    echo "$image is up to date (recipe ${recipe:0:12})"
    exit 0
fi
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    die "cannot reach the Docker Engine (is dockerd running, and may this user use it?)"
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root: run as root (or use the Dockerfile, see README.md)"

# One build at a time; the one that waited may find the work done.
exec 9>"${TMPDIR:-/tmp}/rpibroker-sandbox-build.lock"
if ! flock -n 9; then
    say "another build is running; waiting for it"
    flock 9
    if ((!force)) && [[ $(image_recipe) == "$recipe" ]]; then
        echo "$image is up to date (recipe ${recipe:0:12})"
        exit 0
    fi
fi

# mirror_from_apt SUITE: the first archive URI this machine's apt uses for
# SUITE (one-line and deb822 sources), if its path ends in /debian or
# /debian-security; prints nothing if there is none.
mirror_from_apt() {
    local want=$1 f files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    ((${#files[@]})) || return 0
    awk -v want="$want" '
        function ok(uri) { return uri ~ /^https?:\/\/.*\/debian(-security)?\/?$/ && uri !~ /raspberrypi\./ }
        FNR == 1 { uris = ""; suites = "" }
        /^[ \t]*#/ { next }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { uris = ""; suites = ""; next }
            if (tolower($1) == "uris:") { uris = $2 }
            if (tolower($1) == "suites:") { suites = " " substr($0, index($0, ":") + 1) " " }
            if (uris != "" && suites ~ (" " want " ") && ok(uris)) { sub(/\/$/, "", uris); print uris; exit }
            next
        }
        $1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == want && ok($i)) { u = $i; sub(/\/$/, "", u); print u; exit }
        }' "${files[@]}" 2>/dev/null | head -n1 || true
}
[[ -n $mirror ]] || mirror=$(mirror_from_apt "$SUITE")
[[ -n $mirror ]] || mirror=http://deb.debian.org/debian
[[ -n $security_mirror ]] || security_mirror=$(mirror_from_apt "$SUITE-security")
[[ -n $security_mirror ]] || security_mirror=http://deb.debian.org/debian-security

say "building $image (recipe ${recipe:0:12}, $SUITE/$ARCH, mirror $mirror, security $security_mirror)"

if ! command -v debootstrap >/dev/null 2>&1 || [[ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
    command -v apt-get >/dev/null 2>&1 ||
        die "debootstrap is missing and there is no apt-get to install it; install debootstrap and debian-archive-keyring, or use the Dockerfile"
    say "installing debootstrap with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap debian-archive-keyring >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/rpibroker-sandbox.XXXXXX")
root=$work/rootfs
log=$work/build.log
# unmount_all: every mount under $work, deepest first.
unmount_all() {
    local m
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while IFS= read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
}
cleanup() {
    local status=$?
    unmount_all
    # --one-file-system: never descend into anything still mounted.
    rm -rf --one-file-system "$work" 2>/dev/null || echo "build-image.sh: could not remove $work" >&2
    if ((status != 0)); then
        echo "build-image.sh: build failed (exit $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_logged WHAT CMD...: runs CMD with output to the log; on failure shows
# the end of the log.
run_logged() {
    local what=$1
    shift
    if ! "$@" >>"$log" 2>&1; then
        echo "---- last lines of the $what log ----" >&2
        tail -n 40 "$log" >&2
        die "$what failed"
    fi
}

say "debootstrap --variant=minbase $SUITE $ARCH (about half a minute on a PC)"
run_logged debootstrap debootstrap --variant=minbase --arch="$ARCH" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg "$SUITE" "$root" "$mirror"
say "debootstrap done"

say "running recipe.sh in the new root (packages, rootfs/ files, clean-up)"
mkdir -p "$root/tmp/rpibroker-recipe"
cp "$here/recipe.sh" "$root/tmp/rpibroker-recipe/"
cp -r "$here/rootfs" "$root/tmp/rpibroker-recipe/"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$root/proc"
: >"$log"
# The whole output goes to the log; the recipe's own step lines are shown.
set +e
chroot "$root" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    RPIBROKER_DEBIAN_MIRROR="$mirror" RPIBROKER_DEBIAN_SECURITY_MIRROR="$security_mirror" \
    /bin/sh /tmp/rpibroker-recipe/recipe.sh /tmp/rpibroker-recipe 2>&1 | tee -a "$log" |
    while IFS= read -r line; do
        [[ $line != recipe:* ]] || say "$line"
    done
status=${PIPESTATUS[0]}
set -e
umount "$root/proc"
if ((status != 0)); then
    echo "---- last lines of the recipe log ----" >&2
    tail -n 40 "$log" >&2
    die "recipe.sh failed (exit $status)"
fi

# Docker provides these at run time; the build machine's values stay out.
rm -rf "$root/tmp/rpibroker-recipe"
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"
# Docker mounts its own /dev; keep the directory, drop debootstrap's nodes.
if ! mountpoint -q "$root/dev"; then
    find "$root/dev" -mindepth 1 -delete
fi
say "root filesystem ready: $(du -sh --one-file-system "$root" | cut -f1)"

say "docker import"
old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
new_id=$(tar -C "$root" --numeric-owner --one-file-system -c . |
    docker import \
        --change 'ENTRYPOINT ["/usr/local/sbin/rpibroker-sandbox-init"]' \
        --change 'EXPOSE 22 80 443' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        --change 'WORKDIR /' \
        --change "LABEL $RECIPE_LABEL=$recipe" \
        --change "LABEL org.rpibroker.sandbox.builder=debootstrap" \
        --change "LABEL org.rpibroker.sandbox.suite=$SUITE" \
        --change "LABEL org.rpibroker.sandbox.cap-add=$CAPS" \
        --change "LABEL org.rpibroker.sandbox.user-helper=/usr/local/sbin/rpibroker-sandbox-user" \
        --change "LABEL org.rpibroker.sandbox.firewall=/usr/local/sbin/rpibroker-sandbox-firewall" \
        --change "LABEL org.opencontainers.image.title=rpibroker-sandbox" \
        --change "LABEL org.opencontainers.image.description=\"rpibroker renter sandbox: Debian $SUITE with OpenSSH\"" \
        --message "rpibroker sandbox, recipe $recipe" \
        - "$image")
[[ $(image_recipe) == "$recipe" ]] || die "docker import did not produce $image with the expected label"
# The image this one replaces, if nothing else uses it.
if [[ -n $old_id && $old_id != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi
size=$(docker image inspect --format '{{.Size}}' "$image")
say "built $image ${new_id:7:12} ($((size / 1000000)) MB)"
