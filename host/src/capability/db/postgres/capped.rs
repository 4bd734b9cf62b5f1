//! The server's stream, read through a cap on each protocol message (see
//! the module above: "One message, one cap").

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

use super::MAX_MESSAGE_BYTES;

/// A stream that reads PostgreSQL backend messages and fails as soon as a
/// message header announces more than [`MAX_MESSAGE_BYTES`].
///
/// Every message from the server after start-up is framed: one type byte,
/// then a 4-byte big-endian length that counts itself but not the type
/// byte. The reader tracks where each header falls in the bytes it passes
/// on; writes go through untouched.
pub struct Capped<S> {
    inner: S,
    /// Bytes of the current header seen so far (0..5), or `None` while in a
    /// message's body.
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to come.
    remaining: usize,
    cap: usize,
    over_cap: Arc<AtomicBool>,
}

impl<S> Capped<S> {
    pub fn new(inner: S, over_cap: Arc<AtomicBool>) -> Self {
        Capped { inner, header: [0; 5], have: 0, remaining: 0, cap: MAX_MESSAGE_BYTES, over_cap }
    }

    /// Follows the framing through `bytes` just read.
    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                self.remaining -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 5 {
                self.have = 0;
                let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as usize;
                let body = len
                    .checked_sub(4)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad message length"))?;
                if body > self.cap {
                    self.over_cap.store(true, Ordering::Relaxed);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the server sent a message of {body} bytes, over the cap of {} bytes", self.cap),
                    ));
                }
                self.remaining = body;
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = buf.filled()[before..].to_vec();
                Poll::Ready(self.scan(&fresh))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// TLS whose plain side goes through [`Capped`].
pub(super) struct CappedTls<T> {
    pub(super) inner: T,
    pub(super) over_cap: Arc<AtomicBool>,
}

/// A TLS stream under the cap, keeping its channel binding.
pub struct CappedTlsStream<T>(Capped<T>);

impl<S, T> TlsConnect<S> for CappedTls<T>
where
    T: TlsConnect<S> + Send + 'static,
    T::Future: Send + 'static,
    T::Stream: Send + 'static,
{
    type Stream = CappedTlsStream<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let over_cap = self.over_cap;
        let handshake = self.inner.connect(stream);
        Box::pin(async move { handshake.await.map(|s| CappedTlsStream(Capped::new(s, over_cap))) })
    }
}

impl<T: TlsStream + Unpin> TlsStream for CappedTlsStream<T> {
    fn channel_binding(&self) -> ChannelBinding {
        self.0.inner.channel_binding()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CappedTlsStream<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CappedTlsStream<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, body: usize) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&((body + 4) as u32).to_be_bytes());
        out.extend(std::iter::repeat_n(b'x', body));
        out
    }

    #[test]
    fn the_cap_follows_the_framing_across_any_split() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut stream: Vec<u8> = Vec::new();
        for n in [0, 1, 4, 5, 100, 70_000] {
            stream.extend(frame(b'D', n));
        }
        // Fed in every chunk size, the same messages pass.
        for chunk in [1, 2, 3, 5, 7, 4096] {
            let mut capped = Capped::new((), flag.clone());
            capped.cap = 70_000;
            for piece in stream.chunks(chunk) {
                capped.scan(piece).expect("within the cap");
            }
            assert_eq!((capped.have, capped.remaining), (0, 0));
        }
        // One byte over the cap fails at its header, before its body.
        let mut capped = Capped::new((), flag.clone());
        capped.cap = 70_000;
        let over = frame(b'D', 70_001);
        assert!(capped.scan(&over[..5]).is_err());
        assert!(flag.load(Ordering::Relaxed));
        // A length that cannot count itself is a protocol error.
        let mut capped = Capped::new((), Arc::new(AtomicBool::new(false)));
        assert!(capped.scan(&[b'D', 0, 0, 0, 3]).is_err());
    }
}
