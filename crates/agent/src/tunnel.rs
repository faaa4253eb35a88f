//! The agent's SSH connection to the broker's tunnel endpoint.
//!
//! It pins the broker's host key, logs in with the device key (falling back to
//! the token), asks for remote forwards of the three services, opens the
//! control channel (served by [`crate::control`]), and turns each `forwarded-tcpip` channel the broker opens
//! into a connection to the service's local target. It accepts no other kind
//! of channel from the broker.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpibroker_tunnel_io::{ReadAhead, splice};
use rpibroker_wire::{ConnectResponse, Service, control};
use russh::client::{self, ChannelOpenHandle, Msg, Session};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure, Preferred, cipher};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::sandbox::Sandbox;
use crate::targets::LocalTargets;

/// Time to set up the TCP connection and SSH handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A local service (or visitor) that accepts no bytes for this long has its
/// connection dropped, so it cannot stall the other visitors' traffic.
const VISITOR_STALL: Duration = Duration::from_secs(10);
/// Time to reach a local target for a visitor.
const TARGET_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("cannot reach the tunnel endpoint {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "the tunnel endpoint's host key is {found}, not the pinned {expected}; refusing to connect (is something impersonating the broker?)"
    )]
    HostKeyMismatch { expected: String, found: String },
    #[error("the broker refused both the device key and the token")]
    AuthRefused,
    #[error("the broker refused to forward {0}")]
    ForwardRefused(Service),
    #[error("the broker refused the control channel")]
    ControlRefused,
    #[error("SSH error: {0}")]
    Ssh(#[from] russh::Error),
}

/// The SSH client handler.
struct DeviceClient {
    expected_fingerprint: String,
    /// The fingerprint seen, when it did not match (to report it).
    mismatch: Arc<Mutex<Option<String>>>,
    targets: Arc<LocalTargets>,
}

/// Ciphers in order of preference. Hardware AES makes AES-GCM the fastest
/// where the CPU has it; 32-bit ARM boards (Raspberry Pi before the Pi 5)
/// usually do not, and chacha20 is faster there.
fn ciphers() -> &'static [cipher::Name] {
    if cfg!(target_arch = "arm") {
        &[
            cipher::CHACHA20_POLY1305,
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
        ]
    } else {
        &[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
        ]
    }
}

fn client_config() -> client::Config {
    client::Config {
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        inactivity_timeout: None,
        maximum_packet_size: 65535,
        preferred: Preferred {
            cipher: Cow::Borrowed(ciphers()),
            ..Preferred::default()
        },
        ..client::Config::default()
    }
}

impl client::Handler for DeviceClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let found = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string()
            }
            PublicKeyOrCertificate::Certificate(_) => "(a certificate)".to_string(),
        };
        if found == self.expected_fingerprint {
            return Ok(true);
        }
        *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
        Ok(false)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        _connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(service) = Service::from_well_known_port(connected_port) else {
            tracing::warn!(
                connected_port,
                "broker opened a channel for a port we did not forward"
            );
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let Some(target) = self.targets.get(service) else {
            tracing::info!(%service, "the sandbox is not up; refusing visitor");
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        let visitor = format!("{originator_address}:{originator_port}");
        tokio::spawn(async move {
            let local = match tokio::time::timeout(TARGET_TIMEOUT, TcpStream::connect(&target))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%service, %target, error = %e, "local service unreachable; refusing visitor");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return;
                }
                Err(_) => {
                    tracing::warn!(%service, %target, "local service did not accept in time; refusing visitor");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return;
                }
            };
            let _ = local.set_nodelay(true);
            reply.accept().await;
            tracing::debug!(%service, %visitor, "visitor connected");
            if let Err(e) = splice(local, channel.into_stream(), VISITOR_STALL).await {
                tracing::debug!(%service, %visitor, error = %e, "visitor connection ended with an error");
            }
        });
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }
}

/// Turns down a channel the broker has no business opening.
async fn refuse(reply: ChannelOpenHandle) -> Result<(), russh::Error> {
    reply
        .reject(ChannelOpenFailure::AdministrativelyProhibited)
        .await;
    Ok(())
}

/// An established tunnel.
pub struct Tunnel {
    handle: client::Handle<DeviceClient>,
    /// Serves the broker's commands for as long as the tunnel is up.
    control: tokio::task::JoinHandle<()>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.control.abort();
    }
}

/// Opens the tunnel described by the handshake `answer`.
pub async fn open(
    config: &Config,
    key: Arc<PrivateKey>,
    answer: &ConnectResponse,
    expected_fingerprint: &str,
    targets: Arc<LocalTargets>,
    sandbox: Option<Arc<Sandbox>>,
) -> Result<Tunnel, TunnelError> {
    let endpoint = answer.tunnel.clone();
    let unreachable = |reason: String| TunnelError::Unreachable {
        endpoint: endpoint.clone(),
        reason,
    };
    let mismatch = Arc::new(Mutex::new(None));
    let handler = DeviceClient {
        expected_fingerprint: expected_fingerprint.to_string(),
        mismatch: mismatch.clone(),
        targets,
    };
    let connect = async {
        let socket = TcpStream::connect(&endpoint)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = socket.set_nodelay(true);
        client::connect_stream(Arc::new(client_config()), ReadAhead::new(socket), handler)
            .await
            .map_err(
                |e| match mismatch.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    Some(found) => TunnelError::HostKeyMismatch {
                        expected: expected_fingerprint.to_string(),
                        found,
                    },
                    None => TunnelError::Ssh(e),
                },
            )
    };
    let mut handle = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| unreachable("no SSH handshake in time".into()))??;

    let user = answer.device.as_str();
    let by_key = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, None))
        .await?
        .success();
    if !by_key {
        tracing::info!("the broker did not accept the device key; logging in with the token");
        let by_token = handle
            .authenticate_password(user, config.file.token.0.clone())
            .await?
            .success();
        if !by_token {
            return Err(TunnelError::AuthRefused);
        }
    }
    for service in Service::ALL {
        handle
            .tcpip_forward("localhost", u32::from(service.well_known_port()))
            .await
            .map_err(|_| TunnelError::ForwardRefused(service))?;
    }
    let mut control = handle.channel_open_session().await?;
    control.request_subsystem(true, control::SUBSYSTEM).await?;
    let answered = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match control.wait().await {
                Some(russh::ChannelMsg::Success) => return true,
                Some(russh::ChannelMsg::Failure) | None => return false,
                Some(_) => {}
            }
        }
    })
    .await;
    if answered != Ok(true) {
        return Err(TunnelError::ControlRefused);
    }
    Ok(Tunnel {
        handle,
        control: tokio::spawn(crate::control::serve(control, sandbox)),
    })
}

impl Tunnel {
    /// Waits until the connection ends, and says why.
    pub async fn closed(&mut self) -> String {
        match (&mut self.handle).await {
            Ok(()) => "the broker closed the connection".into(),
            Err(e) => e.to_string(),
        }
    }

    /// Says goodbye to the broker (on shutdown).
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "agent shutting down", "")
            .await;
    }
}
