//! The one error type of the `outpost` library, with a kind and whose fault
//! it was (the client's, the origin's or ours), which decides the status
//! code sent to the client.
//!
//! It knows nothing of the modules that raise errors.

use std::fmt;

use http::StatusCode;

/// Boxed error used in bodies and client plumbing.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whose fault an error was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Origin,
    Ours,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or not allowed (400).
    BadRequest,
    /// No site serves the request's Host (421 Misdirected Request is for
    /// this exact case: RFC 9110 §15.5.20).
    NoSite,
    /// A method a reverse proxy does not carry: CONNECT (405, RFC 9110
    /// §9.3.6, §15.5.6).
    MethodNotAllowed,
    /// The client's address is not allowed here (403, RFC 9110 §15.5.4).
    Forbidden,
    /// The client is over its rate limit (429, RFC 6585 §4).
    RateLimited,
    /// The request target is longer than `max_uri_bytes` (414, RFC 9110
    /// §15.5.15).
    UriTooLong,
    /// The declared content is larger than `max_body_bytes` (413, RFC 9110
    /// §15.5.14).
    PayloadTooLarge,
    /// The request's fields are larger or more than `max_header_bytes` /
    /// `max_header_count` (431, RFC 6585 §5).
    HeadersTooLarge,
    /// The client sent its content slower than `body_read_timeout` (408,
    /// RFC 9110 §15.5.9).
    RequestTimeout,
    /// A request rule refused the request (its own status, 403 by default).
    Denied,
    /// The origin refused the connection.
    OriginRefused,
    /// The origin could not be reached (DNS, routing, reset during connect).
    OriginUnreachable,
    /// Connecting to the origin took longer than `timeouts.connect`.
    OriginConnectTimeout,
    /// The origin did not send a response head within `timeouts.response_header`.
    OriginResponseTimeout,
    /// The origin closed the connection or sent something that is not HTTP.
    OriginProtocol,
    /// The origin closed the connection after the request went out and
    /// before a response byte.
    OriginReset,
    /// An `https://` origin's certificate did not verify (502).
    OriginCertificate,
    /// No origin of the site takes requests: all down, ejected or drained
    /// (503 with `Retry-After`).
    NoOrigin,
    /// Every origin the request could go to was at `max_conns` for
    /// `queue_timeout` (503 with `Retry-After`).
    OriginBusy,
    /// `only-if-cached` and nothing usable is stored (RFC 9111 §5.2.1.7): 504.
    NotCached,
    /// A stale response that may not be served stale could not be
    /// revalidated because the origin failed (RFC 9111 §5.2.2.2): 504.
    RevalidationFailed,
    /// Binding a listener failed.
    Bind,
    /// A file the configuration names could not be used at start-up (a
    /// certificate, a CA file).
    Setup,
    /// Opening the cache store failed.
    Storage,
    /// Anything else on our side.
    Internal,
}

impl ErrorKind {
    /// Stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NoSite => "no_site",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::Denied => "denied",
            ErrorKind::OriginRefused => "origin_refused",
            ErrorKind::OriginUnreachable => "origin_unreachable",
            ErrorKind::OriginConnectTimeout => "origin_connect_timeout",
            ErrorKind::OriginResponseTimeout => "origin_response_timeout",
            ErrorKind::OriginProtocol => "origin_protocol",
            ErrorKind::OriginReset => "origin_reset",
            ErrorKind::OriginCertificate => "origin_certificate",
            ErrorKind::NoOrigin => "no_origin",
            ErrorKind::OriginBusy => "origin_busy",
            ErrorKind::NotCached => "not_cached",
            ErrorKind::RevalidationFailed => "revalidation_failed",
            ErrorKind::Bind => "bind",
            ErrorKind::Setup => "setup",
            ErrorKind::Storage => "storage",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whose fault this kind is.
    pub fn fault(self) -> Fault {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::NoSite
            | ErrorKind::MethodNotAllowed
            | ErrorKind::Forbidden
            | ErrorKind::RateLimited
            | ErrorKind::UriTooLong
            | ErrorKind::PayloadTooLarge
            | ErrorKind::HeadersTooLarge
            | ErrorKind::RequestTimeout
            | ErrorKind::Denied
            | ErrorKind::NotCached => Fault::Client,
            ErrorKind::OriginRefused
            | ErrorKind::OriginUnreachable
            | ErrorKind::OriginConnectTimeout
            | ErrorKind::OriginResponseTimeout
            | ErrorKind::OriginProtocol
            | ErrorKind::OriginReset
            | ErrorKind::OriginCertificate
            | ErrorKind::NoOrigin
            | ErrorKind::OriginBusy
            | ErrorKind::RevalidationFailed => Fault::Origin,
            ErrorKind::Bind | ErrorKind::Setup | ErrorKind::Storage | ErrorKind::Internal => {
                Fault::Ours
            }
        }
    }

    /// The status sent to a client for this kind (RFC 9110 §15.6.3, §15.6.5).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NoSite => StatusCode::MISDIRECTED_REQUEST,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Denied => StatusCode::FORBIDDEN,
            ErrorKind::OriginRefused
            | ErrorKind::OriginUnreachable
            | ErrorKind::OriginProtocol
            | ErrorKind::OriginReset
            | ErrorKind::OriginCertificate => StatusCode::BAD_GATEWAY,
            ErrorKind::NoOrigin | ErrorKind::OriginBusy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::OriginConnectTimeout
            | ErrorKind::OriginResponseTimeout
            | ErrorKind::NotCached
            | ErrorKind::RevalidationFailed => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Bind | ErrorKind::Setup | ErrorKind::Storage | ErrorKind::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The short plain-text body sent to the client. It names the failure
    /// but never an origin's address (origins stay hidden).
    pub fn client_message(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad request\n",
            ErrorKind::NoSite => "no site is configured for this host\n",
            ErrorKind::MethodNotAllowed => "method not allowed: this is a reverse proxy\n",
            ErrorKind::Forbidden => "forbidden: requests from this address are not allowed\n",
            ErrorKind::RateLimited => "too many requests: slow down and try again later\n",
            ErrorKind::UriTooLong => "uri too long\n",
            ErrorKind::PayloadTooLarge => "payload too large\n",
            ErrorKind::HeadersTooLarge => "request header fields too large\n",
            ErrorKind::RequestTimeout => "request timeout: the request content came too slowly\n",
            ErrorKind::Denied => "forbidden: the request was refused by a rule\n",
            ErrorKind::OriginRefused => "bad gateway: origin refused the connection\n",
            ErrorKind::OriginUnreachable => "bad gateway: origin unreachable\n",
            ErrorKind::OriginConnectTimeout => {
                "gateway timeout: connecting to the origin timed out\n"
            }
            ErrorKind::OriginResponseTimeout => {
                "gateway timeout: the origin did not answer in time\n"
            }
            ErrorKind::OriginProtocol => {
                "bad gateway: the origin sent an invalid or incomplete response\n"
            }
            ErrorKind::OriginReset => {
                "bad gateway: the origin closed the connection without answering\n"
            }
            ErrorKind::OriginCertificate => {
                "bad gateway: the origin's TLS certificate could not be verified\n"
            }
            ErrorKind::NoOrigin => "service unavailable: no origin server is available\n",
            ErrorKind::OriginBusy => "service unavailable: every origin server is busy\n",
            ErrorKind::NotCached => "gateway timeout: not in cache (only-if-cached)\n",
            ErrorKind::RevalidationFailed => {
                "gateway timeout: the cached response must be revalidated and the origin failed\n"
            }
            ErrorKind::Bind | ErrorKind::Setup | ErrorKind::Storage | ErrorKind::Internal => {
                "internal error\n"
            }
        }
    }
}

/// The library's error: a kind plus detail for logs.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
    /// Seconds for a `Retry-After` field (RFC 9110 §10.2.3) on the answer.
    retry_after: Option<u64>,
    #[source]
    source: Option<BoxError>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl Error {
    /// An error of `kind` with a log detail.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Error {
        Error {
            kind,
            detail: detail.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub fn with_retry_after(mut self, secs: u64) -> Error {
        self.retry_after = Some(secs);
        self
    }

    /// Seconds for `Retry-After`, if the client should be told.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}
