//! Sandbox tests: an agent that runs its sandbox on this machine's Docker
//! Engine, the `docker` command to look at what it made (the tests may use
//! the CLI; the agent may not), rentals through the broker's commands, and a
//! renter logging in with a stock OpenSSH client.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{Device, TestAgent, TestBroker, openssh, wait_for};

/// A broker the helpers here drive: a process on loopback
/// ([`TestBroker`]) or one in a container
/// ([`super::cluster::ContainerBroker`]).
pub trait SandboxBroker {
    /// Runs `rpibroker ARGS` against the broker, to completion.
    fn rpibroker(&self, args: &[&str]) -> Output;
    /// A directory of the test's, for agent configs and askpass scripts.
    fn scratch(&self) -> &Path;
    /// The broker URL its devices' agents use.
    fn agent_url(&self) -> String;
    /// Where a renter reaches the public port of `device` for `service`.
    fn device_addr(&self, device: &str, service: &str) -> SocketAddr;
}

impl SandboxBroker for TestBroker {
    fn rpibroker(&self, args: &[&str]) -> Output {
        self.run(args)
    }

    fn scratch(&self) -> &Path {
        self.dir.path()
    }

    fn agent_url(&self) -> String {
        format!("http://{}", self.api)
    }

    fn device_addr(&self, device: &str, service: &str) -> SocketAddr {
        self.port(device, service)
    }
}

/// Time for a sandbox to come up, be wiped or be verified.
pub const SANDBOX_DEADLINE: Duration = Duration::from_secs(90);

/// The image the tests run (built by `sandbox/build-image.sh`).
pub fn image() -> String {
    std::env::var("RPIBROKER_SANDBOX_IMAGE").unwrap_or_else(|_| "rpibroker-sandbox:latest".into())
}

/// Runs `docker ARGS`.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Runs `docker ARGS` and returns its trimmed stdout; panics on failure.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes every container and volume a previous run left for `device`, and
/// again when dropped.
pub struct Cleanup(pub String);

impl Cleanup {
    pub fn new(device: &str) -> Self {
        assert!(
            docker(&["image", "inspect", &image()]).status.success(),
            "the sandbox image {} is missing: build it with `sandbox/build-image.sh` (scripts/test does)",
            image()
        );
        remove_all(device);
        Self(device.to_string())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_all(&self.0);
    }
}

fn remove_all(device: &str) {
    let label = format!("label=org.rpibroker.device={device}");
    let ids = docker_ok(&["ps", "-aq", "--filter", &label]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.lines());
        docker(&args);
    }
}

/// Ids of `device`'s containers with `role` (`sandbox` or `firewall`).
pub fn containers(device: &str, role: &str) -> Vec<String> {
    docker_ok(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=org.rpibroker.device={device}"),
        "--filter",
        &format!("label=org.rpibroker.role={role}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The one sandbox container of `device`; panics if there is not exactly one.
pub fn the_sandbox(device: &str) -> String {
    let found = containers(device, "sandbox");
    assert_eq!(
        found.len(),
        1,
        "want exactly one sandbox for {device}, found {found:?}"
    );
    found[0].clone()
}

/// `docker inspect` of a container, as JSON.
pub fn inspect(id: &str) -> Value {
    let text = docker_ok(&["inspect", id]);
    let v: Value = serde_json::from_str(&text).unwrap();
    v[0].clone()
}

/// Registers a device whose agent runs a sandbox with `settings` (merged
/// into the config's sandbox section).
pub fn add_sandbox_device(broker: &TestBroker, name: &str, settings: Value) -> Device {
    let device = broker.add_device_with(name, &["--sandbox"]);
    let text = std::fs::read_to_string(&device.config).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["broker_url"] = Value::String(format!("http://{}", broker.api));
    config["sandbox"]["image"] = Value::String(image());
    if let Value::Object(extra) = settings {
        for (k, v) in extra {
            config["sandbox"][k] = v;
        }
    }
    std::fs::write(&device.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    device
}

/// `device show NAME --json`.
pub fn show(broker: &impl SandboxBroker, device: &str) -> Value {
    let out = broker.rpibroker(&["device", "show", device, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until `device show` satisfies `check`.
pub async fn wait_show(
    broker: &impl SandboxBroker,
    device: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, SANDBOX_DEADLINE, || {
        let v = show(broker, device);
        let done = check(&v);
        async move { done.then_some(v) }
    })
    .await
}

/// Waits until the device's sandbox is up and idle and the broker has
/// verified it.
pub async fn wait_verified_idle(broker: &impl SandboxBroker, device: &str) -> Value {
    wait_show(
        broker,
        device,
        "the sandbox to be ready and verified",
        |v| v["sandbox"]["state"] == "ready" && v["verification"]["verdict"] == "verified",
    )
    .await
}

/// Waits until the sandbox is up and idle with a verification made at or
/// after `since` (seconds since the epoch).
pub async fn wait_verified_since(broker: &TestBroker, device: &str, since: i64) -> Value {
    wait_show(
        broker,
        device,
        "a fresh verification of the idle sandbox",
        |v| {
            v["sandbox"]["state"] == "ready"
                && v["verification"]["verdict"] == "verified"
                && v["verification"]["at"]
                    .as_i64()
                    .is_some_and(|at| at >= since)
        },
    )
    .await
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sends one JSON request line to the broker's local socket; returns the answer.
pub fn socket_request(broker: &TestBroker, request: &Value) -> Value {
    use std::io::{BufRead, Write};
    let mut stream =
        std::os::unix::net::UnixStream::connect(broker.data_dir().join("broker.sock")).unwrap();
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Starts the agent of a sandbox device.
pub fn start_agent(device: &Device) -> TestAgent {
    TestAgent::start_as_configured(device)
}

/// `rental start DEVICE [--ssh-key FILE] --json`.
pub fn rental_start(
    broker: &TestBroker,
    device: &str,
    key: Option<&Path>,
) -> Result<Value, String> {
    let mut args = vec!["rental", "start", device, "--json"];
    let key_text;
    if let Some(k) = key {
        key_text = k.to_str().unwrap().to_string();
        args.extend(["--ssh-key", &key_text]);
    }
    let out = broker.run(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

pub fn rental_stop(broker: &TestBroker, device: &str) -> Result<String, String> {
    let out = broker.run(&["rental", "stop", device]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// How a renter logs into the sandbox.
pub enum RenterLogin<'a> {
    Password(&'a str),
    Key(&'a Path),
}

/// Runs `command` in the sandbox as `user`, with a stock OpenSSH client,
/// through the broker's per-device SSH port.
pub fn renter_ssh(
    broker: &impl SandboxBroker,
    device: &str,
    user: &str,
    login: RenterLogin,
    command: &str,
) -> Output {
    let addr = broker.device_addr(device, "ssh");
    let mut cmd = openssh::client(addr.port());
    cmd.args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"]);
    match login {
        RenterLogin::Password(password) => {
            let askpass = broker
                .scratch()
                .join(format!("askpass-renter-{user}-{}", super::unique()));
            openssh::with_password(&mut cmd, &askpass, password);
        }
        RenterLogin::Key(key) => openssh::with_key(&mut cmd, key),
    }
    cmd.arg(format!("{user}@{}", addr.ip())).arg(command);
    cmd.output().expect("run ssh")
}

/// Whether the sandbox's LAN block is in place, checked from a helper
/// container in its network namespace (as the agent applies it).
pub fn lan_block_in_place(container: &str) -> Result<(), String> {
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{container}"),
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_RAW",
        &image(),
        "/usr/local/sbin/rpibroker-sandbox-firewall",
        "--check",
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Asserts that an SSH client was turned away at the port, before any
/// login: a listed device between rentals admits no one.
pub fn assert_port_refuses(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Connection reset"),
        "expected the port to reset the connection, got {:?}: {stderr}",
        out.status
    );
}

/// Asserts that the login is refused.
pub fn assert_refused(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Permission denied"),
        "{what}: expected the login to be refused, got {:?}: {stderr}",
        out.status
    );
}

/// Asserts that a command over ssh succeeded; returns its stdout.
pub fn assert_ran(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts an agent for `name` with `config` (an agent config the broker
/// gave) pointed at [`SandboxBroker::agent_url`] and set to the test image,
/// 1 core and 256 MiB; returns once its sandbox is verified.
pub async fn start_configured(
    broker: &impl SandboxBroker,
    name: &str,
    mut config: Value,
) -> (Device, TestAgent) {
    assert_eq!(config["device"], name);
    config["broker_url"] = Value::String(broker.agent_url());
    config["sandbox"]["image"] = Value::String(image());
    config["sandbox"]["cpus"] = 1.into();
    config["sandbox"]["memory_mb"] = 256.into();
    let path = broker.scratch().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let device = Device {
        name: name.to_string(),
        token: config["token"].as_str().unwrap().to_string(),
        config: path,
    };
    let agent = TestAgent::start_as_configured(&device);
    agent.wait_up(1).await;
    wait_verified_idle(broker, name).await;
    (device, agent)
}

/// Registers `name` on the web for `owner` and starts its agent with the
/// config the page showed (see [`start_configured`]).
pub async fn register_and_start(
    broker: &impl SandboxBroker,
    owner: &mut super::web::WebClient,
    name: &str,
) -> (Device, TestAgent) {
    let list = owner.get("/devices").await;
    let r = owner
        .post(
            "/devices",
            &[("csrf", &super::web::csrf_of(&list.body)), ("name", name)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let config = serde_json::from_str(&super::web::testid(&r.body, "agent-config")).unwrap();
    start_configured(broker, name, config).await
}
