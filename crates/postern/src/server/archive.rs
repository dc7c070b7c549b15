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

/// Archives the store has seen, and whether they are still in the config:
/// an archive that leaves the config is PENDING_DELETION for the grace
/// period, then its messages are deleted; one that comes back before is
/// ACTIVE again with everything kept. Kept in `DataDir/state/archives.json`.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Lifecycle {
    /// By archive id.
    pub archives: std::collections::BTreeMap<String, ArchiveState>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveState {
    pub name: String,
    /// ACTIVE or PENDING_DELETION.
    pub state: String,
    /// When it entered PENDING_DELETION (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

impl Lifecycle {
    /// Brings the states up to date with the archives of the config (`ids`
    /// with their names) at `now`; returns the ids whose grace period is
    /// over, to be purged (and then forgotten with `forget`).
    pub fn update(&mut self, ids: &[(String, String)], now: i64, grace_days: i64) -> Vec<String> {
        for (id, name) in ids {
            self.archives.insert(
                id.clone(),
                ArchiveState {
                    name: name.clone(),
                    state: "ACTIVE".into(),
                    since: None,
                },
            );
        }
        let mut due = Vec::new();
        for (id, state) in self.archives.iter_mut() {
            if ids.iter().any(|(i, _)| i == id) {
                continue;
            }
            if state.state != "PENDING_DELETION" {
                state.state = "PENDING_DELETION".into();
                state.since = Some(now);
                tracing::warn!(archive = %state.name, id = %id, grace_days, "archive left the config: PENDING_DELETION; its messages are deleted when the grace period ends unless it comes back");
            }
            if now - state.since.unwrap_or(now) >= grace_days * 86_400 {
                due.push(id.clone());
            }
        }
        due
    }

    pub fn forget(&mut self, id: &str) {
        self.archives.remove(id);
    }

    pub fn load(data_dir: &Path) -> Lifecycle {
        std::fs::read(data_dir.join("state").join("archives.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let dir = data_dir.join("state");
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("archives.json.tmp");
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_private(&tmp, &data)?;
        std::fs::rename(&tmp, dir.join("archives.json"))?;
        std::fs::File::open(&dir)?.sync_all()
    }
}

/// Deletes messages past their archive's retention, and archives whose
/// deletion grace period is over, every `interval`, under the config
/// running at the time.
pub async fn retention(
    archive: Archive,
    runtime: Arc<arc_swap::ArcSwap<postern_pipeline::Runtime>>,
    data_dir: PathBuf,
    interval: Duration,
    grace_days: i64,
    mut stop: watch::Receiver<bool>,
) {
    let mut lifecycle = Lifecycle::load(&data_dir);
    loop {
        let config = runtime.load_full();
        let now = time::OffsetDateTime::now_utc();
        let ids: Vec<(String, String)> = config
            .config
            .archives()
            .map(|(i, _)| (i.id.clone(), i.name.clone()))
            .collect();
        for id in lifecycle.update(&ids, now.unix_timestamp(), grace_days) {
            match archive.purge(&id).await {
                Ok(n) => {
                    tracing::info!(archive = %id, messages = n, "deleted archive");
                    lifecycle.forget(&id);
                }
                Err(e) => tracing::warn!(archive = %id, error = %e, "archive could not be deleted"),
            }
        }
        if let Err(e) = lifecycle.save(&data_dir) {
            tracing::warn!(error = %e, "archive states could not be saved");
        }
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

/// How long an import job's upload URL stays valid.
const UPLOAD_LINK_SECONDS: i64 = 3600;

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

    /// An upload URL of an address list import job, valid for an hour.
    pub fn upload_link(&self, job_id: &str, now: time::OffsetDateTime) -> String {
        let expires = now.unix_timestamp() + UPLOAD_LINK_SECONDS;
        format!(
            "{}/uploads/{job_id}?expires={expires}&signature={}",
            self.base_url,
            self.signature(&format!("upload:{job_id}"), expires)
        )
    }

    pub fn check_upload(
        &self,
        job_id: &str,
        expires: i64,
        signature: &str,
        now: time::OffsetDateTime,
    ) -> bool {
        self.check(&format!("upload:{job_id}"), expires, signature, now)
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

pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
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
    fn an_archive_that_leaves_the_config_is_deleted_after_the_grace_period() {
        let day = 86_400;
        let mut l = Lifecycle::default();
        let both = vec![
            ("a-1".to_string(), "keep".to_string()),
            ("a-2".to_string(), "old".to_string()),
        ];
        assert!(l.update(&both, 0, 30).is_empty());
        let one = vec![("a-1".to_string(), "keep".to_string())];
        assert!(l.update(&one, day, 30).is_empty());
        assert_eq!(l.archives["a-2"].state, "PENDING_DELETION");
        assert!(l.update(&one, 30 * day, 30).is_empty(), "29 days in");
        // Back before the end: active again, nothing deleted.
        assert!(l.update(&both, 30 * day, 30).is_empty());
        assert_eq!(l.archives["a-2"].state, "ACTIVE");
        assert!(l.update(&one, 31 * day, 30).is_empty());
        assert_eq!(l.update(&one, 61 * day, 30), vec!["a-2".to_string()]);
        l.forget("a-2");
        assert_eq!(l.archives.len(), 1);
        // Grace 0: deleted at the first look.
        let mut l = Lifecycle::default();
        l.update(&both, 0, 0);
        assert_eq!(l.update(&one, 1, 0), vec!["a-2".to_string()]);
    }

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
