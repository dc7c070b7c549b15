//! DeliverToMailbox: to the backend Server.Mailboxes maps the MailboxArn
//! to (LMTP over TCP or a unix socket, or a Maildir), through the outbound
//! queue; LMTP's per-recipient replies decide each recipient's outcome.

use super::{Failure, Input};
use crate::outbound::job::Route;
use postern_model::DeliverToMailboxAction;

pub async fn run(input: &Input<'_>, action: &DeliverToMailboxAction) -> Result<String, Failure> {
    if input.recipients.is_empty() {
        return Ok("nothing to deliver: no recipients left".into());
    }
    let job = input.job(
        Route::Mailbox {
            mailbox_arn: action.mailbox_arn.clone(),
        },
        input.meta.mail_from.clone(),
        input.recipients.to_vec(),
        true,
        input.runtime.peers.outbound.lifetime,
        None,
    );
    let id = input.enqueue(&job, input.message).await?;
    Ok(format!("queued as {id} for {}", action.mailbox_arn))
}
