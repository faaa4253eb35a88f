#!/usr/bin/env python3
"""bench/sandbox.py: the device sandbox's lifecycle costs, against baselines
measured in the same run on the same Docker Engine.

Rows (median of BENCH_SANDBOX_RUNS runs each):
  provision   `rpibroker rental start` (CLI -> broker -> control channel ->
              agent -> Docker exec of the account helper), against running the
              account helper directly with `docker exec`.
  wipe        `rpibroker rental stop` until the fresh sandbox answers SSH and
              the old password is confirmed dead, against a bare
              `docker rm -f` + `docker run` of the same image with the same
              limits until its SSH banner.
  agent RSS   the agent's resident memory, idle, with a sandbox, against the
              same agent forwarding fixed ports and against a stock OpenSSH
              client holding the same three remote forwards.

Usage (as root, the sandbox image built with sandbox/build-image.sh):
  python3 bench/sandbox.py
  RPIBROKER_BIN_DIR=target/release python3 bench/sandbox.py   # no build
Environment: BENCH_SANDBOX_RUNS (default 7), BENCH_RESULTS_DIR (default
bench/results), RPIBROKER_SANDBOX_IMAGE (default rpibroker-sandbox:latest).
Writes a markdown table to stdout and to BENCH_RESULTS_DIR/sandbox.md.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(os.environ.get("BENCH_SANDBOX_RUNS", "7"))
IMAGE = os.environ.get("RPIBROKER_SANDBOX_IMAGE", "rpibroker-sandbox:latest")
RESULTS = os.environ.get("BENCH_RESULTS_DIR", os.path.join(ROOT, "bench", "results"))
DEVICE = "bench-sandbox"
CAPS = ["AUDIT_WRITE", "CHOWN", "KILL", "SETGID", "SETUID", "SYS_CHROOT"]


def log(msg):
    print(f"[sandbox-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, check, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def ssh_banner(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def binaries():
    bin_dir = os.environ.get("RPIBROKER_BIN_DIR")
    if not bin_dir:
        log("building release binaries (cargo build --release)")
        subprocess.run(
            ["cargo", "build", "--release", "-q", "-p", "rpibroker", "-p", "rpibroker-agent"],
            cwd=ROOT,
            check=True,
        )
        bin_dir = os.path.join(ROOT, "target", "release")
    return os.path.join(bin_dir, "rpibroker"), os.path.join(bin_dir, "rpibroker-agent")


def docker_cleanup():
    ids = run(["docker", "ps", "-aq", "--filter", f"label=org.rpibroker.device={DEVICE}"]).stdout.split()
    ids += run(["docker", "ps", "-aq", "--filter", "name=^rpibroker-bench-baseline$"]).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)


class Broker:
    def __init__(self, broker_bin, tmp):
        self.bin = broker_bin
        self.env = dict(os.environ)
        pool = free_port()
        self.api, self.ssh_port = free_port(), free_port()
        self.env.update({
            "RPIBROKER_DATA_DIR": os.path.join(tmp, "data"),
            "RPIBROKER_API_LISTEN": f"127.0.0.1:{self.api}",
            "RPIBROKER_SSH_LISTEN": f"127.0.0.1:{self.ssh_port}",
            "RPIBROKER_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "RPIBROKER_HTTPS_LISTEN": f"127.0.0.1:{free_port()}",
            "RPIBROKER_PORT_POOL": f"{pool}-{pool}",
            "RPIBROKER_LOG": "warn",
        })
        self.env.pop("RPIBROKER_CONFIG", None)
        # A pool of one port is too small for three services: take a block
        # above the ephemeral range's usual start.
        self.env["RPIBROKER_PORT_POOL"] = "41000-41099"
        self.log = open(os.path.join(tmp, "broker.log"), "w")
        self.proc = subprocess.Popen([self.bin, "serve"], env=self.env, stdout=self.log, stderr=self.log)
        wait("the broker's API", lambda: self._api_up(), 30)

    def _api_up(self):
        try:
            socket.create_connection(("127.0.0.1", self.api), timeout=0.5).close()
            return True
        except OSError:
            return False

    def cli(self, *args):
        return run([self.bin, *args], env=self.env)

    def show(self):
        return json.loads(self.cli("device", "show", DEVICE, "--json").stdout)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def agent_with_sandbox(agent_bin, broker, tmp):
    config = os.path.join(tmp, "device.json")
    broker.cli("device", "add", DEVICE, "--sandbox", "--config-out", config)
    with open(config) as f:
        c = json.load(f)
    c["broker_url"] = f"http://127.0.0.1:{broker.api}"
    c["sandbox"].update({"image": IMAGE, "cpus": 1, "memory_mb": 512})
    with open(config, "w") as f:
        json.dump(c, f)
    log_file = open(os.path.join(tmp, "agent.log"), "w")
    proc = subprocess.Popen([agent_bin, "--config", config], stdout=log_file, stderr=log_file,
                            env={**os.environ, "RPIBROKER_LOG": "info"})
    wait("the sandbox to be ready and verified", lambda: (
        lambda v: (v.get("sandbox") or {}).get("state") == "ready"
        and (v.get("verification") or {}).get("verdict") == "verified")(broker.show()), 180)
    return proc, config


def timed(fn):
    t = time.monotonic()
    result = fn()
    return time.monotonic() - t, result


def bench_lifecycle(broker):
    provision, wipe = [], []
    for i in range(RUNS):
        t, out = timed(lambda: broker.cli("rental", "start", DEVICE, "--json"))
        provision.append(t)
        t, _ = timed(lambda: broker.cli("rental", "stop", DEVICE))
        wipe.append(t)
        log(f"run {i + 1}/{RUNS}: provision {provision[-1] * 1000:.0f} ms, wipe {wipe[-1] * 1000:.0f} ms")
        # The broker verifies every fresh sandbox; let it finish first.
        wait("the fresh sandbox's verification", lambda: (broker.show().get("verification") or {}).get("at", 0)
             >= int(time.time()) - 60 and broker.show().get("sandbox", {}).get("state") == "ready", 120)
        time.sleep(1.5)
    return provision, wipe


def bench_baselines():
    """The same work with the Docker CLI, no broker or agent."""
    create, account = [], []
    flags = ["--cap-drop", "ALL", *sum((["--cap-add", c] for c in CAPS), []),
             "--security-opt", "no-new-privileges", "--sysctl", "net.ipv4.ip_unprivileged_port_start=0",
             "--cpus", "1", "--memory", "512m", "--memory-swap", "512m", "--pids-limit", "512",
             "-p", "127.0.0.1::22", "-p", "127.0.0.1::80", "-p", "127.0.0.1::443"]
    subprocess.run(["docker", "run", "-d", "--name", "rpibroker-bench-baseline", *flags, IMAGE],
                   check=True, capture_output=True)
    for i in range(RUNS):
        def recreate():
            run(["docker", "rm", "-f", "-v", "rpibroker-bench-baseline"])
            run(["docker", "run", "-d", "--name", "rpibroker-bench-baseline", *flags, IMAGE])
            port = int(run(["docker", "port", "rpibroker-bench-baseline", "22/tcp"]).stdout.split(":")[-1])
            wait("the baseline's SSH banner", lambda: ssh_banner(port), 60)
        t, _ = timed(recreate)
        create.append(t)
        user = f"bench{i}"
        t, _ = timed(lambda: run(["docker", "exec", "-i", "rpibroker-bench-baseline",
                                  "/usr/local/sbin/rpibroker-sandbox-user", "add", user],
                                 input="BenchPassword1234\n"))
        account.append(t)
        log(f"baseline {i + 1}/{RUNS}: re-create {create[-1] * 1000:.0f} ms, account {account[-1] * 1000:.0f} ms")
    subprocess.run(["docker", "rm", "-f", "-v", "rpibroker-bench-baseline"], capture_output=True)
    return create, account


def bench_memory(agent_proc, agent_bin, broker, tmp):
    sandbox_rss = rss_kib(agent_proc.pid)
    # The same agent forwarding fixed ports.
    name = "bench-plain"
    config = os.path.join(tmp, "plain.json")
    broker.cli("device", "add", name, "--config-out", config)
    with open(config) as f:
        c = json.load(f)
    c["broker_url"] = f"http://127.0.0.1:{broker.api}"
    with open(config, "w") as f:
        json.dump(c, f)
    plain = subprocess.Popen([agent_bin, "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait("the plain agent's tunnel", lambda: any(
        d["name"] == name and d["online"] for d in json.loads(broker.cli("device", "list", "--json").stdout)), 30)
    time.sleep(2)
    plain_rss = rss_kib(plain.pid)
    plain.terminate()
    plain.wait(10)
    # A stock OpenSSH client holding the same three forwards.
    name = "bench-openssh"
    out = json.loads(broker.cli("device", "add", name, "--json").stdout)
    askpass = os.path.join(tmp, "askpass")
    with open(askpass, "w") as f:
        f.write(f"#!/bin/sh\necho '{out['token']}'\n")
    os.chmod(askpass, 0o700)
    ssh = subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-N", "-p", str(broker.ssh_port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=password",
         "-o", "PubkeyAuthentication=no", "-R", "22:localhost:22", "-R", "80:localhost:80",
         "-R", "443:localhost:443", f"{name}@127.0.0.1"],
        env={**os.environ, "SSH_ASKPASS": askpass, "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait("the OpenSSH client's tunnel", lambda: any(
        d["name"] == name and d["online"] for d in json.loads(broker.cli("device", "list", "--json").stdout)), 30)
    time.sleep(2)
    ssh_rss = rss_kib(ssh.pid)
    ssh.terminate()
    ssh.wait(10)
    return sandbox_rss, plain_rss, ssh_rss


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (the agent drives Docker)")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        raise SystemExit(f"the sandbox image {IMAGE} is missing: run sandbox/build-image.sh")
    broker_bin, agent_bin = binaries()
    tmp = tempfile.mkdtemp(prefix="rpibroker-sandbox-bench.")
    docker_cleanup()
    broker = agent = None
    try:
        broker = Broker(broker_bin, tmp)
        agent, _ = agent_with_sandbox(agent_bin, broker, tmp)
        log("agent up, sandbox verified; measuring")
        time.sleep(2)
        sandbox_rss, plain_rss, ssh_rss = bench_memory(agent, agent_bin, broker, tmp)
        provision, wipe = bench_lifecycle(broker)
        create, account = bench_baselines()
    finally:
        if agent:
            agent.terminate()
            agent.wait(10)
        if broker:
            broker.stop()
        docker_cleanup()
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    rows = [
        ("provision a rental (`rental start`)", f"{ms(provision):.0f} ms",
         "account helper via `docker exec`", f"{ms(account):.0f} ms", ms(provision) / ms(account)),
        ("wipe and ready again (`rental stop`)", f"{ms(wipe):.0f} ms",
         "`docker rm -f` + `docker run` to SSH banner", f"{ms(create):.0f} ms", ms(wipe) / ms(create)),
        ("agent RSS, idle, with sandbox", f"{sandbox_rss} KiB",
         "same agent, fixed ports", f"{plain_rss} KiB", sandbox_rss / plain_rss),
        ("agent RSS, idle, with sandbox", f"{sandbox_rss} KiB",
         "OpenSSH client `ssh -N -R` x3", f"{ssh_rss} KiB", sandbox_rss / ssh_rss),
    ]
    docker_version = run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
    lines = [
        f"Sandbox lifecycle, median of {RUNS} runs, Docker {docker_version}, image {IMAGE}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| measure | rpibroker | baseline | baseline figure | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for what, ours, base, base_figure, ratio in rows:
        lines.append(f"| {what} | {ours} | {base} | {base_figure} | {ratio:.2f}x |")
    lines.append("")
    lines.append(f"provision runs (ms): {', '.join(f'{x * 1000:.0f}' for x in provision)}")
    lines.append(f"wipe runs (ms): {', '.join(f'{x * 1000:.0f}' for x in wipe)}")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "sandbox.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
