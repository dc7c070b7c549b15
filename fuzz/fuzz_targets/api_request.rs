//! Arbitrary request bodies into both protocols of the API, across
//! operations with nested unions, timestamps, integers and maps, and
//! arbitrary `Authorization` headers into the SigV4 check: errors, never a
//! panic. A body that decodes is valid input, and reads back the same once
//! written as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_api::ErrorCode;
use postern_api::sigv4::{Keys, verify};
use postern_api::wire::{Protocol, decode_request};

const OPERATIONS: [&str; 6] = [
    "CreateRuleSet",
    "CreateTrafficPolicy",
    "StartArchiveSearch",
    "ListRuleSets",
    "CreateIngressPoint",
    "TagResource",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let operation = OPERATIONS[usize::from(selector) % OPERATIONS.len()];
    for protocol in [Protocol::AwsJson10, Protocol::RpcV2Cbor] {
        match decode_request(protocol, operation, body) {
            Ok(input) => {
                assert!(input.is_object());
                let json = serde_json::to_vec(&input).unwrap();
                let again = decode_request(Protocol::AwsJson10, operation, &json)
                    .expect("a decoded input is valid input");
                assert_eq!(again, input);
            }
            Err(e) => {
                assert!(matches!(
                    e.code,
                    ErrorCode::SerializationException | ErrorCode::ValidationException
                ));
                assert!(!e.message.is_empty());
            }
        }
    }

    let keys = Keys::new([("AKIDEXAMPLE".to_string(), "secret".to_string())]);
    let mut headers = http::HeaderMap::new();
    headers.insert("host", http::HeaderValue::from_static("localhost"));
    headers.insert("x-amz-date", http::HeaderValue::from_static("20240501T100000Z"));
    if let Ok(value) = http::HeaderValue::from_bytes(body) {
        headers.insert("authorization", value);
    }
    let now = time::OffsetDateTime::from_unix_timestamp(1714557600).unwrap();
    assert!(verify(&keys, "POST", "/", "", &headers, body, now).is_err());
});
