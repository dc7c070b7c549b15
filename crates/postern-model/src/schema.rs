//! The model as data: every shape with the constraints the API model states,
//! the API's operations (input, output, errors) and the service metadata the
//! protocols need (target prefix, signing name).
//!
//! The validator in `postern-config` walks a document against these shapes,
//! so a constraint is written once, in the model file, and checked everywhere
//! (config file, rule tests, API requests).

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

const AWS_MODEL: &str = include_str!("../model/mailmanager-api-2023-10-17.json");
const POSTERN_MODEL: &str = include_str!("../model/postern.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Long,
    Double,
    Boolean,
    Timestamp,
    List,
    Map,
    Structure,
    Union,
    OneOf,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub shape: String,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct Shape {
    pub name: String,
    pub kind: Kind,
    /// Length for strings (in characters), size for lists, value for numbers.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The model's pattern; it must match the whole value.
    pub pattern: Option<String>,
    pub enum_values: Vec<String>,
    pub sensitive: bool,
    /// A check the pattern language cannot state (`ip-address`, `socket-address`).
    pub format: Option<String>,
    pub members: Vec<Member>,
    /// Element shape of a list, value shape of a map.
    pub element: Option<String>,
    /// Key shape of a map.
    pub key: Option<String>,
    pub alternatives: Vec<String>,
}

impl Shape {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// An operation of the API model: its input and output shapes and the
/// errors it declares.
#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    pub input: String,
    pub output: String,
    /// The error shapes the model lists for it, in the model's order.
    pub errors: Vec<String>,
    /// Whether the model marks it idempotent (a retry has the same effect).
    pub idempotent: bool,
}

/// What the model's metadata says about the service as a whole.
#[derive(Debug, Clone)]
pub struct Service {
    /// The prefix of `X-Amz-Target` (AWS JSON) and of the RPC v2 path.
    pub target_prefix: String,
    /// The service name in SigV4 credential scopes.
    pub signing_name: String,
    /// The `application/x-amz-json-<version>` of the JSON protocol.
    pub json_version: String,
    /// The protocols the model supports, in its order of preference.
    pub protocols: Vec<String>,
    pub api_version: String,
}

#[derive(Debug)]
pub struct Schema {
    shapes: HashMap<String, Shape>,
    operations: BTreeMap<String, Operation>,
    service: Service,
}

impl Schema {
    /// The Mail Manager model and Postern's shapes, parsed once.
    pub fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| Schema::from_models(&[AWS_MODEL, POSTERN_MODEL]))
    }

    /// Panics on a malformed model: the models are compiled in and tested.
    /// The first model is the service's: its operations and metadata are the
    /// API; the others only add shapes.
    fn from_models(models: &[&str]) -> Schema {
        let mut raw: serde_json::Map<String, Value> = serde_json::Map::new();
        let mut operations = BTreeMap::new();
        let mut service = None;
        for model in models {
            let parsed: Value = serde_json::from_str(model).expect("model file is JSON");
            if service.is_none() {
                service = Some(build_service(&parsed["metadata"]));
                for (name, spec) in parsed["operations"].as_object().expect("operations object") {
                    operations.insert(name.clone(), build_operation(name, spec));
                }
            }
            for (name, shape) in parsed["shapes"].as_object().expect("shapes object") {
                assert!(!raw.contains_key(name), "shape {name} defined twice");
                raw.insert(name.clone(), shape.clone());
            }
        }
        let mut shapes = HashMap::new();
        for (name, spec) in &raw {
            shapes.insert(name.clone(), build_shape(name, spec, &raw));
        }
        Schema {
            shapes,
            operations,
            service: service.expect("a service model"),
        }
    }

    pub fn shape(&self, name: &str) -> &Shape {
        self.shapes
            .get(name)
            .unwrap_or_else(|| panic!("unknown shape {name}"))
    }

    pub fn try_shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.shapes.keys().map(String::as_str)
    }

    /// An operation of the API by its name (`CreateRuleSet`).
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// Every operation of the API, by name.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.values()
    }

    pub fn service(&self) -> &Service {
        &self.service
    }
}

fn build_service(metadata: &Value) -> Service {
    let text = |key: &str| {
        metadata[key]
            .as_str()
            .unwrap_or_else(|| panic!("model metadata lacks {key}"))
            .to_string()
    };
    Service {
        target_prefix: text("targetPrefix"),
        signing_name: text("signingName"),
        json_version: text("jsonVersion"),
        protocols: metadata["protocols"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_else(|| vec![text("protocol")]),
        api_version: text("apiVersion"),
    }
}

fn build_operation(name: &str, spec: &Value) -> Operation {
    let shape = |key: &str| {
        spec[key]["shape"]
            .as_str()
            .unwrap_or_else(|| panic!("operation {name} has no {key} shape"))
            .to_string()
    };
    Operation {
        name: name.to_string(),
        input: shape("input"),
        output: shape("output"),
        errors: spec["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["shape"].as_str().map(str::to_string))
            .collect(),
        idempotent: spec["idempotent"].as_bool().unwrap_or(false),
    }
}

fn build_shape(name: &str, spec: &Value, raw: &serde_json::Map<String, Value>) -> Shape {
    let ty = spec["type"].as_str().expect("shape type");
    let union = spec["union"].as_bool().unwrap_or(false);
    let kind = match ty {
        "string" => Kind::String,
        "integer" => Kind::Integer,
        "long" => Kind::Long,
        "double" | "float" => Kind::Double,
        "boolean" => Kind::Boolean,
        "timestamp" => Kind::Timestamp,
        "list" => Kind::List,
        "map" => Kind::Map,
        "structure" if union => Kind::Union,
        "structure" => Kind::Structure,
        "oneOf" => Kind::OneOf,
        other => panic!("shape {name}: unsupported type {other}"),
    };
    let mut members = Vec::new();
    let mut required: Vec<String> = Vec::new();
    if let Some(mixins) = spec["mixins"].as_array() {
        for mixin in mixins {
            let base = &raw[mixin["shape"].as_str().expect("mixin shape")];
            let excluded: Vec<&str> = mixin["exclude"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (m, mspec) in base["members"].as_object().expect("mixin members") {
                if !excluded.contains(&m.as_str()) {
                    members.push((m.clone(), mspec["shape"].as_str().unwrap().to_string()));
                }
            }
            for r in base["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                if !excluded.contains(&r) {
                    required.push(r.to_string());
                }
            }
        }
    }
    if let Some(own) = spec["members"].as_object() {
        for (m, mspec) in own {
            let shape = mspec["shape"].as_str().unwrap().to_string();
            // An own member replaces a mixin's member of the same name.
            match members.iter_mut().find(|(name, _)| name == m) {
                Some(existing) => existing.1 = shape,
                None => members.push((m.clone(), shape)),
            }
        }
    }
    for r in spec["required"].as_array().into_iter().flatten() {
        required.push(r.as_str().unwrap().to_string());
    }
    Shape {
        name: name.to_string(),
        kind,
        min: spec["min"].as_f64(),
        max: spec["max"].as_f64(),
        pattern: spec["pattern"].as_str().map(str::to_string),
        enum_values: spec["enum"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        sensitive: spec["sensitive"].as_bool().unwrap_or(false),
        format: spec["format"].as_str().map(str::to_string),
        members: members
            .into_iter()
            .map(|(name, shape)| Member {
                required: required.contains(&name),
                name,
                shape,
            })
            .collect(),
        element: spec["member"]["shape"]
            .as_str()
            .or(spec["value"]["shape"].as_str())
            .map(str::to_string),
        key: spec["key"]["shape"].as_str().map(str::to_string),
        alternatives: spec["alternatives"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v["shape"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referenced_shape_exists() {
        let schema = Schema::get();
        for name in schema.names() {
            let shape = schema.shape(name);
            let refs = shape
                .members
                .iter()
                .map(|m| m.shape.as_str())
                .chain(shape.element.as_deref())
                .chain(shape.key.as_deref())
                .chain(shape.alternatives.iter().map(String::as_str));
            for r in refs {
                assert!(
                    schema.try_shape(r).is_some(),
                    "{name} refers to missing {r}"
                );
            }
        }
    }

    #[test]
    fn operations_name_existing_shapes() {
        let schema = Schema::get();
        assert_eq!(schema.operations().count(), 60);
        for op in schema.operations() {
            for shape in [&op.input, &op.output].into_iter().chain(&op.errors) {
                assert!(
                    schema.try_shape(shape).is_some(),
                    "{} refers to missing {shape}",
                    op.name
                );
            }
        }
        let create = schema.operation("CreateRuleSet").unwrap();
        assert_eq!(create.input, "CreateRuleSetRequest");
        assert_eq!(create.output, "CreateRuleSetResponse");
        assert!(create.idempotent);
        assert!(create.errors.iter().any(|e| e == "ValidationException"));
        assert!(schema.operation("CreateRuleSetRequest").is_none());
        let service = schema.service();
        assert_eq!(service.target_prefix, "MailManagerSvc");
        assert_eq!(service.signing_name, "ses");
        assert_eq!(service.json_version, "1.0");
        assert_eq!(service.protocols, ["smithy-rpc-v2-cbor", "json"]);
    }

    #[test]
    fn mixins_copy_members_less_the_excluded() {
        let shape = Schema::get().shape("ConfigRuleSet");
        assert!(shape.member("ClientToken").is_none());
        assert!(shape.member("RuleSetName").unwrap().required);
        assert!(shape.member("Rules").unwrap().required);
        assert!(!shape.member("RuleSetId").unwrap().required);
        let instance = Schema::get().shape("ConfigAddonInstance");
        let subscription = instance.member("AddonSubscriptionId").unwrap();
        assert_eq!(subscription.shape, "NameOrArn");
        assert!(subscription.required);
        assert_eq!(
            instance
                .members
                .iter()
                .filter(|m| m.name == "AddonSubscriptionId")
                .count(),
            1
        );
    }
}
