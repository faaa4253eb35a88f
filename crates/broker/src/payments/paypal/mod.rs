//! PayPal: the REST client ([`client`]), its settings ([`settings`]), and
//! renters' top-ups as PayPal Orders ([`orders`]).

pub mod client;
pub mod orders;
pub mod settings;

pub use client::{PaypalClient, PaypalError};
pub use settings::PaypalSettings;
