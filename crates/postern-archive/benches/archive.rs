//! The embedded archive at scale: SQLite index + directory bodies.
//!
//! Loads `POSTERN_BENCH_MESSAGES` generated messages (default 100 000;
//! the figure is 1 000 000) with realistic headers and 2–8 KB
//! bodies, received over 90 days, through `Archive::store_batch` in
//! batches of `POSTERN_BENCH_BATCH` (default 500) by
//! `POSTERN_BENCH_WRITERS` concurrent writers (default 2), and reports:
//!
//! - the ingest rate (messages/s, time in `store_batch` only; generating
//!   the messages is not counted),
//! - index bytes per message (the SQLite file and its WAL), body bytes,
//! - search latency p50/p95 over the newest 30 days (MaxResults 100) for a
//!   `SUBJECT CONTAINS` filter, an `ENVELOPE_FROM CONTAINS` filter, and a
//!   full-text query.
//!
//! Run: `cargo bench -p postern-archive --bench archive`. The data goes to
//! a temporary directory under `POSTERN_BENCH_DIR` (default the system's),
//! removed at the end unless `POSTERN_BENCH_KEEP` is set.

use std::path::Path;
use std::time::{Duration as StdDuration, Instant};

use postern_archive::{Archive, ArchiveConfig, IndexBackend, SearchQuery, StoreItem};
use postern_endpoints::ObjectStorage;
use postern_model::{
    ArchiveFilterCondition, ArchiveFilters, ArchiveStringEmailAttribute, ArchiveStringExpression,
    ArchiveStringOperator, ArchiveStringToEvaluate,
};
use time::{Duration, OffsetDateTime};

const WORDS: &[&str] = &[
    "account",
    "action",
    "agenda",
    "approval",
    "budget",
    "call",
    "client",
    "contract",
    "customer",
    "deadline",
    "delivery",
    "design",
    "draft",
    "estimate",
    "feedback",
    "follow",
    "forecast",
    "invoice",
    "launch",
    "meeting",
    "milestone",
    "minutes",
    "notes",
    "offer",
    "order",
    "payment",
    "plan",
    "policy",
    "price",
    "project",
    "proposal",
    "quarter",
    "quote",
    "release",
    "renewal",
    "report",
    "request",
    "review",
    "roadmap",
    "sales",
    "schedule",
    "shipment",
    "signature",
    "status",
    "summary",
    "support",
    "team",
    "ticket",
    "timeline",
    "training",
    "travel",
    "update",
    "vendor",
    "weekly",
    "workshop",
    "the",
    "and",
    "for",
    "with",
    "please",
    "thanks",
    "regarding",
    "attached",
    "below",
    "today",
    "tomorrow",
    "next",
    "week",
    "monday",
    "friday",
    "asap",
];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len() as u64) as usize]
    }
}

struct Generated {
    id: String,
    received: OffsetDateTime,
    env_from: String,
    env_to: Vec<String>,
    bytes: Vec<u8>,
}

fn generate(rng: &mut Rng, i: u64, start: OffsetDateTime, span: Duration, n: u64) -> Generated {
    let received = start + span * (i as f64 / n as f64);
    let sender = rng.below(1000);
    let domain = rng.below(50);
    let from = format!("user{sender}@sender{domain}.example");
    let recipients = 1 + rng.below(3);
    let env_to: Vec<String> = (0..recipients)
        .map(|_| format!("person{}@dest.example", rng.below(5000)))
        .collect();
    let subject_words = 3 + rng.below(6);
    let subject: Vec<&str> = (0..subject_words).map(|_| rng.word()).collect();
    let date = received
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap();
    let mut m = String::with_capacity(8 * 1024);
    m.push_str(&format!(
        "Received: from mail{domain}.sender{domain}.example (mail{domain}.sender{domain}.example [198.51.100.{}])\r\n\
         \tby mx.postern.example with ESMTPS id {i:x}\r\n\
         \tfor <{}>; {date}\r\n\
         Received: from workstation{sender} by mail{domain}.sender{domain}.example; {date}\r\n\
         From: User {sender} <{from}>\r\n\
         To: {}\r\n",
        rng.below(255),
        env_to[0],
        env_to.join(", "),
    ));
    if rng.below(4) == 0 {
        m.push_str(&format!("Cc: person{}@dest.example\r\n", rng.below(5000)));
    }
    m.push_str(&format!(
        "Subject: {}\r\n\
         Date: {date}\r\n\
         Message-ID: <{i:x}.{sender}@sender{domain}.example>\r\n\
         X-Mailer: Mailer {}.{}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n",
        subject.join(" "),
        rng.below(10),
        rng.below(10),
    ));
    let target = 2048 + rng.below(6 * 1024) as usize;
    let mut line = 0;
    while m.len() < target {
        m.push_str(rng.word());
        line += 1;
        if line % 12 == 0 {
            m.push_str("\r\n");
        } else {
            m.push(' ');
        }
    }
    m.push_str("\r\n");
    Generated {
        id: format!("msg-{i:08}"),
        received,
        env_from: from,
        env_to,
        bytes: m.into_bytes(),
    }
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                total += dir_size(&e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn percentile(sorted: &[StdDuration], p: f64) -> StdDuration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn string_filter(attribute: ArchiveStringEmailAttribute, value: &str) -> ArchiveFilters {
    ArchiveFilters {
        include: Some(vec![ArchiveFilterCondition::StringExpression(
            ArchiveStringExpression {
                evaluate: ArchiveStringToEvaluate::Attribute(attribute),
                operator: ArchiveStringOperator::Contains,
                values: vec![value.to_owned()],
            },
        )]),
        unless: None,
    }
}

async fn latency(
    archive: &Archive,
    name: &str,
    queries: Vec<SearchQuery>,
) -> (StdDuration, StdDuration) {
    let mut times = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    for q in &queries {
        let start = Instant::now();
        let rows = archive.search("bench", q).await.unwrap();
        times.push(start.elapsed());
        found += rows.len();
    }
    times.sort();
    let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
    println!(
        "search {name}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} queries, {:.1} rows on average)",
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
        queries.len(),
        found as f64 / queries.len() as f64
    );
    (p50, p95)
}

fn main() {
    let n: u64 = std::env::var("POSTERN_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000);
    let writers: usize = std::env::var("POSTERN_BENCH_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let batch: usize = std::env::var("POSTERN_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let base = std::env::var_os("POSTERN_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n, batch, writers, dir.path()));
    if std::env::var_os("POSTERN_BENCH_KEEP").is_some() {
        println!("kept {}", dir.keep().display());
    }
}

async fn run(n: u64, batch: usize, writers: usize, dir: &Path) {
    let index_path = dir.join("index.sqlite");
    let archive = Archive::open(ArchiveConfig {
        index: IndexBackend::Sqlite(index_path.clone()),
        bodies: ObjectStorage::directory(dir.join("bodies")),
        bucket: "archive".into(),
        prefix: String::new(),
        keys: Vec::new(),
    })
    .await
    .unwrap();
    let end = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let span = Duration::days(90);
    let start = end - span;
    println!(
        "postern-archive bench: {n} messages over 90 days, batches of {batch}, {writers} concurrent writers, SQLite (WAL, synchronous=NORMAL) + directory bodies (durable before indexing: one syncfs per batch), in {}",
        dir.display()
    );
    // A generator thread feeds batches through a bounded channel to
    // `writers` tasks, each calling `store_batch` (as concurrent pipeline
    // workers would). The rate is over wall time, generation included.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Generated>>(writers * 2);
    let generator = std::thread::spawn(move || {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut busy = StdDuration::ZERO;
        let mut bytes = 0u64;
        let mut i = 0u64;
        while i < n {
            let count = (batch as u64).min(n - i);
            let t = Instant::now();
            let generated: Vec<Generated> = (i..i + count)
                .map(|k| generate(&mut rng, k, start, span, n))
                .collect();
            busy += t.elapsed();
            bytes += generated.iter().map(|g| g.bytes.len() as u64).sum::<u64>();
            if tx.blocking_send(generated).is_err() {
                break;
            }
            i += count;
        }
        (busy, bytes)
    });
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let wall = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (archive, rx, done) = (archive.clone(), rx.clone(), done.clone());
        tasks.spawn(async move {
            loop {
                let Some(generated) = rx.lock().await.recv().await else {
                    return;
                };
                let items: Vec<StoreItem<'_>> = generated
                    .iter()
                    .map(|g| StoreItem {
                        archive_id: "bench",
                        archived_message_id: &g.id,
                        received: g.received,
                        ingress_point_id: "inp-bench",
                        traffic_policy_id: "tp-bench",
                        rule_set_id: "rs-bench",
                        sender_hostname: Some("mail.sender.example"),
                        sender_ip: "198.51.100.7",
                        tls_protocol: Some("TLSv1.3"),
                        tls_cipher_suite: Some("TLS_AES_128_GCM_SHA256"),
                        envelope_helo: "mail.sender.example",
                        envelope_from: &g.env_from,
                        envelope_to: &g.env_to,
                        source_arn: "arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-bench",
                        message: &g.bytes,
                        encryption: None,
                    })
                    .collect();
                archive.store_batch(&items).await.unwrap();
                let before = done.fetch_add(items.len() as u64, std::sync::atomic::Ordering::SeqCst);
                let after = before + items.len() as u64;
                let step = (n / 10).max(1);
                if after / step != before / step {
                    println!(
                        "  {after} stored, {:.0} msg/s so far ({:.0} s)",
                        after as f64 / wall.elapsed().as_secs_f64(),
                        wall.elapsed().as_secs_f64()
                    );
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let elapsed = wall.elapsed();
    let (generation, body_bytes) = generator.join().unwrap();
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "ingest: {n} messages in {:.1} s wall: {:.0} msg/s, {:.1} MB/s of message bytes ({:.1} s of it on the generator thread, sharing the 2 cores)",
        elapsed.as_secs_f64(),
        rate,
        body_bytes as f64 / elapsed.as_secs_f64() / 1e6,
        generation.as_secs_f64(),
    );
    let wal = index_path.with_extension("sqlite-wal");
    let index_bytes = file_size(&index_path) + file_size(&wal);
    let bodies_on_disk = dir_size(&dir.join("bodies"));
    println!(
        "index: {:.1} MB ({} bytes/message; database {} + WAL {}), page count x size {} bytes; bodies: {:.1} MB of messages, {:.1} MB of files",
        index_bytes as f64 / 1e6,
        index_bytes / n.max(1),
        file_size(&index_path),
        file_size(&wal),
        archive.index_size_bytes().await.unwrap(),
        body_bytes as f64 / 1e6,
        bodies_on_disk as f64 / 1e6
    );
    assert_eq!(archive.count("bench").await.unwrap(), n);

    let window = |filters: Option<ArchiveFilters>, full_text: Option<String>| SearchQuery {
        from: end - Duration::days(30),
        to: end + Duration::seconds(1),
        filters,
        max_results: 100,
        full_text,
    };
    let mut rng = Rng(42);
    let runs = 50;
    let subject: Vec<SearchQuery> = (0..runs)
        .map(|_| {
            let w = rng.word();
            window(
                Some(string_filter(ArchiveStringEmailAttribute::Subject, w)),
                None,
            )
        })
        .collect();
    let subject_two: Vec<SearchQuery> = (0..runs)
        .map(|_| {
            let w = format!("{} {}", rng.word(), rng.word());
            window(
                Some(string_filter(ArchiveStringEmailAttribute::Subject, &w)),
                None,
            )
        })
        .collect();
    let env_from: Vec<SearchQuery> = (0..runs)
        .map(|_| {
            let v = format!("user{}@sender", rng.below(1000));
            window(
                Some(string_filter(ArchiveStringEmailAttribute::EnvelopeFrom, &v)),
                None,
            )
        })
        .collect();
    let full_text: Vec<SearchQuery> = (0..runs)
        .map(|_| window(None, Some(format!("{} {}", rng.word(), rng.word()))))
        .collect();
    let (s50, _) = latency(&archive, "SUBJECT CONTAINS <one word>", subject).await;
    latency(&archive, "SUBJECT CONTAINS <two words>", subject_two).await;
    let (e50, _) = latency(&archive, "ENVELOPE_FROM CONTAINS user<k>@sender", env_from).await;
    latency(&archive, "full text <two words>", full_text).await;
    println!(
        "targets: ingest >= 5000 msg/s: {}; search p50 < 200 ms: {}",
        if rate >= 5000.0 { "met" } else { "NOT met" },
        if s50.as_millis() < 200 && e50.as_millis() < 200 {
            "met"
        } else {
            "NOT met"
        }
    );
}
