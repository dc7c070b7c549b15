//! [`Rspamd`]: a scan through Rspamd's HTTP protocol.
//!
//! `POST <url>/checkv2` with the envelope in headers (`IP`, `Helo`,
//! `From`, one `Rcpt` per recipient, `Queue-Id`, `Hostname`, and
//! `Password` when configured) and the raw message as the body; the answer
//! is a JSON document with the score, the action and the symbols.
//!
//! One timeout bounds the whole exchange (connecting, sending, reading).
//! Connection errors are [`AddonError::Unavailable`]; an HTTP status other
//! than 200, a body that is not the expected JSON, or one larger than
//! [`MAX_RESPONSE_BYTES`] are [`AddonError::Protocol`]. Redirects are not
//! followed.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::{AddonError, error_chain};

/// The most of Rspamd's answer read. Rspamd lists the URLs and addresses it
/// found, so a message full of links gets a long answer, but never this.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// How much of an error answer goes into the error message.
const ERROR_BODY_BYTES: usize = 200;

/// An Rspamd client. Cheap to clone (connections are pooled and shared).
#[derive(Debug, Clone)]
pub struct Rspamd {
    client: reqwest::Client,
    /// `<url>/checkv2`.
    check_url: reqwest::Url,
    /// The URL for messages, without credentials, query or fragment.
    shown: String,
    password: Option<String>,
}

/// The SMTP envelope of the message, as Rspamd wants it.
#[derive(Debug, Clone)]
pub struct RspamdEnvelope<'a> {
    /// The SMTP client's address.
    pub ip: IpAddr,
    /// The EHLO/HELO name (empty: not sent).
    pub helo: &'a str,
    /// The MAIL FROM address, without angle brackets (empty: the null
    /// sender, sent as `<>`).
    pub mail_from: &'a str,
    /// The RCPT TO addresses.
    pub recipients: &'a [String],
    /// Postern's id for the message, for Rspamd's log (empty: not sent).
    pub queue_id: &'a str,
    /// The SMTP client's host name from reverse DNS (Rspamd's `Hostname`
    /// header; empty: unknown, not sent).
    pub hostname: &'a str,
}

/// Rspamd's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RspamdResult {
    pub score: f64,
    pub required_score: f64,
    /// `no action`, `greylist`, `add header`, `rewrite subject`,
    /// `soft reject` or `reject`.
    pub action: String,
    /// The action is `reject`, `add header` or `rewrite subject`.
    pub is_spam: bool,
    /// The names of the symbols that matched, sorted.
    pub symbols: Vec<String>,
}

impl Rspamd {
    /// A client for the Rspamd normal worker (or proxy) at `url`, e.g.
    /// `http://127.0.0.1:11333`, whose scans time out after `timeout`.
    pub fn new(url: &str, timeout: Duration, password: Option<String>) -> Result<Rspamd, String> {
        let mut base =
            reqwest::Url::parse(url).map_err(|e| format!("invalid Rspamd URL {url:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "invalid Rspamd URL {url:?}: scheme must be http or https"
            ));
        }
        base.set_query(None);
        base.set_fragment(None);
        let path = format!("{}/checkv2", base.path().trim_end_matches('/'));
        base.set_path(&path);
        let mut shown = base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let client = postern_endpoints::http::client(timeout, Vec::new())?;
        Ok(Rspamd {
            client,
            check_url: base,
            shown: shown.to_string(),
            password,
        })
    }

    /// Scans `message` (the raw message as received).
    pub async fn check(
        &self,
        envelope: &RspamdEnvelope<'_>,
        message: &[u8],
    ) -> Result<RspamdResult, AddonError> {
        let url = self.shown.as_str();
        let headers = self.headers(envelope)?;
        let mut response = self
            .client
            .post(self.check_url.clone())
            .headers(headers)
            .body(message.to_vec())
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        let status = response.status();
        let (body, truncated) = read_limited(&mut response)
            .await
            .map_err(|e| transport(url, e))?;
        if status != reqwest::StatusCode::OK {
            let start = &body[..body.len().min(ERROR_BODY_BYTES)];
            return Err(AddonError::Protocol(format!(
                "POST {url}: HTTP {status}: {}",
                String::from_utf8_lossy(start).trim()
            )));
        }
        if truncated {
            return Err(AddonError::Protocol(format!(
                "POST {url}: the answer exceeds {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        parse_result(&body).map_err(|e| AddonError::Protocol(format!("POST {url}: {e}")))
    }

    fn headers(&self, envelope: &RspamdEnvelope<'_>) -> Result<HeaderMap, AddonError> {
        let mut headers = HeaderMap::new();
        let mut add = |name: &'static str, value: &str| -> Result<(), AddonError> {
            let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                AddonError::Protocol(format!(
                    "cannot send {value:?} to Rspamd in the {name} header"
                ))
            })?;
            headers.append(HeaderName::from_static(name), value);
            Ok(())
        };
        add("ip", &envelope.ip.to_canonical().to_string())?;
        if !envelope.helo.is_empty() {
            add("helo", envelope.helo)?;
        }
        add(
            "from",
            if envelope.mail_from.is_empty() {
                "<>"
            } else {
                envelope.mail_from
            },
        )?;
        for recipient in envelope.recipients {
            add("rcpt", recipient)?;
        }
        if !envelope.queue_id.is_empty() {
            add("queue-id", envelope.queue_id)?;
        }
        if !envelope.hostname.is_empty() {
            add("hostname", envelope.hostname)?;
        }
        if let Some(password) = &self.password {
            add("password", password)?;
        }
        Ok(headers)
    }
}

/// The verdict in Rspamd's JSON answer.
fn parse_result(body: &[u8]) -> Result<RspamdResult, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if let Some(error) = json.get("error") {
        return Err(format!("Rspamd reports an error: {error}"));
    }
    let number = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("the answer has no number {key:?}"))
    };
    let score = number("score")?;
    let required_score = number("required_score")?;
    let action = json
        .get("action")
        .and_then(serde_json::Value::as_str)
        .ok_or("the answer has no string \"action\"")?
        .to_string();
    let mut symbols: Vec<String> = match json.get("symbols") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        Some(_) => return Err("\"symbols\" is not an object".into()),
    };
    symbols.sort();
    let is_spam = matches!(action.as_str(), "reject" | "add header" | "rewrite subject");
    Ok(RspamdResult {
        score,
        required_score,
        action,
        is_spam,
        symbols,
    })
}

/// Reads the body, keeping at most [`MAX_RESPONSE_BYTES`]; true when more
/// was sent.
async fn read_limited(response: &mut reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A transport error (no HTTP status).
fn transport(url: &str, error: reqwest::Error) -> AddonError {
    let error = error.without_url();
    let chain = error_chain(&error);
    if error.is_timeout() {
        AddonError::Timeout(format!("POST {url}: timed out: {chain}"))
    } else if error.is_connect() {
        AddonError::Unavailable(format!("POST {url}: cannot connect: {chain}"))
    } else if error.is_builder() || error.is_decode() {
        AddonError::Protocol(format!("POST {url}: {chain}"))
    } else {
        AddonError::Unavailable(format!("POST {url}: failed: {chain}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let body = br#"{"is_skipped":false,"score":15.5,"required_score":15.0,
            "action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0},
            "ARC_NA":{"name":"ARC_NA","score":0}},"messages":{}}"#;
        assert_eq!(
            parse_result(body),
            Ok(RspamdResult {
                score: 15.5,
                required_score: 15.0,
                action: "reject".into(),
                is_spam: true,
                symbols: vec!["ARC_NA".into(), "GTUBE".into()],
            })
        );
        let body = br#"{"score":-0.1,"required_score":15,"action":"greylist"}"#;
        let result = parse_result(body).unwrap();
        assert!(!result.is_spam);
        assert!(result.symbols.is_empty());
        assert!(parse_result(b"<html>").is_err());
        assert!(parse_result(br#"{"error":"bad"}"#).is_err());
        assert!(parse_result(br#"{"score":"1","required_score":1,"action":"x"}"#).is_err());
        assert!(
            parse_result(br#"{"score":1,"required_score":1,"action":"x","symbols":[]}"#).is_err()
        );
    }

    #[test]
    fn url_and_headers() {
        let rspamd = Rspamd::new(
            "http://u:p@127.0.0.1:11333/base/?q=1",
            Duration::from_secs(1),
            Some("pw".into()),
        )
        .unwrap();
        assert_eq!(
            rspamd.check_url.as_str(),
            "http://u:p@127.0.0.1:11333/base/checkv2"
        );
        assert_eq!(rspamd.shown, "http://127.0.0.1:11333/base/checkv2");
        let recipients = vec!["a@example.com".to_string(), "b@example.com".to_string()];
        let envelope = RspamdEnvelope {
            ip: "::ffff:192.0.2.1".parse().unwrap(),
            helo: "mx.example.net",
            mail_from: "",
            recipients: &recipients,
            queue_id: "q1",
            hostname: "",
        };
        let headers = rspamd.headers(&envelope).unwrap();
        assert_eq!(headers["ip"], "192.0.2.1");
        assert_eq!(headers["from"], "<>");
        assert_eq!(headers.get_all("rcpt").iter().count(), 2);
        assert_eq!(headers["password"], "pw");
        assert!(!headers.contains_key("hostname"));
        let bad = RspamdEnvelope {
            helo: "a\r\nX: y",
            ..envelope
        };
        assert!(matches!(rspamd.headers(&bad), Err(AddonError::Protocol(_))));
        assert!(Rspamd::new("ftp://x", Duration::from_secs(1), None).is_err());
        assert!(Rspamd::new("not a url", Duration::from_secs(1), None).is_err());
    }
}
