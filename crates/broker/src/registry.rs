//! Live tunnel sessions: which device is connected right now, through which
//! SSH session, and which of its services it forwards. The edge asks it where
//! to send a visitor; the tunnel endpoint tells it when sessions come and go.
//!
//! State lives in memory and is rebuilt from live sessions after a restart
//! (agents reconnect); the store keeps only what outlives a session.
//!
//! A device has at most one session: a new one replaces the old, whose
//! routes and public ports are dropped at once so no stale session serves
//! visitors. Each session gets a generation number so that the late cleanup
//! of a replaced session never removes its successor's routes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rpibroker_wire::{DeviceName, Service, ServicePorts};
use russh::server::Handle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::access::Access;
use crate::control::ControlLink;
use crate::edge;
use crate::gate::{Admitted, Gate};
use crate::presence::Presence;

/// How a session proved it is the device; checked again when the device's
/// credentials change (`device revoke`), to cut sessions that used old ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// SHA-256 of the token used as password.
    Token(String),
    /// Fingerprint of the public key used.
    Key(String),
}

/// A device's authenticated session, as the tunnel endpoint reports it.
pub struct SessionInfo {
    pub device: DeviceName,
    pub device_id: i64,
    pub ports: ServicePorts,
    pub handle: Handle,
    pub credential: Credential,
    pub peer: SocketAddr,
}

struct Live {
    generation: u64,
    info: SessionInfo,
    forwards: HashMap<Service, Forward>,
    control: Option<Arc<ControlLink>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(c) = &self.control {
            c.close();
        }
    }
}

/// A remote forward the device asked for, and the public port serving it.
struct Forward {
    /// What the device asked to be forwarded, echoed back on each
    /// `forwarded-tcpip` channel so the device (OpenSSH included) can match it.
    address: String,
    port: u32,
    listener: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Where to open a channel for one visitor.
pub struct Route {
    pub device: DeviceName,
    pub handle: Handle,
    pub address: String,
    pub port: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the device is not connected")]
    Offline,
    #[error("the device is connected but does not forward this service")]
    NotForwarded,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("this session was replaced by a newer one")]
    Stale,
    #[error("cannot listen on public port {port}: {source}")]
    Bind { port: u16, source: std::io::Error },
}

/// The registry of live sessions.
pub struct Registry {
    live: Mutex<HashMap<DeviceName, Live>>,
    next_generation: AtomicU64,
    /// Address the devices' public ports listen on.
    device_bind: IpAddr,
    presence: Presence,
    /// Visitor connections open at once, over every edge port and device, in
    /// total and per address; past this, new visitors are turned away instead
    /// of exhausting memory and file descriptors.
    visitors: Gate,
    /// How long a visitor or device may accept no bytes before its
    /// connection is dropped (see [`rpibroker_tunnel_io::splice`]).
    pub visitor_stall: Duration,
    /// Whom each device's public ports admit.
    pub access: Arc<Access>,
}

/// Most visitor connections open at once, in total and from one address.
const MAX_VISITORS: usize = 16 * 1024;
const MAX_VISITORS_PER_ADDRESS: usize = 512;

/// How long to wait for a replaced session's public port to be released.
const REBIND_WAIT: Duration = Duration::from_secs(2);

impl Registry {
    pub fn new(
        device_bind: IpAddr,
        visitor_stall: Duration,
        presence: Presence,
        access: Arc<Access>,
    ) -> Arc<Self> {
        Arc::new(Self {
            live: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            device_bind,
            presence,
            visitors: Gate::new("visitor", MAX_VISITORS, MAX_VISITORS_PER_ADDRESS),
            visitor_stall,
            access,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceName, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `info` the device's session, replacing (and disconnecting) any
    /// earlier one. Returns the new session's generation.
    pub fn attach(&self, info: SessionInfo) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let device = info.device.clone();
        let device_id = info.device_id;
        let old = {
            let mut live = self.lock();
            // Presence events are queued under the lock so the store sees
            // them in the order the sessions really came and went.
            self.presence.online(device_id);
            live.insert(
                device.clone(),
                Live {
                    generation,
                    info,
                    forwards: HashMap::new(),
                    control: None,
                },
            )
        };
        if let Some(old) = old {
            tracing::info!(
                %device,
                old_peer = %old.info.peer,
                "a new session replaces the device's previous one"
            );
            disconnect(old, "replaced by a newer connection of this device");
        }
        generation
    }

    /// Forgets the session if it is still the device's current one.
    pub fn detach(&self, device: &DeviceName, generation: u64) {
        self.remove_generation(device, generation);
    }

    /// Removes the session of `generation` if it is still current, and
    /// records the device offline.
    fn remove_generation(&self, device: &DeviceName, generation: u64) -> Option<Live> {
        let mut live = self.lock();
        match live.get(device) {
            Some(l) if l.generation == generation => {
                self.presence.offline(l.info.device_id);
                live.remove(device)
            }
            _ => None,
        }
    }

    /// The current session's generation and credential.
    pub fn credential(&self, device: &DeviceName) -> Option<(u64, Credential)> {
        self.lock()
            .get(device)
            .map(|l| (l.generation, l.info.credential.clone()))
    }

    /// Disconnects the session of `generation`, if it is still current.
    pub fn kick_generation(&self, device: &DeviceName, generation: u64, reason: &str) {
        if let Some(l) = self.remove_generation(device, generation) {
            disconnect(l, reason);
        }
    }

    /// Disconnects every session (broker shutting down).
    pub fn kick_all(&self, reason: &str) {
        let all: Vec<Live> = {
            let mut live = self.lock();
            live.values()
                .for_each(|l| self.presence.offline(l.info.device_id));
            live.drain().map(|(_, l)| l).collect()
        };
        for l in all {
            disconnect(l, reason);
        }
    }

    /// Records the control channel of the session of `generation`; false if
    /// that session is no longer current.
    pub fn set_control(
        &self,
        device: &DeviceName,
        generation: u64,
        link: Arc<ControlLink>,
    ) -> bool {
        match self.lock().get_mut(device) {
            Some(l) if l.generation == generation => {
                l.control = Some(link);
                true
            }
            _ => false,
        }
    }

    /// The control channel of the device's current session.
    pub fn control(&self, device: &DeviceName) -> Option<Arc<ControlLink>> {
        self.lock().get(device).and_then(|l| l.control.clone())
    }

    pub fn online_ids(&self) -> Vec<i64> {
        self.lock().values().map(|l| l.info.device_id).collect()
    }

    pub fn is_online(&self, device: &DeviceName) -> bool {
        self.lock().contains_key(device)
    }

    /// Starts serving `service` of the device on its public port, for the
    /// session of `generation`. `address`/`port` are what the device asked for.
    pub async fn add_forward(
        self: &Arc<Self>,
        device: &DeviceName,
        generation: u64,
        service: Service,
        address: String,
        port: u32,
    ) -> Result<u16, ForwardError> {
        let public_port = {
            let mut live = self.lock();
            let l = live
                .get_mut(device)
                .filter(|l| l.generation == generation)
                .ok_or(ForwardError::Stale)?;
            let public_port = l.info.ports.get(service);
            // Asked again (say, once by well-known and once by public port):
            // the port already listens; only the echoed names change.
            if let Some(f) = l.forwards.get_mut(&service) {
                f.address = address;
                f.port = port;
                return Ok(public_port);
            }
            public_port
        };
        let listener = self.bind(public_port).await?;
        let mut live = self.lock();
        let l = live
            .get_mut(device)
            .filter(|l| l.generation == generation)
            .ok_or(ForwardError::Stale)?;
        let task = tokio::spawn(edge::device_port::serve(
            listener,
            self.clone(),
            device.clone(),
            service,
        ));
        l.forwards.insert(
            service,
            Forward {
                address,
                port,
                listener: task,
            },
        );
        Ok(public_port)
    }

    /// A replaced session's listener is closed by aborting its task, which
    /// completes on the runtime shortly after; until then the port is busy.
    async fn bind(&self, port: u16) -> Result<TcpListener, ForwardError> {
        let addr = SocketAddr::new(self.device_bind, port);
        let deadline = tokio::time::Instant::now() + REBIND_WAIT;
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => return Ok(l),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => return Err(ForwardError::Bind { port, source }),
            }
        }
    }

    /// Stops serving `service` for the session of `generation`.
    pub fn cancel_forward(&self, device: &DeviceName, generation: u64, service: Service) -> bool {
        let mut live = self.lock();
        live.get_mut(device)
            .filter(|l| l.generation == generation)
            .and_then(|l| l.forwards.remove(&service))
            .is_some()
    }

    /// A slot for one more visitor connection from `ip`, if the broker has room.
    pub fn admit_visitor(&self, ip: IpAddr) -> Option<Admitted> {
        self.visitors.admit(ip)
    }

    /// Where a visitor of `device`'s `service` goes.
    pub fn route(&self, device: &DeviceName, service: Service) -> Result<Route, RouteError> {
        let live = self.lock();
        let l = live.get(device).ok_or(RouteError::Offline)?;
        let f = l.forwards.get(&service).ok_or(RouteError::NotForwarded)?;
        Ok(Route {
            device: device.clone(),
            handle: l.info.handle.clone(),
            address: f.address.clone(),
            port: f.port,
        })
    }
}

fn disconnect(live: Live, reason: &str) {
    let handle = live.info.handle.clone();
    let reason = reason.to_string();
    // Dropping `live` closes the public ports now; the SSH goodbye is sent
    // in the background.
    drop(live);
    tokio::spawn(async move {
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, reason, String::new())
            .await;
    });
}
