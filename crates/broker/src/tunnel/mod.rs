//! The tunnel endpoint: an SSH server that devices (our agent, or a stock
//! OpenSSH client) log into to offer their services to the broker.
//!
//! It grants exactly two things to an authenticated device: remote forwards
//! (`tcpip-forward`) of the device's own three services, and one session
//! channel for the `rpibroker-control` subsystem. It must never grant a
//! shell, exec, pty, environment, agent or X11 forwarding, local forwards
//! (`direct-tcpip`), or a forward of any port that is not the device's own.
//!
//! - [`session`]: the per-connection SSH handler that enforces the above.
//! - [`auth`]: checking a device's token or key against the store.

mod auth;
pub use auth::still_valid;
mod session;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpibroker_tunnel_io::ReadAhead;
use rpibroker_wire::DeviceName;
use russh::keys::PrivateKey;
use russh::server::{Config, RunningSession};
use russh::{Preferred, cipher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::accept;
use crate::broker::Shared;
use crate::gate::{Admitted, Gate};
use crate::shutdown::Shutdown;

/// Connections that have not authenticated yet, at most, in total and from
/// one address; more are dropped at once.
const MAX_UNAUTHENTICATED: usize = 512;
const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 64;

/// Per-connection state shared between the accept loop and the SSH handler.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    authenticated: Notify,
}

/// Where a connection stands with the registry. Both the SSH handler
/// (attaching) and the accept loop (giving up, or cleaning up at the end)
/// change it under the lock, so a login that completes just as the
/// connection is abandoned can never leave a dead session in the registry.
#[derive(Default)]
enum SlotState {
    #[default]
    Pending,
    /// The device and session generation, once attached.
    Attached(DeviceName, u64),
    /// The connection is over; a late login must not attach.
    Abandoned,
}

impl Slot {
    /// Ends the connection's part in the registry: a session it attached is
    /// detached, and no login can attach any more.
    fn abandon(&self, registry: &crate::registry::Registry) -> Option<DeviceName> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, SlotState::Abandoned) {
            SlotState::Attached(device, generation) => {
                registry.detach(&device, generation);
                Some(device)
            }
            _ => None,
        }
    }
}

/// SSH server settings: AES-GCM first (hardware AES makes it ~1.5x faster than
/// chacha20 on the broker), chacha20 kept for devices without AES instructions;
/// Nagle off; keepalives to find dead devices.
fn server_config(host_key: PrivateKey, shared: &Shared) -> Config {
    let ciphers: &'static [cipher::Name] = &[
        cipher::AES_256_GCM,
        cipher::AES_128_GCM,
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_CTR,
        cipher::AES_128_CTR,
    ];
    Config {
        keys: vec![host_key],
        methods: session::methods(),
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH probes with "none" first; answering at once saves every stock
        // client a needless delay.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        inactivity_timeout: Some(shared.settings.ssh_idle_timeout),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        maximum_packet_size: 65535,
        preferred: Preferred {
            cipher: std::borrow::Cow::Borrowed(ciphers),
            ..Preferred::default()
        },
        ..Config::default()
    }
}

/// Accepts device connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    host_key: PrivateKey,
    mut shutdown: Shutdown,
) {
    let config = Arc::new(server_config(host_key, &shared));
    let unauthenticated = Gate::new(
        "unauthenticated SSH",
        MAX_UNAUTHENTICATED,
        MAX_UNAUTHENTICATED_PER_ADDRESS,
    );
    loop {
        let (socket, peer) = tokio::select! {
            conn = accept::next(&listener, "SSH") => conn,
            _ = shutdown.wait() => return,
        };
        let Some(permit) = unauthenticated.admit(peer.ip()) else {
            continue;
        };
        tokio::spawn(connection(
            socket,
            peer,
            shared.clone(),
            config.clone(),
            permit,
        ));
    }
}

/// One device connection, from its first byte until it ends. Connected
/// devices sit idle for days, so what waits for the end must stay small: the
/// handshake, whose state is much larger, runs boxed and is freed once the
/// device is in.
async fn connection(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    config: Arc<Config>,
    permit: Admitted,
) {
    let span = tracing::info_span!("ssh", %peer);
    let handshake = authenticate(socket, peer, shared.clone(), config, permit).instrument(span);
    let Some((running, slot)) = Box::pin(handshake).await else {
        return;
    };
    let result = running.await;
    if let Some(device) = slot.abandon(&shared.registry) {
        match result {
            Ok(()) => tracing::info!(%device, %peer, "device disconnected"),
            Err(e) => tracing::info!(%device, %peer, error = %e, "device connection ended"),
        }
    }
}

/// Runs the SSH handshake until the device has authenticated; `None` if it
/// did not (the connection is then closed).
async fn authenticate(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    config: Arc<Config>,
    permit: Admitted,
) -> Option<(RunningSession<session::DeviceSession>, Arc<Slot>)> {
    // A second handle on the socket, to close it for certain if the peer
    // stalls before authenticating: an SSH goodbye cannot be sent in the
    // middle of a key exchange the peer never finishes.
    let (socket, guard) = match socket.into_std().and_then(|s| {
        let guard = s.try_clone()?;
        Ok((TcpStream::from_std(s)?, guard))
    }) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "cannot set up SSH connection");
            return None;
        }
    };
    let slot = Arc::new(Slot::default());
    let handler = session::DeviceSession::new(shared.clone(), peer, slot.clone());
    let deadline = tokio::time::Instant::now() + shared.settings.ssh_auth_timeout;
    let started = russh::server::run_stream(config, ReadAhead::new(socket), handler);
    let mut running = match tokio::time::timeout_at(deadline, started).await {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "SSH connection failed before it started");
            return None;
        }
        Err(_) => {
            let _ = guard.shutdown(std::net::Shutdown::Both);
            tracing::debug!("no SSH version line in time; closing");
            return None;
        }
    };
    let handle = running.handle();
    let authenticated = tokio::select! {
        result = &mut running => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "SSH connection closed before authentication");
            }
            false
        }
        _ = slot.authenticated.notified() => true,
        _ = tokio::time::sleep_until(deadline) => {
            tracing::info!("no authentication in time; disconnecting");
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "authentication timed out".into(), String::new())
                .await;
            let _ = guard.shutdown(std::net::Shutdown::Both);
            false
        }
    };
    drop(permit);
    if !authenticated {
        slot.abandon(&shared.registry);
        return None;
    }
    Some((running, slot))
}
