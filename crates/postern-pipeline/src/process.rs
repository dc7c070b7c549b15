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
    pub archive: postern_archive::Archive,
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
    let size = spooled.message.len() as u64;
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
    // Authentication-Results claiming this gateway can only be forged: they
    // go before anything reads the message.
    let stripped = postern_auth::strip_forged_results(&spooled.message[..], &runtime.hostname);
    let raw: &[u8] = &stripped;
    let auth = match &runtime.peers.auth {
        Some(authenticator) => Some(
            authenticator
                .authenticate(&postern_auth::AuthInput {
                    client_ip: envelope.sender_ip,
                    helo: &meta.helo,
                    mail_from: &meta.mail_from,
                    message: raw,
                    authserv_id: &runtime.hostname,
                })
                .await,
        ),
        None => None,
    };
    if let Some(a) = &auth {
        for (check, verdict) in [
            ("spf", a.spf.as_str()),
            ("dkim", a.dkim.as_str()),
            ("arc", a.arc.as_str()),
        ] {
            metrics::counter!("postern_auth_verdicts_total", "check" => check, "verdict" => verdict).increment(1);
        }
        metrics::counter!("postern_auth_verdicts_total", "check" => "dmarc", "verdict" => a.dmarc.as_str()).increment(1);
    }
    let mut verdicts = match &auth {
        Some(a) => Verdicts {
            spf: Some(rule_verdict(a.spf)),
            dkim: Some(rule_verdict(a.dkim)),
            dmarc: Some(match a.dmarc {
                postern_auth::DmarcPolicy::None => RuleDmarcPolicy::None,
                postern_auth::DmarcPolicy::Quarantine => RuleDmarcPolicy::Quarantine,
                postern_auth::DmarcPolicy::Reject => RuleDmarcPolicy::Reject,
            }),
            ..Verdicts::default()
        },
        // Authentication is turned off: rules see it as not processed
        // (docs/semantics.md).
        None => Verdicts {
            spf: Some(RuleVerdict::ProcessingFailed),
            dkim: Some(RuleVerdict::ProcessingFailed),
            dmarc: Some(RuleDmarcPolicy::None),
            ..Verdicts::default()
        },
    };
    let needed = rule_set.analysis_needed();
    if !needed.is_empty() {
        verdicts.analysis = runtime
            .peers
            .addons
            .analyze(
                needed,
                &crate::addons::AddonInput {
                    ip: envelope.sender_ip,
                    helo: &meta.helo,
                    mail_from: &meta.mail_from,
                    recipients: &envelope.recipients,
                    queue_id: id.as_str(),
                    hostname: &runtime.hostname,
                    message: Some(raw),
                },
            )
            .await;
    }
    let parsed = postern_engine::message_parser()
        .parse(raw)
        .unwrap_or_default();
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
    // By (group, rule, action).
    let mut outcomes: BTreeMap<(usize, usize, usize), String> = BTreeMap::new();
    let received_header = received(
        &meta,
        &runtime.hostname,
        id.as_str(),
        (meta.recipients.len() == 1).then(|| meta.recipients[0].address.as_str()),
    );

    // Recipients with the same plan share one execution of it; each plan
    // runs for its own recipients, even where plans share an action.
    let mut groups: Vec<(Vec<ActionRef>, Vec<String>)> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for outcome in &evaluation.recipients {
        let g = match groups.iter().position(|(plan, _)| *plan == outcome.actions) {
            Some(g) => {
                groups[g].1.push(outcome.recipient.clone());
                g
            }
            None => {
                groups.push((outcome.actions.clone(), vec![outcome.recipient.clone()]));
                groups.len() - 1
            }
        };
        group_of.insert(outcome.recipient.as_str(), g);
    }
    let several = groups.len() > 1;
    // The first Archive of a message into an archive (and the first
    // WriteToS3 into a bucket and prefix) stores it under the queue id;
    // another one (another rule, other recipients, other added headers)
    // under the queue id and the action, so no copy overwrites another and
    // a rerun writes the same objects.
    let mut stored_as: HashMap<String, (usize, usize, usize)> = HashMap::new();
    let mut names_used: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (g, (plan, recipients)) in groups.iter().enumerate() {
        // Names the group in step keys, by its recipients: stable when the
        // message is processed again.
        let group_tag = if several {
            format!("#{}", recipients_tag(recipients))
        } else {
            String::new()
        };
        let mut current: Vec<String> = recipients.clone();
        // Written in reverse: Received on top, then Authentication-Results,
        // then (above both) what rules add.
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(a) = &auth {
            let value = a
                .header
                .trim_end()
                .strip_prefix("Authentication-Results:")
                .unwrap_or(&a.header)
                .trim_start();
            headers.push(("Authentication-Results".into(), value.to_string()));
        }
        headers.push(("Received".into(), received_header.clone()));
        // Set by an InvokeLambda REQUEST_RESPONSE disposition.
        let mut stopped: Option<(Option<usize>, &'static str)> = None;
        for a in plan {
            let action = rule_set.action(*a);
            let kind = action_kind(action);
            if let Some((scope, why)) = stopped {
                if scope.is_none_or(|rule| rule == a.rule) {
                    outcomes.insert((g, a.rule, a.action), format!("not executed: {why}"));
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
                    s3.s3_prefix
                        .as_deref()
                        .unwrap_or_default()
                        .trim_matches('/')
                ),
                _ => String::new(),
            };
            let key = format!(
                "{}/{}/{}/{}:{target}{group_tag}",
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
                    // Archived message ids are unique across archives:
                    // only the first Archive of a message, in any archive,
                    // takes the queue id.
                    let place = if matches!(action, RuleAction::Archive(_)) {
                        kind.to_string()
                    } else {
                        format!("{kind}:{target}")
                    };
                    let first = *stored_as.entry(place).or_insert((g, a.rule, a.action));
                    let object_name = if first == (g, a.rule, a.action) {
                        id.to_string()
                    } else {
                        // The plan index only where two plans run the
                        // same action into the same place.
                        let base = format!("{id}-{}-{}:{kind}:{target}", a.rule, a.action);
                        if names_used.insert(base) {
                            format!("{id}-{}-{}", a.rule, a.action)
                        } else {
                            format!("{id}-{}-{}-{g}", a.rule, a.action)
                        }
                    };
                    if let Some(previous) = done.get(&key) {
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
                            Err(Failure::Retry(e)) => {
                                // Jobs of the actions before it are in the
                                // journal: they need not wait for this one.
                                ctx.outbound
                                    .release(id.as_str())
                                    .await
                                    .map_err(Deferred::Io)?;
                                return Err(Deferred::Retry(e));
                            }
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
            outcomes.insert((g, a.rule, a.action), outcome);
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
                    outcome: outcomes
                        .get(&(group_of.get(outcome.recipient.as_str()).copied().unwrap_or(0), a.rule, a.action))
                        .cloned()
                        .unwrap_or_else(|| "not reached".into()),
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
        authentication: auth.as_ref().map(|a| a.details.clone()).unwrap_or_default(),
        addon_results: {
            let mut r: Vec<String> = verdicts
                .analysis
                .iter()
                .map(|((arn, field), value)| format!("{arn} {field} = {}", value.as_text()))
                .collect();
            r.sort();
            r
        },
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

/// A short name for a group of recipients (FNV-1a of the sorted list).
pub(crate) fn recipients_tag(recipients: &[String]) -> String {
    let mut sorted: Vec<&str> = recipients.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for r in sorted {
        for b in r.bytes().chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

fn rule_verdict(v: postern_auth::Verdict) -> RuleVerdict {
    match v {
        postern_auth::Verdict::Pass => RuleVerdict::Pass,
        postern_auth::Verdict::Fail => RuleVerdict::Fail,
        postern_auth::Verdict::Gray => RuleVerdict::Gray,
        postern_auth::Verdict::ProcessingFailed => RuleVerdict::ProcessingFailed,
    }
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
