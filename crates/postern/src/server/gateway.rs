//! The running gateway as the API changes it: a version of the state is
//! checked exactly as the server would run it, stored, then swapped in —
//! the rule engines and every ingress point's session settings at once,
//! with no restart. Versions other nodes store are picked up by polling.
//!
//! A version runs with its address lists' members from the state store's
//! members table (`state.rs`): they are read, before the version is
//! checked, for each list whose members revision is not the one last read.

use super::archive::Links;
use super::runtime::{self, Settings, Tls};
use super::state;
use arc_swap::ArcSwap;
use postern_api::ops::{ApplyError, BoxFuture, Gateway, Snapshot};
use postern_config::ValidatedConfig;
use postern_smtp::SessionConfig;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A version checked and compiled, ready to run.
pub struct Prepared {
    pub snapshot: Arc<Snapshot>,
    pub runtime: Arc<postern_pipeline::Runtime>,
    pub sessions: Vec<(String, SessionConfig)>,
    /// The members its address lists run with.
    pub members: state::Members,
}

pub struct ServerGateway {
    /// The config file: its `Server` is in force; its resources seed.
    pub file: ArcSwap<ValidatedConfig>,
    pub current: ArcSwap<Snapshot>,
    pub state: postern_state::State,
    pub settings: Arc<Settings>,
    pub tls: Arc<Tls>,
    pub throttle: Arc<postern_smtp::limits::AuthThrottle>,
    pub pipeline: Arc<postern_pipeline::Pipeline>,
    /// The session settings of each ingress point with listeners.
    pub ingress: HashMap<String, Arc<ArcSwap<SessionConfig>>>,
    /// The addresses each of them listens on.
    pub listening: HashMap<String, Vec<String>>,
    pub links: Links,
    pub data_dir: PathBuf,
    /// One install at a time on this node.
    pub installing: tokio::sync::Mutex<()>,
    /// Versions the state store keeps (`Server.Api.KeepVersions`).
    pub keep_versions: u32,
    /// The latest stored version, when it cannot run on this node, and why.
    pub stuck: std::sync::Mutex<Option<(u64, String)>>,
    /// `Server.Archive.DeletionGraceDays` in seconds.
    pub deletion_grace_seconds: f64,
    /// The members of the address lists of the version in force, with the
    /// revisions they were read at.
    pub members: std::sync::Mutex<state::MembersCache>,
}

/// Checks `document` as version `version` of the resources, with the
/// file's `Server` and the address lists' `members`, and compiles it.
pub fn prepare(
    file: &ValidatedConfig,
    settings: &Settings,
    tls: &Tls,
    throttle: &Arc<postern_smtp::limits::AuthThrottle>,
    version: u64,
    document: Value,
    members: state::Members,
) -> Result<Prepared, String> {
    let closed = state::closed_ingress_points(&document);
    let snapshot = state::snapshot(file, version, document, &members)?;
    let runtime = runtime::build(snapshot.config.clone(), version, settings)?;
    let sessions = runtime::session_configs(&runtime, tls, settings, throttle, &closed)?;
    Ok(Prepared {
        snapshot: Arc::new(snapshot),
        runtime: Arc::new(runtime),
        sessions,
        members,
    })
}

impl ServerGateway {
    /// The members of the address lists of `document`: those read before
    /// at the list's revision, the others from the store.
    async fn members_of(&self, document: &Value) -> Result<state::Members, ApplyError> {
        state::load_members(&self.state, document, Some(&self.members))
            .await
            .map_err(|e| ApplyError::Internal(format!("state store: {e}")))
    }

    /// Checks and compiles `document` as `version` under `file`'s `Server`,
    /// its address lists with `members`.
    fn prepare(
        &self,
        file: &ValidatedConfig,
        version: u64,
        document: Value,
        members: state::Members,
    ) -> Result<Prepared, ApplyError> {
        let prepared = prepare(
            file,
            &self.settings,
            &self.tls,
            &self.throttle,
            version,
            document,
            members,
        )
        .map_err(ApplyError::Invalid)?;
        // An ingress point with listeners cannot go away while they run:
        // their sessions would accept mail no rule set could process.
        for (id, shared) in &self.ingress {
            if !prepared.sessions.iter().any(|(new_id, _)| new_id == id) {
                return Err(ApplyError::Refused(format!(
                    "ingress point {} ({id}) has listeners; removing or renaming it needs a restart (close it with UpdateIngressPoint StatusToUpdate CLOSED meanwhile)",
                    shared.load().ingress.name
                )));
            }
        }
        Ok(prepared)
    }

    fn swap(&self, prepared: Prepared) {
        for (id, config) in prepared.sessions {
            if let Some(shared) = self.ingress.get(&id) {
                shared.store(Arc::new(config));
            }
        }
        self.pipeline.runtime.store(prepared.runtime);
        self.members
            .lock()
            .expect("not poisoned")
            .keep(&prepared.snapshot.document, &prepared.members);
        let version = prepared.snapshot.version;
        self.current.store(prepared.snapshot);
        *self.stuck.lock().expect("not poisoned") = None;
        metrics::gauge!("postern_config_version").set(version as f64);
        metrics::gauge!("postern_config_stuck").set(0.0);
    }

    /// Checks, stores as `parent + 1` and runs `document`, its address
    /// lists with `members` (the table's, once `seed` is written: the
    /// members a file's resources bring, written after the check and before
    /// the version). The caller holds `installing`.
    #[allow(clippy::too_many_arguments)]
    async fn commit_locked(
        &self,
        file: &ValidatedConfig,
        parent: u64,
        document: Value,
        members: state::Members,
        seed: Option<&state::MemberPlan>,
        source: &str,
        summary: &str,
    ) -> Result<Arc<Snapshot>, ApplyError> {
        if self.current.load().version != parent {
            return Err(ApplyError::Conflict);
        }
        if let Some((version, problem)) = self.stuck.lock().expect("not poisoned").clone() {
            return Err(ApplyError::Refused(format!(
                "version {version} of the state is stored but cannot run on this node, so no change can be made on top of it here: {problem}"
            )));
        }
        let prepared = self.prepare(file, parent + 1, document, members)?;
        if let Some(seed) = seed {
            seed.write(&self.state)
                .await
                .map_err(|e| ApplyError::Internal(format!("state store: {e}")))?;
        }
        match self
            .state
            .commit(parent, &prepared.snapshot.document, source, summary)
            .await
        {
            Ok(_) => {}
            Err(postern_state::StateError::Conflict { .. }) => {
                // Another writer was first: run what it stored, so that the
                // caller's next attempt starts from it.
                self.take_latest().await;
                return Err(ApplyError::Conflict);
            }
            Err(e) => return Err(ApplyError::Internal(e.to_string())),
        }
        let snapshot = prepared.snapshot.clone();
        self.swap(prepared);
        tracing::info!(
            version = parent + 1,
            source,
            summary,
            "new version in force"
        );
        if let Err(e) = self.state.prune_versions(self.keep_versions).await {
            tracing::warn!(error = %e, "old versions could not be deleted");
        }
        Ok(snapshot)
    }

    async fn commit(
        &self,
        parent: u64,
        document: Value,
        source: &str,
        summary: &str,
    ) -> Result<Arc<Snapshot>, ApplyError> {
        let _one = self.installing.lock().await;
        let file = self.file.load_full();
        let members = self.members_of(&document).await?;
        self.commit_locked(&file, parent, document, members, None, source, summary)
            .await
    }

    /// The config file read again (SIGHUP): its `Server` is taken, and its
    /// resources when they changed since they were last taken. A file that
    /// is refused leaves everything as it was.
    pub async fn reload_file(&self, file: ValidatedConfig) -> Result<u64, String> {
        let digest = state::file_digest(&file);
        let _one = self.installing.lock().await;
        let current = self.current.load_full();
        if current.document["FileDigest"].as_str() != Some(digest.as_str()) {
            let mut document =
                state::document_of(&file, Some(&current.document), postern_api::ops::now());
            document["FileDigest"] = json!(digest);
            let seed = state::plan_members(
                &self.state,
                &file,
                &mut document,
                Some(&current.document),
                current.version + 1,
            )
            .await
            .map_err(|e| format!("state store: {e}"))?;
            let summary = format!("resources from {}", file.file);
            let snapshot = self
                .commit_locked(
                    &file,
                    current.version,
                    document,
                    seed.members.clone(),
                    Some(&seed),
                    "file",
                    &summary,
                )
                .await
                .map_err(describe)?;
            self.file.store(Arc::new(file));
            return Ok(snapshot.version);
        }
        // The same resources under the file's new server settings.
        let members = self.members_of(&current.document).await.map_err(describe)?;
        let prepared = self
            .prepare(&file, current.version, current.document.clone(), members)
            .map_err(describe)?;
        self.swap(prepared);
        self.file.store(Arc::new(file));
        Ok(current.version)
    }

    /// Runs the store's latest version if it is newer than the one in
    /// force; one that cannot run here is reported once and leaves this
    /// node on the version it runs (`postern_config_stuck` is 1).
    async fn take_latest(&self) {
        let latest = match self.state.latest().await {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "the state store could not be read");
                return;
            }
        };
        let running = self.current.load().version;
        if latest.number <= running {
            return;
        }
        let file = self.file.load_full();
        let members = match self.members_of(&latest.document).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(
                    version = latest.number,
                    "the address list members of version {} could not be read: {}",
                    latest.number,
                    describe(e)
                );
                return;
            }
        };
        match self.prepare(&file, latest.number, latest.document, members) {
            Ok(prepared) => {
                self.swap(prepared);
                tracing::info!(version = latest.number, source = %latest.source, summary = %latest.summary, "new version in force");
            }
            Err(e) => {
                let problem = describe(e);
                let mut stuck = self.stuck.lock().expect("not poisoned");
                if stuck.as_ref().map(|(v, _)| *v) != Some(latest.number) {
                    tracing::error!(
                        version = latest.number,
                        running,
                        "version {} of the state cannot run on this node; version {running} stays in force until a version that can is stored: {problem}",
                        latest.number
                    );
                    metrics::gauge!("postern_config_stuck").set(1.0);
                    *stuck = Some((latest.number, problem));
                }
            }
        }
    }

    /// Runs versions other writers (other nodes, `postern apply`) store,
    /// and forgets what is past its time: client tokens after a day,
    /// finished jobs (with search results) and import jobs never started
    /// (with their uploads) after a week.
    pub async fn follow(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut last_cleanup = std::time::Instant::now() - CLEANUP_EVERY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if last_cleanup.elapsed() >= CLEANUP_EVERY {
                last_cleanup = std::time::Instant::now();
                self.clean_up().await;
            }
            let latest = match self.state.versions(1).await {
                Ok(v) => v.first().map(|v| v.number).unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "the state store could not be read");
                    continue;
                }
            };
            let stuck_at = self
                .stuck
                .lock()
                .expect("not poisoned")
                .as_ref()
                .map(|(v, _)| *v);
            if latest <= self.current.load().version || stuck_at == Some(latest) {
                continue;
            }
            let _one = self.installing.lock().await;
            self.take_latest().await;
        }
    }
}

/// How often old client tokens and finished jobs are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);

impl ServerGateway {
    async fn clean_up(&self) {
        let now = time::OffsetDateTime::now_utc();
        if let Err(e) = self
            .state
            .idempotent_expire(now - time::Duration::days(1))
            .await
        {
            tracing::warn!(error = %e, "old client tokens could not be deleted");
        }
        match self
            .state
            .jobs_expire(
                now - time::Duration::days(7),
                &["COMPLETED", "FAILED", "CANCELLED", "STOPPED", "CREATED"],
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "finished jobs older than a week deleted"),
            Err(e) => tracing::warn!(error = %e, "old jobs could not be deleted"),
        }
    }
}

pub fn describe(e: ApplyError) -> String {
    match e {
        ApplyError::Invalid(m) | ApplyError::Refused(m) | ApplyError::Internal(m) => m,
        ApplyError::Conflict => "another change was stored at the same time; try again".into(),
    }
}

impl Gateway for ServerGateway {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn apply(
        &self,
        parent: u64,
        document: Value,
        summary: String,
    ) -> BoxFuture<'_, Result<Arc<Snapshot>, ApplyError>> {
        Box::pin(async move { self.commit(parent, document, "api", &summary).await })
    }

    fn listening(&self, ingress_point_id: &str) -> Vec<String> {
        self.listening
            .get(ingress_point_id)
            .cloned()
            .unwrap_or_default()
    }

    fn message_link(&self, archived_message_id: &str) -> String {
        self.links
            .link(archived_message_id, time::OffsetDateTime::now_utc())
    }

    fn upload_link(&self, job_id: &str) -> String {
        self.links
            .upload_link(job_id, time::OffsetDateTime::now_utc())
    }

    fn check_upload(&self, job_id: &str, expires: i64, signature: &str) -> bool {
        self.links
            .check_upload(job_id, expires, signature, time::OffsetDateTime::now_utc())
    }

    fn deletion_grace_seconds(&self) -> f64 {
        self.deletion_grace_seconds
    }

    fn export_storage(&self, bucket: &str) -> Result<postern_archive::ExportDestination, String> {
        let file = self.file.load();
        let server = file.config.server.clone().unwrap_or_default();
        let storage = postern_pipeline::peers::object_storage(
            &file,
            server.object_storage.as_ref(),
            &self.data_dir.join("s3"),
        )
        .map_err(|e| format!("Server.ObjectStorage{e}"))?;
        Ok(postern_archive::ExportDestination {
            storage,
            bucket: bucket.to_string(),
            prefix: String::new(),
        })
    }
}

/// The API's access keys: `Server.Api.AccessKeys`, or the pair generated
/// at the first start in `DataDir/state/credentials` (an AWS shared
/// credentials file, profile `postern`). Returns the keys and, for the
/// generated pair, the file.
pub fn access_keys(
    file: &ValidatedConfig,
    data_dir: &std::path::Path,
) -> Result<(postern_api::sigv4::Keys, Option<PathBuf>), String> {
    let server = file.config.server.clone().unwrap_or_default();
    if let Some(keys) = server.api.and_then(|a| a.access_keys) {
        let mut pairs = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let secret = postern_pipeline::peers::read_secret(file, &key.secret_access_key)
                .map_err(|e| format!("Server.Api.AccessKeys[{i}].SecretAccessKey: {e}"))?;
            pairs.push((key.access_key_id.clone(), secret));
        }
        return Ok((postern_api::sigv4::Keys::new(pairs), None));
    }
    let path = data_dir.join("state").join("credentials");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let value = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        if let (Some(id), Some(secret)) =
            (value("aws_access_key_id"), value("aws_secret_access_key"))
        {
            return Ok((postern_api::sigv4::Keys::new([(id, secret)]), Some(path)));
        }
        return Err(format!(
            "{}: no aws_access_key_id and aws_secret_access_key in it",
            path.display()
        ));
    }
    let id = format!(
        "PSTN{}",
        random_text(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    );
    let secret = random_text(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        40,
    );
    let text = format!(
        "# The key pair of the Mail Manager API of this Postern (generated at its first start).\n\
         # AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE=postern\n\
         [postern]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n",
        path.display()
    );
    std::fs::create_dir_all(path.parent().expect("has a parent"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    super::archive::write_private(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((postern_api::sigv4::Keys::new([(id, secret)]), Some(path)))
}

fn random_text(alphabet: &[u8], n: usize) -> String {
    let mut bytes = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source works");
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}
