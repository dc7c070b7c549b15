//! SigV4 checks against requests botocore signed, and against tampered
//! copies of them.

mod common;

use axum::http::{HeaderMap, HeaderValue};
use common::*;
use postern_api::ErrorCode;
use postern_api::sigv4::{Keys, verify};
use time::{Duration, OffsetDateTime};

fn keys() -> Keys {
    Keys::new([
        (ACCESS_KEY_ID.to_string(), SECRET.to_string()),
        ("AKIDOTHER".to_string(), "another-secret".to_string()),
    ])
}

fn signed_at() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(SIGNED_AT).unwrap()
}

fn check(
    captured: &Captured,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<String, postern_api::ApiError> {
    verify(&keys(), "POST", captured.path, "", headers, body, now)
}

#[test]
fn botocore_signatures_verify() {
    for captured in ALL_CAPTURED {
        let now = signed_at() + Duration::minutes(5);
        assert_eq!(
            check(captured, &captured.header_map(), &captured.body(), now).as_deref(),
            Ok(ACCESS_KEY_ID),
            "{}",
            captured.path
        );
    }
}

#[test]
fn the_test_signer_agrees_with_botocore() {
    let captured = &JSON_CREATE_RULE_SET;
    let mut headers = HeaderMap::new();
    for name in ["host", "content-type", "x-amz-target"] {
        headers.insert(name, captured.header_map()[name].clone());
    }
    sign(
        "POST",
        "/",
        &mut headers,
        &captured.body(),
        SECRET,
        "eu-west-1",
        signed_at(),
    );
    let ours = headers["authorization"].to_str().unwrap();
    let botocore = captured.header_map()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(ours, botocore);
}

#[test]
fn a_changed_body_is_refused() {
    let captured = &CBOR_START_ARCHIVE_SEARCH;
    let mut body = captured.body();
    *body.last_mut().unwrap() = 0x63; // MaxResults 100 becomes 99
    let err = check(captured, &captured.header_map(), &body, signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
    assert_eq!(
        err.message,
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
    );
}

#[test]
fn a_changed_signed_header_is_refused_and_an_unsigned_one_is_not() {
    let captured = &JSON_CREATE_RULE_SET;
    let mut headers = captured.header_map();
    headers.insert(
        "x-amz-target",
        HeaderValue::from_static("MailManagerSvc.DeleteRuleSet"),
    );
    let err = check(captured, &headers, &captured.body(), signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);

    let mut headers = captured.header_map();
    headers.insert("user-agent", HeaderValue::from_static("curl/8"));
    headers.insert("x-extra", HeaderValue::from_static("not signed"));
    assert!(check(captured, &headers, &captured.body(), signed_at()).is_ok());

    let mut headers = captured.header_map();
    headers.insert("host", HeaderValue::from_static("evil.example:8025"));
    let err = check(captured, &headers, &captured.body(), signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
}

#[test]
fn another_path_is_refused() {
    let captured = &CBOR_CREATE_RULE_SET;
    let err = verify(
        &keys(),
        "POST",
        "/service/MailManagerSvc/operation/DeleteRuleSet",
        "",
        &captured.header_map(),
        &captured.body(),
        signed_at(),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
    let err = verify(
        &keys(),
        "POST",
        captured.path,
        "x=1",
        &captured.header_map(),
        &captured.body(),
        signed_at(),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
}

#[test]
fn unknown_keys_and_wrong_secrets_are_refused() {
    let captured = &JSON_CREATE_RULE_SET;
    let others = Keys::new([("AKIDOTHER".to_string(), SECRET.to_string())]);
    let err = verify(
        &others,
        "POST",
        "/",
        "",
        &captured.header_map(),
        &captured.body(),
        signed_at(),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnrecognizedClientException);
    assert_eq!(
        err.message,
        "The security token included in the request is invalid."
    );

    let wrong = Keys::new([(ACCESS_KEY_ID.to_string(), "not-the-secret".to_string())]);
    let err = verify(
        &wrong,
        "POST",
        "/",
        "",
        &captured.header_map(),
        &captured.body(),
        signed_at(),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
}

#[test]
fn stale_and_future_requests_are_refused() {
    let captured = &JSON_CREATE_RULE_SET;
    let (headers, body) = (captured.header_map(), captured.body());
    let at = |minutes: i64| signed_at() + Duration::minutes(minutes);
    assert!(check(captured, &headers, &body, at(15)).is_ok());
    assert!(check(captured, &headers, &body, at(-15)).is_ok());
    let err = check(captured, &headers, &body, at(16)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
    assert_eq!(
        err.message,
        "Signature expired: 20240501T100000Z is now earlier than 20240501T100100Z \
         (20240501T101600Z - 15 min.)"
    );
    let err = check(captured, &headers, &body, at(-16)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
    assert!(
        err.message
            .starts_with("Signature not yet current: 20240501T100000Z"),
        "{}",
        err.message
    );
}

#[test]
fn missing_and_malformed_authorization() {
    let captured = &JSON_CREATE_RULE_SET;
    let body = captured.body();
    let mut headers = captured.header_map();
    headers.remove("authorization");
    let err = check(captured, &headers, &body, signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::MissingAuthenticationTokenException);
    assert_eq!(err.message, "Missing Authentication Token");

    for (value, expected) in [
        ("Bearer abc", "AWS4-HMAC-SHA256"),
        (
            "AWS4-HMAC-SHA512 Credential=x",
            "Unsupported AWS 'algorithm'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/ses/aws4_request",
            "Authorization header requires 'SignedHeaders' parameter. \
             Authorization header requires 'Signature' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/ses, SignedHeaders=host, Signature=00",
            "Credential must have exactly 5 slash-delimited elements",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/ses/aws4_request, \
             SignedHeaders=content-type;x-amz-date, Signature=00",
            "'Host' must be a 'SignedHeader'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/ses/aws4_request, \
             SignedHeaders=host, Signature=00",
            "'x-amz-date' must be a 'SignedHeader'",
        ),
    ] {
        let mut headers = captured.header_map();
        headers.insert("authorization", HeaderValue::from_static(value));
        let err = check(captured, &headers, &body, signed_at()).unwrap_err();
        assert_eq!(err.code, ErrorCode::IncompleteSignatureException, "{value}");
        assert!(err.message.contains(expected), "{value}: {}", err.message);
    }

    let mut headers = captured.header_map();
    headers.remove("x-amz-date");
    let err = check(captured, &headers, &body, signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::IncompleteSignatureException);
    assert!(err.message.contains("'X-Amz-Date' or a 'Date' header"));
}

#[test]
fn the_scope_must_be_this_service_and_the_request_date() {
    let captured = &JSON_CREATE_RULE_SET;
    let body = captured.body();
    let sig = "Signature=e947ccfb97f227772c3ac1a5e279550e29c885d07b524f8fa4123773116a6fbc";
    for (credential, expected) in [
        (
            "AKIDEXAMPLE/20240501/eu-west-1/s3/aws4_request",
            "Credential should be scoped to correct service: 'ses'.",
        ),
        (
            "AKIDEXAMPLE/20240501/eu-west-1/ses/aws5_request",
            "Credential should be scoped with a valid terminator",
        ),
        (
            "AKIDEXAMPLE/20240502/eu-west-1/ses/aws4_request",
            "Date in Credential scope does not match",
        ),
    ] {
        let mut headers = captured.header_map();
        let value = format!(
            "AWS4-HMAC-SHA256 Credential={credential}, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, {sig}"
        );
        headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
        let err = check(captured, &headers, &body, signed_at()).unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::InvalidSignatureException,
            "{credential}"
        );
        assert!(err.message.contains(expected), "{}", err.message);
    }
}

#[test]
fn the_payload_hash_header_must_match_the_body() {
    let captured = &JSON_CREATE_RULE_SET;
    let body = captured.body();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost:8025"));
    headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    sign(
        "POST",
        "/",
        &mut headers,
        &body,
        SECRET,
        "eu-west-1",
        signed_at(),
    );
    let err = check(captured, &headers, &body, signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignatureException);
    assert!(
        err.message.contains("x-amz-content-sha256"),
        "{}",
        err.message
    );
}

#[test]
fn repeated_headers_and_odd_whitespace_are_canonicalized() {
    let body = b"{}";
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost"));
    headers.append("x-amz-meta", HeaderValue::from_static("  a   b  "));
    headers.append("x-amz-meta", HeaderValue::from_static("c\td"));
    sign(
        "POST",
        "/",
        &mut headers,
        body,
        SECRET,
        "ap-south-1",
        signed_at(),
    );
    assert!(verify(&keys(), "POST", "/", "", &headers, body, signed_at()).is_ok());
}

#[test]
fn the_date_header_may_stand_for_x_amz_date() {
    let body = b"{}";
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost"));
    headers.insert(
        "date",
        HeaderValue::from_static("Wed, 01 May 2024 10:00:00 GMT"),
    );
    sign(
        "POST",
        "/",
        &mut headers,
        body,
        SECRET,
        "us-east-1",
        signed_at(),
    );
    assert!(!headers.contains_key("x-amz-date"));
    assert!(verify(&keys(), "POST", "/", "", &headers, body, signed_at()).is_ok());
    let err = verify(
        &keys(),
        "POST",
        "/",
        "",
        &headers,
        body,
        signed_at() + Duration::hours(1),
    )
    .unwrap_err();
    assert!(
        err.message.starts_with("Signature expired"),
        "{}",
        err.message
    );
}

#[test]
fn keys_do_not_show_their_secrets() {
    let shown = format!("{:?}", keys());
    assert!(shown.contains(ACCESS_KEY_ID));
    assert!(!shown.contains(SECRET));
}

#[test]
fn the_headers_that_choose_the_operation_must_be_signed() {
    // Signed without X-Amz-Target, then sent with one: it could name any
    // operation, so the request is refused before its signature is even
    // computed.
    let captured = &JSON_CREATE_RULE_SET;
    let mut headers = HeaderMap::new();
    for name in ["host", "content-type"] {
        headers.insert(name, captured.header_map()[name].clone());
    }
    sign(
        "POST",
        "/",
        &mut headers,
        &captured.body(),
        SECRET,
        "us-east-1",
        signed_at(),
    );
    headers.insert(
        "x-amz-target",
        HeaderValue::from_static("MailManagerSvc.DeleteRuleSet"),
    );
    let err = check(captured, &headers, &captured.body(), signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::IncompleteSignatureException);
    assert!(err.message.contains("x-amz-target"), "{}", err.message);
    // The same check runs before the body is read.
    let err = postern_api::sigv4::precheck(&keys(), &headers, signed_at()).unwrap_err();
    assert_eq!(err.code, ErrorCode::IncompleteSignatureException);
    assert!(postern_api::sigv4::precheck(&keys(), &captured.header_map(), signed_at()).is_ok());
}
