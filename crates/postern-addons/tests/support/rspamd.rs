//! A real Rspamd for the tests (this crate's, and the gateway's end-to-end
//! tests): the stock configuration (/etc/rspamd) with the test's overrides
//! in a temporary directory: only the normal worker, on a free loopback
//! port; databases, run and log files in the temporary directory; DNS
//! pointed at a closed loopback port; and every module that fetches maps
//! over HTTP or needs the network or Redis disabled, so that nothing is
//! downloaded. Needs Rspamd: `apt-get install rspamd`.
//!
//! The including test crate has the peers module at its root:
//! `#[path = "../../postern-delivery/tests/support/peers.rs"] mod peers;`.

#![allow(dead_code)]

use super::peers;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Modules disabled in the test's `local.d`: map downloads, DNS, Redis,
/// external services.
const DISABLED: &[&str] = &[
    "antivirus",
    "arc",
    "asn",
    "bimi",
    "clickhouse",
    "dcc",
    "dkim",
    "dkim_signing",
    "dmarc",
    "elastic",
    "emails",
    "external_services",
    "fuzzy_check",
    "greylist",
    "hfilter",
    "history_redis",
    "metadata_exporter",
    "metric_exporter",
    "mid",
    "mime_types",
    "multimap",
    "mx_check",
    "neural",
    "p0f",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "spf",
    "surbl",
    "url_redirector",
    "whitelist",
];

/// The GTUBE string, assembled at run time.
pub fn gtube() -> String {
    [
        "XJS*C4JDBQADN1.NSBN3*2IDNEN*",
        "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL",
        "*C.34X",
    ]
    .concat()
}

/// A plain text email from alice@example.net to bob@example.org.
pub fn email(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.net>\r\n\
         To: Bob <bob@example.org>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}@example.net>\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {body}\r\n"
    )
    .into_bytes()
}

/// Rspamd's main process; stopped with SIGTERM (so that it stops its
/// workers), then killed if it lingers.
pub struct RunningRspamd {
    child: Child,
    /// Where its normal worker listens.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RunningRspamd {
    /// The normal worker's URL, e.g. `http://127.0.0.1:11333`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningRspamd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Rspamd; returns once its normal worker listens.
pub async fn start() -> RunningRspamd {
    let program = "/usr/bin/rspamd";
    assert!(
        Path::new(program).exists(),
        "{program} is not installed: apt-get install rspamd"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["local.d", "db", "run", "log"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    for module in DISABLED {
        std::fs::write(
            root.join("local.d").join(format!("{module}.conf")),
            "enabled = false;\n",
        )
        .unwrap();
    }
    let dead_dns = peers::free_port();
    let port = peers::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = root.join("rspamd.conf");
    std::fs::write(
        &config,
        format!(
            ".include \"$CONFDIR/common.conf\"\n\
             options {{\n\
             \x20   pidfile = \"$RUNDIR/rspamd.pid\";\n\
             \x20   .include \"$CONFDIR/options.inc\"\n\
             \x20   dns {{ nameserver = [\"127.0.0.1:{dead_dns}\"]; timeout = 0.2s; retransmits = 1; }}\n\
             }}\n\
             logging {{\n\
             \x20   type = \"file\";\n\
             \x20   filename = \"$LOGDIR/rspamd.log\";\n\
             \x20   level = \"info\";\n\
             }}\n\
             worker \"normal\" {{\n\
             \x20   bind_socket = \"{addr}\";\n\
             \x20   count = 1;\n\
             \x20   mime = true;\n\
             }}\n"
        ),
    )
    .unwrap();
    let var = |name: &str, sub: &str| format!("{name}={}", root.join(sub).display());
    let child = Command::new(program)
        .arg("-f")
        .args(["-u", "root", "-g", "root"])
        .arg("-c")
        .arg(&config)
        .args(["--var", &var("LOCAL_CONFDIR", "")])
        .args(["--var", &var("DBDIR", "db")])
        .args(["--var", &var("RUNDIR", "run")])
        .args(["--var", &var("LOGDIR", "log")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let log = root.join("log/rspamd.log");
    let mut running = RunningRspamd {
        child,
        addr,
        _dir: dir,
    };
    wait_for_port(&mut running, &log).await;
    running
}

/// Rspamd compiles its URL and regexp tables before it listens: polls for
/// up to about 120 s.
async fn wait_for_port(running: &mut RunningRspamd, log: &Path) {
    for _ in 0..1200 {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!(
                "rspamd exited ({status}) before listening; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if tokio::net::TcpStream::connect(running.addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "rspamd never listened on {}; its log:\n{}",
        running.addr,
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
