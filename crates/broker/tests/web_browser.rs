//! The account pages in a real browser (headless chromium through
//! WebDriver): two people sign up, sign out, sign in, change a password, and
//! one registers a device the other does not see; the pages read on a
//! phone-sized screen. A screenshot of each page goes to
//! `target/screenshots/`.

mod common;

use common::TestBroker;
use common::browser::Browser;

const PASSWORD: &str = "vq7-Lmz2-pk9w";
const NEW_PASSWORD: &str = "new-Pass-4471";

#[tokio::test(flavor = "multi_thread")]
async fn two_people_sign_up_sign_in_and_change_a_password_in_a_browser() {
    let broker = TestBroker::start(1).await;
    let base = format!("http://{}", broker.api);
    let mut b = Browser::start("accounts").await;

    b.goto(&format!("{base}/")).await;
    b.wait_text("No devices are listed yet").await;
    b.shot("marketplace-signed-out").await;
    b.click("Sign up").await;
    b.wait_text("Create an account").await;
    b.shot("sign-up").await;

    // A refused password is explained, and the email typed stays.
    b.fill("email", "owner@example.org").await;
    b.fill("password", "password1").await;
    b.fill("password_again", "password1").await;
    b.click("Create account").await;
    b.wait_text("among the first that attackers try").await;
    b.shot("sign-up-weak-password").await;

    b.fill("password", PASSWORD).await;
    b.fill("password_again", PASSWORD).await;
    b.click("Create account").await;
    let text = b.wait_text("owner@example.org").await;
    assert!(text.contains("Sign out"), "{text}");
    assert_eq!(b.path().await, "/");
    b.shot("marketplace-signed-in").await;

    b.click("owner@example.org").await;
    b.wait_text("Change password").await;
    b.fill("current", PASSWORD).await;
    b.fill("password", NEW_PASSWORD).await;
    b.fill("password_again", NEW_PASSWORD).await;
    b.click("Change password").await;
    b.wait_text("Password changed").await;
    b.shot("password-changed").await;

    b.click("Sign out").await;
    b.wait_text("Sign in").await;
    assert!(!b.text().await.contains("owner@example.org"));
    b.click("Sign in").await;
    b.fill("email", "owner@example.org").await;
    b.fill("password", PASSWORD).await;
    b.click("Sign in").await;
    b.wait_text("Wrong email address or password").await;
    b.shot("sign-in-old-password").await;
    b.fill("password", NEW_PASSWORD).await;
    b.click("Sign in").await;
    b.wait_text("owner@example.org").await;
    b.shot("signed-in-again").await;

    // The owner registers a device and gets its token and config once.
    b.click("My devices").await;
    b.wait_text("No devices yet").await;
    b.shot("my-devices-empty").await;
    b.fill("name", "owners-pi").await;
    b.click("Register device").await;
    let text = b.wait_text("Save its token now").await;
    assert!(text.contains("rpb_"), "{text}");
    assert!(text.contains("Download device.json"));
    b.shot("device-registered").await;
    b.click("Back to my devices").await;
    let text = b.wait_text("owners-pi").await;
    assert!(text.contains("never connected"), "{text}");
    assert!(!text.contains("rpb_"), "the token is shown only once");
    b.shot("my-devices").await;

    // A second person, in a separate browser, has an account of their own.
    let mut other = Browser::start("accounts-second-person").await;
    other.goto(&format!("{base}/signup")).await;
    other.fill("email", "renter@example.org").await;
    other.fill("password", PASSWORD).await;
    other.fill("password_again", PASSWORD).await;
    other.click("Create account").await;
    let text = other.wait_text("renter@example.org").await;
    assert!(!text.contains("owner@example.org"));
    other.shot("second-person-signed-in").await;
    other.click("My devices").await;
    let text = other.wait_text("No devices yet").await;
    assert!(
        !text.contains("owners-pi"),
        "one owner's devices are not another's"
    );

    // Readable on a phone: no sideways scrolling.
    b.resize(390, 844).await;
    for path in ["/", "/account", "/devices", "/signin"] {
        b.goto(&format!("{base}{path}")).await;
        assert!(
            !b.overflows_horizontally().await,
            "{path} scrolls sideways on a phone"
        );
    }
    b.goto(&format!("{base}/account")).await;
    b.shot("account-on-a-phone").await;
}

/// The whole story in two browsers, with a real agent and sandbox: the owner
/// registers a device and lists it once the broker verified it; the renter
/// rents it, sees the login, logs in with a stock OpenSSH client, and stops;
/// the device shows "not rented" to visitors and returns to the market.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_lists_a_device_and_a_renter_rents_it_in_a_browser() {
    use common::sandbox::{
        self, Cleanup, RenterLogin, assert_port_refuses, assert_ran, renter_ssh,
    };
    use common::{Device, TestAgent};
    use fantoccini::Locator;

    let name = "browser-pi";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let base = format!("http://{}", broker.api);

    let mut owner = Browser::start("story-owner").await;
    owner.goto(&format!("{base}/signup")).await;
    owner.fill("email", "owner@example.org").await;
    owner.fill("password", PASSWORD).await;
    owner.fill("password_again", PASSWORD).await;
    owner.click("Create account").await;
    owner.wait_text("owner@example.org").await;
    owner.click("My devices").await;
    owner.fill("name", name).await;
    owner.click("Register device").await;
    owner.wait_text("Save its token now").await;
    owner.shot("device-registered").await;
    // The agent runs with the config the page gave.
    let json = owner
        .client
        .find(Locator::Css("[data-testid='agent-config']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&json).unwrap();
    config["sandbox"]["image"] = sandbox::image().into();
    config["sandbox"]["memory_mb"] = 256.into();
    let path = broker.dir.path().join("browser-pi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let device = Device {
        name: name.into(),
        token: config["token"].as_str().unwrap().into(),
        config: path,
    };
    // My devices follows the device without a reload: it connects, its
    // sandbox comes up and the broker verifies it.
    owner.click("Back to my devices").await;
    owner.wait_text("never connected").await;
    let agent = TestAgent::start_as_configured(&device);
    agent.wait_up(1).await;
    sandbox::wait_verified_idle(&broker, name).await;
    let page = owner.wait_text("verified").await;
    assert!(page.contains("online"), "{page}");
    owner.shot("device-verified-live").await;
    owner.fill("rate", "0.75").await;
    owner
        .client
        .find(Locator::Css("input[name='listed']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    owner.click("Save").await;
    owner.wait_text("listed at 0.75 per hour").await;
    owner.shot("device-listed").await;

    let mut renter = Browser::start("story-renter").await;
    renter.goto(&format!("{base}/signup")).await;
    renter.fill("email", "renter@example.org").await;
    renter.fill("password", PASSWORD).await;
    renter.fill("password_again", PASSWORD).await;
    renter.click("Create account").await;
    let market = renter.wait_text(name).await;
    assert!(market.contains("0.75"), "{market}");
    renter.shot("marketplace-with-device").await;
    renter.click("Rent").await;
    renter.wait_text("Save the password now").await;
    renter.shot("rental-credentials").await;
    let read = |id: &'static str| {
        let client = renter.client.clone();
        async move {
            client
                .find(Locator::Css(&format!("[data-testid='{id}']")))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let (user, password) = (read("username").await, read("password").await);
    let out = renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "echo in-the-sandbox",
    );
    assert_eq!(assert_ran(&out, "renter login").trim(), "in-the-sandbox");

    renter.click("My rentals").await;
    renter.wait_text("active").await;
    renter.shot("my-rentals").await;
    let stopped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    renter.click("Stop").await;
    renter.wait_text("its sandbox was wiped").await;
    renter.shot("rental-stopped").await;
    // Between rentals the device admits no one: its ports reset, and its
    // address shows where to rent it.
    assert_port_refuses(&renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "true",
    ));
    renter
        .goto(&format!("http://{name}.localhost:{}/", broker.http.port()))
        .await;
    renter.wait_text("not rented").await;
    renter.shot("device-not-rented").await;
    // Verified again after the wipe, it is back on the market.
    sandbox::wait_verified_since(&broker, name, stopped_at).await;
    renter.goto(&base).await;
    let market = renter.wait_text(name).await;
    assert!(
        market.lines().any(|l| l.trim() == "Rent"),
        "available again: {market}"
    );
    renter.shot("marketplace-after-the-rental").await;
}
