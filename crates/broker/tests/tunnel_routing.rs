//! Visitors reach a device's services through the broker: HTTP by subdomain
//! (keep-alive and WebSocket included), HTTPS by SNI with end-to-end TLS, raw
//! TCP on the device's own ports, with our agent or a stock OpenSSH client.

mod common;

use common::openssh::{self, Login};
use common::{DEADLINE, Targets, TestAgent, TestBroker, http, services, wait_for};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn device_reaches_web_via_subdomain_with_keep_alive() {
    let broker = TestBroker::start(2).await;
    let pi = broker.add_device("pi");
    let agent = TestAgent::start(&pi, &Targets::serving("pi").await);
    agent.wait_up(1).await;

    let mut conn = tokio::net::TcpStream::connect(broker.http).await.unwrap();
    for n in 1..=3 {
        http::send_get(&mut conn, "pi.localhost:8080", &format!("/page{n}"))
            .await
            .unwrap();
        let r = http::read_response(&mut conn).await.unwrap();
        assert_eq!(r.status, 200);
        // The same device-side connection serves every request: keep-alive passes through.
        assert_eq!(
            r.body,
            format!("hello from pi path=/page{n} request-on-connection={n}")
        );
    }

    let other = http::get(broker.http, "PI.LOCALHOST", "/").await.unwrap();
    assert_eq!(other.status, 200, "host names are case-insensitive");
    let unknown = http::get(broker.http, "nobody.localhost", "/")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("No device has this address"));
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_passes_through_the_host_router() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("wspi");
    let agent = TestAgent::start(&pi, &Targets::serving("wspi").await);
    agent.wait_up(1).await;

    let tcp = tokio::net::TcpStream::connect(broker.http).await.unwrap();
    let url = format!("ws://wspi.localhost:{}/echo", broker.http.port());
    let (mut ws, response) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "second message", &"x".repeat(100_000)] {
        ws.send(Message::text(text)).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_routed_by_sni_and_verified_end_to_end() {
    let broker = TestBroker::start(2).await;
    let pi = broker.add_device("tlspi");
    let (tls_addr, cert) = services::tls("tlspi.localhost").await;
    let t = Targets {
        https: tls_addr,
        ..Targets::serving("tlspi").await
    };
    let agent = TestAgent::start(&pi, &t);
    agent.wait_up(1).await;

    // Through the shared HTTPS port (SNI) and through the device's own https port.
    for addr in [broker.https, broker.port("tlspi", "https")] {
        let line = services::tls_line(addr, "tlspi.localhost", &cert, "ping").await;
        assert_eq!(line, "tls tlspi.localhost: ping");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn device_ports_carry_raw_tcp_intact() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("rawpi");
    let agent = TestAgent::start(&pi, &Targets::serving("rawpi").await);
    agent.wait_up(1).await;

    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let back = services::echo_round_trip(broker.port("rawpi", "ssh"), &payload)
        .await
        .unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "echoed bytes differ");

    let r = http::get(broker.port("rawpi", "http"), "anything", "/raw")
        .await
        .unwrap();
    assert_eq!(r.body, "hello from rawpi path=/raw request-on-connection=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_openssh_client_works_as_a_device_with_the_token() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("sshpi");
    let t = Targets::serving("sshpi").await;
    let (tls_addr, cert) = services::tls("sshpi.localhost").await;
    let _ssh = openssh::forward(
        &broker,
        &pi,
        Login::Token,
        &[
            format!("80:{}", t.http),
            format!("22:{}", t.ssh),
            format!("443:{tls_addr}"),
        ],
    );
    let r = wait_for("the OpenSSH device's web site", DEADLINE, || async {
        let r = http::get(broker.http, "sshpi.localhost", "/via-openssh")
            .await
            .ok()?;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(
        r.body,
        "hello from sshpi path=/via-openssh request-on-connection=1"
    );

    let back = services::echo_round_trip(broker.port("sshpi", "ssh"), b"through openssh")
        .await
        .unwrap();
    assert_eq!(back, b"through openssh");

    let line = services::tls_line(broker.https, "sshpi.localhost", &cert, "via sni").await;
    assert_eq!(line, "tls sshpi.localhost: via sni");

    let tcp = tokio::net::TcpStream::connect(broker.http).await.unwrap();
    let url = format!("ws://sshpi.localhost:{}/echo", broker.http.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    ws.send(Message::text("ws via openssh")).await.unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "ws via openssh");
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_openssh_client_works_as_a_device_with_a_registered_key() {
    let broker = TestBroker::start(1).await;
    let key = openssh::keygen(broker.dir.path(), "owner_key");
    let pub_key = key.with_extension("pub");
    let pi = broker.add_device_with("keypi", &["--ssh-key", pub_key.to_str().unwrap()]);
    let t = Targets::serving("keypi").await;
    let _ssh = openssh::forward(&broker, &pi, Login::Key(&key), &[format!("80:{}", t.http)]);
    let r = wait_for(
        "the key-authenticated device's web site",
        DEADLINE,
        || async {
            let r = http::get(broker.http, "keypi.localhost", "/").await.ok()?;
            (r.status == 200).then_some(r)
        },
    )
    .await;
    assert!(r.body.starts_with("hello from keypi"));
}
