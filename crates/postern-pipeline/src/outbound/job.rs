//! A delivery job: what the outbound queue keeps about one delivery, in the
//! spool's meta (fixed when the job is queued) and its step journal (what
//! happened since).

use postern_delivery::RecipientOutcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a job goes. Resolved against the running config at each attempt,
/// so an edited relay or mailbox mapping applies to mail already queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// A Relay resource, by id.
    Relay { relay_id: String },
    /// The mail exchangers of a domain (Send, DSNs).
    Mx { domain: String },
    /// A DeliverToMailbox backend, by MailboxArn.
    Mailbox { mailbox_arn: String },
    /// An HTTP endpoint: an InvokeLambda EVENT function or a
    /// DeliverToQBusiness application; the job's body is the JSON document.
    Http { kind: HttpKind, target: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpKind {
    Function,
    QBusiness,
}

impl Route {
    /// Deliveries to one destination share its concurrency bound.
    pub fn destination(&self) -> String {
        match self {
            Route::Relay { relay_id } => format!("relay:{relay_id}"),
            Route::Mx { domain } => format!("mx:{domain}"),
            Route::Mailbox { mailbox_arn } => format!("mailbox:{mailbox_arn}"),
            Route::Http { target, .. } => format!("http:{target}"),
        }
    }

    /// Whether the body is a mail message (a DSN can be written about it).
    pub fn carries_mail(&self) -> bool {
        !matches!(self, Route::Http { .. })
    }
}

/// Fixed when the job is queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMeta {
    /// Unique per effect: the inbound queue id and the action's step key
    /// (and the domain, for Send). Queueing the same origin twice gives
    /// the same job, which makes queueing idempotent across crashes.
    pub origin: String,
    /// The spool entry that queued this job: an inbound message, or for a
    /// DSN the job it reports on.
    pub parent: String,
    pub route: Route,
    /// The envelope sender of the delivery ("" is <>).
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// Where a DSN about recipients that fail goes; None: no DSN (the
    /// original sender was <>, or the job is itself a DSN, or not mail).
    pub dsn_to: Option<String>,
    /// Seconds since the Unix epoch.
    pub queued_at: f64,
    /// After this, recipients still pending fail for good.
    pub expires_at: f64,
    /// For the trace: the rule and action that queued it.
    pub rule: String,
    pub action: String,
    /// The message's original received time and sender, for DSNs.
    pub received_at: f64,
    pub original_mail_from: String,
}

/// Step journal keys.
pub const RELEASED: &str = "released";
pub const ATTEMPT: &str = "attempt";
pub const DSN: &str = "dsn";
pub fn recipient_key(recipient: &str) -> String {
    format!("rcpt:{recipient}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (seconds since the Unix epoch).
    pub next_at: f64,
    /// Why the last attempt did not finish the job.
    pub last_error: String,
}

/// What the journal says about a job.
#[derive(Debug, Clone, Default)]
pub struct JobState {
    pub released: bool,
    pub attempt: AttemptRecord,
    /// Recipients with a final outcome (Delivered or Failed).
    pub finished: BTreeMap<String, RecipientOutcome>,
    pub dsn: Option<String>,
}

impl JobState {
    pub fn from_steps(steps: Vec<(String, Vec<u8>)>) -> JobState {
        let mut state = JobState::default();
        // Later records of the same key supersede earlier ones.
        for (key, value) in steps {
            if key == RELEASED {
                state.released = true;
            } else if key == ATTEMPT {
                if let Ok(a) = serde_json::from_slice(&value) {
                    state.attempt = a;
                }
            } else if key == DSN {
                state.dsn = Some(String::from_utf8_lossy(&value).into_owned());
            } else if let Some(rcpt) = key.strip_prefix("rcpt:")
                && let Ok(outcome) = serde_json::from_slice(&value)
            {
                state.finished.insert(rcpt.to_string(), outcome);
            }
        }
        state
    }

    pub fn pending<'a>(&self, meta: &'a JobMeta) -> Vec<&'a String> {
        meta.recipients
            .iter()
            .filter(|r| !self.finished.contains_key(r.as_str()))
            .collect()
    }
}
