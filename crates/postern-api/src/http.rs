//! The API's HTTP routes: `POST /` for AWS JSON 1.0 (the operation in
//! `X-Amz-Target: MailManagerSvc.<Operation>`) and
//! `POST /service/MailManagerSvc/operation/<Operation>` for Smithy RPC v2
//! CBOR (with `smithy-protocol: rpc-v2-cbor`).
//!
//! Each request is read whole (at most [`MAX_BODY`] bytes), its SigV4
//! signature checked, its body decoded and checked against the operation's
//! input shape, and the operation called; the answer, or the error, is
//! encoded in the protocol the request used. Every response carries an
//! `x-amzn-RequestId`. Only `POST` routes are added, so the server's own
//! routes (`GET /healthz`, ...) merge with these.

use crate::Operations;
use crate::error::{ApiError, ErrorCode};
use crate::sigv4::{self, Keys};
use crate::wire::{self, Protocol};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Response, StatusCode};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use postern_model::schema::Schema;
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;

/// The largest request body accepted; larger ones get `413`.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

struct Api<O> {
    operations: Arc<O>,
    keys: Arc<Keys>,
    /// Requests answered at once; more get ThrottlingException.
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Requests the API answers at once (bodies of up to [`MAX_BODY`] each).
pub const MAX_IN_FLIGHT: usize = 64;

impl<O> Clone for Api<O> {
    fn clone(&self) -> Self {
        Api {
            operations: self.operations.clone(),
            keys: self.keys.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

/// The routes of both protocols, over `operations`, for requests signed
/// with one of `keys`.
pub fn router<O: Operations>(operations: Arc<O>, keys: Arc<Keys>) -> Router {
    let prefix = &Schema::get().service().target_prefix;
    Router::new()
        .route("/", post(json::<O>))
        .route(
            &format!("/service/{prefix}/operation/{{operation}}"),
            post(cbor::<O>),
        )
        .with_state(Api {
            operations,
            keys,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        })
}

async fn json<O: Operations>(State(api): State<Api<O>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let prefix = &Schema::get().service().target_prefix;
    let operation = match parts.headers.get("x-amz-target").map(HeaderValue::to_str) {
        None => Err(ApiError::new(
            ErrorCode::UnknownOperationException,
            format!(
                "The X-Amz-Target header is missing; it names the operation ({prefix}.<Operation>)"
            ),
        )),
        Some(Ok(target)) => match target.trim().split_once('.') {
            Some((service, operation)) if service == prefix => Ok(operation.to_string()),
            _ => Err(ApiError::new(
                ErrorCode::UnknownOperationException,
                format!("X-Amz-Target {target:?} is not an operation of {prefix}"),
            )),
        },
        Some(Err(_)) => Err(ApiError::new(
            ErrorCode::UnknownOperationException,
            "The X-Amz-Target header is not ASCII text",
        )),
    };
    serve(api, Protocol::AwsJson10, parts, body, operation).await
}

async fn cbor<O: Operations>(State(api): State<Api<O>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let operation = match parts.headers.get(wire::SMITHY_PROTOCOL_HEADER) {
        Some(v) if v.as_bytes() == wire::SMITHY_PROTOCOL.as_bytes() => Ok(parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()),
        Some(v) => Err(ApiError::new(
            ErrorCode::SerializationException,
            format!(
                "The {} header must be {}; found {:?}",
                wire::SMITHY_PROTOCOL_HEADER,
                wire::SMITHY_PROTOCOL,
                String::from_utf8_lossy(v.as_bytes())
            ),
        )),
        None => Err(ApiError::new(
            ErrorCode::SerializationException,
            format!(
                "The {} header is missing; RPC v2 CBOR requests carry {}: {}",
                wire::SMITHY_PROTOCOL_HEADER,
                wire::SMITHY_PROTOCOL_HEADER,
                wire::SMITHY_PROTOCOL
            ),
        )),
    };
    serve(api, Protocol::RpcV2Cbor, parts, body, operation).await
}

/// What became of a request, for the log and the counter.
struct Outcome {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    error: Option<ApiError>,
    access_key: Option<String>,
}

async fn serve<O: Operations>(
    api: Api<O>,
    protocol: Protocol,
    parts: Parts,
    body: Body,
    operation: Result<String, ApiError>,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = request_id();
    // The operation as the counter labels it: a model name or "unknown",
    // never what a client made up.
    let label = match &operation {
        Ok(name) if Schema::get().operation(name).is_some() => name.clone(),
        _ => "unknown".to_string(),
    };
    let outcome = answer(&api, protocol, &parts, body, operation).await;
    let result = outcome.error.as_ref().map_or("ok", |e| e.code.name());
    metrics::counter!(
        "postern_api_requests_total",
        "operation" => label.clone(),
        "outcome" => result
    )
    .increment(1);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &outcome.error {
        Some(e) if e.code == ErrorCode::InternalServerException => tracing::warn!(
            operation = %label,
            request_id = %request_id,
            access_key = outcome.access_key.as_deref().unwrap_or("-"),
            error = %e,
            elapsed_ms,
            "API request failed"
        ),
        Some(e) => tracing::debug!(
            operation = %label,
            request_id = %request_id,
            access_key = outcome.access_key.as_deref().unwrap_or("-"),
            status = outcome.status,
            error = %e,
            elapsed_ms,
            "API request refused"
        ),
        None => tracing::debug!(
            operation = %label,
            request_id = %request_id,
            access_key = outcome.access_key.as_deref().unwrap_or("-"),
            elapsed_ms,
            "API request answered"
        ),
    }
    let mut response = Response::builder()
        .status(StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (name, value) in outcome.headers {
        response = response.header(name, value);
    }
    response
        .header("x-amzn-requestid", request_id)
        .body(Body::from(outcome.body))
        .expect("the response's headers are valid")
}

async fn answer<O: Operations>(
    api: &Api<O>,
    protocol: Protocol,
    parts: &Parts,
    body: Body,
    operation: Result<String, ApiError>,
) -> Outcome {
    let refuse = |error: ApiError, status: Option<u16>, access_key: Option<String>| {
        let (code_status, headers, body) = wire::encode_error(protocol, &error);
        Outcome {
            status: status.unwrap_or(code_status),
            headers,
            body,
            error: Some(error),
            access_key,
        }
    };
    if let Err(error) = sigv4::precheck(&api.keys, &parts.headers, OffsetDateTime::now_utc()) {
        return refuse(error, None, None);
    }
    let Ok(_permit) = api.in_flight.clone().try_acquire_owned() else {
        return refuse(
            ApiError::new(
                ErrorCode::ThrottlingException,
                format!("more than {MAX_IN_FLIGHT} requests at once; retry"),
            ),
            None,
            None,
        );
    };
    let bytes = match read_body(parts, body).await {
        Ok(bytes) => bytes,
        Err((error, status)) => return refuse(error, Some(status), None),
    };
    let access_key = match sigv4::verify(
        &api.keys,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        &bytes,
        OffsetDateTime::now_utc(),
    ) {
        Ok(id) => id,
        Err(error) => return refuse(error, None, None),
    };
    let operation = match operation {
        Ok(op) => op,
        Err(error) => return refuse(error, None, Some(access_key)),
    };
    let quotas = api.operations.quotas();
    let input = match wire::decode_request_with_quotas(protocol, &operation, &bytes, &quotas) {
        Ok(input) => input,
        Err(error) => return refuse(error, None, Some(access_key)),
    };
    match api.operations.call(&operation, input).await {
        Ok(output) => Outcome {
            status: 200,
            headers: protocol.response_headers(),
            body: wire::encode_response(protocol, &operation, &output),
            error: None,
            access_key: Some(access_key),
        },
        Err(error) => refuse(error, None, Some(access_key)),
    }
}

/// The whole body, or the error (and status) to answer with.
async fn read_body(parts: &Parts, body: Body) -> Result<Vec<u8>, (ApiError, u16)> {
    let too_large = || {
        (
            ApiError::new(
                ErrorCode::SerializationException,
                format!("The request body is larger than {} MiB", MAX_BODY >> 20),
            ),
            413,
        )
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err((
            ApiError::new(
                ErrorCode::SerializationException,
                format!("The request body could not be read: {e}"),
            ),
            400,
        )),
    }
}

/// A random request id in the form AWS uses (a version 4 UUID).
fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // The system's generator failing is no reason to fail the request:
        // the id only correlates logs.
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        bytes.copy_from_slice(&nanos.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
