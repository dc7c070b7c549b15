//! The config file and the state store together.
//!
//! The store holds the resources (everything but `Server`) as versions;
//! the file holds `Server` and seeds the resources. Precedence: at start
//! and on SIGHUP, a file whose resources changed since they were last
//! taken from it becomes a new version (a changed file is a change, like an
//! API call); an unchanged file leaves the store's latest version, with
//! every change made through the API since, in force. `postern apply -f`
//! stores a file's resources as a new version of a running server's store.

use postern_api::document;
use postern_api::ops::Snapshot;
use postern_config::ValidatedConfig;
use postern_model::ResourceKind;
use serde_json::{Value, json};

/// The resources of a config as a document: every item with its id, the
/// members of `MembersFile` inline, `Meta` kept from `previous` for the
/// resources that stay.
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
            if kind == ResourceKind::AddressList {
                if let Some(map) = item.as_object_mut() {
                    map.remove("MembersFile");
                }
                item["Members"] = json!(config.address_list_members[i]);
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
        if let Some(times) = previous.and_then(|p| p["Members"].get(id)) {
            document::object_mut(&mut doc, "Members").insert(id.clone(), times.clone());
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
    // Members of a MembersFile count too: a changed members file is a change.
    let text = format!("{resources}\n{:?}", config.address_list_members);
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The config a document stands for, with the file's `Server`: checked as
/// a config file is, errors given by field path.
pub fn config_of(file: &ValidatedConfig, document: &Value) -> Result<ValidatedConfig, String> {
    let mut root = serde_json::Map::new();
    if let Some(server) = &file.config.server {
        root.insert(
            "Server".into(),
            serde_json::to_value(server).expect("a server section serializes"),
        );
    }
    if let Some(resources) = document["Resources"].as_object() {
        for (section, items) in resources {
            if items.as_array().is_some_and(|a| !a.is_empty()) {
                root.insert(section.clone(), items.clone());
            }
        }
    }
    let text = serde_json::to_string(&Value::Object(root)).expect("JSON serializes");
    postern_config::parse_config(&file.file, &text, &|_| {
        Err("members come inline from the state store".into())
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

/// The running snapshot of a version.
pub fn snapshot(file: &ValidatedConfig, version: u64, document: Value) -> Result<Snapshot, String> {
    let config = config_of(file, &document)?;
    Ok(Snapshot {
        version,
        document,
        config,
    })
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

    #[test]
    fn a_document_round_trips_to_the_same_config() {
        let file = load(CONFIG);
        let doc = document_of(&file, None, 100.0);
        let again = config_of(&file, &doc).unwrap();
        assert_eq!(
            again.index.identities(ResourceKind::RuleSet),
            file.index.identities(ResourceKind::RuleSet)
        );
        assert_eq!(again.address_list_members, file.address_list_members);
        let id = &file.index.identities(ResourceKind::RuleSet)[0].id;
        assert_eq!(document::times(&doc, id), (Some(100.0), Some(100.0)));
        // Meta is kept for what stays.
        let later = document_of(&file, Some(&doc), 200.0);
        assert_eq!(document::times(&later, id), (Some(100.0), Some(100.0)));
    }

    #[test]
    fn the_digest_follows_resources_not_server_settings() {
        let a = file_digest(&load(CONFIG));
        let b = file_digest(&load(&CONFIG.replace("./data", "./other")));
        let c = file_digest(&load(&CONFIG.replace("ceo@", "cfo@")));
        assert_eq!(a, b);
        assert_ne!(a, c);
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
        assert!(text.contains("ceo@example.com"), "{text}");
    }

    #[test]
    fn errors_name_the_field() {
        let file = load(CONFIG);
        let mut doc = document_of(&file, None, 0.0);
        doc["Resources"]["RuleSets"][0]["Rules"][0]["Actions"] =
            json!([{"Archive": {"TargetArchive": "nowhere"}}]);
        let e = config_of(&file, &doc).unwrap_err();
        assert!(
            e.contains("RuleSets[0].Rules[0].Actions[0].Archive.TargetArchive"),
            "{e}"
        );
    }
}
