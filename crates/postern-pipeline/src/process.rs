//! One spooled message from start to end: parse once, evaluate the rule set
//! for each recipient, execute the action plans, write the trace, remove the
//! message from the spool once every action has a final outcome.
//!
//! Crash safety: an action with an effect outside the message (Archive) is
//! recorded in the spool's step journal when it reaches its final outcome;
//! after a crash it is not executed again. Actions without such effects
//! (AddHeader, ReplaceRecipient, Drop) are recomputed, which gives the same
//! result because evaluation is a pure function of the spooled message.

use crate::Runtime;
use crate::actions::{self, Failure};
use crate::archive::ArchiveStore;
use crate::outbound::Outbound;
use crate::received::received;
use crate::trace::{ActionTrace, RecipientTrace, RuleTrace, TraceLog, TraceRecord, now};
use postern_endpoints::notification::Disposition;
use postern_engine::trace::{action_kind, explain};
use postern_engine::{ActionRef, Envelope, TlsProtocol, Verdicts};
use postern_model::{ActionFailurePolicy, ResourceKind, RuleAction, RuleDmarcPolicy, RuleVerdict};
use postern_smtp::SessionMeta;
use postern_spool::{QueueId, Spool};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Why a message stays in the spool for now.
#[derive(Debug)]
pub enum Deferred {
    /// The spool could not be read or written.
    Io(std::io::Error),
    /// The message names an ingress point the running config no longer has.
    UnknownIngressPoint(String),
    /// An action failed in a way worth retrying.
    Retry(String),
}

impl std::fmt::Display for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deferred::Io(e) => write!(f, "spool: {e}"),
            Deferred::UnknownIngressPoint(id) => {
                write!(f, "ingress point {id} is not in the running config")
            }
            Deferred::Retry(why) => f.write_str(why),
        }
    }
}

pub struct Context {
    pub spool: Spool,
    pub archives: ArchiveStore,
    pub trace: Arc<TraceLog>,
    pub outbound: Arc<Outbound>,
}

pub async fn process(
    ctx: &Arc<Context>,
    runtime: &Arc<Runtime>,
    id: &QueueId,
) -> Result<(), Deferred> {
    let started = std::time::Instant::now();
    let spooled = ctx.spool.read(id).await.map_err(Deferred::Io)?;
    let meta: SessionMeta = serde_json::from_slice(&spooled.meta)
        .map_err(|e| Deferred::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let binding = runtime
        .engine
        .ingress_point(&meta.ingress_point.id)
        .ok_or_else(|| Deferred::UnknownIngressPoint(meta.ingress_point.id.clone()))?;
    let rule_set = binding.rule_set.clone();
    let raw: &[u8] = &spooled.message[..];
    let size = raw.len() as u64;
    let parsed = postern_engine::message_parser()
        .parse(raw)
        .unwrap_or_default();
    let envelope = Envelope {
        sender_ip: meta
            .sender_ip
            .parse()
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        helo: Some(meta.helo.clone()),
        tls: meta.tls.as_ref().map(|t| match t.protocol.as_str() {
            "TLSv1.3" => TlsProtocol::Tls13,
            "TLSv1.2" => TlsProtocol::Tls12,
            _ => TlsProtocol::Legacy,
        }),
        tls_wrapped: meta.tls.as_ref().is_some_and(|t| t.wrapped),
        client_certificate: (!meta.client_certificate.is_empty()).then(|| {
            postern_engine::ClientCertificate {
                attributes: meta
                    .client_certificate
                    .iter()
                    .filter_map(|(name, value)| {
                        postern_model::RuleClientCertificateAttribute::ALL
                            .iter()
                            .find(|a| a.as_str() == name)
                            .map(|a| (*a, value.clone()))
                    })
                    .collect(),
            }
        }),
        mail_from: meta.mail_from.clone(),
        recipients: meta.recipients.iter().map(|r| r.address.clone()).collect(),
        declared_size: meta.declared_size,
    };
    // Authentication is not performed by this version of Postern: rules see
    // it as not processed (docs/semantics.md).
    let verdicts = Verdicts {
        spf: Some(RuleVerdict::ProcessingFailed),
        dkim: Some(RuleVerdict::ProcessingFailed),
        dmarc: Some(RuleDmarcPolicy::None),
        ..Verdicts::default()
    };
    let evaluation = rule_set
        .evaluate(&envelope, &parsed, size, &verdicts)
        .map_err(|e| {
            Deferred::Retry(format!(
                "rule {} needs {}",
                rule_set.rule_label(e.rule),
                e.missing
            ))
        })?;
    metrics::counter!("postern_rule_set_executions_total", "rule_set" => rule_set.name.clone())
        .increment(1);

    let done: HashMap<String, String> = ctx
        .spool
        .steps(id)
        .await
        .map_err(Deferred::Io)?
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let mut outcomes: BTreeMap<(usize, usize), String> = BTreeMap::new();
    let received_header = received(
        &meta,
        &runtime.hostname,
        id.as_str(),
        (meta.recipients.len() == 1).then(|| meta.recipients[0].address.as_str()),
    );

    // Recipients with the same plan share one execution of it.
    let mut groups: Vec<(Vec<ActionRef>, Vec<String>)> = Vec::new();
    for outcome in &evaluation.recipients {
        match groups.iter_mut().find(|(plan, _)| *plan == outcome.actions) {
            Some((_, recipients)) => recipients.push(outcome.recipient.clone()),
            None => groups.push((outcome.actions.clone(), vec![outcome.recipient.clone()])),
        }
    }
    // The first Archive of a message into an archive (and the first
    // WriteToS3 into a bucket and prefix) stores it under the queue id;
    // another one (another rule, other recipients, other added headers)
    // under the queue id and the action, so no copy overwrites another and
    // a rerun writes the same objects.
    let mut stored_as: HashMap<String, (usize, usize)> = HashMap::new();
    for (plan, recipients) in &groups {
        let mut current: Vec<String> = recipients.clone();
        let mut headers: Vec<(String, String)> = vec![("Received".into(), received_header.clone())];
        // Set by an InvokeLambda REQUEST_RESPONSE disposition.
        let mut stopped: Option<(Option<usize>, &'static str)> = None;
        for a in plan {
            let action = rule_set.action(*a);
            let kind = action_kind(action);
            if let Some((scope, why)) = stopped {
                if scope.is_none_or(|rule| rule == a.rule) {
                    outcomes.insert((a.rule, a.action), format!("not executed: {why}"));
                    continue;
                }
                stopped = None;
            }
            // Stable across config versions: a message retried under an
            // edited rule set never takes another action's outcome for its own.
            let target = match action {
                RuleAction::Archive(archive) => runtime
                    .config
                    .resolve(ResourceKind::Archive, &archive.target_archive)
                    .map(|i| i.id.clone())
                    .unwrap_or_default(),
                RuleAction::WriteToS3(s3) => format!(
                    "{}/{}",
                    s3.s3_bucket,
                    s3.s3_prefix.as_deref().unwrap_or_default()
                ),
                _ => String::new(),
            };
            let key = format!(
                "{}/{}/{}/{}:{target}",
                rule_set.id,
                rule_set.rule_label(a.rule),
                a.action,
                kind
            );
            let outcome = match action {
                RuleAction::AddHeader(h) => {
                    // The model does not forbid CR or LF in HeaderValue; a
                    // header must not be able to start another header.
                    let value: String = h
                        .header_value
                        .chars()
                        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                        .collect();
                    headers.push((h.header_name.clone(), value));
                    "added".to_string()
                }
                RuleAction::ReplaceRecipient(r) => {
                    current = r.replace_with.clone().unwrap_or_default();
                    format!("recipients now {}", current.join(", "))
                }
                RuleAction::Drop(_) => "dropped".to_string(),
                _ => {
                    // Decided in execution order, done or not, so a rerun
                    // after a crash names every copy as the first run did.
                    let first = *stored_as
                        .entry(format!("{kind}:{target}"))
                        .or_insert((a.rule, a.action));
                    let object_name = if first == (a.rule, a.action) {
                        id.to_string()
                    } else {
                        format!("{id}-{}-{}", a.rule, a.action)
                    };
                    if let Some(previous) = done.get(&key).or(outcomes.get(&(a.rule, a.action))) {
                        previous.clone()
                    } else {
                        let message = with_headers(&headers, raw);
                        let input = actions::Input {
                            ctx,
                            runtime,
                            meta: &meta,
                            id,
                            key: &key,
                            rule: rule_set.rule_label(a.rule),
                            action: kind,
                            recipients: &current,
                            message: &message,
                            started,
                        };
                        let result = execute(&input, action, &object_name).await;
                        let text = match result {
                            Ok(text) => text,
                            Err(Failure::Failed(e)) => format!("failed: {e}"),
                            Err(Failure::Retry(e)) => return Err(Deferred::Retry(e)),
                            Err(Failure::Io(e)) => return Err(Deferred::Io(e)),
                        };
                        let failed = text.starts_with("failed");
                        metrics::counter!("postern_actions_total", "action" => kind, "outcome" => if failed { "failure" } else { "success" }).increment(1);
                        if failed {
                            let policy = failure_policy(action);
                            tracing::warn!(queue_id = %id, action = kind, error = %text, policy = %policy, "action failed");
                        }
                        ctx.spool
                            .record_step(id, &key, text.as_bytes())
                            .await
                            .map_err(Deferred::Io)?;
                        text
                    }
                }
            };
            if matches!(action, RuleAction::InvokeLambda(_)) {
                match actions::invoke_lambda::recorded_disposition(&outcome) {
                    Disposition::Continue => {}
                    Disposition::StopRule => {
                        stopped = Some((Some(a.rule), "InvokeLambda returned STOP_RULE"))
                    }
                    Disposition::StopRuleSet => {
                        stopped = Some((None, "InvokeLambda returned STOP_RULE_SET"))
                    }
                }
            }
            let failed = outcome.starts_with("failed");
            outcomes.insert((a.rule, a.action), outcome);
            if matches!(action, RuleAction::Drop(_)) {
                break;
            }
            if failed && failure_policy(action) == ActionFailurePolicy::Drop {
                break;
            }
        }
    }
    // Jobs this message queued may go now that its journal names them.
    ctx.outbound
        .release(id.as_str())
        .await
        .map_err(Deferred::Io)?;

    // The trace.
    let policy_of: HashMap<&str, &str> = meta
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.policy.as_deref().unwrap_or("ALLOW")))
        .collect();
    let recipients = evaluation
        .recipients
        .iter()
        .map(|outcome| RecipientTrace {
            recipient: outcome.recipient.clone(),
            traffic: policy_of.get(outcome.recipient.as_str()).unwrap_or(&"ALLOW").to_string(),
            rules: outcome
                .matched
                .iter()
                .map(|m| {
                    metrics::counter!("postern_rule_matches_total", "rule_set" => rule_set.name.clone(), "rule" => rule_set.rule_label(m.rule)).increment(1);
                    RuleTrace {
                        rule: rule_set.rule_label(m.rule),
                        reasons: explain(&rule_set.rules()[m.rule], m, outcome, &evaluation),
                    }
                })
                .collect(),
            actions: outcome
                .actions
                .iter()
                .map(|a| ActionTrace {
                    rule: rule_set.rule_label(a.rule),
                    action: action_kind(rule_set.action(*a)).to_string(),
                    outcome: outcomes.get(&(a.rule, a.action)).cloned().unwrap_or_else(|| "not reached".into()),
                })
                .collect(),
            dropped: outcome.dropped,
        })
        .collect();
    let record = TraceRecord {
        kind: "Message",
        queue_id: id.to_string(),
        received_at: meta.received_at,
        processed_at: now(),
        ingress_point: meta.ingress_point.name.clone(),
        mail_from: meta.mail_from.clone(),
        message_size: size,
        rule_set: rule_set.name.clone(),
        recipients,
        outcome: "done".into(),
    };
    let ctx2 = ctx.clone();
    let _ = tokio::task::spawn_blocking(move || ctx2.trace.append(&record)).await;

    ctx.spool.remove(id).await.map_err(Deferred::Io)?;
    metrics::counter!("postern_pipeline_messages_total", "rule_set" => rule_set.name.clone(), "outcome" => "done").increment(1);
    metrics::histogram!("postern_pipeline_processing_seconds")
        .record(started.elapsed().as_secs_f64());
    let latency = now() - meta.received_at;
    if latency.is_finite() && latency >= 0.0 {
        metrics::histogram!("postern_pipeline_latency_seconds").record(latency);
    }
    tracing::info!(queue_id = %id, recipients = evaluation.recipients.len(), "message processed");
    Ok(())
}

fn failure_policy(action: &RuleAction) -> ActionFailurePolicy {
    match action {
        RuleAction::Archive(a) => a.action_failure_policy,
        RuleAction::Relay(a) => a.action_failure_policy,
        RuleAction::WriteToS3(a) => a.action_failure_policy,
        RuleAction::Send(a) => a.action_failure_policy,
        RuleAction::DeliverToMailbox(a) => a.action_failure_policy,
        RuleAction::DeliverToQBusiness(a) => a.action_failure_policy,
        RuleAction::PublishToSns(a) => a.action_failure_policy,
        RuleAction::Bounce(a) => a.action_failure_policy,
        RuleAction::InvokeLambda(a) => a.action_failure_policy,
        RuleAction::Drop(_) | RuleAction::AddHeader(_) | RuleAction::ReplaceRecipient(_) => None,
    }
    .unwrap_or(ActionFailurePolicy::Continue)
}

/// The message as actions deliver it: the headers rules added on top, the
/// latest first (like trace headers), then the message as received.
fn with_headers(headers: &[(String, String)], raw: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(raw.len() + 512);
    for (name, value) in headers.iter().rev() {
        message.extend_from_slice(name.as_bytes());
        message.extend_from_slice(b": ");
        message.extend_from_slice(value.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(raw);
    message
}

/// Runs one action with an effect outside the message.
async fn execute(
    input: &actions::Input<'_>,
    action: &RuleAction,
    object_name: &str,
) -> Result<String, Failure> {
    match action {
        RuleAction::Archive(a) => actions::archive::run(input, a, object_name).await,
        RuleAction::WriteToS3(a) => actions::write_to_s3::run(input, a, object_name).await,
        RuleAction::Relay(a) => actions::relay::run(input, a).await,
        RuleAction::Send(a) => actions::send::run(input, a).await,
        RuleAction::DeliverToMailbox(a) => actions::deliver_to_mailbox::run(input, a).await,
        RuleAction::DeliverToQBusiness(a) => actions::deliver_to_q_business::run(input, a).await,
        RuleAction::PublishToSns(a) => actions::publish_to_sns::run(input, a).await,
        RuleAction::Bounce(a) => actions::bounce::run(input, a).await,
        RuleAction::InvokeLambda(a) => actions::invoke_lambda::run(input, a)
            .await
            .map(|(text, _)| text),
        RuleAction::AddHeader(_) | RuleAction::ReplaceRecipient(_) | RuleAction::Drop(_) => {
            Ok(String::new())
        }
    }
}
