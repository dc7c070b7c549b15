//! A test case turned into the engine's inputs: ingress point, envelope,
//! parsed message and verdicts.

use postern_config::ValidatedConfig;
use postern_engine::{AnalysisValue, ClientCertificate, Engine, Envelope, TlsProtocol, Verdicts};
use postern_model::{
    ResourceKind, RuleDmarcPolicy, RuleTestCase, RuleTestDns, RuleTestTls, RuleVerdict,
    StringOrStringList,
};
use std::path::Path;

pub struct Prepared {
    pub ingress: usize,
    pub envelope: Envelope,
    /// The message with CRLF line endings, as it would arrive over SMTP.
    pub message: Vec<u8>,
    pub size: u64,
    pub verdicts: Verdicts,
}

pub fn prepare(
    config: &ValidatedConfig,
    engine: &Engine,
    case: &RuleTestCase,
    file_dns: Option<&RuleTestDns>,
    base: &Path,
) -> Result<Prepared, String> {
    let ingress = match &case.ingress_point {
        Some(reference) => engine
            .find_ingress_point(reference)
            .ok_or_else(|| format!("IngressPoint: no ingress point is named {reference:?}"))?,
        None if engine.ingress_points.len() == 1 => 0,
        None => {
            let names: Vec<&str> = engine
                .ingress_points
                .iter()
                .map(|b| b.identity.name.as_str())
                .collect();
            return Err(format!(
                "IngressPoint: the config has {} ingress points ({}); say which one",
                names.len(),
                names.join(", ")
            ));
        }
    };

    let e = &case.envelope;
    let certificate = e
        .client_certificate
        .as_ref()
        .map(|attributes| ClientCertificate {
            attributes: attributes
                .iter()
                .flat_map(|(name, values)| {
                    let attribute = postern_model::RuleClientCertificateAttribute::ALL
                        .iter()
                        .copied()
                        .find(|a| a.as_str() == name)
                        .expect("validated attribute name");
                    let values = match values {
                        StringOrStringList::String(v) => vec![v.clone()],
                        StringOrStringList::StringList(v) => v.clone(),
                    };
                    values.into_iter().map(move |v| (attribute, v))
                })
                .collect(),
        });
    let mut envelope = Envelope {
        sender_ip: e
            .sender_ip
            .parse()
            .map_err(|_| "Envelope.SenderIp: not an IP address".to_string())?,
        helo: e.helo.clone(),
        tls: match e.tls.unwrap_or(RuleTestTls::None) {
            RuleTestTls::None => None,
            RuleTestTls::Tls12 => Some(TlsProtocol::Tls12),
            RuleTestTls::Tls13 => Some(TlsProtocol::Tls13),
        },
        tls_wrapped: e.tls_wrapped.unwrap_or(false),
        client_certificate: certificate,
        mail_from: e.mail_from.clone(),
        recipients: e.recipients.clone(),
        declared_size: None,
    };
    if envelope.tls_wrapped && envelope.tls.is_none() {
        return Err("Envelope: TlsWrapped is true but Tls is NONE".into());
    }

    let text = match (&case.message, &case.message_file) {
        (Some(_), Some(_)) => return Err("give Message or MessageFile, not both".into()),
        (Some(text), None) => text.clone().into_bytes(),
        (None, Some(file)) => {
            let path = base.join(file);
            std::fs::read(&path)
                .map_err(|e| format!("MessageFile: cannot read {}: {e}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let message = crlf(&text);
    let size = e
        .message_size
        .map(|s| s as u64)
        .unwrap_or(message.len() as u64);
    envelope.declared_size = e.message_size.map(|s| s as u64);

    let mut verdicts = Verdicts::default();
    if let Some(v) = &case.verdicts {
        verdicts.spf = v.spf;
        verdicts.dkim = v.dkim;
        verdicts.dmarc = v.dmarc;
        for (analyzer, fields) in v.analysis.iter().flatten() {
            let identity = config
                .resolve(ResourceKind::AddonInstance, analyzer)
                .ok_or_else(|| {
                    format!(
                        "Verdicts.Analysis: {analyzer:?} names no add-on instance of the config"
                    )
                })?;
            for (field, value) in fields {
                let value = match value {
                    postern_model::AnalysisValue::Boolean(b) => AnalysisValue::Bool(*b),
                    postern_model::AnalysisValue::String(s) => AnalysisValue::Text(s.clone()),
                };
                verdicts
                    .analysis
                    .insert((identity.arn.clone(), field.clone()), value);
            }
        }
    }
    let dns: Vec<&RuleTestDns> = file_dns.into_iter().chain(case.dns.as_ref()).collect();
    if !dns.is_empty()
        && (verdicts.spf.is_none() || verdicts.dkim.is_none() || verdicts.dmarc.is_none())
    {
        let records = dns_records(&dns, base)?;
        let outcome = authenticate(&records, &envelope, &message);
        let verdict = |v: postern_auth::Verdict| match v {
            postern_auth::Verdict::Pass => RuleVerdict::Pass,
            postern_auth::Verdict::Fail => RuleVerdict::Fail,
            postern_auth::Verdict::Gray => RuleVerdict::Gray,
            postern_auth::Verdict::ProcessingFailed => RuleVerdict::ProcessingFailed,
        };
        verdicts.spf = verdicts.spf.or(Some(verdict(outcome.spf)));
        verdicts.dkim = verdicts.dkim.or(Some(verdict(outcome.dkim)));
        verdicts.dmarc = verdicts.dmarc.or(Some(match outcome.dmarc {
            postern_auth::DmarcPolicy::None => RuleDmarcPolicy::None,
            postern_auth::DmarcPolicy::Quarantine => RuleDmarcPolicy::Quarantine,
            postern_auth::DmarcPolicy::Reject => RuleDmarcPolicy::Reject,
        }));
    }
    Ok(Prepared {
        ingress,
        envelope,
        message,
        size,
        verdicts,
    })
}

/// Line endings as SMTP carries them: every line ends with CRLF.
fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 40);
    let mut prev = 0u8;
    for &b in text {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The records of the file's and the case's `Dns`, zone files first.
fn dns_records(dns: &[&RuleTestDns], base: &Path) -> Result<postern_auth::DnsRecords, String> {
    let mut zone = String::new();
    for d in dns {
        if let Some(file) = &d.zone_file {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("Dns.ZoneFile: cannot read {}: {e}", path.display()))?;
            if let Some(origin) = &d.origin {
                zone.push_str(&format!(
                    "$ORIGIN {}\n",
                    origin.trim_end_matches('.').to_string() + "."
                ));
            }
            zone.push_str(&text);
            zone.push('\n');
        }
    }
    let mut records = if zone.is_empty() {
        postern_auth::DnsRecords::new()
    } else {
        postern_auth::DnsRecords::parse_zone(&zone, None)
            .map_err(|e| format!("Dns.ZoneFile: {e}"))?
    };
    for d in dns {
        for (i, r) in d.records.iter().flatten().enumerate() {
            records
                .add(&r.name, r.type_.as_str(), &r.value)
                .map_err(|e| format!("Dns.Records[{i}]: {e}"))?;
        }
    }
    Ok(records)
}

/// SPF, DKIM, DMARC and ARC of the case's message, from `records` only.
fn authenticate(
    records: &postern_auth::DnsRecords,
    envelope: &Envelope,
    message: &[u8],
) -> postern_auth::AuthOutcome {
    let authenticator = postern_auth::Authenticator::offline(records);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(authenticator.authenticate(&postern_auth::AuthInput {
        client_ip: envelope.sender_ip,
        helo: envelope.helo.as_deref().unwrap_or_default(),
        mail_from: &envelope.mail_from,
        message,
        authserv_id: "postern-test",
    }))
}
