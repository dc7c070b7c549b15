//! Where accepted messages go, and what the session says about them.
//!
//! The session streams a message into an [`Incoming`] and sends 250 only
//! after [`Incoming::commit`] returned: the spool implements it with fsync of
//! the file and of its directory.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io;

/// How full the store is: the session slows down or refuses new mail
/// (with 4xx, so senders retry) instead of letting the queue grow unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    Normal,
    /// Answer MAIL after this delay (like Postfix's in_flow_delay).
    Slow(std::time::Duration),
    /// Refuse MAIL with 452 4.3.1.
    Full,
}

pub trait Store: Send + Sync + 'static {
    type Incoming: Incoming;
    /// How full the store is now.
    fn pressure(&self) -> Pressure {
        Pressure::Normal
    }
    /// Starts a message; `meta` is [`SessionMeta`] as JSON.
    fn create(&self, meta: &[u8]) -> impl Future<Output = io::Result<Self::Incoming>> + Send;
}

pub trait Incoming: Send + 'static {
    fn write(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Durable when it returns; the result is the queue id.
    fn commit(self) -> impl Future<Output = io::Result<String>> + Send;
    fn abort(self) -> impl Future<Output = ()> + Send;
}

/// The ingress point a session belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngressRef {
    pub name: String,
    pub id: String,
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsMeta {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: String,
    pub cipher: String,
    /// TLS from the first byte (implicit TLS), not STARTTLS.
    pub wrapped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// DSN NOTIFY (RFC 3461) as given: SUCCESS, FAILURE, DELAY, NEVER.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// DSN ORCPT, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// The traffic policy decision that accepted it, for the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// Everything the session knew when the message was accepted; stored with
/// the message in the spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    pub ingress_point: IngressRef,
    /// The session id, in logs and the Received header.
    pub session: String,
    pub sender_ip: String,
    pub sender_port: u16,
    /// The name the client's address resolves to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_hostname: Option<String>,
    pub helo: String,
    /// Whether the client greeted with EHLO (ESMTP) or HELO.
    pub esmtp: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<String>,
    /// Client certificate attributes (MTLS), as (attribute, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_certificate: Vec<(String, String)>,
    pub mail_from: String,
    /// SIZE= as declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_size: Option<u64>,
    /// BODY=8BITMIME, SMTPUTF8, RET=, ENVID= as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default)]
    pub smtputf8: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_ret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_envid: Option<String>,
    pub recipients: Vec<Recipient>,
    /// When DATA (or the first BDAT) began, seconds since the epoch.
    pub received_at: f64,
    /// The config version the session ran under.
    pub config_version: u64,
}
