//! Brokers as real processes in their own containers, for tests that need
//! several brokers with their own addresses and the means to cut one off.
//!
//! A [`Cluster`] makes one private Docker network that joins its brokers to
//! each other (the peering network) and, per broker, a second network that
//! only that broker is on (its edge). The host reaches both; brokers reach
//! each other only over the peering network. So [`ContainerBroker::cut_off`]
//! partitions a broker from its peers while its own devices and renters,
//! which the tests run on the host and point at the edge address, keep
//! working.
//!
//! Each container runs the `rpibroker` binary that cargo built, mounted
//! read-only into the locally built sandbox image (Debian with
//! the same C library as the build host), as the test's own user, with its
//! data directory in the test's temporary directory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::sandbox::{SandboxBroker, docker, docker_ok, image};
use super::{DEADLINE, Device, wait_for};

/// Ports the broker listens on inside its container, on every interface.
pub const API_PORT: u16 = 8000;
pub const SSH_PORT: u16 = 2222;
pub const HTTP_PORT: u16 = 8080;
pub const HTTPS_PORT: u16 = 8443;
const POOL: (u16, u16) = (30000, 30029);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A private /24 network, on a subnet picked at random among 10.128.0.0/9
/// (retried when another network already has it).
struct Network {
    name: String,
    prefix: [u8; 3],
}

impl Network {
    fn create(label: &str) -> Self {
        for _ in 0..20 {
            let prefix = [
                10,
                rand::random_range(128..=254),
                rand::random_range(0..=255),
            ];
            let name = format!(
                "rpbtest-{}-{}-{label}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let subnet = format!("{}.{}.{}.0/24", prefix[0], prefix[1], prefix[2]);
            if docker(&["network", "create", "--subnet", &subnet, &name])
                .status
                .success()
            {
                return Self { name, prefix };
            }
        }
        panic!("could not create a Docker network on a free subnet");
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Containers still attached (a test that panicked) would keep it.
        let attached = docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
            &self.name,
        ]);
        for container in String::from_utf8_lossy(&attached.stdout).split_whitespace() {
            let _ = docker(&["network", "disconnect", "-f", &self.name, container]);
        }
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// Brokers on one peering network.
pub struct Cluster {
    peering: Network,
    brokers: u8,
}

impl Cluster {
    pub fn new() -> Self {
        let image = image();
        assert!(
            docker(&["image", "inspect", &image]).status.success(),
            "the {image} image is missing: run sandbox/build-image.sh (scripts/test does)"
        );
        Self {
            peering: Network::create("peering"),
            brokers: 0,
        }
    }

    /// Starts a broker called `name` (its container's host name too), with
    /// `extra` appended to its config file. Its public URL is its address on
    /// the peering network; its tunnel endpoint is its edge address.
    pub async fn broker(&mut self, name: &str, extra: &str) -> ContainerBroker {
        self.brokers += 1;
        let edge = Network::create(name);
        let (peer_ip, edge_ip) = (self.peering.address(10 + self.brokers), edge.address(10));
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("rpibroker.toml"),
            format!(
                "public_url = \"http://{peer_ip}:{API_PORT}\"\ntunnel_host = \"{edge_ip}\"\n\
                 domain = \"{name}.test\"\ndevice_bind = \"0.0.0.0\"\n{extra}"
            ),
        )
        .unwrap();
        let container = format!(
            "rpbtest-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let broker = ContainerBroker {
            name: name.to_string(),
            container,
            peer_ip,
            edge_ip,
            peering: self.peering.name.clone(),
            dir,
            edge,
        };
        broker.create();
        broker.start().await;
        broker
    }
}

/// A broker in its own container.
pub struct ContainerBroker {
    pub name: String,
    pub container: String,
    /// Its address on the peering network (and in its public URL).
    pub peer_ip: Ipv4Addr,
    /// Its address on its own edge network.
    pub edge_ip: Ipv4Addr,
    peering: String,
    dir: tempfile::TempDir,
    edge: Network,
}

fn user() -> String {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    format!("{uid}:{gid}")
}

fn broker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rpibroker")
}

impl ContainerBroker {
    fn env_args() -> Vec<String> {
        [
            "RPIBROKER_DATA_DIR=/data".to_string(),
            format!("RPIBROKER_API_LISTEN=0.0.0.0:{API_PORT}"),
            format!("RPIBROKER_SSH_LISTEN=0.0.0.0:{SSH_PORT}"),
            format!("RPIBROKER_HTTP_LISTEN=0.0.0.0:{HTTP_PORT}"),
            format!("RPIBROKER_HTTPS_LISTEN=0.0.0.0:{HTTPS_PORT}"),
            format!("RPIBROKER_PORT_POOL={}-{}", POOL.0, POOL.1),
            "RPIBROKER_LOG=info,rpibroker=debug".to_string(),
        ]
        .into_iter()
        .flat_map(|e| ["-e".to_string(), e])
        .collect()
    }

    fn create(&self) {
        let bin = format!("{}:/usr/local/bin/rpibroker:ro", broker_bin());
        let data = format!("{}:/data", self.data_dir().display());
        let ip = self.peer_ip.to_string();
        let mut args: Vec<String> = [
            "create",
            "--name",
            &self.container,
            "--hostname",
            &self.name,
            "--user",
            &user(),
            "--network",
            &self.peering,
            "--ip",
            &ip,
            "--entrypoint",
            "/usr/local/bin/rpibroker",
            "-v",
            &bin,
            "-v",
            &data,
        ]
        .map(String::from)
        .to_vec();
        args.extend(Self::env_args());
        args.extend([image(), "serve".to_string()]);
        docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let edge_ip = self.edge_ip.to_string();
        docker_ok(&[
            "network",
            "connect",
            "--ip",
            &edge_ip,
            &self.edge.name,
            &self.container,
        ]);
    }

    /// Starts the container and waits until its API answers on both
    /// addresses.
    pub async fn start(&self) {
        docker_ok(&["start", &self.container]);
        for addr in [self.api(), self.edge_api()] {
            let container = self.container.clone();
            wait_for(
                &format!("broker {} to listen on {addr}", self.name),
                DEADLINE,
                || {
                    let container = container.clone();
                    async move {
                        let running =
                            docker_ok(&["inspect", "-f", "{{.State.Running}}", &container]);
                        assert_eq!(running, "true", "the broker's container exited");
                        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
                    }
                },
            )
            .await;
        }
    }

    /// Stops the broker (SIGTERM, then the container's grace period).
    pub fn stop(&self) {
        docker_ok(&["stop", "--time", "10", &self.container]);
    }

    /// Kills the broker with SIGKILL: a crash.
    pub fn kill(&self) {
        docker_ok(&["kill", &self.container]);
    }

    /// Cuts the broker off from its peers; its edge stays up.
    pub fn cut_off(&self) {
        docker_ok(&["network", "disconnect", &self.peering, &self.container]);
    }

    /// Joins the broker to its peers again, at the same address.
    pub fn rejoin(&self) {
        let ip = self.peer_ip.to_string();
        docker_ok(&[
            "network",
            "connect",
            "--ip",
            &ip,
            &self.peering,
            &self.container,
        ]);
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The broker's API on the peering network (its public URL).
    pub fn api(&self) -> SocketAddr {
        SocketAddr::from((self.peer_ip, API_PORT))
    }

    /// The broker's API on its edge network.
    pub fn edge_api(&self) -> SocketAddr {
        SocketAddr::from((self.edge_ip, API_PORT))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.api())
    }

    pub fn edge_url(&self) -> String {
        format!("http://{}", self.edge_api())
    }

    /// Runs `rpibroker ARGS` inside the broker's container.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["exec", "--user", &user()]);
        for e in Self::env_args() {
            cmd.arg(e);
        }
        cmd.arg(&self.container)
            .arg("rpibroker")
            .args(args)
            .output()
            .expect("docker exec rpibroker")
    }

    /// [`ContainerBroker::run`], asserting success; its standard output.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rpibroker {} on {}: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Registers a device; its agent config, pointed at the broker's edge,
    /// is written into the test's directory.
    pub fn add_device(&self, name: &str) -> Device {
        let inside = format!("/data/{name}.json");
        let out = self.run_ok(&["device", "add", name, "--json", "--config-out", &inside]);
        let v: Value = serde_json::from_str(&out).expect("device add --json output");
        let config = self.dir.path().join(format!("{name}.json"));
        let mut agent: Value = serde_json::from_slice(
            &std::fs::read(self.data_dir().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        agent["broker_url"] = Value::String(self.edge_url());
        std::fs::write(&config, serde_json::to_vec_pretty(&agent).unwrap()).unwrap();
        Device {
            name: name.to_string(),
            token: v["token"].as_str().unwrap().to_string(),
            config,
        }
    }

    /// The broker's log so far.
    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The path of a file in the broker's data directory.
    pub fn data_file(&self, name: impl AsRef<Path>) -> PathBuf {
        self.data_dir().join(name)
    }
}

/// Agents and renters reach the broker and its devices' ports at its edge
/// address.
impl SandboxBroker for ContainerBroker {
    fn rpibroker(&self, args: &[&str]) -> Output {
        self.run(args)
    }

    fn scratch(&self) -> &Path {
        self.dir.path()
    }

    fn agent_url(&self) -> String {
        self.edge_url()
    }

    fn device_addr(&self, device: &str, service: &str) -> SocketAddr {
        let list: Value = serde_json::from_str(&self.run_ok(&["device", "list", "--json"]))
            .expect("device list --json output");
        let port = list
            .as_array()
            .and_then(|l| l.iter().find(|d| d["name"] == device))
            .and_then(|d| d["ports"][service].as_u64())
            .unwrap_or_else(|| panic!("{device} has no {service} port yet"));
        SocketAddr::from((self.edge_ip, port as u16))
    }
}

impl Drop for ContainerBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of broker {} ---\n{}", self.name, self.logs());
        }
        let _ = docker(&["rm", "-f", &self.container]);
    }
}
