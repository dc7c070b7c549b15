//! Bounce: a DSN, as the action describes it, to the envelope sender
//! (never to <>), through the outbound queue.

use super::{Failure, Input};
use crate::outbound::dsn;
use crate::outbound::job::Route;
use postern_model::BounceAction;

pub async fn run(input: &Input<'_>, action: &BounceAction) -> Result<String, Failure> {
    let to = input.meta.mail_from.as_str();
    if to.is_empty() {
        return Ok("no bounce: the sender is <>".into());
    }
    let recipients: Vec<dsn::FailedRecipient> = input
        .recipients
        .iter()
        .map(|r| dsn::FailedRecipient {
            recipient: r.clone(),
            status: action.status_code.clone(),
            remote_mta: None,
            diagnostic: format!(
                "smtp; {} {} {}",
                action.smtp_reply_code, action.status_code, action.diagnostic_message
            ),
        })
        .collect();
    let message = dsn::build(&dsn::Report {
        reporting_mta: &input.runtime.hostname,
        from: &action.sender,
        to,
        queue_id: input.id.as_str(),
        report_id: &format!(
            "{}-bounce-{}",
            input.id,
            crate::process::recipients_tag(&[input.key.to_string()])
        ),
        arrival: input.meta.received_at,
        recipients: &recipients,
        text: action.message.as_deref(),
        original: input.message,
    });
    let peers = &input.runtime.peers.outbound;
    let route = match &peers.bounce_relay {
        Some(relay_id) => Route::Relay {
            relay_id: relay_id.clone(),
        },
        None => Route::Mx {
            domain: to
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default(),
        },
    };
    let job = input.job(
        route,
        String::new(),
        vec![to.to_string()],
        false,
        peers.lifetime,
        None,
    );
    let id = input.enqueue(&job, &message).await?;
    metrics::counter!("postern_dsn_total", "reason" => "bounce_action").increment(1);
    Ok(format!("bounce to {to} queued as {id}"))
}
