//! The resource document: what one version of the state holds, and what the
//! gateway runs.
//!
//! ```json
//! {"Resources": {"RuleSets": [...], "IngressPoints": [...], ...},
//!  "Meta": {"rs-…": {"Created": 1.7e9, "Updated": 1.7e9},
//!           "al-…": {"Created": 1.7e9, "Updated": 1.7e9, "MembersRevision": 42}, ...},
//!  "Deleted": {"a-…": {"Item": {...}, "Deleted": 1.7e9}}}
//! ```
//!
//! `Resources` has the sections of the config file (everything but
//! `Server`), every item with its explicit id. `Meta` keeps what the API
//! reports and the config file has no place for: when a resource was created
//! and last changed, and an ingress point's status. `Deleted` keeps archives
//! that are pending deletion, as GetArchive and ListArchives still show them.
//!
//! Address list members are not in the document: they are data, kept beside
//! the versions in the state store's members table (with when each was
//! added), and an address list item has no `Members`. What the document
//! keeps of them is `Meta[list id].MembersRevision`: the number of the
//! version that last changed the list's members (absent: none did). A
//! member change is therefore a version of its own, a small one, that every
//! node notices; the running config takes each list's members from the
//! table, and reads a list again only when its revision changed. Revisions
//! are version numbers, so a revision is never given to two different
//! member sets of a list, even of a list deleted and declared again under
//! its id.
//!
//! Versions before members moved to the table (written by an older
//! Postern) held them inline, as `Members` of each address list item, and
//! when each was added in a top-level `Members` map; [`inline_members`]
//! reads them so that they can be moved.

use postern_model::ResourceKind;
use serde_json::{Map, Value, json};

/// Where each kind lives in the document and how the API names its members.
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    pub kind: ResourceKind,
    pub section: &'static str,
    pub name_member: &'static str,
    pub id_member: &'static str,
    pub arn_member: &'static str,
}

pub fn info(kind: ResourceKind) -> KindInfo {
    let (section, name_member, id_member, arn_member) = match kind {
        ResourceKind::TrafficPolicy => (
            "TrafficPolicies",
            "TrafficPolicyName",
            "TrafficPolicyId",
            "TrafficPolicyArn",
        ),
        ResourceKind::RuleSet => ("RuleSets", "RuleSetName", "RuleSetId", "RuleSetArn"),
        ResourceKind::IngressPoint => (
            "IngressPoints",
            "IngressPointName",
            "IngressPointId",
            "IngressPointArn",
        ),
        ResourceKind::AddressList => (
            "AddressLists",
            "AddressListName",
            "AddressListId",
            "AddressListArn",
        ),
        ResourceKind::Archive => ("Archives", "ArchiveName", "ArchiveId", "ArchiveArn"),
        ResourceKind::Relay => ("Relays", "RelayName", "RelayId", "RelayArn"),
        ResourceKind::AddonSubscription => (
            "AddonSubscriptions",
            "AddonName",
            "AddonSubscriptionId",
            "AddonSubscriptionArn",
        ),
        ResourceKind::AddonInstance => (
            "AddonInstances",
            "AddonSubscriptionId",
            "AddonInstanceId",
            "AddonInstanceArn",
        ),
    };
    KindInfo {
        kind,
        section,
        name_member,
        id_member,
        arn_member,
    }
}

/// A document with nothing in it.
pub fn empty() -> Value {
    json!({"Resources": {}, "Meta": {}, "Deleted": {}})
}

/// The revision of the members of list `id`: the number of the version that
/// last changed them, 0 when none did.
pub fn members_revision(document: &Value, id: &str) -> u64 {
    document["Meta"][id]["MembersRevision"]
        .as_u64()
        .unwrap_or(0)
}

/// Records that version `version` changes the members of list `id`.
pub fn set_members_revision(document: &mut Value, id: &str, version: u64) {
    set_meta(document, id, "MembersRevision", json!(version));
}

/// The id and members revision of every address list of the document.
pub fn address_list_revisions(document: &Value) -> Vec<(String, u64)> {
    let id_member = info(ResourceKind::AddressList).id_member;
    items(document, ResourceKind::AddressList)
        .iter()
        .filter_map(|item| item[id_member].as_str())
        .map(|id| (id.to_string(), members_revision(document, id)))
        .collect()
}

/// Members an older version holds inline: for each address list item with
/// `Members`, its id and each member with when it was added (epoch
/// seconds; the list's creation time when the document does not say).
/// Empty for a document of this version.
pub fn inline_members(document: &Value) -> Vec<(String, Vec<(String, f64)>)> {
    let id_member = info(ResourceKind::AddressList).id_member;
    items(document, ResourceKind::AddressList)
        .iter()
        .filter_map(|item| {
            let id = item[id_member].as_str()?;
            let members = item.get("Members")?.as_array()?;
            let (created, _) = times(document, id);
            let added = &document["Members"][id];
            let members = members
                .iter()
                .filter_map(Value::as_str)
                .map(|m| {
                    let at = added[m.to_lowercase().as_str()]
                        .as_f64()
                        .or(created)
                        .unwrap_or_default();
                    (m.to_string(), at)
                })
                .collect();
            Some((id.to_string(), members))
        })
        .collect()
}

/// Whether the document is of an older version that holds members inline.
pub fn has_inline_members(document: &Value) -> bool {
    document.get("Members").is_some()
        || items(document, ResourceKind::AddressList)
            .iter()
            .any(|item| item.get("Members").is_some())
}

/// The document without the members an older version held inline.
pub fn without_inline_members(document: &Value) -> Value {
    let mut document = document.clone();
    if let Some(root) = document.as_object_mut() {
        root.remove("Members");
    }
    for item in items_mut(&mut document, ResourceKind::AddressList) {
        if let Some(item) = item.as_object_mut() {
            item.remove("Members");
        }
    }
    document
}

/// The items of a kind.
pub fn items(document: &Value, kind: ResourceKind) -> &[Value] {
    document["Resources"][info(kind).section]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The items of a kind, to change; the section is created if missing.
pub fn items_mut(document: &mut Value, kind: ResourceKind) -> &mut Vec<Value> {
    let resources = object_mut(document, "Resources");
    let section = resources
        .entry(info(kind).section)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !section.is_array() {
        *section = Value::Array(Vec::new());
    }
    section.as_array_mut().expect("an array")
}

/// A member of the document's top level as an object, created if missing.
pub fn object_mut<'a>(document: &'a mut Value, member: &str) -> &'a mut Map<String, Value> {
    if !document.is_object() {
        *document = empty();
    }
    let root = document.as_object_mut().expect("an object");
    let entry = root
        .entry(member)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("an object")
}

/// When a resource was created and last changed, in epoch seconds.
pub fn times(document: &Value, id: &str) -> (Option<f64>, Option<f64>) {
    let meta = &document["Meta"][id];
    (meta["Created"].as_f64(), meta["Updated"].as_f64())
}

/// Records that a resource was created (or changed) at `now`.
pub fn touch(document: &mut Value, id: &str, now: f64, created: bool) {
    let meta = object_mut(document, "Meta");
    let entry = meta
        .entry(id)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("meta entries are objects");
    if created || !entry.contains_key("Created") {
        entry.insert("Created".into(), json!(now));
    }
    entry.insert("Updated".into(), json!(now));
}

/// A string the API keeps about a resource (`Status` of an ingress point).
pub fn meta_str<'a>(document: &'a Value, id: &str, member: &str) -> Option<&'a str> {
    document["Meta"][id][member].as_str()
}

pub fn set_meta(document: &mut Value, id: &str, member: &str, value: Value) {
    let meta = object_mut(document, "Meta");
    let entry = meta.entry(id).or_insert_with(|| Value::Object(Map::new()));
    if let Some(entry) = entry.as_object_mut() {
        entry.insert(member.into(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_revisions_and_inline_members_of_older_versions() {
        let mut doc = empty();
        items_mut(&mut doc, ResourceKind::AddressList)
            .push(json!({"AddressListName": "vip", "AddressListId": "al-1"}));
        assert_eq!(address_list_revisions(&doc), vec![("al-1".to_string(), 0)]);
        set_members_revision(&mut doc, "al-1", 7);
        assert_eq!(members_revision(&doc, "al-1"), 7);
        assert_eq!(address_list_revisions(&doc), vec![("al-1".to_string(), 7)]);
        assert!(!has_inline_members(&doc));
        assert!(inline_members(&doc).is_empty());

        let older = json!({
            "Resources": {"AddressLists": [
                {"AddressListName": "vip", "AddressListId": "al-1",
                 "Members": ["CEO@example.com", "cfo@example.com"]},
                {"AddressListName": "empty", "AddressListId": "al-2"}]},
            "Meta": {"al-1": {"Created": 10.0, "Updated": 20.0}},
            "Members": {"al-1": {"ceo@example.com": 15.0}}});
        assert!(has_inline_members(&older));
        assert_eq!(
            inline_members(&older),
            vec![(
                "al-1".to_string(),
                vec![
                    ("CEO@example.com".to_string(), 15.0),
                    ("cfo@example.com".to_string(), 10.0)
                ]
            )]
        );
        let moved = without_inline_members(&older);
        assert!(!has_inline_members(&moved));
        assert_eq!(moved["Meta"], older["Meta"]);
        assert_eq!(
            moved["Resources"]["AddressLists"][0],
            json!({"AddressListName": "vip", "AddressListId": "al-1"})
        );
    }

    #[test]
    fn touch_keeps_the_creation_time() {
        let mut doc = empty();
        touch(&mut doc, "rs-1", 10.0, true);
        touch(&mut doc, "rs-1", 20.0, false);
        assert_eq!(times(&doc, "rs-1"), (Some(10.0), Some(20.0)));
    }
}
