//! The hand-off between the two request paths on one HTTP/1 connection: the
//! next session after a request the direct path served (with what it read
//! ahead), and the replay that gives a request the direct path does not take
//! to pingora-proxy as exactly the bytes the session consumed.
//!
//! Re-check on a pingora upgrade (0.9.1): pingora-core
//! `protocols/http/v1/server.rs`, `read_request` still reads a pipelined
//! prefix before the socket, and nothing else than the head (plus what
//! arrived with it) before returning; the replay relies on it.

use bytes::BytesMut;
use pingora::apps::HttpPersistentSettings;
use pingora::protocols::http::ServerSession;

/// After the direct path served a request: the connection's next session,
/// the settings to apply to it, and the bytes read ahead (the start of the
/// next request, if any). None when the connection cannot be reused.
pub(super) async fn after_direct(
    session: ServerSession,
) -> Option<(ServerSession, HttpPersistentSettings, Option<BytesMut>)> {
    let mut next = HttpPersistentSettings::for_session(&session);
    let (stream, ahead) = session.finish().await.ok().flatten()?.into_parts();
    let ahead = ahead.filter(|p| !p.is_empty());
    if let Some(p) = &ahead {
        next.set_pipelined_prefix(p.clone());
    }
    Some((ServerSession::new_http1(stream), next, ahead))
}

/// A request whose head this session read goes to pingora-proxy, which reads
/// it again from the bytes the session consumed: what the previous request
/// read ahead (`prefix`), then what this one read (`recorded`). pingora-proxy
/// then sees the connection as if it had read it itself: the same parse, the
/// same 400 for an unparseable head, the same body.
pub(super) fn to_proxy(
    session: ServerSession,
    prefix: Option<BytesMut>,
    recorded: &[u8],
) -> Option<ServerSession> {
    let mut again = prefix.unwrap_or_default();
    again.extend_from_slice(recorded);
    let mut next = HttpPersistentSettings::for_session(&session);
    let ServerSession::H1(v1) = session else {
        return None;
    };
    next.set_pipelined_prefix(again);
    let mut session = ServerSession::new_http1(v1.into_inner());
    HttpPersistentSettings::apply_to_session(next, &mut session);
    Some(session)
}
