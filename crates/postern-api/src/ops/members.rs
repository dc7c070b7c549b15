//! Address list members: RegisterMemberToAddressList,
//! DeregisterMemberFromAddressList, GetMemberOfAddressList,
//! ListMembersOfAddressList.
//!
//! Members live in the state store's members table, with when each was
//! added, not in the resource document (see `document.rs`). A change
//! writes the table first, then stores a version that raises the list's
//! `MembersRevision` (and its `LastUpdatedTimestamp`): that small version
//! is what makes every node, this one included, run the list's new
//! members. Reads answer from the table.

use super::archive::{seconds, state_error};
use super::{Api, Snapshot, now, required, with_token};
use crate::document;
use crate::error::ApiError;
use base64::Engine as _;
use postern_model::ResourceKind;
use serde_json::{Value, json};
use time::OffsetDateTime;

pub async fn call(api: &Api, operation: &str, input: &Value) -> Option<Result<Value, ApiError>> {
    Some(match operation {
        "RegisterMemberToAddressList" => register(api, input).await,
        "DeregisterMemberFromAddressList" => deregister(api, input).await,
        "GetMemberOfAddressList" => get(api, input).await,
        "ListMembersOfAddressList" => list(api, input).await,
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

/// Records in `document` that version `version` changes the members of the
/// list `id`, at `at` (epoch seconds).
pub fn changed(document: &mut Value, id: &str, version: u64, at: f64) {
    document::set_members_revision(document, id, version);
    document::touch(document, id, at, false);
}

/// Stores the version that says the members of the list `AddressListId`
/// names changed (written to the table before): its revision is raised,
/// and every node runs what the table holds. A list deleted meanwhile is a
/// ResourceNotFoundException, and what was written for it is removed.
async fn record_change(
    api: &Api,
    operation: &str,
    summary: String,
    input: &Value,
    list_id: &str,
) -> Result<Value, ApiError> {
    let result = api
        .change(
            operation,
            None,
            summary,
            |snapshot, document| {
                let (_, id) = address_list(snapshot, input)?;
                changed(document, &id, snapshot.version + 1, now());
                Ok(())
            },
            |_| json!({}),
        )
        .await;
    if result
        .as_ref()
        .is_err_and(|e| e.code == crate::ErrorCode::ResourceNotFoundException)
    {
        forget_members(&api.state, list_id).await;
    }
    result
}

/// Removes the members of a list that no longer exists (they may have
/// been written after its deletion removed the others); a failure is
/// logged: members of a list no version has are never read.
pub async fn forget_members(state: &postern_state::State, list_id: &str) {
    if let Err(e) = state.members_drop(list_id).await {
        tracing::warn!(list = list_id, error = %e, "the members of a deleted address list could not be removed");
    }
}

async fn register(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let address = member(required(input, "Address")?)
        .map_err(|e| ApiError::validation(format!("Address: {e}")))?;
    let (_, id) = address_list(&api.gateway.snapshot(), input)?;
    api.state
        .members_add(
            &id,
            std::slice::from_ref(&address),
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(state_error)?;
    let summary = format!("RegisterMemberToAddressList {address}");
    record_change(api, "RegisterMemberToAddressList", summary, input, &id).await
}

async fn deregister(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let address = required(input, "Address")?.trim().to_lowercase();
    let (_, id) = address_list(&api.gateway.snapshot(), input)?;
    // Nothing that is not a member's form can be one.
    if member(&address).is_ok() {
        api.state
            .members_remove(&id, &address)
            .await
            .map_err(state_error)?;
    }
    let summary = format!("DeregisterMemberFromAddressList {address}");
    record_change(api, "DeregisterMemberFromAddressList", summary, input, &id).await
}

async fn get(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let (_, id) = address_list(&api.gateway.snapshot(), input)?;
    let address = required(input, "Address")?.trim().to_lowercase();
    let added = match member(&address) {
        Ok(_) => api
            .state
            .members_get(&id, &address)
            .await
            .map_err(state_error)?,
        Err(_) => None,
    };
    added
        .map(|at| json!({"Address": address, "CreatedTimestamp": seconds(at)}))
        .ok_or_else(|| ApiError::not_found(format!("{address} is not a member of {id}")))
}

/// The members a ListMembersOfAddressList page holds when the request
/// gives no `PageSize`.
const DEFAULT_PAGE_SIZE: u64 = 100;

async fn list(api: &Api, input: &Value) -> Result<Value, ApiError> {
    let (_, id) = address_list(&api.gateway.snapshot(), input)?;
    let prefix = input["Filter"]["AddressPrefix"]
        .as_str()
        .map(str::to_lowercase);
    let after = match input["NextToken"].as_str() {
        None => None,
        Some(token) => Some(decode_token(token, &id)?),
    };
    let size = input["PageSize"]
        .as_u64()
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, u64::from(u32::MAX - 1)) as u32;
    // No member holds a control character: such a prefix matches none.
    if prefix
        .as_deref()
        .is_some_and(|p| p.chars().any(char::is_control))
    {
        return Ok(json!({"Addresses": []}));
    }
    // One more than the page, to know whether another page follows.
    let mut members = api
        .state
        .members_page(&id, prefix.as_deref(), after.as_deref(), size + 1)
        .await
        .map_err(state_error)?;
    let next = if members.len() > size as usize {
        members.truncate(size as usize);
        members
            .last()
            .map(|(address, _)| encode_token(&id, address))
    } else {
        None
    };
    let addresses: Vec<Value> = members
        .into_iter()
        .map(|(address, at)| json!({"Address": address, "CreatedTimestamp": seconds(at)}))
        .collect();
    Ok(with_token(json!({ "Addresses": addresses }), next))
}

/// What a member page's `NextToken` says, before base64: the list, and the
/// last address of the page (neither holds a line break).
const TOKEN_PREFIX: &str = "postern:members\n";

/// The `NextToken` of a page of the members of `list_id` that ended at
/// `address`.
fn encode_token(list_id: &str, address: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{TOKEN_PREFIX}{list_id}\n{address}"))
}

/// The address a `NextToken` of the members of `list_id` continues after;
/// a token this service did not give for this list is a
/// ValidationException.
fn decode_token(token: &str, list_id: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let rest = text.strip_prefix(TOKEN_PREFIX)?;
            let (list, address) = rest.split_once('\n')?;
            (list == list_id && !address.contains('\n')).then(|| address.to_string())
        })
        .ok_or_else(|| ApiError::validation("NextToken: not a token this service gave"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_list_and_address() {
        let token = encode_token("al-1", "bob@example.com");
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{token}"
        );
        assert_eq!(decode_token(&token, "al-1").unwrap(), "bob@example.com");
        // Another list's token, an offset token of another operation, and
        // garbage are refused.
        for (token, list) in [
            (token.as_str(), "al-2"),
            (super::super::encode_token(3).as_str(), "al-1"),
            ("garbage!", "al-1"),
            ("", "al-1"),
        ] {
            let e = decode_token(token, list).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::ValidationException);
            assert!(e.message.contains("NextToken"), "{}", e.message);
        }
    }

    #[test]
    fn members_are_checked_and_lowercased() {
        assert_eq!(member(" Bob@Example.COM ").unwrap(), "bob@example.com");
        assert_eq!(member("*@Partner.test").unwrap(), "*@partner.test");
        assert!(member("not an address").is_err());
        assert!(member("a*b@example.com").is_err());
    }

    #[test]
    fn a_change_raises_the_revision_and_the_update_time() {
        let mut doc = document::empty();
        document::touch(&mut doc, "al-1", 10.0, true);
        changed(&mut doc, "al-1", 5, 20.0);
        assert_eq!(document::members_revision(&doc, "al-1"), 5);
        assert_eq!(document::times(&doc, "al-1"), (Some(10.0), Some(20.0)));
    }
}
