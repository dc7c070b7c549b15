//! The gateway's state, durable in SQLite (embedded) or PostgreSQL (shared
//! by several nodes).
//!
//! What is kept:
//!
//! - **Versions** of the resource document (every Mail Manager resource of
//!   the gateway, as one JSON document). Every change is a new version,
//!   numbered from 1 without gaps; a version is never rewritten. A writer
//!   commits on top of the version it read ([`State::commit`]); when
//!   another writer committed first, the commit fails with
//!   [`StateError::Conflict`] and nothing is written (optimistic
//!   concurrency, safe across processes and nodes: the version number is
//!   the primary key).
//! - **Idempotency tokens** (the `ClientToken` of the API): the first
//!   response given to a token, with a digest of the request it answered.
//! - **Jobs** (address list import jobs, archive searches, archive
//!   exports): one JSON document per job, with the columns needed to list
//!   and guard them.
//! - **Uploads**: the files uploaded for import jobs, by key.
//! - **Address list members**: one row per list and address, with when it
//!   was added. Members are data, not configuration: they are kept beside
//!   the versions, changed in place (a list of a million members costs no
//!   more per version than an empty one), and not kept per version. The
//!   caller records a change of a list's members in the next version of
//!   the document (a revision of the list), so that every node notices it.
//!
//! # Storage
//!
//! Tables (the same names on both backends, all prefixed `postern_` so that
//! the state can share a PostgreSQL database with the archive index):
//! `postern_versions`, `postern_idempotency`, `postern_jobs`,
//! `postern_uploads`, `postern_members` and `postern_state_migrations` (see
//! the `schema` module). JSON is stored as text, exactly as serialized; bytes as
//! `BLOB` (SQLite) or `BYTEA` (PostgreSQL). Timestamps are nanoseconds
//! since the Unix epoch in a 64-bit integer, so they cover 1677-09-21 to
//! 2262-04-11 and come back in UTC with their full precision.
//!
//! SQLite runs in WAL mode with `synchronous=FULL`: a call that returned
//! has reached the disk.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use time::OffsetDateTime;

/// Where the state is kept.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite database file; it and its directory are created if
    /// missing.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, e.g.
    /// `postgres://postern@db.example.net/postern`. Tables are created in
    /// the connection's current schema (set one with
    /// `?options[search_path]=name`).
    Postgres(String),
}

impl fmt::Debug for Backend {
    /// Shows the URL of a PostgreSQL backend without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Backend::Postgres(url) => f.debug_tuple("Postgres").field(&redact(url)).finish(),
        }
    }
}

/// `url` with the password of its user info replaced by `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..authority_start],
        &authority[..colon],
        &url[authority_start + at..]
    )
}

/// Why a state operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// [`State::commit`] on top of version `parent`, but the state is no
    /// longer at that version: another writer committed after it. Nothing
    /// was written; read the latest version and try again.
    Conflict {
        /// The version the refused commit was based on.
        parent: u64,
    },
    /// The database could not be opened or reached, failed, or refused the
    /// request (such as a timestamp outside the stored range).
    Database(String),
    /// The database holds something this build cannot read (a document
    /// that is not JSON, a negative version number).
    Corrupt(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Conflict { parent } => write!(
                f,
                "conflict: the state is no longer at version {parent} (another writer \
                 committed a change); read the latest version and retry"
            ),
            StateError::Database(message) => write!(f, "state database: {message}"),
            StateError::Corrupt(message) => {
                write!(f, "state database holds unreadable data: {message}")
            }
        }
    }
}

impl std::error::Error for StateError {}

impl From<sqlx::Error> for StateError {
    fn from(e: sqlx::Error) -> StateError {
        StateError::Database(e.to_string())
    }
}

/// One version of the resource document.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// 1 for the first version, then one more for each.
    pub number: u64,
    /// When it was committed (UTC).
    pub created: OffsetDateTime,
    /// Who or what committed it (e.g. `api`, `config`).
    pub source: String,
    /// What changed, in a line.
    pub summary: String,
    /// The resource document.
    pub document: serde_json::Value,
}

/// A version without its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// 1 for the first version, then one more for each.
    pub number: u64,
    /// When it was committed (UTC).
    pub created: OffsetDateTime,
    /// Who or what committed it.
    pub source: String,
    /// What changed, in a line.
    pub summary: String,
}

/// The first response given to an idempotency token.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    /// A digest of the request the response answered, to tell a retry
    /// (same digest) from another request reusing the token.
    pub request_digest: String,
    /// The response.
    pub response: serde_json::Value,
}

/// A job: an address list import job, an archive search, an archive
/// export.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// What kind of job (e.g. `import`, `search`, `export`); ids are
    /// unique within a kind.
    pub kind: String,
    /// The job's id.
    pub id: String,
    /// What the job works on (e.g. an address list id or an archive id);
    /// jobs are listed by it.
    pub resource: String,
    /// The job's state (e.g. `RUNNING`, `COMPLETED`, `CANCELLED`), which
    /// [`State::job_transition`] guards.
    pub state: String,
    /// When the job was created; jobs are listed newest first. Stored
    /// with nanosecond precision and read back in UTC.
    pub created: OffsetDateTime,
    /// Everything else about the job.
    pub document: serde_json::Value,
}

/// The gateway's durable state. Cheap to clone: clones share one
/// connection pool.
#[derive(Debug, Clone)]
pub struct State {
    db: Db,
}

/// The database.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// The pool, and the lock every write holds: SQLite has one writer at a
    /// time, and waiting here is cheaper and fairer than SQLite's
    /// busy-retry sleeps (other processes are still held off by SQLite's
    /// own locking).
    Sqlite {
        pool: SqlitePool,
        writer: Arc<tokio::sync::Mutex<()>>,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds; the body
/// is compiled once per database.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite { pool: $pool, .. } => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}

/// Like `with_pool!`, holding the SQLite writer lock while `$body` runs.
macro_rules! with_writer {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite {
                pool: $pool,
                writer,
            } => {
                let _writer = writer.lock().await;
                $body
            }
            Db::Postgres($pool) => $body,
        }
    };
}

// After the macros, which it uses.
mod schema;

/// The columns of a version, without and with the document.
const VERSION_INFO_COLUMNS: &str = "number, created_ns, source, summary";
const VERSION_COLUMNS: &str = "number, created_ns, source, summary, document";
/// The columns of a job.
const JOB_COLUMNS: &str = "kind, id, resource, state, created_ns, document";

/// Members written or deleted per statement in SQLite, each address a
/// parameter of its own (well under SQLite's limit of 32,766).
const SQLITE_MEMBER_BATCH: usize = 500;
/// Members written or deleted per statement in PostgreSQL, as one array
/// parameter.
const POSTGRES_MEMBER_BATCH: usize = 10_000;

impl State {
    /// Opens the state and brings its schema up to date.
    ///
    /// SQLite: creates the file and its parent directory if missing.
    /// PostgreSQL: the database must exist; the tables are created in it.
    pub async fn open(backend: Backend) -> Result<State, StateError> {
        let db = match &backend {
            Backend::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StateError::Database(format!(
                            "cannot create directory {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let options = SqliteConnectOptions::from_str("sqlite:")
                    .map_err(|e| StateError::Database(e.to_string()))?
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30));
                let pool = connect_sqlite(options)
                    .await
                    .map_err(|e| StateError::Database(format!("SQLite {}: {e}", path.display())))?;
                Db::Sqlite {
                    pool,
                    writer: Arc::default(),
                }
            }
            Backend::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await
                    .map_err(|e| {
                        StateError::Database(format!("PostgreSQL {}: {e}", redact(url)))
                    })?;
                Db::Postgres(pool)
            }
        };
        schema::migrate(&db).await?;
        Ok(State { db })
    }

    /// Closes the connections, waiting for those in use to be returned.
    /// Every clone of this state is closed; their later calls fail.
    pub async fn close(&self) {
        with_pool!(&self.db, pool => pool.close().await)
    }

    /// The latest version, or `None` before the first commit.
    pub async fn latest(&self) -> Result<Option<Version>, StateError> {
        let sql =
            format!("SELECT {VERSION_COLUMNS} FROM postern_versions ORDER BY number DESC LIMIT 1");
        with_pool!(&self.db, pool => {
            sqlx::query(&sql)
                .fetch_optional(pool)
                .await?
                .map(|row| decode_version(&row))
                .transpose()
        })
    }

    /// Version `number`, if it exists.
    pub async fn version(&self, number: u64) -> Result<Option<Version>, StateError> {
        let Ok(number) = i64::try_from(number) else {
            return Ok(None);
        };
        let sql = format!("SELECT {VERSION_COLUMNS} FROM postern_versions WHERE number = $1");
        with_pool!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(number)
                .fetch_optional(pool)
                .await?
                .map(|row| decode_version(&row))
                .transpose()
        })
    }

    /// Up to `limit` versions, newest first, without their documents.
    pub async fn versions(&self, limit: u32) -> Result<Vec<VersionInfo>, StateError> {
        let sql = format!(
            "SELECT {VERSION_INFO_COLUMNS} FROM postern_versions ORDER BY number DESC LIMIT $1"
        );
        with_pool!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_version_info)
                .collect()
        })
    }

    /// Appends version `parent + 1` (`parent` 0 for the first version),
    /// made by `source` (who or what committed it) and described by
    /// `summary`; returns its number.
    ///
    /// Fails with [`StateError::Conflict`], writing nothing, unless
    /// `parent` is the latest version: another writer committed a version
    /// after `parent`. Two writers committing on the same parent at once
    /// race safely (the version number is the primary key): one wins, the
    /// other gets the conflict.
    pub async fn commit(
        &self,
        parent: u64,
        document: &serde_json::Value,
        source: &str,
        summary: &str,
    ) -> Result<u64, StateError> {
        // No version beyond `i64::MAX` can exist, so the state is not at
        // such a `parent`.
        let conflict = StateError::Conflict { parent };
        let Ok(parent_i) = i64::try_from(parent) else {
            return Err(conflict);
        };
        let Some(number) = parent_i.checked_add(1) else {
            return Err(conflict);
        };
        let created = nanos(OffsetDateTime::now_utc(), "the current time")?;
        let document = document.to_string();
        // Inserts only if `parent` is the latest version; a writer that
        // inserted `number` meanwhile makes this fail on the primary key.
        let sql = "INSERT INTO postern_versions (number, created_ns, source, summary, document) \
                   SELECT $1, $2, $3, $4, $5 \
                   WHERE (SELECT COALESCE(MAX(number), 0) FROM postern_versions) = $6";
        let inserted = with_writer!(&self.db, pool => {
            sqlx::query(sql)
                .bind(number)
                .bind(created)
                .bind(source)
                .bind(summary)
                .bind(document.as_str())
                .bind(parent_i)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match inserted {
            Ok(1) => Ok(number as u64),
            Ok(_) => Err(conflict),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// The response remembered for `token` of `operation`, if any.
    pub async fn idempotent_get(
        &self,
        operation: &str,
        token: &str,
    ) -> Result<Option<Remembered>, StateError> {
        let sql = "SELECT request_digest, response FROM postern_idempotency \
                   WHERE operation = $1 AND token = $2";
        let row: Option<(String, String)> = with_pool!(&self.db, pool => {
            match sqlx::query(sql)
                .bind(operation)
                .bind(token)
                .fetch_optional(pool)
                .await?
            {
                Some(row) => Some((row.try_get("request_digest")?, row.try_get("response")?)),
                None => None,
            }
        });
        row.map(|(request_digest, response)| {
            Ok(Remembered {
                request_digest,
                response: json(
                    &response,
                    &format!("the response to token {token:?} of {operation}"),
                )?,
            })
        })
        .transpose()
    }

    /// Remembers `response` (to a request of digest `request_digest`) for
    /// `token` of `operation`, unless the token already has a response:
    /// the first one is kept.
    pub async fn idempotent_put(
        &self,
        operation: &str,
        token: &str,
        request_digest: &str,
        response: &serde_json::Value,
    ) -> Result<(), StateError> {
        let created = nanos(OffsetDateTime::now_utc(), "the current time")?;
        let response = response.to_string();
        let sql = "INSERT INTO postern_idempotency \
                   (operation, token, request_digest, response, created_ns) \
                   VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (operation, token) DO NOTHING";
        with_writer!(&self.db, pool => {
            sqlx::query(sql)
                .bind(operation)
                .bind(token)
                .bind(request_digest)
                .bind(response.as_str())
                .bind(created)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Forgets the tokens remembered before `older_than`; returns how many.
    pub async fn idempotent_expire(&self, older_than: OffsetDateTime) -> Result<u64, StateError> {
        // Saturates: a bound outside the stored range selects none or all.
        let bound = i64::try_from(older_than.unix_timestamp_nanos()).unwrap_or(
            if older_than.unix_timestamp_nanos() < 0 {
                i64::MIN
            } else {
                i64::MAX
            },
        );
        let sql = "DELETE FROM postern_idempotency WHERE created_ns < $1";
        Ok(with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(bound).execute(pool).await?.rows_affected()
        }))
    }

    /// Deletes every version but the newest `keep` (at least one is always
    /// kept); returns how many were deleted. Versions are never changed,
    /// only forgotten when they are old.
    pub async fn prune_versions(&self, keep: u32) -> Result<u64, StateError> {
        let keep = i64::from(keep.max(1));
        let sql = "DELETE FROM postern_versions WHERE number <= \
                   (SELECT MAX(number) FROM postern_versions) - $1";
        Ok(with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(keep).execute(pool).await?.rows_affected()
        }))
    }

    /// Deletes the jobs created before `older_than` whose state is one of
    /// `finished`, with the uploads keyed by their ids (`{id}` and
    /// `{kind}/{id}`); returns how many jobs were deleted.
    pub async fn jobs_expire(
        &self,
        older_than: OffsetDateTime,
        finished: &[&str],
    ) -> Result<u64, StateError> {
        let bound = i64::try_from(older_than.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for state in finished {
            let select = "SELECT kind, id FROM postern_jobs WHERE created_ns < $1 AND state = $2";
            let rows: Vec<(String, String)> = with_writer!(&self.db, pool => {
                sqlx::query_as(select).bind(bound).bind(*state).fetch_all(pool).await?
            });
            for (kind, id) in rows {
                self.upload_delete(&id).await?;
                self.upload_delete(&format!("{kind}/{id}")).await?;
                let delete = "DELETE FROM postern_jobs WHERE kind = $1 AND id = $2";
                deleted += with_writer!(&self.db, pool => {
                    sqlx::query(delete).bind(kind.as_str()).bind(id.as_str()).execute(pool).await?.rows_affected()
                });
            }
        }
        Ok(deleted)
    }

    /// Stores `job`, replacing the job of the same kind and id if there is
    /// one.
    pub async fn job_put(&self, job: &Job) -> Result<(), StateError> {
        let created = nanos(job.created, "the job's creation time")?;
        let document = job.document.to_string();
        let sql = format!(
            "INSERT INTO postern_jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (kind, id) DO UPDATE SET resource = excluded.resource, \
             state = excluded.state, created_ns = excluded.created_ns, \
             document = excluded.document"
        );
        with_writer!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(job.kind.as_str())
                .bind(job.id.as_str())
                .bind(job.resource.as_str())
                .bind(job.state.as_str())
                .bind(created)
                .bind(document.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The job `id` of `kind`, if it exists.
    pub async fn job_get(&self, kind: &str, id: &str) -> Result<Option<Job>, StateError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM postern_jobs WHERE kind = $1 AND id = $2");
        with_pool!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(kind)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .map(|row| decode_job(&row))
                .transpose()
        })
    }

    /// Up to `limit` jobs of `kind` on `resource`, newest first (by
    /// creation time, then by id, both descending).
    ///
    /// Pages: `after` is the id of the last job of the previous page, and
    /// the page holds the jobs that come after it in this order. An `after`
    /// naming no job of this kind on this resource gives an empty page.
    pub async fn jobs(
        &self,
        kind: &str,
        resource: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Job>, StateError> {
        let limit = i64::from(limit);
        with_pool!(&self.db, pool => {
            let rows = match after {
                None => {
                    let sql = format!(
                        "SELECT {JOB_COLUMNS} FROM postern_jobs \
                         WHERE kind = $1 AND resource = $2 \
                         ORDER BY created_ns DESC, id DESC LIMIT $3"
                    );
                    sqlx::query(&sql)
                        .bind(kind)
                        .bind(resource)
                        .bind(limit)
                        .fetch_all(pool)
                        .await?
                }
                Some(after) => {
                    // The anchor is read in the same statement, so a page
                    // follows from one consistent view.
                    let sql = format!(
                        "SELECT {JOB_COLUMNS} FROM postern_jobs \
                         WHERE kind = $1 AND resource = $2 AND (created_ns, id) < \
                         (SELECT created_ns, id FROM postern_jobs \
                          WHERE kind = $1 AND resource = $2 AND id = $4) \
                         ORDER BY created_ns DESC, id DESC LIMIT $3"
                    );
                    sqlx::query(&sql)
                        .bind(kind)
                        .bind(resource)
                        .bind(limit)
                        .bind(after)
                        .fetch_all(pool)
                        .await?
                }
            };
            rows.iter().map(decode_job).collect()
        })
    }

    /// Replaces the job `id` of `kind` with `job`, but only if its state is
    /// still `expected` (so that, say, RUNNING → COMPLETED does not
    /// overwrite a CANCELLED that came first). True when it was replaced;
    /// false when the job's state is not `expected` or there is no such
    /// job.
    ///
    /// `job` must have this kind and id: a job cannot move by transition.
    pub async fn job_transition(
        &self,
        kind: &str,
        id: &str,
        expected: &str,
        job: &Job,
    ) -> Result<bool, StateError> {
        if job.kind != kind || job.id != id {
            return Err(StateError::Database(format!(
                "cannot transition job {kind}/{id} to a job of another kind or id ({}/{})",
                job.kind, job.id
            )));
        }
        let created = nanos(job.created, "the job's creation time")?;
        let document = job.document.to_string();
        let sql = "UPDATE postern_jobs SET resource = $1, state = $2, created_ns = $3, \
                   document = $4 WHERE kind = $5 AND id = $6 AND state = $7";
        let changed = with_writer!(&self.db, pool => {
            sqlx::query(sql)
                .bind(job.resource.as_str())
                .bind(job.state.as_str())
                .bind(created)
                .bind(document.as_str())
                .bind(kind)
                .bind(id)
                .bind(expected)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed > 0)
    }

    /// Stores `bytes` as the upload `key`, replacing what was uploaded
    /// under it before.
    pub async fn upload_put(&self, key: &str, bytes: &[u8]) -> Result<(), StateError> {
        let updated = nanos(OffsetDateTime::now_utc(), "the current time")?;
        let sql = "INSERT INTO postern_uploads (upload_key, bytes, updated_ns) \
                   VALUES ($1, $2, $3) \
                   ON CONFLICT (upload_key) DO UPDATE SET bytes = excluded.bytes, \
                   updated_ns = excluded.updated_ns";
        with_writer!(&self.db, pool => {
            sqlx::query(sql)
                .bind(key)
                .bind(bytes)
                .bind(updated)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The bytes uploaded as `key`, if any.
    pub async fn upload_get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let sql = "SELECT bytes FROM postern_uploads WHERE upload_key = $1";
        Ok(with_pool!(&self.db, pool => {
            match sqlx::query(sql).bind(key).fetch_optional(pool).await? {
                Some(row) => Some(row.try_get::<Vec<u8>, _>("bytes")?),
                None => None,
            }
        }))
    }

    /// Deletes the upload `key`; deleting one that does not exist is not an
    /// error.
    pub async fn upload_delete(&self, key: &str) -> Result<(), StateError> {
        let sql = "DELETE FROM postern_uploads WHERE upload_key = $1";
        with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(key).execute(pool).await?;
        });
        Ok(())
    }

    /// Adds `addresses` to the members of list `list_id`, added at `at`;
    /// an address that is a member already keeps the time it was added.
    /// Returns how many were new. One transaction, however many addresses
    /// (a million take seconds, not minutes); repeated addresses count
    /// once.
    ///
    /// Addresses are stored as given: the caller normalizes them (the API
    /// keeps them lower-cased).
    pub async fn members_add(
        &self,
        list_id: &str,
        addresses: &[String],
        at: OffsetDateTime,
    ) -> Result<u64, StateError> {
        let created = nanos(at, "the time the members were added")?;
        let addresses = sorted_unique(addresses);
        if addresses.is_empty() {
            return Ok(0);
        }
        match &self.db {
            Db::Sqlite { pool, writer } => {
                let _writer = writer.lock().await;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let added = sqlite_insert_members(&mut tx, list_id, &addresses, created).await?;
                tx.commit().await?;
                Ok(added)
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let added = pg_insert_members(&mut tx, list_id, &addresses, created).await?;
                tx.commit().await?;
                Ok(added)
            }
        }
    }

    /// Removes `address` from the members of list `list_id`; true when it
    /// was a member.
    pub async fn members_remove(&self, list_id: &str, address: &str) -> Result<bool, StateError> {
        let sql = "DELETE FROM postern_members WHERE list_id = $1 AND address = $2";
        let removed = with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(list_id).bind(address).execute(pool).await?.rows_affected()
        });
        Ok(removed > 0)
    }

    /// Makes the members of list `list_id` exactly `addresses`, in one
    /// transaction: those that stay keep the time they were added, new
    /// ones are added at `at`, the others are removed.
    pub async fn members_replace(
        &self,
        list_id: &str,
        addresses: &[String],
        at: OffsetDateTime,
    ) -> Result<(), StateError> {
        let created = nanos(at, "the time the members were added")?;
        let wanted = sorted_unique(addresses);
        let present_sql = all_members_sql(&self.db);
        match &self.db {
            Db::Sqlite { pool, writer } => {
                let _writer = writer.lock().await;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let present: String = sqlx::query_scalar(present_sql)
                    .bind(list_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let (gone, new) = differences(all_members(&present, list_id)?, &wanted);
                let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
                sqlite_delete_members(&mut tx, list_id, &gone).await?;
                sqlite_insert_members(&mut tx, list_id, &new, created).await?;
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let present: String = sqlx::query_scalar(present_sql)
                    .bind(list_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let (gone, new) = differences(all_members(&present, list_id)?, &wanted);
                let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
                pg_delete_members(&mut tx, list_id, &gone).await?;
                pg_insert_members(&mut tx, list_id, &new, created).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// When `address` was added to list `list_id`, if it is a member.
    pub async fn members_get(
        &self,
        list_id: &str,
        address: &str,
    ) -> Result<Option<OffsetDateTime>, StateError> {
        let sql = "SELECT created_ns FROM postern_members WHERE list_id = $1 AND address = $2";
        let created: Option<i64> = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(list_id).bind(address).fetch_optional(pool).await?
        });
        created.map(time_of).transpose()
    }

    /// Up to `limit` members of list `list_id` with when each was added,
    /// in address order (byte-wise), those starting with `prefix` only
    /// when one is given (compared as text: `%` and `_` are themselves).
    ///
    /// Pages: `after` is the last address of the previous page, and the
    /// page holds the members after it; it need not be a member any more.
    pub async fn members_page(
        &self,
        list_id: &str,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, OffsetDateTime)>, StateError> {
        let mut sql =
            String::from("SELECT address, created_ns FROM postern_members WHERE list_id = $1");
        let mut bounds: Vec<String> = Vec::new();
        // A prefix is a range of the key: from the prefix itself up to the
        // first string after every string that starts with it.
        if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
            bounds.push(prefix.to_string());
            sql += &format!(" AND address >= ${}", bounds.len() + 1);
            if let Some(end) = prefix_end(prefix) {
                bounds.push(end);
                sql += &format!(" AND address < ${}", bounds.len() + 1);
            }
        }
        if let Some(after) = after {
            bounds.push(after.to_string());
            sql += &format!(" AND address > ${}", bounds.len() + 1);
        }
        sql += &format!(" ORDER BY address LIMIT ${}", bounds.len() + 2);
        with_pool!(&self.db, pool => {
            let mut query = sqlx::query(&sql).bind(list_id);
            for bound in &bounds {
                query = query.bind(bound.as_str());
            }
            query
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| Ok((row.try_get("address")?, time_of(row.try_get("created_ns")?)?)))
                .collect()
        })
    }

    /// Every member of list `list_id`, in address order (byte-wise).
    pub async fn members_all(&self, list_id: &str) -> Result<Vec<String>, StateError> {
        let sql = all_members_sql(&self.db);
        let text: String = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(list_id).fetch_one(pool).await?
        });
        all_members(&text, list_id)
    }

    /// How many members list `list_id` has.
    pub async fn members_count(&self, list_id: &str) -> Result<u64, StateError> {
        let sql = "SELECT COUNT(*) FROM postern_members WHERE list_id = $1";
        let count: i64 = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(list_id).fetch_one(pool).await?
        });
        Ok(count.max(0) as u64)
    }

    /// Removes every member of list `list_id`; returns how many there were.
    pub async fn members_drop(&self, list_id: &str) -> Result<u64, StateError> {
        let sql = "DELETE FROM postern_members WHERE list_id = $1";
        Ok(with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(list_id).execute(pool).await?.rows_affected()
        }))
    }
}

/// The statement that reads every member of list `$1`, in address order,
/// as one JSON array: one row costs the drivers far less than a row per
/// address (a million rows take seconds, the array a fraction of one).
fn all_members_sql(db: &Db) -> &'static str {
    match db {
        // The subquery's order is the aggregate's.
        Db::Sqlite { .. } => {
            "SELECT COALESCE(json_group_array(address), '[]') FROM \
             (SELECT address FROM postern_members WHERE list_id = $1 ORDER BY address)"
        }
        Db::Postgres(_) => {
            "SELECT COALESCE(json_agg(address ORDER BY address), '[]')::text \
             FROM postern_members WHERE list_id = $1"
        }
    }
}

/// The members of list `list_id` from the JSON array [`all_members_sql`]
/// reads, in address order.
fn all_members(text: &str, list_id: &str) -> Result<Vec<String>, StateError> {
    let mut members: Vec<String> = serde_json::from_str(text)
        .map_err(|e| StateError::Corrupt(format!("the members of address list {list_id}: {e}")))?;
    // In order already; sorting a sorted list only checks it.
    members.sort_unstable();
    Ok(members)
}

/// `addresses` sorted (byte-wise, as the members table orders them),
/// without repeats.
fn sorted_unique(addresses: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = addresses.iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// What turns the members `present` into `wanted` (both sorted, without
/// repeats): those to remove, and those to add.
fn differences<'a>(present: Vec<String>, wanted: &[&'a str]) -> (Vec<String>, Vec<&'a str>) {
    debug_assert!(present.is_sorted() && wanted.is_sorted());
    let mut gone = Vec::new();
    let mut new = Vec::new();
    let mut present = present.into_iter().peekable();
    let mut wanted = wanted.iter().copied().peekable();
    loop {
        match (present.peek(), wanted.peek()) {
            (None, None) => break,
            (Some(_), None) => gone.extend(present.by_ref()),
            (None, Some(_)) => new.extend(wanted.by_ref()),
            (Some(p), Some(w)) => match p.as_str().cmp(w) {
                std::cmp::Ordering::Less => gone.extend(present.next()),
                std::cmp::Ordering::Greater => new.extend(wanted.next()),
                std::cmp::Ordering::Equal => {
                    present.next();
                    wanted.next();
                }
            },
        }
    }
    (gone, new)
}

/// The least string after every string that starts with `prefix`, in code
/// point order (which is UTF-8 byte order); `None` when no string is (the
/// prefix is all U+10FFFF).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Inserts the members `addresses` of `list_id` that are not members yet;
/// returns how many were inserted.
async fn sqlite_insert_members(
    conn: &mut SqliteConnection,
    list_id: &str,
    addresses: &[&str],
    created: i64,
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for batch in addresses.chunks(SQLITE_MEMBER_BATCH) {
        let mut sql =
            String::from("INSERT INTO postern_members (list_id, address, created_ns) VALUES ");
        for i in 0..batch.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql += &format!("($1, ${}, $2)", i + 3);
        }
        sql.push_str(" ON CONFLICT (list_id, address) DO NOTHING");
        let mut query = sqlx::query(&sql).bind(list_id).bind(created);
        for address in batch {
            query = query.bind(*address);
        }
        inserted += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

async fn sqlite_delete_members(
    conn: &mut SqliteConnection,
    list_id: &str,
    addresses: &[&str],
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for batch in addresses.chunks(SQLITE_MEMBER_BATCH) {
        let placeholders: Vec<String> = (0..batch.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "DELETE FROM postern_members WHERE list_id = $1 AND address IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(list_id);
        for address in batch {
            query = query.bind(*address);
        }
        deleted += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(deleted)
}

async fn pg_insert_members(
    conn: &mut PgConnection,
    list_id: &str,
    addresses: &[&str],
    created: i64,
) -> Result<u64, sqlx::Error> {
    let sql = "INSERT INTO postern_members (list_id, address, created_ns) \
               SELECT $1, address, $2 FROM UNNEST($3::text[]) AS batch (address) \
               ON CONFLICT (list_id, address) DO NOTHING";
    let mut inserted = 0;
    for batch in addresses.chunks(POSTGRES_MEMBER_BATCH) {
        inserted += sqlx::query(sql)
            .bind(list_id)
            .bind(created)
            .bind(batch)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(inserted)
}

async fn pg_delete_members(
    conn: &mut PgConnection,
    list_id: &str,
    addresses: &[&str],
) -> Result<u64, sqlx::Error> {
    let sql = "DELETE FROM postern_members WHERE list_id = $1 AND address = ANY($2::text[])";
    let mut deleted = 0;
    for batch in addresses.chunks(POSTGRES_MEMBER_BATCH) {
        deleted += sqlx::query(sql)
            .bind(list_id)
            .bind(batch)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(deleted)
}

/// How long opening an SQLite database waits for others to let go of it.
const SQLITE_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the SQLite pool. Turning a new database to WAL takes an exclusive
/// lock that SQLite does not wait for (it fails at once with
/// `SQLITE_BUSY`), so when several processes or tasks open a new database
/// together, those that fail try again, for up to [`SQLITE_OPEN_TIMEOUT`].
async fn connect_sqlite(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + SQLITE_OPEN_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
        {
            Err(sqlx::Error::Database(e))
                if is_sqlite_busy(e.as_ref()) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            result => return result,
        }
    }
}

/// Whether `e` is `SQLITE_BUSY` (or one of its extended codes).
fn is_sqlite_busy(e: &dyn sqlx::error::DatabaseError) -> bool {
    e.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// `t` in nanoseconds since the epoch; `what` names it in the error.
fn nanos(t: OffsetDateTime, what: &str) -> Result<i64, StateError> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        StateError::Database(format!(
            "{what} ({t}) is outside the range the state stores (1677-09-21 to 2262-04-11 UTC)"
        ))
    })
}

/// The time `ns` nanoseconds after the epoch, in UTC.
fn time_of(ns: i64) -> Result<OffsetDateTime, StateError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .map_err(|e| StateError::Corrupt(format!("timestamp {ns}: {e}")))
}

/// Parses the stored JSON `text` of `what`.
fn json(text: &str, what: &str) -> Result<serde_json::Value, StateError> {
    serde_json::from_str(text).map_err(|e| StateError::Corrupt(format!("{what} is not JSON: {e}")))
}

/// Reads a row selected with [`VERSION_INFO_COLUMNS`] (or more).
fn decode_version_info<R: sqlx::Row>(row: &R) -> Result<VersionInfo, StateError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let number: i64 = row.try_get("number")?;
    Ok(VersionInfo {
        number: u64::try_from(number)
            .map_err(|_| StateError::Corrupt(format!("negative version number {number}")))?,
        created: time_of(row.try_get("created_ns")?)?,
        source: row.try_get("source")?,
        summary: row.try_get("summary")?,
    })
}

/// Reads a row selected with [`VERSION_COLUMNS`].
fn decode_version<R: sqlx::Row>(row: &R) -> Result<Version, StateError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let info = decode_version_info(row)?;
    let text: String = row.try_get("document")?;
    let document = json(&text, &format!("the document of version {}", info.number))?;
    Ok(Version {
        number: info.number,
        created: info.created,
        source: info.source,
        summary: info.summary,
        document,
    })
}

/// Reads a row selected with [`JOB_COLUMNS`].
fn decode_job<R: sqlx::Row>(row: &R) -> Result<Job, StateError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind")?;
    let id: String = row.try_get("id")?;
    let text: String = row.try_get("document")?;
    let document = json(&text, &format!("the document of job {kind}/{id}"))?;
    Ok(Job {
        resource: row.try_get("resource")?,
        state: row.try_get("state")?,
        created: time_of(row.try_get("created_ns")?)?,
        document,
        kind,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_of_a_url() {
        assert_eq!(
            redact("postgres://postern:s3cret@db.example.net:5432/postern"),
            "postgres://postern:***@db.example.net:5432/postern"
        );
        assert_eq!(
            redact("postgres://postern@db.example.net/postern?sslmode=disable"),
            "postgres://postern@db.example.net/postern?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://db/x?user=a@b"),
            "postgres://db/x?user=a@b"
        );
        assert_eq!(redact("not a url"), "not a url");
        let debug = format!("{:?}", Backend::Postgres("postgres://u:p@h/d".into()));
        assert!(!debug.contains(":p@"), "{debug}");
    }

    #[test]
    fn prefixes_end_after_every_string_they_start() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(prefix_end(""), None);
        for (prefix, inside, outside) in [
            ("bo", "bob@x.test", "bp"),
            ("é", "éa@x.test", "ê"),
            ("a\u{10FFFF}", "a\u{10FFFF}\u{10FFFF}@x", "b"),
        ] {
            let end = prefix_end(prefix).unwrap();
            assert!(
                prefix <= inside && inside < end.as_str(),
                "{prefix} {inside}"
            );
            assert!(outside >= end.as_str(), "{prefix} {outside}");
        }
    }

    #[test]
    fn differences_walk_both_lists_once() {
        let present = ["a", "c", "d", "f"].map(String::from).to_vec();
        let (gone, new) = differences(present, &["b", "c", "f", "g"]);
        assert_eq!(gone, ["a", "d"]);
        assert_eq!(new, ["b", "g"]);
        let (gone, new) = differences(Vec::new(), &[]);
        assert!(gone.is_empty() && new.is_empty());
        assert_eq!(
            differences(vec!["a".to_string(), "z".to_string()], &["a"]),
            (vec!["z".to_string()], vec![])
        );
        assert_eq!(
            sorted_unique(&["b", "a", "b"].map(String::from)),
            ["a", "b"]
        );
    }

    #[test]
    fn members_come_back_from_their_json_array_in_order() {
        let members = all_members(r#"["a@x.test","b\u0000@x.test","*@y.test"]"#, "al-1").unwrap();
        assert_eq!(members, ["*@y.test", "a@x.test", "b\u{0}@x.test"]);
        assert!(all_members("[]", "al-1").unwrap().is_empty());
        assert!(matches!(
            all_members("[1]", "al-1"),
            Err(StateError::Corrupt(m)) if m.contains("al-1")
        ));
    }

    #[test]
    fn timestamps_round_trip_at_the_edges_of_the_range() {
        for ns in [i64::MIN, -1, 0, 1, i64::MAX] {
            assert_eq!(nanos(time_of(ns).unwrap(), "t").unwrap(), ns);
        }
        let too_late = time_of(i64::MAX).unwrap() + time::Duration::nanoseconds(1);
        assert!(matches!(
            nanos(too_late, "t"),
            Err(StateError::Database(m)) if m.contains("outside the range")
        ));
    }
}
