//! Tests of the whole spool on a real directory: round trips, recovery,
//! the step journal, group commit, the lock and cancellation. The crash
//! test with a killed process is in `tests/crash.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tokio::task::JoinSet;

use crate::{QueueId, Spool, journal};

fn body(seed: usize, len: usize) -> Vec<u8> {
    let mut x = seed as u64 ^ 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

async fn commit(spool: &Spool, meta: &[u8], message: &[u8]) -> QueueId {
    let mut m = spool.create(meta).await.unwrap();
    m.write(message).await.unwrap();
    m.commit().await.unwrap()
}

/// Waits (bounded) for a condition that another task will make true. Not
/// a timing assertion: only a guard against hanging forever.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

fn queue_file(dir: &Path, id: &QueueId) -> PathBuf {
    dir.join("queue").join(id.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_then_read_gives_the_exact_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert!(pending.is_empty());
    let meta = br#"{"mail_from":"a@example.com","rcpt":["b@example.net"]}"#;
    let message = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n.\r\n";
    let mut m = spool.create(meta).await.unwrap();
    let early_id = m.id().clone();
    m.write(&message[..10]).await.unwrap();
    m.write(&message[10..]).await.unwrap();
    assert_eq!(m.len(), message.len() as u64);
    let id = m.commit().await.unwrap();
    assert_eq!(id, early_id);
    assert_eq!(spool.depth(), 1);

    let s = spool.read(&id).await.unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.meta, meta);
    assert_eq!(&s.message[..], message);
    assert_eq!(s.created, id.created());
    assert!(names(&tmp.path().join("incoming")).is_empty());

    // An empty message and empty meta are fine too.
    let empty = spool.create(b"").await.unwrap().commit().await.unwrap();
    let s = spool.read(&empty).await.unwrap();
    assert!(s.meta.is_empty() && s.message.is_empty());
    assert_eq!(spool.depth(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mb_message_written_in_small_chunks_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let message = body(5, 5 * 1024 * 1024 + 17);
    let mut m = spool.create(b"{\"big\":true}").await.unwrap();
    let mut sizes = [1usize, 7, 512, 999, 4096, 65_536, 70_001].iter().cycle();
    let mut at = 0;
    while at < message.len() {
        let n = (*sizes.next().unwrap()).min(message.len() - at);
        m.write(&message[at..at + n]).await.unwrap();
        at += n;
        // Writes go to the file as they come: the buffer never holds more
        // than WRITE_BUFFER bytes.
        assert!(m.buffered() <= crate::WRITE_BUFFER);
    }
    let id = m.commit().await.unwrap();
    let s = spool.read(&id).await.unwrap();
    assert_eq!(s.message.len(), message.len());
    assert!(s.message[..] == message[..]);
    assert_eq!(s.meta, b"{\"big\":true}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_drop_leave_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let mut a = spool.create(b"a").await.unwrap();
    a.write(&body(1, 200_000)).await.unwrap();
    let a_path = tmp.path().join("incoming").join(a.id().as_str());
    assert!(a_path.exists());
    a.abort().await;
    assert!(!a_path.exists());

    let mut d = spool.create(b"d").await.unwrap();
    d.write(&body(2, 200_000)).await.unwrap();
    let d_path = tmp.path().join("incoming").join(d.id().as_str());
    drop(d);
    eventually("the dropped message's file is deleted", || !d_path.exists()).await;
    assert_eq!(spool.depth(), 0);
    drop(spool);
    let (_spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert!(pending.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_deletes_uncommitted_files_and_returns_the_rest_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    // Created in order 0..5, committed in the reverse order.
    let mut incoming = Vec::new();
    for i in 0..5 {
        let mut m = spool.create(format!("m{i}").as_bytes()).await.unwrap();
        m.write(&body(i, 1000 + i)).await.unwrap();
        incoming.push(m);
    }
    let mut ids = Vec::new();
    while let Some(m) = incoming.pop() {
        ids.push(m.commit().await.unwrap());
    }
    ids.reverse();
    // A message cut off mid-DATA by a crash: save its partial file, and put
    // it back after the spool is closed.
    let mut cut = spool.create(b"cut").await.unwrap();
    cut.write(&body(9, 300_000)).await.unwrap();
    let cut_name = cut.id().to_string();
    fs::copy(
        tmp.path().join("incoming").join(&cut_name),
        saved.path().join(&cut_name),
    )
    .unwrap();
    // And a complete, valid message file that was never renamed.
    fs::copy(queue_file(tmp.path(), &ids[0]), saved.path().join("WHOLE")).unwrap();
    drop(cut);
    let cut_path = tmp.path().join("incoming").join(&cut_name);
    eventually("the dropped message's file is deleted", || {
        !cut_path.exists()
    })
    .await;
    drop(spool);
    fs::copy(
        saved.path().join(&cut_name),
        tmp.path().join("incoming").join(&cut_name),
    )
    .unwrap();
    fs::copy(
        saved.path().join("WHOLE"),
        tmp.path().join("incoming/0000000000000WHOLE"),
    )
    .unwrap();

    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert_eq!(pending, ids, "oldest (first created) first");
    assert_eq!(spool.depth(), 5);
    assert_eq!(spool.recovery().temp_files_removed, 2);
    assert!(names(&tmp.path().join("incoming")).is_empty());
    for (i, id) in pending.iter().enumerate() {
        let s = spool.read(id).await.unwrap();
        assert_eq!(s.meta, format!("m{i}").as_bytes());
        assert_eq!(&s.message[..], &body(i, 1000 + i)[..]);
    }
    // New ids come after every id already on disk.
    let next = commit(&spool, b"", b"").await;
    assert!(pending.iter().all(|id| id < &next));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_queue_files_go_to_corrupt_and_are_not_returned() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let truncated = commit(&spool, b"t", &body(1, 5000)).await;
    let flipped = commit(&spool, b"f", &body(2, 5000)).await;
    let good = commit(&spool, b"g", &body(3, 5000)).await;
    spool
        .record_step(&flipped, "archive:a-1", b"done")
        .await
        .unwrap();
    drop(spool);

    let t = queue_file(tmp.path(), &truncated);
    let len = fs::metadata(&t).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let f = queue_file(tmp.path(), &flipped);
    let mut bytes = fs::read(&f).unwrap();
    bytes[100] ^= 0x01;
    fs::write(&f, bytes).unwrap();
    fs::write(tmp.path().join("queue/notes.txt"), b"not a message").unwrap();

    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert_eq!(pending, vec![good.clone()]);
    assert_eq!(spool.depth(), 1);
    let corrupt = names(&tmp.path().join("corrupt"));
    let expected: BTreeSet<String> = [
        truncated.to_string(),
        flipped.to_string(),
        format!("{flipped}.steps"),
        "notes.txt".to_owned(),
    ]
    .into();
    assert_eq!(corrupt, expected);
    assert_eq!(names(&tmp.path().join("queue")), [good.to_string()].into());
    assert!(names(&tmp.path().join("steps")).is_empty());
    let reasons: Vec<&str> = spool
        .recovery()
        .corrupt
        .iter()
        .map(|c| c.reason.as_str())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("end marker")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("checksum")),
        "{reasons:?}"
    );
    assert_eq!(
        spool.read(&truncated).await.unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    // A second open finds nothing more to do.
    drop(spool);
    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert_eq!(pending, vec![good]);
    assert!(spool.recovery().corrupt.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_checks_the_file_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let id = commit(&spool, b"m", b"message").await;
    let path = queue_file(tmp.path(), &id);
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 0x80;
    fs::write(&path, bytes).unwrap();
    let e = spool.read(&id).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains(id.as_str()), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_recorded_listed_and_removed_with_the_message() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let a = commit(&spool, b"a", b"message a").await;
    let b = commit(&spool, b"b", b"message b").await;
    assert_eq!(spool.depth(), 2);
    assert!(spool.steps(&a).await.unwrap().is_empty());
    spool
        .record_step(&a, "archive:a-123", br#"{"ok":true}"#)
        .await
        .unwrap();
    spool.record_step(&a, "relay:r-1", b"").await.unwrap();
    spool.record_step(&b, "drop", b"x").await.unwrap();
    spool
        .record_step(&a, "archive:a-123", b"again")
        .await
        .unwrap();
    assert_eq!(
        spool.steps(&a).await.unwrap(),
        vec![
            ("archive:a-123".to_owned(), br#"{"ok":true}"#.to_vec()),
            ("relay:r-1".to_owned(), Vec::new()),
            ("archive:a-123".to_owned(), b"again".to_vec()),
        ]
    );
    assert_eq!(spool.steps(&b).await.unwrap().len(), 1);

    // Survives a reopen.
    drop(spool);
    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert_eq!(pending, vec![a.clone(), b.clone()]);
    assert_eq!(spool.steps(&a).await.unwrap().len(), 3);

    spool.remove(&a).await.unwrap();
    assert_eq!(spool.depth(), 1);
    assert!(!queue_file(tmp.path(), &a).exists());
    assert!(!tmp.path().join("steps").join(a.as_str()).exists());
    let not_found = |e: io::Error| assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    not_found(spool.remove(&a).await.unwrap_err());
    not_found(spool.steps(&a).await.unwrap_err());
    not_found(spool.read(&a).await.unwrap_err());
    not_found(spool.record_step(&a, "late", b"").await.unwrap_err());
    assert!(!tmp.path().join("steps").join(a.as_str()).exists());
    assert_eq!(spool.depth(), 1);
    spool.remove(&b).await.unwrap();
    assert_eq!(spool.depth(), 0);
    assert!(names(&tmp.path().join("queue")).is_empty());
    assert!(names(&tmp.path().join("steps")).is_empty());

    let e = spool
        .record_step(&b, &"k".repeat(crate::MAX_KEY_LEN + 1), b"")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_steps_of_one_message_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let id = commit(&spool, b"", b"m").await;
    let mut tasks = JoinSet::new();
    for i in 0..50 {
        let (spool, id) = (spool.clone(), id.clone());
        tasks.spawn(async move {
            spool
                .record_step(&id, &format!("step:{i}"), &body(i, i * 10))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let steps = spool.steps(&id).await.unwrap();
    let keys: BTreeSet<String> = steps.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 50);
    for (k, v) in steps {
        let i: usize = k["step:".len()..].parse().unwrap();
        assert_eq!(v, body(i, i * 10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_step_record_is_cut_off_and_the_earlier_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let id = commit(&spool, b"", b"m").await;
    spool.record_step(&id, "one", b"1").await.unwrap();
    spool.record_step(&id, "two", b"2").await.unwrap();
    drop(spool);
    let path = tmp.path().join("steps").join(id.as_str());
    let whole = fs::metadata(&path).unwrap().len();
    let record = journal::encode_record("three", b"a longer outcome");
    let mut j = fs::read(&path).unwrap();
    j.extend_from_slice(&record[..record.len() - 3]);
    fs::write(&path, j).unwrap();

    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert_eq!(pending, vec![id.clone()]);
    assert_eq!(spool.recovery().torn_journals, vec![id.clone()]);
    assert_eq!(fs::metadata(&path).unwrap().len(), whole);
    let keys = |s: Vec<(String, Vec<u8>)>| s.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(spool.steps(&id).await.unwrap()), ["one", "two"]);
    spool.record_step(&id, "three", b"3").await.unwrap();
    assert_eq!(
        keys(spool.steps(&id).await.unwrap()),
        ["one", "two", "three"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_damaged_in_the_middle_sends_its_message_to_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let id = commit(&spool, b"", b"m").await;
    spool.record_step(&id, "one", b"1").await.unwrap();
    spool.record_step(&id, "two", b"2").await.unwrap();
    drop(spool);
    let path = tmp.path().join("steps").join(id.as_str());
    let mut j = fs::read(&path).unwrap();
    j[journal::HEADER_LEN + 13] ^= 0x01; // in the first record's key
    fs::write(&path, j).unwrap();

    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert!(pending.is_empty());
    assert_eq!(
        names(&tmp.path().join("corrupt")),
        [id.to_string(), format!("{id}.steps")].into()
    );
    assert_eq!(spool.depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_without_its_message_is_deleted_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Spool::open(tmp.path()).await.unwrap());
    let orphan = tmp.path().join("steps/000000000000ABCD");
    let mut j = journal::header().to_vec();
    j.extend_from_slice(&journal::encode_record("k", b"v"));
    fs::write(&orphan, j).unwrap();
    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert!(pending.is_empty());
    assert!(!orphan.exists());
    assert_eq!(spool.recovery().orphan_journals_removed, 1);
}

/// 100 commits at once, all renamed while the first directory fsync is
/// held back: they share at most two fsyncs, and all are there after a
/// reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_concurrent_commits_share_directory_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let gate = spool.inner.queue_syncer().gate();
    let before = spool.dir_syncs();
    let held = gate.lock().await;
    let mut tasks = JoinSet::new();
    for i in 0..100usize {
        let spool = spool.clone();
        tasks.spawn(async move {
            let mut m = spool.create(format!("{i}").as_bytes()).await?;
            m.write(&body(i, 4096)).await?;
            m.commit().await.map(|id| (i, id))
        });
    }
    let s = spool.clone();
    eventually("100 commits wait for the directory fsync", move || {
        s.inner.queue_syncer().pending() == 100
    })
    .await;
    drop(held);
    let mut committed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        committed.push(r.unwrap().unwrap());
    }
    let syncs = spool.dir_syncs() - before;
    println!("100 concurrent commits: {syncs} directory fsync(s)");
    assert!(syncs < 100);
    assert!(syncs <= 2, "{syncs}");
    assert_eq!(spool.depth(), 100);

    drop(spool);
    let (spool, pending) = Spool::open(tmp.path()).await.unwrap();
    committed.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        pending,
        committed
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    );
    for (i, id) in committed {
        let s = spool.read(&id).await.unwrap();
        assert_eq!(s.meta, format!("{i}").as_bytes());
        assert_eq!(&s.message[..], &body(i, 4096)[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_caller_gave_up_is_taken_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let gate = spool.inner.queue_syncer().gate();
    let held = gate.lock().await;
    let mut m = spool.create(b"x").await.unwrap();
    m.write(b"message").await.unwrap();
    let id = m.id().clone();
    let task = tokio::spawn(m.commit());
    let s = spool.clone();
    eventually("the commit renamed its file", move || {
        s.inner.queue_syncer().pending() == 1
    })
    .await;
    assert!(queue_file(tmp.path(), &id).exists());
    task.abort(); // the session's timeout fired: no 250 was sent
    assert!(task.await.unwrap_err().is_cancelled());
    drop(held);
    let path = queue_file(tmp.path(), &id);
    eventually("the message is removed again", || !path.exists()).await;
    eventually("depth is back to 0", || spool.depth() == 0).await;
    drop(spool);
    eventually("the spool is released", || {
        // Background tasks may hold the spool a moment longer.
        std::fs::File::open(tmp.path().join("lock"))
            .map(|f| f.try_lock().is_ok())
            .unwrap_or(false)
    })
    .await;
    let (_spool, pending) = Spool::open(tmp.path()).await.unwrap();
    assert!(pending.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_is_opened_by_one_owner_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path()).await.unwrap();
    let e = Spool::open(tmp.path()).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
    drop(spool);
    Spool::open(tmp.path()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_missing_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/spool");
    let (spool, _) = Spool::open(&dir).await.unwrap();
    for d in ["incoming", "queue", "steps", "corrupt"] {
        assert!(dir.join(d).is_dir(), "{d}");
    }
    commit(&spool, b"", b"x").await;
}
