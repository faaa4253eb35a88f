//! A device's raw public port for one service: every connection is passed to
//! the device as it is. The port listens only while the device forwards the
//! service, so visitors of an offline device are refused at once. A listed
//! device between rentals resets every connection.

use std::sync::Arc;

use rpibroker_wire::{DeviceName, Service};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::accept;
use crate::access::Admission;
use crate::edge::splice;
use crate::registry::Registry;

/// Accepts visitors on `listener` until the task is aborted (when the device's
/// forward ends).
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    device: DeviceName,
    service: Service,
) {
    loop {
        let (socket, peer) = accept::next(&listener, "device").await;
        let Some(permit) = registry.admit_visitor(peer.ip()) else {
            continue;
        };
        let (registry, device) = (registry.clone(), device.clone());
        let span = tracing::debug_span!("visitor", %device, %service, %peer);
        tokio::spawn(
            async move {
                let route = match registry.route(&device, service) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "closing visitor");
                        return;
                    }
                };
                let pass = match registry.access.admit(&device).await {
                    Ok(Admission::Open(pass)) => pass,
                    Ok(_) => {
                        tracing::debug!("resetting visitor: device not rented");
                        // No FIN handshake: the visitor sees the connection refused.
                        let _ = socket.set_zero_linger();
                        return;
                    }
                    Err(e) => return tracing::error!(error = %e, "access lookup failed"),
                };
                match splice::open(&route, peer).await {
                    Ok(stream) => {
                        if let Err(e) = stream.run(socket, &[], registry.visitor_stall, pass).await
                        {
                            tracing::debug!(error = %e, "visitor connection ended with an error");
                        }
                    }
                    Err(e) => tracing::info!(error = %e, "device refused a visitor"),
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}
