//! The sandbox is a jail for the renter: unprivileged, with few
//! capabilities, no Docker socket, the owner's limits, and no way onto the
//! owner's LAN (private address ranges) while other addresses stay
//! reachable. Checked on the container the real agent made.

mod common;

use common::TestBroker;
use common::sandbox::{self, Cleanup, docker, docker_ok};
use serde_json::json;

/// A Docker network the test creates, removed (with its listener) on drop.
struct Network {
    name: String,
    listener: String,
}

impl Network {
    /// A network with `subnet`, and a web server at `ip` on it.
    fn with_listener(name: &str, subnet: &str, ip: &str) -> Self {
        let _ = docker(&["rm", "-f", &format!("{name}-listener")]);
        let _ = docker(&["network", "rm", name]);
        docker_ok(&["network", "create", "--subnet", subnet, name]);
        let listener = docker_ok(&[
            "run",
            "-d",
            "--name",
            &format!("{name}-listener"),
            "--network",
            name,
            "--ip",
            ip,
            "--entrypoint",
            "python3",
            &sandbox::image(),
            "-m",
            "http.server",
            "8000",
        ]);
        Self {
            name: name.to_string(),
            listener,
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.listener]);
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// Whether a TCP connection from inside `container` to `ip:8000` succeeds;
/// retries for a few seconds while the listener starts.
fn connects(container: &str, ip: &str) -> bool {
    let probe = format!(
        "import socket,sys,time\nfor _ in range(40):\n  try:\n    socket.create_connection(('{ip}',8000),timeout=2).close(); sys.exit(0)\n  except ConnectionRefusedError: time.sleep(0.1)\n  except OSError: time.sleep(0.1)\nsys.exit(1)\n"
    );
    docker(&["exec", "-u", "nobody", container, "python3", "-c", &probe])
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_is_unprivileged_limited_and_kept_off_the_lan() {
    let name = "sbx-jail";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(
        &broker,
        name,
        json!({"cpus": 0.5, "memory_mb": 192, "pids": 128}),
    );
    let agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    sandbox::wait_show(&broker, name, "the sandbox to be ready", |v| {
        v["sandbox"]["state"] == "ready"
    })
    .await;
    let id = sandbox::the_sandbox(name);
    let c = sandbox::inspect(&id);
    let h = &c["HostConfig"];
    assert_eq!(h["Privileged"], false);
    assert_eq!(h["CapDrop"], json!(["ALL"]));
    let caps: Vec<&str> = h["CapAdd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for cap in &caps {
        assert!(
            [
                "AUDIT_WRITE",
                "CHOWN",
                "KILL",
                "SETGID",
                "SETUID",
                "SYS_CHROOT"
            ]
            .contains(cap),
            "unexpected capability {cap}"
        );
    }
    assert!(!caps.contains(&"NET_ADMIN") && !caps.contains(&"SYS_ADMIN"));
    assert!(
        h["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o.as_str().unwrap().starts_with("no-new-privileges")),
        "{}",
        h["SecurityOpt"]
    );
    assert_eq!(h["NanoCpus"], 500_000_000u64);
    assert_eq!(h["Memory"], 192u64 * 1024 * 1024);
    assert_eq!(h["MemorySwap"], h["Memory"], "no swap beyond the limit");
    assert_eq!(h["PidsLimit"], 128);
    for binding in h["PortBindings"].as_object().unwrap().values() {
        assert_eq!(binding[0]["HostIp"], "127.0.0.1", "ports on loopback only");
    }
    let mounts = c["Mounts"].to_string();
    assert!(!mounts.contains("docker.sock"), "{mounts}");
    assert!(
        h["Binds"].is_null() || h["Binds"] == json!([]),
        "{}",
        h["Binds"]
    );
    assert!(
        !docker(&["exec", &id, "test", "-e", "/var/run/docker.sock"])
            .status
            .success(),
        "no Docker socket inside"
    );
    // The limits are what the sandbox sees (cgroup v1 or v2).
    let memory = docker_ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(memory, (192u64 * 1024 * 1024).to_string());
    // Root in the sandbox cannot lift the LAN block.
    let flush = docker(&["exec", &id, "iptables", "-F"]);
    let stderr = String::from_utf8_lossy(&flush.stderr);
    assert!(
        !flush.status.success() && stderr.contains("ermission denied"),
        "iptables -F must be refused in the sandbox: {stderr}"
    );
    if let Err(e) = sandbox::lan_block_in_place(&id) {
        panic!("the LAN block is still in place: {e}");
    }

    // Two networks the test makes, differing only in their address range;
    // the sandbox is attached to both.
    let tag = std::process::id() % 200 + 20;
    let private = Network::with_listener(
        &format!("rpbtest-private-{tag}"),
        &format!("10.214.{tag}.0/24"),
        &format!("10.214.{tag}.10"),
    );
    let public = Network::with_listener(
        &format!("rpbtest-public-{tag}"),
        &format!("198.51.100.{}/28", (tag % 16) * 16),
        &format!("198.51.100.{}", (tag % 16) * 16 + 10),
    );
    docker_ok(&["network", "connect", &private.name, &id]);
    docker_ok(&["network", "connect", &public.name, &id]);
    assert!(
        connects(&id, &format!("198.51.100.{}", (tag % 16) * 16 + 10)),
        "a non-private address stays reachable"
    );
    assert!(
        !connects(&id, &format!("10.214.{tag}.10")),
        "a private-range address is blocked"
    );
    // The same private listener is reachable from a container without the
    // block: the refusal above is the sandbox's firewall, not the network.
    let control = format!("rpbtest-control-{tag}");
    let _ = docker(&["rm", "-f", &control]);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &control,
        "--network",
        &private.name,
        "--entrypoint",
        "sleep",
        &sandbox::image(),
        "60",
    ]);
    let reachable = connects(&control, &format!("10.214.{tag}.10"));
    let _ = docker(&["rm", "-f", &control]);
    assert!(reachable, "the private listener works without the block");
    docker(&["network", "disconnect", "-f", &private.name, &id]);
    docker(&["network", "disconnect", "-f", &public.name, &id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_can_let_the_sandbox_onto_the_lan() {
    let name = "sbx-lan";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({"lan_access": true}));
    let agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    let shown = sandbox::wait_show(&broker, name, "the sandbox to be ready", |v| {
        v["sandbox"]["state"] == "ready"
    })
    .await;
    assert_eq!(shown["sandbox"]["status"]["lan_blocked"], false);
    let id = sandbox::the_sandbox(name);
    let tag = std::process::id() % 200 + 21;
    let private = Network::with_listener(
        &format!("rpbtest-lan-{tag}"),
        &format!("10.215.{tag}.0/24"),
        &format!("10.215.{tag}.10"),
    );
    docker_ok(&["network", "connect", &private.name, &id]);
    assert!(connects(&id, &format!("10.215.{tag}.10")));
    docker(&["network", "disconnect", "-f", &private.name, &id]);
}
