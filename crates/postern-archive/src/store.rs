//! [`Archive`]: the operations, over the index (`index.rs`) and the bodies
//! (object storage).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use postern_endpoints::ObjectStorage;
use postern_model::{Envelope, Metadata, Row, Timestamp};

use crate::index::{Db, NewRow, Stored};
use crate::search::{self, SearchQuery, Where, micros};
use crate::{ArchiveConfig, ArchiveError, EncryptionKey, bodies, crypt, ingest};

/// How many bodies a batch writes (or deletes) at once.
const BODY_CONCURRENCY: usize = 64;
/// How many rows a delete transaction removes.
const DELETE_BATCH: i64 = 1000;

/// One message to archive.
#[derive(Debug, Clone, Copy)]
pub struct StoreItem<'a> {
    pub archive_id: &'a str,
    pub archived_message_id: &'a str,
    pub received: time::OffsetDateTime,
    pub ingress_point_id: &'a str,
    pub traffic_policy_id: &'a str,
    pub rule_set_id: &'a str,
    pub sender_hostname: Option<&'a str>,
    pub sender_ip: &'a str,
    pub tls_protocol: Option<&'a str>,
    pub tls_cipher_suite: Option<&'a str>,
    pub envelope_helo: &'a str,
    pub envelope_from: &'a str,
    pub envelope_to: &'a [String],
    pub source_arn: &'a str,
    /// The message, exactly as it is to be archived.
    pub message: &'a [u8],
    /// Encrypt the body at rest with this key.
    pub encryption: Option<&'a EncryptionKey>,
}

/// What `get_message` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedMessage {
    pub archive_id: String,
    pub archived_message_id: String,
    pub metadata: Metadata,
    pub envelope: Envelope,
    /// The row `search` returns for this message.
    pub row: Row,
    /// The body's key in the archive's bucket.
    pub object_key: String,
    /// The message's size in bytes (before encryption).
    pub size: u64,
    /// The id of the key the body is encrypted with, if it is.
    pub key_id: Option<String>,
    /// mail-parser could not read it (see `get_content`).
    pub malformed: bool,
}

struct Inner {
    db: Db,
    bodies: ObjectStorage,
    bucket: String,
    prefix: String,
    keys: Vec<EncryptionKey>,
}

/// The archive. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("db", &self.inner.db)
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

fn check_id(what: &str, id: &str) -> Result<(), ArchiveError> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || id.contains(['/', '\\'])
        || id.chars().any(char::is_control)
    {
        return Err(ArchiveError::Invalid(format!(
            "invalid {what} {id:?}: must be non-empty, without '/', '\\' or control characters"
        )));
    }
    Ok(())
}

impl Archive {
    /// Connects to the index, creating or migrating its schema.
    pub async fn open(config: ArchiveConfig) -> Result<Archive, ArchiveError> {
        let db = Db::open(&config.index).await?;
        Ok(Archive {
            inner: Arc::new(Inner {
                db,
                bodies: config.bodies,
                bucket: config.bucket,
                prefix: config.prefix,
                keys: config.keys,
            }),
        })
    }

    /// The body's object key.
    fn body_key(&self, item: &StoreItem<'_>) -> String {
        let date = item.received.to_offset(time::UtcOffset::UTC).date();
        format!(
            "{}{}/{:04}/{:02}/{:02}/{}.eml",
            self.inner.prefix,
            item.archive_id,
            date.year(),
            u8::from(date.month()),
            date.day(),
            item.archived_message_id
        )
    }

    /// Whether `item` is already stored; an error if its id belongs to
    /// another archive.
    fn already_stored(item: &StoreItem<'_>, owner: Option<String>) -> Result<bool, ArchiveError> {
        match owner {
            None => Ok(false),
            Some(owner) if owner == item.archive_id => Ok(true),
            Some(owner) => Err(ArchiveError::Invalid(format!(
                "archived message id {} already belongs to archive {owner}",
                item.archived_message_id
            ))),
        }
    }

    /// The body object to write and the index row to insert.
    fn prepare(&self, item: &StoreItem<'_>) -> Result<(Bytes, NewRow), ArchiveError> {
        check_id("archive id", item.archive_id)?;
        check_id("archived message id", item.archived_message_id)?;
        let key = self.body_key(item);
        let object = match item.encryption {
            Some(k) => Bytes::from(crypt::seal(k, item.archived_message_id, item.message)?),
            None => Bytes::copy_from_slice(item.message),
        };
        let e = ingest::extract(item.message);
        let row = NewRow {
            stored: Stored {
                archived_message_id: item.archived_message_id.to_owned(),
                archive_id: item.archive_id.to_owned(),
                received_us: micros(item.received),
                ingress_point_id: item.ingress_point_id.to_owned(),
                traffic_policy_id: item.traffic_policy_id.to_owned(),
                rule_set_id: item.rule_set_id.to_owned(),
                sender_hostname: item.sender_hostname.map(str::to_owned),
                sender_ip: item.sender_ip.to_owned(),
                tls_protocol: item.tls_protocol.map(str::to_owned),
                tls_cipher_suite: item.tls_cipher_suite.map(str::to_owned),
                envelope_helo: item.envelope_helo.to_owned(),
                envelope_from: item.envelope_from.to_owned(),
                envelope_to: item.envelope_to.to_vec(),
                source_arn: item.source_arn.to_owned(),
                to: e.to,
                from: e.from,
                cc: e.cc,
                subject: e.subject,
                date: e.date,
                message_id: e.message_id,
                in_reply_to: e.in_reply_to,
                x_mailer: e.x_mailer,
                x_original_mailer: e.x_original_mailer,
                x_priority: e.x_priority,
                received_headers: e.received,
                has_attachments: e.has_attachments,
                malformed: e.malformed,
                size: item.message.len() as i64,
                body_key: key,
                key_id: item.encryption.map(|k| k.id().to_owned()),
            },
            words: e.words,
        };
        Ok((object, row))
    }

    /// Writes `object` as the body of `row` (fsync'd before it returns).
    async fn put_body(&self, object: Bytes, row: &NewRow) -> Result<(), ArchiveError> {
        self.inner
            .bodies
            .put(&self.inner.bucket, &row.stored.body_key, object, None)
            .await?;
        Ok(())
    }

    /// Writes a batch's bodies and makes them durable. The directory
    /// backend writes them all, then syncs once (`bodies.rs`); S3 puts
    /// them `BODY_CONCURRENCY` at a time.
    async fn put_bodies(
        &self,
        prepared: Vec<(Bytes, NewRow)>,
    ) -> Result<Vec<NewRow>, ArchiveError> {
        let keys: Vec<String> = prepared
            .iter()
            .map(|(_, row)| row.stored.body_key.clone())
            .collect();
        let (storage, bucket) = (self.inner.bodies.clone(), self.inner.bucket.clone());
        let files = tokio::task::spawn_blocking(move || {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            storage.directory_files(&bucket, &keys)
        })
        .await
        .map_err(|e| ArchiveError::Storage(format!("body writer: {e}")))??;
        let Some((bucket_dir, files)) = files else {
            let puts: Vec<_> = prepared
                .into_iter()
                .map(|(object, row)| async move {
                    self.put_body(object, &row).await?;
                    Ok::<NewRow, ArchiveError>(row)
                })
                .collect();
            return stream::iter(puts)
                .buffered(BODY_CONCURRENCY)
                .try_collect()
                .await;
        };
        let (objects, rows): (Vec<(PathBuf, Bytes)>, Vec<NewRow>) = prepared
            .into_iter()
            .zip(files)
            .map(|((object, row), file)| ((file, object), row))
            .unzip();
        tokio::task::spawn_blocking(move || bodies::write_durably(&bucket_dir, &objects))
            .await
            .map_err(|e| ArchiveError::Storage(format!("body writer: {e}")))?
            .map_err(ArchiveError::Storage)?;
        Ok(rows)
    }

    /// Stores a message durably: body first, then the index row, so an
    /// index row never points at a missing body. Storing the same
    /// `(archive_id, archived_message_id)` again changes nothing and
    /// succeeds.
    pub async fn store(&self, item: &StoreItem<'_>) -> Result<(), ArchiveError> {
        let owner = self.inner.db.owner(item.archived_message_id).await?;
        if Self::already_stored(item, owner)? {
            return Ok(());
        }
        let (object, row) = self.prepare(item)?;
        self.put_body(object, &row).await?;
        self.inner.db.insert(std::slice::from_ref(&row)).await
    }

    /// [`Archive::store`] for many messages: every body is written and
    /// made durable (on a directory, all together: `bodies.rs`), then every
    /// row is indexed in one transaction. This is how a busy gateway reaches
    /// thousands of messages a second (one flush and one index commit per
    /// batch instead of per message). On an error, bodies may have been
    /// written without their rows; storing the batch again is safe.
    pub async fn store_batch(&self, items: &[StoreItem<'_>]) -> Result<(), ArchiveError> {
        let ids: Vec<&str> = items.iter().map(|i| i.archived_message_id).collect();
        let owners = self.inner.db.owners(&ids).await?;
        let mut todo = Vec::with_capacity(items.len());
        let mut seen = std::collections::HashSet::new();
        for item in items {
            let owner = owners.get(item.archived_message_id).cloned();
            if !Self::already_stored(item, owner)? && seen.insert(item.archived_message_id) {
                todo.push(item);
            }
        }
        let prepared = todo
            .into_iter()
            .map(|item| self.prepare(item))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.put_bodies(prepared).await?;
        self.inner.db.insert(&rows).await
    }

    /// Messages of `archive_id` matching `query`, newest first, at most
    /// `query.max_results`.
    pub async fn search(
        &self,
        archive_id: &str,
        query: &SearchQuery,
    ) -> Result<Vec<Row>, ArchiveError> {
        Ok(self
            .select(archive_id, query)
            .await?
            .iter()
            .map(to_row)
            .collect())
    }

    pub(crate) async fn select(
        &self,
        archive_id: &str,
        query: &SearchQuery,
    ) -> Result<Vec<Stored>, ArchiveError> {
        let Some(w) = search::build(archive_id, query, self.inner.db.is_postgres())? else {
            return Ok(Vec::new());
        };
        if query.max_results == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(query.max_results).unwrap_or(i64::MAX);
        self.inner.db.select(&w.sql, &w.values, limit).await
    }

    /// How many messages `query` finds (ignoring `max_results`).
    pub(crate) async fn count_matching(
        &self,
        archive_id: &str,
        query: &SearchQuery,
    ) -> Result<u64, ArchiveError> {
        let Some(w) = search::build(archive_id, query, self.inner.db.is_postgres())? else {
            return Ok(0);
        };
        self.inner.db.count(&w.sql, &w.values).await
    }

    async fn stored(
        &self,
        archive_id: Option<&str>,
        archived_message_id: &str,
    ) -> Result<Stored, ArchiveError> {
        let not_found =
            || ArchiveError::NotFound(format!("no archived message {archived_message_id}"));
        let stored = self
            .inner
            .db
            .get(archived_message_id)
            .await?
            .ok_or_else(not_found)?;
        if archive_id.is_some_and(|a| a != stored.archive_id) {
            return Err(not_found());
        }
        Ok(stored)
    }

    /// A message's metadata and envelope. `NotFound` when there is no such
    /// message (in `archive_id`, when given).
    pub async fn get_message(
        &self,
        archive_id: Option<&str>,
        archived_message_id: &str,
    ) -> Result<ArchivedMessage, ArchiveError> {
        let s = self.stored(archive_id, archived_message_id).await?;
        Ok(ArchivedMessage {
            archive_id: s.archive_id.clone(),
            archived_message_id: s.archived_message_id.clone(),
            metadata: Metadata {
                timestamp: Some(timestamp(s.received_us)),
                ingress_point_id: Some(s.ingress_point_id.clone()),
                traffic_policy_id: Some(s.traffic_policy_id.clone()),
                rule_set_id: Some(s.rule_set_id.clone()),
                sender_hostname: s.sender_hostname.clone(),
                sender_ip_address: Some(s.sender_ip.clone()),
                tls_cipher_suite: s.tls_cipher_suite.clone(),
                tls_protocol: s.tls_protocol.clone(),
                source_arn: Some(s.source_arn.clone()),
                ..Metadata::default()
            },
            envelope: envelope(&s),
            row: to_row(&s),
            object_key: s.body_key.clone(),
            size: s.size.max(0) as u64,
            key_id: s.key_id.clone(),
            malformed: s.malformed,
        })
    }

    /// The message's text and HTML bodies; `MessageMalformed: true` when
    /// mail-parser cannot read it.
    pub async fn get_content(
        &self,
        archived_message_id: &str,
    ) -> Result<postern_model::MessageBody, ArchiveError> {
        let raw = self.raw(archived_message_id).await?;
        Ok(ingest::content(&raw))
    }

    /// The message's bytes exactly as stored (decrypted).
    pub async fn raw(&self, archived_message_id: &str) -> Result<Bytes, ArchiveError> {
        let s = self.stored(None, archived_message_id).await?;
        self.body(&s).await
    }

    pub(crate) async fn body(&self, s: &Stored) -> Result<Bytes, ArchiveError> {
        let object = self
            .inner
            .bodies
            .get(&self.inner.bucket, &s.body_key)
            .await?
            .ok_or_else(|| {
                ArchiveError::Storage(format!(
                    "the body of message {} ({}/{}) is missing",
                    s.archived_message_id, self.inner.bucket, s.body_key
                ))
            })?;
        match &s.key_id {
            None => Ok(object),
            Some(key_id) => Ok(Bytes::from(crypt::open(
                &self.inner.keys,
                key_id,
                &s.archived_message_id,
                &object,
            )?)),
        }
    }

    /// Deletes the messages selected by `w`: index rows, then bodies, in
    /// batches.
    async fn delete_where(&self, w: &Where) -> Result<u64, ArchiveError> {
        let mut total = 0u64;
        loop {
            let keys = self
                .inner
                .db
                .delete_some(&w.sql, &w.values, DELETE_BATCH)
                .await?;
            if keys.is_empty() {
                return Ok(total);
            }
            total += keys.len() as u64;
            let deletes: Vec<_> = keys
                .iter()
                .map(|key| self.inner.bodies.delete(&self.inner.bucket, key))
                .collect();
            stream::iter(deletes)
                .buffer_unordered(BODY_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
        }
    }

    /// Deletes the messages of `archive_id` received before `cutoff` (index
    /// rows, then bodies). Returns how many.
    pub async fn expire(
        &self,
        archive_id: &str,
        cutoff: time::OffsetDateTime,
    ) -> Result<u64, ArchiveError> {
        self.delete_where(&Where::before(archive_id, cutoff)).await
    }

    /// Deletes every message of `archive_id`. Returns how many.
    pub async fn purge(&self, archive_id: &str) -> Result<u64, ArchiveError> {
        self.delete_where(&Where::archive(archive_id)).await
    }

    /// How many messages `archive_id` holds.
    pub async fn count(&self, archive_id: &str) -> Result<u64, ArchiveError> {
        let w = Where::archive(archive_id);
        self.inner.db.count(&w.sql, &w.values).await
    }

    /// The index's size on disk in bytes (for the benchmark and metrics).
    pub async fn index_size_bytes(&self) -> Result<u64, ArchiveError> {
        self.inner.db.size_bytes().await
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    pub(crate) fn is_postgres(&self) -> bool {
        self.inner.db.is_postgres()
    }
}

fn timestamp(received_us: i64) -> Timestamp {
    Timestamp(received_us as f64 / 1e6)
}

fn envelope(s: &Stored) -> Envelope {
    Envelope {
        helo: Some(s.envelope_helo.clone()),
        from: Some(s.envelope_from.clone()),
        to: Some(s.envelope_to.clone()),
    }
}

pub(crate) fn to_row(s: &Stored) -> Row {
    Row {
        archived_message_id: Some(s.archived_message_id.clone()),
        received_timestamp: Some(timestamp(s.received_us)),
        date: s.date.clone(),
        to: s.to.clone(),
        from: s.from.clone(),
        cc: s.cc.clone(),
        subject: s.subject.clone(),
        message_id: s.message_id.clone(),
        has_attachments: Some(s.has_attachments),
        received_headers: Some(s.received_headers.clone()),
        in_reply_to: s.in_reply_to.clone(),
        x_mailer: s.x_mailer.clone(),
        x_original_mailer: s.x_original_mailer.clone(),
        x_priority: s.x_priority.clone(),
        ingress_point_id: Some(s.ingress_point_id.clone()),
        sender_hostname: s.sender_hostname.clone(),
        sender_ip_address: Some(s.sender_ip.clone()),
        envelope: Some(envelope(s)),
        source_arn: Some(s.source_arn.clone()),
    }
}
