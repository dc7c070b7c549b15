//! API values (JSON trees) checked against the model with `check_value`:
//! typed strictly, every problem reported with its field path.

use postern_config::{Quotas, check_value, check_value_with_quotas};
use serde_json::json;

fn problems(value: serde_json::Value, shape: &str) -> Vec<(String, String)> {
    check_value(&value, shape).expect_err("the value has problems")
}

fn rule_set(rules: serde_json::Value) -> serde_json::Value {
    json!({ "RuleSetName": "inbound", "Rules": rules })
}

#[test]
fn a_valid_request_comes_back_unchanged() {
    let value = rule_set(json!([{
        "Name": "drop-spam",
        "Conditions": [{ "StringExpression": {
            "Evaluate": { "Attribute": "SUBJECT" },
            "Operator": "CONTAINS",
            "Values": ["[SPAM]"]
        }}],
        "Actions": [{ "Drop": {} }]
    }]));
    assert_eq!(check_value(&value, "CreateRuleSetRequest").unwrap(), value);
}

#[test]
fn nulls_are_absent_members() {
    let value = json!({ "RuleSetName": "inbound", "Rules": [], "Tags": null });
    assert_eq!(
        check_value(&value, "CreateRuleSetRequest").unwrap(),
        json!({ "RuleSetName": "inbound", "Rules": [] })
    );
    // A union with one member set and the others null has one member.
    let action = json!({ "Drop": {}, "Relay": null });
    assert_eq!(
        check_value(&action, "RuleAction").unwrap(),
        json!({ "Drop": {} })
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let found = problems(
        json!({
            "RuleSetName": "",
            "Rules": [{
                "Conditions": [{
                    "StringExpression": {
                        "Evaluate": { "Attribute": "SUBJECT" },
                        "Operator": "EQUAL",
                        "Values": ["x"]
                    },
                    "BooleanExpression": {
                        "Evaluate": { "Attribute": "READ_RECEIPT_REQUESTED" },
                        "Operator": "IS_TRUE"
                    }
                }],
                "Actions": [{ "Drop": {} }],
                "Colour": "blue"
            }]
        }),
        "CreateRuleSetRequest",
    );
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert!(paths.contains(&"RuleSetName"), "{found:?}");
    assert!(
        paths.contains(&"Rules[0].Conditions[0].StringExpression.Operator"),
        "{found:?}"
    );
    assert!(paths.contains(&"Rules[0].Conditions[0]"), "{found:?}");
    assert!(paths.contains(&"Rules[0].Colour"), "{found:?}");
    let message = |path: &str| &found.iter().find(|(p, _)| p == path).unwrap().1;
    assert_eq!(
        message("RuleSetName"),
        "expected 1 to 100 characters; found 0"
    );
    assert!(message("Rules[0].Conditions[0].StringExpression.Operator").contains("EQUALS"));
    assert!(
        message("Rules[0].Conditions[0]").contains("found BooleanExpression and StringExpression")
    );
    assert!(message("Rules[0].Colour").starts_with("unknown member \"Colour\""));
}

#[test]
fn missing_required_members_are_named() {
    let found = problems(json!({ "Rules": [{}] }), "CreateRuleSetRequest");
    assert_eq!(
        found,
        [
            (
                "RuleSetName".to_string(),
                "missing required member \"RuleSetName\"".to_string()
            ),
            (
                "Rules[0].Actions".to_string(),
                "missing required member \"Actions\"".to_string()
            ),
        ]
    );
}

#[test]
fn scalars_are_typed_strictly() {
    let found = problems(
        json!({ "RuleSetName": 5, "Rules": "none" }),
        "CreateRuleSetRequest",
    );
    assert_eq!(
        found,
        [
            (
                "RuleSetName".to_string(),
                "expected a string; found 5".to_string()
            ),
            (
                "Rules".to_string(),
                "expected a list; found \"none\"".to_string()
            ),
        ]
    );
    let found = problems(json!({ "PageSize": "10" }), "ListRuleSetsRequest");
    assert_eq!(found[0].1, "expected an integer; found the string \"10\"");
    let found = problems(json!({ "PageSize": 1.5 }), "ListRuleSetsRequest");
    assert_eq!(found[0].1, "expected an integer; found 1.5");
    let found = problems(json!([1]), "ListRuleSetsRequest");
    assert_eq!(
        found,
        [(
            String::new(),
            "expected an object (ListRuleSetsRequest); found a list of 1 item".to_string()
        )]
    );
}

#[test]
fn timestamps_are_epoch_seconds() {
    let checked = check_value(&json!(1700000000), "Timestamp").unwrap();
    assert_eq!(checked, json!(1700000000.0));
    assert!(checked.is_f64());
    assert_eq!(
        check_value(&json!(1700000000.25), "Timestamp").unwrap(),
        json!(1700000000.25)
    );
    assert_eq!(
        problems(json!("2024-01-01T00:00:00Z"), "Timestamp"),
        [(
            String::new(),
            "expected a timestamp in epoch seconds; found \"2024-01-01T00:00:00Z\"".to_string()
        )]
    );
}

#[test]
fn sensitive_values_are_not_echoed() {
    let long = "x".repeat(4097);
    let found = problems(
        rule_set(json!([{
            "Conditions": [{ "StringExpression": {
                "Evaluate": { "Attribute": "SUBJECT" },
                "Operator": "CONTAINS",
                "Values": [long]
            }}],
            "Actions": [{ "Drop": {} }]
        }])),
        "CreateRuleSetRequest",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].1.contains("xxxx"), "{found:?}");
}

#[test]
fn quotas_replace_the_model_maxima() {
    let rules: Vec<_> = (0..41)
        .map(|_| json!({ "Actions": [{ "Drop": {} }] }))
        .collect();
    let value = rule_set(json!(rules));
    let found = problems(value.clone(), "CreateRuleSetRequest");
    assert_eq!(found[0].0, "Rules");
    assert!(
        found[0].1.starts_with("expected 0 to 40 items; found 41"),
        "{found:?}"
    );
    let raised = Quotas {
        rules_per_rule_set: 50,
        ..Quotas::default()
    };
    assert!(check_value_with_quotas(&value, "CreateRuleSetRequest", &raised).is_ok());
}
