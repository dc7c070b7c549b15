//! What `Spool::open` does before anything else touches the spool: take
//! the lock, create the directories, and bring the disk back to its
//! invariants after a crash. Blocking; it runs on the blocking pool.
//!
//! Every step is idempotent, so a crash during recovery is recovered by
//! the next `open`:
//! 1. every file in `incoming/` is deleted: nothing there was committed;
//! 2. every file in `queue/` is checked end to end (header, lengths, CRC,
//!    end marker); one that fails is renamed into `corrupt/` and logged;
//! 3. every journal in `steps/` is read: a torn last record is cut off; a
//!    corrupt journal goes to `corrupt/` with its message (the message
//!    first: a message without its journal would repeat its steps); a
//!    journal whose message is in `corrupt/` follows it there; a journal
//!    with no message at all is left from an interrupted `remove` and is
//!    deleted;
//! 4. the directories that changed are fsync'd.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::id::{QUEUE_ID_LEN, QueueId};
use crate::{Recovery, format, journal};

/// The directories of a spool.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub root: PathBuf,
    pub incoming: PathBuf,
    pub queue: PathBuf,
    pub steps: PathBuf,
    pub corrupt: PathBuf,
}

impl Paths {
    pub(crate) fn new(root: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            incoming: root.join("incoming"),
            queue: root.join("queue"),
            steps: root.join("steps"),
            corrupt: root.join("corrupt"),
        }
    }

    pub(crate) fn incoming_file(&self, id: &QueueId) -> PathBuf {
        self.incoming.join(id.as_str())
    }

    pub(crate) fn queue_file(&self, id: &QueueId) -> PathBuf {
        self.queue.join(id.as_str())
    }

    pub(crate) fn journal(&self, id: &QueueId) -> PathBuf {
        self.steps.join(id.as_str())
    }
}

/// What recovery hands to `Spool::open`.
pub(crate) struct Recovered {
    pub lock: File,
    pub ids: Vec<QueueId>,
    pub report: Recovery,
    /// Time of the newest id seen anywhere in the spool, in µs.
    pub newest_micros: u64,
}

pub(crate) fn recover(paths: &Paths) -> io::Result<Recovered> {
    create_dir_durably(&paths.root)?;
    let lock = take_lock(paths)?;
    for d in [&paths.incoming, &paths.queue, &paths.steps, &paths.corrupt] {
        create_dir_durably(d)?;
    }
    let mut report = Recovery::default();
    let mut newest = 0u64;
    let mut note = |name: &str| {
        if let Some(id) = name.get(..QUEUE_ID_LEN).and_then(QueueId::parse) {
            newest = newest.max(id.micros());
        }
    };

    // 1. Uncommitted messages.
    for (name, path) in entries(&paths.incoming)? {
        note(&name);
        match fs::remove_file(&path) {
            Ok(()) => report.temp_files_removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(context(e, "removing", &path)),
        }
    }
    if report.temp_files_removed > 0 {
        sync_dir(&paths.incoming)?;
        tracing::info!(
            message = "removed messages that were never committed",
            count = report.temp_files_removed
        );
    }

    // 2. Committed messages.
    let mut valid = BTreeSet::new();
    for (name, path) in entries(&paths.queue)? {
        note(&name);
        let reason = match QueueId::parse(&name) {
            None => Some("the file name is not a queue id".to_owned()),
            Some(id) => match check_queue_file(&path)? {
                Ok(()) => {
                    valid.insert(id);
                    None
                }
                Err(reason) => Some(reason),
            },
        };
        if let Some(reason) = reason {
            move_to_corrupt(paths, &name, &path, &reason, &mut report)?;
        }
    }

    // 3. Step journals.
    let mut journals_changed = false;
    for (name, path) in entries(&paths.steps)? {
        note(&name);
        let id = QueueId::parse(&name);
        match id.filter(|id| valid.contains(id)) {
            Some(id) => match check_journal(&path)? {
                JournalState::Whole => {}
                JournalState::Torn { valid_len, torn } => {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| context(e, "opening", &path))?;
                    f.set_len(valid_len)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| context(e, "truncating", &path))?;
                    tracing::warn!(
                        message = "cut a torn record off a step journal",
                        queue_id = %id,
                        torn_bytes = torn
                    );
                    report.torn_journals.push(id);
                }
                JournalState::Corrupt(reason) => {
                    let reason = format!("step journal: {reason}");
                    let message = paths.queue_file(&id);
                    move_to_corrupt(paths, id.as_str(), &message, &reason, &mut report)?;
                    valid.remove(&id);
                    move_to_corrupt(paths, &format!("{id}.steps"), &path, &reason, &mut report)?;
                    journals_changed = true;
                }
            },
            None => {
                if paths.corrupt.join(&name).exists() {
                    let reason = "its message is in corrupt/".to_owned();
                    move_to_corrupt(paths, &format!("{name}.steps"), &path, &reason, &mut report)?;
                } else {
                    fs::remove_file(&path).map_err(|e| context(e, "removing", &path))?;
                    report.orphan_journals_removed += 1;
                }
                journals_changed = true;
            }
        }
    }
    for (name, _) in entries(&paths.corrupt)? {
        note(&name);
    }

    // 4. Make the moves and removals durable.
    if !report.corrupt.is_empty() {
        sync_dir(&paths.corrupt)?;
        sync_dir(&paths.queue)?;
    }
    if journals_changed {
        sync_dir(&paths.steps)?;
    }
    if report.orphan_journals_removed > 0 {
        tracing::info!(
            message = "removed step journals of messages already removed",
            count = report.orphan_journals_removed
        );
    }
    Ok(Recovered {
        lock,
        ids: valid.into_iter().collect(),
        report,
        newest_micros: newest,
    })
}

/// One process at a time: a second `open` of the same directory, from this
/// process or another, fails instead of deleting the first one's files.
fn take_lock(paths: &Paths) -> io::Result<File> {
    let path = paths.root.join("lock");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| context(e, "opening", &path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "the spool {} is open in another process or task",
                paths.root.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(context(e, "locking", &path)),
    }
}

fn check_queue_file(path: &Path) -> io::Result<Result<(), String>> {
    let meta = fs::symlink_metadata(path).map_err(|e| context(e, "reading", path))?;
    if !meta.is_file() {
        return Ok(Err("not a regular file".to_owned()));
    }
    let f = File::open(path).map_err(|e| context(e, "opening", path))?;
    let r = format::verify(f, meta.len()).map_err(|e| context(e, "reading", path))?;
    Ok(r.map_err(|e| e.to_string()))
}

enum JournalState {
    Whole,
    Torn { valid_len: u64, torn: u64 },
    Corrupt(String),
}

fn check_journal(path: &Path) -> io::Result<JournalState> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| context(e, "reading", path))?;
    Ok(match journal::parse(&bytes) {
        Ok(j) if j.torn_bytes == 0 => JournalState::Whole,
        Ok(j) => JournalState::Torn {
            valid_len: j.valid_len,
            torn: j.torn_bytes,
        },
        Err(e) => JournalState::Corrupt(e.to_string()),
    })
}

/// Renames `from` to `corrupt/<name>` (or `<name>.1`, ... if taken) and
/// logs it. The caller fsyncs the directories.
fn move_to_corrupt(
    paths: &Paths,
    name: &str,
    from: &Path,
    reason: &str,
    report: &mut Recovery,
) -> io::Result<()> {
    let mut to = paths.corrupt.join(name);
    let mut n = 0u32;
    while to.exists() {
        n += 1;
        to = paths.corrupt.join(format!("{name}.{n}"));
    }
    fs::rename(from, &to).map_err(|e| context(e, "moving aside", from))?;
    tracing::error!(
        message = "corrupt spool file moved aside; it will not be processed",
        file = %from.display(),
        to = %to.display(),
        reason
    );
    report.corrupt.push(crate::CorruptFile {
        from: from.to_path_buf(),
        to,
        reason: reason.to_owned(),
    });
    Ok(())
}

/// The entries of a directory, by name; names that are not UTF-8 are kept
/// lossily (they never parse as ids).
fn entries(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| context(e, "listing", dir))? {
        let e = e.map_err(|e| context(e, "listing", dir))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

/// Creates `dir` (and its parents) if missing, and makes its entry in the
/// parent durable.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| context(e, "creating", dir))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| context(e, "fsyncing", dir))
}

pub(crate) fn context(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}
