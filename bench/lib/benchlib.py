#!/usr/bin/env python3
"""Helpers for bench/run.sh that are awkward in bash.

Sub-commands (all output goes to stdout, one line, space separated):

  ports N                      N distinct free TCP ports on 127.0.0.1
  tree PID...                  the PIDs plus all their live descendants
  childless PID...             those PIDs that are alive and have no children
  settle PID...                wait (<= 3 s) until the PIDs' trees stop shrinking
  cpu-snap PID...              JSON snapshot of utime+stime of the process trees
  cpu-delta SNAPFILE PID...    CPU seconds used by the trees since SNAPFILE
  mem PID...                   "PSS_KiB RSS_KiB NPROCS" summed over the trees
  iperf FILE                   "BITS_PER_SECOND BYTES" from iperf3 --json output
  wrk FILE                     "REQ_PER_S P99_MS ERRORS" from wrk --latency output
  first-response ...           time from spawning a command to the first HTTP 2xx
  report TSV META              render the markdown report

Only the standard library is used so that the harness runs on a bare Debian.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def _stat_fields(pid):
    """Fields of /proc/PID/stat from field 3 (state) on, or None if gone.

    The comm field (2) may contain spaces and parentheses, so split after the
    last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return data[data.rindex(")") + 2:].split()


def _all_ppids():
    """{pid: ppid} for every live (non-zombie) process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f is None or f[0] == "Z":
            continue
        out[int(name)] = int(f[1])
    return out


def process_tree(roots):
    """Roots (if alive) plus all their descendants, found via the ppid chain.

    sshd's per-connection children call setsid(), so a process group kill
    would miss them; they stay descendants of the listener, though.
    """
    ppids = _all_ppids()
    children = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    seen = set()
    todo = [r for r in roots if r in ppids]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
    return sorted(seen)


def cpu_snapshot(roots):
    """{"pid:starttime": ticks} -- starttime guards against PID reuse."""
    snap = {}
    for pid in process_tree(roots):
        f = _stat_fields(pid)
        if f is None:
            continue
        # stat fields 14 (utime), 15 (stime), 22 (starttime); f[0] is field 3
        snap[f"{pid}:{f[19]}"] = int(f[11]) + int(f[12])
    return snap


def mem_kib(pid):
    """(PSS, RSS) in KiB. PSS splits shared pages (libraries, the forked
    sshd image) fairly between the processes that share them, so summing it
    over N connections gives the real cost; RSS double counts."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            vals = {}
            for line in f:
                parts = line.split()
                if parts and parts[0] in ("Pss:", "Rss:"):
                    vals[parts[0]] = int(parts[1])
            if "Pss:" in vals:
                return vals["Pss:"], vals.get("Rss:", vals["Pss:"])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    # Older kernels: no smaps_rollup, fall back to RSS for both.
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    return rss, rss
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0, 0


# --------------------------------------------------------------------------
# sub-commands
# --------------------------------------------------------------------------

def cmd_ports(args):
    # Bind all sockets at once so the kernel hands out distinct ports.
    socks = []
    for _ in range(args.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def cmd_tree(args):
    print(" ".join(str(p) for p in process_tree(args.pids)))


def cmd_childless(args):
    """The given PIDs that are alive and have no live children (the clients,
    as opposed to servers such as sshd or nginx that have a process tree)."""
    ppids = _all_ppids()
    parents = set(ppids.values())
    print(" ".join(str(p) for p in args.pids if p in ppids and p not in parents))


def cmd_settle(args):
    """Wait (at most 3 s) until the process trees stop shrinking, e.g. until
    sshd's per-connection children have exited after their clients died."""
    deadline = time.monotonic() + 3
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        n = len(process_tree(args.pids))
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since > 0.3:
            break
        time.sleep(0.02)


def cmd_cpu_snap(args):
    print(json.dumps(cpu_snapshot(args.pids)))


def cmd_cpu_delta(args):
    with open(args.snapfile) as f:
        before = json.load(f)
    after = cpu_snapshot(args.pids)
    # Processes born during the run count in full; processes that died during
    # the run are lost (none do for a long-lived tunnel).
    ticks = sum(t - before.get(k, 0) for k, t in after.items())
    print(f"{ticks / CLK_TCK:.3f}")


def cmd_mem(args):
    pids = process_tree(args.pids)
    pss = rss = 0
    for pid in pids:
        p, r = mem_kib(pid)
        pss += p
        rss += r
    print(pss, rss, len(pids))


def cmd_iperf(args):
    with open(args.file) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        sys.exit(f"iperf3 output is not JSON: {text[:200]!r}")
    if data.get("error"):
        sys.exit(f"iperf3 error: {data['error']}")
    s = data["end"]["sum_received"]
    print(f"{s['bits_per_second']:.0f} {s['bytes']}")


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def cmd_wrk(args):
    with open(args.file) as f:
        text = f.read()
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    r = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not (m and r):
        sys.exit(f"cannot parse wrk output: {text[:400]!r}")
    p99 = float(m.group(1)) * _UNITS_MS[m.group(2)]
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if e:
        errors += sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if n:
        errors += int(n.group(1))
    print(f"{float(r.group(1)):.0f} {p99:.3f} {errors}")


def _http_ok(host, port, path, host_header, timeout=1.0):
    """One HTTP/1.0 GET on a fresh connection; True on a 2xx status line."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n\r\n".encode())
            buf = b""
            while b"\r\n" not in buf and len(buf) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            return re.match(rb"HTTP/1\.[01] 2\d\d", buf) is not None
    except OSError:
        return False


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _kill_group(proc):
    """The command runs in its own session; kill the whole group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cmd_first_response(args):
    from urllib.parse import urlsplit

    u = urlsplit(args.url)
    host, port = u.hostname, u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    host_header = args.host or u.netloc
    if _port_open(host, port):
        sys.exit(f"port {port} already accepts connections before the command started")
    samples = []
    for run in range(args.runs):
        log = open(f"{args.log}.{run}", "wb")
        t0 = time.monotonic()
        proc = subprocess.Popen(args.command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = t0 + args.deadline
            while True:
                if _http_ok(host, port, path, host_header):
                    samples.append((time.monotonic() - t0) * 1000.0)
                    break
                if proc.poll() is not None:
                    sys.exit(f"command exited with {proc.returncode} before serving "
                             f"(see {args.log}.{run})")
                if time.monotonic() > deadline:
                    sys.exit(f"no HTTP 2xx on {args.url} within {args.deadline}s")
                # 1 ms between probes: tight, but leaves the 2 cores to the
                # process being timed.
                time.sleep(0.001)
        finally:
            _kill_group(proc)
            log.close()
        # The next run must start from "nothing listening", e.g. sshd needs a
        # moment to drop the remote forward after the client has gone.
        deadline = time.monotonic() + 5
        while _port_open(host, port):
            if time.monotonic() > deadline:
                sys.exit(f"port {port} still open 5s after the command was killed")
            time.sleep(0.01)
    print(f"{statistics.median(samples):.1f} {min(samples):.1f} {max(samples):.1f} {len(samples)}")


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

DIRECT = "direct"
OPENSSH = "openssh -R"


def _f(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _fmt(x, nd=2):
    return "ERR" if x is None else f"{x:.{nd}f}"


def _ratio(x, base, nd=2):
    if x is None or not base:
        return "-"
    return f"{x / base:.{nd}f}×"


def cmd_report(args):
    rows = {"iperf": [], "wrk": [], "startup": [], "mem": [], "note": []}
    with open(args.tsv) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts and parts[0] in rows:
                rows[parts[0]].append(parts[1:])
    meta = {}
    with open(args.meta) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v

    out = []
    w = out.append
    w(f"# rpibroker benchmark — {meta.get('date', '?')}")
    w("")
    w(f"Host `{meta.get('host', '?')}`: {meta.get('cpus', '?')} CPUs, kernel {meta.get('kernel', '?')}, "
      f"loadavg before run {meta.get('loadavg', '?')}. BENCH_SECONDS={meta.get('seconds', '?')}. "
      f"{meta.get('versions', '')}")
    w("")
    w("All traffic on 127.0.0.1. Ratios are against the `direct` row of the same run "
      "(the machine is noisy; compare ratios across runs, not absolute numbers).")

    # ---- iperf3
    w("")
    w(f"## Throughput — iperf3, {meta.get('seconds', '?')} s per row")
    w("")
    w("`to device` = iperf3 client → server (server sits behind the tunnel); "
      "`from device` = `-R`. CPU-s/GB = CPU seconds of the tunnel process(es) per 10⁹ bytes received "
      "(server = public side, e.g. sshd; client = device side, e.g. `ssh -R`).")
    w("")
    w("| path | streams | direction | Gbit/s | vs direct | server CPU-s/GB | client CPU-s/GB |")
    w("|---|---:|---|---:|---:|---:|---:|")
    base = {}
    for label, par, d, bps, nbytes, scpu, acpu in rows["iperf"]:
        if label == DIRECT and _f(bps):
            base[(par, d)] = _f(bps)
    for label, par, d, bps, nbytes, scpu, acpu in rows["iperf"]:
        g = _f(bps)
        gb = (_f(nbytes) or 0) / 1e9

        def per_gb(c):
            c = _f(c)
            return "-" if c is None or not gb else f"{c / gb:.2f}"

        w(f"| {label} | {par} | {'from device (-R)' if d == 'rev' else 'to device'} | "
          f"{_fmt(g / 1e9 if g else None)} | {_ratio(g, base.get((par, d)))} | "
          f"{per_gb(scpu)} | {per_gb(acpu)} |")

    # ---- wrk
    w("")
    w(f"## HTTP — wrk, 1 KiB static page from nginx, {meta.get('seconds', '?')} s per row")
    w("")
    w("| path | wrk | req/s | vs direct | p99 ms | p99 vs direct | errors |")
    w("|---|---|---:|---:|---:|---:|---:|")
    base = {}
    for label, conf, rps, p99, errs in rows["wrk"]:
        if label == DIRECT and _f(rps):
            base[conf] = (_f(rps), _f(p99))
    for label, conf, rps, p99, errs in rows["wrk"]:
        b = base.get(conf, (None, None))
        w(f"| {label} | `{conf}` | {_fmt(_f(rps), 0)} | {_ratio(_f(rps), b[0])} | "
          f"{_fmt(_f(p99))} | {_ratio(_f(p99), b[1])} | {errs} |")

    # ---- startup
    w("")
    w("## Tunnel start-up — spawn the tunnel client → first HTTP 2xx through the forwarded port")
    w("")
    w("| path | median ms | min ms | max ms | runs | vs openssh |")
    w("|---|---:|---:|---:|---:|---:|")
    base = next((_f(r[1]) for r in rows["startup"] if r[0] == OPENSSH), None)
    for label, med, mn, mx, runs in rows["startup"]:
        w(f"| {label} | {_fmt(_f(med), 1)} | {_fmt(_f(mn), 1)} | {_fmt(_f(mx), 1)} | {runs} | "
          f"{_ratio(_f(med), base)} |")

    # ---- memory
    w("")
    w("## Memory per idle tunnel connection")
    w("")
    w("Server = growth of the server-side process tree (e.g. sshd) per connection, "
      "PSS from /proc/PID/smaps_rollup (RSS double-counts shared pages). "
      "Client = PSS of the client processes per connection.")
    w("")
    w("| path | idle conns | server PSS KiB/conn | server RSS KiB/conn | server procs/conn | client PSS KiB/conn | vs openssh (server PSS) |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    base = next((_f(r[2]) for r in rows["mem"] if r[0] == OPENSSH), None)
    for label, n, pss, rss, procs, cpss in rows["mem"]:
        w(f"| {label} | {n} | {_fmt(_f(pss), 0)} | {_fmt(_f(rss), 0)} | {_fmt(_f(procs), 1)} | "
          f"{_fmt(_f(cpss), 0) if cpss != '-' else '-'} | {_ratio(_f(pss), base)} |")

    if rows["note"]:
        w("")
        w("## Notes")
        w("")
        for (text,) in rows["note"]:
            w(f"- {text}")
    print("\n".join(out))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="sub", required=True)
    p = sub.add_parser("ports"); p.add_argument("n", type=int); p.set_defaults(fn=cmd_ports)
    for name, fn in (("tree", cmd_tree), ("cpu-snap", cmd_cpu_snap), ("mem", cmd_mem),
                     ("childless", cmd_childless), ("settle", cmd_settle)):
        p = sub.add_parser(name); p.add_argument("pids", type=int, nargs="*"); p.set_defaults(fn=fn)
    p = sub.add_parser("cpu-delta"); p.add_argument("snapfile")
    p.add_argument("pids", type=int, nargs="*"); p.set_defaults(fn=cmd_cpu_delta)
    p = sub.add_parser("iperf"); p.add_argument("file"); p.set_defaults(fn=cmd_iperf)
    p = sub.add_parser("wrk"); p.add_argument("file"); p.set_defaults(fn=cmd_wrk)
    p = sub.add_parser("first-response")
    p.add_argument("--url", required=True)
    p.add_argument("--host", default="", help="Host header (default: from the URL)")
    p.add_argument("--deadline", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--log", required=True, help="log file prefix for the command's output")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_first_response)
    p = sub.add_parser("report"); p.add_argument("tsv"); p.add_argument("meta")
    p.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    if args.sub == "first-response":
        args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not args.command:
            ap.error("first-response needs a command after --")
    args.fn(args)


if __name__ == "__main__":
    main()
