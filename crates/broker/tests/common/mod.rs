//! Test harness: real `rpibroker` and `rpibroker-agent` processes on loopback,
//! each test with its own data directory and its own block of ports, so tests
//! run in parallel with each other and with other test binaries.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod api;
pub mod browser;
pub mod cluster;
pub mod fake_btcpay;
pub mod fake_paypal;
pub mod fake_paypal_payouts;
pub mod http;
pub mod ledger;
pub mod openssh;
pub mod peering;
pub mod ports;
pub mod sandbox;
pub mod services;
pub mod smtp;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use ports::Ports;

/// How long anything in a test may take to become true.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_rpibroker"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

/// Path of the agent binary, built beside the broker's by `cargo test --workspace`.
pub fn agent_bin() -> PathBuf {
    let path = bin_dir().join("rpibroker-agent");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so the agent is built",
        path.display()
    );
    path
}

/// A device registered on a test broker.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub token: String,
    pub config: PathBuf,
}

/// A broker process.
pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub api: SocketAddr,
    pub ssh: SocketAddr,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub pool: (u16, u16),
    ports: Ports,
    child: Option<Child>,
    starts: u32,
}

impl TestBroker {
    /// A broker with room for `devices` devices in its port pool.
    pub async fn start(devices: u16) -> Self {
        Self::start_with(devices, "").await
    }

    /// [`TestBroker::start`], with `extra` appended to its config file (for
    /// example a `[mail]` table).
    pub async fn start_with(devices: u16, extra: &str) -> Self {
        let ports = ports::reserve(4 + 3 * devices);
        let base = ports.base;
        let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], base + i));
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        // Short timeouts so the slow-visitor tests finish quickly. Billing
        // is off unless the test turns it on: most rent priced devices with
        // empty wallets.
        let billing = if extra.contains("[billing]") {
            ""
        } else {
            "[billing]\nenabled = false\n"
        };
        std::fs::write(
            dir.path().join("data/rpibroker.toml"),
            format!("edge_read_timeout_secs = 2\nssh_auth_timeout_secs = 3\nvisitor_stall_timeout_secs = 2\n{extra}{billing}"),
        )
        .unwrap();
        let mut broker = Self {
            api: addr(0),
            ssh: addr(1),
            http: addr(2),
            https: addr(3),
            pool: (base + 4, base + 4 + 3 * devices - 1),
            dir,
            ports,
            child: None,
            starts: 0,
        };
        broker.spawn().await;
        broker
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// An `rpibroker` command with this broker's settings.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rpibroker"));
        cmd.env("RPIBROKER_DATA_DIR", self.data_dir())
            .env("RPIBROKER_API_LISTEN", self.api.to_string())
            .env("RPIBROKER_SSH_LISTEN", self.ssh.to_string())
            .env("RPIBROKER_HTTP_LISTEN", self.http.to_string())
            .env("RPIBROKER_HTTPS_LISTEN", self.https.to_string())
            .env(
                "RPIBROKER_PORT_POOL",
                format!("{}-{}", self.pool.0, self.pool.1),
            )
            .env("RPIBROKER_LOG", "info,rpibroker=debug")
            .env_remove("RPIBROKER_CONFIG");
        cmd
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("broker-{}.log", self.starts))
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let _ = std::fs::remove_file(self.data_dir().join("listen.json"));
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = self
            .command()
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rpibroker serve");
        let pid = child.id();
        self.child = Some(child);
        let listen = self.data_dir().join("listen.json");
        let api = self.api;
        wait_for("the broker to listen", DEADLINE, || {
            let listen = listen.clone();
            async move {
                let text = std::fs::read_to_string(&listen).ok()?;
                let v: Value = serde_json::from_str(&text).ok()?;
                (v["pid"].as_u64()? == u64::from(pid)).then_some(())?;
                tokio::net::TcpStream::connect(api).await.ok().map(|_| ())
            }
        })
        .await;
    }

    /// Stops the broker with SIGTERM and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on a child we own.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if start.elapsed() > DEADLINE {
                    let _ = child.kill();
                    panic!("broker did not exit on SIGTERM");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Kills the broker with SIGKILL (a crash: nothing is cleaned up) and
    /// starts it again on the same data and ports.
    pub async fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn().await;
    }

    /// Runs an `rpibroker` command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run rpibroker")
    }

    /// Registers a device; its agent config is written into the test's dir.
    pub fn add_device(&self, name: &str) -> Device {
        self.add_device_with(name, &[])
    }

    pub fn add_device_with(&self, name: &str, extra: &[&str]) -> Device {
        let config = self.dir.path().join(format!("{name}.json"));
        let out = self.run(
            &[
                &[
                    "device",
                    "add",
                    name,
                    "--json",
                    "--config-out",
                    config.to_str().unwrap(),
                ],
                extra,
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "device add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("device add --json output");
        Device {
            name: name.to_string(),
            token: v["token"].as_str().unwrap().to_string(),
            config,
        }
    }

    /// `device list --json`, as JSON.
    pub fn list(&self) -> Vec<Value> {
        let out = self.run(&["device", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The public ports of `device` (after its first handshake or login).
    pub fn ports(&self, device: &str) -> Value {
        let list = self.list();
        list.iter()
            .find(|d| d["name"] == device)
            .map(|d| d["ports"].clone())
            .unwrap_or(Value::Null)
    }

    /// The loopback address of `device`'s public port for `service`.
    pub fn port(&self, device: &str, service: &str) -> SocketAddr {
        let port = self.ports(device)[service]
            .as_u64()
            .unwrap_or_else(|| panic!("{device} has no {service} port yet"));
        SocketAddr::from(([127, 0, 0, 1], port as u16))
    }

    /// Everything this broker process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the broker process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// `http://<device>.localhost:<edge port>`-style Host for `device`.
    pub fn host(&self, device: &str) -> String {
        format!("{device}.localhost")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Local targets for an agent.
#[derive(Debug, Clone)]
pub struct Targets {
    pub ssh: SocketAddr,
    pub http: SocketAddr,
    pub https: SocketAddr,
}

impl Targets {
    /// Fresh services for a device called `name`: echo servers for ssh and
    /// https, and a web server that names `name` in its answers.
    pub async fn serving(name: &str) -> Self {
        Self {
            ssh: services::echo().await,
            http: services::web(name).await,
            https: services::echo().await,
        }
    }
}

/// An agent process.
pub struct TestAgent {
    child: Child,
    log: PathBuf,
}

impl TestAgent {
    /// Starts the agent for `device`, forwarding to `targets`.
    pub fn start(device: &Device, targets: &Targets) -> Self {
        let text = std::fs::read_to_string(&device.config).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        config["targets"] = serde_json::json!({
            "ssh": targets.ssh.to_string(),
            "http": targets.http.to_string(),
            "https": targets.https.to_string(),
        });
        std::fs::write(&device.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Self::start_as_configured(device)
    }

    /// Starts the agent for `device` with its config file as it is.
    pub fn start_as_configured(device: &Device) -> Self {
        let log = device
            .config
            .with_extension(format!("agent-{}.log", unique()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(agent_bin())
            .arg("--config")
            .arg(&device.config)
            .env("RPIBROKER_LOG", "info,rpibroker_agent=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start rpibroker-agent");
        Self { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the agent's log contains `needle` `times` times.
    pub async fn wait_for_log(&self, needle: &str, times: usize) {
        let log = self.log.clone();
        let what = format!("agent log to contain {needle:?} x{times}");
        wait_for(&what, DEADLINE, || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).ok()?;
                (text.matches(needle).count() >= times).then_some(())
            }
        })
        .await;
    }

    /// Waits until the tunnel is up (for the `times`-th time).
    pub async fn wait_up(&self, times: usize) {
        self.wait_for_log("tunnel up", times).await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
