//! Send: the message to the internet, one outbound job per recipient
//! domain (each domain has its own mail exchangers), DKIM-signed when a
//! configured key matches the From domain and the client authenticated.

use super::{Failure, Input};
use crate::outbound::job::Route;
use postern_model::SendAction;
use std::collections::BTreeMap;

pub async fn run(input: &Input<'_>, _action: &SendAction) -> Result<String, Failure> {
    if input.recipients.is_empty() {
        return Ok("nothing to deliver: no recipients left".into());
    }
    let peers = &input.runtime.peers;
    // Only mail from a client that proved who it is (SMTP AUTH or an MTLS
    // certificate) is signed: an OPEN ingress point would otherwise sign
    // whatever From a stranger writes.
    let submitted = input.meta.authenticated.is_some() || !input.meta.client_certificate.is_empty();
    let signed;
    let body: &[u8] =
        match postern_delivery::sign(if submitted { &peers.dkim } else { &[] }, input.message) {
            Ok(Some(header)) => {
                signed = [header.as_bytes(), input.message].concat();
                &signed
            }
            Ok(None) => input.message,
            Err(e) => return Err(Failure::Failed(format!("DKIM signing: {e}"))),
        };
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in input.recipients {
        let domain = r
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        by_domain.entry(domain).or_default().push(r.clone());
    }
    let mut queued = Vec::new();
    for (domain, recipients) in by_domain {
        let job = input.job(
            Route::Mx {
                domain: domain.clone(),
            },
            input.meta.mail_from.clone(),
            recipients,
            true,
            peers.outbound.lifetime,
            Some(&domain),
        );
        let id = input.enqueue(&job, body).await?;
        queued.push(format!("{id} ({domain})"));
    }
    Ok(format!("queued as {}", queued.join(", ")))
}
