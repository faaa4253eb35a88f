//! The `rpibroker admin …` commands: create administrators, lift sign-in
//! locks, suspend accounts. They work on the store directly, like the device
//! commands.

use std::io::BufRead;

use anyhow::{Context, bail};

use crate::accounts::{self, AccountError};
use crate::broker::create_private_dir;
use crate::cli::AdminCommand;
use crate::settings::Settings;
use crate::store::Store;
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
