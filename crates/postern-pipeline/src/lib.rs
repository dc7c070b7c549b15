//! From the spool to an outcome for every recipient.
//!
//! # Layout
//! - `worker.rs`: the worker pool and retries.
//! - `process.rs`: one message: parse once, evaluate, execute, trace, remove.
//! - `received.rs`: the Received header.
//! - `actions/`: the actions with effects outside the message, one file per kind.
//! - `outbound/`: the durable outbound queue, its deliveries and DSNs.
//! - `addons.rs`: the add-on instances (DNS block lists, Rspamd, ClamAV) and their result fields.
//! - `peers.rs`: the clients and settings actions deliver with, from the config.
//! - `trace.rs`: the message trace.

pub mod actions;
pub mod addons;
pub mod outbound;
pub mod peers;
pub mod process;
pub mod received;
pub mod trace;
pub mod worker;

pub use process::{Context, Deferred, process};
pub use worker::Pipeline;

/// One version of the running config: compiled engines and the resources
/// actions refer to. Replaced as a whole on reload.
pub struct Runtime {
    pub version: u64,
    pub config: postern_config::ValidatedConfig,
    pub engine: postern_engine::Engine,
    pub hostname: String,
    pub peers: peers::Peers,
}
