//! `postern serve`: the gateway. Listeners for every ingress point, the
//! spool, the pipeline, the HTTP port; SIGHUP reloads the config, SIGTERM
//! and SIGINT stop it gracefully.

pub mod archive;
mod http;
pub mod runtime;
mod store;

use arc_swap::ArcSwap;
use postern_smtp::{Connections, SessionConfig};
use postern_spool::Spool;
use runtime::{Settings, Source};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

pub async fn run(source: Source) -> Result<(), String> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot start metrics: {e}"))?;
    let config = source.load()?;
    let settings = Settings::from(&config);
    let data_dir = std::path::PathBuf::from(&config.data_dir);
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;

    let tls = runtime::tls(&config, &data_dir, &settings.hostname)?;
    let mut version = 1;
    let runtime = Arc::new(runtime::build(config, version, &settings)?);
    let (spool, recovered) = Spool::open(&data_dir.join("spool"))
        .await
        .map_err(|e| format!("spool {}: {e}", data_dir.join("spool").display()))?;
    if !recovered.is_empty() {
        tracing::info!(
            messages = recovered.len(),
            "recovered messages from the spool"
        );
    }
    metrics::gauge!("postern_spool_depth").set(spool.depth() as f64);

    let archive = archive::open(&runtime.config, &data_dir).await?;
    let archive_settings = runtime
        .config
        .config
        .server
        .clone()
        .unwrap_or_default()
        .archive
        .unwrap_or_default();
    let links = archive::Links::open(
        &data_dir,
        format!("http://{}", settings.http_listen),
        std::time::Duration::from_secs(archive_settings.download_link_seconds.unwrap_or(900) as u64),
    )?;
    let trace = Arc::new(postern_pipeline::trace::TraceLog::new(&data_dir));
    let outbound_dir = data_dir.join("outbound");
    let outbound =
        postern_pipeline::outbound::Outbound::open(&outbound_dir, &recovered, trace.clone())
            .await
            .map_err(|e| format!("outbound queue {}: {e}", outbound_dir.display()))?;
    if outbound.depth() > 0 {
        tracing::info!(
            jobs = outbound.depth(),
            "recovered deliveries from the outbound queue"
        );
    }

    let (shutdown_tx, shutdown) = watch::channel(false);
    // Room for every message the spool may hold, so that a session never
    // waits on this queue between its commit and its 250.
    let (queue_tx, queue_rx) = mpsc::channel(settings.max_spool_depth + 1024);
    let pipeline = Arc::new(postern_pipeline::Pipeline {
        context: Arc::new(postern_pipeline::Context {
            spool: spool.clone(),
            archive: archive.clone(),
            trace,
            outbound: outbound.clone(),
        }),
        runtime: Arc::new(ArcSwap::new(runtime.clone())),
    });
    let (stop_tx, stop) = watch::channel(false);
    let workers = tokio::spawn(pipeline.clone().run(
        queue_rx,
        queue_tx.clone(),
        settings.workers,
        stop,
    ));
    let deliveries = tokio::spawn(outbound.run(pipeline.runtime.clone(), stop_tx.subscribe()));
    let retention = tokio::spawn(archive::retention(
        archive.clone(),
        pipeline.runtime.clone(),
        data_dir.clone(),
        std::time::Duration::from_secs(
            archive_settings.retention_check_seconds.unwrap_or(3600) as u64
        ),
        i64::from(archive_settings.deletion_grace_days.unwrap_or(30)),
        stop_tx.subscribe(),
    ));
    {
        let queue = queue_tx.clone();
        tokio::spawn(async move {
            for id in recovered {
                if queue.send(id).await.is_err() {
                    break;
                }
            }
        });
    }

    let store = Arc::new(store::SpoolStore {
        spool: spool.clone(),
        queue: queue_tx.clone(),
        max_depth: settings.max_spool_depth,
    });
    let connections = Connections::new(settings.limits.max_connections);
    let throttle = Arc::new(postern_smtp::limits::AuthThrottle::default());
    let mut ingress_configs: HashMap<String, Arc<ArcSwap<SessionConfig>>> = HashMap::new();
    let mut listening = Vec::new();
    for (ingress_id, session_config) in
        runtime::session_configs(&runtime, &tls, &settings, &throttle)?
    {
        let shared = Arc::new(ArcSwap::new(Arc::new(session_config)));
        let current = shared.load_full();
        let (plain, wrapped) = runtime::listeners(&runtime.config, &ingress_id);
        for (addresses, implicit) in [(plain, false), (wrapped, true)] {
            for address in addresses {
                let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                    format!(
                        "cannot listen on {address} (ingress point {}): {e}",
                        current.ingress.name
                    )
                })?;
                listening.push(format!(
                    "{address} ({}ingress point {})",
                    if implicit { "implicit TLS, " } else { "" },
                    current.ingress.name
                ));
                tokio::spawn(postern_smtp::serve(
                    listener,
                    implicit,
                    shared.clone(),
                    store.clone(),
                    connections.clone(),
                    shutdown.clone(),
                ));
            }
        }
        ingress_configs.insert(ingress_id, shared);
    }
    let http_address: SocketAddr = settings.http_listen;
    // Bound here, so that a port in use stops the start like an SMTP one.
    let http_listener = tokio::net::TcpListener::bind(http_address)
        .await
        .map_err(|e| format!("cannot listen on {http_address} (HTTP): {e}"))?;
    let mut http = tokio::spawn(http::serve(
        http_listener,
        recorder,
        archive.clone(),
        links.clone(),
        shutdown.clone(),
    ));
    // Signals are handled before the server says it is ready.
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    println!(
        "postern: SMTP on {}; HTTP on {http_address}; data in {}",
        listening.join(", "),
        data_dir.display()
    );

    loop {
        tokio::select! {
            _ = hangup.recv() => {
                version += 1;
                match reload(&source, version, &settings, &tls, &throttle, &pipeline, &ingress_configs) {
                    Ok(()) => tracing::info!(version, "config reloaded"),
                    Err(e) => {
                        version -= 1;
                        tracing::error!("config not reloaded, the running one stays:\n{e}");
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            result = &mut http => {
                return Err(match result {
                    Ok(Err(e)) => format!("the HTTP port {http_address} stopped: {e}"),
                    _ => format!("the HTTP port {http_address} stopped"),
                });
            }
        }
    }

    tracing::info!("stopping: no new connections; sessions in flight may finish");
    let _ = shutdown_tx.send(true);
    let open = connections.drain(settings.grace).await;
    if open > 0 {
        tracing::warn!(
            sessions = open,
            "sessions still open at the deadline are cut; their messages were not acknowledged"
        );
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(settings.grace, workers).await;
    deliveries.abort();
    retention.abort();
    tracing::info!(
        spool = spool.depth(),
        "stopped; messages left in the spool are processed at the next start"
    );
    Ok(())
}

fn reload(
    source: &Source,
    version: u64,
    settings: &Settings,
    tls: &runtime::Tls,
    throttle: &Arc<postern_smtp::limits::AuthThrottle>,
    pipeline: &Arc<postern_pipeline::Pipeline>,
    ingress_configs: &HashMap<String, Arc<ArcSwap<SessionConfig>>>,
) -> Result<(), String> {
    let config = source.load()?;
    let runtime = Arc::new(runtime::build(config, version, settings)?);
    let sessions = runtime::session_configs(&runtime, tls, settings, throttle)?;
    // An ingress point with listeners cannot go away without a restart: its
    // sessions would accept mail that no running rule set could process.
    for (id, shared) in ingress_configs {
        if !sessions.iter().any(|(new_id, _)| new_id == id) {
            return Err(format!(
                "ingress point {} ({id}) has listeners; removing or renaming it needs a restart",
                shared.load().ingress.name
            ));
        }
    }
    for (id, config) in sessions {
        match ingress_configs.get(&id) {
            Some(shared) => shared.store(Arc::new(config)),
            None => {
                tracing::warn!(ingress_point = %config.ingress.name, "a new ingress point gets its listeners at the next restart")
            }
        }
    }
    pipeline.runtime.store(runtime);
    Ok(())
}

pub fn runtime_source(path: Option<std::path::PathBuf>) -> Source {
    match path {
        Some(path) => Source::File(path),
        None => Source::Embedded,
    }
}
