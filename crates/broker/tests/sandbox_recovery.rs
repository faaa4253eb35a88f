//! The agent dies at the worst moments (in the middle of provisioning, in
//! the middle of a wipe), the device reboots during a rental, the sandbox
//! itself dies; afterwards the sandbox is in the right state and there is
//! exactly one.

mod common;

use std::process::{Child, Command, Stdio};

use common::sandbox::{self, Cleanup, RenterLogin, assert_ran, assert_refused, renter_ssh};
use common::{TestAgent, TestBroker};
use serde_json::json;

/// `rpibroker rental start|stop DEVICE` in the background.
fn rental_in_background(broker: &TestBroker, verb: &str, device: &str) -> Child {
    let mut cmd: Command = broker.command();
    cmd.args(["rental", verb, device]);
    if verb == "start" {
        cmd.arg("--json");
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rpibroker rental")
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_mid_provision_then_mid_wipe_ends_with_one_correct_sandbox() {
    let name = "sbx-crash";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({}));
    let mut agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    sandbox::wait_verified_idle(&broker, name).await;

    // Killed while provisioning: the broker's call fails, and repeating it
    // after the restart gives a working account in the one sandbox.
    let start = rental_in_background(&broker, "start", name);
    agent.wait_for_log("command=\"provision\"", 1).await;
    agent.kill();
    let first = start.wait_with_output().unwrap();
    let mut agent = TestAgent::start_as_configured(&device);
    agent.wait_up(1).await;
    let rental = match first.status.success() {
        // The provisioning finished before the kill reached the agent.
        true => serde_json::from_slice(&first.stdout).unwrap(),
        false => {
            let stderr = String::from_utf8_lossy(&first.stderr);
            assert!(
                stderr.contains("disconnected") || stderr.contains("not connected"),
                "{stderr}"
            );
            sandbox::wait_show(&broker, name, "the sandbox to be back", |v| {
                v["sandbox"]["state"] == "ready" || v["sandbox"]["state"] == "rented"
            })
            .await;
            sandbox::rental_start(&broker, name, None).expect("rental start, repeated")
        }
    };
    let user = rental["username"].as_str().unwrap().to_string();
    let password = rental["password"].as_str().unwrap().to_string();
    let again = sandbox::rental_start(&broker, name, None).unwrap_err();
    assert!(again.contains("is rented"), "{again}");
    sandbox::the_sandbox(name);
    let out = renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "getent passwd | grep -c 'rpibroker renter'; test ! -e /home/rpbverify && echo no-verify-user",
    );
    let accounts = assert_ran(&out, "login after the interrupted provisioning");
    assert_eq!(
        accounts.lines().next(),
        Some("1"),
        "one renter account: {accounts}"
    );
    assert!(accounts.contains("no-verify-user"), "{accounts}");

    // Killed while wiping: when the agent is back, the wipe is finished (by
    // the agent itself and the broker's retry), the rental ends, and the
    // old password is refused.
    let stopped_at = sandbox::now();
    let stop = rental_in_background(&broker, "stop", name);
    agent.wait_for_log("command=\"wipe\"", 1).await;
    agent.kill();
    let stopped = stop.wait_with_output().unwrap();
    let agent = TestAgent::start_as_configured(&device);
    agent.wait_up(1).await;
    if !stopped.status.success() {
        sandbox::wait_show(&broker, name, "the interrupted rental to end", |v| {
            v["rental"].is_null()
        })
        .await;
    }
    let shown = sandbox::wait_verified_since(&broker, name, stopped_at).await;
    assert!(shown["rental"].is_null(), "{shown}");
    sandbox::the_sandbox(name);
    assert!(sandbox::containers(name, "firewall").is_empty());
    assert_refused(
        &renter_ssh(
            &broker,
            name,
            &user,
            RenterLogin::Password(&password),
            "true",
        ),
        "the old password after the wipe",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reboot_keeps_the_rented_sandbox() {
    let name = "sbx-reboot";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({}));
    let mut agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    sandbox::wait_show(&broker, name, "the sandbox to be ready", |v| {
        v["sandbox"]["state"] == "ready"
    })
    .await;
    let rental = sandbox::rental_start(&broker, name, None).expect("rental");
    let user = rental["username"].as_str().unwrap();
    let password = rental["password"].as_str().unwrap();
    let out = renter_ssh(
        &broker,
        name,
        user,
        RenterLogin::Password(password),
        "echo survives > ~/state",
    );
    assert_ran(&out, "write a file");
    let before = sandbox::the_sandbox(name);

    // A reboot: the agent and every container stop.
    agent.kill();
    sandbox::docker_ok(&["stop", "-t", "1", &before]);
    let agent = TestAgent::start_as_configured(&device);
    agent.wait_up(1).await;
    sandbox::wait_show(&broker, name, "the rented sandbox to be back", |v| {
        v["sandbox"]["state"] == "rented"
    })
    .await;
    assert_eq!(
        sandbox::the_sandbox(name),
        before,
        "the same container came back"
    );
    let out = renter_ssh(
        &broker,
        name,
        user,
        RenterLogin::Password(password),
        "cat ~/state",
    );
    assert_eq!(
        assert_ran(&out, "login after the reboot").trim(),
        "survives"
    );
    // The LAN block is back too: it lives in the container's network
    // namespace, which the restart made anew.
    if let Err(e) = sandbox::lan_block_in_place(&before) {
        panic!("the LAN block is in place after the restart: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_that_dies_is_started_again() {
    let name = "sbx-revive";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({}));
    let agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    sandbox::wait_show(&broker, name, "the sandbox to be ready", |v| {
        v["sandbox"]["state"] == "ready"
    })
    .await;
    let id = sandbox::the_sandbox(name);
    sandbox::docker_ok(&["kill", &id]);
    common::wait_for(
        "the agent to start the sandbox again",
        sandbox::SANDBOX_DEADLINE,
        || {
            let running = sandbox::inspect(&id)["State"]["Running"] == true;
            async move { running.then_some(()) }
        },
    )
    .await;
    agent
        .wait_for_log("the container is not running; starting it again", 1)
        .await;
    // Reachable again through the broker: the sandbox's sshd answers.
    let ssh = broker.port(name, "ssh");
    let banner = common::wait_for(
        "the sandbox's SSH banner",
        common::DEADLINE,
        || async move {
            use tokio::io::AsyncReadExt;
            let mut s = tokio::net::TcpStream::connect(ssh).await.ok()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        },
    )
    .await;
    assert_eq!(&banner, b"SSH-");
    assert_eq!(
        sandbox::the_sandbox(name),
        id,
        "the same container, not a new one"
    );
}
