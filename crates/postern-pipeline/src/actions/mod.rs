//! The actions with effects outside the message, one file per kind. Each
//! returns what it did (for the trace and the step journal) or why it
//! failed (the rule's ActionFailurePolicy then decides).
//!
//! Actions that talk to a peer that may be down for long (Relay, Send,
//! DeliverToMailbox, Bounce, InvokeLambda EVENT, DeliverToQBusiness) put a
//! job on the outbound queue and are done when it is on disk; the job's own
//! outcome comes later in the trace. The others (Archive, WriteToS3,
//! PublishToSns, InvokeLambda REQUEST_RESPONSE) finish here, with a few
//! quick retries.

pub mod archive;
pub mod bounce;
pub mod deliver_to_mailbox;
pub mod deliver_to_q_business;
pub mod invoke_lambda;
pub mod publish_to_sns;
pub mod relay;
pub mod send;
pub mod write_to_s3;

use crate::Runtime;
use crate::outbound::job::{JobMeta, Route};
use crate::process::Context;
use crate::trace::now;
use postern_endpoints::EndpointError;
use postern_endpoints::notification::MailFacts;
use postern_smtp::SessionMeta;
use postern_spool::QueueId;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What one action execution sees.
pub struct Input<'a> {
    pub ctx: &'a Arc<Context>,
    pub runtime: &'a Arc<Runtime>,
    pub meta: &'a SessionMeta,
    pub id: &'a QueueId,
    /// The action's step key: stable for this action of this message.
    pub key: &'a str,
    pub rule: String,
    pub action: &'static str,
    /// The recipients the action is for (after ReplaceRecipient).
    pub recipients: &'a [String],
    /// The message with the headers rules added on top.
    pub message: &'a [u8],
    /// When processing of the message began.
    pub started: std::time::Instant,
}

/// How an action ended.
#[derive(Debug)]
pub enum Failure {
    /// The action failed; the failure policy decides what follows.
    Failed(String),
    /// Not now: the whole message is tried again later (the step is not
    /// recorded, so the action runs again).
    Retry(String),
    /// The local disk failed.
    Io(std::io::Error),
}

impl<'a> Input<'a> {
    /// A job for the outbound queue, named after this action (and `part`,
    /// when one action queues several jobs).
    pub fn job(
        &self,
        route: Route,
        mail_from: String,
        recipients: Vec<String>,
        dsn: bool,
        lifetime: Duration,
        part: Option<&str>,
    ) -> JobMeta {
        let t = now();
        JobMeta {
            origin: match part {
                Some(p) => format!("{}/{}/{p}", self.id, self.key),
                None => format!("{}/{}", self.id, self.key),
            },
            parent: self.id.to_string(),
            route,
            mail_from,
            recipients,
            dsn_to: (dsn && !self.meta.mail_from.is_empty()).then(|| self.meta.mail_from.clone()),
            queued_at: t,
            expires_at: t + lifetime.as_secs_f64(),
            rule: self.rule.clone(),
            action: self.action.to_string(),
            received_at: self.meta.received_at,
            original_mail_from: self.meta.mail_from.clone(),
        }
    }

    pub async fn enqueue(&self, job: &JobMeta, body: &[u8]) -> Result<QueueId, Failure> {
        self.ctx
            .outbound
            .enqueue(job, body)
            .await
            .map_err(Failure::Io)
    }

    /// What SES-shaped documents say about the message.
    pub fn facts(&self) -> MailFacts<'_> {
        MailFacts {
            message_id: self.id.as_str(),
            timestamp: time::OffsetDateTime::from_unix_timestamp_nanos(
                (self.meta.received_at * 1e9) as i128,
            )
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            source: &self.meta.mail_from,
            destination: self.recipients,
            message: self.message,
            processing_time_ms: self.started.elapsed().as_millis() as u64,
            // Authentication and scanning are not performed by this
            // version (docs/semantics.md).
            spf: "PROCESSING_FAILED",
            dkim: "PROCESSING_FAILED",
            dmarc: "PROCESSING_FAILED",
            spam: "DISABLED",
            virus: "DISABLED",
        }
    }

    /// A message-unique id for de-duplication at the peer.
    pub fn dedup_id(&self) -> String {
        format!("{}/{}", self.id, self.key)
    }
}

/// Runs `call` up to three times while it fails temporarily.
pub async fn with_retries<T, F, Fut>(what: &str, mut call: F) -> Result<T, EndpointError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EndpointError>>,
{
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match call().await {
            Err(EndpointError::Temporary(e)) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "{what} failed, retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            other => return other,
        }
    }
}
