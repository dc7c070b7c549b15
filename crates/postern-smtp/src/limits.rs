//! The bounds of a session, with safe defaults. Every one is configurable
//! under `Server.Smtp` (docs/config.md).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once, over all listeners.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Recipients accepted in one transaction (RFC 5321 asks for at least 100).
    pub max_recipients: usize,
    /// Longest command line, CRLF included (RFC 5321 asks for at least
    /// 512; the SMTP codec reads at most 4096).
    pub max_line_length: usize,
    /// Size of a message when no traffic policy sets MaxMessageSizeBytes.
    pub max_message_size: u64,
    /// Wait for a command (RFC 5321 4.5.3.2.7 suggests 5 minutes).
    pub command_timeout: Duration,
    /// Wait for the next chunk of DATA or BDAT (RFC 5321 suggests 3 minutes).
    pub data_timeout: Duration,
    /// Protocol errors (bad commands, bad sequence, rejected recipients) after
    /// which the session is closed with 421.
    pub max_errors: usize,
    /// Failed AUTH attempts after which the session is closed.
    pub max_auth_failures: usize,
    /// Longest a session may last, whatever it does.
    pub session_timeout: Duration,
}

impl Limits {
    /// The command line limit in force: the configured one, never above what
    /// the codec reads.
    pub fn line_limit(&self) -> usize {
        self.max_line_length
            .clamp(512, smtp_proto::request::receiver::MAX_LINE_LENGTH)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 2000,
            max_connections_per_ip: 50,
            max_recipients: 100,
            max_line_length: smtp_proto::request::receiver::MAX_LINE_LENGTH,
            max_message_size: 25 * 1024 * 1024,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_errors: 10,
            max_auth_failures: 3,
            session_timeout: Duration::from_secs(3600),
        }
    }
}

/// Failed AUTH attempts per client address, across its sessions: each new
/// failure from an address is answered a second later than the last (up to
/// ten seconds), so guessing a password costs time however the attempts are
/// spread over connections. An address's count is forgotten after fifteen
/// minutes without failure, and at a successful login.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    failures:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

impl AuthThrottle {
    const FORGET: Duration = Duration::from_secs(15 * 60);

    /// Records a failure; returns how long to wait before answering.
    pub fn failed(&self, ip: std::net::IpAddr) -> Duration {
        let mut map = self.failures.lock().expect("throttle lock");
        let now = std::time::Instant::now();
        map.retain(|_, (_, last)| now.duration_since(*last) < Self::FORGET);
        let entry = map.entry(ip).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
        Duration::from_secs(u64::from(entry.0.min(10)))
    }

    pub fn succeeded(&self, ip: std::net::IpAddr) {
        self.failures.lock().expect("throttle lock").remove(&ip);
    }
}
