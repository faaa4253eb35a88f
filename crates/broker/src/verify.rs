//! Hardware verification: the broker measures a device's sandbox itself
//! instead of trusting the device's report.
//!
//! It makes a one-time SSH key, asks the agent (control `verify`) to let that
//! key into the idle sandbox, and logs in through the device's own tunnel (a
//! `forwarded-tcpip` channel to the device's ssh service, exactly the way a
//! renter arrives), pinning the sandbox's host key the agent announced. A
//! script then reads what the sandbox really has (cores and CPU quota,
//! memory and its cgroup limit, disk), runs a short benchmark (CPU, memory,
//! disk write) and removes the key. The broker compares the figures with the
//! claims and stores both with a verdict: a device whose sandbox has less
//! than it claims is flagged and may not be listed.

use std::sync::Arc;
use std::time::Duration;

use rpibroker_wire::control::{Command, Reply, VerifyLogin};
use rpibroker_wire::verification::{Figures, Measured, Verdict};
use rpibroker_wire::{DeviceName, HardwareReport, Service};
use russh::client;
use russh::keys::{
    Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};

use crate::broker::Shared;
use crate::control::CallError;
use crate::store::VerificationRecord;
use crate::time::UnixTime;

/// Time for the whole verification: login, measurements and benchmark.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Most output read from the measurement script.
const MAX_OUTPUT: usize = 16 * 1024;
/// Measured memory and disk may be this many percent below the claim (file
/// system and kernel overheads) before the device is flagged.
const SIZE_TOLERANCE_PERCENT: u64 = 10;
/// Measured CPU may be this many percent below the claim.
const CPU_TOLERANCE_PERCENT: u64 = 5;
/// Bytes each benchmark moves.
const BENCH_MIB: u64 = 64;

/// Why a verification could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("cannot make a one-time key: {0}")]
    Key(String),
}

/// The claims, as a renter of the sandbox would get them: the machine's
/// figures capped by the owner's sandbox limits.
pub fn claimed(report: &HardwareReport) -> Figures {
    let limits = report.sandbox.clone().unwrap_or_default();
    let cap = |machine: Option<u64>, limit: Option<u64>| match (machine, limit) {
        (Some(m), Some(l)) => Some(m.min(l)),
        (m, l) => m.or(l),
    };
    Figures {
        cpu_millicores: cap(
            report.cpu_cores.map(|c| u64::from(c) * 1000),
            limits.cpu_millicores,
        ),
        memory_bytes: cap(report.memory_bytes, limits.memory_bytes),
        disk_bytes: if limits.disk_enforced {
            cap(report.disk_bytes, limits.disk_bytes)
        } else {
            report.disk_bytes
        },
    }
}

/// Why the measurements contradict the claims; empty when they agree.
pub fn compare(claimed: &Figures, measured: &Figures) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut check = |what: &str,
                     claim: Option<u64>,
                     got: Option<u64>,
                     tolerance: u64,
                     show: fn(u64) -> String| {
        if let (Some(claim), Some(got)) = (claim, got)
            && got.saturating_mul(100) < claim.saturating_mul(100 - tolerance)
        {
            reasons.push(format!(
                "{what}: claimed {}, measured {}",
                show(claim),
                show(got)
            ));
        }
    };
    check(
        "cpu",
        claimed.cpu_millicores,
        measured.cpu_millicores,
        CPU_TOLERANCE_PERCENT,
        |m| format!("{}.{:03} cores", m / 1000, m % 1000),
    );
    check(
        "memory",
        claimed.memory_bytes,
        measured.memory_bytes,
        SIZE_TOLERANCE_PERCENT,
        |b| format!("{} MiB", b / (1024 * 1024)),
    );
    check(
        "disk",
        claimed.disk_bytes,
        measured.disk_bytes,
        SIZE_TOLERANCE_PERCENT,
        |b| format!("{} MiB", b / (1024 * 1024)),
    );
    reasons
}

/// The script run in the sandbox. POSIX sh and coreutils only; prints
/// `key=value` lines, then removes the one-time key.
fn script() -> String {
    format!(
        r#"set -u
now() {{ date +%s%N; }}
echo "nproc=$(nproc)"
if [ -r /sys/fs/cgroup/cpu.max ]; then
  read -r q p </sys/fs/cgroup/cpu.max; echo "cpu_quota=$q"; echo "cpu_period=$p"
elif [ -r /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
  echo "cpu_quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"; echo "cpu_period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
fi
if [ -r /sys/fs/cgroup/memory.max ]; then echo "mem_limit=$(cat /sys/fs/cgroup/memory.max)"
elif [ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then echo "mem_limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
fi
echo "mem_total_kib=$(awk '/^MemTotal:/ {{print $2}}' /proc/meminfo)"
echo "disk_bytes=$(df -P -B1 / | awk 'NR==2 {{print $2}}')"
t=$(now); head -c {mib}M /dev/zero | sha256sum >/dev/null; echo "cpu_ns=$(( $(now) - t ))"
t=$(now); dd if=/dev/zero of=/dev/null bs=1M count={mib} 2>/dev/null; echo "mem_ns=$(( $(now) - t ))"
f="$HOME/.rpibroker-bench"
t=$(now); dd if=/dev/zero of="$f" bs=1M count={mib} conv=fsync 2>/dev/null && echo "disk_ns=$(( $(now) - t ))"
rm -f "$f" "$HOME/.ssh/authorized_keys"
"#,
        mib = BENCH_MIB
    )
}

/// Reads the script's output.
pub fn parse(output: &str) -> Measured {
    let get = |key: &str| -> Option<&str> {
        output
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    let num = |key: &str| get(key).and_then(|v| v.parse::<u64>().ok());
    let nproc = num("nproc");
    let quota = match (num("cpu_quota"), num("cpu_period")) {
        (Some(q), Some(p)) if p > 0 => q.checked_mul(1000).map(|q| q / p),
        _ => None, // "max" or -1: no quota
    };
    let cpu_millicores = match (nproc.and_then(|n| n.checked_mul(1000)), quota) {
        (Some(n), Some(q)) => Some(n.min(q)),
        (n, q) => n.or(q),
    };
    let total = num("mem_total_kib").and_then(|k| k.checked_mul(1024));
    // cgroup v1 reports "no limit" as a huge number.
    let limit = num("mem_limit").filter(|&l| l < (1 << 60));
    let memory_bytes = match (total, limit) {
        (Some(t), Some(l)) => Some(t.min(l)),
        (t, l) => t.or(l),
    };
    let rate = |key: &str| {
        num(key)
            .filter(|&ns| ns > 0)
            .map(|ns| (BENCH_MIB * 1024).saturating_mul(1_000_000_000) / ns)
    };
    Measured {
        figures: Figures {
            cpu_millicores,
            memory_bytes,
            disk_bytes: num("disk_bytes"),
        },
        cpu_sha256_kib_s: rate("cpu_ns"),
        memory_copy_kib_s: rate("mem_ns"),
        disk_write_kib_s: rate("disk_ns"),
    }
}

/// Verifies `device` now and stores the outcome. Fails only when the device
/// cannot be asked at all (offline, busy with a rental); a login or
/// measurement that fails is stored as a `failed` verification.
pub async fn run(
    shared: &Arc<Shared>,
    device: &DeviceName,
) -> Result<VerificationRecord, VerifyError> {
    let link = shared
        .registry
        .control(device)
        .ok_or_else(|| crate::control::unreachable(shared, device))?;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| VerifyError::Key(e.to_string()))?;
    let public_key = key
        .public_key()
        .to_openssh()
        .map_err(|e| VerifyError::Key(e.to_string()))?;
    let _ops = link.ops.lock().await;
    // The claims are read under the lock: a change of the sandbox's limits
    // that ran meanwhile has changed them.
    let name = device.clone();
    let stored = shared
        .store
        .blocking(move |s| s.device(&name))
        .await
        .ok()
        .flatten()
        .ok_or(CallError::Offline)?;
    let device_id = stored.id;
    let claims = claimed(&stored.hardware.unwrap_or_default());
    let login = match link.call(Command::Verify { public_key }, TIMEOUT).await? {
        Reply::VerifyLogin(l) => {
            l.check().map_err(CallError::Malformed)?;
            l
        }
        _ => return Err(CallError::Malformed("not a verification login".into()).into()),
    };
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(TIMEOUT, measure(shared, device, &login, key))
        .await
        .unwrap_or_else(|_| Err(format!("no result within {} s", TIMEOUT.as_secs())));
    let claimed_json = serde_json::to_string(&claims).unwrap_or_default();
    let record = match outcome {
        Ok(measured) => {
            let reasons = compare(&claims, &measured.figures);
            VerificationRecord {
                at: UnixTime::now(),
                verdict: if reasons.is_empty() {
                    Verdict::Verified
                } else {
                    Verdict::Flagged
                },
                claimed: claimed_json,
                measured: Some(serde_json::to_string(&measured).unwrap_or_default()),
                reasons: reasons.join("; "),
            }
        }
        Err(reason) => VerificationRecord {
            at: UnixTime::now(),
            verdict: Verdict::Failed,
            claimed: claimed_json,
            measured: None,
            reasons: reason,
        },
    };
    tracing::info!(%device, verdict = record.verdict.as_str(), reasons = %record.reasons, took_ms = started.elapsed().as_millis() as u64, "verification done");
    let stored = record.clone();
    if let Err(e) = shared
        .store
        .blocking(move |s| s.add_verification(device_id, &stored))
        .await
    {
        tracing::error!(%device, error = %e, "could not store the verification");
    }
    Ok(record)
}

/// Pins the host key the agent announced for the sandbox.
struct PinnedHostKey(PublicKey);

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.0.key_data()),
        )
    }
}

/// Logs into the sandbox through the device's tunnel and runs the script.
async fn measure(
    shared: &Arc<Shared>,
    device: &DeviceName,
    login: &VerifyLogin,
    key: PrivateKey,
) -> Result<Measured, String> {
    let host_key = PublicKey::from_openssh(&login.host_key)
        .map_err(|e| format!("the agent announced an unreadable host key: {e}"))?;
    let route = shared
        .registry
        .route(device, Service::Ssh)
        .map_err(|e| e.to_string())?;
    let channel = route
        .handle
        .channel_open_forwarded_tcpip(route.address.clone(), route.port, "127.0.0.1", 0)
        .await
        .map_err(|e| format!("the device refused the channel to its sandbox: {e}"))?;
    let config = Arc::new(client::Config::default());
    let mut session =
        client::connect_stream(config, channel.into_stream(), PinnedHostKey(host_key))
            .await
            .map_err(|e| format!("SSH to the sandbox: {e}"))?;
    let ok = session
        .authenticate_publickey(
            &login.username,
            PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await
        .map_err(|e| format!("SSH login to the sandbox: {e}"))?
        .success();
    if !ok {
        return Err("the sandbox refused the one-time key".into());
    }
    let mut exec = session
        .channel_open_session()
        .await
        .map_err(|e| format!("SSH session: {e}"))?;
    exec.exec(true, script())
        .await
        .map_err(|e| format!("SSH exec: {e}"))?;
    let mut output = Vec::new();
    let mut status = None;
    while let Some(msg) = exec.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => {
                let room = MAX_OUTPUT.saturating_sub(output.len());
                output.extend_from_slice(&data[..data.len().min(room)]);
            }
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    if status != Some(0) {
        return Err(format!(
            "the measurement script ended with status {status:?}"
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&output)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpibroker_wire::control::SandboxLimits;

    #[test]
    fn claims_are_capped_by_the_sandbox_limits() {
        let report = HardwareReport {
            cpu_cores: Some(4),
            memory_bytes: Some(8 << 30),
            disk_bytes: Some(100 << 30),
            sandbox: Some(SandboxLimits {
                cpu_millicores: Some(1500),
                memory_bytes: Some(1 << 30),
                disk_bytes: Some(10 << 30),
                disk_enforced: false,
                pids: Some(512),
            }),
            ..HardwareReport::default()
        };
        let c = claimed(&report);
        assert_eq!(c.cpu_millicores, Some(1500));
        assert_eq!(c.memory_bytes, Some(1 << 30));
        assert_eq!(
            c.disk_bytes,
            Some(100 << 30),
            "an unenforced disk limit is no claim"
        );
    }

    #[test]
    fn parses_cgroup_v1_and_v2_output() {
        let v1 = "nproc=2\ncpu_quota=50000\ncpu_period=100000\nmem_limit=268435456\nmem_total_kib=24684084\ndisk_bytes=270553174016\ncpu_ns=100000000\nmem_ns=50000000\ndisk_ns=1000000000\n";
        let m = parse(v1);
        assert_eq!(m.figures.cpu_millicores, Some(500));
        assert_eq!(m.figures.memory_bytes, Some(268435456));
        assert_eq!(m.figures.disk_bytes, Some(270553174016));
        assert_eq!(m.cpu_sha256_kib_s, Some(64 * 1024 * 10));
        let v2 = "nproc=4\ncpu_quota=max\ncpu_period=100000\nmem_limit=max\nmem_total_kib=1000\n";
        let m = parse(v2);
        assert_eq!(m.figures.cpu_millicores, Some(4000));
        assert_eq!(m.figures.memory_bytes, Some(1000 * 1024));
        let unlimited_v1 = "nproc=1\ncpu_quota=-1\ncpu_period=100000\nmem_limit=9223372036854771712\nmem_total_kib=2048\n";
        let m = parse(unlimited_v1);
        assert_eq!(m.figures.cpu_millicores, Some(1000));
        assert_eq!(m.figures.memory_bytes, Some(2048 * 1024));
    }

    #[test]
    fn less_than_claimed_is_flagged_within_tolerance_is_not() {
        let claim = Figures {
            cpu_millicores: Some(2000),
            memory_bytes: Some(1000),
            disk_bytes: Some(1000),
        };
        let honest = Figures {
            cpu_millicores: Some(2000),
            memory_bytes: Some(950),
            disk_bytes: Some(910),
        };
        assert!(compare(&claim, &honest).is_empty());
        let short = Figures {
            cpu_millicores: Some(500),
            memory_bytes: Some(100),
            disk_bytes: Some(1000),
        };
        let reasons = compare(&claim, &short);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("cpu: claimed 2.000 cores, measured 0.500"));
    }
}
