//! Actions against real peers, end to end: the `postern serve` binary as
//! the gateway, and as the peer a second `postern serve` (relay target,
//! AUTH and STARTTLS), a TCP server that never answers, moto's S3 server,
//! the machine's NATS JetStream, and a small HTTP server of the test.
//! Every wait is a bounded poll; nothing asserts on timing.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:relay-login";
const ROLE: &str = "arn:aws:iam::000000000000:role/postern";

/// A gateway config: an OPEN ingress point that allows everything, the
/// given rules (YAML items indented by 6), relays (items indented by 2) and
/// extra `Server` members (indented by 2). Retries are quick.
fn gateway(dir: &Path, smtp: u16, http: u16, server: &str, relays: &str, rules: &str) -> String {
    let relays = if relays.is_empty() {
        String::new()
    } else {
        format!("Relays:\n{relays}")
    };
    format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: gw.postern.test\n  Outbound:\n    RetryInitialSeconds: 1\n    RetryMaxSeconds: 2\n    ConnectTimeoutSeconds: 5\n    CommandTimeoutSeconds: 5\n{server}\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n{rules}\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: local\n{relays}",
        data = dir.join("data").display(),
    )
}

fn relay(name: &str, port: u16, extra: &str) -> String {
    format!(
        "  - RelayName: {name}\n    ServerName: localhost\n    ServerPort: {port}\n    Authentication: {{NoAuthentication: {{}}}}\n{extra}"
    )
}

fn message(subject: &str) -> String {
    format!(
        "From: Alice <alice@sender.test>\r\nTo: someone@dest.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\nHello from the test.\r\n"
    )
}

/// The archived messages of a server whose Subject is `subject`, with the
/// envelope Postern recorded beside each.
fn archived_with_subject(server: &Server, subject: &str) -> Vec<(Vec<u8>, Value)> {
    let needle = format!("\nSubject: {subject}\r\n");
    let mut out = Vec::new();
    for (stem, eml) in server.archived() {
        // The message's own header section, not a header returned in a DSN.
        let end = eml
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(eml.len());
        if contains(&eml[..end + 2], &needle) {
            // Bodies are written before the index: wait for its row.
            let json = wait_for(&format!("{stem} in the archive index"), || {
                server.archive_get(&stem)
            });
            out.push((eml, json));
        }
    }
    out
}

fn wait_subject(server: &Server, subject: &str, n: usize) -> Vec<(Vec<u8>, Value)> {
    wait_for(
        &format!(
            "{n} message(s) with subject {subject} at {}",
            server.dir.display()
        ),
        || {
            let found = archived_with_subject(server, subject);
            (found.len() >= n).then_some(found)
        },
    )
}

fn outbound_jobs(data: &Path) -> usize {
    std::fs::read_dir(data.join("outbound/queue"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn action_outcomes(record: &Value) -> Vec<(String, String)> {
    record["Recipients"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["Actions"].as_array().unwrap().clone())
        .map(|a| {
            (
                a["Action"].as_str().unwrap().to_string(),
                a["Outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn relay_with_auth_and_required_starttls_reaches_the_target() {
    let dir = TempDir::new("relay-auth");
    let ports = free_ports(4);
    let target_dir = dir.path().join("target");
    std::fs::create_dir_all(&target_dir).unwrap();
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(&target_dir, ports[0], ports[1], Some("relay-pass"), "[]"),
    );
    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    std::fs::write(
        gw_dir.join("relay-login.json"),
        r#"{"username":"target","password":"relay-pass"}"#,
    )
    .unwrap();
    let server = format!(
        "    TrustedCaFile: {ca}\n    MailFrom: bounces@gw.postern.test\n  Secrets:\n    {SECRET_ARN}: {{File: relay-login.json}}\n",
        ca = target_dir.join("data/tls/cert.pem").display()
    );
    let relays = format!(
        "  - RelayName: upstream\n    ServerName: localhost\n    ServerPort: {}\n    Authentication: {{SecretArn: {SECRET_ARN}}}\n    Tls: REQUIRED\n",
        ports[0]
    );
    let rules = "      - Name: preserve\n        Conditions:\n          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: STARTS_WITH, Values: [keep]}\n        Actions:\n          - AddHeader: {HeaderName: X-Gateway, HeaderValue: relayed}\n          - Relay: {Relay: upstream, MailFrom: PRESERVE}\n      - Name: replace\n        Conditions:\n          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: STARTS_WITH, Values: [swap]}\n        Actions:\n          - Relay: {Relay: upstream, MailFrom: REPLACE}\n";
    let gw = Server::start(
        &gw_dir,
        ports[2],
        &gateway(&gw_dir, ports[2], ports[3], &server, &relays, rules),
    );

    let id = gw.send(
        "alice@sender.test",
        &["keep@dest.test", "swap@dest.test"],
        &message("relay-auth"),
    );
    let got = wait_subject(&target, "relay-auth", 2);
    let by_rcpt = |rcpt: &str| {
        got.iter()
            .find(|(_, json)| {
                json["Envelope"]["To"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == rcpt)
            })
            .unwrap_or_else(|| panic!("nothing for {rcpt}: {got:?}"))
            .clone()
    };
    let (kept, kept_meta) = by_rcpt("keep@dest.test");
    assert_eq!(
        kept_meta["Envelope"]["From"], "alice@sender.test",
        "PRESERVE keeps the sender"
    );
    assert!(
        contains(&kept, "X-Gateway: relayed\r\n"),
        "headers added by rules travel"
    );
    assert!(
        contains(&kept, "by gw.postern.test"),
        "the gateway's Received header travels"
    );
    let (_, swapped_meta) = by_rcpt("swap@dest.test");
    assert_eq!(
        swapped_meta["Envelope"]["From"], "bounces@gw.postern.test",
        "REPLACE puts Server.Outbound.MailFrom"
    );
    // The target saw TLS and AUTH: its Received header says so.
    assert!(
        contains(&kept, "ESMTPSA") || contains(&kept, "ESMTPS"),
        "{}",
        String::from_utf8_lossy(&kept)
    );

    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    assert!(
        delivery["Recipients"][0]["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("delivered: 250"),
        "{delivery}"
    );
    let message_record = gw.wait_trace("Message", "QueueId", &id);
    assert!(
        action_outcomes(&message_record)
            .iter()
            .any(|(a, o)| a == "Relay" && o.starts_with("queued as ")),
        "{message_record}"
    );
    wait_for("the outbound queue to empty", || {
        (outbound_jobs(&gw.data) == 0).then_some(())
    });
}

#[test]
fn relay_that_refuses_the_wrong_password_is_retried_not_bounced() {
    let dir = TempDir::new("relay-badauth");
    let ports = free_ports(4);
    let target_dir = dir.path().join("target");
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(
            &target_dir,
            ports[0],
            ports[1],
            Some("right-password"),
            "[]",
        ),
    );
    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    std::fs::write(
        gw_dir.join("login.json"),
        r#"{"username":"target","password":"wrong-password"}"#,
    )
    .unwrap();
    let server = format!(
        "    TrustedCaFile: {ca}\n  Secrets:\n    {SECRET_ARN}: {{File: login.json}}\n",
        ca = target_dir.join("data/tls/cert.pem").display()
    );
    let relays = format!(
        "  - RelayName: upstream\n    ServerName: localhost\n    ServerPort: {}\n    Authentication: {{SecretArn: {SECRET_ARN}}}\n    Tls: REQUIRED\n",
        ports[0]
    );
    let rules = "      - Name: relay\n        Actions:\n          - Relay: {Relay: upstream}\n";
    let gw = Server::start(
        &gw_dir,
        ports[2],
        &gateway(&gw_dir, ports[2], ports[3], &server, &relays, rules),
    );
    gw.send(
        "alice@sender.test",
        &["bob@dest.test"],
        &message("bad-auth"),
    );
    wait_for("a deferral naming AUTH", || {
        let log = gw.log();
        (log.contains("delivery deferred") && log.contains("AUTH")).then_some(())
    });
    assert!(archived_with_subject(&target, "bad-auth").is_empty());
}

#[test]
fn relay_down_then_up_delivers_exactly_once() {
    let dir = TempDir::new("relay-down");
    let ports = free_ports(4);
    let gw_dir = dir.path().join("gw");
    let rules = "      - Name: relay\n        Actions:\n          - Relay: {Relay: upstream}\n";
    let gw = Server::start(
        &gw_dir,
        ports[2],
        &gateway(
            &gw_dir,
            ports[2],
            ports[3],
            "",
            &relay("upstream", ports[0], "    Tls: NONE\n"),
            rules,
        ),
    );
    let id = gw.send("alice@sender.test", &["bob@dest.test"], &message("down-up"));
    gw_wait_log(&gw, "delivery deferred");
    let target_dir = dir.path().join("target");
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(&target_dir, ports[0], ports[1], None, "[]"),
    );
    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    assert!(delivery["Attempts"].as_u64().unwrap() >= 2, "{delivery}");
    assert!(
        delivery["Recipients"][0]["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("delivered"),
        "{delivery}"
    );
    wait_for("the outbound queue to empty", || {
        (outbound_jobs(&gw.data) == 0).then_some(())
    });
    let got = wait_subject(&target, "down-up", 1);
    // Nothing is left that could send it again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        archived_with_subject(&target, "down-up").len(),
        1,
        "delivered exactly once: {got:?}"
    );
}

fn gw_wait_log(server: &Server, text: &str) {
    wait_for(&format!("{text:?} in the log"), || {
        server.log().contains(text).then_some(())
    });
}

#[test]
fn permanent_failure_sends_a_dsn_and_none_for_the_null_sender() {
    let dir = TempDir::new("relay-dsn");
    let ports = free_ports(4);
    let target_dir = dir.path().join("target");
    // The target refuses nobody@ with 550.
    let deny = "[{Action: DENY, Conditions: [{StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: STARTS_WITH, Values: [nobody]}}]}]";
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(&target_dir, ports[0], ports[1], None, deny),
    );
    let gw_dir = dir.path().join("gw");
    let server = "    BounceRelay: upstream\n";
    let rules = "      - Name: relay\n        Actions:\n          - Relay: {Relay: upstream}\n";
    let gw = Server::start(
        &gw_dir,
        ports[2],
        &gateway(
            &gw_dir,
            ports[2],
            ports[3],
            server,
            &relay("upstream", ports[0], "    Tls: NONE\n"),
            rules,
        ),
    );

    let id = gw.send(
        "alice@sender.test",
        &["nobody@dest.test", "bob@dest.test"],
        &message("dsn-me"),
    );
    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    let outcomes: Vec<&str> = delivery["Recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes[0].starts_with("failed: ") && outcomes[0].contains("550"),
        "{outcomes:?}"
    );
    assert!(outcomes[1].starts_with("delivered: 250"), "{outcomes:?}");
    assert!(
        delivery["Dsn"]
            .as_str()
            .unwrap()
            .starts_with("DSN queued as "),
        "{delivery}"
    );

    let dsns = wait_subject(&target, "Undelivered Mail Returned to Sender", 1);
    let (dsn, meta) = &dsns[0];
    assert_eq!(meta["Envelope"]["From"], "", "a DSN is sent from <>");
    assert_eq!(meta["Envelope"]["To"][0], "alice@sender.test");
    let text = String::from_utf8_lossy(dsn);
    assert!(text.contains("multipart/report"), "{text}");
    assert!(
        text.contains("report-type=\"delivery-status\"")
            || text.contains("report-type=delivery-status"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: rfc822; nobody@dest.test"),
        "{text}"
    );
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("Status: 5."), "{text}");
    assert!(
        text.contains("From: \"Mail Delivery System\" <MAILER-DAEMON@gw.postern.test>"),
        "{text}"
    );
    assert!(
        text.contains("Subject: dsn-me"),
        "the original header is returned: {text}"
    );
    assert!(
        !text.contains("bob@dest.test\r\nAction"),
        "only the failed recipient is reported"
    );
    assert_eq!(wait_subject(&target, "dsn-me", 1).len(), 1);

    // From <>: the failure is final, and no DSN goes anywhere.
    let id = gw.send("", &["nobody@dest.test"], &message("null-sender"));
    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    assert!(
        delivery["Recipients"][0]["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("failed"),
        "{delivery}"
    );
    assert!(
        delivery["Dsn"].as_str().unwrap().starts_with("no DSN"),
        "{delivery}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        archived_with_subject(&target, "Undelivered Mail Returned to Sender").len(),
        1,
        "no second DSN"
    );
}

/// Accepts connections and never says a word.
fn silent_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    (port, handle)
}

#[test]
fn a_relay_that_stalls_times_out_and_fails_at_the_end_of_the_lifetime() {
    let dir = TempDir::new("relay-stall");
    let ports = free_ports(2);
    let (silent, _t) = silent_server();
    let gw_dir = dir.path().join("gw");
    let server = "    MaxLifetimeSeconds: 4\n    ConnectTimeoutSeconds: 1\n";
    let rules = "      - Name: relay\n        Actions:\n          - Relay: {Relay: upstream}\n";
    let config = gateway(
        &gw_dir,
        ports[0],
        ports[1],
        server,
        &relay("upstream", silent, "    Tls: NONE\n"),
        rules,
    )
    .replace("    ConnectTimeoutSeconds: 5\n", "");
    let gw = Server::start(&gw_dir, ports[0], &config);
    let id = gw.send("", &["bob@dest.test"], &message("stalled"));
    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    let outcome = delivery["Recipients"][0]["Outcome"].as_str().unwrap();
    assert!(outcome.starts_with("failed: gave up after "), "{outcome}");
    assert!(
        outcome.contains("timeout") || outcome.contains("timed out"),
        "{outcome}"
    );
}

#[test]
fn queued_deliveries_survive_sigkill_without_loss_or_duplicates() {
    let dir = TempDir::new("relay-kill");
    let ports = free_ports(4);
    let gw_dir = dir.path().join("gw");
    let rules = "      - Name: relay\n        Actions:\n          - Relay: {Relay: upstream}\n";
    let mut gw = Server::start(
        &gw_dir,
        ports[2],
        &gateway(
            &gw_dir,
            ports[2],
            ports[3],
            "",
            &relay("upstream", ports[0], "    Tls: NONE\n"),
            rules,
        ),
    );
    const N: usize = 12;
    for i in 0..N {
        gw.send(
            "alice@sender.test",
            &["bob@dest.test"],
            &message(&format!("kill-{i}")),
        );
    }
    wait_for("every message's job queued and deferred", || {
        (outbound_jobs(&gw.data) == N && gw.log().matches("delivery deferred").count() >= N)
            .then_some(())
    });
    gw.kill();
    assert_eq!(outbound_jobs(&gw.data), N, "every job is on disk");
    let target_dir = dir.path().join("target");
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(&target_dir, ports[0], ports[1], None, "[]"),
    );
    let gw = Server::run(&gw_dir, ports[2]);
    wait_for("the outbound queue to empty", || {
        (outbound_jobs(&gw.data) == 0).then_some(())
    });
    for i in 0..N {
        assert_eq!(
            wait_subject(&target, &format!("kill-{i}"), 1).len(),
            1,
            "kill-{i} exactly once"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..N {
        assert_eq!(
            archived_with_subject(&target, &format!("kill-{i}")).len(),
            1,
            "kill-{i} exactly once"
        );
    }
}

/// moto's S3 server on a free port, killed when dropped.
struct Moto(Child, u16);

impl Moto {
    fn start() -> Moto {
        let port = free_ports(1)[0];
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]')");
        wait_for("moto to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Moto(child, port)
    }

    fn boto(&self, script: &str) -> String {
        let output = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import boto3\ns3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{script}",
                self.1
            ))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s3_rule(name: &str, prefix: &str, policy: &str, then_archive: bool) -> String {
    let archive = if then_archive {
        "          - Archive: {TargetArchive: local}\n"
    } else {
        ""
    };
    format!(
        "      - Name: {name}\n        Conditions:\n          - StringExpression: {{Evaluate: {{Attribute: RECIPIENT}}, Operator: STARTS_WITH, Values: [{name}]}}\n        Actions:\n          - WriteToS3: {{S3Bucket: mail, S3Prefix: {prefix}, RoleArn: \"{ROLE}\", ActionFailurePolicy: {policy}}}\n{archive}"
    )
}

#[test]
fn write_to_s3_stores_the_message_in_an_s3_compatible_server() {
    let moto = Moto::start();
    moto.boto("s3.create_bucket(Bucket='mail')");
    let dir = TempDir::new("s3");
    let ports = free_ports(2);
    let server = format!(
        "  ObjectStorage:\n    S3:\n      Endpoint: http://127.0.0.1:{}\n      Region: us-east-1\n      AccessKeyId: {{File: key}}\n      SecretAccessKey: {{File: key}}\n",
        moto.1
    );
    std::fs::write(dir.path().join("key"), "test\n").unwrap();
    let rules = s3_rule("store", "incoming/2026", "CONTINUE", false);
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(dir.path(), ports[0], ports[1], &server, "", &rules),
    );
    let id = gw.send("alice@sender.test", &["store@dest.test"], &message("to-s3"));
    let record = gw.wait_trace("Message", "QueueId", &id);
    assert_eq!(
        action_outcomes(&record),
        vec![(
            "WriteToS3".to_string(),
            format!("written to s3://mail/incoming/2026/{id}")
        )]
    );
    let body = moto.boto(&format!(
        "print(s3.get_object(Bucket='mail', Key='incoming/2026/{id}')['Body'].read().decode())"
    ));
    assert!(body.contains("Subject: to-s3"), "{body}");
    assert!(body.starts_with("Received: from client.test"), "{body}");
}

#[test]
fn write_to_s3_failure_policy_drop_stops_and_continue_goes_on() {
    let dir = TempDir::new("s3-down");
    let ports = free_ports(3);
    // Nothing listens on ports[2].
    let server = format!(
        "  ObjectStorage:\n    S3:\n      Endpoint: http://127.0.0.1:{}\n      AccessKeyId: {{File: key}}\n      SecretAccessKey: {{File: key}}\n",
        ports[2]
    );
    std::fs::write(dir.path().join("key"), "test\n").unwrap();
    let rules = format!(
        "{}{}",
        s3_rule("drop", "p", "DROP", true),
        s3_rule("cont", "p", "CONTINUE", true)
    );
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(dir.path(), ports[0], ports[1], &server, "", &rules),
    );
    let dropped = gw.send(
        "alice@sender.test",
        &["drop@dest.test"],
        &message("s3-drop"),
    );
    let continued = gw.send(
        "alice@sender.test",
        &["cont@dest.test"],
        &message("s3-continue"),
    );
    let record = gw.wait_trace("Message", "QueueId", &dropped);
    let outcomes = action_outcomes(&record);
    assert!(
        outcomes[0].1.starts_with("failed: s3://mail/p/"),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1],
        ("Archive".to_string(), "not reached".to_string()),
        "DROP stops: {outcomes:?}"
    );
    let record = gw.wait_trace("Message", "QueueId", &continued);
    let outcomes = action_outcomes(&record);
    assert!(outcomes[0].1.starts_with("failed: "), "{outcomes:?}");
    assert_eq!(
        outcomes[1],
        ("Archive".to_string(), "archived in local".to_string()),
        "CONTINUE goes on: {outcomes:?}"
    );
    assert!(archived_with_subject(&gw, "s3-drop").is_empty());
    assert_eq!(archived_with_subject(&gw, "s3-continue").len(), 1);
}

#[test]
fn write_to_s3_defaults_to_a_directory_under_the_data_dir() {
    let dir = TempDir::new("s3-dir");
    let ports = free_ports(2);
    let rules = s3_rule("store", "in", "CONTINUE", false);
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(dir.path(), ports[0], ports[1], "", "", &rules),
    );
    let id = gw.send(
        "alice@sender.test",
        &["store@dest.test"],
        &message("to-dir"),
    );
    gw.wait_trace("Message", "QueueId", &id);
    let stored = std::fs::read(gw.data.join(format!("s3/mail/in/{id}"))).unwrap();
    assert!(contains(&stored, "Subject: to-dir\r\n"));
}

#[test]
fn publish_to_sns_posts_an_ses_notification_to_a_webhook() {
    let hook = HttpSink::start(|_| (200, "{}".into()));
    let dir = TempDir::new("sns-webhook");
    let ports = free_ports(2);
    let topic = "arn:aws:sns:us-east-1:000000000000:inbound";
    let server = format!(
        "  Topics:\n    {topic}:\n      Webhook:\n        Url: {}\n        Headers: {{Authorization: Bearer t0ken}}\n",
        hook.url("/sns")
    );
    let rules = format!(
        "      - Name: notify\n        Actions:\n          - PublishToSns: {{TopicArn: \"{topic}\", RoleArn: \"{ROLE}\", Encoding: BASE64, PayloadType: CONTENT}}\n"
    );
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(dir.path(), ports[0], ports[1], &server, "", &rules),
    );
    let id = gw.send(
        "alice@sender.test",
        &["bob@dest.test"],
        &message("sns-hook"),
    );
    let request = &hook.wait_requests(1)[0];
    assert_eq!(request.path, "/sns");
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer t0ken")
    );
    let doc: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(doc["notificationType"], "Received");
    assert_eq!(doc["mail"]["messageId"], id.as_str());
    assert_eq!(doc["mail"]["source"], "alice@sender.test");
    assert_eq!(doc["mail"]["destination"][0], "bob@dest.test");
    assert_eq!(doc["mail"]["commonHeaders"]["subject"], "sns-hook");
    assert_eq!(doc["receipt"]["action"]["type"], "SNS");
    assert_eq!(doc["receipt"]["action"]["topicArn"], topic);
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD
        .decode(doc["content"].as_str().unwrap())
        .unwrap();
    assert!(contains(&content, "Subject: sns-hook\r\n"));
    let record = gw.wait_trace("Message", "QueueId", &id);
    assert!(
        action_outcomes(&record)[0].1.starts_with("published to "),
        "{record}"
    );
}

#[test]
fn publish_to_sns_stores_the_notification_in_nats_jetstream() {
    let unique = format!("t{}{}", std::process::id(), free_ports(1)[0]);
    let subject = format!("postern.test.{unique}");
    let stream = format!("POSTERN_TEST_{unique}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _inside = rt.enter();
    let client = rt
        .block_on(async_nats::connect("nats://127.0.0.1:4222"))
        .expect("NATS with JetStream on 127.0.0.1:4222");
    let js = async_nats::jetstream::new(client);
    rt.block_on(js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    }))
    .unwrap();

    let dir = TempDir::new("sns-nats");
    let ports = free_ports(2);
    let topic = "arn:aws:sns:us-east-1:000000000000:to-nats";
    let server = format!(
        "  Topics:\n    {topic}:\n      Nats: {{Url: \"nats://127.0.0.1:4222\", Subject: {subject}}}\n"
    );
    let rules = format!(
        "      - Name: notify\n        Actions:\n          - PublishToSns: {{TopicArn: \"{topic}\", RoleArn: \"{ROLE}\", PayloadType: HEADERS}}\n"
    );
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(dir.path(), ports[0], ports[1], &server, "", &rules),
    );
    let id = gw.send(
        "alice@sender.test",
        &["bob@dest.test"],
        &message("sns-nats"),
    );
    gw.wait_trace("Message", "QueueId", &id);
    let stored = rt.block_on(async {
        let mut s = js.get_stream(&stream).await.unwrap();
        let info = s.info().await.unwrap();
        assert_eq!(info.state.messages, 1);
        s.get_raw_message(1).await.unwrap()
    });
    let doc: Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(doc["mail"]["messageId"], id.as_str());
    assert!(doc.get("content").is_none(), "HEADERS carries no content");
    rt.block_on(js.delete_stream(&stream)).unwrap();
}

#[test]
fn invoke_lambda_request_response_disposition_stops_the_rule_set() {
    let function = HttpSink::start(|_| (200, r#"{"disposition":"STOP_RULE_SET"}"#.into()));
    let dir = TempDir::new("lambda-sync");
    let ports = free_ports(2);
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:screen";
    let server = format!(
        "  Functions:\n    \"{arn}\": {{Url: \"{}\"}}\n",
        function.url("/invoke")
    );
    let rules = format!(
        "      - Name: screen\n        Actions:\n          - InvokeLambda: {{FunctionArn: \"{arn}\", InvocationType: REQUEST_RESPONSE, RoleArn: \"{ROLE}\"}}\n          - AddHeader: {{HeaderName: X-After, HeaderValue: same-rule}}\n      - Name: later\n        Actions:\n          - Archive: {{TargetArchive: local}}\n"
    );
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(dir.path(), ports[0], ports[1], &server, "", &rules),
    );
    let id = gw.send(
        "alice@sender.test",
        &["bob@dest.test"],
        &message("lambda-sync"),
    );
    let record = gw.wait_trace("Message", "QueueId", &id);
    let outcomes = action_outcomes(&record);
    assert_eq!(outcomes[0].0, "InvokeLambda");
    assert!(outcomes[0].1.ends_with("STOP_RULE_SET"), "{outcomes:?}");
    assert!(
        outcomes[1]
            .1
            .starts_with("not executed: InvokeLambda returned STOP_RULE_SET"),
        "{outcomes:?}"
    );
    assert!(outcomes[2].1.starts_with("not executed"), "{outcomes:?}");
    assert!(archived_with_subject(&gw, "lambda-sync").is_empty());
    let event: Value = serde_json::from_slice(&function.wait_requests(1)[0].body).unwrap();
    assert_eq!(event["Records"][0]["eventSource"], "aws:ses");
    assert_eq!(event["Records"][0]["ses"]["mail"]["messageId"], id.as_str());
}

#[test]
fn invoke_lambda_event_and_q_business_are_retried_through_the_queue() {
    // The function fails twice, then accepts.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let function = HttpSink::start(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            (503, "busy".into())
        } else {
            (202, String::new())
        }
    });
    let q = HttpSink::start(|_| (200, "{}".into()));
    let dir = TempDir::new("lambda-event");
    let ports = free_ports(2);
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:later";
    let app = "0123456789abcdef0123456789abcdef0123";
    let server = format!(
        "  Functions:\n    \"{arn}\": {{Url: \"{}\"}}\n  QBusinessApplications:\n    \"{app}\": {{Url: \"{}\"}}\n",
        function.url("/event"),
        q.url("/q")
    );
    let rules = format!(
        "      - Name: later\n        Actions:\n          - InvokeLambda: {{FunctionArn: \"{arn}\", InvocationType: EVENT, RetryTimeMinutes: 5, RoleArn: \"{ROLE}\"}}\n          - DeliverToQBusiness: {{ApplicationId: \"{app}\", IndexId: \"0123456789abcdef0123456789abcdef0123\", RoleArn: \"{ROLE}\"}}\n"
    );
    let gw = Server::start(
        dir.path(),
        ports[0],
        &gateway(dir.path(), ports[0], ports[1], &server, "", &rules),
    );
    let id = gw.send(
        "alice@sender.test",
        &["bob@dest.test"],
        &message("lambda-event"),
    );
    let deliveries = wait_for("two finished deliveries", || {
        let d: Vec<Value> = gw
            .trace()
            .into_iter()
            .filter(|r| r["Kind"] == "Delivery" && r["Parent"] == id.as_str())
            .collect();
        (d.len() == 2).then_some(d)
    });
    let lambda = deliveries
        .iter()
        .find(|d| d["Action"] == "InvokeLambda")
        .unwrap();
    assert_eq!(lambda["Attempts"], 3, "{lambda}");
    assert!(
        lambda["Recipients"][0]["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("delivered"),
        "{lambda}"
    );
    assert_eq!(function.wait_requests(3).len(), 3);
    let doc: Value = serde_json::from_slice(&q.wait_requests(1)[0].body).unwrap();
    assert_eq!(doc["applicationId"], app);
    assert_eq!(doc["document"]["contentType"], "message/rfc822");
}

#[test]
fn bounce_action_sends_the_dsn_it_describes_to_the_sender() {
    let dir = TempDir::new("bounce");
    let ports = free_ports(4);
    let target_dir = dir.path().join("target");
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(&target_dir, ports[0], ports[1], None, "[]"),
    );
    let gw_dir = dir.path().join("gw");
    let server = "    BounceRelay: dsn-out\n";
    let rules = format!(
        "      - Name: refuse\n        Actions:\n          - Bounce: {{RoleArn: \"{ROLE}\", Sender: postmaster@gw.postern.test, StatusCode: 5.7.1, SmtpReplyCode: \"550\", DiagnosticMessage: not accepted here, Message: Your mail was refused by policy.}}\n          - Drop: {{}}\n"
    );
    let gw = Server::start(
        &gw_dir,
        ports[2],
        &gateway(
            &gw_dir,
            ports[2],
            ports[3],
            server,
            &relay("dsn-out", ports[0], "    Tls: NONE\n"),
            &rules,
        ),
    );
    gw.send(
        "alice@sender.test",
        &["bob@dest.test"],
        &message("bounce-me"),
    );
    let (dsn, meta) = wait_subject(&target, "Undelivered Mail Returned to Sender", 1).remove(0);
    assert_eq!(meta["Envelope"]["From"], "");
    assert_eq!(meta["Envelope"]["To"][0], "alice@sender.test");
    let text = String::from_utf8_lossy(&dsn);
    assert!(text.contains("<postmaster@gw.postern.test>"), "{text}");
    assert!(text.contains("Your mail was refused by policy."), "{text}");
    assert!(text.contains("Status: 5.7.1"), "{text}");
    assert!(
        text.contains("Diagnostic-Code: smtp; 550 5.7.1 not accepted here"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: rfc822; bob@dest.test"),
        "{text}"
    );

    // No bounce to <>.
    let id = gw.send("", &["bob@dest.test"], &message("bounce-null"));
    let record = gw.wait_trace("Message", "QueueId", &id);
    assert_eq!(action_outcomes(&record)[0].1, "no bounce: the sender is <>");
}
