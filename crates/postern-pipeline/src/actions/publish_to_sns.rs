//! PublishToSns: an SES-shaped receipt notification to where
//! Server.Topics maps the TopicArn: an HTTP POST (webhook) or a NATS
//! JetStream subject (with the message and action as Nats-Msg-Id, so a
//! rerun after a crash is not stored twice).

use super::{Failure, Input, with_retries};
use postern_endpoints::EndpointError;
use postern_endpoints::notification::{Encoding, PayloadType, sns_notification};
use postern_model::{SnsAction, SnsNotificationEncoding, SnsNotificationPayloadType, TopicTarget};

pub async fn run(input: &Input<'_>, action: &SnsAction) -> Result<String, Failure> {
    let server = input
        .runtime
        .config
        .config
        .server
        .clone()
        .unwrap_or_default();
    let target = server
        .topics
        .as_ref()
        .and_then(|t| t.get(&action.topic_arn))
        .ok_or_else(|| {
            Failure::Failed(format!("{} is not under Server.Topics", action.topic_arn))
        })?;
    let encoding = match action.encoding {
        Some(SnsNotificationEncoding::Base64) => Encoding::Base64,
        _ => Encoding::Utf8,
    };
    let payload = match action.payload_type {
        Some(SnsNotificationPayloadType::Headers) => PayloadType::Headers,
        _ => PayloadType::Content,
    };
    let facts = input.facts();
    let document = sns_notification(&facts, &action.topic_arn, encoding, payload);
    let peers = &input.runtime.peers;
    let result = match target {
        TopicTarget::Webhook(hook) => {
            let headers: Vec<(String, String)> = hook
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            with_retries("PublishToSns", || {
                peers.http.post_json(&hook.url, &document, &headers)
            })
            .await
            .map(|(status, _)| format!("published to {} ({status})", hook.url))
        }
        TopicTarget::Nats(nats) => {
            let body = bytes::Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
            let dedup = input.dedup_id();
            with_retries("PublishToSns", || {
                peers
                    .nats
                    .publish(&nats.url, &nats.subject, body.clone(), Some(&dedup))
            })
            .await
            .map(|()| format!("published to NATS subject {}", nats.subject))
        }
    };
    result.map_err(|e| match e {
        EndpointError::Temporary(e) | EndpointError::Permanent(e) => {
            Failure::Failed(format!("{}: {e}", action.topic_arn))
        }
    })
}
