//! A traffic policy compiled once, evaluated at RCPT time for each recipient.
//!
//! As AWS documents: a message larger than MaxMessageSizeBytes is refused
//! before any statement; a statement matches when all its conditions hold;
//! any matching DENY statement denies, whatever the order of statements;
//! otherwise any matching ALLOW statement allows; otherwise DefaultAction.

use crate::address::normalize;
use crate::compile::{Catalog, Compiler, UnknownReference};
use crate::condition::{Candidates, Cond, Hit, Input, StringIndex, eval};
use crate::envelope::Envelope;
use crate::facts::{Attr, Facts};
use crate::verdicts::{Missing, Verdicts};
use postern_model::{AcceptAction, PolicyStatement};

#[derive(Debug)]
pub struct CompiledPolicy {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub default_action: AcceptAction,
    pub max_message_size: Option<u64>,
    statements: Vec<(AcceptAction, Vec<Cond>)>,
    strings: StringIndex,
    analysis_keys: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyReason {
    /// The message (or its declared SIZE) exceeds MaxMessageSizeBytes.
    TooLarge { size: u64, max: u64 },
    /// The statement at this index of PolicyStatements decided.
    Statement(usize),
    /// No statement matched.
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyDecision {
    pub action: AcceptAction,
    pub reason: PolicyReason,
}

/// A statement reached an input it was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub statement: usize,
    pub condition: usize,
    pub missing: Missing,
}

impl CompiledPolicy {
    pub fn compile(
        id: &str,
        name: &str,
        arn: &str,
        default_action: AcceptAction,
        max_message_size: Option<i32>,
        statements: &[PolicyStatement],
        catalog: &dyn Catalog,
    ) -> Result<CompiledPolicy, UnknownReference> {
        let mut compiler = Compiler::new(catalog);
        let mut compiled = Vec::with_capacity(statements.len());
        for statement in statements {
            let conds = statement
                .conditions
                .iter()
                .map(|c| compiler.policy_condition(c))
                .collect::<Result<Vec<_>, _>>()?;
            compiled.push((statement.action, conds));
        }
        Ok(CompiledPolicy {
            id: id.into(),
            name: name.into(),
            arn: arn.into(),
            default_action,
            max_message_size: max_message_size.map(|m| m as u64),
            statements: compiled,
            strings: compiler.strings.build(),
            analysis_keys: compiler.analysis_keys,
        })
    }

    /// The add-on results this policy reads, as (instance ARN, field).
    pub fn analysis_needed(&self) -> &[(String, String)] {
        &self.analysis_keys
    }

    /// Decides one recipient. `size` is the declared or actual size, if known.
    pub fn evaluate(
        &self,
        envelope: &Envelope,
        recipient: &str,
        size: Option<u64>,
        verdicts: &Verdicts,
    ) -> Result<PolicyDecision, PolicyError> {
        if let (Some(size), Some(max)) = (size, self.max_message_size)
            && size > max
        {
            return Ok(PolicyDecision {
                action: AcceptAction::Deny,
                reason: PolicyReason::TooLarge { size, max },
            });
        }
        let recipient = normalize(recipient);
        let analysis = crate::condition::analysis_values(&self.analysis_keys, verdicts);
        let mut hits: Vec<Option<Hit>> = vec![None; self.strings.hits];
        let one = [recipient.clone()];
        for per_recipient in [false, true] {
            self.strings
                .scan(&mut hits, per_recipient, |attr| match attr {
                    Attr::Recipient => Candidates::Borrowed(&one),
                    Attr::Analysis(key) => crate::condition::analysis_candidates(&analysis, key),
                    _ => Candidates::Borrowed(&[]),
                });
        }
        let facts = Facts::default();
        let input = Input {
            facts: &facts,
            sender_ip: envelope.sender_ip,
            tls: envelope.tls,
            tls_wrapped: envelope.tls_wrapped,
            verdicts,
            analysis: &analysis,
            analysis_keys: &self.analysis_keys,
            recipient: &recipient,
            hits: &hits,
        };
        for wanted in [AcceptAction::Deny, AcceptAction::Allow] {
            for (s, (action, conds)) in self.statements.iter().enumerate() {
                if *action != wanted {
                    continue;
                }
                let mut all = true;
                for (c, cond) in conds.iter().enumerate() {
                    let held = eval(cond, &input).map_err(|missing| PolicyError {
                        statement: s,
                        condition: c,
                        missing,
                    })?;
                    if !held {
                        all = false;
                        break;
                    }
                }
                if all {
                    return Ok(PolicyDecision {
                        action: wanted,
                        reason: PolicyReason::Statement(s),
                    });
                }
            }
        }
        Ok(PolicyDecision {
            action: self.default_action,
            reason: PolicyReason::Default,
        })
    }
}
