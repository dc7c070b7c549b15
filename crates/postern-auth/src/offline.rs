//! The DNS server behind [`crate::Authenticator::offline`]: hickory-server,
//! authoritative for the root zone with exactly the given records, on a
//! loopback TCP port, on its own thread and runtime.
//!
//! Why a server and not pre-filled caches: mail-auth reads a cached answer
//! as "the name exists" (SPF `exists:`, DMARC's non-existent-subdomain
//! test), and its caches cannot hold NXDOMAIN. A server answers exactly
//! as the network would for the same records: NXDOMAIN for a name not in
//! them, NODATA for a name with other types, CNAMEs followed. TCP, so no
//! datagram is ever lost; the server lives until the last clone of the
//! authenticator is dropped, whatever runtime the caller uses.

use crate::records::DnsRecords;
use hickory_server::Server;
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A running server; dropping it stops the server and its thread.
pub(crate) struct OfflineServer {
    pub(crate) addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub(crate) fn start(records: &DnsRecords) -> Result<OfflineServer, String> {
    let catalog = catalog(records)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("offline DNS: cannot bind a loopback port: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("offline DNS: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("offline DNS: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("offline DNS: cannot start a runtime: {e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("postern-auth-offline-dns".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("offline DNS: {e}")));
                        return;
                    }
                };
                let mut server = Server::new(catalog);
                server.register_listener(listener, Duration::from_secs(30), 65535);
                let _ = ready_tx.send(Ok(()));
                // Sender dropped: the authenticator is gone.
                let _ = stopped.await;
                let _ = server.shutdown_gracefully().await;
            });
        })
        .map_err(|e| format!("offline DNS: cannot start a thread: {e}"))?;
    ready_rx
        .recv()
        .map_err(|_| "offline DNS: the server thread ended".to_string())??;
    Ok(OfflineServer { addr, _stop: stop })
}

fn catalog(records: &DnsRecords) -> Result<Catalog, String> {
    let root = Name::root();
    let mut zone: InMemoryZoneHandler =
        InMemoryZoneHandler::empty(root.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa_name = Name::from_ascii("offline.invalid.").map_err(|e| e.to_string())?;
    let soa = SOA::new(
        soa_name.clone(),
        soa_name,
        1,
        3600,
        600,
        86400,
        // Negative answers are cached for a minute at most.
        60,
    );
    zone.upsert_mut(Record::from_rdata(root.clone(), 3600, RData::SOA(soa)), 1);
    for record in records.records() {
        zone.upsert_mut(record.clone(), 1);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&root), vec![Arc::new(zone)]);
    Ok(catalog)
}
