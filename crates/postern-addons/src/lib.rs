//! Security add-ons: DNS block lists, Rspamd and ClamAV. Each is a client
//! that returns a result value: it never panics, and every network
//! exchange is bounded by the timeout it was built with.
//!
//! # Layout
//!
//! - `lib.rs`: [`AddonError`], the one error type (timeout, peer
//!   unavailable, or an answer that makes no sense).
//! - `dnsbl.rs`: [`Dnsbl`], IP and domain block list queries on
//!   hickory-resolver (answers cached by their TTL), and
//!   [`body_url_domains`], the host names of the URLs in a message's text
//!   and HTML bodies.
//! - `rspamd.rs`: [`Rspamd`], a scan through Rspamd's HTTP protocol
//!   (`POST /checkv2`), returning [`RspamdResult`].
//! - `clamav.rs`: [`Clamd`], a scan through clamd's `INSTREAM` command over
//!   TCP or a unix socket, returning [`ClamResult`].
//!
//! Nothing here retries or decides: the caller (the pipeline) turns a
//! result or an error into a verdict and a trace entry.

mod clamav;
mod dnsbl;
mod rspamd;

pub use clamav::{ClamResult, Clamd, ClamdAddress, MAX_REPLY_BYTES};
pub use dnsbl::{Dnsbl, body_url_domains};
pub use rspamd::{MAX_RESPONSE_BYTES, Rspamd, RspamdEnvelope, RspamdResult};

use std::fmt;

/// Why an add-on gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddonError {
    /// The peer did not answer within the timeout.
    Timeout(String),
    /// The peer could not be reached (connection refused, no such socket,
    /// connection reset, DNS server failure).
    Unavailable(String),
    /// The peer answered something unusable (an HTTP error status,
    /// malformed JSON, an unexpected clamd reply, clamd's size limit).
    Protocol(String),
}

impl AddonError {
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            AddonError::Timeout(m) | AddonError::Unavailable(m) | AddonError::Protocol(m) => m,
        }
    }
}

impl fmt::Display for AddonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddonError::Timeout(m) => write!(f, "timeout: {m}"),
            AddonError::Unavailable(m) => write!(f, "unavailable: {m}"),
            AddonError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for AddonError {}

/// An error and its sources, joined by ": ".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}
