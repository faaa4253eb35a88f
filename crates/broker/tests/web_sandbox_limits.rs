//! An owner changes their device's sandbox limits on My devices, with a
//! real agent and sandbox: the idle sandbox is recreated under them, the
//! broker measures it again and shows the new figures, the agent keeps them
//! across a restart and a wipe, a rented sandbox is left alone, and nobody
//! else can change them.

mod common;

use common::sandbox::{self, Cleanup, RenterLogin, assert_ran, register_and_start, renter_ssh};
use common::web::{WebClient, csrf_of, sign_up};
use common::{TestAgent, TestBroker};

const MIB: i64 = 1024 * 1024;

/// Posts the limits form of My devices for `name`.
async fn set_limits(
    c: &mut WebClient,
    name: &str,
    cpus: &str,
    memory_mb: &str,
    disk_gb: &str,
) -> common::http::Response {
    let page = c.get("/devices").await;
    let csrf = csrf_of(&page.body);
    c.post(
        "/devices/limits",
        &[
            ("csrf", &csrf),
            ("name", name),
            ("cpus", cpus),
            ("memory_mb", memory_mb),
            ("disk_gb", disk_gb),
        ],
    )
    .await
}

/// The sandbox container's CPU and memory limits, as Docker applies them.
fn docker_limits(id: &str) -> (i64, i64) {
    let c = sandbox::inspect(id);
    let h = &c["HostConfig"];
    (
        h["NanoCpus"].as_i64().unwrap(),
        h["Memory"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_changes_sandbox_limits_between_rentals() {
    let name = "web-limits";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut stranger = sign_up(broker.api, "stranger@example.org").await;
    let (device, mut agent) = register_and_start(&broker, &mut owner, name).await;
    let first = sandbox::the_sandbox(name);
    assert_eq!(docker_limits(&first), (1_000_000_000, 256 * MIB));

    // The form shows the limits in force.
    let page = owner.get("/devices").await;
    let form_at = page
        .body
        .find(&format!("data-testid=\"limits-{name}\""))
        .expect("a limits form for the device");
    let form = &page.body[form_at..form_at + page.body[form_at..].find("</form>").unwrap()];
    assert!(
        form.contains("name=\"cpus\"") && form.contains("value=\"1\""),
        "{form}"
    );
    assert!(form.contains("value=\"256\""), "{form}");

    // Another account's change looks like no device, and changes nothing.
    let r = set_limits(&mut stranger, name, "0.5", "128", "").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("You have no device by that name."));
    // A form from another site, or without the session's token, is refused.
    let r = owner
        .post(
            "/devices/limits",
            &[
                ("csrf", "wrong"),
                ("name", name),
                ("cpus", "0.5"),
                ("memory_mb", "128"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    // Out of range: more cores than the machine has, too little memory,
    // nonsense; each says why.
    let cores = std::thread::available_parallelism().unwrap().get();
    let r = set_limits(&mut owner, name, &(cores + 1).to_string(), "128", "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains(&format!(
            "{} CPU cores is more than the machine's {cores}",
            cores + 1
        )),
        "{}",
        r.body
    );
    let r = set_limits(&mut owner, name, "0.5", "32", "").await;
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains("memory must be at least 64 MiB"),
        "{}",
        r.body
    );
    let r = set_limits(&mut owner, name, "<b>1</b>", "128", "").await;
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains("&lt;b&gt;1&lt;/b&gt;") && !r.body.contains("<b>1</b>"),
        "shown escaped: {}",
        r.body
    );
    assert_eq!(
        sandbox::the_sandbox(name),
        first,
        "refused changes leave the sandbox alone"
    );

    // The owner's change: a new sandbox under the new limits, measured again.
    let before = sandbox::now();
    let r = set_limits(&mut owner, name, "0.5", "192", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("the sandbox now has 0.5 CPU cores, 192 MiB memory, no disk limit"),
        "{}",
        r.body
    );
    let second = sandbox::the_sandbox(name);
    assert_ne!(second, first, "the idle sandbox was recreated");
    assert_eq!(docker_limits(&second), (500_000_000, 192 * MIB));
    let shown = sandbox::wait_show(&broker, name, "the new sandbox verified", |v| {
        v["verification"]["verdict"] == "verified"
            && v["verification"]["at"].as_i64() >= Some(before)
            && v["verification"]["measured"]["cpu_millicores"] == 500
    })
    .await;
    assert_eq!(shown["sandbox"]["state"], "ready");
    assert_eq!(shown["claimed"]["cpu_millicores"], 500);
    assert_eq!(shown["claimed"]["memory_bytes"], 192 * MIB);
    assert_eq!(shown["verification"]["measured"]["memory_bytes"], 192 * MIB);
    let page = owner.get("/devices").await;
    assert!(
        page.body.contains("claimed: 0.50 cores, 192 MiB memory")
            && page.body.contains("measured: 0.50 cores, 192 MiB memory"),
        "{}",
        page.body
    );

    // The agent keeps the owner's limits over its config file's across a
    // restart: its handshake claims them again.
    agent.kill();
    let agent = TestAgent::start_as_configured(&device);
    agent.wait_up(1).await;
    let shown = sandbox::wait_show(&broker, name, "the restarted agent's sandbox", |v| {
        v["online"] == true && v["sandbox"]["state"] == "ready"
    })
    .await;
    assert_eq!(shown["hardware"]["sandbox"]["cpu_millicores"], 500);
    assert_eq!(shown["hardware"]["sandbox"]["memory_bytes"], 192 * MIB);

    // Rented: the change is refused, and the renter's sandbox is untouched.
    let rental = sandbox::rental_start(&broker, name, None).unwrap();
    let rented = sandbox::the_sandbox(name);
    let r = set_limits(&mut owner, name, "1", "256", "").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("{name} is rented: change limits between rentals.")),
        "{}",
        r.body
    );
    let out = broker.run(&[
        "device",
        "limits",
        name,
        "--cpus",
        "1",
        "--memory-mb",
        "256",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("is rented: change limits between rentals"),
        "the command line is refused the same way: {stderr}"
    );
    assert_eq!(sandbox::the_sandbox(name), rented);
    assert_eq!(docker_limits(&rented), (500_000_000, 192 * MIB));
    assert_eq!(sandbox::show(&broker, name)["rental"]["state"], "active");
    let user = rental["username"].as_str().unwrap();
    let out = renter_ssh(
        &broker,
        name,
        user,
        RenterLogin::Password(rental["password"].as_str().unwrap()),
        "id -un",
    );
    assert_eq!(assert_ran(&out, "the renter still logs in").trim(), user);

    // The wipe after the rental makes the next sandbox under the owner's
    // limits too.
    sandbox::rental_stop(&broker, name).unwrap();
    let fresh = sandbox::the_sandbox(name);
    assert_ne!(fresh, rented);
    assert_eq!(docker_limits(&fresh), (500_000_000, 192 * MIB));

    // The operator's command line sets them too.
    let out = broker.run(&[
        "device",
        "limits",
        name,
        "--cpus",
        "1",
        "--memory-mb",
        "320",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 CPU cores, 320 MiB memory"));
    assert_eq!(
        docker_limits(&sandbox::the_sandbox(name)),
        (1_000_000_000, 320 * MIB)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_of_an_offline_device_are_refused() {
    let broker = TestBroker::start(1).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let page = owner.get("/devices").await;
    let r = owner
        .post(
            "/devices",
            &[("csrf", &csrf_of(&page.body)), ("name", "web-limits-off")],
        )
        .await;
    assert_eq!(r.status, 201);
    let r = set_limits(&mut owner, "web-limits-off", "0.5", "128", "").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains(
            "web-limits-off is offline: its limits can be changed while it is connected."
        ),
        "{}",
        r.body
    );
}
