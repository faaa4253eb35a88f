# bench/rpibroker.sh — rpibroker rows for bench/run.sh (sourced, not run).
#
# Measures our tunnel with the harness's functions and fixtures, against the
# same direct baseline: iperf3 through a device's raw port, wrk through the
# Host router and through a device's http port, agent start to first visitor
# response, and broker memory per idle connected device.
#
# Settings: BENCH_IDLE_DEVICES (default 1000) devices for the memory row.

# rpb_setup NAME DEVICES: a data dir with its own rpibroker.toml (free ports,
# a pool for DEVICES devices); sets RPB_DATA RPB_API RPB_HTTP.
rpb_setup() {
    local name=$1 devices=$2 api ssh http https first
    RPB_DATA=$TMP/$name
    mkdir -p "$RPB_DATA"
    read -r api ssh http https < <(free_ports 4)
    first=$(free_range $((3 * devices))) || { fail "no free range of $((3 * devices)) ports"; return 1; }
    cat >"$RPB_DATA/rpibroker.toml" <<TOML
api_listen = "127.0.0.1:$api"
ssh_listen = "127.0.0.1:$ssh"
http_listen = "127.0.0.1:$http"
https_listen = "127.0.0.1:$https"
port_pool = "$first-$((first + 3 * devices - 1))"
TOML
    RPB_API=$api
    RPB_HTTP=$http
}

# free_range N: first port of N consecutive free loopback ports below the
# ephemeral range.
free_range() {
    "$PY" - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1])
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for base in range(20000, 32000 - n, 97):
    if all(free(p) for p in range(base, base + n)):
        print(base)
        sys.exit(0)
sys.exit(1)
PY
}

rpb() { "$RPIBROKER_BIN_DIR/rpibroker" --data-dir "$RPB_DATA" "$@"; }

# rpb_device_port NAME SERVICE: the device's public port once it is online.
rpb_device_port() {
    local name=$1 service=$2 deadline=$((SECONDS + 20)) port
    while ((SECONDS < deadline)); do
        port=$(rpb device list --json | "$PY" -c '
import json, sys
for d in json.load(sys.stdin):
    if d["name"] == sys.argv[1] and d["online"] and d["ports"]:
        print(d["ports"][sys.argv[2]])' "$name" "$service")
        [[ -n $port ]] && { echo "$port"; return 0; }
        sleep 0.05
    done
    return 1
}

bench_rpibroker() {
    local bin=$RPIBROKER_BIN_DIR broker agent ssh_port http_port
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

    # Throughput, requests and start-up: one broker, one agent.
    rpb_setup rpb-main 4 || return
    rpb device add bench --config-out "$TMP/bench.json" >/dev/null || { fail "device add"; return; }
    start_bg rpibroker "$bin/rpibroker" --data-dir "$RPB_DATA" serve
    broker=$LAST_PID
    wait_listen "$RPB_API" 10 "$broker" || { fail "rpibroker did not start"; return; }
    local targets=(--ssh "127.0.0.1:$IPERF_PORT" --http "127.0.0.1:$ORIGIN_PORT" --https "127.0.0.1:$ORIGIN_PORT")
    start_bg rpibroker-agent "$bin/rpibroker-agent" --config "$TMP/bench.json" "${targets[@]}"
    agent=$LAST_PID
    ssh_port=$(rpb_device_port bench ssh) || { fail "agent did not come online"; return; }
    http_port=$(rpb_device_port bench http)
    wait_listen "$ssh_port" 10 "$agent" || { fail "device port did not open"; return; }

    measure_iperf rpibroker "$ssh_port" "$broker" -- "$agent"
    measure_wrk "rpibroker host router" "http://127.0.0.1:$RPB_HTTP/1k.html" "bench.localhost"
    measure_wrk "rpibroker device port" "http://127.0.0.1:$http_port/1k.html"

    stop_bg "$agent"
    measure_first_response rpibroker "http://127.0.0.1:$http_port/1k.html" -- \
        "$bin/rpibroker-agent" --config "$TMP/bench.json" "${targets[@]}"
    stop_bg "$broker"

    # Memory: a fresh broker, N devices connected from one load process.
    local n=${BENCH_IDLE_DEVICES:-1000} i configs=() base idle
    rpb_setup rpb-idle "$n" || return
    log "registering $n devices"
    for ((i = 0; i < n; i++)); do
        rpb device add "idle$i" --config-out "$TMP/idle$i.json" >/dev/null || { fail "device add idle$i"; return; }
        configs+=("$TMP/idle$i.json")
    done
    start_bg rpibroker-idle "$bin/rpibroker" --data-dir "$RPB_DATA" serve
    broker=$LAST_PID
    wait_listen "$RPB_API" 10 "$broker" || { fail "rpibroker did not start"; return; }
    base=$(mem_snapshot "$broker")
    log "connecting $n idle devices"
    start_bg idle-devices "$bin/examples/idle_devices" "${configs[@]}"
    idle=$LAST_PID
    local deadline=$((SECONDS + 300))
    until grep -qs '^ready' "$TMP/idle-devices.log"; do
        if ((SECONDS > deadline)) || ! kill -0 "$idle" 2>/dev/null; then
            fail "idle devices did not connect: $(tail -2 "$TMP/idle-devices.log")"
            return
        fi
        sleep 0.2
    done
    measure_memory "rpibroker idle devices" "$n" "$base" "$broker" -- "$idle"
    stop_bg "$idle" "$broker"
}
