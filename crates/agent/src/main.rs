//! The `rpibroker-agent` binary.

use std::path::PathBuf;

use clap::Parser;
use rpibroker_agent::{config::Config, supervisor};
use rpibroker_wire::Service;
use tracing_subscriber::EnvFilter;

/// rpibroker device agent: keeps this device reachable through its broker.
///
/// Reads the JSON config that `rpibroker device add` printed, calls the
/// broker's handshake API, and keeps an SSH tunnel open that forwards the
/// device's ssh, http and https services, reconnecting with backoff when the
/// broker or the network goes away.
///
/// With a "sandbox" section in the config (`rpibroker device add --sandbox`),
/// the services are those of a Docker container the agent runs for renters,
/// and the broker provisions, wipes and verifies it through the agent; the
/// agent then needs access to the Docker Engine (root, or the docker group).
/// The container outlives the agent, so a restart keeps a rental. Log
/// verbosity: RPIBROKER_LOG (e.g. debug).
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
    /// Local SSH server to forward, as host:port or a port on 127.0.0.1
    /// [default: the config's targets.ssh, else 127.0.0.1:22].
    #[arg(long, value_name = "ADDR")]
    ssh: Option<String>,
    /// Local web server to forward (e.g. --http 8081) [default: targets.http, else 127.0.0.1:80].
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Local TLS server to forward [default: targets.https, else 127.0.0.1:443].
    #[arg(long, value_name = "ADDR")]
    https: Option<String>,
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
    let mut config = Config::load(&cli.config)?;
    for (service, value) in [
        (Service::Ssh, cli.ssh),
        (Service::Http, cli.http),
        (Service::Https, cli.https),
    ] {
        if let Some(value) = value {
            config.set_target(service, &value)?;
        }
    }
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
