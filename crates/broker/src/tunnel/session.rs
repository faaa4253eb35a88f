//! One device's SSH connection: authentication, then only the requests a
//! device may make. Every refusal is logged with the device's name.

use std::net::SocketAddr;
use std::sync::Arc;

use rpibroker_wire::{Service, control};
use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};

use super::auth::{self, Authenticated};
use super::{Slot, SlotState};
use crate::broker::Shared;
use crate::control::ControlLink;
use crate::registry::SessionInfo;
use crate::sandbox_watch;

/// The SSH handler for one connection.
pub struct DeviceSession {
    shared: Arc<Shared>,
    peer: SocketAddr,
    slot: Arc<Slot>,
    /// Set between a successful auth check and `auth_succeeded`.
    pending: Option<Authenticated>,
    /// The device and its session generation, once attached to the registry.
    device: Option<Attached>,
    /// The control channel, once opened (at most one per connection). Only
    /// its id is kept: its data arrives through [`Self::data`], since a held
    /// but unread channel would let the device stall its own session by
    /// filling its queue.
    control: Option<ChannelId>,
    /// The control channel's link, once the subsystem is open.
    link: Option<Arc<ControlLink>>,
}

struct Attached {
    name: rpibroker_wire::DeviceName,
    ports: rpibroker_wire::ServicePorts,
    generation: u64,
}

impl Attached {
    /// The service a forward request names: by its well-known port
    /// (`ssh -R 80:…`) or by the public port the broker gave this device.
    fn service_named_by(&self, port: u32) -> Option<Service> {
        Service::from_well_known_port(port).or_else(|| self.ports.service_of(port))
    }
}

/// The login methods a device may use: a registered key, or its token as password.
pub(super) fn methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..])
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(methods()),
        partial_success: false,
    }
}

impl DeviceSession {
    pub(super) fn new(shared: Arc<Shared>, peer: SocketAddr, slot: Arc<Slot>) -> Self {
        Self {
            shared,
            peer,
            slot,
            pending: None,
            device: None,
            control: None,
            link: None,
        }
    }

    fn name(&self) -> &str {
        self.device
            .as_ref()
            .map_or("(unauthenticated)", |d| d.name.as_str())
    }

    fn accept(&mut self, who: Option<Authenticated>, user: &str, method: &str) -> Auth {
        match who {
            Some(a) => {
                self.pending = Some(a);
                Auth::Accept
            }
            None => {
                tracing::info!(user = ?user, method, "authentication refused");
                reject()
            }
        }
    }

    /// The agent closed its control channel: callers waiting on it hear so
    /// at once instead of at their timeouts.
    fn control_gone(&self, channel: ChannelId) {
        if self.control == Some(channel)
            && let Some(link) = &self.link
        {
            tracing::info!(device = self.name(), "control channel closed by the device");
            link.close();
        }
    }

    /// Refuses to open a channel, logging what was asked.
    async fn refuse_channel(
        &self,
        what: &str,
        reply: ChannelOpenHandle,
    ) -> Result<(), russh::Error> {
        tracing::warn!(device = self.name(), request = what, "refused");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    /// Refuses a channel request, logging what was asked.
    fn refuse(
        &self,
        what: &str,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        tracing::warn!(device = self.name(), request = what, "refused");
        session.channel_failure(channel)?;
        Ok(())
    }
}

impl russh::server::Handler for DeviceSession {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let who = auth::password(&self.shared, user, password).await;
        Ok(self.accept(who, user, "password"))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(
            if auth::key_is_known(&self.shared, user, offer.public_key).await {
                Auth::Accept
            } else {
                reject()
            },
        )
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let key: &PublicKey = key.public_key;
        let who = auth::public_key(&self.shared, user, key).await;
        Ok(self.accept(who, user, "publickey"))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(a) = self.pending.take() else {
            return Err(russh::Error::NotAuthenticated);
        };
        let credential = a.credential.clone();
        let generation = {
            let mut state = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(*state, SlotState::Abandoned) {
                return Err(russh::Error::Disconnect);
            }
            let generation = self.shared.registry.attach(SessionInfo {
                device: a.device.clone(),
                device_id: a.device_id,
                ports: a.ports,
                handle: session.handle(),
                credential: a.credential,
                peer: self.peer,
            });
            *state = SlotState::Attached(a.device.clone(), generation);
            generation
        };
        // `device revoke` or `remove` may have committed between the credential
        // check and the attach, and found no session to cut: check again now
        // that the session is visible to them.
        let (shared, device) = (self.shared.clone(), a.device.clone());
        let valid =
            tokio::task::spawn_blocking(move || super::still_valid(&shared, &device, &credential))
                .await
                .unwrap_or(false);
        if !valid {
            tracing::info!(device = %a.device, "credentials were revoked during login; disconnecting");
            self.shared.registry.kick_generation(
                &a.device,
                generation,
                "device credentials were revoked or the device was removed",
            );
            return Err(russh::Error::Disconnect);
        }
        tracing::info!(device = %a.device, peer = %self.peer, "device connected");
        self.device = Some(Attached {
            name: a.device,
            ports: a.ports,
            generation,
        });
        self.slot.authenticated.notify_one();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.device.is_none() || self.control.is_some() {
            tracing::warn!(device = self.name(), "refused a second session channel");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.control = Some(channel.id());
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let is_control = self.control == Some(channel) && self.link.is_none();
        if let (true, Some(d)) = (is_control && name == control::SUBSYSTEM, &self.device) {
            tracing::info!(device = %d.name, "control channel open");
            let link = ControlLink::new(d.name.clone(), session.handle(), channel);
            if self
                .shared
                .registry
                .set_control(&d.name, d.generation, link.clone())
            {
                tokio::spawn(sandbox_watch::watch(
                    self.shared.clone(),
                    d.name.clone(),
                    link.clone(),
                ));
            }
            self.link = Some(link);
            session.channel_success(channel)?;
            return Ok(());
        }
        self.refuse("subsystem", channel, session)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(link) = self.link.as_ref().filter(|_| self.control == Some(channel))
            && let Err(e) = link.received(data)
        {
            tracing::warn!(device = self.name(), error = %e, "disconnecting");
            return Err(russh::Error::Disconnect);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.control_gone(channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.control_gone(channel);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("shell", channel, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("exec", channel, session)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("pty", channel, session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("x11", channel, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("env", channel, session)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::warn!(
            device = self.name(),
            ?channel,
            request = "agent forwarding",
            "refused"
        );
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::warn!(
            device = self.name(),
            host_to_connect = ?host_to_connect,
            port_to_connect,
            request = "direct-tcpip",
            "refused"
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("x11 channel", reply).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("forwarded-tcpip from device", reply)
            .await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("direct-streamlocal", reply).await
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(d) = &self.device else {
            return Ok(false);
        };
        let Some(service) = d.service_named_by(*port) else {
            tracing::warn!(device = %d.name, port = *port, "refused a forward of a port that is not one of the device's services");
            return Ok(false);
        };
        let (name, generation) = (d.name.clone(), d.generation);
        match self
            .shared
            .registry
            .add_forward(&name, generation, service, address.to_string(), *port)
            .await
        {
            Ok(public_port) => {
                tracing::info!(device = %name, %service, public_port, "forward open");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(device = %name, %service, error = %e, "forward failed");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        _address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(d) = &self.device else {
            return Ok(false);
        };
        let Some(service) = d.service_named_by(port) else {
            return Ok(false);
        };
        Ok(self
            .shared
            .registry
            .cancel_forward(&d.name, d.generation, service))
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::warn!(
            device = self.name(),
            socket_path = ?socket_path,
            request = "streamlocal forward",
            "refused"
        );
        Ok(false)
    }
}
