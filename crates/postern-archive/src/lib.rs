//! The archive: message bodies in object storage (S3-compatible or a
//! directory, through `postern_endpoints::ObjectStorage`), an index in
//! SQLite or PostgreSQL (through sqlx); search, get, export, retention.
//! Results are the Mail Manager model's shapes (`Row`, `Metadata`,
//! `Envelope`, `MessageBody`) verbatim.
//!
//! # Layout
//!
//! - `lib.rs`: [`ArchiveConfig`], [`IndexBackend`], [`ArchiveError`] and
//!   the semantics below.
//! - `bodies.rs`: a batch's bodies on a directory, made durable together.
//! - `store.rs`: [`Archive`], the public operations (store, search, get,
//!   raw, export, expire, purge, count), and [`StoreItem`],
//!   [`ArchivedMessage`].
//! - `index.rs`: the schema and its versioned migrations for both
//!   databases, the insert, the row decoding, the deletes.
//! - `ingest.rs`: what is read from a message (headers, attachments,
//!   body text for full-text search), and when it is malformed.
//! - `search.rs`: [`SearchQuery`]; `ArchiveFilters` to SQL with every user
//!   value bound as a parameter.
//! - `export.rs`: [`ExportDestination`] and the export loop.
//! - `retention.rs`: [`retention::cutoff`], `RetentionPeriod` to a date.
//! - `crypt.rs`: [`EncryptionKey`], AES-256-GCM encryption at rest.
//!
//! # Semantics
//!
//! **Identity.** An `ArchivedMessageId` is unique across all archives (as
//! in Mail Manager, where `GetArchiveMessage` takes only the id). Storing
//! the same `(archive_id, archived_message_id)` again changes nothing and
//! succeeds (a rerun after a crash); storing an id that already belongs to
//! another archive is [`ArchiveError::Invalid`].
//!
//! **Durability and order.** `store` writes the body first (the directory
//! backend writes a staging file, fsyncs it, renames it and fsyncs the
//! directory; `store_batch` syncs the file system once for the batch
//! instead; S3 acknowledges a complete `PutObject`), then the index row,
//! so an index row never points at a missing body. A crash between the two
//! leaves an unindexed body that the rerun overwrites with the same bytes.
//! The SQLite index runs in WAL mode with `synchronous=NORMAL`: a power
//! loss may lose the last index transactions, but never corrupts the
//! index, and the archive is written only after the spool has made the
//! message durable, so the pipeline's rerun stores the lost rows again
//! (idempotently). Deleting (`expire`, `purge`) goes the other way: index
//! rows first, then bodies; a crash in between leaves orphan bodies (never
//! dangling rows), which a later `purge` of the same rows cannot see —
//! they are wasted space, not wrong answers.
//!
//! **Throughput.** `store_batch` is how a busy gateway archives: the
//! batch's ids are looked up in one query; on a directory every body is
//! written (staging file, rename) and then all are made durable together
//! with one `syncfs(2)` (elsewhere than Linux: an fsync per file, then per
//! distinct directory; see `bodies.rs`), on S3 they are put 64 at a time;
//! then the rows are indexed in one transaction (SQLite: 100 rows per
//! `INSERT`). Bodies are durable before their rows commit, as for `store`.
//! SQLite writes are serialised by a lock in the `Archive` (one writer at
//! a time, without SQLite's busy-retry sleeps); readers are not blocked
//! (WAL). `store` (one message) fsyncs its body and directory through
//! `ObjectStorage::put`. See `benches/archive.rs`.
//!
//! **Body object key.** `{prefix}{archive_id}/{yyyy}/{mm}/{dd}/{archived_message_id}.eml`,
//! the date being the UTC date of `received`. Archive ids and message ids
//! must be non-empty and free of `/`, `\` and control characters.
//!
//! **What is indexed** (`ingest.rs`): the top-level headers `To`, `From`,
//! `Cc` (addresses rendered as `Name <address>`, joined with `, `, RFC 2047
//! and charsets decoded), `Subject` (decoded), `Date`, `Message-ID`,
//! `In-Reply-To`, `X-Priority` (raw values, unfolded), `X-Mailer`,
//! `X-Original-Mailer` (decoded), every `Received` header (raw, unfolded,
//! in message order), `HasAttachments` (mail-parser finds at least one
//! attachment), the envelope (HELO, MAIL FROM, every RCPT TO), the ingress
//! point, traffic policy and rule set ids, the sender's IP and host name,
//! TLS protocol and cipher, the source ARN, the received time (microsecond
//! precision), the size in bytes, the body's object key, the encryption
//! key id, and a malformed flag. A header that is absent is `None` in the
//! `Row`. Header bytes that are not UTF-8 are decoded lossily.
//!
//! **Filters** (`search.rs`), as in `SearchArchive`:
//! - The time window is `FromTimestamp <= received < ToTimestamp`
//!   (inclusive start, exclusive end). A window that ends before it starts
//!   is `Invalid`; an empty window finds nothing.
//! - `Include`: every condition must hold (AND). `Unless`: a message that
//!   matches any one condition is left out. No filters: every message in
//!   the window.
//! - `CONTAINS` is a case-insensitive (Unicode lowercase) substring match;
//!   any one of the `Values` is enough (OR). `Values` may not be empty. A
//!   value is matched literally: `%`, `_` and `\` are not wildcards. `TO`,
//!   `FROM`, `CC` and `SUBJECT` match the rendered header text (names and
//!   addresses; an absent header is the empty string, so only an empty
//!   value matches it); `ENVELOPE_FROM` matches the MAIL FROM address;
//!   `ENVELOPE_TO` matches when any single envelope recipient contains the
//!   value.
//! - `HAS_ATTACHMENTS` `IS_TRUE` / `IS_FALSE`.
//! - Results are newest first (by received time, then by id descending),
//!   at most `max_results` (0 gives none).
//! - Full text (an extension, [`SearchQuery::full_text`]): every word of
//!   the query must occur as a whole word in the message's body text (the
//!   text parts, and HTML parts converted to text). A word is a maximal run
//!   of Unicode letters and digits, compared case-insensitively, without
//!   stemming or diacritic folding. The first 256 KiB of body text are
//!   indexed. SQLite keeps it in a contentless FTS5 table (`unicode61`
//!   tokenizer, `detail=none`: words only, no positions, so no phrase
//!   queries); PostgreSQL in a `tsvector` column (`simple` configuration)
//!   with a GIN index; the text is pre-split into words by the same Rust
//!   function for both, so both answer alike. Query text with no word finds
//!   nothing.
//!
//! **Content** (`get_content`): `Text` is the concatenation of the
//! `text/plain` body parts, `Html` of the `text/html` body parts (each
//! `None` when there is none). A message is malformed when mail-parser
//! cannot parse it or finds no header field at all (empty input, binary
//! junk, a body without a header); it is stored and indexed with what can
//! be read, `raw` returns its bytes, and `get_content` answers
//! `MessageMalformed: true` with no text.
//!
//! **Encryption at rest** (`crypt.rs`): with `StoreItem::encryption`, the
//! body object is `POSTERN-ARCHIVE-AES256GCM\n` (magic), a length-prefixed
//! key id, a 12-byte random nonce, then the AES-256-GCM ciphertext and tag;
//! the header and the archived message id are the associated data, so a
//! body moved to another message's key does not decrypt. The index records
//! the key id; `raw`, `get_content` and `export` decrypt with the keys of
//! [`ArchiveConfig::keys`], and a missing or wrong key is a
//! [`ArchiveError::Storage`] naming the key id. The index itself (headers,
//! body words) is not encrypted. Exports are written decrypted.
//!
//! **Retention** (`retention.rs`): `cutoff(period, now)` is `now` minus the
//! period in calendar months (the day clamped to the month's last day,
//! e.g. 31 May minus 3 months is 28 or 29 February), `None` for
//! `PERMANENT`. `expire` deletes what was received strictly before the
//! cutoff.
//!
//! **Export**: the messages the query finds (newest first, at most
//! `max_results`) are written as `{prefix}{archived_message_id}.eml` (the
//! exact archived bytes, decrypted) and, with metadata,
//! `{prefix}{archived_message_id}.json` (the `Row`, as `SearchArchive`
//! returns it). Cancelling stops before the next message; the count of
//! messages written so far is returned.

mod bodies;
mod crypt;
mod export;
mod index;
mod ingest;
pub mod retention;
mod search;
mod store;

use std::fmt;
use std::path::PathBuf;

pub use crypt::EncryptionKey;
pub use export::ExportDestination;
pub use search::SearchQuery;
pub use store::{Archive, ArchivedMessage, StoreItem};

/// Where the index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexBackend {
    /// An SQLite database file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, e.g. `postgres://postgres@127.0.0.1/test`.
    Postgres(String),
}

/// How to open an [`Archive`].
pub struct ArchiveConfig {
    pub index: IndexBackend,
    /// Where message bodies are kept.
    pub bodies: postern_endpoints::ObjectStorage,
    /// The bucket (or, for the directory backend, sub-directory) of bodies.
    pub bucket: String,
    /// Prepended to every body key, e.g. `archive/`.
    pub prefix: String,
    /// The keys that can decrypt bodies stored encrypted; each is found by
    /// the id recorded with the body.
    pub keys: Vec<EncryptionKey>,
}

/// Why an archive operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveError {
    /// No such message (or archive).
    NotFound(String),
    /// The request is wrong (a bad filter, an invalid id); a
    /// `ValidationException` at the API.
    Invalid(String),
    /// Object storage failed, or a body cannot be read back (missing,
    /// undecryptable).
    Storage(String),
    /// The index database failed.
    Database(String),
}

impl ArchiveError {
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            ArchiveError::NotFound(m)
            | ArchiveError::Invalid(m)
            | ArchiveError::Storage(m)
            | ArchiveError::Database(m) => m,
        }
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::NotFound(m) => write!(f, "not found: {m}"),
            ArchiveError::Invalid(m) => write!(f, "invalid request: {m}"),
            ArchiveError::Storage(m) => write!(f, "archive storage: {m}"),
            ArchiveError::Database(m) => write!(f, "archive index: {m}"),
        }
    }
}

impl std::error::Error for ArchiveError {}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> ArchiveError {
        ArchiveError::Database(e.to_string())
    }
}

impl From<postern_endpoints::EndpointError> for ArchiveError {
    fn from(e: postern_endpoints::EndpointError) -> ArchiveError {
        ArchiveError::Storage(e.to_string())
    }
}
