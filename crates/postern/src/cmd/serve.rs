//! `postern serve [-c FILE]`: run the gateway.

use crate::server::{self, runtime_source};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run the gateway: SMTP on every ingress point's listeners, the pipeline,
/// and the HTTP port (/healthz, /metrics). Without -c, the embedded default:
/// SMTP on 127.0.0.1:2525, every message archived under ./data.
/// SIGHUP reloads the config; SIGTERM or SIGINT stops gracefully.
#[derive(Args)]
pub struct ServeArgs {
    /// The config file (YAML or JSON); the embedded default when absent.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("postern serve: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(runtime_source(args.config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern serve: {e}");
            ExitCode::FAILURE
        }
    }
}
