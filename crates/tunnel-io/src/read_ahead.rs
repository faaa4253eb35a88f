//! Read-ahead for the SSH connection. russh reads each packet with two
//! `read_exact` calls (its length, then the rest), which is two system calls
//! per packet; reading ahead into a buffer serves many small packets from one
//! call. The buffer exists only while there is data in it, so the thousands of
//! idle connections a broker holds cost no buffer memory at all.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much is read ahead at once. Reads at least this large go straight to
/// the stream (bulk transfers gain nothing from a second copy).
const CAPACITY: usize = 16 * 1024;

/// A stream whose small reads are served from a read-ahead buffer. Writes
/// pass through untouched.
pub struct ReadAhead<S> {
    inner: S,
    /// Bytes read from `inner` and not yet handed out, from `pos`.
    buf: Vec<u8>,
    pos: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Hands out buffered bytes; frees the buffer once it is drained.
    fn drain_into(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.buf.len() - self.pos);
        out.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.buf.len() {
            this.drain_into(out);
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= CAPACITY {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let mut buf = Vec::with_capacity(CAPACITY);
        let mut ahead = ReadBuf::uninit(buf.spare_capacity_mut());
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
        let n = ahead.filled().len();
        // SAFETY: `poll_read` initialized the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(n) };
        this.buf = buf;
        this.pos = 0;
        if n > 0 {
            this.drain_into(out);
        } else {
            this.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_come_from_one_read_ahead_and_bytes_stay_in_order() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        tx.write_all(&data).await.unwrap();
        drop(tx);
        let mut r = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut small = [0u8; 4];
        // Alternate tiny reads (like russh's length probe) with larger ones.
        loop {
            let n = r.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
            let mut big = vec![0u8; 3000];
            let n = r.read(&mut big).await.unwrap();
            got.extend_from_slice(&big[..n]);
        }
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn the_buffer_is_freed_when_drained() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        tx.write_all(b"hello world").await.unwrap();
        let mut r = ReadAhead::new(rx);
        let mut five = [0u8; 5];
        r.read_exact(&mut five).await.unwrap();
        assert!(r.buf.capacity() >= CAPACITY, "read ahead");
        let mut rest = [0u8; 6];
        r.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b" world");
        assert_eq!(r.buf.capacity(), 0, "nothing kept while idle");
    }
}
