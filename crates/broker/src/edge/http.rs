//! The shared HTTP port: reads each connection's first request head, routes
//! it by `Host: <device>.<domain>`, and from then on copies the connection as
//! it is (keep-alive requests and upgrades such as WebSocket pass through to
//! the same device).
//!
//! Requests that cannot be routed get a small HTML page: 400 for a bad
//! request, 404 for a host that names no device, 502 for a device that is not
//! connected or not serving HTTP, 503 "not rented" (with a link to the
//! marketplace) for a listed device between rentals. The page never echoes what the visitor sent.

use std::net::SocketAddr;
use std::sync::Arc;

use rpibroker_wire::{DeviceName, Service};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::access::Admission;
use crate::broker::Shared;
use crate::edge::head::{self, HeadError};
use crate::edge::{self, device_of_host, splice};
use crate::registry::RouteError;
use crate::shutdown::Shutdown;

/// Accepts visitors until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    edge::serve_shared_port(listener, shared, shutdown, "HTTP", handle).await
}

async fn handle(mut socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let head = match head::read(&mut socket, shared.settings.edge_read_timeout).await {
        Ok(head) => head,
        Err(e) => {
            tracing::debug!(error = %e, "unroutable request");
            let (status, text) = match e {
                HeadError::Timeout => (408, "The request did not arrive in time."),
                HeadError::TooLarge => (431, "The request headers are too large."),
                HeadError::Closed | HeadError::Io(_) => return,
                HeadError::NoHost => (400, "The request has no Host header."),
                HeadError::DuplicateHost => (400, "The request has more than one Host header."),
                HeadError::Malformed(_) => (400, "The request is not valid HTTP."),
            };
            return respond(socket, status, text).await;
        }
    };
    let Some(device) = device_of_host(&head.host, &shared.settings.domain) else {
        return respond(socket, 404, "No device has this address.").await;
    };
    let route = match shared.registry.route(&device, Service::Http) {
        Ok(route) => route,
        Err(e) => {
            let known = {
                let device = device.clone();
                shared.store.blocking(move |s| s.device(&device)).await
            };
            return match known {
                Ok(None) => respond(socket, 404, "No device has this address.").await,
                Ok(Some(_)) => {
                    let text = match e {
                        RouteError::Offline => "This device is offline. Try again when it is back.",
                        RouteError::NotForwarded => {
                            "This device is online but does not serve HTTP."
                        }
                    };
                    respond(socket, 502, text).await
                }
                Err(e) => {
                    tracing::error!(error = %e, "device lookup failed");
                    respond(socket, 500, "The broker could not look up this device.").await
                }
            };
        }
    };
    let pass = match shared.registry.access.admit(&device).await {
        Ok(Admission::Open(pass)) => pass,
        Ok(Admission::NotRented) => return not_rented(socket, &shared, &device).await,
        Ok(Admission::Unknown) => return respond(socket, 404, "No device has this address.").await,
        Err(e) => {
            tracing::error!(error = %e, "access lookup failed");
            return respond(socket, 500, "The broker could not look up this device.").await;
        }
    };
    match splice::open(&route, peer).await {
        Ok(stream) => {
            if let Err(e) = stream
                .run(
                    socket,
                    &head.bytes,
                    shared.settings.visitor_stall_timeout,
                    pass,
                )
                .await
            {
                tracing::debug!(%device, error = %e, "visitor connection ended with an error");
            }
        }
        Err(e) => {
            tracing::info!(%device, error = %e, "device did not take a visitor");
            respond(socket, 502, "The device did not answer.").await;
        }
    }
}

/// The page of a listed device between rentals: where to rent it.
async fn not_rented(socket: TcpStream, shared: &Shared, device: &DeviceName) {
    let market = format!(
        "{}/market/{device}",
        shared.settings.public_url.trim_end_matches('/')
    );
    let text = format!(
        "This device is not rented right now. It is for rent on <a href=\"{market}\">the marketplace</a>."
    );
    respond(socket, 503, &text).await
}

/// Sends a complete response with a small HTML page and closes. `text` is
/// HTML the broker wrote, never anything the visitor sent.
async fn respond(mut socket: TcpStream, status: u16, text: &str) {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{status} {reason}</title></head>\n<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em\">\
         <h1>{status} {reason}</h1>\n<p>{text}</p>\n<p><small>rpibroker</small></p></body></html>\n"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}
