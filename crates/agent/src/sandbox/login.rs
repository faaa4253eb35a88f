//! Checks on the sandbox's SSH server from the agent's side: that it is up
//! (it sends its banner), and whether a username and password log in. A wipe
//! uses the second to confirm the old rental's password no longer works.

use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Waits until the SSH server at `addr` sends its banner.
pub async fn wait_ready(addr: &str, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(2), banner(addr)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no banner".to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the sandbox's SSH server at {addr} did not answer within {} s ({last})",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn banner(addr: &str) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await?;
    if &buf == b"SSH-" {
        Ok(())
    } else {
        Err(std::io::Error::other("not an SSH server"))
    }
}

/// Accepts whatever host key the sandbox shows: the agent reaches it on
/// loopback, through a port Docker published for it.
struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Whether `username` and `password` log into the SSH server at `addr`.
pub async fn password_works(addr: &str, username: &str, password: &str) -> Result<bool, String> {
    let attempt = async {
        let config = Arc::new(client::Config::default());
        let mut handle = client::connect(config, addr, AnyHostKey)
            .await
            .map_err(|e| e.to_string())?;
        let ok = handle
            .authenticate_password(username, password)
            .await
            .map_err(|e| e.to_string())?
            .success();
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
        Ok(ok)
    };
    tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .map_err(|_| format!("no answer from {addr} within 20 s"))?
}
