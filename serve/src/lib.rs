//! # avap-serve — how the AVAP servers take connections
//!
//! What every port of the host and the brain needs between `accept` and a
//! handler, in one place:
//!
//! - [`Slots`]: at most so many connections open at once. At the cap the
//!   server stops accepting (the kernel queues the rest in the listen
//!   backlog) until one closes.
//! - [`accept`]: the next connection, under the cap. An accept that fails
//!   (out of descriptors, above all) is logged once and retried after
//!   [`ACCEPT_BACKOFF`], never in a busy loop.
//! - [`serve_http1`]: an axum app over hyper's HTTP/1 with a header-read
//!   timeout (which also reaps idle keep-alive connections), a header size
//!   cap, a [`StallLimit`] on writes, and a graceful drain bounded in time.
//! - [`StallLimit`]: a connection whose writes make no progress for the
//!   limit fails, so a client that stops reading cannot hold its slot.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app = axum::Router::new().route("/livez", axum::routing::get(|| async { "alive" }));
//! let limits = avap_serve::Limits {
//!     header_timeout: Duration::from_secs(10),
//!     max_connections: 64,
//!     drain_timeout: Duration::from_secs(5),
//! };
//! avap_serve::serve_http1(listener, app, &limits, |_| {}, std::future::pending()).await
//! # }
//! ```

#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// How long the accept loop waits after a failed accept before it tries
/// again (a full descriptor table does not clear itself in microseconds).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The limits of one listening port.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request headers must arrive within this (HTTP/1); it also closes an
    /// idle keep-alive connection, and a write stalled this long.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: u32,
    /// After shutdown begins, how long requests in flight get.
    pub drain_timeout: Duration,
}

/// The cap on connections open at once: a connection holds one slot from
/// its accept until it is dropped.
#[derive(Clone, Debug)]
pub struct Slots(Arc<Semaphore>);

impl Slots {
    /// `max` slots (at least one).
    pub fn new(max: u32) -> Slots {
        let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Slots(Arc::new(Semaphore::new(max)))
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// One accepted connection and the slot it holds.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Held for as long as the connection is open; dropping it frees the slot.
    pub slot: OwnedSemaphorePermit,
}

/// Waits for a free slot, then accepts the next connection. A failed accept
/// is logged (once per run of failures, as a warning) and retried after
/// [`ACCEPT_BACKOFF`]: the loop never spins, whatever the error.
pub async fn accept(listener: &TcpListener, slots: &Slots) -> Accepted {
    let mut failing = false;
    loop {
        // The semaphore is never closed, so this always yields a permit.
        let Ok(slot) = slots.0.clone().acquire_owned().await else {
            std::future::pending::<()>().await;
            continue;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                if failing {
                    tracing::info!("accepting connections again");
                }
                return Accepted { stream, peer, slot };
            }
            Err(e) => {
                drop(slot);
                if failing {
                    tracing::debug!(error = %e, "accept still failing");
                } else {
                    tracing::warn!(error = %e, "accept failed (out of descriptors?); retrying every {ACCEPT_BACKOFF:?}");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the open
/// connections finish their requests within `limits.drain_timeout`.
/// `open` is told `+1` when a connection opens and `-1` when it closes (a
/// gauge).
pub async fn serve_http1(
    listener: TcpListener,
    app: axum::Router,
    limits: &Limits,
    open: impl Fn(i64) + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Slots::new(limits.max_connections);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_header_size(MAX_HEAD_BYTES);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots) => accepted,
            () = &mut shutdown => break,
        };
        let _ = accepted.stream.set_nodelay(true);
        let stream = StallLimit::new(accepted.stream, limits.header_timeout);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        let open = open.clone();
        let slot = accepted.slot;
        open(1);
        tokio::spawn(async move {
            let _ = connection.await;
            open(-1);
            drop(slot);
        });
    }
    drop(listener);
    // In-flight requests finish; idle connections close. Bounded, so a
    // client that never reads its response cannot hold the exit.
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain = ?limits.drain_timeout, "connections still open after the drain time; closing them");
    } else {
        tracing::info!("drained: every request in flight has finished");
    }
    Ok(())
}

/// A connection whose writes must make progress: a write (or flush) that
/// stays pending for `limit` fails, and the server closes the connection.
/// A client that never reads its responses cannot hold its slot.
pub struct StallLimit<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallLimit<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        StallLimit { inner, limit, stalled: None }
    }

    /// Turns a pending write into an error once it has been pending too long.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading its response",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.watch(cx, poll)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn started(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            serve_http1(listener, app, &limits, |_| {}, async move {
                let _ = stopped.await;
            })
            .await
        });
        (addr, stop)
    }

    /// Reads until the peer closes; `Err` if it does not within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, ()> {
        let mut all = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut all)).await.map_err(|_| ())?.map_err(|_| ())?;
        Ok(all)
    }

    #[tokio::test]
    async fn a_half_sent_request_is_closed_at_the_header_timeout() {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            max_connections: 8,
            drain_timeout: Duration::from_secs(1),
        };
        let (addr, _stop) = started(limits).await;
        let started = tokio::time::Instant::now();
        let mut half = TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        closed_within(&mut half, Duration::from_secs(5)).await.expect("the half-sent request is closed");
        closed_within(&mut idle, Duration::from_secs(5)).await.expect("the silent connection is closed");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
        // A whole request is still answered.
        let mut whole = TcpStream::connect(addr).await.expect("connect");
        whole.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
        let reply = closed_within(&mut whole, Duration::from_secs(5)).await.expect("answered");
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&reply));
    }

    #[tokio::test]
    async fn beyond_the_cap_a_connection_waits_for_a_free_slot() {
        let limits = Limits {
            header_timeout: Duration::from_secs(30),
            max_connections: 2,
            drain_timeout: Duration::from_secs(1),
        };
        let (addr, _stop) = started(limits).await;
        let held: Vec<TcpStream> =
            vec![TcpStream::connect(addr).await.expect("connect"), TcpStream::connect(addr).await.expect("connect")];
        // The third completes TCP (the kernel's backlog) but is not served.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
        let mut byte = [0u8; 1];
        let waited = tokio::time::timeout(Duration::from_millis(400), third.read(&mut byte)).await;
        assert!(waited.is_err(), "a connection over the cap was served");
        drop(held);
        let reply = closed_within(&mut third, Duration::from_secs(5)).await.expect("served once a slot is free");
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&reply));
    }

    #[tokio::test]
    async fn slots_are_held_until_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let slots = Slots::new(1);
        let _client = TcpStream::connect(addr).await.expect("connect");
        let first = accept(&listener, &slots).await;
        assert_eq!(slots.available(), 0);
        let _second_client = TcpStream::connect(addr).await.expect("connect");
        assert!(tokio::time::timeout(Duration::from_millis(200), accept(&listener, &slots)).await.is_err());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(2), accept(&listener, &slots)).await.expect("accepted");
        assert_eq!(second.peer.ip(), addr.ip());
    }
}
