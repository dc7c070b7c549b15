//! Create, get, list, update and delete for the eight resource kinds.
//!
//! An item of the document is the Create request (less `ClientToken`) with
//! its id, exactly what the config file declares; Get and List build the
//! model's output shapes from it and from the document's `Meta`.

use super::{Api, Snapshot, new_resource_id, now, page, required, with_token};
use crate::document::{self, KindInfo, info};
use crate::error::ApiError;
use postern_model::{Arn, ResourceKind};
use serde_json::{Map, Value, json};

/// Runs `operation` if it is one of this file's.
pub async fn call(api: &Api, operation: &str, input: &Value) -> Option<Result<Value, ApiError>> {
    let (verb, kind) = parse(operation)?;
    Some(match verb {
        Verb::Create => create(api, operation, kind, input).await,
        Verb::Get => get(&api.gateway.snapshot(), api, kind, input),
        Verb::List => list(&api.gateway.snapshot(), api, kind, input),
        Verb::Update => update(api, kind, input).await,
        Verb::Delete => delete(api, kind, input).await,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Create,
    Get,
    List,
    Update,
    Delete,
}

fn parse(operation: &str) -> Option<(Verb, ResourceKind)> {
    use ResourceKind as K;
    let kind_of = |noun: &str| {
        Some(match noun {
            "TrafficPolicy" | "TrafficPolicies" => K::TrafficPolicy,
            "RuleSet" | "RuleSets" => K::RuleSet,
            "IngressPoint" | "IngressPoints" => K::IngressPoint,
            "AddressList" | "AddressLists" => K::AddressList,
            "Archive" | "Archives" => K::Archive,
            "Relay" | "Relays" => K::Relay,
            "AddonSubscription" | "AddonSubscriptions" => K::AddonSubscription,
            "AddonInstance" | "AddonInstances" => K::AddonInstance,
            _ => return None,
        })
    };
    for (prefix, verb) in [
        ("Create", Verb::Create),
        ("Get", Verb::Get),
        ("List", Verb::List),
        ("Update", Verb::Update),
        ("Delete", Verb::Delete),
    ] {
        if let Some(noun) = operation.strip_prefix(prefix) {
            let kind = kind_of(noun)?;
            let plural = info(kind).section == noun;
            // Only the List operations take the plural noun.
            if (verb == Verb::List) != plural {
                return None;
            }
            return Some((verb, kind));
        }
    }
    None
}

fn arn(snapshot: &Snapshot, kind: ResourceKind, id: &str) -> String {
    Arn::new(&snapshot.config.region, &snapshot.config.account, kind, id).to_string()
}

/// The position of the item an id (or name, or ARN) in `member` names.
fn find(snapshot: &Snapshot, kind: ResourceKind, reference: &str) -> Result<usize, ApiError> {
    snapshot
        .config
        .index
        .resolve(kind, reference)
        .ok_or_else(|| ApiError::not_found(format!("no {} {reference}", kind.noun())))
}

/// The id of the resource a reference (name, id or ARN) names, as the
/// running config resolves it; the reference itself when it names none.
fn resolved_id(snapshot: &Snapshot, kind: ResourceKind, reference: &str) -> String {
    snapshot
        .config
        .resolve(kind, reference)
        .map(|identity| identity.id.clone())
        .unwrap_or_else(|| reference.to_string())
}

fn name_taken(document: &Value, kind: KindInfo, name: &str, except: Option<&str>) -> bool {
    document::items(document, kind.kind).iter().any(|item| {
        item[kind.name_member].as_str() == Some(name) && item[kind.id_member].as_str() != except
    })
}

async fn create(
    api: &Api,
    operation: &str,
    kind: ResourceKind,
    input: &Value,
) -> Result<Value, ApiError> {
    let k = info(kind);
    let token = input["ClientToken"].as_str();
    let id = new_resource_id(kind);
    let mut item = input.clone();
    if let Some(map) = item.as_object_mut() {
        map.remove("ClientToken");
        map.insert(k.id_member.into(), json!(id));
        if let Some(tags) = map.get("Tags").and_then(Value::as_array) {
            let tags = super::tags::checked(tags)?;
            map.insert("Tags".into(), json!(tags));
        }
    }
    let name = match kind {
        ResourceKind::AddonInstance => String::new(),
        _ => required(input, k.name_member)?.to_string(),
    };
    api.change(
        operation,
        token.map(|t| (t, input)),
        format!("{operation} {}", if name.is_empty() { &id } else { &name }),
        |snapshot, document| {
            match kind {
                ResourceKind::AddonInstance => {
                    let subscription = required(input, "AddonSubscriptionId")?;
                    let position = find(snapshot, ResourceKind::AddonSubscription, subscription)?;
                    let subscription_id = snapshot
                        .config
                        .index
                        .identities(ResourceKind::AddonSubscription)[position]
                        .id
                        .clone();
                    if document::items(document, kind).iter().any(|i| {
                        resolved_id(
                            snapshot,
                            ResourceKind::AddonSubscription,
                            i["AddonSubscriptionId"].as_str().unwrap_or_default(),
                        ) == subscription_id
                    }) {
                        return Err(ApiError::conflict(format!(
                            "add-on subscription {subscription} already has an instance"
                        )));
                    }
                }
                ResourceKind::AddonSubscription => {
                    if name_taken(document, k, &name, None) {
                        return Err(ApiError::conflict(format!(
                            "there is already a subscription to {name}"
                        )));
                    }
                }
                _ => {
                    if name_taken(document, k, &name, None) {
                        return Err(ApiError::conflict(format!(
                            "a {} named {name:?} already exists",
                            kind.noun()
                        )));
                    }
                }
            }
            document::items_mut(document, kind).push(item.clone());
            document::touch(document, &id, now(), true);
            if kind == ResourceKind::IngressPoint {
                document::set_meta(document, &id, "Status", json!("ACTIVE"));
                if input["IngressPointConfiguration"]["SmtpPassword"].is_string() {
                    document::set_meta(document, &id, "PasswordVersion", json!(1));
                }
            }
            Ok(())
        },
        |_| json!({ k.id_member: id }),
    )
    .await
}

/// The input's id member, resolved to a position.
fn target(snapshot: &Snapshot, kind: ResourceKind, input: &Value) -> Result<usize, ApiError> {
    find(snapshot, kind, required(input, info(kind).id_member)?)
}

fn get(
    snapshot: &Snapshot,
    api: &Api,
    kind: ResourceKind,
    input: &Value,
) -> Result<Value, ApiError> {
    if kind == ResourceKind::Archive
        && let Some(pending) = pending_archive(snapshot, required(input, "ArchiveId")?)
    {
        return Ok(pending);
    }
    let position = target(snapshot, kind, input)?;
    Ok(describe(snapshot, api, kind, position, Some(input)))
}

/// An archive deleted and pending deletion, as GetArchive shows it.
fn pending_archive(snapshot: &Snapshot, reference: &str) -> Option<Value> {
    let deleted = snapshot.document["Deleted"].as_object()?;
    // By id or ARN only: a new archive may have the name meanwhile.
    let (id, entry) = deleted.iter().find(|(id, entry)| {
        (id.as_str() == reference || arn(snapshot, ResourceKind::Archive, id) == reference)
            && !purged(entry)
    })?;
    let item = &entry["Item"];
    let (created, updated) = document::times(&snapshot.document, id);
    let mut out = json!({
        "ArchiveId": id,
        "ArchiveName": item["ArchiveName"],
        "ArchiveArn": arn(snapshot, ResourceKind::Archive, id),
        "ArchiveState": "PENDING_DELETION",
        "Retention": retention(item),
        "CreatedTimestamp": created.unwrap_or_default(),
        "LastUpdatedTimestamp": entry["Deleted"].as_f64().or(updated).unwrap_or_default(),
    });
    if let Some(key) = item["KmsKeyArn"].as_str() {
        out["KmsKeyArn"] = json!(key);
    }
    Some(out)
}

/// Whether a deleted archive's grace period is over (its messages are
/// deleted then, and the archive is gone).
fn purged(entry: &Value) -> bool {
    entry["PurgeAfter"].as_f64().is_some_and(|at| now() >= at)
}

fn retention(item: &Value) -> Value {
    if item["Retention"].is_object() {
        item["Retention"].clone()
    } else {
        json!({"RetentionPeriod": "PERMANENT"})
    }
}

/// The Get output of the item at `position`.
fn describe(
    snapshot: &Snapshot,
    api: &Api,
    kind: ResourceKind,
    position: usize,
    input: Option<&Value>,
) -> Value {
    let k = info(kind);
    let identity = &snapshot.config.index.identities(kind)[position];
    let item = &document::items(&snapshot.document, kind)[position];
    let id = identity.id.as_str();
    let (created, updated) = document::times(&snapshot.document, id);
    let created = created.unwrap_or_default();
    let updated = updated.unwrap_or(created);
    let mut out = Map::new();
    out.insert(k.id_member.into(), json!(id));
    out.insert(k.arn_member.into(), json!(identity.arn));
    let copy = |out: &mut Map<String, Value>, members: &[&str]| {
        for m in members {
            if !item[*m].is_null() {
                out.insert((*m).into(), item[*m].clone());
            }
        }
    };
    match kind {
        ResourceKind::RuleSet => {
            out.insert("RuleSetName".into(), json!(identity.name));
            out.insert("Rules".into(), item["Rules"].clone());
            out.insert("CreatedDate".into(), json!(created));
            out.insert("LastModificationDate".into(), json!(updated));
        }
        ResourceKind::TrafficPolicy => {
            copy(
                &mut out,
                &[
                    "TrafficPolicyName",
                    "PolicyStatements",
                    "MaxMessageSizeBytes",
                    "DefaultAction",
                ],
            );
            out.insert("CreatedTimestamp".into(), json!(created));
            out.insert("LastUpdatedTimestamp".into(), json!(updated));
        }
        ResourceKind::IngressPoint => {
            copy(
                &mut out,
                &[
                    "IngressPointName",
                    "Type",
                    "NetworkConfiguration",
                    "TlsPolicy",
                ],
            );
            out.insert("Status".into(), json!(ingress_status(snapshot, api, id)));
            out.insert("ARecord".into(), json!(a_record(snapshot, api, id)));
            for (member, of) in [
                ("RuleSetId", ResourceKind::RuleSet),
                ("TrafficPolicyId", ResourceKind::TrafficPolicy),
            ] {
                if let Some(reference) = item[member].as_str() {
                    out.insert(member.into(), json!(resolved_id(snapshot, of, reference)));
                }
            }
            let include_trust_store =
                input.is_some_and(|i| i["IncludeTrustStoreContents"].as_str() == Some("INCLUDE"));
            let password_version = snapshot.document["Meta"][id]["PasswordVersion"]
                .as_u64()
                .unwrap_or(1);
            if let Some(auth) = auth_configuration(item, include_trust_store, password_version) {
                out.insert("IngressPointAuthConfiguration".into(), auth);
            }
            out.insert("CreatedTimestamp".into(), json!(created));
            out.insert("LastUpdatedTimestamp".into(), json!(updated));
        }
        ResourceKind::AddressList => {
            out.insert("AddressListName".into(), json!(identity.name));
            out.insert("CreatedTimestamp".into(), json!(created));
            out.insert("LastUpdatedTimestamp".into(), json!(updated));
        }
        ResourceKind::Archive => {
            out.insert("ArchiveName".into(), json!(identity.name));
            out.insert("ArchiveState".into(), json!("ACTIVE"));
            out.insert("Retention".into(), retention(item));
            copy(&mut out, &["KmsKeyArn"]);
            out.insert("CreatedTimestamp".into(), json!(created));
            out.insert("LastUpdatedTimestamp".into(), json!(updated));
        }
        ResourceKind::Relay => {
            copy(
                &mut out,
                &["RelayName", "ServerName", "ServerPort", "Authentication"],
            );
            out.insert("CreatedTimestamp".into(), json!(created));
            out.insert("LastModifiedTimestamp".into(), json!(updated));
        }
        ResourceKind::AddonSubscription => {
            out.remove(k.id_member);
            out.insert("AddonName".into(), json!(identity.name));
            out.insert("CreatedTimestamp".into(), json!(created));
        }
        ResourceKind::AddonInstance => {
            let subscription = item["AddonSubscriptionId"].as_str().unwrap_or_default();
            out.remove(k.id_member);
            out.insert(
                "AddonSubscriptionId".into(),
                json!(resolved_id(
                    snapshot,
                    ResourceKind::AddonSubscription,
                    subscription
                )),
            );
            out.insert("AddonName".into(), json!(identity.name));
            out.insert("CreatedTimestamp".into(), json!(created));
        }
    }
    Value::Object(out)
}

/// ACTIVE while it listens, CLOSED when closed through the API, and
/// PROVISIONING while it has no listener yet (declared without `Listen`, or
/// added while running: listeners start at the next start).
fn ingress_status(snapshot: &Snapshot, api: &Api, id: &str) -> &'static str {
    if document::meta_str(&snapshot.document, id, "Status") == Some("CLOSED") {
        "CLOSED"
    } else if api.gateway.listening(id).is_empty() {
        "PROVISIONING"
    } else {
        "ACTIVE"
    }
}

/// Where the ingress point is reached: its first listen address's host, or
/// the server's host name.
fn a_record(snapshot: &Snapshot, api: &Api, id: &str) -> String {
    api.gateway
        .listening(id)
        .first()
        .cloned()
        .unwrap_or_else(|| {
            snapshot
                .config
                .config
                .server
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| "localhost".into())
        })
}

/// IngressPointAuthConfiguration from the item's IngressPointConfiguration:
/// never the password itself, only which version of it is in force (1 at
/// creation, one more at each change through UpdateIngressPoint).
fn auth_configuration(
    item: &Value,
    include_trust_store: bool,
    password_version: u64,
) -> Option<Value> {
    let config = item["IngressPointConfiguration"].as_object()?;
    if config.contains_key("SmtpPassword") {
        return Some(
            json!({"IngressPointPasswordConfiguration": {"SmtpPasswordVersion": password_version.to_string()}}),
        );
    }
    if let Some(arn) = config.get("SecretArn") {
        return Some(json!({ "SecretArn": arn }));
    }
    if let Some(tls) = config.get("TlsAuthConfiguration") {
        let mut tls = tls.clone();
        if !include_trust_store && let Some(store) = tls["TrustStore"].as_object_mut() {
            store.remove("CAContent");
            store.remove("CrlContent");
            if store.is_empty() {
                tls.as_object_mut().map(|t| t.remove("TrustStore"));
            }
        }
        return Some(json!({ "TlsAuthConfiguration": tls }));
    }
    None
}

fn list(
    snapshot: &Snapshot,
    api: &Api,
    kind: ResourceKind,
    input: &Value,
) -> Result<Value, ApiError> {
    let k = info(kind);
    let identities = snapshot.config.index.identities(kind);
    let items = document::items(&snapshot.document, kind);
    let mut summaries: Vec<Value> = identities
        .iter()
        .zip(items)
        .map(|(identity, item)| {
            let (created, updated) = document::times(&snapshot.document, &identity.id);
            let created = created.unwrap_or_default();
            let updated = updated.unwrap_or(created);
            match kind {
                ResourceKind::RuleSet => json!({"RuleSetId": identity.id, "RuleSetName": identity.name, "LastModificationDate": updated}),
                ResourceKind::TrafficPolicy => json!({"TrafficPolicyId": identity.id, "TrafficPolicyName": identity.name, "DefaultAction": item["DefaultAction"]}),
                ResourceKind::IngressPoint => json!({
                    "IngressPointId": identity.id, "IngressPointName": identity.name, "Type": item["Type"],
                    "Status": ingress_status(snapshot, api, &identity.id), "ARecord": a_record(snapshot, api, &identity.id)}),
                ResourceKind::AddressList => json!({"AddressListId": identity.id, "AddressListArn": identity.arn, "AddressListName": identity.name, "CreatedTimestamp": created, "LastUpdatedTimestamp": updated}),
                ResourceKind::Archive => json!({"ArchiveId": identity.id, "ArchiveName": identity.name, "ArchiveState": "ACTIVE", "LastUpdatedTimestamp": updated}),
                ResourceKind::Relay => json!({"RelayId": identity.id, "RelayName": identity.name, "LastModifiedTimestamp": updated}),
                ResourceKind::AddonSubscription => json!({"AddonSubscriptionId": identity.id, "AddonName": identity.name, "AddonSubscriptionArn": identity.arn, "CreatedTimestamp": created}),
                ResourceKind::AddonInstance => json!({
                    "AddonInstanceId": identity.id,
                    "AddonSubscriptionId": resolved_id(snapshot, ResourceKind::AddonSubscription, item["AddonSubscriptionId"].as_str().unwrap_or_default()),
                    "AddonName": identity.name, "AddonInstanceArn": identity.arn, "CreatedTimestamp": created}),
            }
        })
        .collect();
    if kind == ResourceKind::Archive
        && let Some(deleted) = snapshot.document["Deleted"].as_object()
    {
        for (id, entry) in deleted.iter().filter(|(_, e)| !purged(e)) {
            summaries.push(json!({"ArchiveId": id, "ArchiveName": entry["Item"]["ArchiveName"], "ArchiveState": "PENDING_DELETION", "LastUpdatedTimestamp": entry["Deleted"]}));
        }
    }
    let (items, next) = page(&summaries, input, 50)?;
    let list_member = match kind {
        ResourceKind::Archive => "Archives",
        _ => k.section,
    };
    Ok(with_token(json!({ list_member: items }), next))
}

async fn update(api: &Api, kind: ResourceKind, input: &Value) -> Result<Value, ApiError> {
    let k = info(kind);
    let reference = required(input, k.id_member)?.to_string();
    api.change(
        &format!("Update{kind:?}"),
        None,
        format!("Update{kind:?} {reference}"),
        |snapshot, document| {
            if kind == ResourceKind::Archive && pending_archive(snapshot, &reference).is_some() {
                return Err(ApiError::conflict(format!(
                    "archive {reference} is pending deletion"
                )));
            }
            let position = find(snapshot, kind, &reference)?;
            let id = snapshot.config.index.identities(kind)[position].id.clone();
            if let Some(name) = input[k.name_member].as_str()
                && name_taken(document, k, name, Some(&id))
            {
                return Err(ApiError::conflict(format!(
                    "a {} named {name:?} already exists",
                    kind.noun()
                )));
            }
            let item = &mut document::items_mut(document, kind)[position];
            let members: &[&str] = match kind {
                ResourceKind::RuleSet => &["RuleSetName", "Rules"],
                ResourceKind::TrafficPolicy => &[
                    "TrafficPolicyName",
                    "PolicyStatements",
                    "DefaultAction",
                    "MaxMessageSizeBytes",
                ],
                ResourceKind::IngressPoint => &[
                    "IngressPointName",
                    "RuleSetId",
                    "TrafficPolicyId",
                    "IngressPointConfiguration",
                    "TlsPolicy",
                ],
                ResourceKind::Archive => &["ArchiveName", "Retention"],
                ResourceKind::Relay => &["RelayName", "ServerName", "ServerPort", "Authentication"],
                _ => &[],
            };
            for member in members {
                if !input[*member].is_null() {
                    item[*member] = input[*member].clone();
                }
            }
            if input["IngressPointConfiguration"]["SmtpPassword"].is_string() {
                let version = document["Meta"][&id]["PasswordVersion"]
                    .as_u64()
                    .unwrap_or(1);
                document::set_meta(document, &id, "PasswordVersion", json!(version + 1));
            }
            if let Some(status) = input["StatusToUpdate"].as_str() {
                document::set_meta(document, &id, "Status", json!(status));
            }
            document::touch(document, &id, now(), false);
            Ok(())
        },
        |_| json!({}),
    )
    .await
}

async fn delete(api: &Api, kind: ResourceKind, input: &Value) -> Result<Value, ApiError> {
    let k = info(kind);
    let reference = required(input, k.id_member)?.to_string();
    let mut deleted = None;
    let result = api
        .change(
            &format!("Delete{kind:?}"),
            None,
            format!("Delete{kind:?} {reference}"),
            |snapshot, document| {
                let position = find(snapshot, kind, &reference)?;
                let identity = snapshot.config.index.identities(kind)[position].clone();
                let users: Vec<String> = snapshot
                    .config
                    .references
                    .iter()
                    .filter(|r| r.to == (kind, position))
                    .map(|r| {
                        let (from, at) = r.from;
                        let name = &snapshot.config.index.identities(from)[at].name;
                        format!("{} {name} ({})", from.noun(), r.path)
                    })
                    .collect();
                if !users.is_empty() {
                    return Err(ApiError::conflict(format!(
                        "{} {} is in use: {}",
                        kind.noun(),
                        identity.id,
                        users.join(", ")
                    )));
                }
                let item = document::items_mut(document, kind).remove(position);
                if kind == ResourceKind::Archive {
                    let deleted = document::object_mut(document, "Deleted");
                    let at = now();
                    let purge_after = at + api.gateway.deletion_grace_seconds();
                    deleted.insert(
                        identity.id.clone(),
                        json!({"Item": item, "Deleted": at, "PurgeAfter": purge_after}),
                    );
                } else {
                    document::object_mut(document, "Meta").remove(&identity.id);
                }
                deleted = Some(identity.id);
                Ok(())
            },
            |_| json!({}),
        )
        .await;
    // An address list's members go once the version without it is stored
    // (until then, the running version reads them).
    if kind == ResourceKind::AddressList
        && result.is_ok()
        && let Some(id) = &deleted
    {
        super::members::forget_members(&api.state, id).await;
    }
    // Deleting what is already gone is not an error for the operations the
    // model does not let fail with ResourceNotFoundException.
    match result {
        Err(e)
            if e.code == crate::ErrorCode::ResourceNotFoundException
                && matches!(
                    kind,
                    ResourceKind::RuleSet
                        | ResourceKind::AddressList
                        | ResourceKind::Archive
                        | ResourceKind::AddonInstance
                        | ResourceKind::AddonSubscription
                ) =>
        {
            Ok(json!({}))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_parsed() {
        assert_eq!(
            parse("CreateRuleSet"),
            Some((Verb::Create, ResourceKind::RuleSet))
        );
        assert_eq!(
            parse("ListRuleSets"),
            Some((Verb::List, ResourceKind::RuleSet))
        );
        assert_eq!(
            parse("ListTrafficPolicies"),
            Some((Verb::List, ResourceKind::TrafficPolicy))
        );
        assert_eq!(
            parse("GetArchive"),
            Some((Verb::Get, ResourceKind::Archive))
        );
        assert_eq!(
            parse("ListArchives"),
            Some((Verb::List, ResourceKind::Archive))
        );
        assert_eq!(parse("ListRelays"), Some((Verb::List, ResourceKind::Relay)));
        assert_eq!(
            parse("DeleteAddonInstance"),
            Some((Verb::Delete, ResourceKind::AddonInstance))
        );
        assert_eq!(parse("GetArchiveMessage"), None);
        assert_eq!(parse("ListArchiveSearches"), None);
        assert_eq!(parse("GetRuleSets"), None);
    }
}
