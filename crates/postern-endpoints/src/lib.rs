//! The destinations of actions that are not SMTP or LMTP: object storage,
//! HTTP endpoints and NATS JetStream, and the JSON documents Postern sends
//! to them (shaped like Amazon SES's).
//!
//! # Layout
//!
//! - `lib.rs`: [`EndpointError`], the one error type: temporary (worth
//!   retrying) or permanent.
//! - `object_storage.rs`: [`ObjectStorage`], `PutObject` to an S3-compatible
//!   service or to a local directory (one sub-directory per bucket).
//! - `http.rs`: [`Http`], a JSON `POST` with a timeout and the status
//!   classified.
//! - `nats.rs`: [`Nats`], a JetStream publish that waits for the stream's
//!   acknowledgement, with optional de-duplication by `Nats-Msg-Id`.
//! - `notification.rs`: the SES-shaped documents (the SNS receipt
//!   notification, the Lambda event, the Q Business document) and the
//!   parsing of a Lambda function's disposition.
//! - `tls.rs`: the rustls client configuration (ring provider, the
//!   platform's trust store plus extra roots) shared by the HTTP clients.
//!
//! Nothing here retries on its own beyond what one call needs: the caller
//! (the pipeline's outbound queue) owns retries and decides from
//! [`EndpointError::Temporary`] versus [`EndpointError::Permanent`].

pub mod http;
mod nats;
pub mod notification;
mod object_storage;
mod tls;

pub use http::Http;
pub use nats::Nats;
pub use object_storage::{ObjectStorage, S3Settings};

use std::fmt;

/// Why a delivery to an endpoint failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// Worth retrying later: the peer was unreachable, timed out, throttled
    /// or failed on its side (connection refused, timeout, HTTP 408, 429 and
    /// 5xx, S3 5xx or throttling, NATS acknowledgement timeout).
    Temporary(String),
    /// Retrying will not help: the request itself is wrong or refused
    /// (HTTP 4xx other than 408 and 429, S3 `NoSuchBucket` or
    /// `AccessDenied`, an invalid URL or object key, no JetStream stream for
    /// the subject).
    Permanent(String),
}

impl EndpointError {
    /// True for [`EndpointError::Temporary`].
    pub fn is_temporary(&self) -> bool {
        matches!(self, EndpointError::Temporary(_))
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            EndpointError::Temporary(m) | EndpointError::Permanent(m) => m,
        }
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::Temporary(m) => write!(f, "temporary failure: {m}"),
            EndpointError::Permanent(m) => write!(f, "permanent failure: {m}"),
        }
    }
}

impl std::error::Error for EndpointError {}

/// The error and its sources, joined with ": ", for messages.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = next.source();
    }
    text
}
