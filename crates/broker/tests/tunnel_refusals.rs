//! What the broker refuses, and that it keeps serving other devices while it
//! does: bad tokens, forwards of ports that are not the device's, shells and
//! local forwards, and visitors sending nonsense or nothing.

mod common;

use std::time::{Duration, Instant};

use common::openssh::{self, Login};
use common::{DEADLINE, Targets, TestAgent, TestBroker, http, services, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn handshake(broker: &TestBroker, token: &str) -> http::Response {
    let body = json!({"token": token, "hardware": {"arch": "x86_64"}});
    http::post(broker.api, "/api/v1/connect", body.to_string().as_bytes())
        .await
        .unwrap()
}

fn code(r: &http::Response) -> String {
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.body));
    v["code"].as_str().unwrap().to_string()
}

/// The device's web site answers 200 through the Host router.
async fn assert_serving(broker: &TestBroker, device: &str) {
    let r = http::get(broker.http, &format!("{device}.localhost"), "/still-here")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{device} should still be served: {}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_names_each_refusal() {
    let broker = TestBroker::start(1).await;
    let revoked = broker.add_device("revoked");
    let removed = broker.add_device("removed");
    let ok = handshake(&broker, &revoked.token).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let r = handshake(&broker, "rpb_0000").await;
    assert_eq!((r.status, code(&r)), (401, "bad_token".into()));

    assert!(
        broker
            .run(&["device", "revoke", "revoked"])
            .status
            .success()
    );
    let r = handshake(&broker, &revoked.token).await;
    assert_eq!((r.status, code(&r)), (401, "revoked_token".into()));
    assert!(r.body.contains("revoked"), "{}", r.body);

    assert!(
        broker
            .run(&["device", "remove", "removed"])
            .status
            .success()
    );
    let r = handshake(&broker, &removed.token).await;
    assert_eq!((r.status, code(&r)), (410, "device_removed".into()));

    let r = http::post(broker.api, "/api/v1/connect", b"{not json")
        .await
        .unwrap();
    assert_eq!((r.status, code(&r)), (400, "malformed_request".into()));
    let r = http::post(
        broker.api,
        "/api/v1/connect",
        br#"{"token":"x","hardware":{"arch":"x"},"extra":1}"#,
    )
    .await
    .unwrap();
    assert_eq!((r.status, code(&r)), (400, "malformed_request".into()));
    let big = vec![b' '; 64 * 1024];
    let r = http::post(broker.api, "/api/v1/connect", &big)
        .await
        .unwrap();
    assert_eq!((r.status, code(&r)), (413, "body_too_large".into()));
    let r = http::post(
        broker.api,
        "/api/v1/connect",
        json!({"token": "x", "hardware": {"arch": "x"}, "public_key": "ssh-ed25519 garbage"})
            .to_string()
            .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!((r.status, code(&r)), (400, "bad_public_key".into()));
    // Strings that end up in the broker's log are bounded and printable.
    let forged = json!({"token": revoked.token, "hardware": {"arch": "x86_64"}, "agent_version": "1.0\nFAKE LOG LINE"});
    let r = http::post(broker.api, "/api/v1/connect", forged.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!((r.status, code(&r)), (400, "malformed_request".into()));
    assert!(!broker.log().contains("FAKE LOG LINE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_port_pool_is_reported_and_creates_nothing() {
    let broker = TestBroker::start(1).await;
    let first = broker.add_device("first");
    let second = broker.add_device("second");
    assert_eq!(handshake(&broker, &first.token).await.status, 200);
    let r = handshake(&broker, &second.token).await;
    assert_eq!((r.status, code(&r)), (503, "port_pool_exhausted".into()));
    assert_eq!(
        broker.ports("second"),
        Value::Null,
        "no ports were half-assigned"
    );
    // Removing the first device frees its ports for the second.
    assert!(broker.run(&["device", "remove", "first"]).status.success());
    assert_eq!(handshake(&broker, &second.token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_with_a_wrong_token_says_so() {
    let broker = TestBroker::start(1).await;
    let mut pi = broker.add_device("pi");
    let text = std::fs::read_to_string(&pi.config)
        .unwrap()
        .replace(&pi.token, "rpb_wrong");
    std::fs::write(&pi.config, text).unwrap();
    pi.token = "rpb_wrong".into();
    let agent = TestAgent::start(&pi, &Targets::serving("pi").await);
    agent.wait_for_log("no device has this token", 1).await;
    assert!(
        agent.log().contains("needs the owner to act"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_cuts_the_live_tunnel_and_only_the_new_token_works() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("pi");
    let t = Targets::serving("pi").await;
    let agent = TestAgent::start(&pi, &t);
    agent.wait_up(1).await;
    assert_serving(&broker, "pi").await;

    let out = broker.run(&["device", "revoke", "pi", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_token = serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_token, pi.token);
    // The live tunnel is cut at once, and the agent's reconnects are refused.
    wait_for("the revoked tunnel to be cut", DEADLINE, || async {
        let r = http::get(broker.http, "pi.localhost", "/").await.ok()?;
        (r.status == 502).then_some(())
    })
    .await;
    agent.wait_for_log("was revoked", 1).await;
    // The old token no longer logs in over SSH either.
    let out = openssh::run(
        &broker,
        &pi,
        Login::Token,
        &["-N", "-o", "ExitOnForwardFailure=yes", "pi@127.0.0.1"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

    drop(agent);
    let out = broker.run(&[
        "device",
        "revoke",
        "pi",
        "--config-out",
        pi.config.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let agent = TestAgent::start(&pi, &t);
    agent.wait_up(1).await;
    assert_serving(&broker, "pi").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_device_cuts_it_and_closes_its_ports() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("pi");
    let agent = TestAgent::start(&pi, &Targets::serving("pi").await);
    agent.wait_up(1).await;
    let ssh_port = broker.port("pi", "ssh");
    assert!(broker.run(&["device", "remove", "pi"]).status.success());
    wait_for("the removed device's port to close", DEADLINE, || async {
        TcpStream::connect(ssh_port).await.is_err().then_some(())
    })
    .await;
    let r = http::get(broker.http, "pi.localhost", "/").await.unwrap();
    assert_eq!(r.status, 404);
    agent.wait_for_log("was removed", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_may_forward_only_its_own_services() {
    let broker = TestBroker::start(2).await;
    let a = broker.add_device("a");
    let b = broker.add_device("b");
    let agent_b = TestAgent::start(&b, &Targets::serving("b").await);
    agent_b.wait_up(1).await;
    let b_http = broker.ports("b")["http"].as_u64().unwrap();
    let echo = services::echo().await;

    for port in [b_http, 12345, 8080] {
        let mut ssh = openssh::forward(&broker, &a, Login::Token, &[format!("{port}:{echo}")]);
        let status = wait_for("ssh to give up on the refused forward", DEADLINE, || {
            let s = ssh.exited();
            async move { s }
        })
        .await;
        assert!(!status.success());
        assert!(
            ssh.log().contains(&format!(
                "remote port forwarding failed for listen port {port}"
            )),
            "{}",
            ssh.log()
        );
    }
    // Device a's own http port, named by its public number, is fine.
    let a_http = broker.ports("a")["http"].as_u64().unwrap();
    let web = services::web("a").await;
    let _ssh = openssh::forward(&broker, &a, Login::Token, &[format!("{a_http}:{web}")]);
    wait_for("a's own forward to serve", DEADLINE, || async {
        let r = http::get(broker.http, "a.localhost", "/").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    assert_serving(&broker, "b").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shells_commands_ptys_subsystems_and_local_forwards_are_refused() {
    let broker = TestBroker::start(2).await;
    let other = broker.add_device("other");
    let agent = TestAgent::start(&other, &Targets::serving("other").await);
    agent.wait_up(1).await;
    let pi = broker.add_device("pi");

    let out = openssh::run(&broker, &pi, Login::Token, &["pi@127.0.0.1", "id"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exec request failed"),
        "{out:?}"
    );

    let out = openssh::run(&broker, &pi, Login::Token, &["-tt", "pi@127.0.0.1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PTY allocation request failed"), "{err}");

    let out = openssh::run(&broker, &pi, Login::Token, &["-T", "pi@127.0.0.1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shell request failed"), "{err}");

    let out = openssh::run(&broker, &pi, Login::Token, &["-s", "pi@127.0.0.1", "sftp"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("subsystem request failed"),
        "{out:?}"
    );

    // A local forward (direct-tcpip) towards the broker's own loopback.
    let echo = services::echo().await;
    let local_port = common::ports::reserve(1).base;
    let ssh = openssh::spawn(
        &broker,
        &pi,
        Login::Token,
        &["-N".into(), "-L".into(), format!("{local_port}:{echo}")],
    );
    let mut s = wait_for("ssh's local forward to listen", DEADLINE, || async {
        TcpStream::connect(("127.0.0.1", local_port)).await.ok()
    })
    .await;
    let _ = s.write_all(b"hello").await;
    let got = http::read_until_closed(&mut s, DEADLINE).await.unwrap();
    assert!(got.is_empty(), "a refused local forward carries nothing");
    wait_for("ssh to report the refusal", DEADLINE, || {
        let text = ssh.log();
        async move { text.contains("administratively prohibited").then_some(()) }
    })
    .await;

    assert_serving(&broker, "other").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_edge_refuses_bad_requests_and_keeps_serving() {
    let mut broker = TestBroker::start(2).await;
    let pi = broker.add_device("pi");
    broker.add_device("sleepy");
    let agent = TestAgent::start(&pi, &Targets::serving("pi").await);
    agent.wait_up(1).await;

    async fn raw(broker: &TestBroker, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(broker.http).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let got = http::read_until_closed(&mut s, DEADLINE).await.unwrap();
        String::from_utf8_lossy(&got).to_string()
    }
    let status = |r: &str| r.split(' ').nth(1).unwrap_or("").to_string();

    assert_eq!(
        status(&raw(&broker, b"GET / HTTP/1.1\r\n\r\n").await),
        "400"
    );
    assert_eq!(
        status(&raw(&broker, b"GET / HTTP/1.0\r\n\r\n").await),
        "400"
    );
    assert_eq!(
        status(
            &raw(
                &broker,
                b"GET / HTTP/1.1\r\nHost: pi.localhost\r\nHost: x.localhost\r\n\r\n"
            )
            .await
        ),
        "400"
    );
    assert_eq!(
        status(&raw(&broker, b"\x16\x03\x01\x00\x05hello\r\n\r\n").await),
        "400"
    );
    let mut endless = b"GET / HTTP/1.1\r\nHost: pi.localhost\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 1000).flatten());
    assert_eq!(status(&raw(&broker, &endless).await), "431");
    let offline = raw(&broker, b"GET / HTTP/1.1\r\nHost: sleepy.localhost\r\n\r\n").await;
    assert_eq!(status(&offline), "502");
    assert!(offline.contains("offline"), "{offline}");

    // A head that never ends is cut after the read timeout (2 s in tests).
    let started = Instant::now();
    let mut s = TcpStream::connect(broker.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: pi.localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let got = http::read_until_closed(&mut s, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&got)), "408");
    assert!(started.elapsed() >= Duration::from_secs(2));

    assert_serving(&broker, "pi").await;
    assert!(broker.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_https_edge_closes_what_it_cannot_route() {
    let mut broker = TestBroker::start(1).await;
    let pi = broker.add_device("pi");
    let (tls_addr, cert) = services::tls("pi.localhost").await;
    let t = Targets {
        https: tls_addr,
        ..Targets::serving("pi").await
    };
    let agent = TestAgent::start(&pi, &t);
    agent.wait_up(1).await;

    // A real ClientHello for the device gets the device's ServerHello; one
    // for an unknown name, or with no SNI at all (rustls sends none for an IP
    // address), gets nothing but a close.
    async fn answer_to_client_hello(broker: &TestBroker, name: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(broker.https).await.unwrap();
        s.write_all(&services::client_hello(name)).await.unwrap();
        let mut answer = vec![0u8; 5];
        match tokio::time::timeout(Duration::from_secs(15), s.read(&mut answer)).await {
            Ok(Ok(n)) => answer[..n].to_vec(),
            _ => Vec::new(),
        }
    }
    let routed = answer_to_client_hello(&broker, "pi.localhost").await;
    assert_eq!(
        routed.first(),
        Some(&22),
        "a TLS handshake record from the device"
    );
    assert!(
        answer_to_client_hello(&broker, "nobody.localhost")
            .await
            .is_empty()
    );
    assert!(
        answer_to_client_hello(&broker, "127.0.0.1")
            .await
            .is_empty()
    );
    // Garbage, and a ClientHello that never comes: closed (after 2 s for the latter).
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: pi.localhost\r\n\r\n"[..],
        &b"\x16\x03\x01\x40\x00"[..],
    ] {
        let mut s = TcpStream::connect(broker.https).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let got = http::read_until_closed(&mut s, Duration::from_secs(15))
            .await
            .unwrap();
        assert!(got.is_empty());
    }

    let tls = services::tls_connect(broker.https, "pi.localhost", &cert).await;
    assert!(tls.is_ok(), "the device is still served over HTTPS");
    assert!(broker.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_unauthenticated_ssh_connections_are_dropped() {
    let broker = TestBroker::start(1).await;
    for greeting in [&b""[..], &b"SSH-2.0-OpenSSH_9.2\r\n"[..]] {
        let started = Instant::now();
        let mut s = TcpStream::connect(broker.ssh).await.unwrap();
        s.write_all(greeting).await.unwrap();
        http::read_until_closed(&mut s, Duration::from_secs(15))
            .await
            .unwrap();
        // The test broker allows 3 s to authenticate.
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_take_every_login_slot() {
    let broker = TestBroker::start(1).await;
    async fn connect_from(ip: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((ip, 0).into()).unwrap();
        socket.connect(to).await.unwrap()
    }
    async fn greeting(s: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 4];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].to_vec(),
            _ => Vec::new(),
        }
    }
    // 64 silent connections from one address hold all of its login slots...
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut s = connect_from([127, 0, 0, 1], broker.ssh).await;
        assert_eq!(greeting(&mut s).await, b"SSH-");
        held.push(s);
    }
    // ...so its next one is closed at once, without a greeting...
    let mut refused = connect_from([127, 0, 0, 1], broker.ssh).await;
    assert!(greeting(&mut refused).await.is_empty());
    // ...while another address still gets in.
    let mut other = connect_from([127, 0, 0, 2], broker.ssh).await;
    assert_eq!(greeting(&mut other).await, b"SSH-");
}
