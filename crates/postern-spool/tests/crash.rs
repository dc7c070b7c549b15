//! The crash test: a child process (this test binary, re-executed in
//! "writer" mode) commits messages in a loop, records a step for some and
//! removes some, printing what it did after each call returned. The parent
//! kills it with SIGKILL after a random number of commits, reopens the
//! spool, and checks:
//! - every message printed as committed (and not being removed) is there
//!   and intact;
//! - every message printed as removed is gone;
//! - a message being removed when the kill came is either gone, or there
//!   with its step journal;
//! - every recorded step printed is in its journal;
//! - anything else there committed before its id was printed: it must be
//!   intact too, and no message is there twice;
//! - nothing went to `corrupt/` and `incoming/` is empty after open.
//!
//! Several rounds run on the same directory, so each child also recovers
//! the previous child's crash. SIGKILL tests the process dying at any
//! instruction, not the machine losing power: the page cache survives it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postern_spool::{QueueId, Spool};

const WRITER: &str = "POSTERN_SPOOL_CRASH_WRITER";
const ROUND: &str = "POSTERN_SPOOL_CRASH_ROUND";
const SIZES: [usize; 6] = [0, 120, 4_000, 70_000, 300_000, 1_200_000];
const STEP_KEY: &str = "archive:a-1";

fn message(round: u64, seq: u64) -> (Vec<u8>, Vec<u8>) {
    let size = SIZES[(seq as usize * 7 + round as usize) % SIZES.len()];
    let meta = format!("{{\"round\":{round},\"seq\":{seq},\"size\":{size}}}").into_bytes();
    let mut x = (round << 32 | seq) ^ 0x9E37_79B9_7F4A_7C15;
    let body = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    (meta, body)
}

fn parse_meta(meta: &[u8]) -> (u64, u64) {
    let text = std::str::from_utf8(meta).expect("meta is UTF-8");
    let field = |name: &str| -> u64 {
        let at = text.find(&format!("\"{name}\":")).expect("field") + name.len() + 3;
        text[at..]
            .split([',', '}'])
            .next()
            .and_then(|v| v.parse().ok())
            .expect("number")
    };
    (field("round"), field("seq"))
}

/// The child: runs only when the parent sets WRITER; as a normal test it
/// does nothing.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(WRITER) else {
        return;
    };
    let round: u64 = std::env::var(ROUND).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (spool, _) = Spool::open(Path::new(&dir)).await.unwrap();
        // On a line of its own: libtest has printed "test crash_writer_child ... ".
        println!("\nREADY");
        let seq = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for _ in 0..4 {
            let (spool, seq) = (spool.clone(), seq.clone());
            writers.push(tokio::spawn(async move {
                // Until killed.
                for _ in 0..u64::MAX {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let (meta, body) = message(round, n);
                    let mut m = spool.create(&meta).await.unwrap();
                    for chunk in body.chunks(8_192) {
                        m.write(chunk).await.unwrap();
                    }
                    let id = m.commit().await.unwrap();
                    println!("COMMITTED {id} {n}");
                    if n % 3 == 0 {
                        spool
                            .record_step(&id, STEP_KEY, &n.to_le_bytes())
                            .await
                            .unwrap();
                        println!("STEP {id}");
                    }
                    if n % 6 == 0 {
                        println!("REMOVING {id}");
                        spool.remove(&id).await.unwrap();
                        println!("REMOVED {id}");
                    }
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
    });
}

#[derive(Default)]
struct Printed {
    committed: BTreeMap<QueueId, (u64, u64)>,
    stepped: BTreeSet<QueueId>,
    removing: BTreeSet<QueueId>,
    removed: BTreeSet<QueueId>,
}

#[test]
fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    if std::env::var(WRITER).is_ok() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("crash")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let dir = tmp.path().join("spool");
    let seed = {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        h.finish()
    };
    println!("seed {seed:#x}");
    let mut rng = seed | 1;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut printed = Printed::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    for round in 0..8u64 {
        let kill_after = next(40);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(WRITER, &dir)
            .env(ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Only a guard against a hung writer hanging the test run.
        let pid = child.id().to_string();
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let hung = wait_done.recv_timeout(Duration::from_secs(300)).is_err();
            if hung {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
            hung
        });
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut commits = 0;
        let mut killed = false;
        let mut ready = false;
        for line in out.lines() {
            let line = line.unwrap();
            let words: Vec<&str> = line.split(' ').collect();
            let id = || QueueId::parse(words[1]).expect("an id");
            match words[0] {
                "READY" => ready = true,
                "COMMITTED" => {
                    printed
                        .committed
                        .insert(id(), (round, words[2].parse().unwrap()));
                    commits += 1;
                }
                "STEP" => drop(printed.stepped.insert(id())),
                "REMOVING" => drop(printed.removing.insert(id())),
                "REMOVED" => drop(printed.removed.insert(id())),
                _ => continue,
            }
            if commits >= kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        let _ = done.send(());
        assert!(!watchdog.join().unwrap(), "round {round}: the writer hung");
        assert!(ready, "the writer did not start: {status}");
        assert!(killed, "the writer stopped by itself: {status}");
        rt.block_on(check(&dir, &printed, round));
        println!("round {round}: killed after {kill_after} commits");
    }
    println!(
        "{} commits printed, {} removed",
        printed.committed.len(),
        printed.removed.len()
    );
    std::io::stdout().flush().unwrap();
}

async fn check(dir: &Path, printed: &Printed, round: u64) {
    let (spool, pending) = Spool::open(dir).await.unwrap();
    assert!(
        spool.recovery().corrupt.is_empty(),
        "round {round}: {:?}",
        spool.recovery().corrupt
    );
    assert_eq!(std::fs::read_dir(dir.join("incoming")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(dir.join("corrupt")).unwrap().count(), 0);
    assert_eq!(spool.depth(), pending.len());
    let present: BTreeSet<QueueId> = pending.iter().cloned().collect();
    assert_eq!(present.len(), pending.len());
    assert!(pending.windows(2).all(|w| w[0] < w[1]), "oldest first");

    for id in printed.committed.keys() {
        if printed.removed.contains(id) {
            assert!(!present.contains(id), "round {round}: removed {id} is back");
        } else if !printed.removing.contains(id) {
            assert!(
                present.contains(id),
                "round {round}: committed {id} is lost"
            );
        }
    }
    let mut seen = BTreeSet::new();
    for id in &pending {
        let m = spool
            .read(id)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {id}: {e}"));
        let (r, seq) = parse_meta(&m.meta);
        assert!(
            seen.insert((r, seq)),
            "round {round}: ({r}, {seq}) is there twice"
        );
        if let Some(&expected) = printed.committed.get(id) {
            assert_eq!((r, seq), expected, "round {round}: {id}");
        }
        let (meta, body) = message(r, seq);
        assert_eq!(m.meta, meta);
        assert!(
            m.message[..] == body[..],
            "round {round}: {id}: body differs"
        );
        let steps = spool.steps(id).await.unwrap();
        if printed.stepped.contains(id) || printed.removing.contains(id) {
            assert_eq!(
                steps,
                vec![(STEP_KEY.to_owned(), seq.to_le_bytes().to_vec())],
                "round {round}: {id}"
            );
        } else if !steps.is_empty() {
            // Recorded, and killed before it was printed.
            assert_eq!(
                steps,
                vec![(STEP_KEY.to_owned(), seq.to_le_bytes().to_vec())]
            );
        }
    }
}
