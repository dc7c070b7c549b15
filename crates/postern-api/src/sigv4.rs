//! AWS Signature Version 4, checked against the configured access keys.
//!
//! Only the `Authorization` header form is accepted (no presigned URLs). The
//! canonical request is built as the SigV4 specification and the AWS SDKs
//! build it for services other than S3: the path normalized and URI-encoded
//! once more, the query sorted, the signed headers with trimmed values, the
//! SHA-256 of the body. The credential scope must name the model's signing
//! service (`ses`); its region is whatever the client signed for. The
//! signature is compared in constant time, and the request time must be
//! within 15 minutes of the server's clock.
//!
//! Errors are the ones AWS answers with, so SDKs and the CLI report them as
//! they would against AWS.

use crate::error::{ApiError, ErrorCode};
use axum::http::HeaderMap;
use postern_model::schema::Schema;
use ring::hmac;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use time::format_description::well_known::Rfc2822;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
/// How far the request time may be from the server's clock, either way.
const MAX_SKEW: Duration = Duration::minutes(15);

/// Access key ids and their secret keys.
#[derive(Clone, Default)]
pub struct Keys {
    secrets: HashMap<String, String>,
}

impl Keys {
    /// Keys from `(access key id, secret access key)` pairs; a later pair
    /// with the same id replaces an earlier one.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Keys {
        Keys {
            secrets: pairs.into_iter().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn contains(&self, access_key_id: &str) -> bool {
        self.secrets.contains_key(access_key_id)
    }
}

impl fmt::Debug for Keys {
    /// The ids only: secrets stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("Keys")
            .field("access_key_ids", &ids)
            .finish()
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signed_headers_text: &'a str,
    signature: &'a str,
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::IncompleteSignatureException, message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidSignatureException, message)
}

fn mismatch() -> ApiError {
    invalid(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method.",
    )
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, ApiError> {
    let header = header.trim();
    let (algorithm, rest) = header.split_once(' ').unwrap_or((header, ""));
    if algorithm != ALGORITHM {
        if algorithm.starts_with("AWS4-") {
            return Err(incomplete(format!(
                "Unsupported AWS 'algorithm': '{algorithm}'. Only {ALGORITHM} is supported."
            )));
        }
        return Err(incomplete(format!(
            "Authorization header requires the {ALGORITHM} algorithm with 'Credential', \
             'SignedHeaders' and 'Signature' parameters."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "Authorization header parameter '{part}' is not of the form name=value."
            )));
        };
        let slot = match name.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(incomplete(format!(
                    "Authorization header has an unknown parameter '{other}'."
                )));
            }
        };
        if slot.replace(value.trim()).is_some() {
            return Err(incomplete(format!(
                "Authorization header gives '{}' twice.",
                name.trim()
            )));
        }
    }
    let missing: Vec<String> = [
        ("Credential", credential.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
        ("Signature", signature.is_none()),
    ]
    .iter()
    .filter(|(_, absent)| *absent)
    .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
    .collect();
    if !missing.is_empty() {
        return Err(incomplete(missing.join(" ")));
    }
    let (credential, signed_headers_text, signature) = (
        credential.unwrap_or_default(),
        signed_headers.unwrap_or_default(),
        signature.unwrap_or_default(),
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, \
             e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Credential has an empty access key id."));
    }
    let signed_headers: Vec<&str> = signed_headers_text.split(';').collect();
    if signed_headers.iter().any(|h| h.is_empty()) {
        return Err(incomplete(format!(
            "SignedHeaders must be a ';'-separated list of header names, got '{signed_headers_text}'"
        )));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers,
        signed_headers_text,
        signature,
    })
}

/// `20240501T100000Z`: the form of `X-Amz-Date` and of the string to sign.
fn basic(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn parse_basic(text: &str) -> Option<OffsetDateTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &text[range];
        digits
            .bytes()
            .all(|d| d.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8).ok()?;
    let time = Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// The request time: `X-Amz-Date`, or else `Date` (RFC 1123); with the
/// header it came from.
fn request_time(headers: &HeaderMap) -> Result<(OffsetDateTime, &'static str), ApiError> {
    if let Some(value) = headers.get("x-amz-date") {
        let text = value.to_str().unwrap_or_default().trim();
        let at = parse_basic(text).ok_or_else(|| {
            incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{text}'. \
                 See http://en.wikipedia.org/wiki/ISO_8601"
            ))
        })?;
        return Ok((at, "x-amz-date"));
    }
    if let Some(value) = headers.get("date") {
        let text = value.to_str().unwrap_or_default().trim();
        let at = OffsetDateTime::parse(text, &Rfc2822).map_err(|_| {
            incomplete(format!(
                "Date header must be an RFC 1123 date such as \
                 'Wed, 01 May 2024 10:00:00 GMT'. Got '{text}'."
            ))
        })?;
        return Ok((at.to_offset(UtcOffset::UTC), "date"));
    }
    Err(incomplete(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    ))
}

/// Checks the request's signature; returns the access key id that signed it.
///
/// `path` and `query` are as the request line has them (still
/// percent-encoded); `now` is the server's clock.
pub fn verify(
    keys: &Keys,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<String, ApiError> {
    check(keys, method, path, query, headers, Some(body), now)
}

/// Everything [`verify`] checks that does not need the body: the header,
/// the key, the scope, the time and which headers are signed. Run before a
/// body is read, so that a stranger cannot make the server buffer one.
pub fn precheck(keys: &Keys, headers: &HeaderMap, now: OffsetDateTime) -> Result<(), ApiError> {
    check(keys, "", "", "", headers, None, now).map(|_| ())
}

fn check(
    keys: &Keys,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<String, ApiError> {
    let mut values = headers.get_all("authorization").iter();
    let Some(header) = values.next() else {
        return Err(ApiError::new(
            ErrorCode::MissingAuthenticationTokenException,
            "Missing Authentication Token",
        ));
    };
    if values.next().is_some() {
        return Err(incomplete(
            "The request has more than one Authorization header.",
        ));
    }
    let header = header
        .to_str()
        .map_err(|_| incomplete("The Authorization header is not ASCII text."))?;
    let auth = parse_authorization(header)?;

    let secret = keys.secrets.get(auth.access_key_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnrecognizedClientException,
            "The security token included in the request is invalid.",
        )
    })?;

    let service = &Schema::get().service().signing_name;
    if auth.service != service {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    if auth.terminator != TERMINATOR {
        return Err(invalid(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            auth.terminator
        )));
    }
    if auth.region.is_empty() {
        return Err(invalid("Credential should be scoped to a valid region."));
    }

    let (at, date_header) = request_time(headers)?;
    let amz_date = basic(at);
    if auth.date != &amz_date[..8] {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            &amz_date[..8]
        )));
    }
    let now = now.to_offset(UtcOffset::UTC);
    if at < now - MAX_SKEW {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            basic(now - MAX_SKEW),
            basic(now)
        )));
    }
    if at > now + MAX_SKEW {
        return Err(invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            basic(now + MAX_SKEW),
            basic(now)
        )));
    }

    let signed = |name: &str| {
        auth.signed_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    };
    if !signed("host") {
        return Err(incomplete(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    if !signed(date_header) {
        return Err(incomplete(format!(
            "'{date_header}' must be a 'SignedHeader' in the AWS Authorization."
        )));
    }
    // The headers that choose the operation and how the body is read must
    // be signed too, or a captured request could be replayed as another
    // operation with the same body.
    for name in ["x-amz-target", "smithy-protocol", "content-type"] {
        if headers.contains_key(name) && !signed(name) {
            return Err(incomplete(format!(
                "'{name}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    let Some(body) = body else {
        return Ok(auth.access_key_id.to_string());
    };

    let payload_hash = hex::encode(Sha256::digest(body));
    if let Some(claimed) = headers.get("x-amz-content-sha256") {
        // The header stands for the body in the canonical request; it must
        // be the body's hash (an unsigned payload is not accepted).
        if !claimed
            .as_bytes()
            .eq_ignore_ascii_case(payload_hash.as_bytes())
        {
            return Err(invalid(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
    }

    let canonical = canonical_request(method, path, query, headers, &auth, &payload_hash);
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(&canonical))
    );
    let key = signing_key(secret, auth.date, auth.region, auth.service);
    let signature = hex::decode(auth.signature).map_err(|_| mismatch())?;
    hmac::verify(&key, string_to_sign.as_bytes(), &signature).map_err(|_| mismatch())?;
    Ok(auth.access_key_id.to_string())
}

/// `kSigning`: the secret keyed down through the scope's date, region,
/// service and terminator.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(k_date.as_ref(), region);
    let k_service = step(k_region.as_ref(), service);
    let k_signing = step(k_service.as_ref(), TERMINATOR);
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

/// The canonical request, as bytes: header values need not be UTF-8.
fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    auth: &Authorization,
    payload_hash: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(query).as_bytes());
    out.push(b'\n');
    for name in &auth.signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let lower = name.to_ascii_lowercase();
        for (i, value) in headers.get_all(lower.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            trim_all(value.as_bytes(), &mut out);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(auth.signed_headers_text.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// A header value with surrounding whitespace removed and each inner run of
/// whitespace made one space.
fn trim_all(value: &[u8], out: &mut Vec<u8>) {
    let mut first = true;
    for word in value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(word);
        first = false;
    }
}

/// The path with dot segments and empty segments removed, each byte other
/// than an unreserved character or `/` percent-encoded (again: the path
/// arrives encoded, and services other than S3 sign it encoded twice).
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    encode(normalized.as_bytes(), true)
}

/// The query's parameters, each name and value decoded and encoded again
/// the SigV4 way, sorted by name and then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                encode(&percent_decode(name), false),
                encode(&percent_decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Percent-encodes every byte but the unreserved characters (and `/` in
/// paths), with upper-case hex digits.
fn encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_normalized_and_encoded_again() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(
            canonical_uri("/service/MailManagerSvc/operation/GetRuleSet"),
            "/service/MailManagerSvc/operation/GetRuleSet"
        );
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/a%20b/~x"), "/a%2520b/~x");
    }

    #[test]
    fn queries_are_sorted_and_encoded() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("x=a%20b&y=c/d&z"), "x=a%20b&y=c%2Fd&z=");
    }

    #[test]
    fn header_values_are_trimmed() {
        let mut out = Vec::new();
        trim_all(b"  a   b\tc  ", &mut out);
        assert_eq!(out, b"a b c");
    }

    #[test]
    fn the_basic_format_round_trips() {
        let at = parse_basic("20240501T100000Z").unwrap();
        assert_eq!(at.unix_timestamp(), 1714557600);
        assert_eq!(basic(at), "20240501T100000Z");
        for bad in [
            "20240501T100000",
            "2024-05-01T10:00:00Z",
            "20241301T100000Z",
            "2024050+T100000Z",
        ] {
            assert!(parse_basic(bad).is_none(), "{bad}");
        }
        let rfc1123 = OffsetDateTime::parse("Wed, 01 May 2024 10:00:00 GMT", &Rfc2822).unwrap();
        assert_eq!(rfc1123, at);
    }
}
