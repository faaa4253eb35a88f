//! `GET /api/v1/market`: the public listing, with the marketplace page's
//! filters, sort and pages from the same query string (see
//! [`crate::market::query`]), applied to peers' devices too; a value the
//! page would ignore is refused here.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::Serialize;

use super::Failure;
use crate::broker::Shared;
use crate::market::listing::PAGE_SIZE;
use crate::market::peers::PeerOffer;
use crate::market::{self, Listing, MarketQuery};

/// A listed device as anyone may see it: no ports, no rental details.
#[derive(Debug, Serialize)]
pub struct Offer {
    name: String,
    /// CPU architecture (`x86_64`, `aarch64`, `arm`).
    arch: Option<String>,
    cpu_millicores: Option<u64>,
    memory_bytes: Option<u64>,
    disk_bytes: Option<u64>,
    /// Whether the figures are the broker's measurement (else the claim).
    measured: bool,
    verified: bool,
    hourly_rate_cents: Option<i64>,
    /// Share of the last 30 days it was connected, in thousandths.
    uptime_30d_permille: Option<u16>,
    available: bool,
    /// Why it cannot be rented now, when it cannot.
    unavailable_reason: Option<String>,
}

impl From<&Listing> for Offer {
    fn from(l: &Listing) -> Self {
        let figures = l.figures();
        let why = l.availability().err();
        Self {
            name: l.device.name.to_string(),
            arch: l.arch().map(str::to_string),
            cpu_millicores: figures.cpu_millicores,
            memory_bytes: figures.memory_bytes,
            disk_bytes: figures.disk_bytes,
            measured: l.measured().is_some(),
            verified: l.verified(),
            hourly_rate_cents: l.device.hourly_rate,
            uptime_30d_permille: l.uptime.map(|u| u.month_permille),
            available: why.is_none(),
            unavailable_reason: why.map(|w| w.to_string()),
        }
    }
}

/// A device a peer broker manages, rented on that broker.
#[derive(Debug, Serialize)]
pub struct PeerDevice {
    /// The managing broker's name and URL.
    broker: String,
    broker_url: String,
    name: String,
    arch: Option<String>,
    cpu_millicores: Option<u64>,
    memory_bytes: Option<u64>,
    disk_bytes: Option<u64>,
    /// Verified by the managing broker.
    verified: bool,
    hourly_rate_cents: Option<i64>,
    currency: String,
    available: bool,
    /// Its page on the managing broker.
    rent_url: String,
}

impl From<&PeerOffer> for PeerDevice {
    fn from(o: &PeerOffer) -> Self {
        let d = &o.device;
        Self {
            broker: o.broker.clone(),
            broker_url: o.broker_url.clone(),
            name: d.name.clone(),
            arch: d.arch.clone(),
            cpu_millicores: d.cpu_millicores,
            memory_bytes: d.memory_bytes,
            disk_bytes: d.disk_bytes,
            verified: d.verified,
            hourly_rate_cents: d.hourly_rate,
            currency: d.currency.clone(),
            available: d.available,
            rent_url: o.href(),
        }
    }
}

#[derive(Serialize)]
pub struct Market {
    devices: Vec<Offer>,
    /// Devices peer brokers manage that match the filters, this page of
    /// them, in the same order.
    peer_devices: Vec<PeerDevice>,
    /// Peer devices that match the filters, on every page.
    peer_devices_total: usize,
    /// Devices that match the filters, on every page.
    matching: usize,
    /// This page, from 1.
    page: u32,
    pages: u32,
}

pub async fn listing(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Market>, Failure> {
    let (query, problems) = MarketQuery::parse(raw.as_deref());
    if !problems.is_empty() {
        let why: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidInput,
            why.join(" "),
        ));
    }
    let all = market::load(&shared)
        .await
        .map_err(|e| Failure::internal("listing the marketplace failed", e))?;
    let peers = market::peers::load(&shared)
        .await
        .map_err(|e| Failure::internal("listing peer devices failed", e))?;
    let own = &shared.settings.federation.name;
    let start = (query.page.max(1) as usize - 1) * PAGE_SIZE;
    let found = market::search(&all, &query, own);
    let peers = market::listing::matching(&peers, &query, own);
    Ok(Json(Market {
        devices: found.rows.into_iter().map(Offer::from).collect(),
        peer_devices: peers
            .iter()
            .skip(start)
            .take(PAGE_SIZE)
            .map(|o| PeerDevice::from(*o))
            .collect(),
        peer_devices_total: peers.len(),
        matching: found.matching,
        page: found.page,
        pages: found.pages,
    }))
}
