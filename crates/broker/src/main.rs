//! The `rpibroker` binary: parses the command line and runs it.

use anyhow::Context;
use clap::Parser;
use rpibroker::broker::{Broker, Listeners};
use rpibroker::cli::{Cli, Command};
use rpibroker::settings::Settings;
use rpibroker::{admin_cmd, device_cmd, peer_cmd, rental_cmd, shutdown};
use tracing_subscriber::EnvFilter;

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
    let settings = Settings::resolve(cli.data_dir.clone(), cli.config.as_deref(), &cli.settings)?;
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Device(cmd) => device_cmd::run(&settings, cmd).await,
        Command::Rental(cmd) => rental_cmd::run(&settings, cmd).await,
        Command::Admin(cmd) => admin_cmd::run(&settings, cmd),
        Command::Peer(cmd) => peer_cmd::run(&settings, cmd).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    raise_fd_limit();
    let listeners = Listeners::bind(&settings).await?;
    let broker = Broker::start(settings, listeners).await?;
    print_banner(&broker);
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    broker
        .run(shutdown)
        .await
        .context("broker stopped with an error")
}

/// Every device costs about four file descriptors (its SSH connection and
/// three public ports) and every visitor one more; the usual soft limit of
/// 1024 would run out at a few hundred devices, so raise it to the hard limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open file limit");
            }
        }
    }
    tracing::debug!(open_files = limit.rlim_cur, "open file limit");
}

fn print_banner(broker: &Broker) {
    let s = &broker.shared().settings;
    let a = &broker.addresses;
    let fp = &broker.shared().host_key_fingerprint;
    println!(
        "rpibroker {} serving *.{}",
        env!("CARGO_PKG_VERSION"),
        s.domain
    );
    println!("  API (agent handshake)  http://{}", a.api);
    println!("  SSH tunnel endpoint    {}", a.ssh);
    println!(
        "  HTTP edge              http://<device>.{}:{}",
        s.domain,
        a.http.port()
    );
    println!(
        "  HTTPS edge (SNI)       {} (TLS passes through to the device)",
        a.https
    );
    println!(
        "  device ports           {} on {}",
        s.port_pool, s.device_bind
    );
    println!("  SSH host key           {fp}");
    println!("  data directory         {}", s.data_dir.display());
    println!(
        "  mail                   {}",
        broker.shared().mailer.describe()
    );
    println!("Register a device with: rpibroker device add NAME");
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
