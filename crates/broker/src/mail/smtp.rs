//! Sending through an SMTP server: TLS from the start or STARTTLS (rustls,
//! with the Mozilla roots and any CA the operator adds), or plain for a relay
//! on this machine; AUTH with the operator's login when one is set.

use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport, Message, Tokio1Executor};

use super::MailError;
use super::settings::{Security, SmtpSettings};

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    host: String,
    port: u16,
    security: Security,
}

fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(path) = &settings.ca_file {
        let bad = |why: String| MailError::CaFile(path.clone(), why);
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder.build_rustls()?)
}

impl Smtp {
    /// A transport for `settings`; each command may take `timeout`.
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<Self, MailError> {
        let tls = match settings.security {
            Security::Tls => Tls::Wrapper(tls_parameters(settings)?),
            Security::Starttls => Tls::Required(tls_parameters(settings)?),
            Security::Plain => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            host: settings.host.clone(),
            port: settings.port,
            security: settings.security,
        })
    }

    pub fn describe(&self) -> String {
        let security = match self.security {
            Security::Tls => "TLS",
            Security::Starttls => "STARTTLS",
            Security::Plain => "unencrypted",
        };
        format!("SMTP {}:{} ({security})", self.host, self.port)
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        self.transport.send(message).await?;
        Ok(())
    }
}
