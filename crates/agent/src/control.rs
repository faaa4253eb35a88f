//! The agent's end of the control channel: reads the broker's requests (one
//! JSON object per line), runs each, and writes the answers. A line that is
//! too long ends the channel; one that does not parse gets a `bad_request`
//! answer. Requests run concurrently; the sandbox runs the ones that change
//! it one at a time.

use std::sync::Arc;

use rpibroker_wire::control::{
    Command, ControlError, ControlErrorCode, MAX_LINE, Reply, Request, Response,
};
use russh::ChannelMsg;
use russh::client::Msg;
use russh::{Channel, ChannelReadHalf};
use tokio::sync::Mutex;

use crate::sandbox::Sandbox;

/// Serves the channel until the broker closes it or the connection ends.
pub async fn serve(channel: Channel<Msg>, sandbox: Option<Arc<Sandbox>>) {
    let (mut read, write) = channel.split();
    let write = Arc::new(Mutex::new(write));
    let mut buf: Vec<u8> = Vec::new();
    while let Some(line) = next_line(&mut read, &mut buf).await {
        let Some(line) = line else {
            tracing::warn!(
                "control: the broker sent a line longer than {MAX_LINE} bytes; closing the control channel"
            );
            break;
        };
        let (sandbox, write) = (sandbox.clone(), write.clone());
        tokio::spawn(async move {
            let response = answer(&line, sandbox.as_deref()).await;
            let mut text = serde_json::to_vec(&response).unwrap_or_default();
            text.push(b'\n');
            let write = write.lock().await;
            if let Err(e) = write.data_bytes(text).await {
                tracing::debug!(error = %e, "control: could not send an answer");
            }
        });
    }
}

/// The next complete line: `None` when the channel ended, `Some(None)` when
/// the line is too long.
async fn next_line(read: &mut ChannelReadHalf, buf: &mut Vec<u8>) -> Option<Option<Vec<u8>>> {
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            return Some(Some(line));
        }
        if buf.len() >= MAX_LINE {
            return Some(None);
        }
        match read.wait().await? {
            ChannelMsg::Data { data } => buf.extend_from_slice(&data),
            ChannelMsg::Eof | ChannelMsg::Close => return None,
            _ => {}
        }
    }
}

async fn answer(line: &[u8], sandbox: Option<&Sandbox>) -> Response {
    let request: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            // Answer under the id if one can be read, so the broker's caller
            // hears about it instead of waiting.
            let id = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("id")?.as_u64())
                .unwrap_or(0);
            tracing::warn!(error = %e, "control: the broker sent a request this agent does not understand");
            return Response {
                id,
                body: Reply::Error(ControlError {
                    code: ControlErrorCode::BadRequest,
                    message: format!("not a request this agent understands: {e}"),
                }),
            };
        }
    };
    let name = request.command.name();
    tracing::info!(
        id = request.id,
        command = name,
        "control: command from the broker"
    );
    let body = match run(request.command, sandbox).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::warn!(id = request.id, command = name, error = %e.message, "control: command failed");
            Reply::Error(e)
        }
    };
    Response {
        id: request.id,
        body,
    }
}

async fn run(command: Command, sandbox: Option<&Sandbox>) -> Result<Reply, ControlError> {
    command
        .validate()
        .and_then(|()| parse_keys(&command))
        .map_err(|message| ControlError {
            code: ControlErrorCode::BadRequest,
            message,
        })?;
    let Some(sandbox) = sandbox else {
        return Err(ControlError {
            code: ControlErrorCode::NoSandbox,
            message: "this agent forwards the owner's own services and runs no sandbox (no \"sandbox\" section in its config)".into(),
        });
    };
    Ok(match command {
        Command::Status => Reply::Status(sandbox.status()),
        Command::Provision { rental, ssh_keys } => {
            Reply::Provisioned(sandbox.provision(rental, ssh_keys).await?)
        }
        Command::Wipe { after } => Reply::Status(sandbox.wipe(after).await?),
        Command::Verify { public_key } => Reply::VerifyLogin(sandbox.verify(&public_key).await?),
        Command::Configure { limits } => Reply::Status(sandbox.configure(limits).await?),
    })
}

/// Parses every SSH key in `command` in full, so a key the sandbox's sshd
/// would not accept is refused before anything changes.
fn parse_keys(command: &Command) -> Result<(), String> {
    let keys: &[String] = match command {
        Command::Provision { ssh_keys, .. } => ssh_keys,
        Command::Verify { public_key } => std::slice::from_ref(public_key),
        Command::Status | Command::Wipe { .. } | Command::Configure { .. } => &[],
    };
    for key in keys {
        russh::keys::PublicKey::from_openssh(key)
            .map_err(|e| format!("not a valid OpenSSH public key: {e}"))?;
    }
    Ok(())
}
