//! WriteToS3: the message (with the headers rules added) to
//! `S3Bucket/S3Prefix/{key}` in the object storage Server.ObjectStorage
//! names. The key is the queue id; a second WriteToS3 of the same message
//! to the same bucket and prefix (another rule, other recipients) adds the
//! rule and action numbers, so no copy overwrites another and a rerun after
//! a crash writes the same objects.

use super::{Failure, Input, with_retries};
use postern_endpoints::EndpointError;
use postern_model::S3Action;

pub async fn run(
    input: &Input<'_>,
    action: &S3Action,
    object_name: &str,
) -> Result<String, Failure> {
    let key = match action.s3_prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{object_name}"),
        _ => object_name.to_string(),
    };
    let body = bytes::Bytes::copy_from_slice(input.message);
    let objects = &input.runtime.peers.objects;
    let result = with_retries("WriteToS3", || {
        objects.put(
            &action.s3_bucket,
            &key,
            body.clone(),
            action.s3_sse_kms_key_id.as_deref(),
        )
    })
    .await;
    match result {
        Ok(()) => Ok(format!("written to s3://{}/{key}", action.s3_bucket)),
        Err(EndpointError::Temporary(e)) | Err(EndpointError::Permanent(e)) => Err(
            Failure::Failed(format!("s3://{}/{key}: {e}", action.s3_bucket)),
        ),
    }
}
