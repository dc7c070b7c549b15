//! Every file in `tests/invalid` is a config with known mistakes; its leading
//! comment lines say what must be reported:
//!
//! ```text
//! # expect: 12:21 RuleSets[0].Rules[3].Conditions[1].StringExpression.Operator
//! ```
//!
//! (line:column, then the field path; empty for the document itself). The set
//! of (position, path) the loader reports must equal the set of expect lines.
//! Every file in `tests/valid` must load.
//!
//! `.json` files are loaded with their comment lines blanked (line numbers
//! are kept), so the loader sees pure JSON.

use postern_config::{Diagnostics, parse_config};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    line: usize,
    column: usize,
    path: String,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} {}", self.line, self.column, self.path)
    }
}

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

/// The text the loader gets: for JSON files, the comment lines blanked.
fn source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "json") {
        text.lines()
            .map(|l| if l.starts_with('#') { "" } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        text
    }
}

/// The `# expect:` lines among the leading comment lines.
fn expectations(path: &Path, text: &str) -> BTreeSet<Expected> {
    let mut out = BTreeSet::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let Some(spec) = comment.trim().strip_prefix("expect:") else {
            continue;
        };
        let spec = spec.trim();
        let (at, field) = spec.split_once(' ').unwrap_or((spec, ""));
        let parsed = at
            .split_once(':')
            .and_then(|(l, c)| Some((l.parse().ok()?, c.parse().ok()?)));
        let Some((line, column)) = parsed else {
            panic!("{}: malformed expect line {line:?}", path.display());
        };
        let expected = Expected {
            line,
            column,
            path: field.trim().to_string(),
        };
        assert!(
            text.lines().count() >= line,
            "{}: expect line points past the end: {expected}",
            path.display()
        );
        assert!(
            out.insert(expected.clone()),
            "{}: expect line given twice: {expected}",
            path.display()
        );
    }
    out
}

fn no_includes(path: &str) -> Result<String, String> {
    Err(format!("{path}: includes are not used by these tests"))
}

fn reported(diagnostics: &Diagnostics) -> BTreeSet<Expected> {
    diagnostics
        .iter()
        .map(|d| Expected {
            line: d.pos.line,
            column: d.pos.column,
            path: d.path.clone(),
        })
        .collect()
}

#[test]
fn invalid_configs_report_exactly_the_expected_errors() {
    let files = files("invalid");
    assert!(
        files.len() >= 30,
        "expected at least 30 invalid configs in tests/invalid; found {}",
        files.len()
    );
    let mut failures = String::new();
    let mut total = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = source(path);
        let expected = expectations(path, &text);
        assert!(!expected.is_empty(), "{name}: no `# expect:` lines");
        total += expected.len();
        let diagnostics = match parse_config(&name, &text, &no_includes) {
            Ok(_) => {
                let _ = writeln!(failures, "\n=== {name}: loaded, but errors were expected:");
                for e in &expected {
                    let _ = writeln!(failures, "  - expected {e}");
                }
                continue;
            }
            Err(d) => d,
        };
        println!("=== {name}\n{diagnostics}\n");
        // Every diagnostic must be usable: a file, a real position, a message.
        for d in diagnostics.iter() {
            assert_eq!(d.file, name, "{d}");
            assert!(
                d.pos.line >= 1 && d.pos.column >= 1,
                "{name}: no position: {d}"
            );
            assert!(!d.message.trim().is_empty(), "{name}: empty message: {d}");
        }
        let got = reported(&diagnostics);
        if got != expected {
            let _ = writeln!(
                failures,
                "\n=== {name}: reported errors differ from `# expect:`"
            );
            for e in expected.difference(&got) {
                let _ = writeln!(failures, "  - expected, not reported: {e}");
            }
            for g in got.difference(&expected) {
                let _ = writeln!(failures, "  + reported, not expected: {g}");
            }
            let _ = writeln!(failures, "  what the loader said:");
            for line in diagnostics.to_string().lines() {
                let _ = writeln!(failures, "    {line}");
            }
        }
    }
    println!("{} invalid configs, {total} expected errors", files.len());
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn valid_configs_load() {
    let files = files("valid");
    assert!(!files.is_empty(), "no configs in tests/valid");
    let mut failures = String::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = source(path);
        match parse_config(&name, &text, &no_includes) {
            Ok(config) => println!("{}", config.summary()),
            Err(d) => {
                let _ = writeln!(failures, "\n=== {name} did not load:\n{d}");
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn exported_rule_set_is_found_by_name_id_and_arn() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/get-rule-set-export.yaml");
    let config = parse_config("get-rule-set-export.yaml", &source(&path), &no_includes)
        .unwrap_or_else(|e| panic!("{e}"));
    let arn = "arn:aws:ses:eu-west-1:123456789012:mailmanager-rule-set/rs-main";
    for reference in ["main", "rs-main", arn] {
        let identity = config
            .resolve(postern_model::ResourceKind::RuleSet, reference)
            .unwrap_or_else(|| panic!("{reference} names no rule set"));
        assert_eq!(
            (
                identity.name.as_str(),
                identity.id.as_str(),
                identity.arn.as_str()
            ),
            ("main", "rs-main", arn)
        );
    }
    let (_, rule_set) = config.rule_sets().next().unwrap();
    assert_eq!(rule_set.rules.len(), 4);
    let created = rule_set.created_date.expect("CreatedDate kept").0;
    assert!((created - 1_714_557_600.123).abs() < 1e-6, "{created}");
    // Both ingress points reach the same rule set and traffic policy.
    let targets: Vec<_> = config
        .ingress_points()
        .map(|(_, ip)| {
            let rs = config.resolve(postern_model::ResourceKind::RuleSet, &ip.rule_set_id);
            let tp = config.resolve(
                postern_model::ResourceKind::TrafficPolicy,
                &ip.traffic_policy_id,
            );
            (rs.map(|i| i.id.clone()), tp.map(|i| i.id.clone()))
        })
        .collect();
    let expected = (Some("rs-main".to_string()), Some("tp-inbound".to_string()));
    assert_eq!(targets, vec![expected.clone(), expected]);
}

/// A few messages checked word for word: the ones that say more than
/// "expected X; found Y".
#[test]
fn messages_explain_the_mistake() {
    let cases = [
        (
            "27-type-integers.yaml",
            "Relays[1].ServerPort",
            "expected an integer; found the quoted string \"25\" (write it without quotes)",
        ),
        (
            "33-duplicate-yaml-keys.yaml",
            "RuleSets[0].Rules[0].Name",
            "duplicate key \"Name\" (first given on line 6)",
        ),
        (
            "32-duplicate-names.yaml",
            "RuleSets[1].RuleSetName",
            "duplicate rule set: \"main\" is already used by RuleSets[0]",
        ),
        (
            "23-list-41-rules.yaml",
            "RuleSets[0].Rules",
            "expected 0 to 40 items; found 41 (the RulesPerRuleSet quota; raise it with Server.Quotas.RulesPerRuleSet)",
        ),
        (
            "01-unknown-member-typo.yaml",
            "RuleSets[0].Rules[0].Condtions",
            "unknown member \"Condtions\"; expected one of Actions, Conditions, Name, Unless (did you mean \"Conditions\"?)",
        ),
        (
            "15-pattern-replace-with-address.yaml",
            "RuleSets[0].Rules[0].Actions[0].ReplaceRecipient.ReplaceWith[1]",
            "expected text matching [a-zA-Z0-9._+-]+@[a-zA-Z0-9.-]+ (EmailAddress); found a sensitive value of 10 characters",
        ),
        (
            "26-type-list-for-mapping.yaml",
            "RuleSets[0].Rules[0].Actions[0].Archive",
            "expected a mapping (ArchiveAction); found a list of 1 item",
        ),
    ];
    for (file, path, message) in cases {
        let full = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/invalid")
            .join(file);
        let diagnostics = parse_config(file, &source(&full), &no_includes).unwrap_err();
        let found: Vec<&str> = diagnostics
            .iter()
            .filter(|d| d.path == path)
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(found, [message], "{file}: {path}");
    }
}
