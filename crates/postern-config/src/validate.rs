//! Checks a YAML tree against a shape of the model and turns it into JSON.
//!
//! One walk reports every problem it meets (wrong type, unknown or missing
//! member, union with other than one member, enum value, length, pattern,
//! range, list size) with the path and position, and keeps going. What is
//! valid is kept, so that later checks (references) still see it. The
//! constraints come from the model; the only adjustments are the quotas a
//! config may raise (`Server.Quotas`).
//!
//! The tree may come from YAML, where a scalar's type is decided by the shape
//! (`5` is a number or a string, as the member needs), or from an API request
//! decoded as JSON or CBOR ([`Syntax::Json`]), where it is not: a string must
//! be a string, a number a number, and a timestamp is epoch seconds.

use crate::diagnostic::{Reporter, did_you_mean};
use crate::yaml::{Node, Pos, Value};
use postern_model::ResourceKind;
use postern_model::schema::{Kind, Schema, Shape};
use regex::Regex;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;

/// Where the tree came from, which decides how strictly scalars are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// A YAML document: plain scalars take the type the shape needs.
    Yaml,
    /// A JSON value (an API request, from JSON or CBOR): strings are the
    /// quoted scalars, numbers and booleans the plain ones, timestamps are
    /// epoch seconds, and come out as floating-point epoch seconds.
    Json,
}

/// A name, id or ARN that must name a declared resource.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    pub kind: ResourceKind,
    pub value: String,
    pub path: String,
    pub pos: Pos,
}

/// Which members hold references, by structure shape and member.
fn reference_kind(structure: &str, member: &str) -> Option<ResourceKind> {
    Some(match (structure, member) {
        ("RuleIsInAddressList" | "IngressIsInAddressList", "AddressLists") => {
            ResourceKind::AddressList
        }
        ("Analysis" | "IngressAnalysis", "Analyzer") => ResourceKind::AddonInstance,
        ("RelayAction", "Relay") => ResourceKind::Relay,
        ("ArchiveAction", "TargetArchive") => ResourceKind::Archive,
        ("ConfigIngressPoint", "RuleSetId") => ResourceKind::RuleSet,
        ("ConfigIngressPoint", "TrafficPolicyId") => ResourceKind::TrafficPolicy,
        ("ConfigAddonInstance", "AddonSubscriptionId") => ResourceKind::AddonSubscription,
        _ => return None,
    })
}

fn schema_kind(shape: &str) -> Kind {
    Schema::get().shape(shape).kind
}

/// A list shape whose maximum is a quota, with the quota's name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    pub max: f64,
    pub name: &'static str,
}

pub(crate) struct Validator<'r, 'a> {
    schema: &'static Schema,
    reporter: &'r mut Reporter<'a>,
    patterns: HashMap<String, Regex>,
    quotas: HashMap<&'static str, Quota>,
    reference: Option<ResourceKind>,
    syntax: Syntax,
    pub references: Vec<Reference>,
}

impl<'r, 'a> Validator<'r, 'a> {
    pub(crate) fn new(reporter: &'r mut Reporter<'a>) -> Self {
        Validator {
            schema: Schema::get(),
            reporter,
            patterns: HashMap::new(),
            quotas: HashMap::new(),
            reference: None,
            syntax: Syntax::Yaml,
            references: Vec::new(),
        }
    }

    /// A validator for a tree read from JSON ([`Syntax::Json`]).
    pub(crate) fn for_json(reporter: &'r mut Reporter<'a>) -> Self {
        Validator {
            syntax: Syntax::Json,
            ..Validator::new(reporter)
        }
    }

    /// A node as error messages show it.
    fn describe(&self, node: &Node) -> String {
        match (self.syntax, &node.value) {
            (Syntax::Yaml, _) => node.describe(),
            (Syntax::Json, Value::Scalar { text, plain: true }) => text.clone(),
            (Syntax::Json, Value::Map(_)) => "an object".into(),
            (Syntax::Json, _) => node.describe(),
        }
    }

    /// What a mapping is called in the source's syntax.
    fn mapping(&self) -> &'static str {
        match self.syntax {
            Syntax::Yaml => "a mapping",
            Syntax::Json => "an object",
        }
    }

    /// Replaces the model's maximum of a list shape by a quota.
    pub(crate) fn set_quota(&mut self, shape: &'static str, quota: Quota) {
        self.quotas.insert(shape, quota);
    }

    /// Validates `node` as `shape`; `path` is where it sits in the document.
    pub(crate) fn check(&mut self, node: &Node, shape: &str, path: &mut String) -> Option<Json> {
        let schema = self.schema;
        let shape = schema.shape(shape);
        match shape.kind {
            Kind::Structure | Kind::Union => self.structure(node, shape, path),
            Kind::List => self.list(node, shape, path),
            Kind::Map => self.map(node, shape, path),
            Kind::OneOf => self.one_of(node, shape, path),
            Kind::String => self.string(node, shape, path),
            Kind::Integer | Kind::Long | Kind::Double => self.number(node, shape, path),
            Kind::Boolean => self.boolean(node, path),
            Kind::Timestamp => self.timestamp(node, path),
        }
    }

    fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.reporter.error(pos, path, message);
    }

    fn structure(&mut self, node: &Node, shape: &Shape, path: &mut String) -> Option<Json> {
        let Value::Map(entries) = &node.value else {
            let what = if shape.kind == Kind::Union {
                format!(
                    "{} with exactly one of {}",
                    self.mapping(),
                    member_names(shape)
                )
            } else {
                format!("{} ({})", self.mapping(), shape.name)
            };
            let found = self.describe(node);
            self.error(node.pos, path, format!("expected {what}; found {found}"));
            return None;
        };
        let mut out = Map::new();
        let mut present = Vec::new();
        for (key, value) in entries {
            let Value::Scalar { text: name, .. } = &key.value else {
                let found = self.describe(key);
                self.error(
                    key.pos,
                    path,
                    format!("expected a member name; found {found}"),
                );
                continue;
            };
            let Some(member) = shape.member(name) else {
                let mut message = format!(
                    "unknown member {name:?}; expected one of {}",
                    member_names(shape)
                );
                if let Some(near) =
                    did_you_mean(name, shape.members.iter().map(|m| m.name.as_str()))
                {
                    message += &format!(" (did you mean {near:?}?)");
                }
                let at = join(path, name);
                self.error(key.pos, &at, message);
                continue;
            };
            if value.is_null() && shape.kind == Kind::Structure {
                // `Member: ~` is the member left out, as AWS's JSON null is.
                continue;
            }
            present.push(name.as_str());
            let mark = path.len();
            push_field(path, name);
            self.reference = reference_kind(&shape.name, name);
            // `- Drop:` with nothing after it is an empty structure, checked
            // as one (its required members are still required).
            let empty;
            let value = if value.is_null() && schema_kind(&member.shape) == Kind::Structure {
                empty = Node {
                    pos: value.pos,
                    value: Value::Map(Vec::new()),
                };
                &empty
            } else {
                value
            };
            if let Some(v) = self.check(value, &member.shape, path) {
                out.insert(name.clone(), v);
            }
            self.reference = None;
            path.truncate(mark);
        }
        if shape.kind == Kind::Union {
            if present.len() != 1 {
                let found = if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(" and ")
                };
                self.error(
                    node.pos,
                    path,
                    format!(
                        "expected exactly one of {}; found {found}",
                        member_names(shape)
                    ),
                );
            }
        } else {
            for member in shape.members.iter().filter(|m| m.required) {
                if !present.contains(&member.name.as_str()) {
                    let at = join(path, &member.name);
                    self.error(
                        node.pos,
                        &at,
                        format!("missing required member {:?}", member.name),
                    );
                }
            }
        }
        Some(Json::Object(out))
    }

    fn list(&mut self, node: &Node, shape: &Shape, path: &mut String) -> Option<Json> {
        let Value::Seq(items) = &node.value else {
            let found = self.describe(node);
            self.error(node.pos, path, format!("expected a list; found {found}"));
            return None;
        };
        let (max, quota) = match self.quotas.get(shape.name.as_str()) {
            Some(q) => (Some(q.max), Some(q.name)),
            None => (shape.max, None),
        };
        let n = items.len() as f64;
        if shape.min.is_some_and(|min| n < min) || max.is_some_and(|max| n > max) {
            let mut message = format!(
                "expected {}; found {}",
                size_range(shape.min, max, "item"),
                items.len()
            );
            let over = max.is_some_and(|max| n > max);
            if let (true, Some(quota)) = (over, quota.or(quota_for_shape(&shape.name))) {
                message += &format!(" (the {quota} quota; raise it with Server.Quotas.{quota})");
            }
            self.error(node.pos, path, message);
        }
        let element = shape.element.as_deref().expect("list member");
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mark = path.len();
            path.push_str(&format!("[{i}]"));
            // An invalid item keeps its place, so later checks count right.
            out.push(self.check(item, element, path).unwrap_or(Json::Null));
            path.truncate(mark);
        }
        Some(Json::Array(out))
    }

    fn map(&mut self, node: &Node, shape: &Shape, path: &mut String) -> Option<Json> {
        let Value::Map(entries) = &node.value else {
            let found = self.describe(node);
            let expected = self.mapping();
            self.error(
                node.pos,
                path,
                format!("expected {expected}; found {found}"),
            );
            return None;
        };
        let key_shape = shape.key.as_deref().expect("map key");
        let value_shape = shape.element.as_deref().expect("map value");
        let mut out = Map::new();
        for (key, value) in entries {
            let mark = path.len();
            let key_text = match &key.value {
                Value::Scalar { text, .. } => text.clone(),
                _ => String::new(),
            };
            path.push_str(&format!("[{key_text:?}]"));
            let key_ok = self.check(key, key_shape, path).is_some();
            if let Some(v) = self.check(value, value_shape, path)
                && key_ok
            {
                out.insert(key_text, v);
            }
            path.truncate(mark);
        }
        Some(Json::Object(out))
    }

    fn one_of(&mut self, node: &Node, shape: &Shape, path: &mut String) -> Option<Json> {
        // Try each alternative quietly; report against the best guess if none fits.
        for alternative in &shape.alternatives {
            let mut scratch = Reporter::new("", "");
            let mut trial = Validator::new(&mut scratch);
            trial.syntax = self.syntax;
            let mut p = path.clone();
            let value = trial.check(node, alternative, &mut p);
            if scratch.found.is_empty() {
                return value;
            }
        }
        let best = match &node.value {
            Value::Map(_) => shape.alternatives.iter().find(|a| {
                matches!(
                    self.schema.shape(a).kind,
                    Kind::Structure | Kind::Union | Kind::Map
                )
            }),
            Value::Seq(_) => shape
                .alternatives
                .iter()
                .find(|a| self.schema.shape(a).kind == Kind::List),
            Value::Scalar { .. } => shape.alternatives.iter().find(|a| {
                !matches!(
                    self.schema.shape(a).kind,
                    Kind::Structure | Kind::Union | Kind::Map | Kind::List
                )
            }),
        };
        match best {
            Some(alternative) => {
                let alternative = alternative.clone();
                self.check(node, &alternative, path)
            }
            None => {
                let names = shape.alternatives.join(" or ");
                let found = self.describe(node);
                self.error(node.pos, path, format!("expected {names}; found {found}"));
                None
            }
        }
    }

    fn scalar<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        expected: &str,
    ) -> Option<(&'n str, bool)> {
        match &node.value {
            Value::Scalar { text, plain } if !node.is_null() => Some((text.as_str(), *plain)),
            _ => {
                let found = self.describe(node);
                self.error(
                    node.pos,
                    path,
                    format!("expected {expected}; found {found}"),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, shape: &Shape, path: &str) -> Option<Json> {
        let expected = if shape.enum_values.is_empty() {
            "a string"
        } else {
            "one of the enum values"
        };
        let (text, plain) = self.scalar(node, path, expected)?;
        if plain && self.syntax == Syntax::Json {
            let found = self.describe(node);
            self.error(
                node.pos,
                path,
                format!("expected {expected}; found {found}"),
            );
            return None;
        }
        let shown = |text: &str| {
            if shape.sensitive {
                format!("a sensitive value of {} characters", text.chars().count())
            } else {
                format!("{text:?}")
            }
        };
        if !shape.enum_values.is_empty() {
            if !shape.enum_values.iter().any(|v| v == text) {
                let mut message = format!(
                    "expected one of {}; found {}",
                    shape.enum_values.join(", "),
                    shown(text)
                );
                if let Some(near) = did_you_mean(text, shape.enum_values.iter().map(String::as_str))
                {
                    message += &format!(" (did you mean {near:?}?)");
                }
                self.error(node.pos, path, message);
                return None;
            }
            return Some(Json::String(text.to_string()));
        }
        let mut ok = true;
        let length = text.chars().count() as f64;
        if shape.min.is_some_and(|m| length < m) || shape.max.is_some_and(|m| length > m) {
            self.error(
                node.pos,
                path,
                format!(
                    "expected {}; found {}",
                    size_range(shape.min, shape.max, "character"),
                    length
                ),
            );
            ok = false;
        }
        if let Some(pattern) = &shape.pattern
            && !self.pattern(pattern).is_match(text)
        {
            self.error(
                node.pos,
                path,
                format!(
                    "expected text matching {pattern} ({}); found {}",
                    shape.name,
                    shown(text)
                ),
            );
            ok = false;
        }
        if let Some(format) = &shape.format
            && let Err(problem) = check_format(format, text)
        {
            self.error(
                node.pos,
                path,
                format!("expected {problem}; found {}", shown(text)),
            );
            ok = false;
        }
        if ok && let Some(kind) = self.reference {
            self.references.push(Reference {
                kind,
                value: text.to_string(),
                path: path.to_string(),
                pos: node.pos,
            });
        }
        ok.then(|| Json::String(text.to_string()))
    }

    fn pattern(&mut self, pattern: &str) -> &Regex {
        self.patterns
            .entry(pattern.to_string())
            .or_insert_with(|| compile_pattern(pattern))
    }

    fn number(&mut self, node: &Node, shape: &Shape, path: &str) -> Option<Json> {
        let integer = shape.kind != Kind::Double;
        let expected = if integer { "an integer" } else { "a number" };
        let (text, plain) = self.scalar(node, path, expected)?;
        let value: Option<f64> = if !plain {
            None
        } else if integer {
            text.parse::<i64>().ok().map(|v| v as f64)
        } else {
            text.parse::<f64>().ok().filter(|v| v.is_finite())
        };
        let Some(value) = value else {
            let quoted = !plain && text.trim().parse::<f64>().is_ok();
            let found = self.found_scalar(node, quoted);
            self.error(
                node.pos,
                path,
                format!("expected {expected}; found {found}"),
            );
            return None;
        };
        let (min, max) = match shape.kind {
            Kind::Integer => (
                shape.min.unwrap_or(i32::MIN as f64),
                shape.max.unwrap_or(i32::MAX as f64),
            ),
            _ => (shape.min.unwrap_or(f64::MIN), shape.max.unwrap_or(f64::MAX)),
        };
        if value < min || value > max {
            self.error(
                node.pos,
                path,
                format!(
                    "expected {expected} from {} to {}; found {text}",
                    fmt_num(min),
                    fmt_num(max)
                ),
            );
            return None;
        }
        Some(if integer {
            Json::from(value as i64)
        } else {
            Json::from(value)
        })
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<Json> {
        let (text, plain) = self.scalar(node, path, "true or false")?;
        match (plain, text) {
            (true, "true" | "True" | "TRUE") => Some(Json::Bool(true)),
            (true, "false" | "False" | "FALSE") => Some(Json::Bool(false)),
            _ => {
                let quoted = !plain && matches!(text, "true" | "false");
                let found = self.found_scalar(node, quoted);
                self.error(
                    node.pos,
                    path,
                    format!("expected true or false; found {found}"),
                );
                None
            }
        }
    }

    fn timestamp(&mut self, node: &Node, path: &str) -> Option<Json> {
        let (text, plain) = self.scalar(node, path, "a timestamp")?;
        if self.syntax == Syntax::Json {
            // Both protocols send epoch seconds: a JSON number, or CBOR's
            // tag 1 over an integer or a float.
            let seconds = text.parse::<f64>().ok().filter(|s| plain && s.is_finite());
            return match seconds.and_then(serde_json::Number::from_f64) {
                Some(n) => Some(Json::Number(n)),
                None => {
                    let found = self.describe(node);
                    self.error(
                        node.pos,
                        path,
                        format!("expected a timestamp in epoch seconds; found {found}"),
                    );
                    None
                }
            };
        }
        match postern_model::Timestamp::parse(text) {
            Some(t) => Some(serde_json::to_value(t).expect("timestamp serializes")),
            None => {
                let found = self.describe(node);
                self.error(
                    node.pos,
                    path,
                    format!("expected epoch seconds or an RFC 3339 timestamp; found {found}"),
                );
                None
            }
        }
    }

    /// What was found where a number or boolean was expected; a quoted one
    /// is a string, which is worth saying.
    fn found_scalar(&self, node: &Node, quoted: bool) -> String {
        match (quoted, self.syntax) {
            (true, Syntax::Yaml) => format!(
                "the quoted string {} (write it without quotes)",
                node.describe()
            ),
            (true, Syntax::Json) => format!("the string {}", node.describe()),
            (false, _) => self.describe(node),
        }
    }
}

/// A model pattern as a regex matching the whole value. The model's patterns
/// are ECMA-262 (Smithy), where `\d` and `\w` are ASCII; the regex crate reads
/// them as Unicode classes, which accept more than AWS does and, repeated
/// (`[\w\-]{1,256}` in SnsTopicArn), exceed the regex size limit.
pub(crate) fn compile_pattern(pattern: &str) -> Regex {
    let mut ascii = String::with_capacity(pattern.len());
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') if in_class => ascii.push_str("0-9"),
                Some('d') => ascii.push_str("[0-9]"),
                Some('w') if in_class => ascii.push_str("0-9A-Za-z_"),
                Some('w') => ascii.push_str("[0-9A-Za-z_]"),
                Some(other) => {
                    ascii.push('\\');
                    ascii.push(other);
                }
                None => ascii.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                ascii.push(c);
            }
            ']' if in_class => {
                in_class = false;
                ascii.push(c);
            }
            _ => ascii.push(c),
        }
    }
    Regex::new(&format!("^(?:{ascii})$")).expect("model pattern compiles")
}

/// The quota a list shape's maximum stands for, by the name `Server.Quotas` uses.
pub(crate) fn quota_for_shape(shape: &str) -> Option<&'static str> {
    Some(match shape {
        "Rules" => "RulesPerRuleSet",
        "RuleConditions" => "ConditionsPerRule",
        "RuleActions" => "ActionsPerRule",
        "RuleStringList" | "RuleIpValueList" | "RuleVerdictValueList" | "RuleDmarcValueList" => {
            "ValuesPerCondition"
        }
        _ => return None,
    })
}

fn check_format(format: &str, text: &str) -> Result<(), &'static str> {
    match format {
        "ip-address" => text
            .parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| "an IPv4 or IPv6 address"),
        "socket-address" => text
            .parse::<std::net::SocketAddr>()
            .map(|_| ())
            .map_err(|_| "an address and port such as 127.0.0.1:2525 or [::1]:2525"),
        _ => Ok(()),
    }
}

fn member_names(shape: &Shape) -> String {
    shape
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn push_field(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

pub(crate) fn join(path: &str, name: &str) -> String {
    let mut p = path.to_string();
    push_field(&mut p, name);
    p
}

fn size_range(min: Option<f64>, max: Option<f64>, unit: &str) -> String {
    let plural = |n: f64| {
        if n == 1.0 {
            unit.to_string()
        } else {
            format!("{unit}s")
        }
    };
    match (min, max) {
        (Some(a), Some(b)) if a == b => format!("exactly {} {}", fmt_num(a), plural(a)),
        (Some(a), Some(b)) => format!("{} to {} {}", fmt_num(a), fmt_num(b), plural(b)),
        (Some(a), None) => format!("at least {} {}", fmt_num(a), plural(a)),
        (None, Some(b)) => format!("at most {} {}", fmt_num(b), plural(b)),
        (None, None) => format!("any number of {unit}s"),
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_pattern_compiles() {
        let schema = Schema::get();
        for name in schema.names() {
            if let Some(pattern) = &schema.shape(name).pattern {
                compile_pattern(pattern);
            }
        }
    }

    #[test]
    fn patterns_use_ecma_ascii_classes() {
        let sns = compile_pattern(
            r"arn:(aws|aws-cn|aws-us-gov|aws-eusc):sns:[a-z0-9-]+:\d{12}:[\w\-]{1,256}",
        );
        assert!(sns.is_match("arn:aws:sns:us-east-1:123456789012:mail-events_1"));
        assert!(!sns.is_match("arn:aws:sns:us-east-1:١٢٣٤٥٦٧٨٩٠١٢:mail-events"));
        assert!(!sns.is_match("arn:aws:sns:us-east-1:123456789012:événements"));
        assert!(compile_pattern(r"a-[\w]{1,64}").is_match("a-x_1"));
        assert!(compile_pattern(r"[\P{C}\s]*").is_match("-----BEGIN-----\nü\n"));
    }
}
