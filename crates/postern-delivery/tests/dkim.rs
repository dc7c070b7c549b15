//! DKIM signatures made by `sign`, verified by mail-auth's verifier, which
//! fetches the public keys from a DNS server on loopback (hickory-server).
//! Keys: RSA in PKCS#1 and PKCS#8 (tests/keys), Ed25519 from rcgen
//! (PKCS#8 v2) and from OpenSSL (PKCS#8 v1).

#[path = "support/dns_server.rs"]
mod dns_server;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use postern_delivery::{DkimKey, sign};

const RSA_PKCS1: &str = include_str!("keys/rsa-pkcs1.pem");
const RSA_PKCS8: &str = include_str!("keys/rsa-pkcs8.pem");
const RSA_PUBLIC: &str = include_str!("keys/rsa.pub.b64");
const ED_OPENSSL: &str = include_str!("keys/ed25519-openssl.pem");
const ED_OPENSSL_PUBLIC: &str = include_str!("keys/ed25519-openssl.pub.b64");
const EC_SEC1: &str = include_str!("keys/ec-sec1.pem");

const MESSAGE: &str = "From: \"Alice\" <alice@example.test>\r\n\
To: bob@rcpt.test\r\n\
Subject: signed\r\n\
Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n\
Message-ID: <1@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello,  world.\r\n\
.dots stay\r\n";

/// A TXT value in zone-file syntax: quoted strings of at most 255 bytes.
fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Setup {
    _server: dns_server::DnsServer,
    authenticator: MessageAuthenticator,
    ed_rcgen: String,
}

/// Publishes the keys under example.test and returns a verifier that asks
/// that server.
async fn setup() -> Setup {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_public = base64_encode(ed.public_key_raw());
    let zone = format!(
        "@ 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60\n\
rsa._domainkey.example 3600 IN TXT {}\n\
ed._domainkey.example 3600 IN TXT {}\n\
edo._domainkey.example 3600 IN TXT {}\n",
        txt(&format!("v=DKIM1; k=rsa; p={}", RSA_PUBLIC.trim())),
        txt(&format!("v=DKIM1; k=ed25519; p={ed_public}")),
        txt(&format!(
            "v=DKIM1; k=ed25519; p={}",
            ED_OPENSSL_PUBLIC.trim()
        )),
    );
    let server = dns_server::serve("test.", &zone).await;
    let mut nameserver = NameServerConfig::udp_and_tcp(server.addr.ip());
    for connection in &mut nameserver.connections {
        connection.port = server.addr.port();
    }
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![nameserver]);
    let authenticator = MessageAuthenticator::new(config, ResolverOpts::default()).unwrap();
    Setup {
        _server: server,
        authenticator,
        ed_rcgen: ed.serialize_pem(),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Signs `message` with `keys` and verifies the result; returns the
/// signature header and the verdicts.
async fn sign_and_verify(
    setup: &Setup,
    keys: &[DkimKey],
    message: &str,
) -> (String, Vec<DkimResult>) {
    let header = sign(keys, message.as_bytes())
        .unwrap()
        .expect("a key applies");
    assert!(header.starts_with("DKIM-Signature: "), "{header}");
    assert!(header.ends_with("\r\n"), "{header:?}");
    let signed = format!("{header}{message}");
    let results = verify(setup, &signed).await;
    (header, results)
}

async fn verify(setup: &Setup, signed: &str) -> Vec<DkimResult> {
    let parsed = AuthenticatedMessage::parse(signed.as_bytes()).unwrap();
    setup
        .authenticator
        .verify_dkim(&parsed)
        .await
        .iter()
        .map(|o| o.result().clone())
        .collect()
}

#[tokio::test]
async fn rsa_pkcs1_and_pkcs8_signatures_verify() {
    let setup = setup().await;
    for pem in [RSA_PKCS1, RSA_PKCS8] {
        let key = DkimKey::from_pem("example.test", "rsa", pem).unwrap();
        assert_eq!(key.domain(), "example.test");
        let (header, results) = sign_and_verify(&setup, &[key], MESSAGE).await;
        assert_eq!(results, vec![DkimResult::Pass], "{header}");
        assert!(header.contains("a=rsa-sha256"), "{header}");
        assert!(header.contains("c=relaxed/relaxed"), "{header}");
        assert!(header.contains("d=example.test"), "{header}");
        // Present fields are signed; absent ones (Cc, Reply-To) are not.
        let h = header
            .replace(['\r', '\n', '\t', ' '], "")
            .to_ascii_lowercase();
        for field in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
        ] {
            assert!(
                h.split(';')
                    .any(|tag| tag.starts_with("h=") && tag[2..].split(':').any(|f| f == field)),
                "{field} not signed: {header}"
            );
        }
        assert!(!h.contains(":cc") && !h.contains("reply-to"), "{header}");
    }
}

#[tokio::test]
async fn ed25519_signatures_verify() {
    let setup = setup().await;
    for (selector, pem) in [
        ("ed", setup.ed_rcgen.clone()),
        ("edo", ED_OPENSSL.to_string()),
    ] {
        let key = DkimKey::from_pem("example.test", selector, &pem).unwrap();
        let (header, results) = sign_and_verify(&setup, &[key], MESSAGE).await;
        assert_eq!(results, vec![DkimResult::Pass], "{selector}: {header}");
        assert!(header.contains("a=ed25519-sha256"), "{header}");
    }
}

#[tokio::test]
async fn a_changed_message_fails_verification() {
    let setup = setup().await;
    let key = DkimKey::from_pem("example.test", "rsa", RSA_PKCS1).unwrap();
    let header = sign(&[key], MESSAGE.as_bytes()).unwrap().unwrap();
    let tampered = format!("{header}{}", MESSAGE.replace("Hello", "Jello"));
    let results = verify(&setup, &tampered).await;
    assert_eq!(results.len(), 1);
    assert_ne!(results[0], DkimResult::Pass, "{results:?}");
    // Whitespace changes survive relaxed canonicalization.
    let header = sign(
        &[DkimKey::from_pem("example.test", "rsa", RSA_PKCS1).unwrap()],
        MESSAGE.as_bytes(),
    )
    .unwrap()
    .unwrap();
    let relaxed = format!(
        "{header}{}",
        MESSAGE.replace("Hello,  world.", "Hello, world.")
    );
    assert_eq!(verify(&setup, &relaxed).await, vec![DkimResult::Pass]);
}

#[tokio::test]
async fn the_key_of_a_parent_domain_signs_a_subdomain() {
    let setup = setup().await;
    let keys = [
        DkimKey::from_pem("other.test", "rsa", RSA_PKCS8).unwrap(),
        DkimKey::from_pem("example.test", "rsa", RSA_PKCS1).unwrap(),
    ];
    let message = MESSAGE.replace("alice@example.test", "alice@News.Example.test");
    let (header, results) = sign_and_verify(&setup, &keys, &message).await;
    assert!(header.contains("d=example.test"), "{header}");
    assert_eq!(results, vec![DkimResult::Pass]);
}

#[test]
fn no_key_for_the_author_domain_means_no_signature() {
    let keys = [DkimKey::from_pem("other.test", "rsa", RSA_PKCS1).unwrap()];
    assert_eq!(sign(&keys, MESSAGE.as_bytes()), Ok(None));
    // "ample.test" is not a parent of "example.test".
    let keys = [DkimKey::from_pem("ample.test", "rsa", RSA_PKCS1).unwrap()];
    assert_eq!(sign(&keys, MESSAGE.as_bytes()), Ok(None));
    // No From at all.
    let keys = [DkimKey::from_pem("example.test", "rsa", RSA_PKCS1).unwrap()];
    assert_eq!(sign(&keys, b"Subject: x\r\n\r\nbody\r\n"), Ok(None));
}

#[test]
fn unsupported_keys_are_refused_clearly() {
    let error = DkimKey::from_pem("example.test", "ec", EC_SEC1).unwrap_err();
    assert!(error.contains("EC (SEC1)"), "{error}");
    let error = DkimKey::from_pem(
        "example.test",
        "x",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap_err();
    assert!(error.contains("neither RSA nor Ed25519"), "{error}");
}
