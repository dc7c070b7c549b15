//! The `postern` command.
//!
//! # Layout
//! - `cmd/serve.rs`, `server/`: `postern serve`, the gateway.
//! - `cmd/check.rs`: `postern check`, validate a config.
//! - `cmd/test.rs`: `postern test`, run rule test files.
//! - `cmd/archive.rs`: `postern archive search|get|export`.
//! - `cmd/apply.rs`: `postern apply -f`, a file into a running server's state.
//! - `rule_test/`: the rule test runner (`case.rs` turns a case into engine
//!   inputs, `outcome.rs` runs it and compares, `junit.rs` writes reports).

mod cmd;
mod rule_test;
mod server;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Postern: an inbound email gateway with the Amazon SES Mail Manager model.
#[derive(Parser)]
#[command(name = "postern", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Serve(cmd::serve::ServeArgs),
    Check(cmd::check::CheckArgs),
    Test(cmd::test::TestArgs),
    Archive(cmd::archive::ArchiveArgs),
    Apply(cmd::apply::ApplyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Test(args) => cmd::test::run(args),
        Command::Archive(args) => cmd::archive::run(args),
        Command::Apply(args) => cmd::apply::run(args),
    }
}
