//! The config file and the state store together.
//!
//! The store holds the resources (everything but `Server`) as versions;
//! the file holds `Server` and seeds the resources. Precedence: at start
//! and on SIGHUP, a file whose resources changed since they were last
//! taken from it becomes a new version (a changed file is a change, like an
//! API call); an unchanged file leaves the store's latest version, with
//! every change made through the API since, in force. `postern apply -f`
//! stores a file's resources as a new version of a running server's store.
//!
//! Address list members are kept in the store's members table, not in the
//! versions (see `postern_api::document`). The config that runs has them
//! inline again, as each list's `Members`, read from the table
//! ([`load_members`], which a [`MembersCache`] spares the lists whose
//! revision did not change). When a file's resources are taken, each
//! declared list's members replace the table's where they differ, and the
//! list's revision is raised ([`plan_members`]); lists no longer declared
//! lose theirs. The table is written before the version is stored: a crash
//! in between leaves members that the version after picks up, and a node
//! started then reads them, as every node reads the table for what it
//! runs.

use postern_api::document;
use postern_api::ops::Snapshot;
use postern_config::ValidatedConfig;
use postern_model::ResourceKind;
use postern_state::{State, StateError, Version};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// The members of address lists, by list id: what a config runs with.
pub type Members = HashMap<String, Arc<Vec<String>>>;

/// The resources of a config as a document: every item with its id (an
/// address list without its members, which are kept in the members
/// table), `Meta` kept from `previous` for the resources that stay.
pub fn document_of(config: &ValidatedConfig, previous: Option<&Value>, now: f64) -> Value {
    let mut doc = document::empty();
    let json = serde_json::to_value(&config.config).expect("a config serializes");
    for kind in ResourceKind::ALL {
        let info = document::info(kind);
        let identities = config.index.identities(kind);
        let Some(items) = json[info.section].as_array() else {
            continue;
        };
        let out = document::items_mut(&mut doc, kind);
        for (i, item) in items.iter().enumerate() {
            let mut item = item.clone();
            let id = identities[i].id.clone();
            item[info.id_member] = json!(id);
            if kind == ResourceKind::AddressList
                && let Some(map) = item.as_object_mut()
            {
                map.remove("Members");
                map.remove("MembersFile");
            }
            out.push(item);
        }
    }
    let ids: Vec<String> = ResourceKind::ALL
        .iter()
        .flat_map(|k| config.index.identities(*k).iter().map(|i| i.id.clone()))
        .collect();
    for id in &ids {
        match previous.and_then(|p| p["Meta"].get(id)) {
            Some(meta) => {
                document::object_mut(&mut doc, "Meta").insert(id.clone(), meta.clone());
            }
            None => document::touch(&mut doc, id, now, true),
        }
    }
    // Archives deleted through the API stay pending deletion.
    if let Some(deleted) = previous.and_then(|p| p["Deleted"].as_object()) {
        for (id, entry) in deleted {
            if !ids.contains(id) {
                document::object_mut(&mut doc, "Deleted").insert(id.clone(), entry.clone());
            }
        }
    }
    doc
}

/// A digest of the file's resources: what tells a changed file.
pub fn file_digest(config: &ValidatedConfig) -> String {
    let mut resources = serde_json::to_value(&config.config).expect("a config serializes");
    if let Some(map) = resources.as_object_mut() {
        map.remove("Server");
    }
    // Where this node listens is its own (see `config_of`), not a change of
    // the shared resources.
    for item in resources["IngressPoints"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if let Some(map) = item.as_object_mut() {
            for member in NODE_MEMBERS {
                map.remove(*member);
            }
        }
    }
    // Members of a MembersFile count too: a changed members file is a change.
    let text = format!("{resources}\n{:?}", config.address_list_members);
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// How `config_of` names a list's members in the state store where a
/// config file names a members file.
const STORE_MEMBERS: &str = "postern-state:";

/// The members of an ingress point that belong to a node: where it listens.
/// Nodes sharing a state store each listen where their own file says.
const NODE_MEMBERS: &[&str] = &["Listen", "ListenTls"];

/// The config a document stands for, with the file's `Server` and each
/// address list's members from `members` (by list id): checked as a config
/// file is, errors given by field path.
pub fn config_of(
    file: &ValidatedConfig,
    document: &Value,
    members: &Members,
) -> Result<ValidatedConfig, String> {
    let mut root = serde_json::Map::new();
    if let Some(server) = &file.config.server {
        root.insert(
            "Server".into(),
            serde_json::to_value(server).expect("a server section serializes"),
        );
    }
    let lists = document::info(ResourceKind::AddressList);
    if let Some(resources) = document["Resources"].as_object() {
        for (section, items) in resources {
            let Some(items) = items.as_array().filter(|a| !a.is_empty()) else {
                continue;
            };
            let mut items = items.clone();
            if section == document::info(ResourceKind::IngressPoint).section {
                // An ingress point this node's file declares listens where
                // the file says, whatever the node that stored the version
                // listens on.
                for item in &mut items {
                    let Some(id) = item["IngressPointId"].as_str() else {
                        continue;
                    };
                    let Some((_, own)) = file.ingress_points().find(|(i, _)| i.id == id) else {
                        continue;
                    };
                    let own = serde_json::to_value(own).expect("an ingress point serializes");
                    if let Some(map) = item.as_object_mut() {
                        for member in NODE_MEMBERS {
                            match own.get(*member) {
                                Some(v) if !v.is_null() => {
                                    map.insert((*member).into(), v.clone());
                                }
                                _ => {
                                    map.remove(*member);
                                }
                            }
                        }
                    }
                }
            }
            if section == lists.section {
                for item in &mut items {
                    // A list `members` does not name keeps what the document
                    // gives it (an older version's inline members, or none).
                    let Some((id, list)) = item[lists.id_member]
                        .as_str()
                        .and_then(|id| Some((id.to_string(), members.get(id)?)))
                    else {
                        continue;
                    };
                    if let Some(map) = item.as_object_mut() {
                        map.remove("Members");
                        if list.iter().any(|m| m.starts_with('#')) {
                            // A members file takes such a line for a
                            // comment: these lists stay inline.
                            map.insert("Members".into(), json!(list.as_slice()));
                        } else if !list.is_empty() {
                            // Read as a members file (one address a line):
                            // a million members are not a million YAML
                            // nodes to check.
                            map.insert("MembersFile".into(), json!(format!("{STORE_MEMBERS}{id}")));
                        }
                    }
                }
            }
            root.insert(section.clone(), Value::Array(items));
        }
    }
    let text = serde_json::to_string(&Value::Object(root)).expect("JSON serializes");
    postern_config::parse_config(&file.file, &text, &|path| {
        path.strip_prefix(STORE_MEMBERS)
            .and_then(|id| members.get(id))
            .map(|list| list.join("\n"))
            .ok_or_else(|| format!("{path}: not a list of the state store"))
    })
    .map_err(|diagnostics| {
        diagnostics
            .iter()
            .map(|d| {
                if d.path.is_empty() {
                    d.message.clone()
                } else {
                    format!("{}: {}", d.path, d.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The running snapshot of a version, its address lists with `members`.
pub fn snapshot(
    file: &ValidatedConfig,
    version: u64,
    document: Value,
    members: &Members,
) -> Result<Snapshot, String> {
    let config = config_of(file, &document, members)?;
    Ok(Snapshot {
        version,
        document,
        config,
    })
}

/// The members of address lists as last loaded, by list id, with the
/// revision they were loaded at: a list whose revision did not change is
/// not read again.
#[derive(Debug, Default)]
pub struct MembersCache {
    lists: HashMap<String, (u64, Arc<Vec<String>>)>,
}

impl MembersCache {
    /// Keeps the lists of `document` with the members `members` gives
    /// them, at their revisions in it; forgets the others. Only for a
    /// document that is stored: another writer's version may give a list
    /// the same revision with other members.
    pub fn keep(&mut self, document: &Value, members: &Members) {
        self.lists = document::address_list_revisions(document)
            .into_iter()
            .filter_map(|(id, revision)| {
                let list = members.get(&id)?.clone();
                Some((id, (revision, list)))
            })
            .collect();
    }
}

/// The members of every address list of `document`: from `cache` for the
/// lists loaded at their revision, from the store for the others (they are
/// not added to the cache: see [`MembersCache::keep`]).
pub async fn load_members(
    store: &State,
    document: &Value,
    cache: Option<&Mutex<MembersCache>>,
) -> Result<Members, StateError> {
    let mut members = Members::new();
    for (id, revision) in document::address_list_revisions(document) {
        let cached = cache.and_then(|cache| {
            let cache = cache.lock().expect("not poisoned");
            cache
                .lists
                .get(&id)
                .filter(|(at, _)| *at == revision)
                .map(|(_, list)| list.clone())
        });
        let list = match cached {
            Some(list) => list,
            None => Arc::new(store.members_all(&id).await?),
        };
        members.insert(id, list);
    }
    Ok(members)
}

/// How the members of a config's address lists differ from the store's,
/// and what they become when the config's resources are taken.
#[derive(Debug, Default)]
pub struct MemberPlan {
    changes: Vec<ListChange>,
    dropped: Vec<DroppedList>,
    /// The members of every address list of the config, as they are once
    /// the plan is written.
    pub members: Members,
}

/// A declared list whose members differ from the store's.
#[derive(Debug)]
struct ListChange {
    id: String,
    name: String,
    members: Arc<Vec<String>>,
    added: usize,
    removed: usize,
}

/// A list of the previous version that is no longer declared, with
/// members in the store.
#[derive(Debug)]
struct DroppedList {
    id: String,
    name: String,
    members: u64,
}

impl MemberPlan {
    /// Whether no list's members change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.dropped.is_empty()
    }

    /// One line per list whose members change:
    /// `AddressLists[vip]: 3 members added, 1 removed`.
    pub fn summary(&self) -> Vec<String> {
        let members = |n: usize| if n == 1 { "member" } else { "members" };
        let mut lines: Vec<String> = self
            .changes
            .iter()
            .map(|c| {
                let what = match (c.added, c.removed) {
                    (0, removed) => format!("{removed} {} removed", members(removed)),
                    (added, 0) => format!("{added} {} added", members(added)),
                    (added, removed) => {
                        format!("{added} {} added, {removed} removed", members(added))
                    }
                };
                format!("AddressLists[{}]: {what}", c.name)
            })
            .collect();
        lines.extend(self.dropped.iter().map(|d| {
            let n = d.members as usize;
            format!(
                "AddressLists[{}]: removed with its {n} {}",
                d.name,
                members(n)
            )
        }));
        lines
    }

    /// Writes the members: each changed list's replace the store's, those
    /// of lists no longer declared are removed. Before the version that
    /// names them is stored.
    pub async fn write(&self, store: &State) -> Result<(), StateError> {
        let now = OffsetDateTime::now_utc();
        for change in &self.changes {
            store
                .members_replace(&change.id, &change.members, now)
                .await?;
            tracing::info!(
                list = %change.id,
                added = change.added,
                removed = change.removed,
                "address list members taken from the config file"
            );
        }
        for dropped in &self.dropped {
            store.members_drop(&dropped.id).await?;
        }
        Ok(())
    }
}

/// A list's members as the config declares them, as they are kept:
/// lower-cased, sorted, without repeats.
fn declared_members(members: &[String]) -> Vec<String> {
    let mut out: Vec<String> = members.iter().map(|m| m.trim().to_lowercase()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// What taking `config`'s resources as version `version` does to the
/// members table: each declared list's members against the store's, and
/// the lists of `previous` that `document` (made from `config` by
/// [`document_of`]) no longer has. The lists whose members change get
/// revision `version` in `document`. Reads the store; writes nothing (see
/// [`MemberPlan::write`]).
pub async fn plan_members(
    store: &State,
    config: &ValidatedConfig,
    document: &mut Value,
    previous: Option<&Value>,
    version: u64,
) -> Result<MemberPlan, StateError> {
    let mut plan = MemberPlan::default();
    for (i, (identity, _)) in config.address_lists().enumerate() {
        let wanted = declared_members(&config.address_list_members[i]);
        let present = store.members_all(&identity.id).await?;
        let wanted = Arc::new(wanted);
        if *present != **wanted {
            let present_set: HashSet<&str> = present.iter().map(String::as_str).collect();
            let wanted_set: HashSet<&str> = wanted.iter().map(String::as_str).collect();
            plan.changes.push(ListChange {
                id: identity.id.clone(),
                name: identity.name.clone(),
                members: wanted.clone(),
                added: wanted_set.difference(&present_set).count(),
                removed: present_set.difference(&wanted_set).count(),
            });
            document::set_members_revision(document, &identity.id, version);
        }
        plan.members.insert(identity.id.clone(), wanted);
    }
    let lists = document::info(ResourceKind::AddressList);
    for item in previous
        .map(|p| document::items(p, ResourceKind::AddressList))
        .unwrap_or_default()
    {
        let Some(id) = item[lists.id_member].as_str() else {
            continue;
        };
        if plan.members.contains_key(id) {
            continue;
        }
        let members = store.members_count(id).await?;
        if members > 0 {
            plan.dropped.push(DroppedList {
                id: id.to_string(),
                name: item[lists.name_member].as_str().unwrap_or(id).to_string(),
                members,
            });
        }
    }
    Ok(plan)
}

/// Moves the members that `latest`, a version an older Postern stored,
/// holds inline into the members table (with when each was added), and
/// stores the document without them as the next version; returns the
/// store's latest version after. A version without inline members is
/// returned as it is.
pub async fn move_inline_members(store: &State, mut latest: Version) -> Result<Version, String> {
    let failed = |e: StateError| format!("state store: {e}");
    loop {
        if !document::has_inline_members(&latest.document) {
            return Ok(latest);
        }
        let mut document = document::without_inline_members(&latest.document);
        for (id, members) in document::inline_members(&latest.document) {
            // By when they were added, in milliseconds (as the API kept it).
            let mut by_time: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            for (address, at) in members {
                by_time
                    .entry((at * 1000.0).round() as i64)
                    .or_default()
                    .push(address.trim().to_lowercase());
            }
            for (millis, addresses) in by_time {
                let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
                    .unwrap_or_else(|_| OffsetDateTime::now_utc());
                store
                    .members_add(&id, &addresses, at)
                    .await
                    .map_err(failed)?;
            }
            document::set_members_revision(&mut document, &id, latest.number + 1);
        }
        match store
            .commit(
                latest.number,
                &document,
                "upgrade",
                "address list members moved to the members table",
            )
            .await
        {
            Ok(number) => {
                tracing::info!(
                    version = number,
                    "address list members moved out of the versions, to the members table"
                );
            }
            // Another node moved them (or changed something) first.
            Err(StateError::Conflict { .. }) => {}
            Err(e) => return Err(failed(e)),
        }
        latest = store
            .latest()
            .await
            .map_err(failed)?
            .ok_or_else(|| "state store: the versions are gone".to_string())?;
    }
}

/// What the document's ingress points closed through the API are.
pub fn closed_ingress_points(document: &Value) -> Vec<String> {
    document["Meta"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, meta)| meta["Status"].as_str() == Some("CLOSED"))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The document's resources, as a config file declares them.
pub fn resources(document: &Value) -> Value {
    let mut root = serde_json::Map::new();
    if let Some(resources) = document["Resources"].as_object() {
        for kind in ResourceKind::ALL {
            let section = document::info(kind).section;
            if let Some(items) = resources.get(section).and_then(Value::as_array)
                && !items.is_empty()
            {
                root.insert(section.into(), Value::Array(items.clone()));
            }
        }
    }
    Value::Object(root)
}

/// The resources as text to compare (what `postern apply` shows), with
/// every value the model calls sensitive (passwords) replaced.
pub fn resources_text(document: &Value) -> String {
    let mut resources = resources(document);
    for kind in ResourceKind::ALL {
        let shape = format!("Config{kind:?}");
        if let Some(items) = resources
            .get_mut(document::info(kind).section)
            .and_then(Value::as_array_mut)
        {
            for item in items {
                redact(item, &shape);
            }
        }
    }
    stable_text(&resources)
}

/// Replaces the values of sensitive shapes in `value`, read as `shape`.
fn redact(value: &mut Value, shape: &str) {
    use postern_model::schema::{Kind, Schema};
    let Some(shape) = Schema::get().try_shape(shape) else {
        return;
    };
    if shape.sensitive && !value.is_null() {
        *value = Value::String("(sensitive)".into());
        return;
    }
    match (shape.kind, value) {
        (Kind::Structure | Kind::Union, Value::Object(map)) => {
            for member in &shape.members {
                if let Some(v) = map.get_mut(&member.name) {
                    redact(v, &member.shape);
                }
            }
        }
        (Kind::List, Value::Array(list)) => {
            if let Some(element) = &shape.element {
                for v in list {
                    redact(v, element);
                }
            }
        }
        (Kind::Map, Value::Object(map)) => {
            if let Some(element) = &shape.element {
                for v in map.values_mut() {
                    redact(v, element);
                }
            }
        }
        _ => {}
    }
}

/// The ingress points of a document that listen (declare `Listen` or
/// `ListenTls`), by id, with their names.
pub fn listening_ingress_points(document: &Value) -> Vec<(String, String)> {
    document::items(document, ResourceKind::IngressPoint)
        .iter()
        .filter(|ip| {
            ip["Listen"].as_array().is_some_and(|l| !l.is_empty())
                || ip["ListenTls"].as_array().is_some_and(|l| !l.is_empty())
        })
        .map(|ip| {
            (
                ip["IngressPointId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ip["IngressPointName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// A stable, line-oriented rendering (pretty JSON, keys sorted), so that a
/// line diff shows what changed.
fn stable_text(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(list) => Value::Array(list.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sorted(value)).expect("JSON serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> ValidatedConfig {
        postern_config::parse_config("test.yaml", text, &|_| Err("no files".into())).unwrap()
    }

    const CONFIG: &str = r#"
Server: {DataDir: ./data}
TrafficPolicies:
  - TrafficPolicyName: all
    DefaultAction: ALLOW
    PolicyStatements: []
RuleSets:
  - RuleSetName: main
    Rules:
      - Name: drop
        Actions: [{Drop: {}}]
IngressPoints:
  - IngressPointName: mx-main
    Type: OPEN
    TrafficPolicyId: all
    RuleSetId: main
    Listen: ["127.0.0.1:2525"]
AddressLists:
  - AddressListName: vip
    Members: [ceo@example.com]
"#;

    /// The members of the lists of `config`, as the file declares them.
    fn file_members(config: &ValidatedConfig) -> Members {
        config
            .address_lists()
            .enumerate()
            .map(|(i, (identity, _))| {
                (
                    identity.id.clone(),
                    Arc::new(config.address_list_members[i].clone()),
                )
            })
            .collect()
    }

    fn list_id(config: &ValidatedConfig, name: &str) -> String {
        config
            .address_lists()
            .find(|(identity, _)| identity.name == name)
            .map(|(identity, _)| identity.id.clone())
            .unwrap()
    }

    async fn store(dir: &tempfile::TempDir) -> State {
        State::open(postern_state::Backend::Sqlite(
            dir.path().join("state.sqlite"),
        ))
        .await
        .unwrap()
    }

    #[test]
    fn a_document_round_trips_to_the_same_config() {
        let file = load(CONFIG);
        let doc = document_of(&file, None, 100.0);
        // Members are not in the document; they come back from the map.
        assert!(!doc.to_string().contains("ceo@example.com"), "{doc}");
        assert!(doc.get("Members").is_none());
        let again = config_of(&file, &doc, &file_members(&file)).unwrap();
        assert_eq!(
            again.index.identities(ResourceKind::RuleSet),
            file.index.identities(ResourceKind::RuleSet)
        );
        assert_eq!(again.address_list_members, file.address_list_members);
        let empty = config_of(&file, &doc, &Members::new()).unwrap();
        assert_eq!(empty.address_list_members, vec![Vec::<String>::new()]);
        let id = &file.index.identities(ResourceKind::RuleSet)[0].id;
        assert_eq!(document::times(&doc, id), (Some(100.0), Some(100.0)));
        // Meta is kept for what stays.
        let later = document_of(&file, Some(&doc), 200.0);
        assert_eq!(document::times(&later, id), (Some(100.0), Some(100.0)));
    }

    #[test]
    fn members_file_members_are_not_in_the_document() {
        let file = postern_config::parse_config(
            "test.yaml",
            "AddressLists:\n  - AddressListName: big\n    MembersFile: big.txt\n",
            &|_| Ok("a@example.com\nB@example.com\n".into()),
        )
        .unwrap();
        let doc = document_of(&file, None, 0.0);
        assert_eq!(
            doc["Resources"]["AddressLists"][0],
            json!({"AddressListName": "big", "AddressListId": list_id(&file, "big")})
        );
        let again = config_of(&file, &doc, &file_members(&file)).unwrap();
        assert_eq!(again.address_list_members, file.address_list_members);
    }

    #[tokio::test]
    async fn the_files_members_replace_the_stores_where_they_differ() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        // `vip` from inline members and a file, `other` when given.
        let parse = |vip: &str, other: Option<&str>| {
            let mut text = format!("{CONFIG}    MembersFile: vip.txt\n")
                .replace("[ceo@example.com]", &format!("[{vip}]"));
            if let Some(other) = other {
                text += &format!("  - AddressListName: other\n    Members: [{other}]\n");
            }
            postern_config::parse_config("test.yaml", &text, &|_| Ok("CFO@example.com\n".into()))
                .unwrap()
        };
        let first = parse("ceo@example.com, Ceo@Example.com", Some("x@example.com"));
        let vip = list_id(&first, "vip");
        let other = list_id(&first, "other");

        // Version 1: both lists are new.
        let mut doc = document_of(&first, None, 0.0);
        let plan = plan_members(&store, &first, &mut doc, None, 1)
            .await
            .unwrap();
        assert_eq!(
            plan.summary(),
            [
                "AddressLists[vip]: 2 members added",
                "AddressLists[other]: 1 member added"
            ]
        );
        // Kept lower-cased, sorted, once each.
        assert_eq!(*plan.members[&vip], ["ceo@example.com", "cfo@example.com"]);
        assert_eq!(document::members_revision(&doc, &vip), 1);
        assert_eq!(document::members_revision(&doc, &other), 1);
        assert!(
            store.members_all(&vip).await.unwrap().is_empty(),
            "planning writes nothing"
        );
        plan.write(&store).await.unwrap();
        store.commit(0, &doc, "file", "one").await.unwrap();
        assert_eq!(
            store.members_all(&vip).await.unwrap(),
            ["ceo@example.com", "cfo@example.com"]
        );
        let loaded = load_members(&store, &doc, None).await.unwrap();
        assert_eq!(loaded, plan.members);

        // The same members again: nothing changes, revisions stay.
        let mut same = document_of(&first, Some(&doc), 0.0);
        let plan = plan_members(&store, &first, &mut same, Some(&doc), 2)
            .await
            .unwrap();
        assert!(plan.is_empty(), "{:?}", plan.summary());
        assert_eq!(document::members_revision(&same, &vip), 1);

        // One list's members change; the other list is no longer declared.
        let second = parse("new@example.com, \"*@board.example\"", None);
        let mut next = document_of(&second, Some(&doc), 0.0);
        let plan = plan_members(&store, &second, &mut next, Some(&doc), 2)
            .await
            .unwrap();
        assert_eq!(
            plan.summary(),
            [
                "AddressLists[vip]: 2 members added, 1 removed",
                "AddressLists[other]: removed with its 1 member"
            ]
        );
        assert_eq!(document::members_revision(&next, &vip), 2);
        plan.write(&store).await.unwrap();
        assert_eq!(
            store.members_all(&vip).await.unwrap(),
            ["*@board.example", "cfo@example.com", "new@example.com"]
        );
        assert_eq!(store.members_count(&other).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_cache_spares_lists_whose_revision_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let file = load(CONFIG);
        let vip = list_id(&file, "vip");
        let mut doc = document_of(&file, None, 0.0);
        document::set_members_revision(&mut doc, &vip, 3);
        store
            .members_add(
                &vip,
                &["a@example.com".to_string()],
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        let cache = Mutex::new(MembersCache::default());
        let members = load_members(&store, &doc, Some(&cache)).await.unwrap();
        assert_eq!(*members[&vip], ["a@example.com"]);
        cache.lock().unwrap().keep(&doc, &members);

        // A change of the table without a new revision is not read...
        store
            .members_add(
                &vip,
                &["b@example.com".to_string()],
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        let members = load_members(&store, &doc, Some(&cache)).await.unwrap();
        assert_eq!(*members[&vip], ["a@example.com"]);
        // ... a new revision is.
        document::set_members_revision(&mut doc, &vip, 4);
        let members = load_members(&store, &doc, Some(&cache)).await.unwrap();
        assert_eq!(*members[&vip], ["a@example.com", "b@example.com"]);
        // A list no longer in the document is forgotten.
        cache.lock().unwrap().keep(&document::empty(), &members);
        assert!(cache.lock().unwrap().lists.is_empty());
    }

    #[tokio::test]
    async fn members_an_older_version_holds_inline_are_moved_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let older = json!({
            "Resources": {"AddressLists": [
                {"AddressListName": "vip", "AddressListId": "al-1",
                 "Members": ["CEO@example.com", "cfo@example.com"]}]},
            "Meta": {"al-1": {"Created": 1750000000.0, "Updated": 1750000000.0}},
            "Members": {"al-1": {"ceo@example.com": 1750000100.5}},
            "FileDigest": "d"});
        store.commit(0, &older, "file", "older").await.unwrap();
        let latest = store.latest().await.unwrap().unwrap();
        let moved = move_inline_members(&store, latest).await.unwrap();
        assert_eq!(moved.number, 2);
        assert!(!document::has_inline_members(&moved.document));
        assert_eq!(moved.document["FileDigest"], "d");
        assert_eq!(document::members_revision(&moved.document, "al-1"), 2);
        assert_eq!(
            store.members_all("al-1").await.unwrap(),
            ["ceo@example.com", "cfo@example.com"]
        );
        let ceo = store
            .members_get("al-1", "ceo@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ceo.unix_timestamp_nanos(), 1_750_000_100_500_000_000);
        let cfo = store
            .members_get("al-1", "cfo@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cfo.unix_timestamp(), 1_750_000_000);
        // A version of this Postern is left as it is.
        let again = move_inline_members(&store, moved.clone()).await.unwrap();
        assert_eq!(again, moved);
    }

    #[test]
    fn the_digest_follows_resources_not_server_settings() {
        let a = file_digest(&load(CONFIG));
        let b = file_digest(&load(&CONFIG.replace("./data", "./other")));
        let c = file_digest(&load(&CONFIG.replace("ceo@", "cfo@")));
        // Where a node listens is the node's own.
        let d = file_digest(&load(&CONFIG.replace("127.0.0.1:2525", "127.0.0.2:25")));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, d);
    }

    #[test]
    fn members_from_the_store_run_whatever_they_look_like() {
        let file = load(CONFIG);
        let doc = document_of(&file, None, 0.0);
        let id = file.index.identities(ResourceKind::AddressList)[0]
            .id
            .clone();
        for list in [
            vec!["a@example.com".to_string(), "*@example.org".to_string()],
            vec!["#team@example.com".to_string(), "b@example.com".to_string()],
        ] {
            let members: Members = [(id.clone(), Arc::new(list.clone()))].into_iter().collect();
            let config = config_of(&file, &doc, &members).unwrap();
            assert_eq!(config.address_list_members[0], list);
        }
    }

    #[test]
    fn an_ingress_point_listens_where_the_nodes_own_file_says() {
        let stored = load(CONFIG);
        let doc = document_of(&stored, None, 0.0);
        let node = load(&CONFIG.replace("127.0.0.1:2525", "127.0.0.2:2626"));
        let config = config_of(&node, &doc, &Members::default()).unwrap();
        let (_, ip) = config.ingress_points().next().unwrap();
        assert_eq!(
            ip.listen.as_deref(),
            Some(&["127.0.0.2:2626".to_string()][..])
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        let file = load(&CONFIG.replace(
            "    Type: OPEN\n",
            "    Type: AUTH\n    IngressPointConfiguration: {SmtpPassword: \"S3cretPassw0rd!xyz\"}\n",
        ));
        let text = resources_text(&document_of(&file, None, 0.0));
        assert!(!text.contains("S3cret"), "{text}");
        assert!(text.contains("\"SmtpPassword\": \"(sensitive)\""), "{text}");
        // Members are not resources of the document.
        assert!(!text.contains("ceo@example.com"), "{text}");
    }

    #[test]
    fn errors_name_the_field() {
        let file = load(CONFIG);
        let mut doc = document_of(&file, None, 0.0);
        doc["Resources"]["RuleSets"][0]["Rules"][0]["Actions"] =
            json!([{"Archive": {"TargetArchive": "nowhere"}}]);
        let e = config_of(&file, &doc, &file_members(&file)).unwrap_err();
        assert!(
            e.contains("RuleSets[0].Rules[0].Actions[0].Archive.TargetArchive"),
            "{e}"
        );
    }
}
