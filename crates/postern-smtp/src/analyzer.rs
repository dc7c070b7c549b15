//! Add-on results a traffic policy reads at RCPT (`Analysis` conditions):
//! the session asks an [`Analyzer`] once per transaction, with what is known
//! before the message arrives (the client's address, HELO, MAIL FROM).
//! The gateway's analyzer runs the add-ons (DNS block lists); it bounds its
//! own time, and a result it cannot get is given as `PROCESSING_FAILED`
//! rather than left out, so the policy decides instead of deferring.

use postern_engine::AnalysisValue;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// What is known about a transaction at RCPT.
#[derive(Debug, Clone)]
pub struct AnalysisInput {
    pub ip: IpAddr,
    pub helo: String,
    pub mail_from: String,
}

/// Results by (add-on instance ARN, result field).
pub type AnalysisResults = HashMap<(String, String), AnalysisValue>;

pub trait Analyzer: Send + Sync {
    /// The results of `needed`, for one transaction.
    fn analyze<'a>(
        &'a self,
        needed: &'a [(String, String)],
        input: &'a AnalysisInput,
    ) -> Pin<Box<dyn Future<Output = AnalysisResults> + Send + 'a>>;
}
