//! Email from the broker to people: a renter's login when a rental starts,
//! and password-reset links.
//!
//! - [`settings`]: the operator's choice of transport, sender and SMTP login.
//! - [`messages`]: what each message says; one function per message, shared
//!   by the web pages and the JSON API.
//! - `outbox`: the default transport, `.eml` files in the data directory.
//! - `smtp`: an SMTP server over TLS, STARTTLS or (for a local relay) plain.
//!
//! A [`Mailer`] is built once from the settings and passed to every part of
//! the broker through [`crate::broker::Shared`]. Every send is bounded in time
//! and in how many run at once. A failure is logged with the recipient's
//! domain only and returned to the caller, who never lets it fail the action
//! that asked for the mail.

pub mod messages;
mod outbox;
pub mod settings;
mod smtp;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{Address, Message};

pub use messages::{password_reset, rental_credentials};
pub use settings::{MailSettings, TransportSettings};

/// Messages sent at once, at most; further sends wait their turn (within
/// their time limit).
const MAX_SENDING: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("not a usable email address")]
    BadAddress,
    #[error("composing the message: {0}")]
    Compose(#[from] lettre::error::Error),
    #[error("writing to the outbox: {0}")]
    Outbox(#[from] std::io::Error),
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("loading the SMTP server's CA file {0}: {1}")]
    CaFile(std::path::PathBuf, String),
    #[error("sending took longer than {0:?}")]
    TimedOut(Duration),
}

/// A message to one person, in plain text.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Address,
    pub subject: String,
    pub body: String,
}

impl Mail {
    /// A message to `to`, which must be a usable address.
    pub fn new(to: &str, subject: String, body: String) -> Result<Self, MailError> {
        let to = to.parse::<Address>().map_err(|_| MailError::BadAddress)?;
        Ok(Self { to, subject, body })
    }
}

enum Transport {
    Outbox(outbox::Outbox),
    Smtp(smtp::Smtp),
}

/// Sends the broker's mail through the transport the operator chose.
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
    timeout: Duration,
    sending: tokio::sync::Semaphore,
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Self, MailError> {
        let transport = match &settings.transport {
            TransportSettings::Outbox(dir) => Transport::Outbox(outbox::Outbox::new(dir.clone())),
            TransportSettings::Smtp(s) => {
                Transport::Smtp(smtp::Smtp::new(s, settings.send_timeout)?)
            }
        };
        Ok(Self {
            from: settings.from.clone(),
            transport,
            timeout: settings.send_timeout,
            sending: tokio::sync::Semaphore::new(MAX_SENDING),
        })
    }

    /// Whether mail stays in the outbox for the operator instead of being sent.
    pub fn keeps_mail(&self) -> bool {
        matches!(self.transport, Transport::Outbox(_))
    }

    /// Where mail goes, for the operator: the outbox directory or the SMTP server.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Outbox(o) => format!("outbox {}", o.dir().display()),
            Transport::Smtp(s) => s.describe(),
        }
    }

    /// Sends `mail`, within the send timeout. Logs the outcome with the
    /// recipient's domain only.
    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let domain = mail.to.domain().to_string();
        let address = mail.to.to_string();
        let result = tokio::time::timeout(self.timeout, self.deliver(mail))
            .await
            .unwrap_or(Err(MailError::TimedOut(self.timeout)));
        match &result {
            Ok(()) => tracing::info!(to_domain = %domain, "mail sent"),
            Err(e) => {
                // A server's answer may quote the address; keep it out of the log.
                let error = e.to_string().replace(&address, "<recipient>");
                tracing::warn!(to_domain = %domain, %error, "mail could not be sent");
            }
        }
        result
    }

    /// Sends `mail` in a task of its own, so the caller does not wait; the
    /// handle says how it went.
    pub fn send_in_background(
        self: &Arc<Self>,
        mail: Mail,
    ) -> tokio::task::JoinHandle<Result<(), MailError>> {
        let mailer = self.clone();
        tokio::spawn(async move { mailer.send(mail).await })
    }

    async fn deliver(&self, mail: Mail) -> Result<(), MailError> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, mail.to))
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)?;
        let _turn = self
            .sending
            .acquire()
            .await
            .expect("the semaphore is never closed");
        match &self.transport {
            Transport::Outbox(o) => o.write(&message).await,
            Transport::Smtp(s) => s.send(message).await,
        }
    }
}
