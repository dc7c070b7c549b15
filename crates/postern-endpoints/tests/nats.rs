//! `Nats::publish` against the machine's NATS server with JetStream
//! (`127.0.0.1:4222`; set `POSTERN_TEST_NATS_URL` to use another). Each
//! test makes its own stream with a unique name and subject and deletes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use postern_endpoints::Nats;

fn url() -> String {
    std::env::var("POSTERN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

async fn jetstream_context() -> jetstream::Context {
    let client = async_nats::connect(url()).await.unwrap_or_else(|e| {
        panic!(
            "these tests need NATS with JetStream at {} (nats-server -js): {e}",
            url()
        )
    });
    jetstream::new(client)
}

#[tokio::test]
async fn publish_is_stored_and_deduplicated_by_msg_id() {
    let js = jetstream_context().await;
    let name = unique("POSTERN_TEST");
    let subject = format!("postern.test.{name}");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();

    let nats = Nats::new();
    let first = Bytes::from_static(b"{\"hello\":1}");
    nats.publish(&url(), &subject, first.clone(), Some("q-1/action-0"))
        .await
        .unwrap();
    // A retry of the same action (same id) is acknowledged but not stored.
    nats.publish(&url(), &subject, first.clone(), Some("q-1/action-0"))
        .await
        .unwrap();
    // Without an id, or with another id, each publish is stored.
    nats.publish(&url(), &subject, Bytes::from_static(b"second"), None)
        .await
        .unwrap();
    nats.publish(
        &url(),
        &subject,
        Bytes::from_static(b"third"),
        Some("q-1/action-1"),
    )
    .await
    .unwrap();

    let consumer = stream
        .create_consumer(consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    let mut got = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned());
        got.push((message.payload.clone(), id));
        message.ack().await.unwrap();
    }
    assert_eq!(
        got,
        vec![
            (first, Some("q-1/action-0".to_owned())),
            (Bytes::from_static(b"second"), None),
            (
                Bytes::from_static(b"third"),
                Some("q-1/action-1".to_owned())
            ),
        ]
    );
    let info = js
        .get_stream(&name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 3);
    js.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn subject_without_stream_is_permanent() {
    let subject = format!("postern.nostream.{}", unique("x"));
    let err = Nats::new()
        .publish(&url(), &subject, Bytes::from_static(b"x"), None)
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");
    assert!(err.message().contains("no JetStream stream"), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_temporary() {
    let err = Nats::new()
        .publish(
            "nats://127.0.0.1:1",
            "postern.test.unreachable",
            Bytes::from_static(b"x"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(err.message().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn invalid_subject_is_permanent() {
    for subject in ["", "a..b", "a.*", "a b", "a.>"] {
        let err = Nats::new()
            .publish(&url(), subject, Bytes::from_static(b"x"), None)
            .await
            .unwrap_err();
        assert!(!err.is_temporary(), "{subject:?}: {err}");
    }
}

/// One connection per URL: the second publish reuses it (a clone shares
/// the cache), observable as the server seeing one client for both.
#[tokio::test]
async fn clones_share_the_connection() {
    let js = jetstream_context().await;
    let name = unique("POSTERN_TEST_SHARED");
    let subject = format!("postern.test.{name}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let nats = Nats::new();
    let clone = nats.clone();
    nats.publish(&url(), &subject, Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    clone
        .publish(&url(), &subject, Bytes::from_static(b"2"), None)
        .await
        .unwrap();
    assert_eq!(nats.connection_count(), 1);
    let info = js
        .get_stream(&name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 2);
    js.delete_stream(&name).await.unwrap();
}
