//! Export: every message a query finds, to object storage, as
//! `{prefix}{archived_message_id}.eml` (the archived bytes, decrypted) and,
//! with metadata, `{prefix}{archived_message_id}.json` (the `Row`).
//!
//! Messages are read in pages (newest first, keyset pagination on
//! `(received_us, archived_message_id)`), so an export of millions of
//! messages holds one page in memory, and messages archived while it runs
//! do not shift the pages.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use postern_endpoints::ObjectStorage;

use crate::ArchiveError;
use crate::index::Value;
use crate::search::{self, SearchQuery};
use crate::store::{Archive, to_row};

/// Rows read per page.
const PAGE: usize = 500;

/// Where an export goes.
#[derive(Debug, Clone)]
pub struct ExportDestination {
    pub storage: ObjectStorage,
    pub bucket: String,
    /// Prepended to each exported object's name, e.g. `exports/2026-01/`.
    pub prefix: String,
}

impl Archive {
    /// Writes every message matching `query` (newest first, at most
    /// `query.max_results`) to `destination`; calls `progress(done,
    /// total)` after each message; stops before the next message once
    /// `cancel` is set. Returns how many messages were written.
    pub async fn export(
        &self,
        archive_id: &str,
        query: &SearchQuery,
        destination: &ExportDestination,
        include_metadata: bool,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
        cancel: &AtomicBool,
    ) -> Result<u64, ArchiveError> {
        let total = self
            .count_matching(archive_id, query)
            .await?
            .min(query.max_results as u64);
        let Some(base) = search::build(archive_id, query, self.is_postgres())? else {
            progress(0, 0);
            return Ok(0);
        };
        let mut done = 0u64;
        let mut cursor: Option<(i64, String)> = None;
        progress(0, total);
        while done < total {
            let mut sql = base.sql.clone();
            let mut values = base.values.clone();
            if let Some((received_us, id)) = &cursor {
                values.push(Value::Int(*received_us));
                let r = values.len();
                values.push(Value::Text(id.clone()));
                let i = values.len();
                sql.push_str(&format!(
                    " AND (received_us < ${r} OR (received_us = ${r} AND archived_message_id < ${i}))"
                ));
            }
            let want = PAGE.min((total - done) as usize) as i64;
            let page = self.db().select(&sql, &values, want).await?;
            if page.is_empty() {
                break;
            }
            for stored in &page {
                if cancel.load(Ordering::SeqCst) {
                    return Ok(done);
                }
                let body = self.body(stored).await?;
                let name = format!("{}{}", destination.prefix, stored.archived_message_id);
                destination
                    .storage
                    .put(&destination.bucket, &format!("{name}.eml"), body, None)
                    .await?;
                if include_metadata {
                    let json =
                        serde_json::to_vec_pretty(&to_row(stored)).expect("a Row serializes");
                    destination
                        .storage
                        .put(
                            &destination.bucket,
                            &format!("{name}.json"),
                            Bytes::from(json),
                            None,
                        )
                        .await?;
                }
                done += 1;
                progress(done, total);
            }
            let last = page.last().expect("not empty");
            cursor = Some((last.received_us, last.archived_message_id.clone()));
        }
        Ok(done)
    }
}
