//! Arbitrary bytes as a message (and the first bytes as envelope choices)
//! through a rule set that uses every condition kind: no panic, one outcome
//! per recipient, and a Drop always ends the plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_engine::{Engine, Envelope, TlsProtocol, Verdicts, message_parser};
use postern_model::{RuleAction, RuleDmarcPolicy, RuleVerdict};
use std::sync::OnceLock;

const CONFIG: &str = include_str!("../rule_eval.yaml");

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config =
            postern_config::parse_config("rule_eval.yaml", CONFIG, &|_| Err("none".into()))
                .unwrap_or_else(|e| panic!("{e}"));
        Engine::build(&config).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let engine = engine();
    let (choices, message) = data.split_at(data.len().min(4));
    let pick = |i: usize| choices.get(i).copied().unwrap_or(0);
    let mut envelope = Envelope::new(
        std::net::IpAddr::from([10, pick(0), pick(1), 1]),
        "sender@example.org",
        &["a@example.com", "B@Example.COM", "vip@example.com"],
    );
    envelope.tls = match pick(2) % 3 {
        0 => None,
        1 => Some(TlsProtocol::Tls12),
        _ => Some(TlsProtocol::Tls13),
    };
    envelope.tls_wrapped = envelope.tls.is_some() && pick(3) & 1 == 1;
    let verdicts = Verdicts {
        spf: Some(RuleVerdict::ALL[pick(3) as usize % 4]),
        dkim: Some(RuleVerdict::ALL[pick(2) as usize % 4]),
        dmarc: Some(RuleDmarcPolicy::ALL[pick(1) as usize % 3]),
        ..Verdicts::default()
    };
    let parsed = message_parser().parse(message).unwrap_or_default();
    let binding = &engine.ingress_points[0];
    for recipient in &envelope.recipients {
        let _ =
            binding
                .policy
                .evaluate(&envelope, recipient, Some(message.len() as u64), &verdicts);
    }
    let evaluation = binding
        .rule_set
        .evaluate(&envelope, &parsed, message.len() as u64, &verdicts)
        .expect("every verdict is given");
    assert_eq!(evaluation.recipients.len(), envelope.recipients.len());
    for outcome in &evaluation.recipients {
        let actions: Vec<&RuleAction> = outcome
            .actions
            .iter()
            .map(|a| binding.rule_set.action(*a))
            .collect();
        let drop_at = actions
            .iter()
            .position(|a| matches!(a, RuleAction::Drop(_)));
        assert_eq!(outcome.dropped, drop_at.is_some());
        if let Some(i) = drop_at {
            assert_eq!(i + 1, actions.len(), "nothing is planned after a Drop");
        }
    }
});
