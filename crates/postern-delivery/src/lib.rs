//! Clients for the peers the outbound queue delivers to.
//!
//! Every function here makes one attempt and reports what happened as a
//! value: a [`RecipientOutcome`] per recipient, or a [`SessionError`] when
//! the attempt failed before any recipient was decided. Retrying, choosing
//! the next MX host and bouncing are the queue's business.
//!
//! # Layout
//! - `lib.rs`: the outcome types shared by the clients ([`Reply`],
//!   [`RecipientOutcome`], [`SessionError`]).
//! - `client.rs`: the SMTP and LMTP client: TLS policies, AUTH, one
//!   transaction, per-recipient outcomes.
//! - `dns.rs`: mail exchangers for a domain (RFC 5321 §5.1, RFC 7505).
//! - `dkim.rs`: DKIM signing keys and the `DKIM-Signature` header.
//! - `maildir.rs`: delivery into a Maildir (tmp, fsync, rename into new).

pub mod client;
pub mod dkim;
pub mod dns;
pub mod maildir;

pub use client::{
    ClientSettings, Credentials, Endpoint, Protocol, TlsPolicy, Transaction, deliver,
};
pub use dkim::{DkimKey, sign};
pub use dns::{Dns, DnsError, Exchanger};
pub use maildir::deliver_maildir;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A reply from the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (RFC 3463), e.g. "5.1.1", if the peer gave
    /// one whose class matches the reply code.
    pub status: Option<String>,
    /// The text of every line, without code and status, joined with ' '.
    pub text: String,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 user unknown`; without a status, `550 user unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(status) = &self.status {
            write!(f, " {status}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// The final or temporary outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientOutcome {
    /// The peer took responsibility for the message (2xx).
    Delivered(Reply),
    /// Worth retrying later (4xx, connection lost, timeout, TLS required
    /// but not offered, ...).
    Deferred {
        reason: String,
        reply: Option<Reply>,
    },
    /// Permanent (5xx for this recipient or the whole transaction).
    Failed {
        reason: String,
        reply: Option<Reply>,
    },
}

/// Failure before any recipient was decided (connect, greeting, EHLO,
/// STARTTLS, AUTH, MAIL FROM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Try again later, or try the next MX host.
    Temporary(String, Option<Reply>),
    /// The peer refused the transaction for good (5xx greeting or MAIL
    /// FROM, a message larger than its SIZE, ...).
    Permanent(String, Option<Reply>),
}

impl SessionError {
    /// The human-readable reason.
    pub fn reason(&self) -> &str {
        match self {
            SessionError::Temporary(reason, _) | SessionError::Permanent(reason, _) => reason,
        }
    }

    /// The peer's reply that caused the failure, if there was one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SessionError::Temporary(_, reply) | SessionError::Permanent(_, reply) => reply.as_ref(),
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, SessionError::Temporary(..))
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SessionError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_display_and_json() {
        let reply = Reply {
            code: 550,
            status: Some("5.1.1".into()),
            text: "user unknown".into(),
        };
        assert_eq!(reply.to_string(), "550 5.1.1 user unknown");
        let bare = Reply {
            code: 250,
            status: None,
            text: String::new(),
        };
        assert_eq!(bare.to_string(), "250");
        let outcome = RecipientOutcome::Failed {
            reason: "x".into(),
            reply: Some(reply),
        };
        let json = serde_json::to_string(&outcome).unwrap();
        let back: RecipientOutcome = serde_json::from_str(&json).unwrap();
        assert_eq!(back, outcome);
    }
}
