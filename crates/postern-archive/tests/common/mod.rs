//! The two backends the suite runs against: SQLite + a bodies directory,
//! and PostgreSQL (a fresh database per test, dropped afterwards) + moto's
//! S3 server (one per test binary, shared, one bucket per test).
//!
//! Needs: `psql` and a PostgreSQL server on 127.0.0.1:5432 that trusts
//! user `postgres` (override with `POSTERN_TEST_PG`, a URL without the
//! database name, e.g. `postgres://postgres@127.0.0.1:5432`), and
//! `python3 -m moto.server` with boto3.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use postern_archive::{Archive, ArchiveConfig, EncryptionKey, IndexBackend};
use postern_endpoints::{ObjectStorage, S3Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SqliteDirectory,
    PostgresS3,
}

/// One test's archive and where its bodies live.
pub struct Env {
    pub kind: Kind,
    pub archive: Archive,
    pub storage: ObjectStorage,
    pub bucket: String,
    pub prefix: String,
    pub index: IndexBackend,
    /// A second bucket, for exports.
    pub export_bucket: String,
    _dir: tempfile::TempDir,
    database: Option<String>,
}

impl Env {
    pub async fn new(kind: Kind, keys: Vec<EncryptionKey>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let unique = unique_name();
        let (storage, index, database) = match kind {
            Kind::SqliteDirectory => (
                ObjectStorage::directory(dir.path().join("objects")),
                IndexBackend::Sqlite(dir.path().join("index").join("archive.sqlite")),
                None,
            ),
            Kind::PostgresS3 => {
                let moto = moto();
                moto.create_bucket(&unique);
                moto.create_bucket(&format!("{unique}-exports"));
                let database = create_database(&unique);
                (
                    ObjectStorage::s3(S3Settings {
                        endpoint: Some(format!("http://127.0.0.1:{}", moto.port)),
                        region: "us-east-1".into(),
                        access_key_id: "test".into(),
                        secret_access_key: "test".into(),
                        allow_http: true,
                        virtual_hosted_style: false,
                    }),
                    IndexBackend::Postgres(format!("{}/{database}", pg_base())),
                    Some(database),
                )
            }
        };
        let bucket = unique.clone();
        let prefix = "archive/".to_owned();
        let archive = Archive::open(ArchiveConfig {
            index: index.clone(),
            bodies: storage.clone(),
            bucket: bucket.clone(),
            prefix: prefix.clone(),
            keys,
        })
        .await
        .unwrap();
        Env {
            kind,
            archive,
            storage,
            bucket,
            prefix,
            index,
            export_bucket: format!("{unique}-exports"),
            _dir: dir,
            database,
        }
    }

    /// Another `Archive` on the same index and bodies, with other keys.
    pub async fn reopen(&self, keys: Vec<EncryptionKey>) -> Archive {
        Archive::open(ArchiveConfig {
            index: self.index.clone(),
            bodies: self.storage.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            keys,
        })
        .await
        .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(database) = &self.database {
            psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        }
    }
}

fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "pa{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn pg_base() -> String {
    std::env::var("POSTERN_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn psql(sql: &str) {
    let output = Command::new("psql")
        .args([
            &format!("{}/postgres", pg_base()),
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn create_database(unique: &str) -> String {
    let name = format!("postern_archive_test_{unique}");
    psql(&format!("CREATE DATABASE {name}"));
    name
}

pub struct Moto {
    pub port: u16,
    _child: Child,
}

impl Moto {
    fn create_bucket(&self, bucket: &str) {
        let output = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import boto3\ns3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\ns3.create_bucket(Bucket='{bucket}')",
                self.port
            ))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// moto's S3 server, shared by the tests of this binary. It runs under a
/// shell that kills it once this test process has exited (statics are
/// never dropped).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let port = free_port();
        let script = format!(
            "python3 -m moto.server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
             while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $m",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("sh");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start (pip install 'moto[server]')"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            port,
            _child: child,
        }
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn path_of(env: &Env) -> Option<PathBuf> {
    match &env.index {
        IndexBackend::Sqlite(p) => Some(p.clone()),
        IndexBackend::Postgres(_) => None,
    }
}
