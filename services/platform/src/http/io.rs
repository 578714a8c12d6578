//! I/O glue for hyper that behaves the same on tokio and in the simulation.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose flush reaches the inner stream only after something was written.
///
/// hyper flushes its connection whenever it is polled. On a real socket a flush with
/// nothing written costs nothing; madsim's simulated TCP sends a message per flush, which
/// the peer reads as zero bytes — end of stream — and both hyper connections of a
/// long-lived response (SSE) then bounce empty messages back and forth for as long as it is
/// open. Skipping empty flushes keeps a quiet connection quiet in both worlds.
#[derive(Debug)]
pub struct FlushWritten<S> {
    inner: S,
    written: bool,
}

impl<S> FlushWritten<S> {
    pub fn new(inner: S) -> Self {
        FlushWritten {
            inner,
            written: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FlushWritten<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FlushWritten<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.written = true;
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.written {
            return Poll::Ready(Ok(()));
        }
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.written = false;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
