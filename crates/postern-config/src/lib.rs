//! `postern.yaml` and rule test files: text in, a typed and validated value
//! or every error out.
//!
//! # Layout
//! - `yaml.rs`: YAML/JSON into a tree with line and column for every node.
//! - `validate.rs`: the tree checked against a shape of the model (every
//!   constraint the model states), and turned into JSON for serde.
//! - `resolve.rs`: ids, ARNs, unique names, references between resources and
//!   the checks no single field can make.
//! - `diagnostic.rs`: errors as a compiler prints them.
//!
//! Pure: reading files is the caller's business ([`load`] is the one helper
//! that does it, for the CLI and the server).

pub mod diagnostic;
pub mod resolve;
mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use resolve::{Identity, Index, check_list_member, parse_cidr};

use diagnostic::Reporter;
use postern_model::{
    ConfigAddonInstance, ConfigAddonSubscription, ConfigAddressList, ConfigArchive,
    ConfigIngressPoint, ConfigRelay, ConfigRuleSet, ConfigTrafficPolicy, PosternConfig,
    ResourceKind, ServerConfig,
};
use serde::de::DeserializeOwned;
use std::path::Path;
use validate::{Quota, Validator};

pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT: &str = "000000000000";

/// The quotas in force: AWS's defaults unless the config raises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub rules_per_rule_set: u32,
    pub conditions_per_rule: u32,
    pub actions_per_rule: u32,
    pub values_per_condition: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            rules_per_rule_set: 40,
            conditions_per_rule: 10,
            actions_per_rule: 10,
            values_per_condition: 10,
        }
    }
}

/// A config that passed every check, with its resources' ids and ARNs.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    pub file: String,
    /// The file as written (AWS shapes and extensions).
    pub config: PosternConfig,
    pub region: String,
    pub account: String,
    pub data_dir: String,
    pub quotas: Quotas,
    pub index: Index,
    /// Members of each address list (inline and from `MembersFile`), in the
    /// order of `config.AddressLists`.
    pub address_list_members: Vec<Vec<String>>,
    /// Every place a resource names another, resolved.
    pub references: Vec<Reference>,
}

/// One resource naming another (by name, id or ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The resource named: its kind and position in its section.
    pub to: (ResourceKind, usize),
    /// The resource naming it: its kind and position in its section.
    pub from: (ResourceKind, usize),
    /// Where: `RuleSets[0].Rules[2].Actions[0].Archive.TargetArchive`.
    pub path: String,
}

fn section<'a, T>(
    items: &'a Option<Vec<T>>,
    index: &'a Index,
    kind: ResourceKind,
) -> impl Iterator<Item = (&'a Identity, &'a T)> {
    index.identities(kind).iter().zip(items.iter().flatten())
}

impl ValidatedConfig {
    pub fn traffic_policies(&self) -> impl Iterator<Item = (&Identity, &ConfigTrafficPolicy)> {
        section(
            &self.config.traffic_policies,
            &self.index,
            ResourceKind::TrafficPolicy,
        )
    }
    pub fn rule_sets(&self) -> impl Iterator<Item = (&Identity, &ConfigRuleSet)> {
        section(&self.config.rule_sets, &self.index, ResourceKind::RuleSet)
    }
    pub fn ingress_points(&self) -> impl Iterator<Item = (&Identity, &ConfigIngressPoint)> {
        section(
            &self.config.ingress_points,
            &self.index,
            ResourceKind::IngressPoint,
        )
    }
    pub fn address_lists(&self) -> impl Iterator<Item = (&Identity, &ConfigAddressList)> {
        section(
            &self.config.address_lists,
            &self.index,
            ResourceKind::AddressList,
        )
    }
    pub fn archives(&self) -> impl Iterator<Item = (&Identity, &ConfigArchive)> {
        section(&self.config.archives, &self.index, ResourceKind::Archive)
    }
    pub fn relays(&self) -> impl Iterator<Item = (&Identity, &ConfigRelay)> {
        section(&self.config.relays, &self.index, ResourceKind::Relay)
    }
    pub fn addon_subscriptions(
        &self,
    ) -> impl Iterator<Item = (&Identity, &ConfigAddonSubscription)> {
        section(
            &self.config.addon_subscriptions,
            &self.index,
            ResourceKind::AddonSubscription,
        )
    }
    pub fn addon_instances(&self) -> impl Iterator<Item = (&Identity, &ConfigAddonInstance)> {
        section(
            &self.config.addon_instances,
            &self.index,
            ResourceKind::AddonInstance,
        )
    }

    /// The identity of the resource a name, id or ARN refers to.
    pub fn resolve(&self, kind: ResourceKind, reference: &str) -> Option<&Identity> {
        self.index
            .resolve(kind, reference)
            .map(|i| &self.index.identities(kind)[i])
    }

    /// One line per kind: what was loaded.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: ok (region {}, account {})\n",
            self.file, self.region, self.account
        );
        for (kind, label) in [
            (ResourceKind::IngressPoint, "ingress points"),
            (ResourceKind::TrafficPolicy, "traffic policies"),
            (ResourceKind::RuleSet, "rule sets"),
            (ResourceKind::AddressList, "address lists"),
            (ResourceKind::Archive, "archives"),
            (ResourceKind::Relay, "relays"),
            (ResourceKind::AddonSubscription, "add-on subscriptions"),
            (ResourceKind::AddonInstance, "add-on instances"),
        ] {
            let ids = self.index.identities(kind);
            let detail = match kind {
                ResourceKind::RuleSet => {
                    let rules: usize = self.rule_sets().map(|(_, r)| r.rules.len()).sum();
                    format!(" ({rules} rules)")
                }
                ResourceKind::TrafficPolicy => {
                    let n: usize = self
                        .traffic_policies()
                        .map(|(_, p)| p.policy_statements.len())
                        .sum();
                    format!(" ({n} statements)")
                }
                ResourceKind::AddressList => {
                    let n: usize = self.address_list_members.iter().map(Vec::len).sum();
                    format!(" ({n} members)")
                }
                _ => String::new(),
            };
            let names: Vec<&str> = ids.iter().map(|i| i.name.as_str()).take(8).collect();
            let more = if ids.len() > 8 { ", ..." } else { "" };
            out += &format!("  {:<21} {:>3}{detail}", format!("{label}:"), ids.len());
            if !names.is_empty() {
                out += &format!(": {}{more}", names.join(", "));
            }
            out.push('\n');
        }
        out
    }
}

/// Reads a file the config names (`MembersFile`), relative to the config.
pub type ReadInclude<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Parses and validates a config. `file` names the source in errors.
pub fn parse_config(
    file: &str,
    text: &str,
    read_include: ReadInclude,
) -> Result<ValidatedConfig, Diagnostics> {
    let (doc, mut reporter) = read_yaml(text, Reporter::new(file, text))?;
    let root = &doc.root;
    if root.is_null() {
        // An empty file is an empty config.
    }

    // The quotas first: they change what the rest may contain.
    let mut server = ServerConfig::default();
    if let Some(node) = root.get("Server") {
        let mut scratch = Reporter::new(file, text);
        let mut v = Validator::new(&mut scratch);
        if let Some(json) = v.check(node, "ServerConfig", &mut "Server".to_string()) {
            server = serde_json::from_value(json).unwrap_or_default();
        }
    }
    let mut quotas = Quotas::default();
    if let Some(q) = &server.quotas {
        let pick = |v: Option<i32>, d: u32| v.map(|v| v as u32).unwrap_or(d);
        quotas = Quotas {
            rules_per_rule_set: pick(q.rules_per_rule_set, quotas.rules_per_rule_set),
            conditions_per_rule: pick(q.conditions_per_rule, quotas.conditions_per_rule),
            actions_per_rule: pick(q.actions_per_rule, quotas.actions_per_rule),
            values_per_condition: pick(q.values_per_condition, quotas.values_per_condition),
        };
    }
    let settings = resolve::Settings {
        region: server
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.into()),
        account: server
            .account_id
            .clone()
            .unwrap_or_else(|| DEFAULT_ACCOUNT.into()),
    };

    let (json, references) = {
        let mut v = Validator::new(&mut reporter);
        apply_quotas(&mut v, &quotas);
        let json = if root.is_null() {
            Some(serde_json::json!({}))
        } else {
            v.check(root, "PosternConfig", &mut String::new())
        };
        (json.unwrap_or_default(), std::mem::take(&mut v.references))
    };

    let index = resolve::build_index(&json, root, &settings, &mut reporter);
    resolve::check_references(&references, &index, &mut reporter);
    resolve::check_semantics(&json, root, &mut reporter);

    // Address list members, inline and from files.
    let mut members_out = Vec::new();
    let mut include_errors = Vec::new();
    for (i, list) in json
        .get("AddressLists")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut members: Vec<String> = list
            .get("Members")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        if let Some(path) = list.get("MembersFile").and_then(|p| p.as_str()) {
            let at = format!("AddressLists[{i}].MembersFile");
            match read_include(path) {
                Err(e) => reporter.error(
                    resolve::locate(root, &at),
                    &at,
                    format!("cannot read {path}: {e}"),
                ),
                Ok(content) => {
                    let mut file_reporter = Reporter::new(path, &content);
                    for (n, line) in content.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        match check_list_member(line) {
                            Ok(()) => members.push(line.to_string()),
                            Err(problem) => file_reporter.error(
                                yaml::Pos {
                                    line: n + 1,
                                    column: 1,
                                },
                                &at,
                                format!(
                                    "expected {problem}; found a sensitive value of {} characters",
                                    line.chars().count()
                                ),
                            ),
                        }
                    }
                    include_errors.extend(file_reporter.finish().0);
                }
            }
        }
        members_out.push(members);
    }

    let mut diagnostics = reporter.finish();
    diagnostics.0.extend(include_errors);
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    let config: PosternConfig = serde_json::from_value(json).map_err(|e| internal(file, e))?;
    let references = references
        .iter()
        .filter_map(|r| {
            let to = index.resolve(r.kind, &r.value)?;
            let from = ResourceKind::ALL.into_iter().find_map(|kind| {
                let rest = r
                    .path
                    .strip_prefix(resolve::section(kind).0)?
                    .strip_prefix('[')?;
                Some((kind, rest[..rest.find(']')?].parse().ok()?))
            })?;
            Some(Reference {
                to: (r.kind, to),
                from,
                path: r.path.clone(),
            })
        })
        .collect();
    Ok(ValidatedConfig {
        references,
        file: file.to_string(),
        config,
        region: settings.region,
        account: settings.account,
        data_dir: server.data_dir.unwrap_or_else(|| "./data".into()),
        quotas,
        index,
        address_list_members: members_out,
    })
}

/// Replaces the model's maxima of the list shapes that are quotas.
fn apply_quotas(v: &mut Validator, quotas: &Quotas) {
    let q = |max: u32, name: &'static str| Quota {
        max: max as f64,
        name,
    };
    v.set_quota("Rules", q(quotas.rules_per_rule_set, "RulesPerRuleSet"));
    v.set_quota(
        "RuleConditions",
        q(quotas.conditions_per_rule, "ConditionsPerRule"),
    );
    v.set_quota("RuleActions", q(quotas.actions_per_rule, "ActionsPerRule"));
    for shape in [
        "RuleStringList",
        "RuleIpValueList",
        "RuleVerdictValueList",
        "RuleDmarcValueList",
    ] {
        v.set_quota(shape, q(quotas.values_per_condition, "ValuesPerCondition"));
    }
}

/// A problem in a checked value: the field path (`Rules[0].Name`, empty for
/// the value itself) and what is wrong there.
pub type Problem = (String, String);

/// Checks a JSON value (an API request, decoded from JSON or CBOR) against a
/// shape of the model with the model's limits: every constraint the model
/// states, and no member the shape does not have. Returns the value as the
/// shape reads it (timestamps as epoch seconds), or every problem, in the
/// order of the value.
///
/// Panics if `shape` is not a shape of the model.
pub fn check_value(
    value: &serde_json::Value,
    shape: &str,
) -> Result<serde_json::Value, Vec<Problem>> {
    check_value_with_quotas(value, shape, &Quotas::default())
}

/// [`check_value`] with the quotas in force instead of AWS's defaults.
pub fn check_value_with_quotas(
    value: &serde_json::Value,
    shape: &str,
    quotas: &Quotas,
) -> Result<serde_json::Value, Vec<Problem>> {
    let root = yaml::Node::from_json(value);
    let mut reporter = Reporter::new("", "");
    let checked = {
        let mut v = Validator::for_json(&mut reporter);
        apply_quotas(&mut v, quotas);
        v.check(&root, shape, &mut String::new())
    };
    let problems = reporter.finish();
    match checked {
        Some(checked) if problems.is_empty() => Ok(checked),
        _ => Err(problems
            .0
            .into_iter()
            .map(|d| (d.path, d.message))
            .collect()),
    }
}

/// Reads and validates a config file; `MembersFile` paths are relative to it.
pub fn load(path: &Path) -> Result<ValidatedConfig, Diagnostics> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| io_error(&name, e))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let read = move |rel: &str| std::fs::read_to_string(base.join(rel)).map_err(|e| e.to_string());
    parse_config(&name, &text, &read)
}

/// Parses any document of a Postern shape (the rule test file, for one).
/// Returns the value and the tree, whose positions later checks may use.
pub fn parse_document<T: DeserializeOwned>(
    file: &str,
    text: &str,
    shape: &str,
) -> Result<(T, yaml::Node), Diagnostics> {
    let (doc, mut reporter) = read_yaml(text, Reporter::new(file, text))?;
    let json = Validator::new(&mut reporter).check(&doc.root, shape, &mut String::new());
    let diagnostics = reporter.finish();
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    let value = serde_json::from_value(json.unwrap_or_default()).map_err(|e| internal(file, e))?;
    Ok((value, doc.root))
}

/// Where a field path points in a parsed document.
pub fn locate(root: &yaml::Node, path: &str) -> yaml::Pos {
    resolve::locate(root, path)
}

/// The YAML tree, with its duplicate keys reported; a syntax error ends it.
fn read_yaml<'a>(
    text: &str,
    mut reporter: Reporter<'a>,
) -> Result<(yaml::Document, Reporter<'a>), Diagnostics> {
    match yaml::parse(text) {
        Ok(doc) => {
            for e in &doc.errors {
                reporter.error(e.pos, &e.path, e.message.clone());
            }
            Ok((doc, reporter))
        }
        Err(e) => {
            reporter.error(e.pos, "", e.message);
            Err(reporter.finish())
        }
    }
}

fn io_error(file: &str, e: std::io::Error) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        file: file.to_string(),
        pos: yaml::Pos::default(),
        path: String::new(),
        message: format!("cannot read: {e}"),
        line_text: None,
    }])
}

fn internal(file: &str, e: serde_json::Error) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        file: file.to_string(),
        pos: yaml::Pos::default(),
        path: String::new(),
        message: format!("internal error: a validated document did not deserialize: {e}"),
        line_text: None,
    }])
}
