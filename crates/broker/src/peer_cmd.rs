//! The `rpibroker peer …` commands: invite a broker to peer, accept an
//! invite, list and remove peers, rotate this broker's federation key.
//! They work on the store and key file directly, whether or not the broker
//! is running; `accept` also calls the inviting broker.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::broker::create_private_dir;
use crate::cli::PeerCommand;
use crate::federation::client::http_client;
use crate::federation::identity::KeyRing;
use crate::federation::peering::{self, Invite};
use crate::federation::server::own_document;
use crate::ledger::Currency;
use crate::price::{parse_price, show_price};
use crate::settings::Settings;
use crate::store::Store;
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
                "{:<24} {:<8} {:>14} {:<32} LAST PULL",
                "NAME", "STATE", "CREDIT LIMIT", "URL"
            );
            for p in peers {
                let pulled = match (p.last_pull_ok_at, p.missed_pulls) {
                    (_, n) if n > 0 => format!("{n} missed"),
                    (Some(at), _) => UnixTime(at).ago(now),
                    (None, _) => "never".into(),
                };
                println!(
                    "{:<24} {:<8} {:>14} {:<32} {pulled}",
                    p.name,
                    if p.active { "active" } else { "removed" },
                    format!("{} {}", show_price(p.credit_limit), p.currency),
                    p.base_url
                );
            }
            Ok(())
        }
        PeerCommand::Remove { name } => {
            if !store.remove_peer(&name, now)? {
                bail!("no active peer called {name}");
            }
            println!(
                "{name} is no longer a peer: its requests are refused and its devices left the marketplace."
            );
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
