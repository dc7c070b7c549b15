//! `postern serve` end to end: the real binary on free loopback ports, real
//! clients (raw TCP, Python's smtplib, swaks), and what reached the archive
//! and the trace under the data directory.
//!
//! Each test writes its own config into a temporary directory, starts the
//! server on it and kills it at the end (the [`Server`] guard). Waits are
//! polls bounded by [`WAIT`]: readiness and the pipeline's progress, never a
//! timing assertion.
//!
//! Needs `python3` and `swaks` (Debian package `swaks`) on PATH; the tests
//! that use them fail with a message saying so when they are missing.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound of every wait for the server or the pipeline.
const WAIT: Duration = Duration::from_secs(20);
/// Read timeout of the clients: a reply that does not come fails the test.
const READ: Duration = Duration::from_secs(20);
const INGRESS: &str = "mx-test";
const PASSWORD: &str = "S3cret-pass!";

// ---------------------------------------------------------------------------
// Temporary directories, ports, the config

/// A directory removed at the end of a test that passed (kept, and named,
/// when it failed).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "postern-serve-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `n` distinct free loopback ports (all held while choosing, so they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// The config a test runs with. `render` writes it as YAML.
struct Config {
    data_dir: PathBuf,
    smtp: u16,
    http: u16,
    /// An implicit-TLS listener too.
    smtp_tls: Option<u16>,
    /// `OPEN`, or `AUTH` with [`PASSWORD`].
    auth: bool,
    /// A third free port, for `smtp_tls`.
    spare: u16,
    /// The traffic policy's `DefaultAction` and `PolicyStatements` (YAML).
    default_action: &'static str,
    statements: String,
    max_message_size: Option<u64>,
    /// The items of the rule set's `Rules` (YAML, indented by 6).
    rules: String,
    /// `Server.Smtp` members.
    smtp_limits: Vec<(&'static str, u64)>,
}

const ARCHIVE_ALL: &str = "      - Name: archive-all\n        Actions:\n          - Archive: {TargetArchive: main-archive}\n";

impl Config {
    fn new(dir: &Path) -> Config {
        let ports = free_ports(3);
        Config {
            data_dir: dir.join("data"),
            smtp: ports[0],
            http: ports[1],
            smtp_tls: None,
            spare: ports[2],
            auth: false,
            default_action: "ALLOW",
            statements: "[]".into(),
            max_message_size: None,
            rules: ARCHIVE_ALL.into(),
            smtp_limits: Vec::new(),
        }
    }

    fn render(&self) -> String {
        let mut smtp = String::new();
        if !self.smtp_limits.is_empty() {
            smtp.push_str("  Smtp:\n");
            for (k, v) in &self.smtp_limits {
                smtp.push_str(&format!("    {k}: {v}\n"));
            }
        }
        let size = self
            .max_message_size
            .map(|s| format!("    MaxMessageSizeBytes: {s}\n"))
            .unwrap_or_default();
        let tls = self
            .smtp_tls
            .map(|p| format!("    ListenTls: [\"127.0.0.1:{p}\"]\n"))
            .unwrap_or_default();
        let kind = if self.auth {
            format!("AUTH\n    IngressPointConfiguration: {{SmtpPassword: \"{PASSWORD}\"}}")
        } else {
            "OPEN".into()
        };
        format!(
            "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: mx.postern.test\n  ShutdownGraceSeconds: 10\n{smtp}\
TrafficPolicies:\n  - TrafficPolicyName: inbound\n    DefaultAction: {default}\n{size}    PolicyStatements: {statements}\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n{rules}\
IngressPoints:\n  - IngressPointName: {INGRESS}\n    Type: {kind}\n    TrafficPolicyId: inbound\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{port}\"]\n{tls}\
Archives:\n  - ArchiveName: main-archive\n",
            data = self.data_dir.display(),
            http = self.http,
            default = self.default_action,
            statements = self.statements,
            rules = self.rules,
            port = self.smtp,
        )
    }
}

// ---------------------------------------------------------------------------
// The server

/// A running `postern serve`; killed (SIGKILL) and reaped when dropped.
struct Server {
    child: Child,
    dir: PathBuf,
    data: PathBuf,
    smtp: u16,
    http: u16,
    smtp_tls: Option<u16>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Server {
    /// Writes `config` to `<dir>/postern.yaml` and starts the server on it.
    fn start(dir: &Path, config: &Config) -> Server {
        std::fs::write(dir.join("postern.yaml"), config.render()).unwrap();
        // What `archive_get` reads: tests later rewrite postern.yaml.
        std::fs::write(dir.join("archive-cli.yaml"), config.render()).unwrap();
        Server::run(dir, config)
    }

    /// Starts the server on the `<dir>/postern.yaml` already there.
    fn run(dir: &Path, config: &Config) -> Server {
        let mut server = Server::spawn(dir, Some(config));
        server.wait_ready();
        server
    }

    /// Runs `postern serve` in `dir`, with `-c <dir>/postern.yaml` (written
    /// from `config`) or, without a config, the embedded default. Does not
    /// wait for anything.
    fn spawn(dir: &Path, config: Option<&Config>) -> Server {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let tag = STARTS.fetch_add(1, Ordering::Relaxed);
        let stdout = dir.join(format!("stdout-{tag}.log"));
        let stderr = dir.join(format!("stderr-{tag}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_postern"));
        command.arg("serve");
        if config.is_some() {
            command.arg("-c").arg(dir.join("postern.yaml"));
        }
        let child = command
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("postern starts");
        Server {
            child,
            dir: dir.to_path_buf(),
            // The embedded default's DataDir is ./data, SMTP 127.0.0.1:2525,
            // HTTP 127.0.0.1:8025.
            data: config.map_or(dir.join("data"), |c| c.data_dir.clone()),
            smtp: config.map_or(2525, |c| c.smtp),
            http: config.map_or(8025, |c| c.http),
            smtp_tls: config.and_then(|c| c.smtp_tls),
            stdout,
            stderr,
        }
    }

    /// Ready when the server said it listens: it prints that line once every
    /// listener is bound, so from then on the SMTP port accepts. (Not probed
    /// with a connection: a probe session would count against the
    /// per-address limit and in the metrics while it closes.)
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "postern serve exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let said = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if said.contains("postern: SMTP on") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postern serve not ready after {WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's stderr (its log), without colours.
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", self.pid()))
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the server to exit on its own.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "postern serve did not exit within {WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn connect(&self) -> Client {
        Client::connect(self.smtp)
    }

    /// Polls the log until `text` appears `count` times.
    fn wait_log(&self, text: &str, count: usize) -> String {
        wait_for(&format!("{count} times {text:?} in the log"), || {
            let log = self.log();
            (log.matches(text).count() >= count).then_some(log)
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- postern serve log ({}) ---\n{}",
                self.dir.display(),
                self.log()
            );
        }
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls `f` every 20 ms until it gives a value; fails after [`WAIT`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// A raw SMTP client

#[derive(Debug, Clone)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn first(&self) -> &str {
        &self.lines[0]
    }

    fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Checks the first line starts with `prefix` (code and enhanced code).
    fn check(&self, prefix: &str, context: &str) -> &Reply {
        assert!(
            self.first().starts_with(prefix),
            "{context}: expected a reply starting with {prefix:?}, got {:?}",
            self.lines
        );
        self
    }

    /// The queue id of "250 2.0.0 OK queued as <id>".
    fn queue_id(&self) -> String {
        queue_id_of(self.first())
    }
}

fn queue_id_of(line: &str) -> String {
    let id = line
        .split("queued as ")
        .nth(1)
        .unwrap_or_else(|| panic!("no queue id in {line:?}"))
        .trim()
        .to_string();
    assert!(
        id.len() == 16
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
        "not a queue id: {id:?}"
    );
    id
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects and reads the 220 greeting.
    fn connect(port: u16) -> Client {
        let mut c = Client::open(port);
        c.reply().check("220 ", "greeting");
        c
    }

    /// Connects without reading anything.
    fn open(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(READ)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                let line = String::from_utf8_lossy(&line);
                return Some(line.trim_end_matches(['\r', '\n']).to_string());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no reply within {READ:?}: {e}"),
            }
        }
    }

    /// One reply (all its lines); fails if the connection closes first.
    fn reply(&mut self) -> Reply {
        self.try_reply()
            .expect("a reply, but the connection closed")
    }

    fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.line()?;
            assert!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "not a reply line: {line:?}"
            );
            let code = line[..3].parse().unwrap();
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    fn cmd(&mut self, line: &str) -> Reply {
        self.write(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends `line` and checks its reply starts with `prefix`.
    fn expect(&mut self, line: &str, prefix: &str) -> Reply {
        let reply = self.cmd(line);
        reply.check(prefix, line);
        reply
    }

    fn ehlo(&mut self) -> Reply {
        self.expect("EHLO client.postern.test", "250")
    }

    /// True when the server closed the connection (after any replies).
    fn closed(&mut self) -> bool {
        self.line().is_none()
    }

    /// MAIL, RCPT for each, DATA, the dot-stuffed message; the queue id.
    fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> String {
        self.expect(&format!("MAIL FROM:<{from}>"), "250 2.1.0");
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5");
        }
        self.expect("DATA", "354");
        let mut data = dot_stuff(message);
        data.extend_from_slice(b".\r\n");
        self.write(&data);
        let reply = self.reply();
        reply.check("250 2.0.0 OK queued as ", "end of data");
        reply.queue_id()
    }
}

/// Dot-stuffs a message with CRLF lines, ending it with CRLF.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut start = true;
    for &b in message {
        if start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// The archive, the trace, the spool

/// Every archived `.eml` under `data/archives`, by queue id (a queue id
/// archived twice appears twice).
fn archived(data: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "eml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&data.join("archives"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

/// Waits for the message `id` in the archive and returns its bytes. Checks
/// its place (`archives/<archive id>/YYYY/MM/DD/<id>.eml`) and that the
/// archive's index knows it (`postern archive get`).
fn wait_archived(data: &Path, id: &str) -> Vec<u8> {
    let path = wait_for(&format!("message {id} in the archive"), || {
        archived(data)
            .into_iter()
            .find(|(qid, _)| qid == id)
            .map(|(_, p)| p)
    });
    let relative: Vec<String> = path
        .strip_prefix(data.join("archives"))
        .unwrap()
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    assert_eq!(relative.len(), 5, "{}", path.display());
    assert!(relative[0].starts_with("a-"), "archive id: {}", relative[0]);
    for (part, len) in [(&relative[1], 4), (&relative[2], 2), (&relative[3], 2)] {
        assert!(
            part.len() == len && part.bytes().all(|b| b.is_ascii_digit()),
            "date part {part:?} of {}",
            path.display()
        );
    }
    let json = wait_for(&format!("message {id} in the archive index"), || {
        archive_get(data, id)
    });
    assert!(json["Envelope"]["To"].is_array(), "{json}");
    assert!(
        json["MessageDownloadLink"]
            .as_str()
            .is_some_and(|l| l.contains(&format!("/archive/messages/{id}?"))),
        "{json}"
    );
    std::fs::read(&path).unwrap()
}

/// `postern archive get ID` beside the server whose data directory is
/// `data` (its config is `postern.yaml` beside `data`, or the embedded
/// default); None until the index has the message.
fn archive_get(data: &Path, id: &str) -> Option<Value> {
    let dir = data.parent().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_postern"));
    command.arg("archive");
    if dir.join("archive-cli.yaml").exists() {
        command.arg("-c").arg(dir.join("archive-cli.yaml"));
    }
    let output = command.args(["get", id]).current_dir(dir).output().unwrap();
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).unwrap())
}

/// The archived message without the two header fields this gateway adds
/// on top, Received then Authentication-Results; (Received, the rest).
fn split_received(eml: &[u8]) -> (String, Vec<u8>) {
    assert!(
        eml.starts_with(b"Received: "),
        "archived message does not start with Received: {:?}",
        String::from_utf8_lossy(&eml[..eml.len().min(200)])
    );
    let received = field_end(eml, 0);
    assert!(
        eml[received..].starts_with(b"Authentication-Results: "),
        "no Authentication-Results under Received: {:?}",
        String::from_utf8_lossy(&eml[..eml.len().min(400)])
    );
    let results = field_end(eml, received);
    (
        String::from_utf8_lossy(&eml[..received]).into_owned(),
        eml[results..].to_vec(),
    )
}

/// Where the header field starting at `start` ends (after its CRLF and any
/// folded lines).
fn field_end(eml: &[u8], start: usize) -> usize {
    let mut end = start;
    loop {
        end += eml[end..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("header line ends")
            + 2;
        if !matches!(eml.get(end), Some(b' ') | Some(b'\t')) {
            return end;
        }
    }
}

fn trace_records(data: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    let Ok(entries) = std::fs::read_dir(data.join("trace")) else {
        return records;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.len() == "yyyy-mm-dd.jsonl".len() && name.ends_with(".jsonl"),
            "trace file {name}"
        );
        let text = std::fs::read_to_string(&file).unwrap();
        // A line being written may be incomplete: only whole lines count.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            records.push(serde_json::from_str(line).unwrap());
        }
    }
    records
}

fn wait_trace(data: &Path, id: &str) -> Value {
    wait_for(&format!("message {id} in the trace"), || {
        trace_records(data).into_iter().find(|r| r["QueueId"] == id)
    })
}

fn spool_queue(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("spool/queue"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(READ)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------------------
// External clients

fn python(script: &str, args: &[String]) -> Value {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed by this test and could not be run ({e}); install python3")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python3 failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn swaks(args: &[&str]) -> String {
    let output: Output = Command::new("swaks")
        .args(args)
        .args(["--timeout", "20"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "swaks is needed by this test and could not be run ({e}); install it: apt-get install -y swaks"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "swaks {args:?} failed ({}):\n{text}",
        output.status
    );
    text
}

/// The queue id in a swaks transcript ("<-  250 2.0.0 OK queued as ...", or
/// "<~ " over TLS).
fn swaks_queue_id(transcript: &str) -> String {
    let line = transcript
        .lines()
        .find(|l| l.contains("250 2.0.0 OK queued as "))
        .unwrap_or_else(|| panic!("no queue id in:\n{transcript}"));
    queue_id_of(line)
}

// ---------------------------------------------------------------------------
// 1. smtplib, two recipients

const SMTPLIB_SEND: &str = r#"
import json, smtplib, sys
port = int(sys.argv[1])
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
replies = []
data = s.data
def record(msg):
    r = data(msg)
    replies.append([r[0], r[1].decode()])
    return r
s.data = record
message = (
    "From: Alice <alice@sender.test>\r\n"
    "To: x@example.com, y@example.com\r\n"
    "Subject: two recipients\r\n"
    "\r\n"
    "first line\r\n"
    ".a line that starts with a dot\r\n"
    "..two dots\r\n"
    ".\r\n"
    "last line\r\n"
)
refused = s.sendmail("alice@sender.test", ["x@example.com", "y@example.com"], message)
quit = s.quit()
print(json.dumps({"refused": refused, "data": replies[0], "quit": [quit[0], quit[1].decode()]}))
"#;

#[test]
fn smtplib_two_recipients_are_archived_and_traced() {
    let dir = TempDir::new("smtplib");
    let config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    let out = python(SMTPLIB_SEND, &[server.smtp.to_string()]);
    assert_eq!(out["refused"], serde_json::json!({}), "{out}");
    assert_eq!(out["data"][0], 250, "{out}");
    assert_eq!(out["quit"][0], 221, "{out}");
    let reply = out["data"][1].as_str().unwrap();
    assert!(reply.starts_with("2.0.0 OK queued as "), "{reply}");
    let id = queue_id_of(reply);

    let eml = wait_archived(&server.data, &id);
    let (received, rest) = split_received(&eml);
    assert!(
        received.contains(&format!("by mx.postern.test (Postern) with ESMTP id {id};")),
        "{received}"
    );
    assert!(received.contains("[127.0.0.1]"), "{received}");
    let expected = "From: Alice <alice@sender.test>\r\nTo: x@example.com, y@example.com\r\nSubject: two recipients\r\n\r\nfirst line\r\n.a line that starts with a dot\r\n..two dots\r\n.\r\nlast line\r\n";
    assert_eq!(String::from_utf8_lossy(&rest), expected);

    let trace = wait_trace(&server.data, &id);
    assert_eq!(trace["IngressPoint"], INGRESS, "{trace}");
    assert_eq!(trace["MailFrom"], "alice@sender.test", "{trace}");
    assert_eq!(trace["RuleSet"], "main", "{trace}");
    assert_eq!(trace["MessageSize"], expected.len(), "{trace}");
    let recipients = trace["Recipients"].as_array().unwrap();
    let names: Vec<&str> = recipients
        .iter()
        .map(|r| r["Recipient"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x@example.com", "y@example.com"], "{trace}");
    for r in recipients {
        assert_eq!(r["Rules"][0]["Rule"], "archive-all", "{trace}");
        assert_eq!(r["Actions"][0]["Action"], "Archive", "{trace}");
        assert_eq!(
            r["Actions"][0]["Outcome"], "archived in main-archive",
            "{trace}"
        );
        assert_eq!(r["Dropped"], false, "{trace}");
        assert!(
            r["Traffic"].as_str().unwrap().starts_with("ALLOW"),
            "{trace}"
        );
    }
    // Two recipients with one plan: one archived copy.
    assert_eq!(archived(&server.data).len(), 1);
}

// ---------------------------------------------------------------------------
// 2. Pipelining

#[test]
fn pipelined_commands_get_their_replies_in_order() {
    let dir = TempDir::new("pipelining");
    let config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    let mut c = server.connect();
    c.write(b"EHLO client.postern.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\n");
    let ehlo = c.reply();
    ehlo.check("250-mx.postern.test", "EHLO");
    assert!(ehlo.lines.iter().any(|l| l == "250-PIPELINING"), "{ehlo:?}");
    assert!(
        ehlo.lines.iter().any(|l| l.ends_with("CHUNKING")),
        "{ehlo:?}"
    );
    c.reply().check("250 2.1.0", "MAIL");
    c.reply().check("250 2.1.5", "RCPT 1");
    c.reply().check("250 2.1.5", "RCPT 2");
    c.reply().check("354 ", "DATA");
    // The end of the data, and the next commands, in one write too.
    c.write(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nMAIL FROM:<b@sender.test>\r\nRCPT TO:<z@example.com>\r\nDATA\r\n");
    let first = c.reply();
    first.check("250 2.0.0 OK queued as ", "end of data");
    c.reply().check("250 2.0.0", "RSET");
    c.reply().check("250 2.0.0", "NOOP");
    c.reply().check("250 2.1.0", "MAIL");
    c.reply().check("250 2.1.5", "RCPT");
    c.reply().check("354 ", "DATA");
    c.write(b"Subject: second\r\n\r\nbody 2\r\n.\r\nQUIT\r\n");
    let second = c.reply();
    second.check("250 2.0.0 OK queued as ", "end of data");
    c.reply().check("221 2.0.0", "QUIT");
    assert!(c.closed());

    let (_, rest) = split_received(&wait_archived(&server.data, &first.queue_id()));
    assert_eq!(rest, b"Subject: pipelined\r\n\r\nbody\r\n");
    let (_, rest) = split_received(&wait_archived(&server.data, &second.queue_id()));
    assert_eq!(rest, b"Subject: second\r\n\r\nbody 2\r\n");
}

// ---------------------------------------------------------------------------
// 3. Bad sequences, garbage, errors

#[test]
fn bad_sequences_and_garbage_get_exact_replies() {
    let dir = TempDir::new("sequences");
    let mut config = Config::new(dir.path());
    config.smtp_limits = vec![("MaxErrors", 3)];
    let server = Server::start(dir.path(), &config);

    // MAIL before EHLO; then a normal session goes on.
    let mut c = server.connect();
    c.expect("MAIL FROM:<a@sender.test>", "503 5.5.1");
    c.ehlo();
    c.expect("RCPT TO:<x@example.com>", "503 5.5.1");
    c.expect("RSET", "250 2.0.0");
    c.expect("QUIT", "221 2.0.0");
    assert!(c.closed());

    // DATA before MAIL and DATA before RCPT.
    let mut c = server.connect();
    c.ehlo();
    c.expect("DATA", "503 5.5.1");
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("DATA", "554 5.5.1");
    c.expect("QUIT", "221");

    // Nested MAIL, unknown command.
    let mut c = server.connect();
    c.ehlo();
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("MAIL FROM:<b@sender.test>", "503 5.5.1");
    c.expect("FROB the server", "500 5.5.1");
    c.expect("NOOP", "250 2.0.0");
    c.expect("VRFY postmaster", "252 2.5.2");
    // RSET ends the transaction: RCPT needs a new MAIL.
    c.expect("RSET", "250 2.0.0");
    c.expect("QUIT", "221");

    // RSET in a transaction, then the null sender (bounces) is accepted.
    let mut c = server.connect();
    c.ehlo();
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<x@example.com>", "250 2.1.5");
    c.expect("RSET", "250 2.0.0");
    c.expect("RCPT TO:<x@example.com>", "503 5.5.1");
    let bounce = c.send(
        "",
        &["x@example.com"],
        b"Subject: a bounce\r\n\r\nundeliverable\r\n",
    );
    c.expect("QUIT", "221");
    assert_eq!(wait_trace(&server.data, &bounce)["MailFrom"], "");

    // A line over 4096 bytes: one reply, then the session works (in one
    // write, and split over several).
    let mut c = server.connect();
    c.ehlo();
    c.write(format!("NOOP {}\r\nNOOP\r\n", "a".repeat(5000)).as_bytes());
    c.reply().check("500 5.5.2", "long line");
    c.reply().check("250 2.0.0", "NOOP after the long line");
    // Longer than the server's read buffer: it arrives in several reads.
    c.write(format!("MAIL FROM:<{}@sender.test>\r\n", "a".repeat(40_000)).as_bytes());
    c.reply().check("500 5.5.2", "long line in several reads");
    // The next replies belong to the next commands: one reply per long line.
    let id = c.send(
        "a@sender.test",
        &["x@example.com"],
        b"Subject: after a long line\r\n\r\nok\r\n",
    );
    c.expect("QUIT", "221");
    assert!(c.closed());
    wait_archived(&server.data, &id);

    // A line of exactly 4096 bytes with its CRLF is a line.
    let mut c = server.connect();
    c.ehlo();
    c.expect(&format!("NOOP {}", "b".repeat(4096 - 7)), "250 2.0.0");
    c.expect("QUIT", "221");

    // Binary garbage.
    let mut c = server.connect();
    c.write(b"\x00\xff\xfe\x80\x1b[2J garbage \x01\x02\r\n");
    c.reply().check("500 5.5.1", "garbage");
    c.ehlo();
    c.expect("RSET", "250 2.0.0");
    c.expect("QUIT", "221");

    // MaxErrors: 3 errors, then 421 and the connection closes.
    let mut c = server.connect();
    c.expect("FOO", "500 5.5.1");
    c.expect("BAR", "500 5.5.1");
    c.expect("RCPT TO:<x@example.com>", "503 5.5.1");
    c.reply().check("421 4.7.0", "after MaxErrors errors");
    assert!(c.closed(), "the connection closes after 421");

    // Refused BDAT chunks count as errors too.
    let mut c = server.connect();
    c.ehlo();
    for _ in 0..3 {
        c.write(b"BDAT 5 LAST\r\nabcde");
        c.reply().check("503 5.5.1", "BDAT without MAIL");
    }
    c.reply().check("421 4.7.0", "after MaxErrors refused BDAT");
    assert!(c.closed(), "the connection closes after 421");
}

// ---------------------------------------------------------------------------
// 4. Traffic policy

#[test]
fn traffic_policy_decides_each_recipient() {
    let dir = TempDir::new("policy");
    let mut config = Config::new(dir.path());
    config.default_action = "DENY";
    config.statements = "\n      - Action: ALLOW\n        Conditions:\n          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: ENDS_WITH, Values: [\"@example.com\"]}\n".into();
    let server = Server::start(dir.path(), &config);

    let mut c = server.connect();
    c.ehlo();
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<ok@example.com>", "250 2.1.5");
    c.expect("RCPT TO:<nope@elsewhere.test>", "550 5.7.1");
    c.expect("RCPT TO:<alias@example.com.evil.test>", "550 5.7.1");
    c.expect("DATA", "354");
    c.write(b"Subject: policy\r\n\r\nbody\r\n.\r\n");
    let id = c.reply().check("250 2.0.0", "end of data").queue_id();

    // Only denied recipients: no message.
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<nope@elsewhere.test>", "550 5.7.1");
    c.expect("DATA", "554 5.5.1");
    c.expect("QUIT", "221");

    wait_archived(&server.data, &id);
    let trace = wait_trace(&server.data, &id);
    let recipients = trace["Recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 1, "{trace}");
    assert_eq!(recipients[0]["Recipient"], "ok@example.com");
    assert_eq!(
        recipients[0]["Traffic"], "ALLOW by PolicyStatements[0] of inbound",
        "{trace}"
    );
    let meta: Value = wait_for("the message in the archive index", || {
        archive_get(&server.data, &id)
    });
    assert_eq!(
        meta["Envelope"]["To"],
        serde_json::json!(["ok@example.com"]),
        "{meta}"
    );
}

// ---------------------------------------------------------------------------
// 5. Sizes

#[test]
fn message_size_limit_is_exact() {
    let dir = TempDir::new("sizes");
    let mut config = Config::new(dir.path());
    config.max_message_size = Some(1000);
    let server = Server::start(dir.path(), &config);

    let mut c = server.connect();
    let ehlo = c.ehlo();
    assert!(ehlo.lines.iter().any(|l| l == "250-SIZE 1000"), "{ehlo:?}");
    c.expect("MAIL FROM:<a@sender.test> SIZE=5000", "552 5.3.4");
    c.expect("MAIL FROM:<a@sender.test> SIZE=1001", "552 5.3.4");
    c.expect("MAIL FROM:<a@sender.test> SIZE=1000", "250 2.1.0");
    c.expect("RCPT TO:<x@example.com>", "250 2.1.5");
    c.expect("DATA", "354");
    // 2000 bytes: refused after the final dot, and the session goes on.
    let header = b"Subject: big\r\n\r\n";
    let message = |size: usize| {
        let mut m = header.to_vec();
        while size - m.len() > 52 {
            m.extend_from_slice(&[b'x'; 48]);
            m.extend_from_slice(b"\r\n");
        }
        m.resize(size - 2, b'z');
        m.extend_from_slice(b"\r\n");
        assert_eq!(m.len(), size);
        m
    };
    let mut data = dot_stuff(&message(2000));
    data.extend_from_slice(b".\r\n");
    c.write(&data);
    c.reply().check("552 5.3.4", "2000 bytes");
    c.expect("NOOP", "250 2.0.0");

    // One byte over: refused; exactly at the limit (the bytes between the
    // DATA reply and the final dot, its CRLF included): accepted.
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<x@example.com>", "250 2.1.5");
    c.expect("DATA", "354");
    let mut data = message(1001);
    data.extend_from_slice(b".\r\n");
    c.write(&data);
    c.reply().check("552 5.3.4", "1001 bytes");
    let exact = message(1000);
    let id = c.send("a@sender.test", &["x@example.com"], &exact);

    // BDAT over the limit: refused at the last chunk.
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<x@example.com>", "250 2.1.5");
    c.write(b"BDAT 600\r\n");
    c.write(&[b'y'; 600]);
    c.reply().check("250 2.0.0", "BDAT 600");
    c.write(b"BDAT 600 LAST\r\n");
    c.write(&[b'y'; 600]);
    c.reply().check("552 5.3.4", "BDAT over the limit");
    c.expect("QUIT", "221");

    let (_, rest) = split_received(&wait_archived(&server.data, &id));
    assert_eq!(rest, exact);
    let trace = wait_trace(&server.data, &id);
    assert_eq!(trace["MessageSize"], 1000, "{trace}");
    // Nothing else reached the archive, and nothing is left half-written.
    let all = archived(&server.data);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(spool_queue(&server.data).is_empty());
    let incoming = std::fs::read_dir(server.data.join("spool/incoming"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        incoming, 0,
        "refused messages leave nothing in spool/incoming"
    );
}

// ---------------------------------------------------------------------------
// 6. SMTP smuggling

#[test]
fn only_crlf_dot_crlf_ends_a_message() {
    let dir = TempDir::new("smuggling");
    let config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    let body: &[u8] = b"Subject: smuggling\r\n\r\nbefore\r\n\
lf-dot-lf\n.\nMAIL FROM:<evil1@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled 1\r\n\r\nevil 1\r\n\
cr-dot-crlf\r.\r\nMAIL FROM:<evil2@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled 2\r\n\r\nevil 2\r\n\
lf-dot-crlf\n.\r\nMAIL FROM:<evil3@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled 3\r\n\r\nevil 3\r\n\
crlf-dot-lf\r\n.\nMAIL FROM:<evil4@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled 4\r\n\r\nevil 4\r\n\
after\r\n";
    let mut c = server.connect();
    c.ehlo();
    c.expect("MAIL FROM:<honest@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<x@example.com>", "250 2.1.5");
    c.expect("DATA", "354");
    // All in one write, with QUIT after the real end: a server that ends
    // the message early answers the smuggled commands.
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\nQUIT\r\n");
    c.write(&data);
    let end = c.reply();
    end.check("250 2.0.0 OK queued as ", "end of data");
    c.reply().check("221 2.0.0", "QUIT, and nothing in between");
    assert!(c.closed());

    let eml = wait_archived(&server.data, &end.queue_id());
    let (_, rest) = split_received(&eml);
    // The whole body, as RFC 5321 4.5.2 reads it: the line ".\nMAIL ..."
    // (after a CRLF) starts with a dot that is not alone, so the dot goes.
    let expected =
        String::from_utf8_lossy(body).replace("crlf-dot-lf\r\n.\nMAIL", "crlf-dot-lf\r\n\nMAIL");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        expected,
        "the archived message is the whole body"
    );
    for n in 1..=4 {
        assert!(contains(
            &rest,
            format!("Subject: smuggled {n}\r\n\r\nevil {n}\r\n").as_bytes()
        ));
    }
    // A second message, then: still exactly two in the archive and trace.
    let mut c = server.connect();
    c.ehlo();
    let sentinel = c.send(
        "sentinel@sender.test",
        &["x@example.com"],
        b"Subject: sentinel\r\n\r\nok\r\n",
    );
    wait_archived(&server.data, &sentinel);
    wait_trace(&server.data, &sentinel);
    assert_eq!(archived(&server.data).len(), 2);
    let froms: Vec<String> = trace_records(&server.data)
        .iter()
        .map(|r| r["MailFrom"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(!froms.iter().any(|f| f.contains("attacker")), "{froms:?}");
}

// ---------------------------------------------------------------------------
// 7. BDAT

#[test]
fn bdat_chunks_are_archived_byte_for_byte() {
    let dir = TempDir::new("bdat");
    let config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    let chunks: [&[u8]; 3] = [
        b"Subject: chunked\r\n\r\n",
        b".a dot that is not stuffed\r\nbare\nlf\r\n",
        b"\r\n.\r\nlast\r\n",
    ];
    let mut c = server.connect();
    c.ehlo();
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<x@example.com>", "250 2.1.5");
    let mut sent = 0;
    for chunk in &chunks[..2] {
        c.write(format!("BDAT {}\r\n", chunk.len()).as_bytes());
        c.write(chunk);
        sent += chunk.len();
        c.reply()
            .check(&format!("250 2.0.0 {sent} octets received"), "BDAT");
    }
    c.write(format!("BDAT {} LAST\r\n", chunks[2].len()).as_bytes());
    c.write(chunks[2]);
    let id = c
        .reply()
        .check("250 2.0.0 OK queued as ", "BDAT LAST")
        .queue_id();
    // DATA after BDAT in a new transaction works; BDAT without MAIL does not.
    c.write(b"BDAT 3 LAST\r\nabc");
    c.reply().check("503 5.5.1", "BDAT without MAIL");
    c.expect("QUIT", "221");

    let (received, rest) = split_received(&wait_archived(&server.data, &id));
    assert!(received.contains(&format!(" id {id}")), "{received}");
    assert_eq!(rest, chunks.concat());
}

// ---------------------------------------------------------------------------
// 8. TLS: STARTTLS and implicit TLS, with swaks and smtplib

const SMTPLIB_TLS: &str = r#"
import json, smtplib, ssl, sys
port, implicit = int(sys.argv[1]), sys.argv[2] == "implicit"
ctx = ssl._create_unverified_context()
if implicit:
    s = smtplib.SMTP_SSL("127.0.0.1", port, timeout=20, context=ctx)
    s.ehlo("client.postern.test")
    offered = None
else:
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("client.postern.test")
    offered = s.has_extn("starttls")
    code, _ = s.starttls(context=ctx)
    assert code == 220, code
    s.ehlo("client.postern.test")
version = s.sock.version()
again = s.has_extn("starttls")
s.mail("tls@sender.test")
s.rcpt("x@example.com")
code, text = s.data("Subject: tls via smtplib\r\n\r\nsecret body\r\n")
s.quit()
print(json.dumps({"offered": offered, "again": again, "version": version, "code": code, "text": text.decode()}))
"#;

/// Commands pipelined after STARTTLS in clear text are discarded, not run
/// inside TLS (CVE-2011-0411); the session starts over after the handshake.
const STARTTLS_INJECTION: &str = r#"
import json, socket, ssl, sys
port = int(sys.argv[1])
sock = socket.create_connection(("127.0.0.1", port), timeout=20)
f = sock.makefile("rb")
def reply(f):
    lines = []
    while True:
        line = f.readline().decode()
        lines.append(line.rstrip("\r\n"))
        if len(line) < 4 or line[3] != "-":
            return lines
out = {"greeting": reply(f)}
sock.sendall(b"EHLO client.postern.test\r\nSTARTTLS\r\nNOOP injected\r\nMAIL FROM:<injected@attacker.test>\r\n")
out["ehlo"] = reply(f)
out["starttls"] = reply(f)
tls = ssl._create_unverified_context().wrap_socket(sock, server_hostname="localhost")
f = tls.makefile("rb")
tls.sendall(b"MAIL FROM:<a@sender.test>\r\n")
out["mail_before_ehlo"] = reply(f)
tls.sendall(b"EHLO client.postern.test\r\n")
out["ehlo_tls"] = reply(f)
tls.sendall(b"STARTTLS\r\n")
out["starttls_again"] = reply(f)
tls.sendall(b"QUIT\r\n")
out["quit"] = reply(f)
print(json.dumps(out))
"#;

#[test]
fn starttls_and_implicit_tls() {
    let dir = TempDir::new("tls");
    let mut config = Config::new(dir.path());
    config.smtp_tls = Some(config.spare);
    let server = Server::start(dir.path(), &config);
    let tls_port = server.smtp_tls.unwrap();
    let check = |id: &str| {
        let (received, _) = split_received(&wait_archived(&server.data, id));
        assert!(
            received.contains(&format!("with ESMTPS id {id}")),
            "{received}"
        );
        assert!(received.contains("(version=TLSv1."), "{received}");
    };

    // STARTTLS is offered, and not twice.
    let mut c = server.connect();
    let ehlo = c.ehlo();
    assert!(
        ehlo.lines.iter().any(|l| l.ends_with("STARTTLS")),
        "{ehlo:?}"
    );
    c.expect("QUIT", "221");

    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{}", server.smtp),
        "--tls",
        "--from",
        "swaks@sender.test",
        "--to",
        "x@example.com",
        "--header",
        "Subject: swaks starttls",
    ]);
    assert!(out.contains("<~  250"), "the mail went over TLS:\n{out}");
    check(&swaks_queue_id(&out));

    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{tls_port}"),
        "--tlsc",
        "--from",
        "swaks@sender.test",
        "--to",
        "x@example.com",
        "--header",
        "Subject: swaks implicit tls",
    ]);
    assert!(
        out.contains("<~  220"),
        "the greeting came over TLS:\n{out}"
    );
    check(&swaks_queue_id(&out));

    let out = python(SMTPLIB_TLS, &[server.smtp.to_string(), "starttls".into()]);
    assert_eq!(out["offered"], true, "{out}");
    assert_eq!(
        out["again"], false,
        "STARTTLS is not offered inside TLS: {out}"
    );
    assert_eq!(out["code"], 250, "{out}");
    check(&queue_id_of(out["text"].as_str().unwrap()));

    let out = python(SMTPLIB_TLS, &[tls_port.to_string(), "implicit".into()]);
    assert_eq!(out["again"], false, "{out}");
    assert_eq!(out["code"], 250, "{out}");
    assert!(
        out["version"].as_str().unwrap().starts_with("TLSv1."),
        "{out}"
    );
    check(&queue_id_of(out["text"].as_str().unwrap()));

    let out = python(STARTTLS_INJECTION, &[server.smtp.to_string()]);
    let first = |k: &str| out[k][0].as_str().unwrap().to_string();
    assert!(first("starttls").starts_with("220 2.0.0"), "{out}");
    assert!(
        first("mail_before_ehlo").starts_with("503 5.5.1"),
        "the injected commands were not run and EHLO is needed again: {out}"
    );
    assert!(first("ehlo_tls").starts_with("250-"), "{out}");
    assert!(
        !out["ehlo_tls"].to_string().contains("STARTTLS"),
        "no STARTTLS inside TLS: {out}"
    );
    assert!(first("starttls_again").starts_with("503 5.5.1"), "{out}");
    assert!(first("quit").starts_with("221"), "{out}");
    assert!(!server.log().contains("injected@attacker.test"));

    // A plain client on the implicit-TLS port does not get a greeting in
    // clear text.
    let mut c = Client::open(tls_port);
    c.write(b"EHLO client.postern.test\r\n");
    let mut got = Vec::new();
    let _ = c.stream.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"220"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

// ---------------------------------------------------------------------------
// 9. AUTH ingress point

const SMTPLIB_AUTH: &str = r#"
import base64, json, smtplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl._create_unverified_context()
b64 = lambda s: base64.b64encode(s.encode()).decode()
def session():
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("client.postern.test")
    s.starttls(context=ctx)
    s.ehlo("client.postern.test")
    return s
def r(reply):
    return [reply[0], reply[1].decode()]
out = {}
s = session()
out["features"] = s.esmtp_features.get("auth", "").strip()
out["plain"] = r(s.docmd("AUTH", "PLAIN " + b64("\0" + user + "\0" + password)))
out["again"] = r(s.docmd("AUTH", "PLAIN " + b64("\0" + user + "\0" + password)))
s.mail("auth@sender.test")
s.rcpt("x@example.com")
out["data"] = r(s.data("Subject: authenticated\r\n\r\nhello\r\n"))
s.quit()
s = session()
out["wrong_password"] = r(s.docmd("AUTH", "PLAIN " + b64("\0" + user + "\0wrong-" + password)))
out["mail_after_failure"] = r(s.docmd("MAIL", "FROM:<a@sender.test>"))
s.quit()
s = session()
out["wrong_user"] = r(s.docmd("AUTH", "PLAIN " + b64("\0someone-else\0" + password)))
s.quit()
s = session()
out["plain_empty"] = r(s.docmd("AUTH", "PLAIN"))
out["plain_cancel"] = r(s.docmd("*"))
out["plain_empty_again"] = r(s.docmd("AUTH", "PLAIN"))
out["plain_response"] = r(s.docmd(b64("\0" + user + "\0" + password)))
s.quit()
s = session()
out["login"] = r(s.docmd("AUTH", "LOGIN"))
out["login_user"] = r(s.docmd(b64(user)))
out["login_password"] = r(s.docmd(b64(password)))
s.mail("login@sender.test")
s.rcpt("x@example.com")
out["login_data"] = r(s.data("Subject: auth login\r\n\r\nhello\r\n"))
s.quit()
print(json.dumps(out))
"#;

#[test]
fn auth_ingress_point_needs_tls_and_the_password() {
    let dir = TempDir::new("auth");
    let mut config = Config::new(dir.path());
    config.auth = true;
    let server = Server::start(dir.path(), &config);

    // Without TLS: no AUTH offered, no mail, no AUTH.
    let mut c = server.connect();
    let ehlo = c.ehlo();
    assert!(!ehlo.text().contains("AUTH"), "{ehlo:?}");
    assert!(ehlo.text().contains("STARTTLS"), "{ehlo:?}");
    c.expect("MAIL FROM:<a@sender.test>", "530 5.7.0");
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            base64(format!("\0{INGRESS}\0{PASSWORD}").as_bytes())
        ),
        "538 5.7.11",
    );
    c.expect("QUIT", "221");

    let out = python(
        SMTPLIB_AUTH,
        &[server.smtp.to_string(), INGRESS.into(), PASSWORD.into()],
    );
    let pair = |k: &str| {
        (
            out[k][0].as_u64().unwrap(),
            out[k][1].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(out["features"], "PLAIN LOGIN", "{out}");
    assert_eq!(pair("plain").0, 235, "{out}");
    assert!(pair("plain").1.starts_with("2.7.0"), "{out}");
    assert_eq!(pair("again").0, 503, "{out}");
    assert_eq!(pair("data").0, 250, "{out}");
    assert_eq!(pair("wrong_password").0, 535, "{out}");
    assert!(pair("wrong_password").1.starts_with("5.7.8"), "{out}");
    assert_eq!(pair("mail_after_failure").0, 530, "{out}");
    assert_eq!(pair("wrong_user").0, 535, "{out}");
    assert_eq!(pair("plain_empty"), (334, String::new()), "{out}");
    assert_eq!(pair("plain_cancel").0, 501, "{out}");
    assert_eq!(pair("plain_empty_again").0, 334, "{out}");
    assert_eq!(pair("plain_response").0, 235, "{out}");
    assert_eq!(pair("login").0, 334, "{out}");
    assert_eq!(pair("login").1, "VXNlcm5hbWU6", "{out}");
    assert_eq!(pair("login_user").0, 334, "{out}");
    assert_eq!(pair("login_user").1, "UGFzc3dvcmQ6", "{out}");
    assert_eq!(pair("login_password").0, 235, "{out}");
    assert_eq!(pair("login_data").0, 250, "{out}");
    for key in ["data", "login_data"] {
        let id = queue_id_of(&pair(key).1);
        let (received, _) = split_received(&wait_archived(&server.data, &id));
        assert!(
            received.contains(&format!("with ESMTPSA id {id}")),
            "{received}"
        );
    }

    for mechanism in ["PLAIN", "LOGIN"] {
        let out = swaks(&[
            "--server",
            &format!("127.0.0.1:{}", server.smtp),
            "--tls",
            "--auth",
            mechanism,
            "--auth-user",
            INGRESS,
            "--auth-password",
            PASSWORD,
            "--from",
            "swaks@sender.test",
            "--to",
            "x@example.com",
        ]);
        assert!(out.contains("235 2.7.0"), "{out}");
        wait_archived(&server.data, &swaks_queue_id(&out));
    }

    // The password never reaches the log, in clear or in base64.
    assert_password_not_logged(&server.log());
}

fn assert_password_not_logged(log: &str) {
    let encodings = [
        PASSWORD.to_string(),
        base64(PASSWORD.as_bytes()),
        base64(format!("\0{INGRESS}\0{PASSWORD}").as_bytes()),
    ];
    assert!(log.contains("authentication failed"), "{log}");
    for secret in &encodings {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} in the log:\n{log}"
        );
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// 10. Limits

#[test]
fn recipient_and_connection_limits() {
    let dir = TempDir::new("limits");
    let mut config = Config::new(dir.path());
    config.smtp_limits = vec![("MaxRecipients", 2), ("MaxConnectionsPerIp", 2)];
    let server = Server::start(dir.path(), &config);

    let mut first = server.connect();
    first.ehlo();
    first.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    first.expect("RCPT TO:<one@example.com>", "250 2.1.5");
    first.expect("RCPT TO:<two@example.com>", "250 2.1.5");
    first.expect("RCPT TO:<three@example.com>", "452 4.5.3");
    first.expect("DATA", "354");
    first.write(b"Subject: two of three\r\n\r\nbody\r\n.\r\n");
    let id = first.reply().check("250 2.0.0", "end of data").queue_id();

    let mut second = server.connect();
    second.ehlo();
    let mut third = Client::open(server.smtp);
    third
        .reply()
        .check("421 4.7.0", "third connection from one address");
    assert!(third.closed());
    // The first two still work.
    first.expect("NOOP", "250");
    second.expect("NOOP", "250");
    first.expect("QUIT", "221");
    assert!(first.closed());
    // Once one has gone, a new connection is accepted (the server notices
    // the close asynchronously: poll).
    wait_for("a connection slot freed by QUIT", || {
        let mut c = Client::open(server.smtp);
        let reply = c.reply();
        (reply.code == 220).then_some(())
    });

    let trace = wait_trace(&server.data, &id);
    assert_eq!(trace["Recipients"].as_array().unwrap().len(), 2, "{trace}");
}

#[test]
fn idle_session_times_out() {
    let dir = TempDir::new("timeout");
    let mut config = Config::new(dir.path());
    config.smtp_limits = vec![("CommandTimeoutSeconds", 1)];
    let server = Server::start(dir.path(), &config);
    let mut c = server.connect();
    c.ehlo();
    // Say nothing: the server ends the session.
    c.reply().check("421 4.4.2", "idle session");
    assert!(c.closed());
}

// Regressions found in review.

/// A BDAT message half sent, then a new EHLO: the new envelope never
/// continues the old spool file (whose envelope and content an attacker
/// chose before, say, STARTTLS).
#[test]
fn a_new_greeting_abandons_a_half_sent_bdat_message() {
    let dir = TempDir::new("bdatreset");
    let config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    let mut c = server.connect();
    c.ehlo();
    c.expect("MAIL FROM:<evil@attacker.test>", "250 2.1.0");
    c.expect("RCPT TO:<attacker@example.com>", "250 2.1.5");
    let injected = b"X-Injected: by-the-attacker\r\n";
    c.write(format!("BDAT {}\r\n", injected.len()).as_bytes());
    c.write(injected);
    c.reply().check("250 2.0.0", "first chunk");
    c.ehlo();
    c.expect("MAIL FROM:<good@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<victim@example.com>", "250 2.1.5");
    let message = b"Subject: private\r\n\r\nsecret\r\n";
    c.write(format!("BDAT {} LAST\r\n", message.len()).as_bytes());
    c.write(message);
    let id = c.reply().check("250 2.0.0", "last chunk").queue_id();
    let archived = wait_archived(&server.data, &id);
    let (_, body) = split_received(&archived);
    assert_eq!(
        body,
        message.to_vec(),
        "{}",
        String::from_utf8_lossy(&archived)
    );
    let trace = wait_trace(&server.data, &id);
    let recipients: Vec<&str> = trace["Recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Recipient"].as_str().unwrap())
        .collect();
    assert_eq!(recipients, ["victim@example.com"], "{trace}");
}

/// A client that sends commands and never reads the replies loses its
/// session after the command timeout instead of holding its slot.
#[test]
fn a_client_that_never_reads_is_cut_off() {
    let dir = TempDir::new("noread");
    let mut config = Config::new(dir.path());
    config.smtp_limits = vec![("CommandTimeoutSeconds", 1), ("MaxConnectionsPerIp", 1)];
    let server = Server::start(dir.path(), &config);
    let mut hog = Client::open(server.smtp);
    hog.stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Enough pipelined NOOPs that their replies fill every socket buffer.
    let noops = b"NOOP\r\n".repeat(200_000);
    let _ = hog.stream.write_all(&noops);
    wait_for("the slot of a client that does not read", || {
        let mut c = Client::open(server.smtp);
        (c.reply().code == 220).then_some(())
    });
}

/// Two Archive actions into one archive keep two copies.
#[test]
fn two_archive_actions_into_one_archive_keep_both_copies() {
    let dir = TempDir::new("twoarchives");
    let mut config = Config::new(dir.path());
    config.rules = "      - Name: tag-a\n        Conditions:\n          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: EQUALS, Values: [a@example.com]}\n        Actions:\n          - AddHeader: {HeaderName: X-Group, HeaderValue: a}\n          - Archive: {TargetArchive: main-archive}\n      - Name: archive-b\n        Conditions:\n          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: EQUALS, Values: [b@example.com]}\n        Actions:\n          - Archive: {TargetArchive: main-archive}\n".into();
    let server = Server::start(dir.path(), &config);
    let mut c = server.connect();
    c.ehlo();
    let id = c.send(
        "s@sender.test",
        &["a@example.com", "b@example.com"],
        b"Subject: two copies\r\n\r\nbody\r\n",
    );
    let first = wait_archived(&server.data, &id);
    assert!(
        contains(&first, b"X-Group: a"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let second = wait_archived(&server.data, &format!("{id}-1-0"));
    assert!(
        !contains(&second, b"X-Group"),
        "{}",
        String::from_utf8_lossy(&second)
    );
}

/// Renaming an ingress point that has listeners needs a restart: a reload
/// that tries is refused and mail keeps flowing under the running config.
#[test]
fn reload_that_removes_a_listening_ingress_point_is_refused() {
    let dir = TempDir::new("renamed");
    let config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    std::fs::write(
        dir.path().join("postern.yaml"),
        config.render().replace(
            &format!("IngressPointName: {INGRESS}"),
            "IngressPointName: renamed",
        ),
    )
    .unwrap();
    server.signal("HUP");
    let log = server.wait_log("config not reloaded", 1);
    assert!(log.contains("needs a restart"), "{log}");
    let mut c = server.connect();
    c.ehlo();
    let id = c.send(
        "s@sender.test",
        &["x@example.com"],
        b"Subject: still\r\n\r\nbody\r\n",
    );
    wait_archived(&server.data, &id);
}

#[test]
fn global_connection_limit_answers_421_busy() {
    let dir = TempDir::new("maxconn");
    let mut config = Config::new(dir.path());
    config.smtp_limits = vec![("MaxConnections", 2)];
    let server = Server::start(dir.path(), &config);
    let mut first = server.connect();
    let mut second = server.connect();
    let mut third = Client::open(server.smtp);
    third
        .reply()
        .check("421 4.3.2", "third connection over MaxConnections");
    assert!(third.closed());
    first.expect("NOOP", "250");
    second.expect("NOOP", "250");
}

#[test]
fn data_timeout_ends_a_stalled_message() {
    let dir = TempDir::new("datatimeout");
    let mut config = Config::new(dir.path());
    config.smtp_limits = vec![("DataTimeoutSeconds", 1)];
    let server = Server::start(dir.path(), &config);
    let mut c = server.connect();
    c.ehlo();
    c.expect("MAIL FROM:<a@sender.test>", "250 2.1.0");
    c.expect("RCPT TO:<one@example.com>", "250 2.1.5");
    c.expect("DATA", "354");
    c.write(b"Subject: never finished\r\n\r\npart of a bo");
    // Then nothing: the server gives up on the message.
    c.reply().check("421 4.4.2", "stalled DATA");
    assert!(c.closed());
    assert!(
        spool_queue(&server.data).is_empty(),
        "nothing half-received is queued"
    );
}

#[test]
fn command_line_limit_is_configurable() {
    let dir = TempDir::new("linelimit");
    let mut config = Config::new(dir.path());
    config.smtp_limits = vec![("MaxLineLength", 600)];
    let server = Server::start(dir.path(), &config);
    let mut c = server.connect();
    c.ehlo();
    let long = format!("NOOP {}\r\n", "x".repeat(700));
    c.write(long.as_bytes());
    c.reply().check("500 5.5.2", "line over MaxLineLength");
    let fits = format!("NOOP {}", "x".repeat(500));
    c.cmd(&fits).check("250 ", "line within MaxLineLength");
}

// ---------------------------------------------------------------------------
// 11. SIGHUP reload

#[test]
fn sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_invalid() {
    let dir = TempDir::new("reload");
    let mut config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    let send = |subject: &str| {
        let mut c = server.connect();
        c.ehlo();
        let id = c.send(
            "a@sender.test",
            &["x@example.com"],
            format!("Subject: {subject}\r\n\r\nbody\r\n").as_bytes(),
        );
        c.expect("QUIT", "221");
        wait_archived(&server.data, &id)
    };
    let before = send("before");
    assert!(!contains(&before, b"X-Reloaded"));

    config.rules = "      - Name: tag\n        Actions:\n          - AddHeader: {HeaderName: X-Reloaded, HeaderValue: \"yes\"}\n          - Archive: {TargetArchive: main-archive}\n".into();
    std::fs::write(dir.path().join("postern.yaml"), config.render()).unwrap();
    server.signal("HUP");
    server.wait_log("config reloaded", 1);
    let after = send("after");
    assert!(
        after.starts_with(b"X-Reloaded: yes\r\nReceived: "),
        "{}",
        String::from_utf8_lossy(&after)
    );

    // An invalid config: the errors are logged, the running config stays.
    std::fs::write(
        dir.path().join("postern.yaml"),
        config.render().replace("Name: tag", "Nmae: tag"),
    )
    .unwrap();
    server.signal("HUP");
    let log = server.wait_log("config not reloaded", 1);
    assert!(log.contains("RuleSets[0].Rules[0]"), "{log}");
    assert!(log.contains("Nmae"), "{log}");
    let kept = send("kept");
    assert!(
        kept.starts_with(b"X-Reloaded: yes\r\n"),
        "{}",
        String::from_utf8_lossy(&kept)
    );
    let (status, body) = http_get(server.http, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
}

// ---------------------------------------------------------------------------
// 12. SIGTERM

#[test]
fn sigterm_stops_cleanly_and_keeps_acknowledged_mail() {
    let dir = TempDir::new("sigterm");
    let config = Config::new(dir.path());
    let mut server = Server::start(dir.path(), &config);
    let mut c = server.connect();
    c.ehlo();
    let first = c.send(
        "a@sender.test",
        &["x@example.com"],
        b"Subject: before\r\n\r\nbody\r\n",
    );
    wait_archived(&server.data, &first);
    // Acknowledged, then at once SIGTERM.
    let last = c.send(
        "a@sender.test",
        &["x@example.com"],
        b"Subject: just before SIGTERM\r\n\r\nbody\r\n",
    );
    server.signal("TERM");
    // The idle session is told, and closed.
    c.reply().check("421 4.3.2", "idle session at shutdown");
    assert!(c.closed());
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", server.log());

    let archived_now = archived(&server.data)
        .iter()
        .filter(|(q, _)| *q == last)
        .count();
    let spooled = spool_queue(&server.data).contains(&last);
    assert!(
        archived_now == 1 || spooled,
        "message {last} acknowledged before SIGTERM is neither archived nor spooled"
    );
    drop(server);

    let server = Server::run(dir.path(), &config);
    wait_archived(&server.data, &last);
    wait_for("an empty spool", || {
        spool_queue(&server.data).is_empty().then_some(())
    });
    for id in [&first, &last] {
        let n = archived(&server.data)
            .iter()
            .filter(|(q, _)| q == id)
            .count();
        assert_eq!(n, 1, "message {id} archived {n} times");
    }
}

// ---------------------------------------------------------------------------
// 13. SIGKILL under load

#[test]
fn sigkill_under_load_loses_and_duplicates_nothing() {
    const MESSAGES: usize = 200;
    const SESSIONS: usize = 4;
    let dir = TempDir::new("crash");
    let config = Config::new(dir.path());
    let mut server = Server::start(dir.path(), &config);
    let kill_after = std::env::var("POSTERN_CRASH_AFTER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            30 + (std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                % 121) as usize
        });
    eprintln!("SIGKILL after {kill_after} acknowledged messages (POSTERN_CRASH_AFTER to repeat)");

    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let written = Arc::new(Mutex::new(HashSet::<usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.smtp;
    let clients: Vec<_> = (0..SESSIONS)
        .map(|_| {
            let (next, acks, acked, written, stop) = (
                next.clone(),
                acks.clone(),
                acked.clone(),
                written.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                // Every failure (the server is killed) ends the session.
                let run = || -> Option<()> {
                    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
                    stream.set_read_timeout(Some(READ)).ok()?;
                    let mut reader = std::io::BufReader::new(stream.try_clone().ok()?);
                    let mut reply = || -> Option<String> {
                        use std::io::BufRead;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).ok()? == 0 {
                                return None;
                            }
                            if line.as_bytes().get(3) != Some(&b'-') {
                                return Some(line.trim_end().to_string());
                            }
                        }
                    };
                    reply()?;
                    stream.write_all(b"EHLO load.postern.test\r\n").ok()?;
                    reply()?;
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= MESSAGES || stop.load(Ordering::SeqCst) {
                            let _ = stream.write_all(b"QUIT\r\n");
                            return Some(());
                        }
                        let message = format!(
                            "MAIL FROM:<load@sender.test>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n\
Message-ID: <crash-{n}@postern.test>\r\nSubject: message {n}\r\n\r\n{}\r\n.\r\n",
                            format!("line of message {n}\r\n").repeat(20)
                        );
                        written.lock().unwrap().insert(n);
                        stream.write_all(message.as_bytes()).ok()?;
                        for _ in 0..3 {
                            let r = reply()?;
                            assert!(r.starts_with('2') || r.starts_with("354"), "{r}");
                        }
                        let end = reply()?;
                        assert!(end.starts_with("250 2.0.0 OK queued as "), "{end}");
                        acked.lock().unwrap().push((n, queue_id_of(&end)));
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                };
                run();
            })
        })
        .collect();
    // Kill at the chosen moment: messages are in flight in every session.
    wait_for("acknowledged messages", || {
        (acks.load(Ordering::SeqCst) >= kill_after).then_some(())
    });
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let written = written.lock().unwrap().clone();
    drop(server);

    let server = Server::run(dir.path(), &config);
    wait_for("an empty spool after the restart", || {
        spool_queue(&server.data).is_empty().then_some(())
    });
    // Every archived message is one the client sent, at most once; every
    // acknowledged message is archived exactly once.
    let mut by_message: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (id, path) in archived(&server.data) {
        let eml = std::fs::read_to_string(&path).unwrap();
        let n: usize = eml
            .split("Message-ID: <crash-")
            .nth(1)
            .and_then(|s| s.split('@').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{} is not a message of the client", path.display()));
        assert!(written.contains(&n), "message {n} was never sent");
        assert!(eml.contains(&format!("line of message {n}\r\n").repeat(20)));
        by_message.entry(n).or_default().push(id.clone());
        *by_id.entry(id).or_default() += 1;
    }
    for (n, ids) in &by_message {
        assert_eq!(
            ids.len(),
            1,
            "message {n} archived {} times: {ids:?}",
            ids.len()
        );
    }
    for (n, id) in &acked {
        assert_eq!(
            by_id.get(id).copied().unwrap_or(0),
            1,
            "acknowledged message {n} ({id}) must be archived exactly once"
        );
        assert_eq!(by_message[n], std::slice::from_ref(id));
    }
    let acked_ids: HashSet<&String> = acked.iter().map(|(_, id)| id).collect();
    let unacknowledged = by_id.keys().filter(|id| !acked_ids.contains(id)).count();
    eprintln!(
        "{} acknowledged, {} archived, {unacknowledged} committed without a 250 seen",
        acked.len(),
        by_id.len()
    );
    assert!(acked.len() >= kill_after);
    let corrupt = std::fs::read_dir(server.data.join("spool/corrupt"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(corrupt, 0, "no spool file is corrupt after SIGKILL");
}

// ---------------------------------------------------------------------------
// 14. HTTP

#[test]
fn healthz_and_metrics() {
    let dir = TempDir::new("metrics");
    let config = Config::new(dir.path());
    let server = Server::start(dir.path(), &config);
    let (status, body) = http_get(server.http, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));

    let mut c = server.connect();
    c.ehlo();
    let id = c.send(
        "a@sender.test",
        &["x@example.com"],
        b"Subject: metrics\r\n\r\nbody\r\n",
    );
    c.expect("QUIT", "221");
    wait_archived(&server.data, &id);
    let names = [
        "postern_smtp_messages_accepted_total{",
        "postern_smtp_sessions_total{",
        "postern_actions_total{",
        "postern_spool_depth",
        "postern_pipeline_messages_total{",
        "postern_rule_matches_total{",
    ];
    let metrics = wait_for("every metric after a message", || {
        let (status, body) = http_get(server.http, "/metrics");
        assert_eq!(status, 200);
        names.iter().all(|n| body.contains(n)).then_some(body)
    });
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert_eq!(
        value("postern_smtp_messages_accepted_total{ingress_point=\"mx-test\"}"),
        1.0
    );
    assert!(
        metrics.contains("postern_actions_total{action=\"Archive\",outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rule=\"archive-all\""),
        "postern_rule_matches_total names the rule:\n{metrics}"
    );
    let (status, _) = http_get(server.http, "/nothing-here");
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------
// 15. The embedded default

#[test]
fn no_config_runs_the_embedded_default() {
    for port in [2525, 8025] {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!(
                "SKIPPED no_config_runs_the_embedded_default: 127.0.0.1:{port} is taken by another program"
            );
            return;
        }
    }
    let dir = TempDir::new("default");
    let mut server = Server::spawn(dir.path(), None);
    server.wait_ready();
    let said = std::fs::read_to_string(&server.stdout).unwrap();
    assert!(said.contains("127.0.0.1:2525"), "{said}");
    let mut c = server.connect();
    c.ehlo();
    let id = c.send(
        "a@sender.test",
        &["anyone@anywhere.test"],
        b"Subject: default\r\n\r\nbody\r\n",
    );
    c.expect("QUIT", "221");
    let (received, rest) = split_received(&wait_archived(&dir.path().join("data"), &id));
    assert!(received.contains("by localhost (Postern)"), "{received}");
    assert_eq!(rest, b"Subject: default\r\n\r\nbody\r\n");
    let (status, _) = http_get(8025, "/healthz");
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------
// 16. What the server cannot do is refused at start

#[test]
fn action_target_without_a_backend_is_refused_at_start() {
    let dir = TempDir::new("unmapped");
    let mut config = Config::new(dir.path());
    config.rules = format!(
        "{ARCHIVE_ALL}  - RuleSetName: other\n    Rules:\n      - Name: first\n        Actions: [{{Drop: {{}}}}]\n      - Name: mailbox\n        Actions:\n          - Archive: {{TargetArchive: main-archive}}\n          - DeliverToMailbox: {{MailboxArn: \"arn:aws:workmail:us-east-1:000000000000:organization/m-1\", RoleArn: \"arn:aws:iam::000000000000:role/r\"}}\n"
    );
    std::fs::write(dir.path().join("postern.yaml"), config.render()).unwrap();
    // In the guard: a server that starts anyway is killed at the end.
    let mut server = Server::spawn(dir.path(), Some(&config));
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("RuleSets[1].Rules[1].Actions[1].DeliverToMailbox.MailboxArn: arn:aws:workmail:us-east-1:000000000000:organization/m-1 has no backend under Server.Mailboxes"),
        "{log}"
    );
    assert!(
        !std::fs::read_to_string(&server.stdout)
            .unwrap()
            .contains("SMTP on"),
        "it never listened"
    );
}

// ---------------------------------------------------------------------------
// 17. A port it cannot listen on is refused at start

#[test]
fn http_port_taken_is_refused_at_start() {
    let dir = TempDir::new("http-taken");
    let mut config = Config::new(dir.path());
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    config.http = taken.local_addr().unwrap().port();
    std::fs::write(dir.path().join("postern.yaml"), config.render()).unwrap();
    let mut server = Server::spawn(dir.path(), Some(&config));
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{}", config.http)),
        "the error names the address:\n{log}"
    );
    drop(taken);
}
