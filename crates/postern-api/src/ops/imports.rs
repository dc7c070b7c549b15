//! Address list import jobs: CreateAddressListImportJob,
//! StartAddressListImportJob, GetAddressListImportJob,
//! ListAddressListImportJobs, StopAddressListImportJob.
//!
//! A job is created `CREATED` with a link to upload its file to (the
//! `PUT /uploads/{JobId}` route of `uploads.rs`, at most
//! [`MAX_UPLOAD_BYTES`]). Starting it (`PROCESSING`) reads the upload and
//! imports every valid address in one change of the address list (one
//! write of the members table, and one new version of the state that
//! raises the list's members revision, however many addresses), then ends
//! `COMPLETED` with `ImportedItemsCount` (valid addresses, including those
//! already members) and `FailedItemsCount` (records that are not a valid
//! address); or `FAILED` with `Error` when the file cannot be read as its
//! format at all, has more than [`MAX_ADDRESSES`] records, or the list
//! cannot take the addresses. `StopAddressListImportJob` ends a created or
//! processing job `STOPPED`; a stopped job imports nothing, unless the stop
//! came while its addresses were being stored, too late for them: then the
//! job ends `COMPLETED`, as what it did. The upload is deleted when the job
//! ends.
//! Jobs run and recover as the archive's do (`archive.rs`, "Jobs").
//!
//! # File formats
//!
//! A UTF-8 byte order mark at the start is ignored; lines end with LF, CRLF
//! or CR; blank lines are skipped.
//!
//! - **CSV**: the first line is the header; the column named `address`
//!   (any case, surrounding spaces ignored) holds the addresses; other
//!   columns are ignored. A file without such a column fails. Fields are
//!   separated by commas and may be quoted (`"..."`, a quote inside doubled
//!   as `""`). A quoted field cannot span lines (no address has a line
//!   break): a line with an unterminated quote, or with text after a
//!   closing quote, is malformed and counts as one failed item, as does a
//!   line without the address column or with invalid UTF-8 in it. A line
//!   whose fields are all empty is blank.
//! - **JSON**: one JSON object per line, `{"address": "..."}` (the key in
//!   any case; other members ignored), or one JSON array of such objects.
//!   A line that is not JSON, or an object without an `address` string,
//!   counts as one failed item; a file of which no line is JSON fails, as
//!   does an array that is not valid JSON.

use super::archive::{
    self, Ctx, Kind, Stopped, Tracked, new_job_id, no_progress, seconds, state_error,
};
use super::{Api, ApplyError, Gateway, members, now, request_digest, required, text, with_token};
use crate::error::ApiError;
use postern_state::Job;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The job kind of address list imports.
pub const IMPORT_KIND: &str = "address-list-import";
/// The largest file an import job takes: 64 MiB.
pub const MAX_UPLOAD_BYTES: usize = 64 << 20;
/// The most records (addresses, valid or not) an import job takes.
pub const MAX_ADDRESSES: usize = 1_000_000;
/// How many imports a node reads and stores at a time.
const IMPORT_SLOTS: usize = 2;
/// How often storing the addresses is tried again when other changes of
/// the state came first.
const APPLY_ATTEMPTS: u32 = 10;

pub(super) const IMPORT: Kind = Kind {
    name: IMPORT_KIND,
    noun: "import job",
    active: &["PROCESSING"],
    error_member: "Error",
    completion_member: "CompletedTimestamp",
};

/// Creates with the same `ClientToken` are made one at a time on a node.
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(IMPORT_SLOTS);

/// Runs `operation` if it is one of this file's.
pub async fn call(api: &Api, operation: &str, input: &Value) -> Option<Result<Value, ApiError>> {
    Some(match operation {
        "CreateAddressListImportJob" => create(api, input).await,
        "StartAddressListImportJob" => start(api, input).await,
        "GetAddressListImportJob" => get(api, input).await,
        "ListAddressListImportJobs" => list(api, input).await,
        "StopAddressListImportJob" => stop(api, input).await,
        _ => return None,
    })
}

/// The format of an import file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    fn of(import_data_format: &Value) -> Option<Format> {
        match import_data_format["ImportDataType"].as_str()? {
            "CSV" => Some(Format::Csv),
            "JSON" => Some(Format::Json),
            _ => None,
        }
    }
}

/// How long before its expiry a job's upload link is replaced by a new one.
const LINK_MARGIN_SECONDS: i64 = 300;

/// The upload link of a job: the one made when it was created (so every
/// answer gives the same), or a new one once that one expires within
/// [`LINK_MARGIN_SECONDS`].
fn upload_url(gateway: &dyn Gateway, job: &Job) -> String {
    let soon = OffsetDateTime::now_utc().unix_timestamp() + LINK_MARGIN_SECONDS;
    match job.document["PreSignedUrl"].as_str() {
        Some(url) if !expired(url, soon) => url.to_string(),
        _ => gateway.upload_link(&job.id),
    }
}

/// Whether a link's `expires` query parameter (Unix seconds) is `at` or
/// before.
fn expired(url: &str, now: i64) -> bool {
    url.split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("expires="))
        .and_then(|expires| expires.parse::<i64>().ok())
        .is_some_and(|expires| expires <= now)
}

/// The ImportJob (and GetAddressListImportJob output) of a job.
fn describe(gateway: &dyn Gateway, job: &Job) -> Value {
    let d = &job.document;
    let mut out = json!({
        "JobId": job.id,
        "Name": d["Name"],
        "Status": job.state,
        "PreSignedUrl": upload_url(gateway, job),
        "ImportDataFormat": d["ImportDataFormat"],
        "AddressListId": job.resource,
        "CreatedTimestamp": d["CreatedTimestamp"],
    });
    for member in [
        "ImportedItemsCount",
        "FailedItemsCount",
        "StartTimestamp",
        "CompletedTimestamp",
        "Error",
    ] {
        if !d[member].is_null() {
            out[member] = d[member].clone();
        }
    }
    out
}

/// CreateAddressListImportJob. With a `ClientToken`, a retry of the same
/// request answers the job the first one created; another request with the
/// token is a ConflictException, as for every create of this service
/// (`Api::change`), although the model lists none for this operation.
async fn create(api: &Api, input: &Value) -> Result<Value, ApiError> {
    const OPERATION: &str = "CreateAddressListImportJob";
    let name = required(input, "Name")?;
    if Format::of(&input["ImportDataFormat"]).is_none() {
        return Err(ApiError::validation(
            "ImportDataFormat.ImportDataType: CSV or JSON",
        ));
    }
    let (_, list_id) = members::address_list(&api.gateway.snapshot(), input)?;
    let token = text(input, "ClientToken");
    let digest = request_digest(input);
    let _one_at_a_time = CREATING.lock().await;
    if let Some(token) = token
        && let Some(id) = remembered(api, OPERATION, token, &digest).await?
    {
        return created_answer(api, &id).await;
    }
    let created = OffsetDateTime::now_utc();
    let id = new_job_id();
    let job = Job {
        kind: IMPORT_KIND.to_string(),
        id: id.clone(),
        resource: list_id.clone(),
        state: "CREATED".to_string(),
        created,
        document: json!({
            "Name": name,
            "ImportDataFormat": input["ImportDataFormat"],
            "CreatedTimestamp": seconds(created),
            "PreSignedUrl": api.gateway.upload_link(&id),
        }),
    };
    api.state.job_put(&job).await.map_err(state_error)?;
    if let Some(token) = token {
        api.state
            .idempotent_put(OPERATION, token, &digest, &json!({"JobId": job.id}))
            .await
            .map_err(state_error)?;
        // Another node may have answered the token first: its job is the
        // answer, and this one is not to be used.
        if let Some(first) = remembered(api, OPERATION, token, &digest).await?
            && first != job.id
        {
            let mut unused = job.clone();
            unused.state = "STOPPED".to_string();
            unused.document["Error"] = json!(format!(
                "ClientToken {token:?} was answered with job {first}"
            ));
            unused.document["CompletedTimestamp"] = json!(now());
            api.state
                .job_transition(IMPORT_KIND, &job.id, "CREATED", &unused)
                .await
                .map_err(state_error)?;
            return created_answer(api, &first).await;
        }
    }
    Ok(json!({"JobId": job.id, "PreSignedUrl": upload_url(&*api.gateway, &job)}))
}

/// CreateAddressListImportJob's answer for the job `id` created before.
async fn created_answer(api: &Api, id: &str) -> Result<Value, ApiError> {
    let job = api
        .state
        .job_get(IMPORT_KIND, id)
        .await
        .map_err(state_error)?
        .ok_or_else(|| ApiError::internal(format!("import job {id} is missing")))?;
    Ok(json!({"JobId": job.id, "PreSignedUrl": upload_url(&*api.gateway, &job)}))
}

/// The job id first given for `token`, if any; a ConflictException when
/// the token was used with another request.
async fn remembered(
    api: &Api,
    operation: &str,
    token: &str,
    digest: &str,
) -> Result<Option<String>, ApiError> {
    let Some(seen) = api
        .state
        .idempotent_get(operation, token)
        .await
        .map_err(state_error)?
    else {
        return Ok(None);
    };
    if seen.request_digest != digest {
        return Err(ApiError::conflict(format!(
            "ClientToken {token:?} was used before with a different {operation} request"
        )));
    }
    seen.response["JobId"]
        .as_str()
        .map(|id| Some(id.to_string()))
        .ok_or_else(|| {
            ApiError::internal(format!("the answer to ClientToken {token:?} is unreadable"))
        })
}

async fn find(api: &Api, input: &Value) -> Result<Job, ApiError> {
    let id = required(input, "JobId")?;
    archive::load(&api.state, IMPORT, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no import job {id}")))
}

/// StartAddressListImportJob: from `CREATED`, once a file was uploaded
/// (else ValidationException: the request is early, nothing conflicts).
/// Starting a job that is processing already answers as the first start
/// did (the operation is idempotent); one that ended is a
/// ConflictException. A job whose address list was deleted is a
/// ResourceNotFoundException.
async fn start(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let job = find(api, input).await?;
    match job.state.as_str() {
        "CREATED" => {}
        "PROCESSING" => return Ok(json!({})),
        other => {
            return Err(ApiError::conflict(format!(
                "import job {} is {other}: a job is started once",
                job.id
            )));
        }
    }
    if api
        .gateway
        .snapshot()
        .config
        .resolve(postern_model::ResourceKind::AddressList, &job.resource)
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "address list {} of import job {} no longer exists",
            job.resource, job.id
        )));
    }
    let bytes = api
        .state
        .upload_get(&job.id)
        .await
        .map_err(state_error)?
        .ok_or_else(|| {
            ApiError::validation(format!(
                "nothing was uploaded for import job {}: PUT the file to its PreSignedUrl first",
                job.id
            ))
        })?;
    let mut started = job.clone();
    started.state = "PROCESSING".to_string();
    started.document["StartTimestamp"] = json!(now());
    started.document["Heartbeat"] = json!(now());
    if !api
        .state
        .job_transition(IMPORT_KIND, &job.id, "CREATED", &started)
        .await
        .map_err(state_error)?
    {
        // Another start, or a stop, came first.
        let now_state = archive::load(&api.state, IMPORT, &job.id)
            .await?
            .map(|j| j.state)
            .unwrap_or_default();
        if now_state == "PROCESSING" {
            return Ok(json!({}));
        }
        return Err(ApiError::conflict(format!(
            "import job {} is {now_state}: a job is started once",
            job.id
        )));
    }
    tokio::spawn(run(Ctx::of(api), started, bytes));
    Ok(json!({}))
}

async fn run(ctx: Ctx, job: Job, bytes: Vec<u8>) {
    let mut t = Tracked::new(ctx.state.clone(), IMPORT, job);
    let id = t.job.id.clone();
    import(&ctx, &mut t, bytes).await;
    if let Err(e) = ctx.state.upload_delete(&id).await {
        tracing::warn!(job = %id, error = %e, "the upload of an import job could not be deleted");
    }
}

async fn import(ctx: &Ctx, t: &mut Tracked, bytes: Vec<u8>) {
    let Some(format) = Format::of(&t.job.document["ImportDataFormat"]) else {
        return t.fail("ImportDataFormat.ImportDataType: CSV or JSON").await;
    };
    let read = async {
        let _slot = SLOTS.acquire().await;
        tokio::task::spawn_blocking(move || parse(format, &bytes, MAX_ADDRESSES)).await
    };
    let parsed = match t.beat_while(read, true, &no_progress).await {
        // Stopped: the job is STOPPED already.
        None => return,
        Some(Err(e)) => return t.fail(&format!("the file could not be read: {e}")).await,
        Some(Ok(Err(e))) => return t.fail(&e).await,
        Some(Ok(Ok(parsed))) => parsed,
    };
    if t.is_cancelled() {
        return;
    }
    let imported = parsed.addresses.len();
    let failed = parsed.failed;
    let counts = |d: &mut Value| {
        d["ImportedItemsCount"] = json!(imported);
        d["FailedItemsCount"] = json!(failed);
        d["CompletedTimestamp"] = json!(now());
    };
    let list_id = t.job.resource.clone();
    let job_id = t.job.id.clone();
    let addresses: Arc<[String]> = parsed.addresses.into();
    // Not given up when stopped: a change half made is not left behind.
    let stored = t
        .beat_while(
            store(
                ctx.gateway.clone(),
                ctx.state.clone(),
                &list_id,
                &job_id,
                addresses,
            ),
            false,
            &no_progress,
        )
        .await
        .unwrap_or_else(|| Err("the import was interrupted".to_string()));
    match stored {
        Err(e) => t.fail(&e).await,
        Ok(changed) => {
            if t.transition("COMPLETED", counts).await || !changed {
                return;
            }
            // Stopped (or taken for interrupted) while the addresses were
            // being stored: they are in the list, so the job completed.
            if let Ok(Some(now_job)) = ctx.state.job_get(IMPORT_KIND, &job_id).await {
                let mut completed = now_job.clone();
                completed.state = "COMPLETED".to_string();
                if let Some(d) = completed.document.as_object_mut() {
                    d.remove("Error");
                }
                counts(&mut completed.document);
                if let Err(e) = ctx
                    .state
                    .job_transition(IMPORT_KIND, &job_id, &now_job.state, &completed)
                    .await
                {
                    tracing::warn!(job = %job_id, error = %e, "import job state could not be stored");
                }
            }
        }
    }
}

/// Adds `addresses` to the members of the list `list_id` (one write of the
/// members table, however many addresses), then stores the version that
/// raises the list's members revision, so that every node runs them; true
/// when the list changed (false when every address was a member already).
/// The version is tried again when other changes of the state came first.
async fn store(
    gateway: Arc<dyn Gateway>,
    state: postern_state::State,
    list_id: &str,
    job_id: &str,
    addresses: Arc<[String]>,
) -> Result<bool, String> {
    let gone = || format!("address list {list_id} no longer exists");
    let list = json!({ "AddressListId": list_id });
    members::address_list(&gateway.snapshot(), &list).map_err(|_| gone())?;
    let added = state
        .members_add(list_id, &addresses, OffsetDateTime::now_utc())
        .await
        .map_err(|e| format!("the addresses could not be stored: {e}"))?;
    let summary =
        format!("StartAddressListImportJob {job_id}: {added} addresses added to {list_id}");
    for attempt in 1..=APPLY_ATTEMPTS {
        let snapshot = gateway.snapshot();
        let Ok((_, id)) = members::address_list(&snapshot, &list) else {
            // Deleted while the addresses were written: they go with it.
            members::forget_members(&state, list_id).await;
            return Err(gone());
        };
        let mut document = snapshot.document.clone();
        members::changed(&mut document, &id, snapshot.version + 1, now());
        match gateway
            .apply(snapshot.version, document, summary.clone())
            .await
        {
            Ok(_) => return Ok(added > 0),
            Err(ApplyError::Conflict) => {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(ApplyError::Invalid(m)) => {
                return Err(format!("the address list cannot take these addresses: {m}"));
            }
            Err(ApplyError::Refused(m) | ApplyError::Internal(m)) => return Err(m),
        }
    }
    Err("the state kept changing while the addresses were being stored; start a new job".into())
}

async fn get(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let job = find(api, input).await?;
    Ok(describe(&*api.gateway, &job))
}

async fn list(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let (_, list_id) = members::address_list(&api.gateway.snapshot(), input)?;
    let (jobs, next) = archive::page_of_jobs(&api.state, IMPORT, &list_id, input).await?;
    let items: Vec<Value> = jobs
        .iter()
        .map(|job| describe(&*api.gateway, job))
        .collect();
    Ok(with_token(json!({ "ImportJobs": items }), next))
}

/// StopAddressListImportJob: a created or processing job ends `STOPPED`; a
/// stopped one is stopped again without error (the operation is
/// idempotent); one that ended otherwise is a ConflictException.
async fn stop(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "JobId")?;
    match archive::stop(
        &api.state,
        IMPORT,
        id,
        &["CREATED", "PROCESSING"],
        "STOPPED",
    )
    .await?
    {
        None => Err(ApiError::not_found(format!("no import job {id}"))),
        Some(Stopped::Now(was)) => {
            // A processing job's task deletes its upload as it ends.
            if was == "CREATED"
                && let Err(e) = api.state.upload_delete(id).await
            {
                tracing::warn!(job = id, error = %e, "the upload of a stopped import job could not be deleted");
            }
            Ok(json!({}))
        }
        Some(Stopped::Already) => Ok(json!({})),
        Some(Stopped::Finished(state)) => Err(ApiError::conflict(format!(
            "import job {id} is already {state}: only a created or processing one can be stopped"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Reading the file.

/// What a file holds: its valid addresses (checked and lowercased, as
/// members are kept) and how many records were not one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub addresses: Vec<String>,
    pub failed: u64,
}

impl Parsed {
    fn take(&mut self, candidate: Option<&str>) {
        match candidate.map(members::member) {
            Some(Ok(address)) => self.addresses.push(address),
            _ => self.failed += 1,
        }
    }

    fn records(&self) -> usize {
        self.addresses.len() + self.failed as usize
    }
}

/// Reads an import file (see the module's documentation); an error, with
/// the reason, when it cannot be read at all or holds more than `limit`
/// records.
pub fn parse(format: Format, bytes: &[u8], limit: usize) -> Result<Parsed, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".to_string());
    }
    let parsed = match format {
        Format::Csv => parse_csv(bytes, limit)?,
        Format::Json => parse_json(bytes, limit)?,
    };
    Ok(parsed)
}

fn too_many(limit: usize) -> String {
    format!("the file has more than {limit} addresses; split it over several jobs")
}

/// The lines of `bytes` (LF, CRLF or CR), without blank ones.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

fn parse_csv(bytes: &[u8], limit: usize) -> Result<Parsed, String> {
    let mut lines = lines(bytes);
    let header = lines.next().ok_or("the file is empty")?;
    let header = csv_fields(header).ok_or("the CSV header row is malformed")?;
    let column = header
        .iter()
        .position(|name| {
            std::str::from_utf8(name).is_ok_and(|n| n.trim().eq_ignore_ascii_case("address"))
        })
        .ok_or("the CSV header row has no column named \"address\"")?;
    let mut parsed = Parsed::default();
    for line in lines {
        let fields = csv_fields(line);
        if fields
            .as_ref()
            .is_some_and(|fields| fields.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)))
        {
            continue;
        }
        if parsed.records() == limit {
            return Err(too_many(limit));
        }
        let value = fields
            .as_ref()
            .and_then(|fields| fields.get(column))
            .and_then(|field| std::str::from_utf8(field).ok());
        parsed.take(value);
    }
    Ok(parsed)
}

/// The fields of one CSV line, unquoted; `None` when it is malformed (an
/// unterminated quote, text after a closing quote). Spaces around a quoted
/// field are ignored.
fn csv_fields(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let start = i + line[i..]
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if line.get(start) == Some(&b'"') {
            let mut field = Vec::new();
            i = start + 1;
            loop {
                match line.get(i) {
                    None => return None,
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        field.push(b);
                        i += 1;
                    }
                }
            }
            i += line[i..]
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            fields.push(field);
            match line.get(i) {
                None => return Some(fields),
                Some(b',') => i += 1,
                Some(_) => return None,
            }
        } else {
            match line[i..].iter().position(|&b| b == b',') {
                Some(n) => {
                    fields.push(line[i..i + n].to_vec());
                    i += n + 1;
                }
                None => {
                    fields.push(line[i..].to_vec());
                    return Some(fields);
                }
            }
        }
    }
}

/// The `address` of a JSON object (the key in any case).
fn json_address(value: &Value) -> Option<&str> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("address"))?
        .1
        .as_str()
}

fn parse_json(bytes: &[u8], limit: usize) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|i| bytes[i] == b'[') {
        let items: Vec<Value> = serde_json::from_slice(bytes)
            .map_err(|e| format!("the file is not a JSON array of objects: {e}"))?;
        if items.len() > limit {
            return Err(too_many(limit));
        }
        for item in &items {
            parsed.take(json_address(item));
        }
        return Ok(parsed);
    }
    let mut first_error = None;
    let mut any_json = false;
    for (n, line) in lines(bytes).enumerate() {
        if parsed.records() == limit {
            return Err(too_many(limit));
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(value) => {
                any_json = true;
                parsed.take(json_address(&value));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| format!("line {}: {e}", n + 1));
                parsed.failed += 1;
            }
        }
    }
    if !any_json {
        return Err(format!(
            "the file is not JSON (one object per line): {}",
            first_error.unwrap_or_default()
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Parsed, String> {
        parse(Format::Csv, text.as_bytes(), MAX_ADDRESSES)
    }

    fn json_lines(text: &str) -> Result<Parsed, String> {
        parse(Format::Json, text.as_bytes(), MAX_ADDRESSES)
    }

    fn ok(addresses: &[&str], failed: u64) -> Result<Parsed, String> {
        Ok(Parsed {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            failed,
        })
    }

    #[test]
    fn csv_header_and_column() {
        assert_eq!(
            csv("address\nalice@example.com\nBob@Example.com\n"),
            ok(&["alice@example.com", "bob@example.com"], 0)
        );
        assert_eq!(
            csv("name, Address ,team\nAlice,alice@example.com,x\nBob,,y\n"),
            ok(&["alice@example.com"], 1)
        );
        assert_eq!(
            csv("\"ADDRESS\"\r\n*@example.org\r\n"),
            ok(&["*@example.org"], 0)
        );
        assert!(
            csv("email\nalice@example.com\n")
                .unwrap_err()
                .contains("address")
        );
        assert_eq!(csv("address\n"), ok(&[], 0));
        assert!(csv("").is_err());
        assert!(csv(" \n\r\n").is_err());
        assert!(csv("\"address\nx@y.z\n").unwrap_err().contains("header"));
    }

    #[test]
    fn csv_quotes_blank_lines_and_bom() {
        let text = "\u{feff}id,address\n\n1,\"carol@example.com\"\n  \n2, \"dave@example.com\" \n,,\n3,\"no \"\"at\"\", sign\"\n";
        // `no "at", sign` is not an address: one failed item.
        assert_eq!(csv(text), ok(&["carol@example.com", "dave@example.com"], 1));
        assert_eq!(
            csv("address\r\nerin@example.com\rfrank@example.com"),
            ok(&["erin@example.com", "frank@example.com"], 0)
        );
    }

    #[test]
    fn csv_malformed_lines_fail_alone() {
        let text = "address\n\"unterminated@example.com\n\"x@example.com\"junk\ngood@example.com\nnot-an-address\n";
        assert_eq!(csv(text), ok(&["good@example.com"], 3));
        let mut bytes = b"address\n".to_vec();
        bytes.extend_from_slice(b"bad\xff@example.com\nok@example.com\n");
        assert_eq!(
            parse(Format::Csv, &bytes, MAX_ADDRESSES),
            ok(&["ok@example.com"], 1)
        );
        // A row without the address column.
        assert_eq!(
            csv("id,address\n1\n2,g@example.com\n"),
            ok(&["g@example.com"], 1)
        );
    }

    #[test]
    fn csv_fields_split() {
        let f = |s: &str| {
            csv_fields(s.as_bytes()).map(|v| {
                v.into_iter()
                    .map(|f| String::from_utf8(f).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            f("a,b,,c"),
            Some(vec!["a".into(), "b".into(), "".into(), "c".into()])
        );
        assert_eq!(
            f("\"a,b\",\"\"\"q\"\"\""),
            Some(vec!["a,b".into(), "\"q\"".into()])
        );
        assert_eq!(f("a,"), Some(vec!["a".into(), "".into()]));
        assert_eq!(f("\"\""), Some(vec!["".into()]));
        assert_eq!(f("\"a"), None);
        assert_eq!(f("\"a\"b"), None);
    }

    #[test]
    fn json_lines_and_arrays() {
        assert_eq!(
            json_lines(
                "{\"address\": \"a@example.com\"}\n\n{\"Address\": \"B@example.com\", \"x\": 1}\r\n"
            ),
            ok(&["a@example.com", "b@example.com"], 0)
        );
        assert_eq!(
            json_lines(
                "\u{feff}{\"address\": \"a@example.com\"}\n{\"address\": 5}\n{not json}\n[1]\n{\"email\": \"c@example.com\"}\n"
            ),
            ok(&["a@example.com"], 4)
        );
        assert_eq!(
            json_lines(" [{\"address\": \"a@example.com\"}, {\"address\": \"nope\"}, 3]"),
            ok(&["a@example.com"], 2)
        );
        assert!(json_lines("[{\"address\": \"a@example.com\"},").is_err());
        assert!(json_lines("address\nalice@example.com\n").is_err());
        assert!(json_lines("").is_err());
        assert_eq!(json_lines("[]"), ok(&[], 0));
    }

    #[test]
    fn records_are_capped() {
        let text = "address\na@example.com\nb@example.com\nc\n";
        assert_eq!(
            parse(Format::Csv, text.as_bytes(), 3),
            ok(&["a@example.com", "b@example.com"], 1)
        );
        assert!(
            parse(Format::Csv, text.as_bytes(), 2)
                .unwrap_err()
                .contains("more than 2")
        );
        let lines = "{\"address\": \"a@example.com\"}\n{\"address\": \"b@example.com\"}\n";
        assert!(parse(Format::Json, lines.as_bytes(), 1).is_err());
        assert!(
            parse(
                Format::Json,
                format!("[{}]", "{},".repeat(2) + "{}").as_bytes(),
                2
            )
            .is_err()
        );
    }

    #[test]
    fn links_expire() {
        let url = "http://127.0.0.1:8025/uploads/j?expires=1000&signature=ab";
        assert!(!expired(url, 999));
        assert!(expired(url, 1000));
        assert!(!expired("http://h/uploads/j?signature=ab", 5000));
        assert!(expired("http://h/uploads/j?signature=ab&expires=7", 8));
    }

    #[test]
    fn formats() {
        assert_eq!(
            Format::of(&json!({"ImportDataType": "CSV"})),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::of(&json!({"ImportDataType": "JSON"})),
            Some(Format::Json)
        );
        assert_eq!(Format::of(&json!({"ImportDataType": "XML"})), None);
        assert_eq!(Format::of(&Value::Null), None);
    }
}
