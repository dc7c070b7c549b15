//! A simple archive store on the local disk: each archived message is an
//! `.eml` file with a `.json` of its metadata beside it, under
//! `DataDir/archives/{ArchiveId}/{yyyy}/{mm}/{dd}/`. Both are written to a
//! temporary name, fsync'd and renamed, so a message is archived whole or
//! not at all, and archiving the same message again (after a crash) writes
//! the same files.

use serde::Serialize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct ArchiveStore {
    root: PathBuf,
}

/// Metadata kept with an archived message.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedMeta<'a> {
    #[serde(rename = "ArchivedMessageId")]
    pub archived_message_id: &'a str,
    #[serde(rename = "ReceivedTimestamp")]
    pub received_timestamp: f64,
    #[serde(rename = "IngressPointId")]
    pub ingress_point_id: &'a str,
    #[serde(rename = "SenderIpAddress")]
    pub sender_ip_address: &'a str,
    #[serde(rename = "Envelope")]
    pub envelope: EnvelopeMeta<'a>,
    #[serde(rename = "SourceArn")]
    pub source_arn: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvelopeMeta<'a> {
    #[serde(rename = "Helo")]
    pub helo: &'a str,
    #[serde(rename = "From")]
    pub from: &'a str,
    #[serde(rename = "To")]
    pub to: Vec<&'a str>,
}

impl ArchiveStore {
    pub fn new(data_dir: &Path) -> ArchiveStore {
        ArchiveStore {
            root: data_dir.join("archives"),
        }
    }

    /// The `.eml` path of a message in an archive.
    pub fn path(&self, archive_id: &str, message_id: &str, received: OffsetDateTime) -> PathBuf {
        self.root
            .join(archive_id)
            .join(format!("{:04}", received.year()))
            .join(format!("{:02}", received.month() as u8))
            .join(format!("{:02}", received.day()))
            .join(format!("{message_id}.eml"))
    }

    /// Stores a message (blocking: call from a blocking thread).
    pub fn store(
        &self,
        archive_id: &str,
        meta: &ArchivedMeta,
        message: &[u8],
    ) -> io::Result<PathBuf> {
        let received = OffsetDateTime::from_unix_timestamp(meta.received_timestamp as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let eml = self.path(archive_id, meta.archived_message_id, received);
        let dir = eml.parent().expect("archive path has a parent");
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        write_durably(&eml.with_extension("json"), &json)?;
        write_durably(&eml, message)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(eml)
    }
}

fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
