//! Round trips of the model's shapes with random valid values.
//!
//! The values come from the model itself (`postern_model::schema`): required
//! members always, optional ones sometimes, exactly one member of a union,
//! enum values, strings from the model's patterns within the length bounds,
//! lists within their sizes (at most 3 items), numbers within their ranges,
//! timestamps as epoch seconds. For each shape:
//! - JSON: value → typed (the generated Rust type) → JSON text → typed → JSON
//!   text is stable, and the typed value serializes back to the very value
//!   generated (nothing dropped, renamed or retyped);
//! - YAML: the typed value written as YAML (`serde_saphyr`) and read back
//!   through the loader's validator (`parse_document`) is the same value;
//! - config: the resource shapes, wrapped in a whole config (with the
//!   resources their references name), load through `parse_config` from
//!   YAML and from JSON and come back unchanged.

use postern_config::{parse_config, parse_document};
use postern_model::schema::{Kind, Schema, Shape};
use postern_model::{
    ConfigAddonInstance, ConfigAddonSubscription, ConfigAddressList, ConfigArchive,
    ConfigIngressPoint, ConfigRelay, ConfigRuleSet, ConfigTrafficPolicy, PolicyStatement,
    PosternConfig, Rule, RuleAction, RuleCondition,
};
use proptest::prelude::*;
use proptest::strategy::Union as OneOf;
use proptest::string::string_regex;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use regex::Regex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

/// Cases per property: enough to find mistakes, few enough to stay fast.
const CASES: u32 = 64;
/// Lists get at most this many items (or their minimum, if larger).
const MAX_ITEMS: usize = 3;
/// Strings are at most this much longer than their minimum.
const EXTRA_CHARS: usize = 24;

// ---------------------------------------------------------------------------
// The generator.

/// Random valid JSON for shapes of the model.
#[derive(Default)]
struct Generator {
    /// Strategies used instead of the model's for some shapes (by name): for
    /// what the model cannot state on a field (references to declared
    /// resources, CIDR blocks, address list members).
    overrides: HashMap<&'static str, BoxedStrategy<Value>>,
}

impl Generator {
    fn with(mut self, shape: &'static str, strategy: BoxedStrategy<Value>) -> Self {
        self.overrides.insert(shape, strategy);
        self
    }

    /// Any of these strings, for a shape.
    fn pick(self, shape: &'static str, values: &[&str]) -> Self {
        let values: Vec<Value> = values.iter().map(|v| json!(v)).collect();
        self.with(shape, proptest::sample::select(values).boxed())
    }

    fn value(&self, name: &str) -> BoxedStrategy<Value> {
        if let Some(strategy) = self.overrides.get(name) {
            return strategy.clone();
        }
        let shape = Schema::get().shape(name);
        match shape.kind {
            Kind::Structure => self.structure(shape),
            Kind::Union => self.union(shape),
            Kind::List => self.list(shape),
            Kind::Map => self.map(shape),
            Kind::OneOf => OneOf::new(shape.alternatives.iter().map(|a| self.value(a))).boxed(),
            Kind::String if !shape.enum_values.is_empty() => {
                proptest::sample::select(shape.enum_values.clone())
                    .prop_map(Value::String)
                    .boxed()
            }
            Kind::String => string(shape).prop_map(Value::String).boxed(),
            Kind::Integer | Kind::Long => integer(shape),
            Kind::Double => double(shape),
            Kind::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
            // Epoch seconds, 1970 to 2100.
            Kind::Timestamp => (0i64..=4_102_444_800).prop_map(Value::from).boxed(),
        }
    }

    fn structure(&self, shape: &Shape) -> BoxedStrategy<Value> {
        let members: Vec<BoxedStrategy<Option<(String, Value)>>> = shape
            .members
            .iter()
            .map(|member| {
                let name = member.name.clone();
                let entry = self
                    .value(&member.shape)
                    .prop_map(move |v| (name.clone(), v));
                if member.required {
                    entry.prop_map(Some).boxed()
                } else {
                    proptest::option::of(entry).boxed()
                }
            })
            .collect();
        members
            .prop_map(|entries| Value::Object(entries.into_iter().flatten().collect()))
            .boxed()
    }

    fn union(&self, shape: &Shape) -> BoxedStrategy<Value> {
        OneOf::new(shape.members.iter().map(|member| {
            let name = member.name.clone();
            self.value(&member.shape)
                .prop_map(move |v| json!({ name.clone(): v }))
                .boxed()
        }))
        .boxed()
    }

    fn list(&self, shape: &Shape) -> BoxedStrategy<Value> {
        let min = shape.min.unwrap_or(0.0) as usize;
        let max = shape.max.map_or(usize::MAX, |m| m as usize);
        let element = self.value(shape.element.as_deref().expect("list member"));
        proptest::collection::vec(element, min..=max.min(min.max(MAX_ITEMS)))
            .prop_map(Value::Array)
            .boxed()
    }

    fn map(&self, shape: &Shape) -> BoxedStrategy<Value> {
        let key = self.value(shape.key.as_deref().expect("map key"));
        let value = self.value(shape.element.as_deref().expect("map value"));
        proptest::collection::vec((key, value), 0..=MAX_ITEMS)
            .prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v))
                        .collect(),
                )
            })
            .boxed()
    }
}

fn integer(shape: &Shape) -> BoxedStrategy<Value> {
    let (lo, hi) = match shape.kind {
        Kind::Integer => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    };
    let lo = shape.min.map_or(lo, |m| m as i64);
    let hi = shape.max.map_or(hi, |m| m as i64);
    // The bounds themselves are where mistakes are.
    prop_oneof![1 => Just(lo), 1 => Just(hi), 4 => lo..=hi]
        .prop_map(Value::from)
        .boxed()
}

fn double(shape: &Shape) -> BoxedStrategy<Value> {
    let finite = match (shape.min, shape.max) {
        (None, None) => prop_oneof![
            Just(0.0),
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
            -1e6..1e6f64,
            proptest::num::f64::POSITIVE
                | proptest::num::f64::NEGATIVE
                | proptest::num::f64::NORMAL
                | proptest::num::f64::SUBNORMAL,
        ]
        .boxed(),
        (lo, hi) => (lo.unwrap_or(f64::MIN)..=hi.unwrap_or(f64::MAX)).boxed(),
    };
    finite.prop_map(Value::from).boxed()
}

/// Strings YAML is apt to read as something else (null, booleans, numbers,
/// dates, indicators) or to trim: kept for a shape when it takes them.
const YAML_TRAPS: &[&str] = &[
    "",
    "null",
    "Null",
    "NULL",
    "~",
    "true",
    "False",
    "TRUE",
    "yes",
    "No",
    "on",
    "OFF",
    "y",
    "n",
    "0",
    "1",
    "-1",
    "+1",
    "007",
    "1.0",
    "1e3",
    "1E-3",
    ".5",
    "0x1F",
    "0o17",
    "0b101",
    "1_000",
    ".inf",
    "-.Inf",
    ".nan",
    "12:30:00",
    "2024-05-01",
    "2024-05-01T10:00:00Z",
    "-",
    "--",
    "---",
    "...",
    "- a",
    "a: b",
    "a:b",
    "a #b",
    "#x",
    "?",
    "? a",
    ":",
    "|",
    ">",
    "!",
    "!!str",
    "&a",
    "*a",
    "%x",
    "@x",
    "`x",
    ",",
    "[x]",
    "{x}",
    "'x'",
    "\"x\"",
    " x",
    "x ",
    "\tx",
    "x\n",
    "a\nb",
    "a\r\nb",
    "\\",
    "\u{feff}x",
    "\u{85}",
    "\u{2028}",
    "\0",
    "é",
];

/// A string of the shape: its format, or its pattern within its length
/// bounds, or any characters within them; now and then a YAML trap.
fn string(shape: &Shape) -> BoxedStrategy<String> {
    let plain = plain_string(shape);
    let min = shape.min.unwrap_or(0.0) as usize;
    let max = shape.max.map_or(usize::MAX, |m| m as usize);
    let pattern = shape
        .pattern
        .as_deref()
        .map(|p| Regex::new(&format!("^(?:{})$", ecma_ascii(p))).expect("model pattern compiles"));
    let traps: Vec<String> = YAML_TRAPS
        .iter()
        .filter(|t| (min..=max).contains(&t.chars().count()))
        .filter(|t| pattern.as_ref().is_none_or(|p| p.is_match(t)))
        .filter(|_| shape.format.is_none())
        .map(|t| t.to_string())
        .collect();
    if traps.is_empty() {
        return plain;
    }
    prop_oneof![3 => plain, 1 => proptest::sample::select(traps)].boxed()
}

fn plain_string(shape: &Shape) -> BoxedStrategy<String> {
    let min = shape.min.unwrap_or(0.0) as usize;
    let max = shape.max.map_or(usize::MAX, |m| m as usize);
    let hi = max.min(min + EXTRA_CHARS);
    match shape.format.as_deref() {
        Some("ip-address") => return any::<IpAddr>().prop_map(|ip| ip.to_string()).boxed(),
        Some("socket-address") => {
            return (any::<IpAddr>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(ip, port).to_string())
                .boxed();
        }
        _ => {}
    }
    let Some(pattern) = &shape.pattern else {
        // Any characters, control characters and all.
        return string_regex(&format!("(?s:.){{{min},{hi}}}"))
            .expect("character class")
            .boxed();
    };
    let ascii = ecma_ascii(pattern);
    let anchored = Regex::new(&format!("^(?:{ascii})$")).expect("model pattern compiles");
    let generator = match string_regex(&with_length(&ascii, min, hi)) {
        Ok(generator) => generator.boxed(),
        // A pattern proptest cannot generate from: letters and digits of the
        // right length, kept when the pattern takes them.
        Err(_) => string_regex(&format!("[a-zA-Z0-9]{{{min},{hi}}}"))
            .expect("alphanumerics")
            .boxed(),
    };
    let name = shape.name.clone();
    generator
        .prop_filter(format!("{name}: pattern and length"), move |s| {
            (min..=max).contains(&s.chars().count()) && anchored.is_match(s)
        })
        .boxed()
}

/// The model's patterns are ECMA-262, where `\d` and `\w` are ASCII (as the
/// loader reads them).
fn ecma_ascii(pattern: &str) -> String {
    let mut out = String::new();
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match (c, in_class) {
            ('\\', _) => match (chars.next(), in_class) {
                (Some('d'), true) => out.push_str("0-9"),
                (Some('d'), false) => out.push_str("[0-9]"),
                (Some('w'), true) => out.push_str("0-9A-Za-z_"),
                (Some('w'), false) => out.push_str("[0-9A-Za-z_]"),
                (Some(other), _) => {
                    out.push('\\');
                    out.push(other);
                }
                (None, _) => out.push('\\'),
            },
            ('[', false) => {
                in_class = true;
                out.push(c);
            }
            (']', true) => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A pattern that is one character class repeated (`[a-z0-9-]+`) gets the
/// length bounds as its repetition, so that long minimums (20 for ARNs, 36
/// for Q Business ids) are generated rather than filtered for.
fn with_length(pattern: &str, min: usize, hi: usize) -> String {
    let Some(body) = pattern.strip_prefix('[') else {
        return pattern.to_string();
    };
    let mut escaped = false;
    let close = body.char_indices().find_map(|(i, c)| {
        let found = !escaped && c == ']' && i > 0;
        escaped = !escaped && c == '\\';
        found.then_some(i)
    });
    let Some(close) = close else {
        return pattern.to_string();
    };
    let (class, rest) = body.split_at(close + 1);
    let least = match rest {
        "+" => 1,
        "*" => 0,
        _ => return pattern.to_string(),
    };
    let lo = min.max(least);
    format!("[{class}{{{lo},{}}}", hi.max(lo))
}

// ---------------------------------------------------------------------------
// The properties.

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("<{e}>"))
}

/// JSON and YAML round trips of one shape, with `T` its generated type.
fn round_trip<T>(shape: &'static str, generator: &Generator)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let result = runner().run(&generator.value(shape), |value| {
        // JSON: the typed value is the generated one, and its text is stable.
        let typed: T = serde_json::from_value(value.clone()).map_err(|e| {
            fail(format!(
                "the generated value is not a {shape}: {e}\n{}",
                pretty(&value)
            ))
        })?;
        let back = serde_json::to_value(&typed).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(
            &back,
            &value,
            "{} serializes to another value than it was read from",
            shape
        );
        let text = serde_json::to_string(&typed).map_err(|e| fail(e.to_string()))?;
        let reread: T = serde_json::from_str(&text)
            .map_err(|e| fail(format!("{shape} does not read its own JSON: {e}\n{text}")))?;
        let text2 = serde_json::to_string(&reread).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(
            &text2,
            &text,
            "{} JSON is not stable (a double's last digit? see json_reads_doubles_exactly)",
            shape
        );

        // YAML, back through the loader's validator.
        let yaml = serde_saphyr::to_string(&typed)
            .map_err(|e| fail(format!("{shape} does not serialize to YAML: {e}")))?;
        let (loaded, _) = parse_document::<T>("roundtrip.yaml", &yaml, shape).map_err(|d| {
            fail(format!(
                "the loader rejects a valid {shape}:\n{d}\n--- YAML:\n{yaml}"
            ))
        })?;
        prop_assert_eq!(&loaded, &typed, "{} changed through YAML:\n{}", shape, yaml);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{shape}: {e}");
    }
}

/// The resources the references of generated rule sets and traffic
/// policies name, by name, id or ARN (region eu-west-1, account
/// 123456789012).
fn fixtures() -> Value {
    json!({
        "Server": {"Region": "eu-west-1", "AccountId": "123456789012"},
        "Archives": [{"ArchiveName": "compliance", "ArchiveId": "a-compliance"}],
        "Relays": [{
            "RelayName": "smarthost", "RelayId": "rl-smarthost",
            "ServerName": "smtp.example.net", "ServerPort": 25,
            "Authentication": {"NoAuthentication": {}}
        }],
        "AddressLists": [{"AddressListName": "vip", "AddressListId": "al-vip", "Members": ["ceo@example.com"]}],
        "AddonSubscriptions": [{"AddonName": "SPAMHAUS_DBL", "AddonSubscriptionId": "as-spamhaus"}],
        "AddonInstances": [{"AddonSubscriptionId": "as-spamhaus", "AddonInstanceId": "ai-spamhaus"}]
    })
}

const ARN: &str = "arn:aws:ses:eu-west-1:123456789012";

/// Values for a shape that are names, ids and ARNs of declared resources.
fn references(generator: Generator) -> Generator {
    generator
        .pick(
            // TargetArchive (and DeliverToMailbox's MailboxArn, which takes any).
            "NameOrArn",
            &[
                "compliance",
                "a-compliance",
                &format!("{ARN}:mailmanager-archive/a-compliance"),
            ],
        )
        .pick(
            "IdOrArn",
            &[
                "smarthost",
                "rl-smarthost",
                &format!("{ARN}:mailmanager-smtp-relay/rl-smarthost"),
            ],
        )
        .pick(
            "AddressListArn",
            &[
                "vip",
                "al-vip",
                &format!("{ARN}:mailmanager-address-list/al-vip"),
            ],
        )
        .pick(
            "AnalyzerArn",
            &[
                "SPAMHAUS_DBL",
                "ai-spamhaus",
                &format!("{ARN}:addon-instance/ai-spamhaus"),
            ],
        )
        // A rule's IpExpression values are CIDR blocks (or bare addresses).
        .with("RuleIpStringValue", cidr().prop_map(Value::String).boxed())
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<std::net::Ipv4Addr>(), 0u8..=32).prop_map(|(ip, n)| format!("{ip}/{n}")),
        (any::<std::net::Ipv6Addr>(), 0u8..=128)
            .prop_map(|(ip, n)| format!("{ip}/{n}"))
            .prop_filter("43 characters at most", |s| s.len() <= 43),
        any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
    ]
}

/// An address list member: local@domain or *@domain.
fn member() -> impl Strategy<Value = Value> {
    string_regex(r"(\*|[a-z0-9][a-z0-9._+-]{0,11})@[a-z0-9][a-z0-9-]{0,11}(\.[a-z]{2,6}){1,2}")
        .expect("member pattern")
        .prop_map(Value::String)
}

/// One generated resource in a whole config: loaded through `parse_config`
/// from YAML and from JSON, it comes back unchanged.
fn config_round_trip(section: &str, shape: &'static str, generator: &Generator, base: Value) {
    let result = runner().run(&generator.value(shape), |item| {
        let mut document = base.clone();
        document[section] = json!([item]);
        let config: PosternConfig = serde_json::from_value(document.clone()).map_err(|e| {
            fail(format!(
                "the generated config is not a PosternConfig: {e}\n{}",
                pretty(&document)
            ))
        })?;
        let yaml = serde_saphyr::to_string(&config).map_err(|e| fail(e.to_string()))?;
        let json = pretty(&config);
        for (name, text) in [("roundtrip.yaml", &yaml), ("roundtrip.json", &json)] {
            let loaded = parse_config(name, text, &|_| Ok(String::new())).map_err(|d| {
                fail(format!(
                    "the loader rejects a valid config ({shape} in {section}):\n{d}\n--- {name}:\n{text}"
                ))
            })?;
            prop_assert_eq!(
                &loaded.config,
                &config,
                "{} changed through {}:\n{}",
                shape,
                name,
                text
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{shape} in a config: {e}");
    }
}

// Each shape through JSON, YAML and the validator.

#[test]
fn config_rule_set_round_trips() {
    round_trip::<ConfigRuleSet>("ConfigRuleSet", &Generator::default());
}

#[test]
fn config_traffic_policy_round_trips() {
    round_trip::<ConfigTrafficPolicy>("ConfigTrafficPolicy", &Generator::default());
}

#[test]
fn config_ingress_point_round_trips() {
    // References to a rule set and a traffic policy: not loadable alone, so
    // the serde level and the validator only.
    round_trip::<ConfigIngressPoint>("ConfigIngressPoint", &Generator::default());
}

#[test]
fn config_archive_round_trips() {
    round_trip::<ConfigArchive>("ConfigArchive", &Generator::default());
}

#[test]
fn config_relay_round_trips() {
    round_trip::<ConfigRelay>("ConfigRelay", &Generator::default());
}

#[test]
fn config_address_list_round_trips() {
    round_trip::<ConfigAddressList>("ConfigAddressList", &Generator::default());
}

#[test]
fn config_addon_subscription_round_trips() {
    round_trip::<ConfigAddonSubscription>("ConfigAddonSubscription", &Generator::default());
}

#[test]
fn config_addon_instance_round_trips() {
    round_trip::<ConfigAddonInstance>("ConfigAddonInstance", &Generator::default());
}

#[test]
fn rule_round_trips() {
    round_trip::<Rule>("Rule", &Generator::default());
}

#[test]
fn rule_action_round_trips() {
    round_trip::<RuleAction>("RuleAction", &Generator::default());
}

#[test]
fn rule_condition_round_trips() {
    round_trip::<RuleCondition>("RuleCondition", &Generator::default());
}

#[test]
fn policy_statement_round_trips() {
    round_trip::<PolicyStatement>("PolicyStatement", &Generator::default());
}

// Each resource shape in a whole config, references resolved.

#[test]
fn rule_set_loads_in_a_config() {
    config_round_trip(
        "RuleSets",
        "ConfigRuleSet",
        &references(Generator::default()),
        fixtures(),
    );
}

#[test]
fn traffic_policy_loads_in_a_config() {
    config_round_trip(
        "TrafficPolicies",
        "ConfigTrafficPolicy",
        &references(Generator::default()),
        fixtures(),
    );
}

#[test]
fn archive_loads_in_a_config() {
    config_round_trip(
        "Archives",
        "ConfigArchive",
        &Generator::default(),
        json!({}),
    );
}

#[test]
fn relay_loads_in_a_config() {
    config_round_trip("Relays", "ConfigRelay", &Generator::default(), json!({}));
}

#[test]
fn address_list_loads_in_a_config() {
    let generator = Generator::default().with("Address", member().boxed());
    config_round_trip("AddressLists", "ConfigAddressList", &generator, json!({}));
}

#[test]
fn addon_subscription_loads_in_a_config() {
    config_round_trip(
        "AddonSubscriptions",
        "ConfigAddonSubscription",
        &Generator::default(),
        json!({}),
    );
}

#[test]
fn addon_instance_loads_in_a_config() {
    // The subscription named by AddonName, id or ARN (postern.json).
    let generator = Generator::default().pick(
        "NameOrArn",
        &[
            "TRENDMICRO_VSAPI",
            "as-trendmicro",
            "arn:aws:ses:us-east-1:000000000000:addon-subscription/as-trendmicro",
        ],
    );
    let base = json!({
        "AddonSubscriptions": [{"AddonName": "TRENDMICRO_VSAPI", "AddonSubscriptionId": "as-trendmicro"}]
    });
    config_round_trip("AddonInstances", "ConfigAddonInstance", &generator, base);
}

/// Doubles the properties found changing by one unit in the last place
/// when JSON text is read back: serde_json parses floats exactly only with
/// its `float_roundtrip` feature, which the workspace enables.
#[test]
fn json_reads_doubles_exactly() {
    for value in [
        -905930.2799468604,
        1.1819269283985106e-253,
        -1.1305618942584808e-96,
    ] {
        let condition = json!({"NumberExpression": {
            "Evaluate": {"Attribute": "MESSAGE_SIZE"}, "Operator": "EQUALS", "Value": value
        }});
        let typed: RuleCondition = serde_json::from_value(condition).unwrap();
        let text = serde_json::to_string(&typed).unwrap();
        let reread: RuleCondition = serde_json::from_str(&text).unwrap();
        assert_eq!(
            reread, typed,
            "{text} reads back as another number (serde_json needs features = [\"float_roundtrip\"])"
        );
    }
}

// The generator itself.

#[test]
fn generated_strings_are_valid_for_every_model_string_shape() {
    // Every string shape with a pattern or bounds yields values: no pattern is
    // beyond the generator (or it falls back to something the pattern takes).
    let schema = Schema::get();
    let mut names: Vec<&str> = schema.names().collect();
    names.sort_unstable();
    let mut runner = runner();
    for name in names {
        let shape = schema.shape(name);
        if shape.kind != Kind::String || !shape.enum_values.is_empty() {
            continue;
        }
        let strategy = string(shape);
        for _ in 0..8 {
            strategy
                .new_tree(&mut runner)
                .unwrap_or_else(|e| panic!("{name}: no value generated: {e}"));
        }
    }
}

#[test]
fn with_length_rewrites_single_class_repetitions_only() {
    assert_eq!(with_length("[a-z0-9-]+", 36, 36), "[a-z0-9-]{36,36}");
    assert_eq!(
        with_length("[a-zA-Z0-9:_/+=,@.#-]+", 20, 44),
        "[a-zA-Z0-9:_/+=,@.#-]{20,44}"
    );
    assert_eq!(
        with_length(r"[A-Za-z0-9!@#$%^&*()_+\-=\[\]{}|.,?]+", 8, 32),
        r"[A-Za-z0-9!@#$%^&*()_+\-=\[\]{}|.,?]{8,32}"
    );
    assert_eq!(
        with_length("[a-zA-Z0-9/_\\+=\\.:@\\-]*", 0, 24),
        "[a-zA-Z0-9/_\\+=\\.:@\\-]{0,24}"
    );
    assert_eq!(
        with_length("[xX]\\-[a-zA-Z0-9\\-]+", 1, 25),
        "[xX]\\-[a-zA-Z0-9\\-]+"
    );
    assert_eq!(with_length("as-[a-z]+", 4, 28), "as-[a-z]+");
}
