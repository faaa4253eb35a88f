//! Admission of new connections: a cap on how many are open at once, and a
//! smaller cap per source address, so that one address cannot take every
//! slot and lock everybody else out (of logging in, of the handshake API, of
//! a device's web site).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The caps for one kind of connection.
pub struct Gate {
    /// Names the kind of connection in logs.
    what: &'static str,
    total: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
}

/// An admitted connection; its places are given back when it is dropped.
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    _address: AddressSlot,
}

impl Gate {
    pub fn new(what: &'static str, total: usize, per_address: usize) -> Self {
        Self {
            what,
            total: Arc::new(Semaphore::new(total)),
            per_address: PerAddress::new(per_address),
        }
    }

    /// Admits one more connection from `ip`, or logs why not.
    pub fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let Some(address) = self.per_address.try_take(ip) else {
            tracing::warn!(%ip, "too many {} connections from one address; refusing one", self.what);
            return None;
        };
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            tracing::warn!("too many {} connections; refusing one", self.what);
            return None;
        };
        Some(Admitted {
            _total: total,
            _address: address,
        })
    }
}

/// Counts open connections per source address, up to `max` each.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in the count; gives it back when dropped.
struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, unless it has `max` open.
    fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_applies_both_caps() {
        let gate = Gate::new("test", 3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = [a, a, b]
            .into_iter()
            .map(|ip| gate.admit(ip).unwrap())
            .collect();
        assert!(gate.admit(a).is_none(), "per-address cap");
        assert!(
            gate.admit("192.0.2.3".parse().unwrap()).is_none(),
            "total cap"
        );
        drop(held);
        assert!(gate.admit(a).is_some());
    }

    #[test]
    fn each_address_gets_its_own_limit_and_slots_come_back() {
        let limit = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.try_take(a).unwrap();
        let _second = limit.try_take(a).unwrap();
        assert!(limit.try_take(a).is_none());
        assert!(limit.try_take(b).is_some());
        drop(first);
        assert!(limit.try_take(a).is_some());
        drop(_second);
        assert!(
            limit.open.lock().unwrap().get(&b).is_none(),
            "no entry kept at zero"
        );
    }
}
