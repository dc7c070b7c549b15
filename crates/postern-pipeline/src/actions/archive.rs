//! Archive: the message (with the headers rules added) into an archive of
//! the archive store (postern-archive): the body to object storage or a
//! file, its metadata to the search index. Storing the same message again
//! (a rerun after a crash) changes nothing.

use super::{Failure, Input};
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
    let config = &input.runtime.config;
    let identity = config
        .resolve(ResourceKind::Archive, target)
        .ok_or_else(|| Failure::Failed(format!("archive {target} is not in the running config")))?
        .clone();
    let archive_config = config
        .archives()
        .find(|(i, _)| i.id == identity.id)
        .map(|(_, a)| a.clone());
    let key = match archive_config
        .as_ref()
        .and_then(|a| a.kms_key_arn.as_deref())
    {
        Some(arn) => Some(input.runtime.peers.archive_keys.get(arn).ok_or_else(|| {
            Failure::Failed(format!("no key for {arn} under Server.Archive.Keys"))
        })?),
        None => None,
    };
    let binding = input
        .runtime
        .engine
        .ingress_point(&input.meta.ingress_point.id);
    let (traffic_policy_id, rule_set_id, rule_set_arn) = binding
        .map(|b| {
            (
                b.policy.id.clone(),
                b.rule_set.id.clone(),
                b.rule_set.arn.clone(),
            )
        })
        .unwrap_or_default();
    let meta = input.meta;
    let received =
        time::OffsetDateTime::from_unix_timestamp_nanos((meta.received_at * 1e9) as i128)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let item = postern_archive::StoreItem {
        archive_id: &identity.id,
        archived_message_id: archived_id,
        received,
        ingress_point_id: &meta.ingress_point.id,
        traffic_policy_id: &traffic_policy_id,
        rule_set_id: &rule_set_id,
        sender_hostname: meta.sender_hostname.as_deref(),
        sender_ip: &meta.sender_ip,
        tls_protocol: meta.tls.as_ref().map(|t| t.protocol.as_str()),
        tls_cipher_suite: meta.tls.as_ref().map(|t| t.cipher.as_str()),
        envelope_helo: &meta.helo,
        envelope_from: &meta.mail_from,
        envelope_to: input.recipients,
        source_arn: &rule_set_arn,
        message: input.message,
        encryption: key,
    };
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match input.ctx.archive.store(&item).await {
            Ok(()) => return Ok(format!("archived in {}", identity.name)),
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "archive write failed, retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(Failure::Failed(e.to_string())),
        }
    }
}
