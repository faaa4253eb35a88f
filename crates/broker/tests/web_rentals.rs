//! The design document's story over the web pages, with a real agent and
//! sandbox: an owner registers a device and lists it once it is verified; a
//! renter rents it, gets the credentials on the page and by mail, logs in
//! with them, and stops; two renters racing for one device get exactly one
//! rental, which an administrator ends. A listed device admits visitors only
//! while it is rented, and its stop cuts them.

mod common;

use common::TestBroker;
use common::sandbox::{
    self, Cleanup, RenterLogin, assert_port_refuses, assert_ran, register_and_start, renter_ssh,
};
use common::smtp::SmtpServer;
use common::web::{WebClient, csrf_of, list_at, sign_in_admin, sign_up, testid};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// What a visitor of the device's SSH port reads first: the sandbox's SSH
/// banner when the port admits them, nothing (reset or closed) otherwise.
async fn ssh_greeting(addr: SocketAddr) -> Option<(TcpStream, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the port answers or closes in time")
        .ok()?;
    (n > 0).then(|| (s, String::from_utf8_lossy(&buf[..n]).into_owned()))
}

/// Waits until the visitor connection `s` is closed by the broker.
async fn wait_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the live connection is cut when the rental stops");
}

/// Rents `name` with the form the marketplace shows, at the price it shows.
async fn rent(c: &mut WebClient, name: &str) -> common::http::Response {
    let home = c.get("/").await;
    let marker =
        format!("name=\"name\" value=\"{name}\"><input type=\"hidden\" name=\"rate\" value=\"");
    let rate = home.body.find(&marker).map(|i| {
        let start = i + marker.len();
        home.body[start..start + home.body[start..].find('"').unwrap()].to_string()
    });
    let csrf = csrf_of(&home.body);
    let mut fields = vec![("csrf", csrf.as_str()), ("name", name)];
    if let Some(rate) = &rate {
        fields.push(("rate", rate));
    }
    c.post("/rent", &fields).await
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_lists_renter_rents_logs_in_and_stops() {
    let name = "web-rent";
    let _cleanup = Cleanup::new(name);
    let smtp = SmtpServer::start().await;
    let broker = TestBroker::start_with(1, &smtp.broker_config()).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut renter = sign_up(broker.api, "renter@example.org").await;
    let (_device, _agent) = register_and_start(&broker, &mut owner, name).await;

    // Not listed yet: the marketplace does not show it, and the device is its
    // owner's own: its ports admit visitors.
    assert!(!renter.get("/").await.body.contains(name));
    let (mut owners_own, banner) = ssh_greeting(broker.port(name, "ssh"))
        .await
        .expect("an unlisted device's SSH port admits visitors");
    assert!(banner.starts_with("SSH-2.0-"), "{banner}");
    let bad = list_at(&mut owner, name, true, "1.234").await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("at most two decimals"));
    // Another owner cannot list it.
    let mut other = sign_up(broker.api, "other@example.org").await;
    assert_eq!(list_at(&mut other, name, true, "0.10").await.status, 404);
    let ok = list_at(&mut owner, name, true, "0.50").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("listed at 0.50 per hour"));
    // Listing it hands it to the market: the owner's live connection is cut.
    wait_closed(&mut owners_own).await;

    let market = renter.get("/").await;
    assert!(
        market.body.contains(name) && market.body.contains("0.50"),
        "{}",
        market.body
    );
    assert!(
        market.body.contains("1.00 cores, 256 MiB memory"),
        "measured figures shown: {}",
        market.body
    );

    // Listed and not rented: visitors get the "not rented" page and the
    // ports refuse.
    let host = format!("{name}.localhost");
    let page = common::http::get(broker.http, &host, "/").await.unwrap();
    assert_eq!(page.status, 503);
    assert!(
        page.body.contains("not rented") && page.body.contains(&format!("/market/{name}")),
        "{}",
        page.body
    );
    assert!(ssh_greeting(broker.port(name, "ssh")).await.is_none());

    // A form with a price the owner no longer asks rents nothing.
    let home = renter.get("/").await;
    assert!(
        home.body.contains("name=\"rate\" value=\"50\""),
        "the form carries the price shown"
    );
    let stale = renter
        .post(
            "/rent",
            &[
                ("csrf", &csrf_of(&home.body)),
                ("name", name),
                ("rate", "40"),
            ],
        )
        .await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(stale.body.contains("changed its price"), "{}", stale.body);
    assert!(sandbox::show(&broker, name)["rental"].is_null());
    // An owner does not rent their own device.
    let own = rent(&mut owner, name).await;
    assert_eq!(own.status, 409, "{}", own.body);
    assert!(own.body.contains("is your own device"), "{}", own.body);

    let r = rent(&mut renter, name).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let user = testid(&r.body, "username");
    let password = testid(&r.body, "password");
    let ssh = testid(&r.body, "ssh-command");
    let port = broker.port(name, "ssh").port();
    let (mut live, banner) = ssh_greeting(broker.port(name, "ssh"))
        .await
        .expect("a rented device's SSH port admits visitors");
    assert!(banner.starts_with("SSH-2.0-"), "{banner}");
    assert_eq!(ssh, format!("ssh -p {port} {user}@{name}.localhost"));
    let (http_url, https_url) = (testid(&r.body, "http-url"), testid(&r.body, "https-url"));
    assert_eq!(
        http_url,
        format!("http://{name}.localhost:{}/", broker.http.port())
    );

    // The same login arrives by mail, with the way to My rentals.
    assert!(
        r.body.contains("A copy was emailed to renter@example.org."),
        "{}",
        r.body
    );
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.rcpt_to, ["renter@example.org"]);
    assert_eq!(mail.headers["subject"], format!("Your login on {name}"));
    for shown in [
        format!("Username: {user}\n"),
        format!("Password: {password}\n"),
        format!("{ssh}\n"),
        format!("{http_url}\n"),
        format!("{https_url}\n"),
        format!("http://{}/rentals\n", broker.api),
    ] {
        assert!(mail.text.contains(&shown), "{shown:?} in {}", mail.text);
    }
    assert!(
        !broker.log().contains(&password),
        "the password is never logged"
    );
    let out = renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "id -un",
    );
    assert_eq!(assert_ran(&out, "renter login").trim(), user);

    // Rented: nobody else can rent it, and the renter sees the rental.
    let market = other.get("/").await;
    assert!(market.body.contains("rented"), "{}", market.body);
    assert_eq!(rent(&mut other, name).await.status, 409);
    let mine = renter.get("/rentals").await;
    assert!(mine.body.contains(&user) && mine.body.contains("active"));
    assert!(
        !mine.body.contains(&password),
        "the password is shown only once"
    );
    // Another person cannot stop it.
    let theirs = other.get("/rentals").await;
    let r = other
        .post(
            "/rentals/stop",
            &[("csrf", &csrf_of(&theirs.body)), ("name", name)],
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(sandbox::show(&broker, name)["rental"]["state"] == "active");

    let r = renter
        .post(
            "/rentals/stop",
            &[("csrf", &csrf_of(&mine.body)), ("name", name)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("its sandbox was wiped"));
    wait_closed(&mut live).await;
    let page = common::http::get(broker.http, &host, "/").await.unwrap();
    assert_eq!(page.status, 503, "closed again between rentals");
    // Between rentals the port admits no one, the old login included (that
    // the wipe removed the account is checked in sandbox_rentals).
    assert_port_refuses(&renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "true",
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_renters_racing_for_one_device_get_one_rental() {
    let name = "web-race";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let (_device, _agent) = register_and_start(&broker, &mut owner, name).await;
    assert_eq!(list_at(&mut owner, name, true, "1").await.status, 200);

    let mut a = sign_up(broker.api, "a@example.org").await;
    let mut b = sign_up(broker.api, "b@example.org").await;
    let (ha, hb) = (a.get("/").await, b.get("/").await);
    let (ca, cb) = (csrf_of(&ha.body), csrf_of(&hb.body));
    let (fa, fb) = (
        [("csrf", ca.as_str()), ("name", name)],
        [("csrf", cb.as_str()), ("name", name)],
    );
    let (ra, rb) = tokio::join!(a.post("/rent", &fa), b.post("/rent", &fb));
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "exactly one renter wins");
    let shown = sandbox::show(&broker, name);
    assert_eq!(shown["rental"]["state"], "active");
    let winner = if ra.status == 201 { &ra } else { &rb };
    assert_eq!(
        shown["rental"]["username"],
        testid(&winner.body, "username")
    );
    let loser = if ra.status == 201 { &rb } else { &ra };
    assert!(!loser.body.contains("data-testid=\"password\""));

    // An administrator ends the rental, with a reason the renter sees.
    let mut admin = sign_in_admin(&broker, "root@example.org").await;
    let page = admin.get("/admin").await;
    let marker = "name=\"rental\" value=\"";
    let start = page.body.find(marker).expect("the open rental's form") + marker.len();
    let rental = &page.body[start..start + page.body[start..].find('"').unwrap()];
    let r = admin
        .post(
            "/admin/rentals/end",
            &[
                ("csrf", &csrf_of(&page.body)),
                ("name", name),
                ("rental", rental),
                ("reason", "hardware check"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let winner_client = if ra.status == 201 { &mut a } else { &mut b };
    let mine = winner_client.get("/rentals").await;
    assert!(
        mine.body
            .contains("Ended by an administrator: hardware check"),
        "{}",
        mine.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_ends_a_rental_with_a_reason_and_removes_the_device() {
    let name = "web-end";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut renter = sign_up(broker.api, "renter@example.org").await;
    let mut stranger = sign_up(broker.api, "stranger@example.org").await;
    let (_device, _agent) = register_and_start(&broker, &mut owner, name).await;
    // 3600.00 per hour is 1.00 per second: any rental earns something.
    assert_eq!(list_at(&mut owner, name, true, "3600").await.status, 200);
    let page = owner.get("/devices").await;
    assert_eq!(testid(&page.body, &format!("earned-{name}")), "0.00");
    let uptime = testid(&page.body, &format!("uptime-{name}"));
    assert!(
        uptime.ends_with("%") && uptime != "0.0 % / 0.0 %",
        "connected since it was registered: {uptime}"
    );
    let r = rent(&mut renter, name).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (user, password) = (testid(&r.body, "username"), testid(&r.body, "password"));
    // While it runs, the rental earns its owner 1.00 a second.
    let earning = common::wait_for("the rental to earn", common::DEADLINE, || {
        let mut owner = WebClient {
            addr: owner.addr,
            cookies: owner.cookies.clone(),
        };
        async move {
            let page = owner.get("/devices").await;
            let earned = testid(&page.body, &format!("earned-{name}"));
            (earned != "0.00").then_some(earned)
        }
    })
    .await;

    // Only the owner can end it or remove the device.
    let page = stranger.get("/devices").await;
    let csrf = csrf_of(&page.body);
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", name),
        ("reason", "mine now"),
    ];
    assert_eq!(
        stranger.post("/devices/end-rental", &fields).await.status,
        404
    );
    assert_eq!(
        stranger.post("/devices/remove", &fields[..2]).await.status,
        404
    );
    assert_eq!(sandbox::show(&broker, name)["rental"]["state"], "active");

    let page = owner.get("/devices").await;
    assert!(
        page.body.contains(&user),
        "the owner sees the rental: {}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let r = owner
        .post(
            "/devices/end-rental",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("reason", "maintenance <tonight>"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let earned = testid(&r.body, &format!("earned-{name}"));
    assert!(
        earned.len() > earning.len() || (earned.len() == earning.len() && earned >= earning),
        "{earned} earned in all, at least the {earning} seen while it ran"
    );
    assert!(
        r.body.contains("from 1 rental"),
        "{}",
        testid(&r.body, "earnings-total")
    );
    let mine = renter.get("/rentals").await;
    assert!(
        mine.body
            .contains("Ended by the owner: maintenance &lt;tonight&gt;"),
        "{}",
        mine.body
    );
    assert_port_refuses(&renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "true",
    ));

    let r = owner
        .post("/devices/remove", &[("csrf", &csrf), ("name", name)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("is removed"));
    assert!(!broker.list().iter().any(|d| d["name"] == name));
    assert!(!owner.get("/devices").await.body.contains(name));
}
