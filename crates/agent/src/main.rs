//! The `rpibroker-agent` binary.

use std::path::PathBuf;

use clap::Parser;
use rpibroker_agent::{config::Config, supervisor};
use tracing_subscriber::EnvFilter;

/// rpibroker device agent: keeps this device reachable through its broker.
///
/// Reads the JSON config that `rpibroker device add` printed, calls the
/// broker's handshake API, and keeps an SSH tunnel open that forwards the
/// device's ssh, http and https services, reconnecting with backoff when the
/// broker or the network goes away. Log verbosity: RPIBROKER_LOG (e.g. debug).
#[derive(Debug, Parser)]
#[command(name = "rpibroker-agent", version)]
struct Cli {
    /// The agent config file (JSON), as printed by `rpibroker device add`.
    #[arg(
        long,
        short,
        env = "RPIBROKER_AGENT_CONFIG",
        default_value = "device.json"
    )]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("RPIBROKER_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::load(&cli.config)?;
    supervisor::run(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
