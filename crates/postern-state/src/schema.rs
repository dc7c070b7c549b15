//! The schema and its migrations.
//!
//! Migrations are numbered; `postern_state_migrations` records those
//! applied. [`migrate`] applies the missing ones in one transaction
//! (PostgreSQL: under an advisory lock, so nodes opening together do not
//! race; SQLite: `BEGIN IMMEDIATE`), and refuses a database whose schema is
//! newer than this build knows. A later schema change is a new entry
//! appended to [`MIGRATIONS`]; applied entries are never edited.

use sqlx::{Executor, Row as _};

use crate::{Db, StateError};

/// The PostgreSQL advisory lock taken while migrating (a transaction lock:
/// released at commit or rollback). Distinct from the archive index's.
const MIGRATION_LOCK: i64 = 7_240_311_002;

/// Version 1, SQLite. `number INTEGER PRIMARY KEY` is the rowid: a second
/// insert of the same number fails, which is what makes concurrent commits
/// safe.
const SQLITE_V1: &[&str] = &[
    "CREATE TABLE postern_versions (
        number INTEGER PRIMARY KEY,
        created_ns INTEGER NOT NULL,
        source TEXT NOT NULL,
        summary TEXT NOT NULL,
        document TEXT NOT NULL
    )",
    "CREATE TABLE postern_idempotency (
        operation TEXT NOT NULL,
        token TEXT NOT NULL,
        request_digest TEXT NOT NULL,
        response TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        PRIMARY KEY (operation, token)
    )",
    "CREATE INDEX postern_idempotency_created ON postern_idempotency (created_ns)",
    "CREATE TABLE postern_jobs (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        resource TEXT NOT NULL,
        state TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    )",
    "CREATE INDEX postern_jobs_list ON postern_jobs (kind, resource, created_ns, id)",
    "CREATE TABLE postern_uploads (
        upload_key TEXT PRIMARY KEY,
        bytes BLOB NOT NULL,
        updated_ns INTEGER NOT NULL
    )",
];

/// Version 1, PostgreSQL. Keys are `COLLATE "C"` so that text orders (and
/// pages) byte-wise, as in SQLite, whatever the database's collation.
/// Documents are `TEXT`, not `JSONB`: they are stored and returned as
/// written (`JSONB` reorders keys and rejects `\u0000`), and never queried
/// inside.
const POSTGRES_V1: &[&str] = &[
    "CREATE TABLE postern_versions (
        number BIGINT PRIMARY KEY,
        created_ns BIGINT NOT NULL,
        source TEXT NOT NULL,
        summary TEXT NOT NULL,
        document TEXT NOT NULL
    )",
    "CREATE TABLE postern_idempotency (
        operation TEXT COLLATE \"C\" NOT NULL,
        token TEXT COLLATE \"C\" NOT NULL,
        request_digest TEXT NOT NULL,
        response TEXT NOT NULL,
        created_ns BIGINT NOT NULL,
        PRIMARY KEY (operation, token)
    )",
    "CREATE INDEX postern_idempotency_created ON postern_idempotency (created_ns)",
    "CREATE TABLE postern_jobs (
        kind TEXT COLLATE \"C\" NOT NULL,
        id TEXT COLLATE \"C\" NOT NULL,
        resource TEXT COLLATE \"C\" NOT NULL,
        state TEXT NOT NULL,
        created_ns BIGINT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    )",
    "CREATE INDEX postern_jobs_list ON postern_jobs (kind, resource, created_ns, id)",
    "CREATE TABLE postern_uploads (
        upload_key TEXT COLLATE \"C\" PRIMARY KEY,
        bytes BYTEA NOT NULL,
        updated_ns BIGINT NOT NULL
    )",
];

/// Version 2, SQLite: address list members, beside the versions. Keyed
/// by list and address (byte-wise, SQLite's `BINARY`), so a list's members
/// are one range of the key, in address order; `WITHOUT ROWID`, as the key
/// is the row.
const SQLITE_V2: &[&str] = &["CREATE TABLE postern_members (
        list_id TEXT NOT NULL,
        address TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        PRIMARY KEY (list_id, address)
    ) WITHOUT ROWID"];

/// Version 2, PostgreSQL: as in SQLite, the keys `COLLATE "C"`.
const POSTGRES_V2: &[&str] = &["CREATE TABLE postern_members (
        list_id TEXT COLLATE \"C\" NOT NULL,
        address TEXT COLLATE \"C\" NOT NULL,
        created_ns BIGINT NOT NULL,
        PRIMARY KEY (list_id, address)
    )"];

/// Each migration: version, description, SQLite statements, PostgreSQL
/// statements. Append only.
pub(crate) const MIGRATIONS: &[(i64, &str, &[&str], &[&str])] = &[
    (
        1,
        "versions, idempotency tokens, jobs and uploads",
        SQLITE_V1,
        POSTGRES_V1,
    ),
    (2, "address list members", SQLITE_V2, POSTGRES_V2),
];

/// The schema version this build writes.
pub(crate) fn current_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the schema of `db` to [`current_version`].
pub(crate) async fn migrate(db: &Db) -> Result<(), StateError> {
    let postgres = matches!(db, Db::Postgres(_));
    with_pool!(db, pool => {
        let mut conn = pool.acquire().await?;
        conn.execute(if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?;
        let result = async {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *conn)
                    .await?;
            }
            conn.execute(
                "CREATE TABLE IF NOT EXISTS postern_state_migrations \
                 (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
            )
            .await?;
            let applied: i64 = sqlx::query(
                "SELECT COALESCE(MAX(version), 0) AS v FROM postern_state_migrations",
            )
            .fetch_one(&mut *conn)
            .await?
            .try_get("v")?;
            let known = current_version();
            if applied > known {
                return Err(StateError::Database(format!(
                    "the state database is at schema version {applied}, newer than this \
                     Postern knows ({known}); upgrade Postern"
                )));
            }
            for (version, description, sqlite, pg) in MIGRATIONS {
                if *version <= applied {
                    continue;
                }
                for statement in if postgres { *pg } else { *sqlite } {
                    conn.execute(*statement).await?;
                }
                sqlx::query(
                    "INSERT INTO postern_state_migrations (version, description) VALUES ($1, $2)",
                )
                .bind(*version)
                .bind(*description)
                .execute(&mut *conn)
                .await?;
                tracing::info!(version, description, "state schema migrated");
            }
            Ok::<(), StateError>(())
        }
        .await;
        match result {
            Ok(()) => {
                conn.execute("COMMIT").await?;
                Ok(())
            }
            Err(e) => {
                // A connection left inside a transaction is not returned
                // to the pool.
                if conn.execute("ROLLBACK").await.is_err() {
                    conn.close_on_drop();
                }
                Err(e)
            }
        }
    })
}
