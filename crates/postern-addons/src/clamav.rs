//! [`Clamd`]: a scan through clamd's `INSTREAM` command, over TCP or a
//! unix socket.
//!
//! The exchange: `zINSTREAM\0`, then the message in chunks, each preceded
//! by its length as 4 bytes big-endian, then a zero length; clamd answers
//! one NUL-terminated line: `stream: OK`, `stream: <signature> FOUND`, or
//! `<reason> ERROR`. The whole raw message is sent: clamd decodes MIME
//! itself.
//!
//! One timeout bounds the whole exchange (connecting, sending, reading).
//! Connection refused or no such socket: [`AddonError::Unavailable`].
//! clamd's `INSTREAM size limit exceeded` (the message is larger than its
//! `StreamMaxLength`), any other `ERROR`, an unexpected reply or one longer
//! than [`MAX_REPLY_BYTES`]: [`AddonError::Protocol`].

use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::AddonError;

/// The longest reply accepted from clamd.
pub const MAX_REPLY_BYTES: usize = 4096;

/// The size of the chunks the message is sent in.
const CHUNK_BYTES: usize = 64 * 1024;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `TCPSocket` / `TCPAddr`.
    Tcp(SocketAddr),
    /// `LocalSocket`.
    Unix(PathBuf),
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Tcp(addr) => write!(f, "clamd at {addr}"),
            ClamdAddress::Unix(path) => write!(f, "clamd at {}", path.display()),
        }
    }
}

/// A clamd client. Cheap to clone; one connection per call.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: ClamdAddress,
    timeout: Duration,
}

/// clamd's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClamResult {
    pub infected: bool,
    /// The name of the signature that matched, when infected.
    pub signature: Option<String>,
}

/// A connection to clamd.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Clamd {
    /// A client for clamd at `address`; each call times out after
    /// `timeout`.
    pub fn new(address: ClamdAddress, timeout: Duration) -> Clamd {
        Clamd { address, timeout }
    }

    /// Scans the whole raw message.
    pub async fn scan(&self, message: &[u8]) -> Result<ClamResult, AddonError> {
        let reply = self.exchange("INSTREAM", Some(message)).await?;
        parse_scan_reply(&reply).map_err(|e| AddonError::Protocol(format!("{}: {e}", self.address)))
    }

    /// Checks that clamd answers (`PING` / `PONG`).
    pub async fn ping(&self) -> Result<(), AddonError> {
        let reply = self.exchange("PING", None).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(AddonError::Protocol(format!(
                "{}: PING answered {reply:?}",
                self.address
            )))
        }
    }

    /// Sends `command` (and `stream` as INSTREAM chunks), returns the reply
    /// without its terminator, all within the timeout.
    async fn exchange(&self, command: &str, stream: Option<&[u8]>) -> Result<String, AddonError> {
        let work = async {
            let mut connection = self.connect().await?;
            let sent = send(&mut connection, command, stream).await;
            // clamd answers and closes early when it refuses the stream
            // (size limit): its reply is worth more than our write error.
            let reply = read_reply(&mut connection).await;
            match (sent, reply) {
                (_, Ok(Some(reply))) => Ok(reply),
                (Err(e), _) => Err(AddonError::Unavailable(format!(
                    "{}: cannot send: {e}",
                    self.address
                ))),
                (Ok(()), Ok(None)) => Err(AddonError::Protocol(format!(
                    "{}: closed the connection without a reply",
                    self.address
                ))),
                (Ok(()), Err(ReplyError::TooLong)) => Err(AddonError::Protocol(format!(
                    "{}: the reply exceeds {MAX_REPLY_BYTES} bytes",
                    self.address
                ))),
                (Ok(()), Err(ReplyError::Io(e))) => Err(AddonError::Unavailable(format!(
                    "{}: cannot read the reply: {e}",
                    self.address
                ))),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(AddonError::Timeout(format!(
                    "{}: {command} took longer than {:?}",
                    self.address, self.timeout
                )))
            })
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, AddonError> {
        let connected: std::io::Result<Box<dyn Stream>> = match &self.address {
            ClamdAddress::Tcp(addr) => tokio::net::TcpStream::connect(addr)
                .await
                .map(|s| Box::new(s) as Box<dyn Stream>),
            #[cfg(unix)]
            ClamdAddress::Unix(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(|s| Box::new(s) as Box<dyn Stream>),
            #[cfg(not(unix))]
            ClamdAddress::Unix(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "unix sockets are not supported on this platform",
            )),
        };
        connected
            .map_err(|e| AddonError::Unavailable(format!("{}: cannot connect: {e}", self.address)))
    }
}

async fn send(
    connection: &mut Box<dyn Stream>,
    command: &str,
    stream: Option<&[u8]>,
) -> std::io::Result<()> {
    let mut first = Vec::with_capacity(command.len() + 2 + CHUNK_BYTES + 4);
    first.push(b'z');
    first.extend_from_slice(command.as_bytes());
    first.push(0);
    if let Some(data) = stream {
        for chunk in data.chunks(CHUNK_BYTES) {
            first.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            first.extend_from_slice(chunk);
            connection.write_all(&first).await?;
            first.clear();
        }
        first.extend_from_slice(&0u32.to_be_bytes());
    }
    connection.write_all(&first).await?;
    connection.flush().await
}

enum ReplyError {
    TooLong,
    Io(std::io::Error),
}

/// Reads up to the NUL terminator (or the end of the connection).
/// `Ok(None)`: nothing was sent.
async fn read_reply(connection: &mut Box<dyn Stream>) -> Result<Option<String>, ReplyError> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = match connection.read(&mut buf).await {
            Ok(n) => n,
            // A reply that arrived before a reset still counts.
            Err(_) if !reply.is_empty() => 0,
            Err(e) => return Err(ReplyError::Io(e)),
        };
        let end = buf[..n].iter().position(|&b| b == 0);
        reply.extend_from_slice(&buf[..end.unwrap_or(n)]);
        if reply.len() > MAX_REPLY_BYTES {
            return Err(ReplyError::TooLong);
        }
        if end.is_some() || n == 0 {
            break;
        }
    }
    if reply.is_empty() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&reply).trim().to_string()))
}

/// The verdict in an INSTREAM reply.
fn parse_scan_reply(reply: &str) -> Result<ClamResult, String> {
    if reply.contains("size limit exceeded") {
        return Err(format!(
            "the message is larger than clamd's StreamMaxLength ({reply})"
        ));
    }
    if let Some(rest) = reply.strip_suffix(" ERROR") {
        return Err(format!("clamd reports an error: {rest}"));
    }
    let Some(rest) = reply.strip_prefix("stream: ") else {
        return Err(format!("unexpected reply {reply:?}"));
    };
    if rest == "OK" {
        return Ok(ClamResult {
            infected: false,
            signature: None,
        });
    }
    match rest.strip_suffix(" FOUND") {
        Some(signature) if !signature.trim().is_empty() => Ok(ClamResult {
            infected: true,
            signature: Some(signature.trim().to_string()),
        }),
        _ => Err(format!("unexpected reply {reply:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            parse_scan_reply("stream: OK"),
            Ok(ClamResult {
                infected: false,
                signature: None
            })
        );
        assert_eq!(
            parse_scan_reply("stream: Win.Test.EICAR_HDB-1 FOUND"),
            Ok(ClamResult {
                infected: true,
                signature: Some("Win.Test.EICAR_HDB-1".into())
            })
        );
        let limit = parse_scan_reply("INSTREAM size limit exceeded. ERROR").unwrap_err();
        assert!(limit.contains("StreamMaxLength"), "{limit}");
        assert!(parse_scan_reply("stream: Can't allocate memory ERROR").is_err());
        assert!(parse_scan_reply("stream:  FOUND").is_err());
        assert!(parse_scan_reply("UNKNOWN COMMAND").is_err());
    }

    /// A fake clamd that answers `reply` to anything and closes.
    async fn fake(reply: Vec<u8>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 16];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(&reply).await;
        });
        addr
    }

    #[tokio::test]
    async fn long_and_missing_replies() {
        let timeout = Duration::from_secs(30);
        let addr = fake(vec![b'x'; MAX_REPLY_BYTES + 10]).await;
        let error = Clamd::new(ClamdAddress::Tcp(addr), timeout)
            .ping()
            .await
            .unwrap_err();
        assert!(
            matches!(&error, AddonError::Protocol(m) if m.contains("exceeds")),
            "{error}"
        );
        let addr = fake(Vec::new()).await;
        let error = Clamd::new(ClamdAddress::Tcp(addr), timeout)
            .ping()
            .await
            .unwrap_err();
        assert!(matches!(error, AddonError::Protocol(_)), "{error}");
        let addr = fake(b"PONG\0".to_vec()).await;
        Clamd::new(ClamdAddress::Tcp(addr), timeout)
            .ping()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn silent_clamd_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let error = Clamd::new(ClamdAddress::Tcp(addr), Duration::from_millis(200))
            .scan(b"Subject: x\r\n\r\nx\r\n")
            .await
            .unwrap_err();
        assert!(matches!(error, AddonError::Timeout(_)), "{error}");
        drop(listener);
    }
}
