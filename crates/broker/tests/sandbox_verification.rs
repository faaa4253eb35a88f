//! The broker measures each sandbox itself, through the tunnel: an honest
//! device is verified with the figures its container really has; a device
//! whose sandbox has less than it claims is flagged.

mod common;

use common::TestBroker;
use common::sandbox::{self, Cleanup, docker_ok};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn honest_device_is_verified_with_its_containers_figures() {
    let name = "sbx-honest";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({"cpus": 1, "memory_mb": 320}));
    let agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    let shown = sandbox::wait_verified_idle(&broker, name).await;
    let id = sandbox::the_sandbox(name);
    let h = &sandbox::inspect(&id)["HostConfig"];
    let v = &shown["verification"];
    assert_eq!(v["reasons"], "");
    assert_eq!(
        v["measured"]["cpu_millicores"].as_u64().unwrap(),
        h["NanoCpus"].as_u64().unwrap() / 1_000_000
    );
    assert_eq!(v["measured"]["memory_bytes"], h["Memory"]);
    assert_eq!(v["claimed"]["memory_bytes"], h["Memory"]);
    assert!(v["measured"]["disk_bytes"].as_u64().unwrap() > 0);
    for bench in ["cpu_sha256_kib_s", "memory_copy_kib_s", "disk_write_kib_s"] {
        assert!(v["measured"][bench].as_u64().unwrap() > 0, "{bench}: {v}");
    }
    assert!(shown["hardware"]["docker"].as_str().is_some());
    // The one-time key is gone after use (checked as its owner: root in the
    // sandbox cannot read other users' homes).
    let keys = sandbox::docker(&[
        "exec",
        "-u",
        "rpbverify",
        &id,
        "sh",
        "-c",
        "test -d ~/.ssh && test ! -e ~/.ssh/authorized_keys && echo removed",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&keys.stdout).trim(),
        "removed",
        "{}",
        String::from_utf8_lossy(&keys.stderr)
    );

    // Verifying again on demand gives the same verdict.
    let out = broker.run(&["device", "verify", name, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["verdict"], "verified");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_over_reporting_memory_and_cores_is_flagged() {
    let name = "sbx-liar";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({"cpus": 1, "memory_mb": 512}));
    let agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    sandbox::wait_verified_idle(&broker, name).await;

    // Behind the broker's back, the sandbox gets less than the device keeps
    // claiming.
    let id = sandbox::the_sandbox(name);
    docker_ok(&[
        "update",
        "--cpus",
        "0.25",
        "--memory",
        "96m",
        "--memory-swap",
        "96m",
        &id,
    ]);
    let out = broker.run(&["device", "verify", name, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["verdict"], "flagged", "{verdict}");
    let reasons = verdict["reasons"].as_str().unwrap();
    assert!(
        reasons.contains("cpu: claimed 1.000 cores, measured 0.250 cores"),
        "{reasons}"
    );
    assert!(
        reasons.contains("memory: claimed 512 MiB, measured 96 MiB"),
        "{reasons}"
    );

    let shown = sandbox::show(&broker, name);
    assert_eq!(shown["verification"]["verdict"], "flagged");
    let text = broker.run(&["device", "show", name]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("verification  flagged"), "{text}");
}
