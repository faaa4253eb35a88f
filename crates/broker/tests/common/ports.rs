//! Blocks of loopback ports reserved for one test, across processes: a block
//! is claimed with an exclusive `flock` on a file named after it, and every
//! port in it must be free to bind. Blocks lie below Linux's ephemeral range
//! (32768+), so outgoing connections never take them.

use std::fs::File;
use std::os::fd::AsRawFd;

const FIRST: u16 = 10000;
const LAST: u16 = 32000;
const BLOCK: u16 = 200;

/// A reserved block; released when dropped.
pub struct Ports {
    pub base: u16,
    _lock: File,
}

/// Reserves `len` consecutive free ports.
pub fn reserve(len: u16) -> Ports {
    assert!(len <= BLOCK, "a test may reserve at most {BLOCK} ports");
    let dir = std::env::temp_dir().join("rpibroker-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let blocks = (LAST - FIRST) / BLOCK;
    let start = (std::process::id() as u16).wrapping_mul(7919) % blocks;
    for i in 0..blocks {
        let block = (start + i) % blocks;
        let base = FIRST + block * BLOCK;
        let file = File::create(dir.join(format!("{base}.lock"))).unwrap();
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let all_free =
            (base..base + len).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return Ports { base, _lock: file };
        }
    }
    panic!("no free block of {len} ports between {FIRST} and {LAST}");
}
