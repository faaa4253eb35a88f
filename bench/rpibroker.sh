# bench/rpibroker.sh — rpibroker rows for bench/run.sh (sourced, not run).
#
# STUB: to be filled in together with crates/. bench/run.sh sources this
# file and calls bench_rpibroker only when RPIBROKER_BIN_DIR contains
# executable `rpibroker` and `rpibroker-agent`.
#
# Available from run.sh when bench_rpibroker runs:
#   $RPIBROKER_BIN_DIR      the binaries
#   $TMP                    private temp dir (removed on exit); write configs/logs here
#   $IPERF_PORT             iperf3 server on 127.0.0.1 (the "device" service)
#   $ORIGIN_PORT            nginx serving /1k.html on 127.0.0.1 (the "device" web app)
#   $BENCH_SSHD_CONNS       N for the idle-connection memory test
#   free_ports N            -> N free 127.0.0.1 ports, e.g. read -r A B < <(free_ports 2)
#   start_bg NAME CMD...    background process, log in $TMP/NAME.log, pid in $LAST_PID,
#                           killed (with its descendants) on exit
#   stop_bg PID...          kill early
#   wait_listen PORT SECS [PID]   poll until PORT listens (fails if PID dies)
#   measure_iperf LABEL PORT [SERVER_PIDS...] [-- AGENT_PIDS...]
#   measure_wrk LABEL URL [HOST_HEADER]
#   measure_first_response LABEL URL [HOST_HEADER] -- CMD...
#   mem_snapshot PIDS...    -> baseline for measure_memory
#   measure_memory LABEL N BASELINE SERVER_PIDS... [-- AGENT_PIDS...]
#   note TEXT / fail TEXT   add a line under "Notes" (fail also makes run.sh exit 1)
#
# Sketch of the intended wiring (flags are placeholders until the CLI exists):
#
#   read -r BROKER_PORT PUB_IPERF PUB_HTTP PUB_START < <(free_ports 4)
#   start_bg rpibroker "$RPIBROKER_BIN_DIR/rpibroker" ...listen 127.0.0.1:$BROKER_PORT...
#   broker=$LAST_PID; wait_listen "$BROKER_PORT" 10 "$broker"
#   start_bg rpibroker-agent "$RPIBROKER_BIN_DIR/rpibroker-agent" ...forward $IPERF_PORT, $ORIGIN_PORT...
#   agent=$LAST_PID; wait_listen "$PUB_IPERF" 10 "$agent"
#   measure_iperf rpibroker "$PUB_IPERF" "$broker" -- "$agent"
#   measure_wrk rpibroker "http://127.0.0.1:$PUB_HTTP/1k.html"
#   stop_bg "$agent"
#   measure_first_response rpibroker "http://127.0.0.1:$PUB_START/1k.html" -- \
#       "$RPIBROKER_BIN_DIR/rpibroker-agent" ...
#   base=$(mem_snapshot "$broker"); ...start N idle agents...; 
#   measure_memory rpibroker "$BENCH_SSHD_CONNS" "$base" "$broker" -- "${agents[@]}"
#
# Use the label "rpibroker" (or "rpibroker <variant>") so rows line up in the report.

bench_rpibroker() {
    echo "rpibroker rows: not yet wired" >&2
    note "rpibroker rows: not yet wired (bench/rpibroker.sh is a stub)"
}
