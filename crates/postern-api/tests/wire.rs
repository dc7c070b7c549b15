//! Both protocols on real operations: requests as botocore sends them,
//! responses and errors as botocore reads them.

mod common;

use ciborium::Value as Cbor;
use common::*;
use postern_api::wire::{Protocol, decode_request, encode_error, encode_response};
use postern_api::{ApiError, ErrorCode};
use serde_json::{Value, json};

fn expected_rule_set() -> Value {
    json!({
        "ClientToken": "token-1",
        "RuleSetName": "inbound",
        "Rules": [{
            "Name": "drop-spam",
            "Conditions": [{ "StringExpression": {
                "Evaluate": { "Attribute": "SUBJECT" },
                "Operator": "CONTAINS",
                "Values": ["[SPAM]"]
            }}],
            "Actions": [{ "Drop": {} }]
        }]
    })
}

fn cbor(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.to_string())
}

fn map(entries: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

fn error_of(result: Result<Value, ApiError>) -> ApiError {
    result.expect_err("the request is refused")
}

#[test]
fn botocore_requests_decode_the_same_in_both_protocols() {
    let from_json = decode_request(
        Protocol::AwsJson10,
        "CreateRuleSet",
        &JSON_CREATE_RULE_SET.body(),
    )
    .unwrap();
    let from_cbor = decode_request(
        Protocol::RpcV2Cbor,
        "CreateRuleSet",
        &CBOR_CREATE_RULE_SET.body(),
    )
    .unwrap();
    assert_eq!(from_json, expected_rule_set());
    assert_eq!(from_cbor, expected_rule_set());
}

#[test]
fn timestamps_arrive_as_epoch_seconds() {
    let expected = json!({
        "ArchiveId": "a-archive1",
        "FromTimestamp": 1704067200.0,
        "ToTimestamp": 1706790600.0,
        "MaxResults": 100
    });
    for (protocol, captured) in [
        (Protocol::AwsJson10, &JSON_START_ARCHIVE_SEARCH),
        (Protocol::RpcV2Cbor, &CBOR_START_ARCHIVE_SEARCH),
    ] {
        let input = decode_request(protocol, "StartArchiveSearch", &captured.body()).unwrap();
        assert_eq!(input, expected, "{protocol:?}");
        assert!(input["FromTimestamp"].is_f64());
    }
    // Tag 1 over a float keeps the fraction.
    let body = cbor(&map(vec![
        ("ArchiveId", text("a-archive1")),
        (
            "FromTimestamp",
            Cbor::Tag(1, Box::new(Cbor::Float(1704067200.25))),
        ),
        (
            "ToTimestamp",
            Cbor::Tag(1, Box::new(Cbor::Integer(1706790600.into()))),
        ),
        ("MaxResults", Cbor::Integer(10.into())),
    ]));
    let input = decode_request(Protocol::RpcV2Cbor, "StartArchiveSearch", &body).unwrap();
    assert_eq!(input["FromTimestamp"], json!(1704067200.25));
}

#[test]
fn an_empty_body_is_an_empty_input() {
    assert_eq!(
        decode_request(Protocol::AwsJson10, "ListRuleSets", b"").unwrap(),
        json!({})
    );
    assert_eq!(
        decode_request(Protocol::RpcV2Cbor, "ListRuleSets", b"").unwrap(),
        json!({})
    );
    let err = error_of(decode_request(Protocol::RpcV2Cbor, "CreateRuleSet", b""));
    assert_eq!(err.code, ErrorCode::ValidationException);
    assert_eq!(
        err.message,
        "2 validation errors:\n\
         RuleSetName: missing required member \"RuleSetName\"\n\
         Rules: missing required member \"Rules\""
    );
}

#[test]
fn nulls_are_absent() {
    let input = decode_request(
        Protocol::AwsJson10,
        "ListRuleSets",
        br#"{"NextToken": null, "PageSize": 5}"#,
    )
    .unwrap();
    assert_eq!(input, json!({ "PageSize": 5 }));
    let body = cbor(&map(vec![("NextToken", Cbor::Null)]));
    assert_eq!(
        decode_request(Protocol::RpcV2Cbor, "ListRuleSets", &body).unwrap(),
        json!({})
    );
}

#[test]
fn validation_names_every_field_at_fault() {
    let body = json!({
        "RuleSetName": "x".repeat(101),
        "Rules": [{
            "Conditions": [{
                "StringExpression": {
                    "Evaluate": { "Attribute": "SUBJECT" },
                    "Operator": "EQUAL",
                    "Values": ["a"]
                }
            }],
            "Actions": [{ "Drop": {}, "Archive": { "TargetArchive": "a-1" } }]
        }, {
            "Name": "ok"
        }],
        "Colour": "blue"
    });
    for protocol in [Protocol::AwsJson10, Protocol::RpcV2Cbor] {
        let bytes = match protocol {
            Protocol::AwsJson10 => serde_json::to_vec(&body).unwrap(),
            Protocol::RpcV2Cbor => {
                let mut out = Vec::new();
                ciborium::ser::into_writer(&body, &mut out).unwrap();
                out
            }
        };
        let err = error_of(decode_request(protocol, "CreateRuleSet", &bytes));
        assert_eq!(err.code, ErrorCode::ValidationException);
        let lines: Vec<&str> = err.message.lines().collect();
        assert_eq!(lines[0], "5 validation errors:", "{}", err.message);
        for expected in [
            "Colour: unknown member \"Colour\"; expected one of ClientToken, RuleSetName, Rules, Tags",
            "RuleSetName: expected 1 to 100 characters; found 101",
            "Rules[0].Actions[0]: expected exactly one of AddHeader, Archive, Bounce, \
             DeliverToMailbox, DeliverToQBusiness, Drop, InvokeLambda, PublishToSns, Relay, \
             ReplaceRecipient, Send, WriteToS3; found Archive and Drop",
            "Rules[0].Conditions[0].StringExpression.Operator: expected one of EQUALS, NOT_EQUALS, \
             STARTS_WITH, ENDS_WITH, CONTAINS; found \"EQUAL\" (did you mean \"EQUALS\"?)",
            "Rules[1].Actions: missing required member \"Actions\"",
        ] {
            assert!(
                lines.contains(&expected),
                "{protocol:?} lacks {expected:?}:\n{}",
                err.message
            );
        }
    }
}

#[test]
fn one_problem_is_one_line() {
    let err = error_of(decode_request(
        Protocol::AwsJson10,
        "GetRuleSet",
        br#"{"RuleSetId": ""}"#,
    ));
    assert_eq!(err.code, ErrorCode::ValidationException);
    assert_eq!(
        err.message,
        "RuleSetId: expected 1 to 100 characters; found 0"
    );
    let err = error_of(decode_request(
        Protocol::AwsJson10,
        "ListRuleSets",
        br#"{"PageSize": "10"}"#,
    ));
    assert_eq!(
        err.message,
        "PageSize: expected an integer; found the string \"10\""
    );
}

#[test]
fn unknown_operations_are_refused() {
    for protocol in [Protocol::AwsJson10, Protocol::RpcV2Cbor] {
        let err = error_of(decode_request(protocol, "CreateRuleSetRequest", b"{}"));
        assert_eq!(err.code, ErrorCode::UnknownOperationException);
        assert!(err.message.contains("CreateRuleSetRequest"));
    }
}

#[test]
fn malformed_bodies_are_serialization_errors() {
    let json_cases: [(&[u8], &str); 4] = [
        (
            b"{",
            "The request body is not valid JSON: EOF while parsing an object at line 1 column 1",
        ),
        (
            b"{\"a\": }",
            "The request body is not valid JSON: expected value at line 1 column 7",
        ),
        (
            b"[1, 2]",
            "The request body must be a JSON object holding the members of ListRuleSetsRequest; found a list",
        ),
        (
            b"{} {}",
            "The request body is not valid JSON: trailing characters at line 1 column 4",
        ),
    ];
    for (body, expected) in json_cases {
        let err = error_of(decode_request(Protocol::AwsJson10, "ListRuleSets", body));
        assert_eq!(err.code, ErrorCode::SerializationException);
        assert_eq!(err.message, expected);
    }

    let valid = CBOR_CREATE_RULE_SET.body();
    let mut trailing = valid.clone();
    trailing.push(0xa0);
    let cbor_cases: Vec<(Vec<u8>, &str)> = vec![
        (
            valid[..valid.len() - 3].to_vec(),
            "it ends inside a data item",
        ),
        (trailing, "1 bytes follow the data item at byte 172"),
        (vec![0x1c], "malformed data item at byte 0"),
        (cbor(&Cbor::Array(vec![])), "must be a CBOR map"),
        (
            cbor(&Cbor::Map(vec![(Cbor::Integer(1.into()), text("x"))])),
            "map keys must be text strings; found an integer",
        ),
        (
            cbor(&map(vec![
                ("PageSize", Cbor::Integer(1.into())),
                ("PageSize", Cbor::Integer(2.into())),
            ])),
            "the key \"PageSize\" is given twice",
        ),
        (
            cbor(&map(vec![("NextToken", Cbor::Bytes(vec![1, 2]))])),
            "NextToken: a byte string where the model has none",
        ),
        (
            cbor(&map(vec![(
                "NextToken",
                Cbor::Tag(32, Box::new(text("http://x"))),
            )])),
            "NextToken: CBOR tag 32 is not part of the protocol",
        ),
        (
            cbor(&map(vec![("PageSize", Cbor::Float(f64::NAN))])),
            "PageSize: NaN is not a finite number",
        ),
    ];
    for (body, expected) in cbor_cases {
        let err = error_of(decode_request(Protocol::RpcV2Cbor, "ListRuleSets", &body));
        assert_eq!(err.code, ErrorCode::SerializationException, "{expected}");
        assert!(
            err.message.contains(expected),
            "{expected:?} not in {:?}",
            err.message
        );
    }

    // Nesting is bounded.
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0xa0);
    let err = error_of(decode_request(Protocol::RpcV2Cbor, "ListRuleSets", &deep));
    assert_eq!(err.code, ErrorCode::SerializationException);
    let mut deep = "[".repeat(10_000).into_bytes();
    deep.extend("]".repeat(10_000).into_bytes());
    let err = error_of(decode_request(Protocol::AwsJson10, "ListRuleSets", &deep));
    assert_eq!(err.code, ErrorCode::SerializationException);
}

fn rule_set_output() -> Value {
    json!({
        "RuleSetId": "rs-1234",
        "RuleSetArn": "arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-1234",
        "RuleSetName": "inbound",
        "CreatedDate": 1714557600,
        "LastModificationDate": 1714557600.5,
        "Rules": [{ "Name": "drop-all", "Actions": [{ "Drop": {} }] }],
        "NotInTheModel": "left out",
        "Tags": null
    })
}

#[test]
fn json_responses_follow_the_output_shape() {
    let body = encode_response(Protocol::AwsJson10, "GetRuleSet", &rule_set_output());
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        json!({
            "RuleSetId": "rs-1234",
            "RuleSetArn": "arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-1234",
            "RuleSetName": "inbound",
            "CreatedDate": 1714557600,
            "LastModificationDate": 1714557600.5,
            "Rules": [{ "Name": "drop-all", "Actions": [{ "Drop": {} }] }]
        })
    );
    // RFC 3339 text from an operation is written as epoch seconds too.
    let body = encode_response(
        Protocol::AwsJson10,
        "ListRuleSets",
        &json!({ "RuleSets": [{ "RuleSetId": "rs-1", "LastModificationDate": "2024-05-01T10:00:00Z" }] }),
    );
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value["RuleSets"][0]["LastModificationDate"],
        json!(1714557600)
    );
    // An output without members is still an object.
    assert_eq!(
        encode_response(Protocol::AwsJson10, "DeleteRuleSet", &json!({})),
        b"{}"
    );
    assert_eq!(
        encode_response(Protocol::AwsJson10, "DeleteRuleSet", &Value::Null),
        b"{}"
    );
}

#[test]
fn cbor_responses_follow_the_output_shape() {
    let body = encode_response(Protocol::RpcV2Cbor, "GetRuleSet", &rule_set_output());
    let value: Cbor = ciborium::de::from_reader(&body[..]).unwrap();
    let Cbor::Map(entries) = value else {
        panic!("not a map: {value:?}")
    };
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k == &text(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("CreatedDate"),
        Some(Cbor::Tag(1, Box::new(Cbor::Integer(1714557600.into()))))
    );
    assert_eq!(
        get("LastModificationDate"),
        Some(Cbor::Tag(1, Box::new(Cbor::Float(1714557600.5))))
    );
    assert_eq!(get("RuleSetName"), Some(text("inbound")));
    assert_eq!(get("NotInTheModel"), None);
    assert_eq!(get("Tags"), None);
    assert_eq!(
        get("Rules"),
        Some(Cbor::Array(vec![map(vec![
            (
                "Actions",
                Cbor::Array(vec![map(vec![("Drop", Cbor::Map(vec![]))])])
            ),
            ("Name", text("drop-all")),
        ])]))
    );
    // Integers stay integers, and an empty output is an empty map.
    let body = encode_response(
        Protocol::RpcV2Cbor,
        "ListRuleSets",
        &json!({ "RuleSets": [], "NextToken": "t" }),
    );
    let value: Cbor = ciborium::de::from_reader(&body[..]).unwrap();
    assert_eq!(
        value,
        map(vec![
            ("NextToken", text("t")),
            ("RuleSets", Cbor::Array(vec![]))
        ])
    );
    assert_eq!(
        encode_response(Protocol::RpcV2Cbor, "DeleteRuleSet", &json!({})),
        [0xa0]
    );
}

#[test]
fn decoding_what_was_encoded_gives_it_back() {
    // An input shape encoded as an output would be: both protocols agree.
    let input = expected_rule_set();
    for protocol in [Protocol::AwsJson10, Protocol::RpcV2Cbor] {
        let body = match protocol {
            Protocol::AwsJson10 => serde_json::to_vec(&input).unwrap(),
            Protocol::RpcV2Cbor => {
                let mut out = Vec::new();
                ciborium::ser::into_writer(&input, &mut out).unwrap();
                out
            }
        };
        assert_eq!(
            decode_request(protocol, "CreateRuleSet", &body).unwrap(),
            input
        );
    }
}

#[test]
fn errors_are_encoded_as_botocore_reads_them() {
    let error = ApiError::not_found("Rule set rs-1 does not exist");
    let (status, headers, body) = encode_error(Protocol::AwsJson10, &error);
    assert_eq!(status, 404);
    assert!(headers.contains(&("content-type", "application/x-amz-json-1.0".to_string())));
    assert!(headers.contains(&("x-amzn-errortype", "ResourceNotFoundException".to_string())));
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        json!({
            "__type": "com.amazonaws.mailmanager#ResourceNotFoundException",
            "Message": "Rule set rs-1 does not exist"
        })
    );

    let (status, headers, body) = encode_error(Protocol::RpcV2Cbor, &error);
    assert_eq!(status, 404);
    assert!(headers.contains(&("content-type", "application/cbor".to_string())));
    assert!(headers.contains(&("smithy-protocol", "rpc-v2-cbor".to_string())));
    let value: Cbor = ciborium::de::from_reader(&body[..]).unwrap();
    assert_eq!(
        value,
        map(vec![
            (
                "__type",
                text("com.amazonaws.mailmanager#ResourceNotFoundException")
            ),
            ("Message", text("Rule set rs-1 does not exist")),
        ])
    );

    // AWS's common errors are not shapes of the model: a bare name.
    let error = ApiError::new(
        ErrorCode::MissingAuthenticationTokenException,
        "Missing Authentication Token",
    );
    let (status, _, body) = encode_error(Protocol::AwsJson10, &error);
    assert_eq!(status, 403);
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        json!({
            "__type": "MissingAuthenticationTokenException",
            "message": "Missing Authentication Token"
        })
    );
}
