//! Copying between a visitor's socket and an SSH channel, on either end of
//! the tunnel.
//!
//! russh tops up a channel's flow-control window as soon as data arrives,
//! not when it is read, so the only brake on a sender is the session itself
//! waiting for the channel's queue to drain: a peer that stops reading stalls
//! every channel of the session, i.e. every visitor of the device. The copy
//! therefore gives each write a deadline and drops a connection whose peer
//! makes no progress for that long, which releases the session.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Copy buffer size. russh sends one SSH packet per write, so this is the
/// largest packet the bytes travel in: 64 KiB packets move 25-50% more per
/// CPU second than 8 KiB ones.
const COPY_BUFFER: usize = 64 * 1024;

/// Copies both ways until both directions are done; returns the bytes moved
/// from `a` to `b` and from `b` to `a`. Fails with `TimedOut` when either
/// side accepts no bytes for `stall`.
pub async fn splice<A, B>(a: A, b: B, stall: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    tokio::try_join!(copy(ar, bw, stall), copy(br, aw, stall))
}

/// One direction: read, then write with a deadline per write call, and pass
/// the end of the stream on as a half-close.
async fn copy<R, W>(mut from: R, mut to: W, stall: Duration) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(total);
        }
        let mut pos = 0;
        while pos < n {
            let written = tokio::time::timeout(stall, to.write(&buf[pos..n]))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading")
                })??;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            pos += written;
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_passes_half_closes_on() {
        let (a, mut a_peer) = tokio::io::duplex(1 << 16);
        let (b, mut b_peer) = tokio::io::duplex(1 << 16);
        let job = tokio::spawn(splice(a, b, Duration::from_secs(5)));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            a_peer.write_all(&sent).await.unwrap();
            a_peer.shutdown().await.unwrap();
            let mut back = Vec::new();
            a_peer.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        b_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        b_peer.write_all(b"reply").await.unwrap();
        b_peer.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        assert_eq!(job.await.unwrap().unwrap(), (300_000, 5));
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_dropped() {
        let (a, mut a_peer) = tokio::io::duplex(1 << 16);
        let (b, _b_peer_never_reads) = tokio::io::duplex(1024);
        let job = tokio::spawn(splice(a, b, Duration::from_millis(200)));
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            a_peer.write_all(&vec![7u8; 1 << 20]),
        )
        .await;
        let err = tokio::time::timeout(Duration::from_secs(5), job)
            .await
            .expect("the splice gives up")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
