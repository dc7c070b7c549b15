//! What one commit costs: 1,000 sequential commits of 4 KiB, then 1,000
//! commits of 4 KiB from 20 concurrent tasks, with the directory fsyncs
//! they needed. Prints figures; asserts nothing about time.
//!
//! ```sh
//! cargo run --release -p postern-spool --example commit_cost [DIR]
//! ```
//! DIR (default: a temporary directory under `target/`) should be on the
//! disk the spool will use: the figures are mostly fsync latency.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use postern_spool::Spool;

const N: usize = 1_000;
const TASKS: usize = 20;
const SIZE: usize = 4 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp"));
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new()
        .prefix("commit_cost")
        .tempdir_in(&base)?;
    let (spool, _) = Spool::open(tmp.path()).await?;
    let meta = br#"{"mail_from":"sender@example.com","rcpt_to":["a@example.net"],"helo":"mx.example.com"}"#;
    let message = vec![b'x'; SIZE];

    // Sequential.
    let syncs = spool.dir_syncs();
    let mut each = Vec::with_capacity(N);
    let start = Instant::now();
    for _ in 0..N {
        let t = Instant::now();
        let mut m = spool.create(meta).await?;
        m.write(&message).await?;
        m.commit().await?;
        each.push(t.elapsed());
    }
    let total = start.elapsed();
    each.sort();
    println!(
        "sequential: {N} commits of {SIZE} B in {:.3} s: {:.0} commits/s, mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, {} directory fsyncs",
        total.as_secs_f64(),
        N as f64 / total.as_secs_f64(),
        ms(total) / N as f64,
        ms(each[N / 2]),
        ms(each[N * 99 / 100]),
        spool.dir_syncs() - syncs
    );

    // Concurrent.
    let syncs = spool.dir_syncs();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (spool, message) = (spool.clone(), message.clone());
        tasks.spawn(async move {
            let mut each = Vec::new();
            for _ in 0..N / TASKS {
                let t = Instant::now();
                let mut m = spool.create(meta).await?;
                m.write(&message).await?;
                m.commit().await?;
                each.push(t.elapsed());
            }
            Ok::<_, std::io::Error>(each)
        });
    }
    let mut each = Vec::with_capacity(N);
    while let Some(r) = tasks.join_next().await {
        each.extend(r.map_err(std::io::Error::other)??);
    }
    let total = start.elapsed();
    each.sort();
    let dir_syncs = spool.dir_syncs() - syncs;
    println!(
        "concurrent: {N} commits of {SIZE} B from {TASKS} tasks in {:.3} s: {:.0} commits/s, latency p50 {:.3} ms, p99 {:.3} ms, {dir_syncs} directory fsyncs ({:.1} commits per fsync)",
        total.as_secs_f64(),
        N as f64 / total.as_secs_f64(),
        ms(each[N / 2]),
        ms(each[N * 99 / 100]),
        N as f64 / dir_syncs.max(1) as f64
    );
    println!("depth {}", spool.depth());

    // The floor: what the two fsyncs alone cost on this disk.
    let dir = tmp.path().join("floor");
    std::fs::create_dir(&dir)?;
    let d = std::fs::File::open(&dir)?;
    let start = Instant::now();
    for i in 0..200 {
        let p = dir.join(i.to_string());
        std::fs::write(&p, &message)?;
        std::fs::File::open(&p)?.sync_data()?;
        d.sync_all()?;
    }
    println!(
        "floor: write + fdatasync + directory fsync, sequential, no spool: {:.3} ms each",
        ms(start.elapsed()) / 200.0
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
