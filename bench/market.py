#!/usr/bin/env python3
"""bench/market.py: the marketplace's listing under load, with 1,000 listed
devices, against a baseline measured in the same run on the same listener.

The store is seeded with SQL straight into the broker's SQLite file: the
broker is started once on an empty data directory so that its migrations
create the schema, stopped, and then given BENCH_MARKET_DEVICES listed
devices (owned by accounts of at most 20 devices each, as the web allows)
with claimed hardware, a ready sandbox, two verifications each (the listing
must pick the newer) and an open rental on every tenth. The broker is then
started again and measured with wrk.

Rows (wrk -t2 -c32 --latency, BENCH_SECONDS each):
  GET /healthz              baseline: the same listener, no store, no HTML
  GET /                     the marketplace, first page (50 of 1,000 rows)
  GET /?<filters, sorted>   filtered and sorted by price, descending
  GET /?page=10             a later page
  GET /market/<device>      one device's page
  GET /api/v1/market        the JSON listing, first page

Usage:
  python3 bench/market.py
  RPIBROKER_BIN_DIR=target/release python3 bench/market.py   # no build
Environment: BENCH_SECONDS (default 5), BENCH_MARKET_DEVICES (default 1000),
BENCH_WRK (default "-t2 -c32"), BENCH_RESULTS_DIR (default bench/results).
Writes a markdown table to stdout and to BENCH_RESULTS_DIR/market.md.
"""

import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
DEVICES = int(os.environ.get("BENCH_MARKET_DEVICES", "1000"))
WRK = os.environ.get("BENCH_WRK", "-t2 -c32").split()
RESULTS = os.environ.get("BENCH_RESULTS_DIR", os.path.join(ROOT, "bench", "results"))
PER_OWNER = 20
GIB = 1 << 30
BASELINE = "GET /healthz"


def log(msg):
    print(f"[market-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def broker_bin():
    bin_dir = os.environ.get("RPIBROKER_BIN_DIR")
    if not bin_dir:
        log("building the release broker (cargo build --release)")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "rpibroker"], cwd=ROOT, check=True)
        bin_dir = os.path.join(ROOT, "target", "release")
    return os.path.join(bin_dir, "rpibroker")


class Broker:
    """A broker process on free loopback ports with its own data directory."""

    def __init__(self, binary, tmp):
        self.bin = binary
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.api = free_port()
        self.env = dict(os.environ)
        self.env.pop("RPIBROKER_CONFIG", None)
        self.env.update({
            "RPIBROKER_DATA_DIR": self.data,
            "RPIBROKER_API_LISTEN": f"127.0.0.1:{self.api}",
            "RPIBROKER_SSH_LISTEN": f"127.0.0.1:{free_port()}",
            "RPIBROKER_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "RPIBROKER_HTTPS_LISTEN": f"127.0.0.1:{free_port()}",
            "RPIBROKER_PORT_POOL": "42000-42099",
            "RPIBROKER_LOG": "warn",
        })
        self.proc = None
        self.starts = 0

    @property
    def database(self):
        return os.path.join(self.data, "broker.sqlite")

    def start(self):
        self.starts += 1
        out = open(os.path.join(self.tmp, f"broker-{self.starts}.log"), "w")
        self.proc = subprocess.Popen([self.bin, "serve"], env=self.env, stdout=out, stderr=out)
        wait("the broker's listener", lambda: self.get("/healthz")[0] == 200, 30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None

    def url(self, path):
        return f"http://127.0.0.1:{self.api}{path}"

    def get(self, path):
        """(status, body) of one GET; status 0 if nothing answered."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError:
            return 0, ""


def seed(database, devices):
    """Writes `devices` listed devices with owners, sandboxes, verifications
    and some open rentals into the broker's store."""
    rng = random.Random(4)
    now = int(time.time())
    db = sqlite3.connect(database)
    db.execute("PRAGMA foreign_keys = ON")
    with db:
        owners = []
        for i in range((devices + PER_OWNER - 1) // PER_OWNER):
            cur = db.execute(
                "INSERT INTO users (email, password_hash, created_at, password_changed_at) VALUES (?, ?, ?, ?)",
                (f"owner{i}@bench.example", "$argon2id$unused", now, now),
            )
            owners.append(cur.lastrowid)
        for i in range(devices):
            arch, cores, model = rng.choice([
                ("aarch64", 4, "Cortex-A72"), ("aarch64", 4, "Cortex-A76"),
                ("arm", 4, "Cortex-A53"), ("x86_64", 8, "Intel(R) N100"), ("x86_64", 2, "Celeron J4125"),
            ])
            memory = rng.choice([1, 2, 4, 8, 16]) * GIB
            disk = rng.choice([16, 32, 64, 128, 256]) * GIB
            hardware = {
                "arch": arch, "cpu_model": model, "cpu_cores": cores, "memory_bytes": memory,
                "disk_bytes": disk, "os": "Debian GNU/Linux 12 (bookworm)", "docker": "24.0.5",
                "sandbox": {"cpu_millicores": cores * 1000, "memory_bytes": memory // 2},
            }
            cur = db.execute(
                "INSERT INTO devices (name, token_hash, created_at, hardware, last_connect, owner_id, listed, hourly_rate)"
                " VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (f"dev-{i:04d}", os.urandom(32).hex(), now - 86400, json.dumps(hardware), now - 3600,
                 owners[i // PER_OWNER], rng.randrange(5, 500)),
            )
            device = cur.lastrowid
            db.execute("INSERT INTO sandboxes (device_id, state, status, updated_at) VALUES (?, 'ready', NULL, ?)",
                       (device, now - 600))
            claimed = {"cpu_millicores": cores * 1000, "memory_bytes": memory // 2, "disk_bytes": disk}
            measured = dict(claimed, cpu_sha256_kib_s=rng.randrange(100_000, 900_000),
                            memory_copy_kib_s=rng.randrange(1_000_000, 9_000_000),
                            disk_write_kib_s=rng.randrange(20_000, 400_000))
            for at, verdict in ((now - 7 * 3600, "flagged"), (now - 3600, "verified")):
                db.execute(
                    "INSERT INTO verifications (device_id, at, verdict, claimed, measured, reasons) VALUES (?, ?, ?, ?, ?, '')",
                    (device, at, verdict, json.dumps(claimed), json.dumps(measured)),
                )
            if i % 10 == 0:
                db.execute(
                    "INSERT INTO rentals (id, device_id, state, username, started_at) VALUES (?, ?, 'active', ?, ?)",
                    (f"bench-{i}", device, f"r{i}", now - 1800),
                )
    db.close()


def wrk(broker, path, tmp):
    """(req/s, p99 ms, errors) of GET `path` for SECONDS, or None."""
    out = os.path.join(tmp, "wrk.txt")
    cmd = ["wrk", *WRK, f"-d{SECONDS}s", "--latency", broker.url(path)]
    with open(out, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=SECONDS + 60)
    if done.returncode != 0:
        return None
    parsed = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "lib", "benchlib.py"), "wrk", out],
                            capture_output=True, text=True)
    if parsed.returncode != 0:
        return None
    rps, p99, errors = parsed.stdout.split()
    return float(rps), float(p99), int(errors)


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    binary = broker_bin()
    tmp = tempfile.mkdtemp(prefix="rpibroker-market-bench-")
    broker = Broker(binary, tmp)
    rows, notes = [], []
    try:
        log("creating the store's schema")
        broker.start()
        broker.stop()
        log(f"seeding {DEVICES} listed devices")
        seed(broker.database, DEVICES)
        broker.start()

        home = broker.get("/")[1]
        shown = len(re.findall(r'href="/market/', home))
        matching = re.search(r"(\d+) devices? match", home)
        if not matching or int(matching.group(1)) != DEVICES:
            raise SystemExit(f"the marketplace does not list the {DEVICES} seeded devices")
        log(f"the first page shows {shown} of {matching.group(1)} devices")
        targets = [
            (BASELINE, "/healthz"),
            ("GET / (first page)", "/"),
            ("GET / (filtered, by price desc)",
             "/?min_cores=2&min_memory=1&arch=aarch64&verified=on&sort=price&order=desc"),
            ("GET /?page=10", "/?page=10"),
            ("GET /market/<device>", f"/market/dev-{DEVICES // 2:04d}"),
            ("GET /api/v1/market", "/api/v1/market"),
        ]
        for label, path in targets:
            status, _ = broker.get(path)
            if status != 200:
                notes.append(f"{label}: skipped, the broker answers {status}")
                log(notes[-1])
                continue
            log(f"wrk {label}")
            result = wrk(broker, path, tmp)
            if result is None:
                notes.append(f"{label}: wrk failed")
                continue
            rows.append((label, *result))
            if result[2]:
                notes.append(f"{label}: {result[2]} socket errors or non-2xx responses")
    finally:
        broker.stop()
        if os.environ.get("BENCH_KEEP_TMP") == "1":
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    base = next((r for r in rows if r[0] == BASELINE), None)
    out = [
        f"# Marketplace benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"{DEVICES} listed devices; wrk `{' '.join(WRK)}`, {SECONDS} s per row, {os.cpu_count()} CPUs, "
        f"all on 127.0.0.1. Ratios are against `{BASELINE}` on the same listener in the same run.",
        "",
        "| request | req/s | vs baseline | p99 ms | p99 vs baseline | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, rps, p99, errors in rows:
        ratio_rps = f"{rps / base[1]:.3f}×" if base and base[1] else "-"
        ratio_p99 = f"{p99 / base[2]:.1f}×" if base and base[2] else "-"
        out.append(f"| {label} | {rps:.0f} | {ratio_rps} | {p99:.2f} | {ratio_p99} | {errors} |")
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    text = "\n".join(out)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "market.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
