//! Arbitrary bytes from a client through a whole SMTP session (over an
//! in-memory pipe, with a store in memory): no panic, and every line the
//! server writes is a well-formed reply (three digits, then space or dash).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_engine::Engine;
use postern_smtp::{Incoming, IngressRef, Limits, Peer, Session, SessionConfig, Store};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = include_str!("../rule_eval.yaml");

struct Memory;
struct MemoryIncoming(Vec<u8>);

impl Store for Memory {
    type Incoming = MemoryIncoming;
    async fn create(&self, _meta: &[u8]) -> std::io::Result<MemoryIncoming> {
        Ok(MemoryIncoming(Vec::new()))
    }
}

impl Incoming for MemoryIncoming {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    async fn commit(self) -> std::io::Result<String> {
        Ok(format!("Q{}", self.0.len()))
    }
    async fn abort(self) {}
}

fn config() -> Arc<SessionConfig> {
    static CONFIG_ONCE: OnceLock<Arc<SessionConfig>> = OnceLock::new();
    CONFIG_ONCE
        .get_or_init(|| {
            let config =
                postern_config::parse_config("rule_eval.yaml", CONFIG, &|_| Err("none".into()))
                    .unwrap();
            let engine = Engine::build(&config).unwrap();
            let binding = &engine.ingress_points[0];
            Arc::new(SessionConfig {
                hostname: "fuzz.example".into(),
                ingress: IngressRef {
                    name: binding.identity.name.clone(),
                    id: binding.identity.id.clone(),
                    arn: binding.identity.arn.clone(),
                },
                kind: binding.kind,
                policy: binding.policy.clone(),
                tls: None,
                limits: Limits {
                    max_errors: 1000,
                    ..Limits::default()
                },
                smtp_password: None,
                throttle: Default::default(),
                proxy_protocol: false,
                config_version: 1,
                analyzer: None,
                closed: false,
            })
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let session = Session::new(
            postern_smtp::stream::Conn::Plain(server),
            Peer {
                ip: "192.0.2.1".parse().unwrap(),
                port: 25,
            },
            config(),
            Arc::new(Memory),
            "fuzz".into(),
        );
        let task = tokio::spawn(session.run(shutdown));
        let (mut read, mut write) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = read.read_to_end(&mut out).await;
            out
        });
        let _ = write.write_all(data).await;
        let _ = write.write_all(b"\r\n.\r\nQUIT\r\n").await;
        let _ = write.shutdown().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        drop(write);
        let out = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.len() >= 4, "short reply line {line:?}");
            assert!(
                line[..3].iter().all(u8::is_ascii_digit),
                "reply line {line:?}"
            );
            assert!(
                line[3] == b' ' || line[3] == b'-' || line[3] == b'\r',
                "reply line {line:?}"
            );
            assert!(line.ends_with(b"\r"), "reply line without CRLF {line:?}");
        }
    });
});
