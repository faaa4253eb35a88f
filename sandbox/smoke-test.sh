#!/usr/bin/env bash
# smoke-test.sh: builds the sandbox image and checks it the way the agent uses it.
#
# Runs a container unprivileged (all capabilities dropped but the image's
# org.rpibroker.sandbox.cap-add set, no-new-privileges, ports on loopback),
# provisions a user with rpibroker-sandbox-user, logs in with a stock OpenSSH
# client by password and by key, starts a web server as that user and fetches
# its page through the published port. Then applies rpibroker-sandbox-firewall
# from a helper container in the sandbox's network namespace, as the agent
# does, and checks it against listeners on two Docker networks the test makes,
# one with a private subnet (10.213.x.0/24, must be refused) and one with a
# public one (198.51.100.x/28, must stay reachable). Last, removes the user
# with `rpibroker-sandbox-user del` and stops the container. Every container
# and network the test makes is removed at the end.
#
# Usage: smoke-test.sh [--name IMAGE] [--caps CAP,CAP,...] [--no-build]
#   --name IMAGE   image to test (env RPIBROKER_SANDBOX_IMAGE, default rpibroker-sandbox:latest)
#   --caps LIST    capabilities to add instead of the image's label ("" for none)
#   --no-build     test the image as it is, do not run build-image.sh
# Needs docker, ssh, ssh-keygen, scp, curl and shuf on this machine.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image=${RPIBROKER_SANDBOX_IMAGE:-rpibroker-sandbox:latest}
caps_set=0
caps=""
build=1
while (($#)); do
    case $1 in
        --name) image=${2:?--name needs a value}; shift 2 ;;
        --caps) caps=${2?--caps needs a value}; caps_set=1; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "smoke-test.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

passed=0
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
t0_all=$(now_ms)
say() { printf '[smoke %6.2fs] %s\n' "$(( $(now_ms) - t0_all ))e-3" "$*"; }
ok() { passed=$((passed + 1)); say "ok: $*"; }
fail() {
    echo "smoke-test.sh: FAIL: $*" >&2
    if [[ -n ${cid-} ]]; then
        echo "---- container log ----" >&2
        docker logs --tail 30 "$cid" 2>&1 | sed 's/^/    /' >&2 || true
    fi
    echo "sandbox smoke test: $passed passed, 1 failed"
    exit 1
}

# wait_until SECONDS WHAT CMD...: runs CMD until it succeeds; fails after SECONDS.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(now_ms) + limit * 1000))
    until "$@" >/dev/null 2>&1; do
        if (($(now_ms) > deadline)); then
            fail "$what: not within ${limit}s"
        fi
        if [[ -n ${cid-} ]] && [[ $(docker inspect -f '{{.State.Running}}' "$cid" 2>/dev/null) != true ]]; then
            fail "$what: the container stopped"
        fi
        sleep 0.05
    done
}

for tool in docker ssh ssh-keygen scp curl shuf; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

if ((build)); then
    say "building $image"
    "$here/build-image.sh" --name "$image" || fail "build-image.sh failed"
fi
docker image inspect "$image" >/dev/null 2>&1 || fail "no image $image"
if ((!caps_set)); then
    caps=$(docker image inspect -f '{{ index .Config.Labels "org.rpibroker.sandbox.cap-add" }}' "$image")
    [[ -n $caps ]] || fail "$image has no org.rpibroker.sandbox.cap-add label"
fi

tmp=$(mktemp -d)
cid="" cid2="" listener="" idle_pid=""
nets=()
cleanup() {
    local status=$? c n
    [[ -z $idle_pid ]] || kill "$idle_pid" 2>/dev/null || true
    for c in $cid $cid2 $listener; do
        docker rm -f "$c" >/dev/null 2>&1 || echo "smoke-test.sh: could not remove container $c" >&2
    done
    for n in "${nets[@]}"; do
        docker network rm "$n" >/dev/null 2>&1 || echo "smoke-test.sh: could not remove network $n" >&2
    done
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

user=t$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Random, with characters that need care in shells and in chpasswd's input.
password="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_'):#\$'\" x"
token=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
ssh-keygen -q -t ed25519 -N '' -C smoke -f "$tmp/id" || fail "ssh-keygen failed"

cap_args=(--cap-drop ALL)
IFS=, read -ra cap_list <<<"$caps"
for c in "${cap_list[@]}"; do
    [[ -z $c ]] || cap_args+=(--cap-add "$c")
done
say "image $image, capabilities: ${caps:-none}"

run_args=("${cap_args[@]}" --security-opt no-new-privileges
    --sysctl net.ipv4.ip_unprivileged_port_start=0 --pids-limit 256 --memory 256m
    -p 127.0.0.1::22 --label org.rpibroker.test=1)
t_run=$(now_ms)
cid=$(docker run -d "${run_args[@]}" -p 127.0.0.1::80 "$image") || fail "docker run failed"
say "container ${cid:0:12} started"

host_port() { # host_port PORT: the loopback host port published for PORT/tcp
    { docker port "$cid" "$1/tcp" 2>/dev/null || true; } | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n1
}
[[ $(docker inspect -f '{{.State.Running}}' "$cid") == true ]] || fail "the container exited at once"
ssh_port=$(host_port 22)
http_port=$(host_port 80)
[[ -n $ssh_port && -n $http_port ]] ||
    fail "ports 22 and 80 are not published on 127.0.0.1 (container running: $(docker inspect -f '{{.State.Running}}' "$cid"))"

# The agent provisions the user right after docker run, as here.
printf '%s\n%s\n' "$password" "$(cat "$tmp/id.pub")" >"$tmp/creds"
out=$(docker exec -i "$cid" rpibroker-sandbox-user add "$user" <"$tmp/creds" 2>&1) ||
    fail "rpibroker-sandbox-user add: $out"
[[ $out == "created $user" ]] || fail "rpibroker-sandbox-user add said '$out', want 'created $user'"
ok "user $user created ($(($(now_ms) - t_run)) ms after docker run)"

# Pin the container's own host key, as the broker shows it to the renter.
wait_until 20 "host key generated" docker exec "$cid" test -s /etc/ssh/ssh_host_ed25519_key.pub
hostkey=$(docker exec "$cid" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)
echo "[127.0.0.1]:$ssh_port $hostkey" >"$tmp/known_hosts"

common=(-F /dev/null -o UserKnownHostsFile="$tmp/known_hosts"
    -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes
    -o HostKeyAlgorithms=ssh-ed25519 -o ConnectTimeout=5 -o IdentityAgent=none
    -o LogLevel=ERROR)
ssh_opts=("${common[@]}" -p "$ssh_port")
key_auth=(-i "$tmp/id" -o IdentitiesOnly=yes -o BatchMode=yes
    -o PreferredAuthentications=publickey -o PasswordAuthentication=no)
by_key=("${ssh_opts[@]}" "${key_auth[@]}")
# Every client command has a deadline too: a hung session fails the test.
key_ssh() { timeout 30 ssh "${by_key[@]}" "$user@127.0.0.1" "$@" </dev/null; }

cat >"$tmp/askpass" <<'EOF'
#!/bin/sh
printf '%s\n' "$SMOKE_PASSWORD"
EOF
chmod 0700 "$tmp/askpass"
password_ssh() { # password_ssh PASSWORD USER CMD...
    local pw=$1 u=$2
    shift 2
    timeout 30 env -u DISPLAY SSH_ASKPASS="$tmp/askpass" SSH_ASKPASS_REQUIRE=force SMOKE_PASSWORD="$pw" \
        ssh "${ssh_opts[@]}" -o PreferredAuthentications=password -o PubkeyAuthentication=no \
        -o NumberOfPasswordPrompts=1 "$u@127.0.0.1" "$@" </dev/null
}

wait_until 20 "sshd accepting a key login" key_ssh true
login_ms=$(($(now_ms) - t_run))
ok "key login works, ${login_ms} ms after docker run"

# A second container, with a short LoginGraceTime, gets one connection that
# never authenticates: sshd must clean it up when the time is over (this needs
# CAP_KILL; without it the pre-auth process stays and holds a MaxStartups slot).
cid2=$(docker run -d "${run_args[@]}" "$image" -o LoginGraceTime=3) || fail "docker run (second container) failed"
cid2_port=$(cid=$cid2 host_port 22)
[[ -n $cid2_port ]] || fail "second container: port 22 not published"
# shellcheck disable=SC2016 # $1 is for the inner bash
banner() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -c 4 <&3' _ "$1" | grep -q '^SSH-'; }
preauth() { docker exec "$cid2" ps -eo args= | grep -q -e '\[net\]' -e '\[accepted\]' -e '\[preauth\]'; }
wait_until 20 "second container's sshd answering" banner "$cid2_port"
(exec 3<>"/dev/tcp/127.0.0.1/$cid2_port" && printf 'SSH-2.0-smoke-idle\r\n' >&3 && exec sleep 120) &
idle_pid=$!
wait_until 10 "idle connection reaching sshd" preauth
t_idle=$(now_ms)

out=$(key_ssh "id -un; mkdir -p www; echo 'hello $token' > www/index.html; cat www/index.html") ||
    fail "command over key login failed"
[[ $out == "$user"$'\n'"hello $token" ]] || fail "key login ran as/wrote something unexpected: $out"
key_ssh 'test -O . && test -O .bashrc && test -O .profile' || fail "home directory not from /etc/skel or not the user's"
ok "key login runs commands as $user, home from /etc/skel, writable"

out=$(password_ssh "$password" "$user" 'id -un; cat www/index.html') || fail "password login failed"
[[ $out == "$user"$'\n'"hello $token" ]] || fail "password login: unexpected output: $out"
ok "password login works"

if password_ssh "wrong-$password" "$user" true 2>/dev/null; then fail "a wrong password was accepted"; fi
if password_ssh "$password" root true 2>/dev/null; then fail "root logged in"; fi
ok "wrong password and root login are refused"

out=$(timeout 30 ssh "${by_key[@]}" -tt "$user@127.0.0.1" 'tty; exit 0' </dev/null 2>&1) || fail "pty session failed: $out"
[[ $out == /dev/pts/* ]] || fail "no pty: $out"
ok "interactive session gets a pty"

echo "scp payload $token" >"$tmp/payload"
timeout 30 scp -q "${common[@]}" -P "$ssh_port" "${key_auth[@]}" "$tmp/payload" "$user@127.0.0.1:payload" </dev/null || fail "scp failed"
[[ $(key_ssh cat payload) == "scp payload $token" ]] || fail "scp: file content differs"
ok "scp (sftp) works"

key_ssh 'cd www || exit 1; nohup python3 -m http.server 80 >/tmp/http.log 2>&1 </dev/null & echo started' >/dev/null ||
    fail "could not start the web server"
fetch() { [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$http_port/index.html") == "hello $token" ]]; }
wait_until 15 "web server on port 80 reachable from the host" fetch
owner=$(docker exec "$cid" ps -o user:32= -C python3 | head -n1 | tr -d ' ')
[[ $owner == "$user" ]] || fail "the web server runs as '$owner', want $user"
ok "web page served by $user's python3 on port 80 fetched through the published port"

# The helper: idempotent, strict.
shadow1=$(docker exec "$cid" getent shadow "$user")
out=$(docker exec -i "$cid" rpibroker-sandbox-user add "$user" <"$tmp/creds" 2>&1) || fail "second add: $out"
[[ $out == "unchanged $user" ]] || fail "second add with the same input said '$out'"
[[ $(docker exec "$cid" getent shadow "$user") == "$shadow1" ]] || fail "second add changed the shadow entry"
docker exec "$cid" rpibroker-sandbox-user check "$user" || fail "check $user: not found"
st=0; docker exec "$cid" rpibroker-sandbox-user check nosuchuser || st=$?
((st == 1)) || fail "check nosuchuser: exit $st, want 1"
st=0; docker exec -i "$cid" rpibroker-sandbox-user add root <"$tmp/creds" 2>/dev/null || st=$?
((st == 3)) || fail "add root: exit $st, want 3"
st=0; docker exec -i "$cid" rpibroker-sandbox-user add Bad_Name <"$tmp/creds" 2>/dev/null || st=$?
((st == 2)) || fail "add Bad_Name: exit $st, want 2"
st=0; printf 'pw\nnot a key\n' | docker exec -i "$cid" rpibroker-sandbox-user add "$user" 2>/dev/null || st=$?
((st == 2)) || fail "add with a bad key: exit $st, want 2"
ok "user helper: same input changes nothing; strict names, keys and system accounts"

# New credentials without a key: the old key and password stop working.
out=$(printf '%s\n\n' "new-$password" | docker exec -i "$cid" rpibroker-sandbox-user add "$user" 2>&1) ||
    fail "re-provisioning without a key: $out"
[[ $out == "updated $user" ]] || fail "re-provisioning said '$out'"
if key_ssh true 2>/dev/null; then fail "the removed key still logs in"; fi
if password_ssh "$password" "$user" true 2>/dev/null; then fail "the old password still logs in"; fi
password_ssh "new-$password" "$user" true || fail "the new password does not log in"
ok "re-provisioning replaces the password and removes the key"

no_preauth() { ! preauth; }
wait_until 20 "sshd ending an unauthenticated connection after LoginGraceTime" no_preauth
kill -0 "$idle_pid" 2>/dev/null || fail "the idle client went away by itself; the LoginGraceTime check proves nothing"
ok "an unauthenticated idle connection is cleaned up after LoginGraceTime ($(($(now_ms) - t_idle)) ms)"

# The LAN firewall, applied as the agent applies it: a helper container from
# the same image in the sandbox's network namespace, with NET_ADMIN.
firewall() {
    docker run --rm --network "container:$cid" --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW \
        --label org.rpibroker.test=1 "$image" rpibroker-sandbox-firewall "$@"
}
rule_count() {
    docker run --rm --network "container:$cid" --cap-drop ALL --cap-add NET_ADMIN \
        --label org.rpibroker.test=1 "$image" sh -c 'iptables -S; ip6tables -S 2>/dev/null || true' | wc -l
}
# make_net NAME SUBNET...: creates a bridge network with the first subnet
# that is free (another test run, or the host, may use one).
make_net() {
    local name=$1 subnet err=""
    shift
    for subnet in "$@"; do
        if err=$(docker network create --driver bridge --subnet "$subnet" --label org.rpibroker.test=1 "$name" 2>&1); then
            nets+=("$name")
            return 0
        fi
    done
    fail "docker network create $name: $err"
}
# Subnets in random order: 198.51.100.0/24 (TEST-NET-2, not a blocked range)
# in /28s, and 10.213.0.0/16 in /24s.
# shellcheck disable=SC2046 # word lists on purpose
make_net "rpibroker-smoke-pub-$token" $(shuf -i 0-15 | awk '{ printf "198.51.100.%d/28\n", $1 * 16 }')
# shellcheck disable=SC2046
make_net "rpibroker-smoke-lan-$token" $(shuf -i 0-255 | awk '{ printf "10.213.%d.0/24\n", $1 }')
pub_net=${nets[0]} lan_net=${nets[1]}
listener_name=rpibroker-smoke-listener-$token
listener=$(docker run -d --cap-drop ALL --network "$pub_net" --name "$listener_name" --label org.rpibroker.test=1 \
    "$image" sh -c 'mkdir -p /tmp/www && echo "listener $1" >/tmp/www/index.html && cd /tmp/www &&
        exec python3 -m http.server 8080' sh "$token") || fail "docker run (listener) failed"
docker network connect "$lan_net" "$listener" || fail "docker network connect $lan_net (listener) failed"
docker network connect "$pub_net" "$cid" || fail "docker network connect $pub_net (sandbox) failed"
docker network connect "$lan_net" "$cid" || fail "docker network connect $lan_net (sandbox) failed"
ip_on() { docker inspect -f "{{ (index .NetworkSettings.Networks \"$2\").IPAddress }}" "$1"; }
pub_ip=$(ip_on "$listener" "$pub_net")
lan_ip=$(ip_on "$listener" "$lan_net")
gateway=$(docker inspect -f '{{ .NetworkSettings.Gateway }}' "$cid")
[[ -n $pub_ip && -n $lan_ip ]] || fail "the listener has no address on the test networks"
# reach IP: from inside the sandbox (as root, which the firewall binds too),
# fetch the listener's page.
reach() { [[ $(docker exec "$cid" curl -fsS --max-time 3 "http://$1:8080/" 2>&1) == "listener $token" ]]; }
# refused IP PORT: a TCP connection from inside the sandbox is refused within
# a second (not left to time out).
refused() {
    docker exec "$cid" python3 -c '
import socket, sys, time
t = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
except ConnectionRefusedError:
    sys.exit(0 if time.monotonic() - t < 1 else 1)
except OSError as e:
    print(e, file=sys.stderr)
sys.exit(1)' "$1" "$2"
}
wait_until 15 "listener reachable on the public test network" reach "$pub_ip"
reach "$lan_ip" || fail "the listener on the private test network is not reachable before the firewall"
st=0; firewall --check >/dev/null 2>&1 || st=$?
((st == 1)) || fail "rpibroker-sandbox-firewall --check before applying: exit $st, want 1"
say "test networks $pub_net ($pub_ip) and $lan_net ($lan_ip) reachable before the firewall"

out=$(firewall 2>&1) || fail "rpibroker-sandbox-firewall: $out"
[[ $out =~ ^rpibroker-sandbox-firewall:\ blocked\ [1-9][0-9]*\ IPv4\ and\ [0-9]+\ IPv6\ ranges ]] ||
    fail "rpibroker-sandbox-firewall said '$out'"
rules1=$(rule_count)
out2=$(firewall 2>&1) || fail "rpibroker-sandbox-firewall (second run): $out2"
rules2=$(rule_count)
((rules1 == rules2)) || fail "a second firewall run changed the rule count: $rules1 -> $rules2"
firewall --check || fail "rpibroker-sandbox-firewall --check: the rules are not in place"
jumps=$(docker run --rm --network "container:$cid" --cap-drop ALL --cap-add NET_ADMIN --label org.rpibroker.test=1 \
    "$image" iptables -S OUTPUT | grep -c -- '-j RPIBROKER-LAN' || true)
((jumps == 1)) || fail "OUTPUT jumps to RPIBROKER-LAN $jumps times, want 1"
ok "firewall applied: $out ($rules1 rules, unchanged by a second run)"

refused "$lan_ip" 8080 || fail "the listener on the private test network is still reachable"
refused "$gateway" 22 || fail "the Docker bridge gateway $gateway is still reachable"
refused 169.254.169.254 80 || fail "169.254.169.254 is not refused"
refused 192.168.0.1 80 || fail "192.168.0.1 is not refused"
ok "private addresses refused at once ($lan_ip, gateway $gateway, 169.254.169.254, 192.168.0.1)"

reach "$pub_ip" || fail "the listener on the public test network is no longer reachable"
docker exec "$cid" getent hosts "$listener_name" >/dev/null ||
    fail "Docker's embedded DNS (127.0.0.11) no longer answers"
password_ssh "new-$password" "$user" true || fail "password login through the published port fails with the firewall"
fetch || fail "the web page through the published port fails with the firewall"
ok "with the firewall: public address, embedded DNS, SSH and web through the published ports still work"

if docker exec "$cid" iptables -F RPIBROKER-LAN >/dev/null 2>&1; then fail "root in the sandbox flushed the firewall"; fi
firewall --check || fail "the firewall rules changed"
ok "root in the sandbox cannot change the firewall"

# Removing the renter: processes (the web server) killed, account, home and
# group gone, logins refused; again is harmless.
uid=$(docker exec "$cid" id -u "$user") || fail "id -u $user failed"
docker exec "$cid" pgrep -u "$user" python3 >/dev/null || fail "$user's web server is not running before del"
out=$(docker exec "$cid" rpibroker-sandbox-user del "$user" 2>&1) || fail "rpibroker-sandbox-user del: $out"
[[ $out == "removed $user" ]] || fail "del said '$out', want 'removed $user'"
st=0; docker exec "$cid" rpibroker-sandbox-user check "$user" || st=$?
((st == 1)) || fail "check after del: exit $st, want 1"
if docker exec "$cid" getent passwd "$user" >/dev/null; then fail "del left the account"; fi
if docker exec "$cid" getent group "$user" >/dev/null; then fail "del left the group"; fi
if docker exec "$cid" test -e "/home/$user"; then fail "del left /home/$user"; fi
left=$(docker exec "$cid" ps -e -o uid=,stat=,args= | awk -v uid="$uid" '$1 == uid && $2 !~ /^Z/') ||
    fail "ps failed"
[[ -z $left ]] || fail "del left processes of $user: $left"
if fetch 2>/dev/null; then fail "the removed user's web server still answers"; fi
if password_ssh "new-$password" "$user" true 2>/dev/null; then fail "the removed user's password still logs in"; fi
out=$(docker exec "$cid" rpibroker-sandbox-user del "$user" 2>&1) || fail "second del: $out"
[[ $out == "absent $user" ]] || fail "second del said '$out', want 'absent $user'"
st=0; docker exec "$cid" rpibroker-sandbox-user del root 2>/dev/null || st=$?
((st == 3)) || fail "del root: exit $st, want 3"
ok "del removes the account, its home, group and processes; logins refused; again says absent"

t_stop=$(now_ms)
docker stop -t 10 "$cid" >/dev/null || fail "docker stop failed"
stop_ms=$(($(now_ms) - t_stop))
((stop_ms < 5000)) || fail "docker stop took ${stop_ms} ms: sshd as PID 1 did not exit on SIGTERM"
ok "docker stop: sshd exits on SIGTERM (${stop_ms} ms)"

say "image size: $(docker image ls --format '{{.Size}}' "$image"), login ready ${login_ms} ms after docker run"
echo "sandbox smoke test: $passed passed, 0 failed"
