//! `postern test -c FILE PATH...`: rule tests, offline, on the same engine
//! the server runs.

use crate::rule_test::{self, Report};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run rule test files against a config: one line per case, a diff for each
/// failure, and `N passed, N failed`. Exit 1 on any failure.
#[derive(Args)]
pub struct TestArgs {
    /// The config file (YAML or JSON).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// Test files, or directories searched for *.yaml, *.yml and *.json.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Also write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print why each rule matched, for passing cases too.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(args: TestArgs) -> ExitCode {
    let config = match postern_config::load(&args.config) {
        Ok(config) => config,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match postern_engine::Engine::build(&config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    let files = match rule_test::find_files(&args.paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report::default();
    for file in &files {
        rule_test::run_file(&config, &engine, file, args.verbose, &mut report);
    }
    println!();
    println!("{} passed, {} failed", report.passed(), report.failed());
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, rule_test::junit::render(&report))
    {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if report.failed() > 0 || report.passed() == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
