//! Sessions over an in-memory pipe with an in-memory store: a store under
//! pressure (MAIL slowed, then refused with 452 4.3.1, instead of letting
//! the spool grow without bound), and lines the SMTP codec reads
//! differently from the RFCs.

use postern_engine::Engine;
use postern_smtp::{Incoming, IngressRef, Limits, Peer, Pressure, Session, SessionConfig, Store};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Memory {
    pressure: Mutex<Pressure>,
    committed: Mutex<Vec<Vec<u8>>>,
}

struct MemoryIncoming(Vec<u8>, Arc<Memory>);

struct Shared(Arc<Memory>);

impl Store for Shared {
    type Incoming = MemoryIncoming;
    fn pressure(&self) -> Pressure {
        *self.0.pressure.lock().unwrap()
    }
    async fn create(&self, _meta: &[u8]) -> std::io::Result<MemoryIncoming> {
        Ok(MemoryIncoming(Vec::new(), self.0.clone()))
    }
}

impl Incoming for MemoryIncoming {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    async fn commit(self) -> std::io::Result<String> {
        let mut all = self.1.committed.lock().unwrap();
        all.push(self.0);
        Ok(format!("Q{}", all.len()))
    }
    async fn abort(self) {}
}

fn config() -> Arc<SessionConfig> {
    let text = "TrafficPolicies: [{TrafficPolicyName: all, DefaultAction: ALLOW, PolicyStatements: []}]\n\
RuleSets: [{RuleSetName: main, Rules: []}]\n\
IngressPoints: [{IngressPointName: in1, Type: OPEN, TrafficPolicyId: all, RuleSetId: main}]\n";
    let config = postern_config::parse_config("t.yaml", text, &|_| Err("none".into())).unwrap();
    let engine = Engine::build(&config).unwrap();
    let binding = &engine.ingress_points[0];
    Arc::new(SessionConfig {
        hostname: "mx.test".into(),
        ingress: IngressRef {
            name: binding.identity.name.clone(),
            id: binding.identity.id.clone(),
            arn: binding.identity.arn.clone(),
        },
        kind: binding.kind,
        policy: binding.policy.clone(),
        tls: None,
        limits: Limits::default(),
        smtp_password: None,
        throttle: Default::default(),
        proxy_protocol: false,
        config_version: 1,
        analyzer: None,
        closed: false,
    })
}

/// Runs a whole session with `input` and returns what the server wrote.
async fn converse(store: Arc<Memory>, input: &[u8]) -> String {
    let (client, server) = tokio::io::duplex(1 << 16);
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let session = Session::new(
        postern_smtp::stream::Conn::Plain(server),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            port: 25,
        },
        config(),
        Arc::new(Shared(store)),
        "t".into(),
    );
    let task = tokio::spawn(session.run(shutdown));
    let (mut read, mut write) = tokio::io::split(client);
    write.write_all(input).await.unwrap();
    let mut out = Vec::new();
    read.read_to_end(&mut out).await.unwrap();
    task.await.unwrap();
    String::from_utf8(out).unwrap()
}

const MESSAGE: &[u8] =
    b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";

fn memory(pressure: Pressure) -> Arc<Memory> {
    Arc::new(Memory {
        pressure: Mutex::new(pressure),
        committed: Mutex::new(Vec::new()),
    })
}

#[tokio::test]
async fn a_full_store_refuses_mail_with_452() {
    let store = memory(Pressure::Full);
    let out = converse(store.clone(), MESSAGE).await;
    assert!(out.contains("452 4.3.1 "), "{out}");
    assert!(
        out.contains("503 5.5.1"),
        "RCPT after a refused MAIL: {out}"
    );
    assert!(out.contains("221 "), "{out}");
    assert!(store.committed.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_busy_store_slows_mail_down_but_accepts_it() {
    let store = memory(Pressure::Slow(std::time::Duration::from_millis(700)));
    let out = converse(store.clone(), MESSAGE).await;
    assert!(out.contains("250 2.1.0 Sender OK"), "{out}");
    assert!(out.contains("250 2.0.0 OK queued as Q1"), "{out}");
    assert_eq!(store.committed.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn normal_store_accepts() {
    let store = memory(Pressure::Normal);
    let out = converse(store.clone(), MESSAGE).await;
    assert!(out.contains("250 2.0.0 OK queued as Q1"), "{out}");
    assert_eq!(
        store.committed.lock().unwrap()[0],
        b"Subject: x\r\n\r\nhi\r\n"
    );
}

#[tokio::test]
async fn postmaster_without_a_domain_is_a_recipient() {
    let store = memory(Pressure::Normal);
    let out = converse(
        store.clone(),
        b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    )
    .await;
    assert!(out.contains("250 2.1.5 Recipient OK"), "{out}");
    assert!(out.contains("250 2.0.0 OK queued as Q1"), "{out}");
}

#[tokio::test]
async fn starttls_with_a_parameter_is_a_syntax_error() {
    let store = memory(Pressure::Normal);
    let out = converse(store, b"EHLO c.test\r\nSTARTTLS now\r\nQUIT\r\n").await;
    assert!(
        out.contains("501 5.5.4 Syntax: STARTTLS (no parameters)"),
        "{out}"
    );
}
