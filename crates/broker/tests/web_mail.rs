//! Email from a real broker: password reset end to end through a local SMTP
//! server that requires the broker's login, over TLS to a server with a
//! private CA (and not without it), and the default outbox in the data
//! directory when no mail server is configured.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::smtp::{self, SmtpServer};
use common::web::{PASSWORD, WebClient, csrf_of, header, sign_up};
use common::{DEADLINE, TestBroker, wait_for};

const NEW_PASSWORD: &str = "new-Pass-4471";

/// Asks for a reset link for `email` from a fresh signed-out client.
async fn ask_for_reset(broker: &TestBroker, email: &str) -> common::http::Response {
    let mut c = WebClient::new(broker.api);
    let signin = c.get("/signin").await;
    assert!(
        signin.body.contains("href=\"/password/forgot\""),
        "the sign-in page links to the reset: {}",
        signin.body
    );
    let form = c.get("/password/forgot").await;
    assert_eq!(form.status, 200);
    c.post(
        "/password/forgot",
        &[("csrf", &csrf_of(&form.body)), ("email", email)],
    )
    .await
}

/// The path of the reset link in a message's text.
fn reset_path(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains("/password/reset/"))
        .unwrap_or_else(|| panic!("no reset link in {text}"));
    let start = line.find("/password/reset/").unwrap();
    line[start..].trim().to_string()
}

async fn wait_for_log(broker: &TestBroker, needle: &str) {
    wait_for(
        &format!("the broker to log {needle:?}"),
        DEADLINE,
        || async { broker.log().contains(needle).then_some(()) },
    )
    .await;
}

async fn sign_in(broker: &TestBroker, password: &str) -> u16 {
    let mut c = WebClient::new(broker.api);
    let form = c.get("/signin").await;
    c.post(
        "/signin",
        &[
            ("csrf", &csrf_of(&form.body)),
            ("email", "alice@example.org"),
            ("password", password),
        ],
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_password_is_reset_through_a_mailed_link_once() {
    let smtp = SmtpServer::start().await;
    let broker = TestBroker::start_with(1, &smtp.broker_config()).await;
    let mut old_browser = sign_up(broker.api, "alice@example.org").await;
    let api_token = common::api::create_token(&mut old_browser, "script").await;
    let me = |token: String| async move {
        common::api::call(broker.api, "GET", "/api/v1/me", Some(&token), None)
            .await
            .status
    };
    assert_eq!(me(api_token.clone()).await, 200);

    // An unknown address gets the same answer as a known one, and no mail.
    let unknown = ask_for_reset(&broker, "nobody@example.org").await;
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    wait_for_log(
        &broker,
        "password reset asked for an address with no account",
    )
    .await;
    let known = ask_for_reset(&broker, "Alice@Example.org").await;
    assert_eq!(known.status, 200);
    let strip = |body: &str, email: &str| body.replace(email, "ADDRESS");
    assert!(
        unknown
            .body
            .contains("If an account has the address nobody@example.org")
    );
    assert_eq!(
        strip(&unknown.body, "nobody@example.org"),
        strip(&known.body, "alice@example.org"),
        "the same page whether or not the account exists"
    );

    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(
        mail.login,
        (smtp::USERNAME.to_string(), smtp::PASSWORD.to_string()),
        "the broker authenticated with its login"
    );
    assert_eq!(mail.rcpt_to, ["alice@example.org"]);
    assert_eq!(mail.mail_from, smtp::FROM);
    assert_eq!(mail.headers["subject"], "Reset your password");
    assert!(mail.headers["to"].contains("alice@example.org"));
    let path = reset_path(&mail.text);
    assert!(
        mail.text.contains(&format!("http://{}{path}", broker.api)),
        "the link uses the public URL: {}",
        mail.text
    );
    assert!(
        !broker.log().contains(&path[16..]),
        "the token is never logged"
    );
    assert!(
        !broker.log().contains("alice@example.org"),
        "the mail log names the domain only"
    );

    // The link asks for a new password; the rules of sign-up apply.
    let mut c = WebClient::new(broker.api);
    let form = c.get(&path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("alice@example.org"));
    let token = &path["/password/reset/".len()..];
    let csrf = csrf_of(&form.body);
    let mut forged = WebClient::new(broker.api);
    let r = forged
        .post(
            "/password/reset",
            &[
                ("csrf", "0123456789abcdef"),
                ("token", token),
                ("password", NEW_PASSWORD),
                ("password_again", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "a form without its CSRF cookie is refused");
    let r = c
        .post(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", token),
                ("password", "password1"),
                ("password_again", "password1"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("among the first that attackers try"));
    let r = c
        .post(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", token),
                ("password", NEW_PASSWORD),
                ("password_again", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(header(&r, "location"), Some("/account"));
    let account = c.get("/account").await;
    assert_eq!(account.status, 200, "signed in afresh");
    assert!(account.body.contains("alice@example.org"));

    // Every earlier session and API token ended; only the new password works.
    assert_eq!(old_browser.get("/account").await.status, 303);
    assert_eq!(me(api_token).await, 401);
    assert_eq!(sign_in(&broker, PASSWORD).await, 401);
    assert_eq!(sign_in(&broker, NEW_PASSWORD).await, 303);

    // The link works once.
    let again = c.get(&path).await;
    assert_eq!(again.status, 404);
    assert!(again.body.contains("already used"), "{}", again.body);
    let r = c
        .post(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", token),
                ("password", "third-Pass-9182"),
                ("password_again", "third-Pass-9182"),
            ],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(sign_in(&broker, NEW_PASSWORD).await, 303);
    for unknown in [
        format!("/password/reset/{}", "0".repeat(64)),
        "/password/reset/x".into(),
    ] {
        assert_eq!(c.get(&unknown).await.status, 404, "{unknown}");
    }
    assert_eq!(smtp.received().len(), 1, "no mail for the unknown address");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_mail_server_the_link_is_written_to_the_outbox() {
    let broker = TestBroker::start(1).await;
    sign_up(broker.api, "alice@example.org").await;
    assert_eq!(
        ask_for_reset(&broker, "alice@example.org").await.status,
        200
    );
    let outbox = broker.data_dir().join("outbox");
    let file = wait_for("a message in the outbox", DEADLINE, || async {
        std::fs::read_dir(&outbox)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"))
    })
    .await;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the message holds a reset link");
    let (headers, text) = smtp::parse(&std::fs::read_to_string(&file).unwrap());
    assert!(headers["to"].contains("alice@example.org"));
    assert!(headers["from"].contains("noreply@localhost"), "{headers:?}");
    let path = reset_path(&text);
    wait_for_log(&broker, &format!("mail written to {}", file.display())).await;
    let mut c = WebClient::new(broker.api);
    assert_eq!(c.get(&path).await.status, 200, "the link works");
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_goes_over_tls_only_to_a_server_the_broker_trusts() {
    let smtp = SmtpServer::start_tls().await;
    let config = smtp.broker_config();
    let broker = TestBroker::start_with(1, &config).await;
    sign_up(broker.api, "alice@example.org").await;
    assert_eq!(
        ask_for_reset(&broker, "alice@example.org").await.status,
        200
    );
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.login.0, smtp::USERNAME);
    assert!(reset_path(&mail.text).starts_with("/password/reset/"));

    // Without the private CA the certificate is refused: nothing is sent,
    // the failure is logged with the domain only, and the page is the same.
    let untrusting: String = config
        .lines()
        .filter(|l| !l.starts_with("smtp_ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let other = TestBroker::start_with(1, &untrusting).await;
    sign_up(other.api, "bob@example.org").await;
    assert_eq!(ask_for_reset(&other, "bob@example.org").await.status, 200);
    wait_for_log(&other, "mail could not be sent").await;
    assert!(
        other.log().contains("to_domain=example.org"),
        "{}",
        other.log()
    );
    assert!(!other.log().contains("bob@example.org"));
    assert_eq!(smtp.received().len(), 1);
}
