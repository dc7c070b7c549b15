//! Address list members: RegisterMemberToAddressList,
//! DeregisterMemberFromAddressList, GetMemberOfAddressList,
//! ListMembersOfAddressList. Members are the `Members` of the list's item
//! (what the engine matches); when each was added is kept in the
//! document's `Members`.

use super::{Api, Snapshot, now, page, required, with_token};
use crate::document;
use crate::error::ApiError;
use postern_model::ResourceKind;
use serde_json::{Value, json};

pub async fn call(api: &Api, operation: &str, input: &Value) -> Option<Result<Value, ApiError>> {
    Some(match operation {
        "RegisterMemberToAddressList" => register(api, input).await,
        "DeregisterMemberFromAddressList" => deregister(api, input).await,
        "GetMemberOfAddressList" => get(&api.gateway.snapshot(), input),
        "ListMembersOfAddressList" => list(&api.gateway.snapshot(), input),
        _ => return None,
    })
}

/// The position and id of the list `AddressListId` names.
pub fn address_list(snapshot: &Snapshot, input: &Value) -> Result<(usize, String), ApiError> {
    let reference = required(input, "AddressListId")?;
    let position = snapshot
        .config
        .index
        .resolve(ResourceKind::AddressList, reference)
        .ok_or_else(|| ApiError::not_found(format!("no address list {reference}")))?;
    let id = snapshot.config.index.identities(ResourceKind::AddressList)[position]
        .id
        .clone();
    Ok((position, id))
}

/// An address as a member is kept: checked, and lowercased (addresses are
/// matched without regard to case, see docs/semantics.md).
pub fn member(address: &str) -> Result<String, String> {
    let address = address.trim();
    postern_config::check_list_member(address).map_err(|e| format!("{address:?}: {e}"))?;
    Ok(address.to_lowercase())
}

/// Adds `addresses` (already checked) to the list at `position`; returns
/// how many were new.
pub fn add(document: &mut Value, position: usize, id: &str, addresses: &[String]) -> usize {
    let at = now();
    let item = &mut document::items_mut(document, ResourceKind::AddressList)[position];
    let mut members: Vec<Value> = item["Members"].as_array().cloned().unwrap_or_default();
    let mut known: std::collections::HashSet<String> = members
        .iter()
        .filter_map(|m| m.as_str().map(str::to_lowercase))
        .collect();
    let mut added = Vec::new();
    for address in addresses {
        if known.insert(address.clone()) {
            members.push(json!(address));
            added.push(address.clone());
        }
    }
    item["Members"] = json!(members);
    let times = document::object_mut(document, "Members")
        .entry(id)
        .or_insert_with(|| json!({}));
    for address in &added {
        times[address.as_str()] = json!(at);
    }
    document::touch(document, id, at, false);
    added.len()
}

async fn register(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let address = member(required(input, "Address")?)
        .map_err(|e| ApiError::validation(format!("Address: {e}")))?;
    api.change(
        "RegisterMemberToAddressList",
        None,
        format!("RegisterMemberToAddressList {address}"),
        |snapshot, document| {
            let (position, id) = address_list(snapshot, input)?;
            add(document, position, &id, std::slice::from_ref(&address));
            Ok(())
        },
        |_| json!({}),
    )
    .await
}

async fn deregister(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let address = required(input, "Address")?.trim().to_lowercase();
    api.change(
        "DeregisterMemberFromAddressList",
        None,
        format!("DeregisterMemberFromAddressList {address}"),
        |snapshot, document| {
            let (position, id) = address_list(snapshot, input)?;
            let item = &mut document::items_mut(document, ResourceKind::AddressList)[position];
            if let Some(members) = item["Members"].as_array_mut() {
                members.retain(|m| m.as_str().map(str::to_lowercase).as_deref() != Some(&address));
            }
            if let Some(times) = document::object_mut(document, "Members")
                .get_mut(&id)
                .and_then(Value::as_object_mut)
            {
                times.remove(&address);
            }
            document::touch(document, &id, now(), false);
            Ok(())
        },
        |_| json!({}),
    )
    .await
}

/// The members of a list with when each was added.
fn saved(snapshot: &Snapshot, position: usize, id: &str) -> Vec<(String, f64)> {
    let (created, _) = document::times(&snapshot.document, id);
    let times = &snapshot.document["Members"][id];
    snapshot.config.address_list_members[position]
        .iter()
        .map(|m| {
            let at = times[m.to_lowercase().as_str()]
                .as_f64()
                .or(created)
                .unwrap_or_default();
            (m.clone(), at)
        })
        .collect()
}

fn get(snapshot: &Snapshot, input: &Value) -> Result<Value, ApiError> {
    let (position, id) = address_list(snapshot, input)?;
    let address = required(input, "Address")?.trim().to_lowercase();
    saved(snapshot, position, &id)
        .into_iter()
        .find(|(m, _)| m.to_lowercase() == address)
        .map(|(m, at)| json!({"Address": m, "CreatedTimestamp": at}))
        .ok_or_else(|| ApiError::not_found(format!("{address} is not a member of {id}")))
}

fn list(snapshot: &Snapshot, input: &Value) -> Result<Value, ApiError> {
    let (position, id) = address_list(snapshot, input)?;
    let prefix = input["Filter"]["AddressPrefix"]
        .as_str()
        .map(str::to_lowercase);
    let members: Vec<Value> = saved(snapshot, position, &id)
        .into_iter()
        .filter(|(m, _)| {
            prefix
                .as_ref()
                .is_none_or(|p| m.to_lowercase().starts_with(p))
        })
        .map(|(m, at)| json!({"Address": m, "CreatedTimestamp": at}))
        .collect();
    let (addresses, next) = page(&members, input, 100)?;
    Ok(with_token(json!({ "Addresses": addresses }), next))
}
