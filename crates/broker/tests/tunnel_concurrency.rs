//! Many devices and visitors at once: every byte comes back intact, every
//! visitor reaches the device it asked for, and one visitor cannot hold up
//! the others.

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Targets, TestAgent, TestBroker, http, services, wait_for};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

const DEVICES: u16 = 24;
const VISITORS_PER_DEVICE: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn many_devices_and_visitors_at_once() {
    let broker = TestBroker::start(DEVICES).await;
    let mut agents = Vec::new();
    for i in 0..DEVICES {
        let name = format!("dev{i}");
        let device = broker.add_device(&name);
        agents.push(TestAgent::start(&device, &Targets::serving(&name).await));
    }
    for a in &agents {
        a.wait_up(1).await;
    }
    let list = broker.list();

    let mut visits = JoinSet::new();
    for i in 0..DEVICES {
        let name = format!("dev{i}");
        let entry = list.iter().find(|d| d["name"] == name.as_str()).unwrap();
        let ssh_port = entry["ports"]["ssh"].as_u64().unwrap() as u16;
        for v in 0..VISITORS_PER_DEVICE {
            let http_addr = broker.http;
            let name = name.clone();
            visits.spawn(async move {
                // A distinct payload per visitor, so crossed wires would show.
                let payload: Vec<u8> = (0..256 * 1024u32)
                    .map(|b| (b.wrapping_mul(31).wrapping_add(u32::from(i) * 7 + v as u32)) as u8)
                    .collect();
                let back = services::echo_round_trip(([127, 0, 0, 1], ssh_port).into(), &payload)
                    .await
                    .unwrap();
                assert!(back == payload, "{name} visitor {v}: echo differs");
                let r = http::get(http_addr, &format!("{name}.localhost"), &format!("/v{v}"))
                    .await
                    .unwrap();
                assert_eq!(r.status, 200);
                assert_eq!(
                    r.body,
                    format!("hello from {name} path=/v{v} request-on-connection=1")
                );
            });
        }
    }
    let mut done = 0;
    while let Some(result) = visits.join_next().await {
        result.unwrap();
        done += 1;
    }
    assert_eq!(done, usize::from(DEVICES) * VISITORS_PER_DEVICE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_that_stops_reading_does_not_stall_the_device() {
    let broker = TestBroker::start(1).await;
    let pi = broker.add_device("pi");
    let agent = TestAgent::start(&pi, &Targets::serving("pi").await);
    agent.wait_up(1).await;

    // Asks for an endless answer, reads the first bytes (it is on its way),
    // then stops reading: the tunnel fills up behind it.
    let mut stalled = tokio::net::TcpStream::connect(broker.http).await.unwrap();
    http::send_get(&mut stalled, "pi.localhost", "/endless")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    stalled.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));

    // Once the tunnel is full, the broker drops the visitor that made no
    // progress for the stall timeout (2 s in tests)...
    wait_for("the broker to drop the stalled visitor", DEADLINE, || {
        let log = broker.log();
        async move { log.contains("the peer stopped reading").then_some(()) }
    })
    .await;
    // ...and another visitor of the same device is served at once.
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        http::get(broker.http, "pi.localhost", "/other"),
    )
    .await
    .expect("the device is served again")
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("hello from pi path=/other"));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(stalled);
}
