//! The traffic policy and rule engines.
//!
//! Pure: the inputs are the SMTP envelope, the message parsed once with
//! mail-parser (configured by [`message_parser`]), and the verdicts of
//! authentication and add-ons; the outputs are decisions with their reasons.
//! No I/O, no clock, no DNS, no async runtime.
//!
//! # Layout
//! - `envelope.rs`, `verdicts.rs`: the inputs.
//! - `address.rs`: addresses compared as addresses (case, brackets, IDN).
//! - `address_list.rs`: address lists as hash sets.
//! - `facts.rs`: the values conditions read, taken from the message once.
//! - `condition.rs`: compiled conditions; string conditions of one attribute
//!   share one Aho-Corasick automaton.
//! - `compile.rs`: model conditions into compiled ones.
//! - `policy.rs`: traffic policies (RCPT time, per recipient).
//! - `rule_set.rs`: rule sets (after DATA, per recipient).
//! - `trace.rs`: what was decided and why.
//! - `engine.rs`: a whole config compiled, ingress points bound.

mod address;
pub mod address_list;
mod compile;
mod condition;
pub mod engine;
mod envelope;
mod facts;
pub mod policy;
pub mod rule_set;
pub mod trace;
mod verdicts;

pub use address::normalize as normalize_address;
pub use address_list::AddressList;
pub use compile::{Catalog, UnknownReference};
pub use condition::Hit;
pub use engine::{Engine, IngressBinding};
pub use envelope::{ClientCertificate, Envelope, TlsProtocol};
pub use facts::{Facts, message_parser};
pub use policy::{CompiledPolicy, PolicyDecision, PolicyError, PolicyReason};
pub use rule_set::CompiledRuleSet;
pub use trace::{ActionRef, Evaluation, EvaluationError, Evidence, MatchedRule, RecipientOutcome};
pub use verdicts::{AnalysisValue, Missing, Verdicts};
