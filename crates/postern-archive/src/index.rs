//! The index: one `messages` row per archived message, in SQLite or
//! PostgreSQL, and its full-text words.
//!
//! # Schema (version 2)
//!
//! `messages` holds, per message: `archived_message_id` (unique),
//! `archive_id`, `received_us` (microseconds since the epoch), the ids and
//! connection facts of `Metadata`, the envelope (`envelope_to` a JSON
//! array), the headers of a `Row` as read (`hdr_to`, `hdr_from`, `hdr_cc`,
//! `subject`, `date`, `message_id`, `in_reply_to`, `x_mailer`,
//! `x_original_mailer`, `x_priority`, `received_headers` a JSON array),
//! `has_attachments`, `malformed`, `size`, `body_key`, `key_id` (the
//! encryption key, or NULL), and the lowercase search columns `s_to`,
//! `s_from`, `s_cc`, `s_subject`, `s_env_from`, `s_env_to` (never NULL: an
//! absent header is `''`; envelope recipients joined with `\n`).
//! The time window is served by the index `messages_window (archive_id,
//! received_us, archived_message_id)`, which also gives the newest-first
//! order; in SQLite (version 2) it also holds the search columns and
//! `has_attachments` (see [`SQLITE_V2`]).
//!
//! Full text: SQLite has `seq INTEGER PRIMARY KEY` in `messages` and a
//! contentless FTS5 table `messages_fts(words)` with `rowid = seq`
//! (`contentless_delete=1`, `detail=none`: which rows hold a word, not
//! where, about half the size; tokenizer `unicode61 remove_diacritics 0`);
//! PostgreSQL has a `words tsvector` column (configuration `simple`) with a
//! GIN index. Booleans are integers 0/1 and integers are 64-bit in both,
//! so one decoder reads both.
//!
//! Migrations are numbered; `archive_schema_migrations` records those
//! applied. `open` applies the missing ones in one transaction (PostgreSQL:
//! under an advisory lock, so two gateways opening together do not race;
//! SQLite: `BEGIN IMMEDIATE`), and refuses an index newer than it knows.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Database, Executor, Row as _};

use crate::{ArchiveError, IndexBackend};

/// The index database.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// The pool, and the lock every write transaction holds: SQLite has one
    /// writer at a time, and waiting here is cheaper and fairer than
    /// SQLite's busy-retry sleeps.
    Sqlite(SqlitePool, Arc<tokio::sync::Mutex<()>>),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds; the body
/// is compiled once per database.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::index::Db::Sqlite($pool, _) => $body,
            $crate::index::Db::Postgres($pool) => $body,
        }
    };
}

/// A bound SQL parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

/// Binds `values` in order.
pub(crate) fn bind_all<'q, DB: Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    values: &[Value],
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for value in values {
        query = match value {
            Value::Text(s) => query.bind(s.clone()),
            Value::OptText(s) => query.bind(s.clone()),
            Value::Int(i) => query.bind(*i),
        };
    }
    query
}

const SQLITE_V1: &[&str] = &[
    "CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        archived_message_id TEXT NOT NULL UNIQUE,
        archive_id TEXT NOT NULL,
        received_us INTEGER NOT NULL,
        ingress_point_id TEXT NOT NULL,
        traffic_policy_id TEXT NOT NULL,
        rule_set_id TEXT NOT NULL,
        sender_hostname TEXT,
        sender_ip TEXT NOT NULL,
        tls_protocol TEXT,
        tls_cipher_suite TEXT,
        envelope_helo TEXT NOT NULL,
        envelope_from TEXT NOT NULL,
        envelope_to TEXT NOT NULL,
        source_arn TEXT NOT NULL,
        hdr_to TEXT,
        hdr_from TEXT,
        hdr_cc TEXT,
        subject TEXT,
        date TEXT,
        message_id TEXT,
        in_reply_to TEXT,
        x_mailer TEXT,
        x_original_mailer TEXT,
        x_priority TEXT,
        received_headers TEXT NOT NULL,
        has_attachments INTEGER NOT NULL,
        malformed INTEGER NOT NULL,
        size INTEGER NOT NULL,
        body_key TEXT NOT NULL,
        key_id TEXT,
        s_to TEXT NOT NULL,
        s_from TEXT NOT NULL,
        s_cc TEXT NOT NULL,
        s_subject TEXT NOT NULL,
        s_env_from TEXT NOT NULL,
        s_env_to TEXT NOT NULL
    )",
    "CREATE INDEX messages_window ON messages (archive_id, received_us, archived_message_id)",
    "CREATE VIRTUAL TABLE messages_fts USING fts5(words, content='', contentless_delete=1, detail=none, tokenize='unicode61 remove_diacritics 0')",
];

const POSTGRES_V1: &[&str] = &[
    "CREATE TABLE messages (
        archived_message_id TEXT PRIMARY KEY,
        archive_id TEXT NOT NULL,
        received_us BIGINT NOT NULL,
        ingress_point_id TEXT NOT NULL,
        traffic_policy_id TEXT NOT NULL,
        rule_set_id TEXT NOT NULL,
        sender_hostname TEXT,
        sender_ip TEXT NOT NULL,
        tls_protocol TEXT,
        tls_cipher_suite TEXT,
        envelope_helo TEXT NOT NULL,
        envelope_from TEXT NOT NULL,
        envelope_to TEXT NOT NULL,
        source_arn TEXT NOT NULL,
        hdr_to TEXT,
        hdr_from TEXT,
        hdr_cc TEXT,
        subject TEXT,
        date TEXT,
        message_id TEXT,
        in_reply_to TEXT,
        x_mailer TEXT,
        x_original_mailer TEXT,
        x_priority TEXT,
        received_headers TEXT NOT NULL,
        has_attachments BIGINT NOT NULL,
        malformed BIGINT NOT NULL,
        size BIGINT NOT NULL,
        body_key TEXT NOT NULL,
        key_id TEXT,
        s_to TEXT NOT NULL,
        s_from TEXT NOT NULL,
        s_cc TEXT NOT NULL,
        s_subject TEXT NOT NULL,
        s_env_from TEXT NOT NULL,
        s_env_to TEXT NOT NULL,
        words TSVECTOR NOT NULL
    )",
    "CREATE INDEX messages_window ON messages (archive_id, received_us, archived_message_id)",
    "CREATE INDEX messages_words ON messages USING GIN (words)",
];

/// Version 2, SQLite: the window index also holds the search columns, so a
/// `CONTAINS` filter is tested on index entries, read in order, instead of
/// fetching each row of the window from the table (a random seek per row):
/// about 3-4 times faster, for about 210 more bytes per message. Separate
/// narrow indexes `(archive_id, received_us, column)` do not help: the
/// planner sees them tie with the window index and keeps the latter.
const SQLITE_V2: &[&str] = &[
    "DROP INDEX messages_window",
    "CREATE INDEX messages_window ON messages (archive_id, received_us, archived_message_id, \
     s_env_from, s_from, s_to, s_subject, s_cc, s_env_to, has_attachments)",
];

/// Version 2, PostgreSQL: nothing. A B-tree entry is limited to about
/// 2.7 KB, and header text is unbounded (a `To` of a few hundred
/// recipients), so the search columns cannot go into an index without
/// making such a message fail to store.
const POSTGRES_V2: &[&str] = &[];

/// Each migration: version, description, SQLite statements, PostgreSQL
/// statements. Append only.
const MIGRATIONS: &[(i64, &str, &[&str], &[&str])] = &[
    (1, "messages and full text", SQLITE_V1, POSTGRES_V1),
    (
        2,
        "search columns in the window index (SQLite)",
        SQLITE_V2,
        POSTGRES_V2,
    ),
];

/// The columns every read selects, in this order.
pub(crate) const COLUMNS: &str = "archived_message_id, archive_id, received_us, ingress_point_id, \
    traffic_policy_id, rule_set_id, sender_hostname, sender_ip, tls_protocol, tls_cipher_suite, \
    envelope_helo, envelope_from, envelope_to, source_arn, hdr_to, hdr_from, hdr_cc, subject, date, \
    message_id, in_reply_to, x_mailer, x_original_mailer, x_priority, received_headers, \
    has_attachments, malformed, size, body_key, key_id";

/// The columns an insert writes (besides full text), in the order of
/// [`NewRow::values`].
const INSERT_COLUMNS: &str = "archived_message_id, archive_id, received_us, ingress_point_id, \
    traffic_policy_id, rule_set_id, sender_hostname, sender_ip, tls_protocol, tls_cipher_suite, \
    envelope_helo, envelope_from, envelope_to, source_arn, hdr_to, hdr_from, hdr_cc, subject, date, \
    message_id, in_reply_to, x_mailer, x_original_mailer, x_priority, received_headers, \
    has_attachments, malformed, size, body_key, key_id, s_to, s_from, s_cc, s_subject, s_env_from, \
    s_env_to";
const INSERT_COUNT: usize = 36;
/// Rows per SQLite `INSERT` statement (36 parameters each; SQLite allows
/// 32,766 parameters).
const SQLITE_ROWS_PER_INSERT: usize = 100;

/// A row as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub archived_message_id: String,
    pub archive_id: String,
    pub received_us: i64,
    pub ingress_point_id: String,
    pub traffic_policy_id: String,
    pub rule_set_id: String,
    pub sender_hostname: Option<String>,
    pub sender_ip: String,
    pub tls_protocol: Option<String>,
    pub tls_cipher_suite: Option<String>,
    pub envelope_helo: String,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub source_arn: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub cc: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub x_mailer: Option<String>,
    pub x_original_mailer: Option<String>,
    pub x_priority: Option<String>,
    pub received_headers: Vec<String>,
    pub has_attachments: bool,
    pub malformed: bool,
    pub size: i64,
    pub body_key: String,
    pub key_id: Option<String>,
}

/// A row to insert: what is stored, plus the full-text words.
pub(crate) struct NewRow {
    pub stored: Stored,
    pub words: String,
}

impl NewRow {
    fn values(&self) -> Vec<Value> {
        let s = &self.stored;
        let lower = |v: &Option<String>| Value::Text(v.as_deref().unwrap_or("").to_lowercase());
        let json = |v: &Vec<String>| Value::Text(serde_json::to_string(v).expect("strings"));
        vec![
            Value::Text(s.archived_message_id.clone()),
            Value::Text(s.archive_id.clone()),
            Value::Int(s.received_us),
            Value::Text(s.ingress_point_id.clone()),
            Value::Text(s.traffic_policy_id.clone()),
            Value::Text(s.rule_set_id.clone()),
            Value::OptText(s.sender_hostname.clone()),
            Value::Text(s.sender_ip.clone()),
            Value::OptText(s.tls_protocol.clone()),
            Value::OptText(s.tls_cipher_suite.clone()),
            Value::Text(s.envelope_helo.clone()),
            Value::Text(s.envelope_from.clone()),
            json(&s.envelope_to),
            Value::Text(s.source_arn.clone()),
            Value::OptText(s.to.clone()),
            Value::OptText(s.from.clone()),
            Value::OptText(s.cc.clone()),
            Value::OptText(s.subject.clone()),
            Value::OptText(s.date.clone()),
            Value::OptText(s.message_id.clone()),
            Value::OptText(s.in_reply_to.clone()),
            Value::OptText(s.x_mailer.clone()),
            Value::OptText(s.x_original_mailer.clone()),
            Value::OptText(s.x_priority.clone()),
            json(&s.received_headers),
            Value::Int(s.has_attachments.into()),
            Value::Int(s.malformed.into()),
            Value::Int(s.size),
            Value::Text(s.body_key.clone()),
            Value::OptText(s.key_id.clone()),
            lower(&s.to),
            lower(&s.from),
            lower(&s.cc),
            lower(&s.subject),
            Value::Text(s.envelope_from.to_lowercase()),
            Value::Text(
                s.envelope_to
                    .iter()
                    .map(|r| r.to_lowercase())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ]
    }
}

fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes a row selected with [`COLUMNS`].
pub(crate) fn decode<R: sqlx::Row>(row: &R) -> Result<Stored, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let list = |text: String| -> Result<Vec<String>, sqlx::Error> {
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    Ok(Stored {
        archived_message_id: row.try_get("archived_message_id")?,
        archive_id: row.try_get("archive_id")?,
        received_us: row.try_get("received_us")?,
        ingress_point_id: row.try_get("ingress_point_id")?,
        traffic_policy_id: row.try_get("traffic_policy_id")?,
        rule_set_id: row.try_get("rule_set_id")?,
        sender_hostname: row.try_get("sender_hostname")?,
        sender_ip: row.try_get("sender_ip")?,
        tls_protocol: row.try_get("tls_protocol")?,
        tls_cipher_suite: row.try_get("tls_cipher_suite")?,
        envelope_helo: row.try_get("envelope_helo")?,
        envelope_from: row.try_get("envelope_from")?,
        envelope_to: list(row.try_get("envelope_to")?)?,
        source_arn: row.try_get("source_arn")?,
        to: row.try_get("hdr_to")?,
        from: row.try_get("hdr_from")?,
        cc: row.try_get("hdr_cc")?,
        subject: row.try_get("subject")?,
        date: row.try_get("date")?,
        message_id: row.try_get("message_id")?,
        in_reply_to: row.try_get("in_reply_to")?,
        x_mailer: row.try_get("x_mailer")?,
        x_original_mailer: row.try_get("x_original_mailer")?,
        x_priority: row.try_get("x_priority")?,
        received_headers: list(row.try_get("received_headers")?)?,
        has_attachments: row.try_get::<i64, _>("has_attachments")? != 0,
        malformed: row.try_get::<i64, _>("malformed")? != 0,
        size: row.try_get("size")?,
        body_key: row.try_get("body_key")?,
        key_id: row.try_get("key_id")?,
    })
}

impl Db {
    /// Connects and migrates.
    pub(crate) async fn open(backend: &IndexBackend) -> Result<Db, ArchiveError> {
        let db = match backend {
            IndexBackend::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        ArchiveError::Database(format!(
                            "cannot create directory {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let options = SqliteConnectOptions::from_str("sqlite:")
                    .map_err(|e| ArchiveError::Database(e.to_string()))?
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .pragma("temp_store", "memory")
                    .pragma("cache_size", "-65536");
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        ArchiveError::Database(format!("SQLite {}: {e}", path.display()))
                    })?;
                Db::Sqlite(pool, Arc::default())
            }
            IndexBackend::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await
                    .map_err(|e| ArchiveError::Database(format!("PostgreSQL: {e}")))?;
                Db::Postgres(pool)
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    async fn migrate(&self) -> Result<(), ArchiveError> {
        let postgres = self.is_postgres();
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await?;
            conn.execute(if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?;
            let result = async {
                if postgres {
                    conn.execute("SELECT pg_advisory_xact_lock(7240311001)").await?;
                }
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS archive_schema_migrations \
                     (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
                )
                .await?;
                let current: i64 = sqlx::query(
                    "SELECT COALESCE(MAX(version), 0) AS v FROM archive_schema_migrations",
                )
                .fetch_one(&mut *conn)
                .await?
                .try_get("v")?;
                let known = MIGRATIONS.last().map_or(0, |m| m.0);
                if current > known {
                    return Err(ArchiveError::Database(format!(
                        "the index is at schema version {current}, newer than this Postern knows ({known})"
                    )));
                }
                for (version, description, sqlite, pg) in MIGRATIONS {
                    if *version <= current {
                        continue;
                    }
                    for statement in if postgres { *pg } else { *sqlite } {
                        conn.execute(*statement).await?;
                    }
                    sqlx::query(
                        "INSERT INTO archive_schema_migrations (version, description) VALUES ($1, $2)",
                    )
                    .bind(*version)
                    .bind(description.to_string())
                    .execute(&mut *conn)
                    .await?;
                }
                Ok::<(), ArchiveError>(())
            }
            .await;
            match result {
                Ok(()) => {
                    conn.execute("COMMIT").await?;
                    Ok(())
                }
                Err(e) => {
                    let _ = conn.execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })
    }

    /// The archive an id belongs to, if it is indexed.
    pub(crate) async fn owner(&self, id: &str) -> Result<Option<String>, ArchiveError> {
        let sql = "SELECT archive_id FROM messages WHERE archived_message_id = $1";
        Ok(with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(id.to_owned())
                .fetch_optional(pool)
                .await?
                .map(|r| r.try_get::<String, _>("archive_id"))
                .transpose()?
        }))
    }

    /// The archives the indexed ids among `ids` belong to.
    pub(crate) async fn owners(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, ArchiveError> {
        let mut owners = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            // SQLite: `?` (see `insert`).
            let list = match self {
                Db::Sqlite(..) => vec!["?"; chunk.len()].join(", "),
                Db::Postgres(_) => placeholders(1, chunk.len()),
            };
            let sql = format!(
                "SELECT archived_message_id, archive_id FROM messages WHERE archived_message_id IN ({list})"
            );
            let values: Vec<Value> = chunk
                .iter()
                .map(|id| Value::Text((*id).to_owned()))
                .collect();
            with_pool!(self, pool => {
                for row in bind_all(sqlx::query(&sql), &values).fetch_all(pool).await? {
                    owners.insert(
                        row.try_get::<String, _>("archived_message_id")?,
                        row.try_get::<String, _>("archive_id")?,
                    );
                }
            });
        }
        Ok(owners)
    }

    /// Inserts rows in one transaction; a row whose id is already indexed
    /// is left as it is.
    pub(crate) async fn insert(&self, rows: &[NewRow]) -> Result<(), ArchiveError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Db::Sqlite(pool, writer) => {
                // Many rows per statement: fewer round trips to sqlx's
                // connection thread.
                let _writer = writer.lock().await;
                let mut tx = pool.begin().await?;
                for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
                    // `?`, not `$n`: sqlx looks each `$n` up by name, and
                    // SQLite finds a name by scanning the list of them, so
                    // a statement of n `$n` costs n² (15% of the ingest CPU).
                    let tuple = format!("({})", vec!["?"; INSERT_COUNT].join(", "));
                    let tuples = vec![tuple; chunk.len()];
                    let sql = format!(
                        "INSERT INTO messages ({INSERT_COLUMNS}) VALUES {} \
                         ON CONFLICT (archived_message_id) DO NOTHING \
                         RETURNING seq, archived_message_id",
                        tuples.join(", ")
                    );
                    let values: Vec<Value> = chunk.iter().flat_map(NewRow::values).collect();
                    let inserted = bind_all(sqlx::query(&sql), &values)
                        .fetch_all(&mut *tx)
                        .await?;
                    if inserted.is_empty() {
                        continue;
                    }
                    let words: std::collections::HashMap<&str, &str> = chunk
                        .iter()
                        .map(|r| (r.stored.archived_message_id.as_str(), r.words.as_str()))
                        .collect();
                    let mut values = Vec::with_capacity(inserted.len() * 2);
                    for row in &inserted {
                        let id: String = row.try_get("archived_message_id")?;
                        values.push(Value::Int(row.try_get("seq")?));
                        values.push(Value::Text(
                            words.get(id.as_str()).copied().unwrap_or("").to_owned(),
                        ));
                    }
                    let tuples = vec!["(?, ?)"; inserted.len()];
                    let sql = format!(
                        "INSERT INTO messages_fts (rowid, words) VALUES {}",
                        tuples.join(", ")
                    );
                    bind_all(sqlx::query(&sql), &values)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let sql = format!(
                    "INSERT INTO messages ({INSERT_COLUMNS}, words) VALUES ({}, to_tsvector('simple', ${})) \
                     ON CONFLICT (archived_message_id) DO NOTHING",
                    placeholders(1, INSERT_COUNT),
                    INSERT_COUNT + 1
                );
                let mut tx = pool.begin().await?;
                for row in rows {
                    let mut values = row.values();
                    values.push(Value::Text(row.words.clone()));
                    bind_all(sqlx::query(&sql), &values)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The row of `id`.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Stored>, ArchiveError> {
        let sql = format!("SELECT {COLUMNS} FROM messages WHERE archived_message_id = $1");
        Ok(with_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(id.to_owned())
                .fetch_optional(pool)
                .await?
                .map(|r| decode(&r))
                .transpose()?
        }))
    }

    /// Rows selected by `where_sql` (with `values` bound), newest first.
    pub(crate) async fn select(
        &self,
        where_sql: &str,
        values: &[Value],
        limit: i64,
    ) -> Result<Vec<Stored>, ArchiveError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE {where_sql} \
             ORDER BY received_us DESC, archived_message_id DESC LIMIT ${}",
            values.len() + 1
        );
        let mut values = values.to_vec();
        values.push(Value::Int(limit));
        Ok(with_pool!(self, pool => {
            bind_all(sqlx::query(&sql), &values)
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode)
                .collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// How many rows `where_sql` selects.
    pub(crate) async fn count(
        &self,
        where_sql: &str,
        values: &[Value],
    ) -> Result<u64, ArchiveError> {
        let sql = format!("SELECT COUNT(*) AS n FROM messages WHERE {where_sql}");
        let n: i64 = with_pool!(self, pool => {
            bind_all(sqlx::query(&sql), values)
                .fetch_one(pool)
                .await?
                .try_get("n")?
        });
        Ok(n.max(0) as u64)
    }

    /// Deletes up to `limit` rows that `where_sql` selects (and their full
    /// text); returns their body keys.
    pub(crate) async fn delete_some(
        &self,
        where_sql: &str,
        values: &[Value],
        limit: i64,
    ) -> Result<Vec<String>, ArchiveError> {
        let mut values = values.to_vec();
        values.push(Value::Int(limit));
        let limit_param = values.len();
        match self {
            Db::Sqlite(pool, writer) => {
                let _writer = writer.lock().await;
                let mut tx = pool.begin().await?;
                let rows = bind_all(
                    sqlx::query(&format!(
                        "SELECT seq, body_key FROM messages WHERE {where_sql} LIMIT ${limit_param}"
                    )),
                    &values,
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut keys = Vec::with_capacity(rows.len());
                for row in rows {
                    let seq: i64 = row.try_get("seq")?;
                    sqlx::query("DELETE FROM messages_fts WHERE rowid = $1")
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM messages WHERE seq = $1")
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    keys.push(row.try_get("body_key")?);
                }
                tx.commit().await?;
                Ok(keys)
            }
            Db::Postgres(pool) => {
                let sql = format!(
                    "DELETE FROM messages WHERE archived_message_id IN \
                     (SELECT archived_message_id FROM messages WHERE {where_sql} LIMIT ${limit_param}) \
                     RETURNING body_key"
                );
                let rows = bind_all(sqlx::query(&sql), &values).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        r.try_get::<String, _>("body_key")
                            .map_err(ArchiveError::from)
                    })
                    .collect()
            }
        }
    }

    /// Size of the index on disk in bytes (SQLite: the database file and
    /// its WAL; PostgreSQL: the `messages` table with its indexes).
    pub async fn size_bytes(&self) -> Result<u64, ArchiveError> {
        let n: i64 = match self {
            Db::Sqlite(pool, _) => {
                let pages: i64 = sqlx::query("PRAGMA page_count")
                    .fetch_one(pool)
                    .await?
                    .try_get(0)?;
                let size: i64 = sqlx::query("PRAGMA page_size")
                    .fetch_one(pool)
                    .await?
                    .try_get(0)?;
                pages * size
            }
            Db::Postgres(pool) => sqlx::query("SELECT pg_total_relation_size('messages') AS n")
                .fetch_one(pool)
                .await?
                .try_get("n")?,
        };
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index made by version 1 (rows included) is brought to version 2
    /// on open, and its rows stay.
    #[tokio::test]
    async fn migrates_sqlite_from_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        pool.execute(
            "CREATE TABLE archive_schema_migrations \
             (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
        )
        .await
        .unwrap();
        for statement in SQLITE_V1 {
            pool.execute(*statement).await.unwrap();
        }
        pool.execute("INSERT INTO archive_schema_migrations VALUES (1, 'messages and full text')")
            .await
            .unwrap();
        let columns = INSERT_COLUMNS.split(", ").count();
        assert_eq!(columns, INSERT_COUNT);
        let mut values: Vec<String> = (0..columns).map(|i| format!("'v{i}'")).collect();
        values[2] = "5".into(); // received_us
        values[25] = "0".into(); // has_attachments
        pool.execute(
            format!(
                "INSERT INTO messages ({INSERT_COLUMNS}) VALUES ({})",
                values.join(", ")
            )
            .as_str(),
        )
        .await
        .unwrap();
        pool.close().await;

        let db = Db::open(&IndexBackend::Sqlite(path)).await.unwrap();
        let Db::Sqlite(pool, _) = &db else {
            unreachable!()
        };
        let version: i64 = sqlx::query("SELECT MAX(version) FROM archive_schema_migrations")
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, 2);
        let indexed: Vec<String> =
            sqlx::query("SELECT name FROM pragma_index_info('messages_window')")
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
        assert_eq!(
            indexed[..4],
            [
                "archive_id",
                "received_us",
                "archived_message_id",
                "s_env_from"
            ]
        );
        let found = db
            .count(
                "archive_id = $1 AND s_subject LIKE $2",
                &[Value::Text("v1".into()), Value::Text("%v33%".into())],
            )
            .await
            .unwrap();
        assert_eq!(found, 1);
    }
}
