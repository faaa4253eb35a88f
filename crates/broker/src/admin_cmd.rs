//! The `rpibroker admin …` commands: create administrators, lift sign-in
//! locks, suspend accounts, credit wallets with money received outside the
//! broker, export and import crypto payouts. They work on the store directly, like the device commands.

use std::io::BufRead;

use anyhow::{Context, bail};

use crate::accounts::{self, AccountError};
use crate::broker::create_private_dir;
use crate::cli::{AdminCommand, PayoutsCommand};
use crate::ledger::{Account, Currency, Transfer, TransferId};
use crate::settings::Settings;
use crate::store::{Posted, Store};
use crate::time::UnixTime;

pub fn run(settings: &Settings, command: AdminCommand) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir)?;
    let store = Store::open(&settings.database_path()).context("opening the database")?;
    match command {
        AdminCommand::Create {
            email,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                let first = rpassword::prompt_password("Password: ")
                    .context("reading the password from the terminal (or use --password-stdin)")?;
                let again = rpassword::prompt_password("Password again: ")?;
                if first != again {
                    bail!("the two passwords differ; nothing was created");
                }
                first
            };
            match accounts::create(&store, &email, &password, true, UnixTime::now()) {
                Ok(user) => {
                    println!(
                        "Administrator {} created (account {}).",
                        user.email, user.id
                    );
                    Ok(())
                }
                Err(
                    e @ (AccountError::BadEmail(_)
                    | AccountError::EmailTaken
                    | AccountError::WeakPassword(_)),
                ) => {
                    bail!("{e}; nothing was created")
                }
                Err(e) => Err(e.into()),
            }
        }
        AdminCommand::Unlock { email } => {
            let email = accounts::normalize_email(&email)?;
            store.clear_login_failures(&email)?;
            println!("Sign-in for {email} is unlocked and its failure count cleared.");
            Ok(())
        }
        AdminCommand::Suspend { email } => {
            let email = accounts::normalize_email(&email)?;
            if !store.set_suspended(&email, Some(UnixTime::now().0))? {
                bail!("no account with the email address {email}");
            }
            println!("{email} is suspended: its sessions ended and it cannot sign in.");
            Ok(())
        }
        AdminCommand::Credit {
            email,
            amount,
            reference,
            currency,
        } => credit(&store, &email, &amount, &reference, &currency),
        AdminCommand::Payouts(command) => payouts(&store, settings, command),
        AdminCommand::Unsuspend { email } => {
            let email = accounts::normalize_email(&email)?;
            if !store.set_suspended(&email, None)? {
                bail!("no account with the email address {email}");
            }
            println!("{email} can sign in again.");
            Ok(())
        }
    }
}

/// Credits `email`'s wallet from the `manual` clearing account, once per
/// reference.
fn credit(
    store: &Store,
    email: &str,
    amount: &str,
    reference: &str,
    currency: &str,
) -> anyhow::Result<()> {
    let email = accounts::normalize_email(email)?;
    let Some(user) = store.user_by_email(&email)? else {
        bail!("no account with the email address {email}");
    };
    let cents = crate::price::parse_price(amount)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the amount")?;
    if cents == 0 {
        bail!("the amount must be more than zero");
    }
    let currency = Currency::parse(currency)?;
    let id = TransferId::derive("credit:manual", &[reference])
        .context("the reference (printable ASCII without spaces, at most about 100 characters)")?;
    let transfer = Transfer::simple(
        id,
        currency.clone(),
        &format!("credit from the operator, reference {reference}"),
        Account::Clearing("manual".into()),
        Account::Wallet(user.id),
        cents,
    )?;
    let shown = format!("{} {currency}", crate::price::show_price(cents));
    match store.post(&transfer, UnixTime::now())? {
        Posted::Now => println!("{email}'s wallet is credited {shown} (reference {reference})."),
        Posted::Already => println!("Reference {reference} was already credited; nothing changed."),
    }
    let balance = store.balance(&Account::Wallet(user.id), &currency)?;
    println!(
        "{email}'s wallet holds {} {currency}.",
        crate::price::show_price(balance)
    );
    Ok(())
}

/// Largest payout import read.
const MAX_IMPORT_BYTES: u64 = 16 * 1024 * 1024;

fn payouts(store: &Store, settings: &Settings, command: PayoutsCommand) -> anyhow::Result<()> {
    use crate::payouts::crypto::{self, CryptoError};
    let now = UnixTime::now();
    match command {
        PayoutsCommand::Export { out } => {
            let (csv, made) = crypto::export(store, &settings.payouts, now)?;
            let lines = csv.lines().count() - 1;
            match out {
                Some(path) => {
                    crate::private_file::write(&path, csv.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "{} written: {lines} crypto payouts in flight ({made} made now).",
                        path.display()
                    );
                }
                None => {
                    print!("{csv}");
                    eprintln!("{lines} crypto payouts in flight ({made} made now).");
                }
            }
            Ok(())
        }
        PayoutsCommand::Import { file } => {
            use std::io::Read;
            let mut text = String::new();
            std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?
                .take(MAX_IMPORT_BYTES + 1)
                .read_to_string(&mut text)
                .with_context(|| format!("reading {} (UTF-8 CSV)", file.display()))?;
            if text.len() as u64 > MAX_IMPORT_BYTES {
                bail!("{} is larger than {MAX_IMPORT_BYTES} bytes", file.display());
            }
            let done = match crypto::import(store, &text, now) {
                Err(CryptoError::Malformed(problems)) => bail!(
                    "{}: nothing was recorded:\n{}",
                    file.display(),
                    problems.join("\n")
                ),
                other => other?,
            };
            println!(
                "{} paid, {} failed (payable again), {} already recorded, {} still pending.",
                done.paid, done.failed, done.unchanged, done.pending
            );
            if !done.refused.is_empty() {
                bail!("{}", done.refused.join("\n"));
            }
            Ok(())
        }
    }
}
