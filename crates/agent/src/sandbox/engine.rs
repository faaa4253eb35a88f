//! The Docker Engine API, as far as the sandbox needs it: containers found by
//! label, created, started, inspected and removed; commands run inside them
//! with input on stdin; the sandbox network. Everything goes through the
//! Engine API (bollard), with the API version negotiated with the daemon.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// What went wrong talking to Docker, said so an owner can act on it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("Docker: {0}")]
    Docker(String),
    #[error("{what} did not finish within {seconds} s")]
    Timeout { what: String, seconds: u64 },
}

impl From<bollard::errors::Error> for EngineError {
    fn from(e: bollard::errors::Error) -> Self {
        EngineError::Docker(e.to_string())
    }
}

/// Whether a Docker error is "no such object".
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// Output and exit status of a command run in a container.
#[derive(Debug)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// The bridge option that lets containers on a network talk to each other.
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// Most output kept from a command run in a container.
const MAX_EXEC_OUTPUT: usize = 64 * 1024;

/// A connection to the Docker Engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects to `endpoint` (`unix://…` or `tcp://…`; default `DOCKER_HOST`,
    /// else the local socket) and agrees on an API version with the daemon.
    pub async fn connect(endpoint: Option<&str>) -> Result<Self, EngineError> {
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unreachable = |reason: String| EngineError::Unreachable {
            endpoint: endpoint.clone(),
            reason,
        };
        let docker =
            Docker::connect_with_host(&endpoint).map_err(|e| unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self { docker })
    }

    /// The daemon's version, and where it keeps its data.
    pub async fn version(&self) -> Result<(String, Option<String>), EngineError> {
        let v = self.docker.version().await?;
        let root = self
            .docker
            .info()
            .await
            .ok()
            .and_then(|i| i.docker_root_dir);
        Ok((v.version.unwrap_or_else(|| "unknown".into()), root))
    }

    /// The storage driver, to know whether a disk size can be enforced.
    pub async fn storage_driver(&self) -> Result<String, EngineError> {
        Ok(self.docker.info().await?.driver.unwrap_or_default())
    }

    /// Ids and names of the containers (running or not) carrying every label
    /// in `labels`, oldest first.
    pub async fn containers_labelled(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, EngineError> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let mut found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await?;
        found.sort_by_key(|c| c.created.unwrap_or_default());
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default();
                Some((c.id?, name.trim_start_matches('/').to_string()))
            })
            .collect())
    }

    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>, EngineError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a container; returns its id.
    pub async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                body,
            )
            .await?;
        Ok(created.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        match self.docker.start_container(id, None).await {
            // 304: already running.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            r => Ok(r?),
        }
    }

    /// Removes a container, running or not, with its anonymous volumes.
    /// Removing one that is already gone succeeds.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let r = self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
        match r {
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: removal already in progress; wait for it below.
            Err(e) if is_conflict(&e) => self.wait_gone(id).await,
            r => Ok(r?),
        }
    }

    async fn wait_gone(&self, id: &str) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.inspect(id).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Timeout {
                    what: format!("removing container {id}"),
                    seconds: 60,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Removes the volumes carrying `label=value`; returns how many.
    pub async fn remove_volumes_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<usize, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
        let list = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await?;
        let mut removed = 0;
        for v in list.volumes.unwrap_or_default() {
            match self
                .docker
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                Err(e) if is_not_found(&e) => {}
                r => {
                    r?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Makes sure the bridge network `name` exists, with containers on it
    /// unable to talk to each other.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            enable_ipv6: Some(false),
            options: Some(HashMap::from([(
                ICC_OPTION.to_string(),
                "false".to_string(),
            )])),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Another agent on this machine made it first.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `cmd` as root in container `id`, feeding it `stdin`, and waits
    /// (at most `timeout`) for it to finish.
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, EngineError> {
        let what = cmd.first().copied().unwrap_or_default().to_string();
        let run = async {
            let created = self
                .docker
                .create_exec(
                    id,
                    CreateExecOptions {
                        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                        attach_stdin: Some(true),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        user: Some("root".to_string()),
                        ..Default::default()
                    },
                )
                .await?;
            let StartExecResults::Attached {
                mut output,
                mut input,
            } = self
                .docker
                .start_exec(
                    &created.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await?
            else {
                return Err(EngineError::Docker("exec started detached".into()));
            };
            input
                .write_all(stdin)
                .await
                .map_err(|e| EngineError::Docker(format!("writing to {what}: {e}")))?;
            let _ = input.shutdown().await;
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            while let Some(chunk) = output.next().await {
                let (buf, bytes) = match chunk? {
                    bollard::container::LogOutput::StdOut { message } => (&mut stdout, message),
                    bollard::container::LogOutput::StdErr { message } => (&mut stderr, message),
                    _ => continue,
                };
                let room = MAX_EXEC_OUTPUT.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            // The stream ends when the process does; its status may take a
            // moment to show.
            let exit_code = loop {
                let state = self.docker.inspect_exec(&created.id).await?;
                if state.running != Some(true) {
                    break state.exit_code.unwrap_or(-1);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            Ok(ExecOutput {
                exit_code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| EngineError::Timeout {
                what,
                seconds: timeout.as_secs(),
            })?
    }

    /// Waits until container `id` has exited; returns its exit code.
    pub async fn wait_exit(&self, id: &str, timeout: Duration) -> Result<i64, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self
                .inspect(id)
                .await?
                .and_then(|c| c.state)
                .ok_or_else(|| EngineError::Docker(format!("container {id} vanished")))?;
            if state.running != Some(true)
                && state
                    .finished_at
                    .as_deref()
                    .is_some_and(|f| !f.starts_with("0001"))
            {
                return Ok(state.exit_code.unwrap_or(-1));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Timeout {
                    what: format!("container {id}"),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines a container wrote, for error messages.
    pub async fn logs_tail(&self, id: &str) -> String {
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: "20".into(),
            ..Default::default()
        };
        let mut logs = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            if text.len() > 4096 {
                break;
            }
        }
        text.trim().to_string()
    }
}
