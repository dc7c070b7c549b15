//! What the end-to-end tests of actions share: temporary directories, free
//! ports, `postern serve` processes, waits, the trace and the archive, and
//! the peers the tests start (a small HTTP server; other peers are started
//! by the tests themselves).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound of every wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// A directory removed at the end of a test that passed (kept, and named,
/// when it failed).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "postern-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
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

/// `n` distinct free loopback ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Polls `f` every 20 ms until it gives a value; fails after [`WAIT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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

/// A running `postern serve` on `<dir>/postern.yaml`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub smtp: u16,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl Server {
    /// Writes `config` into `dir/postern.yaml` and starts the server.
    pub fn start(dir: &Path, smtp: u16, config: &str) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("postern.yaml"), config).unwrap();
        Server::run(dir, smtp)
    }

    /// Starts the server on the config already in `dir`.
    pub fn run(dir: &Path, smtp: u16) -> Server {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let tag = STARTS.fetch_add(1, Ordering::Relaxed);
        let stdout = dir.join(format!("stdout-{tag}.log"));
        let stderr = dir.join(format!("stderr-{tag}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("serve")
            .arg("-c")
            .arg(dir.join("postern.yaml"))
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,postern_pipeline=debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("postern starts");
        let mut server = Server {
            child,
            dir: dir.to_path_buf(),
            data: dir.join("data"),
            smtp,
            stderr,
            stdout,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "postern serve exited ({status}) before it was ready:\n{}",
                    server.log()
                );
            }
            if std::fs::read_to_string(&server.stdout)
                .unwrap_or_default()
                .contains("postern: SMTP on")
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "postern serve not ready:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends one message with Python's smtplib; returns the queue id.
    pub fn send(&self, mail_from: &str, recipients: &[&str], message: &str) -> String {
        send(self.smtp, mail_from, recipients, message)
    }

    /// Every trace record written so far.
    pub fn trace(&self) -> Vec<Value> {
        trace_records(&self.data)
    }

    /// Waits for the trace record of kind `kind` whose `field` is `value`.
    pub fn wait_trace(&self, kind: &str, field: &str, value: &str) -> Value {
        wait_for(
            &format!("a {kind} record with {field} {value} in the trace"),
            || {
                self.trace()
                    .into_iter()
                    .find(|r| r["Kind"] == kind && r[field] == value)
            },
        )
    }

    /// Messages archived by this server, as (file stem, bytes).
    pub fn archived(&self) -> Vec<(String, Vec<u8>)> {
        archived(&self.data)
    }

    /// `postern archive get ID` on this server's archive: GetArchiveMessage's
    /// response (link, Metadata, Envelope); None until the index has it.
    pub fn archive_get(&self, id: &str) -> Option<Value> {
        let output = Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(["archive", "-c"])
            .arg(self.dir.join("postern.yaml"))
            .args(["get", id])
            .output()
            .unwrap();
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).unwrap())
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

/// Sends with smtplib and returns the queue id from the 250 reply to DATA.
pub fn send(port: u16, mail_from: &str, recipients: &[&str], message: &str) -> String {
    send_as(port, None, mail_from, recipients, message)
}

/// Like [`send`], after STARTTLS (any certificate) and AUTH with `login`
/// (user, password) when given.
pub fn send_as(
    port: u16,
    login: Option<(&str, &str)>,
    mail_from: &str,
    recipients: &[&str],
    message: &str,
) -> String {
    let script = r#"
import smtplib, ssl, sys, json
port, sender, rcpts, msg, login = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("client.test")
if login:
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo("client.test")
    s.login(login[0], login[1])
code, text = s.mail(sender)
assert code == 250, ("MAIL", code, text)
for r in rcpts:
    code, text = s.rcpt(r)
    assert code == 250, (r, code, text)
code, text = s.data(msg.encode())
assert code == 250, (code, text)
s.quit()
print(text.decode().split("queued as ")[1].strip())
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(mail_from)
        .arg(serde_json::to_string(recipients).unwrap())
        .arg(message)
        .arg(serde_json::to_string(&login).unwrap())
        .output()
        .expect("python3 is needed by this test");
    assert!(
        output.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn trace_records(data: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    let Ok(entries) = std::fs::read_dir(data.join("trace")) else {
        return records;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            records.push(serde_json::from_str(line).unwrap());
        }
    }
    records
}

pub fn archived(data: &Path) -> Vec<(String, Vec<u8>)> {
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
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A config for a second Postern that receives what the first one sends
/// and archives it: the relay target, the MX of Send, the sink of DSNs.
/// `policy` is the traffic policy's statements (YAML flow list).
pub fn target_config(dir: &Path, smtp: u16, http: u16, auth: Option<&str>, policy: &str) -> String {
    let kind = match auth {
        Some(password) => {
            format!("AUTH\n    IngressPointConfiguration: {{SmtpPassword: \"{password}\"}}")
        }
        None => "OPEN".into(),
    };
    format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: localhost\n\
TrafficPolicies:\n  - TrafficPolicyName: inbound\n    DefaultAction: ALLOW\n    PolicyStatements: {policy}\n\
RuleSets:\n  - RuleSetName: keep\n    Rules:\n      - Name: archive-all\n        Actions:\n          - Archive: {{TargetArchive: received}}\n\
IngressPoints:\n  - IngressPointName: target\n    Type: {kind}\n    TrafficPolicyId: inbound\n    RuleSetId: keep\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: received\n",
        data = dir.join("data").display(),
    )
}

/// A request an [`HttpSink`] received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A small HTTP/1.1 server on loopback that records every request and
/// answers with what `respond` returns (status, body).
pub struct HttpSink {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpSink {
    pub fn start(respond: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let respond = Arc::new(respond);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                let respond = respond.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &seen, &*respond);
                });
            }
        });
        HttpSink { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn wait_requests(&self, n: usize) -> Vec<Request> {
        wait_for(&format!("{n} HTTP requests"), || {
            let r = self.requests.lock().unwrap();
            (r.len() >= n).then(|| r.clone())
        })
    }
}

fn serve_one(
    stream: TcpStream,
    seen: &Mutex<Vec<Request>>,
    respond: &(dyn Fn(&Request) -> (u16, String) + Send + Sync),
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let request = Request {
            path,
            headers,
            body,
        };
        let (status, text) = respond(&request);
        seen.lock().unwrap().push(request);
        write!(
            writer,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )?;
        writer.flush()?;
    }
}

/// The names of the rules that matched the first recipient of the message
/// with queue id `id`, from its trace record.
pub fn matched_rules(server: &Server, id: &str) -> Vec<String> {
    let record = server.wait_trace("Message", "QueueId", id);
    record["Recipients"][0]["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Rule"].as_str().unwrap().to_string())
        .collect()
}

/// Runs the Python statements `code` with `mm`, a boto3 `mailmanager`
/// client of the API on `http`, signed with the key pair `server`
/// generated; returns what they print. Fails the test if they fail.
pub fn with_boto3(server: &Server, http: u16, code: &str) -> String {
    let script = format!(
        "import boto3, json\n\
         mm = boto3.Session(profile_name=\"postern\").client(\"mailmanager\", endpoint_url=\"http://127.0.0.1:{http}\", region_name=\"us-east-1\")\n\
         {code}\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            server.data.join("state/credentials"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
