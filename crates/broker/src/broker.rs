//! Starting and stopping a broker: binds nothing itself (listeners are passed
//! in, so tests run brokers on port 0 side by side), opens the store, loads
//! the host key, and runs every listener until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::access::Access;
use crate::mail::Mailer;
use crate::presence;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::time::UnixTime;
use crate::{api, edge, host_key, notify, tunnel};

/// File in the data directory where a running broker writes the addresses it
/// listens on (useful when a port was 0).
pub const ADDRESSES_FILE: &str = "listen.json";

/// What every part of a running broker shares.
pub struct Shared {
    pub settings: Settings,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub host_key_fingerprint: String,
    /// The tunnel endpoint's actual port.
    pub ssh_port: u16,
    /// Rate limits of the web pages' sign-in and sign-up.
    pub web_limits: crate::web::Limits,
    /// Sends the broker's mail, through the transport the settings chose.
    pub mailer: Arc<Mailer>,
    /// The marketplace's listing, read again only when the store changed.
    pub market: Arc<crate::market::Cache>,
    /// The payment providers renters top up through.
    pub payments: crate::payments::Payments,
    /// Recent request nonces and the client for calls to peers.
    pub federation: crate::federation::Federation,
}

/// The broker's listeners, bound before start.
pub struct Listeners {
    pub api: TcpListener,
    pub ssh: TcpListener,
    pub http: TcpListener,
    pub https: TcpListener,
}

impl Listeners {
    /// Binds every address in `settings`.
    pub async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the {what}"))
        }
        Ok(Self {
            api: bind(settings.api_listen, "API").await?,
            ssh: bind(settings.ssh_listen, "SSH tunnel endpoint").await?,
            http: bind(settings.http_listen, "HTTP edge").await?,
            https: bind(settings.https_listen, "HTTPS edge").await?,
        })
    }
}

/// The addresses a running broker listens on.
#[derive(Debug, Clone, Serialize)]
pub struct Addresses {
    pub api: SocketAddr,
    pub ssh: SocketAddr,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub pid: u32,
}

/// A broker that is ready to run.
pub struct Broker {
    shared: Arc<Shared>,
    listeners: Listeners,
    host_key: russh::keys::PrivateKey,
    notify: tokio::net::UnixListener,
    presence: presence::PresenceWriter,
    pub addresses: Addresses,
}

impl Broker {
    /// Prepares the data directory, store and host key.
    pub async fn start(settings: Settings, listeners: Listeners) -> anyhow::Result<Self> {
        create_private_dir(&settings.data_dir)?;
        let store = Store::open(&settings.database_path()).context("opening the database")?;
        store
            .mark_all_offline(None)
            .context("resetting device presence")?;
        let host_key = host_key::load_or_create(&settings.data_dir)?;
        let keys = crate::federation::identity::KeyRing::load_or_create(
            &settings.data_dir,
            UnixTime::now(),
        )?;
        tracing::info!(keyid = keys.current().0, name = %settings.federation.name, "federation identity");
        let mailer = Arc::new(Mailer::new(&settings.mail).context("setting up mail")?);
        let payments = crate::payments::Payments::new(settings.payments.clone())
            .context("setting up payment providers")?;
        let (presence, writer) = presence::channel(store.clone());
        let registry = Registry::new(
            settings.device_bind,
            settings.visitor_stall_timeout,
            presence,
            Arc::new(Access::new(store.clone())),
        );
        let notify = notify::bind(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the notification socket {}",
                notify::socket_path(&settings.data_dir).display()
            )
        })?;
        let addresses = Addresses {
            api: listeners.api.local_addr()?,
            ssh: listeners.ssh.local_addr()?,
            http: listeners.http.local_addr()?,
            https: listeners.https.local_addr()?,
            pid: std::process::id(),
        };
        let shared = Arc::new(Shared {
            host_key_fingerprint: host_key::fingerprint(&host_key),
            ssh_port: addresses.ssh.port(),
            web_limits: crate::web::Limits::default(),
            mailer,
            settings,
            store,
            registry,
            market: Arc::default(),
            payments,
            federation: crate::federation::Federation::default(),
        });
        let path = addresses_path(&shared.settings.data_dir);
        std::fs::write(&path, serde_json::to_vec_pretty(&addresses)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self {
            shared,
            listeners,
            host_key,
            notify,
            presence: writer,
            addresses,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown`, then disconnects every device and records
    /// them offline.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let shared = self.shared;
        let mut tasks = JoinSet::new();
        tasks.spawn(api::serve(
            self.listeners.api,
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(tunnel::serve(
            self.listeners.ssh,
            shared.clone(),
            self.host_key,
            shutdown.clone(),
        ));
        tasks.spawn(edge::http::serve(
            self.listeners.http,
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(edge::tls::serve(
            self.listeners.https,
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(notify::serve(self.notify, shared.clone(), shutdown.clone()));
        tasks.spawn(crate::accounts::purge_sessions(
            shared.store.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::billing::run(shared.clone(), shutdown.clone()));
        tasks.spawn(crate::payouts::run(shared.clone(), shutdown.clone()));
        tasks.spawn(crate::payments::reconcile::run(
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::federation::outbox::run(
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::federation::metering::run(
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::federation::listings::run(
            shared.clone(),
            shutdown.clone(),
        ));
        let presence = tokio::spawn(self.presence.run(Arc::downgrade(&shared.registry)));
        while tasks.join_next().await.is_some() {}
        shared.registry.kick_all("the broker is shutting down");
        presence.abort();
        let store = shared.store.clone();
        store
            .blocking(|s| s.mark_all_offline(Some(UnixTime::now())))
            .await
            .context("recording devices offline")?;
        let dir = &shared.settings.data_dir;
        let _ = std::fs::remove_file(addresses_path(dir));
        let _ = std::fs::remove_file(notify::socket_path(dir));
        Ok(())
    }
}

pub fn addresses_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join(ADDRESSES_FILE)
}

/// Creates the data directory readable by its owner only (it holds the host
/// key and the database).
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}
