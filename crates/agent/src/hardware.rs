//! What the agent reports about its machine at each handshake. These are
//! claims; the broker verifies them separately.

use std::path::Path;

use rpibroker_wire::HardwareReport;
use rpibroker_wire::hardware::MAX_TEXT_LEN;

/// Reads the machine's hardware; `disk_path` is where the agent keeps its data.
pub fn report(disk_path: &Path) -> HardwareReport {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    HardwareReport {
        arch: std::env::consts::ARCH.to_string(),
        cpu_model: cpu_model(&cpuinfo).map(clean),
        cpu_cores: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u32),
        memory_bytes: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total(&m)),
        disk_bytes: disk_size(disk_path),
        os: std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| pretty_name(&t))
            .map(clean),
        board: std::fs::read("/proc/device-tree/model")
            .ok()
            .map(|b| {
                clean(
                    String::from_utf8_lossy(&b)
                        .trim_end_matches('\0')
                        .to_string(),
                )
            })
            .filter(|b| !b.is_empty()),
        docker: None,
        sandbox: None,
    }
}

/// `model name` on x86, `Model` or `Hardware` on ARM boards.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware"].iter().find_map(|key| {
        cpuinfo.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn pretty_name(os_release: &str) -> Option<String> {
    let line = os_release.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

fn disk_size(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().filter(|p| !p.as_os_str().is_empty())?
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_blocks as u64 * st.f_frsize as u64)
}

/// Keeps a text field within what the broker accepts: printable, bounded.
fn clean(s: String) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let r = report(Path::new("/"));
        assert_eq!(r.arch, std::env::consts::ARCH);
        assert!(r.cpu_cores.unwrap() >= 1);
        assert!(r.memory_bytes.unwrap() > 0);
        assert!(r.disk_bytes.unwrap() > 0);
        assert!(r.is_well_formed());
    }

    #[test]
    fn parses_raspberry_pi_cpuinfo() {
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(cpu_model(pi).unwrap(), "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(
            mem_total("MemTotal:        3884768 kB\n"),
            Some(3884768 * 1024)
        );
        assert_eq!(
            pretty_name("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").unwrap(),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }
}
