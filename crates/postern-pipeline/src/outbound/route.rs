//! One attempt against the peer of a route, for the recipients still
//! pending. Returns one outcome per recipient, in order.

use super::job::{HttpKind, JobMeta, Route};
use crate::Runtime;
use postern_delivery::{
    DnsError, Endpoint, Protocol, RecipientOutcome, Reply, SessionError, TlsPolicy, Transaction,
};
use postern_model::{MailboxTarget, RelayTls};
use std::net::SocketAddr;

/// Most addresses tried in one attempt to a domain's exchangers.
const MAX_ADDRESSES: usize = 10;

pub async fn deliver(
    runtime: &Runtime,
    job: &JobMeta,
    pending: &[String],
    body: &[u8],
) -> Vec<RecipientOutcome> {
    let all = |o: RecipientOutcome| vec![o; pending.len()];
    match &job.route {
        Route::Relay { relay_id } => {
            let Some((_, relay)) = runtime.config.relays().find(|(i, _)| i.id == *relay_id) else {
                return all(deferred(format!(
                    "relay {relay_id} is not in the running config"
                )));
            };
            let port = relay.server_port as u16;
            let addrs = match resolve(&relay.server_name, port).await {
                Ok(a) => a,
                Err(e) => return all(deferred(e)),
            };
            let tls = match relay.tls.unwrap_or(RelayTls::Opportunistic) {
                RelayTls::Required => TlsPolicy::Required,
                RelayTls::Opportunistic => TlsPolicy::Opportunistic,
                RelayTls::Implicit => TlsPolicy::Implicit,
                RelayTls::None => TlsPolicy::Disabled,
            };
            let credentials = runtime.peers.relay_credentials.get(relay_id);
            let endpoints: Vec<Endpoint> = addrs
                .into_iter()
                .map(|addr| Endpoint::Tcp {
                    host: relay.server_name.clone(),
                    addr,
                })
                .collect();
            try_endpoints(
                runtime,
                Protocol::Smtp,
                &endpoints,
                tls,
                credentials,
                job,
                pending,
                body,
            )
            .await
        }
        Route::Mx { domain } => {
            let exchangers = match runtime.peers.dns.mail_exchangers(domain).await {
                Ok(e) => e,
                Err(DnsError::Temporary(e)) => return all(deferred(format!("DNS: {e}"))),
                Err(DnsError::Permanent(e)) => {
                    return all(RecipientOutcome::Failed {
                        reason: format!("DNS: {e}"),
                        reply: None,
                    });
                }
            };
            let port = runtime.peers.outbound.smtp_port;
            let endpoints: Vec<Endpoint> = exchangers
                .iter()
                .flat_map(|x| {
                    x.addrs.iter().map(|ip| Endpoint::Tcp {
                        host: x.host.clone(),
                        addr: SocketAddr::new(*ip, port),
                    })
                })
                .take(MAX_ADDRESSES)
                .collect();
            if endpoints.is_empty() {
                return all(deferred(format!(
                    "no address for the mail exchangers of {domain}"
                )));
            }
            try_endpoints(
                runtime,
                Protocol::Smtp,
                &endpoints,
                TlsPolicy::Opportunistic,
                None,
                job,
                pending,
                body,
            )
            .await
        }
        Route::Mailbox { mailbox_arn } => {
            let server = runtime.config.config.server.clone().unwrap_or_default();
            let Some(target) = server.mailboxes.as_ref().and_then(|m| m.get(mailbox_arn)) else {
                return all(deferred(format!(
                    "{mailbox_arn} has no backend under Server.Mailboxes"
                )));
            };
            match target {
                MailboxTarget::Lmtp(address) => {
                    let (host, port) = match address
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                    {
                        Some((h, p)) => (
                            h.trim_start_matches('[').trim_end_matches(']').to_string(),
                            p,
                        ),
                        None => return all(deferred(format!("{address} is not host:port"))),
                    };
                    let endpoints: Vec<Endpoint> = match resolve(&host, port).await {
                        Ok(addrs) => addrs
                            .into_iter()
                            .map(|addr| Endpoint::Tcp {
                                host: host.clone(),
                                addr,
                            })
                            .collect(),
                        Err(e) => return all(deferred(e)),
                    };
                    try_endpoints(
                        runtime,
                        Protocol::Lmtp,
                        &endpoints,
                        TlsPolicy::Disabled,
                        None,
                        job,
                        pending,
                        body,
                    )
                    .await
                }
                MailboxTarget::LmtpSocket(path) => {
                    let endpoints = [Endpoint::Unix(
                        crate::peers::base(&runtime.config).join(path),
                    )];
                    try_endpoints(
                        runtime,
                        Protocol::Lmtp,
                        &endpoints,
                        TlsPolicy::Disabled,
                        None,
                        job,
                        pending,
                        body,
                    )
                    .await
                }
                MailboxTarget::Maildir(path) => {
                    let dir = crate::peers::base(&runtime.config).join(path);
                    match postern_delivery::deliver_maildir(&dir, body).await {
                        Ok(name) => all(RecipientOutcome::Delivered(Reply {
                            code: 250,
                            status: Some("2.0.0".into()),
                            text: format!("saved as {name}"),
                        })),
                        Err(e) => all(deferred(format!("Maildir {}: {e}", dir.display()))),
                    }
                }
            }
        }
        Route::Http { kind, target } => {
            let server = runtime.config.config.server.clone().unwrap_or_default();
            let endpoint = match kind {
                HttpKind::Function => server.functions.as_ref().and_then(|m| m.get(target)),
                HttpKind::QBusiness => server
                    .q_business_applications
                    .as_ref()
                    .and_then(|m| m.get(target)),
            };
            let Some(endpoint) = endpoint else {
                return all(deferred(format!(
                    "{target} has no endpoint in the running config"
                )));
            };
            let document: serde_json::Value = match serde_json::from_slice(body) {
                Ok(d) => d,
                Err(e) => {
                    return all(RecipientOutcome::Failed {
                        reason: format!("the queued document is not JSON: {e}"),
                        reply: None,
                    });
                }
            };
            let headers: Vec<(String, String)> = endpoint
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match runtime
                .peers
                .http
                .post_json(&endpoint.url, &document, &headers)
                .await
            {
                Ok((status, _)) => all(RecipientOutcome::Delivered(Reply {
                    code: status,
                    status: None,
                    text: format!("{} answered {status}", endpoint.url),
                })),
                Err(postern_endpoints::EndpointError::Temporary(e)) => all(deferred(e)),
                Err(postern_endpoints::EndpointError::Permanent(e)) => {
                    all(RecipientOutcome::Failed {
                        reason: e,
                        reply: None,
                    })
                }
            }
        }
    }
}

fn deferred(reason: String) -> RecipientOutcome {
    RecipientOutcome::Deferred {
        reason,
        reply: None,
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("{host} has no address"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("cannot resolve {host}: {e}")),
    }
}

/// Tries the endpoints in order until one holds a session: a temporary
/// failure before any recipient was decided moves on to the next.
#[allow(clippy::too_many_arguments)]
async fn try_endpoints(
    runtime: &Runtime,
    protocol: Protocol,
    endpoints: &[Endpoint],
    tls: TlsPolicy,
    credentials: Option<&postern_delivery::Credentials>,
    job: &JobMeta,
    pending: &[String],
    body: &[u8],
) -> Vec<RecipientOutcome> {
    let tx = Transaction {
        mail_from: &job.mail_from,
        recipients: pending,
        message: body,
    };
    let mut last = String::from("no endpoint to try");
    for endpoint in endpoints {
        match postern_delivery::deliver(
            &runtime.peers.smtp,
            protocol,
            endpoint,
            tls,
            credentials,
            &tx,
        )
        .await
        {
            Ok(outcomes) => return outcomes,
            Err(SessionError::Permanent(reason, reply)) => {
                return vec![
                    RecipientOutcome::Failed {
                        reason: format!("{}: {reason}", describe(endpoint)),
                        reply
                    };
                    pending.len()
                ];
            }
            Err(SessionError::Temporary(reason, _)) => {
                last = format!("{}: {reason}", describe(endpoint));
                tracing::debug!(endpoint = %describe(endpoint), reason = %reason, "trying the next address");
            }
        }
    }
    vec![deferred(last); pending.len()]
}

fn describe(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Tcp { host, addr } => format!("{host}[{addr}]"),
        Endpoint::Unix(path) => path.display().to_string(),
    }
}
