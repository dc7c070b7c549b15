//! Engine benchmarks.
//!
//! - `rule_set/300_rules_3_recipients`: one message with three recipients
//!   through a 300-rule set of mixed conditions, compiled (Postern's engine)
//!   and, as the peer measured in the same run, a direct interpretation of
//!   the same rules (each condition evaluated on its own, as written).
//! - `address_list/1m_members`: one lookup in a 1,000,000-member list, and the
//!   same lookup in a std `HashSet<String>` as the peer.
//!
//! `cargo bench -p postern-engine --bench engine` prints criterion's
//! estimates and then the median ratios.

use criterion::{Criterion, black_box, criterion_group};
use postern_engine::{AddressList, Catalog, CompiledRuleSet, Envelope, Verdicts, message_parser};
use postern_model::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Lists(Arc<AddressList>);

impl Catalog for Lists {
    fn address_list(&self, _: &str) -> Option<Arc<AddressList>> {
        Some(self.0.clone())
    }
    fn analyzer(&self, r: &str) -> Option<String> {
        Some(r.to_string())
    }
}

fn string(
    attr: RuleStringEmailAttribute,
    op: RuleStringOperator,
    values: &[String],
) -> RuleCondition {
    RuleCondition::StringExpression(RuleStringExpression {
        evaluate: RuleStringToEvaluate::Attribute(attr),
        operator: op,
        values: values.to_vec(),
    })
}

fn header(action: usize) -> Vec<RuleAction> {
    vec![RuleAction::AddHeader(AddHeaderAction {
        header_name: "X-Rule".into(),
        header_value: format!("r{action}"),
    })]
}

/// 300 rules of mixed kinds, the shape of a large company's rule set.
fn rules() -> Vec<Rule> {
    use RuleStringEmailAttribute as A;
    use RuleStringOperator as O;
    let mut rules = Vec::new();
    let mut push = |conditions: Vec<RuleCondition>, unless: Vec<RuleCondition>| {
        let i = rules.len();
        rules.push(Rule {
            name: Some(format!("rule-{i}")),
            conditions: Some(conditions),
            unless: (!unless.is_empty()).then_some(unless),
            actions: header(i),
        });
    };
    for i in 0..100 {
        push(
            vec![string(
                A::Subject,
                O::Contains,
                &[format!("project-{i}"), format!("codename{i}")],
            )],
            vec![],
        );
    }
    for i in 0..60 {
        push(
            vec![string(
                A::Recipient,
                O::Equals,
                &[format!("dept{i}@example.com")],
            )],
            vec![],
        );
    }
    for i in 0..40 {
        push(
            vec![string(
                A::From,
                O::EndsWith,
                &[format!("@partner{i}.example")],
            )],
            vec![],
        );
    }
    for i in 0..30 {
        push(
            vec![RuleCondition::IpExpression(RuleIpExpression {
                evaluate: RuleIpToEvaluate::Attribute(RuleIpEmailAttribute::SourceIp),
                operator: RuleIpOperator::CidrMatches,
                values: vec![format!("10.{i}.0.0/16")],
            })],
            vec![],
        );
    }
    for i in 0..30 {
        push(
            vec![RuleCondition::NumberExpression(RuleNumberExpression {
                evaluate: RuleNumberToEvaluate::Attribute(RuleNumberEmailAttribute::MessageSize),
                operator: RuleNumberOperator::GreaterThan,
                value: (100_000 * (i + 1)) as f64,
            })],
            vec![],
        );
    }
    for _ in 0..20 {
        push(
            vec![
                RuleCondition::BooleanExpression(RuleBooleanExpression {
                    evaluate: RuleBooleanToEvaluate::IsInAddressList(RuleIsInAddressList {
                        attribute: RuleAddressListEmailAttribute::Recipient,
                        address_lists: vec!["vip".into()],
                    }),
                    operator: RuleBooleanOperator::IsTrue,
                }),
                RuleCondition::VerdictExpression(RuleVerdictExpression {
                    evaluate: RuleVerdictToEvaluate::Attribute(RuleVerdictAttribute::Spf),
                    operator: RuleVerdictOperator::NotEquals,
                    values: vec![RuleVerdict::Pass],
                }),
            ],
            vec![],
        );
    }
    for i in 0..20 {
        push(
            vec![RuleCondition::StringExpression(RuleStringExpression {
                evaluate: RuleStringToEvaluate::MimeHeaderAttribute("X-Mailer".into()),
                operator: O::StartsWith,
                values: vec![format!("bulkmailer {i}")],
            })],
            vec![RuleCondition::VerdictExpression(RuleVerdictExpression {
                evaluate: RuleVerdictToEvaluate::Attribute(RuleVerdictAttribute::Dkim),
                operator: RuleVerdictOperator::Equals,
                values: vec![RuleVerdict::Pass],
            })],
        );
    }
    assert_eq!(rules.len(), 300);
    rules
}

const MESSAGE: &str = "Received: from mx.partner7.example (mx.partner7.example [10.7.1.2])\r\n\
    by gateway.example.com with ESMTPS id 4F2A1; Tue, 24 Nov 2026 10:00:00 +0000\r\n\
    From: \"Partner Seven\" <billing@partner7.example>\r\n\
    To: dept12@example.com, \"Alice\" <alice@example.com>\r\n\
    Cc: dept40@example.com\r\n\
    Subject: =?UTF-8?Q?Invoice_for_project-42_=E2=80=94_November?=\r\n\
    Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\
    Message-ID: <20261124100000.4F2A1@partner7.example>\r\n\
    X-Mailer: Outlook 16.0\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    \r\n\
    Please find the November invoice attached.\r\n";

/// The peer: every condition evaluated on its own, as written.
mod direct {
    use super::*;

    pub struct Input<'a> {
        pub envelope: &'a Envelope,
        pub message: &'a mail_parser::Message<'a>,
        pub size: u64,
        pub verdicts: &'a Verdicts,
        pub vip: &'a HashSet<String>,
    }

    fn addresses(value: Option<&mail_parser::Address>) -> Vec<String> {
        value
            .map(|a| {
                a.iter()
                    .filter_map(|a| a.address.as_deref().map(str::to_lowercase))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn candidates(attr: RuleStringEmailAttribute, recipient: &str, input: &Input) -> Vec<String> {
        use RuleStringEmailAttribute as A;
        match attr {
            A::Recipient => vec![recipient.to_lowercase()],
            A::MailFrom => vec![input.envelope.mail_from.to_lowercase()],
            A::Helo => input
                .envelope
                .helo
                .iter()
                .map(|h| h.to_lowercase())
                .collect(),
            A::Subject => input
                .message
                .subject()
                .map(str::to_lowercase)
                .into_iter()
                .collect(),
            A::From => addresses(input.message.from()),
            A::Sender => addresses(input.message.sender()),
            A::To => addresses(input.message.to()),
            A::Cc => addresses(input.message.cc()),
        }
    }

    fn holds(c: &RuleCondition, recipient: &str, input: &Input) -> bool {
        match c {
            RuleCondition::StringExpression(e) => {
                let found: Vec<String> = match &e.evaluate {
                    RuleStringToEvaluate::Attribute(a) => candidates(*a, recipient, input),
                    RuleStringToEvaluate::MimeHeaderAttribute(h) => input
                        .message
                        .header(h.as_str())
                        .and_then(|v| v.as_text())
                        .map(str::to_lowercase)
                        .into_iter()
                        .collect(),
                    _ => vec![],
                };
                let any = e.values.iter().any(|v| {
                    let v = v.to_lowercase();
                    found.iter().any(|f| match e.operator {
                        RuleStringOperator::Equals | RuleStringOperator::NotEquals => *f == v,
                        RuleStringOperator::StartsWith => f.starts_with(&v),
                        RuleStringOperator::EndsWith => f.ends_with(&v),
                        RuleStringOperator::Contains => f.contains(&v),
                    })
                });
                any != (e.operator == RuleStringOperator::NotEquals)
            }
            RuleCondition::IpExpression(e) => e
                .values
                .iter()
                .filter_map(|v| v.parse::<ipnet::IpNet>().ok())
                .any(|n| n.contains(&input.envelope.sender_ip)),
            RuleCondition::NumberExpression(e) => input.size as f64 > e.value,
            RuleCondition::BooleanExpression(_) => input.vip.contains(&recipient.to_lowercase()),
            RuleCondition::VerdictExpression(e) => {
                let v = match &e.evaluate {
                    RuleVerdictToEvaluate::Attribute(RuleVerdictAttribute::Spf) => {
                        input.verdicts.spf
                    }
                    _ => input.verdicts.dkim,
                };
                v.is_some_and(|v| e.values.contains(&v))
                    != (e.operator == RuleVerdictOperator::NotEquals)
            }
            RuleCondition::DmarcExpression(_) => false,
        }
    }

    /// Matched rule indices per recipient.
    pub fn evaluate(rules: &[Rule], input: &Input) -> Vec<Vec<usize>> {
        input
            .envelope
            .recipients
            .iter()
            .map(|r| {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, rule)| {
                        rule.conditions.iter().flatten().all(|c| holds(c, r, input))
                            && !rule.unless.iter().flatten().any(|c| holds(c, r, input))
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect()
    }
}

fn envelope() -> Envelope {
    let mut envelope = Envelope::new(
        "10.7.1.2".parse().unwrap(),
        "bounces@partner7.example",
        &["dept12@example.com", "alice@example.com", "ceo@example.com"],
    );
    envelope.helo = Some("mx.partner7.example".into());
    envelope
}

fn verdicts() -> Verdicts {
    Verdicts {
        spf: Some(RuleVerdict::Pass),
        dkim: Some(RuleVerdict::Pass),
        dmarc: Some(RuleDmarcPolicy::None),
        ..Verdicts::default()
    }
}

/// The rule set, message and inputs both benchmarks and the summary use.
struct Fixture {
    rules: Vec<Rule>,
    set: CompiledRuleSet,
    envelope: Envelope,
    verdicts: Verdicts,
    message: mail_parser::Message<'static>,
    size: u64,
    vip: HashSet<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let rules = rules();
        let vip_members = ["ceo@example.com", "cfo@example.com"];
        let catalog = Lists(Arc::new(AddressList::new(vip_members)));
        let set =
            CompiledRuleSet::compile("rs-bench", "bench", "arn:bench", &rules, &catalog).unwrap();
        Fixture {
            rules,
            set,
            envelope: envelope(),
            verdicts: verdicts(),
            message: message_parser().parse(MESSAGE.as_bytes()).unwrap(),
            size: MESSAGE.len() as u64,
            vip: vip_members.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn direct_input(&self) -> direct::Input<'_> {
        direct::Input {
            envelope: &self.envelope,
            message: &self.message,
            size: self.size,
            verdicts: &self.verdicts,
            vip: &self.vip,
        }
    }
}

/// The 1,000,000 members of the address list benchmark.
fn members() -> Vec<String> {
    (0..1_000_000)
        .map(|i| format!("user{i}@corp{}.example", i % 1000))
        .collect()
}

fn bench_rule_set(c: &mut Criterion) {
    let fixture = Fixture::new();
    let Fixture {
        rules,
        set,
        envelope,
        verdicts,
        message,
        size,
        ..
    } = &fixture;
    let (size, input) = (*size, fixture.direct_input());
    // Both evaluate the same rules to the same matches.
    let compiled = set.evaluate(envelope, message, size, verdicts).unwrap();
    let compiled: Vec<Vec<usize>> = compiled
        .recipients
        .iter()
        .map(|r| r.matched.iter().map(|m| m.rule).collect())
        .collect();
    assert_eq!(compiled, direct::evaluate(rules, &input));
    assert!(compiled.iter().all(|m| !m.is_empty()));

    let mut group = c.benchmark_group("rule_set");
    group.bench_function("300_rules_3_recipients/postern", |b| {
        b.iter(|| {
            set.evaluate(black_box(envelope), black_box(message), size, verdicts)
                .unwrap()
        })
    });
    group.bench_function("300_rules_3_recipients/direct", |b| {
        b.iter(|| direct::evaluate(black_box(rules), black_box(&input)))
    });
    group.finish();
}

fn bench_address_list(c: &mut Criterion) {
    let members = members();
    let list = AddressList::new(&members);
    let std_set: HashSet<String> = members.iter().cloned().collect();
    let probes = ["user777777@corp777.example", "nobody@nowhere.example"];
    assert!(list.contains(probes[0]) && !list.contains(probes[1]));
    let mut group = c.benchmark_group("address_list");
    group.bench_function("1m_members/postern", |b| {
        b.iter(|| {
            (
                list.contains(black_box(probes[0])),
                list.contains(black_box(probes[1])),
            )
        })
    });
    group.bench_function("1m_members/std_hashset", |b| {
        b.iter(|| {
            (
                std_set.contains(black_box(probes[0])),
                std_set.contains(black_box(probes[1])),
            )
        })
    });
    group.finish();
}

/// Medians of `runs` timings of `f` repeated `n` times, in nanoseconds per call.
fn median_ns(n: u32, runs: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[runs / 2]
}

/// The summary: medians side by side and their ratios.
fn ratios() {
    let fixture = Fixture::new();
    let Fixture {
        rules,
        set,
        envelope,
        verdicts,
        message,
        size,
        ..
    } = &fixture;
    let (size, input) = (*size, fixture.direct_input());
    let postern = median_ns(2_000, 31, || {
        black_box(set.evaluate(envelope, message, size, verdicts).unwrap());
    });
    let direct = median_ns(200, 31, || {
        black_box(direct::evaluate(rules, &input));
    });
    println!("\nsummary (medians)");
    println!(
        "  rule set, 300 rules x 3 recipients: postern {:.2} us, direct {:.2} us, direct/postern {:.1}x",
        postern / 1000.0,
        direct / 1000.0,
        direct / postern
    );
    let members = members();
    let list = AddressList::new(&members);
    let std_set: HashSet<String> = members.into_iter().collect();
    let probe = "user777777@corp777.example";
    let ours = median_ns(1_000_000, 31, || {
        black_box(list.contains(black_box(probe)));
    });
    let std = median_ns(1_000_000, 31, || {
        black_box(std_set.contains(black_box(probe)));
    });
    println!(
        "  address list, 1,000,000 members: postern {ours:.1} ns, std HashSet {std:.1} ns, std/postern {:.2}x",
        std / ours
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_rule_set, bench_address_list
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
