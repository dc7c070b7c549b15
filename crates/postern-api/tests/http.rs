//! The routes end to end: signed requests in both protocols through the
//! router to an in-test `Operations`, and every way a request is refused.

mod common;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::routing::get;
use ciborium::Value as Cbor;
use common::*;
use postern_api::sigv4::Keys;
use postern_api::{ApiError, Operations};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use tower::ServiceExt;

/// Answers a few operations and remembers what it was asked.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<(String, Value)>>,
}

impl Operations for Fake {
    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        self.calls
            .lock()
            .unwrap()
            .push((operation.to_string(), input.clone()));
        match operation {
            "CreateRuleSet" => Ok(json!({ "RuleSetId": "rs-1" })),
            "GetRuleSet" => Ok(json!({
                "RuleSetId": input["RuleSetId"],
                "RuleSetArn": "arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-1",
                "RuleSetName": "inbound",
                "CreatedDate": 1714557600,
                "LastModificationDate": 1714557600.5,
                "Rules": []
            })),
            "DeleteRuleSet" => Err(ApiError::not_found("Rule set rs-9 does not exist")),
            _ => Err(ApiError::internal("not answered in this test")),
        }
    }
}

fn app() -> (Router, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let keys = Arc::new(Keys::new([(ACCESS_KEY_ID.to_string(), SECRET.to_string())]));
    (postern_api::http::router(fake.clone(), keys), fake)
}

fn json_request(operation: &str, body: &[u8]) -> Request<Body> {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost:8025"));
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if !operation.is_empty() {
        headers.insert(
            "x-amz-target",
            HeaderValue::from_str(&format!("MailManagerSvc.{operation}")).unwrap(),
        );
    }
    build("/", headers, body)
}

fn cbor_request(operation: &str, body: &[u8], protocol_header: bool) -> Request<Body> {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost:8025"));
    headers.insert("content-type", HeaderValue::from_static("application/cbor"));
    headers.insert("accept", HeaderValue::from_static("application/cbor"));
    if protocol_header {
        headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    }
    build(
        &format!("/service/MailManagerSvc/operation/{operation}"),
        headers,
        body,
    )
}

fn build(path: &str, mut headers: HeaderMap, body: &[u8]) -> Request<Body> {
    sign(
        "POST",
        path,
        &mut headers,
        body,
        SECRET,
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .body(Body::from(body.to_vec()))
        .unwrap();
    *request.headers_mut() = headers;
    request
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn cbor(&self) -> Cbor {
        ciborium::de::from_reader(&self.body[..]).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer {
        status,
        headers,
        body: body.to_vec(),
    }
}

fn cbor_get<'a>(value: &'a Cbor, key: &str) -> Option<&'a Cbor> {
    match value {
        Cbor::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Cbor::Text(t) if t == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

#[tokio::test]
async fn a_json_request_is_answered() {
    let (app, fake) = app();
    let body = JSON_CREATE_RULE_SET.body();
    let answer = send(&app, json_request("CreateRuleSet", &body)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "application/x-amz-json-1.0");
    assert_eq!(answer.header("x-amzn-requestid").len(), 36);
    assert_eq!(answer.json(), json!({ "RuleSetId": "rs-1" }));
    let calls = fake.calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "CreateRuleSet");
    assert_eq!(calls[0].1["Rules"][0]["Name"], "drop-spam");
}

#[tokio::test]
async fn a_cbor_request_is_answered_in_cbor() {
    let (app, fake) = app();
    let mut body = Vec::new();
    ciborium::ser::into_writer(&json!({ "RuleSetId": "rs-1" }), &mut body).unwrap();
    let answer = send(&app, cbor_request("GetRuleSet", &body, true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "application/cbor");
    assert_eq!(answer.header("smithy-protocol"), "rpc-v2-cbor");
    let value = answer.cbor();
    assert_eq!(
        cbor_get(&value, "CreatedDate"),
        Some(&Cbor::Tag(1, Box::new(Cbor::Integer(1714557600.into()))))
    );
    assert_eq!(
        cbor_get(&value, "RuleSetId"),
        Some(&Cbor::Text("rs-1".into()))
    );
    assert_eq!(
        fake.calls.lock().unwrap()[0].1,
        json!({ "RuleSetId": "rs-1" })
    );
}

#[tokio::test]
async fn unsigned_and_badly_signed_requests_are_refused_in_their_protocol() {
    let (app, fake) = app();
    let mut request = json_request("ListRuleSets", b"{}");
    request.headers_mut().remove("authorization");
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.header("x-amzn-errortype"),
        "MissingAuthenticationTokenException"
    );
    assert_eq!(
        answer.json(),
        json!({
            "__type": "MissingAuthenticationTokenException",
            "message": "Missing Authentication Token"
        })
    );

    let mut request = cbor_request("ListRuleSets", &[0xa0], true);
    *request.body_mut() = Body::from(vec![
        0xa1, 0x68, b'P', b'a', b'g', b'e', b'S', b'i', b'z', b'e', 0x01,
    ]);
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.header("smithy-protocol"), "rpc-v2-cbor");
    assert_eq!(
        cbor_get(&answer.cbor(), "__type"),
        Some(&Cbor::Text("InvalidSignatureException".into()))
    );
    assert!(fake.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_operation_must_be_named_right() {
    let (app, _) = app();
    let answer = send(&app, json_request("", b"{}")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["__type"], "UnknownOperationException");
    let answer = send(&app, json_request("Frobnicate", b"{}")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["__type"], "UnknownOperationException");

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost:8025"));
    headers.insert(
        "x-amz-target",
        HeaderValue::from_static("DynamoDB_20120810.ListTables"),
    );
    let answer = send(&app, build("/", headers, b"{}")).await;
    assert_eq!(answer.json()["__type"], "UnknownOperationException");

    let answer = send(&app, cbor_request("Frobnicate", &[0xa0], true)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        cbor_get(&answer.cbor(), "__type"),
        Some(&Cbor::Text("UnknownOperationException".into()))
    );

    let answer = send(&app, cbor_request("ListRuleSets", &[0xa0], false)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let value = answer.cbor();
    assert_eq!(
        cbor_get(&value, "__type"),
        Some(&Cbor::Text("SerializationException".into()))
    );
}

#[tokio::test]
async fn invalid_input_never_reaches_the_operation() {
    let (app, fake) = app();
    let answer = send(
        &app,
        json_request(
            "CreateRuleSet",
            br#"{"RuleSetName": "bad name!", "Rules": []}"#,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.header("x-amzn-errortype"), "ValidationException");
    let value = answer.json();
    assert_eq!(
        value["__type"],
        "com.amazonaws.mailmanager#ValidationException"
    );
    assert_eq!(
        value["Message"],
        "RuleSetName: expected text matching [a-zA-Z0-9_.-]+ (RuleSetName); found \"bad name!\""
    );
    let answer = send(&app, json_request("CreateRuleSet", b"{\"RuleSetName\": ")).await;
    assert_eq!(answer.json()["__type"], "SerializationException");
    assert!(fake.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn operation_errors_are_encoded() {
    let (app, _) = app();
    let answer = send(
        &app,
        cbor_request(
            "DeleteRuleSet",
            &{
                let mut b = Vec::new();
                ciborium::ser::into_writer(&json!({ "RuleSetId": "rs-9" }), &mut b).unwrap();
                b
            },
            true,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        cbor_get(&answer.cbor(), "Message"),
        Some(&Cbor::Text("Rule set rs-9 does not exist".into()))
    );
    let answer = send(&app, json_request("ListRuleSets", b"")).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.json()["__type"], "InternalServerException");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let (app, fake) = app();
    let big = vec![b' '; postern_api::http::MAX_BODY + 1];
    let mut request = json_request("ListRuleSets", b"{}");
    *request.body_mut() = Body::from(big.clone());
    request
        .headers_mut()
        .insert("content-length", HeaderValue::from(big.len()));
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.json()["__type"], "SerializationException");

    // Without a declared length, the limit holds while reading.
    let mut request = cbor_request("ListRuleSets", &[0xa0], true);
    *request.body_mut() = streamed(big);
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fake.calls.lock().unwrap().is_empty());
}

/// A body of unknown length, in 1 MiB chunks.
fn streamed(bytes: Vec<u8>) -> Body {
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = bytes
        .chunks(1 << 20)
        .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn the_server_s_own_routes_merge_with_these() {
    let (api, _) = app();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api);
    let response = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let answer = send(&app, json_request("ListRuleSets", b"")).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
}
