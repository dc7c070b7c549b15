//! A message being received: buffered writes to `incoming/<id>`, then the
//! commit (trailer, fsync, rename into `queue/`, group-committed fsync of
//! `queue/`) or the abort.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use crate::format;
use crate::id::QueueId;
use crate::recover::context;
use crate::spool::{Inner, blocking};

/// Bytes buffered before they are written to the file: memory per session
/// stays bounded however large the message.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// A message being received. Commit it, abort it, or drop it (which is an
/// abort: the temporary file is deleted in the background, or at the next
/// `open` if the process dies first).
pub struct Incoming {
    inner: Arc<Inner>,
    id: QueueId,
    /// `None` after a failed or cancelled write: the message cannot be
    /// committed any more.
    file: Option<File>,
    buf: Vec<u8>,
    hasher: crc32fast::Hasher,
    len: u64,
    /// Why the message cannot be committed, once a write has failed.
    broken: Option<(io::ErrorKind, String)>,
    /// Committed or aborted: `Drop` has nothing left to do.
    finished: bool,
}

impl Incoming {
    pub(crate) fn new(inner: Arc<Inner>, id: QueueId, file: File, meta: &[u8]) -> Incoming {
        let mut buf = Vec::with_capacity(WRITE_BUFFER.max(format::HEADER_LEN + meta.len()));
        format::encode_header(id.micros(), meta, &mut buf);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&buf);
        Incoming {
            inner,
            id,
            file: Some(file),
            buf,
            hasher,
            len: 0,
            broken: None,
            finished: false,
        }
    }

    /// The id the message will have once committed (for logs during DATA).
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Message bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Bytes held in memory, not yet written to the file.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether no message bytes were written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends message bytes. At most [`WRITE_BUFFER`] bytes are held in
    /// memory; beyond that they go to the file (on the blocking pool).
    /// After an error (a full disk, say) or a cancelled call the message
    /// can only be aborted. The spool sets no size limit: the caller
    /// enforces `MaxMessageSizeBytes` with [`Incoming::len`] and aborts.
    pub async fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.usable()?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        while !data.is_empty() {
            if self.buf.len() >= WRITE_BUFFER {
                self.flush().await?;
            }
            let n = (WRITE_BUFFER - self.buf.len().min(WRITE_BUFFER)).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }

    fn usable(&self) -> io::Result<()> {
        match (&self.broken, &self.file) {
            (Some((kind, text)), _) => Err(io::Error::new(*kind, text.clone())),
            (None, None) => Err(io::Error::other(format!(
                "message {} lost its file in a cancelled write",
                self.id
            ))),
            (None, Some(_)) => Ok(()),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        let Some(file) = self.file.take() else {
            return self.usable();
        };
        let buf = std::mem::take(&mut self.buf);
        let path = self.inner.paths.incoming_file(&self.id);
        let r = blocking(move || {
            (&file)
                .write_all(&buf)
                .map_err(|e| context(e, "writing", &path))?;
            Ok((file, buf))
        })
        .await;
        match r {
            Ok((file, mut buf)) => {
                buf.clear();
                self.file = Some(file);
                self.buf = buf;
                Ok(())
            }
            Err(e) => {
                self.broken = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Makes the message durable and returns its id: writes the rest and
    /// the trailer, fsyncs the file, renames it into `queue/`, and waits
    /// for an fsync of `queue/` that started after the rename (shared with
    /// every commit renamed before it: group commit). Only then may the
    /// caller send its 250.
    ///
    /// On error nothing is committed (a file renamed before a failed
    /// directory fsync is taken back).
    ///
    /// Cancel-safe: the commit runs in its own task. If this future is
    /// dropped before it returns the id, the message is removed again once
    /// committed, so a client that got no 250 can retry without creating a
    /// duplicate. (A crash in that instant may still deliver it: SMTP's
    /// at-least-once for an unacknowledged message.)
    pub async fn commit(mut self) -> io::Result<QueueId> {
        self.finished = true;
        let inner = self.inner.clone();
        let id = self.id.clone();
        if let Err(e) = self.usable() {
            remove_temp(&inner, &id, self.file.take()).await;
            return Err(e);
        }
        let Some(file) = self.file.take() else {
            return Err(io::Error::other("no file"));
        };
        let buf = std::mem::take(&mut self.buf);
        let hasher = std::mem::take(&mut self.hasher);
        let trailer = format::encode_trailer(self.len, hasher);
        drop(self);

        let (tx, rx) = oneshot::channel();
        tokio::spawn(commit_task(inner.clone(), id, file, buf, trailer, tx));
        let mut wait = Waiting {
            rx: Some(rx),
            inner,
        };
        let answer = match wait.rx.as_mut() {
            Some(rx) => rx.await,
            None => return Err(io::Error::other("no commit task")),
        };
        wait.rx = None;
        answer.unwrap_or_else(|_| Err(io::Error::other("the commit task ended without an answer")))
    }

    /// Abandons the message: deletes the temporary file.
    pub async fn abort(mut self) {
        self.finished = true;
        remove_temp(&self.inner, &self.id, self.file.take()).await;
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.id)
            .field("len", &self.len)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let file = self.file.take();
        let path = self.inner.paths.incoming_file(&self.id);
        let remove = move || {
            drop(file);
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(
                    message = "could not delete an abandoned message; the next open will",
                    file = %path.display(),
                    error = %e
                );
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Closes and deletes a message's temporary file.
async fn remove_temp(inner: &Inner, id: &QueueId, file: Option<File>) {
    let path = inner.paths.incoming_file(id);
    let r = blocking(move || {
        drop(file);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(context(e, "removing", &path)),
            _ => Ok(()),
        }
    })
    .await;
    if let Err(e) = r {
        tracing::warn!(
            message = "could not delete an aborted message; the next open will",
            queue_id = %id,
            error = %e
        );
    }
}

/// The caller's side of a commit. If it is dropped after the commit task
/// answered but before the caller saw the answer, the commit is undone.
struct Waiting {
    rx: Option<oneshot::Receiver<io::Result<QueueId>>>,
    inner: Arc<Inner>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take()
            && let Ok(Ok(id)) = rx.try_recv()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(undo_commit(self.inner.clone(), id));
        }
    }
}

async fn commit_task(
    inner: Arc<Inner>,
    id: QueueId,
    file: File,
    mut buf: Vec<u8>,
    trailer: [u8; format::TRAILER_LEN],
    reply: oneshot::Sender<io::Result<QueueId>>,
) {
    let tmp = inner.paths.incoming_file(&id);
    let dst = inner.paths.queue_file(&id);
    let written = blocking(move || {
        buf.extend_from_slice(&trailer);
        let r = (&file)
            .write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| context(e, "writing", &tmp))
            .and_then(|()| {
                drop(file);
                fs::rename(&tmp, &dst).map_err(|e| context(e, "renaming", &tmp))
            });
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    })
    .await;
    if let Err(e) = written {
        let _ = reply.send(Err(e));
        return;
    }
    if let Err(e) = inner.queue_sync.sync().await {
        // Whether the rename is on disk is unknown: take it back, so that
        // the client's retry after our 4xx is not a second copy.
        let dst = inner.paths.queue_file(&id);
        let _ = blocking(move || fs::remove_file(&dst)).await;
        let _ = reply.send(Err(e));
        return;
    }
    inner.depth.fetch_add(1, Ordering::AcqRel);
    // Let go of the spool before answering: a caller that drops its spool
    // after the commit and opens it again must not find it still held.
    let spool = Arc::downgrade(&inner);
    let queue_dir = inner.paths.queue.clone();
    drop(inner);
    if let Err(Ok(id)) = reply.send(Ok(id)) {
        match spool.upgrade() {
            Some(inner) => undo_commit(inner, id).await,
            None => {
                let dst = queue_dir.join(id.as_str());
                let r = blocking(move || {
                    fs::remove_file(&dst)?;
                    crate::recover::sync_dir(&queue_dir)
                })
                .await;
                log_undo(&id, r);
            }
        }
    }
}

/// Removes a message whose committer gave up waiting: no 250 was sent.
async fn undo_commit(inner: Arc<Inner>, id: QueueId) {
    inner.depth.fetch_sub(1, Ordering::AcqRel);
    let dst = inner.paths.queue_file(&id);
    let removed = blocking(move || fs::remove_file(&dst)).await;
    let synced = match removed {
        Ok(()) => inner.queue_sync.sync().await,
        Err(e) => Err(e),
    };
    log_undo(&id, synced);
}

fn log_undo(id: &QueueId, r: io::Result<()>) {
    match r {
        Ok(()) => tracing::warn!(
            message = "commit abandoned by its caller; the message was removed again",
            queue_id = %id
        ),
        Err(e) => tracing::error!(
            message = "commit abandoned by its caller; removing the message failed",
            queue_id = %id,
            error = %e
        ),
    }
}
