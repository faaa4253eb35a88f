//! The `rpibroker` command line: `serve`, and the `device`, `rental`, `admin`
//! and `peer` commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use rpibroker_wire::DeviceName;

use crate::settings::SettingsArgs;

/// rpibroker: turn small computers behind home routers into rentable servers.
///
/// `rpibroker serve` runs the broker: the SSH tunnel endpoint devices connect
/// to, the public HTTP/HTTPS edge, and the API. `rpibroker device …` manages
/// devices in the same data directory, whether or not the broker is running.
#[derive(Debug, Parser)]
#[command(name = "rpibroker", version, propagate_version = true)]
pub struct Cli {
    /// Data directory: database, SSH host key, runtime files
    /// [default: $XDG_DATA_HOME/rpibroker or ~/.local/share/rpibroker].
    #[arg(long, env = "RPIBROKER_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// TOML config file [default: rpibroker.toml in the data directory, if present].
    #[arg(long, env = "RPIBROKER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker until Ctrl-C or SIGTERM.
    Serve,
    /// Register and manage devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Rent a device's sandbox and end the rental (needs a running broker).
    #[command(subcommand)]
    Rental(RentalCommand),
    /// Manage the broker's administrators.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Federate with other brokers: invite, accept, list, remove peers.
    #[command(subcommand)]
    Peer(PeerCommand),
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Make a one-time invite for another broker to become a peer; prints
    /// the invite (this broker's URL, name and key, and a secret).
    Invite {
        /// How much the peer may owe this broker, like 100.00.
        #[arg(long, default_value = "0")]
        credit_limit: String,
        /// ISO 4217 code of the currency the two brokers settle in.
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Hours the invite can be used in.
        #[arg(long, default_value_t = 24)]
        valid_hours: u32,
    },
    /// Accept another broker's invite: calls that broker (which must be
    /// reachable), and both become peers of each other.
    Accept {
        /// The invite, as printed by `rpibroker peer invite` on the other broker.
        invite: String,
    },
    /// List peers with their terms, the balance with each (positive: this
    /// broker owes it), and how their last pulls went.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop peering with a broker: its requests are refused and its devices
    /// leave the marketplace.
    Remove { name: String },
    /// Make a new federation key; the old one stays published (and valid)
    /// for a while so peers can verify what it signed.
    RotateKey {
        /// Hours the old key stays valid.
        #[arg(long, default_value_t = 168)]
        keep_old_hours: u32,
    },
    /// Show the statement between this broker and a peer: the leases each
    /// ran for the other's renters, their usage records, and what one owes
    /// the other. Unless --offline, the peer's own statement is fetched and
    /// compared; the command fails if they differ.
    Statement {
        name: String,
        /// Only the records issued in this month (UTC), like 2026-11; both
        /// brokers count a record in the month its issuer issued it.
        #[arg(long)]
        month: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Do not ask the peer for its statement.
        #[arg(long)]
        offline: bool,
    },
    /// Record a payment received from a peer outside the brokers (a bank
    /// transfer, say): it owes that much less, and a record tells it so.
    /// Recording the same reference again changes nothing.
    Settle {
        /// The peer that paid.
        name: String,
        /// The amount received, like 120.00, in the currency settled with
        /// the peer.
        #[arg(long)]
        received: String,
        /// What identifies the payment, e.g. the bank transfer's reference.
        #[arg(long)]
        reference: String,
    },
    /// Correct what a lease this broker runs for a peer cost: a new usage
    /// record the peer books (charging or crediting its renter), borne by
    /// this broker's revenue.
    Correct {
        /// The peer the lease is for.
        name: String,
        /// The lease id (lse-…).
        lease: String,
        /// What to add, like 1.50, or to credit, like -1.50.
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        /// Why, shown to the peer and its renter.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an administrator account (the first one is made this way).
    ///
    /// Asks for the password twice on the terminal, or reads one line from
    /// standard input with --password-stdin. Passwords are 8 to 64
    /// characters and may not be among the commonly used ones.
    Create {
        email: String,
        /// Read the password from standard input (one line) instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lift the sign-in lock of an email address (after too many failures).
    Unlock { email: String },
    /// Suspend an account: its sessions end and it cannot sign in.
    Suspend { email: String },
    /// Let a suspended account sign in again.
    Unsuspend { email: String },
    /// Pay owners who chose a crypto address: export what is owed, import
    /// what was paid.
    #[command(subcommand)]
    Payouts(PayoutsCommand),
    /// Credit an account's wallet with money received outside the broker's
    /// payment providers (a bank transfer, cash).
    ///
    /// The reference names the payment: crediting the same reference again
    /// changes nothing, so a retry never credits twice.
    Credit {
        email: String,
        /// The amount, like 12.50.
        amount: String,
        /// What identifies the payment, e.g. the bank transfer's reference.
        #[arg(long)]
        reference: String,
        /// ISO 4217 code of the currency.
        #[arg(long, default_value = "USD")]
        currency: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PayoutsCommand {
    /// Write a CSV of what is owed to owners who chose a crypto address.
    ///
    /// Owners owed at least the minimum ([payouts] minimum) get a payout
    /// for the payout period that ended last: their money moves to payouts
    /// in flight, once per period, so exporting again lists the same lines
    /// and never pays twice. The CSV lists every crypto payout still in
    /// flight, with empty status and transaction_id columns. Send the
    /// amounts, fill those in (paid with the transaction id, or failed),
    /// and import the file.
    Export {
        /// Write the CSV to FILE (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Record what happened to exported crypto payouts, from the export's
    /// CSV with status (paid or failed) and transaction_id filled in.
    ///
    /// A paid line moves its money out of payouts in flight; a failed one
    /// puts it back in the owner's payable, to be paid next period. Lines
    /// with an empty status are left in flight. Nothing is recorded if any
    /// line is malformed (each is reported with its line number), and
    /// importing a file again changes nothing.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RentalCommand {
    /// Provision fresh credentials in the device's sandbox and print them.
    ///
    /// Running it again while the rental is being set up finishes that
    /// rental and prints the same credentials.
    Start {
        device: DeviceName,
        /// Also let this OpenSSH public key file log in (repeatable).
        #[arg(long, value_name = "FILE")]
        ssh_key: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End the device's rental: the sandbox is wiped and verified again.
    Stop { device: DeviceName },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device; prints its token (once) and a ready agent config.
    Add {
        /// Device name; also its subdomain (<name>.<domain>) and SSH user name.
        name: DeviceName,
        /// Also let the device log in with this OpenSSH public key file.
        #[arg(long, value_name = "FILE")]
        ssh_key: Option<PathBuf>,
        /// Write the agent config to FILE (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        config_out: Option<PathBuf>,
        /// Print one JSON object (device, token, agent_config) instead of text.
        #[arg(long)]
        json: bool,
        /// The device rents out a sandbox in Docker: the agent config gets a
        /// "sandbox" section (image, limits) for the owner to adjust.
        #[arg(long)]
        sandbox: bool,
    },
    /// List devices with their state, ports and hardware.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one device: connection, sandbox, claimed and verified hardware,
    /// last verification, current rental.
    Show {
        name: DeviceName,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure the device's idle sandbox now and compare with its claims
    /// (needs a running broker).
    Verify {
        name: DeviceName,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set the CPU, memory and disk limits of the device's sandbox; the
    /// agent recreates the idle sandbox under them (needs a running broker;
    /// refused while the device is rented).
    Limits {
        name: DeviceName,
        /// CPU cores, fractions allowed (`1.5`).
        #[arg(long)]
        cpus: String,
        /// Memory in MiB, at least 64.
        #[arg(long, value_name = "MIB")]
        memory_mb: String,
        /// Disk in GiB, where Docker's storage driver can enforce it; no limit when left out.
        #[arg(long, value_name = "GIB")]
        disk_gb: Option<String>,
    },
    /// Remove a device: its token stops working, its tunnel is cut, its ports are freed.
    Remove { name: DeviceName },
    /// Give a device a new token; the old one stops working and its tunnel is cut.
    Revoke {
        name: DeviceName,
        /// Write the new agent config to FILE (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        config_out: Option<PathBuf>,
        /// Print one JSON object (device, token, agent_config) instead of text.
        #[arg(long)]
        json: bool,
        /// The agent config gets a "sandbox" section (see `device add`).
        #[arg(long)]
        sandbox: bool,
    },
}
