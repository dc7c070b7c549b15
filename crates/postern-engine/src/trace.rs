//! What an evaluation decided and why: matched rules with the evidence of
//! each condition, the ordered action plan per recipient, and text for
//! people (the test runner's diffs, the message trace).

use crate::condition::Hit;
use crate::facts::Facts;
use crate::verdicts::Missing;
use postern_model::*;

/// One action of one rule, in the order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionRef {
    pub rule: usize,
    pub action: usize,
}

/// Why a condition held: which value matched which candidate, for strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    pub condition: usize,
    pub hit: Option<Hit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    pub rule: usize,
    /// One per condition, in order; empty when the rule has no conditions.
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    /// The envelope recipient as received.
    pub recipient: String,
    pub matched: Vec<MatchedRule>,
    /// The action plan: actions of matched rules in order, ending at a Drop.
    pub actions: Vec<ActionRef>,
    /// Evaluation ended with a Drop action.
    pub dropped: bool,
}

/// A rule set's decision for one message.
#[derive(Debug)]
pub struct Evaluation {
    pub recipients: Vec<RecipientOutcome>,
    pub(crate) facts: Facts,
}

/// The evaluation needed an input it was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationError {
    pub rule: usize,
    /// `Conditions` or `Unless`.
    pub part: &'static str,
    pub condition: usize,
    pub missing: Missing,
}

/// A condition as a person reads it.
pub fn describe_rule_condition(condition: &RuleCondition) -> String {
    let values = |v: &[String]| {
        if v.len() == 1 {
            format!("{:?}", v[0])
        } else {
            format!("{v:?}")
        }
    };
    match condition {
        RuleCondition::StringExpression(e) => {
            let attr = match &e.evaluate {
                RuleStringToEvaluate::Attribute(a) => a.to_string(),
                RuleStringToEvaluate::MimeHeaderAttribute(h) => h.clone(),
                RuleStringToEvaluate::Analysis(a) => format!("{}:{}", a.analyzer, a.result_field),
                RuleStringToEvaluate::ClientCertificateAttribute(a) => {
                    format!("client certificate {a}")
                }
            };
            format!("{attr} {} {}", e.operator, values(&e.values))
        }
        RuleCondition::NumberExpression(e) => format!("MESSAGE_SIZE {} {}", e.operator, e.value),
        RuleCondition::IpExpression(e) => format!("SOURCE_IP {} {}", e.operator, values(&e.values)),
        RuleCondition::BooleanExpression(e) => match &e.evaluate {
            RuleBooleanToEvaluate::Attribute(a) => format!("{a} {}", e.operator),
            RuleBooleanToEvaluate::Analysis(a) => {
                format!("{}:{} {}", a.analyzer, a.result_field, e.operator)
            }
            RuleBooleanToEvaluate::IsInAddressList(l) => {
                format!(
                    "{} in address list {} {}",
                    l.attribute,
                    l.address_lists.join(","),
                    e.operator
                )
            }
        },
        RuleCondition::VerdictExpression(e) => {
            let what = match &e.evaluate {
                RuleVerdictToEvaluate::Attribute(a) => a.to_string(),
                RuleVerdictToEvaluate::Analysis(a) => format!("{}:{}", a.analyzer, a.result_field),
            };
            let v: Vec<&str> = e.values.iter().map(|v| v.as_str()).collect();
            format!("{what} {} {}", e.operator, v.join("|"))
        }
        RuleCondition::DmarcExpression(e) => {
            let v: Vec<&str> = e.values.iter().map(|v| v.as_str()).collect();
            format!("DMARC {} {}", e.operator, v.join("|"))
        }
    }
}

impl Evaluation {
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub fn recipient(&self, recipient: &str) -> Option<&RecipientOutcome> {
        self.recipients.iter().find(|r| r.recipient == recipient)
    }
}

/// The reason a rule matched, one line per condition.
pub fn explain(
    rule: &Rule,
    matched: &MatchedRule,
    outcome: &RecipientOutcome,
    evaluation: &Evaluation,
) -> Vec<String> {
    let conditions = rule.conditions.as_deref().unwrap_or_default();
    let mut lines = Vec::new();
    if conditions.is_empty() {
        lines.push("no conditions: matches every message".to_string());
    }
    for e in &matched.evidence {
        let Some(condition) = conditions.get(e.condition) else {
            continue;
        };
        let mut line = describe_rule_condition(condition);
        if let (Some(hit), RuleCondition::StringExpression(s)) = (e.hit, condition) {
            let found = match &s.evaluate {
                RuleStringToEvaluate::Attribute(RuleStringEmailAttribute::Recipient) => {
                    Some(outcome.recipient.to_lowercase())
                }
                RuleStringToEvaluate::Attribute(a) => {
                    let attr = crate::facts::Attr::of(*a);
                    evaluation
                        .facts
                        .candidates(attr)
                        .get(hit.candidate as usize)
                        .cloned()
                }
                _ => None,
            };
            if let Some(found) = found {
                line += &format!(" (matched {found:?})");
            }
        }
        lines.push(line);
    }
    if rule.unless.as_ref().is_some_and(|u| !u.is_empty()) {
        lines.push("and none of its Unless conditions matched".to_string());
    }
    lines
}

/// The kind of an action as the model names it (`Archive`, `Drop`, ...).
pub fn action_kind(action: &RuleAction) -> &'static str {
    action.member_name()
}
