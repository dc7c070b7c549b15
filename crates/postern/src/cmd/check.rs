//! `postern check -c FILE`: every error of a config at once, or a summary.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Validate a config file: print every error with file:line:column and the
/// field path (exit 1), or a summary of what it declares (exit 0).
#[derive(Args)]
pub struct CheckArgs {
    /// The config file (YAML or JSON).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
}

pub fn run(args: CheckArgs) -> ExitCode {
    match postern_config::load(&args.config) {
        Ok(config) => match postern_engine::Engine::build(&config) {
            Ok(_) => {
                print!("{}", config.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", args.config.display());
                ExitCode::FAILURE
            }
        },
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            ExitCode::FAILURE
        }
    }
}
