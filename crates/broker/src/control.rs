//! The broker's end of a device's control channel: sends commands to the
//! agent and matches its answers to the callers waiting for them.
//!
//! The session handler feeds every byte the agent sends on the channel to
//! [`ControlLink::received`] as it arrives, so the channel is always drained
//! and a slow caller never stalls the device's session. A line longer than
//! the protocol allows ends the session; an answer nobody waits for is
//! logged and dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::{Command, ControlError, MAX_LINE, Reply, Request, Response};
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::{oneshot, watch};

/// Why a command got no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the device is not connected")]
    Offline,
    #[error("the device has not opened its control channel")]
    NoControl,
    #[error("the device disconnected before it answered")]
    Disconnected,
    #[error("the device did not answer within {0} s")]
    Timeout(u64),
    #[error("the device answered: {0}")]
    Device(ControlError),
    #[error("the device's answer was malformed: {0}")]
    Malformed(String),
}

/// The agent broke the protocol; the session is ended.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the device sent a control line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("the device sent {MAX_STRAY} lines that answer nothing")]
    TooManyStray,
}

/// Lines that answer no pending request (late, unparsable) tolerated per
/// session before it is ended.
const MAX_STRAY: u32 = 100;
/// Longest error message from the agent passed on to people.
const MAX_MESSAGE: usize = 300;

/// One device session's control channel.
pub struct ControlLink {
    device: DeviceName,
    handle: Handle,
    channel: ChannelId,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    partial: Mutex<Vec<u8>>,
    stray: AtomicU32,
    closed: watch::Sender<bool>,
    /// Held by whatever changes the sandbox or logs into it (rentals,
    /// verification), so those run one at a time per device.
    pub ops: tokio::sync::Mutex<()>,
}

impl ControlLink {
    pub fn new(device: DeviceName, handle: Handle, channel: ChannelId) -> Arc<Self> {
        Arc::new(Self {
            device,
            handle,
            channel,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            partial: Mutex::new(Vec::new()),
            stray: AtomicU32::new(0),
            closed: watch::Sender::new(false),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes bytes the agent sent; hands each complete answer to its caller.
    pub fn received(&self, data: &[u8]) -> Result<(), ProtocolError> {
        let lines = {
            let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
            partial.extend_from_slice(data);
            let mut lines = Vec::new();
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                lines.push(partial.drain(..=end).collect::<Vec<u8>>());
            }
            if partial.len() >= MAX_LINE {
                return Err(ProtocolError::LineTooLong);
            }
            lines
        };
        for line in lines {
            if line.len() > MAX_LINE {
                return Err(ProtocolError::LineTooLong);
            }
            let waiter = serde_json::from_slice::<Response>(&line)
                .map_err(|e| e.to_string())
                .and_then(|r| match self.pending().remove(&r.id) {
                    Some(waiter) => Ok((waiter, r.body)),
                    None => Err(format!("no request {} is waiting", r.id)),
                });
            match waiter {
                Ok((waiter, body)) => {
                    let _ = waiter.send(body);
                }
                Err(e) => {
                    let n = self.stray.fetch_add(1, Ordering::Relaxed) + 1;
                    if n >= MAX_STRAY {
                        return Err(ProtocolError::TooManyStray);
                    }
                    tracing::warn!(device = %self.device, error = %e, "control: a line from the device that answers nothing");
                }
            }
        }
        Ok(())
    }

    /// Sends `command` and waits at most `timeout` for the answer.
    pub async fn call(&self, command: Command, timeout: Duration) -> Result<Reply, CallError> {
        if *self.closed.borrow() {
            return Err(CallError::Disconnected);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        // Removes the entry however this call ends, cancellation included.
        let _pending = PendingGuard { link: self, id };
        let name = command.name();
        let mut line = serde_json::to_vec(&Request { id, command }).unwrap_or_default();
        line.push(b'\n');
        tracing::debug!(device = %self.device, id, command = name, "control: sending");
        let outcome = tokio::time::timeout(timeout, async {
            self.handle
                .data(self.channel, line)
                .await
                .map_err(|_| CallError::Disconnected)?;
            rx.await.map_err(|_| CallError::Disconnected)
        })
        .await;
        match outcome {
            Err(_) => Err(CallError::Timeout(timeout.as_secs())),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Reply::Error(mut e))) => {
                // The message is the device's text: bounded and escaped
                // before it reaches a log, a terminal or a web page.
                e.message = e
                    .message
                    .chars()
                    .take(MAX_MESSAGE)
                    .collect::<String>()
                    .escape_debug()
                    .to_string();
                Err(CallError::Device(e))
            }
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// The session ended: every caller still waiting hears so.
    pub fn close(&self) {
        self.closed.send_replace(true);
        self.pending().clear();
    }

    /// Resolves when the session has ended.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

struct PendingGuard<'a> {
    link: &'a ControlLink,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.link.pending().remove(&self.id);
    }
}

/// Why a device has no control link: offline, or connected without one
/// (an OpenSSH client acting as the device).
pub fn unreachable(shared: &crate::broker::Shared, device: &DeviceName) -> CallError {
    if shared.registry.is_online(device) {
        CallError::NoControl
    } else {
        CallError::Offline
    }
}
