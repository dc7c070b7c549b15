//! `postern serve`: the gateway. Listeners for every ingress point, the
//! spool, the pipeline, the HTTP port; SIGHUP reloads the config, SIGTERM
//! and SIGINT stop it gracefully.

pub mod archive;
pub mod gateway;
mod http;
pub mod runtime;
pub mod state;
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

    let tls = Arc::new(runtime::tls(&config, &data_dir, &settings.hostname)?);
    let throttle = Arc::new(postern_smtp::limits::AuthThrottle::default());
    let settings = Arc::new(settings);

    // The resources in force: the store's latest version, or the file's
    // when they changed since they were last taken (docs/api.md).
    let state_store = open_state(&config, &data_dir).await?;
    let latest = state_store
        .latest()
        .await
        .map_err(|e| format!("state store: {e}"))?;
    // A version an older Postern stored may hold address list members
    // inline: they move to the members table first.
    let latest = match latest {
        Some(v) => Some(state::move_inline_members(&state_store, v).await?),
        None => None,
    };
    let digest = state::file_digest(&config);
    // The members the version runs with: the table's, and when the file's
    // resources are taken, the file's lists' (written to the table once the
    // version is checked, before it is stored).
    let (version, document, parent, seed) = match latest {
        Some(v) if v.document["FileDigest"].as_str() == Some(digest.as_str()) => {
            (v.number, v.document, None, None)
        }
        latest => {
            let previous = latest.as_ref().map(|v| &v.document);
            let mut document = state::document_of(&config, previous, postern_api::ops::now());
            document["FileDigest"] = serde_json::json!(digest);
            let parent = latest.as_ref().map(|v| v.number).unwrap_or(0);
            let seed =
                state::plan_members(&state_store, &config, &mut document, previous, parent + 1)
                    .await
                    .map_err(|e| format!("state store: {e}"))?;
            (parent + 1, document, Some(parent), Some(seed))
        }
    };
    let members = match &seed {
        Some(seed) => seed.members.clone(),
        None => state::load_members(&state_store, &document, None)
            .await
            .map_err(|e| format!("state store: {e}"))?,
    };
    let prepared = gateway::prepare(
        &config, &settings, &tls, &throttle, version, document, members,
    )
    .map_err(|e| {
        let file = &config.file;
        let lines: Vec<String> = e.lines().map(|l| format!("{file}: {l}")).collect();
        format!(
            "version {version} of the state cannot run:\n{}",
            lines.join("\n")
        )
    })?;
    if let Some(parent) = parent {
        if let Some(seed) = &seed {
            seed.write(&state_store)
                .await
                .map_err(|e| format!("state store: {e}"))?;
        }
        state_store
            .commit(
                parent,
                &prepared.snapshot.document,
                "file",
                &format!("resources from {}", config.file),
            )
            .await
            .map_err(|e| format!("state store: {e}"))?;
    }
    let runtime = prepared.runtime.clone();
    let mut members_read = state::MembersCache::default();
    members_read.keep(&prepared.snapshot.document, &prepared.members);
    metrics::gauge!("postern_config_version").set(version as f64);
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
    let mut ingress_configs: HashMap<String, Arc<ArcSwap<SessionConfig>>> = HashMap::new();
    let mut listening = Vec::new();
    let mut listening_by_id: HashMap<String, Vec<String>> = HashMap::new();
    for (ingress_id, session_config) in prepared.sessions {
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
                listening_by_id
                    .entry(ingress_id.clone())
                    .or_default()
                    .push(address.to_string());
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
    let (api_keys, credentials) = gateway::access_keys(&config, &data_dir)?;
    let api_settings = config
        .config
        .server
        .as_ref()
        .and_then(|s| s.api.clone())
        .unwrap_or_default();
    let poll = std::time::Duration::from_secs(api_settings.poll_seconds.unwrap_or(2) as u64);
    let gateway = Arc::new(gateway::ServerGateway {
        file: ArcSwap::new(Arc::new(config.clone())),
        current: ArcSwap::new(prepared.snapshot.clone()),
        state: state_store.clone(),
        settings: settings.clone(),
        tls: tls.clone(),
        throttle: throttle.clone(),
        pipeline: pipeline.clone(),
        ingress: ingress_configs,
        listening: listening_by_id,
        links: links.clone(),
        data_dir: data_dir.clone(),
        installing: tokio::sync::Mutex::new(()),
        keep_versions: api_settings.keep_versions.unwrap_or(100) as u32,
        stuck: std::sync::Mutex::new(None),
        deletion_grace_seconds: f64::from(archive_settings.deletion_grace_days.unwrap_or(30))
            * 86_400.0,
        members: std::sync::Mutex::new(members_read),
    });
    let api = Arc::new(postern_api::ops::Api::new(
        gateway.clone(),
        state_store.clone(),
        archive.clone(),
    ));
    postern_api::ops::archive::recover(&api).await;
    let api_router = postern_api::http::router(api.clone(), Arc::new(api_keys))
        .merge(postern_api::uploads::router(api.clone()));
    let following = tokio::spawn(gateway.clone().follow(poll, stop_tx.subscribe()));
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
        api_router,
        shutdown.clone(),
    ));
    // Signals are handled before the server says it is ready.
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    println!(
        "postern: SMTP on {}; HTTP and the Mail Manager API on {http_address}; data in {}",
        listening.join(", "),
        data_dir.display()
    );
    if let Some(path) = credentials {
        println!(
            "postern: API keys in {} (AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE=postern)",
            path.display(),
            path.display()
        );
    }

    loop {
        tokio::select! {
            _ = hangup.recv() => {
                let reloaded = match source.load() {
                    Ok(file) => gateway.reload_file(file).await,
                    Err(e) => Err(e),
                };
                match reloaded {
                    Ok(version) => tracing::info!(version, "config reloaded"),
                    Err(e) => tracing::error!("config not reloaded, the running one stays:\n{e}"),
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
    following.abort();
    tracing::info!(
        spool = spool.depth(),
        "stopped; messages left in the spool are processed at the next start"
    );
    Ok(())
}

/// Opens the state store `Server.State` names (default: SQLite under the
/// data directory).
pub async fn open_state(
    config: &postern_config::ValidatedConfig,
    data_dir: &std::path::Path,
) -> Result<postern_state::State, String> {
    let server = config.config.server.clone().unwrap_or_default();
    let base = postern_pipeline::peers::base(config);
    let backend = match &server.state {
        None => postern_state::Backend::Sqlite(data_dir.join("state").join("state.sqlite")),
        Some(postern_model::StateStoreConfig::Sqlite(path)) => {
            postern_state::Backend::Sqlite(base.join(path))
        }
        Some(postern_model::StateStoreConfig::Postgres(source)) => {
            postern_state::Backend::Postgres(
                postern_pipeline::peers::read_secret(config, source)
                    .map_err(|e| format!("Server.State.Postgres: {e}"))?,
            )
        }
    };
    postern_state::State::open(backend)
        .await
        .map_err(|e| format!("state store: {e}"))
}

/// The config in force for a file: the file's `Server` with the state
/// store's latest resources (the file's own before the store has any).
pub async fn in_force(
    file: postern_config::ValidatedConfig,
) -> Result<postern_config::ValidatedConfig, String> {
    let data_dir = std::path::PathBuf::from(&file.data_dir);
    let store = open_state(&file, &data_dir).await?;
    match store
        .latest()
        .await
        .map_err(|e| format!("state store: {e}"))?
    {
        Some(version) => {
            // An older version's members are inline, and stay there until
            // a server moves them.
            let members = if postern_api::document::has_inline_members(&version.document) {
                state::Members::new()
            } else {
                state::load_members(&store, &version.document, None)
                    .await
                    .map_err(|e| format!("state store: {e}"))?
            };
            state::config_of(&file, &version.document, &members)
                .map_err(|e| format!("version {} of the state: {e}", version.number))
        }
        None => Ok(file),
    }
}

pub fn runtime_source(path: Option<std::path::PathBuf>) -> Source {
    match path {
        Some(path) => Source::File(path),
        None => Source::Embedded,
    }
}
