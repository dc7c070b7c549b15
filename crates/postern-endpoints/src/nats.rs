//! [`Nats`]: publishing to NATS JetStream and waiting for the stream's
//! acknowledgement, so that success means the message is stored.
//!
//! One connection per server URL, made on first use and then shared by all
//! clones. A connection that drops reconnects in the background
//! (async-nats); a publish made meanwhile times out waiting for its
//! acknowledgement, which is a temporary failure. A connection attempt that
//! fails is not cached: the next publish tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::{EndpointError, error_chain};

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for JetStream's acknowledgement of a publish.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// JetStream publisher. Cheap to clone; clones share the connections.
#[derive(Debug, Clone, Default)]
pub struct Nats {
    connections: Arc<Mutex<HashMap<String, Arc<OnceCell<async_nats::jetstream::Context>>>>>,
}

impl Nats {
    /// A publisher with no connections yet.
    pub fn new() -> Nats {
        Nats::default()
    }

    /// Publish `payload` to `subject` on the server at `url` and wait until
    /// the stream has stored it.
    ///
    /// `msg_id` is sent as `Nats-Msg-Id`: within the stream's duplicate
    /// window, JetStream stores a message with an id it has seen only once
    /// (and acknowledges the repeat as a duplicate, which is success here).
    ///
    /// No stream captures `subject` → `Permanent`; cannot connect, no
    /// acknowledgement in time → `Temporary`. Other errors reported by the
    /// stream (limits, wrong expectations) are `Temporary`, except a
    /// payload larger than the server accepts (`Permanent`).
    pub async fn publish(
        &self,
        url: &str,
        subject: &str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<(), EndpointError> {
        if subject.is_empty()
            || subject.starts_with('.')
            || subject.ends_with('.')
            || subject.contains("..")
            || subject.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
        {
            return Err(EndpointError::Permanent(format!(
                "invalid NATS subject {subject:?} for publishing"
            )));
        }
        let context = self.context(url).await?;
        let mut message = PublishMessage::build().payload(payload);
        if let Some(id) = msg_id {
            message = message.message_id(id);
        }
        let ack = context
            .send_publish(subject.to_owned(), message)
            .await
            .map_err(|e| classify(url, subject, e.kind(), &e))?;
        ack.await
            .map_err(|e| classify(url, subject, e.kind(), &e))?;
        Ok(())
    }

    /// How many server connections are open (made and cached); for metrics
    /// and tests.
    pub fn connection_count(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .filter(|cell| cell.initialized())
            .count()
    }

    /// The JetStream context for `url`, connecting on first use.
    async fn context(&self, url: &str) -> Result<async_nats::jetstream::Context, EndpointError> {
        let cell = {
            let mut connections = self
                .connections
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            connections.entry(url.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(CONNECT_TIMEOUT)
                .connect(url)
                .await
                .map_err(|e| {
                    use async_nats::ConnectErrorKind as K;
                    let message = format!("NATS {url}: cannot connect: {}", error_chain(&e));
                    match e.kind() {
                        K::ServerParse | K::AuthorizationViolation | K::Authentication => {
                            EndpointError::Permanent(message)
                        }
                        _ => EndpointError::Temporary(message),
                    }
                })?;
            let mut context = async_nats::jetstream::new(client);
            context.set_timeout(ACK_TIMEOUT);
            Ok(context)
        })
        .await
        .cloned()
    }
}

fn classify(
    url: &str,
    subject: &str,
    kind: PublishErrorKind,
    error: &(dyn std::error::Error + 'static),
) -> EndpointError {
    match kind {
        PublishErrorKind::StreamNotFound => EndpointError::Permanent(format!(
            "NATS {url}: no JetStream stream captures subject {subject:?} \
             (create one whose subjects include it)"
        )),
        PublishErrorKind::MaxPayloadExceeded => {
            EndpointError::Permanent(format!("NATS {url}: {}", error_chain(error)))
        }
        _ => EndpointError::Temporary(format!(
            "NATS {url}: publish to {subject:?}: {}",
            error_chain(error)
        )),
    }
}
