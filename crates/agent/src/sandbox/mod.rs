//! The renter's sandbox: a Docker container on the device with an SSH server
//! and the rental's account, its ports published on loopback and forwarded
//! through the tunnel.
//!
//! The broker drives it through the control channel: `provision` creates a
//! rental's account, `wipe` replaces the container with a fresh one, `verify`
//! lets the broker log in once to measure it, `configure` sets the limits the
//! owner chose on the broker. Each is idempotent and safe to
//! repeat after a crash: the agent writes what it is about to do to its state
//! file first, and on start it finds its containers by label, removes
//! strays, finishes a wipe that was cut short, and starts the sandbox that
//! holds an active rental again (a reboot keeps the rental).
//!
//! The owner's limits from `configure` are kept in the state file and win
//! over the config file's. They are applied only between rentals, by
//! recreating the idle sandbox the way a wipe does, rather than by updating
//! the running container in place: a renter's sandbox is never changed
//! under them, and a new container also takes a new disk size, which Docker
//! cannot change on a running one.
//!
//! - [`engine`]: the Docker Engine API calls.
//! - [`spec`]: the container's configuration: names, labels, limits, hardening.
//! - [`state`]: the state file.
//! - [`login`]: checks on the sandbox's SSH server.

pub mod engine;
pub mod login;
pub mod spec;
pub mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use rpibroker_wire::control::{
    ControlError, ControlErrorCode, Credentials, RentalId, SandboxLimits, SandboxState,
    SandboxStatus, VerifyLogin,
};
use rpibroker_wire::limits::LimitSettings;
use rpibroker_wire::{SandboxConfig, Service};

use crate::targets::LocalTargets;
use engine::{Engine, EngineError};
use spec::{INSTANCE_LABEL, Instance, ROLE_LABEL};
use state::{Account, Persisted, StateFile};

/// The account the broker's verification logs in as.
pub const VERIFY_USER: &str = "rpbverify";
/// Time for the sandbox's SSH server to come up after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the agent checks that the sandbox still runs.
const HEALTH_EVERY: Duration = Duration::from_secs(30);
/// Time for one command run inside the sandbox.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Storage drivers that can enforce a container's disk size.
const SIZED_DRIVERS: &[&str] = &["overlay2", "btrfs", "zfs", "devicemapper", "windowsfilter"];

/// What `status` reports between operations.
struct View {
    state: SandboxState,
    container: Option<String>,
    rental: Option<RentalId>,
    detail: Option<String>,
    limits: SandboxLimits,
}

/// The sandbox manager. Operations that change the sandbox run one at a time.
pub struct Sandbox {
    engine: Engine,
    /// The config file's sandbox section; the limits in force are in the
    /// view (the owner's from the broker may replace the file's).
    config: SandboxConfig,
    /// Docker's storage driver: whether it can give a container a disk
    /// size decides whether a disk limit is enforced.
    storage_driver: String,
    instance: Instance,
    state_file: StateFile,
    targets: Arc<LocalTargets>,
    docker_version: String,
    docker_root: Option<String>,
    ops: tokio::sync::Mutex<()>,
    view: Mutex<View>,
}

/// Turns a failure into the control protocol's error.
fn failed(e: impl std::fmt::Display) -> ControlError {
    ControlError {
        code: ControlErrorCode::Failed,
        message: e.to_string(),
    }
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A fresh rental login: a username no one guesses from the rental, and a
/// password of about 119 bits.
fn new_account(rental: RentalId, ssh_keys: Vec<String>) -> Account {
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    const ALNUM: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    Account {
        rental,
        username: format!("r{}", random_text(7, LOWER)),
        password: random_text(20, ALNUM),
        ssh_keys,
    }
}

/// The limits the sandbox runs under: the config file's, with the owner's
/// from the broker in their place when set.
fn limits_for(
    config: &SandboxConfig,
    owners: Option<&LimitSettings>,
    driver: &str,
) -> SandboxLimits {
    let config = spec::with_owner_limits(config, owners);
    let sizable = SIZED_DRIVERS.contains(&driver);
    if config.disk_gb.is_some() && !sizable {
        tracing::warn!(
            storage_driver = %driver,
            "the sandbox's disk size cannot be enforced with this storage driver; the sandbox may use the whole disk"
        );
    }
    spec::limits(&config, config.disk_gb.is_some() && sizable)
}

impl Sandbox {
    /// Connects to Docker; does not touch any container yet (see [`Sandbox::bring_up`]).
    pub async fn connect(
        config: SandboxConfig,
        instance: Instance,
        state_path: PathBuf,
        targets: Arc<LocalTargets>,
    ) -> Result<Arc<Self>, EngineError> {
        let engine = Engine::connect(config.docker.as_deref()).await?;
        let (docker_version, docker_root) = engine.version().await?;
        let driver = engine.storage_driver().await?;
        tracing::info!(docker = %docker_version, storage_driver = %driver, container = %instance.container, image = %config.image, "sandbox: Docker Engine reached");
        let state_file = StateFile::new(state_path);
        let owners = match state_file.load() {
            Ok(st) => st.limits,
            Err(e) => {
                tracing::warn!(error = %e, "sandbox: could not read the owner's limits; using the config file's");
                None
            }
        };
        if let Some(set) = &owners {
            tracing::info!(cpus = %rpibroker_wire::limits::show_cpus(set.cpus()), memory_mb = set.memory_mb(), disk_gb = ?set.disk_gb(), "sandbox: the owner's limits from the broker replace the config file's");
        }
        let limits = limits_for(&config, owners.as_ref(), &driver);
        Ok(Arc::new(Self {
            engine,
            instance,
            storage_driver: driver,
            state_file,
            targets,
            docker_version,
            docker_root,
            ops: tokio::sync::Mutex::new(()),
            view: Mutex::new(View {
                state: SandboxState::Starting,
                container: None,
                rental: None,
                detail: None,
                limits,
            }),
            config,
        }))
    }

    /// The Docker Engine's version.
    pub fn docker_version(&self) -> &str {
        &self.docker_version
    }

    /// Where Docker keeps containers (the sandbox's disk lives there).
    pub fn docker_root(&self) -> Option<&str> {
        self.docker_root.as_deref()
    }

    pub fn limits(&self) -> SandboxLimits {
        self.view().limits.clone()
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: SandboxState, detail: Option<String>) {
        let mut v = self.view();
        v.state = state;
        v.detail = detail;
    }

    pub fn status(&self) -> SandboxStatus {
        let v = self.view();
        SandboxStatus {
            state: v.state,
            rental: v.rental.clone(),
            image: self.config.image.clone(),
            container: v.container.clone(),
            limits: v.limits.clone(),
            lan_blocked: !self.config.lan_access,
            detail: v.detail.clone(),
        }
    }

    /// Reconciles Docker with the state file and starts the sandbox: run at
    /// agent start. Failures are reported in the status and logged.
    pub async fn bring_up(&self) {
        let _op = self.ops.lock().await;
        if let Err(e) = self.reconcile().await {
            tracing::error!(error = %e.message, "sandbox: could not bring the sandbox up");
        }
    }

    /// Keeps the sandbox running: every [`HEALTH_EVERY`], when no command is
    /// under way, checks that the container still runs and starts it again
    /// (LAN block included) if it stopped, say because the renter's
    /// processes ran it out of memory, or tries again to bring up one that
    /// failed (Docker was down). Runs until the agent exits.
    pub async fn keep_up(self: Arc<Self>) {
        loop {
            tokio::time::sleep(HEALTH_EVERY).await;
            let Ok(_op) = self.ops.try_lock() else {
                continue;
            };
            let container = self.view().container.clone().unwrap_or_default();
            match self.is_armed(&container).await {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    tracing::warn!("sandbox: the container is not running; starting it again");
                    if let Err(e) = self.reconcile().await {
                        tracing::error!(error = %e.message, "sandbox: could not start it again");
                    }
                }
            }
        }
    }

    /// Makes Docker match the state file, and the sandbox run. Called under
    /// the operation lock.
    async fn reconcile(&self) -> Result<(String, Persisted), ControlError> {
        let result = self.reconcile_inner().await;
        if let Err(e) = &result {
            self.targets.clear();
            self.set_state(SandboxState::Failed, Some(e.message.clone()));
        }
        result
    }

    async fn reconcile_inner(&self) -> Result<(String, Persisted), ControlError> {
        let mut st = self.state_file.load().map_err(failed)?;
        if st.wiping {
            tracing::info!("sandbox: finishing a wipe that was cut short");
            let id = self.wipe_now(&mut st, None).await?;
            return Ok((id, st));
        }
        self.engine
            .ensure_network(spec::NETWORK, self.instance.labels("network"))
            .await
            .map_err(failed)?;
        self.remove_role("firewall").await?;
        let mut found = self
            .engine
            .containers_labelled(&[(INSTANCE_LABEL, &self.instance.id), (ROLE_LABEL, "sandbox")])
            .await
            .map_err(failed)?;
        // Keep the one with our name (else the newest); remove the others.
        let keep = found
            .iter()
            .position(|(_, name)| *name == self.instance.container)
            .unwrap_or(found.len().saturating_sub(1));
        let kept = (!found.is_empty()).then(|| found.remove(keep));
        for (id, name) in found {
            tracing::warn!(container = %name, "sandbox: removing a stray sandbox container");
            self.engine.remove(&id).await.map_err(failed)?;
        }
        let id = match kept {
            Some((id, _)) => id,
            None => {
                if st.rental.is_some() {
                    tracing::warn!(
                        "sandbox: the rented sandbox's container is gone; making a new one with the same account (its files are lost)"
                    );
                }
                self.set_state(SandboxState::Starting, None);
                self.create_fresh().await?
            }
        };
        if !self.is_armed(&id).await? {
            self.start_and_arm(&id).await?;
            if let Some(account) = &st.rental {
                self.apply_account(&id, account).await?;
            }
        }
        self.settle(&id, &st);
        Ok((id, st))
    }

    /// Whether container `id` is the one this agent started, still running,
    /// with its forwards in place (then there is nothing to redo).
    async fn is_armed(&self, id: &str) -> Result<bool, ControlError> {
        let current = {
            let v = self.view();
            v.container
                .clone()
                .filter(|c| id.starts_with(c.as_str()))
                .is_some()
                && matches!(v.state, SandboxState::Ready | SandboxState::Rented)
        };
        if !current || self.targets.get(Service::Ssh).is_none() {
            return Ok(false);
        }
        let running = self
            .engine
            .inspect(id)
            .await
            .map_err(failed)?
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false);
        Ok(running)
    }

    /// Records the sandbox as up, with or without a rental.
    fn settle(&self, id: &str, st: &Persisted) {
        let mut v = self.view();
        v.container = Some(id.chars().take(12).collect());
        v.rental = st.rental.as_ref().map(|a| a.rental.clone());
        v.state = if st.rental.is_some() {
            SandboxState::Rented
        } else {
            SandboxState::Ready
        };
        v.detail = None;
    }

    async fn remove_role(&self, role: &str) -> Result<(), ControlError> {
        let found = self
            .engine
            .containers_labelled(&[(INSTANCE_LABEL, &self.instance.id), (ROLE_LABEL, role)])
            .await
            .map_err(failed)?;
        for (id, _) in found {
            self.engine.remove(&id).await.map_err(failed)?;
        }
        Ok(())
    }

    /// Removes every container and volume of this agent's sandbox and
    /// creates a new sandbox container from the image.
    async fn create_fresh(&self) -> Result<String, ControlError> {
        self.remove_role("firewall").await?;
        self.remove_role("sandbox").await?;
        let removed = self
            .engine
            .remove_volumes_labelled(INSTANCE_LABEL, &self.instance.id)
            .await
            .map_err(failed)?;
        if removed > 0 {
            tracing::info!(
                volumes = removed,
                "sandbox: removed the old sandbox's volumes"
            );
        }
        let limits = self.limits();
        let body = spec::sandbox(&self.instance, &self.config, &limits);
        match self.engine.create(&self.instance.container, body).await {
            Ok(id) => Ok(id),
            Err(e) if limits.disk_enforced && e.to_string().to_lowercase().contains("storage") => {
                tracing::warn!(error = %e, "sandbox: Docker refused the disk size; creating the sandbox without it");
                let limits = {
                    let mut v = self.view();
                    v.limits.disk_enforced = false;
                    v.limits.clone()
                };
                let body = spec::sandbox(&self.instance, &self.config, &limits);
                self.engine
                    .create(&self.instance.container, body)
                    .await
                    .map_err(|e| self.explain_create_error(e))
            }
            Err(e) => Err(self.explain_create_error(e)),
        }
    }

    fn explain_create_error(&self, e: EngineError) -> ControlError {
        let text = e.to_string();
        if text.contains("No such image") || text.contains("404") {
            failed(format!(
                "the sandbox image {} is not on this machine: build it with sandbox/build-image.sh (or docker build, see sandbox/README.md) ({text})",
                self.config.image
            ))
        } else {
            failed(format!("creating the sandbox container: {text}"))
        }
    }

    /// Starts the sandbox, puts the LAN block in place, points the forwards
    /// at its published ports and waits for its SSH server.
    async fn start_and_arm(&self, id: &str) -> Result<(), ControlError> {
        self.engine.start(id).await.map_err(failed)?;
        if !self.config.lan_access {
            self.firewall(id).await?;
        }
        let inspected = self
            .engine
            .inspect(id)
            .await
            .map_err(failed)?
            .ok_or_else(|| failed("the sandbox container vanished after start"))?;
        let ports = inspected
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default();
        let target = |s: Service| -> Result<String, ControlError> {
            ports
                .get(&format!("{}/tcp", s.well_known_port()))
                .and_then(|b| b.as_ref())
                .and_then(|b| b.first())
                .and_then(|b| b.host_port.clone())
                .map(|p| format!("127.0.0.1:{p}"))
                .ok_or_else(|| {
                    failed(format!(
                        "Docker published no host port for the sandbox's {s} port"
                    ))
                })
        };
        let targets = [
            target(Service::Ssh)?,
            target(Service::Http)?,
            target(Service::Https)?,
        ];
        login::wait_ready(&targets[0], READY_TIMEOUT)
            .await
            .map_err(failed)?;
        tracing::info!(ssh = %targets[0], http = %targets[1], https = %targets[2], lan_blocked = !self.config.lan_access, "sandbox: up");
        self.targets.set(targets);
        Ok(())
    }

    /// Runs the firewall helper in the sandbox's network namespace.
    async fn firewall(&self, sandbox_id: &str) -> Result<(), ControlError> {
        self.remove_role("firewall").await?;
        let name = format!("{}-firewall", self.instance.container);
        let body = spec::firewall(&self.instance, &self.config, sandbox_id);
        let id = self.engine.create(&name, body).await.map_err(failed)?;
        let outcome = async {
            self.engine.start(&id).await?;
            self.engine.wait_exit(&id, Duration::from_secs(30)).await
        }
        .await;
        let logs = match &outcome {
            Ok(0) => String::new(),
            _ => self.engine.logs_tail(&id).await,
        };
        self.engine.remove(&id).await.map_err(failed)?;
        match outcome {
            Ok(0) => Ok(()),
            Ok(code) => Err(failed(format!(
                "the sandbox's LAN block could not be put in place (exit {code}): {logs}; set \"lan_access\": true in the agent config's sandbox section to run without it"
            ))),
            Err(e) => Err(failed(format!("the LAN block helper: {e}"))),
        }
    }

    /// Runs the image's account helper.
    async fn user_command(
        &self,
        id: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<String, ControlError> {
        let mut cmd = vec![spec::USER_COMMAND];
        cmd.extend_from_slice(args);
        let out = self
            .engine
            .exec(id, &cmd, stdin, EXEC_TIMEOUT)
            .await
            .map_err(failed)?;
        if out.exit_code != 0 {
            return Err(failed(format!(
                "{} {} failed (exit {}): {}",
                spec::USER_COMMAND,
                args.first().copied().unwrap_or_default(),
                out.exit_code,
                out.stderr.trim()
            )));
        }
        Ok(out.stdout)
    }

    async fn apply_account(&self, id: &str, account: &Account) -> Result<(), ControlError> {
        let mut input = format!("{}\n", account.password);
        for key in &account.ssh_keys {
            input.push_str(key);
            input.push('\n');
        }
        self.user_command(id, &["add", &account.username], input.as_bytes())
            .await?;
        Ok(())
    }

    /// Creates the rental's account, or returns it if this rental already has it.
    pub async fn provision(
        &self,
        rental: RentalId,
        ssh_keys: Vec<String>,
    ) -> Result<Credentials, ControlError> {
        let _op = self.ops.lock().await;
        let started = Instant::now();
        let (id, mut st) = self.reconcile().await?;
        if st.has_ended(&rental) {
            return Err(ControlError {
                code: ControlErrorCode::Busy,
                message: format!("rental {rental} has ended; its sandbox was wiped"),
            });
        }
        let account = match &st.rental {
            Some(a) if a.rental == rental => {
                // Asked again: make sure the account is as recorded.
                self.apply_account(&id, a).await?;
                a.clone()
            }
            Some(a) => {
                return Err(ControlError {
                    code: ControlErrorCode::Busy,
                    message: format!(
                        "the sandbox holds rental {}; wipe it before provisioning {rental}",
                        a.rental
                    ),
                });
            }
            None => {
                self.user_command(&id, &["del", VERIFY_USER], b"").await?;
                let account = new_account(rental.clone(), ssh_keys);
                st.rental = Some(account.clone());
                self.state_file.store(&st).map_err(failed)?;
                if let Err(e) = self.apply_account(&id, &account).await {
                    // The account could not be made (a key the sandbox
                    // refuses, say): leave the sandbox idle, not half-rented.
                    st.rental = None;
                    self.state_file.store(&st).map_err(failed)?;
                    return Err(e);
                }
                account
            }
        };
        self.settle(&id, &st);
        tracing::info!(%rental, username = %account.username, ssh_keys = account.ssh_keys.len(), took_ms = started.elapsed().as_millis() as u64, "sandbox: rental provisioned");
        Ok(Credentials {
            rental: account.rental,
            username: account.username,
            password: account.password,
            ssh_keys: account.ssh_keys.len(),
        })
    }

    /// Replaces the sandbox with a fresh one, unless it was already wiped
    /// after rental `after`.
    pub async fn wipe(&self, after: Option<RentalId>) -> Result<SandboxStatus, ControlError> {
        let _op = self.ops.lock().await;
        let mut st = self.state_file.load().map_err(failed)?;
        if let (Some(after), Some(held)) = (&after, &st.rental)
            && held.rental != *after
            && !st.wiping
        {
            return Err(ControlError {
                code: ControlErrorCode::Busy,
                message: format!(
                    "the sandbox holds rental {}, not {after}; not wiping",
                    held.rental
                ),
            });
        }
        let done =
            !st.wiping && st.rental.is_none() && after.as_ref().is_some_and(|a| st.has_ended(a));
        if done && self.view().state == SandboxState::Ready {
            tracing::info!(after = ?after, "sandbox: already wiped after this rental");
            return Ok(self.status());
        }
        if done {
            self.reconcile().await?;
            return Ok(self.status());
        }
        let result = self.wipe_now(&mut st, after).await;
        if let Err(e) = &result {
            self.targets.clear();
            self.set_state(SandboxState::Failed, Some(e.message.clone()));
        }
        result.map(|_| self.status())
    }

    async fn wipe_now(
        &self,
        st: &mut Persisted,
        after: Option<RentalId>,
    ) -> Result<String, ControlError> {
        let started = Instant::now();
        self.set_state(SandboxState::Wiping, None);
        self.targets.clear();
        if !st.wiping {
            st.wiping = true;
            self.state_file.store(st).map_err(failed)?;
        }
        self.engine
            .ensure_network(spec::NETWORK, self.instance.labels("network"))
            .await
            .map_err(failed)?;
        let id = self.create_fresh().await?;
        self.start_and_arm(&id).await?;
        if let Some(old) = &st.rental {
            let ssh = self
                .targets
                .get(Service::Ssh)
                .ok_or_else(|| failed("the fresh sandbox has no SSH port"))?;
            if login::password_works(&ssh, &old.username, &old.password)
                .await
                .map_err(|e| failed(format!("checking the old login after the wipe: {e}")))?
            {
                return Err(failed(
                    "the old rental's password still works after the wipe",
                ));
            }
        }
        if let Some(old) = st.rental.take() {
            st.record_ended(old.rental);
        }
        if let Some(after) = after {
            st.record_ended(after);
        }
        st.wiping = false;
        self.state_file.store(st).map_err(failed)?;
        self.settle(&id, st);
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "sandbox: wiped; a fresh sandbox is ready"
        );
        Ok(id)
    }

    /// Lets the broker log into the idle sandbox with `public_key`.
    pub async fn verify(&self, public_key: &str) -> Result<VerifyLogin, ControlError> {
        let _op = self.ops.lock().await;
        let (id, st) = self.reconcile().await?;
        if let Some(a) = &st.rental {
            return Err(ControlError {
                code: ControlErrorCode::Busy,
                message: format!(
                    "the sandbox holds rental {}; it is verified when idle",
                    a.rental
                ),
            });
        }
        let password = random_text(
            24,
            b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789",
        );
        self.user_command(
            &id,
            &["add", VERIFY_USER],
            format!("{password}\n{public_key}\n").as_bytes(),
        )
        .await?;
        let out = self
            .engine
            .exec(
                &id,
                &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
                b"",
                EXEC_TIMEOUT,
            )
            .await
            .map_err(failed)?;
        let host_key = out
            .stdout
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        if out.exit_code != 0 || host_key.is_empty() {
            return Err(failed("the sandbox has no ed25519 SSH host key"));
        }
        tracing::info!("sandbox: verification login prepared");
        Ok(VerifyLogin {
            username: VERIFY_USER.into(),
            host_key,
        })
    }

    /// Runs the sandbox under the owner's limits `set` from now on, in place
    /// of the config file's, and recreates the idle sandbox to apply them
    /// (the way a wipe does). Refused while a rental holds the sandbox.
    pub async fn configure(&self, set: LimitSettings) -> Result<SandboxStatus, ControlError> {
        let _op = self.ops.lock().await;
        let root = self
            .docker_root()
            .map(std::path::PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| "/".into());
        // Reads /proc and statvfs: off the async threads.
        let machine = tokio::task::spawn_blocking(move || crate::hardware::report(&root))
            .await
            .map_err(|e| ControlError {
                code: ControlErrorCode::Failed,
                message: format!("could not read the machine's figures: {e}"),
            })?;
        set.fits(machine.cpu_cores, machine.memory_bytes, machine.disk_bytes)
            .map_err(|message| ControlError {
                code: ControlErrorCode::BadRequest,
                message,
            })?;
        let mut st = self.state_file.load().map_err(failed)?;
        if let Some(a) = &st.rental {
            return Err(ControlError {
                code: ControlErrorCode::Busy,
                message: format!(
                    "the sandbox holds rental {}: change limits between rentals",
                    a.rental
                ),
            });
        }
        if st.limits == Some(set) && !st.wiping && self.view().state == SandboxState::Ready {
            tracing::info!("sandbox: already running under these limits");
            return Ok(self.status());
        }
        let started = Instant::now();
        st.limits = Some(set);
        st.wiping = true;
        self.state_file.store(&st).map_err(failed)?;
        self.view().limits = limits_for(&self.config, Some(&set), &self.storage_driver);
        let result = self.wipe_now(&mut st, None).await;
        if let Err(e) = &result {
            self.targets.clear();
            self.set_state(SandboxState::Failed, Some(e.message.clone()));
        }
        result?;
        tracing::info!(cpus = %rpibroker_wire::limits::show_cpus(set.cpus()), memory_mb = set.memory_mb(), disk_gb = ?set.disk_gb(), took_ms = started.elapsed().as_millis() as u64, "sandbox: recreated under the owner's new limits");
        Ok(self.status())
    }
}
