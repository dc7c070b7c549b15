//! Runs a prepared case through the traffic policy and the rule set, and
//! compares what happened with what the case expects.

use super::case::Prepared;
use postern_engine::trace::{action_kind, describe_rule_condition, explain};
use postern_engine::{Engine, PolicyReason};
use postern_model::{AcceptAction, ExpectedAction, RuleAction, RuleTestExpectation};
use std::collections::BTreeMap;

/// What happened to one envelope recipient.
#[derive(Debug)]
pub struct RecipientActual {
    pub recipient: String,
    pub traffic: AcceptAction,
    pub rules: Vec<String>,
    pub actions: Vec<RuleAction>,
    pub dropped: bool,
}

#[derive(Debug)]
pub struct Actual {
    pub recipients: Vec<RecipientActual>,
    /// Rules matched for any recipient, in rule-set order.
    pub rules: Vec<String>,
    /// Actions of those rules planned for any recipient, in order.
    pub actions: Vec<RuleAction>,
    pub headers_added: BTreeMap<String, String>,
    /// Lines explaining each decision.
    pub trace: Vec<String>,
}

pub fn run(engine: &Engine, case: &Prepared) -> Result<Actual, String> {
    let binding = &engine.ingress_points[case.ingress];
    let mut trace = Vec::new();
    let mut allowed = Vec::new();
    let mut recipients = Vec::new();
    for recipient in &case.envelope.recipients {
        let decision = binding
            .policy
            .evaluate(&case.envelope, recipient, Some(case.size), &case.verdicts)
            .map_err(|e| {
                format!(
                    "traffic policy {}: PolicyStatements[{}].Conditions[{}] needs {}, which the case does not give (add it under Verdicts)",
                    binding.policy.name, e.statement, e.condition, e.missing
                )
            })?;
        let why = match decision.reason {
            PolicyReason::TooLarge { size, max } => {
                format!("{size} bytes is over MaxMessageSizeBytes {max}")
            }
            PolicyReason::Statement(i) => format!("PolicyStatements[{i}] matched"),
            PolicyReason::Default => "no statement matched: DefaultAction".into(),
        };
        trace.push(format!(
            "{recipient}: traffic policy {}: {} ({why})",
            binding.policy.name, decision.action
        ));
        if decision.action == AcceptAction::Allow {
            allowed.push(recipient.clone());
        }
        recipients.push(RecipientActual {
            recipient: recipient.clone(),
            traffic: decision.action,
            rules: Vec::new(),
            actions: Vec::new(),
            dropped: false,
        });
    }

    let rule_set = &binding.rule_set;
    let mut matched_rules = std::collections::BTreeSet::new();
    let mut planned = std::collections::BTreeSet::new();
    if !allowed.is_empty() {
        let parsed = postern_engine::message_parser()
            .parse(&case.message[..])
            .unwrap_or_default();
        let mut envelope = case.envelope.clone();
        envelope.recipients = allowed;
        let evaluation = rule_set
            .evaluate(&envelope, &parsed, case.size, &case.verdicts)
            .map_err(|e| {
                let rule = &rule_set.rules()[e.rule];
                let list = if e.part == "Unless" { &rule.unless } else { &rule.conditions };
                let condition = list
                    .as_ref()
                    .and_then(|l| l.get(e.condition))
                    .map(describe_rule_condition)
                    .unwrap_or_default();
                format!(
                    "rule {:?} (Rules[{}]) reached {}[{}] ({condition}), which needs {}: the case does not give it (add it under Verdicts)",
                    rule_set.rule_label(e.rule),
                    e.rule,
                    e.part,
                    e.condition,
                    e.missing
                )
            })?;
        // The rule set evaluated the allowed recipients, in envelope order.
        let allowed_slots = recipients
            .iter_mut()
            .filter(|r| r.traffic == AcceptAction::Allow);
        for (outcome, actual) in evaluation.recipients.iter().zip(allowed_slots) {
            for m in &outcome.matched {
                matched_rules.insert(m.rule);
                actual.rules.push(rule_set.rule_label(m.rule));
                let reasons = explain(&rule_set.rules()[m.rule], m, outcome, &evaluation);
                trace.push(format!(
                    "{}: rule {:?} matched: {}",
                    outcome.recipient,
                    rule_set.rule_label(m.rule),
                    reasons.join("; ")
                ));
            }
            for a in &outcome.actions {
                planned.insert((a.rule, a.action));
                actual.actions.push(rule_set.action(*a).clone());
            }
            actual.dropped = outcome.dropped;
            if outcome.matched.is_empty() {
                trace.push(format!("{}: no rule matched", outcome.recipient));
            }
            if outcome.dropped {
                trace.push(format!("{}: dropped", outcome.recipient));
            }
        }
    }
    let rules = matched_rules
        .iter()
        .map(|r| rule_set.rule_label(*r))
        .collect();
    let actions: Vec<RuleAction> = planned
        .iter()
        .map(|(r, a)| rule_set.rules()[*r].actions[*a].clone())
        .collect();
    let mut headers_added = BTreeMap::new();
    for action in &actions {
        if let RuleAction::AddHeader(h) = action {
            headers_added.insert(h.header_name.clone(), h.header_value.clone());
        }
    }
    Ok(Actual {
        recipients,
        rules,
        actions,
        headers_added,
        trace,
    })
}

pub fn compare(expect: Option<&RuleTestExpectation>, actual: &Actual) -> Vec<String> {
    let Some(expect) = expect else {
        return Vec::new();
    };
    let mut failures = Vec::new();
    if let Some(traffic) = expect.traffic {
        let decisions: Vec<AcceptAction> = actual.recipients.iter().map(|r| r.traffic).collect();
        if decisions.iter().any(|d| *d != traffic) {
            let shown: Vec<String> = actual
                .recipients
                .iter()
                .map(|r| format!("{}: {}", r.recipient, r.traffic))
                .collect();
            failures.push(diff("Traffic", &traffic.to_string(), &shown.join(", ")));
        }
    }
    if let Some(rules) = &expect.rules
        && *rules != actual.rules
    {
        failures.push(diff("Rules", &list(rules), &list(&actual.rules)));
    }
    if let Some(actions) = &expect.actions
        && !actions_match(actions, &actual.actions)
    {
        failures.push(diff(
            "Actions",
            &show_expected(actions),
            &show_actual(&actual.actions),
        ));
    }
    if let Some(dropped) = expect.dropped {
        let evaluated: Vec<&RecipientActual> = actual
            .recipients
            .iter()
            .filter(|r| r.traffic == AcceptAction::Allow)
            .collect();
        let all = !evaluated.is_empty() && evaluated.iter().all(|r| r.dropped);
        if all != dropped {
            failures.push(diff("Dropped", &dropped.to_string(), &all.to_string()));
        }
    }
    if let Some(headers) = &expect.headers_added {
        let lower = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        };
        if lower(headers) != lower(&actual.headers_added) {
            failures.push(diff(
                "HeadersAdded",
                &format!("{headers:?}"),
                &format!("{:?}", actual.headers_added),
            ));
        }
    }
    for (recipient, e) in expect.recipients.iter().flatten() {
        let wanted = postern_engine::normalize_address(recipient);
        let Some(r) = actual
            .recipients
            .iter()
            .find(|r| postern_engine::normalize_address(&r.recipient) == wanted)
        else {
            failures.push(format!(
                "Recipients: {recipient} is not an envelope recipient of the case"
            ));
            continue;
        };
        let label = |what: &str| format!("Recipients[{recipient}].{what}");
        if let Some(traffic) = e.traffic
            && traffic != r.traffic
        {
            failures.push(diff(
                &label("Traffic"),
                &traffic.to_string(),
                &r.traffic.to_string(),
            ));
        }
        if let Some(rules) = &e.rules
            && *rules != r.rules
        {
            failures.push(diff(&label("Rules"), &list(rules), &list(&r.rules)));
        }
        if let Some(actions) = &e.actions
            && !actions_match(actions, &r.actions)
        {
            failures.push(diff(
                &label("Actions"),
                &show_expected(actions),
                &show_actual(&r.actions),
            ));
        }
        if let Some(dropped) = e.dropped
            && dropped != r.dropped
        {
            failures.push(diff(
                &label("Dropped"),
                &dropped.to_string(),
                &r.dropped.to_string(),
            ));
        }
    }
    failures
}

fn actions_match(expected: &[ExpectedAction], actual: &[RuleAction]) -> bool {
    expected.len() == actual.len()
        && expected.iter().zip(actual).all(|(e, a)| match e {
            ExpectedAction::RuleActionKind(kind) => kind.as_str() == action_kind(a),
            ExpectedAction::RuleAction(full) => full == a,
        })
}

fn show_expected(actions: &[ExpectedAction]) -> String {
    let items: Vec<String> = actions
        .iter()
        .map(|a| match a {
            ExpectedAction::RuleActionKind(kind) => kind.to_string(),
            ExpectedAction::RuleAction(full) => serde_json::to_string(full).unwrap_or_default(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn show_actual(actions: &[RuleAction]) -> String {
    let items: Vec<String> = actions
        .iter()
        .map(|a| match a {
            RuleAction::Drop(_) => "Drop".to_string(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn diff(what: &str, expected: &str, actual: &str) -> String {
    let pad = " ".repeat(what.len() + 2);
    format!("{what}: expected {expected}\n{pad}actual   {actual}")
}
