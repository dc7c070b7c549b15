//! [`Http`]: a JSON `POST` to an endpoint, with one timeout for the whole
//! exchange and the outcome classified as temporary or permanent.
//!
//! Error messages name the URL without credentials, query or fragment.
//!
//! Invariants: redirects are not followed (a webhook that redirects is
//! misconfigured, and following it would re-send the message elsewhere);
//! at most [`MAX_RESPONSE_BYTES`] of a response body are kept.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;

use crate::{EndpointError, error_chain, tls};

/// The most of a response body [`Http::post_json`] reads. A 2xx answer
/// larger than this is an error (no endpoint Postern talks to answers with
/// more); for other statuses only the start matters.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// How much of an error response's body goes into the error message.
const ERROR_BODY_BYTES: usize = 200;

/// An HTTP client for JSON endpoints. Cheap to clone (connections are
/// pooled and shared between clones).
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// The HTTP client every outbound HTTP(S) call of the gateway uses: rustls
/// with ring, the platform's roots plus `extra_roots`, one timeout for the
/// whole request, no redirects.
pub fn client(
    timeout: Duration,
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<reqwest::Client, String> {
    let tls = tls::client_config(extra_roots)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("postern/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {}", error_chain(&e)))
}

impl Http {
    /// A client whose requests time out after `timeout` (connecting, sending
    /// and reading the whole response), trusting the platform's roots plus
    /// `extra_roots` for HTTPS.
    pub fn new(
        timeout: Duration,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Http, String> {
        Ok(Http {
            client: client(timeout, extra_roots)?,
        })
    }

    /// POST `body` as `application/json` with the extra `headers`.
    ///
    /// `Ok((status, body))` for a 2xx answer. `Err(Temporary)` for
    /// connection errors, timeouts, 408, 429 and 5xx; `Err(Permanent)` for
    /// an invalid URL or header and for every other status (the message
    /// holds the status and the first 200 bytes of the body).
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        headers: &[(String, String)],
    ) -> Result<(u16, Bytes), EndpointError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| EndpointError::Permanent(format!("invalid URL: {e}")))?;
        let shown = redacted(&parsed);
        let url = shown.as_str();
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EndpointError::Permanent(format!(
                "invalid URL {url}: scheme must be http or https"
            )));
        }
        let mut header_map = HeaderMap::with_capacity(headers.len() + 1);
        header_map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                EndpointError::Permanent(format!("invalid HTTP header name {name:?}"))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                EndpointError::Permanent(format!("invalid value for HTTP header {name}"))
            })?;
            header_map.append(name, value);
        }
        let body = serde_json::to_vec(body).map_err(|e| {
            EndpointError::Permanent(format!("cannot serialize the JSON body: {e}"))
        })?;

        let mut response = self
            .client
            .post(parsed)
            .headers(header_map)
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(url, e))?;
        let status = response.status();
        let (body, truncated) = read_limited(&mut response)
            .await
            .map_err(|e| classify_transport(url, e))?;

        if status.is_success() {
            if truncated {
                return Err(EndpointError::Permanent(format!(
                    "POST {url}: HTTP {status}: response body exceeds {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            return Ok((status.as_u16(), body));
        }
        let code = status.as_u16();
        let start = &body[..body.len().min(ERROR_BODY_BYTES)];
        let message = format!(
            "POST {url}: HTTP {status}: {}",
            String::from_utf8_lossy(start).trim()
        );
        if code == 408 || code == 429 || status.is_server_error() {
            Err(EndpointError::Temporary(message))
        } else {
            Err(EndpointError::Permanent(message))
        }
    }
}

/// The URL for messages: no user name or password, query or fragment
/// (webhook URLs often carry a token there).
fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Reads the body, keeping at most [`MAX_RESPONSE_BYTES`]; true when more
/// was sent.
async fn read_limited(response: &mut reqwest::Response) -> Result<(Bytes, bool), reqwest::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

/// A transport error (no HTTP status): builder errors are permanent (the
/// request could never be sent), everything else is worth retrying.
fn classify_transport(url: &str, error: reqwest::Error) -> EndpointError {
    let error = error.without_url();
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    let message = format!("POST {url}: {kind}: {}", error_chain(&error));
    if error.is_builder() {
        EndpointError::Permanent(message)
    } else {
        EndpointError::Temporary(message)
    }
}
