//! What a connection waits for besides its next bytes: the deadline of a
//! request head that has started (slowloris), and a drain that finds it
//! idle, with the clean close that follows ([`linger`]).

use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use super::counted::ConnState;
use crate::limit::ConnLimit;

/// Resolves once a started request head has not completed within `limit` of
/// its first byte. Pending forever otherwise.
///
/// Only for a `select!` that polls the connection's read first: that read is
/// what notes a head's first byte (in [`super::counted::Counted`]), and every wake-up of the
/// connection task polls both, so this future needs no waker of its own until
/// a head has started. It then sleeps on a timer; a head that arrives in one
/// read (the usual case) never registers anything.
pub(super) async fn head_deadline(state: &ConnState, epoch: Instant, limit: Duration) {
    loop {
        let first = std::future::poll_fn(|_| {
            if state.head_incomplete() {
                Poll::Ready(state.first_read.load(Relaxed))
            } else {
                Poll::Pending
            }
        })
        .await;
        let deadline = epoch + Duration::from_nanos(first) + limit;
        tokio::time::sleep_until(deadline.into()).await;
        if state.head_incomplete() && state.first_read.load(Relaxed) == first {
            return;
        }
        // That head completed in time; the loop waits for the next one.
    }
}

/// Resolves once the process is shutting down while this connection waits
/// for a request of which nothing has arrived yet (`pending`: bytes read
/// ahead are the start of one). A request already arriving is read and
/// answered instead, with `Connection: close` (`Core::response_head`).
/// Pending forever otherwise.
///
/// Like [`head_deadline`], only for a `select!` that polls the
/// connection's read first, so a byte that arrived is noted before this
/// looks.
pub(super) async fn idle_at_shutdown(state: &ConnState, shutdown: &ShutdownWatch, pending: bool) {
    let mut rx = shutdown.clone();
    let down = *rx.borrow_and_update();
    if pending || (!down && rx.changed().await.is_err()) {
        // Nothing to wait for (the sender is gone only when the process is).
        return std::future::pending().await;
    }
    if state.first_read.load(Relaxed) != 0 {
        std::future::pending::<()>().await;
    }
}

/// How long a connection closed by a drain keeps reading, at most.
const LINGER: Duration = Duration::from_secs(2);

/// Close a connection a drain found idle, without a reset: our side first
/// (FIN, so a client learns before it sends and its pool drops the
/// connection), then read and discard whatever still comes until the client
/// closes too, for at most [`LINGER`]. Closing a socket that has unread bytes,
/// or that receives bytes after it closed, makes the kernel answer with a
/// reset, which a client that sent a request at that moment sees as that
/// request failing rather than as a closed idle connection. The process
/// waits for lingering connections before it exits ([`ConnLimit::closing`]).
pub(super) async fn linger(mut stream: Stream, conns: &ConnLimit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _closing = conns.closing();
    if AsyncWriteExt::shutdown(&mut stream).await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
