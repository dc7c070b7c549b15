//! The operations of the Mail Manager API over the versioned state.
//!
//! Reads answer from the running snapshot. A write takes the running
//! document, changes a copy, and hands it to the [`Gateway`], which checks
//! it exactly as a config file is checked (and as the server would run it),
//! stores it as a new version, and swaps it in: a change the gateway could
//! not run is refused, with the reason, before anything is stored.
//!
//! Address list members are the exception (`members.rs`): they are kept in
//! the state store's members table, which their reads answer from and their
//! writes change first; the version that follows raises the list's members
//! revision, and the gateway runs what the table then holds.
//!
//! One file per area: `resources.rs` (create, get, list, update, delete of
//! the eight resource kinds), `tags.rs`, `members.rs` (address list
//! members), `imports.rs` (address list import jobs), `archive.rs` (archive
//! messages, searches and exports).

pub mod archive;
pub mod imports;
pub mod members;
pub mod resources;
pub mod tags;

use crate::error::ApiError;
use base64::Engine as _;
use postern_config::ValidatedConfig;
use postern_model::ResourceKind;
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A version of the state as the gateway runs it.
pub struct Snapshot {
    pub version: u64,
    pub document: Value,
    /// The document (with the file's `Server`) validated: ids, ARNs,
    /// references resolved.
    pub config: ValidatedConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The gateway cannot run the document; the message says why, by field.
    Invalid(String),
    /// Another writer stored a version after the one changed.
    Conflict,
    /// The change cannot be made while the gateway runs as it does (an
    /// ingress point with listeners removed, say); the message says why.
    Refused(String),
    /// The state could not be stored.
    Internal(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The running gateway, as the API sees it.
pub trait Gateway: Send + Sync + 'static {
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Checks `document`, stores it as version `parent + 1` and runs it.
    fn apply(
        &self,
        parent: u64,
        document: Value,
        summary: String,
    ) -> BoxFuture<'_, Result<Arc<Snapshot>, ApplyError>>;
    /// The addresses an ingress point listens on (empty: none).
    fn listening(&self, ingress_point_id: &str) -> Vec<String>;
    /// Signed, expiring URLs served on the HTTP port.
    fn message_link(&self, archived_message_id: &str) -> String;
    fn upload_link(&self, job_id: &str) -> String;
    /// Whether an upload URL's `expires` and `signature` are the ones
    /// `upload_link` gave for `job_id`, and not expired.
    fn check_upload(&self, job_id: &str, expires: i64, signature: &str) -> bool;
    /// How long a deleted archive stays PENDING_DELETION before its
    /// messages are deleted (`Server.Archive.DeletionGraceDays`).
    fn deletion_grace_seconds(&self) -> f64;
    /// The object storage an export's `s3://bucket/prefix` location names.
    fn export_storage(&self, bucket: &str) -> Result<postern_archive::ExportDestination, String>;
}

/// The API's operations.
pub struct Api {
    pub gateway: Arc<dyn Gateway>,
    pub state: postern_state::State,
    pub archive: postern_archive::Archive,
    /// Writes are made one at a time on a node; several nodes are kept
    /// apart by the version numbers.
    write: tokio::sync::Mutex<()>,
}

impl Api {
    pub fn new(
        gateway: Arc<dyn Gateway>,
        state: postern_state::State,
        archive: postern_archive::Archive,
    ) -> Api {
        Api {
            gateway,
            state,
            archive,
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// Changes the document with `change` and applies it; made again on
    /// the newer version when another writer stored one meanwhile. With a
    /// client token, the first response to the token is the response to
    /// every retry of the same request, and a different request with the
    /// token is refused. The token is kept in the version that the change
    /// makes, so it is stored exactly when the change is, on every node.
    pub async fn change<R>(
        &self,
        operation: &str,
        idempotency: Option<(&str, &Value)>,
        summary: String,
        mut change: impl FnMut(&Snapshot, &mut Value) -> Result<R, ApiError>,
        respond: impl Fn(&R) -> Value,
    ) -> Result<Value, ApiError> {
        let _one_at_a_time = self.write.lock().await;
        let token = idempotency
            .map(|(token, input)| (format!("{operation}:{token}"), request_digest(input)));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let snapshot = self.gateway.snapshot();
            if let Some((key, digest)) = &token
                && let Some(seen) = snapshot.document["ClientTokens"].get(key)
            {
                if seen["Digest"].as_str() == Some(digest.as_str()) {
                    return Ok(seen["Response"].clone());
                }
                return Err(ApiError::conflict(format!(
                    "ClientToken {:?} was used before with a different {operation} request",
                    idempotency.map(|(t, _)| t).unwrap_or_default()
                )));
            }
            let mut document = snapshot.document.clone();
            let result = change(&snapshot, &mut document)?;
            let response = respond(&result);
            let at = now();
            let tokens = crate::document::object_mut(&mut document, "ClientTokens");
            // A token is remembered for a day, as clients retry within it.
            tokens.retain(|_, seen| seen["At"].as_f64().is_some_and(|t| at - t < TOKEN_SECONDS));
            if let Some((key, digest)) = &token {
                tokens.insert(
                    key.clone(),
                    json!({"Digest": digest, "Response": response, "At": at}),
                );
            }
            match self
                .gateway
                .apply(snapshot.version, document, summary.clone())
                .await
            {
                Ok(_) => return Ok(response),
                Err(ApplyError::Conflict) if attempts < 8 => {
                    // The gateway has taken the newer version; a short pause
                    // lets a burst of writers on other nodes spread out.
                    tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(attempts)))
                        .await;
                    continue;
                }
                Err(ApplyError::Conflict) => {
                    return Err(ApiError::conflict(
                        "the resources kept changing under this request; retry it",
                    ));
                }
                Err(ApplyError::Invalid(message)) if message.contains("Server.Quotas") => {
                    return Err(ApiError::quota(message));
                }
                Err(ApplyError::Invalid(message)) => return Err(ApiError::validation(message)),
                Err(ApplyError::Refused(message)) => return Err(ApiError::conflict(message)),
                Err(ApplyError::Internal(message)) => return Err(ApiError::internal(message)),
            }
        }
    }
}

/// How long a client token is remembered, in seconds.
const TOKEN_SECONDS: f64 = 86_400.0;

impl crate::Operations for Api {
    fn quotas(&self) -> postern_config::Quotas {
        self.gateway.snapshot().config.quotas
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        if let Some(result) = resources::call(self, operation, &input).await {
            return result;
        }
        if let Some(result) = tags::call(self, operation, &input).await {
            return result;
        }
        if let Some(result) = members::call(self, operation, &input).await {
            return result;
        }
        if let Some(result) = imports::call(self, operation, &input).await {
            return result;
        }
        if let Some(result) = archive::call(self, operation, &input).await {
            return result;
        }
        Err(ApiError::new(
            crate::ErrorCode::UnknownOperationException,
            format!("{operation} is not an operation of this service"),
        ))
    }
}

/// A digest of a request without its client token: what makes two requests
/// with one token the same.
pub fn request_digest(input: &Value) -> String {
    let mut input = input.clone();
    if let Some(map) = input.as_object_mut() {
        map.remove("ClientToken");
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical(&input).as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted, so equal values give equal text.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(list) => format!(
            "[{}]",
            list.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// A new id in AWS's format: the kind's prefix and 26 random lowercase
/// letters and digits.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 26];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source works");
    let mut id = String::with_capacity(prefix.len() + 26);
    id.push_str(prefix);
    for b in bytes {
        id.push(ALPHABET[b as usize % ALPHABET.len()] as char);
    }
    id
}

pub fn new_resource_id(kind: ResourceKind) -> String {
    new_id(kind.id_prefix())
}

/// Now, in epoch seconds (millisecond precision, as AWS reports).
pub fn now() -> f64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

/// A string member of the input.
pub fn text<'a>(input: &'a Value, member: &str) -> Option<&'a str> {
    input[member].as_str()
}

/// A required string member (the wire layer checked it is there).
pub fn required<'a>(input: &'a Value, member: &str) -> Result<&'a str, ApiError> {
    text(input, member).ok_or_else(|| ApiError::validation(format!("{member}: required")))
}

/// One page of `items`: `NextToken` is where the next page starts.
pub fn page<T: Clone>(
    items: &[T],
    input: &Value,
    default_size: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match text(input, "NextToken") {
        None => 0,
        Some(token) => decode_token(token)?,
    };
    let size = input["PageSize"]
        .as_u64()
        .map(|n| n as usize)
        .unwrap_or(default_size)
        .max(1);
    if start > items.len() {
        return Err(ApiError::validation(
            "NextToken: not a token this service gave",
        ));
    }
    let end = start.saturating_add(size).min(items.len());
    let page = items.get(start..end).unwrap_or(&[]).to_vec();
    let next = (end < items.len()).then(|| encode_token(end));
    Ok((page, next))
}

pub fn encode_token(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("postern:{offset}"))
}

pub fn decode_token(token: &str) -> Result<usize, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("postern:")?.parse().ok())
        .ok_or_else(|| ApiError::validation("NextToken: not a token this service gave"))
}

/// Adds `NextToken` to a list response when there is one.
pub fn with_token(mut response: Value, next: Option<String>) -> Value {
    if let Some(token) = next {
        response["NextToken"] = json!(token);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_everything_once() {
        let items: Vec<u32> = (0..7).collect();
        let mut seen = Vec::new();
        let mut input = json!({"PageSize": 3});
        loop {
            let (page, next) = page(&items, &input, 50).unwrap();
            seen.extend(page);
            match next {
                Some(token) => input["NextToken"] = json!(token),
                None => break,
            }
        }
        assert_eq!(seen, items);
        assert!(page(&items, &json!({"NextToken": "garbage"}), 50).is_err());
    }

    #[test]
    fn digests_ignore_the_token_and_key_order() {
        let a = json!({"ClientToken": "x", "A": 1, "B": {"C": [1, 2], "D": "e"}});
        let b = json!({"B": {"D": "e", "C": [1, 2]}, "A": 1, "ClientToken": "y"});
        assert_eq!(request_digest(&a), request_digest(&b));
        assert_ne!(request_digest(&a), request_digest(&json!({"A": 2})));
    }

    #[test]
    fn ids_look_like_aws_ids() {
        let id = new_resource_id(ResourceKind::RuleSet);
        assert!(id.starts_with("rs-") && id.len() == 29, "{id}");
        assert_ne!(id, new_resource_id(ResourceKind::RuleSet));
    }
}
