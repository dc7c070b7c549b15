//! One ESMTP session (RFC 5321), from greeting to QUIT.
//!
//! Commands are parsed by smtp-proto's `RequestReceiver`; DATA by its
//! `DataReceiver`, which ends a message only at CRLF.CRLF (a bare LF or CR
//! before the dot does not end it: no SMTP smuggling); BDAT by its
//! `BdatReceiver`. Replies are queued and written when the client's input is
//! used up, which is what PIPELINING (RFC 2920) needs. A message streams into
//! the store as it arrives and is committed (fsync'd) before the 250.
//!
//! The traffic policy decides each RCPT. The size limit (the traffic policy's
//! MaxMessageSizeBytes, or the configured default) is checked at MAIL's
//! SIZE= and while the data arrives.

use crate::limits::Limits;
use crate::reply::{self, Reply};
use crate::store::{Incoming, IngressRef, Recipient, SessionMeta, Store, TlsMeta};
use crate::stream::Conn;
use postern_engine::{
    ClientCertificate, CompiledPolicy, Envelope, PolicyReason, TlsProtocol, Verdicts,
};
use postern_model::{AcceptAction, IngressPointType};
use smtp_proto::request::receiver::{
    BdatReceiver, DataReceiver, DummyDataReceiver, RequestReceiver,
};
use smtp_proto::{Error as ProtoError, Request};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// What a session needs to know about its ingress point and the gateway.
pub struct SessionConfig {
    /// The name this server gives in its greeting and Received headers.
    pub hostname: String,
    pub ingress: IngressRef,
    pub kind: IngressPointType,
    pub policy: Arc<CompiledPolicy>,
    /// Offered with STARTTLS when the session is not yet encrypted.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
    /// For AUTH ingress points: the password clients must give.
    pub smtp_password: Option<String>,
    /// Failed AUTH attempts per client address, shared by all sessions.
    pub throttle: Arc<crate::limits::AuthThrottle>,
    /// Connections start with a PROXY protocol header (the listener reads it).
    pub proxy_protocol: bool,
    pub config_version: u64,
    /// Runs the add-ons the traffic policy reads; None: the policy reads
    /// none (a policy that does is answered 451 4.7.1).
    pub analyzer: Option<Arc<dyn crate::analyzer::Analyzer>>,
    /// Closed (UpdateIngressPoint StatusToUpdate CLOSED): every connection
    /// is answered 421 and closed.
    pub closed: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: IpAddr,
    pub port: u16,
}

struct Transaction {
    mail_from: String,
    declared_size: Option<u64>,
    body: Option<String>,
    smtputf8: bool,
    ret: Option<String>,
    envid: Option<String>,
    recipients: Vec<Recipient>,
    /// Add-on results the traffic policy reads, fetched at the first RCPT.
    verdicts: Option<Verdicts>,
}

enum Phase<I> {
    Command,
    Data {
        receiver: DataReceiver,
        incoming: Option<I>,
        size: u64,
    },
    /// Reading the rest of a message that will be refused.
    Discard {
        receiver: DummyDataReceiver,
        reply: Reply,
        /// The reply counts as a protocol error (towards MaxErrors).
        error: bool,
    },
    Bdat {
        receiver: BdatReceiver,
    },
    /// AUTH LOGIN waiting for the user name, then the password.
    AuthLogin {
        user: Option<String>,
    },
}

/// Why the session ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Quit,
    ClientClosed,
    Timeout,
    TooManyErrors,
    Shutdown,
    IoError,
}

pub struct Session<T, S: Store> {
    conn: Conn<T>,
    peer: Peer,
    config: Arc<SessionConfig>,
    store: Arc<S>,
    id: String,
    tls_wrapped: bool,
    helo: Option<String>,
    esmtp: bool,
    authenticated: Option<String>,
    auth_failures: usize,
    /// The verified client certificate's attributes (MTLS).
    client_certificate: Option<ClientCertificate>,
    transaction: Option<Transaction>,
    /// The message being received with BDAT, kept across chunks.
    bdat: Option<(Option<S::Incoming>, u64, bool)>,
    phase: Phase<S::Incoming>,
    receiver: RequestReceiver,
    out: Vec<u8>,
    errors: usize,
    chunk: Vec<u8>,
    /// Discarding the rest of a command line over the length limit; its one
    /// reply (500 5.5.2) is sent when the line ends.
    skip_line: bool,
    close: Option<End>,
}

const READ_BUFFER: usize = 16 * 1024;

impl<T: AsyncRead + AsyncWrite + Unpin + Send, S: Store> Session<T, S> {
    pub fn new(
        conn: Conn<T>,
        peer: Peer,
        config: Arc<SessionConfig>,
        store: Arc<S>,
        id: String,
    ) -> Self {
        let tls_wrapped = conn.is_tls();
        let client_certificate = peer_certificate(&conn);
        Session {
            conn,
            peer,
            config,
            store,
            id,
            tls_wrapped,
            helo: None,
            esmtp: false,
            authenticated: None,
            auth_failures: 0,
            client_certificate,
            transaction: None,
            bdat: None,
            phase: Phase::Command,
            receiver: RequestReceiver::default(),
            out: Vec::new(),
            errors: 0,
            chunk: Vec::new(),
            skip_line: false,
            close: None,
        }
    }

    /// Runs the session to its end. `shutdown` turning true asks it to end
    /// at the next point where no transaction is open.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> End {
        let started = tokio::time::Instant::now();
        let greeting = Reply::plain(220, format!("{} ESMTP Postern", self.config.hostname));
        greeting.write_to(&mut self.out);
        if self.flush().await.is_err() {
            return End::IoError;
        }
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            if *shutdown.borrow() && self.idle() {
                self.send(Reply::new(
                    421,
                    (4, 3, 2),
                    "Service shutting down, closing connection",
                ));
                let _ = self.flush().await;
                self.abort_message().await;
                return End::Shutdown;
            }
            let timeout = match self.phase {
                Phase::Command | Phase::AuthLogin { .. } => self.config.limits.command_timeout,
                _ => self.config.limits.data_timeout,
            };
            let left = self
                .config
                .limits
                .session_timeout
                .saturating_sub(started.elapsed());
            let read = tokio::select! {
                read = tokio::time::timeout(timeout.min(left), self.conn.read(&mut buf)) => read,
                _ = shutdown.changed(), if !*shutdown.borrow() => continue,
            };
            let n = match read {
                Err(_) => {
                    self.send(Reply::new(421, (4, 4, 2), "Timeout, closing connection"));
                    let _ = self.flush().await;
                    self.abort_message().await;
                    return End::Timeout;
                }
                Ok(Err(_)) => {
                    self.abort_message().await;
                    return End::IoError;
                }
                Ok(Ok(0)) => {
                    self.abort_message().await;
                    return End::ClientClosed;
                }
                Ok(Ok(n)) => n,
            };
            let input = buf[..n].to_vec();
            let starttls = self.ingest(&input).await;
            if self.flush().await.is_err() {
                self.abort_message().await;
                return End::IoError;
            }
            if let Some(end) = self.close {
                self.abort_message().await;
                let _ = self.conn.shutdown().await;
                return end;
            }
            if starttls && self.start_tls().await.is_err() {
                return End::IoError;
            }
        }
    }

    /// No transaction open: a good moment to close.
    fn idle(&self) -> bool {
        self.transaction.is_none() && self.bdat.is_none() && matches!(self.phase, Phase::Command)
    }

    fn send(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    /// Writes the queued replies. A client that does not read them within
    /// the command timeout loses its session: it may not hold a slot by
    /// never reading.
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let timeout = self.config.limits.command_timeout;
            let write = async {
                self.conn.write_all(&self.out).await?;
                self.conn.flush().await
            };
            tokio::time::timeout(timeout, write).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "client does not read")
            })??;
            self.out.clear();
        }
        Ok(())
    }

    fn error(&mut self, reply: Reply) {
        self.send(reply);
        self.errors += 1;
        if self.errors >= self.config.limits.max_errors {
            self.send(Reply::new(
                421,
                (4, 7, 0),
                "Too many errors, closing connection",
            ));
            self.close = Some(End::TooManyErrors);
        }
    }

    /// Handles every complete command or data in `input`. Returns true when
    /// the client asked for STARTTLS (the rest of the input is discarded: a
    /// client may not pipeline past STARTTLS, RFC 3207).
    async fn ingest(&mut self, input: &[u8]) -> bool {
        let mut bytes = input.iter();
        loop {
            if self.close.is_some() {
                return false;
            }
            match &mut self.phase {
                Phase::Command => {
                    // A line over the limit gets one reply, whether it came
                    // in one read or several, and the line is skipped whole.
                    let rest = bytes.as_slice();
                    let newline = rest.iter().position(|b| *b == b'\n');
                    let too_long = self.skip_line
                        || self.receiver.buf().len() + newline.map(|p| p + 1).unwrap_or(rest.len())
                            > self.config.limits.line_limit();
                    if too_long {
                        self.receiver = RequestReceiver::default();
                        match newline {
                            Some(p) => {
                                bytes = rest[p + 1..].iter();
                                self.skip_line = false;
                                self.error(Reply::new(500, (5, 5, 2), "Line too long"));
                                continue;
                            }
                            None => {
                                self.skip_line = true;
                                return false;
                            }
                        }
                    }
                    // Two lines the codec reads differently from the RFCs.
                    if self.receiver.buf().is_empty()
                        && let Some(p) = newline
                    {
                        let line = String::from_utf8_lossy(&rest[..p])
                            .trim_end()
                            .to_ascii_lowercase();
                        // RFC 5321 4.5.1: postmaster without a domain is a
                        // recipient every server must accept.
                        if line == "rcpt to:<postmaster>" {
                            bytes = rest[p + 1..].iter();
                            self.rcpt(smtp_proto::RcptTo {
                                address: "postmaster".to_string(),
                                orcpt: None,
                                rrvs: 0,
                                flags: 0,
                            })
                            .await;
                            continue;
                        }
                        // RFC 3207: STARTTLS takes no parameter.
                        if line.starts_with("starttls ")
                            && !line["starttls ".len()..].trim().is_empty()
                        {
                            bytes = rest[p + 1..].iter();
                            self.error(reply::syntax("Syntax: STARTTLS (no parameters)"));
                            continue;
                        }
                    }
                    let request = match self.receiver.ingest(&mut bytes) {
                        Ok(request) => request.into_owned(),
                        Err(ProtoError::NeedsMoreData { .. }) => return false,
                        Err(e) => {
                            self.protocol_error(e);
                            continue;
                        }
                    };
                    if self.command(request).await {
                        return true;
                    }
                }
                Phase::AuthLogin { .. } => {
                    // One base64 line.
                    let rest = bytes.as_slice();
                    let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                        self.chunk.extend_from_slice(rest);
                        if self.chunk.len() > self.config.limits.line_limit() {
                            // Skipped to its end, then refused (Phase::Command).
                            self.phase = Phase::Command;
                            self.chunk.clear();
                            self.skip_line = true;
                        }
                        return false;
                    };
                    self.chunk.extend_from_slice(&rest[..end]);
                    bytes = rest[end + 1..].iter();
                    let line = String::from_utf8_lossy(&self.chunk).trim().to_string();
                    self.chunk.clear();
                    self.auth_login_line(&line).await;
                }
                Phase::Data { receiver, size, .. } => {
                    let done = receiver.ingest(&mut bytes, &mut self.chunk);
                    *size += self.chunk.len() as u64;
                    let size = *size;
                    let max = self.max_size();
                    if size > max {
                        // Over the limit: read the rest, then refuse.
                        let dummy = match &self.phase {
                            Phase::Data { receiver, .. } => DummyDataReceiver::new_data(receiver),
                            _ => unreachable!(),
                        };
                        self.chunk.clear();
                        self.abort_message().await;
                        let refusal = Reply::new(
                            552,
                            (5, 3, 4),
                            format!("Message exceeds the maximum size of {max} bytes"),
                        );
                        metrics::counter!("postern_smtp_messages_rejected_total", "ingress_point" => self.config.ingress.name.clone(), "reason" => "size").increment(1);
                        if done {
                            self.phase = Phase::Command;
                            self.send(refusal);
                            self.transaction = None;
                        } else {
                            self.phase = Phase::Discard {
                                receiver: dummy,
                                reply: refusal,
                                error: false,
                            };
                        }
                        continue;
                    }
                    if !self.chunk.is_empty() {
                        let chunk = std::mem::take(&mut self.chunk);
                        let failed = match &mut self.phase {
                            Phase::Data {
                                incoming: Some(incoming),
                                ..
                            } => incoming.write(&chunk).await.is_err(),
                            _ => false,
                        };
                        self.chunk = chunk;
                        self.chunk.clear();
                        if failed {
                            self.local_failure("writing to the spool").await;
                            // Keep reading the data so the session stays in sync.
                            continue;
                        }
                    }
                    if done {
                        let Phase::Data { incoming, size, .. } =
                            std::mem::replace(&mut self.phase, Phase::Command)
                        else {
                            unreachable!()
                        };
                        self.finish_message(incoming, size).await;
                    } else {
                        return false;
                    }
                }
                Phase::Discard {
                    receiver,
                    reply,
                    error,
                } => {
                    if receiver.ingest(&mut bytes) {
                        let (reply, error) = (reply.clone(), *error);
                        self.phase = Phase::Command;
                        if error {
                            self.error(reply);
                        } else {
                            self.send(reply);
                        }
                        self.transaction = None;
                        self.bdat = None;
                    } else {
                        return false;
                    }
                }
                Phase::Bdat { receiver } => {
                    let done = receiver.ingest(&mut bytes, &mut self.chunk);
                    let is_last = receiver.is_last;
                    let chunk = std::mem::take(&mut self.chunk);
                    let max = self.max_size();
                    if let Some((incoming, size, too_big)) = &mut self.bdat {
                        *size += chunk.len() as u64;
                        if !*too_big && *size > max {
                            // Over the limit: read past the chunks, then refuse.
                            *too_big = true;
                            if let Some(i) = incoming.take() {
                                i.abort().await;
                            }
                        } else if let Some(i) = incoming
                            && i.write(&chunk).await.is_err()
                        {
                            tracing::error!(session = %self.id, "failure writing to the spool");
                            if let Some(i) = incoming.take() {
                                i.abort().await;
                            }
                        }
                    }
                    self.chunk = chunk;
                    self.chunk.clear();
                    if !done {
                        return false;
                    }
                    self.phase = Phase::Command;
                    if self.bdat.as_ref().is_some_and(|b| b.2) {
                        self.bdat = None;
                        self.transaction = None;
                        metrics::counter!("postern_smtp_messages_rejected_total", "ingress_point" => self.config.ingress.name.clone(), "reason" => "size").increment(1);
                        self.send(Reply::new(
                            552,
                            (5, 3, 4),
                            format!("Message exceeds the maximum size of {max} bytes"),
                        ));
                    } else if is_last {
                        let Some((incoming, size, _)) = self.bdat.take() else {
                            continue;
                        };
                        self.finish_message(incoming, size).await;
                    } else {
                        let size = self.bdat.as_ref().map(|b| b.1).unwrap_or(0);
                        self.send(Reply::new(
                            250,
                            (2, 0, 0),
                            format!("{size} octets received"),
                        ));
                    }
                }
            }
        }
    }

    fn protocol_error(&mut self, e: ProtoError) {
        let reply = match e {
            ProtoError::UnknownCommand => Reply::new(500, (5, 5, 1), "Unknown command"),
            ProtoError::ResponseTooLong => Reply::new(500, (5, 5, 2), "Line too long"),
            ProtoError::SyntaxError { syntax } => reply::syntax(format!("Syntax: {syntax}")),
            ProtoError::InvalidSenderAddress => {
                Reply::new(501, (5, 1, 7), "Invalid sender address")
            }
            ProtoError::InvalidRecipientAddress => {
                Reply::new(501, (5, 1, 3), "Invalid recipient address")
            }
            ProtoError::InvalidParameter { param } => {
                reply::syntax(format!("Invalid value for {param}"))
            }
            ProtoError::UnsupportedParameter { param } => {
                let param: String = param
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(40)
                    .collect();
                Reply::new(555, (5, 5, 4), format!("Unsupported parameter {param}"))
            }
            _ => reply::syntax("Syntax error"),
        };
        self.error(reply);
    }

    /// The size limit in force: the traffic policy's, or the default.
    fn max_size(&self) -> u64 {
        self.config
            .policy
            .max_message_size
            .unwrap_or(self.config.limits.max_message_size)
    }

    fn tls_protocol(&self) -> Option<TlsProtocol> {
        let session = self.conn.tls_session()?;
        Some(match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => TlsProtocol::Tls13,
            Some(rustls::ProtocolVersion::TLSv1_2) => TlsProtocol::Tls12,
            _ => TlsProtocol::Legacy,
        })
    }

    fn tls_meta(&self) -> Option<TlsMeta> {
        let session = self.conn.tls_session()?;
        Some(TlsMeta {
            protocol: match session.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                Some(other) => format!("{other:?}"),
                None => "unknown".into(),
            },
            cipher: session
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            wrapped: self.tls_wrapped,
        })
    }

    fn auth_required(&self) -> bool {
        self.config.kind == IngressPointType::Auth && self.authenticated.is_none()
    }

    /// Handles one command; true when TLS must start now.
    async fn command(&mut self, request: Request<String>) -> bool {
        match request {
            Request::Ehlo { host } => {
                // A new greeting starts over: a message half sent with BDAT
                // is abandoned, never continued under another envelope.
                self.abort_message().await;
                self.hello(host, true)
            }
            Request::Helo { host } => {
                self.abort_message().await;
                self.hello(host, false)
            }
            Request::Lhlo { .. } => self.error(Reply::new(500, (5, 5, 1), "LHLO is for LMTP")),
            Request::StartTls => {
                if self.conn.is_tls() {
                    self.error(bad_sequence_tls());
                } else if self.config.tls.is_none() {
                    self.error(Reply::new(502, (5, 5, 1), "STARTTLS not available"));
                } else {
                    self.send(Reply::new(220, (2, 0, 0), "Ready to start TLS"));
                    return true;
                }
            }
            Request::Mail { from } => match self.store.pressure() {
                crate::store::Pressure::Full => {
                    metrics::counter!("postern_smtp_messages_rejected_total", "ingress_point" => self.config.ingress.name.clone(), "reason" => "spool_full").increment(1);
                    self.send(Reply::new(
                        452,
                        (4, 3, 1),
                        "Too much mail waiting to be processed, try again later",
                    ));
                }
                crate::store::Pressure::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    self.mail(from);
                }
                crate::store::Pressure::Normal => self.mail(from),
            },
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => self.data().await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat_start(chunk_size, is_last).await,
            Request::Rset => {
                self.abort_message().await;
                self.transaction = None;
                self.send(reply::ok("Reset"));
            }
            Request::Noop { .. } => self.send(reply::ok("OK")),
            Request::Vrfy { .. } => self.send(Reply::new(
                252,
                (2, 5, 2),
                "Cannot verify the user, but will accept the message and attempt delivery",
            )),
            Request::Expn { .. } => self.send(Reply::new(502, (5, 5, 1), "EXPN not available")),
            Request::Help { .. } => self.send(Reply::new(214, (2, 0, 0), "See RFC 5321")),
            Request::Quit => {
                self.send(Reply::new(
                    221,
                    (2, 0, 0),
                    format!("{} closing connection", self.config.hostname),
                ));
                self.close = Some(End::Quit);
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.error(Reply::new(502, (5, 5, 1), "Command not implemented"))
            }
        }
        false
    }

    fn hello(&mut self, host: String, esmtp: bool) {
        let host: String = host.chars().filter(|c| !c.is_control()).take(255).collect();
        if host.is_empty() {
            self.error(reply::syntax("Syntax: EHLO domain"));
            return;
        }
        self.helo = Some(host);
        self.esmtp = esmtp;
        self.transaction = None;
        if !esmtp {
            self.send(Reply::plain(250, self.config.hostname.clone()));
            return;
        }
        let mut lines = vec![
            self.config.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.max_size()),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if !self.conn.is_tls() && self.config.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        if self.config.kind == IngressPointType::Auth
            && self.conn.is_tls()
            && self.authenticated.is_none()
        {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        self.send(Reply {
            code: 250,
            status: None,
            lines,
        });
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) {
        if self.helo.is_none() {
            self.error(reply::bad_sequence("Send EHLO or HELO first"));
            return;
        }
        if self.transaction.is_some() {
            self.error(reply::bad_sequence("Nested MAIL command"));
            return;
        }
        if self.auth_required() {
            self.error(Reply::new(530, (5, 7, 0), "Authentication required"));
            return;
        }
        if self.config.kind == IngressPointType::Mtls && self.client_certificate.is_none() {
            self.error(Reply::new(
                530,
                (5, 7, 0),
                "A trusted client certificate is required: use STARTTLS with one",
            ));
            return;
        }
        let declared = (from.size > 0).then_some(from.size as u64);
        if let Some(size) = declared
            && size > self.max_size()
        {
            self.send(Reply::new(
                552,
                (5, 3, 4),
                format!(
                    "Message size exceeds the maximum of {} bytes",
                    self.max_size()
                ),
            ));
            return;
        }
        let body = if from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0 {
            Some("8BITMIME".to_string())
        } else if from.flags & smtp_proto::MAIL_BODY_7BIT != 0 {
            Some("7BIT".to_string())
        } else {
            None
        };
        let ret = if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
            Some("FULL".to_string())
        } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
            Some("HDRS".to_string())
        } else {
            None
        };
        self.transaction = Some(Transaction {
            mail_from: from.address,
            declared_size: declared,
            body,
            smtputf8: from.flags & smtp_proto::MAIL_SMTPUTF8 != 0,
            ret,
            envid: from.env_id,
            recipients: Vec::new(),
            verdicts: None,
        });
        self.send(Reply::new(250, (2, 1, 0), "Sender OK"));
    }

    fn envelope(&self) -> Envelope {
        let t = self.transaction.as_ref();
        Envelope {
            sender_ip: self.peer.ip,
            helo: self.helo.clone(),
            tls: self.tls_protocol(),
            tls_wrapped: self.tls_wrapped,
            client_certificate: self.client_certificate.clone(),
            mail_from: t.map(|t| t.mail_from.clone()).unwrap_or_default(),
            recipients: Vec::new(),
            declared_size: t.and_then(|t| t.declared_size),
        }
    }

    /// The add-on results of this transaction, asked for once.
    async fn policy_verdicts(&mut self) -> Verdicts {
        if let Some(v) = self.transaction.as_ref().and_then(|t| t.verdicts.clone()) {
            return v;
        }
        let needed = self.config.policy.analysis_needed();
        let mut verdicts = Verdicts::default();
        if let (false, Some(analyzer)) = (needed.is_empty(), &self.config.analyzer) {
            let input = crate::analyzer::AnalysisInput {
                ip: self.peer.ip,
                helo: self.helo.clone().unwrap_or_default(),
                mail_from: self
                    .transaction
                    .as_ref()
                    .map(|t| t.mail_from.clone())
                    .unwrap_or_default(),
            };
            verdicts.analysis = analyzer.analyze(needed, &input).await;
        }
        if let Some(t) = &mut self.transaction {
            t.verdicts = Some(verdicts.clone());
        }
        verdicts
    }

    async fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) {
        let Some(transaction) = &self.transaction else {
            self.error(reply::bad_sequence("Send MAIL first"));
            return;
        };
        if to.address.is_empty() {
            self.error(Reply::new(501, (5, 1, 3), "Invalid recipient address"));
            return;
        }
        if transaction.recipients.len() >= self.config.limits.max_recipients {
            self.send(Reply::new(452, (4, 5, 3), "Too many recipients"));
            return;
        }
        if transaction
            .recipients
            .iter()
            .any(|r| r.address == to.address)
        {
            self.send(Reply::new(250, (2, 1, 5), "Recipient OK"));
            return;
        }
        let verdicts = self.policy_verdicts().await;
        let envelope = self.envelope();
        let decision =
            self.config
                .policy
                .evaluate(&envelope, &to.address, envelope.declared_size, &verdicts);
        let ingress = self.config.ingress.name.clone();
        match decision {
            Ok(d) if d.action == AcceptAction::Allow => {
                let mut notify = Vec::new();
                for (flag, name) in [
                    (smtp_proto::RCPT_NOTIFY_SUCCESS, "SUCCESS"),
                    (smtp_proto::RCPT_NOTIFY_FAILURE, "FAILURE"),
                    (smtp_proto::RCPT_NOTIFY_DELAY, "DELAY"),
                    (smtp_proto::RCPT_NOTIFY_NEVER, "NEVER"),
                ] {
                    if to.flags & flag != 0 {
                        notify.push(name.to_string());
                    }
                }
                let why = match d.reason {
                    PolicyReason::Statement(i) => format!(
                        "ALLOW by PolicyStatements[{i}] of {}",
                        self.config.policy.name
                    ),
                    _ => format!("ALLOW by DefaultAction of {}", self.config.policy.name),
                };
                if let Some(t) = &mut self.transaction {
                    t.recipients.push(Recipient {
                        address: to.address,
                        notify,
                        orcpt: to.orcpt,
                        policy: Some(why),
                    });
                }
                self.send(Reply::new(250, (2, 1, 5), "Recipient OK"));
            }
            Ok(d) => {
                let (reason, reply) = match d.reason {
                    PolicyReason::TooLarge { max, .. } => (
                        "size",
                        Reply::new(
                            552,
                            (5, 3, 4),
                            format!("Message size exceeds the maximum of {max} bytes"),
                        ),
                    ),
                    _ => (
                        "policy",
                        Reply::new(
                            550,
                            (5, 7, 1),
                            "Recipient rejected by the traffic policy of this gateway",
                        ),
                    ),
                };
                metrics::counter!("postern_smtp_recipients_rejected_total", "ingress_point" => ingress, "reason" => reason).increment(1);
                self.send(reply);
            }
            Err(e) => {
                tracing::warn!(session = %self.id, statement = e.statement, condition = e.condition, missing = %e.missing, "traffic policy needs an input that is not available");
                metrics::counter!("postern_smtp_recipients_rejected_total", "ingress_point" => ingress, "reason" => "policy_input").increment(1);
                self.send(Reply::new(
                    451,
                    (4, 7, 1),
                    "Recipient cannot be checked now, try again later",
                ));
            }
        }
    }

    fn meta(&self) -> Vec<u8> {
        let t = self.transaction.as_ref().expect("transaction open");
        let meta = SessionMeta {
            ingress_point: self.config.ingress.clone(),
            session: self.id.clone(),
            sender_ip: self.peer.ip.to_canonical().to_string(),
            sender_port: self.peer.port,
            sender_hostname: None,
            helo: self.helo.clone().unwrap_or_default(),
            esmtp: self.esmtp,
            tls: self.tls_meta(),
            authenticated: self.authenticated.clone(),
            client_certificate: self
                .client_certificate
                .iter()
                .flat_map(|c| c.attributes.iter())
                .map(|(a, v)| (a.as_str().to_string(), v.clone()))
                .collect(),
            mail_from: t.mail_from.clone(),
            declared_size: t.declared_size,
            body: t.body.clone(),
            smtputf8: t.smtputf8,
            dsn_ret: t.ret.clone(),
            dsn_envid: t.envid.clone(),
            recipients: t.recipients.clone(),
            received_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64(),
            config_version: self.config.config_version,
        };
        serde_json::to_vec(&meta).expect("meta serializes")
    }

    /// Checks that a message may start; the reply when it may not.
    fn message_refusal(&self) -> Option<Reply> {
        match &self.transaction {
            None => Some(reply::bad_sequence("Send MAIL first")),
            Some(t) if t.recipients.is_empty() => {
                Some(Reply::new(554, (5, 5, 1), "No valid recipients"))
            }
            Some(_) => None,
        }
    }

    async fn data(&mut self) {
        if self.bdat.is_some() {
            self.error(reply::bad_sequence("DATA after BDAT"));
            return;
        }
        if let Some(refusal) = self.message_refusal() {
            self.error(refusal);
            return;
        }
        let incoming = match self.store.create(&self.meta()).await {
            Ok(incoming) => Some(incoming),
            Err(e) => {
                tracing::error!(session = %self.id, error = %e, "cannot start a spool file");
                None
            }
        };
        self.send(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        self.phase = Phase::Data {
            receiver: data_receiver(),
            incoming,
            size: 0,
        };
    }

    async fn bdat_start(&mut self, chunk_size: usize, is_last: bool) {
        if self.bdat.is_none() {
            if let Some(refusal) = self.message_refusal() {
                // The chunk still has to be read past.
                self.phase = Phase::Discard {
                    receiver: DummyDataReceiver::new_bdat(chunk_size),
                    reply: refusal,
                    error: true,
                };
                return;
            }
            let incoming = match self.store.create(&self.meta()).await {
                Ok(incoming) => Some(incoming),
                Err(e) => {
                    tracing::error!(session = %self.id, error = %e, "cannot start a spool file");
                    None
                }
            };
            self.bdat = Some((incoming, 0, false));
        }
        self.phase = Phase::Bdat {
            receiver: BdatReceiver::new(chunk_size, is_last),
        };
    }

    /// Commits a complete message and answers; `None` when the spool failed
    /// while the data arrived (the client is told to retry).
    async fn finish_message(&mut self, incoming: Option<S::Incoming>, size: u64) {
        let Some(incoming) = incoming else {
            self.send(reply::temporary_failure(&self.id));
            self.transaction = None;
            return;
        };
        let recipients = self
            .transaction
            .as_ref()
            .map(|t| t.recipients.len())
            .unwrap_or(0);
        match incoming.commit().await {
            Ok(queue_id) => {
                tracing::info!(session = %self.id, queue_id = %queue_id, size, recipients, "message accepted");
                let ingress = self.config.ingress.name.clone();
                metrics::counter!("postern_smtp_messages_accepted_total", "ingress_point" => ingress.clone()).increment(1);
                metrics::counter!("postern_smtp_received_bytes_total", "ingress_point" => ingress)
                    .increment(size);
                self.send(Reply::new(
                    250,
                    (2, 0, 0),
                    format!("OK queued as {queue_id}"),
                ));
            }
            Err(e) => {
                tracing::error!(session = %self.id, error = %e, "cannot commit a message to the spool");
                self.send(reply::temporary_failure(&self.id));
            }
        }
        self.transaction = None;
    }

    async fn abort_message(&mut self) {
        if let Phase::Data { incoming, .. } = &mut self.phase
            && let Some(incoming) = incoming.take()
        {
            incoming.abort().await;
        }
        if let Some((Some(incoming), _, _)) = self.bdat.take() {
            incoming.abort().await;
        }
    }

    async fn local_failure(&mut self, what: &str) {
        tracing::error!(session = %self.id, "failure {what}");
        if let Phase::Data { incoming, .. } = &mut self.phase
            && let Some(incoming) = incoming.take()
        {
            incoming.abort().await;
        }
    }

    async fn auth(&mut self, mechanism: u64, initial: String) {
        if self.config.kind != IngressPointType::Auth || self.config.smtp_password.is_none() {
            self.error(Reply::new(502, (5, 5, 1), "AUTH not available"));
            return;
        }
        if !self.conn.is_tls() {
            self.error(Reply::new(
                538,
                (5, 7, 11),
                "Encryption required for authentication",
            ));
            return;
        }
        if self.authenticated.is_some() || self.transaction.is_some() {
            self.error(reply::bad_sequence(
                "Already authenticated or in a transaction",
            ));
            return;
        }
        if mechanism == smtp_proto::AUTH_PLAIN {
            if initial.is_empty() {
                // RFC 4954: an empty challenge, then the response on its own line.
                self.send(Reply::plain(334, ""));
                self.phase = Phase::AuthLogin {
                    user: Some(String::from("\0plain")),
                };
                return;
            }
            self.auth_plain(&initial).await;
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            if initial.is_empty() {
                self.send(Reply::plain(334, "VXNlcm5hbWU6"));
                self.phase = Phase::AuthLogin { user: None };
            } else {
                match decode(&initial) {
                    Some(user) => {
                        self.send(Reply::plain(334, "UGFzc3dvcmQ6"));
                        self.phase = Phase::AuthLogin { user: Some(user) };
                    }
                    None => self.error(reply::syntax("Invalid base64")),
                }
            }
        } else {
            self.error(Reply::new(504, (5, 5, 4), "Mechanism not supported"));
        }
    }

    async fn auth_plain(&mut self, response: &str) {
        let Some(decoded) = decode(response) else {
            self.error(reply::syntax("Invalid base64"));
            return;
        };
        let mut parts = decoded.split('\0');
        let (_authz, user, password) = (parts.next(), parts.next(), parts.next());
        match (user, password) {
            (Some(user), Some(password)) => self.check_password(user.to_string(), password).await,
            _ => self.error(reply::syntax("Invalid PLAIN response")),
        }
    }

    async fn auth_login_line(&mut self, line: &str) {
        let Phase::AuthLogin { user } = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        if line == "*" {
            self.error(Reply::new(501, (5, 0, 0), "Authentication cancelled"));
            return;
        }
        match user.as_deref() {
            Some("\0plain") => self.auth_plain(line).await,
            Some(user) => {
                let user = user.to_string();
                match decode(line) {
                    Some(password) => self.check_password(user, &password).await,
                    None => self.error(reply::syntax("Invalid base64")),
                }
            }
            None => match decode(line) {
                Some(user) => {
                    self.send(Reply::plain(334, "UGFzc3dvcmQ6"));
                    self.phase = Phase::AuthLogin { user: Some(user) };
                }
                None => self.error(reply::syntax("Invalid base64")),
            },
        }
    }

    /// The user is the ingress point's name or id; the password is the
    /// configured one. Compared in constant time; failures are slowed down
    /// and limited per session.
    async fn check_password(&mut self, user: String, password: &str) {
        use sha2::{Digest, Sha256};
        let expected = self.config.smtp_password.as_deref().unwrap_or_default();
        let a = Sha256::digest(password.as_bytes());
        let b = Sha256::digest(expected.as_bytes());
        let same_password = a
            .iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0;
        let known_user = user == self.config.ingress.name || user == self.config.ingress.id;
        if same_password && known_user && !expected.is_empty() {
            self.config.throttle.succeeded(self.peer.ip);
            self.authenticated = Some(user);
            metrics::counter!("postern_smtp_auth_total", "ingress_point" => self.config.ingress.name.clone(), "outcome" => "success").increment(1);
            self.send(Reply::new(235, (2, 7, 0), "Authentication succeeded"));
            return;
        }
        metrics::counter!("postern_smtp_auth_total", "ingress_point" => self.config.ingress.name.clone(), "outcome" => "failure").increment(1);
        tracing::warn!(session = %self.id, ip = %self.peer.ip, "authentication failed");
        self.auth_failures += 1;
        // Each failure from this address costs a second more than the last.
        tokio::time::sleep(self.config.throttle.failed(self.peer.ip)).await;
        self.send(Reply::new(
            535,
            (5, 7, 8),
            "Authentication credentials invalid",
        ));
        if self.auth_failures >= self.config.limits.max_auth_failures {
            self.send(Reply::new(
                421,
                (4, 7, 0),
                "Too many authentication failures",
            ));
            self.close = Some(End::TooManyErrors);
        }
    }

    async fn start_tls(&mut self) -> std::io::Result<()> {
        // Nothing sent before TLS may become part of a message after it.
        self.abort_message().await;
        self.transaction = None;
        let Some(tls) = self.config.tls.clone() else {
            return Ok(());
        };
        // Whatever the client sent after STARTTLS is discarded.
        self.receiver = RequestReceiver::default();
        let Conn::Plain(plain) = std::mem::replace(&mut self.conn, Conn::Closed) else {
            return Ok(());
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let stream =
            tokio::time::timeout(self.config.limits.command_timeout, acceptor.accept(plain))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
        self.conn = Conn::Tls(Box::new(stream));
        self.client_certificate = peer_certificate(&self.conn);
        // RFC 3207: the session starts over.
        self.helo = None;
        self.esmtp = false;
        self.transaction = None;
        metrics::counter!("postern_smtp_starttls_total", "ingress_point" => self.config.ingress.name.clone()).increment(1);
        Ok(())
    }
}

/// A receiver for the data that follows DATA. The CRLF that ended the DATA
/// line starts the first line of the message, so a first line of "." ends an
/// empty message and a first line starting with ".." is unstuffed (RFC 5321
/// 4.5.2); smtp-proto's receiver starts as if in the middle of a line, so
/// it is given that CRLF first.
fn data_receiver() -> DataReceiver {
    let mut receiver = DataReceiver::new();
    let mut crlf = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut crlf);
    receiver
}

fn bad_sequence_tls() -> Reply {
    reply::bad_sequence("TLS already active")
}

/// The attributes of the client certificate the TLS handshake verified.
fn peer_certificate<T>(conn: &Conn<T>) -> Option<ClientCertificate> {
    let der = conn.tls_session()?.peer_certificates()?.first()?;
    Some(ClientCertificate {
        attributes: crate::tls::certificate_attributes(der),
    })
}

fn decode(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}
