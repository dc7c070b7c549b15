//! The SMTP (RFC 5321) and LMTP (RFC 2033) client: one connection, one
//! transaction, one outcome per recipient.
//!
//! Written on tokio and rustls directly rather than on mail-send 0.7: its
//! reader drops whatever follows the first reply in a read (LMTP sends one
//! reply per recipient after the final dot, often in one segment), it adds
//! an empty line to messages that already end with CRLF, and it has one
//! timeout for everything.
//!
//! Invariants:
//! - Nothing is pipelined: every command waits for its reply, so a reply
//!   always belongs to the command just sent.
//! - Bytes the peer sends after the STARTTLS reply and before the handshake
//!   are an injection attempt (CVE-2011-0411 style): the attempt is
//!   abandoned.
//! - Malformed replies, closed connections and timeouts never panic; they
//!   become [`SessionError::Temporary`] before any recipient is decided and
//!   [`RecipientOutcome::Deferred`] for undecided recipients afterwards.
//! - QUIT is sent whenever the connection is still usable.

use crate::{RecipientOutcome, Reply, SessionError};
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How the client identifies itself and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The name sent with EHLO, HELO or LHLO.
    pub helo_name: String,
    /// For the TCP (or Unix socket) connection and the TLS handshake.
    pub connect_timeout: Duration,
    /// For the greeting and for each command's reply.
    pub command_timeout: Duration,
    /// For sending the message and for each reply after the final dot.
    pub data_timeout: Duration,
    /// Trusted in addition to webpki-roots when a certificate is verified.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// Whether and how the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS must be offered and the certificate must verify (webpki
    /// roots and `extra_roots`) for the endpoint's host name; otherwise
    /// [`SessionError::Temporary`]. Postfix's `verify`/`secure`.
    Required,
    /// STARTTLS when offered, certificate not verified; plaintext
    /// otherwise. If the handshake fails, the attempt is repeated on a new
    /// plaintext connection. Postfix's `may`. Not used on Unix sockets.
    Opportunistic,
    /// TLS from the first byte (port 465), verified as for `Required`.
    Implicit,
    /// Never.
    Disabled,
}

/// The protocol spoken after the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// EHLO (HELO if refused); one reply to DATA for all recipients.
    Smtp,
    /// LHLO; one reply per accepted recipient after the final dot.
    Lmtp,
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp {
        /// The name used for SNI, certificate verification and reasons.
        host: String,
        addr: SocketAddr,
    },
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    /// `mx.example.com[192.0.2.1]:25`, or the socket path.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, addr } => write!(f, "{host}[{}]:{}", addr.ip(), addr.port()),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A user name and password for AUTH PLAIN or AUTH LOGIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One message for some recipients.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// The reverse path without angle brackets; "" is the null sender `<>`.
    pub mail_from: &'a str,
    /// Forward paths without angle brackets.
    pub recipients: &'a [String],
    /// The message, CRLF or LF lines. Dot-stuffing is done here.
    pub message: &'a [u8],
}

/// Delivers `tx` over one connection to `endpoint` and returns one outcome
/// per recipient, in the order of `tx.recipients`.
///
/// - RCPT: 2xx accepts the recipient, 4xx defers it, 5xx fails it. When no
///   recipient is accepted, no DATA is sent.
/// - SMTP: the reply to the final dot applies to every accepted recipient.
///   LMTP: one reply per accepted recipient, in RCPT order (RFC 2033 §4.2).
/// - A connection lost or a timeout after MAIL FROM defers every recipient
///   not yet decided (a recipient failed by a 5xx to RCPT stays failed).
/// - `SMTPUTF8` is sent when an envelope address is not ASCII; if the peer
///   does not offer it, the attempt fails permanently with 5.6.7 (as
///   Postfix does). `BODY=8BITMIME` is sent when the message has 8-bit
///   bytes and the peer offers it (otherwise the message goes as is, as
///   Postfix does). `SIZE=` is sent when offered, and a message larger
///   than the peer's SIZE fails permanently with 5.3.4.
///
/// AUTH, when `credentials` are given: PLAIN if offered, else LOGIN.
/// - If the peer offers neither, the attempt fails with
///   [`SessionError::Temporary`]. Postfix would send the mail without
///   authenticating; we don't, because credentials configured for a relay
///   mean the relay expects them, and the usual reason AUTH is missing is
///   transient (it is often only offered after STARTTLS, which may have
///   failed); sending anyway would turn that into 5xx relay-denied bounces.
/// - A refused AUTH (4xx or 5xx) is [`SessionError::Temporary`], like
///   Postfix's default `smtp_sasl_auth_soft_bounce = yes`: a wrong password
///   is an operator's mistake, not the sender's.
/// - Credentials are never sent in plaintext over TCP except to a loopback
///   address: use [`TlsPolicy::Required`] or [`TlsPolicy::Implicit`] for
///   remote relays (an active attacker can strip STARTTLS from
///   `Opportunistic`).
pub async fn deliver(
    settings: &ClientSettings,
    protocol: Protocol,
    endpoint: &Endpoint,
    tls: TlsPolicy,
    credentials: Option<&Credentials>,
    tx: &Transaction<'_>,
) -> Result<Vec<RecipientOutcome>, SessionError> {
    if tx.recipients.is_empty() {
        return Ok(Vec::new());
    }
    let tls = match (endpoint, tls) {
        (Endpoint::Unix(_), TlsPolicy::Required | TlsPolicy::Implicit) => {
            return Err(SessionError::Temporary(
                format!(
                    "{endpoint}: a TLS policy that verifies the certificate needs a host name, and a Unix socket has none"
                ),
                None,
            ));
        }
        (Endpoint::Unix(_), TlsPolicy::Opportunistic) => TlsPolicy::Disabled,
        (_, tls) => tls,
    };
    match attempt(settings, protocol, endpoint, tls, credentials, tx).await {
        Err(Attempt::HandshakeFailed(reason)) if tls == TlsPolicy::Opportunistic => {
            tracing::info!(%endpoint, %reason, "TLS handshake failed; retrying in plaintext");
            attempt(
                settings,
                protocol,
                endpoint,
                TlsPolicy::Disabled,
                credentials,
                tx,
            )
            .await
            .map_err(Attempt::into_session_error)
        }
        other => other.map_err(Attempt::into_session_error),
    }
}

/// Why an attempt ended early: a handshake failure may be retried in
/// plaintext under [`TlsPolicy::Opportunistic`].
enum Attempt {
    Session(SessionError),
    HandshakeFailed(String),
}

impl Attempt {
    fn into_session_error(self) -> SessionError {
        match self {
            Attempt::Session(error) => error,
            Attempt::HandshakeFailed(reason) => SessionError::Temporary(reason, None),
        }
    }
}

impl From<SessionError> for Attempt {
    fn from(error: SessionError) -> Self {
        Attempt::Session(error)
    }
}

async fn attempt(
    settings: &ClientSettings,
    protocol: Protocol,
    endpoint: &Endpoint,
    tls: TlsPolicy,
    credentials: Option<&Credentials>,
    tx: &Transaction<'_>,
) -> Result<Vec<RecipientOutcome>, Attempt> {
    let io = connect(settings, endpoint).await?;
    let mut conn = Conn::new(io, endpoint, settings);
    if tls == TlsPolicy::Implicit {
        conn.handshake(true).await.map_err(|reason| {
            // Implicit TLS is verified; there is nothing to fall back to.
            SessionError::Temporary(reason, None)
        })?;
    }
    let result = session(&mut conn, protocol, tls, credentials, tx).await;
    match result {
        Ok(outcomes) => {
            conn.quit().await;
            Ok(outcomes)
        }
        Err(Attempt::Session(error)) => {
            if !conn.broken {
                conn.quit().await;
            }
            Err(Attempt::Session(error))
        }
        Err(other) => Err(other),
    }
}

async fn connect(settings: &ClientSettings, endpoint: &Endpoint) -> Result<Box<dyn Io>, Attempt> {
    let timeout = settings.connect_timeout;
    let connected: std::io::Result<Box<dyn Io>> = match endpoint {
        Endpoint::Tcp { addr, .. } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(stream) => stream.map(|s| {
                    let _ = s.set_nodelay(true);
                    Box::new(s) as Box<dyn Io>
                }),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("timeout after {}", human(timeout)),
                )),
            }
        }
        #[cfg(unix)]
        Endpoint::Unix(path) => {
            match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path)).await {
                Ok(stream) => stream.map(|s| Box::new(s) as Box<dyn Io>),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("timeout after {}", human(timeout)),
                )),
            }
        }
        #[cfg(not(unix))]
        Endpoint::Unix(_) => Err(std::io::Error::other("Unix sockets are not supported here")),
    };
    connected.map_err(|e| {
        Attempt::Session(SessionError::Temporary(
            format!("connect to {endpoint}: {e}"),
            None,
        ))
    })
}

/// What the peer's EHLO or LHLO reply offers.
#[derive(Debug, Default)]
struct Extensions {
    starttls: bool,
    auth_plain: bool,
    auth_login: bool,
    any_auth: bool,
    eight_bit: bool,
    smtputf8: bool,
    /// `SIZE` offered; `Some(0)` means no fixed limit.
    size: Option<u64>,
}

impl Extensions {
    fn parse(reply: &RawReply) -> Extensions {
        let mut ext = Extensions::default();
        // The first line is the greeting's domain, not a keyword.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            // Old servers write "AUTH=LOGIN PLAIN".
            let (keyword, first) = match keyword.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (keyword, None),
            };
            let params: Vec<String> = first
                .into_iter()
                .chain(words.map(str::to_ascii_uppercase))
                .collect();
            match keyword.as_str() {
                "STARTTLS" => ext.starttls = true,
                "8BITMIME" => ext.eight_bit = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "SIZE" => {
                    ext.size = Some(
                        params
                            .first()
                            .and_then(|p| p.parse::<u64>().ok())
                            .unwrap_or(0),
                    )
                }
                "AUTH" => {
                    ext.any_auth = true;
                    for mechanism in &params {
                        match mechanism.as_str() {
                            "PLAIN" => ext.auth_plain = true,
                            "LOGIN" => ext.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

async fn session(
    conn: &mut Conn<'_>,
    protocol: Protocol,
    tls: TlsPolicy,
    credentials: Option<&Credentials>,
    tx: &Transaction<'_>,
) -> Result<Vec<RecipientOutcome>, Attempt> {
    let command_timeout = conn.settings.command_timeout;
    let greeting = conn
        .read_reply(command_timeout, "the greeting")
        .await
        .map_err(|f| f.session(conn))?;
    if !greeting.reply.is_positive() {
        return Err(conn.refused(&greeting.reply, "the greeting").into());
    }

    let mut ext = conn.hello(protocol).await?;

    match tls {
        TlsPolicy::Required | TlsPolicy::Opportunistic if !conn.tls => {
            if ext.starttls {
                let reply = conn
                    .command("STARTTLS", command_timeout, "STARTTLS")
                    .await?;
                if reply.is_positive() {
                    if !conn.buffer_is_empty() {
                        conn.broken = true;
                        return Err(SessionError::Temporary(
                            format!(
                                "{} sent data after its reply to STARTTLS (possible command injection)",
                                conn.peer
                            ),
                            None,
                        )
                        .into());
                    }
                    let verify = tls == TlsPolicy::Required;
                    if let Err(reason) = conn.handshake(verify).await {
                        conn.broken = true;
                        return Err(if verify {
                            Attempt::Session(SessionError::Temporary(reason, None))
                        } else {
                            Attempt::HandshakeFailed(reason)
                        });
                    }
                    ext = conn.hello(protocol).await?;
                } else if tls == TlsPolicy::Required {
                    let reason = format!(
                        "TLS is required, but {} refused STARTTLS: {reply}",
                        conn.peer
                    );
                    return Err(SessionError::Temporary(reason, Some(reply)).into());
                } else if reply.code == 421 {
                    return Err(conn.refused(&reply, "STARTTLS").into());
                }
                // Opportunistic and refused: go on in plaintext.
            } else if tls == TlsPolicy::Required {
                return Err(SessionError::Temporary(
                    format!("TLS is required, but was not offered by {}", conn.peer),
                    None,
                )
                .into());
            }
        }
        _ => {}
    }

    if let Some(credentials) = credentials {
        conn.authenticate(&ext, credentials).await?;
    }

    // MAIL FROM and its parameters.
    let needs_utf8 = !tx.mail_from.is_ascii() || tx.recipients.iter().any(|r| !r.is_ascii());
    let eight_bit = !tx.message.is_ascii();
    let (data, size) = stuff(tx.message);
    let mut mail = format!("MAIL FROM:<{}>", tx.mail_from);
    if let Some(limit) = ext.size {
        if limit > 0 && size > limit {
            return Err(SessionError::Permanent(
                format!(
                    "5.3.4 message size {size} exceeds the fixed maximum message size of {limit} bytes of {}",
                    conn.peer
                ),
                None,
            )
            .into());
        }
        mail.push_str(&format!(" SIZE={size}"));
    }
    if eight_bit && ext.eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if needs_utf8 {
        if !ext.smtputf8 {
            return Err(SessionError::Permanent(
                format!(
                    "5.6.7 SMTPUTF8 is required (non-ASCII address), but was not offered by {}",
                    conn.peer
                ),
                None,
            )
            .into());
        }
        mail.push_str(" SMTPUTF8");
    }
    let reply = conn.command(&mail, command_timeout, "MAIL FROM").await?;
    if !reply.is_positive() {
        return Err(conn.refused(&reply, "MAIL FROM").into());
    }

    // From here on, failures are per recipient.
    let mut outcomes: Vec<Option<RecipientOutcome>> = vec![None; tx.recipients.len()];
    let mut accepted: Vec<usize> = Vec::new();
    for (i, rcpt) in tx.recipients.iter().enumerate() {
        let reply = match conn
            .command_raw(&format!("RCPT TO:<{rcpt}>"), command_timeout, "RCPT TO")
            .await
        {
            Ok(reply) => reply,
            Err(failure) => {
                let reason = failure.reason(conn);
                return Ok(defer_rest(outcomes, &reason));
            }
        };
        if reply.is_positive() {
            accepted.push(i);
        } else {
            outcomes[i] = Some(conn.recipient_outcome(reply.clone(), "RCPT TO"));
            if reply.code == 421 {
                // The peer is closing the connection.
                conn.broken = true;
                let reason = format!("{} said: {reply} (in reply to RCPT TO)", conn.peer);
                return Ok(defer_rest(outcomes, &reason));
            }
        }
    }
    if accepted.is_empty() {
        return Ok(finish(outcomes));
    }

    let reply = match conn.command_raw("DATA", command_timeout, "DATA").await {
        Ok(reply) => reply,
        Err(failure) => {
            let reason = failure.reason(conn);
            return Ok(defer_rest(outcomes, &reason));
        }
    };
    if reply.code != 354 {
        if reply.is_positive() {
            // A success before the message was sent cannot mean delivered.
            conn.broken = true;
            let reason = format!(
                "{} answered DATA with {reply} instead of 354: protocol error",
                conn.peer
            );
            return Ok(defer_rest(outcomes, &reason));
        }
        for &i in &accepted {
            outcomes[i] = Some(conn.recipient_outcome(reply.clone(), "DATA"));
        }
        if reply.code == 421 {
            conn.broken = true;
        }
        return Ok(finish(outcomes));
    }

    let data_timeout = conn.settings.data_timeout;
    if let Err(failure) = conn.send_message(&data, data_timeout).await {
        let reason = failure.reason(conn);
        return Ok(defer_rest(outcomes, &reason));
    }
    let expected = match protocol {
        Protocol::Smtp => 1,
        Protocol::Lmtp => accepted.len(),
    };
    for n in 0..expected {
        let reply = match conn
            .read_reply(data_timeout, "end of data")
            .await
            .map(|r| r.reply)
        {
            Ok(reply) => reply,
            Err(failure) => {
                let reason = failure.reason(conn);
                return Ok(defer_rest(outcomes, &reason));
            }
        };
        match protocol {
            Protocol::Smtp => {
                for &i in &accepted {
                    outcomes[i] = Some(conn.recipient_outcome(reply.clone(), "end of data"));
                }
            }
            Protocol::Lmtp => {
                outcomes[accepted[n]] = Some(conn.recipient_outcome(reply, "end of data"));
            }
        }
    }
    Ok(finish(outcomes))
}

/// The outcomes once every recipient has one.
fn finish(outcomes: Vec<Option<RecipientOutcome>>) -> Vec<RecipientOutcome> {
    // Every path that calls this has decided each recipient; deferring is
    // the safe answer should one have been missed.
    defer_rest(outcomes, "no outcome recorded for this recipient")
}

/// Every recipient without an outcome (accepted at RCPT or not yet asked)
/// is deferred with `reason`.
fn defer_rest(outcomes: Vec<Option<RecipientOutcome>>, reason: &str) -> Vec<RecipientOutcome> {
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| RecipientOutcome::Deferred {
                reason: reason.to_string(),
                reply: None,
            })
        })
        .collect()
}

/// The byte stream under the session: TCP, a Unix socket, or TLS on either.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Limits on what the peer may send in one reply.
const MAX_LINE: usize = 4096;
/// Longest wait for the reply to QUIT and for closing the connection.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_LINES: usize = 256;

struct Conn<'s> {
    io: Option<Box<dyn Io>>,
    buf: Vec<u8>,
    /// How the peer is named in reasons, e.g. `mx.test[192.0.2.1]:25`.
    peer: String,
    host: Option<String>,
    loopback: bool,
    settings: &'s ClientSettings,
    tls: bool,
    /// TLS with a certificate verified for the host name.
    tls_verified: bool,
    /// The connection can't carry a QUIT any more.
    broken: bool,
}

/// A reply with its lines, for EHLO keywords.
struct RawReply {
    reply: Reply,
    lines: Vec<String>,
}

/// Why no reply came.
enum Failure {
    Timeout { after: Duration, waiting: String },
    Io(std::io::Error),
    Closed,
    Malformed(String),
}

impl Failure {
    fn reason(&self, conn: &mut Conn<'_>) -> String {
        conn.broken = true;
        match self {
            Failure::Timeout { after, waiting } => {
                format!(
                    "timeout after {} {waiting} from {}",
                    human(*after),
                    conn.peer
                )
            }
            Failure::Io(e) => format!("lost connection with {}: {e}", conn.peer),
            Failure::Closed => format!("{} closed the connection", conn.peer),
            Failure::Malformed(what) => format!("malformed reply from {}: {what}", conn.peer),
        }
    }

    fn session(&self, conn: &mut Conn<'_>) -> SessionError {
        SessionError::Temporary(self.reason(conn), None)
    }
}

impl<'s> Conn<'s> {
    fn new(io: Box<dyn Io>, endpoint: &Endpoint, settings: &'s ClientSettings) -> Conn<'s> {
        let (host, loopback) = match endpoint {
            Endpoint::Tcp { host, addr } => (Some(host.clone()), addr.ip().is_loopback()),
            Endpoint::Unix(_) => (None, true),
        };
        Conn {
            io: Some(io),
            buf: Vec::new(),
            peer: endpoint.to_string(),
            host,
            loopback,
            settings,
            tls: false,
            tls_verified: false,
            broken: false,
        }
    }

    fn buffer_is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn io(&mut self) -> std::io::Result<&mut Box<dyn Io>> {
        self.io
            .as_mut()
            .ok_or_else(|| std::io::Error::other("connection already closed"))
    }

    /// Reads one complete reply, within `timeout`.
    async fn read_reply(&mut self, timeout: Duration, waiting: &str) -> Result<RawReply, Failure> {
        match tokio::time::timeout(timeout, self.read_reply_inner()).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout {
                after: timeout,
                waiting: format!("waiting for the reply to {waiting}"),
            }),
        }
    }

    async fn read_reply_inner(&mut self) -> Result<RawReply, Failure> {
        let mut lines: Vec<(u16, bool, String)> = Vec::new();
        loop {
            let line = self.read_line().await?;
            let text = String::from_utf8_lossy(&line);
            let bytes = text.as_bytes();
            let code = match bytes.get(..3) {
                Some(digits) if digits.iter().all(u8::is_ascii_digit) => {
                    u16::from(digits[0] - b'0') * 100
                        + u16::from(digits[1] - b'0') * 10
                        + u16::from(digits[2] - b'0')
                }
                _ => return Err(Failure::Malformed(format!("{:?}", clip(&text)))),
            };
            if !(200..=599).contains(&code) {
                return Err(Failure::Malformed(format!("{:?}", clip(&text))));
            }
            let (last, rest) = match bytes.get(3) {
                None => (true, ""),
                Some(b' ') => (true, &text[4..]),
                Some(b'-') => (false, &text[4..]),
                Some(_) => return Err(Failure::Malformed(format!("{:?}", clip(&text)))),
            };
            if let Some((first, _, _)) = lines.first()
                && *first != code
            {
                return Err(Failure::Malformed(format!(
                    "reply code changed from {first} to {code} within one reply"
                )));
            }
            lines.push((code, last, rest.to_string()));
            if last {
                break;
            }
            if lines.len() >= MAX_LINES {
                return Err(Failure::Malformed(format!("more than {MAX_LINES} lines")));
            }
        }
        let code = lines[0].0;
        let texts: Vec<String> = lines.into_iter().map(|(_, _, t)| t).collect();
        Ok(RawReply {
            reply: parse_reply(code, &texts),
            lines: texts,
        })
    }

    /// One line without its CRLF (or LF).
    async fn read_line(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(Failure::Malformed(format!(
                    "a line longer than {MAX_LINE} bytes"
                )));
            }
            let mut chunk = [0u8; 4096];
            let io = self.io().map_err(Failure::Io)?;
            let n = io.read(&mut chunk).await.map_err(Failure::Io)?;
            if n == 0 {
                return Err(Failure::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let io = self.io()?;
        io.write_all(data).await?;
        io.flush().await
    }

    /// Sends `line` and waits for its reply; `what` names the command in
    /// reasons.
    async fn command_raw(
        &mut self,
        line: &str,
        timeout: Duration,
        what: &str,
    ) -> Result<Reply, Failure> {
        let mut data = Vec::with_capacity(line.len() + 2);
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(b"\r\n");
        match tokio::time::timeout(timeout, self.write(&data)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Failure::Io(e)),
            Err(_) => {
                return Err(Failure::Timeout {
                    after: timeout,
                    waiting: format!("sending {what}"),
                });
            }
        }
        self.read_reply(timeout, what).await.map(|r| r.reply)
    }

    /// A command before any recipient is decided: failures are session
    /// errors.
    async fn command(
        &mut self,
        line: &str,
        timeout: Duration,
        what: &str,
    ) -> Result<Reply, SessionError> {
        match self.command_raw(line, timeout, what).await {
            Ok(reply) => Ok(reply),
            Err(failure) => Err(failure.session(self)),
        }
    }

    /// EHLO (HELO if EHLO is refused with 5xx) or LHLO.
    async fn hello(&mut self, protocol: Protocol) -> Result<Extensions, SessionError> {
        let timeout = self.settings.command_timeout;
        let name = self.settings.helo_name.clone();
        let verb = match protocol {
            Protocol::Smtp => "EHLO",
            Protocol::Lmtp => "LHLO",
        };
        let line = format!("{verb} {name}\r\n");
        let raw = match tokio::time::timeout(timeout, self.write(line.as_bytes())).await {
            Ok(Ok(())) => self.read_reply(timeout, verb).await,
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Timeout {
                after: timeout,
                waiting: format!("sending {verb}"),
            }),
        }
        .map_err(|f| f.session(self))?;
        if raw.reply.is_positive() {
            return Ok(Extensions::parse(&raw));
        }
        if protocol == Protocol::Smtp && raw.reply.code >= 500 && raw.reply.code != 421 {
            let reply = self
                .command(&format!("HELO {name}"), timeout, "HELO")
                .await?;
            if reply.is_positive() {
                return Ok(Extensions::default());
            }
            return Err(self.refused(&reply, "HELO"));
        }
        Err(self.refused(&raw.reply, verb))
    }

    /// A refusal before any recipient was decided.
    fn refused(&mut self, reply: &Reply, what: &str) -> SessionError {
        if reply.code == 421 {
            self.broken = true;
        }
        let reason = format!("{} said: {reply} (in reply to {what})", self.peer);
        if reply.code >= 500 {
            SessionError::Permanent(reason, Some(reply.clone()))
        } else {
            SessionError::Temporary(reason, Some(reply.clone()))
        }
    }

    fn recipient_outcome(&self, reply: Reply, what: &str) -> RecipientOutcome {
        if reply.is_positive() {
            return RecipientOutcome::Delivered(reply);
        }
        let reason = format!("{} said: {reply} (in reply to {what})", self.peer);
        if reply.code >= 500 {
            RecipientOutcome::Failed {
                reason,
                reply: Some(reply),
            }
        } else {
            RecipientOutcome::Deferred {
                reason,
                reply: Some(reply),
            }
        }
    }

    /// Turns the connection into TLS; `verify` checks the certificate
    /// against webpki roots and `extra_roots` for the host name.
    async fn handshake(&mut self, verify: bool) -> Result<(), String> {
        let Some(host) = self.host.clone() else {
            return Err(format!("{}: TLS needs a host name", self.peer));
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{}: invalid TLS server name {host:?}: {e}", self.peer))?;
        let config = client_config(verify, &self.settings.extra_roots)
            .map_err(|e| format!("{}: TLS configuration: {e}", self.peer))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let io = self
            .io
            .take()
            .ok_or_else(|| format!("{}: connection already closed", self.peer))?;
        let timeout = self.settings.connect_timeout;
        match tokio::time::timeout(timeout, connector.connect(name, io)).await {
            Ok(Ok(stream)) => {
                self.io = Some(Box::new(stream));
                self.tls = true;
                self.tls_verified = verify;
                Ok(())
            }
            Ok(Err(e)) => {
                self.broken = true;
                Err(format!("TLS handshake with {} failed: {e}", self.peer))
            }
            Err(_) => {
                self.broken = true;
                Err(format!(
                    "timeout after {} during the TLS handshake with {}",
                    human(timeout),
                    self.peer
                ))
            }
        }
    }

    async fn authenticate(
        &mut self,
        ext: &Extensions,
        credentials: &Credentials,
    ) -> Result<(), SessionError> {
        let timeout = self.settings.command_timeout;
        // Opportunistic TLS accepts any certificate: whoever sits in the
        // middle could present one. Credentials need a verified peer.
        if !self.tls_verified && !self.loopback {
            return Err(SessionError::Temporary(
                format!(
                    "refusing to send credentials to {} without TLS and a verified certificate (use TLS Required or Implicit)",
                    self.peer
                ),
                None,
            ));
        }
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let reply = if ext.auth_plain {
            let mut token = Vec::new();
            token.push(0);
            token.extend_from_slice(credentials.username.as_bytes());
            token.push(0);
            token.extend_from_slice(credentials.password.as_bytes());
            self.command(&format!("AUTH PLAIN {}", b64(&token)), timeout, "AUTH")
                .await?
        } else if ext.auth_login {
            let mut reply = self.command("AUTH LOGIN", timeout, "AUTH").await?;
            for secret in [&credentials.username, &credentials.password] {
                if reply.code != 334 {
                    break;
                }
                reply = self
                    .command(&b64(secret.as_bytes()), timeout, "AUTH")
                    .await?;
            }
            reply
        } else if ext.any_auth {
            return Err(SessionError::Temporary(
                format!("{} offers AUTH, but neither PLAIN nor LOGIN", self.peer),
                None,
            ));
        } else {
            return Err(SessionError::Temporary(
                format!(
                    "credentials are configured, but {} does not offer AUTH",
                    self.peer
                ),
                None,
            ));
        };
        if reply.code == 235 || reply.is_positive() {
            return Ok(());
        }
        if reply.code == 334 {
            // A challenge we have no answer to: cancel the exchange.
            let _ = self.command("*", timeout, "AUTH").await;
        }
        if reply.code == 421 {
            self.broken = true;
        }
        Err(SessionError::Temporary(
            format!("authentication with {} failed: {reply}", self.peer),
            Some(reply),
        ))
    }

    /// Sends the message as prepared by `stuff`.
    async fn send_message(&mut self, data: &[u8], timeout: Duration) -> Result<(), Failure> {
        match tokio::time::timeout(timeout, self.write(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Timeout {
                after: timeout,
                waiting: "sending the message".into(),
            }),
        }
    }

    /// QUIT, waiting briefly for its reply; errors don't matter any more.
    /// A courtesy once every recipient is decided: bounded tightly, since
    /// the caller journals the outcomes only after it returns.
    async fn quit(&mut self) {
        let timeout = self.settings.command_timeout.min(QUIT_TIMEOUT);
        if !self.broken {
            let _ = self.command_raw("QUIT", timeout, "QUIT").await;
        }
        if let Some(mut io) = self.io.take() {
            let _ = tokio::time::timeout(timeout, io.shutdown()).await;
        }
    }
}

/// The reply's code, enhanced status (RFC 3463: class equal to the code's
/// first digit) and text. The status is removed from every line that
/// repeats it.
fn parse_reply(code: u16, lines: &[String]) -> Reply {
    let status = lines.first().and_then(|first| enhanced_status(code, first));
    let text = lines
        .iter()
        .map(|line| match &status {
            Some(status) => match line.strip_prefix(status.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim_start(),
                _ => line.as_str(),
            },
            None => line.as_str(),
        })
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Reply { code, status, text }
}

fn enhanced_status(code: u16, text: &str) -> Option<String> {
    let token = text.split(' ').next()?;
    let mut parts = token.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let class_ok = class.len() == 1 && class.as_bytes()[0] == b'0' + (code / 100) as u8;
    (class_ok && digits(subject, 3) && digits(detail, 3)).then(|| token.to_string())
}

/// CRLF line ends, a dot doubled at the start of a line (RFC 5321
/// §4.5.2), a final CRLF if missing, then ".\r\n"; and the message's size
/// with CRLF line ends, for SIZE= (RFC 1870).
fn stuff(message: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 5);
    let mut stuffed = 0u64;
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
            stuffed += 1;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        rest = next;
    }
    let size = out.len() as u64 - stuffed;
    out.extend_from_slice(b".\r\n");
    (out, size)
}

fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

/// `30 s`, or `250 ms` below a second.
fn human(d: Duration) -> String {
    if d.as_millis() >= 1000 && d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn client_config(
    verify: bool,
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra_roots {
            roots.add(cert.clone())?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(config)
}

/// Opportunistic TLS: any certificate is accepted (the handshake
/// signatures are still checked, so the session keys belong to whoever
/// holds the certificate's key).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_line_ends() {
        let (data, size) = stuff(b"a\n.b\r\n..c");
        assert_eq!(data, b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(size, b"a\r\n.b\r\n..c\r\n".len() as u64);
        assert_eq!(stuff(b"x\r\n").0, b"x\r\n.\r\n");
        assert_eq!(stuff(b"").0, b".\r\n");
        assert_eq!(stuff(b".\n").0, b"..\r\n.\r\n");
        // A bare CR inside a line stays; only LF ends lines.
        assert_eq!(stuff(b"a\rb\n").0, b"a\rb\r\n.\r\n");
    }

    #[test]
    fn replies() {
        let r = parse_reply(550, &["5.1.1 <x@y>: user unknown".into()]);
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.text, "<x@y>: user unknown");
        // Class must match the code.
        let r = parse_reply(250, &["5.1.1 odd".into()]);
        assert_eq!(r.status, None);
        assert_eq!(r.text, "5.1.1 odd");
        let r = parse_reply(451, &["4.3.0 one".into(), "4.3.0 two".into()]);
        assert_eq!(r.to_string(), "451 4.3.0 one two");
        let r = parse_reply(220, &["mx.test ESMTP".into()]);
        assert_eq!(r.status, None);
        assert_eq!(r.to_string(), "220 mx.test ESMTP");
    }

    #[test]
    fn extensions() {
        let raw = RawReply {
            reply: parse_reply(250, &[]),
            lines: vec![
                "mx.test".into(),
                "SIZE 1000".into(),
                "auth=login".into(),
                "AUTH PLAIN CRAM-MD5".into(),
                "STARTTLS".into(),
                "8BITMIME".into(),
            ],
        };
        let ext = Extensions::parse(&raw);
        assert!(ext.starttls && ext.auth_plain && ext.auth_login && ext.eight_bit);
        assert!(!ext.smtputf8);
        assert_eq!(ext.size, Some(1000));
    }

    #[test]
    fn durations() {
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_millis(1500)), "1500 ms");
    }
}
