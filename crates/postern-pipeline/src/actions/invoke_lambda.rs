//! InvokeLambda: the SES-shaped Lambda event to the HTTP endpoint
//! Server.Functions maps the FunctionArn to.
//!
//! EVENT goes through the outbound queue, retried for RetryTimeMinutes.
//! REQUEST_RESPONSE waits for the answer, whose `disposition` (CONTINUE,
//! STOP_RULE, STOP_RULE_SET) the pipeline honours; when the endpoint fails
//! temporarily the whole message is tried again later, until
//! RetryTimeMinutes after it arrived, and then the action fails.

use super::{Failure, Input, with_retries};
use crate::outbound::job::{HttpKind, Route};
use crate::trace::now;
use postern_endpoints::EndpointError;
use postern_endpoints::notification::{Disposition, lambda_event, parse_disposition};
use postern_model::{InvokeLambdaAction, LambdaInvocationType};
use std::time::Duration;

pub async fn run(
    input: &Input<'_>,
    action: &InvokeLambdaAction,
) -> Result<(String, Disposition), Failure> {
    let retry_for = Duration::from_secs(60 * action.retry_time_minutes.unwrap_or(0).max(0) as u64);
    let invocation = match action.invocation_type {
        LambdaInvocationType::Event => "Event",
        LambdaInvocationType::RequestResponse => "RequestResponse",
    };
    let event = lambda_event(&input.facts(), &action.function_arn, invocation);
    if action.invocation_type == LambdaInvocationType::Event {
        let job = input.job(
            Route::Http {
                kind: HttpKind::Function,
                target: action.function_arn.clone(),
            },
            input.meta.mail_from.clone(),
            // One delivery: the endpoint, whatever the recipients.
            vec![action.function_arn.clone()],
            false,
            retry_for,
            None,
        );
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let id = input.enqueue(&job, &body).await?;
        return Ok((format!("event queued as {id}"), Disposition::Continue));
    }
    let server = input
        .runtime
        .config
        .config
        .server
        .clone()
        .unwrap_or_default();
    let endpoint = server
        .functions
        .as_ref()
        .and_then(|f| f.get(&action.function_arn))
        .ok_or_else(|| {
            Failure::Failed(format!(
                "{} is not under Server.Functions",
                action.function_arn
            ))
        })?;
    let headers: Vec<(String, String)> = endpoint
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let http = &input.runtime.peers.http;
    match with_retries("InvokeLambda", || {
        http.post_json(&endpoint.url, &event, &headers)
    })
    .await
    {
        Ok((status, body)) => {
            let disposition = parse_disposition(&body)
                .map_err(|e| Failure::Failed(format!("{}: {e}", action.function_arn)))?;
            Ok((
                format!("invoked ({status}), {}", disposition_name(disposition)),
                disposition,
            ))
        }
        Err(EndpointError::Temporary(e))
            if now() < input.meta.received_at + retry_for.as_secs_f64() =>
        {
            Err(Failure::Retry(format!("{}: {e}", action.function_arn)))
        }
        Err(EndpointError::Temporary(e)) | Err(EndpointError::Permanent(e)) => {
            Err(Failure::Failed(format!("{}: {e}", action.function_arn)))
        }
    }
}

pub fn disposition_name(d: Disposition) -> &'static str {
    match d {
        Disposition::Continue => "CONTINUE",
        Disposition::StopRule => "STOP_RULE",
        Disposition::StopRuleSet => "STOP_RULE_SET",
    }
}

/// The disposition a recorded outcome carries (for a rerun after a crash).
pub fn recorded_disposition(outcome: &str) -> Disposition {
    if !outcome.starts_with("invoked (") {
        Disposition::Continue
    } else if outcome.ends_with(", STOP_RULE_SET") {
        Disposition::StopRuleSet
    } else if outcome.ends_with(", STOP_RULE") {
        Disposition::StopRule
    } else {
        Disposition::Continue
    }
}
