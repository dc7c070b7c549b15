//! The HTTP port: `/healthz`, Prometheus `/metrics`, archived message
//! downloads (`/archive/messages/{id}`, links signed by `archive::Links`),
//! and the Mail Manager API with its upload URLs (`postern_api`).

use super::archive::Links;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use postern_archive::Archive;
use tokio::sync::watch;

#[derive(Clone)]
struct Downloads {
    archive: Archive,
    links: Links,
}

#[derive(serde::Deserialize)]
struct LinkQuery {
    expires: i64,
    signature: String,
}

async fn download(
    State(d): State<Downloads>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if !d.links.check(
        &id,
        q.expires,
        &q.signature,
        time::OffsetDateTime::now_utc(),
    ) {
        return (
            StatusCode::FORBIDDEN,
            "the link is not valid or has expired\n",
        )
            .into_response();
    }
    match d.archive.raw(&id).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "message/rfc822".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}.eml\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(postern_archive::ArchiveError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, "no such archived message\n").into_response()
        }
        Err(e) => {
            tracing::warn!(message = %id, error = %e, "archived message could not be read");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the message could not be read\n",
            )
                .into_response()
        }
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    archive: Archive,
    links: Links,
    api: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/archive/messages/{id}", get(download))
        .with_state(Downloads { archive, links })
        .merge(api);
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "HTTP listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
