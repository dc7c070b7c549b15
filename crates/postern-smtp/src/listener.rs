//! Accepting connections: connection limits (global and per IP address),
//! implicit TLS for TLS-wrapped listeners, one task per session, and a
//! graceful stop.

use crate::reply::Reply;
use crate::session::{End, Peer, Session, SessionConfig};
use crate::store::Store;
use crate::stream::Conn;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Open connections, bounded globally and per client address.
pub struct Connections {
    total: Arc<Semaphore>,
    max_total: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    pub fn new(max_total: usize) -> Arc<Connections> {
        Arc::new(Connections {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    /// Waits until every session ended, or the deadline passed; returns the
    /// number still open.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let all = self.max_total as u32;
        match tokio::time::timeout(deadline, self.total.acquire_many(all)).await {
            Ok(Ok(permits)) => {
                drop(permits);
                0
            }
            _ => self.open(),
        }
    }

    fn enter_ip(&self, ip: IpAddr, max: usize) -> bool {
        let mut map = self.per_ip.lock().expect("per-ip lock");
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave_ip(&self, ip: IpAddr) {
        let mut map = self.per_ip.lock().expect("per-ip lock");
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

static SESSIONS: AtomicU64 = AtomicU64::new(0);

fn session_id() -> String {
    let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("S{start:X}{n:05X}")
}

/// Accepts on `listener` until `shutdown` turns true. Each session takes the
/// ingress point's config as it is when the connection arrives, so a reload
/// never changes a session midway.
pub async fn serve<S: Store>(
    listener: TcpListener,
    implicit_tls: bool,
    config: Arc<ArcSwap<SessionConfig>>,
    store: Arc<S>,
    connections: Arc<Connections>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
                continue;
            }
        };
        let (socket, address) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let session_config = config.load_full();
        let ingress = session_config.ingress.name.clone();
        if session_config.closed {
            metrics::counter!("postern_smtp_connections_refused_total", "ingress_point" => ingress, "reason" => "closed").increment(1);
            tokio::spawn(refuse(
                socket,
                Reply::new(421, (4, 3, 2), "This ingress point is closed"),
            ));
            continue;
        }
        let Ok(permit) = connections.total.clone().try_acquire_owned() else {
            metrics::counter!("postern_smtp_connections_refused_total", "ingress_point" => ingress, "reason" => "busy").increment(1);
            tokio::spawn(refuse(
                socket,
                Reply::new(421, (4, 3, 2), "Too busy, try again later"),
            ));
            continue;
        };
        let store = store.clone();
        let connections = connections.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut socket = socket;
            let mut peer = Peer {
                ip: address.ip().to_canonical(),
                port: address.port(),
            };
            if session_config.proxy_protocol {
                match read_proxy_header(&mut socket, session_config.limits.command_timeout).await {
                    Ok(Some(client)) => {
                        peer = Peer {
                            ip: client.ip().to_canonical(),
                            port: client.port(),
                        }
                    }
                    // A health check of the load balancer itself (PROXY LOCAL).
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(ip = %peer.ip, error = %e, "connection without a valid PROXY header");
                        metrics::counter!("postern_smtp_connections_refused_total", "ingress_point" => ingress, "reason" => "proxy").increment(1);
                        return;
                    }
                }
            }
            let ip = peer.ip;
            if !connections.enter_ip(ip, session_config.limits.max_connections_per_ip) {
                metrics::counter!("postern_smtp_connections_refused_total", "ingress_point" => ingress, "reason" => "per_ip").increment(1);
                drop(permit);
                refuse(
                    socket,
                    Reply::new(421, (4, 7, 0), "Too many connections from your address"),
                )
                .await;
                return;
            }
            let id = session_id();
            let conn = if implicit_tls {
                let Some(tls) = session_config.tls.clone() else {
                    connections.leave_ip(ip);
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                match tokio::time::timeout(
                    session_config.limits.command_timeout,
                    acceptor.accept(socket),
                )
                .await
                {
                    Ok(Ok(stream)) => Conn::Tls(Box::new(stream)),
                    _ => {
                        metrics::counter!("postern_smtp_sessions_total", "ingress_point" => ingress, "tls" => "failed").increment(1);
                        connections.leave_ip(ip);
                        return;
                    }
                }
            } else {
                Conn::Plain(socket)
            };
            let tls = if conn.is_tls() { "implicit" } else { "none" };
            metrics::counter!("postern_smtp_sessions_total", "ingress_point" => ingress.clone(), "tls" => tls).increment(1);
            metrics::gauge!("postern_smtp_sessions_open", "ingress_point" => ingress.clone())
                .increment(1.0);
            tracing::debug!(session = %id, ip = %ip, "session started");
            let end = Session::new(conn, peer, session_config, store, id.clone())
                .run(shutdown)
                .await;
            tracing::debug!(session = %id, end = ?end, "session ended");
            metrics::gauge!("postern_smtp_sessions_open", "ingress_point" => ingress.clone())
                .decrement(1.0);
            if end != End::Quit {
                metrics::counter!("postern_smtp_sessions_ended_total", "ingress_point" => ingress, "end" => format!("{end:?}")).increment(1);
            }
            connections.leave_ip(ip);
            drop(permit);
        });
    }
}

/// Reads a PROXY protocol v1 or v2 header; the client address it gives, or
/// None for a LOCAL connection (the load balancer's own health check).
async fn read_proxy_header(
    socket: &mut tokio::net::TcpStream,
    timeout: Duration,
) -> std::io::Result<Option<std::net::SocketAddr>> {
    use proxy_header::{ParseConfig, ProxyHeader};
    use tokio::io::AsyncReadExt;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    };
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match ProxyHeader::parse(&buf, config) {
            Ok((header, used)) => {
                if used != buf.len() {
                    // SMTP clients wait for the greeting.
                    return Err(invalid("data after the PROXY header before the greeting"));
                }
                return Ok(header.proxied_address().map(|a| a.source));
            }
            Err(proxy_header::Error::BufferTooShort) if buf.len() < 4096 => {}
            Err(_) => return Err(invalid("not a PROXY protocol header")),
        }
        let n = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
            .await
            .map_err(|_| invalid("no PROXY header in time"))??;
        if n == 0 {
            return Err(invalid("closed before the PROXY header"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn refuse(mut socket: tokio::net::TcpStream, reply: Reply) {
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = socket.write_all(&out).await;
        let _ = socket.shutdown().await;
    })
    .await;
}
