//! The counting stream wrapper: every HTTP/1 client stream is wrapped in
//! [`Counted`], which notes when a request's first bytes arrive (for the head
//! deadline and the latency of an early answer), keeps a copy of what is read
//! while a head is being read (for the hand-off), and notes the status line
//! of the first response written after a request starts. A response written
//! while no hook has marked the request ([`mark_hooked`]) is pingora's early
//! answer to a head it could not parse, reported to the [`ConnSink`] as its
//! status line is written, before the client can see it.
//!
//! Re-check on a pingora upgrade (0.9.1): pingora-core `protocols/mod.rs`,
//! the [`Stream`] traits. [`Counted`] forwards every method of each; a trait
//! that gains a defaulted method would silently use the default, so diff them.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ConnSink;

/// Per-connection bookkeeping shared by the stream wrapper and the app.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Set by [`mark_hooked`]: the current request reached the proxy hooks.
    pub(super) hooked: AtomicBool,
    /// Capture the status of the next response header written.
    pub(super) armed: AtomicBool,
    /// Status line captured since the last arm (0 = none).
    pub(super) status: AtomicU16,
    /// When the current request's first bytes arrived (ns since `epoch`, 0 = not yet).
    pub(super) first_read: AtomicU64,
    /// Keep a copy of what is read, until the request's path is chosen: a
    /// request the direct path does not take is handed to pingora-proxy as
    /// these bytes. Only this connection's task touches the lock.
    pub(super) recording: AtomicBool,
    pub(super) recorded: std::sync::Mutex<Vec<u8>>,
}

/// What a connection keeps of a request head it read, at most (pingora's own
/// head limit is larger; a longer copy is shrunk back after use).
const RECORD_KEEP: usize = 4096;

impl ConnState {
    /// Ready for the next request on the connection.
    pub(super) fn reset(&self) {
        self.hooked.store(false, Relaxed);
        self.status.store(0, Relaxed);
        self.first_read.store(0, Relaxed);
        self.armed.store(true, Relaxed);
    }

    pub(super) fn start_recording(&self) {
        self.recording.store(true, Relaxed);
    }

    /// Stop copying reads; the bytes copied since the start, if `take`.
    pub(super) fn stop_recording(&self, take: bool) -> Vec<u8> {
        self.recording.store(false, Relaxed);
        let Ok(mut rec) = self.recorded.lock() else {
            return Vec::new();
        };
        let out = if take { rec.clone() } else { Vec::new() };
        rec.clear();
        if rec.capacity() > RECORD_KEEP {
            rec.shrink_to(RECORD_KEEP);
        }
        out
    }

    /// A request head has begun arriving and nobody has taken it over yet
    /// (no proxy context, no response written).
    pub(super) fn head_incomplete(&self) -> bool {
        self.first_read.load(Relaxed) != 0
            && !self.hooked.load(Relaxed)
            && self.status.load(Relaxed) == 0
    }
}

/// Called from the proxy's first hook (`early_request_filter`): this request
/// is on the normal, hooked path, so its response is the proxy's to count.
/// A no-op for a stream this loop did not wrap (h2, tests).
#[inline]
pub(crate) fn mark_hooked(session: &ServerSession) {
    if let Some(c) = session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<Counted>())
    {
        c.state.hooked.store(true, Relaxed);
    }
}

/// A downstream stream that notes the first status line written after arming.
pub(crate) struct Counted {
    inner: Stream,
    state: Arc<ConnState>,
    epoch: Instant,
    sink: &'static dyn ConnSink,
}

impl Counted {
    /// Wrap a connection's stream; `epoch` is the connection's start, the
    /// origin of [`ConnState::first_read`].
    pub(super) fn new(
        inner: Stream,
        state: Arc<ConnState>,
        epoch: Instant,
        sink: &'static dyn ConnSink,
    ) -> Counted {
        Counted {
            inner,
            state,
            epoch,
            sink,
        }
    }
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("inner", &self.inner)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Counted {
    /// The first bytes written since the last arm: note the status line, and
    /// tally it right away if no request context exists (an early answer).
    fn note_write(&self, first: Option<&[u8]>) {
        if !self.state.armed.swap(false, Relaxed) {
            return;
        }
        if let Some(code) = first.and_then(parse_status) {
            self.state.status.store(code, Relaxed);
            if !self.state.hooked.load(Relaxed) {
                let started = self.state.first_read.load(Relaxed);
                let elapsed = if started == 0 {
                    Duration::ZERO
                } else {
                    self.epoch
                        .elapsed()
                        .saturating_sub(Duration::from_nanos(started))
                };
                self.sink.early_answer(code, elapsed);
            }
        }
    }
}

fn parse_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            if self.state.first_read.load(Relaxed) == 0 {
                let ns = (self.epoch.elapsed().as_nanos() as u64).max(1);
                self.state.first_read.store(ns, Relaxed);
            }
            if self.state.recording.load(Relaxed) {
                if let Ok(mut rec) = self.state.recorded.lock() {
                    rec.extend_from_slice(&buf.filled()[before..]);
                }
            }
        }
        res
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.state.armed.load(Relaxed) {
            self.note_write(Some(buf));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.state.armed.load(Relaxed) {
            self.note_write(bufs.iter().find(|b| !b.is_empty()).map(|b| &b[..]));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Counted {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Counted {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Counted {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Counted {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Counted {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Counted {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Counted {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(parse_status(b"HTTP/1.0 405 "), Some(405));
        assert_eq!(parse_status(b"HTTP/1.1 4"), None);
        assert_eq!(parse_status(b"{\"json\":1}"), None);
    }
}
