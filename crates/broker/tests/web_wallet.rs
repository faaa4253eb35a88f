//! The wallet and the ledger: the operator credits a wallet with money
//! received outside the broker, once per reference; the person sees the
//! balance and the movement, nobody else does, and the administrators'
//! ledger check shows every currency summing to zero.

mod common;

use common::TestBroker;
use common::web::{WebClient, header, sign_in_admin, sign_up, testid};

fn credit(broker: &TestBroker, args: &[&str]) -> (bool, String) {
    let mut all = vec!["admin", "credit"];
    all.extend_from_slice(args);
    let out = broker.run(&all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credit_shows_in_its_wallet_only_and_the_ledger_sums_to_zero() {
    let broker = TestBroker::start(1).await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let mut bob = sign_up(broker.api, "bob@example.org").await;
    let empty = alice.get("/wallet").await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("No money has moved"), "{}", empty.body);

    let (ok, text) = credit(
        &broker,
        &["alice@example.org", "12.50", "--reference", "bank-1"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("credited 12.50 USD"), "{text}");
    let (ok, text) = credit(
        &broker,
        &["Alice@example.org", "12.50", "--reference", "bank-1"],
    );
    assert!(
        ok && text.contains("already credited"),
        "a retry credits nothing: {text}"
    );
    assert!(text.contains("holds 12.50 USD"), "{text}");
    let (ok, text) = credit(
        &broker,
        &["alice@example.org", "99", "--reference", "bank-1"],
    );
    assert!(!ok && text.contains("already posted"), "{text}");
    for bad in [
        vec!["nobody@example.org", "1", "--reference", "x"],
        vec!["alice@example.org", "1.234", "--reference", "y"],
        vec!["alice@example.org", "0", "--reference", "z"],
        vec!["alice@example.org", "1", "--reference", "has space"],
    ] {
        let (ok, text) = credit(&broker, &bad);
        assert!(!ok, "{bad:?}: {text}");
    }

    let page = alice.get("/wallet").await;
    let row = page
        .body
        .split("data-testid=\"balance-wallet-USD\"")
        .nth(1)
        .expect("a wallet balance in USD");
    assert!(
        row[..row.find("</tr>").unwrap()].contains("12.50 USD"),
        "{}",
        page.body
    );
    assert!(page.body.contains("reference bank-1"));
    let csv = alice.get("/wallet.csv").await;
    assert_eq!(csv.status, 200);
    assert_eq!(
        header(&csv, "content-type"),
        Some("text/csv; charset=utf-8")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines[0],
        "time_unix,account,currency,amount_minor_units,amount,transfer,memo"
    );
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(
        lines[1].contains(",wallet,USD,1250,12.50,credit:manual:bank-1,"),
        "{}",
        lines[1]
    );
    let theirs = bob.get("/wallet").await;
    assert!(!theirs.body.contains("12.50"), "{}", theirs.body);
    assert_eq!(
        bob.get("/wallet.csv").await.body.lines().count(),
        1,
        "only the header"
    );
    assert_eq!(WebClient::new(broker.api).get("/wallet").await.status, 303);

    let mut admin = sign_in_admin(&broker, "root@example.org").await;
    let overview = admin.get("/admin").await;
    assert!(
        testid(&overview.body, "ledger-state").contains("The ledger is whole"),
        "{}",
        overview.body
    );
    let row = overview
        .body
        .split("data-testid=\"ledger-USD\"")
        .nth(1)
        .unwrap();
    let cells: Vec<&str> = row
        .split("<td>")
        .skip(1)
        .take(4)
        .map(|c| &c[..c.find('<').unwrap()])
        .collect();
    assert_eq!(
        cells,
        ["USD", "0", "2", "1"],
        "sum zero over two accounts, one transfer"
    );
}
