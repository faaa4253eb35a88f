//! The rpibroker broker.
//!
//! # Layout
//!
//! - [`accounts`]: accounts and sessions: sign-up, sign-in, throttling, timeouts;
//!   API tokens.
//! - [`actions`]: what a person does (rent, stop, register a device, list it…),
//!   one implementation for the web pages and the JSON API.
//! - [`broker`]: starting a broker on given listeners and running it until shutdown.
//! - [`settings`]: defaults, config file, environment and flags, resolved once.
//! - [`store`]: SQLite persistence of devices, ports, keys, retired tokens,
//!   sandboxes, verifications and rentals.
//! - [`api`]: the HTTP API: the agents' handshake (`POST /api/v1/connect`), and
//!   the JSON API for people's scripts with its OpenAPI document.
//! - [`market`]: the listed devices, and filtering, sorting and paging them.
//! - [`web`]: the web pages for people: marketplace, sign-up, sign-in, account.
//! - [`mail`]: email to people (rental logins, password resets) through the
//!   outbox in the data directory or an SMTP server.
//! - [`tunnel`]: the SSH endpoint devices connect to; grants only forwards of
//!   the device's own services and the control subsystem.
//! - [`registry`]: live sessions in memory: which device is connected and
//!   what it forwards; the edge asks it where a visitor goes.
//! - [`edge`]: where visitors come in: Host routing, SNI routing, per-device ports.
//! - [`access`]: whom each device admits: its owner when unlisted, its renter
//!   while rented, no one while listed between rentals.
//! - [`presence`]: writing online state and last-seen times to the store.
//! - [`gate`]: admission of new connections, in total and per source address.
//! - [`notify`]: the local socket through which `device` and `rental` commands reach a running broker.
//! - [`control`]: the broker's end of each device's control channel.
//! - [`sandbox_watch`]: per connected device, its sandbox's state, resumed
//!   rental ends, and scheduled verification.
//! - [`verify`]: measuring a sandbox through the tunnel and comparing with the claims.
//! - [`rental`]: starting and stopping rentals (provision, wipe).
//! - [`ledger`]: money: currencies, accounts and balanced transfers, kept
//!   double-entry in the store.
//! - [`billing`]: holding and charging rentals per hour for the time their
//!   device was reachable.
//! - [`payouts`]: paying owners what they are owed, each payout period: PayPal
//!   Payouts, or the operator's crypto transfers by export and import.
//! - [`csv`]: CSV fields written and read back.
//! - [`payments`]: renters' top-ups through PayPal and BTCPay Server.
//! - [`sandbox_limits`]: an owner changing their sandbox's CPU, memory and disk limits.
//! - [`federation`]: peer brokers: keys, signed requests, peering, listings.
//! - [`device_cmd`], [`rental_cmd`], [`admin_cmd`], [`peer_cmd`], [`cli`]: the command line.
//! - [`enroll`]: a new device's agent config and start commands.
//! - [`price`]: hourly prices, parsed and shown in minor units.
//! - [`token`], [`host_key`], [`private_file`], [`port_pool`], [`time`], [`shutdown`], [`accept`]: small
//!   pieces named for what they own.

pub mod accept;
pub mod access;
pub mod accounts;
pub mod actions;
pub mod admin_cmd;
pub mod api;
pub mod billing;
pub mod broker;
pub mod cli;
pub mod control;
pub mod csv;
pub mod device_cmd;
pub mod edge;
pub mod enroll;
pub mod federation;
pub mod gate;
pub mod host_key;
pub mod ledger;
pub mod mail;
pub mod market;
pub mod notify;
pub mod payments;
pub mod payouts;
pub mod peer_cmd;
pub mod port_pool;
pub mod presence;
pub mod price;
pub mod private_file;
pub mod registry;
pub mod rental;
pub mod rental_cmd;
pub mod sandbox_limits;
pub mod sandbox_watch;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod time;
pub mod token;
pub mod tunnel;
pub mod verify;
pub mod web;
