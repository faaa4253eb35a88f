//! The broker's settings: built-in defaults, overridden by a TOML config file,
//! overridden by environment variables and command-line flags (clap reads both).
//!
//! The defaults make `rpibroker serve` work with no configuration at all:
//! everything on loopback, domain `localhost` (so `http://<device>.localhost:8080`
//! works in curl and browsers), SQLite in the data directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::mail::settings::{FileMail, MailArgs, MailSettings};
use crate::port_pool::PortPool;

/// Name of the config file looked for in the data directory when `--config`
/// is not given.
pub const CONFIG_FILE: &str = "rpibroker.toml";

/// Every setting, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Devices are `<name>.<domain>`.
    pub domain: String,
    /// The HTTP API (the agents' handshake).
    pub api_listen: SocketAddr,
    /// The SSH tunnel endpoint.
    pub ssh_listen: SocketAddr,
    /// The shared HTTP edge (routing by Host).
    pub http_listen: SocketAddr,
    /// The shared HTTPS edge (routing by SNI).
    pub https_listen: SocketAddr,
    /// Address the devices' own public ports listen on.
    pub device_bind: IpAddr,
    pub port_pool: PortPool,
    /// The API's URL as devices reach it, written into agent configs.
    pub public_url: String,
    /// The tunnel endpoint's host as devices reach it, sent in the handshake.
    pub tunnel_host: String,
    /// How long a visitor may take to send the request head or ClientHello.
    pub edge_read_timeout: Duration,
    /// How long an SSH connection may take to authenticate.
    pub ssh_auth_timeout: Duration,
    /// An SSH connection with no traffic at all (not even keepalive answers)
    /// for this long is closed.
    pub ssh_idle_timeout: Duration,
    /// A visitor (or the device's side of its connection) that accepts no
    /// bytes for this long is disconnected, so it cannot stall the device.
    pub visitor_stall_timeout: Duration,
    /// How the broker sends mail, and as whom.
    pub mail: MailSettings,
    /// Whether and how rentals are charged.
    pub billing: crate::billing::settings::BillingSettings,
    /// Whether, when and how owners are paid.
    pub payouts: crate::payouts::settings::PayoutSettings,
    /// Payment providers renters top up through.
    pub payments: crate::payments::settings::PaymentSettings,
    /// This broker's name among peers, and how it pulls their listings.
    pub federation: crate::federation::settings::FederationSettings,
}

/// The config file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Only read from a file given with `--config` (the default file lives
    /// in the data directory, so it cannot move it).
    pub data_dir: Option<PathBuf>,
    pub domain: Option<String>,
    pub api_listen: Option<SocketAddr>,
    pub ssh_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub https_listen: Option<SocketAddr>,
    pub device_bind: Option<IpAddr>,
    pub port_pool: Option<PortPool>,
    pub public_url: Option<String>,
    pub tunnel_host: Option<String>,
    pub edge_read_timeout_secs: Option<u64>,
    pub ssh_auth_timeout_secs: Option<u64>,
    pub ssh_idle_timeout_secs: Option<u64>,
    pub visitor_stall_timeout_secs: Option<u64>,
    /// The `[mail]` table.
    pub mail: Option<FileMail>,
    /// The `[billing]` table.
    pub billing: Option<crate::billing::settings::FileBilling>,
    /// The `[payouts]` table.
    pub payouts: Option<crate::payouts::settings::FilePayouts>,
    /// The `[payments]` table.
    pub payments: Option<crate::payments::settings::FilePayments>,
    /// The `[federation]` table.
    pub federation: Option<crate::federation::settings::FileFederation>,
}

/// Settings given by flag or environment variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct SettingsArgs {
    /// Domain under which devices get their subdomain (<device>.<domain>).
    #[arg(long, env = "RPIBROKER_DOMAIN", global = true)]
    pub domain: Option<String>,
    /// Address of the HTTP API that agents call [default: 127.0.0.1:8000].
    #[arg(long, env = "RPIBROKER_API_LISTEN", global = true)]
    pub api_listen: Option<SocketAddr>,
    /// Address of the SSH tunnel endpoint [default: 127.0.0.1:2222].
    #[arg(long, env = "RPIBROKER_SSH_LISTEN", global = true)]
    pub ssh_listen: Option<SocketAddr>,
    /// Address of the shared HTTP port, routing by Host [default: 127.0.0.1:8080].
    #[arg(long, env = "RPIBROKER_HTTP_LISTEN", global = true)]
    pub http_listen: Option<SocketAddr>,
    /// Address of the shared HTTPS port, routing by SNI [default: 127.0.0.1:8443].
    #[arg(long, env = "RPIBROKER_HTTPS_LISTEN", global = true)]
    pub https_listen: Option<SocketAddr>,
    /// Address the devices' own public ports listen on [default: 127.0.0.1].
    #[arg(long, env = "RPIBROKER_DEVICE_BIND", global = true)]
    pub device_bind: Option<IpAddr>,
    /// Range of public ports given to devices, three each [default: 20000-20999].
    #[arg(long, env = "RPIBROKER_PORT_POOL", global = true)]
    pub port_pool: Option<PortPool>,
    /// The API's URL as devices reach it [default: http://<api-listen>].
    #[arg(long, env = "RPIBROKER_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Host name devices use to reach the tunnel endpoint [default: the
    /// ssh-listen address, or the domain if that is a wildcard address].
    #[arg(long, env = "RPIBROKER_TUNNEL_HOST", global = true)]
    pub tunnel_host: Option<String>,
    #[command(flatten)]
    pub mail: MailArgs,
}

/// Where the data directory is when none is given: `$XDG_DATA_HOME/rpibroker`
/// or `~/.local/share/rpibroker`, so every `rpibroker` command finds the same one.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("rpibroker");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/rpibroker"),
        None => PathBuf::from("rpibroker-data"),
    }
}

impl Settings {
    /// Resolves the settings: flags and environment (`data_dir`, `args`) over
    /// the config file over defaults. The config file is `config` if given,
    /// else `rpibroker.toml` in the data directory if it exists.
    pub fn resolve(
        data_dir: Option<PathBuf>,
        config: Option<&Path>,
        args: &SettingsArgs,
    ) -> anyhow::Result<Self> {
        let (data_dir, file) = match config {
            Some(path) => {
                let mut file = read_file(path)?;
                let dir = data_dir
                    .or(file.data_dir.take())
                    .unwrap_or_else(default_data_dir);
                (dir, file)
            }
            None => {
                let dir = data_dir.unwrap_or_else(default_data_dir);
                let path = dir.join(CONFIG_FILE);
                let mut file = if path.exists() {
                    read_file(&path)?
                } else {
                    FileSettings::default()
                };
                anyhow::ensure!(
                    file.data_dir.take().is_none(),
                    "{}: data_dir cannot be set in the data directory's own config file",
                    path.display()
                );
                (dir, file)
            }
        };
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let domain = args
            .domain
            .clone()
            .or(file.domain)
            .unwrap_or_else(|| "localhost".into())
            .trim_end_matches('.')
            .to_ascii_lowercase();
        anyhow::ensure!(
            !domain.is_empty()
                && domain.len() <= 200
                && domain.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }),
            "domain {domain:?} is not a valid DNS name"
        );
        let api_listen = args
            .api_listen
            .or(file.api_listen)
            .unwrap_or(SocketAddr::new(loopback, 8000));
        let ssh_listen = args
            .ssh_listen
            .or(file.ssh_listen)
            .unwrap_or(SocketAddr::new(loopback, 2222));
        let public_url = args
            .public_url
            .clone()
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{api_listen}"));
        let tunnel_host = args
            .tunnel_host
            .clone()
            .or(file.tunnel_host)
            .unwrap_or_else(|| {
                if ssh_listen.ip().is_unspecified() {
                    domain.clone()
                } else {
                    ssh_listen.ip().to_string()
                }
            });
        let mail = crate::mail::settings::resolve(
            file.mail.unwrap_or_default(),
            &args.mail,
            &data_dir,
            &domain,
        )
        .context("mail settings")?;
        let billing = crate::billing::settings::resolve(file.billing.unwrap_or_default())
            .context("billing settings")?;
        let payouts = crate::payouts::settings::resolve(file.payouts.unwrap_or_default())
            .context("payout settings")?;
        let payments = crate::payments::settings::resolve(file.payments.unwrap_or_default())
            .context("payment settings")?;
        let federation =
            crate::federation::settings::resolve(file.federation.unwrap_or_default(), &domain)
                .context("federation settings")?;
        anyhow::ensure!(
            !(payouts.enabled && payouts.paypal) || payments.paypal.is_some(),
            "payouts.paypal needs PayPal configured in the [payments.paypal] table"
        );
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default).max(1));
        let settings = Self {
            data_dir,
            domain,
            api_listen,
            ssh_listen,
            http_listen: args
                .http_listen
                .or(file.http_listen)
                .unwrap_or(SocketAddr::new(loopback, 8080)),
            https_listen: args
                .https_listen
                .or(file.https_listen)
                .unwrap_or(SocketAddr::new(loopback, 8443)),
            device_bind: args.device_bind.or(file.device_bind).unwrap_or(loopback),
            port_pool: args.port_pool.or(file.port_pool).unwrap_or(PortPool {
                first: 20000,
                last: 20999,
            }),
            public_url: public_url.trim_end_matches('/').to_string(),
            tunnel_host,
            edge_read_timeout: secs(file.edge_read_timeout_secs, 10),
            ssh_auth_timeout: secs(file.ssh_auth_timeout_secs, 30),
            ssh_idle_timeout: secs(file.ssh_idle_timeout_secs, 600),
            visitor_stall_timeout: secs(file.visitor_stall_timeout_secs, 10),
            mail,
            billing,
            payouts,
            payments,
            federation,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Catches settings that would only fail later, at a visitor's expense.
    fn check(&self) -> anyhow::Result<()> {
        let topups = self.payments.paypal.is_some() || self.payments.btcpay.is_some();
        let not_in_cents = crate::payments::NOT_IN_CENTS.contains(&self.billing.currency.as_str());
        anyhow::ensure!(
            !(topups && not_in_cents),
            "billing currency {} is not counted in cents, so payment providers cannot take top-ups in it",
            self.billing.currency
        );
        anyhow::ensure!(
            !(self.payouts.enabled && not_in_cents),
            "billing currency {} is not counted in cents, so owners cannot be paid out in it",
            self.billing.currency
        );
        anyhow::ensure!(
            self.public_url.starts_with("http://") || self.public_url.starts_with("https://"),
            "public_url {:?} must start with http:// or https://",
            self.public_url
        );
        let listeners = [
            ("api_listen", self.api_listen),
            ("ssh_listen", self.ssh_listen),
            ("http_listen", self.http_listen),
            ("https_listen", self.https_listen),
        ];
        for (name, addr) in listeners {
            let same_address = addr.ip() == self.device_bind
                || addr.ip().is_unspecified()
                || self.device_bind.is_unspecified();
            anyhow::ensure!(
                !(same_address && self.port_pool.iter().any(|p| p == addr.port())),
                "{name} {addr} is inside the device port pool {}; devices would be given its port",
                self.port_pool
            );
        }
        Ok(())
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("broker.sqlite")
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::resolve(Some(dir.path().into()), None, &SettingsArgs::default()).unwrap();
        assert_eq!(s.domain, "localhost");
        assert!(s.api_listen.ip().is_loopback() && s.ssh_listen.ip().is_loopback());
        assert!(s.http_listen.ip().is_loopback() && s.https_listen.ip().is_loopback());
        assert!(s.device_bind.is_loopback());
        assert_eq!(s.public_url, "http://127.0.0.1:8000");
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "domain = \"example.org\"\nport_pool = \"30000-30099\"\n",
        )
        .unwrap();
        let args = SettingsArgs {
            domain: Some("flag.example".into()),
            ..Default::default()
        };
        let s = Settings::resolve(Some(dir.path().into()), None, &args).unwrap();
        assert_eq!(s.domain, "flag.example");
        assert_eq!(s.port_pool.to_string(), "30000-30099");
    }

    #[test]
    fn an_explicit_config_file_can_move_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, "data_dir = \"/srv/rpibroker\"\n").unwrap();
        let s = Settings::resolve(None, Some(&path), &SettingsArgs::default()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/rpibroker"));
        let flag =
            Settings::resolve(Some("/flag".into()), Some(&path), &SettingsArgs::default()).unwrap();
        assert_eq!(flag.data_dir, PathBuf::from("/flag"));
    }

    #[test]
    fn settings_that_would_fail_later_are_refused_now() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |args: SettingsArgs| Settings::resolve(Some(dir.path().into()), None, &args);
        let err = resolve(SettingsArgs {
            http_listen: Some("127.0.0.1:20005".parse().unwrap()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("inside the device port pool"),
            "{err}"
        );
        let err = resolve(SettingsArgs {
            domain: Some("bad_domain.example".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("not a valid DNS name"), "{err}");
        let err = resolve(SettingsArgs {
            public_url: Some("broker.example.org".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("must start with http"), "{err}");
    }

    #[test]
    fn the_mail_table_configures_smtp() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "domain = \"example.org\"\n[mail]\nfrom = \"ops@example.org\"\nsmtp_host = \"mail.example.org\"\nsmtp_security = \"starttls\"\n",
        )
        .unwrap();
        let s = Settings::resolve(Some(dir.path().into()), None, &SettingsArgs::default()).unwrap();
        assert_eq!(s.mail.from.email.to_string(), "ops@example.org");
        let crate::mail::TransportSettings::Smtp(smtp) = &s.mail.transport else {
            panic!("{:?}", s.mail)
        };
        assert_eq!((smtp.host.as_str(), smtp.port), ("mail.example.org", 587));

        std::fs::write(dir.path().join(CONFIG_FILE), "[mail]\nsmtp_prot = 25\n").unwrap();
        let err =
            Settings::resolve(Some(dir.path().into()), None, &SettingsArgs::default()).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }

    #[test]
    fn the_payments_table_configures_providers_with_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        let hook = dir.path().join("hook");
        std::fs::write(&key, "api-key\n").unwrap();
        std::fs::write(&hook, "hook-secret").unwrap();
        let btcpay = format!(
            "[payments]\nreconcile_every_secs = 60\n[payments.btcpay]\nbase_url = \"https://pay.example.org/\"\nstore_id = \"Store1\"\napi_key_file = \"{}\"\nwebhook_secret_file = \"{}\"\n",
            key.display(),
            hook.display()
        );
        std::fs::write(dir.path().join(CONFIG_FILE), &btcpay).unwrap();
        let s = Settings::resolve(Some(dir.path().into()), None, &SettingsArgs::default()).unwrap();
        let b = s.payments.btcpay.as_ref().unwrap();
        assert_eq!(b.base_url, "https://pay.example.org");
        assert_eq!(
            (b.api_key.expose(), b.webhook_secret.expose()),
            ("api-key", "hook-secret")
        );
        assert_eq!(s.payments.reconcile_every, Duration::from_secs(60));
        assert!(s.payments.paypal.is_none());
        assert!(!format!("{s:?}").contains("hook-secret"));

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            format!("[billing]\ncurrency = \"JPY\"\n{btcpay}"),
        )
        .unwrap();
        let err =
            Settings::resolve(Some(dir.path().into()), None, &SettingsArgs::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("not counted in cents"),
            "{err:#}"
        );

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[payments.btcpay]\nbase_url = \"pay.example.org\"\nstore_id = \"S\"\n",
        )
        .unwrap();
        let err =
            Settings::resolve(Some(dir.path().into()), None, &SettingsArgs::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("must start with http"),
            "{err:#}"
        );
    }

    #[test]
    fn payouts_refuse_a_currency_not_counted_in_cents() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |toml: &str| {
            std::fs::write(dir.path().join(CONFIG_FILE), toml).unwrap();
            Settings::resolve(Some(dir.path().into()), None, &SettingsArgs::default())
        };
        let payouts = "[payouts]\nenabled = true\n";
        let err = resolve(&format!("[billing]\ncurrency = \"JPY\"\n{payouts}")).unwrap_err();
        assert!(
            format!("{err:#}").contains("JPY is not counted in cents, so owners cannot be paid"),
            "{err:#}"
        );
        assert!(resolve(&format!("[billing]\ncurrency = \"EUR\"\n{payouts}")).is_ok());
        assert!(resolve("[billing]\ncurrency = \"JPY\"\n[payouts]\nenabled = false\n").is_ok());
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "domian = \"typo.example\"\n").unwrap();
        let err = Settings::resolve(
            Some(dir.path().into()),
            Some(&path),
            &SettingsArgs::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }
}
