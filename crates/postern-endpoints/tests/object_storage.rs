//! `ObjectStorage::put` into a directory, and into S3 as served by moto
//! (`python3 -m moto.server`, started here on a free loopback port).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use postern_endpoints::{ObjectStorage, S3Settings};

#[tokio::test]
async fn directory_backend_writes_exact_bytes_at_root_bucket_key() {
    let root = tempfile::tempdir().unwrap();
    let storage = ObjectStorage::directory(root.path().to_path_buf());
    let body = Bytes::from_static(b"Subject: hi\r\n\r\nbody \xff\r\n");
    storage
        .put(
            "archive",
            "2024/06/q-1.eml",
            body.clone(),
            Some("ignored-kms-key"),
        )
        .await
        .unwrap();
    let path = root.path().join("archive/2024/06/q-1.eml");
    assert_eq!(std::fs::read(&path).unwrap(), body);

    // Replacing an object leaves the new bytes and no staging files.
    storage
        .put(
            "archive",
            "2024/06/q-1.eml",
            Bytes::from_static(b"v2"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"v2");
    let entries: Vec<_> = std::fs::read_dir(root.path().join("archive/2024/06"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec!["q-1.eml"]);
}

#[tokio::test]
async fn invalid_keys_are_permanent_and_write_nothing() {
    let root = tempfile::tempdir().unwrap();
    let storage = ObjectStorage::directory(root.path().to_path_buf());
    for (bucket, key) in [
        ("b", ""),
        ("b", "a//b"),
        ("b", "/abs"),
        ("b", "dir/"),
        ("b", "../escape"),
        ("b", "a/./b"),
        ("..", "k"),
        ("a/b", "k"),
        ("", "k"),
    ] {
        let err = storage
            .put(bucket, key, Bytes::from_static(b"x"), None)
            .await
            .unwrap_err();
        assert!(!err.is_temporary(), "{bucket:?} {key:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

/// A moto server on a free port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let probe = Command::new("python3")
            .args(["-c", "import moto.server, flask, werkzeug"])
            .status()
            .expect("python3 must be installed");
        assert!(
            probe.success(),
            "moto's server is not importable: pip install 'moto[server]'"
        );
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m moto.server");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        // Wait until it listens (or has exited).
        for _ in 0..600 {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto.server exited with {status}: pip install 'moto[server]'");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto.server did not listen on port {port} within 60 s");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn settings(endpoint: &str) -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".to_owned(),
        access_key_id: "testing".to_owned(),
        secret_access_key: "testing".to_owned(),
        allow_http: true,
        virtual_hosted_style: false,
    }
}

/// moto does not check signatures: plain HTTP requests make buckets and
/// read objects back independently of the code under test. (An anonymous
/// GET of a private object is refused, so requests carry an unverified
/// `Authorization` header.)
fn raw_http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0",
        ),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn s3_put_against_moto() {
    let moto = Moto::start();
    let http = raw_http();
    let created = http
        .put(format!("{}/mail-archive", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    let storage = ObjectStorage::s3(settings(&moto.endpoint));
    let body = Bytes::from(b"From: a@example.com\r\n\r\nbinary \x00\xff\r\n".to_vec());
    storage
        .put("mail-archive", "inbound/q-1.eml", body.clone(), None)
        .await
        .unwrap();
    let got = http
        .get(format!("{}/mail-archive/inbound/q-1.eml", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), body);

    // SSE-KMS: the key id reaches S3 with the object.
    storage
        .put(
            "mail-archive",
            "inbound/q-2.eml",
            Bytes::from_static(b"secret"),
            Some("arn:aws:kms:us-east-1:123456789012:key/1234abcd"),
        )
        .await
        .unwrap();
    let head = http
        .head(format!("{}/mail-archive/inbound/q-2.eml", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let header = |name: &str| {
        head.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("x-amz-server-side-encryption").as_deref(),
        Some("aws:kms")
    );
    assert_eq!(
        header("x-amz-server-side-encryption-aws-kms-key-id").as_deref(),
        Some("arn:aws:kms:us-east-1:123456789012:key/1234abcd")
    );

    // A bucket that does not exist.
    let err = storage
        .put("no-such-bucket", "k.eml", Bytes::from_static(b"x"), None)
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");
    assert!(err.message().contains("NoSuchBucket"), "{err}");
}

#[tokio::test]
async fn s3_server_down_is_temporary() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let storage = ObjectStorage::s3(settings(&endpoint));
    let err = storage
        .put("bucket", "k.eml", Bytes::from_static(b"x"), None)
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
}

#[tokio::test]
async fn s3_https_only_refuses_http_endpoint() {
    let mut settings = settings("http://127.0.0.1:9");
    settings.allow_http = false;
    let err = ObjectStorage::s3(settings)
        .put("bucket", "k.eml", Bytes::from_static(b"x"), None)
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");
}

/// A stand-in S3 that answers every request with `status` and an S3 error
/// document: what moto cannot be made to do on demand.
async fn failing_s3(status: u16, code: &'static str) -> String {
    let app = axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::from_u16(status).unwrap(),
            format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>"),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn s3_statuses_are_classified() {
    for (status, code, temporary) in [
        (503, "SlowDown", true),
        (500, "InternalError", true),
        (400, "InvalidArgument", false),
        (403, "AccessDenied", false),
        (404, "NoSuchBucket", false),
    ] {
        let endpoint = failing_s3(status, code).await;
        let err = ObjectStorage::s3(settings(&endpoint))
            .put("bucket", "k.eml", Bytes::from_static(b"x"), None)
            .await
            .unwrap_err();
        assert_eq!(err.is_temporary(), temporary, "{status} {code}: {err}");
    }
}
