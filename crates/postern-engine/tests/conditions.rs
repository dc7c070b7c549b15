//! Rule conditions, one kind × attribute × operator at a time, each with a
//! case that matches and one that does not; then the semantics of rules
//! (Unless, AND, per recipient, Drop, the action plan, missing inputs) and
//! scale.
//!
//! Most tests are tables: every row becomes one rule of a single rule set
//! (so the rows also share the per-attribute automata, as real rule sets
//! do), the set is evaluated once, and every row whose rule matched when it
//! should not (or the reverse) is reported.

mod common;

use common::*;
use postern_engine::{
    ActionRef, AddressList, AnalysisValue, Catalog, ClientCertificate, CompiledRuleSet,
    EvaluationError, Missing, TlsProtocol, Verdicts,
};
use postern_model::{
    RuleAction, RuleClientCertificateAttribute as CertAttr, RuleDmarcPolicy, RuleVerdict,
};
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Inputs

/// A message full of traps: a display name that looks like another address,
/// a display name with a comma, a group, several To and Cc headers, IDN
/// domains in both forms, encoded and folded Subject, repeated X- headers.
const MESSAGE: &str = "\
From: \"ceo@bank.example\" <Alice@Sender.Example>
Sender: Bounces <BOUNCES@Lists.Sender.Example>
To: \"Doe, John\" <John.Doe@Corp.Example>,
 \"bob@corp.example\" <carol@corp.example>
To: team: dave@corp.example, Erin@XN--BCHER-KVA.example;
Cc: frank@partner.example
Cc: \"Grace H.\" <grace@bücher.example>
Subject: =?UTF-8?B?W1VyZ2VudF0gUsOpdW5pb24=?=
 budget =?ISO-8859-1?Q?caf=E9?=
X-Spam-Flag: YES
x-spam-flag: checked
X-Note: first
 second
Disposition-Notification-To: Alice@Sender.Example
Message-ID: <1@sender.example>

Hello.
";

/// A message with none of the optional headers.
const BARE: &str = "\
From: alice@sender.example
Message-ID: <2@sender.example>

Hello.
";

fn input() -> Input {
    let mut input = Input::new(
        "Bounce+Tag@Sender.Example",
        &["Bob+Tag@Corp.Example"],
        MESSAGE,
    )
    .helo("MX1.Sender.Example")
    .tls(Some(TlsProtocol::Tls13));
    input.envelope.client_certificate = Some(ClientCertificate {
        attributes: vec![
            (CertAttr::Cn, "Relay.Partner.Example".into()),
            (CertAttr::SanDnsName, "a.partner.example".into()),
            (CertAttr::SanDnsName, "MX.Partner.Example".into()),
            (CertAttr::SerialNumber, "0A:1B:2C".into()),
        ],
    });
    input
}

fn bare() -> Input {
    Input::new("", &["bob@corp.example"], BARE)
}

fn attr(name: &str) -> impl Fn(&str, &[&str]) -> String {
    let evaluate = format!("{{Attribute: {name}}}");
    move |op, values| string_cond(&evaluate, op, values)
}

fn header(name: &str) -> impl Fn(&str, &[&str]) -> String {
    let evaluate = format!("{{MimeHeaderAttribute: {name}}}");
    move |op, values| string_cond(&evaluate, op, values)
}

fn cert(name: &str) -> impl Fn(&str, &[&str]) -> String {
    let evaluate = format!("{{ClientCertificateAttribute: {name}}}");
    move |op, values| string_cond(&evaluate, op, values)
}

fn analysis(field: &str) -> impl Fn(&str, &[&str]) -> String {
    let evaluate = format!("{{Analysis: {{Analyzer: {SCANNER}, ResultField: {field}}}}}");
    move |op, values| string_cond(&evaluate, op, values)
}

// ---------------------------------------------------------------------------
// StringExpression

#[test]
fn string_mail_from() {
    check_rule_conditions(
        &input(),
        &rows(
            attr("MAIL_FROM"),
            &[
                ("EQUALS", &["bounce+tag@sender.example"], true),
                ("EQUALS", &["BOUNCE+TAG@SENDER.EXAMPLE"], true),
                ("EQUALS", &["<bounce+tag@sender.example>"], true),
                (
                    "EQUALS",
                    &["x@y.example", "bounce+tag@sender.example"],
                    true,
                ),
                ("EQUALS", &["bounce@sender.example"], false),
                ("NOT_EQUALS", &["bounce@sender.example"], true),
                (
                    "NOT_EQUALS",
                    &["x@y.example", "Bounce+Tag@sender.example"],
                    false,
                ),
                ("STARTS_WITH", &["nope", "BOUNCE+"], true),
                ("STARTS_WITH", &["tag@"], false),
                ("ENDS_WITH", &["@Sender.Example"], true),
                ("ENDS_WITH", &["@sender"], false),
                ("CONTAINS", &["+tag@"], true),
                ("CONTAINS", &["corp", "lists"], false),
            ],
        ),
    );
}

#[test]
fn string_mail_from_null_sender_is_absent() {
    // `MAIL FROM:<>`: there is no address; only NOT_EQUALS matches.
    check_rule_conditions(
        &bare(),
        &rows(
            attr("MAIL_FROM"),
            &[
                ("EQUALS", &["mailer-daemon@sender.example"], false),
                ("NOT_EQUALS", &["mailer-daemon@sender.example"], true),
                ("STARTS_WITH", &["m"], false),
                ("ENDS_WITH", &["e"], false),
                ("CONTAINS", &["@"], false),
            ],
        ),
    );
}

#[test]
fn string_helo() {
    check_rule_conditions(
        &input(),
        &rows(
            attr("HELO"),
            &[
                ("EQUALS", &["mx1.sender.example"], true),
                ("EQUALS", &["mx2.sender.example"], false),
                ("NOT_EQUALS", &["mx2.sender.example"], true),
                (
                    "NOT_EQUALS",
                    &["mx2.sender.example", "MX1.SENDER.EXAMPLE"],
                    false,
                ),
                ("STARTS_WITH", &["MX1."], true),
                ("STARTS_WITH", &["sender"], false),
                ("ENDS_WITH", &[".org", ".EXAMPLE"], true),
                ("ENDS_WITH", &[".org"], false),
                ("CONTAINS", &[".sender."], true),
                ("CONTAINS", &["corp"], false),
            ],
        ),
    );
    // No HELO at all: only NOT_EQUALS matches.
    check_rule_conditions(
        &bare(),
        &rows(
            attr("HELO"),
            &[
                ("EQUALS", &["mx1.sender.example"], false),
                ("NOT_EQUALS", &["mx1.sender.example"], true),
                ("STARTS_WITH", &["mx"], false),
                ("ENDS_WITH", &["example"], false),
                ("CONTAINS", &["."], false),
            ],
        ),
    );
}

#[test]
fn string_helo_idn() {
    // HELO is a domain: its A-label and U-label forms are the same name.
    let input = bare().helo("MX.XN--BCHER-KVA.example");
    check_rule_conditions(
        &input,
        &rows(
            attr("HELO"),
            &[
                ("EQUALS", &["mx.bücher.example"], true),
                ("EQUALS", &["mx.xn--bcher-kva.example"], true),
                ("NOT_EQUALS", &["mx.bücher.example"], false),
                ("ENDS_WITH", &[".BÜCHER.example"], true),
                ("ENDS_WITH", &[".buecher.example"], false),
            ],
        ),
    );
}

#[test]
fn string_recipient() {
    // The envelope recipient exactly as received: subaddress kept, case ignored.
    check_rule_conditions(
        &input(),
        &rows(
            attr("RECIPIENT"),
            &[
                ("EQUALS", &["bob+tag@corp.example"], true),
                ("EQUALS", &["BOB+TAG@CORP.EXAMPLE"], true),
                ("EQUALS", &["bob@corp.example"], false),
                ("NOT_EQUALS", &["bob@corp.example"], true),
                (
                    "NOT_EQUALS",
                    &["bob@corp.example", "Bob+tag@corp.example"],
                    false,
                ),
                ("STARTS_WITH", &["bob+"], true),
                ("STARTS_WITH", &["tag"], false),
                ("ENDS_WITH", &["+TAG@corp.example"], true),
                ("ENDS_WITH", &["@corp"], false),
                ("CONTAINS", &["alice", "+tag@"], true),
                ("CONTAINS", &["alice"], false),
            ],
        ),
    );
}

#[test]
fn string_recipient_idn() {
    let input = Input::new("a@b.example", &["Anna@XN--BCHER-KVA.Example"], BARE);
    check_rule_conditions(
        &input,
        &rows(
            attr("RECIPIENT"),
            &[
                ("EQUALS", &["anna@bücher.example"], true),
                ("EQUALS", &["anna@xn--bcher-kva.example"], true),
                ("EQUALS", &["anna@bucher.example"], false),
                ("NOT_EQUALS", &["ANNA@BÜCHER.EXAMPLE"], false),
                ("ENDS_WITH", &["@bücher.example"], true),
                ("ENDS_WITH", &["@xn--bcher-kva.example"], true),
            ],
        ),
    );
}

#[test]
fn string_sender() {
    check_rule_conditions(
        &input(),
        &rows(
            attr("SENDER"),
            &[
                ("EQUALS", &["bounces@lists.sender.example"], true),
                ("EQUALS", &["bounces"], false),
                ("NOT_EQUALS", &["alice@sender.example"], true),
                ("NOT_EQUALS", &["BOUNCES@LISTS.SENDER.EXAMPLE"], false),
                ("STARTS_WITH", &["bounces@"], true),
                ("STARTS_WITH", &["Bounces <"], false),
                ("ENDS_WITH", &["lists.sender.example"], true),
                ("ENDS_WITH", &["sender"], false),
                ("CONTAINS", &["@lists."], true),
                ("CONTAINS", &["alice"], false),
            ],
        ),
    );
    // No Sender header: only NOT_EQUALS matches.
    check_rule_conditions(
        &bare(),
        &rows(
            attr("SENDER"),
            &[
                ("EQUALS", &["alice@sender.example"], false),
                ("NOT_EQUALS", &["alice@sender.example"], true),
                ("STARTS_WITH", &["a"], false),
                ("ENDS_WITH", &["example"], false),
                ("CONTAINS", &["@"], false),
            ],
        ),
    );
}

#[test]
fn string_from_is_the_address_not_the_display_name() {
    // From: "ceo@bank.example" <Alice@Sender.Example>
    check_rule_conditions(
        &input(),
        &rows(
            attr("FROM"),
            &[
                ("EQUALS", &["alice@sender.example"], true),
                ("EQUALS", &["ceo@bank.example"], false),
                ("NOT_EQUALS", &["ceo@bank.example"], true),
                (
                    "NOT_EQUALS",
                    &["ceo@bank.example", "ALICE@sender.example"],
                    false,
                ),
                ("STARTS_WITH", &["alice@"], true),
                ("STARTS_WITH", &["ceo", "\""], false),
                ("ENDS_WITH", &["@sender.example"], true),
                ("ENDS_WITH", &["@bank.example", ">"], false),
                ("CONTAINS", &["SENDER"], true),
                ("CONTAINS", &["bank"], false),
            ],
        ),
    );
}

#[test]
fn string_subject_decoded_and_unfolded() {
    // =?UTF-8?B?...?= and =?ISO-8859-1?Q?...?=, folded over two lines:
    // "[Urgent] Réunion budget café".
    check_rule_conditions(
        &input(),
        &rows(
            attr("SUBJECT"),
            &[
                ("EQUALS", &["[urgent] réunion budget café"], true),
                ("EQUALS", &["[URGENT] RÉUNION BUDGET CAFÉ"], true),
                ("EQUALS", &["[urgent] réunion"], false),
                ("NOT_EQUALS", &["hello"], true),
                (
                    "NOT_EQUALS",
                    &["hello", "[Urgent] Réunion budget café"],
                    false,
                ),
                ("STARTS_WITH", &["[urgent] r"], true),
                ("STARTS_WITH", &["réunion", "=?utf-8?"], false),
                ("ENDS_WITH", &["budget CAFÉ"], true),
                ("ENDS_WITH", &["budget", "caf=e9?="], false),
                ("CONTAINS", &["réunion budget"], true),
                ("CONTAINS", &["\r\n", "w1vyz2vud"], false),
            ],
        ),
    );
    // No Subject: only NOT_EQUALS matches.
    check_rule_conditions(
        &bare(),
        &rows(
            attr("SUBJECT"),
            &[
                ("EQUALS", &["hello"], false),
                ("NOT_EQUALS", &["hello"], true),
                ("STARTS_WITH", &["h"], false),
                ("ENDS_WITH", &["o"], false),
                ("CONTAINS", &["e"], false),
            ],
        ),
    );
}

#[test]
fn string_to_any_address_of_any_to_header() {
    // Two To headers: a list with tricky display names, and a group.
    check_rule_conditions(
        &input(),
        &rows(
            attr("TO"),
            &[
                ("EQUALS", &["john.doe@corp.example"], true),
                ("EQUALS", &["carol@corp.example"], true),
                ("EQUALS", &["dave@corp.example"], true),
                ("EQUALS", &["erin@bücher.example"], true),
                ("EQUALS", &["ERIN@xn--bcher-kva.EXAMPLE"], true),
                ("EQUALS", &["bob@corp.example"], false),
                ("EQUALS", &["doe"], false),
                ("NOT_EQUALS", &["nobody@corp.example"], true),
                ("NOT_EQUALS", &["bob@corp.example"], true),
                // One address of the second header equals one of the values.
                (
                    "NOT_EQUALS",
                    &["nobody@corp.example", "Dave@Corp.Example"],
                    false,
                ),
                ("STARTS_WITH", &["john.doe@"], true),
                ("STARTS_WITH", &["doe", "\"", "team"], false),
                ("ENDS_WITH", &["@BÜCHER.example"], true),
                ("ENDS_WITH", &["@corp", ";"], false),
                ("CONTAINS", &["carol"], true),
                ("CONTAINS", &["team", "john, "], false),
            ],
        ),
    );
}

#[test]
fn string_cc_any_address_of_any_cc_header() {
    check_rule_conditions(
        &input(),
        &rows(
            attr("CC"),
            &[
                ("EQUALS", &["frank@partner.example"], true),
                ("EQUALS", &["grace@xn--bcher-kva.example"], true),
                ("EQUALS", &["grace@bücher.example"], true),
                ("EQUALS", &["grace h."], false),
                ("NOT_EQUALS", &["heidi@partner.example"], true),
                (
                    "NOT_EQUALS",
                    &["heidi@partner.example", "GRACE@bücher.example"],
                    false,
                ),
                ("STARTS_WITH", &["grace@"], true),
                ("STARTS_WITH", &["partner"], false),
                ("ENDS_WITH", &["@partner.example"], true),
                ("ENDS_WITH", &["@partner"], false),
                ("CONTAINS", &["ank@part"], true),
                ("CONTAINS", &["grace h"], false),
            ],
        ),
    );
    // No Cc header: only NOT_EQUALS matches.
    check_rule_conditions(
        &bare(),
        &rows(
            attr("CC"),
            &[
                ("EQUALS", &["frank@partner.example"], false),
                ("NOT_EQUALS", &["frank@partner.example"], true),
                ("CONTAINS", &["@"], false),
            ],
        ),
    );
}

#[test]
fn string_display_name_that_is_an_address() {
    let message = "\
From: \"a@x.example\" <a@x.example>
To: \"a@x.example\" <a@x.example>
To: \"b@x.example\" <other@y.example>, plain@y.example

Hello.
";
    let input = Input::new("a@x.example", &["plain@y.example"], message);
    let mut cases = Vec::new();
    for attribute in ["FROM", "TO"] {
        cases.extend(rows(
            attr(attribute),
            &[
                ("EQUALS", &["a@x.example"], true),
                ("NOT_EQUALS", &["a@x.example"], false),
                ("STARTS_WITH", &["\"", "a@x.example <"], false),
                ("ENDS_WITH", &[">"], false),
            ],
        ));
    }
    cases.extend(rows(
        attr("TO"),
        &[
            ("EQUALS", &["b@x.example"], false),
            ("NOT_EQUALS", &["b@x.example"], true),
            ("EQUALS", &["plain@y.example"], true),
        ],
    ));
    check_rule_conditions(&input, &cases);
    // No To header at all: only NOT_EQUALS matches.
    check_rule_conditions(
        &bare(),
        &rows(
            attr("TO"),
            &[
                ("EQUALS", &["bob@corp.example"], false),
                ("NOT_EQUALS", &["bob@corp.example"], true),
                ("STARTS_WITH", &["b"], false),
                ("ENDS_WITH", &["e"], false),
                ("CONTAINS", &["@"], false),
            ],
        ),
    );
}

#[test]
fn string_from_with_several_authors_or_none_parseable() {
    let input = Input::new(
        "a@b.example",
        &["bob@corp.example"],
        "From: Ann <ann@x.example>, BEN@Y.example\n\nHello.\n",
    );
    check_rule_conditions(
        &input,
        &rows(
            attr("FROM"),
            &[
                ("EQUALS", &["ben@y.example"], true),
                ("NOT_EQUALS", &["zed@z.example", "ann@x.example"], false),
                ("NOT_EQUALS", &["zed@z.example"], true),
            ],
        ),
    );
    // No address in From at all: its text is matched, so it cannot slip past.
    let input = Input::new(
        "a@b.example",
        &["bob@corp.example"],
        "From: Your Bank Security Team\n\nHello.\n",
    );
    check_rule_conditions(
        &input,
        &rows(
            attr("FROM"),
            &[
                ("CONTAINS", &["bank security"], true),
                ("NOT_EQUALS", &["your bank security team"], false),
                ("EQUALS", &["security@bank.example"], false),
            ],
        ),
    );
}

#[test]
fn string_values_that_overlap_or_repeat() {
    // Values that are prefixes of each other and occur several times: each
    // operator still looks at the right position.
    let input = Input::new(
        "a@b.example",
        &["bob@corp.example"],
        "From: a@b.example\nSubject: Re: re: RE\n\nHello.\n",
    );
    check_rule_conditions(
        &input,
        &rows(
            attr("SUBJECT"),
            &[
                ("EQUALS", &["re"], false),
                ("EQUALS", &["re: re: re"], true),
                ("EQUALS", &["re: re"], false),
                ("NOT_EQUALS", &["re", "re: re"], true),
                ("STARTS_WITH", &["re: re:"], true),
                ("STARTS_WITH", &["e:"], false),
                ("ENDS_WITH", &["re: re"], true),
                ("ENDS_WITH", &["re:"], false),
                ("CONTAINS", &[": re: "], true),
                ("CONTAINS", &["re: re: re: re"], false),
            ],
        ),
    );
}

#[test]
fn string_addresses_with_quoted_local_parts() {
    let message = "\
From: \"john.doe\"@Example.COM
To: <\"John Doe\"@example.com>, \"Smith, J\" <\"j.smith\"@example.com>
Cc: \"a b\"@example.com, \"c\\\"d\"@example.com

Hello.
";
    let input = Input::new(
        "\"Post Master\"@Example.com",
        &["\"Help Desk\"@Example.com"],
        message,
    );
    check_rule_conditions(
        &input,
        &[
            // The quotes are syntax, not part of the address.
            (attr("FROM")("EQUALS", &["john.doe@example.com"]), true),
            (attr("FROM")("EQUALS", &["\"john.doe\"@example.com"]), true),
            (attr("FROM")("EQUALS", &["@example.com"]), false),
            (attr("FROM")("STARTS_WITH", &["john"]), true),
            (attr("TO")("EQUALS", &["\"john doe\"@example.com"]), true),
            (attr("TO")("EQUALS", &["j.smith@example.com"]), true),
            (attr("TO")("EQUALS", &["smith@example.com"]), false),
            (
                attr("TO")("NOT_EQUALS", &["\"J.Smith\"@example.com"]),
                false,
            ),
            (attr("CC")("EQUALS", &["\"a b\"@example.com"]), true),
            (attr("CC")("EQUALS", &["\"c\\\"d\"@example.com"]), true),
            (attr("CC")("EQUALS", &["@example.com"]), false),
            (attr("CC")("STARTS_WITH", &["\"a b\"@"]), true),
            (
                attr("MAIL_FROM")("EQUALS", &["\"post master\"@example.com"]),
                true,
            ),
            (attr("MAIL_FROM")("EQUALS", &["master@example.com"]), false),
            (
                attr("RECIPIENT")("EQUALS", &["\"help desk\"@example.com"]),
                true,
            ),
            (
                attr("RECIPIENT")("NOT_EQUALS", &["\"HELP DESK\"@EXAMPLE.COM"]),
                false,
            ),
        ],
    );
}

#[test]
fn string_mime_header() {
    // Two X-Spam-Flag headers (names differ in case): any value matches.
    check_rule_conditions(
        &input(),
        &[
            rows(
                header("X-Spam-Flag"),
                &[
                    ("EQUALS", &["yes"], true),
                    ("EQUALS", &["no"], false),
                    ("NOT_EQUALS", &["no"], true),
                    ("NOT_EQUALS", &["no", "CHECKED"], false),
                    ("STARTS_WITH", &["CH"], true),
                    ("STARTS_WITH", &["es"], false),
                    ("ENDS_WITH", &["ked", "zzz"], true),
                    ("ENDS_WITH", &["ye"], false),
                    ("CONTAINS", &["eck"], true),
                    ("CONTAINS", &["no"], false),
                ],
            ),
            // The header name is case-insensitive too.
            rows(header("X-SPAM-FLAG"), &[("EQUALS", &["checked"], true)]),
            // A folded X- header is unfolded.
            rows(
                header("X-Note"),
                &[
                    ("EQUALS", &["first second"], true),
                    ("EQUALS", &["first"], false),
                ],
            ),
            // An absent header: only NOT_EQUALS matches.
            rows(
                header("X-Absent"),
                &[
                    ("EQUALS", &["yes"], false),
                    ("NOT_EQUALS", &["yes"], true),
                    ("STARTS_WITH", &["y"], false),
                    ("ENDS_WITH", &["s"], false),
                    ("CONTAINS", &["e"], false),
                ],
            ),
        ]
        .concat(),
    );
}

#[test]
fn string_client_certificate() {
    check_rule_conditions(
        &input(),
        &[
            rows(
                cert("CN"),
                &[
                    ("EQUALS", &["relay.partner.example"], true),
                    ("EQUALS", &["relay.other.example"], false),
                    ("NOT_EQUALS", &["relay.other.example"], true),
                    ("NOT_EQUALS", &["RELAY.PARTNER.EXAMPLE"], false),
                    ("STARTS_WITH", &["relay."], true),
                    ("STARTS_WITH", &["partner"], false),
                    ("ENDS_WITH", &[".partner.example"], true),
                    ("ENDS_WITH", &[".partner"], false),
                    ("CONTAINS", &["y.par"], true),
                    ("CONTAINS", &["mx"], false),
                ],
            ),
            // Several SANs: any of them matches; NOT_EQUALS only if none equal.
            rows(
                cert("SAN_DNS_NAME"),
                &[
                    ("EQUALS", &["mx.partner.example"], true),
                    ("EQUALS", &["b.partner.example"], false),
                    ("NOT_EQUALS", &["b.partner.example"], true),
                    (
                        "NOT_EQUALS",
                        &["b.partner.example", "A.partner.example"],
                        false,
                    ),
                    ("STARTS_WITH", &["mx."], true),
                    ("STARTS_WITH", &["b."], false),
                    ("ENDS_WITH", &["r.example"], true),
                    ("ENDS_WITH", &[".org"], false),
                    ("CONTAINS", &["x.part"], true),
                    ("CONTAINS", &["relay"], false),
                ],
            ),
            rows(
                cert("SERIAL_NUMBER"),
                &[
                    ("EQUALS", &["0a:1b:2c"], true),
                    ("EQUALS", &["0a:1b"], false),
                ],
            ),
            // An attribute the certificate does not have.
            rows(
                cert("SAN_RFC822_NAME"),
                &[
                    ("EQUALS", &["relay@partner.example"], false),
                    ("NOT_EQUALS", &["relay@partner.example"], true),
                    ("CONTAINS", &["@"], false),
                ],
            ),
        ]
        .concat(),
    );
    // No client certificate at all: only NOT_EQUALS matches.
    check_rule_conditions(
        &bare(),
        &rows(
            cert("CN"),
            &[
                ("EQUALS", &["relay.partner.example"], false),
                ("NOT_EQUALS", &["relay.partner.example"], true),
                ("STARTS_WITH", &["r"], false),
                ("ENDS_WITH", &["e"], false),
                ("CONTAINS", &["."], false),
            ],
        ),
    );
}

#[test]
fn string_analysis() {
    let input = input().analysis(
        "addon.category",
        AnalysisValue::Text("Phishing Campaign".into()),
    );
    check_rule_conditions(
        &input,
        &rows(
            analysis("addon.category"),
            &[
                ("EQUALS", &["phishing campaign"], true),
                ("EQUALS", &["phishing"], false),
                ("NOT_EQUALS", &["spam"], true),
                ("NOT_EQUALS", &["spam", "PHISHING CAMPAIGN"], false),
                ("STARTS_WITH", &["Phish"], true),
                ("STARTS_WITH", &["campaign"], false),
                ("ENDS_WITH", &["campaign"], true),
                ("ENDS_WITH", &["phishing"], false),
                ("CONTAINS", &["ng ca"], true),
                ("CONTAINS", &["malware"], false),
            ],
        ),
    );
}

// ---------------------------------------------------------------------------
// NumberExpression

#[test]
fn number_message_size_is_the_size_given() {
    let number = |op: &str, value: &str| {
        format!(
            "NumberExpression: {{Evaluate: {{Attribute: MESSAGE_SIZE}}, Operator: {op}, Value: {value}}}"
        )
    };
    // The size passed to evaluate, not the length of the parsed text.
    let input = input().with_size(1000);
    assert_ne!(input.raw.len(), 1000);
    let cases = [
        ("EQUALS", "1000", true),
        ("EQUALS", "999", false),
        ("NOT_EQUALS", "999", true),
        ("NOT_EQUALS", "1000", false),
        ("LESS_THAN", "1001", true),
        ("LESS_THAN", "1000", false),
        ("GREATER_THAN", "999", true),
        ("GREATER_THAN", "1000", false),
        ("LESS_THAN_OR_EQUAL", "1000", true),
        ("LESS_THAN_OR_EQUAL", "999", false),
        ("GREATER_THAN_OR_EQUAL", "1000", true),
        ("GREATER_THAN_OR_EQUAL", "1001", false),
        ("LESS_THAN", "1000.5", true),
        ("GREATER_THAN", "999.5", true),
    ];
    let cases: Vec<(String, bool)> = cases
        .iter()
        .map(|(op, value, expect)| (number(op, value), *expect))
        .collect();
    check_rule_conditions(&input, &cases);
}

// ---------------------------------------------------------------------------
// IpExpression

fn ip_cond(op: &str, values: &[&str]) -> String {
    format!(
        "IpExpression: {{Evaluate: {{Attribute: SOURCE_IP}}, Operator: {op}, Values: [{}]}}",
        quoted(values)
    )
}

fn ipv4_sender_cases() -> Vec<(String, bool)> {
    rows(
        ip_cond,
        &[
            ("CIDR_MATCHES", &["192.0.2.0/24"], true),
            ("CIDR_MATCHES", &["198.51.100.0/24", "192.0.2.1/32"], true),
            ("CIDR_MATCHES", &["192.0.2.1"], true),
            (
                "CIDR_MATCHES",
                &["198.51.100.0/24", "192.0.2.128/25"],
                false,
            ),
            ("CIDR_MATCHES", &["2001:db8::/32", "::/0"], false),
            ("NOT_CIDR_MATCHES", &["198.51.100.0/24", "10.0.0.0/8"], true),
            ("NOT_CIDR_MATCHES", &["2001:db8::/32"], true),
            ("NOT_CIDR_MATCHES", &["10.0.0.0/8", "192.0.0.0/16"], false),
        ],
    )
}

#[test]
fn ip_ipv4_sender() {
    check_rule_conditions(&input(), &ipv4_sender_cases());
}

#[test]
fn ip_ipv4_mapped_ipv6_sender_is_its_ipv4_address() {
    check_rule_conditions(&input().sender_ip("::ffff:192.0.2.1"), &ipv4_sender_cases());
}

#[test]
fn ip_ipv6_sender() {
    check_rule_conditions(
        &input().sender_ip("2001:db8::25"),
        &rows(
            ip_cond,
            &[
                ("CIDR_MATCHES", &["2001:db8::/32"], true),
                ("CIDR_MATCHES", &["192.0.2.0/24", "2001:db8::25/128"], true),
                ("CIDR_MATCHES", &["2001:db9::/32", "0.0.0.0/0"], false),
                ("NOT_CIDR_MATCHES", &["2001:db9::/32", "0.0.0.0/0"], true),
                ("NOT_CIDR_MATCHES", &["2001:db8::/48"], false),
            ],
        ),
    );
}

// ---------------------------------------------------------------------------
// BooleanExpression

fn boolean(evaluate: &str, op: &str) -> String {
    format!("BooleanExpression: {{Evaluate: {evaluate}, Operator: {op}}}")
}

fn flag(name: &str, op: &str) -> String {
    boolean(&format!("{{Attribute: {name}}}"), op)
}

#[test]
fn boolean_read_receipt_requested() {
    let cases = |present: bool| {
        vec![
            (flag("READ_RECEIPT_REQUESTED", "IS_TRUE"), present),
            (flag("READ_RECEIPT_REQUESTED", "IS_FALSE"), !present),
        ]
    };
    // MESSAGE has Disposition-Notification-To; BARE does not.
    check_rule_conditions(&input(), &cases(true));
    check_rule_conditions(&bare(), &cases(false));
    // The legacy Return-Receipt-To asks for one too.
    let legacy = Input::new(
        "a@b.example",
        &["bob@corp.example"],
        "From: a@b.example\nReturn-Receipt-To: a@b.example\n\nHello.\n",
    );
    check_rule_conditions(&legacy, &cases(true));
}

#[test]
fn boolean_tls_and_tls_wrapped() {
    let cases = |tls: bool, wrapped: bool| {
        vec![
            (flag("TLS", "IS_TRUE"), tls),
            (flag("TLS", "IS_FALSE"), !tls),
            (flag("TLS_WRAPPED", "IS_TRUE"), wrapped),
            (flag("TLS_WRAPPED", "IS_FALSE"), !wrapped),
        ]
    };
    let plain = bare();
    check_rule_conditions(&plain, &cases(false, false));
    let starttls = bare().tls(Some(TlsProtocol::Tls12));
    check_rule_conditions(&starttls, &cases(true, false));
    let mut wrapped = bare().tls(Some(TlsProtocol::Tls13));
    wrapped.envelope.tls_wrapped = true;
    check_rule_conditions(&wrapped, &cases(true, true));
}

#[test]
fn boolean_analysis() {
    let evaluate =
        |field: &str| format!("{{Analysis: {{Analyzer: {SCANNER}, ResultField: {field}}}}}");
    let input = input()
        .analysis("addon.is_spam", AnalysisValue::Bool(true))
        .analysis("addon.is_virus", AnalysisValue::Bool(false))
        .analysis("addon.bulk", AnalysisValue::Text("TRUE".into()));
    check_rule_conditions(
        &input,
        &[
            (boolean(&evaluate("addon.is_spam"), "IS_TRUE"), true),
            (boolean(&evaluate("addon.is_spam"), "IS_FALSE"), false),
            (boolean(&evaluate("addon.is_virus"), "IS_TRUE"), false),
            (boolean(&evaluate("addon.is_virus"), "IS_FALSE"), true),
            (boolean(&evaluate("addon.bulk"), "IS_TRUE"), true),
            (boolean(&evaluate("addon.bulk"), "IS_FALSE"), false),
        ],
    );
}

fn in_list(attribute: &str, list: &str, op: &str) -> String {
    boolean(
        &format!("{{IsInAddressList: {{Attribute: {attribute}, AddressLists: [{list}]}}}}"),
        op,
    )
}

#[test]
fn boolean_is_in_address_list_every_attribute() {
    // vips: ceo@corp.example, *@partner.example, *@XN--BCHER-KVA.example,
    //       Boss+Mail@Corp.Example
    let message = "\
From: Someone <someone@BÜCHER.example>
Sender: ceo@corp.example
To: nobody@corp.example, \"Boss\" <BOSS+MAIL@CORP.EXAMPLE>
Cc: x@sub.partner.example, boss@corp.example

Hello.
";
    let members = Input::new("Bounce@Partner.Example", &["CEO@corp.example"], message);
    let mut cases = Vec::new();
    for attribute in ["RECIPIENT", "MAIL_FROM", "SENDER", "FROM", "TO"] {
        cases.push((in_list(attribute, "vips", "IS_TRUE"), true));
        cases.push((in_list(attribute, "vips", "IS_FALSE"), false));
        cases.push((in_list(attribute, "others", "IS_TRUE"), false));
        cases.push((in_list(attribute, "others", "IS_FALSE"), true));
    }
    // Cc: a subdomain is not the domain, and a subaddress is another address.
    cases.push((in_list("CC", "vips", "IS_TRUE"), false));
    cases.push((in_list("CC", "vips", "IS_FALSE"), true));
    check_rule_conditions(&members, &cases);

    let message = "\
From: a@b.example
Cc: Frank <frank@partner.example>

Hello.
";
    let cc = Input::new("", &["stranger@corp.example"], message);
    check_rule_conditions(
        &cc,
        &[
            (in_list("CC", "vips", "IS_TRUE"), true),
            (in_list("CC", "vips", "IS_FALSE"), false),
            // Absent attributes are in no list.
            (in_list("MAIL_FROM", "vips", "IS_TRUE"), false),
            (in_list("MAIL_FROM", "vips", "IS_FALSE"), true),
            (in_list("SENDER", "vips", "IS_FALSE"), true),
            (in_list("TO", "vips", "IS_FALSE"), true),
            (in_list("RECIPIENT", "vips", "IS_TRUE"), false),
        ],
    );
}

// ---------------------------------------------------------------------------
// VerdictExpression, DmarcExpression

fn verdict(evaluate: &str, op: &str, values: &[&str]) -> String {
    format!(
        "VerdictExpression: {{Evaluate: {evaluate}, Operator: {op}, Values: [{}]}}",
        values.join(", ")
    )
}

fn dmarc(op: &str, values: &[&str]) -> String {
    format!(
        "DmarcExpression: {{Operator: {op}, Values: [{}]}}",
        values.join(", ")
    )
}

fn with_verdicts(mut input: Input) -> Input {
    input.verdicts.spf = Some(RuleVerdict::Pass);
    input.verdicts.dkim = Some(RuleVerdict::Fail);
    input.verdicts.dmarc = Some(RuleDmarcPolicy::Quarantine);
    input.analysis("addon.verdict", AnalysisValue::Text("gray".into()))
}

#[test]
fn verdict_spf_and_dkim() {
    let spf = |op: &str, values: &[&str]| verdict("{Attribute: SPF}", op, values);
    let dkim = |op: &str, values: &[&str]| verdict("{Attribute: DKIM}", op, values);
    check_rule_conditions(
        &with_verdicts(input()),
        &[
            rows(
                spf,
                &[
                    ("EQUALS", &["PASS"], true),
                    ("EQUALS", &["FAIL", "PASS"], true),
                    ("EQUALS", &["FAIL", "GRAY", "PROCESSING_FAILED"], false),
                    ("NOT_EQUALS", &["FAIL", "GRAY"], true),
                    ("NOT_EQUALS", &["FAIL", "PASS"], false),
                ],
            ),
            rows(
                dkim,
                &[
                    ("EQUALS", &["FAIL"], true),
                    ("EQUALS", &["PASS", "GRAY"], false),
                    ("NOT_EQUALS", &["PASS", "GRAY"], true),
                    ("NOT_EQUALS", &["PROCESSING_FAILED", "FAIL"], false),
                ],
            ),
        ]
        .concat(),
    );
}

#[test]
fn verdict_analysis() {
    let evaluate = format!("{{Analysis: {{Analyzer: {SCANNER}, ResultField: addon.verdict}}}}");
    let v = |op: &str, values: &[&str]| verdict(&evaluate, op, values);
    // The add-on said "gray" (any case).
    check_rule_conditions(
        &with_verdicts(input()),
        &rows(
            v,
            &[
                ("EQUALS", &["GRAY"], true),
                ("EQUALS", &["PASS", "FAIL"], false),
                ("NOT_EQUALS", &["PASS", "FAIL"], true),
                ("NOT_EQUALS", &["PASS", "GRAY"], false),
            ],
        ),
    );
}

#[test]
fn dmarc_policy() {
    check_rule_conditions(
        &with_verdicts(input()),
        &rows(
            dmarc,
            &[
                ("EQUALS", &["QUARANTINE"], true),
                ("EQUALS", &["REJECT", "QUARANTINE"], true),
                ("EQUALS", &["NONE", "REJECT"], false),
                ("NOT_EQUALS", &["NONE", "REJECT"], true),
                ("NOT_EQUALS", &["NONE", "QUARANTINE"], false),
            ],
        ),
    );
}

// ---------------------------------------------------------------------------
// Missing inputs

const RECIPIENT_IS_BOB: &str =
    "StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: STARTS_WITH, Values: [bob]}";

#[test]
fn missing_verdicts_name_the_rule_and_the_condition() {
    let cases: [(&str, Missing); 3] = [
        (
            "VerdictExpression: {Evaluate: {Attribute: SPF}, Operator: EQUALS, Values: [PASS]}",
            Missing::Spf,
        ),
        (
            "VerdictExpression: {Evaluate: {Attribute: DKIM}, Operator: NOT_EQUALS, Values: [FAIL]}",
            Missing::Dkim,
        ),
        (
            "DmarcExpression: {Operator: EQUALS, Values: [REJECT]}",
            Missing::Dmarc,
        ),
    ];
    for (condition, missing) in cases {
        let fixture = Fixture::rules(&format!(
            "
- Name: first
  Actions: [{{AddHeader: {{HeaderName: X-A, HeaderValue: a}}}}]
- Name: second
  Conditions:
    - {RECIPIENT_IS_BOB}
    - {condition}
  Actions: [{{AddHeader: {{HeaderName: X-B, HeaderValue: b}}}}]
"
        ));
        let err = fixture.try_matched(&input()).unwrap_err();
        assert_eq!(
            err,
            EvaluationError {
                rule: 1,
                part: "Conditions",
                condition: 1,
                missing
            }
        );
    }
}

#[test]
fn missing_analysis_names_the_add_on_and_field() {
    let fixture = Fixture::rules(&format!(
        "
- Name: r
  Conditions:
    - {}
  Unless:
    - {RECIPIENT_IS_BOB}
  Actions: [{{AddHeader: {{HeaderName: X-A, HeaderValue: a}}}}]
- Name: s
  Conditions: []
  Unless:
    - {}
  Actions: [{{AddHeader: {{HeaderName: X-A, HeaderValue: a}}}}]
",
        attr("SUBJECT")("CONTAINS", &["urgent"]),
        analysis("addon.category")("EQUALS", &["spam"]),
    ));
    let err = fixture.try_matched(&input()).unwrap_err();
    assert_eq!(
        err,
        EvaluationError {
            rule: 1,
            part: "Unless",
            condition: 0,
            missing: Missing::Analysis {
                analyzer: fixture.addon_arn(SCANNER),
                field: "addon.category".into()
            }
        }
    );
    // A boolean analysis condition reached without its result.
    let fixture = Fixture::rules(&format!(
        "
- Name: r
  Conditions:
    - {}
  Actions: [{{AddHeader: {{HeaderName: X-A, HeaderValue: a}}}}]
",
        boolean(
            &format!("{{Analysis: {{Analyzer: {SCANNER}, ResultField: addon.is_spam}}}}"),
            "IS_TRUE"
        )
    ));
    let err = fixture.try_matched(&input()).unwrap_err();
    assert!(matches!(err.missing, Missing::Analysis { ref field, .. } if field == "addon.is_spam"));
    assert_eq!((err.rule, err.part, err.condition), (0, "Conditions", 0));
}

#[test]
fn verdict_not_reached_is_no_error() {
    // An earlier condition of the same rule is false.
    let fixture = Fixture::rules(
        "
- Name: r
  Conditions:
    - {StringExpression: {Evaluate: {Attribute: SUBJECT}, Operator: EQUALS, Values: [nothing]}}
    - {VerdictExpression: {Evaluate: {Attribute: SPF}, Operator: EQUALS, Values: [PASS]}}
  Actions: [{AddHeader: {HeaderName: X-A, HeaderValue: a}}]
- Name: s
  Conditions:
    - {StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: EQUALS, Values: [nobody@x.example]}}
  Unless:
    - {DmarcExpression: {Operator: EQUALS, Values: [REJECT]}}
  Actions: [{AddHeader: {HeaderName: X-A, HeaderValue: a}}]
",
    );
    assert_eq!(fixture.matched_first(&input()), Vec::<String>::new());

    // An earlier rule dropped the message for this recipient.
    let fixture = Fixture::rules(
        "
- Name: drop-bob
  Conditions:
    - {StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: STARTS_WITH, Values: [bob]}}
  Actions: [{Drop: {}}]
- Name: spf
  Conditions:
    - {VerdictExpression: {Evaluate: {Attribute: SPF}, Operator: EQUALS, Values: [PASS]}}
  Actions: [{AddHeader: {HeaderName: X-A, HeaderValue: a}}]
",
    );
    assert_eq!(fixture.matched_first(&input()), ["drop-bob"]);
    // ... but another recipient, not dropped, does reach it.
    let two = Input::new(
        "a@b.example",
        &["bob@corp.example", "carol@corp.example"],
        BARE,
    );
    let err = fixture.try_matched(&two).unwrap_err();
    assert_eq!((err.rule, err.condition, err.missing), (1, 0, Missing::Spf));
    // Given the verdict, each recipient gets its own outcome.
    let mut two = two;
    two.verdicts.spf = Some(RuleVerdict::Pass);
    assert_eq!(
        fixture.matched(&two),
        [
            ("bob@corp.example".to_string(), vec!["drop-bob".to_string()]),
            ("carol@corp.example".to_string(), vec!["spf".to_string()]),
        ]
    );
}

// ---------------------------------------------------------------------------
// Rule semantics

const ADD: &str = "{AddHeader: {HeaderName: X-Rule, HeaderValue: v}}";

#[test]
fn empty_conditions_match_every_message() {
    let fixture = Fixture::rules(&format!(
        "
- Name: omitted
  Actions: [{ADD}]
- Name: empty
  Conditions: []
  Actions: [{ADD}]
- Name: empty-unless
  Conditions: []
  Unless: []
  Actions: [{ADD}]
"
    ));
    assert_eq!(
        fixture.matched_first(&bare()),
        ["omitted", "empty", "empty-unless"]
    );
    assert_eq!(
        fixture.matched_first(&input()),
        ["omitted", "empty", "empty-unless"]
    );
}

#[test]
fn conditions_are_and_ed_and_unless_vetoes() {
    let subject = |v: &str| attr("SUBJECT")("CONTAINS", &[v]);
    let fixture = Fixture::rules(&format!(
        "
- Name: both-true
  Conditions: [{{{}}}, {{{}}}]
  Actions: [{ADD}]
- Name: second-false
  Conditions: [{{{}}}, {{{}}}]
  Actions: [{ADD}]
- Name: first-false
  Conditions: [{{{}}}, {{{}}}]
  Actions: [{ADD}]
- Name: unless-false
  Conditions: [{{{}}}]
  Unless: [{{{}}}]
  Actions: [{ADD}]
- Name: unless-one-true
  Conditions: [{{{}}}]
  Unless: [{{{}}}, {{{}}}]
  Actions: [{ADD}]
- Name: only-unless-true
  Unless: [{{{}}}]
  Actions: [{ADD}]
- Name: only-unless-false
  Unless: [{{{}}}]
  Actions: [{ADD}]
",
        subject("urgent"),
        subject("café"),
        subject("urgent"),
        subject("nothing"),
        subject("nothing"),
        subject("urgent"),
        subject("urgent"),
        subject("nothing"),
        subject("urgent"),
        subject("nothing"),
        subject("budget"),
        subject("budget"),
        subject("nothing"),
    ));
    assert_eq!(
        fixture.matched_first(&input()),
        ["both-true", "unless-false", "only-unless-false"]
    );
}

#[test]
fn each_recipient_is_evaluated_on_its_own() {
    let fixture = Fixture::rules(&format!(
        "
- Name: sales
  Conditions: [{{{}}}]
  Actions: [{ADD}]
- Name: vip
  Conditions: [{{{}}}]
  Actions: [{ADD}]
- Name: not-sales
  Unless: [{{{}}}]
  Actions: [{ADD}]
- Name: all
  Actions: [{ADD}]
",
        attr("RECIPIENT")("STARTS_WITH", &["sales"]),
        in_list("RECIPIENT", "vips", "IS_TRUE"),
        attr("RECIPIENT")("STARTS_WITH", &["sales"]),
    ));
    let input = Input::new(
        "a@b.example",
        &[
            "Sales@corp.example",
            "ceo@CORP.example",
            "x@partner.example",
        ],
        BARE,
    );
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        fixture.matched(&input),
        [
            ("Sales@corp.example".to_string(), strings(&["sales", "all"])),
            (
                "ceo@CORP.example".to_string(),
                strings(&["vip", "not-sales", "all"])
            ),
            (
                "x@partner.example".to_string(),
                strings(&["vip", "not-sales", "all"])
            ),
        ]
    );
}

#[test]
fn drop_ends_evaluation_for_that_recipient_only() {
    let fixture = Fixture::rules(
        "
- Name: tag
  Actions:
    - AddHeader: {HeaderName: X-First, HeaderValue: '1'}
- Name: drop-spam
  Conditions:
    - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: EQUALS, Values: [spamtrap@corp.example]}
  Actions:
    - AddHeader: {HeaderName: X-Before, HeaderValue: '2'}
    - Drop: {}
    - AddHeader: {HeaderName: X-After, HeaderValue: '3'}
- Name: later
  Actions:
    - AddHeader: {HeaderName: X-Later, HeaderValue: '4'}
    - Drop: {}
",
    );
    let input = Input::new(
        "a@b.example",
        &["SpamTrap@corp.example", "bob@corp.example"],
        BARE,
    );
    let rule_set = fixture.rule_set();
    let message = input.message();
    let evaluation = rule_set
        .evaluate(
            &input.envelope,
            &message,
            input.size(),
            &Verdicts::default(),
        )
        .unwrap();
    let [trap, bob] = &evaluation.recipients[..] else {
        panic!("two recipients expected");
    };
    let a = |rule, action| ActionRef { rule, action };
    let kinds = |actions: &[ActionRef]| {
        actions
            .iter()
            .map(|&r| match rule_set.action(r) {
                RuleAction::AddHeader(h) => h.header_name.clone(),
                other => other.member_name().to_string(),
            })
            .collect::<Vec<_>>()
    };

    assert_eq!(trap.recipient, "SpamTrap@corp.example");
    assert!(trap.dropped);
    assert_eq!(
        trap.matched.iter().map(|m| m.rule).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(trap.actions, [a(0, 0), a(1, 0), a(1, 1)]);
    assert_eq!(kinds(&trap.actions), ["X-First", "X-Before", "Drop"]);

    assert_eq!(bob.recipient, "bob@corp.example");
    assert!(bob.dropped);
    assert_eq!(
        bob.matched.iter().map(|m| m.rule).collect::<Vec<_>>(),
        [0, 2]
    );
    assert_eq!(bob.actions, [a(0, 0), a(2, 0), a(2, 1)]);
    assert_eq!(kinds(&bob.actions), ["X-First", "X-Later", "Drop"]);
}

#[test]
fn action_plan_follows_rule_then_action_order() {
    let fixture = Fixture::rules(
        "
- Name: one
  Actions:
    - AddHeader: {HeaderName: X-A, HeaderValue: a}
    - AddHeader: {HeaderName: X-B, HeaderValue: b}
- Name: skipped
  Conditions:
    - StringExpression: {Evaluate: {Attribute: SUBJECT}, Operator: EQUALS, Values: [never]}
  Actions:
    - AddHeader: {HeaderName: X-Skipped, HeaderValue: s}
- Name: two
  Actions:
    - AddHeader: {HeaderName: X-C, HeaderValue: c}
    - AddHeader: {HeaderName: X-D, HeaderValue: d}
    - AddHeader: {HeaderName: X-E, HeaderValue: e}
",
    );
    let input = bare();
    let rule_set = fixture.rule_set();
    let evaluation = rule_set
        .evaluate(
            &input.envelope,
            &input.message(),
            input.size(),
            &Verdicts::default(),
        )
        .unwrap();
    let outcome = &evaluation.recipients[0];
    assert!(!outcome.dropped);
    let names: Vec<String> = outcome
        .actions
        .iter()
        .map(|&r| match rule_set.action(r) {
            RuleAction::AddHeader(h) => h.header_name.clone(),
            other => panic!("unexpected action {other:?}"),
        })
        .collect();
    assert_eq!(names, ["X-A", "X-B", "X-C", "X-D", "X-E"]);
    assert_eq!(rule_set.rule_label(1), "skipped");
}

#[test]
fn unnamed_rules_are_labelled_by_position() {
    let fixture = Fixture::rules(&format!(
        "- Actions: [{ADD}]\n- Name: named\n  Actions: [{ADD}]\n"
    ));
    assert_eq!(fixture.matched_first(&bare()), ["Rules[0]", "named"]);
}

// ---------------------------------------------------------------------------
// Direct compilation with a Catalog of our own

struct OneList {
    name: &'static str,
    list: Arc<AddressList>,
}

impl Catalog for OneList {
    fn address_list(&self, reference: &str) -> Option<Arc<AddressList>> {
        (reference == self.name).then(|| self.list.clone())
    }

    fn analyzer(&self, _reference: &str) -> Option<String> {
        None
    }
}

#[test]
fn compile_with_own_catalog_and_unknown_reference() {
    // Rules taken from a validated config, compiled against another catalog.
    let fixture = Fixture::rules(&format!(
        "- Name: listed\n  Conditions: [{{{}}}]\n  Actions: [{ADD}]\n",
        in_list("RECIPIENT", "vips", "IS_TRUE")
    ));
    let rules = fixture.rule_set().rules().to_vec();
    let catalog = OneList {
        name: "vips",
        list: Arc::new(AddressList::new(["only@corp.example"])),
    };
    let rule_set = CompiledRuleSet::compile("rs-1", "t", "arn:x", &rules, &catalog).unwrap();
    let input = Input::new(
        "a@b.example",
        &["ONLY@corp.example", "ceo@corp.example"],
        BARE,
    );
    let evaluation = rule_set
        .evaluate(
            &input.envelope,
            &input.message(),
            input.size(),
            &Verdicts::default(),
        )
        .unwrap();
    assert_eq!(evaluation.recipients[0].matched.len(), 1);
    assert_eq!(evaluation.recipients[1].matched.len(), 0);

    let nothing = OneList {
        name: "other",
        list: Arc::new(AddressList::default()),
    };
    let err = CompiledRuleSet::compile("rs-1", "t", "arn:x", &rules, &nothing).unwrap_err();
    assert_eq!(err.0, "vips");
}

// ---------------------------------------------------------------------------
// Scale

#[test]
fn a_thousand_rules_load_and_evaluate() {
    let mut rules = String::new();
    for i in 0..1000 {
        let condition = match i % 4 {
            0 => attr("RECIPIENT")("EQUALS", &[&format!("user{i}@corp.example")]),
            1 => attr("SUBJECT")("CONTAINS", &[&format!("ticket-{i} ")]),
            2 => attr("TO")("ENDS_WITH", &[&format!("@dept{i}.corp.example")]),
            _ => attr("FROM")("STARTS_WITH", &[&format!("sender{i}@")]),
        };
        rules += &format!("- Name: r{i}\n  Conditions: [{{{condition}}}]\n  Actions: [{ADD}]\n");
    }
    let fixture = Fixture::rules(&rules);
    assert_eq!(fixture.rule_set().rules().len(), 1000);

    let message = "\
From: sender3@x.example
To: someone@dept998.corp.example
Subject: about ticket-1 and ticket-997 and ticket-10 x

Hello.
";
    let input = Input::new(
        "a@b.example",
        &[
            "user0@corp.example",
            "user996@corp.example",
            "user1000@corp.example",
        ],
        message,
    );
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        fixture.matched(&input),
        [
            (
                "user0@corp.example".to_string(),
                strings(&["r0", "r1", "r3", "r997", "r998"])
            ),
            (
                "user996@corp.example".to_string(),
                strings(&["r1", "r3", "r996", "r997", "r998"])
            ),
            (
                "user1000@corp.example".to_string(),
                strings(&["r1", "r3", "r997", "r998"])
            ),
        ]
    );

    // Without the raised quota the same rule set is refused, naming the quota.
    let text = format!(
        "RuleSets:\n  - RuleSetName: t\n    Rules:\n{}\n",
        indent(&rules, 6)
    );
    let err = postern_config::parse_config("t.yaml", &text, &|_| Err("none".into())).unwrap_err();
    assert!(err.to_string().contains("RulesPerRuleSet"), "{err}");
}

#[test]
fn a_million_member_address_list() {
    let started = std::time::Instant::now();
    let list = AddressList::new(
        (0..1_000_000)
            .map(|i| format!("User{i}@Corp.Example"))
            .chain(["*@partner.example".to_string()]),
    );
    assert_eq!(list.len(), 1_000_001);
    assert!(list.contains("user0@corp.example"));
    assert!(list.contains("user999999@corp.example"));
    assert!(list.contains("user123456@corp.example"));
    assert!(!list.contains("user1000000@corp.example"));
    assert!(!list.contains("user12345@corp.example.org"));
    assert!(list.contains("anyone@partner.example"));

    // The same list behind a rule, through a catalog of our own.
    let fixture = Fixture::rules(&format!(
        "- Name: listed\n  Conditions: [{{{}}}, {{{}}}]\n  Actions: [{ADD}]\n",
        in_list("RECIPIENT", "vips", "IS_TRUE"),
        in_list("FROM", "vips", "IS_FALSE"),
    ));
    let catalog = OneList {
        name: "vips",
        list: Arc::new(list),
    };
    let rules = fixture.rule_set().rules().to_vec();
    let rule_set = CompiledRuleSet::compile("rs-big", "big", "arn:big", &rules, &catalog).unwrap();
    let input = Input::new(
        "a@b.example",
        &[
            "USER777777@corp.example",
            "user1000001@corp.example",
            "x@Partner.Example",
        ],
        "From: user5@corp.example.org\n\nHello.\n",
    );
    let evaluation = rule_set
        .evaluate(
            &input.envelope,
            &input.message(),
            input.size(),
            &Verdicts::default(),
        )
        .unwrap();
    let matched: Vec<bool> = evaluation
        .recipients
        .iter()
        .map(|r| !r.matched.is_empty())
        .collect();
    assert_eq!(matched, [true, false, true]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
