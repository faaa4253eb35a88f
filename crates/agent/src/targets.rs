//! Where visitors of each service go on this device. Fixed for an agent that
//! forwards the owner's own services; for a sandbox, the ports Docker
//! published for the current container, and none while it is being replaced
//! (visitors are then refused rather than sent to a stale port).

use std::sync::RwLock;

use rpibroker_wire::Service;

#[derive(Debug, Default)]
pub struct LocalTargets {
    current: RwLock<Option<[String; 3]>>,
}

fn index(service: Service) -> usize {
    match service {
        Service::Ssh => 0,
        Service::Http => 1,
        Service::Https => 2,
    }
}

impl LocalTargets {
    /// Targets in [`Service::ALL`] order.
    pub fn fixed(targets: [String; 3]) -> Self {
        Self {
            current: RwLock::new(Some(targets)),
        }
    }

    pub fn get(&self, service: Service) -> Option<String> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|t| t[index(service)].clone())
    }

    /// Sets all three, in [`Service::ALL`] order.
    pub fn set(&self, targets: [String; 3]) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(targets);
    }

    pub fn clear(&self) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
