//! The clients and settings actions deliver with, built from a config: DNS,
//! the SMTP/LMTP client settings, DKIM keys, object storage, HTTP, NATS,
//! relay credentials, and the outbound queue's bounds. Built with the
//! runtime (again on each reload); everything a config names that cannot
//! be used (a key file missing, a secret unset, a MailboxArn with no
//! backend) is an error here, by field path, before any mail is accepted.

use postern_config::ValidatedConfig;
use postern_delivery::{ClientSettings, Credentials, DkimKey, Dns};
use postern_endpoints::{Http, Nats, ObjectStorage, S3Settings};
use postern_model::{
    ObjectStorageConfig, RelayAuthentication, ResourceKind, RuleAction, SecretSource,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The outbound queue's settings.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    pub smtp_port: u16,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub lifetime: Duration,
    pub max_concurrency: usize,
    pub max_per_destination: usize,
    /// The envelope sender of Relay actions with MailFrom REPLACE.
    pub replace_mail_from: String,
    /// The From of DSNs written about failed deliveries.
    pub bounce_sender: String,
    /// The relay (by id) that carries DSNs; None: the sender's MX.
    pub bounce_relay: Option<String>,
}

pub struct Peers {
    pub outbound: OutboundSettings,
    pub dns: Dns,
    pub smtp: ClientSettings,
    pub dkim: Vec<DkimKey>,
    pub objects: ObjectStorage,
    pub http: Http,
    pub nats: Nats,
    /// Relay credentials by relay id (relays with a SecretArn).
    pub relay_credentials: HashMap<String, Credentials>,
    /// SPF, DKIM, DMARC and ARC; None when Server.Authentication.Enabled is false.
    pub auth: Option<postern_auth::Authenticator>,
    pub addons: std::sync::Arc<crate::addons::Addons>,
    /// Keys of encryption at rest, by the KmsKeyArn archives name.
    pub archive_keys: HashMap<String, postern_archive::EncryptionKey>,
}

/// The value of a secret, from where `Server.Secrets` says.
pub fn secret(config: &ValidatedConfig, arn: &str) -> Result<String, String> {
    let server = config.config.server.clone().unwrap_or_default();
    let source = server
        .secrets
        .as_ref()
        .and_then(|s| s.get(arn))
        .ok_or_else(|| {
            format!(
                "{arn} is not under Server.Secrets: say where its value comes from (Env or File)"
            )
        })?;
    read_secret(config, source).map_err(|e| format!("Server.Secrets[{arn}]: {e}"))
}

pub fn read_secret(config: &ValidatedConfig, source: &SecretSource) -> Result<String, String> {
    match source {
        SecretSource::Env(name) => {
            std::env::var(name).map_err(|_| format!("the environment variable {name} is not set"))
        }
        SecretSource::File(path) => std::fs::read_to_string(base(config).join(path))
            .map(|v| v.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| format!("cannot read {path}: {e}")),
    }
}

/// The directory relative paths in the config are relative to.
pub fn base(config: &ValidatedConfig) -> PathBuf {
    Path::new(&config.file)
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// SMTP credentials from a relay's secret: a JSON object with `username`
/// and `password`, as Mail Manager keeps them in Secrets Manager.
fn parse_relay_credentials(value: &str) -> Result<Credentials, String> {
    let json: serde_json::Value = serde_json::from_str(value)
        .map_err(|e| format!("the secret is not a JSON object with username and password: {e}"))?;
    let field = |name: &str| {
        json.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("the secret has no string member \"{name}\""))
    };
    Ok(Credentials {
        username: field("username")?,
        password: field("password")?,
    })
}

impl Peers {
    pub fn build(
        config: &ValidatedConfig,
        data_dir: &Path,
        hostname: &str,
    ) -> Result<Peers, Vec<String>> {
        let mut problems = Vec::new();
        let server = config.config.server.clone().unwrap_or_default();
        let out = server.outbound.clone().unwrap_or_default();
        let secs = |v: Option<i32>, d: u64| Duration::from_secs(v.map(|v| v as u64).unwrap_or(d));
        let bounce_relay = out.bounce_relay.as_ref().and_then(|r| {
            let found = config.resolve(ResourceKind::Relay, r).map(|i| i.id.clone());
            if found.is_none() {
                problems.push(format!(
                    "Server.Outbound.BounceRelay: no relay named {r} (by name, id or ARN)"
                ));
            }
            found
        });
        let outbound = OutboundSettings {
            smtp_port: out.smtp_port.map(|p| p as u16).unwrap_or(25),
            retry_initial: secs(out.retry_initial_seconds, 60),
            retry_max: secs(out.retry_max_seconds, 3600),
            lifetime: secs(out.max_lifetime_seconds, 432_000),
            max_concurrency: out.max_concurrency.map(|v| v as usize).unwrap_or(100),
            max_per_destination: out
                .max_concurrency_per_destination
                .map(|v| v as usize)
                .unwrap_or(10),
            replace_mail_from: out
                .mail_from
                .clone()
                .unwrap_or_else(|| format!("postmaster@{hostname}")),
            bounce_sender: out
                .bounce_sender
                .clone()
                .unwrap_or_else(|| format!("MAILER-DAEMON@{hostname}")),
            bounce_relay,
        };

        let mut extra_roots = Vec::new();
        if let Some(file) = &out.trusted_ca_file {
            match std::fs::read(base(config).join(file)) {
                Ok(pem) => {
                    for cert in rustls_pemfile::certs(&mut &pem[..]) {
                        match cert {
                            Ok(cert) => extra_roots.push(cert),
                            Err(e) => {
                                problems.push(format!("Server.Outbound.TrustedCaFile: {file}: {e}"))
                            }
                        }
                    }
                    if extra_roots.is_empty() {
                        problems.push(format!(
                            "Server.Outbound.TrustedCaFile: {file} holds no PEM certificate"
                        ));
                    }
                }
                Err(e) => problems.push(format!("Server.Outbound.TrustedCaFile: {file}: {e}")),
            }
        }

        let mut dkim = Vec::new();
        for (i, key) in out.dkim_keys.iter().flatten().enumerate() {
            let loaded = std::fs::read_to_string(base(config).join(&key.private_key_file))
                .map_err(|e| format!("{}: {e}", key.private_key_file))
                .and_then(|pem| DkimKey::from_pem(&key.domain, &key.selector, &pem));
            match loaded {
                Ok(k) => dkim.push(k),
                Err(e) => {
                    problems.push(format!("Server.Outbound.DkimKeys[{i}].PrivateKeyFile: {e}"))
                }
            }
        }

        let dns_config = server.dns.clone().unwrap_or_default();
        let nameservers: Vec<std::net::SocketAddr> = dns_config
            .nameservers
            .iter()
            .flatten()
            .filter_map(|a| a.parse().ok())
            .collect();
        let dns = Dns::new(&nameservers, secs(dns_config.timeout_seconds, 5));
        let auth_config = server.authentication.clone().unwrap_or_default();
        let auth = if auth_config.enabled.unwrap_or(true) {
            match postern_auth::Authenticator::new(
                &nameservers,
                secs(auth_config.timeout_seconds, 10),
            ) {
                Ok(a) => Some(a),
                Err(e) => {
                    problems.push(format!("Server.Authentication: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let addons = crate::addons::Addons::build(config, &nameservers, &mut problems);
        let archive_keys = archive_keys(config, &mut problems);
        check_analysis(config, &addons, &mut problems);

        let objects =
            match object_storage(config, server.object_storage.as_ref(), &data_dir.join("s3")) {
                Ok(o) => Some(o),
                Err(e) => {
                    problems.push(format!("Server.ObjectStorage{e}"));
                    None
                }
            };

        let http = Http::new(Duration::from_secs(30), extra_roots.clone());

        let mut relay_credentials = HashMap::new();
        for (i, (identity, relay)) in config.relays().enumerate() {
            if let RelayAuthentication::SecretArn(arn) = &relay.authentication {
                match secret(config, arn).and_then(|v| parse_relay_credentials(&v)) {
                    Ok(c) => {
                        relay_credentials.insert(identity.id.clone(), c);
                    }
                    Err(e) => problems.push(format!("Relays[{i}].Authentication.SecretArn: {e}")),
                }
            }
        }

        // Every target an action names must lead somewhere.
        for (i, (_, rule_set)) in config.rule_sets().enumerate() {
            for (j, rule) in rule_set.rules.iter().enumerate() {
                for (k, action) in rule.actions.iter().enumerate() {
                    let at = format!("RuleSets[{i}].Rules[{j}].Actions[{k}]");
                    match action {
                        RuleAction::DeliverToMailbox(a)
                            if !server
                                .mailboxes
                                .as_ref()
                                .is_some_and(|m| m.contains_key(&a.mailbox_arn)) =>
                        {
                            problems.push(format!("{at}.DeliverToMailbox.MailboxArn: {} has no backend under Server.Mailboxes (Lmtp, LmtpSocket or Maildir)", a.mailbox_arn));
                        }
                        RuleAction::PublishToSns(a)
                            if !server
                                .topics
                                .as_ref()
                                .is_some_and(|m| m.contains_key(&a.topic_arn)) =>
                        {
                            problems.push(format!("{at}.PublishToSns.TopicArn: {} is not under Server.Topics (Webhook or Nats)", a.topic_arn));
                        }
                        RuleAction::InvokeLambda(a)
                            if !server
                                .functions
                                .as_ref()
                                .is_some_and(|m| m.contains_key(&a.function_arn)) =>
                        {
                            problems.push(format!(
                                "{at}.InvokeLambda.FunctionArn: {} is not under Server.Functions",
                                a.function_arn
                            ));
                        }
                        RuleAction::DeliverToQBusiness(a)
                            if !server
                                .q_business_applications
                                .as_ref()
                                .is_some_and(|m| m.contains_key(&a.application_id)) =>
                        {
                            problems.push(format!("{at}.DeliverToQBusiness.ApplicationId: {} is not under Server.QBusinessApplications", a.application_id));
                        }
                        _ => {}
                    }
                }
            }
        }

        let http = match http {
            Ok(h) => Some(h),
            Err(e) => {
                problems.push(format!("HTTP client: {e}"));
                None
            }
        };
        let dns = match dns {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!("Server.Dns: {e}"));
                None
            }
        };
        match (problems.is_empty(), objects, http, dns) {
            (true, Some(objects), Some(http), Some(dns)) => Ok(Peers {
                smtp: ClientSettings {
                    helo_name: hostname.to_string(),
                    connect_timeout: secs(out.connect_timeout_seconds, 30),
                    command_timeout: secs(out.command_timeout_seconds, 300),
                    data_timeout: secs(out.command_timeout_seconds, 300),
                    extra_roots,
                },
                outbound,
                dns,
                dkim,
                objects,
                http,
                nats: Nats::new(),
                relay_credentials,
                auth,
                addons: std::sync::Arc::new(addons),
                archive_keys,
            }),
            _ => Err(problems),
        }
    }
}

/// Object storage as an `ObjectStorageConfig` describes it; `default_dir`
/// when none is given. An error starts with the member path below the
/// config's own field (`.S3.AccessKeyId: ...`).
pub fn object_storage(
    config: &ValidatedConfig,
    storage: Option<&ObjectStorageConfig>,
    default_dir: &Path,
) -> Result<ObjectStorage, String> {
    let server = config.config.server.clone().unwrap_or_default();
    match storage {
        None => Ok(ObjectStorage::directory(default_dir.to_path_buf())),
        Some(ObjectStorageConfig::Directory(dir)) => {
            Ok(ObjectStorage::directory(base(config).join(dir)))
        }
        Some(ObjectStorageConfig::S3(s3)) => {
            let key = |source: &Option<SecretSource>, env: &str, field: &str| match source {
                Some(source) => {
                    read_secret(config, source).map_err(|e| format!(".S3.{field}: {e}"))
                }
                None => std::env::var(env).map_err(|_| {
                    format!(".S3.{field}: not given, and the environment variable {env} is not set")
                }),
            };
            let access_key_id = key(&s3.access_key_id, "AWS_ACCESS_KEY_ID", "AccessKeyId")?;
            let secret_access_key = key(
                &s3.secret_access_key,
                "AWS_SECRET_ACCESS_KEY",
                "SecretAccessKey",
            )?;
            Ok(ObjectStorage::s3(S3Settings {
                allow_http: s3
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
                endpoint: s3.endpoint.clone(),
                region: s3
                    .region
                    .clone()
                    .or(server.region.clone())
                    .unwrap_or_else(|| "us-east-1".into()),
                access_key_id,
                secret_access_key,
                virtual_hosted_style: s3.virtual_hosted_style.unwrap_or(false),
            }))
        }
    }
}

impl Peers {
    /// The archive keys that can be read (errors are reported by `build`).
    pub fn archive_keys_of(config: &ValidatedConfig) -> Vec<postern_archive::EncryptionKey> {
        archive_keys(config, &mut Vec::new())
            .into_values()
            .collect()
    }
}

/// The keys under Server.Archive.Keys (64 hex characters each), and every
/// archive's KmsKeyArn must have one.
fn archive_keys(
    config: &ValidatedConfig,
    problems: &mut Vec<String>,
) -> HashMap<String, postern_archive::EncryptionKey> {
    let server = config.config.server.clone().unwrap_or_default();
    let mut keys = HashMap::new();
    for (arn, source) in server.archive.and_then(|a| a.keys).unwrap_or_default() {
        let key = read_secret(config, &source).and_then(|hex| {
            let hex = hex.trim();
            let bytes: Option<Vec<u8>> = (hex.len() == 64)
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                        .collect()
                })
                .flatten();
            let bytes: [u8; 32] = bytes
                .and_then(|b| b.try_into().ok())
                .ok_or("the key is not 64 hexadecimal characters (32 bytes)")?;
            Ok(postern_archive::EncryptionKey::from_bytes(&arn, &bytes))
        });
        match key {
            Ok(k) => {
                keys.insert(arn, k);
            }
            Err(e) => problems.push(format!("Server.Archive.Keys[{arn}]: {e}")),
        }
    }
    for (i, (_, archive)) in config.archives().enumerate() {
        if let Some(arn) = &archive.kms_key_arn
            && !keys.contains_key(arn)
        {
            problems.push(format!(
                "Archives[{i}].KmsKeyArn: {arn} has no key under Server.Archive.Keys (a 32-byte key, in hex, from Env or File)"
            ));
        }
    }
    keys
}

/// Every Analysis condition must name a result field its add-on has, and
/// a traffic policy (decided before the message arrives) may read only
/// add-ons that do not need the message.
fn check_analysis(
    config: &ValidatedConfig,
    addons: &crate::addons::Addons,
    problems: &mut Vec<String>,
) {
    use postern_model::*;
    let mut check = |at: String, analysis_arn: &str, field: &str, at_rcpt: bool| {
        let arn = config
            .resolve(ResourceKind::AddonInstance, analysis_arn)
            .map(|i| i.arn.clone())
            .unwrap_or_default();
        let Some(kind) = addons.kind(&arn) else {
            return;
        };
        let name = crate::addons::field_name(field);
        if !kind.fields().contains(&name.as_str()) {
            problems.push(format!(
                "{at}.ResultField: {field} is not a result of this add-on; it has {}",
                kind.fields().join(", ")
            ));
        }
        if at_rcpt && !kind.before_data() {
            problems.push(format!("{at}.Analyzer: this add-on needs the message, and a traffic policy decides before the message arrives; use it in a rule"));
        }
    };
    for (i, (_, rule_set)) in config.rule_sets().enumerate() {
        for (j, rule) in rule_set.rules.iter().enumerate() {
            for (list, conditions) in [("Conditions", &rule.conditions), ("Unless", &rule.unless)] {
                for (k, c) in conditions.iter().flatten().enumerate() {
                    let at = format!("RuleSets[{i}].Rules[{j}].{list}[{k}]");
                    let analysis = match c {
                        RuleCondition::StringExpression(RuleStringExpression {
                            evaluate: RuleStringToEvaluate::Analysis(a),
                            ..
                        }) => Some(("StringExpression", a)),
                        RuleCondition::BooleanExpression(RuleBooleanExpression {
                            evaluate: RuleBooleanToEvaluate::Analysis(a),
                            ..
                        }) => Some(("BooleanExpression", a)),
                        RuleCondition::VerdictExpression(RuleVerdictExpression {
                            evaluate: RuleVerdictToEvaluate::Analysis(a),
                            ..
                        }) => Some(("VerdictExpression", a)),
                        _ => None,
                    };
                    if let Some((kind, a)) = analysis {
                        check(
                            format!("{at}.{kind}.Evaluate.Analysis"),
                            &a.analyzer,
                            &a.result_field,
                            false,
                        );
                    }
                }
            }
        }
    }
    for (i, (_, policy)) in config.traffic_policies().enumerate() {
        for (j, statement) in policy.policy_statements.iter().enumerate() {
            for (k, c) in statement.conditions.iter().enumerate() {
                let at = format!("TrafficPolicies[{i}].PolicyStatements[{j}].Conditions[{k}]");
                let analysis = match c {
                    PolicyCondition::StringExpression(IngressStringExpression {
                        evaluate: IngressStringToEvaluate::Analysis(a),
                        ..
                    }) => Some(("StringExpression", a)),
                    PolicyCondition::BooleanExpression(IngressBooleanExpression {
                        evaluate: IngressBooleanToEvaluate::Analysis(a),
                        ..
                    }) => Some(("BooleanExpression", a)),
                    _ => None,
                };
                if let Some((kind, a)) = analysis {
                    check(
                        format!("{at}.{kind}.Evaluate.Analysis"),
                        &a.analyzer,
                        &a.result_field,
                        true,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_relay_credentials as relay_credentials;

    #[test]
    fn relay_secret_is_json_with_username_and_password() {
        let c = relay_credentials(r#"{"username":"u","password":"p w"}"#).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p w"));
        assert!(
            relay_credentials("u:p")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            relay_credentials(r#"{"username":"u"}"#)
                .unwrap_err()
                .contains("\"password\"")
        );
    }
}
