//! Turning a config into what the server runs: compiled engines, session
//! configs per ingress point, TLS, limits. Everything a config asks for that
//! this server cannot do is refused here, with the field that asks for it,
//! before any mail is accepted.

use postern_config::ValidatedConfig;
use postern_engine::Engine;
use postern_model::{IngressPointConfiguration, IngressPointType};
use postern_pipeline::Runtime;
use postern_pipeline::peers::{Peers, secret};
use postern_smtp::{IngressRef, Limits, SessionConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where the config comes from.
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl Source {
    pub fn load(&self) -> Result<ValidatedConfig, String> {
        match self {
            Source::File(path) => postern_config::load(path).map_err(|d| d.to_string()),
            Source::Embedded => {
                postern_config::parse_config("(embedded default)", super::DEFAULT_CONFIG, &|_| {
                    Err("the embedded default has no files".into())
                })
                .map_err(|d| d.to_string())
            }
        }
    }
}

/// Server settings that a reload does not change (they need a restart).
pub struct Settings {
    pub hostname: String,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub grace: Duration,
    pub http_listen: SocketAddr,
    pub limits: Limits,
    pub max_spool_depth: usize,
}

impl From<&ValidatedConfig> for Settings {
    fn from(config: &ValidatedConfig) -> Settings {
        let server = config.config.server.clone().unwrap_or_default();
        let smtp = server.smtp.clone().unwrap_or_default();
        let d = Limits::default();
        let count = |v: Option<i32>, d: usize| v.map(|v| v as usize).unwrap_or(d);
        let secs =
            |v: Option<i32>, d: Duration| v.map(|v| Duration::from_secs(v as u64)).unwrap_or(d);
        Settings {
            data_dir: PathBuf::from(&config.data_dir),
            hostname: server.hostname.unwrap_or_else(|| "localhost".into()),
            workers: count(server.workers, 16),
            max_spool_depth: count(server.max_spool_depth, 100_000),
            grace: secs(server.shutdown_grace_seconds, Duration::from_secs(30)),
            http_listen: server
                .http_listen
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8025))),
            limits: Limits {
                max_connections: count(smtp.max_connections, d.max_connections),
                max_connections_per_ip: count(
                    smtp.max_connections_per_ip,
                    d.max_connections_per_ip,
                ),
                max_recipients: count(smtp.max_recipients, d.max_recipients),
                max_line_length: count(smtp.max_line_length, d.max_line_length),
                max_message_size: smtp
                    .max_message_size_bytes
                    .map(|v| v as u64)
                    .unwrap_or(d.max_message_size),
                command_timeout: secs(smtp.command_timeout_seconds, d.command_timeout),
                data_timeout: secs(smtp.data_timeout_seconds, d.data_timeout),
                max_errors: count(smtp.max_errors, d.max_errors),
                max_auth_failures: count(smtp.max_auth_failures, d.max_auth_failures),
                session_timeout: d.session_timeout,
            },
        }
    }
}

/// The server certificate, and the TLS config of ingress points that do not
/// ask for client certificates.
pub struct Tls {
    pub default: Arc<rustls::ServerConfig>,
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl Tls {
    /// A TLS config that requires a client certificate signed by the ingress
    /// point's trust store (MTLS).
    fn with_trust_store(
        &self,
        store: &postern_model::TrustStore,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let roots = postern_smtp::tls::trust_store(&store.ca_content)
            .map_err(|e| format!("TrustStore.CAContent: {e}"))?;
        let crls = match &store.crl_content {
            Some(pem) => {
                postern_smtp::tls::crls(pem).map_err(|e| format!("TrustStore.CrlContent: {e}"))?
            }
            None => Vec::new(),
        };
        postern_smtp::tls::server_config(
            self.certs.clone(),
            self.key.clone_key(),
            Some((roots, crls)),
        )
        .map_err(|e| e.to_string())
    }
}

/// The certificate of STARTTLS and implicit TLS: from the config's files, or
/// self-signed under the data directory.
pub fn tls(config: &ValidatedConfig, data_dir: &Path, hostname: &str) -> Result<Tls, String> {
    let server = config.config.server.clone().unwrap_or_default();
    let base = Path::new(&config.file).parent().unwrap_or(Path::new("."));
    let (certs, key) = match (&server.tls_certificate_file, &server.tls_key_file) {
        (Some(cert), Some(key)) => postern_smtp::tls::load(&base.join(cert), &base.join(key))
            .map_err(|e| format!("Server.TlsCertificateFile/TlsKeyFile: {e}"))?,
        (None, None) => postern_smtp::tls::self_signed(data_dir, hostname)
            .map_err(|e| format!("self-signed certificate under {}: {e}", data_dir.display()))?,
        _ => return Err("Server: give both TlsCertificateFile and TlsKeyFile, or neither".into()),
    };
    let default = postern_smtp::tls::server_config(certs.clone(), key.clone_key(), None)
        .map_err(|e| e.to_string())?;
    Ok(Tls {
        default,
        certs,
        key,
    })
}

/// What the ingress points ask for that cannot be set up, by field path.
fn unsupported(config: &ValidatedConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, (_, ip)) in config.ingress_points().enumerate() {
        if let Some(IngressPointConfiguration::SecretArn(arn)) = &ip.ingress_point_configuration
            && let Err(e) = secret(config, arn)
        {
            problems.push(format!(
                "IngressPoints[{i}].IngressPointConfiguration.SecretArn: {e}"
            ));
        }
        let trust_store = match &ip.ingress_point_configuration {
            Some(IngressPointConfiguration::TlsAuthConfiguration(auth)) => {
                auth.trust_store.as_ref()
            }
            _ => None,
        };
        if let Some(store) = trust_store
            && let Err(e) = postern_smtp::tls::trust_store(&store.ca_content)
        {
            problems.push(format!(
                "IngressPoints[{i}].IngressPointConfiguration.TlsAuthConfiguration.TrustStore.CAContent: {e}"
            ));
        }
        if ip.type_ == IngressPointType::Mtls && trust_store.is_none() {
            problems.push(format!(
                "IngressPoints[{i}].IngressPointConfiguration.TlsAuthConfiguration.TrustStore: an MTLS ingress point needs a trust store"
            ));
        }
    }
    problems
}

/// Compiles `config` into what the server runs; the problems, one a line
/// by field path, when it cannot be run (callers say where it came from).
pub fn build(
    config: ValidatedConfig,
    version: u64,
    settings: &Settings,
) -> Result<Runtime, String> {
    let problems = unsupported(&config);
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let engine = Engine::build(&config).map_err(|e| e.to_string())?;
    let peers = Peers::build(&config, &settings.data_dir, &settings.hostname)
        .map_err(|problems| problems.join("\n"))?;
    Ok(Runtime {
        version,
        config,
        engine,
        hostname: settings.hostname.clone(),
        peers,
    })
}

/// A session config for each ingress point, by ingress point id.
pub fn session_configs(
    runtime: &Runtime,
    tls: &Tls,
    settings: &Settings,
    throttle: &Arc<postern_smtp::limits::AuthThrottle>,
    closed: &[String],
) -> Result<Vec<(String, SessionConfig)>, String> {
    let mut out = Vec::new();
    for (identity, ip) in runtime.config.ingress_points() {
        let binding = runtime
            .engine
            .ingress_point(&identity.id)
            .ok_or_else(|| format!("ingress point {} is not compiled", identity.name))?;
        let smtp_password = match &ip.ingress_point_configuration {
            Some(IngressPointConfiguration::SmtpPassword(p)) => Some(p.clone()),
            Some(IngressPointConfiguration::SecretArn(arn)) => Some(secret(&runtime.config, arn)?),
            _ => None,
        };
        let session_tls = match &ip.ingress_point_configuration {
            Some(IngressPointConfiguration::TlsAuthConfiguration(auth))
                if ip.type_ == IngressPointType::Mtls =>
            {
                let store = auth
                    .trust_store
                    .as_ref()
                    .ok_or("an MTLS ingress point needs a trust store")?;
                tls.with_trust_store(store)
                    .map_err(|e| format!("ingress point {}: {e}", identity.name))?
            }
            _ => tls.default.clone(),
        };
        out.push((
            identity.id.clone(),
            SessionConfig {
                hostname: settings.hostname.clone(),
                ingress: IngressRef {
                    name: identity.name.clone(),
                    id: identity.id.clone(),
                    arn: identity.arn.clone(),
                },
                kind: ip.type_,
                policy: binding.policy.clone(),
                tls: Some(session_tls),
                limits: settings.limits.clone(),
                smtp_password,
                throttle: throttle.clone(),
                proxy_protocol: ip.proxy_protocol.unwrap_or(false),
                config_version: runtime.version,
                closed: closed.contains(&identity.id),
                analyzer: (!binding.policy.analysis_needed().is_empty()).then(|| {
                    Arc::new(postern_pipeline::addons::AtRcpt {
                        addons: runtime.peers.addons.clone(),
                        hostname: settings.hostname.clone(),
                    }) as Arc<dyn postern_smtp::Analyzer>
                }),
            },
        ));
    }
    Ok(out)
}

/// The plain and implicit-TLS listen addresses of an ingress point.
pub fn listeners(config: &ValidatedConfig, ingress_id: &str) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let parse = |list: &Option<Vec<String>>| -> Vec<SocketAddr> {
        list.iter()
            .flatten()
            .filter_map(|a| a.parse().ok())
            .collect()
    };
    config
        .ingress_points()
        .find(|(identity, _)| identity.id == ingress_id)
        .map(|(_, ip)| (parse(&ip.listen), parse(&ip.listen_tls)))
        .unwrap_or_default()
}
