//! The SMTP ingress.
//!
//! # Layout
//! - `analyzer.rs`: add-on results the traffic policy reads at RCPT.
//! - `listener.rs`: accept loop, connection limits, implicit TLS, shutdown.
//! - `session.rs`: one ESMTP session; the traffic policy at RCPT; messages
//!   streamed into the store and committed before the 250.
//! - `stream.rs`: a connection that STARTTLS turns into TLS.
//! - `tls.rs`: certificates from files or self-signed; MTLS trust stores.
//! - `reply.rs`: every reply the server sends.
//! - `limits.rs`: the bounds of a session and their defaults.
//! - `store.rs`: the interface to the spool, and the session metadata kept
//!   with each message.

pub mod analyzer;
pub mod limits;
pub mod listener;
pub mod reply;
pub mod session;
pub mod store;
pub mod stream;
pub mod tls;

pub use analyzer::{AnalysisInput, AnalysisResults, Analyzer};
pub use limits::Limits;
pub use listener::{Connections, serve};
pub use session::{End, Peer, Session, SessionConfig};
pub use store::{Incoming, IngressRef, Pressure, SessionMeta, Store};
