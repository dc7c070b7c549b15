//! DeliverToQBusiness: a document with the message to the HTTP endpoint
//! Server.QBusinessApplications maps the ApplicationId to, through the
//! outbound queue (retried like any delivery, no DSN).

use super::{Failure, Input};
use crate::outbound::job::{HttpKind, Route};
use postern_endpoints::notification::qbusiness_document;
use postern_model::DeliverToQBusinessAction;

pub async fn run(input: &Input<'_>, action: &DeliverToQBusinessAction) -> Result<String, Failure> {
    let document = qbusiness_document(&input.facts(), &action.application_id, &action.index_id);
    let job = input.job(
        Route::Http {
            kind: HttpKind::QBusiness,
            target: action.application_id.clone(),
        },
        input.meta.mail_from.clone(),
        // One delivery: the endpoint, whatever the recipients.
        vec![action.application_id.clone()],
        false,
        input.runtime.peers.outbound.lifetime,
        None,
    );
    let body = serde_json::to_vec(&document).unwrap_or_default();
    let id = input.enqueue(&job, &body).await?;
    Ok(format!("queued as {id}"))
}
