//! The Mail Manager API, as Postern serves it on its HTTP port.
//!
//! # Layout
//! - `wire.rs`: the two protocols of the model (AWS JSON 1.0 and Smithy
//!   RPC v2 CBOR): requests decoded into JSON values and checked against the
//!   operation's input shape, responses and errors encoded.
//! - `sigv4.rs`: AWS Signature Version 4 checks against configured keys.
//! - `http.rs`: the axum routes binding both together.
//! - `ops/`: the operations, over the versioned state document.
//! - `error.rs`: the errors the API answers with.

pub mod document;
pub mod error;
pub mod http;
pub mod ops;
pub mod sigv4;
pub mod uploads;
pub mod wire;

pub use error::{ApiError, ErrorCode};

/// What answers operations: an operation name from the model and its input
/// (decoded, checked against the input shape, timestamps as epoch seconds),
/// to its output in the same form.
pub trait Operations: Send + Sync + 'static {
    fn call(
        &self,
        operation: &str,
        input: serde_json::Value,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// The quotas requests are checked against (the list sizes a config
    /// may raise with `Server.Quotas`); AWS's defaults unless overridden.
    /// Asked for each request, so a reloaded config takes effect.
    fn quotas(&self) -> postern_config::Quotas {
        postern_config::Quotas::default()
    }
}
