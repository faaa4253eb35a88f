#!/usr/bin/env bash
# bench/run.sh — baseline benchmarks for rpibroker.
#
# Measures, in one run and all on 127.0.0.1:
#   1. iperf3 throughput (-P 1 / -P 4, both directions) direct and through an
#      OpenSSH reverse tunnel (ssh -R), plus tunnel CPU seconds per GB;
#   2. wrk req/s and p99 for a 1 KiB nginx page: direct, through ssh -R, and
#      through "nginx proxy -> ssh -R" (the old design's stack);
#   3. OpenSSH start-up: spawning `ssh -N -R` -> first HTTP 2xx through it;
#   4. sshd memory per idle `ssh -R` connection;
# and the same for our own tunnel (bench/rpibroker.sh): built in release mode
# first, unless RPIBROKER_BIN_DIR names prebuilt binaries.
#
# The result is a markdown table on stdout, also written to
# bench/results/latest.md (raw rows: latest.tsv). Progress goes to stderr.
#
# Usage (as root; installs missing Debian packages itself):
#   bench/run.sh
#   BENCH_SECONDS=2 bench/run.sh                     # shorter rows
#   RPIBROKER_BIN_DIR=target/release bench/run.sh    # use these binaries, no build
#   BENCH_BASELINE_ONLY=1 bench/run.sh               # only direct and OpenSSH rows
#
# Environment:
#   BENCH_SECONDS        seconds per iperf3 / wrk row            (default 5)
#   BENCH_SSHD_CONNS     idle connections for the memory test    (default 50)
#   BENCH_STARTUP_RUNS   start-up samples, median reported       (default 5)
#   BENCH_RESULTS_DIR    where latest.md goes            (default bench/results)
#   BENCH_KEEP_TMP=1     keep the temp dir (configs, logs) for debugging
#   RPIBROKER_BIN_DIR    dir with rpibroker, rpibroker-agent, examples/idle_devices
#   BENCH_IDLE_DEVICES   devices connected for the memory row    (default 1000)
#
# Everything the script starts runs from a private temp dir on free ports and
# is killed on exit, so it can run next to the test suite.

set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_SSHD_CONNS=${BENCH_SSHD_CONNS:-50}
BENCH_STARTUP_RUNS=${BENCH_STARTUP_RUNS:-5}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
# Prefer the distro python: no pyenv shim start-up cost in polling loops.
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
LIB="$BENCH_DIR/lib/benchlib.py"

BENCH_FAILED=0     # set to 1 by any failed measurement; exit status at the end
BG_PIDS=()         # every background process we started (killed with its tree on exit)
LAST_PID=          # pid of the most recent start_bg

log()  { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die()  { log "FATAL: $*"; exit 1; }
bl()   { "$PY" "$LIB" "$@"; }

# ---------------------------------------------------------------------------
# Setup: root, packages, temp dir, cleanup
# ---------------------------------------------------------------------------

ensure_deps() {
    # command -v guards: only touch apt when something is really missing.
    local pkgs=()
    [[ -x /usr/sbin/sshd ]] || command -v sshd >/dev/null || pkgs+=(openssh-server)
    command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || pkgs+=(openssh-client)
    [[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || pkgs+=(nginx)
    command -v iperf3 >/dev/null || pkgs+=(iperf3)
    command -v wrk >/dev/null    || pkgs+=(wrk)
    command -v python3 >/dev/null || [[ -x /usr/bin/python3 ]] || pkgs+=(python3)
    if ((${#pkgs[@]})); then
        log "installing missing packages: ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y "${pkgs[@]}" >&2 \
            || { apt-get update >&2 && apt-get install -y "${pkgs[@]}" >&2; } \
            || die "apt-get install ${pkgs[*]} failed"
        [[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
    fi
    SSHD=$(command -v sshd || echo /usr/sbin/sshd)   # sshd re-execs itself: needs an absolute path
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# Kill processes and everything below them: TERM, bounded wait, then KILL.
# The tree is frozen (SIGSTOP) and re-read until it stops growing *before*
# anything is killed: a listener like sshd may fork a child for a connection
# that arrives while we look, and once the listener is dead its children are
# re-parented to init and could no longer be found.
kill_tree() {
    (($#)) || return 0
    local pids prev="" left end p
    pids=$(bl tree "$@") || return 0
    # shellcheck disable=SC2086
    while [[ -n $pids && $pids != "$prev" ]]; do
        kill -STOP $pids 2>/dev/null || true
        prev=$pids
        pids=$(bl tree $pids) || break
    done
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086
    { kill -TERM $pids; kill -CONT $pids; } 2>/dev/null || true
    end=$((SECONDS + 5))
    # shellcheck disable=SC2086
    while left=$(bl tree $pids) && [[ -n $left ]]; do
        if ((SECONDS >= end)); then
            log "SIGKILL to stubborn processes: $left"
            kill -KILL $left 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    # Reap our own children so no zombies are left for the caller.
    for p in $pids; do wait "$p" 2>/dev/null || true; done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#BG_PIDS[@]})); then
        log "stopping ${#BG_PIDS[@]} background process(es)"
        # Clients first, while the servers still run: an sshd child whose
        # client is gone exits and is reaped by the running listener. Killing
        # the listener first would leave its children to init (as zombies, or
        # alive if they are mid-handshake).
        # shellcheck disable=SC2046
        kill_tree $(bl childless "${BG_PIDS[@]}")
        bl settle "${BG_PIDS[@]}"
        kill_tree "${BG_PIDS[@]}"
    fi
    if [[ -n ${TMP:-} && -d $TMP ]]; then
        if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then log "kept temp dir $TMP"; else rm -rf "$TMP"; fi
    fi
    exit "$rc"
}

# start_bg NAME CMD...: run CMD in the background, output to $TMP/NAME.log.
# Sets LAST_PID (not printed: a $(...) subshell would lose BG_PIDS).
start_bg() {
    local name=$1; shift
    "$@" </dev/null >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}

# stop_bg PID...: kill early (e.g. the ssh clients before the rpibroker rows).
stop_bg() {
    kill_tree "$@"
    local keep=() p q drop
    for p in "${BG_PIDS[@]}"; do
        drop=0; for q in "$@"; do [[ $p == "$q" ]] && drop=1; done
        ((drop)) || keep+=("$p")
    done
    BG_PIDS=("${keep[@]}")
}

# free_ports N: N distinct currently free 127.0.0.1 ports, space separated.
free_ports() { bl ports "$1"; }

# is_listening PORT: a LISTEN socket on PORT exists (any local address).
# Reads /proc/net/tcp{,6} instead of connecting, because a probe connection
# to a forwarded port would reach the service behind it (iperf3 counts it).
is_listening() {
    local hex; hex=$(printf '%04X' "$1")
    awk -v p="$hex" '$4 == "0A" { n = split($2, a, ":"); if (a[n] == p) f = 1 }
                     END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_listen PORT DEADLINE_S [PID]: poll until PORT listens; fail early if PID dies.
wait_listen() {
    local port=$1 deadline=$2 pid=${3:-} start=$SECONDS
    until is_listening "$port"; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid died before port $port listened"; return 1
        fi
        ((SECONDS - start < deadline)) || { log "port $port not listening after ${deadline}s"; return 1; }
        sleep 0.02
    done
}

# record KIND FIELDS...: one raw result row (tab separated) for the report.
record() { local IFS=$'\t'; printf '%s\n' "$*" >>"$TMP/results.tsv"; }
note()   { record note "$*"; log "note: $*"; }
fail()   { BENCH_FAILED=1; note "FAILED: $*"; }

# split_pids "$@": SERVER_PIDS before "--", AGENT_PIDS after it.
split_pids() {
    SERVER_PIDS=(); AGENT_PIDS=()
    local seen=0 a
    for a in "$@"; do
        if [[ $a == -- ]]; then seen=1
        elif ((seen)); then AGENT_PIDS+=("$a")
        else SERVER_PIDS+=("$a"); fi
    done
}

# ---------------------------------------------------------------------------
# Measurement functions — reusable for any tunnel (see bench/rpibroker.sh)
# ---------------------------------------------------------------------------

# measure_iperf LABEL PORT [SERVER_PIDS...] [-- AGENT_PIDS...]
#   Four rows: -P 1 / -P 4, normal and -R, against the iperf3 server reached
#   at 127.0.0.1:PORT. CPU is summed over the given PIDs *and their
#   descendants* (pass the sshd listener to count its per-connection
#   children). SERVER = public side of the tunnel, AGENT = device side.
measure_iperf() {
    local label=$1 port=$2; shift 2
    split_pids "$@"
    local dir par flags out bps bytes scpu agcpu
    for dir in fwd rev; do
        for par in 1 4; do
            flags=(-P "$par"); [[ $dir == rev ]] && flags+=(-R)
            log "iperf3 $label -P $par ${dir}"
            out="$TMP/iperf-${label//[^A-Za-z0-9]/_}-$par-$dir"
            ((${#SERVER_PIDS[@]})) && bl cpu-snap "${SERVER_PIDS[@]}" >"$out.scpu"
            ((${#AGENT_PIDS[@]})) && bl cpu-snap "${AGENT_PIDS[@]}" >"$out.acpu"
            # timeout: a wedged tunnel must not hang the whole run.
            # --foreground keeps iperf3 in our process group so ^C reaches it.
            if timeout --foreground $((BENCH_SECONDS + 30)) iperf3 -c 127.0.0.1 -p "$port" \
                   -t "$BENCH_SECONDS" "${flags[@]}" --json >"$out.json" 2>"$out.err" \
               && read -r bps bytes < <(bl iperf "$out.json"); then
                scpu=-; agcpu=-
                ((${#SERVER_PIDS[@]})) && scpu=$(bl cpu-delta "$out.scpu" "${SERVER_PIDS[@]}")
                ((${#AGENT_PIDS[@]})) && agcpu=$(bl cpu-delta "$out.acpu" "${AGENT_PIDS[@]}")
                record iperf "$label" "$par" "$dir" "$bps" "$bytes" "$scpu" "$agcpu"
            else
                record iperf "$label" "$par" "$dir" ERR 0 - -
                fail "iperf3 $label -P $par $dir: $(bl iperf "$out.json" 2>&1 | tail -1) $(tail -1 "$out.err")"
            fi
        done
    done
}

# measure_wrk LABEL URL [HOST_HEADER]
#   Two rows: wrk -t2 -c64 and -t1 -c8, --latency; req/s, p99, errors.
measure_wrk() {
    local label=$1 url=$2 host=${3:-} conf out rps p99 errs
    local hdr=(); [[ -n $host ]] && hdr=(-H "Host: $host")
    for conf in "-t2 -c64" "-t1 -c8"; do
        log "wrk $label $conf"
        out="$TMP/wrk-${label//[^A-Za-z0-9]/_}-${conf//[^a-z0-9]/}"
        # shellcheck disable=SC2086
        if timeout --foreground $((BENCH_SECONDS + 30)) wrk $conf -d"${BENCH_SECONDS}s" --latency \
               "${hdr[@]}" "$url" >"$out.txt" 2>&1 \
           && read -r rps p99 errs < <(bl wrk "$out.txt"); then
            record wrk "$label" "$conf" "$rps" "$p99" "$errs"
            ((errs == 0)) || note "wrk $label $conf: $errs socket errors / non-2xx responses"
        else
            record wrk "$label" "$conf" ERR ERR -
            fail "wrk $label $conf: $(tail -2 "$out.txt" | tr '\n' ' ')"
        fi
    done
}

# measure_first_response LABEL URL [HOST_HEADER] -- CMD...
#   Spawns CMD (own session) BENCH_STARTUP_RUNS times and times each spawn ->
#   first HTTP 2xx on URL (probed every 1 ms, deadline 10 s); CMD's process
#   group is killed after each sample. URL must not answer before CMD runs.
measure_first_response() {
    local label=$1 url=$2 host=""; shift 2
    [[ ${1:-} != -- ]] && { host=$1; shift; }
    [[ ${1:-} == -- ]] && shift
    local med mn mx runs
    log "start-up $label ($BENCH_STARTUP_RUNS runs)"
    if read -r med mn mx runs < <(bl first-response --url "$url" --host "$host" --deadline 10 \
            --runs "$BENCH_STARTUP_RUNS" --log "$TMP/startup-${label//[^A-Za-z0-9]/_}" \
            -- "$@" 2>"$TMP/startup.err"); then
        record startup "$label" "$med" "$mn" "$mx" "$runs"
    else
        record startup "$label" ERR ERR ERR 0
        fail "start-up $label: $(tail -1 "$TMP/startup.err")"
    fi
}

# mem_snapshot PIDS...: "PSS_KiB RSS_KiB NPROCS" of the PIDs' process trees.
mem_snapshot() { bl mem "$@"; }

# measure_memory LABEL N BASELINE SERVER_PIDS... [-- AGENT_PIDS...]
#   BASELINE is mem_snapshot of SERVER_PIDS taken before the N idle
#   connections were opened; reports (now - baseline) / N for the server
#   side and total/N for the agent side (client processes).
measure_memory() {
    local label=$1 n=$2 base=$3; shift 3
    split_pids "$@"
    local bpss brss bprocs pss rss procs apss=- arss aprocs
    read -r bpss brss bprocs <<<"$base"
    read -r pss rss procs < <(mem_snapshot "${SERVER_PIDS[@]}")
    if ((${#AGENT_PIDS[@]})); then
        read -r apss arss aprocs < <(mem_snapshot "${AGENT_PIDS[@]}")
        apss=$(awk -v a="$apss" -v n="$n" 'BEGIN { printf "%.0f", a / n }')
    fi
    record mem "$label" "$n" \
        "$(awk -v a="$pss" -v b="$bpss" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')" \
        "$(awk -v a="$rss" -v b="$brss" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')" \
        "$(awk -v a="$procs" -v b="$bprocs" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')" \
        "$apss"
}

# ---------------------------------------------------------------------------
# Fixtures: iperf3 server, nginx (origin + proxy), private sshd
# ---------------------------------------------------------------------------

start_iperf_server() {
    start_bg iperf3-server iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT"
    IPERF_PID=$LAST_PID
    wait_listen "$IPERF_PORT" 10 "$IPERF_PID" || die "iperf3 server did not start"
}

# One nginx instance, two server blocks:
#   ORIGIN_PORT: the 1 KiB static page (what sits on the device);
#   PROXY_PORT:  proxy_pass to the ssh -R port that forwards to ORIGIN_PORT
#                (the old design: public nginx -> sshd remote forward).
start_nginx() {
    local d="$TMP/nginx"
    mkdir -p "$d/tmp" "$TMP/www"
    head -c 1024 /dev/zero | tr '\0' 'x' >"$TMP/www/1k.html"
    cat >"$d/nginx.conf" <<EOF
# generated by bench/run.sh
daemon off;                 # stays our child, so cleanup can kill it
user root;                  # workers must read the docroot in our 0700 temp dir
worker_processes $(nproc);
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/html;
    sendfile on;
    keepalive_timeout 65;
    keepalive_requests 1000000;   # wrk must not be forced to reconnect
    client_body_temp_path $d/tmp/body;
    proxy_temp_path       $d/tmp/proxy;
    fastcgi_temp_path     $d/tmp/fastcgi;
    uwsgi_temp_path       $d/tmp/uwsgi;
    scgi_temp_path        $d/tmp/scgi;

    # Keepalive pool to the tunnel, so the proxy row measures the tunnel
    # and not a TCP (+ ssh channel) setup per request.
    upstream via_openssh {
        server 127.0.0.1:$RP_HTTP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            proxy_pass http://via_openssh;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    "$NGINX" -t -q -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >&2 || die "nginx config test failed"
    start_bg nginx "$NGINX" -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
    NGINX_PID=$LAST_PID
    wait_listen "$ORIGIN_PORT" 10 "$NGINX_PID" || die "nginx did not start (see $d/error.log)"
    wait_listen "$PROXY_PORT" 10 "$NGINX_PID" || die "nginx proxy did not start"
}

# A private sshd: own config, host key and authorized key in $TMP, pubkey
# auth only. The cipher is pinned (aes128-gcm on both ends) so that rows are
# comparable between runs and machines rather than subject to negotiation.
start_sshd() {
    local d="$TMP/ssh"
    mkdir -p "$d"
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$d/client_key"
    cp "$d/client_key.pub" "$d/authorized_keys"
    cat >"$d/sshd_config" <<EOF
# generated by bench/run.sh
ListenAddress 127.0.0.1:$SSHD_PORT
HostKey $d/host_key
PidFile none
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
GatewayPorts no
AllowTcpForwarding remote
X11Forwarding no
PrintMotd no
Ciphers aes128-gcm@openssh.com
# The memory test opens BENCH_SSHD_CONNS connections at once; the default
# MaxStartups 10:30:100 would randomly drop unauthenticated ones.
MaxStartups 1000:30:2000
LogLevel ERROR
EOF
    # Privilege separation dir; normally created by the sshd service unit.
    mkdir -p /run/sshd && chmod 0755 /run/sshd
    "$SSHD" -t -f "$d/sshd_config" || die "sshd config test failed"
    start_bg sshd "$SSHD" -D -e -f "$d/sshd_config"
    SSHD_PID=$LAST_PID
    wait_listen "$SSHD_PORT" 10 "$SSHD_PID" || die "sshd did not start (see $TMP/sshd.log)"
    # Stock client, hermetic: no user config (-F /dev/null), no agent keys,
    # no prompts; fail instead of running without the forward.
    SSH_CMD=(ssh -F /dev/null -N
             -o Ciphers=aes128-gcm@openssh.com
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
             -o BatchMode=yes -o IdentitiesOnly=yes -o ExitOnForwardFailure=yes
             -i "$d/client_key" -p "$SSHD_PORT")
}

# ---------------------------------------------------------------------------
# OpenSSH rows
# ---------------------------------------------------------------------------

# Two properties of stock OpenSSH that show in the numbers (not harness bugs):
#  - with -N there is no session, so sshd never sets TCP_NODELAY on the
#    connection (the client does; checked with strace). Small writes from
#    sshd towards the device then meet Nagle + delayed ACK: wrk p99 ~40 ms.
#  - sshd skips the privilege-separated child for root logins, so a root
#    tunnel costs one sshd process per connection; a non-root tunnel user
#    would cost two (monitor + child) and correspondingly more memory.
bench_openssh() {
    # 1+2. One ssh -R client, as a device would run it: forwards to iperf3 and nginx.
    log "starting ssh -R tunnel"
    start_bg ssh-tunnel "${SSH_CMD[@]}" \
        -R "$RP_IPERF_PORT:127.0.0.1:$IPERF_PORT" \
        -R "$RP_HTTP_PORT:127.0.0.1:$ORIGIN_PORT" root@127.0.0.1
    local tunnel=$LAST_PID
    if wait_listen "$RP_IPERF_PORT" 10 "$tunnel" && wait_listen "$RP_HTTP_PORT" 10 "$tunnel"; then
        # Server side = the sshd listener's tree (its per-connection children);
        # agent side = the ssh client.
        measure_iperf "openssh -R" "$RP_IPERF_PORT" "$SSHD_PID" -- "$tunnel"
        measure_wrk "openssh -R" "http://127.0.0.1:$RP_HTTP_PORT/1k.html"
        measure_wrk "nginx → openssh -R" "http://127.0.0.1:$PROXY_PORT/1k.html"
    else
        fail "ssh -R tunnel did not come up: $(tail -3 "$TMP/ssh-tunnel.log" | tr '\n' ' ')"
    fi
    stop_bg "$tunnel"

    # 3. Start-up: spawn ssh -R -> first HTTP 2xx through its remote port.
    measure_first_response "openssh -R" "http://127.0.0.1:$RP_STARTUP_PORT/1k.html" -- \
        "${SSH_CMD[@]}" -R "$RP_STARTUP_PORT:127.0.0.1:$ORIGIN_PORT" root@127.0.0.1

    # 4. Memory: N idle `ssh -N -R 0:...` connections (server picks the port).
    local n=$BENCH_SSHD_CONNS i base clients=() up start=$SECONDS
    base=$(mem_snapshot "$SSHD_PID")
    log "opening $n idle ssh -R connections"
    for ((i = 0; i < n; i++)); do
        start_bg "ssh-idle-$i" "${SSH_CMD[@]}" -R "0:127.0.0.1:$ORIGIN_PORT" root@127.0.0.1
        clients+=("$LAST_PID")
    done
    # Ready = the client logged the port sshd allocated for its forward.
    while up=$(grep -l '^Allocated port' "$TMP"/ssh-idle-*.log 2>/dev/null | wc -l); ((up < n)); do
        if ((SECONDS - start > 30 + n / 2)); then break; fi
        for i in "${clients[@]}"; do kill -0 "$i" 2>/dev/null || break 2; done
        sleep 0.05
    done
    if ((up == n)); then
        measure_memory "openssh -R" "$n" "$base" "$SSHD_PID" -- "${clients[@]}"
    else
        fail "only $up/$n idle ssh connections came up (see ssh-idle-*.log)"
    fi
    stop_bg "${clients[@]}"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

main() {
    ((EUID == 0)) || die "run as root (private sshd, root login to it, nginx user root)"
    ensure_deps
    TMP=$(mktemp -d /tmp/rpibroker-bench.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    : >"$TMP/results.tsv"

    read -r SSHD_PORT IPERF_PORT ORIGIN_PORT PROXY_PORT RP_IPERF_PORT RP_HTTP_PORT RP_STARTUP_PORT \
        < <(free_ports 7)
    log "temp dir $TMP; ports sshd=$SSHD_PORT iperf3=$IPERF_PORT nginx=$ORIGIN_PORT" \
        "proxy=$PROXY_PORT ssh-R=$RP_IPERF_PORT,$RP_HTTP_PORT,$RP_STARTUP_PORT"

    {
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "host=$(hostname)"
        echo "cpus=$(nproc)"
        echo "kernel=$(uname -r)"
        echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "seconds=$BENCH_SECONDS"
        echo "versions=$(ssh -V 2>&1 | cut -d, -f1); $("$NGINX" -v 2>&1 | sed 's/.*: //'); $(iperf3 --version | head -1 | cut -d' ' -f1-2); wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2)."
    } >"$TMP/meta"

    start_iperf_server
    start_nginx
    start_sshd

    # Baseline first, in the same run, so every ratio compares like with like.
    measure_iperf direct "$IPERF_PORT"
    measure_wrk direct "http://127.0.0.1:$ORIGIN_PORT/1k.html"

    bench_openssh

    # --- rpibroker rows ---
    # Our own tunnel, measured with the same functions against the same
    # direct baseline and fixtures (IPERF_PORT, ORIGIN_PORT, free_ports,
    # start_bg, wait_listen, measure_*). The wiring lives in bench/rpibroker.sh
    # so that it can change with the code without touching this harness.
    if [[ -z ${RPIBROKER_BIN_DIR:-} && -z ${BENCH_BASELINE_ONLY:-} ]]; then
        log "building rpibroker (release)"
        (cd "$BENCH_DIR/.." && cargo build --release -q -p rpibroker -p rpibroker-agent --bins --example idle_devices) \
            || die "cargo build failed"
        RPIBROKER_BIN_DIR=$BENCH_DIR/../target/release
    fi
    if [[ -n ${RPIBROKER_BIN_DIR:-} ]]; then
        if [[ -x $RPIBROKER_BIN_DIR/rpibroker && -x $RPIBROKER_BIN_DIR/rpibroker-agent ]]; then
            # shellcheck source=bench/rpibroker.sh
            source "$BENCH_DIR/rpibroker.sh"
            bench_rpibroker
        else
            fail "RPIBROKER_BIN_DIR=$RPIBROKER_BIN_DIR has no executable rpibroker and rpibroker-agent"
        fi
    else
        note "rpibroker rows skipped: BENCH_BASELINE_ONLY set"
    fi
    # --- end rpibroker rows ---

    mkdir -p "$RESULTS_DIR"
    bl report "$TMP/results.tsv" "$TMP/meta" >"$RESULTS_DIR/latest.md"
    cp "$TMP/results.tsv" "$RESULTS_DIR/latest.tsv"
    cat "$RESULTS_DIR/latest.md"
    log "report written to $RESULTS_DIR/latest.md"
    ((BENCH_FAILED == 0)) || { log "some measurements failed (see Notes)"; exit 1; }
}

main "$@"
