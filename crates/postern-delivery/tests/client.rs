//! The SMTP client against real servers.
//!
//! Peers: Postern's own SMTP session in-process (STARTTLS with a
//! self-signed certificate, AUTH on an AUTH ingress point, a traffic
//! policy that denies some recipients); Postfix's smtp-sink (plain
//! delivery, injected 4xx/5xx, disconnects, slow replies); a TCP server
//! that accepts and never answers; a port nobody listens on; and a small
//! scripted server for AUTH LOGIN (Postern offers PLAIN first, and smtp-sink
//! accepts AUTH without a challenge).

#[path = "support/peers.rs"]
mod peers;

use postern_delivery::{
    ClientSettings, Credentials, Endpoint, Protocol, RecipientOutcome, SessionError, TlsPolicy,
    Transaction, deliver,
};
use postern_engine::Engine;
use postern_smtp::{Incoming, IngressRef, Limits, Peer, Session, SessionConfig, Store};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn settings(extra_roots: Vec<CertificateDer<'static>>) -> ClientSettings {
    ClientSettings {
        helo_name: "client.test".into(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        extra_roots,
    }
}

fn short_timeouts() -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
        data_timeout: Duration::from_secs(1),
        ..settings(Vec::new())
    }
}

fn tcp(host: &str, addr: SocketAddr) -> Endpoint {
    Endpoint::Tcp {
        host: host.into(),
        addr,
    }
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const MESSAGE: &[u8] =
    b"From: a@sender.test\nTo: b@rcpt.test\nSubject: hi\n\nline one\n.leading dot\n..two dots\n";

fn delivered_code(outcome: &RecipientOutcome) -> u16 {
    match outcome {
        RecipientOutcome::Delivered(reply) => reply.code,
        other => panic!("expected Delivered, got {other:?}"),
    }
}

// ---------------------------------------------------------------------
// Postern's SMTP server, in-process.

#[derive(Default)]
struct Memory {
    committed: Mutex<Vec<(serde_json::Value, Vec<u8>)>>,
}

struct Shared(Arc<Memory>);

struct MemoryIncoming {
    meta: serde_json::Value,
    data: Vec<u8>,
    memory: Arc<Memory>,
}

impl Store for Shared {
    type Incoming = MemoryIncoming;
    async fn create(&self, meta: &[u8]) -> std::io::Result<MemoryIncoming> {
        Ok(MemoryIncoming {
            meta: serde_json::from_slice(meta).map_err(std::io::Error::other)?,
            data: Vec::new(),
            memory: self.0.clone(),
        })
    }
}

impl Incoming for MemoryIncoming {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }
    async fn commit(self) -> std::io::Result<String> {
        let mut all = self.memory.committed.lock().unwrap();
        all.push((self.meta, self.data));
        Ok(format!("Q{}", all.len()))
    }
    async fn abort(self) {}
}

struct Postern {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    memory: Arc<Memory>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

const PASSWORD: &str = "s3cret-horse";

/// An AUTH ingress point with STARTTLS (a self-signed certificate for
/// "mx.test"); recipients starting with "blocked" are denied by the
/// traffic policy.
async fn postern() -> Postern {
    let text = format!(
        "TrafficPolicies: [{{TrafficPolicyName: policy1, DefaultAction: ALLOW, PolicyStatements: [{{Action: DENY, Conditions: [{{StringExpression: {{Evaluate: {{Attribute: RECIPIENT}}, Operator: STARTS_WITH, Values: [blocked]}}}}]}}]}}]\n\
RuleSets: [{{RuleSetName: main, Rules: []}}]\n\
IngressPoints: [{{IngressPointName: in1, Type: AUTH, TrafficPolicyId: policy1, RuleSetId: main, IngressPointConfiguration: {{SmtpPassword: \"{PASSWORD}\"}}}}]\n"
    );
    let config = postern_config::parse_config("t.yaml", &text, &|_| Err("none".into()))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let engine = Engine::build(&config).unwrap();
    let binding = &engine.ingress_points[0];
    let generated = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let tls = postern_smtp::tls::server_config(vec![cert.clone()], key, None).unwrap();
    let session_config = Arc::new(SessionConfig {
        hostname: "mx.test".into(),
        ingress: IngressRef {
            name: binding.identity.name.clone(),
            id: binding.identity.id.clone(),
            arn: binding.identity.arn.clone(),
        },
        kind: binding.kind,
        policy: binding.policy.clone(),
        tls: Some(tls),
        limits: Limits::default(),
        smtp_password: Some(PASSWORD.into()),
        throttle: Default::default(),
        proxy_protocol: false,
        config_version: 1,
        analyzer: None,
        closed: false,
    });
    let memory = Arc::new(Memory::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let store = Arc::new(Shared(memory.clone()));
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((socket, peer)) = listener.accept().await {
            n += 1;
            let session = Session::new(
                postern_smtp::stream::Conn::Plain(socket),
                Peer {
                    ip: peer.ip(),
                    port: peer.port(),
                },
                session_config.clone(),
                store.clone(),
                format!("s{n}"),
            );
            tokio::spawn(session.run(shutdown.clone()));
        }
    });
    Postern {
        addr,
        cert,
        memory,
        _shutdown: shutdown_tx,
    }
}

/// Postern's AUTH user name is the ingress point's name.
fn credentials(password: &str) -> Credentials {
    Credentials {
        username: "in1".into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn starttls_required_with_auth_plain_and_a_denied_recipient() {
    let server = postern().await;
    let recipients = rcpts(&["one@rcpt.test", "blocked@rcpt.test", "two@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let outcomes = deliver(
        &settings(vec![server.cert.clone()]),
        Protocol::Smtp,
        &tcp("mx.test", server.addr),
        TlsPolicy::Required,
        Some(&credentials(PASSWORD)),
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(delivered_code(&outcomes[0]), 250);
    assert_eq!(delivered_code(&outcomes[2]), 250);
    match &outcomes[1] {
        RecipientOutcome::Failed {
            reason,
            reply: Some(reply),
        } => {
            assert_eq!(reply.code, 550);
            assert_eq!(reply.status.as_deref(), Some("5.7.1"));
            assert!(reason.contains("RCPT TO"), "{reason}");
            assert!(reason.contains("mx.test[127.0.0.1]"), "{reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let committed = server.memory.committed.lock().unwrap();
    assert_eq!(committed.len(), 1);
    let (meta, data) = &committed[0];
    assert!(meta.get("tls").is_some(), "not over TLS: {meta}");
    assert_eq!(meta["authenticated"], "in1", "{meta}");
    // SIZE= counts CRLF line ends, not the stuffed dots.
    let lines = MESSAGE.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(meta["declared_size"], MESSAGE.len() + lines, "{meta}");
    assert_eq!(meta["helo"], "client.test", "{meta}");
    let rcpt_count = meta["recipients"].as_array().map(Vec::len);
    assert_eq!(rcpt_count, Some(2), "{meta}");
    // LF became CRLF and the dots survived the stuffing.
    assert_eq!(
        String::from_utf8_lossy(data),
        "From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n"
    );
}

#[tokio::test]
async fn starttls_required_rejects_an_untrusted_certificate() {
    let server = postern().await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("mx.test", server.addr),
        TlsPolicy::Required,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    match &error {
        SessionError::Temporary(reason, None) => {
            assert!(reason.contains("TLS handshake"), "{reason}")
        }
        other => panic!("expected Temporary, got {other:?}"),
    }
    // And the wrong host name, with the certificate trusted.
    let error = deliver(
        &settings(vec![server.cert.clone()]),
        Protocol::Smtp,
        &tcp("other.test", server.addr),
        TlsPolicy::Required,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    assert!(server.memory.committed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn opportunistic_tls_accepts_an_unverified_certificate() {
    let server = postern().await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    // No extra roots: the self-signed certificate can't verify, and
    // Opportunistic doesn't ask it to.
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("mx.test", server.addr),
        TlsPolicy::Opportunistic,
        Some(&credentials(PASSWORD)),
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(delivered_code(&outcomes[0]), 250);
    let committed = server.memory.committed.lock().unwrap();
    assert!(committed[0].0.get("tls").is_some(), "{}", committed[0].0);
}

#[tokio::test]
async fn a_wrong_password_is_temporary() {
    let server = postern().await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &settings(vec![server.cert.clone()]),
        Protocol::Smtp,
        &tcp("mx.test", server.addr),
        TlsPolicy::Required,
        Some(&credentials("wrong")),
        &tx,
    )
    .await
    .unwrap_err();
    match &error {
        SessionError::Temporary(reason, Some(reply)) => {
            assert_eq!(reply.code, 535, "{reason}");
            assert!(reason.contains("authentication"), "{reason}");
        }
        other => panic!("expected Temporary with the reply, got {other:?}"),
    }
    assert!(server.memory.committed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_auth_an_auth_ingress_point_refuses_mail_from() {
    let server = postern().await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &settings(vec![server.cert.clone()]),
        Protocol::Smtp,
        &tcp("mx.test", server.addr),
        TlsPolicy::Required,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    let reply = error.reply().expect("the reply to MAIL FROM");
    assert!(reply.code >= 500, "{error:?}");
    assert!(matches!(error, SessionError::Permanent(..)), "{error:?}");
    assert!(error.reason().contains("MAIL FROM"), "{error:?}");
}

#[tokio::test]
async fn credentials_may_go_in_plaintext_to_loopback() {
    let dump = tempfile::tempdir().unwrap();
    let (_sink, addr) = peers::smtp_sink(&[], dump.path()).await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    // Loopback is allowed in plaintext (smtp-sink accepts any AUTH).
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Disabled,
        Some(&credentials("x")),
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(delivered_code(&outcomes[0]), 250);
}

// ---------------------------------------------------------------------
// Postfix smtp-sink.

#[tokio::test]
async fn plain_delivery_to_smtp_sink() {
    let dump = tempfile::tempdir().unwrap();
    let (_sink, addr) = peers::smtp_sink(&[], dump.path()).await;
    let recipients = rcpts(&["one@rcpt.test", "two@rcpt.test"]);
    let tx = Transaction {
        mail_from: "",
        recipients: &recipients,
        message: b"Subject: bounce\r\n\r\n.\r\nend",
    };
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 2);
    for outcome in &outcomes {
        match outcome {
            RecipientOutcome::Delivered(reply) => {
                assert_eq!(reply.to_string(), "250 2.0.0 Ok");
            }
            other => panic!("{other:?}"),
        }
    }
    let messages = peers::dumped(dump.path());
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert!(m.contains("X-Mail-Args: <>"), "{m}");
    assert!(m.contains("X-Rcpt-Args: <one@rcpt.test>"), "{m}");
    assert!(m.contains("X-Rcpt-Args: <two@rcpt.test>"), "{m}");
    assert!(m.contains("X-Helo-Args: client.test"), "{m}");
    // The lone dot went through stuffed and came out as a dot; the last
    // line got its line end (smtp-sink dumps with LF).
    assert!(m.contains("Subject: bounce\n\n.\nend\n"), "{m:?}");
}

#[tokio::test]
async fn eight_bit_parameter_and_smtputf8_not_offered() {
    let dump = tempfile::tempdir().unwrap();
    let (_sink, addr) = peers::smtp_sink(&[], dump.path()).await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: "Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n".as_bytes(),
    };
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(delivered_code(&outcomes[0]), 250);
    let m = &peers::dumped(dump.path())[0];
    let args = m
        .lines()
        .find(|l| l.starts_with("X-Mail-Args:"))
        .unwrap_or_default();
    // smtp-sink offers neither SIZE nor SMTPUTF8.
    assert_eq!(args, "X-Mail-Args: <a@sender.test> BODY=8BITMIME");

    // smtp-sink doesn't offer SMTPUTF8: a non-ASCII address can't go.
    let recipients = rcpts(&["j\u{f6}rg@rcpt.test"]);
    let tx = Transaction {
        recipients: &recipients,
        ..tx
    };
    let error = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, SessionError::Permanent(..)), "{error:?}");
    assert!(
        error.reason().starts_with("5.6.7 SMTPUTF8 is required"),
        "{error:?}"
    );
}

#[tokio::test]
async fn smtputf8_when_offered() {
    let server = postern().await;
    let recipients = rcpts(&["j\u{f6}rg@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: "Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n".as_bytes(),
    };
    let outcomes = deliver(
        &settings(vec![server.cert.clone()]),
        Protocol::Smtp,
        &tcp("mx.test", server.addr),
        TlsPolicy::Required,
        Some(&credentials(PASSWORD)),
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(delivered_code(&outcomes[0]), 250);
    let committed = server.memory.committed.lock().unwrap();
    let meta = &committed[0].0;
    assert_eq!(meta["smtputf8"], true, "{meta}");
    assert_eq!(meta["body"], "8BITMIME", "{meta}");
}

#[tokio::test]
async fn tls_required_but_not_offered_is_temporary() {
    let dump = tempfile::tempdir().unwrap();
    let (_sink, addr) = peers::smtp_sink(&[], dump.path()).await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Required,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        SessionError::Temporary(
            format!(
                "TLS is required, but was not offered by sink.test[127.0.0.1]:{}",
                addr.port()
            ),
            None
        )
    );
    for m in peers::dumped(dump.path()) {
        assert!(!m.contains("Subject: hi"), "{m}");
    }
}

#[tokio::test]
async fn rcpt_4xx_and_5xx_from_smtp_sink() {
    let recipients = rcpts(&["one@rcpt.test", "two@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    for (option, temporary) in [("-r", true), ("-f", false)] {
        let dump = tempfile::tempdir().unwrap();
        let (_sink, addr) = peers::smtp_sink(&[option, "RCPT"], dump.path()).await;
        let outcomes = deliver(
            &settings(Vec::new()),
            Protocol::Smtp,
            &tcp("sink.test", addr),
            TlsPolicy::Disabled,
            None,
            &tx,
        )
        .await
        .unwrap();
        assert_eq!(outcomes.len(), 2);
        for outcome in &outcomes {
            match (outcome, temporary) {
                (RecipientOutcome::Deferred { reply: Some(r), .. }, true) => {
                    assert_eq!(r.to_string(), "450 4.3.0 Error: command failed")
                }
                (RecipientOutcome::Failed { reply: Some(r), .. }, false) => {
                    assert_eq!(r.to_string(), "500 5.3.0 Error: command failed")
                }
                (other, _) => panic!("{option}: {other:?}"),
            }
        }
        // No recipient accepted: no DATA (smtp-sink may still dump the
        // envelope of the aborted transaction, but no message text).
        for m in peers::dumped(dump.path()) {
            assert!(!m.contains("Subject: hi"), "{m}");
        }
    }
}

#[tokio::test]
async fn mail_from_4xx_and_5xx_are_session_errors() {
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    for (option, temporary) in [("-r", true), ("-f", false)] {
        let dump = tempfile::tempdir().unwrap();
        let (_sink, addr) = peers::smtp_sink(&[option, "MAIL"], dump.path()).await;
        let error = deliver(
            &settings(Vec::new()),
            Protocol::Smtp,
            &tcp("sink.test", addr),
            TlsPolicy::Disabled,
            None,
            &tx,
        )
        .await
        .unwrap_err();
        assert_eq!(error.is_temporary(), temporary, "{error:?}");
        assert!(
            error.reason().contains("in reply to MAIL FROM"),
            "{error:?}"
        );
        assert!(error.reply().is_some());
    }
}

#[tokio::test]
async fn data_5xx_fails_every_accepted_recipient() {
    let dump = tempfile::tempdir().unwrap();
    let (_sink, addr) = peers::smtp_sink(&["-f", "DATA"], dump.path()).await;
    let recipients = rcpts(&["one@rcpt.test", "two@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap();
    for outcome in &outcomes {
        match outcome {
            RecipientOutcome::Failed { reason, reply } => {
                assert_eq!(reply.as_ref().map(|r| r.code), Some(500));
                assert!(reason.contains("in reply to DATA"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_421_at_rcpt_defers_everything_and_a_disconnect_at_data_too() {
    let recipients = rcpts(&["one@rcpt.test", "two@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let dump = tempfile::tempdir().unwrap();
    let (_sink, addr) = peers::smtp_sink(&["-Q", "RCPT"], dump.path()).await;
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap();
    match &outcomes[0] {
        RecipientOutcome::Deferred { reply: Some(r), .. } => assert_eq!(r.code, 421),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&outcomes[1], RecipientOutcome::Deferred { reason, .. } if reason.contains("421")),
        "{outcomes:?}"
    );

    let dump = tempfile::tempdir().unwrap();
    let (_sink, addr) = peers::smtp_sink(&["-q", "DATA"], dump.path()).await;
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap();
    for outcome in &outcomes {
        match outcome {
            RecipientOutcome::Deferred {
                reason,
                reply: None,
            } => {
                assert!(
                    reason.contains("closed the connection") || reason.contains("lost connection"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_slow_reply_to_data_times_out_as_deferred() {
    let dump = tempfile::tempdir().unwrap();
    // smtp-sink waits 5 s before answering DATA; we wait 1 s.
    let (_sink, addr) = peers::smtp_sink(&["-w", "5"], dump.path()).await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let outcomes = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("sink.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap();
    match &outcomes[0] {
        RecipientOutcome::Deferred {
            reason,
            reply: None,
        } => assert_eq!(
            reason,
            &format!(
                "timeout after 1 s waiting for the reply to DATA from sink.test[127.0.0.1]:{}",
                addr.port()
            )
        ),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------
// Servers that don't behave.

#[tokio::test]
async fn a_server_that_never_answers_is_a_temporary_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("silent.test", addr),
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        SessionError::Temporary(
            format!(
                "timeout after 1 s waiting for the reply to the greeting from silent.test[127.0.0.1]:{}",
                addr.port()
            ),
            None
        )
    );
    held.abort();
}

#[tokio::test]
async fn connection_refused_is_temporary() {
    let port = peers::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("gone.test", addr),
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    match error {
        SessionError::Temporary(reason, None) => {
            assert!(
                reason.starts_with("connect to gone.test[127.0.0.1]"),
                "{reason}"
            );
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// A scripted server: answers each expected line with its reply; records
/// what it got. Used for AUTH LOGIN and for malformed replies.
async fn scripted(
    script: Vec<(&'static str, &'static str)>,
    greeting: &'static str,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut got = Vec::new();
        write.write_all(greeting.as_bytes()).await.unwrap();
        for (expect, reply) in script {
            let Ok(Some(line)) = lines.next_line().await else {
                break;
            };
            got.push(line.clone());
            if !line.starts_with(expect) {
                write.write_all(b"500 5.5.2 unexpected\r\n").await.unwrap();
                break;
            }
            if write.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
        // Read whatever else comes (QUIT), until the client closes.
        while let Ok(Some(line)) = lines.next_line().await {
            got.push(line.clone());
            if line == "QUIT" {
                let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
            }
        }
        got
    });
    (addr, task)
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    let (addr, server) = scripted(
        vec![
            (
                "EHLO client.test",
                "250-login.test\r\n250-AUTH LOGIN\r\n250 8BITMIME\r\n",
            ),
            ("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
            ("aW4x", "334 UGFzc3dvcmQ6\r\n"),
            (
                "czNjcmV0LWhvcnNl",
                "235 2.7.0 Authentication successful\r\n",
            ),
            ("MAIL FROM:<a@sender.test>", "250 2.1.0 Ok\r\n"),
            ("RCPT TO:<one@rcpt.test>", "250 2.1.5 Ok\r\n"),
            ("DATA", "354 go ahead\r\n"),
            ("From: a@sender.test", ""),
            ("To: b@rcpt.test", ""),
            ("Subject: hi", ""),
            ("", ""),
            ("line one", ""),
            ("..leading dot", ""),
            ("...two dots", ""),
            (".", "250 2.0.0 queued\r\n"),
        ],
        "220 login.test ESMTP\r\n",
    )
    .await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let outcomes = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("login.test", addr),
        TlsPolicy::Disabled,
        Some(&credentials(PASSWORD)),
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(delivered_code(&outcomes[0]), 250, "{outcomes:?}");
    let got = server.await.unwrap();
    assert_eq!(got.last().map(String::as_str), Some("QUIT"), "{got:?}");
}

#[tokio::test]
async fn credentials_without_auth_offered_are_temporary() {
    let (addr, server) = scripted(
        vec![("EHLO client.test", "250-noauth.test\r\n250 8BITMIME\r\n")],
        "220 noauth.test ESMTP\r\n",
    )
    .await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &settings(Vec::new()),
        Protocol::Smtp,
        &tcp("noauth.test", addr),
        TlsPolicy::Disabled,
        Some(&credentials(PASSWORD)),
        &tx,
    )
    .await
    .unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    assert!(error.reason().contains("does not offer AUTH"), "{error:?}");
    let got = server.await.unwrap();
    assert_eq!(got, vec!["EHLO client.test", "QUIT"]);
}

#[tokio::test]
async fn a_malformed_reply_is_temporary_not_a_panic() {
    let (addr, _server) = scripted(
        vec![("EHLO client.test", "25O what\r\n")],
        "220 odd.test ESMTP\r\n",
    )
    .await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("odd.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    assert!(error.reason().contains("malformed reply"), "{error:?}");
}

#[tokio::test]
async fn a_5xx_greeting_is_permanent_and_ehlo_refusal_falls_back_to_helo() {
    let (addr, _server) = scripted(vec![], "554 5.7.1 go away\r\n").await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("rude.test", addr),
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, SessionError::Permanent(..)), "{error:?}");
    assert_eq!(
        error.reply().map(|r| r.to_string()).as_deref(),
        Some("554 5.7.1 go away")
    );

    let (addr, server) = scripted(
        vec![
            ("EHLO client.test", "502 5.5.1 what is EHLO\r\n"),
            ("HELO client.test", "250 old.test\r\n"),
            ("MAIL FROM:<a@sender.test>", "250 ok\r\n"),
            ("RCPT TO:<one@rcpt.test>", "550 no such user\r\n"),
        ],
        "220 old.test SMTP\r\n",
    )
    .await;
    let outcomes = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("old.test", addr),
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap();
    match &outcomes[0] {
        RecipientOutcome::Failed { reply: Some(r), .. } => {
            assert_eq!(r.to_string(), "550 no such user")
        }
        other => panic!("{other:?}"),
    }
    let got = server.await.unwrap();
    // No DATA without an accepted recipient; MAIL FROM had no SIZE/BODY
    // since HELO offers no extensions.
    assert_eq!(
        got,
        vec![
            "EHLO client.test",
            "HELO client.test",
            "MAIL FROM:<a@sender.test>",
            "RCPT TO:<one@rcpt.test>",
            "QUIT"
        ]
    );
}

#[tokio::test]
async fn opportunistic_falls_back_to_plaintext_when_the_handshake_fails() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut transcripts = Vec::new();
        for attempt in 0..2 {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            let mut got = Vec::new();
            write
                .write_all(b"220 broken-tls.test ESMTP\r\n")
                .await
                .unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                got.push(line.clone());
                let reply: &[u8] = match line.split(' ').next().unwrap_or_default() {
                    "EHLO" => b"250-broken-tls.test\r\n250 STARTTLS\r\n",
                    "STARTTLS" if attempt == 0 => {
                        // Wait for the ClientHello, then answer with
                        // something that isn't TLS: the handshake fails.
                        let _ = write.write_all(b"220 go ahead\r\n").await;
                        let mut hello = [0u8; 512];
                        let _ = lines.get_mut().read(&mut hello).await;
                        let _ = write.write_all(b"this is not TLS\r\n").await;
                        break;
                    }
                    "QUIT" => b"221 bye\r\n",
                    "DATA" => b"354 go\r\n",
                    "." => b"250 2.0.0 queued\r\n",
                    "MAIL" | "RCPT" => b"250 ok\r\n",
                    _ => b"",
                };
                if write.write_all(reply).await.is_err() {
                    break;
                }
            }
            transcripts.push(got);
        }
        transcripts
    });
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: b"Subject: x\r\n\r\nbody\r\n",
    };
    let outcomes = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("broken-tls.test", addr),
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(delivered_code(&outcomes[0]), 250);
    let transcripts = server.await.unwrap();
    assert_eq!(transcripts[0], vec!["EHLO client.test", "STARTTLS"]);
    // The second connection stays in plaintext although STARTTLS is offered.
    assert_eq!(transcripts[1][0], "EHLO client.test");
    assert_eq!(transcripts[1][1], "MAIL FROM:<a@sender.test>");
    assert_eq!(transcripts[1].last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn data_sent_ahead_of_the_tls_handshake_ends_the_attempt() {
    // The server answers STARTTLS and, in the same write, sends more: a
    // man in the middle injecting a reply the client would read as if it
    // came over TLS (CVE-2011-0411).
    let (addr, _server) = scripted(
        vec![
            ("EHLO client.test", "250-inject.test\r\n250 STARTTLS\r\n"),
            ("STARTTLS", "220 go ahead\r\n250 injected\r\n"),
        ],
        "220 inject.test ESMTP\r\n",
    )
    .await;
    let recipients = rcpts(&["one@rcpt.test"]);
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let error = deliver(
        &short_timeouts(),
        Protocol::Smtp,
        &tcp("inject.test", addr),
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    assert!(
        error.reason().contains("possible command injection"),
        "{error:?}"
    );
}
