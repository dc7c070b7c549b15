//! Writing a batch's bodies to the directory backend and making them
//! durable together.
//!
//! `ObjectStorage::put` fsyncs every file and its directory, and the disk
//! does not batch those flushes: about a thousand a second, whatever the
//! concurrency (measured on the benchmark machine: 812/s one at a time,
//! 902/s with 64 at once, 1,285/s with 16 at once and one directory fsync at
//! the end). So a batch writes every body first (staging file `{file}#{n}`,
//! then rename, as `put` does, on a few threads), then makes them all
//! durable at once: on Linux one `syncfs(2)` of the file system holding the
//! bucket (its descriptor is opened before the writes, so a writeback error
//! of any of them is reported), elsewhere an fsync of each file and then of
//! each distinct directory from the file up to the bucket. Only then are
//! the index rows committed, so a row never points at a body that a crash
//! could lose. `syncfs` also flushes whatever else is dirty on that file
//! system, so its cost depends on the neighbours (the bodies' directory is
//! best on a file system of its own).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Threads writing a batch's files.
const WRITE_THREADS: usize = 2;

/// Writes `objects` (file, bytes) under `bucket_dir` and makes them
/// durable. Blocking.
pub(crate) fn write_durably(bucket_dir: &Path, objects: &[(PathBuf, Bytes)]) -> Result<(), String> {
    if objects.is_empty() {
        return Ok(());
    }
    let sync_each = !cfg!(target_os = "linux");
    // Opened before the writes: `syncfs` reports the errors since then.
    let bucket = File::open(bucket_dir)
        .map_err(|e| format!("cannot open bucket directory {}: {e}", bucket_dir.display()))?;
    let chunk = objects.len().div_ceil(WRITE_THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = objects
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .try_for_each(|(file, bytes)| write_one(file, bytes, sync_each))
                })
            })
            .collect();
        // Every writer finishes (the scope joins them) before this returns.
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err("a body writer panicked".into()))
        })
    })?;
    sync(&bucket, bucket_dir, objects)
}

#[cfg(target_os = "linux")]
fn sync(bucket: &File, bucket_dir: &Path, _objects: &[(PathBuf, Bytes)]) -> Result<(), String> {
    rustix::fs::syncfs(bucket).map_err(|e| format!("syncfs of {}: {e}", bucket_dir.display()))
}

#[cfg(not(target_os = "linux"))]
fn sync(_bucket: &File, bucket_dir: &Path, objects: &[(PathBuf, Bytes)]) -> Result<(), String> {
    let mut dirs = std::collections::BTreeSet::new();
    for (file, _) in objects {
        let mut dir = file.parent();
        while let Some(d) = dir {
            if !dirs.insert(d.to_path_buf()) || d == bucket_dir || !d.starts_with(bucket_dir) {
                break;
            }
            dir = d.parent();
        }
    }
    for dir in dirs.iter().rev() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("fsync of directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Writes a staging file beside `file`, then renames it to `file`.
fn write_one(file: &Path, bytes: &[u8], sync_each: bool) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", file.display());
    let mut n = 1u32;
    let mut created = false;
    let (mut out, staging) = loop {
        let mut staging = file.as_os_str().to_owned();
        staging.push(format!("#{n}"));
        let staging = PathBuf::from(staging);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)
        {
            Ok(out) => break (out, staging),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == ErrorKind::NotFound && !created => {
                let parent = file.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(parent)
                    .map_err(|e| fail("cannot create directory for", e))?;
                created = true;
            }
            Err(e) => return Err(fail("cannot create", e)),
        }
    };
    let written = out
        .write_all(bytes)
        .and_then(|()| if sync_each { out.sync_all() } else { Ok(()) })
        .and_then(|()| {
            drop(out);
            std::fs::rename(&staging, file)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(fail("cannot write", e));
    }
    Ok(())
}
