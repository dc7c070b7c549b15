//! postern serve with an MTLS ingress point (client certificates checked
//! against the trust store, their attributes read by rules) and an ingress
//! point behind a load balancer (PROXY protocol v1 and v2).
//! Peers: Python's ssl/smtplib for the TLS client, raw sockets for PROXY.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn archived(dir: &Path, needle: &str) -> Option<String> {
    let start = Instant::now();
    loop {
        let mut stack = vec![dir.join("data/archives")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "eml") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    if text.contains(needle) {
                        return Some(text);
                    }
                }
            }
        }
        if start.elapsed() > Duration::from_secs(20) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Pki {
    ca_pem: String,
    client_cert: PathBuf,
    client_key: PathBuf,
    stranger_cert: PathBuf,
    stranger_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Partner CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![
        "gw.partner.example".into(),
        "mx.partner.example".into(),
    ])
    .unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "gw.partner.example");
    params.subject_alt_names.push(SanType::Rfc822Name(
        "ops@partner.example".try_into().unwrap(),
    ));
    let client = params.signed_by(&client_key, &issuer).unwrap();
    // A certificate from nobody the ingress point trusts.
    let stranger_key = KeyPair::generate().unwrap();
    let mut stranger = CertificateParams::new(vec!["stranger.example".into()]).unwrap();
    stranger
        .distinguished_name
        .push(DnType::CommonName, "stranger.example");
    let stranger = stranger.self_signed(&stranger_key).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca_pem: ca.pem(),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        stranger_cert: write("stranger.pem", stranger.pem()),
        stranger_key: write("stranger.key", stranger_key.serialize_pem()),
    }
}

fn start(dir: &Path, ca_pem: &str, mtls: u16, lb: u16) -> Server {
    let ca = ca_pem
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect::<String>();
    let http = free_port();
    let config = format!(
        r#"Server:
  DataDir: {data}
  HttpListen: 127.0.0.1:{http}
TrafficPolicies:
  - {{TrafficPolicyName: all, DefaultAction: ALLOW, PolicyStatements: []}}
RuleSets:
  - RuleSetName: partner
    Rules:
      - Name: tag-partner
        Conditions:
          - StringExpression: {{Evaluate: {{ClientCertificateAttribute: SAN_DNS_NAME}}, Operator: EQUALS, Values: [mx.partner.example]}}
          - StringExpression: {{Evaluate: {{ClientCertificateAttribute: CN}}, Operator: EQUALS, Values: [gw.partner.example]}}
        Actions:
          - AddHeader: {{HeaderName: X-Partner, HeaderValue: verified}}
      - Name: archive
        Actions: [{{Archive: {{TargetArchive: all}}}}]
IngressPoints:
  - IngressPointName: partner-mtls
    Type: MTLS
    TrafficPolicyId: all
    RuleSetId: partner
    Listen: ["127.0.0.1:{mtls}"]
    IngressPointConfiguration:
      TlsAuthConfiguration:
        TrustStore:
          CAContent: |
{ca}  - IngressPointName: behind-lb
    Type: OPEN
    TrafficPolicyId: all
    RuleSetId: partner
    Listen: ["127.0.0.1:{lb}"]
    ProxyProtocol: true
Archives:
  - ArchiveName: all
"#,
        data = dir.join("data").display()
    );
    std::fs::write(dir.join("postern.yaml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["serve", "-c"])
        .arg(dir.join("postern.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        dir: dir.to_path_buf(),
    };
    wait_for(mtls);
    wait_for(lb);
    server
}

fn python(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("postern-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn mtls_checks_client_certificates_and_rules_read_them() {
    let dir = tempdir("mtls");
    let pki = pki(&dir);
    let (mtls, lb) = (free_port(), free_port());
    let _server = start(&dir, &pki.ca_pem, mtls, lb);
    let out = python(&format!(
        r#"
import smtplib, ssl
def ctx(cert, key):
    c = ssl._create_unverified_context()
    if cert: c.load_cert_chain(cert, key)
    return c
s = smtplib.SMTP("127.0.0.1", {mtls}); s.ehlo()
print("plain MAIL", s.docmd("MAIL FROM:<a@partner.example>")[0])
s.starttls(context=ctx("{cert}", "{key}")); s.ehlo()
print("sent", s.sendmail("a@partner.example", ["b@example.com"], "Subject: mtls-one\r\n\r\nhi\r\n"))
s.quit()
for name, cert, key in [("none", None, None), ("stranger", "{scert}", "{skey}")]:
    s = smtplib.SMTP("127.0.0.1", {mtls}); s.ehlo()
    try:
        s.starttls(context=ctx(cert, key)); s.ehlo()
        print(name, "MAIL", s.docmd("MAIL FROM:<a@b.example>")[0])
    except Exception as e:
        print(name, "refused")
"#,
        cert = pki.client_cert.display(),
        key = pki.client_key.display(),
        scert = pki.stranger_cert.display(),
        skey = pki.stranger_key.display(),
    ));
    assert!(out.contains("plain MAIL 530"), "{out}");
    assert!(out.contains("sent {}"), "{out}");
    // A handshake without a trusted certificate fails, or MAIL is refused.
    for name in ["none", "stranger"] {
        assert!(
            out.contains(&format!("{name} refused")) || out.contains(&format!("{name} MAIL 530")),
            "{name}: {out}"
        );
    }
    let message = archived(&dir, "mtls-one").expect("archived");
    assert!(message.contains("X-Partner: verified"), "{message}");
}

#[test]
fn proxy_protocol_gives_the_client_address() {
    let dir = tempdir("proxy");
    let pki = pki(&dir);
    let (mtls, lb) = (free_port(), free_port());
    let _server = start(&dir, &pki.ca_pem, mtls, lb);
    let converse = |header: &[u8], subject: &str| -> String {
        let mut c = TcpStream::connect(("127.0.0.1", lb)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(header).unwrap();
        let mut replies = String::new();
        let mut buf = [0u8; 4096];
        let mut read_until = |c: &mut TcpStream, replies: &mut String, code: &str| loop {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed; got {replies}");
            replies.push_str(&String::from_utf8_lossy(&buf[..n]));
            if replies.lines().any(|l| l.starts_with(code)) {
                break;
            }
        };
        read_until(&mut c, &mut replies, "220 ");
        c.write_all(b"HELO lb\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<z@example.com>\r\nDATA\r\n")
            .unwrap();
        read_until(&mut c, &mut replies, "354");
        c.write_all(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes())
            .unwrap();
        read_until(&mut c, &mut replies, "250 2.0.0");
        replies
    };
    converse(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n", "via-v1");
    let message = archived(&dir, "via-v1").expect("archived");
    assert!(message.contains("[203.0.113.7]"), "{message}");

    // v2: signature, version 2 PROXY, TCP over IPv6, addresses and ports.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x21, 0, 36]);
    v2.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(&40000u16.to_be_bytes());
    v2.extend_from_slice(&25u16.to_be_bytes());
    converse(&v2, "via-v2");
    let message = archived(&dir, "via-v2").expect("archived");
    assert!(message.contains("[2001:db8::7]"), "{message}");

    // Without a PROXY header the connection is closed, no greeting.
    let mut c = TcpStream::connect(("127.0.0.1", lb)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"EHLO direct\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
}
