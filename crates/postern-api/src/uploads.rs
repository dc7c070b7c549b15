//! Uploads of address list import files: `PUT /uploads/{JobId}?expires=…&signature=…`,
//! the `PreSignedUrl` that CreateAddressListImportJob and
//! GetAddressListImportJob give (`Gateway::upload_link`).
//!
//! The link is the credential: no SigV4. Answers, in plain text:
//! - 403 when `expires` and `signature` are not the ones the link was given
//!   with, or the link expired;
//! - 404 when there is no such import job;
//! - 409 when the job is no longer `CREATED` (a file is taken only before
//!   the job starts);
//! - 413 when the body is larger than [`MAX_UPLOAD_BYTES`];
//! - 200 once the file is stored (replacing one uploaded before).

use crate::ops::Api;
use crate::ops::imports::{IMPORT_KIND, MAX_UPLOAD_BYTES};
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use std::collections::HashMap;
use std::sync::Arc;

/// The upload route, with its state.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/uploads/{job_id}", put(upload))
        .with_state(api)
}

fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn upload(
    State(api): State<Arc<Api>>,
    Path(job_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = refusal(&api, &job_id, &query).await {
        // A small body is read to its end, so that a client that sends it
        // all before reading the answer gets the answer.
        let _ = read(body, DRAINED_BYTES).await;
        return refused;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD_BYTES as u64) {
        return too_large();
    }
    let bytes = match read(body, MAX_UPLOAD_BYTES).await {
        Ok(bytes) => bytes,
        Err(Read::TooLarge) => return too_large(),
        Err(Read::Failed(e)) => {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("the upload could not be read: {e}"),
            );
        }
    };
    if let Err(e) = api.state.upload_put(&job_id, &bytes).await {
        tracing::warn!(job = %job_id, error = %e, "upload could not be stored");
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload could not be stored",
        );
    }
    tracing::info!(job = %job_id, bytes = bytes.len(), "import file uploaded");
    StatusCode::OK.into_response()
}

/// How much of a refused upload's body is read before the answer.
const DRAINED_BYTES: usize = 1 << 20;

/// Why the upload is refused, before its body is read: the link, the job.
async fn refusal(api: &Api, job_id: &str, query: &HashMap<String, String>) -> Option<Response> {
    let expires = query.get("expires").and_then(|e| e.parse::<i64>().ok());
    let signature = query.get("signature");
    let allowed = match (expires, signature) {
        (Some(expires), Some(signature)) => api.gateway.check_upload(job_id, expires, signature),
        _ => false,
    };
    if !allowed {
        return Some(answer(
            StatusCode::FORBIDDEN,
            "the upload link is not valid or has expired",
        ));
    }
    match api.state.job_get(IMPORT_KIND, job_id).await {
        Ok(Some(job)) if job.state == "CREATED" => None,
        Ok(Some(job)) => Some(answer(
            StatusCode::CONFLICT,
            format!(
                "import job {job_id} is {}: a file is uploaded only before the job starts",
                job.state
            ),
        )),
        Ok(None) => Some(answer(
            StatusCode::NOT_FOUND,
            format!("no import job {job_id}"),
        )),
        Err(e) => {
            tracing::warn!(job = %job_id, error = %e, "import job could not be read");
            Some(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the import job could not be read",
            ))
        }
    }
}

fn too_large() -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("an import file is at most {MAX_UPLOAD_BYTES} bytes"),
    )
}

enum Read {
    TooLarge,
    Failed(String),
}

/// The whole body, refused as soon as it exceeds `limit` bytes.
async fn read(mut body: Body, limit: usize) -> Result<Vec<u8>, Read> {
    let mut bytes = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| Read::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(Read::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_are_limited() {
        let body = Body::from(vec![7u8; 10]);
        assert_eq!(read(body, 10).await.ok(), Some(vec![7u8; 10]));
        let body = Body::from(vec![7u8; 11]);
        assert!(matches!(read(body, 10).await, Err(Read::TooLarge)));
        assert_eq!(read(Body::empty(), 10).await.ok(), Some(Vec::new()));
    }
}
