//! A stock OpenSSH client acting as a device (`ssh -N -R …`), logging in with
//! the device token as password (through SSH_ASKPASS) or with a key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::{Device, TestBroker};

/// How the OpenSSH client logs in.
pub enum Login<'a> {
    Token,
    Key(&'a Path),
}

/// Options every test ssh shares: no host key prompts, no config files, no agent.
fn base(broker: &TestBroker, device: &Device, login: &Login) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-p"])
        .arg(broker.ssh.port().to_string())
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=INFO",
            "-o",
            "ConnectTimeout=10",
        ])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null());
    match login {
        Login::Token => {
            let askpass = askpass(broker, device);
            cmd.args([
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0");
        }
        Login::Key(key) => {
            cmd.arg("-i").arg(key).args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "PreferredAuthentications=publickey",
                "-o",
                "BatchMode=yes",
            ]);
        }
    }
    cmd
}

/// A script that prints the device's token, for SSH_ASKPASS.
fn askpass(broker: &TestBroker, device: &Device) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = broker.dir.path().join(format!("askpass-{}", device.name));
    std::fs::write(&path, format!("#!/bin/sh\necho '{}'\n", device.token)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// `ssh -N -R spec…` as the device; keeps running until killed.
pub fn forward(
    broker: &TestBroker,
    device: &Device,
    login: Login,
    remotes: &[String],
) -> SshProcess {
    let mut args: Vec<String> = [
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ServerAliveInterval=5",
    ]
    .map(String::from)
    .to_vec();
    for r in remotes {
        args.extend(["-R".to_string(), r.clone()]);
    }
    spawn(broker, device, login, &args)
}

/// Starts ssh as the device with `args`, logging to a file; runs until killed.
pub fn spawn(broker: &TestBroker, device: &Device, login: Login, args: &[String]) -> SshProcess {
    let log = broker
        .dir
        .path()
        .join(format!("ssh-{}-{}.log", device.name, super::unique()));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = base(broker, device, &login);
    cmd.args(args).arg(format!("{}@127.0.0.1", device.name));
    let child = cmd
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start ssh");
    SshProcess { child, log }
}

/// Runs ssh as the device with extra arguments, to completion.
pub fn run(broker: &TestBroker, device: &Device, login: Login, args: &[&str]) -> Output {
    let mut cmd = base(broker, device, &login);
    cmd.args(args);
    cmd.output().expect("run ssh")
}

pub struct SshProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl SshProcess {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether ssh has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for SshProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes an ed25519 key pair with ssh-keygen; returns the private key path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    key
}
