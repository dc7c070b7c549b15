//! SPF, DKIM, DMARC and ARC against a real DNS server on loopback
//! (hickory-server), with messages signed and sealed here by mail-auth;
//! then the same cases offline, from the same zone text, with the same
//! outcomes.

#[path = "../../postern-delivery/tests/support/dns_server.rs"]
mod dns_server;

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use postern_auth::{
    AuthInput, AuthOutcome, Authenticator, DmarcPolicy, DnsRecords, Verdict, strip_forged_results,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use std::net::IpAddr;
use std::time::Duration;

const RSA_PKCS1: &str = include_str!("../../postern-delivery/tests/keys/rsa-pkcs1.pem");
const RSA_PUBLIC: &str = include_str!("../../postern-delivery/tests/keys/rsa.pub.b64");
const AUTHSERV_ID: &str = "mx.postern.test";
/// Permitted by the SPF records of the zone.
const GOOD_IP: &str = "203.0.113.5";
/// Not permitted by any.
const BAD_IP: &str = "198.51.100.7";

/// Ed25519 keys made for this run: "ed" is published under its selector;
/// "other" signs for the selector whose record holds ed's key.
struct Keys {
    ed: Vec<u8>,
    other: Vec<u8>,
    ed_public: String,
}

fn keys() -> Keys {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    Keys {
        ed_public: base64(ed.public_key_raw()),
        ed: ed.serialize_der(),
        other: other.serialize_der(),
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A TXT value in zone-file syntax: quoted strings of at most 255 bytes.
fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn zone(keys: &Keys) -> String {
    let rsa = txt(&format!("v=DKIM1; k=rsa; p={}", RSA_PUBLIC.trim()));
    let ed = txt(&format!("v=DKIM1; k=ed25519; p={}", keys.ed_public));
    format!(
        r#"@ 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60
sender.test.               3600 IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
mail.sender.test.          3600 IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
mta.sender.test.           3600 IN TXT "v=spf1 a -all"
mta.sender.test.           3600 IN A   203.0.113.5
soft.test.                 3600 IN TXT "v=spf1 ip4:192.0.2.0/24 ~all"
other.test.                3600 IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
nospf.test.                3600 IN A   192.0.2.1
rsa._domainkey.sender.test.    3600 IN TXT {rsa}
ed._domainkey.sender.test.     3600 IN TXT {ed}
wrong._domainkey.sender.test.  3600 IN TXT {ed}
revoked._domainkey.sender.test. 3600 IN TXT "v=DKIM1; k=rsa; p="
arc._domainkey.forwarder.test. 3600 IN TXT {rsa}
rsa._domainkey.strict.test.    3600 IN TXT {rsa}
_dmarc.sender.test.        3600 IN TXT "v=DMARC1; p=reject"
_dmarc.quar.test.          3600 IN TXT "v=DMARC1; p=quarantine"
_dmarc.none.test.          3600 IN TXT "v=DMARC1; p=none"
_dmarc.org.test.           3600 IN TXT "v=DMARC1; p=reject; sp=quarantine"
news.org.test.             3600 IN A   192.0.2.2
_dmarc.strict.test.        3600 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.pct.test.           3600 IN TXT "v=DMARC1; p=reject; pct=0"
"#
    )
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\n\
To: <bob@rcpt.test>\r\n\
Subject: {subject}\r\n\
Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n\
Message-ID: <{subject}@postern.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hello, world.\r\n"
    )
}

const SIGNED: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

fn rsa() -> RsaKey<Sha256> {
    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::from_pem_slice(RSA_PKCS1.as_bytes()).unwrap())
        .unwrap()
}

fn sign_rsa(domain: &str, selector: &str, message: &str) -> String {
    let signature = DkimSigner::from_key(rsa())
        .domain(domain)
        .selector(selector)
        .headers(SIGNED)
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

fn sign_ed(pkcs8: &[u8], domain: &str, selector: &str, message: &str) -> String {
    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8).unwrap();
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED)
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

/// Seals `message` as forwarder.test would (the first ARC set).
fn seal(message: &str) -> String {
    let parsed = AuthenticatedMessage::parse(message.as_bytes()).unwrap();
    let results = AuthenticationResults::new("forwarder.test");
    let set = ArcSealer::from_key(rsa())
        .domain("forwarder.test")
        .selector("arc")
        .headers(["From", "To", "Subject", "DKIM-Signature"])
        .seal(&parsed, &results, &ArcOutput::default())
        .unwrap();
    format!("{}{message}", set.to_header())
}

struct Case {
    name: &'static str,
    ip: &'static str,
    helo: &'static str,
    mail_from: &'static str,
    message: String,
    spf: Verdict,
    dkim: Verdict,
    dmarc: DmarcPolicy,
    arc: Verdict,
    /// Substrings the header must contain.
    header: &'static [&'static str],
}

fn cases(keys: &Keys) -> Vec<Case> {
    let case = |name, ip, mail_from, message: String| Case {
        name,
        ip,
        helo: "client.example",
        mail_from,
        message,
        spf: Verdict::Pass,
        dkim: Verdict::Pass,
        dmarc: DmarcPolicy::None,
        arc: Verdict::Gray,
        header: &[],
    };
    let altered = sign_rsa(
        "sender.test",
        "rsa",
        &message("alice@sender.test", "altered"),
    )
    .replace("Hello, world.", "Hello, w0rld.");
    let sealed = seal(&sign_rsa(
        "sender.test",
        "rsa",
        &message("alice@sender.test", "forwarded"),
    ));
    let tampered = sealed.replace("Subject: forwarded", "Subject: changed");
    vec![
        Case {
            header: &[
                "spf=pass (ip 203.0.113.5 permitted by sender.test) smtp.mailfrom=bounce@sender.test",
                "dkim=pass header.d=sender.test header.s=rsa header.b=",
                "dmarc=pass (p=reject dis=none) header.from=sender.test",
                "arc=none smtp.remote-ip=203.0.113.5",
            ],
            ..case(
                "dkim and spf pass, aligned",
                GOOD_IP,
                "bounce@sender.test",
                sign_rsa("sender.test", "rsa", &message("alice@sender.test", "rsa")),
            )
        },
        Case {
            header: &["dkim=pass header.d=sender.test header.s=ed"],
            ..case(
                "ed25519 signature",
                GOOD_IP,
                "bounce@sender.test",
                sign_ed(
                    &keys.ed,
                    "sender.test",
                    "ed",
                    &message("alice@sender.test", "ed"),
                ),
            )
        },
        Case {
            spf: Verdict::Fail,
            dkim: Verdict::Fail,
            dmarc: DmarcPolicy::Reject,
            header: &[
                "spf=fail (ip 198.51.100.7 not permitted by sender.test)",
                "dkim=fail (body hash mismatch) header.d=sender.test",
                "dmarc=fail (p=reject dis=reject) header.from=sender.test",
            ],
            ..case("body altered", BAD_IP, "bounce@sender.test", altered)
        },
        Case {
            dkim: Verdict::Fail,
            header: &["dkim=fail (signature did not verify) header.d=sender.test header.s=wrong"],
            ..case(
                "wrong key published",
                GOOD_IP,
                "bounce@sender.test",
                sign_ed(
                    &keys.other,
                    "sender.test",
                    "wrong",
                    &message("alice@sender.test", "w"),
                ),
            )
        },
        Case {
            dkim: Verdict::Fail,
            header: &["dkim=fail (no key for signature) header.d=sender.test header.s=missing"],
            ..case(
                "missing key",
                GOOD_IP,
                "bounce@sender.test",
                sign_rsa("sender.test", "missing", &message("alice@sender.test", "m")),
            )
        },
        Case {
            dkim: Verdict::Fail,
            header: &["dkim=fail (key revoked) header.d=sender.test header.s=revoked"],
            ..case(
                "revoked key",
                GOOD_IP,
                "bounce@sender.test",
                sign_rsa("sender.test", "revoked", &message("alice@sender.test", "r")),
            )
        },
        Case {
            spf: Verdict::Gray,
            dkim: Verdict::Gray,
            header: &[
                "spf=softfail (ip 203.0.113.5 not permitted by soft.test) smtp.mailfrom=x@soft.test",
                "dkim=none",
                "dmarc=none (no DMARC record) header.from=soft.test",
            ],
            ..case(
                "spf softfail",
                GOOD_IP,
                "x@soft.test",
                message("x@soft.test", "soft"),
            )
        },
        Case {
            spf: Verdict::Gray,
            dkim: Verdict::Gray,
            header: &["spf=none (no SPF record for nospf.test) smtp.mailfrom=x@nospf.test"],
            ..case(
                "spf none",
                GOOD_IP,
                "x@nospf.test",
                message("x@nospf.test", "none"),
            )
        },
        Case {
            helo: "mta.sender.test",
            dkim: Verdict::Gray,
            header: &[
                "spf=pass (ip 203.0.113.5 permitted by mta.sender.test) smtp.helo=mta.sender.test",
                // SPF for the HELO domain aligns (relaxed) with From.
                "dmarc=pass",
            ],
            ..case(
                "null sender: HELO identity",
                GOOD_IP,
                "",
                message("mailer-daemon@sender.test", "dsn"),
            )
        },
        Case {
            dkim: Verdict::Gray,
            header: &["dmarc=pass (p=reject dis=none) header.from=sender.test"],
            ..case(
                "spf aligned through a subdomain (relaxed)",
                GOOD_IP,
                "b@mail.sender.test",
                message("alice@sender.test", "spf-relaxed"),
            )
        },
        Case {
            spf: Verdict::Fail,
            header: &["dmarc=pass (p=reject dis=none) header.from=news.sender.test"],
            ..case(
                "dkim d= parent of the From domain (relaxed)",
                BAD_IP,
                "b@sender.test",
                sign_rsa(
                    "sender.test",
                    "rsa",
                    &message("alice@news.sender.test", "dkim-relaxed"),
                ),
            )
        },
        Case {
            dkim: Verdict::Gray,
            dmarc: DmarcPolicy::Reject,
            header: &["dmarc=fail (p=reject dis=reject) header.from=sender.test"],
            ..case(
                "spf passes for an unaligned domain",
                GOOD_IP,
                "b@other.test",
                message("alice@sender.test", "unaligned"),
            )
        },
        Case {
            dmarc: DmarcPolicy::Quarantine,
            header: &["dmarc=fail (p=quarantine dis=quarantine) header.from=quar.test"],
            ..case(
                "dkim and spf pass, neither aligned",
                GOOD_IP,
                "b@sender.test",
                sign_rsa("sender.test", "rsa", &message("alice@quar.test", "quar")),
            )
        },
        Case {
            spf: Verdict::Gray,
            dkim: Verdict::Gray,
            dmarc: DmarcPolicy::Quarantine,
            header: &[
                "dmarc=fail (p=reject sp=quarantine dis=quarantine) header.from=news.org.test",
            ],
            ..case(
                "subdomain without its own record: sp=",
                GOOD_IP,
                "x@nospf.test",
                message("alice@news.org.test", "sp"),
            )
        },
        Case {
            spf: Verdict::Gray,
            dmarc: DmarcPolicy::Reject,
            dkim: Verdict::Pass,
            header: &[
                "dkim=pass header.d=strict.test",
                "dmarc=fail (p=reject dis=reject) header.from=mail.strict.test",
            ],
            ..case(
                "strict alignment refuses a parent domain",
                GOOD_IP,
                "x@nospf.test",
                sign_rsa(
                    "strict.test",
                    "rsa",
                    &message("alice@mail.strict.test", "strict"),
                ),
            )
        },
        Case {
            dkim: Verdict::Gray,
            header: &["dmarc=fail (p=none dis=none) header.from=none.test"],
            ..case(
                "p=none",
                GOOD_IP,
                "b@sender.test",
                message("alice@none.test", "pnone"),
            )
        },
        Case {
            spf: Verdict::Gray,
            dkim: Verdict::Gray,
            dmarc: DmarcPolicy::Quarantine,
            header: &["dmarc=fail (p=reject pct=0 dis=quarantine) header.from=pct.test"],
            ..case(
                "pct=0: one level down",
                GOOD_IP,
                "x@nospf.test",
                message("alice@pct.test", "pct"),
            )
        },
        Case {
            arc: Verdict::Pass,
            header: &["arc=pass (i=1 d=forwarder.test) smtp.remote-ip=203.0.113.5"],
            ..case("valid ARC set", GOOD_IP, "bounce@sender.test", sealed)
        },
        Case {
            arc: Verdict::Fail,
            dkim: Verdict::Fail,
            dmarc: DmarcPolicy::None,
            header: &["arc=fail (signature did not verify; i=1 d=forwarder.test)"],
            ..case("tampered ARC set", GOOD_IP, "bounce@sender.test", tampered)
        },
    ]
}

fn input<'a>(case: &'a Case) -> AuthInput<'a> {
    AuthInput {
        client_ip: case.ip.parse::<IpAddr>().unwrap(),
        helo: case.helo,
        mail_from: case.mail_from,
        message: case.message.as_bytes(),
        authserv_id: AUTHSERV_ID,
    }
}

fn check(case: &Case, outcome: &AuthOutcome) {
    let got = (outcome.spf, outcome.dkim, outcome.dmarc, outcome.arc);
    let want = (case.spf, case.dkim, case.dmarc, case.arc);
    assert_eq!(
        got, want,
        "{}: (spf, dkim, dmarc, arc)\n{}",
        case.name, outcome.header
    );
    assert!(
        outcome
            .header
            .starts_with("Authentication-Results: mx.postern.test;\r\n\tspf="),
        "{}: {}",
        case.name,
        outcome.header
    );
    for expected in case.header {
        assert!(
            outcome.header.contains(expected),
            "{}: {expected:?} not in\n{}",
            case.name,
            outcome.header
        );
    }
    // One detail per resinfo.
    assert_eq!(
        outcome.details.len(),
        outcome.header.matches(";\r\n\t").count(),
        "{}: {:?}",
        case.name,
        outcome.details
    );
}

async fn run_all(authenticator: &Authenticator, cases: &[Case]) -> Vec<AuthOutcome> {
    let mut outcomes = Vec::new();
    for case in cases {
        let outcome = authenticator.authenticate(&input(case)).await;
        check(case, &outcome);
        outcomes.push(outcome);
    }
    outcomes
}

#[tokio::test]
async fn verdicts_from_a_dns_server_and_offline_agree() {
    let keys = keys();
    let zone = zone(&keys);
    let server = dns_server::serve("test.", &zone).await;
    let cases = cases(&keys);
    assert!(cases.len() >= 19);

    let online = Authenticator::new(&[server.addr], Duration::from_secs(10)).unwrap();
    let from_server = run_all(&online, &cases).await;
    // A second pass is answered from the caches, the same way.
    assert_eq!(run_all(&online, &cases).await, from_server);

    let records = DnsRecords::parse_zone(&zone, Some("test.")).unwrap();
    let offline = Authenticator::offline(&records);
    let from_records = run_all(&offline, &cases).await;
    for ((case, a), b) in cases.iter().zip(&from_server).zip(&from_records) {
        assert_eq!(a, b, "{}: online and offline differ", case.name);
    }
}

#[tokio::test]
async fn records_added_one_by_one_work_offline() {
    let mut records = DnsRecords::new();
    records
        .add("sender.test", "TXT", "v=spf1 ip4:203.0.113.0/24 -all")
        .unwrap();
    records
        .add(
            "rsa._domainkey.sender.test",
            "TXT",
            &format!("v=DKIM1; k=rsa; p={}", RSA_PUBLIC.trim()),
        )
        .unwrap();
    records
        .add("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject")
        .unwrap();
    let authenticator = Authenticator::offline(&records);
    let signed = sign_rsa("sender.test", "rsa", &message("alice@sender.test", "one"));
    let mut case = Case {
        name: "offline pass",
        ip: GOOD_IP,
        helo: "client.example",
        mail_from: "bounce@sender.test",
        message: signed,
        spf: Verdict::Pass,
        dkim: Verdict::Pass,
        dmarc: DmarcPolicy::None,
        arc: Verdict::Gray,
        header: &[],
    };
    check(&case, &authenticator.authenticate(&input(&case)).await);
    // A name not in the records is NXDOMAIN: SPF none, not an error.
    case.name = "offline nxdomain";
    case.mail_from = "x@unknown.test";
    case.message = message("alice@unknown.test", "two");
    case.spf = Verdict::Gray;
    case.dkim = Verdict::Gray;
    check(&case, &authenticator.authenticate(&input(&case)).await);
    // A clone shares the server; the original may go first.
    let clone = authenticator.clone();
    drop(authenticator);
    check(&case, &clone.authenticate(&input(&case)).await);
}

#[tokio::test]
async fn dns_down_is_processing_failed_not_a_hang() {
    let (addr, _task) = dns_server::silent().await;
    let timeout = Duration::from_millis(500);
    let authenticator = Authenticator::new(&[addr], timeout).unwrap();
    let message = sign_rsa("sender.test", "rsa", &message("alice@sender.test", "down"));
    let case = Case {
        name: "dns down",
        ip: GOOD_IP,
        helo: "client.example",
        mail_from: "bounce@sender.test",
        message,
        spf: Verdict::ProcessingFailed,
        dkim: Verdict::ProcessingFailed,
        dmarc: DmarcPolicy::None,
        arc: Verdict::Gray,
        header: &["spf=temperror", "dkim=temperror", "dmarc=temperror"],
    };
    // A guard against a hang only, far above the timeout.
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        authenticator.authenticate(&input(&case)),
    )
    .await
    .expect("authentication must end by its own timeout");
    check(&case, &outcome);
}

#[tokio::test]
async fn forged_results_are_removed_and_ours_added() {
    let original = message("alice@soft.test", "forged");
    let received = format!(
        "Authentication-Results: mx.postern.test; spf=pass smtp.mailfrom=x@soft.test;\r\n\
         \tdkim=pass header.d=soft.test\r\n\
         Authentication-Results: upstream.test; spf=pass\r\n\
         {original}"
    );
    let stripped = strip_forged_results(received.as_bytes(), "MX.postern.test");
    let stripped = std::str::from_utf8(&stripped).unwrap();
    assert_eq!(
        stripped,
        format!("Authentication-Results: upstream.test; spf=pass\r\n{original}")
    );
    assert!(matches!(
        strip_forged_results(stripped.as_bytes(), AUTHSERV_ID),
        std::borrow::Cow::Borrowed(_)
    ));

    // The forged "pass" has no effect on the verdicts.
    let keys = keys();
    let server = dns_server::serve("test.", &zone(&keys)).await;
    let authenticator = Authenticator::new(&[server.addr], Duration::from_secs(10)).unwrap();
    let outcome = authenticator
        .authenticate(&AuthInput {
            client_ip: GOOD_IP.parse().unwrap(),
            helo: "client.example",
            mail_from: "x@soft.test",
            message: received.as_bytes(),
            authserv_id: AUTHSERV_ID,
        })
        .await;
    assert_eq!(outcome.spf, Verdict::Gray);
    assert_eq!(outcome.dkim, Verdict::Gray);
    let delivered = format!("{}{stripped}", outcome.header);
    assert_eq!(
        delivered
            .matches("Authentication-Results: mx.postern.test")
            .count(),
        1
    );
    assert!(delivered.contains("spf=softfail"), "{delivered}");
}

/// `offline` needs no runtime to be built (e.g. while loading a rule
/// test file), and works from any runtime afterwards.
#[test]
fn offline_is_built_outside_a_runtime() {
    let records = DnsRecords::parse_zone(
        "sender.test. IN TXT \"v=spf1 ip4:203.0.113.0/24 -all\"\n",
        None,
    )
    .unwrap();
    let authenticator = Authenticator::offline(&records);
    for _ in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(authenticator.authenticate(&AuthInput {
            client_ip: GOOD_IP.parse().unwrap(),
            helo: "client.example",
            mail_from: "x@sender.test",
            message: message("x@sender.test", "rt").as_bytes(),
            authserv_id: AUTHSERV_ID,
        }));
        assert_eq!(outcome.spf, Verdict::Pass, "{}", outcome.header);
    }
}
