//! A real clamd for the tests (this crate's, and the gateway's end-to-end
//! tests), started with a configuration and a signature database written
//! into a temporary directory. Nothing is downloaded: the only signature is
//! the test's own, for EICAR. Needs ClamAV: `apt-get install clamav-daemon`.
//!
//! The including test crate has the peers module at its root:
//! `#[path = "../../postern-delivery/tests/support/peers.rs"] mod peers;`.

#![allow(dead_code)]

use super::peers;
use base64::Engine as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The name the test's database gives the signature.
pub const SIGNATURE: &str = "Postern-Test-Eicar";

/// The name clamd reports for it (it marks signatures from unsigned
/// databases as UNOFFICIAL).
pub fn reported_signature() -> String {
    format!("{SIGNATURE}.UNOFFICIAL")
}

/// The EICAR test string, assembled at run time so that this source file
/// is not itself a test virus.
pub fn eicar() -> Vec<u8> {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}",
        "$EICAR-STANDARD-",
        "ANTIVIRUS-TEST-FILE!",
        "$H+H*",
    ]
    .concat()
    .into_bytes()
}

/// An email with a text part and `attachment` as a base64 attachment.
pub fn email_with_attachment(attachment: &[u8]) -> Vec<u8> {
    let mut encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    encoded.push_str("\r\n");
    format!(
        "From: a@example.net\r\n\
         To: b@example.org\r\n\
         Subject: report\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         The report is attached.\r\n\
         --b1\r\n\
         Content-Type: application/octet-stream; name=\"report.com\"\r\n\
         Content-Disposition: attachment; filename=\"report.com\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {encoded}\
         --b1--\r\n"
    )
    .into_bytes()
}

/// A running clamd; stopped (killed) when dropped.
pub struct RunningClamd {
    _peer: peers::Peer,
    /// Its TCP address on loopback.
    pub tcp: SocketAddr,
    /// Its unix socket.
    pub unix: PathBuf,
    _dir: tempfile::TempDir,
}

/// clamd in the foreground on a loopback port and a unix socket, with a
/// 1 MiB stream limit and the EICAR body signature as its only database.
/// Returns once it answers PING.
pub async fn start() -> RunningClamd {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = root.join("db");
    std::fs::create_dir(&db).unwrap();
    let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        db.join("postern-test.ndb"),
        format!("{SIGNATURE}:0:*:{hex}\n"),
    )
    .unwrap();
    let port = peers::free_port();
    let unix = root.join("clamd.sock");
    let config = root.join("clamd.conf");
    std::fs::write(
        &config,
        format!(
            "Foreground yes\n\
             LocalSocket {sock}\n\
             TCPSocket {port}\n\
             TCPAddr 127.0.0.1\n\
             DatabaseDirectory {db}\n\
             TemporaryDirectory {tmp}\n\
             LogFile {root}/clamd.log\n\
             PidFile {root}/clamd.pid\n\
             User root\n\
             StreamMaxLength 1M\n\
             SelfCheck 0\n\
             Bytecode no\n",
            sock = unix.display(),
            db = db.display(),
            tmp = root.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let config_arg = format!("--config-file={}", config.display());
    let mut peer = peers::spawn(
        "/usr/sbin/clamd",
        &[config_arg.as_str()],
        "apt-get install clamav-daemon",
    );
    wait_for_ping(&mut peer, &unix, &root.join("clamd.log")).await;
    RunningClamd {
        _peer: peer,
        tcp: SocketAddr::from(([127, 0, 0, 1], port)),
        unix,
        _dir: dir,
    }
}

/// One `zPING` on the unix socket: whether clamd answered PONG.
async fn ping(socket: &Path) -> bool {
    let attempt = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        stream.write_all(b"zPING\0").await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer.starts_with(b"PONG"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), attempt).await,
        Ok(Ok(true))
    )
}

/// Polls PING on the unix socket (clamd loads its databases before it
/// listens), for up to about 60 s.
async fn wait_for_ping(peer: &mut peers::Peer, socket: &Path, log: &Path) {
    for _ in 0..600 {
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!(
                "clamd exited ({status}) before answering; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if ping(socket).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "clamd never answered PING on {}; its log:\n{}",
        socket.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
