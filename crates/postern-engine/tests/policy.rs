//! Traffic policies: every condition kind with a case that matches and one
//! that does not, then the statement semantics (MaxMessageSizeBytes first,
//! DENY over ALLOW in any order, DefaultAction, AND within a statement,
//! missing add-on results).
//!
//! Condition tables compile one policy per row (DefaultAction DENY, one
//! ALLOW statement with the row's condition): ALLOW means "matched".

mod common;

use common::*;
use postern_engine::{
    AnalysisValue, Envelope, Missing, PolicyDecision, PolicyError, PolicyReason, TlsProtocol,
    Verdicts,
};
use postern_model::AcceptAction::{Allow, Deny};

fn envelope(sender_ip: &str) -> Envelope {
    Envelope::new(ip(sender_ip), "alice@sender.example", &["bob@corp.example"])
}

fn no_verdicts() -> Verdicts {
    Verdicts::default()
}

fn recipient(op: &str, values: &[&str]) -> String {
    string_cond("{Attribute: RECIPIENT}", op, values)
}

fn ipv4(op: &str, values: &[&str]) -> String {
    format!(
        "IpExpression: {{Evaluate: {{Attribute: SENDER_IP}}, Operator: {op}, Values: [{}]}}",
        quoted(values)
    )
}

fn ipv6(op: &str, values: &[&str]) -> String {
    format!(
        "Ipv6Expression: {{Evaluate: {{Attribute: SENDER_IPV6}}, Operator: {op}, Values: [{}]}}",
        quoted(values)
    )
}

fn tls(op: &str, value: &str) -> String {
    format!(
        "TlsExpression: {{Evaluate: {{Attribute: TLS_PROTOCOL}}, Operator: {op}, Value: {value}}}"
    )
}

fn analysis_evaluate(field: &str) -> String {
    format!("{{Analysis: {{Analyzer: {SCANNER}, ResultField: {field}}}}}")
}

fn boolean(evaluate: &str, op: &str) -> String {
    format!("BooleanExpression: {{Evaluate: {evaluate}, Operator: {op}}}")
}

// ---------------------------------------------------------------------------
// Conditions

#[test]
fn string_recipient_every_operator() {
    check_policy_conditions(
        &envelope("192.0.2.1"),
        "Bob+Tag@Corp.Example",
        &no_verdicts(),
        &rows(
            recipient,
            &[
                ("EQUALS", &["bob+tag@corp.example"], true),
                ("EQUALS", &["x@corp.example", "BOB+TAG@CORP.EXAMPLE"], true),
                ("EQUALS", &["bob@corp.example"], false),
                ("NOT_EQUALS", &["bob@corp.example"], true),
                (
                    "NOT_EQUALS",
                    &["bob@corp.example", "bob+tag@corp.example"],
                    false,
                ),
                ("STARTS_WITH", &["BOB+"], true),
                ("STARTS_WITH", &["tag", "corp"], false),
                ("ENDS_WITH", &["@corp.example"], true),
                ("ENDS_WITH", &["@corp"], false),
                ("CONTAINS", &["+tag@"], true),
                ("CONTAINS", &["alice"], false),
            ],
        ),
    );
}

#[test]
fn string_recipient_idn() {
    check_policy_conditions(
        &envelope("192.0.2.1"),
        "anna@XN--BCHER-KVA.example",
        &no_verdicts(),
        &rows(
            recipient,
            &[
                ("EQUALS", &["anna@bücher.example"], true),
                ("ENDS_WITH", &["@BÜCHER.EXAMPLE"], true),
                ("ENDS_WITH", &["@xn--bcher-kva.example"], true),
                ("NOT_EQUALS", &["anna@bücher.example"], false),
                ("EQUALS", &["anna@bucher.example"], false),
            ],
        ),
    );
}

#[test]
fn ip_expression_with_an_ipv4_sender() {
    check_policy_conditions(
        &envelope("192.0.2.1"),
        "bob@corp.example",
        &no_verdicts(),
        &[
            rows(
                ipv4,
                &[
                    ("CIDR_MATCHES", &["192.0.2.0/24"], true),
                    ("CIDR_MATCHES", &["198.51.100.0/24", "192.0.2.1/32"], true),
                    ("CIDR_MATCHES", &["198.51.100.0/24"], false),
                    ("NOT_CIDR_MATCHES", &["198.51.100.0/24"], true),
                    ("NOT_CIDR_MATCHES", &["10.0.0.0/8", "192.0.2.0/24"], false),
                ],
            ),
            // An IPv4 sender is in no IPv6 block.
            rows(
                ipv6,
                &[
                    ("CIDR_MATCHES", &["::/0"], false),
                    ("NOT_CIDR_MATCHES", &["::/0"], true),
                ],
            ),
        ]
        .concat(),
    );
}

#[test]
fn ip_expression_with_an_ipv6_sender() {
    check_policy_conditions(
        &envelope("2001:db8::1"),
        "bob@corp.example",
        &no_verdicts(),
        &[
            // IpExpression is IPv4: an IPv6 sender is in none of its blocks.
            rows(
                ipv4,
                &[
                    ("CIDR_MATCHES", &["0.0.0.0/0"], false),
                    ("NOT_CIDR_MATCHES", &["0.0.0.0/0"], true),
                ],
            ),
            rows(
                ipv6,
                &[
                    ("CIDR_MATCHES", &["2001:db8::/32"], true),
                    ("CIDR_MATCHES", &["2001:db9::/32", "2001:db8::1/128"], true),
                    ("CIDR_MATCHES", &["2001:db9::/32"], false),
                    ("NOT_CIDR_MATCHES", &["2001:db9::/32", "fe80::/10"], true),
                    (
                        "NOT_CIDR_MATCHES",
                        &["2001:db9::/32", "2001:db8::/64"],
                        false,
                    ),
                ],
            ),
        ]
        .concat(),
    );
}

#[test]
fn ip_expression_with_an_ipv4_mapped_sender() {
    // ::ffff:192.0.2.1 is the IPv4 sender 192.0.2.1.
    check_policy_conditions(
        &envelope("::ffff:192.0.2.1"),
        "bob@corp.example",
        &no_verdicts(),
        &[
            (ipv4("CIDR_MATCHES", &["192.0.2.0/24"]), true),
            (ipv4("NOT_CIDR_MATCHES", &["192.0.2.0/24"]), false),
            (ipv6("CIDR_MATCHES", &["::/0"]), false),
            (ipv6("NOT_CIDR_MATCHES", &["::/0"]), true),
        ],
    );
}

#[test]
fn tls_expression_minimum_version_and_is() {
    let cases = |session: Option<TlsProtocol>| {
        let at_least = |v: TlsProtocol| session.is_some_and(|s| s >= v);
        let is = |v: TlsProtocol| session == Some(v);
        vec![
            (
                tls("MINIMUM_TLS_VERSION", "TLS1_2"),
                at_least(TlsProtocol::Tls12),
            ),
            (
                tls("MINIMUM_TLS_VERSION", "TLS1_3"),
                at_least(TlsProtocol::Tls13),
            ),
            (tls("IS", "TLS1_2"), is(TlsProtocol::Tls12)),
            (tls("IS", "TLS1_3"), is(TlsProtocol::Tls13)),
        ]
    };
    // The expectations spelled out, so that the closure above is checked too.
    let expected = [
        (None, [false, false, false, false]),
        (Some(TlsProtocol::Legacy), [false, false, false, false]),
        (Some(TlsProtocol::Tls12), [true, false, true, false]),
        (Some(TlsProtocol::Tls13), [true, true, false, true]),
    ];
    for (session, want) in expected {
        let cases = cases(session);
        assert_eq!(cases.iter().map(|c| c.1).collect::<Vec<_>>(), want);
        let mut envelope = envelope("192.0.2.1");
        envelope.tls = session;
        check_policy_conditions(&envelope, "bob@corp.example", &no_verdicts(), &cases);
    }
}

#[test]
fn is_in_address_list_recipient() {
    // vips: ceo@corp.example, *@partner.example, *@XN--BCHER-KVA.example,
    //       Boss+Mail@Corp.Example
    let list = |op: &str| {
        boolean(
            "{IsInAddressList: {Attribute: RECIPIENT, AddressLists: [vips]}}",
            op,
        )
    };
    for (recipient, member) in [
        ("CEO@Corp.Example", true),
        ("anyone@partner.example", true),
        ("anyone@bücher.example", true),
        ("boss+mail@corp.example", true),
        ("boss@corp.example", false),
        ("ceo@sub.corp.example", false),
        ("x@sub.partner.example", false),
    ] {
        check_policy_conditions(
            &envelope("192.0.2.1"),
            recipient,
            &no_verdicts(),
            &[(list("IS_TRUE"), member), (list("IS_FALSE"), !member)],
        );
    }
}

#[test]
fn analysis_string_and_boolean() {
    let mut verdicts = Verdicts::default();
    for (field, value) in [
        ("addon.reputation", AnalysisValue::Text("Bad Actor".into())),
        ("addon.listed", AnalysisValue::Bool(true)),
        ("addon.clean", AnalysisValue::Bool(false)),
    ] {
        verdicts
            .analysis
            .insert((SCANNER.to_string(), field.to_string()), value);
    }
    let reputation =
        |op: &str, values: &[&str]| string_cond(&analysis_evaluate("addon.reputation"), op, values);
    check_policy_conditions(
        &envelope("192.0.2.1"),
        "bob@corp.example",
        &verdicts,
        &[
            rows(
                reputation,
                &[
                    ("EQUALS", &["bad actor"], true),
                    ("EQUALS", &["bad"], false),
                    ("NOT_EQUALS", &["good actor"], true),
                    ("NOT_EQUALS", &["good actor", "BAD ACTOR"], false),
                    ("STARTS_WITH", &["Bad "], true),
                    ("STARTS_WITH", &["actor"], false),
                    ("ENDS_WITH", &["actor"], true),
                    ("ENDS_WITH", &["bad"], false),
                    ("CONTAINS", &["d a"], true),
                    ("CONTAINS", &["good"], false),
                ],
            ),
            vec![
                (boolean(&analysis_evaluate("addon.listed"), "IS_TRUE"), true),
                (
                    boolean(&analysis_evaluate("addon.listed"), "IS_FALSE"),
                    false,
                ),
                (boolean(&analysis_evaluate("addon.clean"), "IS_TRUE"), false),
                (boolean(&analysis_evaluate("addon.clean"), "IS_FALSE"), true),
            ],
        ]
        .concat(),
    );
}

// ---------------------------------------------------------------------------
// Statements

/// One policy from a TrafficPolicies item.
fn one_policy(yaml: &str) -> Fixture {
    let fixture = Fixture::new(&format!("TrafficPolicies:\n{}\n", indent(yaml, 2)));
    assert_eq!(fixture.engine.policies.len(), 1);
    fixture
}

fn decision(action: postern_model::AcceptAction, reason: PolicyReason) -> PolicyDecision {
    PolicyDecision { action, reason }
}

#[test]
fn max_message_size_refuses_before_any_statement() {
    let fixture = one_policy(&format!(
        "
- TrafficPolicyName: sized
  DefaultAction: ALLOW
  MaxMessageSizeBytes: 1000
  PolicyStatements:
    - Action: ALLOW
      Conditions:
        - {}
",
        boolean(&analysis_evaluate("addon.listed"), "IS_FALSE")
    ));
    let policy = &fixture.engine.policies[0];
    let env = envelope("192.0.2.1");
    // Over the limit: refused, and the statement (whose add-on result is
    // missing) is never reached.
    for size in [1001, 50_000_000] {
        assert_eq!(
            policy.evaluate(&env, "bob@corp.example", Some(size), &no_verdicts()),
            Ok(decision(Deny, PolicyReason::TooLarge { size, max: 1000 }))
        );
    }
    // At or under the limit, or not known yet: the statements decide.
    for size in [Some(1000), Some(1), None] {
        assert_eq!(
            policy.evaluate(&env, "bob@corp.example", size, &no_verdicts()),
            Err(PolicyError {
                statement: 0,
                condition: 0,
                missing: Missing::Analysis {
                    analyzer: fixture.addon_arn(SCANNER),
                    field: "addon.listed".into()
                }
            })
        );
    }
    let mut verdicts = Verdicts::default();
    verdicts.analysis.insert(
        (fixture.addon_arn(SCANNER), "addon.listed".into()),
        AnalysisValue::Bool(false),
    );
    assert_eq!(
        policy.evaluate(&env, "bob@corp.example", Some(1000), &verdicts),
        Ok(decision(Allow, PolicyReason::Statement(0)))
    );
}

#[test]
fn deny_wins_over_allow_in_either_order() {
    let allow = recipient("ENDS_WITH", &["@corp.example"]);
    let deny = recipient("EQUALS", &["bad@corp.example"]);
    let allow_first = one_policy(&format!(
        "
- TrafficPolicyName: allow-first
  DefaultAction: DENY
  PolicyStatements:
    - {{Action: ALLOW, Conditions: [{{{allow}}}]}}
    - {{Action: DENY, Conditions: [{{{deny}}}]}}
"
    ));
    let deny_first = one_policy(&format!(
        "
- TrafficPolicyName: deny-first
  DefaultAction: DENY
  PolicyStatements:
    - {{Action: DENY, Conditions: [{{{deny}}}]}}
    - {{Action: ALLOW, Conditions: [{{{allow}}}]}}
"
    ));
    let env = envelope("192.0.2.1");
    let decide = |fixture: &Fixture, rcpt: &str| {
        fixture.engine.policies[0]
            .evaluate(&env, rcpt, Some(10), &no_verdicts())
            .unwrap()
    };
    use PolicyReason::{Default, Statement};
    assert_eq!(
        decide(&allow_first, "Bad@Corp.Example"),
        decision(Deny, Statement(1))
    );
    assert_eq!(
        decide(&deny_first, "Bad@Corp.Example"),
        decision(Deny, Statement(0))
    );
    assert_eq!(
        decide(&allow_first, "good@corp.example"),
        decision(Allow, Statement(0))
    );
    assert_eq!(
        decide(&deny_first, "good@corp.example"),
        decision(Allow, Statement(1))
    );
    assert_eq!(
        decide(&allow_first, "x@other.example"),
        decision(Deny, Default)
    );
    assert_eq!(
        decide(&deny_first, "x@other.example"),
        decision(Deny, Default)
    );
}

#[test]
fn default_action_when_no_statement_matches() {
    let fixture = Fixture::new(&format!(
        "TrafficPolicies:
  - TrafficPolicyName: open
    DefaultAction: ALLOW
    PolicyStatements:
      - Action: DENY
        Conditions: [{{{}}}]
  - TrafficPolicyName: closed
    DefaultAction: DENY
    PolicyStatements:
      - Action: ALLOW
        Conditions:
          - {}
          - {}
  - TrafficPolicyName: empty
    DefaultAction: ALLOW
    PolicyStatements: []
",
        ipv4("CIDR_MATCHES", &["203.0.113.0/24"]),
        recipient("ENDS_WITH", &["@corp.example"]),
        ipv4("CIDR_MATCHES", &["192.0.2.0/24"]),
    ));
    let [open, closed, empty] = &fixture.engine.policies[..] else {
        panic!("three policies expected");
    };
    let inside = envelope("192.0.2.7");
    let outside = envelope("198.51.100.7");
    let listed = envelope("203.0.113.9");
    let d = |p: &postern_engine::CompiledPolicy, env: &Envelope, rcpt: &str| {
        p.evaluate(env, rcpt, None, &no_verdicts()).unwrap()
    };
    use PolicyReason::{Default, Statement};
    assert_eq!(
        d(open, &inside, "bob@corp.example"),
        decision(Allow, Default)
    );
    assert_eq!(
        d(open, &listed, "bob@corp.example"),
        decision(Deny, Statement(0))
    );
    // Both conditions of the statement must hold.
    assert_eq!(
        d(closed, &inside, "bob@corp.example"),
        decision(Allow, Statement(0))
    );
    assert_eq!(
        d(closed, &outside, "bob@corp.example"),
        decision(Deny, Default)
    );
    assert_eq!(
        d(closed, &inside, "bob@other.example"),
        decision(Deny, Default)
    );
    assert_eq!(
        d(empty, &outside, "anyone@anywhere.example"),
        decision(Allow, Default)
    );
}

/// A value that is empty once normalized (" ", "<>") matches nothing: it
/// must not open a DENY-by-default policy to all mail.
#[test]
fn values_empty_after_normalizing_match_nothing() {
    let config = common::config(
        r#"
TrafficPolicies:
  - TrafficPolicyName: strict
    DefaultAction: DENY
    PolicyStatements:
      - Action: ALLOW
        Conditions:
          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: ENDS_WITH, Values: [" "]}
      - Action: ALLOW
        Conditions:
          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: CONTAINS, Values: ["<>"]}
RuleSets:
  - RuleSetName: main
    Rules:
      - Name: never
        Conditions:
          - StringExpression: {Evaluate: {Attribute: MAIL_FROM}, Operator: STARTS_WITH, Values: ["<>"]}
        Actions: [{Drop: {}}]
IngressPoints:
  - {IngressPointName: mx1, Type: OPEN, TrafficPolicyId: strict, RuleSetId: main}
"#,
    );
    let engine = postern_engine::Engine::build(&config).unwrap();
    let binding = &engine.ingress_points[0];
    let envelope = postern_engine::Envelope::new(
        "192.0.2.1".parse().unwrap(),
        "alice@sender.example",
        &["bob@corp.example"],
    );
    let decision = binding
        .policy
        .evaluate(
            &envelope,
            "bob@corp.example",
            None,
            &postern_engine::Verdicts::default(),
        )
        .unwrap();
    assert_eq!(decision.action, postern_model::AcceptAction::Deny);
    let message = postern_engine::message_parser()
        .parse(&b"Subject: x\r\n\r\nbody\r\n"[..])
        .unwrap();
    let evaluation = binding
        .rule_set
        .evaluate(
            &envelope,
            &message,
            20,
            &postern_engine::Verdicts::default(),
        )
        .unwrap();
    assert!(evaluation.recipients[0].matched.is_empty());
}
