//! A renter's whole stay in a device's sandbox, on this machine's Docker
//! Engine: rent, log in with a stock OpenSSH client through the broker, serve
//! a web page that visitors reach by subdomain, end the rental, and find the
//! sandbox wiped: files gone, old password and key refused, new credentials
//! working, nothing left over in Docker.

mod common;

use common::sandbox::{
    self, Cleanup, RenterLogin, assert_ran, assert_refused, containers, renter_ssh,
};
use common::{TestBroker, http, openssh, wait_for};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn renter_logs_in_serves_a_page_and_the_wipe_leaves_nothing() {
    let name = "sbx-rent";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({"cpus": 1, "memory_mb": 256}));
    let agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    sandbox::wait_verified_idle(&broker, name).await;
    let first_sandbox = sandbox::the_sandbox(name);

    let key = openssh::keygen(broker.dir.path(), "renter");
    let rental = sandbox::rental_start(&broker, name, Some(&key.with_extension("pub")))
        .expect("rental start");
    let user = rental["username"].as_str().unwrap().to_string();
    let password = rental["password"].as_str().unwrap().to_string();
    assert_eq!(rental["ssh_keys"], 1);
    assert_eq!(
        rental["ssh_port"].as_u64().unwrap() as u16,
        broker.port(name, "ssh").port()
    );
    let shown = sandbox::show(&broker, name);
    assert_eq!(shown["rental"]["state"], "active");
    assert_eq!(shown["sandbox"]["state"], "rented");
    assert!(
        !shown.to_string().contains(&password),
        "the broker does not keep the password"
    );

    // The renter logs in with the password, leaves a file and starts a web
    // server on port 80 of the sandbox, without root.
    let out = renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "id -un; echo kept > ~/note; mkdir -p ~/www; echo \"page of $(id -un)\" > ~/www/index.html; \
         setsid python3 -m http.server 80 --directory ~/www >/dev/null 2>&1 </dev/null & sleep 0.2",
    );
    assert_eq!(assert_ran(&out, "password login").trim(), user);
    let out = renter_ssh(&broker, name, &user, RenterLogin::Key(&key), "cat ~/note");
    assert_eq!(assert_ran(&out, "key login").trim(), "kept");

    // A visitor reaches the renter's page through the subdomain router.
    let host = broker.host(name);
    let page = wait_for(
        "the renter's page through the subdomain",
        common::DEADLINE,
        || {
            let host = host.clone();
            let addr = broker.http;
            async move {
                let r = http::get(addr, &host, "/").await.ok()?;
                (r.status == 200).then_some(r.body)
            }
        },
    )
    .await;
    assert_eq!(page.trim(), format!("page of {user}"));

    // End of the rental: a fresh sandbox, and only that one.
    let old_mounts = sandbox::inspect(&first_sandbox)["Mounts"].clone();
    let stopped_at = sandbox::now();
    sandbox::rental_stop(&broker, name).expect("rental stop");
    let shown = sandbox::show(&broker, name);
    assert!(shown["rental"].is_null(), "{shown}");
    assert_eq!(shown["sandbox"]["state"], "ready");
    let fresh = sandbox::the_sandbox(name);
    assert_ne!(fresh, first_sandbox);
    assert!(
        sandbox::docker(&["inspect", &first_sandbox]).status.code() != Some(0),
        "the old container is gone"
    );
    assert!(
        containers(name, "firewall").is_empty(),
        "no helper container left"
    );
    // The sandbox keeps everything in its own file system: no volume that
    // could outlive it, before or after the wipe.
    assert_eq!(old_mounts, json!([]), "the old sandbox had no volumes");
    let mounts = &sandbox::inspect(&fresh)["Mounts"];
    assert_eq!(mounts, &json!([]), "the fresh sandbox has no volumes");

    // The old credentials no longer work.
    assert_refused(
        &renter_ssh(
            &broker,
            name,
            &user,
            RenterLogin::Password(&password),
            "true",
        ),
        "old password",
    );
    assert_refused(
        &renter_ssh(&broker, name, &user, RenterLogin::Key(&key), "true"),
        "old key",
    );
    // Nothing listens on the fresh sandbox's port 80: the visitor gets an
    // error page or a closed connection, never the old page.
    let gone = http::get(broker.http, &host, "/").await;
    assert!(
        gone.as_ref().is_ok_and(|r| r.status != 200) || gone.is_err(),
        "the renter's web server went with the sandbox: {:?}",
        gone.map(|r| r.body)
    );

    // The broker verified the fresh sandbox; the next renter gets new
    // credentials, and none of the last renter's files.
    sandbox::wait_verified_since(&broker, name, stopped_at).await;
    let next = sandbox::rental_start(&broker, name, None).expect("second rental");
    let next_user = next["username"].as_str().unwrap();
    assert_ne!(next_user, user);
    assert_ne!(next["rental"], rental["rental"]);
    let out = renter_ssh(
        &broker,
        name,
        next_user,
        RenterLogin::Password(next["password"].as_str().unwrap()),
        "ls -A /home; test ! -e /home/*/note && echo clean",
    );
    let listing = assert_ran(&out, "new credentials");
    assert!(
        !listing.contains(&user),
        "the old account's home is gone: {listing}"
    );
    assert!(listing.contains("clean"), "{listing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rentals_are_refused_while_one_is_running_and_stop_needs_one() {
    let name = "sbx-busy";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let device = sandbox::add_sandbox_device(&broker, name, json!({}));

    let offline = sandbox::rental_start(&broker, name, None).unwrap_err();
    assert!(offline.contains("not connected"), "{offline}");

    let agent = sandbox::start_agent(&device);
    agent.wait_up(1).await;
    sandbox::wait_show(&broker, name, "the sandbox to be ready", |v| {
        v["sandbox"]["state"] == "ready"
    })
    .await;
    let none = sandbox::rental_stop(&broker, name).unwrap_err();
    assert!(none.contains("no rental to stop"), "{none}");

    let first = sandbox::rental_start(&broker, name, None).expect("rental");
    let again = sandbox::rental_start(&broker, name, None).unwrap_err();
    assert!(
        again.contains(&format!(
            "rented (rental {})",
            first["rental"].as_str().unwrap()
        )),
        "{again}"
    );
    sandbox::rental_stop(&broker, name).expect("stop");

    // Keys that would not work in the sandbox are refused by the broker
    // itself (sent past the CLI's own check), and nothing is rented.
    for bad in [
        "command=\"sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA x",
        "ssh-ed25519 AAAA",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\nssh-rsa AAAA",
    ] {
        let answer = sandbox::socket_request(
            &broker,
            &json!({"op": "rental_start", "device": name, "ssh_keys": [bad]}),
        );
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("key"), "{bad:?}: {answer}");
        assert!(sandbox::show(&broker, name)["rental"].is_null());
    }
}
