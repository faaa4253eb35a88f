//! The web pages' accounts over plain HTTP against a real broker: sign-up,
//! sign-in, sign-out, password change; CSRF, cookies, escaping, throttling
//! and expiry as an attacker would probe them.

mod common;

use common::TestBroker;
use common::web::{PASSWORD, WebClient, csrf_of, header, sign_up};

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_sign_out_sign_in_and_change_password() {
    let broker = TestBroker::start(1).await;
    let mut c = sign_up(broker.api, "Alice@Example.org").await;
    let home = c.get("/").await;
    assert!(
        home.body.contains("alice@example.org"),
        "signed in: {}",
        home.body
    );
    assert!(home.body.contains("No devices are listed yet"));

    // The session cookie is HttpOnly and SameSite, and pages are not cached
    // or framed.
    let mut fresh = WebClient::new(broker.api);
    let form = fresh.get("/signin").await;
    let csrf = csrf_of(&form.body);
    // A session id someone planted beforehand is not the one signed in.
    let planted = "a".repeat(64);
    fresh.cookies.insert("rpb_session".into(), planted.clone());
    let r = fresh
        .post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", "alice@example.org"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let set = header(&r, "set-cookie").unwrap();
    assert!(set.starts_with("rpb_session="), "{set}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert_ne!(
        fresh.cookies["rpb_session"], c.cookies["rpb_session"],
        "a new session id at every sign-in"
    );
    assert_ne!(
        fresh.cookies["rpb_session"], planted,
        "the planted id is replaced"
    );
    let mut attacker = WebClient::new(broker.api);
    attacker.cookies.insert("rpb_session".into(), planted);
    assert_eq!(
        attacker.get("/account").await.status,
        303,
        "the planted id signs in no one"
    );
    let page = fresh.get("/account").await;
    assert_eq!(header(&page, "cache-control"), Some("no-store"));
    assert_eq!(header(&page, "x-frame-options"), Some("DENY"));
    assert!(
        header(&page, "content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );

    // Password change keeps this browser and signs out the other.
    let csrf = csrf_of(&page.body);
    let r = fresh
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("password", "new-Pass-4471"),
                ("password_again", "new-Pass-4471"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Password changed"));
    assert_eq!(fresh.get("/account").await.status, 200);
    let other = c.get("/account").await;
    assert_eq!(other.status, 303, "the other browser is signed out");
    assert_eq!(header(&other, "location"), Some("/signin"));

    // Sign out ends the session on the server, not just in the browser.
    let stolen = fresh.cookies["rpb_session"].clone();
    let page = fresh.get("/account").await;
    let r = fresh
        .post("/signout", &[("csrf", &csrf_of(&page.body))])
        .await;
    assert_eq!(r.status, 303);
    let mut replay = WebClient::new(broker.api);
    replay.cookies.insert("rpb_session".into(), stolen);
    assert_eq!(replay.get("/account").await.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_the_right_csrf_token_or_from_another_site_are_refused() {
    let broker = TestBroker::start(1).await;
    let mut c = sign_up(broker.api, "bob@example.org").await;
    let page = c.get("/account").await;
    let csrf = csrf_of(&page.body);
    let change = |token: &str| {
        vec![
            ("csrf".to_string(), token.to_string()),
            ("current".to_string(), PASSWORD.to_string()),
            ("password".to_string(), "evil-Pass-9921".to_string()),
            ("password_again".to_string(), "evil-Pass-9921".to_string()),
        ]
    };
    for token in ["", "0000", &csrf[..csrf.len() - 1]] {
        let fields = change(token);
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = c.post("/account/password", &fields).await;
        assert_eq!(r.status, 403, "token {token:?}");
    }
    let fields = change(&csrf);
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = c
        .post_with(
            "/account/password",
            &fields,
            "Origin: https://evil.example\r\n",
        )
        .await;
    assert_eq!(r.status, 403, "another site's origin");
    // None of that changed the password.
    let mut again = WebClient::new(broker.api);
    let form = again.get("/signin").await;
    let r = again
        .post(
            "/signin",
            &[
                ("csrf", &csrf_of(&form.body)),
                ("email", "bob@example.org"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303);

    // Every signed-in form refuses a forged token, and changes nothing.
    for (path, fields) in [
        ("/rent", vec![("name", "any")]),
        ("/rentals/stop", vec![("name", "any")]),
        (
            "/devices/listing",
            vec![("name", "any"), ("rate", "1"), ("listed", "on")],
        ),
        ("/devices", vec![("name", "forged-pi")]),
        ("/signout", vec![]),
    ] {
        let mut with_token = vec![("csrf", "forged")];
        with_token.extend(fields);
        let r = c.post(path, &with_token).await;
        assert_eq!(r.status, 403, "{path}");
    }
    assert_eq!(c.get("/account").await.status, 200, "still signed in");
    assert!(!broker.list().iter().any(|d| d["name"] == "forged-pi"));

    // Signed-out forms need the token that matches their cookie.
    let mut anon = WebClient::new(broker.api);
    let r = anon
        .post(
            "/signup",
            &[
                ("csrf", "forged"),
                ("email", "mallory@example.org"),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_explains_its_refusals_and_escapes_what_it_echoes() {
    let broker = TestBroker::start(1).await;
    let mut c = WebClient::new(broker.api);
    let form = c.get("/signup").await;
    let csrf = csrf_of(&form.body);
    let attempt = |email: &'static str, p1: &'static str, p2: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("email", email.into()),
            ("password", p1.into()),
            ("password_again", p2.into()),
        ]
    };
    for (fields, expect) in [
        (
            attempt("carol@example.org", "password1", "password1"),
            "among the first that attackers try",
        ),
        (attempt("carol@example.org", "short", "short"), "at least 8"),
        (
            attempt("carol@example.org", PASSWORD, "different-Pass-1"),
            "The two passwords differ",
        ),
        (
            attempt("<script>alert(1)</script>", PASSWORD, PASSWORD),
            "Not a usable email address",
        ),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = c.post("/signup", &fields).await;
        assert_eq!(r.status, 422, "{expect}");
        assert!(r.body.contains(expect), "{expect}: {}", r.body);
        assert!(
            !r.body.contains("<script>alert(1)"),
            "echoed input is escaped"
        );
        assert!(!c.cookies.contains_key("rpb_session"));
    }
    sign_up(broker.api, "dave@example.org").await;
    let taken = {
        let fields = attempt("DAVE@example.org", PASSWORD, PASSWORD);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        c.post("/signup", &fields).await
    };
    assert_eq!(taken.status, 422);
    assert!(taken.body.contains("already exists"));
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_a_password_is_slowed_then_blocked() {
    let broker = TestBroker::start(1).await;
    sign_up(broker.api, "erin@example.org").await;
    let mut c = WebClient::new(broker.api);
    let form = c.get("/signin").await;
    let csrf = csrf_of(&form.body);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let guess = format!("guess-{i}-password");
        let r = c
            .post(
                "/signin",
                &[
                    ("csrf", &csrf),
                    ("email", "erin@example.org"),
                    ("password", &guess),
                ],
            )
            .await;
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    // Locked: even the right password waits now.
    let r = c
        .post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", "erin@example.org"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("try again later"), "{}", r.body);
    // An unknown address gets the same answer as a wrong password.
    let r = c
        .post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", "nobody@example.org"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong email address or password"));
    // From one address, many accounts cannot be tried without limit either.
    let mut limited = false;
    for i in 0..30 {
        let email = format!("user{i}@example.org");
        let r = c
            .post(
                "/signin",
                &[("csrf", &csrf), ("email", &email), ("password", PASSWORD)],
            )
            .await;
        if r.status == 429 {
            assert!(r.body.contains("from your address"));
            limited = true;
            break;
        }
    }
    assert!(limited, "the per-address limit applies");
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_register_devices_and_see_only_their_own() {
    let broker = TestBroker::start(1).await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let mut bob = sign_up(broker.api, "bob@example.org").await;

    let list = alice.get("/devices").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("No devices yet"));
    let r = alice
        .post(
            "/devices",
            &[("csrf", &csrf_of(&list.body)), ("name", "alice-pi")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The token is shown once, with a ready agent config for a sandbox.
    let token_at = r.body.find("rpb_").expect("the token is shown");
    let token = &r.body[token_at..token_at + 68];
    assert!(
        token.bytes().skip(4).all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    assert!(r.body.contains("&quot;sandbox&quot;"), "{}", r.body);
    assert!(r.body.contains("download=\"device.json\""));
    let again = alice.get("/devices").await;
    assert!(again.body.contains("alice-pi"));
    assert!(again.body.contains("never connected"));
    assert!(!again.body.contains(token), "the token is not shown again");

    // The device exists for the broker, and the token shown is its token.
    let mut s = tokio::net::TcpStream::connect(broker.api).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        format!("GET /api/v1/device HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let status = common::http::read_response(&mut s).await.unwrap();
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(
        status.body.contains("\"name\":\"alice-pi\""),
        "{}",
        status.body
    );

    // Bob sees none of it, cannot take the name, and names are checked.
    let bobs = bob.get("/devices").await;
    assert!(!bobs.body.contains("alice-pi"));
    let csrf = csrf_of(&bobs.body);
    let taken = bob
        .post("/devices", &[("csrf", &csrf), ("name", "alice-pi")])
        .await;
    assert_eq!(taken.status, 422);
    assert!(taken.body.contains("is taken"));
    let bad = bob
        .post("/devices", &[("csrf", &csrf), ("name", "<b>pi</b>")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(!bad.body.contains("<b>pi</b>"), "escaped");
    assert!(bad.body.contains("&lt;b&gt;pi&lt;/b&gt;"));
    // Without the session's token, nothing is registered.
    let forged = bob
        .post("/devices", &[("csrf", "x"), ("name", "bob-pi")])
        .await;
    assert_eq!(forged.status, 403);
    assert!(!broker.list().iter().any(|d| d["name"] == "bob-pi"));
    // Signed out, the page asks to sign in.
    let mut anon = WebClient::new(broker.api);
    let r = anon.get("/devices").await;
    assert_eq!(r.status, 303);
    assert_eq!(header(&r, "location"), Some("/signin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_registers_a_bounded_number_of_devices() {
    let broker = TestBroker::start(1).await;
    let mut c = sign_up(broker.api, "hoarder@example.org").await;
    let csrf = csrf_of(&c.get("/devices").await.body);
    for i in 0..20 {
        let name = format!("box-{i}");
        let r = c
            .post("/devices", &[("csrf", &csrf), ("name", &name)])
            .await;
        assert_eq!(r.status, 201, "{name}");
    }
    let r = c
        .post("/devices", &[("csrf", &csrf), ("name", "box-20")])
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("at most 20 devices"), "{}", r.body);
    assert!(!broker.list().iter().any(|d| d["name"] == "box-20"));
}

/// Signs in `email` from a fresh client; returns the response.
async fn sign_in(
    broker: &TestBroker,
    email: &str,
    password: &str,
) -> (WebClient, common::http::Response) {
    common::web::sign_in(broker.api, email, password).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_suspends_reinstates_and_unlocks_accounts() {
    let broker = TestBroker::start(1).await;
    let mut frank = sign_up(broker.api, "frank@example.org").await;
    assert_eq!(frank.get("/account").await.status, 200);

    let out = broker.run(&["admin", "suspend", "Frank@example.org"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(frank.get("/account").await.status, 303, "the session ended");
    let (_, r) = sign_in(&broker, "frank@example.org", PASSWORD).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("suspended"), "{}", r.body);
    let out = broker.run(&["admin", "unsuspend", "frank@example.org"]);
    assert!(out.status.success());
    let (_, r) = sign_in(&broker, "frank@example.org", PASSWORD).await;
    assert_eq!(r.status, 303);

    for _ in 0..6 {
        sign_in(&broker, "frank@example.org", "wrong-password-1").await;
    }
    let (_, r) = sign_in(&broker, "frank@example.org", PASSWORD).await;
    assert_eq!(r.status, 429, "locked");
    let out = broker.run(&["admin", "unlock", "frank@example.org"]);
    assert!(out.status.success());
    let (_, r) = sign_in(&broker, "frank@example.org", PASSWORD).await;
    assert_eq!(r.status, 303, "unlocked");

    let missing = broker.run(&["admin", "suspend", "nobody@example.org"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account"));
}

/// A form whose body never arrives in full is answered 408 within the body
/// deadline instead of holding the handler, and the broker keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_never_arrives_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = TestBroker::start(1).await;
    let mut s = tokio::net::TcpStream::connect(broker.api).await.unwrap();
    s.write_all(
        b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("answered within the body deadline")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(WebClient::new(broker.api).get("/signin").await.status, 200);
}
