//! The add-on instances of the config, ready to run: DNS block lists,
//! Rspamd and ClamAV, and the result fields `Analysis` conditions read.
//!
//! | add-on (AddonName) | engine | result fields |
//! |---|---|---|
//! | `POSTERN_DNSBL`, `SPAMHAUS_DBL`, `ABUSIX_MAIL_INTELLIGENCE` | DNS block lists | `listed`, `ip_listed`, `domain_listed` (booleans); `listed_zones`, `listed_domains`, `codes`, `verdict` (text) |
//! | `POSTERN_RSPAMD`, `VADE_ADVANCED_EMAIL_SECURITY` | Rspamd | `is_spam` (boolean); `score`, `required_score`, `action`, `symbols`, `verdict` (text) |
//! | `POSTERN_CLAMAV`, `TRENDMICRO_VSAPI` | ClamAV (clamd) | `infected` (boolean); `signature`, `verdict` (text) |
//!
//! Field names are matched without regard to case, with or without an
//! `addon.` prefix. `verdict` is `PASS`, `FAIL`, `GRAY` (Rspamd: an action
//! short of reject) or `PROCESSING_FAILED`. When an engine is down or does
//! not answer in time, every field of it reads as the text
//! `PROCESSING_FAILED`: a boolean condition on it is then neither true nor
//! false, so a rule or statement decides by which way it is written.

use postern_addons::{
    AddonError, Clamd, ClamdAddress, Dnsbl, Rspamd, RspamdEnvelope, body_url_domains,
};
use postern_config::ValidatedConfig;
use postern_engine::AnalysisValue;
use postern_model::{ClamavConfig, DnsblDomainSource, ResourceKind};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Which engine an AddonName runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dnsbl,
    Rspamd,
    Clamav,
}

impl Kind {
    pub fn of(addon_name: &str) -> Option<Kind> {
        match addon_name {
            "POSTERN_DNSBL" | "SPAMHAUS_DBL" | "ABUSIX_MAIL_INTELLIGENCE" => Some(Kind::Dnsbl),
            "POSTERN_RSPAMD" | "VADE_ADVANCED_EMAIL_SECURITY" => Some(Kind::Rspamd),
            "POSTERN_CLAMAV" | "TRENDMICRO_VSAPI" => Some(Kind::Clamav),
            _ => None,
        }
    }

    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Dnsbl => &[
                "listed",
                "ip_listed",
                "domain_listed",
                "listed_zones",
                "listed_domains",
                "codes",
                "verdict",
            ],
            Kind::Rspamd => &[
                "is_spam",
                "score",
                "required_score",
                "action",
                "symbols",
                "verdict",
            ],
            Kind::Clamav => &["infected", "signature", "verdict"],
        }
    }

    /// Whether it can answer before the message arrives (at RCPT).
    pub fn before_data(self) -> bool {
        self == Kind::Dnsbl
    }
}

/// A result field as written in a condition, in the form `fields` lists.
pub fn field_name(result_field: &str) -> String {
    let lower = result_field.trim().to_ascii_lowercase();
    lower.strip_prefix("addon.").unwrap_or(&lower).to_string()
}

struct Zone {
    name: String,
    /// None: any 127.0.0.0/8 answer but 127.255.255.0/24.
    listed: Option<Vec<Ipv4Addr>>,
}

impl Zone {
    fn listed(&self, codes: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
        codes
            .iter()
            .copied()
            .filter(|c| match &self.listed {
                Some(list) => list.contains(c),
                None => c.octets()[0] == 127 && !(c.octets()[1] == 255 && c.octets()[2] == 255),
            })
            .collect()
    }
}

enum Engine {
    Dnsbl {
        client: Box<Dnsbl>,
        ip_zones: Vec<Zone>,
        domain_zones: Vec<Zone>,
        domains: Vec<DnsblDomainSource>,
        max_urls: usize,
    },
    Rspamd(Rspamd),
    Clamav(Clamd),
}

struct Instance {
    name: String,
    engine: Engine,
    timeout: Duration,
}

/// What an add-on may look at.
pub struct AddonInput<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    pub queue_id: &'a str,
    pub hostname: &'a str,
    /// None before the message arrives (at RCPT).
    pub message: Option<&'a [u8]>,
}

#[derive(Default)]
pub struct Addons {
    by_arn: HashMap<String, Instance>,
}

type Fields = Vec<(&'static str, AnalysisValue)>;

fn failed(kind: Kind) -> Fields {
    kind.fields()
        .iter()
        .map(|f| (*f, AnalysisValue::Text("PROCESSING_FAILED".into())))
        .collect()
}

/// The add-on names Postern runs, for messages.
const AVAILABLE: &str = "Postern runs POSTERN_DNSBL (also as SPAMHAUS_DBL, ABUSIX_MAIL_INTELLIGENCE), POSTERN_RSPAMD (also as VADE_ADVANCED_EMAIL_SECURITY) and POSTERN_CLAMAV (also as TRENDMICRO_VSAPI)";

/// Where Rspamd's normal worker listens unless an instance says otherwise.
pub const DEFAULT_RSPAMD_URL: &str = "http://127.0.0.1:11333";
/// clamd's socket as Debian's clamav-daemon sets it up.
pub const DEFAULT_CLAMD_SOCKET: &str = "/var/run/clamav/clamd.ctl";

impl Addons {
    /// The add-on instances of `config`; problems are added by field path.
    pub fn build(
        config: &ValidatedConfig,
        nameservers: &[SocketAddr],
        problems: &mut Vec<String>,
    ) -> Addons {
        let mut by_arn = HashMap::new();
        for (i, (_, subscription)) in config.addon_subscriptions().enumerate() {
            if Kind::of(&subscription.addon_name).is_none() {
                problems.push(format!(
                    "AddonSubscriptions[{i}].AddonName: {} is not an add-on Postern runs; {AVAILABLE}",
                    subscription.addon_name
                ));
            }
        }
        for (i, (identity, instance)) in config.addon_instances().enumerate() {
            let at = format!("AddonInstances[{i}]");
            let Some(subscription) = config
                .resolve(
                    ResourceKind::AddonSubscription,
                    &instance.addon_subscription_id,
                )
                .and_then(|s| config.addon_subscriptions().find(|(id, _)| id.id == s.id))
                .map(|(_, s)| s.addon_name.clone())
            else {
                continue;
            };
            let Some(kind) = Kind::of(&subscription) else {
                problems.push(format!(
                    "{at}: the add-on {subscription} is not available; {AVAILABLE}"
                ));
                continue;
            };
            let timeout = Duration::from_secs(instance.timeout_seconds.unwrap_or(10) as u64);
            let engine = match kind {
                Kind::Dnsbl => {
                    let cfg = instance.dnsbl.clone().unwrap_or_default();
                    let zones = |list: &Option<Vec<postern_model::DnsblZone>>| -> Vec<Zone> {
                        list.iter()
                            .flatten()
                            .map(|z| Zone {
                                name: z.zone.trim_end_matches('.').to_ascii_lowercase(),
                                listed: z.listed_codes.as_ref().map(|codes| {
                                    codes.iter().filter_map(|c| c.parse().ok()).collect()
                                }),
                            })
                            .collect()
                    };
                    let mut ip_zones = zones(&cfg.ip_zones);
                    let mut domain_zones = zones(&cfg.domain_zones);
                    if ip_zones.is_empty() && domain_zones.is_empty() {
                        match subscription.as_str() {
                            "SPAMHAUS_DBL" => domain_zones.push(Zone {
                                name: "dbl.spamhaus.org".into(),
                                listed: None,
                            }),
                            "ABUSIX_MAIL_INTELLIGENCE" => ip_zones.push(Zone {
                                name: "combined.mail.abusix.zone".into(),
                                listed: None,
                            }),
                            _ => problems.push(format!("{at}.Dnsbl: give IpZones or DomainZones")),
                        }
                    }
                    match Dnsbl::new(nameservers, timeout) {
                        Ok(client) => Engine::Dnsbl {
                            client: Box::new(client),
                            ip_zones,
                            domain_zones,
                            domains: cfg.domains.clone().unwrap_or_else(|| {
                                vec![
                                    DnsblDomainSource::EnvelopeFrom,
                                    DnsblDomainSource::From,
                                    DnsblDomainSource::BodyUrls,
                                ]
                            }),
                            max_urls: cfg.max_url_domains.unwrap_or(20) as usize,
                        },
                        Err(e) => {
                            problems.push(format!("{at}: {e}"));
                            continue;
                        }
                    }
                }
                Kind::Rspamd => {
                    let default = postern_model::RspamdConfig {
                        url: DEFAULT_RSPAMD_URL.into(),
                        ..Default::default()
                    };
                    let cfg = instance.rspamd.as_ref().unwrap_or(&default);
                    let password = match &cfg.password {
                        Some(source) => match crate::peers::read_secret(config, source) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                problems.push(format!("{at}.Rspamd.Password: {e}"));
                                continue;
                            }
                        },
                        None => None,
                    };
                    match Rspamd::new(&cfg.url, timeout, password) {
                        Ok(r) => Engine::Rspamd(r),
                        Err(e) => {
                            problems.push(format!("{at}.Rspamd.Url: {e}"));
                            continue;
                        }
                    }
                }
                Kind::Clamav => {
                    let address = match &instance.clamav {
                        Some(ClamavConfig::Address(a)) => match a.parse::<SocketAddr>() {
                            Ok(a) => ClamdAddress::Tcp(a),
                            Err(_) => {
                                problems.push(format!("{at}.Clamav.Address: {a} is not ip:port"));
                                continue;
                            }
                        },
                        Some(ClamavConfig::Socket(path)) => {
                            ClamdAddress::Unix(crate::peers::base(config).join(path))
                        }
                        None => ClamdAddress::Unix(DEFAULT_CLAMD_SOCKET.into()),
                    };
                    Engine::Clamav(Clamd::new(address, timeout))
                }
            };
            by_arn.insert(
                identity.arn.clone(),
                Instance {
                    name: subscription,
                    engine,
                    timeout,
                },
            );
        }
        Addons { by_arn }
    }

    /// The kind of the instance with this ARN.
    pub fn kind(&self, arn: &str) -> Option<Kind> {
        self.by_arn
            .get(arn)
            .map(|i| Kind::of(&i.name).expect("known"))
    }

    /// The results of `needed`, every add-on asked at most once and all at
    /// the same time.
    pub async fn analyze(
        &self,
        needed: &[(String, String)],
        input: &AddonInput<'_>,
    ) -> HashMap<(String, String), AnalysisValue> {
        let mut arns: Vec<&str> = needed.iter().map(|(a, _)| a.as_str()).collect();
        arns.sort_unstable();
        arns.dedup();
        let runs = arns.iter().map(|arn| async move {
            let fields = match self.by_arn.get(*arn) {
                Some(instance) => instance.run(input).await,
                None => Vec::new(),
            };
            (*arn, fields)
        });
        let results: HashMap<&str, Fields> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .collect();
        let mut out = HashMap::new();
        for (arn, field) in needed {
            let name = field_name(field);
            if let Some((_, value)) = results
                .get(arn.as_str())
                .and_then(|f| f.iter().find(|(n, _)| *n == name))
            {
                out.insert((arn.clone(), field.clone()), value.clone());
            }
        }
        out
    }
}

impl Instance {
    async fn run(&self, input: &AddonInput<'_>) -> Fields {
        let kind = Kind::of(&self.name).expect("known");
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, self.engine.run(input)).await;
        let (fields, outcome) = match result {
            Ok(Ok(fields)) => (fields, "ok"),
            Ok(Err(e)) => {
                tracing::warn!(addon = %self.name, error = %e, "add-on failed; its results read PROCESSING_FAILED");
                (failed(kind), "error")
            }
            Err(_) => {
                tracing::warn!(addon = %self.name, timeout = ?self.timeout, "add-on timed out; its results read PROCESSING_FAILED");
                (failed(kind), "timeout")
            }
        };
        metrics::counter!("postern_addon_runs_total", "addon" => self.name.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!("postern_addon_seconds", "addon" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        fields
    }
}

fn text(s: impl Into<String>) -> AnalysisValue {
    AnalysisValue::Text(s.into())
}

fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| {
            d.trim_end_matches('>')
                .trim_end_matches('.')
                .to_ascii_lowercase()
        })
        .filter(|d| !d.is_empty() && !d.starts_with('['))
}

/// The From header's domain.
fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = postern_engine::message_parser().parse_headers(message)?;
    let from = parsed.from()?.first()?.address()?.to_string();
    domain_of(&from)
}

impl Engine {
    async fn run(&self, input: &AddonInput<'_>) -> Result<Fields, AddonError> {
        match self {
            Engine::Dnsbl {
                client,
                ip_zones,
                domain_zones,
                domains,
                max_urls,
            } => {
                let mut listed_zones = Vec::new();
                let mut listed_domains = Vec::new();
                let mut codes: Vec<String> = Vec::new();
                let mut errors = 0usize;
                let mut asked = 0usize;
                let mut ip_listed = false;
                for zone in ip_zones {
                    asked += 1;
                    match client.check_ip(&zone.name, input.ip).await {
                        Ok(Some(answer)) => {
                            let hit = zone.listed(&answer);
                            if !hit.is_empty() {
                                ip_listed = true;
                                listed_zones.push(zone.name.clone());
                                codes.extend(hit.iter().map(|c| c.to_string()));
                            }
                        }
                        Ok(None) => {}
                        Err(_) => errors += 1,
                    }
                }
                let mut names: Vec<String> = Vec::new();
                for source in domains {
                    match source {
                        DnsblDomainSource::EnvelopeFrom => names.extend(domain_of(input.mail_from)),
                        DnsblDomainSource::Helo => {
                            if input.helo.contains('.') && !input.helo.starts_with('[') {
                                names.push(input.helo.trim_end_matches('.').to_ascii_lowercase());
                            }
                        }
                        DnsblDomainSource::From => {
                            names.extend(input.message.and_then(from_domain))
                        }
                        DnsblDomainSource::BodyUrls => {
                            if let Some(m) = input.message {
                                names.extend(body_url_domains(m, *max_urls));
                            }
                        }
                    }
                }
                names.sort();
                names.dedup();
                let mut domain_listed = false;
                for zone in domain_zones {
                    for name in &names {
                        asked += 1;
                        match client.check_domain(&zone.name, name).await {
                            Ok(Some(answer)) => {
                                let hit = zone.listed(&answer);
                                if !hit.is_empty() {
                                    domain_listed = true;
                                    if !listed_zones.contains(&zone.name) {
                                        listed_zones.push(zone.name.clone());
                                    }
                                    listed_domains.push(name.clone());
                                    codes.extend(hit.iter().map(|c| c.to_string()));
                                }
                            }
                            Ok(None) => {}
                            Err(_) => errors += 1,
                        }
                    }
                }
                let listed = ip_listed || domain_listed;
                if !listed && asked > 0 && errors == asked {
                    return Err(AddonError::Unavailable(
                        "every block list lookup failed".into(),
                    ));
                }
                codes.sort();
                codes.dedup();
                let verdict = if listed {
                    "FAIL"
                } else if errors > 0 {
                    "PROCESSING_FAILED"
                } else {
                    "PASS"
                };
                Ok(vec![
                    ("listed", AnalysisValue::Bool(listed)),
                    ("ip_listed", AnalysisValue::Bool(ip_listed)),
                    ("domain_listed", AnalysisValue::Bool(domain_listed)),
                    ("listed_zones", text(listed_zones.join(","))),
                    ("listed_domains", text(listed_domains.join(","))),
                    ("codes", text(codes.join(","))),
                    ("verdict", text(verdict)),
                ])
            }
            Engine::Rspamd(rspamd) => {
                let Some(message) = input.message else {
                    return Err(AddonError::Unavailable("Rspamd needs the message".into()));
                };
                let result = rspamd
                    .check(
                        &RspamdEnvelope {
                            ip: input.ip,
                            helo: input.helo,
                            mail_from: input.mail_from,
                            recipients: input.recipients,
                            queue_id: input.queue_id,
                            hostname: input.hostname,
                        },
                        message,
                    )
                    .await?;
                let verdict = match result.action.as_str() {
                    "no action" => "PASS",
                    "reject" => "FAIL",
                    _ => "GRAY",
                };
                Ok(vec![
                    ("is_spam", AnalysisValue::Bool(result.is_spam)),
                    ("score", text(format!("{:.2}", result.score))),
                    (
                        "required_score",
                        text(format!("{:.2}", result.required_score)),
                    ),
                    (
                        "action",
                        text(result.action.to_ascii_uppercase().replace(' ', "_")),
                    ),
                    ("symbols", text(result.symbols.join(","))),
                    ("verdict", text(verdict)),
                ])
            }
            Engine::Clamav(clamd) => {
                let Some(message) = input.message else {
                    return Err(AddonError::Unavailable("ClamAV needs the message".into()));
                };
                let result = clamd.scan(message).await?;
                Ok(vec![
                    ("infected", AnalysisValue::Bool(result.infected)),
                    ("signature", text(result.signature.unwrap_or_default())),
                    (
                        "verdict",
                        text(if result.infected { "FAIL" } else { "PASS" }),
                    ),
                ])
            }
        }
    }
}

/// The add-ons as the SMTP session asks them at RCPT, before the message.
pub struct AtRcpt {
    pub addons: std::sync::Arc<Addons>,
    pub hostname: String,
}

impl postern_smtp::Analyzer for AtRcpt {
    fn analyze<'a>(
        &'a self,
        needed: &'a [(String, String)],
        input: &'a postern_smtp::AnalysisInput,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = postern_smtp::AnalysisResults> + Send + 'a>,
    > {
        Box::pin(async move {
            self.addons
                .analyze(
                    needed,
                    &AddonInput {
                        ip: input.ip,
                        helo: &input.helo,
                        mail_from: &input.mail_from,
                        recipients: &[],
                        queue_id: "",
                        hostname: &self.hostname,
                        message: None,
                    },
                )
                .await
        })
    }
}
