//! Tags: ListTagsForResource, TagResource, UntagResource. A resource's tags
//! are the `Tags` member of its item, as CreateX takes them.

use super::{Api, Snapshot, required};
use crate::document;
use crate::error::ApiError;
use postern_model::{Arn, ResourceKind};
use serde_json::{Value, json};

/// AWS's limit of tags per resource.
const MAX_TAGS: usize = 200;

pub async fn call(api: &Api, operation: &str, input: &Value) -> Option<Result<Value, ApiError>> {
    Some(match operation {
        "ListTagsForResource" => list(&api.gateway.snapshot(), input),
        "TagResource" => tag(api, input).await,
        "UntagResource" => untag(api, input).await,
        _ => return None,
    })
}

/// The kind and position of the resource an ARN names.
fn resource(snapshot: &Snapshot, input: &Value) -> Result<(ResourceKind, usize), ApiError> {
    let text = required(input, "ResourceArn")?;
    let not_found = || ApiError::not_found(format!("no resource {text}"));
    let arn = Arn::parse(text).ok_or_else(not_found)?;
    let kind = arn.kind;
    let position = snapshot
        .config
        .index
        .resolve(kind, text)
        .ok_or_else(not_found)?;
    Ok((kind, position))
}

fn list(snapshot: &Snapshot, input: &Value) -> Result<Value, ApiError> {
    let (kind, position) = resource(snapshot, input)?;
    let item = &document::items(&snapshot.document, kind)[position];
    let tags = item["Tags"].as_array().cloned().unwrap_or_default();
    Ok(json!({ "Tags": tags }))
}

/// Tags as given at create: reserved keys refused, the last value of a key
/// given twice kept.
pub fn checked(tags: &[Value]) -> Result<Vec<Value>, ApiError> {
    check_keys(tags.iter().filter_map(|t| t["Key"].as_str()))?;
    let mut out: Vec<Value> = Vec::new();
    for tag in tags {
        match out.iter_mut().find(|old| old["Key"] == tag["Key"]) {
            Some(old) => *old = tag.clone(),
            None => out.push(tag.clone()),
        }
    }
    Ok(out)
}

fn check_keys<'a>(keys: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    for key in keys {
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::validation(format!(
                "Tags: the prefix aws: is reserved ({key:?})"
            )));
        }
    }
    Ok(())
}

async fn tag(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let arn = required(input, "ResourceArn")?.to_string();
    let new: Vec<Value> = input["Tags"].as_array().cloned().unwrap_or_default();
    check_keys(new.iter().filter_map(|t| t["Key"].as_str()))?;
    api.change(
        "TagResource",
        None,
        format!("TagResource {arn}"),
        |snapshot, document| {
            let (kind, position) = resource(snapshot, input)?;
            let id = snapshot.config.index.identities(kind)[position].id.clone();
            let item = &mut document::items_mut(document, kind)[position];
            let mut tags = item["Tags"].as_array().cloned().unwrap_or_default();
            for t in &new {
                match tags.iter_mut().find(|old| old["Key"] == t["Key"]) {
                    Some(old) => *old = t.clone(),
                    None => tags.push(t.clone()),
                }
            }
            if tags.len() > MAX_TAGS {
                return Err(ApiError::quota(format!(
                    "a resource has at most {MAX_TAGS} tags; {} has {} with these",
                    id,
                    tags.len()
                )));
            }
            item["Tags"] = json!(tags);
            Ok(())
        },
        |_| json!({}),
    )
    .await
}

async fn untag(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let arn = required(input, "ResourceArn")?.to_string();
    let keys: Vec<String> = input["TagKeys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    api.change(
        "UntagResource",
        None,
        format!("UntagResource {arn}"),
        |snapshot, document| {
            let (kind, position) = resource(snapshot, input)?;
            let item = &mut document::items_mut(document, kind)[position];
            if let Some(tags) = item["Tags"].as_array_mut() {
                tags.retain(|t| !keys.iter().any(|k| t["Key"].as_str() == Some(k)));
            }
            Ok(())
        },
        |_| json!({}),
    )
    .await
}
