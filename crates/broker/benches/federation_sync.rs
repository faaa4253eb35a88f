//! Listing sync between brokers: the time and bytes for one broker to pull
//! a peer's 10,000 listed devices, fully and incrementally, through the
//! real path (a running `rpibroker` serving signed pages, the federation
//! client verifying them, the puller's store applying them), against a
//! baseline measured in the same run: serializing and parsing the same
//! devices as one plain JSON array in memory, the least any transfer of
//! them costs.
//!
//! Run with `cargo bench -p rpibroker --bench federation_sync`;
//! `FEDERATION_BENCH_N` sets the number of devices (default 10000).

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rpibroker::federation::client::http_client;
use rpibroker::federation::identity::KeyRing;
use rpibroker::federation::listings::{PullStats, fetch};
use rpibroker::federation::wire::ExportedDevice;
use rpibroker::store::Store;
use rpibroker::time::UnixTime;
use rpibroker_wire::DeviceName;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn rpibroker(data: &std::path::Path, api_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rpibroker"));
    cmd.env("RPIBROKER_DATA_DIR", data)
        .env("RPIBROKER_API_LISTEN", format!("127.0.0.1:{api_port}"))
        .env("RPIBROKER_SSH_LISTEN", "127.0.0.1:0")
        .env("RPIBROKER_HTTP_LISTEN", "127.0.0.1:0")
        .env("RPIBROKER_HTTPS_LISTEN", "127.0.0.1:0")
        .env("RPIBROKER_PORT_POOL", "20000-20002")
        .env("RPIBROKER_LOG", "warn")
        .env_remove("RPIBROKER_CONFIG");
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run rpibroker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn device(i: usize) -> ExportedDevice {
    ExportedDevice {
        name: format!("dev-{i:05}"),
        arch: Some("aarch64".into()),
        cpu_millicores: Some(4000),
        memory_bytes: Some(4 << 30),
        disk_bytes: Some(32 << 30),
        verified: false,
        hourly_rate: Some(25 + (i % 50) as i64),
        currency: "USD".into(),
        available: false,
        period_secs: None,
    }
}

fn main() {
    let n: usize = std::env::var("FEDERATION_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let root = tempfile::tempdir().expect("a temp dir");
    let (alpha_dir, beta_dir) = (root.path().join("alpha"), root.path().join("beta"));
    for (dir, name) in [(&alpha_dir, "alpha"), (&beta_dir, "beta")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("rpibroker.toml"),
            format!("[federation]\nname = \"{name}\"\npull_interval_secs = 86400\n"),
        )
        .unwrap();
    }

    // The peer's devices, listed, written before it starts.
    let alpha_store = Store::open(&alpha_dir.join("broker.sqlite")).unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let name = DeviceName::parse(&device(i).name).unwrap();
        let d = alpha_store
            .add_device(&name, &format!("h{i}"), None, UnixTime(0))
            .unwrap();
        alpha_store
            .set_listing(d.id, true, device(i).hourly_rate)
            .unwrap();
        ids.push(d.id);
    }

    let port = free_port();
    let serving = Serving(
        rpibroker(&alpha_dir, port)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start alpha"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "alpha did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let invite = run(rpibroker(&alpha_dir, port).args(["peer", "invite"]));
    run(rpibroker(&beta_dir, free_port()).args(["peer", "accept", invite.trim()]));

    let beta_store = Store::open(&beta_dir.join("broker.sqlite")).unwrap();
    let ring = KeyRing::load_or_create(&beta_dir, UnixTime::now()).unwrap();
    let http = http_client();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pull = |cursor: i64| -> (Duration, PullStats, i64) {
        let peer = beta_store.peers().unwrap().remove(0);
        let started = Instant::now();
        let (changes, next, stats) = runtime
            .block_on(fetch(&http, &ring, &peer, cursor))
            .expect("a pull");
        beta_store
            .apply_peer_listings(peer.id, &changes, cursor == 0, next, UnixTime::now())
            .unwrap();
        (started.elapsed(), stats, next)
    };

    // Baseline: the same devices as one JSON array, serialized and parsed.
    let all: Vec<ExportedDevice> = (0..n).map(device).collect();
    let started = Instant::now();
    let json = serde_json::to_vec(&all).unwrap();
    let back: Vec<ExportedDevice> = serde_json::from_slice(&json).unwrap();
    let baseline = started.elapsed();
    assert_eq!(back.len(), n);

    // The first full pull also numbers every device on the peer's side.
    let (first, first_stats, cursor) = pull(0);
    assert_eq!(first_stats.changes, n);
    let (full, full_stats, _) = pull(0);
    let (idle, idle_stats, _) = pull(cursor);
    assert_eq!(idle_stats.changes, 0);
    // 1% of the devices change price, 0.1% leave the market.
    for (i, id) in ids.iter().enumerate().step_by(100) {
        alpha_store.set_listing(*id, true, Some(999)).unwrap();
        if i % 1000 == 0 {
            alpha_store.set_listing(*id, false, None).unwrap();
        }
    }
    let (delta, delta_stats, _) = pull(cursor);
    let shown = beta_store.visible_peer_devices(3).unwrap().len();
    assert_eq!(shown, n - n.div_ceil(1000));
    drop(serving);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = |d: Duration| d.as_secs_f64() / baseline.as_secs_f64();
    println!("federation listing sync, {n} peer devices");
    println!(
        "  baseline: JSON round trip in memory   {:>9.1} ms  {:>10} bytes",
        ms(baseline),
        json.len()
    );
    for (what, time, stats) in [
        ("first full pull (numbers all)", first, first_stats),
        ("full pull", full, full_stats),
        ("incremental, nothing changed", idle, idle_stats),
        ("incremental, 1% changed", delta, delta_stats),
    ] {
        println!(
            "  {what:<36} {:>9.1} ms  {:>10} bytes  {:>3} pages  {:>6} changes  {:>6.1}x baseline time  {:>5.2}x baseline bytes",
            ms(time),
            stats.bytes,
            stats.pages,
            stats.changes,
            ratio(time),
            stats.bytes as f64 / json.len() as f64
        );
    }
}
