//! The control protocol on the agent's SSH connection: the broker's commands
//! to the agent (provision a rental, wipe, status, verify) and the answers.
//!
//! The agent opens one session channel with the [`SUBSYSTEM`] subsystem. On
//! it, each side writes JSON objects, one per line (LF-terminated), at most
//! [`MAX_LINE`] bytes each. The broker sends a [`Request`] with an `id` it
//! chose; the agent answers with a [`Response`] carrying the same `id`.
//! Requests may overlap; the agent answers each when it is done, and runs
//! commands that change the sandbox one at a time.
//!
//! Every command is idempotent, so the broker may repeat one whose answer it
//! never got (the connection dropped, the agent restarted):
//! - `provision` names the rental; asked again for the same rental, the agent
//!   returns the same credentials.
//! - `wipe` names the rental that ended; if the sandbox was already wiped
//!   after that rental, the agent answers at once without wiping again.
//! - `configure` sets the sandbox's limits; asked again with the same
//!   limits, the agent keeps the sandbox it has.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::LimitSettings;

/// The SSH subsystem the agent opens on a session channel for the broker's
/// commands (see DESIGN.md, "Control channel"). The broker refuses every other
/// subsystem, and every shell, exec and pty request.
pub const SUBSYSTEM: &str = "rpibroker-control";

/// Longest line either side writes or accepts, newline included.
pub const MAX_LINE: usize = 64 * 1024;

/// Most SSH public keys a rental may carry.
pub const MAX_SSH_KEYS: usize = 16;

/// Longest SSH public key line accepted.
pub const MAX_SSH_KEY_LEN: usize = 8 * 1024;

/// A command from the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: u64,
    pub command: Command,
}

/// What the broker asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Report the sandbox's state.
    Status,
    /// Create the rental's account in the sandbox: a random username and
    /// password, and the given SSH public keys.
    Provision {
        rental: RentalId,
        #[serde(default)]
        ssh_keys: Vec<String>,
    },
    /// Replace the sandbox with a fresh one from the image. `after` names the
    /// rental that ended; without it the sandbox is wiped unconditionally.
    Wipe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<RentalId>,
    },
    /// Let the broker log into the idle sandbox once with this OpenSSH public
    /// key, to measure what it really has.
    Verify { public_key: String },
    /// Run the sandbox under these limits from now on, in place of the
    /// config file's: only between rentals (a rented sandbox is refused with
    /// `busy`). The agent keeps them across restarts and answers with the
    /// sandbox's status, whose limits are the ones in force.
    Configure { limits: LimitSettings },
}

impl Command {
    /// The command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Provision { .. } => "provision",
            Command::Wipe { .. } => "wipe",
            Command::Verify { .. } => "verify",
            Command::Configure { .. } => "configure",
        }
    }

    /// Checks the parts the agent passes on into the sandbox.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Command::Provision { ssh_keys, .. } => {
                if ssh_keys.len() > MAX_SSH_KEYS {
                    return Err(format!("at most {MAX_SSH_KEYS} SSH keys per rental"));
                }
                ssh_keys.iter().try_for_each(|k| check_public_key(k))
            }
            Command::Verify { public_key } => check_public_key(public_key),
            // Limits are checked as they are read (see `LimitSettings`).
            Command::Status | Command::Wipe { .. } | Command::Configure { .. } => Ok(()),
        }
    }
}

/// An OpenSSH public key line: `TYPE BASE64 [COMMENT]`, printable, bounded,
/// without authorized_keys options.
pub fn check_public_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_SSH_KEY_LEN {
        return Err(format!("SSH key longer than {MAX_SSH_KEY_LEN} bytes"));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("SSH key contains control characters".into());
    }
    let mut parts = key.split(' ');
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    const KINDS: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    if !KINDS.contains(&kind) {
        return Err(format!(
            "SSH key type {:?} is not one of {}",
            kind.chars().take(40).collect::<String>(),
            KINDS.join(", ")
        ));
    }
    let base64 = body
        .trim_end_matches('=')
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    if body.is_empty() || !base64 {
        return Err("SSH key is not `TYPE BASE64 [COMMENT]`".into());
    }
    Ok(())
}

/// Whether `s` is a sandbox account name: 1 to 32 of `a-z 0-9`, starting
/// with a letter (what the image's account helper accepts).
pub fn valid_username(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && s.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `s` is at most `max` bytes of printable text, so the broker can
/// store and show it as it is.
fn printable(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("the agent sent a malformed {what}"))
    }
}

/// A rental's id, chosen by the broker: 1 to 64 of `A-Z a-z 0-9 - _`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RentalId(String);

impl RentalId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "rental id {:?} is not 1 to 64 of A-Z a-z 0-9 - _",
                s.chars().take(70).collect::<String>()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RentalId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<RentalId> for String {
    fn from(r: RentalId) -> String {
        r.0
    }
}

impl fmt::Display for RentalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RentalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The agent's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub id: u64,
    #[serde(flatten)]
    pub body: Reply,
}

/// What the agent answers: the command's result, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// For `status`, `wipe` and `configure`: the sandbox as it is now.
    Status(SandboxStatus),
    /// For `provision`.
    Provisioned(Credentials),
    /// For `verify`: who to log in as, and the sandbox's SSH host key to
    /// expect.
    VerifyLogin(VerifyLogin),
    Error(ControlError),
}

/// A failed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct ControlError {
    pub code: ControlErrorCode,
    pub message: String,
}

/// Why a command failed, for the broker to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlErrorCode {
    /// The line was not a request this agent understands.
    BadRequest,
    /// This agent forwards fixed local services and manages no sandbox.
    NoSandbox,
    /// The sandbox holds another rental (wipe it first), or is rented and
    /// cannot be verified or reconfigured now.
    Busy,
    /// Docker or the sandbox failed; the message says how. Repeating the
    /// command may succeed.
    Failed,
}

/// The sandbox's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Being created or started.
    Starting,
    /// Up, fresh, no rental.
    Ready,
    /// Up, holding a rental's account.
    Rented,
    /// Being replaced by a fresh one.
    Wiping,
    /// Docker or the sandbox failed; `detail` says how.
    Failed,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Starting => "starting",
            SandboxState::Ready => "ready",
            SandboxState::Rented => "rented",
            SandboxState::Wiping => "wiping",
            SandboxState::Failed => "failed",
        }
    }
}

/// The limits the sandbox runs under. `None` means not limited (the whole
/// machine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLimits {
    /// CPU time, in thousandths of a core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Size of the sandbox's root file system; only where Docker's storage
    /// driver can enforce it (see `disk_enforced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Whether the storage driver enforces `disk_bytes`.
    #[serde(default)]
    pub disk_enforced: bool,
}

/// The sandbox, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    pub state: SandboxState,
    /// The rental whose account the sandbox holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rental: Option<RentalId>,
    /// The image the sandbox runs.
    pub image: String,
    /// The container's id (short form), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub limits: SandboxLimits,
    /// Whether the sandbox is kept off the owner's LAN.
    pub lan_blocked: bool,
    /// What went wrong, in `Failed` state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SandboxStatus {
    /// Checks what the agent sent before the broker stores or shows it.
    pub fn check(&self) -> Result<(), String> {
        check(printable(&self.image, 256), "image name")?;
        check(
            self.container
                .as_deref()
                .is_none_or(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_hexdigit())),
            "container id",
        )?;
        check(
            self.detail.as_deref().is_none_or(|d| printable(d, 2048)),
            "status detail",
        )
    }
}

/// A rental's login in the sandbox. `Debug` masks the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub rental: RentalId,
    pub username: String,
    pub password: String,
    /// How many SSH keys the account accepts.
    pub ssh_keys: usize,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("rental", &self.rental)
            .field("username", &self.username)
            .field("password", &"MASKED")
            .field("ssh_keys", &self.ssh_keys)
            .finish()
    }
}

impl Credentials {
    /// Checks what the agent sent before the broker shows it to a renter.
    pub fn check(&self) -> Result<(), String> {
        check(valid_username(&self.username), "username")?;
        check(
            (8..=128).contains(&self.password.len())
                && self.password.bytes().all(|b| b.is_ascii_graphic()),
            "password",
        )?;
        check(self.ssh_keys <= MAX_SSH_KEYS, "key count")
    }
}

/// The answer to `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyLogin {
    pub username: String,
    /// The sandbox's ed25519 SSH host key, as an OpenSSH public key line.
    pub host_key: String,
}

impl VerifyLogin {
    pub fn check(&self) -> Result<(), String> {
        check(valid_username(&self.username), "username")?;
        check(printable(&self.host_key, 1024), "host key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_the_agent_are_checked() {
        let mut status = SandboxStatus {
            state: SandboxState::Ready,
            rental: None,
            image: "rpibroker-sandbox:latest".into(),
            container: Some("0123abcd".into()),
            limits: SandboxLimits::default(),
            lan_blocked: true,
            detail: None,
        };
        assert!(status.check().is_ok());
        status.detail = Some("\u{1b}[2Jcleared".into());
        assert!(status.check().is_err());
        let creds = Credentials {
            rental: RentalId::parse("r").unwrap(),
            username: "rabc2345".into(),
            password: "Abcdefgh2345".into(),
            ssh_keys: 1,
        };
        assert!(creds.check().is_ok());
        for bad in ["root;rm", "Root", "", &"a".repeat(33)] {
            let c = Credentials {
                username: bad.to_string(),
                ..creds.clone()
            };
            assert!(c.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_round_trip_as_one_line() {
        let r = Request {
            id: 7,
            command: Command::Provision {
                rental: RentalId::parse("r-1").unwrap(),
                ssh_keys: vec!["ssh-ed25519 AAAA x".into()],
            },
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let status: Request =
            serde_json::from_str(r#"{"id":1,"command":{"op":"status"}}"#).unwrap();
        assert_eq!(status.command, Command::Status);
    }

    #[test]
    fn configure_carries_checked_limits() {
        let r: Request = serde_json::from_str(
            r#"{"id":2,"command":{"op":"configure","limits":{"cpus":0.5,"memory_mb":128}}}"#,
        )
        .unwrap();
        let Command::Configure { limits } = &r.command else {
            panic!("{r:?}");
        };
        assert_eq!(limits.cpus().millicores(), 500);
        assert_eq!(limits.memory_mb(), 128);
        assert_eq!(r.command.name(), "configure");
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        assert!(
            serde_json::from_str::<Request>(
                r#"{"id":2,"command":{"op":"configure","limits":{"cpus":0.5,"memory_mb":1}}}"#
            )
            .is_err(),
            "too little memory is refused as the request is read"
        );
    }

    #[test]
    fn responses_carry_the_id_beside_the_reply() {
        let r = Response {
            id: 3,
            body: Reply::Error(ControlError {
                code: ControlErrorCode::Busy,
                message: "rented".into(),
            }),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.starts_with(r#"{"id":3,"error":"#), "{line}");
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), r);
    }

    #[test]
    fn bad_rental_ids_and_keys_are_refused() {
        assert!(RentalId::parse("").is_err());
        assert!(RentalId::parse("a b").is_err());
        assert!(RentalId::parse(&"a".repeat(65)).is_err());
        assert!(
            serde_json::from_str::<Request>(
                r#"{"id":1,"command":{"op":"provision","rental":"../x"}}"#
            )
            .is_err()
        );
        assert!(check_public_key("ssh-ed25519 AAAAC3Nz comment").is_ok());
        assert!(check_public_key("command=\"x\" ssh-ed25519 AAAA").is_err());
        assert!(check_public_key("ssh-ed25519 AAAA\nssh-rsa BBBB").is_err());
        assert!(check_public_key("ssh-ed25519 AA$A").is_err());
    }

    #[test]
    fn credentials_debug_masks_the_password() {
        let c = Credentials {
            rental: RentalId::parse("r").unwrap(),
            username: "u".into(),
            password: "hunter2".into(),
            ssh_keys: 0,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
