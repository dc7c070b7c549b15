//! Archive messages (GetArchiveMessage, GetArchiveMessageContent),
//! searches (StartArchiveSearch, GetArchiveSearch, GetArchiveSearchResults,
//! ListArchiveSearches, StopArchiveSearch) and exports (StartArchiveExport,
//! GetArchiveExport, ListArchiveExports, StopArchiveExport), and the job
//! machinery these and the address list import jobs (`imports.rs`) share.
//!
//! # Jobs
//!
//! A search, an export or an import is a job of the state store
//! ([`postern_state::Job`]): its id, the resource it works on (the archive
//! or address list id), its state (the model's `SearchState`,
//! `ExportState` or `ImportJobStatus`) and a JSON document with the request
//! and what the job reported. The state column is the truth; every change
//! of it goes through [`postern_state::State::job_transition`], which
//! writes only if the state is still the one the writer read, so a job
//! stopped while it ran is not then marked completed, and a finished job
//! is not marked stopped.
//!
//! The node that starts a job runs it in a task. While queued or running,
//! the task writes a heartbeat (`Heartbeat`, epoch seconds) into the job
//! every [`HEARTBEAT`]; the write fails when the job's state changed under
//! it (a stop from this or another node sharing the state), and the task
//! then stops. A job that is queued or running but whose heartbeat is
//! older than [`STALE_SECONDS`] belongs to a node that stopped: whoever
//! reads it next marks it `FAILED` with the error [`INTERRUPTED`]. At
//! start, [`recover`] does so for every such job (and checks the others
//! again once they would be stale, since this node's own jobs from before
//! the restart may have beaten moments ago).
//!
//! # Quotas
//!
//! At most [`MAX_ACTIVE_PER_ARCHIVE`] searches, and as many exports, may
//! be queued or running on an archive; one more is refused with
//! `ServiceQuotaExceededException`. A node runs at most [`ARCHIVE_SLOTS`]
//! searches and exports at a time; the others wait, `QUEUED`.
//!
//! # Results
//!
//! A completed search's rows are kept beside the job, under the upload key
//! `archive-search/{SearchId}`, as the JSON array of the model's `Row`s
//! (timestamps in epoch seconds), so listing jobs does not read them.

use super::{Api, Gateway, Snapshot, now, required, with_token};
use crate::error::{ApiError, ErrorCode};
use base64::Engine as _;
use postern_archive::{ArchiveError, ExportDestination, SearchQuery};
use postern_model::{ArchiveFilterCondition, ArchiveFilters, Arn, ResourceKind};
use postern_state::{Job, State, StateError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;

/// The job kind of archive searches.
pub const SEARCH_KIND: &str = "archive-search";
/// The job kind of archive exports.
pub const EXPORT_KIND: &str = "archive-export";

/// How many searches may be queued or running on one archive at a time,
/// and, separately, how many exports: StartArchiveSearch and
/// StartArchiveExport beyond it answer `ServiceQuotaExceededException`.
/// Counted among the archive's 1,000 most recent jobs of the kind, and
/// checked one start at a time on a node (nodes sharing the state may,
/// starting at the same instant, exceed it by one each).
pub const MAX_ACTIVE_PER_ARCHIVE: usize = 10;
/// How many of an archive's most recent jobs the quota looks at.
const QUOTA_SCAN: u32 = 1000;
/// How many searches and exports a node runs at a time.
pub const ARCHIVE_SLOTS: usize = 4;
/// How often a queued or running job writes its heartbeat (5 seconds; a
/// tenth of a second in unit tests).
pub const HEARTBEAT: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_secs(5)
};
/// A queued or running job whose heartbeat is older than this many seconds
/// belongs to a node that stopped.
pub const STALE_SECONDS: f64 = 30.0;
/// The error of a job whose node stopped while it was queued or running.
pub const INTERRUPTED: &str = "interrupted by a restart";
/// The page size of ListArchiveSearches and ListArchiveExports when the
/// request gives none (the model's maximum).
const DEFAULT_PAGE: u32 = 50;
/// The most a page may hold (the model's `PageSize` maximum).
const MAX_PAGE: u32 = 50;
/// The model's maximum `MaxResults` of StartArchiveSearch.
const MAX_SEARCH_RESULTS: u64 = 1000;

/// What differs between the kinds of job.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kind {
    /// The job kind in the state store.
    pub name: &'static str,
    /// How messages name one.
    pub noun: &'static str,
    /// The states of a job that is queued or running (and beats).
    pub active: &'static [&'static str],
    /// The output member of the error message.
    pub error_member: &'static str,
    /// The output member of when it ended.
    pub completion_member: &'static str,
}

pub(super) const SEARCH: Kind = Kind {
    name: SEARCH_KIND,
    noun: "search",
    active: &["QUEUED", "RUNNING"],
    error_member: "ErrorMessage",
    completion_member: "CompletionTimestamp",
};

pub(super) const EXPORT: Kind = Kind {
    name: EXPORT_KIND,
    noun: "export",
    active: &["QUEUED", "PREPROCESSING", "PROCESSING"],
    error_member: "ErrorMessage",
    completion_member: "CompletionTimestamp",
};

/// Runs `operation` if it is one of this file's.
pub async fn call(api: &Api, operation: &str, input: &Value) -> Option<Result<Value, ApiError>> {
    Some(match operation {
        "StartArchiveSearch" => start_search(api, input).await,
        "GetArchiveSearch" => get_search(api, input).await,
        "GetArchiveSearchResults" => search_results(api, input).await,
        "ListArchiveSearches" => list(api, SEARCH, "SearchId", "Searches", input).await,
        "StopArchiveSearch" => stop_job(api, SEARCH, "SearchId", input).await,
        "StartArchiveExport" => start_export(api, input).await,
        "GetArchiveExport" => get_export(api, input).await,
        "ListArchiveExports" => list(api, EXPORT, "ExportId", "Exports", input).await,
        "StopArchiveExport" => stop_job(api, EXPORT, "ExportId", input).await,
        "GetArchiveMessage" => get_message(api, input).await,
        "GetArchiveMessageContent" => get_content(api, input).await,
        _ => return None,
    })
}

/// Marks `FAILED` ([`INTERRUPTED`]) the searches, exports and address list
/// import jobs that a stopped node left queued or running: at once those
/// whose heartbeat is stale, and, after [`STALE_SECONDS`], those that have
/// not beaten since (this node's own, from before a restart; a job another
/// node runs keeps beating and is left alone). The server calls it at
/// start, before it serves the API.
pub async fn recover(api: &Api) {
    let snapshot = api.gateway.snapshot();
    let mut archives: Vec<String> = snapshot
        .config
        .index
        .identities(ResourceKind::Archive)
        .iter()
        .map(|identity| identity.id.clone())
        .collect();
    if let Some(deleted) = snapshot.document["Deleted"].as_object() {
        archives.extend(deleted.keys().cloned());
    }
    let lists: Vec<String> = snapshot
        .config
        .index
        .identities(ResourceKind::AddressList)
        .iter()
        .map(|identity| identity.id.clone())
        .collect();
    let mut sweep = Sweep::default();
    for archive in &archives {
        sweep.run(&api.state, SEARCH, archive).await;
        sweep.run(&api.state, EXPORT, archive).await;
    }
    for list in &lists {
        sweep.run(&api.state, super::imports::IMPORT, list).await;
    }
    if sweep.failed > 0 {
        tracing::warn!(
            jobs = sweep.failed,
            "jobs left queued or running by a stopped node marked FAILED"
        );
    }
    if !sweep.later.is_empty() {
        let state = api.state.clone();
        let later = sweep.later;
        tokio::spawn(async move {
            tokio::time::sleep(HEARTBEAT + Duration::from_secs_f64(STALE_SECONDS)).await;
            for (kind, id) in later {
                match state.job_get(kind.name, &id).await {
                    Ok(Some(job)) => {
                        if let Err(e) = observe(&state, kind, job).await {
                            tracing::warn!(job = %id, error = %e.message, "job could not be checked");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(job = %id, error = %e, "job could not be read"),
                }
            }
        });
    }
}

/// What [`recover`] found.
#[derive(Default)]
struct Sweep {
    failed: usize,
    later: Vec<(Kind, String)>,
}

impl Sweep {
    async fn run(&mut self, state: &State, kind: Kind, resource: &str) {
        const PAGE: u32 = 500;
        let mut after: Option<String> = None;
        loop {
            let jobs = match state
                .jobs(kind.name, resource, after.as_deref(), PAGE)
                .await
            {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(kind = kind.name, resource, error = %e, "jobs could not be read");
                    return;
                }
            };
            let at = now();
            for job in &jobs {
                if !kind.active.contains(&job.state.as_str()) {
                    continue;
                }
                if is_stale(kind, job, at) {
                    let failed = interrupted(kind, job);
                    match state
                        .job_transition(kind.name, &job.id, &job.state, &failed)
                        .await
                    {
                        Ok(true) => {
                            self.failed += 1;
                            finished(state, kind, &job.id).await;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(job = %job.id, error = %e, "job could not be marked FAILED");
                        }
                    }
                } else {
                    self.later.push((kind, job.id.clone()));
                }
            }
            match jobs.last() {
                Some(last) if jobs.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => return,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Jobs: what searches, exports and imports share.

/// What a job's task needs of the [`Api`]: the task outlives the request.
#[derive(Clone)]
pub(super) struct Ctx {
    pub gateway: Arc<dyn Gateway>,
    pub state: State,
    pub archive: postern_archive::Archive,
}

impl Ctx {
    pub fn of(api: &Api) -> Ctx {
        Ctx {
            gateway: api.gateway.clone(),
            state: api.state.clone(),
            archive: api.archive.clone(),
        }
    }
}

/// A new job id: a random UUID, as AWS gives.
pub(super) fn new_job_id() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system's random source works");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `at` in epoch seconds, to the millisecond (as [`now`]).
pub(super) fn seconds(at: OffsetDateTime) -> f64 {
    (at.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

pub(super) fn state_error(e: StateError) -> ApiError {
    ApiError::internal(format!("state: {e}"))
}

/// How a running job is told to stop.
#[derive(Default)]
pub(super) struct Cancel {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag, for work that checks it itself (an export, between
    /// messages).
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }
}

type Registry = Mutex<HashMap<(&'static str, String), Arc<Cancel>>>;

/// The jobs this node runs, by kind and id.
fn registry() -> &'static Registry {
    static RUNNING: OnceLock<Registry> = OnceLock::new();
    RUNNING.get_or_init(Registry::default)
}

fn running_here(kind: &str, id: &str) -> bool {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .any(|(k, i)| *k == kind && i == id)
}

/// Tells the task running job `id` on this node, if there is one, to stop.
pub(super) fn signal(kind: &str, id: &str) {
    let registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(cancel) = registry
        .iter()
        .find(|((k, i), _)| *k == kind && i == id)
        .map(|(_, c)| c)
    {
        cancel.set();
    }
}

/// A job this node runs: the job as last stored, and how it is told to
/// stop. Registered while it lives.
pub(super) struct Tracked {
    state: State,
    kind: Kind,
    pub job: Job,
    cancel: Arc<Cancel>,
}

impl Tracked {
    pub fn new(state: State, kind: Kind, job: Job) -> Tracked {
        let cancel = Arc::new(Cancel::default());
        registry()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((kind.name, job.id.clone()), cancel.clone());
        Tracked {
            state,
            kind,
            job,
            cancel,
        }
    }

    pub fn cancel(&self) -> Arc<Cancel> {
        self.cancel.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    async fn write(
        &mut self,
        to: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<bool, StateError> {
        let mut next = self.job.clone();
        next.state = to.to_string();
        change(&mut next.document);
        let changed = self
            .state
            .job_transition(self.kind.name, &self.job.id, &self.job.state, &next)
            .await?;
        if changed {
            self.job = next;
        }
        Ok(changed)
    }

    /// Moves the job from its state to `to`, its document changed by
    /// `change`. False when its state changed meanwhile (a stop, or the
    /// job taken for interrupted) or the state store failed (logged).
    pub async fn transition(&mut self, to: &str, change: impl FnOnce(&mut Value)) -> bool {
        match self.write(to, change).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(job = %self.job.id, state = to, error = %e, "job state could not be stored");
                false
            }
        }
    }

    /// Ends the job `FAILED` with `message`.
    pub async fn fail(&mut self, message: &str) {
        tracing::warn!(kind = self.kind.name, job = %self.job.id, error = message, "job failed");
        let kind = self.kind;
        self.transition("FAILED", |d| {
            d[kind.error_member] = json!(message);
            d[kind.completion_member] = json!(now());
        })
        .await;
    }

    async fn beat(&mut self, progress: &(dyn Fn(&mut Value) + Send + Sync)) {
        let state = self.job.state.clone();
        let result = self
            .write(&state, |d| {
                d["Heartbeat"] = json!(now());
                progress(d);
            })
            .await;
        match result {
            Ok(true) => {}
            // Stopped, or taken for interrupted: either way, not ours to
            // continue.
            Ok(false) => self.cancel.set(),
            Err(e) => {
                tracing::warn!(job = %self.job.id, error = %e, "job heartbeat could not be stored")
            }
        }
    }

    /// Runs `work`, beating meanwhile (with `progress` written into the
    /// document at each beat). When `cancellable`, gives up `work` (drops
    /// it) once the job is told to stop and answers `None`; otherwise runs
    /// it to the end.
    pub async fn beat_while<F: Future>(
        &mut self,
        work: F,
        cancellable: bool,
        progress: &(dyn Fn(&mut Value) + Send + Sync),
    ) -> Option<F::Output> {
        let cancel = self.cancel.clone();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut work = std::pin::pin!(work);
        loop {
            if cancellable && cancel.is_set() {
                return None;
            }
            tokio::select! {
                out = &mut work => return Some(out),
                _ = tick.tick() => self.beat(progress).await,
                _ = cancel.notify.notified(), if cancellable => {}
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        registry()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(self.kind.name, self.job.id.clone()));
    }
}

/// Nothing to report at a beat.
pub(super) fn no_progress(_: &mut Value) {}

fn is_stale(kind: Kind, job: &Job, at: f64) -> bool {
    if !kind.active.contains(&job.state.as_str()) {
        return false;
    }
    let beat = job.document["Heartbeat"]
        .as_f64()
        .unwrap_or_else(|| seconds(job.created));
    at - beat > STALE_SECONDS
}

/// `job`, ended `FAILED` as interrupted.
fn interrupted(kind: Kind, job: &Job) -> Job {
    let mut failed = job.clone();
    failed.state = "FAILED".into();
    failed.document[kind.error_member] = json!(INTERRUPTED);
    failed.document[kind.completion_member] = json!(now());
    failed
}

/// What is kept for a job only while it runs goes when it ends: the upload
/// of an import.
async fn finished(state: &State, kind: Kind, id: &str) {
    if kind.name == super::imports::IMPORT_KIND
        && let Err(e) = state.upload_delete(id).await
    {
        tracing::warn!(job = id, error = %e, "the upload of an ended import job could not be deleted");
    }
}

/// `job` as it is: `FAILED` when it is queued or running on a node that
/// stopped (and stored so).
pub(super) async fn observe(state: &State, kind: Kind, job: Job) -> Result<Job, ApiError> {
    if !is_stale(kind, &job, now()) || running_here(kind.name, &job.id) {
        return Ok(job);
    }
    let failed = interrupted(kind, &job);
    if state
        .job_transition(kind.name, &job.id, &job.state, &failed)
        .await
        .map_err(state_error)?
    {
        tracing::warn!(kind = kind.name, job = %job.id, "job left by a stopped node marked FAILED");
        finished(state, kind, &job.id).await;
        return Ok(failed);
    }
    // It changed meanwhile: read it again.
    Ok(state
        .job_get(kind.name, &job.id)
        .await
        .map_err(state_error)?
        .unwrap_or(job))
}

/// The job `id`, as it is ([`observe`]).
pub(super) async fn load(state: &State, kind: Kind, id: &str) -> Result<Option<Job>, ApiError> {
    match state.job_get(kind.name, id).await.map_err(state_error)? {
        Some(job) => Ok(Some(observe(state, kind, job).await?)),
        None => Ok(None),
    }
}

/// What a stop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stopped {
    /// The job was in this state and is now stopped.
    Now(String),
    /// It was stopped before.
    Already,
    /// It had ended in this state: nothing to stop.
    Finished(String),
}

/// Stops job `id` if it is in one of the `stoppable` states: moves it to
/// `to` (with its completion time) and tells its task, if this node runs
/// it (another node's task sees it at its next heartbeat). `None` when
/// there is no such job.
pub(super) async fn stop(
    state: &State,
    kind: Kind,
    id: &str,
    stoppable: &[&str],
    to: &str,
) -> Result<Option<Stopped>, ApiError> {
    // The job may move between reading and writing (QUEUED to RUNNING,
    // say); then it is read again.
    for _ in 0..8 {
        let Some(job) = load(state, kind, id).await? else {
            return Ok(None);
        };
        if job.state == to {
            return Ok(Some(Stopped::Already));
        }
        if !stoppable.contains(&job.state.as_str()) {
            return Ok(Some(Stopped::Finished(job.state)));
        }
        let mut stopped = job.clone();
        stopped.state = to.to_string();
        stopped.document[kind.completion_member] = json!(now());
        if state
            .job_transition(kind.name, id, &job.state, &stopped)
            .await
            .map_err(state_error)?
        {
            signal(kind.name, id);
            return Ok(Some(Stopped::Now(job.state)));
        }
    }
    Err(ApiError::new(
        ErrorCode::ThrottlingException,
        format!("{} {id} kept changing state; retry", kind.noun),
    ))
}

const TOKEN_PREFIX: &str = "postern-job:";

/// The `NextToken` of a page of jobs that ends with job `id`.
pub(super) fn job_token(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{id}"))
}

pub(super) fn decode_job_token(token: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(TOKEN_PREFIX).map(str::to_string))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::validation("NextToken: not a token this service gave"))
}

/// One page of the jobs of `kind` on `resource`, newest first, as
/// `NextToken` and `PageSize` of `input` say; and the next page's token.
pub(super) async fn page_of_jobs(
    state: &State,
    kind: Kind,
    resource: &str,
    input: &Value,
) -> Result<(Vec<Job>, Option<String>), ApiError> {
    let after = match input["NextToken"].as_str() {
        Some(token) => Some(decode_job_token(token)?),
        None => None,
    };
    let size = match &input["PageSize"] {
        Value::Null => DEFAULT_PAGE,
        value => value
            .as_u64()
            .filter(|n| (1..=u64::from(MAX_PAGE)).contains(n))
            .ok_or_else(|| ApiError::validation(format!("PageSize: 1 to {MAX_PAGE}")))?
            as u32,
    };
    let mut jobs = state
        .jobs(kind.name, resource, after.as_deref(), size + 1)
        .await
        .map_err(state_error)?;
    let next = if jobs.len() > size as usize {
        jobs.truncate(size as usize);
        jobs.last().map(|job| job_token(&job.id))
    } else {
        None
    };
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        out.push(observe(state, kind, job).await?);
    }
    Ok((out, next))
}

// ---------------------------------------------------------------------------
// Searches and exports.

/// Searches and exports start one at a time on a node, so that the quota
/// check and the new job are not split by another start.
static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The searches and exports this node runs at a time.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARCHIVE_SLOTS);

/// The archive a reference (id, name or ARN) names: its id, and whether it
/// is pending deletion.
fn archive_of(snapshot: &Snapshot, reference: &str) -> Option<(String, bool)> {
    if let Some(identity) = snapshot.config.resolve(ResourceKind::Archive, reference) {
        return Some((identity.id.clone(), false));
    }
    let deleted = snapshot.document["Deleted"].as_object()?;
    deleted
        .iter()
        .find(|(id, entry)| {
            id.as_str() == reference
                || entry["Item"]["ArchiveName"].as_str() == Some(reference)
                || Arn::new(
                    &snapshot.config.region,
                    &snapshot.config.account,
                    ResourceKind::Archive,
                    id,
                )
                .to_string()
                    == reference
        })
        .map(|(id, _)| (id.clone(), true))
}

/// What StartArchiveSearch and StartArchiveExport select.
struct Selection {
    archive_id: String,
    query: SearchQuery,
    /// What the job keeps of the request (and Get answers).
    record: Value,
}

/// The selection of a start request. An archive pending deletion is
/// `pending` (the error differs: StartArchiveSearch may answer
/// ConflictException, StartArchiveExport may not).
fn selection(
    snapshot: &Snapshot,
    input: &Value,
    max_results: usize,
    pending: fn(String) -> ApiError,
) -> Result<Selection, ApiError> {
    let reference = required(input, "ArchiveId")?;
    let (archive_id, deleting) = archive_of(snapshot, reference)
        .ok_or_else(|| ApiError::not_found(format!("no archive {reference}")))?;
    if deleting {
        return Err(pending(format!(
            "archive {reference} is pending deletion: it can no longer be searched or exported"
        )));
    }
    let (from_seconds, from) = instant(input, "FromTimestamp")?;
    let (to_seconds, to) = instant(input, "ToTimestamp")?;
    if from >= to {
        return Err(ApiError::validation(
            "FromTimestamp must be before ToTimestamp",
        ));
    }
    let filters = filters(input)?;
    let mut record = json!({
        "ArchiveId": archive_id,
        "FromTimestamp": from_seconds,
        "ToTimestamp": to_seconds,
    });
    if !input["Filters"].is_null() {
        record["Filters"] = input["Filters"].clone();
    }
    Ok(Selection {
        archive_id,
        query: SearchQuery {
            from,
            to,
            filters,
            max_results,
            full_text: None,
        },
        record,
    })
}

/// A timestamp member (epoch seconds) as seconds and as an instant.
fn instant(input: &Value, member: &str) -> Result<(f64, OffsetDateTime), ApiError> {
    let seconds = input[member]
        .as_f64()
        .ok_or_else(|| ApiError::validation(format!("{member}: required, a timestamp")))?;
    let at = OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9).round() as i128)
        .map_err(|_| ApiError::validation(format!("{member}: {seconds} is out of range")))?;
    Ok((seconds, at))
}

/// The model's limit on conditions per `Include` and `Unless`.
const MAX_CONDITIONS: usize = 10;

fn filters(input: &Value) -> Result<Option<ArchiveFilters>, ApiError> {
    let value = &input["Filters"];
    if value.is_null() {
        return Ok(None);
    }
    let filters: ArchiveFilters = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::validation(format!("Filters: {e}")))?;
    for (name, conditions) in [("Include", &filters.include), ("Unless", &filters.unless)] {
        let conditions = conditions.as_deref().unwrap_or_default();
        if conditions.len() > MAX_CONDITIONS {
            return Err(ApiError::validation(format!(
                "Filters.{name}: at most {MAX_CONDITIONS} conditions"
            )));
        }
        for (i, condition) in conditions.iter().enumerate() {
            if let ArchiveFilterCondition::StringExpression(e) = condition
                && e.values.is_empty()
            {
                return Err(ApiError::validation(format!(
                    "Filters.{name}[{i}].StringExpression.Values: at least one value"
                )));
            }
        }
    }
    Ok(Some(filters))
}

/// ServiceQuotaExceededException when `archive_id` has as many jobs of
/// `kind` queued or running as [`MAX_ACTIVE_PER_ARCHIVE`].
async fn check_quota(state: &State, kind: Kind, archive_id: &str) -> Result<(), ApiError> {
    let jobs = state
        .jobs(kind.name, archive_id, None, QUOTA_SCAN)
        .await
        .map_err(state_error)?;
    let mut active = 0;
    for job in jobs {
        if kind.active.contains(&job.state.as_str()) {
            let job = observe(state, kind, job).await?;
            if kind.active.contains(&job.state.as_str()) {
                active += 1;
            }
        }
    }
    if active >= MAX_ACTIVE_PER_ARCHIVE {
        return Err(ApiError::quota(format!(
            "archive {archive_id} has {active} {}es queued or running, the most it may have \
             ({MAX_ACTIVE_PER_ARCHIVE}); wait for one to finish or stop one",
            kind.noun
        )));
    }
    Ok(())
}

/// Stores a new job of `kind` on `archive_id`, `QUEUED`, once the quota
/// allows it.
async fn queue(
    api: &Api,
    kind: Kind,
    archive_id: &str,
    mut document: Value,
) -> Result<Job, ApiError> {
    let _one_at_a_time = STARTING.lock().await;
    check_quota(&api.state, kind, archive_id).await?;
    let created = OffsetDateTime::now_utc();
    document["SubmissionTimestamp"] = json!(seconds(created));
    document["Heartbeat"] = json!(seconds(created));
    let job = Job {
        kind: kind.name.to_string(),
        id: new_job_id(),
        resource: archive_id.to_string(),
        state: "QUEUED".to_string(),
        created,
        document,
    };
    api.state.job_put(&job).await.map_err(state_error)?;
    Ok(job)
}

async fn start_search(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let max_results = input["MaxResults"]
        .as_u64()
        .filter(|n| *n <= MAX_SEARCH_RESULTS)
        .ok_or_else(|| {
            ApiError::validation(format!("MaxResults: required, 0 to {MAX_SEARCH_RESULTS}"))
        })?;
    let snapshot = api.gateway.snapshot();
    let s = selection(&snapshot, input, max_results as usize, ApiError::conflict)?;
    let mut document = s.record;
    document["MaxResults"] = json!(max_results);
    let job = queue(api, SEARCH, &s.archive_id, document).await?;
    let id = job.id.clone();
    tokio::spawn(run_search(Ctx::of(api), job, s.query));
    Ok(json!({ "SearchId": id }))
}

/// The upload key a search's rows are kept under.
fn results_key(search_id: &str) -> String {
    format!("archive-search/{search_id}")
}

/// Waits for a slot; false when the job was stopped meanwhile.
async fn wait_for_slot(t: &mut Tracked) -> Option<tokio::sync::SemaphorePermit<'static>> {
    match t.beat_while(SLOTS.acquire(), true, &no_progress).await {
        Some(Ok(permit)) => Some(permit),
        // Stopped while queued; the semaphore is never closed.
        Some(Err(_)) | None => None,
    }
}

async fn run_search(ctx: Ctx, job: Job, query: SearchQuery) {
    let mut t = Tracked::new(ctx.state.clone(), SEARCH, job);
    let Some(_slot) = wait_for_slot(&mut t).await else {
        return;
    };
    if !t.transition("RUNNING", |_| {}).await {
        return;
    }
    let archive_id = t.job.resource.clone();
    let rows = match t
        .beat_while(ctx.archive.search(&archive_id, &query), true, &no_progress)
        .await
    {
        None => return,
        Some(Err(e)) => return t.fail(&e.to_string()).await,
        Some(Ok(rows)) => rows,
    };
    let key = results_key(&t.job.id);
    let bytes = serde_json::to_vec(&rows).expect("rows serialize");
    if let Err(e) = ctx.state.upload_put(&key, &bytes).await {
        return t
            .fail(&format!("the results could not be stored: {e}"))
            .await;
    }
    let count = rows.len();
    let completed = t
        .transition("COMPLETED", |d| {
            d["CompletionTimestamp"] = json!(now());
            d["ResultCount"] = json!(count);
        })
        .await;
    if !completed && let Err(e) = ctx.state.upload_delete(&key).await {
        tracing::warn!(search = %t.job.id, error = %e, "the results of a stopped search could not be deleted");
    }
}

/// The `SearchStatus` or `ExportStatus` of a job.
fn status(job: &Job) -> Value {
    let d = &job.document;
    let mut status = json!({
        "SubmissionTimestamp": d["SubmissionTimestamp"],
        "State": job.state,
    });
    for member in ["CompletionTimestamp", "ErrorMessage"] {
        if !d[member].is_null() {
            status[member] = d[member].clone();
        }
    }
    status
}

/// The members Get answers that the job keeps as the request gave them.
fn request_members(job: &Job, members: &[&str]) -> Value {
    let d = &job.document;
    let mut out = json!({ "ArchiveId": job.resource, "Status": status(job) });
    for member in members {
        if !d[*member].is_null() {
            out[*member] = d[*member].clone();
        }
    }
    out
}

/// A search by id: ValidationException when there is none (the model's
/// Get/Stop search and export operations list no ResourceNotFoundException).
async fn find(api: &Api, kind: Kind, member: &str, input: &Value) -> Result<Job, ApiError> {
    let id = required(input, member)?;
    load(&api.state, kind, id)
        .await?
        .ok_or_else(|| ApiError::validation(format!("{member}: no {} {id}", kind.noun)))
}

async fn get_search(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let job = find(api, SEARCH, "SearchId", input).await?;
    Ok(request_members(
        &job,
        &["Filters", "FromTimestamp", "ToTimestamp", "MaxResults"],
    ))
}

async fn search_results(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let job = find(api, SEARCH, "SearchId", input).await?;
    if job.state != "COMPLETED" {
        return Err(ApiError::conflict(format!(
            "search {} is {}: its results are available once it is COMPLETED",
            job.id, job.state
        )));
    }
    let bytes = api
        .state
        .upload_get(&results_key(&job.id))
        .await
        .map_err(state_error)?
        .ok_or_else(|| {
            ApiError::internal(format!("the results of search {} are missing", job.id))
        })?;
    let rows: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::internal(format!(
            "the results of search {} are unreadable: {e}",
            job.id
        ))
    })?;
    Ok(json!({ "Rows": rows }))
}

/// ListArchiveSearches and ListArchiveExports.
async fn list(
    api: &Api,
    kind: Kind,
    id_member: &str,
    list_member: &str,
    input: &Value,
) -> Result<Value, ApiError> {
    let reference = required(input, "ArchiveId")?;
    let (archive_id, _) = archive_of(&api.gateway.snapshot(), reference)
        .ok_or_else(|| ApiError::not_found(format!("no archive {reference}")))?;
    let (jobs, next) = page_of_jobs(&api.state, kind, &archive_id, input).await?;
    let items: Vec<Value> = jobs
        .iter()
        .map(|job| json!({ id_member: job.id, "Status": status(job) }))
        .collect();
    Ok(with_token(json!({ list_member: items }), next))
}

/// StopArchiveSearch and StopArchiveExport. A job already cancelled is
/// stopped again without error (the operation is idempotent); one that
/// ended (COMPLETED, FAILED) is a ValidationException, the model listing no
/// ConflictException for these operations.
async fn stop_job(api: &Api, kind: Kind, member: &str, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, member)?;
    match stop(&api.state, kind, id, kind.active, "CANCELLED").await? {
        None => Err(ApiError::validation(format!(
            "{member}: no {} {id}",
            kind.noun
        ))),
        Some(Stopped::Now(_) | Stopped::Already) => Ok(json!({})),
        Some(Stopped::Finished(state)) => Err(ApiError::validation(format!(
            "{} {id} is already {state}: only a queued or running one can be stopped",
            kind.noun
        ))),
    }
}

/// `s3://bucket/prefix` as the bucket and the prefix of exported objects
/// (empty, or ending with `/`). Besides the model's pattern, the bucket
/// begins and ends with a letter or digit, and the prefix has no empty,
/// `.` or `..` segment (object storage refuses such keys).
pub(crate) fn s3_location(location: &str) -> Result<(String, String), String> {
    let rest = location
        .strip_prefix("s3://")
        .ok_or("give s3://bucket/prefix")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if !bucket_ok {
        return Err(format!(
            "{bucket:?} is not a bucket name (3 to 63 letters, digits, '.' and '-', \
             beginning and ending with a letter or digit)"
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!_.*'()/-".contains(*c)))
    {
        return Err(format!("the prefix may not contain {c:?}"));
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if !trimmed.is_empty()
        && trimmed
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!(
            "the prefix {prefix:?} has an empty, '.' or '..' segment"
        ));
    }
    let prefix = if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    };
    Ok((bucket.to_string(), prefix))
}

async fn start_export(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let max_results =
        match &input["MaxResults"] {
            Value::Null => None,
            value => Some(value.as_u64().ok_or_else(|| {
                ApiError::validation("MaxResults: a number of messages, 0 or more")
            })?),
        };
    let location_member = "ExportDestinationConfiguration.S3.S3Location";
    let location = input["ExportDestinationConfiguration"]["S3"]["S3Location"]
        .as_str()
        .ok_or_else(|| ApiError::validation(format!("{location_member}: required")))?;
    let (bucket, prefix) = s3_location(location)
        .map_err(|e| ApiError::validation(format!("{location_member}: {e}")))?;
    let snapshot = api.gateway.snapshot();
    let s = selection(
        &snapshot,
        input,
        max_results.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        ApiError::validation,
    )?;
    let mut destination: ExportDestination = api
        .gateway
        .export_storage(&bucket)
        .map_err(|e| ApiError::validation(format!("{location_member}: {e}")))?;
    destination.prefix = prefix;
    let include_metadata = input["IncludeMetadata"].as_bool().unwrap_or(false);
    let mut document = s.record;
    if let Some(n) = max_results {
        document["MaxResults"] = json!(n);
    }
    document["ExportDestinationConfiguration"] = input["ExportDestinationConfiguration"].clone();
    document["IncludeMetadata"] = json!(include_metadata);
    let job = queue(api, EXPORT, &s.archive_id, document).await?;
    let id = job.id.clone();
    tokio::spawn(run_export(
        Ctx::of(api),
        job,
        s.query,
        destination,
        include_metadata,
    ));
    Ok(json!({ "ExportId": id }))
}

async fn run_export(
    ctx: Ctx,
    job: Job,
    query: SearchQuery,
    destination: ExportDestination,
    include_metadata: bool,
) {
    let mut t = Tracked::new(ctx.state.clone(), EXPORT, job);
    let Some(_slot) = wait_for_slot(&mut t).await else {
        return;
    };
    if !t.transition("PROCESSING", |_| {}).await {
        return;
    }
    let archive_id = t.job.resource.clone();
    let done = AtomicU64::new(0);
    let total = AtomicU64::new(0);
    let progress = |d: u64, n: u64| {
        done.store(d, Ordering::Relaxed);
        total.store(n, Ordering::Relaxed);
    };
    let record = |document: &mut Value| {
        document["ExportedCount"] = json!(done.load(Ordering::Relaxed));
        document["MatchedCount"] = json!(total.load(Ordering::Relaxed));
    };
    let cancel = t.cancel();
    let work = ctx.archive.export(
        &archive_id,
        &query,
        &destination,
        include_metadata,
        &progress,
        cancel.flag(),
    );
    match t.beat_while(work, true, &record).await {
        None => {}
        Some(Err(e)) => t.fail(&export_error(&e)).await,
        // Stopped between two messages: the job is CANCELLED already.
        Some(Ok(_)) if t.is_cancelled() => {}
        Some(Ok(exported)) => {
            t.transition("COMPLETED", |d| {
                record(d);
                d["ExportedCount"] = json!(exported);
                d["CompletionTimestamp"] = json!(now());
            })
            .await;
        }
    }
}

fn export_error(e: &ArchiveError) -> String {
    match e {
        ArchiveError::Storage(m) => format!("writing the export failed: {m}"),
        other => other.to_string(),
    }
}

async fn get_export(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let job = find(api, EXPORT, "ExportId", input).await?;
    Ok(request_members(
        &job,
        &[
            "Filters",
            "FromTimestamp",
            "ToTimestamp",
            "MaxResults",
            "ExportDestinationConfiguration",
        ],
    ))
}

// ---------------------------------------------------------------------------
// Messages.

/// The errors of GetArchiveMessage and GetArchiveMessageContent. The model
/// lists only ValidationException (besides access and throttling) for
/// them, so an unknown message id is a ValidationException (the id the
/// request gave is not one of an archived message), as is an invalid one;
/// the index or the bodies failing is an InternalServerException.
fn message_error(e: ArchiveError) -> ApiError {
    match e {
        ArchiveError::NotFound(_) | ArchiveError::Invalid(_) => {
            ApiError::validation(format!("ArchivedMessageId: {}", e.message()))
        }
        ArchiveError::Storage(_) | ArchiveError::Database(_) => ApiError::internal(e.to_string()),
    }
}

async fn get_message(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "ArchivedMessageId")?;
    let message = api
        .archive
        .get_message(None, id)
        .await
        .map_err(message_error)?;
    Ok(json!({
        "MessageDownloadLink": api.gateway.message_link(&message.archived_message_id),
        "Metadata": message.metadata,
        "Envelope": message.envelope,
    }))
}

async fn get_content(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "ArchivedMessageId")?;
    let body = api.archive.get_content(id).await.map_err(message_error)?;
    Ok(json!({ "Body": body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations() {
        assert_eq!(
            s3_location("s3://my-bucket/exports/2026/").unwrap(),
            ("my-bucket".to_string(), "exports/2026/".to_string())
        );
        assert_eq!(
            s3_location("s3://my-bucket/exports").unwrap(),
            ("my-bucket".to_string(), "exports/".to_string())
        );
        assert_eq!(
            s3_location("s3://my.bucket").unwrap(),
            ("my.bucket".to_string(), String::new())
        );
        assert_eq!(
            s3_location("s3://my.bucket/").unwrap(),
            ("my.bucket".to_string(), String::new())
        );
        for bad in [
            "my-bucket/exports",
            "https://my-bucket/x",
            "s3://",
            "s3://ab",
            "s3://-bucket",
            "s3://bucket-",
            "s3://my..bucket",
            "s3://my_bucket",
            "s3://bucket/a//b/",
            "s3://bucket//a",
            "s3://bucket/../etc/",
            "s3://bucket/a/./b",
            "s3://bucket/a b/",
            "s3://bucket/a?b",
        ] {
            assert!(s3_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_ids_are_uuids() {
        let id = new_job_id();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
        assert_eq!(&id[14..15], "4", "{id}");
        assert_ne!(id, new_job_id());
    }

    #[test]
    fn job_tokens_round_trip() {
        let id = new_job_id();
        assert_eq!(decode_job_token(&job_token(&id)).unwrap(), id);
        assert!(decode_job_token("garbage").is_err());
        assert!(decode_job_token(&super::super::encode_token(3)).is_err());
    }

    #[test]
    fn filters_are_checked() {
        let ok = json!({"Filters": {"Include": [
            {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS", "Values": ["x"]}},
            {"BooleanExpression": {"Evaluate": {"Attribute": "HAS_ATTACHMENTS"}, "Operator": "IS_TRUE"}}
        ]}});
        let checked = filters(&ok).unwrap().unwrap();
        assert_eq!(checked.include.unwrap().len(), 2);
        assert!(filters(&json!({})).unwrap().is_none());
        let empty = json!({"Filters": {"Unless": [
            {"StringExpression": {"Evaluate": {"Attribute": "TO"}, "Operator": "CONTAINS", "Values": []}}
        ]}});
        assert!(filters(&empty).is_err());
        let unknown = json!({"Filters": {"Include": [
            {"StringExpression": {"Evaluate": {"Attribute": "BODY"}, "Operator": "CONTAINS", "Values": ["x"]}}
        ]}});
        assert!(filters(&unknown).is_err());
    }

    #[test]
    fn instants() {
        let input = json!({"A": 1700000000.5, "B": "soon", "C": 1e300});
        let (seconds, at) = instant(&input, "A").unwrap();
        assert_eq!(seconds, 1700000000.5);
        assert_eq!(at.unix_timestamp_nanos(), 1_700_000_000_500_000_000);
        assert!(instant(&input, "B").is_err());
        assert!(instant(&input, "C").is_err());
        assert!(instant(&input, "D").is_err());
    }

    async fn state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(postern_state::Backend::Sqlite(
            dir.path().join("state.sqlite"),
        ))
        .await
        .unwrap();
        (dir, state)
    }

    fn job(kind: Kind, state: &str, heartbeat: f64) -> Job {
        Job {
            kind: kind.name.to_string(),
            id: new_job_id(),
            resource: "a-test".to_string(),
            state: state.to_string(),
            created: OffsetDateTime::now_utc(),
            document: json!({"SubmissionTimestamp": now(), "Heartbeat": heartbeat}),
        }
    }

    #[tokio::test]
    async fn stale_jobs_are_failed_when_read() {
        let (_dir, state) = state().await;
        let stale = job(SEARCH, "RUNNING", now() - STALE_SECONDS - 5.0);
        let fresh = job(SEARCH, "RUNNING", now());
        let done = job(SEARCH, "COMPLETED", now() - 1000.0);
        for j in [&stale, &fresh, &done] {
            state.job_put(j).await.unwrap();
        }
        let read = load(&state, SEARCH, &stale.id).await.unwrap().unwrap();
        assert_eq!(read.state, "FAILED");
        assert_eq!(read.document["ErrorMessage"], INTERRUPTED);
        assert!(read.document["CompletionTimestamp"].is_number());
        let stored = state
            .job_get(SEARCH_KIND, &stale.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, "FAILED");
        assert_eq!(
            load(&state, SEARCH, &fresh.id)
                .await
                .unwrap()
                .unwrap()
                .state,
            "RUNNING"
        );
        assert_eq!(
            load(&state, SEARCH, &done.id).await.unwrap().unwrap().state,
            "COMPLETED"
        );
        assert!(load(&state, SEARCH, "nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn stops_follow_the_rules() {
        let (_dir, state) = state().await;
        let running = job(EXPORT, "PROCESSING", now());
        let done = job(EXPORT, "COMPLETED", now());
        for j in [&running, &done] {
            state.job_put(j).await.unwrap();
        }
        // A task of this node sees the stop.
        let tracked = Tracked::new(state.clone(), EXPORT, running.clone());
        let cancel = tracked.cancel();
        assert_eq!(
            stop(&state, EXPORT, &running.id, EXPORT.active, "CANCELLED")
                .await
                .unwrap(),
            Some(Stopped::Now("PROCESSING".into()))
        );
        assert!(cancel.is_set());
        assert_eq!(
            stop(&state, EXPORT, &running.id, EXPORT.active, "CANCELLED")
                .await
                .unwrap(),
            Some(Stopped::Already)
        );
        assert_eq!(
            stop(&state, EXPORT, &done.id, EXPORT.active, "CANCELLED")
                .await
                .unwrap(),
            Some(Stopped::Finished("COMPLETED".into()))
        );
        assert_eq!(
            stop(&state, EXPORT, "nope", EXPORT.active, "CANCELLED")
                .await
                .unwrap(),
            None
        );
        // The task cannot complete a cancelled job.
        let mut tracked = tracked;
        assert!(!tracked.transition("COMPLETED", |_| {}).await);
        let stored = state
            .job_get(EXPORT_KIND, &running.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, "CANCELLED");
        assert!(stored.document["CompletionTimestamp"].is_number());
        drop(tracked);
        assert!(!running_here(EXPORT_KIND, &running.id));
    }

    #[tokio::test]
    async fn a_stop_elsewhere_is_seen_at_the_next_beat() {
        let (_dir, state) = state().await;
        let queued = job(SEARCH, "QUEUED", now());
        state.job_put(&queued).await.unwrap();
        let mut tracked = Tracked::new(state.clone(), SEARCH, queued.clone());
        assert!(tracked.transition("RUNNING", |_| {}).await);
        // Another node stops it: only the stored state changes.
        let mut cancelled = tracked.job.clone();
        cancelled.state = "CANCELLED".into();
        assert!(
            state
                .job_transition(SEARCH_KIND, &queued.id, "RUNNING", &cancelled)
                .await
                .unwrap()
        );
        let out = tracked
            .beat_while(std::future::pending::<()>(), true, &no_progress)
            .await;
        assert!(out.is_none());
        assert_eq!(
            state
                .job_get(SEARCH_KIND, &queued.id)
                .await
                .unwrap()
                .unwrap()
                .state,
            "CANCELLED"
        );
    }

    #[tokio::test]
    async fn beats_keep_a_job_fresh() {
        let (_dir, state) = state().await;
        let running = job(SEARCH, "RUNNING", now() - 100.0);
        state.job_put(&running).await.unwrap();
        let mut tracked = Tracked::new(state.clone(), SEARCH, running.clone());
        let out = tracked
            .beat_while(
                tokio::time::sleep(HEARTBEAT * 2 + Duration::from_millis(10)),
                true,
                &|d| d["Seen"] = json!(true),
            )
            .await;
        assert!(out.is_some());
        let stored = state
            .job_get(SEARCH_KIND, &running.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, "RUNNING");
        assert_eq!(stored.document["Seen"], true);
        assert!(stored.document["Heartbeat"].as_f64().unwrap() > now() - 5.0);
    }

    #[tokio::test]
    async fn pages_of_jobs() {
        let (_dir, state) = state().await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let j = job(SEARCH, "COMPLETED", now());
            state.job_put(&j).await.unwrap();
            ids.push(j.id);
        }
        let mut input = json!({"PageSize": 2});
        let mut seen = Vec::new();
        loop {
            let (jobs, next) = page_of_jobs(&state, SEARCH, "a-test", &input)
                .await
                .unwrap();
            assert!(jobs.len() <= 2);
            seen.extend(jobs.into_iter().map(|j| j.id));
            match next {
                Some(token) => input["NextToken"] = json!(token),
                None => break,
            }
        }
        seen.sort();
        ids.sort();
        assert_eq!(seen, ids);
        assert!(
            page_of_jobs(&state, SEARCH, "a-test", &json!({"PageSize": 0}))
                .await
                .is_err()
        );
        assert!(
            page_of_jobs(&state, SEARCH, "a-test", &json!({"NextToken": "x"}))
                .await
                .is_err()
        );
    }
}
