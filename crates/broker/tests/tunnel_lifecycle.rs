//! Sessions over time: the agent survives broker restarts with the same
//! subdomain and ports, a device's new connection replaces its old one, and
//! the broker knows which devices are online and since when.

mod common;

use common::openssh::{self, Login};
use common::{DEADLINE, Targets, TestAgent, TestBroker, http, services, wait_for};

async fn body(broker: &TestBroker, device: &str) -> Option<String> {
    let r = http::get(broker.http, &format!("{device}.localhost"), "/")
        .await
        .ok()?;
    (r.status == 200).then_some(r.body)
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_comes_back_after_a_broker_restart_with_the_same_ports() {
    let mut broker = TestBroker::start(2).await;
    broker.add_device("early");
    let pi = broker.add_device("pi");
    let agent = TestAgent::start(&pi, &Targets::serving("pi").await);
    agent.wait_up(1).await;
    let ports = broker.ports("pi");
    assert!(ports["ssh"].is_u64());

    broker.restart().await;
    agent.wait_up(2).await;
    assert!(agent.log().contains("tunnel lost"), "{}", agent.log());
    let b = wait_for("the device to be served again", DEADLINE, || {
        body(&broker, "pi")
    })
    .await;
    assert!(b.starts_with("hello from pi"));
    assert_eq!(broker.ports("pi"), ports, "ports survive the restart");
    let back = services::echo_round_trip(broker.port("pi", "ssh"), b"after restart")
        .await
        .unwrap();
    assert_eq!(back, b"after restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_connection_of_the_device_replaces_the_old_one() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("pi");
    let old_web = services::web("old-session").await;
    let mut old = openssh::forward(&broker, &pi, Login::Token, &[format!("80:{old_web}")]);
    let b = wait_for("the first session to serve", DEADLINE, || {
        body(&broker, "pi")
    })
    .await;
    assert!(b.starts_with("hello from old-session"));

    // The old session is still alive when the agent connects.
    assert!(old.exited().is_none());
    let agent = TestAgent::start(&pi, &Targets::serving("new-session").await);
    agent.wait_up(1).await;
    let b = wait_for("the new session to serve", DEADLINE, || async {
        body(&broker, "pi")
            .await
            .filter(|b| b.starts_with("hello from new-session"))
    })
    .await;
    assert!(b.contains("request-on-connection=1"));
    // The broker disconnected the old session.
    wait_for("the old ssh session to be disconnected", DEADLINE, || {
        let exited = old.exited();
        async move { exited }
    })
    .await;
    for _ in 0..5 {
        let b = body(&broker, "pi").await.unwrap();
        assert!(b.starts_with("hello from new-session"), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_shows_online_since_and_last_seen() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("pi");
    let entry = |broker: &TestBroker| {
        broker
            .list()
            .into_iter()
            .find(|d| d["name"] == "pi")
            .unwrap()
    };
    let before = entry(&broker);
    assert_eq!(before["online"], false);
    assert!(before["last_seen"].is_null());
    assert!(before["online_since"].is_null());

    let mut agent = TestAgent::start(&pi, &Targets::serving("pi").await);
    agent.wait_up(1).await;
    let online = wait_for("the device to be listed online", DEADLINE, || {
        let d = entry(&broker);
        async move { (d["online"] == true).then_some(d) }
    })
    .await;
    assert!(online["online_since"].is_i64());
    assert_eq!(online["hardware"]["arch"], std::env::consts::ARCH);
    let table = String::from_utf8(broker.run(&["device", "list"]).stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("pi ") && l.contains("online")),
        "{table}"
    );
    let api = status(&broker, &pi.token).await;
    assert_eq!(api.status, 200, "{}", api.body);
    let api: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(api["online"], true);
    assert_eq!(api["online_since"], online["online_since"]);
    assert_eq!(api["subdomain"], "pi.localhost");
    assert!(api["last_handshake"].as_i64().unwrap() >= before["created_at"].as_i64().unwrap());
    assert_eq!(status(&broker, "rpb_wrong").await.status, 401);

    agent.kill();
    let offline = wait_for("the device to be listed offline", DEADLINE, || {
        let d = entry(&broker);
        async move { (d["online"] == false).then_some(d) }
    })
    .await;
    assert!(offline["online_since"].is_null());
    assert!(offline["last_seen"].as_i64().unwrap() >= online["online_since"].as_i64().unwrap());
    let table = String::from_utf8(broker.run(&["device", "list"]).stdout).unwrap();
    assert!(table.contains("offline, seen"), "{table}");
    let api: serde_json::Value =
        serde_json::from_str(&status(&broker, &pi.token).await.body).unwrap();
    assert_eq!(api["online"], false);
    assert_eq!(api["last_seen"], offline["last_seen"]);
}

/// `GET /api/v1/device` with the device token.
async fn status(broker: &TestBroker, token: &str) -> http::Response {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(broker.api).await.unwrap();
    let req = format!(
        "GET /api/v1/device HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    http::read_response(&mut s).await.unwrap()
}
