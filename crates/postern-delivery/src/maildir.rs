//! Delivery into a Maildir (https://cr.yp.to/proto/maildir.html).
//!
//! The message is written to `tmp/` under a unique name, the file is
//! fsync'd, renamed into `new/`, and `new/` is fsync'd: once this returns,
//! the message survives a crash, and readers never see a partial file.
//! The message is stored as given (no line-end conversion).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Writes `message` into the Maildir `dir` (creating `cur`, `new` and
/// `tmp` if missing) and returns the file name in `new/`:
/// `<seconds>.M<micros>P<pid>Q<seq>.<hostname>`.
pub async fn deliver_maildir(dir: &Path, message: &[u8]) -> std::io::Result<String> {
    for sub in ["cur", "new", "tmp"] {
        tokio::fs::create_dir_all(dir.join(sub)).await?;
    }
    let name = unique_name();
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await?;
        file.write_all(message).await?;
        file.flush().await?;
        file.sync_all().await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    if let Err(e) = tokio::fs::rename(&tmp, &new).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    sync_dir(&dir.join("new")).await?;
    Ok(name)
}

fn unique_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        seq,
        hostname()
    )
}

/// The host name with `/` and `:` escaped as the Maildir convention asks.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let raw = raw.trim();
    let raw = if raw.is_empty() { "localhost" } else { raw };
    raw.replace('/', "\\057").replace(':', "\\072")
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_into_new() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let a = deliver_maildir(&maildir, b"Subject: a\r\n\r\nx\r\n")
            .await
            .unwrap();
        let b = deliver_maildir(&maildir, b"Subject: b\r\n\r\ny\r\n")
            .await
            .unwrap();
        assert_ne!(a, b);
        assert!(!a.contains('/') && !a.contains(':'), "{a}");
        assert_eq!(
            std::fs::read(maildir.join("new").join(&a)).unwrap(),
            b"Subject: a\r\n\r\nx\r\n"
        );
        assert!(maildir.join("cur").is_dir());
        assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        std::fs::write(&maildir, b"not a directory").unwrap();
        assert!(deliver_maildir(&maildir, b"x").await.is_err());
    }
}
