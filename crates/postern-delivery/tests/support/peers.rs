//! Starting real peers for the tests: free loopback ports, child
//! processes killed when the test ends, waiting for a port to listen.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) on drop.
pub struct Peer {
    pub child: Child,
    pub name: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `program` with `args`; fails with `hint` when it isn't installed.
pub fn spawn(program: &str, args: &[&str], hint: &str) -> Peer {
    assert!(
        Path::new(program).exists(),
        "{program} is not installed: {hint}"
    );
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    Peer {
        child,
        name: program.to_string(),
    }
}

/// Waits until `addr` accepts TCP connections (the peer is up), checking
/// that the peer has not exited. Polls; gives up after about 20 s.
pub async fn wait_for_port(peer: &mut Peer, addr: SocketAddr) {
    for _ in 0..400 {
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!("{} exited before listening on {addr}: {status}", peer.name);
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never listened on {addr}", peer.name);
}

/// smtp-sink on a free loopback port with `options`, dumping each message
/// into `dump_dir`.
pub async fn smtp_sink(options: &[&str], dump_dir: &Path) -> (Peer, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let template = format!("{}/%Y", dump_dir.display());
    let listen = addr.to_string();
    let mut args = vec!["-u", "root", "-d", template.as_str()];
    args.extend_from_slice(options);
    args.extend_from_slice(&[listen.as_str(), "100"]);
    let mut peer = spawn(
        "/usr/sbin/smtp-sink",
        &args,
        "apt-get install postfix (it ships smtp-sink)",
    );
    wait_for_port(&mut peer, addr).await;
    (peer, addr)
}

/// The messages smtp-sink dumped so far.
pub fn dumped(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()).into_owned())
        .collect();
    out.sort();
    out
}
