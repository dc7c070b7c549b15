//! Helpers shared by the engine's integration tests: configs from YAML text,
//! messages from text, and evaluation results as rule names.
#![allow(dead_code)]

use postern_config::{ValidatedConfig, parse_config};
use postern_engine::{
    AnalysisValue, CompiledRuleSet, Engine, Envelope, EvaluationError, PolicyDecision, TlsProtocol,
    Verdicts, message_parser,
};
use postern_model::ResourceKind;
use std::net::IpAddr;

/// Resources every test config declares: two address lists and one add-on
/// instance (known by its subscription's AddonName, `SCANNER`).
pub const PRELUDE: &str = r#"Server:
  Quotas: {RulesPerRuleSet: 1000}
AddressLists:
  - AddressListName: vips
    Members:
      - ceo@corp.example
      - "*@partner.example"
      - "*@XN--BCHER-KVA.example"
      - Boss+Mail@Corp.Example
  - AddressListName: others
    Members: [someone@else.example, "*@elsewhere.example"]
AddonSubscriptions:
  - AddonName: SCANNER
AddonInstances:
  - AddonSubscriptionId: SCANNER
"#;

/// The name rule and policy conditions use for the add-on instance.
pub const SCANNER: &str = "SCANNER";

/// Indents every line of `text` by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses a config (the prelude followed by `rest`) or panics with every error.
pub fn config(rest: &str) -> ValidatedConfig {
    let text = format!("{PRELUDE}{rest}");
    parse_config("t.yaml", &text, &|_| Err("none".into()))
        .unwrap_or_else(|e| panic!("config does not load:\n{e}\n--- config ---\n{text}"))
}

/// A config and its compiled engine.
pub struct Fixture {
    pub config: ValidatedConfig,
    pub engine: Engine,
}

impl Fixture {
    pub fn new(rest: &str) -> Fixture {
        let config = config(rest);
        let engine = Engine::build(&config).expect("engine builds");
        Fixture { config, engine }
    }

    /// A config with one rule set `t` made of `rules` (a YAML list of Rule).
    pub fn rules(rules: &str) -> Fixture {
        Fixture::new(&format!(
            "RuleSets:\n  - RuleSetName: t\n    Rules:\n{}\n",
            indent(rules, 6)
        ))
    }

    pub fn rule_set(&self) -> &CompiledRuleSet {
        &self.engine.rule_sets[0]
    }

    /// The canonical ARN of the add-on instance a name refers to.
    pub fn addon_arn(&self, reference: &str) -> String {
        self.config
            .resolve(ResourceKind::AddonInstance, reference)
            .unwrap_or_else(|| panic!("no add-on instance {reference}"))
            .arn
            .clone()
    }

    /// `verdicts` with add-on results keyed by name (`SCANNER`) re-keyed by
    /// the instance ARN, as the pipeline gives them.
    pub fn verdicts(&self, verdicts: &Verdicts) -> Verdicts {
        let mut out = verdicts.clone();
        out.analysis = verdicts
            .analysis
            .iter()
            .map(|((a, f), v)| ((self.addon_arn(a), f.clone()), v.clone()))
            .collect();
        out
    }

    /// Matched rule labels per envelope recipient, or the evaluation error.
    pub fn try_matched(
        &self,
        input: &Input,
    ) -> Result<Vec<(String, Vec<String>)>, EvaluationError> {
        let rule_set = self.rule_set();
        let message = input.message();
        let evaluation = rule_set.evaluate(
            &input.envelope,
            &message,
            input.size(),
            &self.verdicts(&input.verdicts),
        )?;
        Ok(evaluation
            .recipients
            .iter()
            .map(|r| {
                (
                    r.recipient.clone(),
                    r.matched
                        .iter()
                        .map(|m| rule_set.rule_label(m.rule))
                        .collect(),
                )
            })
            .collect())
    }

    /// Matched rule labels per envelope recipient.
    pub fn matched(&self, input: &Input) -> Vec<(String, Vec<String>)> {
        self.try_matched(input)
            .unwrap_or_else(|e| panic!("evaluation failed: {e:?}"))
    }

    /// Matched rule labels of the only (or first) recipient.
    pub fn matched_first(&self, input: &Input) -> Vec<String> {
        self.matched(input).swap_remove(0).1
    }
}

/// Everything an evaluation reads: envelope, message text, size, verdicts.
#[derive(Clone)]
pub struct Input {
    pub envelope: Envelope,
    /// The message with CRLF line endings.
    pub raw: Vec<u8>,
    /// The size passed to the engine; the raw length when `None`.
    pub size: Option<u64>,
    /// Add-on results keyed by add-on name; see [`Fixture::verdicts`].
    pub verdicts: Verdicts,
}

/// `text` with every line ending turned into CRLF.
pub fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

impl Input {
    /// A plaintext session from 192.0.2.1 with `message` (LF or CRLF).
    pub fn new(mail_from: &str, recipients: &[&str], message: &str) -> Input {
        Input {
            envelope: Envelope::new(ip("192.0.2.1"), mail_from, recipients),
            raw: crlf(message),
            size: None,
            verdicts: Verdicts::default(),
        }
    }

    pub fn message(&self) -> mail_parser::Message<'_> {
        message_parser()
            .parse(&self.raw)
            .expect("the test message parses")
    }

    pub fn size(&self) -> u64 {
        self.size.unwrap_or(self.raw.len() as u64)
    }

    pub fn sender_ip(mut self, text: &str) -> Input {
        self.envelope.sender_ip = ip(text);
        self
    }

    pub fn helo(mut self, helo: &str) -> Input {
        self.envelope.helo = Some(helo.to_string());
        self
    }

    pub fn tls(mut self, tls: Option<TlsProtocol>) -> Input {
        self.envelope.tls = tls;
        self
    }

    pub fn with_size(mut self, size: u64) -> Input {
        self.size = Some(size);
        self
    }

    pub fn analysis(mut self, field: &str, value: AnalysisValue) -> Input {
        self.verdicts
            .analysis
            .insert((SCANNER.to_string(), field.to_string()), value);
        self
    }
}

/// Compiles one rule per case (`Name: c{i}`, the case's condition as its
/// only condition), evaluates them together for the first recipient of
/// `input`, and checks which matched. Every mismatch is reported at once.
pub fn check_rule_conditions(input: &Input, cases: &[(String, bool)]) {
    let rules: String = cases
        .iter()
        .enumerate()
        .map(|(i, (condition, _))| {
            format!(
                "- Name: c{i}\n  Conditions:\n    - {condition}\n  Actions:\n    - AddHeader: {{HeaderName: X-Case, HeaderValue: c{i}}}\n"
            )
        })
        .collect();
    let fixture = Fixture::rules(&rules);
    let matched = fixture.matched_first(input);
    let failures: Vec<String> = cases
        .iter()
        .enumerate()
        .filter(|(i, (_, expect))| matched.contains(&format!("c{i}")) != *expect)
        .map(|(i, (condition, expect))| {
            let wanted = if *expect { "match" } else { "no match" };
            format!("  c{i}: expected {wanted}: {condition}")
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} conditions gave the wrong result:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A config with one traffic policy per case: DefaultAction DENY and one
/// ALLOW statement with the case's condition, so ALLOW means "matched".
/// Checks each policy's decision for `recipient`.
pub fn check_policy_conditions(
    envelope: &Envelope,
    recipient: &str,
    verdicts: &Verdicts,
    cases: &[(String, bool)],
) {
    let policies: String = cases
        .iter()
        .enumerate()
        .map(|(i, (condition, _))| {
            format!(
                "- TrafficPolicyName: policy-{i}\n  DefaultAction: DENY\n  PolicyStatements:\n    - Action: ALLOW\n      Conditions:\n        - {condition}\n"
            )
        })
        .collect();
    let fixture = Fixture::new(&format!("TrafficPolicies:\n{}\n", indent(&policies, 2)));
    let verdicts = fixture.verdicts(verdicts);
    let failures: Vec<String> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, (condition, expect))| {
            let policy = &fixture.engine.policies[i];
            assert_eq!(policy.name, format!("policy-{i}"));
            let decision = policy.evaluate(envelope, recipient, None, &verdicts);
            let matched = matches!(
                decision,
                Ok(PolicyDecision {
                    action: postern_model::AcceptAction::Allow,
                    ..
                })
            );
            (matched != *expect || decision.is_err()).then(|| {
                let wanted = if *expect { "match" } else { "no match" };
                format!("  policy-{i}: expected {wanted}, got {decision:?}: {condition}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} policy conditions gave the wrong result:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Values as a YAML flow list body: `"a", "b"`.
pub fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A StringExpression condition (rule or policy) in YAML flow syntax.
pub fn string_cond(evaluate: &str, operator: &str, values: &[&str]) -> String {
    format!(
        "StringExpression: {{Evaluate: {evaluate}, Operator: {operator}, Values: [{}]}}",
        quoted(values)
    )
}

/// Rows `(operator, values, expected)` turned into cases by `make`.
pub fn rows(
    make: impl Fn(&str, &[&str]) -> String,
    rows: &[(&str, &[&str], bool)],
) -> Vec<(String, bool)> {
    rows.iter()
        .map(|(op, values, expect)| (make(op, values), *expect))
        .collect()
}
