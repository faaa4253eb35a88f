//! Copying between a visitor's socket and an SSH channel, on either end of
//! the tunnel.

use tokio::io::{AsyncRead, AsyncWrite};

/// Copy buffer size. russh sends one SSH packet per write, so this is the
/// largest packet the bytes travel in: 64 KiB packets move 25-50% more per
/// CPU second than 8 KiB ones.
pub const COPY_BUFFER: usize = 64 * 1024;

/// Copies both ways until both directions are done; returns the bytes moved
/// from `a` to `b` and from `b` to `a`.
pub async fn splice<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, COPY_BUFFER, COPY_BUFFER).await
}
