//! A rule set compiled once, evaluated for each envelope recipient.
//!
//! For each recipient, rules run in order; a rule matches when every
//! condition holds (conditions are AND-ed, checked left to right) and no
//! Unless condition holds; its actions join the recipient's plan. A Drop
//! action ends evaluation for that recipient: later actions and rules are
//! not planned. Conditions that cannot differ between recipients are
//! evaluated once per message.

use crate::address::normalize;
use crate::compile::{Catalog, Compiler, UnknownReference};
use crate::condition::{Cond, Hit, Input, StringIndex, eval};
use crate::envelope::Envelope;
use crate::facts::{Attr, Facts, Needs};
use crate::trace::{
    ActionRef, Evaluation, EvaluationError, Evidence, MatchedRule, RecipientOutcome,
};
use crate::verdicts::Verdicts;
use mail_parser::Message;
use postern_model::{Rule, RuleAction};

#[derive(Debug)]
struct CompiledRule {
    conditions: Vec<u32>,
    unless: Vec<u32>,
    /// Actions planned when the rule matches: up to and including a Drop.
    planned: usize,
    drops: bool,
}

#[derive(Debug)]
pub struct CompiledRuleSet {
    pub id: String,
    pub name: String,
    pub arn: String,
    rules: Vec<Rule>,
    compiled: Vec<CompiledRule>,
    conds: Vec<Cond>,
    strings: StringIndex,
    needs: Needs,
    analysis_keys: Vec<(String, String)>,
}

impl CompiledRuleSet {
    pub fn compile(
        id: &str,
        name: &str,
        arn: &str,
        rules: &[Rule],
        catalog: &dyn Catalog,
    ) -> Result<CompiledRuleSet, UnknownReference> {
        let mut compiler = Compiler::new(catalog);
        let mut conds = Vec::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            let mut part = |list: &Option<Vec<postern_model::RuleCondition>>| -> Result<Vec<u32>, UnknownReference> {
                let mut ids = Vec::new();
                for c in list.iter().flatten() {
                    conds.push(compiler.rule_condition(c)?);
                    ids.push((conds.len() - 1) as u32);
                }
                Ok(ids)
            };
            let conditions = part(&rule.conditions)?;
            let unless = part(&rule.unless)?;
            let drop_at = rule
                .actions
                .iter()
                .position(|a| matches!(a, RuleAction::Drop(_)));
            compiled.push(CompiledRule {
                conditions,
                unless,
                planned: drop_at.map_or(rule.actions.len(), |i| i + 1),
                drops: drop_at.is_some(),
            });
        }
        Ok(CompiledRuleSet {
            id: id.into(),
            name: name.into(),
            arn: arn.into(),
            rules: rules.to_vec(),
            compiled,
            conds,
            strings: compiler.strings.build(),
            needs: compiler.needs,
            analysis_keys: compiler.analysis_keys,
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule's Name, or its position (`Rules[3]`) when it has none.
    pub fn rule_label(&self, index: usize) -> String {
        self.rules[index]
            .name
            .clone()
            .unwrap_or_else(|| format!("Rules[{index}]"))
    }

    pub fn action(&self, a: ActionRef) -> &RuleAction {
        &self.rules[a.rule].actions[a.action]
    }

    /// The add-on results this rule set reads, as (instance ARN, field).
    pub fn analysis_needed(&self) -> &[(String, String)] {
        &self.analysis_keys
    }

    /// Evaluates the rule set for every envelope recipient. `size` is the
    /// message size in bytes as received.
    pub fn evaluate(
        &self,
        envelope: &Envelope,
        message: &Message,
        size: u64,
        verdicts: &Verdicts,
    ) -> Result<Evaluation, EvaluationError> {
        let facts = Facts::extract(envelope, message, size, &self.needs);
        let analysis = crate::condition::analysis_values(&self.analysis_keys, verdicts);
        let mut hits: Vec<Option<Hit>> = vec![None; self.strings.hits];
        self.strings.scan(&mut hits, false, |attr: Attr| {
            use crate::condition::Candidates;
            match attr {
                Attr::Analysis(key) => crate::condition::analysis_candidates(&analysis, key),
                Attr::ClientCertificate(a) => Candidates::Owned(
                    envelope
                        .client_certificate
                        .iter()
                        .flat_map(|c| c.values(a))
                        .map(str::to_lowercase)
                        .collect(),
                ),
                other => Candidates::Borrowed(facts.candidates(other)),
            }
        });
        let message_hits = hits.clone();
        // Per message cache of conditions that do not depend on the recipient.
        let mut cache: Vec<u8> = vec![0; self.conds.len()];
        let mut recipients = Vec::with_capacity(envelope.recipients.len());
        for recipient in &envelope.recipients {
            let normalized = normalize(recipient);
            hits.copy_from_slice(&message_hits);
            let one = [normalized.clone()];
            self.strings.scan(&mut hits, true, |attr| match attr {
                Attr::Recipient => crate::condition::Candidates::Borrowed(&one),
                _ => crate::condition::Candidates::Borrowed(&[]),
            });
            let input = Input {
                facts: &facts,
                sender_ip: envelope.sender_ip,
                tls: envelope.tls,
                tls_wrapped: envelope.tls_wrapped,
                verdicts,
                analysis: &analysis,
                analysis_keys: &self.analysis_keys,
                recipient: &normalized,
                hits: &hits,
            };
            recipients.push(self.evaluate_recipient(recipient, &input, &mut cache)?);
        }
        Ok(Evaluation { recipients, facts })
    }

    fn holds(
        &self,
        id: u32,
        input: &Input,
        cache: &mut [u8],
    ) -> Result<bool, crate::verdicts::Missing> {
        let cond = &self.conds[id as usize];
        if cond.per_recipient() {
            return eval(cond, input);
        }
        match cache[id as usize] {
            1 => Ok(false),
            2 => Ok(true),
            _ => {
                let value = eval(cond, input)?;
                cache[id as usize] = 1 + u8::from(value);
                Ok(value)
            }
        }
    }

    fn evaluate_recipient(
        &self,
        recipient: &str,
        input: &Input,
        cache: &mut [u8],
    ) -> Result<RecipientOutcome, EvaluationError> {
        let mut outcome = RecipientOutcome {
            recipient: recipient.to_string(),
            matched: Vec::new(),
            actions: Vec::new(),
            dropped: false,
        };
        'rules: for (r, rule) in self.compiled.iter().enumerate() {
            for (i, &id) in rule.conditions.iter().enumerate() {
                let held = self
                    .holds(id, input, cache)
                    .map_err(|missing| EvaluationError {
                        rule: r,
                        part: "Conditions",
                        condition: i,
                        missing,
                    })?;
                if !held {
                    continue 'rules;
                }
            }
            for (i, &id) in rule.unless.iter().enumerate() {
                let held = self
                    .holds(id, input, cache)
                    .map_err(|missing| EvaluationError {
                        rule: r,
                        part: "Unless",
                        condition: i,
                        missing,
                    })?;
                if held {
                    continue 'rules;
                }
            }
            let evidence = rule
                .conditions
                .iter()
                .enumerate()
                .map(|(i, &id)| Evidence {
                    condition: i,
                    hit: match &self.conds[id as usize] {
                        Cond::Str {
                            hit, negate: false, ..
                        } => input.hits[*hit as usize],
                        _ => None,
                    },
                })
                .collect();
            outcome.matched.push(MatchedRule { rule: r, evidence });
            outcome
                .actions
                .extend((0..rule.planned).map(|action| ActionRef { rule: r, action }));
            if rule.drops {
                outcome.dropped = true;
                break;
            }
        }
        Ok(outcome)
    }
}
