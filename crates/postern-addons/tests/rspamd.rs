//! Scans through a real Rspamd, started by the test: the stock
//! configuration (/etc/rspamd) with the test's overrides in a temporary
//! directory: only the normal worker, on a free loopback port; databases,
//! run and log files in the temporary directory; DNS pointed at a closed
//! loopback port; and every module that fetches maps over HTTP or needs
//! the network or Redis disabled, so that nothing is downloaded.

#[path = "../../postern-delivery/tests/support/peers.rs"]
mod peers;

#[path = "support/rspamd.rs"]
mod rspamd_support;

use postern_addons::{AddonError, MAX_RESPONSE_BYTES, Rspamd, RspamdEnvelope};
use rspamd_support::{email, gtube};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn gtube_is_spam_and_a_clean_message_is_not() {
    let running = rspamd_support::start().await;
    let url = running.url();
    let rspamd = Rspamd::new(&url, TIMEOUT, None).unwrap();
    let recipients = vec!["bob@example.org".to_string()];
    let envelope = RspamdEnvelope {
        ip: "192.0.2.1".parse().unwrap(),
        helo: "mail.example.net",
        mail_from: "alice@example.net",
        recipients: &recipients,
        queue_id: "postern-test-1",
        hostname: "mail.example.net",
    };

    let spam = rspamd
        .check(&envelope, &email("offer", &gtube()))
        .await
        .unwrap();
    assert_eq!(spam.action, "reject", "{spam:?}");
    assert!(spam.is_spam, "{spam:?}");
    assert!(spam.symbols.iter().any(|s| s == "GTUBE"), "{spam:?}");
    assert!(spam.score >= spam.required_score, "{spam:?}");

    let clean = rspamd
        .check(
            &envelope,
            &email("lunch", "Shall we meet for lunch at noon tomorrow?"),
        )
        .await
        .unwrap();
    assert_eq!(clean.action, "no action", "{clean:?}");
    assert!(!clean.is_spam, "{clean:?}");
    assert!(!clean.symbols.iter().any(|s| s == "GTUBE"), "{clean:?}");
    assert!(clean.score < clean.required_score, "{clean:?}");
    let mut sorted = clean.symbols.clone();
    sorted.sort();
    assert_eq!(sorted, clean.symbols);
    // Rspamd saw the envelope: the sender and the recipient match the
    // From and To headers.
    for symbol in ["FROM_EQ_ENVFROM", "TO_MATCH_ENVRCPT_ALL"] {
        assert!(
            clean.symbols.iter().any(|s| s == symbol),
            "{symbol}: {clean:?}"
        );
    }

    // Every Rcpt header counts: the recipient matching To comes second.
    let two = vec![
        "carol@example.org".to_string(),
        "bob@example.org".to_string(),
    ];
    let bounce = RspamdEnvelope {
        mail_from: "",
        recipients: &two,
        ..envelope.clone()
    };
    let result = rspamd
        .check(&bounce, &email("lunch", "Shall we?"))
        .await
        .unwrap();
    assert!(
        result.symbols.iter().any(|s| s == "TO_MATCH_ENVRCPT_ALL"),
        "{result:?}"
    );
    // The null sender does not match From.
    assert!(
        !result.symbols.iter().any(|s| s == "FROM_EQ_ENVFROM"),
        "{result:?}"
    );
    // Recipients that are not in To.
    let others = vec!["carol@example.org".to_string()];
    let result = rspamd
        .check(
            &RspamdEnvelope {
                recipients: &others,
                ..envelope.clone()
            },
            &email("lunch", "Shall we?"),
        )
        .await
        .unwrap();
    assert!(
        !result
            .symbols
            .iter()
            .any(|s| s.starts_with("TO_MATCH_ENVRCPT")),
        "{result:?}"
    );

    // A path Rspamd does not serve: HTTP 500, a protocol error.
    let wrong = Rspamd::new(&format!("{url}/nothing"), TIMEOUT, None).unwrap();
    let error = wrong.check(&envelope, &email("x", "y")).await.unwrap_err();
    assert!(
        matches!(&error, AddonError::Protocol(m) if m.contains("500")),
        "{error}"
    );
}

fn envelope_for_tests(recipients: &[String]) -> RspamdEnvelope<'_> {
    RspamdEnvelope {
        ip: "192.0.2.1".parse().unwrap(),
        helo: "mail.example.net",
        mail_from: "alice@example.net",
        recipients,
        queue_id: "q",
        hostname: "",
    }
}

#[tokio::test]
async fn rspamd_down_is_unavailable() {
    let url = format!("http://127.0.0.1:{}", peers::free_port());
    let rspamd = Rspamd::new(&url, TIMEOUT, None).unwrap();
    let recipients = vec!["bob@example.org".to_string()];
    let error = rspamd
        .check(&envelope_for_tests(&recipients), &email("x", "y"))
        .await
        .unwrap_err();
    assert!(matches!(error, AddonError::Unavailable(_)), "{error}");
}

/// A one-shot HTTP server answering `response` after reading the request
/// headers (or nothing, and holding the connection, when None).
async fn fake_server(response: Option<Vec<u8>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        match response {
            Some(response) => {
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            }
            None => {
                let _ = socket.read(&mut buf).await;
                std::future::pending::<()>().await;
            }
        }
    });
    addr
}

fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

#[tokio::test]
async fn malformed_answers_are_protocol_errors() {
    let recipients = vec!["bob@example.org".to_string()];
    let envelope = envelope_for_tests(&recipients);
    let message = email("x", "y");
    for body in [
        b"this is not JSON".to_vec(),
        br#"{"score":1.0,"required_score":15.0}"#.to_vec(),
        br#"{"error":"something broke"}"#.to_vec(),
        vec![b' '; MAX_RESPONSE_BYTES + 1],
    ] {
        let addr = fake_server(Some(http_ok(&body))).await;
        let rspamd = Rspamd::new(&format!("http://{addr}"), TIMEOUT, None).unwrap();
        let error = rspamd.check(&envelope, &message).await.unwrap_err();
        assert!(matches!(error, AddonError::Protocol(_)), "{error}");
    }
    let addr = fake_server(Some(http_ok(
        br#"{"score":16.5,"required_score":15.0,"action":"add header","symbols":{"B":{},"A":{}}}"#,
    )))
    .await;
    let rspamd = Rspamd::new(&format!("http://{addr}"), TIMEOUT, None).unwrap();
    let result = rspamd.check(&envelope, &message).await.unwrap();
    assert!(result.is_spam);
    assert_eq!(result.symbols, ["A", "B"]);
}

#[tokio::test]
async fn a_silent_rspamd_times_out() {
    let addr = fake_server(None).await;
    let rspamd = Rspamd::new(&format!("http://{addr}"), Duration::from_millis(300), None).unwrap();
    let recipients = vec!["bob@example.org".to_string()];
    let error = rspamd
        .check(&envelope_for_tests(&recipients), &email("x", "y"))
        .await
        .unwrap_err();
    assert!(matches!(error, AddonError::Timeout(_)), "{error}");
}
