//! The operator's mail settings: which transport, the sender, and for SMTP
//! the server, its security and the login. Read from the `[mail]` table of the
//! config file, overridden by flags and environment variables, resolved once.
//!
//! The SMTP password never appears on a command line or in a log: it comes
//! from a file or from `RPIBROKER_SMTP_PASSWORD`, and prints as `MASKED`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;

/// Directory under the data directory where the outbox writes messages.
pub const OUTBOX_DIR: &str = "outbox";
/// How long one message may take to send, unless the operator says otherwise.
const DEFAULT_SEND_TIMEOUT_SECS: u64 = 30;
/// Longest password file read.
const MAX_PASSWORD_FILE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MailSettingsError {
    #[error(
        "mail from {0:?} is not a usable address (expected name@domain or \"Name <name@domain>\")"
    )]
    BadFrom(String),
    #[error("mail transport smtp needs smtp_host")]
    NoHost,
    #[error("smtp_username and an SMTP password go together; only one is set")]
    HalfCredentials,
    #[error(
        "smtp_security plain would send the SMTP password unencrypted to {0}; use tls or starttls, or a relay on this machine"
    )]
    PlainPasswordAcrossNetwork(String),
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is larger than {MAX_PASSWORD_FILE} bytes; it should hold only the password")]
    PasswordFileTooLarge(PathBuf),
}

/// Where messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// `.eml` files in the data directory; nothing leaves the machine.
    Outbox,
    /// An SMTP server.
    Smtp,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (submissions port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// No encryption: only for a relay on this machine or a trusted network.
    Plain,
}

impl Security {
    fn default_port(self) -> u16 {
        match self {
            Security::Tls => 465,
            Security::Starttls => 587,
            Security::Plain => 25,
        }
    }
}

/// A password: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// The `[mail]` table of the config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMail {
    pub transport: Option<TransportKind>,
    pub from: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_security: Option<Security>,
    pub smtp_username: Option<String>,
    pub smtp_password_file: Option<PathBuf>,
    /// Extra root certificates (PEM) to trust, for a server with a private CA.
    pub smtp_ca_file: Option<PathBuf>,
    pub send_timeout_secs: Option<u64>,
}

/// Mail settings given by flag or environment variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct MailArgs {
    /// Where mail goes: outbox (files in the data directory) or smtp
    /// [default: smtp if an SMTP host is set, else outbox].
    #[arg(long, env = "RPIBROKER_MAIL_TRANSPORT", global = true)]
    pub mail_transport: Option<TransportKind>,
    /// Sender of the broker's mail [default: rpibroker <noreply@DOMAIN>].
    #[arg(long, env = "RPIBROKER_MAIL_FROM", global = true)]
    pub mail_from: Option<String>,
    /// SMTP server host name.
    #[arg(long, env = "RPIBROKER_SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,
    /// SMTP server port [default: 465 for tls, 587 for starttls, 25 for plain].
    #[arg(long, env = "RPIBROKER_SMTP_PORT", global = true)]
    pub smtp_port: Option<u16>,
    /// tls, starttls or plain [default: tls].
    #[arg(long, env = "RPIBROKER_SMTP_SECURITY", global = true)]
    pub smtp_security: Option<Security>,
    /// SMTP login name.
    #[arg(long, env = "RPIBROKER_SMTP_USERNAME", global = true)]
    pub smtp_username: Option<String>,
    /// File holding the SMTP password (or give the password itself in
    /// RPIBROKER_SMTP_PASSWORD).
    #[arg(long, env = "RPIBROKER_SMTP_PASSWORD_FILE", global = true)]
    pub smtp_password_file: Option<PathBuf>,
    /// The SMTP password itself, from the environment only.
    #[arg(skip = std::env::var("RPIBROKER_SMTP_PASSWORD").ok().filter(|p| !p.is_empty()).map(Secret::new))]
    pub smtp_password: Option<Secret>,
}

/// The mail settings, resolved.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub from: Mailbox,
    pub transport: TransportSettings,
    /// Longest one message may take to send.
    pub send_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSettings {
    /// Messages are written as files in this directory.
    Outbox(PathBuf),
    Smtp(SmtpSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<(String, Secret)>,
    pub ca_file: Option<PathBuf>,
}

/// Whether `host` names this machine.
fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn read_password(path: &Path) -> Result<Secret, MailSettingsError> {
    let read = |source| MailSettingsError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::metadata(path).map_err(read)?.len() > MAX_PASSWORD_FILE {
        return Err(MailSettingsError::PasswordFileTooLarge(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    Ok(Secret::new(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Resolves the mail settings: `args` over `file` over defaults. The outbox
/// lives in `data_dir`, and the default sender is at `domain`.
pub fn resolve(
    file: FileMail,
    args: &MailArgs,
    data_dir: &Path,
    domain: &str,
) -> Result<MailSettings, MailSettingsError> {
    let from_text = args
        .mail_from
        .clone()
        .or(file.from)
        .unwrap_or_else(|| format!("rpibroker <noreply@{domain}>"));
    let from = from_text
        .parse::<Mailbox>()
        .map_err(|_| MailSettingsError::BadFrom(from_text.clone()))?;
    let host = args.smtp_host.clone().or(file.smtp_host);
    let kind = args
        .mail_transport
        .or(file.transport)
        .unwrap_or(if host.is_some() {
            TransportKind::Smtp
        } else {
            TransportKind::Outbox
        });
    let transport = match kind {
        TransportKind::Outbox => TransportSettings::Outbox(data_dir.join(OUTBOX_DIR)),
        TransportKind::Smtp => {
            let host = host.ok_or(MailSettingsError::NoHost)?;
            let security = args
                .smtp_security
                .or(file.smtp_security)
                .unwrap_or(Security::Tls);
            let password = match (&args.smtp_password, &args.smtp_password_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(path)) => Some(read_password(path)?),
                (None, None) => file
                    .smtp_password_file
                    .as_deref()
                    .map(read_password)
                    .transpose()?,
            };
            let username = args.smtp_username.clone().or(file.smtp_username);
            let credentials = match (username, password) {
                (Some(u), Some(p)) => Some((u, p)),
                (None, None) => None,
                _ => return Err(MailSettingsError::HalfCredentials),
            };
            if security == Security::Plain && credentials.is_some() && !is_local(&host) {
                return Err(MailSettingsError::PlainPasswordAcrossNetwork(host));
            }
            TransportSettings::Smtp(SmtpSettings {
                port: args
                    .smtp_port
                    .or(file.smtp_port)
                    .unwrap_or(security.default_port()),
                host,
                security,
                credentials,
                ca_file: file.smtp_ca_file,
            })
        }
    };
    Ok(MailSettings {
        from,
        transport,
        send_timeout: Duration::from_secs(
            file.send_timeout_secs
                .unwrap_or(DEFAULT_SEND_TIMEOUT_SECS)
                .max(1),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(toml_text: &str) -> FileMail {
        toml::from_str(toml_text).unwrap()
    }

    fn args() -> MailArgs {
        MailArgs::default()
    }

    #[test]
    fn the_default_is_an_outbox_in_the_data_directory() {
        let s = resolve(
            FileMail::default(),
            &args(),
            Path::new("/data"),
            "example.org",
        )
        .unwrap();
        assert_eq!(
            s.transport,
            TransportSettings::Outbox(PathBuf::from("/data/outbox"))
        );
        assert_eq!(s.from.to_string(), "rpibroker <noreply@example.org>");
        assert_eq!(s.send_timeout, Duration::from_secs(30));
    }

    #[test]
    fn an_smtp_host_chooses_smtp_with_tls_and_its_port() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "s3cret\n").unwrap();
        let text = format!(
            "smtp_host = \"mail.example.org\"\nsmtp_username = \"broker\"\nsmtp_password_file = {:?}\nfrom = \"Broker <broker@example.org>\"\n",
            pass
        );
        let s = resolve(file(&text), &args(), dir.path(), "example.org").unwrap();
        let TransportSettings::Smtp(smtp) = &s.transport else {
            panic!("{s:?}")
        };
        assert_eq!(smtp.host, "mail.example.org");
        assert_eq!((smtp.security, smtp.port), (Security::Tls, 465));
        let (user, password) = smtp.credentials.as_ref().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("broker", "s3cret"));
        assert_eq!(s.from.email.to_string(), "broker@example.org");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("MASKED"),
            "{shown}"
        );

        let starttls = resolve(
            file("smtp_host = \"mail.example.org\"\nsmtp_security = \"starttls\"\n"),
            &args(),
            dir.path(),
            "example.org",
        )
        .unwrap();
        assert!(matches!(
            starttls.transport,
            TransportSettings::Smtp(SmtpSettings { port: 587, .. })
        ));
    }

    #[test]
    fn flags_and_the_environment_beat_the_file() {
        let a = MailArgs {
            smtp_host: Some("relay.example.net".into()),
            smtp_port: Some(2525),
            smtp_username: Some("flag-user".into()),
            smtp_password: Some(Secret::new("from-env".into())),
            ..args()
        };
        let s = resolve(
            file("transport = \"smtp\"\nsmtp_host = \"mail.example.org\"\nsmtp_username = \"file-user\"\n"),
            &a,
            Path::new("/data"),
            "example.org",
        )
        .unwrap();
        let TransportSettings::Smtp(smtp) = s.transport else {
            panic!()
        };
        assert_eq!((smtp.host.as_str(), smtp.port), ("relay.example.net", 2525));
        let (user, password) = smtp.credentials.unwrap();
        assert_eq!(
            (user.as_str(), password.expose()),
            ("flag-user", "from-env")
        );
    }

    #[test]
    fn settings_that_would_leak_or_fail_are_refused() {
        let resolve_text =
            |text: &str| resolve(file(text), &args(), Path::new("/data"), "example.org");
        assert!(matches!(
            resolve_text("transport = \"smtp\"\n"),
            Err(MailSettingsError::NoHost)
        ));
        assert!(matches!(
            resolve_text("smtp_host = \"mail.example.org\"\nsmtp_username = \"u\"\n"),
            Err(MailSettingsError::HalfCredentials)
        ));
        assert!(matches!(
            resolve_text("from = \"not an address\"\n"),
            Err(MailSettingsError::BadFrom(_))
        ));
        let plain = MailArgs {
            smtp_username: Some("u".into()),
            smtp_password: Some(Secret::new("p".into())),
            smtp_security: Some(Security::Plain),
            ..args()
        };
        for (host, ok) in [
            ("mail.example.org", false),
            ("127.0.0.1", true),
            ("localhost", true),
        ] {
            let a = MailArgs {
                smtp_host: Some(host.into()),
                ..plain.clone()
            };
            let r = resolve(FileMail::default(), &a, Path::new("/data"), "example.org");
            assert_eq!(r.is_ok(), ok, "{host}: {r:?}");
        }
        assert!(toml::from_str::<FileMail>("smtp_hots = \"x\"\n").is_err());
    }
}
