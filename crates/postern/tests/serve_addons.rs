//! Add-ons end to end, through the `postern serve` binary with real
//! engines started by the test: DNS block lists from a hickory-server zone
//! on loopback, read by a traffic policy at RCPT; Rspamd and ClamAV read by
//! rules; an engine that is down; and the config errors that refuse a
//! start. Every wait is a bounded poll; nothing asserts on timing.

mod support;

#[path = "../../postern-delivery/tests/support/peers.rs"]
mod peers;

#[path = "../../postern-delivery/tests/support/dns_server.rs"]
mod dns_server;

#[path = "../../postern-addons/tests/support/clamd.rs"]
mod clamd_support;

#[path = "../../postern-addons/tests/support/rspamd.rs"]
mod rspamd_support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A gateway config: an OPEN ingress point with the traffic policy's
/// `statements` (YAML flow list), `rules` (YAML items indented by 6),
/// `addons` as (AddonName, the instance's members in YAML flow style) and
/// extra `Server` members (indented by 2). Authentication is off, so that
/// no DNS is asked but the block lists'.
fn gateway(
    dir: &Path,
    smtp: u16,
    http: u16,
    server: &str,
    addons: &[(&str, &str)],
    statements: &str,
    rules: &str,
) -> String {
    let subscriptions: String = addons
        .iter()
        .map(|(name, _)| format!("  - AddonName: {name}\n"))
        .collect();
    let instances: String = addons
        .iter()
        .map(|(name, members)| format!("  - {{AddonSubscriptionId: {name}, {members}}}\n"))
        .collect();
    format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: gw.postern.test\n  Authentication: {{Enabled: false}}\n{server}\
AddonSubscriptions:\n{subscriptions}\
AddonInstances:\n{instances}\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: {statements}\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n{rules}\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: local\n",
        data = dir.join("data").display(),
    )
}

/// The rule that archives everything that reaches it.
const ARCHIVE_ALL: &str =
    "      - Name: keep\n        Actions:\n          - Archive: {TargetArchive: local}\n";

/// A condition on an add-on's boolean result field.
fn is_true(analyzer: &str, field: &str) -> String {
    format!(
        "BooleanExpression: {{Evaluate: {{Analysis: {{Analyzer: {analyzer}, ResultField: {field}}}}}, Operator: IS_TRUE}}"
    )
}

/// A rule named `name` with one condition and one AddHeader action.
fn tag_rule(name: &str, condition: &str, header: &str, value: &str) -> String {
    format!(
        "      - Name: {name}\n        Conditions:\n          - {condition}\n        Actions:\n          - AddHeader: {{HeaderName: {header}, HeaderValue: \"{value}\"}}\n"
    )
}

/// MAIL FROM and one RCPT TO with smtplib: the reply code and text to RCPT.
fn rcpt_reply(port: u16, mail_from: &str, rcpt: &str) -> (u16, String) {
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.ehlo("client.test")
code, text = s.mail(sys.argv[2])
assert code == 250, ("MAIL", code, text)
code, text = s.rcpt(sys.argv[3])
print(code)
print(text.decode())
s.quit()
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(mail_from)
        .arg(rcpt)
        .output()
        .expect("python3 is needed by this test");
    assert!(
        output.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (code, text) = stdout.split_once('\n').unwrap_or((stdout.as_str(), ""));
    (
        code.trim().parse().unwrap_or_else(|_| panic!("{stdout}")),
        text.trim().to_string(),
    )
}

/// The message archived by `server` whose Subject is `subject`, if any.
fn archived_subject(server: &Server, subject: &str) -> Option<Vec<u8>> {
    let needle = format!("\nSubject: {subject}\r\n");
    server
        .archived()
        .into_iter()
        .map(|(_, eml)| eml)
        .find(|eml| contains(eml, &needle))
}

/// The header section of a message, up to the blank line.
fn header_section(eml: &[u8]) -> String {
    let end = eml
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(eml.len(), |p| p + 2);
    String::from_utf8_lossy(&eml[..end]).into_owned()
}

/// Whether the header section has the field `name` (with any value, or
/// with `value`).
fn has_header(headers: &str, name: &str, value: Option<&str>) -> bool {
    headers.split("\r\n").any(|line| {
        line.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case(name) && value.is_none_or(|value| v.trim() == value)
        })
    })
}

fn addon_results(record: &Value) -> Vec<String> {
    record["AddonResults"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Whether the trace's add-on results have `field = value` (of any
/// instance ARN).
fn has_result(record: &Value, field: &str, value: &str) -> bool {
    let suffix = format!(" {field} = {value}");
    addon_results(record).iter().any(|r| r.ends_with(&suffix))
}

fn matched_rules(record: &Value) -> Vec<String> {
    record["Recipients"][0]["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Rule"].as_str().unwrap().to_string())
        .collect()
}

fn actions(record: &Value) -> Vec<String> {
    record["Recipients"][0]["Actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Action"].as_str().unwrap().to_string())
        .collect()
}

fn wait_log(server: &Server, what: &str, found: impl Fn(&str) -> bool) {
    wait_for(&format!("{what} in the log"), || {
        found(&server.log()).then_some(())
    });
}

const BL_ZONE: &str = "\
@ 3600 IN SOA ns.bl.test. hostmaster.bl.test. 1 3600 600 86400 300
@ 3600 IN NS ns.bl.test.
ns 3600 IN A 127.0.0.1
; 127.0.0.1 (the test's client) is listed in listed.bl.test only
1.0.0.127.listed 300 IN A 127.0.0.2
2.0.0.127.clean 300 IN A 127.0.0.2
";

fn dnsbl_gateway(dir: &Path, ports: &[u16], dns: std::net::SocketAddr, zone: &str) -> Server {
    let server = format!("  Dns:\n    Nameservers: [\"{dns}\"]\n");
    let instance = format!("Dnsbl: {{IpZones: [{{Zone: {zone}}}]}}, TimeoutSeconds: 1");
    let deny = format!(
        "[{{Action: DENY, Conditions: [{{{}}}]}}]",
        is_true("POSTERN_DNSBL", "ip_listed")
    );
    Server::start(
        dir,
        ports[0],
        &gateway(
            dir,
            ports[0],
            ports[1],
            &server,
            &[("POSTERN_DNSBL", &instance)],
            &deny,
            ARCHIVE_ALL,
        ),
    )
}

#[test]
fn a_traffic_policy_denies_a_listed_client_at_rcpt() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt.block_on(dns_server::serve("bl.test.", BL_ZONE));
    let (silent, _silent_task) = rt.block_on(dns_server::silent());
    let dir = TempDir::new("addons-dnsbl");
    let ports = free_ports(6);

    // Listed: RCPT is refused.
    let listed = dnsbl_gateway(
        &dir.path().join("listed"),
        &ports[0..2],
        dns.addr,
        "listed.bl.test",
    );
    let (code, text) = rcpt_reply(ports[0], "alice@sender.test", "bob@dest.test");
    assert_eq!(code, 550, "{text}\n{}", listed.log());

    // Not listed in this zone (NXDOMAIN): accepted, and the message goes
    // through.
    let clean = dnsbl_gateway(
        &dir.path().join("clean"),
        &ports[2..4],
        dns.addr,
        "clean.bl.test",
    );
    let (code, text) = rcpt_reply(ports[2], "alice@sender.test", "bob@dest.test");
    assert_eq!(code, 250, "{text}\n{}", clean.log());
    let id = clean.send(
        "alice@sender.test",
        &["bob@dest.test"],
        "From: alice@sender.test\r\nTo: bob@dest.test\r\nSubject: not-listed\r\n\r\nHello.\r\n",
    );
    clean.wait_trace("Message", "QueueId", &id);
    assert!(archived_subject(&clean, "not-listed").is_some());

    // The block list does not answer: the add-on is down, `ip_listed`
    // reads PROCESSING_FAILED, and "deny when listed" lets mail through.
    let down = dnsbl_gateway(
        &dir.path().join("down"),
        &ports[4..6],
        silent,
        "listed.bl.test",
    );
    let (code, text) = rcpt_reply(ports[4], "alice@sender.test", "bob@dest.test");
    assert_eq!(code, 250, "{text}\n{}", down.log());
    wait_log(&down, "the add-on's failure", |log| {
        log.contains("POSTERN_DNSBL")
            && (log.contains("add-on timed out") || log.contains("add-on failed"))
    });
}

#[test]
fn rspamd_results_in_rules() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rspamd = rt.block_on(rspamd_support::start());
    let dir = TempDir::new("addons-rspamd");
    let ports = free_ports(2);
    let instance = format!("Rspamd: {{Url: \"{}\"}}", rspamd.url());
    let rules = [
        tag_rule(
            "spam",
            &is_true("POSTERN_RSPAMD", "is_spam"),
            "X-Spam",
            "yes",
        ),
        tag_rule(
            "gtube",
            "StringExpression: {Evaluate: {Analysis: {Analyzer: POSTERN_RSPAMD, ResultField: symbols}}, Operator: CONTAINS, Values: [GTUBE]}",
            "X-Rspamd-Symbol",
            "GTUBE",
        ),
        ARCHIVE_ALL.to_string(),
    ]
    .concat();
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(
            dir.path(),
            ports[0],
            ports[1],
            "",
            &[("POSTERN_RSPAMD", &instance)],
            "[]",
            &rules,
        ),
    );

    let spam = String::from_utf8(rspamd_support::email("offer", &rspamd_support::gtube())).unwrap();
    let ham = String::from_utf8(rspamd_support::email(
        "lunch",
        "Shall we meet for lunch at noon tomorrow?",
    ))
    .unwrap();
    let spam_id = gw.send("alice@example.net", &["bob@example.org"], &spam);
    let ham_id = gw.send("alice@example.net", &["bob@example.org"], &ham);

    let record = gw.wait_trace("Message", "QueueId", &spam_id);
    assert!(has_result(&record, "is_spam", "true"), "{record}");
    assert!(
        addon_results(&record)
            .iter()
            .any(|r| r.contains(" symbols = ") && r.contains("GTUBE")),
        "{record}"
    );
    assert_eq!(
        matched_rules(&record),
        ["spam", "gtube", "keep"],
        "{record}"
    );
    let eml = wait_for("the spam archived", || archived_subject(&gw, "offer"));
    let headers = header_section(&eml);
    assert!(has_header(&headers, "X-Spam", Some("yes")), "{headers}");
    assert!(
        has_header(&headers, "X-Rspamd-Symbol", Some("GTUBE")),
        "{headers}"
    );

    let record = gw.wait_trace("Message", "QueueId", &ham_id);
    assert!(has_result(&record, "is_spam", "false"), "{record}");
    assert_eq!(matched_rules(&record), ["keep"], "{record}");
    let eml = wait_for("the clean message archived", || {
        archived_subject(&gw, "lunch")
    });
    let headers = header_section(&eml);
    assert!(!has_header(&headers, "X-Spam", None), "{headers}");
    assert!(!has_header(&headers, "X-Rspamd-Symbol", None), "{headers}");
}

#[test]
fn clamav_results_in_rules() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clamd = rt.block_on(clamd_support::start());
    let dir = TempDir::new("addons-clamav");
    let ports = free_ports(2);
    let instance = format!("Clamav: {{Address: \"{}\"}}", clamd.tcp);
    let rules = [
        tag_rule(
            "named",
            &format!(
                "StringExpression: {{Evaluate: {{Analysis: {{Analyzer: POSTERN_CLAMAV, ResultField: signature}}}}, Operator: CONTAINS, Values: [{}]}}",
                clamd_support::SIGNATURE
            ),
            "X-Virus",
            "named",
        ),
        format!(
            "      - Name: virus\n        Conditions:\n          - {}\n        Actions:\n          - Drop: {{}}\n",
            is_true("POSTERN_CLAMAV", "infected")
        ),
        ARCHIVE_ALL.to_string(),
    ]
    .concat();
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(
            dir.path(),
            ports[0],
            ports[1],
            "",
            &[("POSTERN_CLAMAV", &instance)],
            "[]",
            &rules,
        ),
    );

    let with_subject = |attachment: &[u8], subject: &str| {
        String::from_utf8(clamd_support::email_with_attachment(attachment))
            .unwrap()
            .replace(
                "\r\nSubject: report\r\n",
                &format!("\r\nSubject: {subject}\r\n"),
            )
    };
    let infected_id = gw.send(
        "a@example.net",
        &["b@example.org"],
        &with_subject(&clamd_support::eicar(), "infected"),
    );
    let clean_id = gw.send(
        "a@example.net",
        &["b@example.org"],
        &with_subject(b"Quarterly figures: all fine.\r\n", "clean"),
    );

    let record = gw.wait_trace("Message", "QueueId", &infected_id);
    assert!(has_result(&record, "infected", "true"), "{record}");
    assert!(
        has_result(&record, "signature", &clamd_support::reported_signature()),
        "{record}"
    );
    assert_eq!(matched_rules(&record), ["named", "virus"], "{record}");
    assert_eq!(actions(&record), ["AddHeader", "Drop"], "{record}");
    assert_eq!(record["Recipients"][0]["Dropped"], true, "{record}");

    let record = gw.wait_trace("Message", "QueueId", &clean_id);
    assert!(has_result(&record, "infected", "false"), "{record}");
    assert!(has_result(&record, "signature", ""), "{record}");
    assert_eq!(matched_rules(&record), ["keep"], "{record}");
    let eml = wait_for("the clean message archived", || {
        archived_subject(&gw, "clean")
    });
    assert!(!has_header(&header_section(&eml), "X-Virus", None));
    // Both trace records are written after their actions ran: the infected
    // message was not archived.
    assert!(archived_subject(&gw, "infected").is_none());
    assert_eq!(gw.archived().len(), 1);
}

#[test]
fn an_engine_that_is_down_reads_processing_failed() {
    let dir = TempDir::new("addons-down");
    let ports = free_ports(3);
    // Nothing listens on ports[2].
    let instance = format!("Clamav: {{Address: \"127.0.0.1:{}\"}}", ports[2]);
    let rules = [
        tag_rule(
            "infected",
            &is_true("POSTERN_CLAMAV", "infected"),
            "X-Infected",
            "yes",
        ),
        tag_rule(
            "scan-failed",
            "VerdictExpression: {Evaluate: {Analysis: {Analyzer: POSTERN_CLAMAV, ResultField: verdict}}, Operator: EQUALS, Values: [PROCESSING_FAILED]}",
            "X-Scan",
            "failed",
        ),
        ARCHIVE_ALL.to_string(),
    ]
    .concat();
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(
            dir.path(),
            ports[0],
            ports[1],
            "",
            &[("POSTERN_CLAMAV", &instance)],
            "[]",
            &rules,
        ),
    );
    let id = gw.send(
        "a@example.net",
        &["b@example.org"],
        "From: a@example.net\r\nTo: b@example.org\r\nSubject: unscanned\r\n\r\nHello.\r\n",
    );
    let record = gw.wait_trace("Message", "QueueId", &id);
    assert!(
        has_result(&record, "infected", "PROCESSING_FAILED"),
        "{record}"
    );
    assert!(
        has_result(&record, "verdict", "PROCESSING_FAILED"),
        "{record}"
    );
    assert_eq!(matched_rules(&record), ["scan-failed", "keep"], "{record}");
    let eml = wait_for("the message archived", || {
        archived_subject(&gw, "unscanned")
    });
    let headers = header_section(&eml);
    assert!(has_header(&headers, "X-Scan", Some("failed")), "{headers}");
    assert!(!has_header(&headers, "X-Infected", None), "{headers}");
    wait_log(&gw, "the add-on's failure", |log| {
        log.contains("add-on failed") && log.contains("POSTERN_CLAMAV")
    });
}

/// Runs `postern serve` on `config`, which must refuse to start; returns
/// what it printed.
fn refused(dir: &Path, config: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("postern.yaml");
    std::fs::write(&file, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("serve")
        .arg("-c")
        .arg(&file)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("postern starts");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("postern serve started on a config it should refuse:\n{config}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(dir.join("stdout.log")).unwrap()
        + &std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(!status.success(), "{output}");
    output
}

#[test]
fn addon_config_errors_refuse_the_start() {
    let dir = TempDir::new("addons-config");
    let ports = free_ports(3);
    let instance = format!("Rspamd: {{Url: \"http://127.0.0.1:{}\"}}", ports[2]);

    // A traffic policy decides before the message arrives: it cannot read
    // Rspamd.
    let statements = format!(
        "[{{Action: DENY, Conditions: [{{{}}}]}}]",
        is_true("POSTERN_RSPAMD", "is_spam")
    );
    let output = refused(
        &dir.path().join("policy"),
        &gateway(
            &dir.path().join("policy"),
            ports[0],
            ports[1],
            "",
            &[("POSTERN_RSPAMD", &instance)],
            &statements,
            ARCHIVE_ALL,
        ),
    );
    assert!(
        output.contains(
            "TrafficPolicies[0].PolicyStatements[0].Conditions[0].BooleanExpression.Evaluate.Analysis"
        )
            && output.contains("needs the message"),
        "{output}"
    );

    // A result field the add-on does not have.
    let rules = [
        tag_rule(
            "bogus",
            &is_true("POSTERN_RSPAMD", "infected"),
            "X-Bogus",
            "yes",
        ),
        ARCHIVE_ALL.to_string(),
    ]
    .concat();
    let output = refused(
        &dir.path().join("field"),
        &gateway(
            &dir.path().join("field"),
            ports[0],
            ports[1],
            "",
            &[("POSTERN_RSPAMD", &instance)],
            "[]",
            &rules,
        ),
    );
    assert!(
        output.contains(
            "RuleSets[0].Rules[0].Conditions[0].BooleanExpression.Evaluate.Analysis.ResultField"
        ) && output.contains("infected"),
        "{output}"
    );
    for field in [
        "is_spam",
        "score",
        "required_score",
        "action",
        "symbols",
        "verdict",
    ] {
        assert!(output.contains(field), "{field}: {output}");
    }
}
