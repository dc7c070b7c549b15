//! The durable message spool.
//!
//! The SMTP server writes each message here during DATA/BDAT and sends its
//! 250 only when [`Incoming::commit`] has returned: by then the message and
//! its envelope (the caller's `meta`) are on disk, the file and its
//! directory fsync'd. The pipeline reads committed messages, records each
//! step that reached a final outcome ([`Spool::record_step`]) so that after
//! a crash it skips what was already done, and [`Spool::remove`]s the
//! message at the end. After a crash, [`Spool::open`] returns what is left
//! to do: a crash at any point neither loses nor duplicates an accepted
//! message.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use postern_spool::Spool;
//! let (spool, to_process) = Spool::open("data/spool".as_ref()).await?;
//! let mut msg = spool.create(br#"{"mail_from":"a@example.com"}"#).await?;
//! msg.write(b"Subject: hi\r\n\r\nbody\r\n").await?;
//! let id = msg.commit().await?; // now, and only now: "250 2.0.0 Ok: queued as {id}"
//! let m = spool.read(&id).await?;
//! spool.record_step(&id, "archive:a-1", br#"{"ok":true}"#).await?;
//! spool.remove(&id).await?;
//! # drop((to_process, m)); Ok(()) }
//! ```
//!
//! # Layout
//! - `lib.rs`: this documentation, the recovery report.
//! - `spool.rs`: [`Spool`]: open, read, the step journal, remove.
//! - `incoming.rs`: [`Incoming`]: buffered writes, commit, abort.
//! - `syncer.rs`: group-committed directory fsyncs (one task per directory).
//! - `recover.rs`: what `open` does after a crash; the directory paths.
//! - `format.rs`: the queue file format: encoding and checking.
//! - `journal.rs`: the step journal format: encoding and reading.
//! - `id.rs`: [`QueueId`].
//!
//! # Directories
//! ```text
//! <dir>/lock        advisory lock (flock) held while the spool is open
//! <dir>/incoming/   <id>: messages being received, never committed
//! <dir>/queue/      <id>: committed messages, complete and checked
//! <dir>/steps/      <id>: step journals of committed messages
//! <dir>/corrupt/    files that failed their check, for a person to look at
//! ```
//!
//! # Invariants
//! 1. A file in `queue/` is complete: it was written fully and fsync'd in
//!    `incoming/` and only then renamed into `queue/` (rename is atomic).
//!    Its trailer (length, CRC32, end marker) lets `open` and `read` prove
//!    it, so a lying disk is caught rather than trusted.
//! 2. `commit` returns only after an fsync of `queue/` that started after
//!    the rename: the message is durable before its 250.
//! 3. Nothing in `incoming/` is committed: `open` deletes it all.
//! 4. A journal in `steps/` belongs to a message in `queue/`. `remove`
//!    deletes the message, fsyncs `queue/`, and only then the journal: the
//!    reverse order could leave a message without its journal after a
//!    crash, and its steps would run twice. A journal whose message is gone
//!    is deleted by `open`.
//! 5. Every journal record is fsync'd before `record_step` returns (and
//!    `steps/` too when the journal was created). Only the last record can
//!    be torn; `open` cuts it off before anything is appended again.
//! 6. Nothing is silently dropped: a file that fails its check is renamed
//!    into `corrupt/` and logged at error level (and listed in
//!    [`Spool::recovery`]); it is never processed.
//! 7. Queue ids are unique and increase with creation time (see `id.rs`),
//!    so sorting names sorts messages oldest first.
//! 8. One process at a time: `open` takes an exclusive lock on
//!    `<dir>/lock` and fails with `WouldBlock` if it is held.
//!
//! # Queue file format (version 1)
//! All integers little-endian.
//! ```text
//! offset            size  field
//! 0                 8     magic "POSTERNQ"
//! 8                 4     version = 1
//! 12                8     created: microseconds since the Unix epoch
//! 20                4     meta length M (at most 16 MiB)
//! 24                M     meta: the caller's bytes (envelope and session, as JSON)
//! 24+M              N     the message bytes, exactly as received
//! 24+M+N            8     N, the message length
//! 32+M+N            4     CRC32 (IEEE) of every byte before this field
//! 36+M+N            8     end marker "POSTEND\n"
//! ```
//! A file is valid when its magic and version match, M fits, N equals the
//! file length minus 44 minus M, the CRC matches and the end marker is
//! there. Anything else is corrupt.
//!
//! # Step journal format (version 1)
//! ```text
//! header:  8 magic "POSTERNJ", 4 version = 1
//! record:  4 marker "STEP", 4 key length K (at most 4096), 4 outcome length V
//!          (at most 16 MiB), K key (UTF-8), V outcome,
//!          4 CRC32 of the record's bytes before it
//! ```
//! The header is written with the first record, in one append. A journal
//! is read up to the first record that does not check. If a valid record
//! follows it somewhere, the journal is corrupt (an error; `open` moves it
//! and its message to `corrupt/`). If none does, the rest is a torn append
//! and is ignored: the earlier records stand.
//!
//! # Costs
//! A commit is one `write` of what is still buffered plus the trailer, one
//! `fdatasync` of the file, one `rename`, and a share of one `fsync` of
//! `queue/`. Messages up to 64 KiB are written in that single `write`.
//! All file system calls run on tokio's blocking pool.

mod format;
mod id;
mod incoming;
mod journal;
mod recover;
mod spool;
mod syncer;
#[cfg(test)]
mod testrand;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use format::MAX_META_LEN;
pub use id::{InvalidQueueId, QUEUE_ID_LEN, QueueId};
pub use incoming::{Incoming, WRITE_BUFFER};
pub use journal::{MAX_KEY_LEN, MAX_OUTCOME_LEN};
pub use spool::{Spool, Spooled};

/// What [`Spool::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Files deleted from `incoming/` (messages never committed).
    pub temp_files_removed: usize,
    /// Files moved to `corrupt/`.
    pub corrupt: Vec<CorruptFile>,
    /// Journals whose torn last record was cut off.
    pub torn_journals: Vec<QueueId>,
    /// Journals deleted because their message was already removed.
    pub orphan_journals_removed: usize,
}

/// A file moved to `corrupt/` by [`Spool::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptFile {
    pub from: PathBuf,
    pub to: PathBuf,
    pub reason: String,
}
