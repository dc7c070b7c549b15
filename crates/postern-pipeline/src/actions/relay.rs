//! Relay: the message to a Relay resource over SMTP, through the outbound
//! queue. MailFrom PRESERVE keeps the envelope sender; REPLACE puts
//! Server.Outbound.MailFrom in its place. Permanent failures produce a DSN
//! to the original sender either way.

use super::{Failure, Input};
use crate::outbound::job::Route;
use postern_model::{MailFrom, RelayAction, ResourceKind};

pub async fn run(input: &Input<'_>, action: &RelayAction) -> Result<String, Failure> {
    if input.recipients.is_empty() {
        return Ok("nothing to deliver: no recipients left".into());
    }
    let relay = input
        .runtime
        .config
        .resolve(ResourceKind::Relay, &action.relay)
        .ok_or_else(|| {
            Failure::Failed(format!(
                "relay {} is not in the running config",
                action.relay
            ))
        })?;
    let peers = &input.runtime.peers.outbound;
    let mail_from = match action.mail_from.unwrap_or(MailFrom::Preserve) {
        MailFrom::Preserve => input.meta.mail_from.clone(),
        MailFrom::Replace => peers.replace_mail_from.clone(),
    };
    let job = input.job(
        Route::Relay {
            relay_id: relay.id.clone(),
        },
        mail_from,
        input.recipients.to_vec(),
        true,
        peers.lifetime,
        None,
    );
    let id = input.enqueue(&job, input.message).await?;
    Ok(format!("queued as {id} for relay {}", relay.name))
}
