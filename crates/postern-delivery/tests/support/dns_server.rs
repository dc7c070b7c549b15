//! An authoritative DNS server on loopback (hickory-server) serving one
//! zone given as zone-file text, and a server that never answers.

#![allow(dead_code)]

use hickory_server::Server;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct DnsServer {
    pub addr: SocketAddr,
    _server: Server<Catalog>,
}

/// Serves `zone` (zone-file syntax, relative names under `origin`) on a
/// loopback port, over UDP and TCP.
pub async fn serve(origin: &str, zone: &str) -> DnsServer {
    let origin = Name::from_ascii(origin).unwrap();
    let (origin, records) = Parser::new(zone, None, Some(origin))
        .parse()
        .unwrap_or_else(|e| panic!("bad test zone: {e}"));
    let handler: InMemoryZoneHandler =
        InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
            .unwrap();
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    // TCP on the same port, for truncated answers.
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65535);
    DnsServer {
        addr,
        _server: server,
    }
}

/// A UDP socket and a TCP listener on one port that read queries and never
/// answer.
pub async fn silent() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut held = Vec::new();
        loop {
            tokio::select! {
                r = udp.recv_from(&mut buf) => { if r.is_err() { return; } }
                a = tcp.accept() => match a {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => return,
                },
            }
        }
    });
    (addr, task)
}
