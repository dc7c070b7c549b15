//! The rule test runner: test files in, one line per case and a diff for
//! each failure out.

mod case;
pub mod junit;
mod outcome;

use postern_config::ValidatedConfig;
use postern_engine::Engine;
use postern_model::RuleTestFile;
use std::path::{Path, PathBuf};

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    /// Empty when the case passed.
    pub failures: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub cases: Vec<CaseResult>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failures.is_empty()).count()
    }
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Test files named on the command line; directories are searched, sorted.
pub fn find_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found).map_err(|e| format!("{}: {e}", path.display()))?;
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs every case of one file, printing as it goes.
pub fn run_file(
    config: &ValidatedConfig,
    engine: &Engine,
    file: &Path,
    verbose: bool,
    report: &mut Report,
) {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            fail_file(&name, format!("cannot read: {e}"), report);
            return;
        }
    };
    let (tests, _root) =
        match postern_config::parse_document::<RuleTestFile>(&name, &text, "RuleTestFile") {
            Ok(parsed) => parsed,
            Err(diagnostics) => {
                fail_file(&name, diagnostics.to_string(), report);
                return;
            }
        };
    let base = file.parent().unwrap_or(Path::new("."));
    let mut seen = std::collections::HashSet::new();
    for (i, case) in tests.cases.iter().enumerate() {
        let mut failures = Vec::new();
        if !seen.insert(case.name.clone()) {
            failures.push(format!(
                "Cases[{i}]: a second case named {:?} in this file",
                case.name
            ));
        }
        let mut trace = Vec::new();
        match case::prepare(config, engine, case, tests.dns.as_ref(), base) {
            Err(problem) => failures.push(problem),
            Ok(prepared) => match outcome::run(engine, &prepared) {
                Err(problem) => failures.push(problem),
                Ok(actual) => {
                    failures.extend(outcome::compare(case.expect.as_ref(), &actual));
                    trace = actual.trace;
                }
            },
        }
        let status = if failures.is_empty() { "ok  " } else { "FAIL" };
        println!("{status} {name}: {}", case.name);
        for f in &failures {
            for line in f.lines() {
                println!("       {line}");
            }
        }
        if !failures.is_empty() || verbose {
            for line in &trace {
                println!("       | {line}");
            }
        }
        report.cases.push(CaseResult {
            file: name.clone(),
            name: case.name.clone(),
            failures,
        });
    }
    if tests.cases.is_empty() {
        println!("note {name}: no cases");
    }
}

fn fail_file(name: &str, problem: String, report: &mut Report) {
    println!("FAIL {name}: the file is not a valid test file");
    for line in problem.lines() {
        println!("       {line}");
    }
    report.cases.push(CaseResult {
        file: name.to_string(),
        name: "(test file)".into(),
        failures: vec![problem],
    });
}
