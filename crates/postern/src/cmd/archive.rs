//! `postern archive search|get|export`: the archive from a terminal. Opens
//! the archive store the config names (the same one `postern serve` writes;
//! SQLite allows readers beside the running server) and works on it
//! directly.

use crate::server::{archive, runtime_source};
use clap::{Args, Subcommand};
use postern_archive::{Archive, ExportDestination, SearchQuery};
use postern_model::{
    ArchiveBooleanEmailAttribute, ArchiveBooleanExpression, ArchiveBooleanOperator,
    ArchiveBooleanToEvaluate, ArchiveFilterCondition, ArchiveFilters, ArchiveStringEmailAttribute,
    ArchiveStringExpression, ArchiveStringOperator, ArchiveStringToEvaluate, ResourceKind,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// Search, read and export archived mail.
#[derive(Args)]
pub struct ArchiveArgs {
    /// The config file; the embedded default when absent.
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ArchiveCommand,
}

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// List the messages of an archive that match, newest first.
    Search(SearchArgs),
    /// One message: its download link, metadata and envelope (GetArchiveMessage), or its bytes (--raw), or its text (--content).
    Get(GetArgs),
    /// Write the messages that match to a directory or an S3 location as .eml files.
    Export(ExportArgs),
}

/// What to look for, as StartArchiveSearch's Filters say it.
#[derive(Args)]
pub struct Selection {
    /// The archive: name, id or ARN.
    pub archive: String,
    /// Received at or after: RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01). Default: 30 days ago.
    #[arg(long)]
    pub from: Option<String>,
    /// Received before: RFC 3339 or a date. Default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// ATTRIBUTE=VALUE[,VALUE...]: the attribute (to, from, cc, subject, envelope_to, envelope_from) contains one of the values. Repeat: all must hold.
    #[arg(long = "include", value_name = "ATTRIBUTE=VALUES")]
    pub include: Vec<String>,
    /// ATTRIBUTE=VALUE[,VALUE...]: leave out messages where the attribute contains one of the values.
    #[arg(long = "unless", value_name = "ATTRIBUTE=VALUES")]
    pub unless: Vec<String>,
    /// Only messages with attachments (true) or without (false).
    #[arg(long, value_name = "true|false")]
    pub has_attachments: Option<bool>,
    /// Words that must all appear in the message text (full-text search).
    #[arg(long)]
    pub text: Option<String>,
    /// At most this many messages.
    #[arg(long, default_value_t = 100)]
    pub max: usize,
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// One JSON object (the model's Row) per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GetArgs {
    /// The ArchivedMessageId.
    pub id: String,
    /// The message's bytes, exactly as archived.
    #[arg(long, conflicts_with = "content")]
    pub raw: bool,
    /// Its text and HTML bodies (GetArchiveMessageContent), as JSON.
    #[arg(long)]
    pub content: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// A directory to write into (created if needed).
    #[arg(long, value_name = "DIR", conflicts_with = "s3")]
    pub dir: Option<PathBuf>,
    /// s3://bucket/prefix, in the object storage Server.ObjectStorage names.
    #[arg(long, value_name = "URL")]
    pub s3: Option<String>,
    /// A .json of each message's metadata beside its .eml.
    #[arg(long)]
    pub metadata: bool,
}

pub fn run(args: ArchiveArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("postern archive: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern archive: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: ArchiveArgs) -> Result<(), String> {
    // Archives created through the API are known to the state store.
    let config = crate::server::in_force(runtime_source(args.config).load()?).await?;
    let data_dir = PathBuf::from(&config.data_dir);
    let store = archive::open(&config, &data_dir).await?;
    match args.command {
        ArchiveCommand::Search(a) => {
            let (id, query) = selection(&config, &a.selection)?;
            let rows = store.search(&id, &query).await.map_err(|e| e.to_string())?;
            if a.json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row).map_err(|e| e.to_string())?);
                }
            } else {
                println!("{:<24} {:<34} {:<32} SUBJECT", "RECEIVED", "ID", "FROM");
                for row in &rows {
                    let received = row
                        .received_timestamp
                        .as_ref()
                        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.0 as i64).ok())
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                        .unwrap_or_default();
                    println!(
                        "{:<24} {:<34} {:<32} {}",
                        received,
                        row.archived_message_id.as_deref().unwrap_or_default(),
                        row.from.as_deref().unwrap_or_default(),
                        row.subject.as_deref().unwrap_or_default()
                    );
                }
                eprintln!("{} message(s)", rows.len());
            }
            Ok(())
        }
        ArchiveCommand::Get(a) => {
            let settings = crate::server::runtime::Settings::from(&config);
            let lifetime = config
                .config
                .server
                .clone()
                .unwrap_or_default()
                .archive
                .and_then(|a| a.download_link_seconds)
                .unwrap_or(900);
            let links = archive::Links::open(
                &data_dir,
                format!("http://{}", settings.http_listen),
                std::time::Duration::from_secs(lifetime as u64),
            )?;
            get(&store, &links, &a).await
        }
        ArchiveCommand::Export(a) => export(&config, &store, &a).await,
    }
}

async fn get(store: &Archive, links: &archive::Links, a: &GetArgs) -> Result<(), String> {
    use std::io::Write;
    if a.raw {
        let bytes = store.raw(&a.id).await.map_err(|e| e.to_string())?;
        std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let value = if a.content {
        serde_json::to_value(store.get_content(&a.id).await.map_err(|e| e.to_string())?)
    } else {
        // GetArchiveMessage's response: a link the server's HTTP port
        // serves until it expires, the metadata, the envelope.
        let message = store
            .get_message(None, &a.id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(serde_json::json!({
            "MessageDownloadLink": links.link(&a.id, time::OffsetDateTime::now_utc()),
            "Metadata": message.metadata,
            "Envelope": message.envelope,
        }))
    }
    .map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
    );
    Ok(())
}

async fn export(
    config: &postern_config::ValidatedConfig,
    store: &Archive,
    a: &ExportArgs,
) -> Result<(), String> {
    let (id, query) = selection(config, &a.selection)?;
    let destination = match (&a.dir, &a.s3) {
        (Some(dir), None) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let dir = dir
                .canonicalize()
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let parent = dir
                .parent()
                .ok_or("--dir: give a directory below the root")?;
            ExportDestination {
                storage: postern_endpoints::ObjectStorage::directory(parent.to_path_buf()),
                bucket: dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or("--dir: the directory's name is not UTF-8")?
                    .to_string(),
                prefix: String::new(),
            }
        }
        (None, Some(url)) => {
            let rest = url
                .strip_prefix("s3://")
                .ok_or("--s3: give s3://bucket/prefix")?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let server = config.config.server.clone().unwrap_or_default();
            let storage = postern_pipeline::peers::object_storage(
                config,
                server.object_storage.as_ref(),
                &PathBuf::from(&config.data_dir).join("s3"),
            )
            .map_err(|e| format!("Server.ObjectStorage{e}"))?;
            let prefix = if prefix.is_empty() || prefix.ends_with('/') {
                prefix.to_string()
            } else {
                format!("{prefix}/")
            };
            ExportDestination {
                storage,
                bucket: bucket.to_string(),
                prefix,
            }
        }
        _ => return Err("say where to export: --dir DIR or --s3 s3://bucket/prefix".into()),
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} messages, {per_sec}, eta {eta}",
        )
        .map_err(|e| e.to_string())?,
    );
    let progress = {
        let bar = bar.clone();
        move |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let count = store
        .export(&id, &query, &destination, a.metadata, &progress, &cancel)
        .await
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    eprintln!("exported {count} message(s)");
    Ok(())
}

/// The archive id and the query a selection describes.
fn selection(
    config: &postern_config::ValidatedConfig,
    s: &Selection,
) -> Result<(String, SearchQuery), String> {
    let archive = config
        .resolve(ResourceKind::Archive, &s.archive)
        .ok_or_else(|| format!("no archive {} in the config or the state", s.archive))?;
    let now = time::OffsetDateTime::now_utc();
    let from = match &s.from {
        Some(t) => parse_time(t).map_err(|e| format!("--from: {e}"))?,
        None => now - time::Duration::days(30),
    };
    let to = match &s.to {
        Some(t) => parse_time(t).map_err(|e| format!("--to: {e}"))?,
        None => now + time::Duration::seconds(1),
    };
    let conditions = |list: &[String], flag: &str| -> Result<Vec<ArchiveFilterCondition>, String> {
        list.iter()
            .map(|item| {
                let (attribute, values) = item
                    .split_once('=')
                    .ok_or_else(|| format!("{flag} {item}: give ATTRIBUTE=VALUES"))?;
                let attribute = ArchiveStringEmailAttribute::ALL
                    .iter()
                    .copied()
                    .find(|a| a.as_str().eq_ignore_ascii_case(attribute))
                    .ok_or_else(|| {
                        format!("{flag} {item}: the attribute is one of to, from, cc, subject, envelope_to, envelope_from")
                    })?;
                Ok(ArchiveFilterCondition::StringExpression(ArchiveStringExpression {
                    evaluate: ArchiveStringToEvaluate::Attribute(attribute),
                    operator: ArchiveStringOperator::Contains,
                    values: values.split(',').map(str::to_string).collect(),
                }))
            })
            .collect()
    };
    let mut include = conditions(&s.include, "--include")?;
    if let Some(has) = s.has_attachments {
        include.push(ArchiveFilterCondition::BooleanExpression(
            ArchiveBooleanExpression {
                evaluate: ArchiveBooleanToEvaluate::Attribute(
                    ArchiveBooleanEmailAttribute::HasAttachments,
                ),
                operator: if has {
                    ArchiveBooleanOperator::IsTrue
                } else {
                    ArchiveBooleanOperator::IsFalse
                },
            },
        ));
    }
    let unless = conditions(&s.unless, "--unless")?;
    let filters = (!include.is_empty() || !unless.is_empty()).then(|| ArchiveFilters {
        include: (!include.is_empty()).then_some(include),
        unless: (!unless.is_empty()).then_some(unless),
    });
    Ok((
        archive.id.clone(),
        SearchQuery {
            from,
            to,
            filters,
            max_results: s.max,
            full_text: s.text.clone(),
        },
    ))
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| format!("{text:?} is neither RFC 3339 nor a date (yyyy-mm-dd)"))?;
    Ok(date.midnight().assume_utc())
}
