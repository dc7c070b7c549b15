//! The Send action end to end: MX records from a DNS server on loopback
//! (hickory-server, the resolver configured with `Server.Dns`) point at a
//! second `postern serve`; the message arrives DKIM-signed, and the
//! signature verifies against the key published in the same DNS. A domain
//! with a null MX fails at once, and the DSN finds the sender's domain
//! through MX too.

mod support;

#[path = "../../postern-delivery/tests/support/dns_server.rs"]
mod dns_server;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use support::*;

const RSA_KEY: &str = include_str!("../../postern-delivery/tests/keys/rsa-pkcs8.pem");
const RSA_PUBLIC: &str = include_str!("../../postern-delivery/tests/keys/rsa.pub.b64");

fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn send_finds_the_mx_signs_with_dkim_and_bounces_a_null_mx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let zone = format!(
        "@ 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60\n\
dest 3600 IN MX 10 mx1.dest\n\
dest 3600 IN MX 20 mx2.dest\n\
mx1.dest 3600 IN A 127.0.0.1\n\
mx2.dest 3600 IN A 127.0.0.1\n\
sender 3600 IN MX 10 mx.sender\n\
mx.sender 3600 IN A 127.0.0.1\n\
nomail 3600 IN MX 0 .\n\
sel._domainkey.sender 3600 IN TXT {}\n",
        txt(&format!("v=DKIM1; k=rsa; p={}", RSA_PUBLIC.trim()))
    );
    let dns = rt.block_on(dns_server::serve("test.", &zone));

    let dir = TempDir::new("send");
    let ports = free_ports(4);
    let target_dir = dir.path().join("mx");
    let target = Server::start(
        &target_dir,
        ports[0],
        &target_config(&target_dir, ports[0], ports[1], None, "[]"),
    );

    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    std::fs::write(gw_dir.join("dkim.pem"), RSA_KEY).unwrap();
    let config = format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: gw.postern.test\n  Dns:\n    Nameservers: [\"{dns}\"]\n  Outbound:\n    SmtpPort: {mx}\n    RetryInitialSeconds: 1\n    DkimKeys:\n      - {{Domain: sender.test, Selector: sel, PrivateKeyFile: dkim.pem}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: out\n        Actions:\n          - Send: {{RoleArn: \"arn:aws:iam::000000000000:role/send\"}}\n\
IngressPoints:\n  - IngressPointName: gateway\n    Type: AUTH\n    IngressPointConfiguration: {{SmtpPassword: \"submit-password\"}}\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n",
        data = gw_dir.join("data").display(),
        http = ports[3],
        dns = dns.addr,
        mx = ports[0],
        smtp = ports[2],
    );
    let gw = Server::start(&gw_dir, ports[2], &config);

    let message = "From: Alice <alice@sender.test>\r\nTo: bob@dest.test\r\nSubject: sent-out\r\nDate: Wed, 25 Nov 2026 12:00:00 +0000\r\nMessage-ID: <sent-out@sender.test>\r\n\r\nHello over MX.\r\n";
    // Submitted with AUTH: Send signs only mail from a client that logged in.
    let id = send_as(
        ports[2],
        Some(("gateway", "submit-password")),
        "alice@sender.test",
        &["bob@dest.test", "carol@nomail.test"],
        message,
    );

    // Two jobs, one per domain.
    let deliveries = wait_for("both deliveries in the trace", || {
        let d: Vec<serde_json::Value> = gw
            .trace()
            .into_iter()
            .filter(|r| r["Kind"] == "Delivery" && r["Parent"] == id.as_str())
            .collect();
        (d.len() == 2).then_some(d)
    });
    let dest = deliveries
        .iter()
        .find(|d| d["Destination"] == "mx:dest.test")
        .unwrap();
    assert!(
        dest["Recipients"][0]["Outcome"]
            .as_str()
            .unwrap()
            .starts_with("delivered: 250"),
        "{dest}"
    );
    let nomail = deliveries
        .iter()
        .find(|d| d["Destination"] == "mx:nomail.test")
        .unwrap();
    let outcome = nomail["Recipients"][0]["Outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("failed: ") && outcome.contains("null MX"),
        "{outcome}"
    );
    assert_eq!(nomail["Attempts"], 1, "a null MX is final at once");

    // The message, signed; the signature verifies with the published key.
    let delivered = wait_for("the message at the MX", || {
        target
            .archived()
            .into_iter()
            .map(|(_, eml)| eml)
            .find(|eml| {
                contains(eml, "\nSubject: sent-out\r\n") && !contains(eml, "multipart/report")
            })
    });
    let text = String::from_utf8_lossy(&delivered).into_owned();
    assert!(text.contains("DKIM-Signature: "), "{text}");
    // The MX's own Received header is on top; DKIM covers what follows.
    let start = text.find("DKIM-Signature: ").unwrap();
    let signed = &text[start..];
    let mut nameserver = NameServerConfig::udp_and_tcp(dns.addr.ip());
    for connection in &mut nameserver.connections {
        connection.port = dns.addr.port();
    }
    let authenticator = MessageAuthenticator::new(
        ResolverConfig::from_parts(None, Vec::new(), vec![nameserver]),
        ResolverOpts::default(),
    )
    .unwrap();
    let results: Vec<DkimResult> = rt.block_on(async {
        let parsed = AuthenticatedMessage::parse(signed.as_bytes()).unwrap();
        authenticator
            .verify_dkim(&parsed)
            .await
            .iter()
            .map(|o| o.result().clone())
            .collect()
    });
    assert_eq!(results, vec![DkimResult::Pass], "{signed}");

    // The DSN about carol went to alice's domain's MX, from <>.
    let dsn = wait_for("the DSN at the sender's MX", || {
        target
            .archived()
            .into_iter()
            .map(|(_, eml)| eml)
            .find(|eml| contains(eml, "Final-Recipient: rfc822; carol@nomail.test"))
    });
    assert!(contains(
        &dsn,
        "Subject: Undelivered Mail Returned to Sender"
    ));
}
