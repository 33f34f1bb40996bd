//! How a request ended, decided once for both paths: the answer to a
//! failure (which status, or none when the headers are already out or the
//! client is gone), the upstream error's `kind`, and which written statuses
//! end a request's answer.

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::{ErrorSource, ErrorType};

use super::Ctx;
use crate::tally::UpstreamErrorKind;

/// Status counted for a client that left before any response was written.
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// Answer a failed request, on either path: the status sent, or 0 when the
/// connection is just closed (see [`failure_code`]).
pub(crate) async fn answer_failure(e: &Error, session: &mut ServerSession, ctx: &mut Ctx) -> u16 {
    let code = failure_code(e, session.response_written(), ctx);
    if code > 0 {
        if let Err(err) = session.respond_error(code).await {
            tracing::debug!(error = %err, "could not send the error response; the client is gone");
        }
    }
    code
}

/// The status to answer a failed request with, or 0 to just close the
/// connection (headers already sent, or the client is gone). An upstream
/// failure also notes its kind in `ctx`; a non-zero answer is the proxy's.
fn failure_code(e: &Error, written: Option<&ResponseHeader>, ctx: &mut Ctx) -> u16 {
    if written.is_some_and(|r| is_final(r.status)) {
        // Headers are out; all we can do is cut the stream.
        return 0;
    }
    let code = failure_status(e, ctx);
    ctx.proxy_answered |= code > 0;
    code
}

fn failure_status(e: &Error, ctx: &mut Ctx) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => {
                ctx.error_kind = Some(classify(e.etype()));
                if is_timeout(e.etype()) {
                    504
                } else {
                    502
                }
            }
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                ErrorType::ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// Whether a written status ends the request's answer: every non-1xx, and
/// 101, after which the connection belongs to the upgraded protocol (a
/// WebSocket session is counted once, as the 101 the client received, when
/// it ends). 100 and 103 are interim and never counted.
pub(crate) fn is_final(status: http::StatusCode) -> bool {
    !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS
}

/// Map a pingora upstream error to our `kind` label.
pub(crate) fn classify(t: &ErrorType) -> UpstreamErrorKind {
    match t {
        ErrorType::ConnectRefused => UpstreamErrorKind::ConnectRefused,
        ErrorType::ConnectTimedout => UpstreamErrorKind::ConnectTimeout,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => UpstreamErrorKind::ReadTimeout,
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
            UpstreamErrorKind::Reset
        }
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::TLSWantX509Lookup
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => UpstreamErrorKind::Tls,
        _ => UpstreamErrorKind::Other,
    }
}

/// Timeouts answer 504 (Gateway Timeout); every other upstream failure 502.
pub(crate) fn is_timeout(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_classified() {
        assert!(is_timeout(&ErrorType::ReadTimedout));
        assert!(is_timeout(&ErrorType::ConnectTimedout));
        assert!(!is_timeout(&ErrorType::ConnectRefused));
        assert_eq!(
            classify(&ErrorType::ConnectRefused),
            UpstreamErrorKind::ConnectRefused
        );
        assert_eq!(
            classify(&ErrorType::ConnectTimedout),
            UpstreamErrorKind::ConnectTimeout
        );
        assert_eq!(
            classify(&ErrorType::ReadTimedout),
            UpstreamErrorKind::ReadTimeout
        );
        assert_eq!(
            classify(&ErrorType::ConnectionClosed),
            UpstreamErrorKind::Reset
        );
        assert_eq!(classify(&ErrorType::InvalidCert), UpstreamErrorKind::Tls);
        assert!(is_final(http::StatusCode::SWITCHING_PROTOCOLS));
        assert!(is_final(http::StatusCode::OK));
        assert!(!is_final(http::StatusCode::CONTINUE));
        assert_eq!(
            classify(&ErrorType::InvalidHTTPHeader),
            UpstreamErrorKind::Other
        );
    }
}
