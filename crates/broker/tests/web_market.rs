//! The marketplace as visitors see it, against a real broker: owners
//! register devices on the web, their agents' handshakes report what the
//! hardware claims, and the owners set prices with the listing form; a
//! visitor then filters and sorts the listing, opens device pages, and meets
//! clear messages for bad filters and unknown devices.

mod common;

use common::TestBroker;
use common::web::{WebClient, csrf_of, sign_up};
use serde_json::{Value, json};

/// Registers `name` for `owner` on the web; returns its device token.
async fn register(owner: &mut WebClient, name: &str) -> String {
    let list = owner.get("/devices").await;
    let r = owner
        .post(
            "/devices",
            &[("csrf", &csrf_of(&list.body)), ("name", name)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let marker = "data-testid=\"device-token\">";
    let start = r.body.find(marker).unwrap() + marker.len();
    r.body[start..start + r.body[start..].find('<').unwrap()].to_string()
}

/// The handshake an agent on this hardware makes.
async fn handshake(broker: &TestBroker, token: &str, hardware: Value) {
    let body = json!({ "token": token, "hardware": hardware });
    let r = common::http::post(broker.api, "/api/v1/connect", body.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn list_at(owner: &mut WebClient, name: &str, rate: &str) {
    let r = common::web::list_at(owner, name, true, rate).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Records a passed verification of `name`'s sandbox as the broker writes
/// it after measuring (measuring needs Docker; the sandbox tests cover it).
fn record_verification(broker: &TestBroker, name: &str, measured: Value) {
    let db = rusqlite::Connection::open(broker.data_dir().join("broker.sqlite")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 3 * 3600;
    let changed = db
        .execute(
            "INSERT INTO verifications (device_id, at, verdict, claimed, measured, reasons)
             SELECT id, ?2, 'verified', '{}', ?3, '' FROM devices WHERE name = ?1",
            rusqlite::params![name, at, measured.to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// The device names of a marketplace page, top to bottom.
fn rows(page: &str) -> Vec<String> {
    page.split("href=\"/market/")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

const GIB: u64 = 1 << 30;

/// Four listed devices and one unlisted, all offline:
///
/// | device   | arch    | cores | memory | disk    | price | verified |
/// |----------|---------|-------|--------|---------|-------|----------|
/// | no-hw    | -       | -     | -      | -       | 0.10  | no       |
/// | nuc      | x86_64  | 8     | 16 GiB | 256 GiB | 1.50  | no       |
/// | pi-big   | aarch64 | 4     | 8 GiB  | 60 GiB measured (64 claimed) | 0.50 | yes |
/// | pi-small | aarch64 | 4     | 2 GiB  | 32 GiB  | 0.20  | no       |
async fn seeded_market() -> (TestBroker, WebClient) {
    let broker = TestBroker::start(6).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let hardware = [
        (
            "pi-small",
            json!({ "arch": "aarch64", "cpu_cores": 4, "memory_bytes": 2 * GIB, "disk_bytes": 32 * GIB,
                    "cpu_model": "<script>alert(1)</script> Cortex-A72" }),
            "0.20",
        ),
        (
            "pi-big",
            json!({ "arch": "aarch64", "cpu_cores": 4, "memory_bytes": 8 * GIB, "disk_bytes": 64 * GIB,
                    "cpu_model": "Cortex-A76", "board": "Raspberry Pi 5 Model B" }),
            "0.50",
        ),
        (
            "nuc",
            json!({ "arch": "x86_64", "cpu_cores": 8, "memory_bytes": 16 * GIB, "disk_bytes": 256 * GIB }),
            "1.50",
        ),
    ];
    for (name, hw, rate) in hardware {
        let token = register(&mut owner, name).await;
        handshake(&broker, &token, hw).await;
        list_at(&mut owner, name, rate).await;
    }
    register(&mut owner, "no-hw").await;
    list_at(&mut owner, "no-hw", "0.10").await;
    register(&mut owner, "unlisted").await;
    record_verification(
        &broker,
        "pi-big",
        json!({ "cpu_millicores": 4000, "memory_bytes": 8 * GIB, "disk_bytes": 60 * GIB,
                "cpu_sha256_kib_s": 409_600, "memory_copy_kib_s": 2_097_152, "disk_write_kib_s": 51_200 }),
    );
    (broker, owner)
}

#[tokio::test(flavor = "multi_thread")]
async fn visitors_filter_and_sort_the_listing() {
    let (broker, _owner) = seeded_market().await;
    let mut visitor = WebClient::new(broker.api);

    let home = visitor.get("/").await;
    assert_eq!(home.status, 200);
    assert_eq!(rows(&home.body), ["no-hw", "nuc", "pi-big", "pi-small"]);
    assert!(!home.body.contains("unlisted"));
    assert!(home.body.contains("4 devices match."), "{}", home.body);
    // Offline devices are listed, but nobody can rent them.
    assert_eq!(home.body.matches("offline").count(), 4, "{}", home.body);
    assert!(!home.body.contains("Sign in to rent"));
    assert!(
        home.body
            .contains("4.00 cores, 8192 MiB memory, 60 GiB disk")
    );
    assert!(home.body.contains("? cores, ? MiB memory, ? GiB disk"));

    let cases: [(&str, &[&str]); 12] = [
        ("sort=price", &["no-hw", "pi-small", "pi-big", "nuc"]),
        (
            "sort=price&order=desc",
            &["nuc", "pi-big", "pi-small", "no-hw"],
        ),
        (
            "sort=memory&order=desc",
            &["nuc", "pi-big", "pi-small", "no-hw"],
        ),
        ("sort=disk", &["pi-small", "pi-big", "nuc", "no-hw"]),
        (
            "sort=cores&order=desc",
            &["nuc", "pi-big", "pi-small", "no-hw"],
        ),
        ("order=desc", &["pi-small", "pi-big", "nuc", "no-hw"]),
        ("min_cores=6", &["nuc"]),
        ("arch=aarch64&sort=price", &["pi-small", "pi-big"]),
        ("min_price=0.2&max_price=0.50", &["pi-big", "pi-small"]),
        ("min_memory=4&min_disk=50", &["nuc", "pi-big"]),
        // pi-big claims 64 GiB of disk but measured 60: measured counts.
        ("min_disk=61", &["nuc"]),
        ("verified=on", &["pi-big"]),
    ];
    for (query, expected) in cases {
        let page = visitor.get(&format!("/?{query}")).await;
        assert_eq!(page.status, 200, "{query}");
        assert_eq!(rows(&page.body), expected, "{query}: {}", page.body);
    }

    // The form shows the filters in force.
    let page = visitor.get("/?min_cores=6&arch=x86_64&verified=on").await;
    assert!(page.body.contains("name=\"min_cores\" value=\"6\""));
    assert!(page.body.contains("<option value=\"x86_64\" selected>"));
    assert!(page.body.contains("name=\"verified\" value=\"on\" checked"));

    // Nothing matches: an empty state with a way back.
    for query in [
        "available=on",
        "min_uptime=90",
        "arch=riscv64",
        "max_price=0.05",
    ] {
        let page = visitor.get(&format!("/?{query}")).await;
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains("No device matches these filters."),
            "{query}: {}",
            page.body
        );
        assert!(page.body.contains("<a href=\"/\">Clear the filters</a>"));
        assert!(rows(&page.body).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filters_are_explained_not_refused() {
    let (broker, _owner) = seeded_market().await;
    let mut visitor = WebClient::new(broker.api);

    let page = visitor
        .get("/?min_cores=lots&sort=colour&arch=%3Cscript%3E&min_price=2&max_price=1&sort=price")
        .await;
    assert_eq!(page.status, 200);
    for message in [
        "The minimum of cores \u{201c}lots\u{201d} was ignored: a number of cores like 2 or 0.5.",
        "The sort order \u{201c}colour\u{201d} was ignored",
        "The sort order was given more than once",
        "The lowest price is above the highest",
        "The architecture \u{201c}&lt;script&gt;\u{201d} was ignored",
    ] {
        assert!(page.body.contains(message), "{message}: {}", page.body);
    }
    assert!(!page.body.contains("<script>"));
    // What could not be read is left out; the listing still shows.
    assert_eq!(rows(&page.body), ["no-hw", "nuc", "pi-big", "pi-small"]);

    let long = format!("/?arch={}", "a".repeat(3000));
    let page = visitor.get(&long).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("none of it was applied"));
    assert_eq!(rows(&page.body).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_pages_show_claims_measurements_and_why_not_available() {
    let (broker, _owner) = seeded_market().await;
    let mut visitor = WebClient::new(broker.api);

    let big = visitor.get("/market/pi-big").await;
    assert_eq!(big.status, 200, "{}", big.body);
    for shown in [
        "<h1>pi-big</h1>",
        "Not available now: offline.",
        "data-testid=\"price\">0.50<",
        "<th>Disk, GiB</th><td>64</td><td>60</td>",
        "<th>Memory, MiB</th><td>8192</td><td>8192</td>",
        "Raspberry Pi 5 Model B",
        "Cortex-A76",
        "data-testid=\"verdict\">verified, 3h ago.",
        "400.0 MiB/s",
        "2048.0 MiB/s",
        "50.0 MiB/s",
        // Never connected: no uptime.
        "data-testid=\"uptime\">0.0 % over 7 days, 0.0 % over 30 days<",
    ] {
        assert!(big.body.contains(shown), "{shown}: {}", big.body);
    }
    assert!(
        !big.body.contains("action=\"/rent\""),
        "offline: no rent form"
    );

    // A signed-in renter sees the same reason, and no rent button.
    let mut renter = sign_up(broker.api, "renter@example.org").await;
    let small = renter.get("/market/pi-small").await;
    assert_eq!(small.status, 200);
    assert!(small.body.contains("Not available now: offline."));
    assert!(
        small
            .body
            .contains("data-testid=\"verdict\">Not verified yet.")
    );
    assert!(!small.body.contains("action=\"/rent\""));
    // The claims are shown escaped.
    assert!(
        small
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; Cortex-A72"),
        "{}",
        small.body
    );
    assert!(!small.body.contains("<script>"));
    // Renting it anyway is refused with the reason.
    let r = renter
        .post(
            "/rent",
            &[("csrf", &csrf_of(&small.body)), ("name", "pi-small")],
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("pi-small cannot be rented now: offline."));

    // Each market row links to its page.
    let home = visitor.get("/").await;
    assert!(home.body.contains("<a href=\"/market/nuc\">"));

    for path in [
        "/market/unlisted",
        "/market/nope",
        "/market/%3Cb%3Ebold",
        "/market/%FF",
    ] {
        let r = visitor.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(
            r.body.contains("is on the marketplace") && r.body.contains("Back to the marketplace"),
            "{path}: {}",
            r.body
        );
        assert!(!r.body.contains("<b>"), "{path}");
    }
    let r = visitor.get("/market/%3Cb%3Ebold").await;
    assert!(r.body.contains("&lt;b&gt;bold"), "{}", r.body);
}
