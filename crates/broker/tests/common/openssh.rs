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

/// A stock `ssh` to 127.0.0.1:`port` with the options every test ssh
/// shares: no host key prompts, no config files, no agent.
pub fn client(port: u16) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-p"])
        .arg(port.to_string())
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
    cmd
}

/// Makes `cmd` log in with `password` only (given through SSH_ASKPASS by a
/// script written to `askpass`).
pub fn with_password(cmd: &mut Command, askpass: &Path, password: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    std::fs::set_permissions(askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
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

/// Makes `cmd` log in with the private key `key` only.
pub fn with_key(cmd: &mut Command, key: &Path) {
    cmd.arg("-i").arg(key).args([
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "PreferredAuthentications=publickey",
        "-o",
        "BatchMode=yes",
    ]);
}

/// The device's ssh to the broker's tunnel endpoint.
fn base(broker: &TestBroker, device: &Device, login: &Login) -> Command {
    let mut cmd = client(broker.ssh.port());
    match login {
        Login::Token => {
            let askpass = broker.dir.path().join(format!("askpass-{}", device.name));
            with_password(&mut cmd, &askpass, &device.token);
        }
        Login::Key(key) => with_key(&mut cmd, key),
    }
    cmd
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
