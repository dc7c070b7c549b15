//! DeliverToMailbox end to end: a real Dovecot LMTP server (over TCP and
//! over its unix socket) with two users; LMTP's per-recipient replies decide
//! each recipient's outcome, and the unknown user's failure comes back to
//! the sender as a DSN (through a second `postern serve` as bounce relay).
//! And the Maildir backend.

mod support;

#[path = "../../postern-delivery/tests/support/dovecot.rs"]
mod dovecot_support;
#[path = "../../postern-delivery/tests/support/peers.rs"]
mod peers;

use support::*;

const MAILBOX: &str = "arn:aws:workmail:us-east-1:000000000000:organization/m-dovecot";
const SOCKET_MAILBOX: &str = "arn:aws:workmail:us-east-1:000000000000:organization/m-socket";

fn new_files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(dir.join("new"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lmtp_replies_decide_each_recipient_and_the_unknown_one_bounces() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dovecot = rt.block_on(dovecot_support::dovecot());
    let dir = TempDir::new("mailbox");
    let ports = free_ports(4);
    let target_dir = dir.path().join("bounces");
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(&target_dir, ports[0], ports[1], None, "[]"),
    );
    let gw_dir = dir.path().join("gw");
    let config = format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: gw.postern.test\n  Outbound:\n    BounceRelay: bounces\n  Mailboxes:\n    {MAILBOX}: {{Lmtp: \"{lmtp}\"}}\n    {SOCKET_MAILBOX}: {{LmtpSocket: \"{socket}\"}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: over-tcp\n        Conditions:\n          - StringExpression: {{Evaluate: {{MimeHeaderAttribute: X-Path}}, Operator: EQUALS, Values: [tcp]}}\n        Actions:\n          - DeliverToMailbox: {{MailboxArn: \"{MAILBOX}\", RoleArn: \"arn:aws:iam::000000000000:role/r\"}}\n      - Name: over-socket\n        Conditions:\n          - StringExpression: {{Evaluate: {{MimeHeaderAttribute: X-Path}}, Operator: EQUALS, Values: [socket]}}\n        Actions:\n          - DeliverToMailbox: {{MailboxArn: \"{SOCKET_MAILBOX}\", RoleArn: \"arn:aws:iam::000000000000:role/r\"}}\n\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Relays:\n  - RelayName: bounces\n    ServerName: localhost\n    ServerPort: {relay}\n    Authentication: {{NoAuthentication: {{}}}}\n    Tls: NONE\n",
        data = gw_dir.join("data").display(),
        http = ports[3],
        lmtp = dovecot.addr,
        socket = dovecot.socket.display(),
        smtp = ports[2],
        relay = ports[0],
    );
    let gw = Server::start(&gw_dir, ports[2], &config);

    let message = "From: sender@outside.test\r\nTo: alice@example.test\r\nSubject: to-mailboxes\r\nX-Path: tcp\r\n\r\nfor the mailboxes\r\n";
    let id = gw.send(
        "sender@outside.test",
        &[
            "alice@example.test",
            "bob@example.test",
            "carol@example.test",
        ],
        message,
    );
    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    let outcomes: Vec<(String, String)> = delivery["Recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Recipient"].as_str().unwrap().to_string(),
                r["Outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(outcomes[0].1.starts_with("delivered: 250"), "{outcomes:?}");
    assert!(
        outcomes[1].1.starts_with("failed: ") && outcomes[1].1.contains("5.1.1"),
        "{outcomes:?}"
    );
    assert!(outcomes[2].1.starts_with("delivered: 250"), "{outcomes:?}");
    for user in ["alice@example.test", "carol@example.test"] {
        let files = new_files(&dovecot.mail.join(user));
        assert_eq!(files.len(), 1, "{user}");
        assert!(contains(&files[0], "Subject: to-mailboxes"));
        assert!(
            contains(&files[0], "by gw.postern.test"),
            "the gateway's Received header travels"
        );
    }
    let dsn = wait_for("the DSN about bob", || {
        target
            .archived()
            .into_iter()
            .map(|(_, eml)| eml)
            .find(|eml| contains(eml, "Final-Recipient: rfc822; bob@example.test"))
    });
    assert!(
        contains(&dsn, "Status: 5.1.1"),
        "{}",
        String::from_utf8_lossy(&dsn)
    );

    // Over the unix socket.
    let message = message
        .replace("X-Path: tcp", "X-Path: socket")
        .replace("to-mailboxes", "via-socket");
    let id = gw.send("sender@outside.test", &["alice@example.test"], &message);
    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    assert!(
        delivery["Recipients"][0]["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("delivered"),
        "{delivery}"
    );
    assert_eq!(new_files(&dovecot.mail.join("alice@example.test")).len(), 2);
}

#[test]
fn maildir_backend_stores_one_copy() {
    let dir = TempDir::new("maildir");
    let ports = free_ports(2);
    let config = format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Mailboxes:\n    shared: {{Maildir: shared-mail}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: keep\n        Actions:\n          - DeliverToMailbox: {{MailboxArn: shared, RoleArn: \"arn:aws:iam::000000000000:role/r\"}}\n\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n",
        data = dir.path().join("data").display(),
        http = ports[1],
        smtp = ports[0],
    );
    let gw = Server::start(dir.path(), ports[0], &config);
    let id = gw.send(
        "a@outside.test",
        &["x@example.test", "y@example.test"],
        "Subject: maildir\r\n\r\nbody\r\n",
    );
    let delivery = gw.wait_trace("Delivery", "Parent", &id);
    assert_eq!(delivery["Recipients"].as_array().unwrap().len(), 2);
    let files = new_files(&dir.path().join("shared-mail"));
    assert_eq!(files.len(), 1, "one copy for both recipients");
    assert!(contains(&files[0], "Subject: maildir"));
}
