//! `postern apply -f FILE`: a config file's resources into the state store
//! of a running server (the store its `Server` section names), as a new
//! version. The difference is shown first (address list members as a line
//! per list that counts what is added and removed); the version is stored
//! only after it was checked exactly as the server checks it, and
//! confirmed. The lists' members are written to the members table just
//! before the version is stored. Running servers take it within
//! `Server.Api.PollSeconds`.

use crate::server::{gateway, runtime, state};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Store a config file's resources as the next version of a server's state.
#[derive(Args)]
pub struct ApplyArgs {
    /// The config file to apply.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Apply without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Show the difference and check the file; store nothing.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// The servers on this state are stopped: ingress points with
    /// listeners may be removed or renamed.
    #[arg(long)]
    pub servers_stopped: bool,
}

pub fn run(args: ApplyArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("postern apply: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(apply(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postern apply: {e}");
            ExitCode::from(1)
        }
    }
}

async fn apply(args: ApplyArgs) -> Result<ExitCode, String> {
    let file = postern_config::load(&args.file).map_err(|d| d.to_string())?;
    let data_dir = PathBuf::from(&file.data_dir);
    let store = crate::server::open_state(&file, &data_dir).await?;
    let latest = store
        .latest()
        .await
        .map_err(|e| format!("state store: {e}"))?;
    let previous = latest.as_ref().map(|v| &v.document);
    let mut document = state::document_of(&file, previous, postern_api::ops::now());
    // What the servers compare their own files with stays as it was: a
    // server restarted on its unchanged file keeps what was applied.
    if let Some(digest) = previous.and_then(|p| p.get("FileDigest")) {
        document["FileDigest"] = digest.clone();
    }
    let parent = latest.as_ref().map(|v| v.number).unwrap_or(0);
    let members = state::plan_members(&store, &file, &mut document, previous, parent + 1)
        .await
        .map_err(|e| format!("state store: {e}"))?;

    let same_resources = previous.map(state::resources) == Some(state::resources(&document));
    if same_resources && members.is_empty() {
        println!(
            "{}: no change; version {parent} stays in force",
            args.file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let before = previous.map(state::resources_text).unwrap_or_default();
    let after = state::resources_text(&document);
    if before == after {
        println!("--- version {parent}\n+++ this file");
        if !same_resources {
            println!("(only sensitive values differ)");
        }
    } else {
        print_diff(&before, &after, parent);
    }
    for line in members.summary() {
        println!("{line}");
    }

    // Running servers cannot close the listeners of an ingress point that
    // goes away; it is removed while they are stopped.
    let now_listening = previous
        .map(state::listening_ingress_points)
        .unwrap_or_default();
    let kept: Vec<String> =
        postern_api::document::items(&document, postern_model::ResourceKind::IngressPoint)
            .iter()
            .filter_map(|ip| ip["IngressPointId"].as_str().map(str::to_string))
            .collect();
    let removed: Vec<&str> = now_listening
        .iter()
        .filter(|(id, _)| !kept.contains(id))
        .map(|(_, name)| name.as_str())
        .collect();
    if !removed.is_empty() && !args.servers_stopped {
        return Err(format!(
            "this removes or renames ingress points with listeners ({}); running servers cannot drop their sockets, so stop the servers on this state, apply with --servers-stopped, and start them again",
            removed.join(", ")
        ));
    }

    // Checked as the server checks it: compiled rules, peers, certificates.
    let settings = runtime::Settings::from(&file);
    let tls = runtime::tls(&file, &data_dir, &settings.hostname)?;
    let throttle = std::sync::Arc::new(postern_smtp::limits::AuthThrottle::default());
    gateway::prepare(
        &file,
        &settings,
        &tls,
        &throttle,
        parent + 1,
        document.clone(),
        members.members.clone(),
    )?;

    if args.dry_run {
        println!("checked; nothing stored (--dry-run)");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err("not a terminal: give --yes to apply without a prompt".into());
        }
        print!("Store this as version {}? [y/N] ", parent + 1);
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| e.to_string())?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing stored");
            return Ok(ExitCode::from(1));
        }
    }
    // The members first: a version that names them finds them there.
    members
        .write(&store)
        .await
        .map_err(|e| format!("state store: {e}"))?;
    let summary = format!("postern apply -f {}", args.file.display());
    match store.commit(parent, &document, "apply", &summary).await {
        Ok(version) => {
            println!(
                "version {version} stored; running servers take it within Server.Api.PollSeconds"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(postern_state::StateError::Conflict { .. }) => Err(format!(
            "version {} was stored by someone else meanwhile; run postern apply again to see the difference from it",
            parent + 1
        )),
        Err(e) => Err(format!("state store: {e}")),
    }
}

/// A line diff of the resources, as `diff -u` prints one.
fn print_diff(before: &str, after: &str, version: u64) {
    let diff = similar::TextDiff::from_lines(before, after);
    print!(
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("version {version}"), "this file")
    );
}
