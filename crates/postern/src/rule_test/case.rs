//! A test case turned into the engine's inputs: ingress point, envelope,
//! parsed message and verdicts.

use postern_config::ValidatedConfig;
use postern_engine::{AnalysisValue, ClientCertificate, Engine, Envelope, TlsProtocol, Verdicts};
use postern_model::{ResourceKind, RuleTestCase, RuleTestTls, StringOrStringList};
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
