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
