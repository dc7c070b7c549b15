//! Everything the model cannot say on one field alone: ids and ARNs, unique
//! names, references between resources, the ingress point type's required
//! configuration, address list members, CIDR values.

use crate::diagnostic::Reporter;
use crate::validate::Reference;
use crate::yaml::{Node, Pos, Value};
use postern_model::{Arn, ResourceKind};
use serde_json::Value as Json;
use std::collections::HashMap;

/// The top-level member holding each kind, its name member and its id member.
pub(crate) fn section(kind: ResourceKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        ResourceKind::TrafficPolicy => ("TrafficPolicies", "TrafficPolicyName", "TrafficPolicyId"),
        ResourceKind::RuleSet => ("RuleSets", "RuleSetName", "RuleSetId"),
        ResourceKind::IngressPoint => ("IngressPoints", "IngressPointName", "IngressPointId"),
        ResourceKind::AddressList => ("AddressLists", "AddressListName", "AddressListId"),
        ResourceKind::Archive => ("Archives", "ArchiveName", "ArchiveId"),
        ResourceKind::Relay => ("Relays", "RelayName", "RelayId"),
        ResourceKind::AddonSubscription => {
            ("AddonSubscriptions", "AddonName", "AddonSubscriptionId")
        }
        // An add-on instance has no name in the model; it is known by its
        // subscription's AddonName.
        ResourceKind::AddonInstance => ("AddonInstances", "AddonSubscriptionId", "AddonInstanceId"),
    }
}

/// Name, id and ARN of one declared resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub id: String,
    pub arn: String,
}

/// Finds resources by name, id or ARN.
#[derive(Debug, Clone, Default)]
pub struct Index {
    identities: HashMap<ResourceKind, Vec<Identity>>,
    lookup: HashMap<(ResourceKind, String), usize>,
}

impl Index {
    pub fn identities(&self, kind: ResourceKind) -> &[Identity] {
        self.identities.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The position, in its section, of the resource a reference names.
    pub fn resolve(&self, kind: ResourceKind, reference: &str) -> Option<usize> {
        self.lookup.get(&(kind, reference.to_string())).copied()
    }

    fn add_alias(&mut self, kind: ResourceKind, alias: &str, index: usize) -> Option<usize> {
        match self.lookup.get(&(kind, alias.to_string())) {
            Some(&existing) if existing != index => Some(existing),
            Some(_) => None,
            None => {
                self.lookup.insert((kind, alias.to_string()), index);
                None
            }
        }
    }
}

pub(crate) struct Settings {
    pub region: String,
    pub account: String,
}

/// Builds the index from what validated, reporting duplicates.
pub(crate) fn build_index(
    json: &Json,
    root: &Node,
    settings: &Settings,
    reporter: &mut Reporter,
) -> Index {
    let mut index = Index::default();
    // Subscriptions first: instances are named after them.
    let mut order = ResourceKind::ALL.to_vec();
    order.sort_by_key(|k| *k != ResourceKind::AddonSubscription);
    for kind in order {
        let (section, name_member, id_member) = section(kind);
        let Some(items) = json.get(section).and_then(Json::as_array) else {
            continue;
        };
        let mut identities = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{section}[{i}]");
            let mut name = item
                .get(name_member)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            if kind == ResourceKind::AddonInstance {
                // Known by the AddonName of its subscription.
                if let Some(sub) = index.resolve(ResourceKind::AddonSubscription, &name) {
                    name = index.identities(ResourceKind::AddonSubscription)[sub]
                        .name
                        .clone();
                }
            }
            let explicit_id = item
                .get(id_member)
                .and_then(Json::as_str)
                .map(str::to_string);
            if name.is_empty() && explicit_id.is_none() {
                // Its name failed validation (reported there): no id to derive.
                identities.push(Identity {
                    name,
                    id: String::new(),
                    arn: String::new(),
                });
                continue;
            }
            let id = explicit_id.unwrap_or_else(|| kind.derive_id(&name));
            let arn = Arn::new(&settings.region, &settings.account, kind, &id).to_string();
            let position = identities.len();
            let mut aliases = vec![
                (name.clone(), name_member),
                (id.clone(), id_member),
                (arn.clone(), id_member),
            ];
            if kind == ResourceKind::RuleSet
                && let Some(exported) = item.get("RuleSetArn").and_then(Json::as_str)
            {
                aliases.push((exported.to_string(), "RuleSetArn"));
            }
            // One report per resource: a derived id (and every ARN) collides
            // whenever the name or id it comes from does.
            let mut reported = false;
            for (alias, member) in aliases {
                if alias.is_empty() {
                    continue;
                }
                if let Some(other) = index.add_alias(kind, &alias, position) {
                    if reported {
                        continue;
                    }
                    reported = true;
                    let at = format!("{path}.{member}");
                    let pos = locate(root, &at);
                    let what = if kind == ResourceKind::AddonInstance && member == name_member {
                        "a second instance of the same add-on subscription".to_string()
                    } else {
                        format!("{alias:?} is already used")
                    };
                    reporter.error(
                        pos,
                        &at,
                        format!("duplicate {}: {what} by {section}[{other}]", kind.noun()),
                    );
                }
            }
            identities.push(Identity { name, id, arn });
        }
        index.identities.insert(kind, identities);
    }
    index
}

pub(crate) fn check_references(references: &[Reference], index: &Index, reporter: &mut Reporter) {
    for r in references {
        if index.resolve(r.kind, &r.value).is_some() {
            continue;
        }
        let declared: Vec<&str> = index
            .identities(r.kind)
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        let section = section(r.kind).0;
        let known = if declared.is_empty() {
            format!("none is declared under {section}")
        } else {
            format!("declared: {}", declared.join(", "))
        };
        reporter.error(
            r.pos,
            &r.path,
            format!(
                "expected the name, id or ARN of {}; found {:?}, which names none ({known})",
                with_article(r.kind.noun()),
                r.value
            ),
        );
    }
}

/// Checks that do not fit the model's per-field constraints.
pub(crate) fn check_semantics(json: &Json, root: &Node, reporter: &mut Reporter) {
    let items = |section: &str| {
        json.get(section)
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
    };

    let mut listeners: HashMap<String, String> = HashMap::new();
    for (i, ip) in items("IngressPoints").iter().enumerate() {
        let path = format!("IngressPoints[{i}]");
        let config = ip.get("IngressPointConfiguration");
        let needs = match ip.get("Type").and_then(Json::as_str) {
            Some("AUTH") => Some(("AUTH", &["SmtpPassword", "SecretArn"][..])),
            Some("MTLS") => Some(("MTLS", &["TlsAuthConfiguration"][..])),
            _ => None,
        };
        match (needs, config) {
            (Some((ty, members)), config) => {
                let has = config.is_some_and(|c| members.iter().any(|m| c.get(m).is_some()));
                if !has {
                    let at = format!("{path}.IngressPointConfiguration");
                    reporter.error(
                        locate(root, &path),
                        &at,
                        format!(
                            "an ingress point of Type {ty} needs IngressPointConfiguration with {}",
                            members.join(" or ")
                        ),
                    );
                }
            }
            (None, Some(_)) => {
                let at = format!("{path}.IngressPointConfiguration");
                reporter.error(
                    locate(root, &at),
                    &at,
                    "only AUTH and MTLS ingress points take an IngressPointConfiguration",
                );
            }
            (None, None) => {}
        }
        for member in ["Listen", "ListenTls"] {
            for (j, listen) in ip
                .get(member)
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(listen) = listen.as_str() else {
                    continue;
                };
                let at = format!("{path}.{member}[{j}]");
                // The same socket however it is written ([::1]:25, [0:0:0:0:0:0:0:1]:0025).
                let key = listen
                    .parse::<std::net::SocketAddr>()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| listen.to_string());
                if let Some(first) = listeners.insert(key, at.clone()) {
                    reporter.error(
                        locate(root, &at),
                        &at,
                        format!("{listen} is already a listener of {first}"),
                    );
                }
            }
        }
    }

    for (i, list) in items("AddressLists").iter().enumerate() {
        for (j, member) in list
            .get("Members")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(member) = member.as_str() else {
                continue;
            };
            if let Err(problem) = check_list_member(member) {
                let at = format!("AddressLists[{i}].Members[{j}]");
                reporter.error(
                    locate(root, &at),
                    &at,
                    format!(
                        "expected {problem}; found a sensitive value of {} characters",
                        member.chars().count()
                    ),
                );
            }
        }
    }

    for (i, rule_set) in items("RuleSets").iter().enumerate() {
        for (j, rule) in rule_set
            .get("Rules")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for part in ["Conditions", "Unless"] {
                for (k, condition) in rule
                    .get(part)
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let Some(values) = condition
                        .pointer("/IpExpression/Values")
                        .and_then(Json::as_array)
                    else {
                        continue;
                    };
                    for (v, value) in values.iter().enumerate() {
                        let Some(value) = value.as_str() else {
                            continue;
                        };
                        if parse_cidr(value).is_none() {
                            let at = format!(
                                "RuleSets[{i}].Rules[{j}].{part}[{k}].IpExpression.Values[{v}]"
                            );
                            reporter.error(
                                locate(root, &at),
                                &at,
                                format!("expected an IPv4 or IPv6 CIDR block such as 10.0.0.0/8; found {value:?}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// A CIDR block; a bare address is its own /32 or /128.
pub fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// An address list member: `local@domain`, or `*@domain` for every address
/// at that domain.
pub fn check_list_member(member: &str) -> Result<(), &'static str> {
    let Some((local, domain)) = member.rsplit_once('@') else {
        return Err("an address (local@domain) or *@domain");
    };
    let bad_domain = domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || domain
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '@' | '<' | '>' | ',' | ';' | '[' | ']'));
    if local.is_empty() || bad_domain || member.chars().any(char::is_control) {
        return Err("an address (local@domain) or *@domain");
    }
    if local.contains('*') && local != "*" {
        return Err("an address, or * alone as the local part (*@domain)");
    }
    Ok(())
}

/// Where a path points in the document, or the nearest node above it.
pub(crate) fn locate(root: &Node, path: &str) -> Pos {
    let mut node = root;
    let mut rest = path;
    while !rest.is_empty() {
        let (next, remaining) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            let (seg, after) = r.split_at(end);
            let after = after.strip_prefix(']').unwrap_or(after);
            let found = match (&node.value, seg.parse::<usize>()) {
                (Value::Seq(items), Ok(i)) => items.get(i),
                (Value::Map(_), _) => node.get(seg.trim_matches('"')),
                _ => None,
            };
            (found, after)
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (seg, after) = r.split_at(end);
            (node.get(seg), after)
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
        rest = remaining;
    }
    node.pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_members() {
        assert!(check_list_member("alice@example.com").is_ok());
        assert!(check_list_member("*@example.com").is_ok());
        assert!(check_list_member("\"a b\"@example.com").is_ok());
        assert!(check_list_member("example.com").is_err());
        assert!(check_list_member("a*b@example.com").is_err());
        assert!(check_list_member("a@").is_err());
        assert!(check_list_member("a@exa mple.com").is_err());
    }

    #[test]
    fn cidrs() {
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("2001:db8::/32").is_some());
        assert!(parse_cidr("192.0.2.1").is_some());
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("....").is_none());
    }
}
