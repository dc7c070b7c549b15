//! `Http::post_json` against a real HTTP server started here (axum on a
//! loopback port), a socket that accepts and never answers, and a port
//! where nothing listens.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use postern_endpoints::{EndpointError, Http};
use serde_json::json;
use tokio::net::TcpListener;

async fn serve() -> String {
    let app = Router::new()
        .route(
            "/echo",
            post(|headers: HeaderMap, body: Bytes| async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let echoed = json!({
                    "contentType": header("content-type"),
                    "xTest": header("x-test"),
                    "authorization": header("authorization"),
                    "body": serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                });
                (StatusCode::OK, echoed.to_string())
            }),
        )
        .route("/created", post(|| async { (StatusCode::CREATED, "made") }))
        .route(
            "/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
        .route(
            "/throttle",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route(
            "/request-timeout",
            post(|| async { (StatusCode::REQUEST_TIMEOUT, "") }),
        )
        .route(
            "/bad",
            post(|| async { (StatusCode::BAD_REQUEST, "x".repeat(500)) }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn client(timeout: Duration) -> Http {
    Http::new(timeout, Vec::new()).unwrap()
}

#[tokio::test]
async fn success_returns_status_and_body_and_sends_headers() {
    let base = serve().await;
    let http = client(Duration::from_secs(30));
    let body = json!({"Records": [{"eventSource": "aws:ses"}]});
    let headers = vec![
        ("X-Test".to_owned(), "hello".to_owned()),
        ("Authorization".to_owned(), "Bearer t0ken".to_owned()),
    ];
    let (status, answer) = http
        .post_json(&format!("{base}/echo"), &body, &headers)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["contentType"], "application/json");
    assert_eq!(answer["xTest"], "hello");
    assert_eq!(answer["authorization"], "Bearer t0ken");
    assert_eq!(answer["body"], body);

    let (status, answer) = http
        .post_json(&format!("{base}/created"), &json!({}), &[])
        .await
        .unwrap();
    assert_eq!((status, &answer[..]), (201, &b"made"[..]));
}

#[tokio::test]
async fn statuses_are_classified() {
    let base = serve().await;
    let http = client(Duration::from_secs(30));
    for (path, temporary, status) in [
        ("/fail", true, "500"),
        ("/throttle", true, "429"),
        ("/request-timeout", true, "408"),
        ("/missing", false, "404"),
        ("/bad", false, "400"),
    ] {
        let err = http
            .post_json(&format!("{base}{path}"), &json!({}), &[])
            .await
            .unwrap_err();
        assert_eq!(err.is_temporary(), temporary, "{path}: {err}");
        assert!(err.message().contains(status), "{path}: {err}");
    }
    let err = http
        .post_json(&format!("{base}/fail"), &json!({}), &[])
        .await
        .unwrap_err();
    assert!(err.message().contains("broken"), "{err}");
}

#[tokio::test]
async fn error_message_holds_the_first_200_bytes_of_the_body() {
    let base = serve().await;
    let err = client(Duration::from_secs(30))
        .post_json(&format!("{base}/bad"), &json!({}), &[])
        .await
        .unwrap_err();
    let EndpointError::Permanent(message) = err else {
        panic!("expected permanent, got {err}");
    };
    assert!(message.contains(&"x".repeat(200)), "{message}");
    assert!(!message.contains(&"x".repeat(201)), "{message}");
}

#[tokio::test]
async fn silent_server_times_out_as_temporary() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections and keep them open without ever answering.
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            sockets.push(socket);
        }
    });
    let err = client(Duration::from_millis(300))
        .post_json(&format!("http://{addr}/hook"), &json!({"a": 1}), &[])
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(err.message().contains("timed out"), "{err}");
    held.abort();
}

#[tokio::test]
async fn connection_refused_is_temporary() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(Duration::from_secs(30))
        .post_json(&format!("http://{addr}/hook"), &json!({}), &[])
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(err.message().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn invalid_url_and_header_are_permanent() {
    let http = client(Duration::from_secs(30));
    for url in ["not a url", "ftp://example.com/x"] {
        let err = http.post_json(url, &json!({}), &[]).await.unwrap_err();
        assert!(!err.is_temporary(), "{url}: {err}");
    }
    let err = http
        .post_json(
            "http://127.0.0.1:1/x",
            &json!({}),
            &[("bad header".to_owned(), "v".to_owned())],
        )
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");
}

#[tokio::test]
async fn messages_do_not_show_url_secrets() {
    let base = serve().await;
    let http = client(Duration::from_secs(30));
    let with_secret = base.replace("http://", "http://user:pa55@") + "/fail?token=s3cret#frag";
    let err = http
        .post_json(&with_secret, &json!({}), &[])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/fail"), "{text}");
    for secret in ["s3cret", "pa55", "user", "frag"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let err = http
        .post_json(&format!("http://{refused}/x?token=s3cret"), &json!({}), &[])
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}
