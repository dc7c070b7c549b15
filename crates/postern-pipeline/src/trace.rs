//! The message trace: one JSON line per processed message under
//! `DataDir/trace/{yyyy-mm-dd}.jsonl`, saying which traffic policy decision
//! let each recipient in, which rules matched and why, and which actions ran
//! with what outcome.

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use time::OffsetDateTime;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TraceRecord {
    /// "Message"; the outbound queue writes "Delivery" records.
    pub kind: &'static str,
    pub queue_id: String,
    pub received_at: f64,
    pub processed_at: f64,
    pub ingress_point: String,
    pub mail_from: String,
    pub message_size: u64,
    pub rule_set: String,
    /// SPF, DKIM, DMARC and ARC results with their reasons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authentication: Vec<String>,
    /// Add-on results the rule set read, as `{instance ARN} {field} = {value}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addon_results: Vec<String>,
    pub recipients: Vec<RecipientTrace>,
    pub outcome: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecipientTrace {
    pub recipient: String,
    /// The traffic policy decision that accepted it at RCPT.
    pub traffic: String,
    pub rules: Vec<RuleTrace>,
    pub actions: Vec<ActionTrace>,
    pub dropped: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleTrace {
    pub rule: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActionTrace {
    pub rule: String,
    pub action: String,
    pub outcome: String,
}

pub struct TraceLog {
    dir: PathBuf,
    file: Mutex<Option<(String, std::fs::File)>>,
}

impl TraceLog {
    pub fn new(data_dir: &Path) -> TraceLog {
        TraceLog {
            dir: data_dir.join("trace"),
            file: Mutex::new(None),
        }
    }

    /// Appends a record (blocking). A trace that cannot be written is logged;
    /// it never holds up mail.
    pub fn append<T: Serialize>(&self, record: &T) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(_) => return,
        };
        line.push(b'\n');
        let day = OffsetDateTime::now_utc().date().to_string();
        let mut guard = self.file.lock().expect("trace lock");
        if guard.as_ref().is_none_or(|(d, _)| *d != day) {
            let _ = std::fs::create_dir_all(&self.dir);
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{day}.jsonl")))
            {
                Ok(file) => *guard = Some((day, file)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the trace file");
                    return;
                }
            }
        }
        if let Some((_, file)) = guard.as_mut()
            && let Err(e) = file.write_all(&line)
        {
            tracing::warn!(error = %e, "cannot write the trace");
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}
