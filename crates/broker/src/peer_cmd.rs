//! The `rpibroker peer …` commands: invite a broker to peer, accept an
//! invite, list and remove peers, rotate this broker's federation key, show
//! the statement with a peer, correct a lease's cost. They work on the
//! store and key file directly, whether or not the broker is running;
//! `accept` and `statement` also call the peer.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::broker::create_private_dir;
use crate::cli::PeerCommand;
use crate::federation::client::{self, http_client};
use crate::federation::identity::KeyRing;
use crate::federation::metering::{self, Issuer, Payment};
use crate::federation::peering::{self, Invite};
use crate::federation::server::own_document;
use crate::federation::settlement;
use crate::federation::url::Origin;
use crate::federation::usage::{ChainHead, Statement, month_span};
use crate::federation::wire::STATEMENT_PATH;
use crate::ledger::Currency;
use crate::price::{parse_price, show_price};
use crate::settings::Settings;
use crate::store::{Direction, LeaseTotal, PeerRecord, Removal, Store};
use crate::time::UnixTime;

pub async fn run(settings: &Settings, command: PeerCommand) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir)?;
    let store = Store::open(&settings.database_path()).context("opening the database")?;
    let now = UnixTime::now();
    let mut ring = KeyRing::load_or_create(&settings.data_dir, now)?;
    match command {
        PeerCommand::Invite {
            credit_limit,
            currency,
            valid_hours,
        } => {
            let limit = parse_price(&credit_limit)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("the credit limit")?;
            let currency = Currency::parse(&currency)?;
            let own = own_document(settings, &ring, now);
            let invite = peering::create_invite(
                &store,
                &own,
                &ring,
                limit,
                currency.as_str(),
                Duration::from_secs(u64::from(valid_hours.clamp(1, 24 * 30)) * 3600),
                now,
            )?;
            eprintln!(
                "Give this invite to the other broker's operator, who runs `rpibroker peer accept INVITE`.\nIt works once, within {valid_hours} hours; the peer may owe up to {} {currency}.",
                show_price(limit)
            );
            println!("{}", invite.encode());
            Ok(())
        }
        PeerCommand::Accept { invite } => {
            let invite = Invite::decode(&invite).map_err(anyhow::Error::msg)?;
            let own = own_document(settings, &ring, now);
            let peer = peering::accept(&store, &http_client(), &ring, &own, &invite)
                .await
                .context("accepting the invite")?;
            println!(
                "{} ({}) is now a peer: it may owe up to {} {}.",
                peer.name,
                peer.base_url,
                show_price(peer.credit_limit),
                peer.currency
            );
            Ok(())
        }
        PeerCommand::List { json } => {
            let peers = store.peers()?;
            if json {
                let list: Vec<_> = peers
                    .iter()
                    .map(|p| {
                        json!({
                            "name": p.name,
                            "url": p.base_url,
                            "state": if p.active { "active" } else { "removed" },
                            "credit_limit": p.credit_limit,
                            "currency": p.currency,
                            "keys": p.keys,
                            "added_at": p.added_at,
                            "removed_at": p.removed_at,
                            "last_pull_ok_at": p.last_pull_ok_at,
                            "missed_pulls": p.missed_pulls,
                            "balance": p.balance,
                            "usage_checked_at": p.usage_checked_at,
                            "usage_problem": p.usage_problem,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if peers.is_empty() {
                println!("No peers. Invite one with `rpibroker peer invite`.");
                return Ok(());
            }
            println!(
                "{:<24} {:<8} {:>14} {:>14} {:<32} LAST PULL",
                "NAME", "STATE", "CREDIT LIMIT", "BALANCE", "URL"
            );
            for p in peers {
                let pulled = match (p.last_pull_ok_at, p.missed_pulls) {
                    (_, n) if n > 0 => format!("{n} missed"),
                    (Some(at), _) => UnixTime(at).ago(now),
                    (None, _) => "never".into(),
                };
                println!(
                    "{:<24} {:<8} {:>14} {:>14} {:<32} {pulled}",
                    p.name,
                    if p.active { "active" } else { "removed" },
                    format!("{} {}", show_price(p.credit_limit), p.currency),
                    show_price(p.balance),
                    p.base_url
                );
                if let Some(problem) = &p.usage_problem {
                    println!("  usage records: {problem}");
                }
            }
            Ok(())
        }
        PeerCommand::Remove { name } => {
            match store.remove_peer(&name, now)? {
                Removal::Removed(id) => settlement::close_removed(&store, id, now)?,
                Removal::NoSuchPeer => bail!("no active peer called {name}"),
                Removal::OpenLeases(n) => bail!(
                    "{n} leases with {name} are open; they must end first (renters stop theirs; `rpibroker rental stop DEVICE` ends one of this broker's devices)"
                ),
            }
            println!(
                "{name} is no longer a peer: its requests are refused and its devices left the marketplace."
            );
            Ok(())
        }
        PeerCommand::Statement {
            name,
            month,
            json,
            offline,
        } => {
            let peer = find_peer(&store, &name)?;
            let asked = Asked {
                month: month.as_deref(),
                json,
                offline,
            };
            statement(settings, &store, &ring, &peer, asked, now).await
        }
        PeerCommand::Correct {
            name,
            lease,
            amount,
            reason,
        } => {
            let peer = find_peer(&store, &name)?;
            let (negative, digits) = match amount.trim().strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, amount.trim()),
            };
            let cents = parse_price(digits)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("the amount")?;
            let cents = if negative { -cents } else { cents };
            let reason = reason.trim();
            if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
                bail!("--reason is 1 to 500 characters on one line");
            }
            let issuer = Issuer {
                name: &settings.federation.name,
                ring: &ring,
                fee_percent: settings.billing.fee_percent,
            };
            match metering::correct(&store, &issuer, peer.id, &lease, cents, reason, now)? {
                Ok(seq) => {
                    println!(
                        "Record {seq} to {name}: lease {lease} {} {} {}. {name} books it when it next pulls usage records.",
                        if cents > 0 { "costs" } else { "is credited" },
                        show_price(cents.abs()),
                        settings.billing.currency
                    );
                    Ok(())
                }
                Err(why) => bail!("{why}"),
            }
        }
        PeerCommand::Settle {
            name,
            received,
            reference,
        } => {
            let peer = find_peer(&store, &name)?;
            let cents = parse_price(&received)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("the amount received")?;
            let reference = reference.trim();
            let reference_ok = !reference.is_empty()
                && reference.len() <= 100
                && reference.bytes().all(|b| b.is_ascii_graphic());
            if cents == 0 || !reference_ok {
                bail!(
                    "the amount is above zero, and --reference is 1 to 100 printable characters without spaces"
                );
            }
            let issuer = Issuer {
                name: &settings.federation.name,
                ring: &ring,
                fee_percent: settings.billing.fee_percent,
            };
            match metering::record_payment(&store, &issuer, &peer, cents, reference, now)? {
                Payment::Recorded(seq) => println!(
                    "Recorded {} {} received from {name} ({reference}) as record {seq}; {name} books it when it next pulls usage records.",
                    show_price(cents),
                    peer.currency
                ),
                Payment::Already => {
                    println!(
                        "A payment {reference} from {name} was recorded before; nothing changed."
                    )
                }
            }
            Ok(())
        }
        PeerCommand::RotateKey { keep_old_hours } => {
            let old = ring.current().0.to_string();
            let keep = Duration::from_secs(u64::from(keep_old_hours) * 3600);
            let new = ring.rotate(now, keep)?;
            println!(
                "New federation key {new}; the old key {old} stays published for {keep_old_hours} hours."
            );
            Ok(())
        }
    }
}

fn find_peer(store: &Store, name: &str) -> anyhow::Result<PeerRecord> {
    store
        .peers()?
        .into_iter()
        .find(|p| p.name == name)
        .with_context(|| format!("no peer called {name}; `rpibroker peer list` shows them"))
}

/// Asks `peer` for its statement with this broker (of `month`).
async fn their_statement(
    ring: &KeyRing,
    peer: &PeerRecord,
    month: Option<&str>,
) -> anyhow::Result<Statement> {
    let origin = Origin::parse(&peer.base_url).map_err(anyhow::Error::msg)?;
    let keys = peer.keys.clone();
    let key_of = move |id: &str| keys.iter().find(|k| k.keyid == id).cloned();
    let answer = client::call(
        &http_client(),
        ring,
        &origin,
        axum::http::Method::GET,
        &match month {
            Some(m) => format!("{STATEMENT_PATH}?month={m}"),
            None => STATEMENT_PATH.to_string(),
        },
        Vec::new(),
        None,
        &key_of,
    )
    .await?;
    serde_json::from_slice(&answer.body).context("the peer's statement")
}

/// How one chain looks from its two ends: differences, and records one end
/// has not pulled yet.
fn compare_chain(
    what: &str,
    sender: &ChainHead,
    receiver: &ChainHead,
    differences: &mut Vec<String>,
    pending: &mut Vec<String>,
) {
    if receiver.seq < sender.seq {
        pending.push(format!(
            "{what}: records {} to {} are not pulled yet",
            receiver.seq + 1,
            sender.seq
        ));
    } else if receiver.seq > sender.seq {
        differences.push(format!(
            "{what}: the receiver has {} records, the sender issued {}",
            receiver.seq, sender.seq
        ));
    } else if receiver.hash != sender.hash || receiver.total != sender.total {
        differences.push(format!(
            "{what}: record {} differs (totals {} and {})",
            sender.seq,
            show_price(sender.total),
            show_price(receiver.total)
        ));
    }
}

fn print_leases(title: &str, head: &ChainHead, leases: &[LeaseTotal]) {
    println!("{title} ({} records):", head.seq);
    if leases.is_empty() {
        println!("  none");
        return;
    }
    println!(
        "  {:<24} {:<24} {:>6} {:>11} {:>12}  STATE",
        "LEASE", "DEVICE", "HOURS", "CORRECTIONS", "AMOUNT"
    );
    for l in leases {
        let (lease, state) = if l.lease.is_empty() {
            ("payments", "")
        } else {
            (l.lease.as_str(), if l.ended { "ended" } else { "running" })
        };
        println!(
            "  {:<24} {:<24} {:>6} {:>11} {:>12}  {state}",
            lease,
            l.device,
            l.periods,
            l.corrections,
            show_price(l.total),
        );
    }
    println!(
        "  {:<24} {:<24} {:>6} {:>11} {:>12}",
        "total",
        "",
        "",
        "",
        show_price(head.total)
    );
}

/// What the operator asked of `peer statement`.
struct Asked<'a> {
    month: Option<&'a str>,
    json: bool,
    offline: bool,
}

async fn statement(
    settings: &Settings,
    store: &Store,
    ring: &KeyRing,
    peer: &PeerRecord,
    asked: Asked<'_>,
    now: UnixTime,
) -> anyhow::Result<()> {
    let Asked {
        month,
        json,
        offline,
    } = asked;
    let name = peer.name.as_str();
    let own_name = &settings.federation.name;
    let currency = &settings.billing.currency;
    let ours = Statement::of(store, own_name, peer.id, currency, month, now)?
        .map_err(anyhow::Error::msg)?;
    let span = month
        .map(month_span)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let issued = store.lease_totals(Direction::Issued, peer.id, span)?;
    let received = store.lease_totals(Direction::Received, peer.id, span)?;
    let theirs = if offline {
        None
    } else {
        Some(
            their_statement(ring, peer, month)
                .await
                .map_err(|e| e.to_string()),
        )
    };
    let mut differences = Vec::new();
    let mut pending = Vec::new();
    if let Some(Ok(t)) = &theirs {
        compare_chain(
            &format!("records {own_name} issued"),
            &ours.issued,
            &t.received,
            &mut differences,
            &mut pending,
        );
        compare_chain(
            &format!("records {name} issued"),
            &t.issued,
            &ours.received,
            &mut differences,
            &mut pending,
        );
        if t.currency != ours.currency {
            differences.push(format!(
                "currencies differ: {} and {}",
                ours.currency, t.currency
            ));
        } else if month.is_none()
            && pending.is_empty()
            && differences.is_empty()
            && t.balance != -ours.balance
        {
            differences.push(format!(
                "balances differ: {own_name} has {}, {name} has {}",
                show_price(ours.balance),
                show_price(t.balance)
            ));
        }
    }
    if json {
        let out = json!({
            "broker": own_name,
            "peer": name,
            "month": month,
            "ours": ours,
            "theirs": match &theirs { Some(Ok(t)) => json!(t), _ => json!(null) },
            "peer_error": match &theirs { Some(Err(e)) => json!(e), _ => json!(null) },
            "leases_run_by_peer": received.iter().map(lease_json).collect::<Vec<_>>(),
            "leases_run_for_peer": issued.iter().map(lease_json).collect::<Vec<_>>(),
            "differences": differences,
            "pending": pending,
            "agrees": match &theirs { Some(Ok(_)) => json!(differences.is_empty()), _ => json!(null) },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        match month {
            Some(m) => println!(
                "Statement between {own_name} and {name} in {currency} for {m} (records issued then), made {}",
                now.date_time()
            ),
            None => println!(
                "Statement between {own_name} and {name} in {currency}, {}",
                now.date_time()
            ),
        }
        println!();
        print_leases(
            &format!("Leases {name} runs for renters here"),
            &ours.received,
            &received,
        );
        print_leases(
            &format!("Leases this broker runs for {name}'s renters"),
            &ours.issued,
            &issued,
        );
        println!();
        match ours.balance {
            0 => println!("Balance now: nothing is owed either way."),
            b if b > 0 => println!(
                "Balance: this broker owes {name} {} {currency}.",
                show_price(b)
            ),
            b => println!(
                "Balance: {name} owes this broker {} {currency}.",
                show_price(-b)
            ),
        }
        if let Some(problem) = &peer.usage_problem {
            println!("Last pull of {name}'s records found a problem: {problem}");
        }
        match &theirs {
            None => {}
            Some(Err(e)) => println!("{name}'s statement could not be fetched: {e}"),
            Some(Ok(_)) if differences.is_empty() && pending.is_empty() => {
                println!("{name}'s statement agrees.")
            }
            Some(Ok(_)) if differences.is_empty() => {
                println!("{name}'s statement agrees so far; {}.", pending.join("; "))
            }
            Some(Ok(_)) => println!("{name}'s statement differs: {}.", differences.join("; ")),
        }
    }
    if !differences.is_empty() {
        bail!("the statements of {own_name} and {name} differ");
    }
    if let Some(Err(e)) = theirs {
        bail!("{name}'s statement could not be fetched: {e}");
    }
    Ok(())
}

fn lease_json(l: &LeaseTotal) -> serde_json::Value {
    json!({
        "lease": l.lease,
        "device": l.device,
        "hours": l.periods,
        "corrections": l.corrections,
        "amount": l.total,
        "ended": l.ended,
    })
}
