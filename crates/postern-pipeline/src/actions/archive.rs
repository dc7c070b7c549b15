//! Archive: the message (with the headers rules added) into a local
//! archive (archive.rs in this crate).

use super::{Failure, Input};
use crate::archive::{ArchivedMeta, EnvelopeMeta};
use postern_model::{ArchiveAction, ResourceKind};
use std::time::Duration;

/// `archived_id` is the queue id for the first Archive of a message into an
/// archive, and the queue id with the rule and action for any other.
pub async fn run(
    input: &Input<'_>,
    action: &ArchiveAction,
    archived_id: &str,
) -> Result<String, Failure> {
    let target = &action.target_archive;
    let archive = input
        .runtime
        .config
        .resolve(ResourceKind::Archive, target)
        .ok_or_else(|| Failure::Failed(format!("archive {target} is not in the running config")))?
        .clone();
    let rule_set_arn = input
        .runtime
        .engine
        .ingress_point(&input.meta.ingress_point.id)
        .map(|b| b.rule_set.arn.clone())
        .unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (ctx, id, meta, recipients, message, archive_id, source) = (
            input.ctx.clone(),
            archived_id.to_string(),
            input.meta.clone(),
            input.recipients.to_vec(),
            input.message.to_vec(),
            archive.id.clone(),
            rule_set_arn.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            let archived = ArchivedMeta {
                archived_message_id: &id,
                received_timestamp: meta.received_at,
                ingress_point_id: &meta.ingress_point.id,
                sender_ip_address: &meta.sender_ip,
                envelope: EnvelopeMeta {
                    helo: &meta.helo,
                    from: &meta.mail_from,
                    to: recipients.iter().map(String::as_str).collect(),
                },
                source_arn: &source,
            };
            ctx.archives.store(&archive_id, &archived, &message)
        })
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
        match result {
            Ok(_) => return Ok(format!("archived in {}", archive.name)),
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "archive write failed, retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(Failure::Failed(e.to_string())),
        }
    }
}
