//! The postern command as a user runs it: the example config and its rule
//! test library, invalid configs, failing cases, help.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn postern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("postern runs")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn example_config_checks() {
    let out = postern(&["check", "-c", "examples/postern.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("rule sets:"), "{}", text(&out));
}

#[test]
fn example_rule_library_passes() {
    let junit = std::env::temp_dir().join(format!("postern-junit-{}.xml", std::process::id()));
    let out = postern(&[
        "test",
        "-c",
        "examples/postern.yaml",
        "examples/tests/",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    let last = output.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    let passed: usize = last.split(' ').next().unwrap().parse().expect(last);
    assert!(passed >= 50, "{last}");
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("tests=\"{passed}\" failures=\"0\"")),
        "{xml}"
    );
    std::fs::remove_file(junit).ok();
}

#[test]
fn invalid_config_fails_with_position_and_path() {
    let dir = tempdir("invalid");
    let file = dir.join("postern.yaml");
    std::fs::write(
        &file,
        "RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: r\n        Conditions:\n          - StringExpression: {Evaluate: {Attribute: SUBJECT}, Operator: EQUAL, Values: [x]}\n        Actions: [{Drop: {}}]\n",
    )
    .unwrap();
    let out = postern(&["check", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out);
    assert!(
        output.contains(
            ":6:74: RuleSets[0].Rules[0].Conditions[0].StringExpression.Operator: expected one of"
        ),
        "{output}"
    );
    assert!(output.contains("1 error"), "{output}");
}

#[test]
fn failing_case_prints_a_diff_and_exits_1() {
    let dir = tempdir("failing");
    std::fs::write(
        dir.join("postern.yaml"),
        "TrafficPolicies:\n  - {TrafficPolicyName: all, DefaultAction: ALLOW, PolicyStatements: []}\nRuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: tag\n        Conditions:\n          - StringExpression: {Evaluate: {Attribute: SUBJECT}, Operator: CONTAINS, Values: [hello]}\n        Actions: [{AddHeader: {HeaderName: X-Tag, HeaderValue: hi}}]\nIngressPoints:\n  - {IngressPointName: mx1, Type: OPEN, TrafficPolicyId: all, RuleSetId: main}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cases.yaml"),
        "Cases:\n  - Name: greets\n    Envelope: {SenderIp: 192.0.2.1, MailFrom: a@b.example, Recipients: [c@d.example]}\n    Message: \"Subject: Hello there\\n\\nhi\\n\"\n    Expect: {Rules: [tag], HeadersAdded: {X-Tag: hi}}\n  - Name: wrong\n    Envelope: {SenderIp: 192.0.2.1, MailFrom: a@b.example, Recipients: [c@d.example]}\n    Message: \"Subject: nothing\\n\\nhi\\n\"\n    Expect: {Rules: [tag]}\n",
    )
    .unwrap();
    let out = postern(&[
        "test",
        "-c",
        dir.join("postern.yaml").to_str().unwrap(),
        dir.join("cases.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out);
    assert!(output.contains("ok   "), "{output}");
    assert!(output.contains("FAIL "), "{output}");
    assert!(
        output.contains("Rules: expected [tag]\n              actual   []"),
        "{output}"
    );
    assert!(
        output.trim_end().ends_with("1 passed, 1 failed"),
        "{output}"
    );
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["check", "--help"],
        &["test", "--help"],
    ] {
        let out = postern(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("Usage:"), "{args:?}");
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("postern-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `Dns` records in a test file: SPF, DKIM and DMARC computed offline from
/// them, as the gateway computes them; explicit Verdicts win.
#[test]
fn rule_tests_compute_authentication_from_dns_records() {
    let dir = std::env::temp_dir().join(format!("postern-cli-dns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    let config = r#"TrafficPolicies: [{TrafficPolicyName: all, DefaultAction: ALLOW, PolicyStatements: []}]
RuleSets:
  - RuleSetName: main
    Rules:
      - Name: spf-pass
        Conditions: [{VerdictExpression: {Evaluate: {Attribute: SPF}, Operator: EQUALS, Values: [PASS]}}]
        Actions: [{AddHeader: {HeaderName: X-Spf, HeaderValue: pass}}]
      - Name: dkim-pass
        Conditions: [{VerdictExpression: {Evaluate: {Attribute: DKIM}, Operator: EQUALS, Values: [PASS]}}]
        Actions: [{AddHeader: {HeaderName: X-Dkim, HeaderValue: pass}}]
      - Name: reject
        Conditions: [{DmarcExpression: {Operator: EQUALS, Values: [REJECT]}}]
        Actions: [{Drop: {}}]
IngressPoints: [{IngressPointName: mx-main, Type: OPEN, TrafficPolicyId: all, RuleSetId: main}]
"#;
    std::fs::write(dir.join("postern.yaml"), config).unwrap();
    let key = include_str!("../../postern-delivery/tests/keys/rsa-pkcs8.pem");
    let public = include_str!("../../postern-delivery/tests/keys/rsa.pub.b64").trim();
    let message = "From: Alice <alice@good.test>\r\nTo: bob@mail.example\r\nSubject: signed\r\nDate: Wed, 25 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@good.test>\r\n\r\nHello.\r\n";
    let signature = postern_delivery::sign(
        &[postern_delivery::DkimKey::from_pem("good.test", "sel", key).unwrap()],
        message.as_bytes(),
    )
    .unwrap()
    .unwrap();
    std::fs::write(dir.join("signed.eml"), format!("{signature}{message}")).unwrap();
    std::fs::write(
        dir.join("zones/good.zone"),
        format!(
            "@ 300 IN TXT \"v=spf1 ip4:203.0.113.0/24 -all\"\n_dmarc 300 IN TXT \"v=DMARC1; p=reject\"\nsel._domainkey 300 IN TXT {}\n",
            // A TXT string holds at most 255 bytes: the key takes several.
            format!("v=DKIM1; k=rsa; p={public}")
                .as_bytes()
                .chunks(200)
                .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .unwrap();
    let cases = r#"Dns:
  ZoneFile: zones/good.zone
  Origin: good.test
Cases:
  - Name: signed from a permitted address passes everything
    Envelope: {SenderIp: 203.0.113.9, MailFrom: alice@good.test, Recipients: [bob@mail.example]}
    MessageFile: signed.eml
    Expect: {Rules: [spf-pass, dkim-pass], Dropped: false}
  - Name: unsigned from elsewhere is rejected by DMARC
    Envelope: {SenderIp: 198.51.100.1, MailFrom: alice@good.test, Recipients: [bob@mail.example]}
    Message: "From: alice@good.test\nSubject: forged\n\nhi\n"
    Expect: {Rules: [reject], Dropped: true}
  - Name: records of the case add to the file's
    Envelope: {SenderIp: 192.0.2.7, MailFrom: carol@other.test, Recipients: [bob@mail.example]}
    Dns:
      Records: [{Name: other.test, Type: TXT, Value: "v=spf1 ip4:192.0.2.0/24 -all"}]
    Message: "From: carol@other.test\nSubject: other\n\nhi\n"
    Expect: {Rules: [spf-pass], Dropped: false}
  - Name: explicit verdicts win
    Envelope: {SenderIp: 198.51.100.1, MailFrom: alice@good.test, Recipients: [bob@mail.example]}
    Verdicts: {Spf: PASS, Dkim: PASS, Dmarc: NONE}
    Message: "From: alice@good.test\nSubject: forged\n\nhi\n"
    Expect: {Rules: [spf-pass, dkim-pass], Dropped: false}
"#;
    std::fs::write(dir.join("auth.yaml"), cases).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["test", "-c", "postern.yaml", "auth.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert!(output.contains("4 passed, 0 failed"), "{output}");

    // A wrong expectation fails: the verdicts are really computed.
    std::fs::write(
        dir.join("wrong.yaml"),
        cases.replace(
            "Expect: {Rules: [reject], Dropped: true}",
            "Expect: {Rules: [spf-pass], Dropped: false}",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["test", "-c", "postern.yaml", "wrong.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("3 passed, 1 failed"), "{}", text(&out));
    std::fs::remove_dir_all(&dir).ok();
}
