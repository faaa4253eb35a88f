//! Owners' earnings and crypto payouts with a real agent and sandbox, the
//! billing period shortened to 2 s and the payout period to 2 s: an owner's
//! device earns from a rental; the owner says where to be paid (a mistyped
//! address is refused); the operator's export moves what is owed in flight
//! once per period, an import records it paid (twice is harmless, a
//! malformed line is named by its number); the owner's earnings page and
//! API, and the administrators' revenue page and API, show it; the ledger
//! sums to zero throughout.

mod common;

use common::api::{call, create_token};
use common::ledger::{balance, db};
use common::sandbox::{Cleanup, register_and_start};
use common::web::{WebClient, csrf_of, list_at, sign_in_admin, sign_up, testid};
use common::{DEADLINE, TestBroker, ledger, wait_for};

const CONFIG: &str = "[billing]\nenabled = true\nperiod_secs = 2\nfee_percent = 10\n\
                      [payouts]\nenabled = true\nperiod_secs = 2\nminimum = \"0.50\"\n";
const ADDRESS: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";

/// The markup from the element marked `data-testid="id"` to the next `end`.
fn upto<'a>(page: &'a str, id: &str, end: &str) -> &'a str {
    let start = page
        .find(&format!("data-testid=\"{id}\""))
        .unwrap_or_else(|| panic!("no {id} in {page}"));
    let rest = &page[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The row marked `data-testid="id"`.
fn row<'a>(page: &'a str, id: &str) -> &'a str {
    upto(page, id, "</tr>")
}

fn run(broker: &TestBroker, args: &[&str]) -> (bool, String, String) {
    let out = broker.run(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn set_method(
    owner: &mut WebClient,
    kind: &str,
    destination: &str,
) -> common::http::Response {
    let page = owner.get("/earnings").await;
    owner
        .post(
            "/earnings/method",
            &[
                ("csrf", &csrf_of(&page.body)),
                ("kind", kind),
                ("destination", destination),
            ],
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_is_paid_what_their_device_earned_once_per_period() {
    let name = "earn-pi";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start_with(1, CONFIG).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut renter = sign_up(broker.api, "renter@example.org").await;
    let (_device, _agent) = register_and_start(&broker, &mut owner, name).await;
    assert_eq!(list_at(&mut owner, name, true, "1").await.status, 200);

    // Where to be paid: a mistyped address is refused, a real one kept.
    let page = owner.get("/earnings").await;
    assert!(testid(&page.body, "payout-method").contains("not said where"));
    let typo = set_method(&mut owner, "crypto", &ADDRESS.replace('q', "p")).await;
    assert_eq!(typo.status, 422, "{}", typo.body);
    assert!(
        typo.body.contains("is not a Bitcoin address"),
        "{}",
        typo.body
    );
    let paypal = set_method(&mut owner, "paypal", "owner@example.org").await;
    assert_eq!(
        paypal.status, 422,
        "PayPal payouts are off: {}",
        paypal.body
    );
    let saved = set_method(&mut owner, "crypto", ADDRESS).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(testid(&saved.body, "payout-method").contains(ADDRESS));

    // A rental of three periods or so earns the owner 90 % of it.
    let out = broker.run(&[
        "admin",
        "credit",
        "renter@example.org",
        "20",
        "--reference",
        "b-1",
    ]);
    assert!(out.status.success());
    let home = renter.get("/").await;
    let r = renter
        .post("/rent", &[("csrf", &csrf_of(&home.body)), ("name", name)])
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_for("the owner to earn a period", DEADLINE, || async {
        (balance(&broker, "payable", None) >= 90).then_some(())
    })
    .await;
    let rentals = renter.get("/rentals").await;
    let stop = renter
        .post(
            "/rentals/stop",
            &[("csrf", &csrf_of(&rentals.body)), ("name", name)],
        )
        .await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    wait_for("billing to finish the rental", DEADLINE, || async {
        let closed: bool = db(&broker)
            .query_row(
                "SELECT billing_closed FROM rentals WHERE renter_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        closed.then_some(())
    })
    .await;
    let owed = balance(&broker, "payable", None);
    let fees = balance(&broker, "revenue", None);
    assert!(owed >= 90, "{owed}");
    let page = owner.get("/earnings").await;
    assert!(
        testid(&page.body, "payable").contains(&format!("{}.{:02} USD", owed / 100, owed % 100)),
        "{}",
        page.body
    );
    let by_day = upto(&page.body, "by-day", "</table>");
    assert!(by_day.contains(name), "{by_day}");

    // The export makes the payout once; a second lists the same line.
    let file = broker.dir.path().join("payouts.csv");
    let file_arg = file.to_str().unwrap();
    let (ok, _, err) = run(&broker, &["admin", "payouts", "export", "--out", file_arg]);
    assert!(ok, "{err}");
    assert!(
        err.contains("1 crypto payouts in flight (1 made now)"),
        "{err}"
    );
    let csv = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "payout,owner,address,currency,amount,amount_minor_units,period_start,status,transaction_id"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(&format!(",owner@example.org,{ADDRESS},USD,"))
            && lines[1].contains(&format!(",{owed},")),
        "{csv}"
    );
    assert_eq!(balance(&broker, "payable", None), 0);
    assert_eq!(balance(&broker, "payouts_in_flight", None), owed);
    let (ok, again, err) = run(&broker, &["admin", "payouts", "export"]);
    assert!(ok && err.contains("(0 made now)"), "{err}");
    assert_eq!(again, csv, "exporting again lists the same payout");
    assert_eq!(
        balance(&broker, "payouts_in_flight", None),
        owed,
        "and pays nothing twice"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // A malformed import names its lines and records nothing.
    let bad = format!(
        "{csv}po-9-9-USD,x,y,USD,1.00,100,1970-01-01,paid,tx\n{}",
        lines[1].replace(",,", ",sent,")
    );
    std::fs::write(&file, &bad).unwrap();
    let (ok, _, err) = run(&broker, &["admin", "payouts", "import", file_arg]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("line 3: no crypto payout \"po-9-9-USD\""),
        "{err}"
    );
    assert!(
        err.contains("line 4: status \"sent\" is neither paid nor failed"),
        "{err}"
    );
    assert_eq!(balance(&broker, "payouts_in_flight", None), owed);

    let filled = csv.replace(
        &lines[1].to_string(),
        &format!("{},paid,tx-4a5e1e", lines[1].trim_end_matches(',')),
    );
    std::fs::write(&file, &filled).unwrap();
    let (ok, out, err) = run(&broker, &["admin", "payouts", "import", file_arg]);
    assert!(ok && out.contains("1 paid, 0 failed"), "{out}{err}");
    let (ok, out, err) = run(&broker, &["admin", "payouts", "import", file_arg]);
    assert!(
        ok && out.contains("0 paid, 0 failed (payable again), 1 already recorded"),
        "{out}{err}"
    );
    assert_eq!(balance(&broker, "payouts_in_flight", None), 0);
    assert_eq!(balance(&broker, "clearing", None), -2000 + owed);
    assert_eq!(ledger::problems(&broker), 0, "the ledger is whole");

    // The owner sees it paid, on the page and through the API.
    let page = owner.get("/earnings").await;
    let id = lines[1].split(',').next().unwrap();
    let paid = row(&page.body, &format!("payout-{id}"));
    assert!(
        paid.contains("paid") && paid.contains("tx-4a5e1e"),
        "{paid}"
    );
    let token = create_token(&mut owner, "script").await;
    let api = call(broker.api, "GET", "/api/v1/earnings", Some(&token), None).await;
    assert_eq!(api.status, 200);
    assert_eq!(api.json["payouts"][0]["state"], "paid");
    assert_eq!(api.json["payouts"][0]["amount"], owed);
    assert_eq!(api.json["method"]["destination"], ADDRESS);
    assert_eq!(api.json["by_day"][0]["device"], name);
    let set = call(
        broker.api,
        "PUT",
        "/api/v1/earnings/method",
        Some(&token),
        Some(&serde_json::json!({"kind": "crypto", "destination": "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"})),
    )
    .await;
    assert_eq!(
        (set.status, &set.json["code"]),
        (422, &serde_json::json!("invalid_input"))
    );
    let renter_token = create_token(&mut renter, "script").await;
    let theirs = call(
        broker.api,
        "GET",
        "/api/v1/payouts",
        Some(&renter_token),
        None,
    )
    .await;
    assert_eq!(
        theirs.json["payouts"],
        serde_json::json!([]),
        "nobody else's payouts"
    );
    let revenue = call(
        broker.api,
        "GET",
        "/api/v1/admin/revenue",
        Some(&renter_token),
        None,
    )
    .await;
    assert_eq!(revenue.status, 404);

    // The administrators see the fees, nothing owed or in flight, and the payout.
    let mut admin = sign_in_admin(&broker, "root@example.org").await;
    let page = admin.get("/admin/revenue").await;
    assert_eq!(page.status, 200);
    assert!(
        row(&page.body, "revenue-USD").contains(&format!("{}.{:02}", fees / 100, fees % 100)),
        "{}",
        page.body
    );
    assert!(row(&page.body, "payable-USD").contains("0.00"));
    assert!(row(&page.body, "payouts-paid-USD").contains(&format!(
        "{}.{:02}",
        owed / 100,
        owed % 100
    )));
    assert_eq!(renter.get("/admin/revenue").await.status, 404);
    // The page's own export lists nothing in flight now.
    let export = admin
        .post("/admin/payouts/export", &[("csrf", &csrf_of(&page.body))])
        .await;
    assert_eq!(export.status, 200);
    assert_eq!(export.body.lines().count(), 1, "{}", export.body);
    // The page's import: the same file again changes nothing; a malformed
    // one names its line; to others the action does not exist.
    let again = admin
        .post(
            "/admin/payouts/import",
            &[("csrf", &csrf_of(&page.body)), ("csv", &filled)],
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(
        again
            .body
            .contains("0 paid, 0 failed (payable again), 1 already recorded"),
        "{}",
        again.body
    );
    let malformed = admin
        .post(
            "/admin/payouts/import",
            &[
                ("csrf", &csrf_of(&page.body)),
                ("csv", "payout,status,transaction_id\nx,paid,\"open\n"),
            ],
        )
        .await;
    assert_eq!(malformed.status, 422, "{}", malformed.body);
    assert!(
        malformed.body.contains("line 2: not CSV"),
        "{}",
        malformed.body
    );
    let home = renter.get("/").await;
    let theirs = renter
        .post(
            "/admin/payouts/import",
            &[("csrf", &csrf_of(&home.body)), ("csv", &filled)],
        )
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(balance(&broker, "clearing", None), -2000 + owed);
    assert_eq!(ledger::problems(&broker), 0, "the ledger is whole");
}
