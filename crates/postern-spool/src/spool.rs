//! The spool handle: open (with recovery), read, the step journal, remove.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::Recovery;
use crate::format::{self, MAX_META_LEN};
use crate::id::{IdGen, QueueId};
use crate::incoming::Incoming;
use crate::journal::{self, MAX_KEY_LEN, MAX_OUTCOME_LEN};
use crate::recover::{self, Paths, context};
use crate::syncer::DirSyncer;

/// Journals are appended, read and removed under one of these locks,
/// chosen by the id's hash: one append at a time per message.
const STEP_LOCKS: usize = 64;

/// The durable message spool. Cheap to clone; all clones share one spool.
#[derive(Clone)]
pub struct Spool {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) paths: Paths,
    pub(crate) ids: IdGen,
    pub(crate) depth: AtomicUsize,
    pub(crate) queue_sync: DirSyncer,
    steps_sync: DirSyncer,
    dir_syncs: Arc<AtomicU64>,
    step_locks: Vec<Arc<Mutex<()>>>,
    recovery: Recovery,
    /// Held (with its advisory lock) for as long as the spool is open.
    _lock: File,
}

/// A committed message as read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub id: QueueId,
    /// The bytes given to [`Spool::create`].
    pub meta: Vec<u8>,
    /// The message, exactly as written; a view into one buffer holding the
    /// file.
    pub message: Bytes,
    /// When [`Spool::create`] was called.
    pub created: SystemTime,
}

impl Spool {
    /// Opens (creating) the spool under `dir` and recovers it (see
    /// `recover.rs`): deletes messages never committed, moves committed
    /// files that fail their check to `dir/corrupt/` (logged, never
    /// processed), cuts torn records off step journals. Returns the
    /// committed messages still to process, oldest first.
    ///
    /// Fails with `WouldBlock` when the spool is already open, in this
    /// process or another. Must be called inside a tokio runtime: the
    /// spool spawns its directory fsync tasks on it.
    pub async fn open(dir: &Path) -> io::Result<(Spool, Vec<QueueId>)> {
        let paths = Paths::new(dir);
        let p = paths.clone();
        let (recovered, queue_dir, steps_dir) = blocking(move || {
            let r = recover::recover(&p)?;
            let q = File::open(&p.queue).map_err(|e| context(e, "opening", &p.queue))?;
            let s = File::open(&p.steps).map_err(|e| context(e, "opening", &p.steps))?;
            Ok((r, q, s))
        })
        .await?;
        let dir_syncs = Arc::new(AtomicU64::new(0));
        let inner = Inner {
            queue_sync: DirSyncer::start(paths.queue.clone(), queue_dir, dir_syncs.clone()),
            steps_sync: DirSyncer::start(paths.steps.clone(), steps_dir, dir_syncs.clone()),
            paths,
            ids: IdGen::new(recovered.newest_micros),
            depth: AtomicUsize::new(recovered.ids.len()),
            dir_syncs,
            step_locks: (0..STEP_LOCKS).map(|_| Arc::new(Mutex::new(()))).collect(),
            recovery: recovered.report,
            _lock: recovered.lock,
        };
        Ok((
            Spool {
                inner: Arc::new(inner),
            },
            recovered.ids,
        ))
    }

    /// Starts a message. `meta` is opaque to the spool (the caller's
    /// envelope and session metadata); at most [`MAX_META_LEN`] bytes.
    /// Creates `incoming/<id>`; nothing is written before the first 64 KiB
    /// of message or the commit.
    pub async fn create(&self, meta: &[u8]) -> io::Result<Incoming> {
        if meta.len() > MAX_META_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "meta of {} bytes is over the {MAX_META_LEN}-byte limit",
                    meta.len()
                ),
            ));
        }
        let id = self.inner.ids.next();
        let path = self.inner.paths.incoming_file(&id);
        let file = blocking(move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| context(e, "creating", &path))
        })
        .await?;
        Ok(Incoming::new(self.inner.clone(), id, file, meta))
    }

    /// Reads a committed message, checking its length, checksum and end
    /// marker (`InvalidData` if they are wrong; `NotFound` if there is no
    /// such message).
    pub async fn read(&self, id: &QueueId) -> io::Result<Spooled> {
        let path = self.inner.paths.queue_file(id);
        let bytes =
            blocking(move || fs::read(&path).map_err(|e| context(e, "reading", &path))).await?;
        let layout = format::parse(&bytes).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("queue file {id}: {e}"))
        })?;
        let bytes = Bytes::from(bytes);
        Ok(Spooled {
            id: id.clone(),
            meta: bytes[layout.meta].to_vec(),
            message: bytes.slice(layout.message),
            created: layout.created,
        })
    }

    /// Durably records that the step `key` of message `id` reached a final
    /// outcome: the record is appended to `steps/<id>` and fsync'd (and, for
    /// the first record, the `steps/` directory too) before this returns.
    /// `NotFound` if the message is not in the queue.
    ///
    /// Cancel-safe: the append runs in its own task, so dropping this
    /// future never leaves a half-written record behind.
    pub async fn record_step(&self, id: &QueueId, key: &str, outcome: &[u8]) -> io::Result<()> {
        if key.len() > MAX_KEY_LEN || outcome.len() > MAX_OUTCOME_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a step key is at most {MAX_KEY_LEN} bytes and an outcome at most {MAX_OUTCOME_LEN}"
                ),
            ));
        }
        let record = journal::encode_record(key, outcome);
        let inner = self.inner.clone();
        let id = id.clone();
        run_to_completion(async move {
            let _one_at_a_time = inner.step_lock(&id).lock_owned().await;
            let paths = inner.paths.clone();
            let created = blocking(move || append_step(&paths, &id, &record)).await?;
            if created || inner.steps_sync.is_dirty() {
                inner.steps_sync.sync().await?;
            }
            Ok(())
        })
        .await
    }

    /// The steps recorded for a message, in the order they were recorded.
    /// A torn last record is ignored; a corrupt journal is `InvalidData`.
    /// `NotFound` if the message is not in the queue.
    pub async fn steps(&self, id: &QueueId) -> io::Result<Vec<(String, Vec<u8>)>> {
        let inner = self.inner.clone();
        let id = id.clone();
        run_to_completion(async move {
            let _one_at_a_time = inner.step_lock(&id).lock_owned().await;
            let paths = inner.paths.clone();
            blocking(move || {
                let path = paths.journal(&id);
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let queued = paths.queue_file(&id);
                        return match fs::symlink_metadata(&queued) {
                            Ok(_) => Ok(Vec::new()),
                            Err(e) => Err(context(e, "reading", &queued)),
                        };
                    }
                    Err(e) => return Err(context(e, "reading", &path)),
                };
                let j = journal::parse(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("step journal {id}: {e}"),
                    )
                })?;
                Ok(j.steps)
            })
            .await
        })
        .await
    }

    /// Removes a fully processed message and its step journal. The removal
    /// of `queue/<id>` is fsync'd before the journal is deleted, so a crash
    /// can never leave the message without its journal (which would repeat
    /// its steps); a journal left without its message is deleted at the
    /// next `open`. `NotFound` if the message is not in the queue.
    pub async fn remove(&self, id: &QueueId) -> io::Result<()> {
        let inner = self.inner.clone();
        let id = id.clone();
        run_to_completion(async move {
            let _one_at_a_time = inner.step_lock(&id).lock_owned().await;
            let queued = inner.paths.queue_file(&id);
            let removed = blocking(move || match fs::remove_file(&queued) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(context(e, "removing", &queued)),
            })
            .await?;
            if removed {
                inner.depth.fetch_sub(1, Ordering::AcqRel);
            }
            // Also when the message was already gone: an earlier remove may
            // have unlinked it and then failed its fsync.
            inner.queue_sync.sync().await?;
            let journal = inner.paths.journal(&id);
            blocking(move || match fs::remove_file(&journal) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(context(e, "removing", &journal)),
            })
            .await?;
            if removed {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no message {id} in the queue"),
                ))
            }
        })
        .await
    }

    /// Messages committed and not yet removed.
    pub fn depth(&self) -> usize {
        self.inner.depth.load(Ordering::Acquire)
    }

    /// Directory fsyncs run since `open` by the group-commit tasks (for
    /// commits, first step records and removals; recovery's own are not
    /// counted). With group commit this grows slower than the number of
    /// commits under concurrency.
    pub fn dir_syncs(&self) -> u64 {
        self.inner.dir_syncs.load(Ordering::Acquire)
    }

    /// What `open` found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.paths.root
    }
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.paths.root)
            .field("depth", &self.depth())
            .finish()
    }
}

impl Inner {
    fn step_lock(&self, id: &QueueId) -> Arc<Mutex<()>> {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(id.as_str());
        self.step_locks[(h % STEP_LOCKS as u64) as usize].clone()
    }

    #[cfg(test)]
    pub(crate) fn queue_syncer(&self) -> &DirSyncer {
        &self.queue_sync
    }
}

/// Appends one record to a journal and fsyncs it; returns whether the
/// journal was created (its directory entry then needs an fsync too). A
/// failed append is cut off again so that nothing is ever appended after
/// damaged bytes.
fn append_step(paths: &Paths, id: &QueueId, record: &[u8]) -> io::Result<bool> {
    let queued = paths.queue_file(id);
    if !queued
        .try_exists()
        .map_err(|e| context(e, "reading", &queued))?
    {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no message {id} in the queue"),
        ));
    }
    let path = paths.journal(id);
    let (file, created) = match OpenOptions::new().append(true).create_new(true).open(&path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let f = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| context(e, "opening", &path))?;
            (f, false)
        }
        Err(e) => return Err(context(e, "creating", &path)),
    };
    let before = file
        .metadata()
        .map_err(|e| context(e, "reading", &path))?
        .len();
    let mut data = Vec::with_capacity(journal::HEADER_LEN + record.len());
    if before == 0 {
        data.extend_from_slice(&journal::header());
    }
    data.extend_from_slice(record);
    if let Err(e) = (&file).write_all(&data).and_then(|()| file.sync_data()) {
        if let Err(undo) = file.set_len(before).and_then(|()| file.sync_data()) {
            tracing::error!(
                message = "could not cut a failed append off a step journal",
                queue_id = %id,
                error = %undo
            );
        }
        return Err(context(e, "appending to", &path));
    }
    Ok(created)
}

/// Runs blocking file system work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Runs `fut` in its own task and waits for it: if the caller's future is
/// dropped, the work still finishes, so no operation is left half done.
async fn run_to_completion<T, F>(fut: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(fut).await.map_err(io::Error::other)?
}
