//! The three services every device exposes through the broker (seed step 3:
//! SSH, HTTP and HTTPS), each on its own public port.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of a device's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Ssh,
    Http,
    Https,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Ssh, Service::Http, Service::Https];

    /// The well-known port of the service. A device names the service it
    /// forwards by this port (`ssh -R 80:localhost:8080` forwards http), and
    /// it is the agent's default local target port.
    pub fn well_known_port(self) -> u16 {
        match self {
            Service::Ssh => 22,
            Service::Http => 80,
            Service::Https => 443,
        }
    }

    pub fn from_well_known_port(port: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| u32::from(s.well_known_port()) == port)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Ssh => "ssh",
            Service::Http => "http",
            Service::Https => "https",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device's public ports on the broker, one per service. They are assigned
/// from the broker's pool at the first handshake and kept while the device exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePorts {
    pub ssh: u16,
    pub http: u16,
    pub https: u16,
}

impl ServicePorts {
    pub fn get(&self, service: Service) -> u16 {
        match service {
            Service::Ssh => self.ssh,
            Service::Http => self.http,
            Service::Https => self.https,
        }
    }

    /// The service whose public port is `port`, if any.
    pub fn service_of(&self, port: u32) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|s| u32::from(self.get(*s)) == port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_ports_round_trip() {
        for s in Service::ALL {
            assert_eq!(
                Service::from_well_known_port(s.well_known_port().into()),
                Some(s)
            );
        }
        assert_eq!(Service::from_well_known_port(8080), None);
    }

    #[test]
    fn public_ports_name_their_service() {
        let p = ServicePorts {
            ssh: 20000,
            http: 20001,
            https: 20002,
        };
        assert_eq!(p.service_of(20001), Some(Service::Http));
        assert_eq!(p.service_of(20003), None);
    }
}
