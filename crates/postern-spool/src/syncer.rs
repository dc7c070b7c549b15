//! Group-committed directory fsyncs.
//!
//! One task per directory owns the fsyncs of that directory. A caller that
//! has renamed (or created, or unlinked) an entry sends a request and waits.
//! The task takes every request queued so far, runs one fsync on the
//! blocking pool, and answers them all with its result. Requests that
//! arrive while an fsync runs wait for the next one: an fsync only covers
//! changes made before it started. So N sessions that finish DATA together
//! pay for one or two directory fsyncs, not N.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot};

/// An fsync's result as every waiter gets it (`io::Error` is not `Clone`).
type Shared = Result<(), (io::ErrorKind, String)>;

/// Most requests answered by one fsync; the rest wait for the next.
const MAX_BATCH: usize = 4096;

pub(crate) struct DirSyncer {
    tx: mpsc::UnboundedSender<oneshot::Sender<Shared>>,
    pending: Arc<AtomicUsize>,
    /// The last fsync failed: entries made since may not be durable.
    dirty: Arc<AtomicBool>,
    /// Held by tests to keep fsyncs from starting while requests pile up.
    #[cfg_attr(not(test), allow(dead_code))]
    gate: Arc<Mutex<()>>,
}

impl DirSyncer {
    /// Starts the task for `dir`; it ends when the syncer is dropped.
    /// `syncs` counts the fsyncs it runs.
    pub(crate) fn start(dir: PathBuf, handle: File, syncs: Arc<AtomicU64>) -> DirSyncer {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Mutex::new(()));
        let dirty = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(
            dir,
            Arc::new(handle),
            rx,
            syncs,
            pending.clone(),
            dirty.clone(),
            gate.clone(),
        ));
        DirSyncer {
            tx,
            pending,
            dirty,
            gate,
        }
    }

    /// Returns once an fsync of the directory that started after this call
    /// has completed.
    pub(crate) async fn sync(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(tx).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(io::Error::other("the directory fsync task has stopped"));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((kind, text))) => Err(io::Error::new(kind, text)),
            Err(_) => Err(io::Error::other("the directory fsync task has stopped")),
        }
    }

    /// Whether the last fsync failed. An entry made before it (a journal
    /// created then) needs the next fsync to be durable.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Requests sent and not yet answered.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn gate(&self) -> Arc<Mutex<()>> {
        self.gate.clone()
    }
}

async fn run(
    dir: PathBuf,
    handle: Arc<File>,
    mut rx: mpsc::UnboundedReceiver<oneshot::Sender<Shared>>,
    syncs: Arc<AtomicU64>,
    pending: Arc<AtomicUsize>,
    dirty: Arc<AtomicBool>,
    gate: Arc<Mutex<()>>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let _open = gate.lock().await;
        // Whatever arrived meanwhile was renamed before this fsync starts.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        let h = handle.clone();
        let result = match tokio::task::spawn_blocking(move || h.sync_all()).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        };
        syncs.fetch_add(1, Ordering::AcqRel);
        dirty.store(result.is_err(), Ordering::Release);
        let shared: Shared = match result {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(
                    message = "directory fsync failed",
                    dir = %dir.display(),
                    error = %e,
                    waiters = batch.len()
                );
                Err((e.kind(), format!("fsync of {}: {e}", dir.display())))
            }
        };
        pending.fetch_sub(batch.len(), Ordering::AcqRel);
        for waiter in batch.drain(..) {
            let _ = waiter.send(shared.clone());
        }
    }
}
