//! The archive store as the server runs it: opened from `Server.Archive`,
//! retention enforced in the background, and message download links —
//! what GetArchiveMessage hands out — signed, expiring, and served on the
//! HTTP port.

use postern_archive::{Archive, ArchiveConfig, IndexBackend};
use postern_config::ValidatedConfig;
use postern_model::{ArchiveIndexConfig, ArchiveRetention, ObjectStorageConfig};
use ring::hmac;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Opens the archive store `Server.Archive` describes (default: SQLite and
/// files under the data directory).
pub async fn open(config: &ValidatedConfig, data_dir: &Path) -> Result<Archive, String> {
    let server = config.config.server.clone().unwrap_or_default();
    let settings = server.archive.clone().unwrap_or_default();
    let base = postern_pipeline::peers::base(config);
    let index = match &settings.index {
        None => IndexBackend::Sqlite(data_dir.join("archives").join("index.sqlite")),
        Some(ArchiveIndexConfig::Sqlite(path)) => IndexBackend::Sqlite(base.join(path)),
        Some(ArchiveIndexConfig::Postgres(source)) => IndexBackend::Postgres(
            postern_pipeline::peers::read_secret(config, source)
                .map_err(|e| format!("Server.Archive.Index.Postgres: {e}"))?,
        ),
    };
    let bodies = match &settings.bodies {
        None => postern_endpoints::ObjectStorage::directory(data_dir.to_path_buf()),
        Some(ObjectStorageConfig::Directory(dir)) => {
            postern_endpoints::ObjectStorage::directory(base.join(dir))
        }
        Some(ObjectStorageConfig::S3(_)) => {
            postern_pipeline::peers::object_storage(config, settings.bodies.as_ref(), data_dir)
                .map_err(|e| format!("Server.Archive.Bodies{e}"))?
        }
    };
    // The keys are checked (and named in errors) with the runtime; here
    // they are only needed to read what was written with them.
    let keys = postern_pipeline::peers::Peers::archive_keys_of(config);
    Archive::open(ArchiveConfig {
        index,
        bodies,
        bucket: settings.bucket.clone().unwrap_or_else(|| "archives".into()),
        prefix: String::new(),
        keys,
    })
    .await
    .map_err(|e| format!("archive store: {e}"))
}

/// Deletes messages past their archive's retention, every `interval`,
/// under the config running at the time.
pub async fn retention(
    archive: Archive,
    runtime: Arc<arc_swap::ArcSwap<postern_pipeline::Runtime>>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let config = runtime.load_full();
        let now = time::OffsetDateTime::now_utc();
        for (identity, item) in config.config.archives() {
            let Some(ArchiveRetention::RetentionPeriod(period)) = item.retention else {
                continue;
            };
            let Some(cutoff) = postern_archive::retention::cutoff(period, now) else {
                continue;
            };
            match archive.expire(&identity.id, cutoff).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("postern_archive_expired_total", "archive" => identity.name.clone()).increment(n);
                    tracing::info!(archive = %identity.name, messages = n, %cutoff, "expired archived messages");
                }
                Err(e) => {
                    tracing::warn!(archive = %identity.name, error = %e, "retention could not run")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Signs and checks message download links: an HMAC-SHA256 over the
/// message id and the expiry, keyed by a secret made at first start under
/// `DataDir/state/link.key`.
#[derive(Clone)]
pub struct Links {
    key: hmac::Key,
    pub base_url: String,
    pub lifetime: Duration,
}

impl Links {
    pub fn open(data_dir: &Path, base_url: String, lifetime: Duration) -> Result<Links, String> {
        let path: PathBuf = data_dir.join("state").join("link.key");
        let secret = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            _ => {
                let mut bytes = vec![0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                    .map_err(|_| "no randomness for the link key".to_string())?;
                std::fs::create_dir_all(path.parent().expect("has a parent"))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                write_private(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                bytes
            }
        };
        Ok(Links {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            base_url,
            lifetime,
        })
    }

    fn signature(&self, id: &str, expires: i64) -> String {
        let tag = hmac::sign(&self.key, format!("{id}\n{expires}").as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A link to the message, valid for `lifetime` from `now`.
    pub fn link(&self, id: &str, now: time::OffsetDateTime) -> String {
        let expires = now.unix_timestamp() + self.lifetime.as_secs() as i64;
        format!(
            "{}/archive/messages/{id}?expires={expires}&signature={}",
            self.base_url,
            self.signature(id, expires)
        )
    }

    /// Whether a link's signature holds and it has not expired.
    pub fn check(
        &self,
        id: &str,
        expires: i64,
        signature: &str,
        now: time::OffsetDateTime,
    ) -> bool {
        if now.unix_timestamp() > expires {
            return false;
        }
        let Some(tag) = (signature.len() == 64)
            .then(|| {
                (0..32)
                    .map(|i| u8::from_str_radix(signature.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()
            })
            .flatten()
        else {
            return false;
        };
        // Compared in constant time.
        hmac::verify(&self.key, format!("{id}\n{expires}").as_bytes(), &tag).is_ok()
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_expire_and_cannot_be_altered() {
        let dir = std::env::temp_dir().join(format!("postern-links-{}", std::process::id()));
        let links = Links::open(
            &dir,
            "http://127.0.0.1:8025".into(),
            Duration::from_secs(60),
        )
        .unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let link = links.link("Q1", now);
        let query = link.split_once('?').unwrap().1;
        let expires: i64 = query
            .split('&')
            .next()
            .unwrap()
            .trim_start_matches("expires=")
            .parse()
            .unwrap();
        let signature = query.split("signature=").nth(1).unwrap();
        assert!(links.check("Q1", expires, signature, now));
        assert!(
            !links.check("Q2", expires, signature, now),
            "another message"
        );
        assert!(
            !links.check("Q1", expires + 60, signature, now),
            "a later expiry"
        );
        assert!(
            !links.check("Q1", expires, signature, now + Duration::from_secs(61)),
            "expired"
        );
        // The same key after a restart: links stay valid.
        let again = Links::open(
            &dir,
            "http://127.0.0.1:8025".into(),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(again.check("Q1", expires, signature, now));
        std::fs::remove_dir_all(&dir).ok();
    }
}
