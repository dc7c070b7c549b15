//! The state, one suite of scenarios run against both backends: SQLite (a
//! file in a temporary directory) and PostgreSQL (a schema of its own in
//! the database `test`, dropped afterwards).
//!
//! Needs a PostgreSQL server on 127.0.0.1:5432 that trusts user `postgres`
//! and has a database `test` (override the server with `POSTERN_TEST_PG`, a
//! URL without the database name, e.g. `postgres://postgres@127.0.0.1:5432`).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use postern_state::{Backend, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

fn pg_base() -> String {
    std::env::var("POSTERN_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The database the schemas of the tests are made in.
fn pg_test_database() -> String {
    format!("{}/test", pg_base())
}

/// A name no other test, in this run or another, uses.
fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "postern_state_test_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `scenario` on a fresh backend of `kind`, then removes the backend
/// (also when the scenario panics, whose panic is then passed on).
async fn run<F, Fut>(kind: Kind, scenario: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            // A directory that does not exist yet: `open` creates it.
            let backend = Backend::Sqlite(dir.path().join("state").join("state.sqlite"));
            let outcome = tokio::spawn(scenario(backend)).await;
            drop(dir);
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        Kind::Postgres => {
            let schema = unique_name();
            let admin = sqlx::PgPool::connect(&pg_test_database())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 with a database `test`");
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            let backend = Backend::Postgres(format!(
                "{}?options[search_path]={schema}",
                pg_test_database()
            ));
            let outcome = tokio::spawn(scenario(backend)).await;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// One test per scenario and backend.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::run(crate::Kind::Sqlite, crate::scenario::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::run(crate::Kind::Postgres, crate::scenario::$name).await;
                }
            )*
        }
    };
}

scenarios!(
    first_commit,
    commit_conflicts,
    concurrent_committers_one_wins,
    concurrent_writers_retrying_leave_no_gaps,
    versions_newest_first,
    reopen_keeps_everything,
    concurrent_opens_migrate_once,
    newer_schema_is_refused,
    idempotency_keeps_the_first_response,
    idempotency_expiry,
    jobs_upsert_and_get,
    jobs_list_newest_first_with_pages,
    job_transition_guard,
    uploads_replace_and_delete,
    large_document_round_trip,
    documents_round_trip_exactly,
    old_versions_are_pruned,
    finished_jobs_expire_with_their_uploads,
    a_version_1_database_is_migrated,
    members_add_get_remove,
    members_pages_in_address_order,
    members_prefixes_are_literal,
    members_replace_keeps_what_stays,
    members_of_lists_are_apart,
    members_survive_a_reopen,
    concurrent_member_writers,
    a_million_members,
);

#[test]
fn errors_read_clearly() {
    use postern_state::StateError;
    assert_eq!(
        StateError::Conflict { parent: 7 }.to_string(),
        "conflict: the state is no longer at version 7 (another writer committed a change); \
         read the latest version and retry"
    );
    assert_eq!(
        StateError::Database("disk full".into()).to_string(),
        "state database: disk full"
    );
    assert_eq!(
        StateError::Corrupt("the document of version 3 is not JSON".into()).to_string(),
        "state database holds unreadable data: the document of version 3 is not JSON"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(StateError::Conflict { parent: 1 });
    assert!(boxed.to_string().contains("version 1"));
}

#[tokio::test]
async fn open_reports_a_missing_postgres_database_without_the_password() {
    let base = pg_base();
    let with_password = base.replacen("://postgres@", "://postgres:secret@", 1);
    let url = format!("{with_password}/postern_state_no_such_database");
    let error = State::open(Backend::Postgres(url)).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, postern_state::StateError::Database(_)),
        "{message}"
    );
    assert!(
        message.contains("postern_state_no_such_database") && message.contains("does not exist"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
    if with_password != base {
        assert!(message.contains("postgres:***@"), "{message}");
    }
}

#[tokio::test]
async fn open_reports_an_unusable_sqlite_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let error = State::open(Backend::Sqlite(file.join("state.sqlite")))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot create directory"),
        "{error}"
    );
}

mod scenario {
    use std::sync::Arc;

    use postern_state::{Backend, Job, Remembered, State, StateError};
    use serde_json::{Value, json};
    use time::{Duration, OffsetDateTime, UtcOffset};
    use tokio::sync::Barrier;

    async fn open(backend: &Backend) -> State {
        State::open(backend.clone()).await.unwrap()
    }

    fn doc(n: u64) -> Value {
        json!({ "version": n, "rule_sets": [{ "id": format!("rs-{n}") }] })
    }

    pub async fn first_commit(backend: Backend) {
        let state = open(&backend).await;
        assert_eq!(state.latest().await.unwrap(), None);
        assert_eq!(state.version(1).await.unwrap(), None);
        assert!(state.versions(10).await.unwrap().is_empty());

        let before = OffsetDateTime::now_utc();
        let number = state
            .commit(0, &doc(1), "api", "CreateRuleSet rs-1")
            .await
            .unwrap();
        let after = OffsetDateTime::now_utc();
        assert_eq!(number, 1);

        let latest = state.latest().await.unwrap().unwrap();
        assert_eq!(latest.number, 1);
        assert_eq!(latest.source, "api");
        assert_eq!(latest.summary, "CreateRuleSet rs-1");
        assert_eq!(latest.document, doc(1));
        assert!(before <= latest.created && latest.created <= after);
        assert_eq!(latest.created.offset(), UtcOffset::UTC);
        assert_eq!(state.version(1).await.unwrap(), Some(latest));
        assert_eq!(state.version(2).await.unwrap(), None);
        assert_eq!(state.version(u64::MAX).await.unwrap(), None);
    }

    pub async fn commit_conflicts(backend: Backend) {
        let state = open(&backend).await;
        assert_eq!(state.commit(0, &doc(1), "api", "one").await.unwrap(), 1);
        assert_eq!(state.commit(1, &doc(2), "api", "two").await.unwrap(), 2);

        // On top of a version that is no longer the latest.
        for parent in [0, 1] {
            assert_eq!(
                state.commit(parent, &doc(9), "api", "stale").await,
                Err(StateError::Conflict { parent })
            );
        }
        // On top of a version that does not exist yet: no gap is made.
        for parent in [3, 100, i64::MAX as u64, u64::MAX] {
            assert_eq!(
                state.commit(parent, &doc(9), "api", "ahead").await,
                Err(StateError::Conflict { parent })
            );
        }
        let latest = state.latest().await.unwrap().unwrap();
        assert_eq!((latest.number, latest.document), (2, doc(2)));
        assert_eq!(state.versions(100).await.unwrap().len(), 2);
        assert_eq!(state.commit(2, &doc(3), "api", "three").await.unwrap(), 3);
    }

    /// Rounds of four committers on the same parent, released together:
    /// two on one `State`, two on another (as two nodes, or two processes
    /// on one SQLite file). Exactly one wins each round.
    pub async fn concurrent_committers_one_wins(backend: Backend) {
        const ROUNDS: u64 = 15;
        const COMMITTERS: usize = 4;
        let nodes = [open(&backend).await, open(&backend).await];
        for round in 0..ROUNDS {
            let barrier = Arc::new(Barrier::new(COMMITTERS));
            let tasks: Vec<_> = (0..COMMITTERS)
                .map(|i| {
                    let state = nodes[i % 2].clone();
                    let barrier = barrier.clone();
                    tokio::spawn(async move {
                        let document = json!({ "round": round, "committer": i });
                        barrier.wait().await;
                        let result = state
                            .commit(round, &document, "api", &format!("committer {i}"))
                            .await;
                        (i, result)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (i, result) = task.await.unwrap();
                match result {
                    Ok(number) => {
                        assert_eq!(number, round + 1);
                        winners.push(i);
                    }
                    Err(e) => assert_eq!(e, StateError::Conflict { parent: round }),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            let latest = nodes[round as usize % 2].latest().await.unwrap().unwrap();
            assert_eq!(latest.number, round + 1);
            assert_eq!(
                latest.document,
                json!({ "round": round, "committer": winners[0] })
            );
            assert_eq!(latest.summary, format!("committer {}", winners[0]));
        }
        let numbers: Vec<u64> = nodes[0]
            .versions(100)
            .await
            .unwrap()
            .iter()
            .map(|v| v.number)
            .collect();
        assert_eq!(numbers, (1..=ROUNDS).rev().collect::<Vec<_>>());
    }

    /// Writers that read the latest version, change it and commit, retrying
    /// on conflict: every change lands once, in a version of its own, and
    /// the numbers have no gap.
    pub async fn concurrent_writers_retrying_leave_no_gaps(backend: Backend) {
        const WRITERS: usize = 4;
        const CHANGES: usize = 8;
        let nodes = [open(&backend).await, open(&backend).await];
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let state = nodes[w % 2].clone();
                tokio::spawn(async move {
                    let mut conflicts = 0;
                    for c in 0..CHANGES {
                        loop {
                            let (parent, mut document) = match state.latest().await.unwrap() {
                                Some(v) => (v.number, v.document),
                                None => (0, json!({ "changes": [] })),
                            };
                            document["changes"]
                                .as_array_mut()
                                .unwrap()
                                .push(json!(format!("{w}-{c}")));
                            match state.commit(parent, &document, "api", "change").await {
                                Ok(number) => {
                                    assert_eq!(number, parent + 1);
                                    break;
                                }
                                Err(StateError::Conflict { parent: p }) => {
                                    assert_eq!(p, parent);
                                    conflicts += 1;
                                }
                                Err(e) => panic!("writer {w}: {e}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let total = (WRITERS * CHANGES) as u64;
        let latest = nodes[1].latest().await.unwrap().unwrap();
        assert_eq!(latest.number, total);
        let mut changes: Vec<String> = latest.document["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        changes.sort();
        let mut expected: Vec<String> = (0..WRITERS)
            .flat_map(|w| (0..CHANGES).map(move |c| format!("{w}-{c}")))
            .collect();
        expected.sort();
        assert_eq!(changes, expected);
        // Each version holds exactly one more change than its parent.
        for number in 1..=total {
            let version = nodes[0].version(number).await.unwrap().unwrap();
            assert_eq!(
                version.document["changes"].as_array().unwrap().len() as u64,
                number
            );
        }
    }

    pub async fn versions_newest_first(backend: Backend) {
        let state = open(&backend).await;
        for n in 1..=5 {
            let source = if n % 2 == 0 { "config" } else { "api" };
            state
                .commit(n - 1, &doc(n), source, &format!("change {n}"))
                .await
                .unwrap();
        }
        let all = state.versions(10).await.unwrap();
        assert_eq!(
            all.iter().map(|v| v.number).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
        assert!(all.windows(2).all(|w| w[0].created >= w[1].created));
        assert_eq!(all[0].summary, "change 5");
        assert_eq!(all[1].source, "config");
        assert_eq!(all[4].source, "api");
        let two = state.versions(2).await.unwrap();
        assert_eq!(two, all[..2]);
        assert!(state.versions(0).await.unwrap().is_empty());
        for info in &all {
            let version = state.version(info.number).await.unwrap().unwrap();
            assert_eq!(version.document, doc(info.number));
            assert_eq!(
                (version.created, &version.source, &version.summary),
                (info.created, &info.source, &info.summary)
            );
        }
    }

    fn job(kind: &str, id: &str, resource: &str, state: &str, created: OffsetDateTime) -> Job {
        Job {
            kind: kind.into(),
            id: id.into(),
            resource: resource.into(),
            state: state.into(),
            created,
            document: json!({ "JobId": id, "Status": state, "Resource": resource }),
        }
    }

    /// A time with nanoseconds and a non-UTC offset, `seconds` after a
    /// fixed instant.
    fn at(seconds: i64) -> OffsetDateTime {
        (OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap()
            + Duration::nanoseconds(123_456_789)
            + Duration::seconds(seconds))
        .to_offset(UtcOffset::from_hms(2, 0, 0).unwrap())
    }

    pub async fn reopen_keeps_everything(backend: Backend) {
        let state = open(&backend).await;
        for n in 1..=3 {
            state.commit(n - 1, &doc(n), "api", "change").await.unwrap();
        }
        state
            .idempotent_put(
                "CreateRuleSet",
                "token-1",
                "digest-1",
                &json!({"RuleSetId": "rs-1"}),
            )
            .await
            .unwrap();
        let import = job("import", "job-1", "al-1", "RUNNING", at(0));
        state.job_put(&import).await.unwrap();
        state
            .upload_put("uploads/job-1", b"a@example.com\n")
            .await
            .unwrap();
        let versions = state.versions(10).await.unwrap();
        state.close().await;
        assert!(
            state.latest().await.is_err(),
            "a closed state refuses calls"
        );

        let reopened = open(&backend).await;
        assert_eq!(reopened.versions(10).await.unwrap(), versions);
        assert_eq!(reopened.latest().await.unwrap().unwrap().document, doc(3));
        assert_eq!(
            reopened
                .idempotent_get("CreateRuleSet", "token-1")
                .await
                .unwrap(),
            Some(Remembered {
                request_digest: "digest-1".into(),
                response: json!({"RuleSetId": "rs-1"}),
            })
        );
        assert_eq!(
            reopened.job_get("import", "job-1").await.unwrap(),
            Some(import)
        );
        assert_eq!(
            reopened
                .upload_get("uploads/job-1")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"a@example.com\n"[..])
        );
        // Numbering goes on from where it was.
        assert_eq!(
            reopened.commit(2, &doc(9), "api", "stale").await,
            Err(StateError::Conflict { parent: 2 })
        );
        assert_eq!(reopened.commit(3, &doc(4), "api", "four").await.unwrap(), 4);
        reopened.close().await;

        let again = open(&backend).await;
        assert_eq!(again.latest().await.unwrap().unwrap().number, 4);
    }

    /// Several nodes opening a new database at once: the schema is made
    /// once, and every one of them works.
    pub async fn concurrent_opens_migrate_once(backend: Backend) {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let backend = backend.clone();
                tokio::spawn(async move { State::open(backend).await })
            })
            .collect();
        let mut states = Vec::new();
        for task in tasks {
            states.push(task.await.unwrap().unwrap());
        }
        assert_eq!(states[0].commit(0, &doc(1), "api", "one").await.unwrap(), 1);
        for state in &states {
            assert_eq!(state.latest().await.unwrap().unwrap().number, 1);
        }
        let migrations = migrations_applied(&backend).await;
        assert_eq!(migrations, [1, 2]);
    }

    /// The migrations the database records.
    async fn migrations_applied(backend: &Backend) -> Vec<i64> {
        let sql = "SELECT version FROM postern_state_migrations ORDER BY version";
        match backend {
            Backend::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
                    .await
                    .unwrap();
                let versions = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                versions
            }
            Backend::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let versions = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                versions
            }
        }
    }

    /// A database a newer Postern migrated is not touched.
    pub async fn newer_schema_is_refused(backend: Backend) {
        open(&backend).await.close().await;
        let sql = "INSERT INTO postern_state_migrations (version, description) \
                   VALUES (1000, 'from the future')";
        match &backend {
            Backend::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Backend::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
        let error = State::open(backend.clone()).await.unwrap_err();
        assert_eq!(
            error,
            StateError::Database(
                "the state database is at schema version 1000, newer than this Postern \
                 knows (2); upgrade Postern"
                    .into()
            )
        );
    }

    pub async fn idempotency_keeps_the_first_response(backend: Backend) {
        let state = open(&backend).await;
        assert_eq!(
            state.idempotent_get("CreateArchive", "t1").await.unwrap(),
            None
        );

        let first = json!({ "ArchiveId": "a-1" });
        state
            .idempotent_put("CreateArchive", "t1", "d1", &first)
            .await
            .unwrap();
        // A second response to the same token does not replace the first.
        state
            .idempotent_put("CreateArchive", "t1", "d2", &json!({ "ArchiveId": "a-2" }))
            .await
            .unwrap();
        let remembered = Remembered {
            request_digest: "d1".into(),
            response: first,
        };
        assert_eq!(
            state.idempotent_get("CreateArchive", "t1").await.unwrap(),
            Some(remembered.clone())
        );

        // Tokens are per operation.
        assert_eq!(
            state.idempotent_get("CreateRuleSet", "t1").await.unwrap(),
            None
        );
        state
            .idempotent_put("CreateRuleSet", "t1", "d3", &json!({ "RuleSetId": "rs-1" }))
            .await
            .unwrap();
        assert_eq!(
            state
                .idempotent_get("CreateRuleSet", "t1")
                .await
                .unwrap()
                .unwrap()
                .request_digest,
            "d3"
        );
        assert_eq!(
            state.idempotent_get("CreateArchive", "t1").await.unwrap(),
            Some(remembered)
        );

        // Racing first responses: exactly one is kept, and it is kept for
        // good.
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let state = state.clone();
                tokio::spawn(async move {
                    state
                        .idempotent_put("CreateTrafficPolicy", "race", &format!("d{i}"), &json!(i))
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let kept = state
            .idempotent_get("CreateTrafficPolicy", "race")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.request_digest, format!("d{}", kept.response));
    }

    pub async fn idempotency_expiry(backend: Backend) {
        let state = open(&backend).await;
        let before = OffsetDateTime::now_utc() - Duration::seconds(1);
        for token in ["a", "b", "c"] {
            state
                .idempotent_put("CreateAddonInstance", token, "d", &json!({}))
                .await
                .unwrap();
        }
        assert_eq!(state.idempotent_expire(before).await.unwrap(), 0);
        assert_eq!(
            state
                .idempotent_expire(OffsetDateTime::UNIX_EPOCH - Duration::days(365 * 500))
                .await
                .unwrap(),
            0
        );
        assert!(
            state
                .idempotent_get("CreateAddonInstance", "a")
                .await
                .unwrap()
                .is_some()
        );

        let later = OffsetDateTime::now_utc() + Duration::seconds(1);
        assert_eq!(state.idempotent_expire(later).await.unwrap(), 3);
        assert_eq!(
            state
                .idempotent_get("CreateAddonInstance", "a")
                .await
                .unwrap(),
            None
        );
        assert_eq!(state.idempotent_expire(later).await.unwrap(), 0);

        // A bound beyond the stored range selects everything.
        state
            .idempotent_put("CreateAddonInstance", "d", "d", &json!({}))
            .await
            .unwrap();
        let far = OffsetDateTime::UNIX_EPOCH + Duration::days(365 * 1000);
        assert_eq!(state.idempotent_expire(far).await.unwrap(), 1);
    }

    pub async fn jobs_upsert_and_get(backend: Backend) {
        let state = open(&backend).await;
        assert_eq!(state.job_get("import", "job-1").await.unwrap(), None);

        let running = job("import", "job-1", "al-1", "RUNNING", at(0));
        state.job_put(&running).await.unwrap();
        let stored = state.job_get("import", "job-1").await.unwrap().unwrap();
        assert_eq!(stored, running);
        // The instant and its nanoseconds are kept; the offset comes back
        // as UTC.
        assert_eq!(stored.created.offset(), UtcOffset::UTC);
        assert_eq!(stored.created.nanosecond(), 123_456_789);

        // Ids are per kind.
        assert_eq!(state.job_get("export", "job-1").await.unwrap(), None);
        let export = job("export", "job-1", "archive-1", "QUEUED", at(5));
        state.job_put(&export).await.unwrap();

        // Upsert: every field of the job is replaced.
        let mut completed = job("import", "job-1", "al-2", "COMPLETED", at(60));
        completed.document = json!({ "JobId": "job-1", "ImportedItemsCount": 3 });
        state.job_put(&completed).await.unwrap();
        assert_eq!(
            state.job_get("import", "job-1").await.unwrap(),
            Some(completed)
        );
        assert_eq!(
            state.job_get("export", "job-1").await.unwrap(),
            Some(export)
        );
        assert!(
            state
                .jobs("import", "al-1", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            state.jobs("import", "al-2", None, 10).await.unwrap().len(),
            1
        );

        // A time the state cannot store is refused, not altered.
        let far = job(
            "import",
            "job-far",
            "al-1",
            "CREATED",
            OffsetDateTime::UNIX_EPOCH + Duration::days(365 * 300),
        );
        let error = state.job_put(&far).await.unwrap_err();
        assert!(
            matches!(&error, StateError::Database(m) if m.contains("outside the range")),
            "{error}"
        );
        assert_eq!(state.job_get("import", "job-far").await.unwrap(), None);
    }

    pub async fn jobs_list_newest_first_with_pages(backend: Backend) {
        let state = open(&backend).await;
        // Created out of order; "b", "c" and "d" at the same time (then
        // ordered by id, descending).
        let jobs = [
            job("search", "a", "archive-1", "FINISHED", at(10)),
            job("search", "d", "archive-1", "FINISHED", at(20)),
            job("search", "b", "archive-1", "RUNNING", at(20)),
            job("search", "e", "archive-1", "QUEUED", at(30)),
            job("search", "c", "archive-1", "FINISHED", at(20)),
            job("search", "f", "archive-1", "QUEUED", at(-5)),
            // Other resources and kinds are not listed.
            job("search", "g", "archive-2", "QUEUED", at(40)),
            job("export", "h", "archive-1", "QUEUED", at(50)),
        ];
        for job in &jobs {
            state.job_put(job).await.unwrap();
        }
        let ids = |page: &[Job]| page.iter().map(|j| j.id.clone()).collect::<Vec<_>>();

        let all = state.jobs("search", "archive-1", None, 100).await.unwrap();
        assert_eq!(ids(&all), ["e", "d", "c", "b", "a", "f"]);
        assert_eq!(all[0], jobs[3]);

        // Pages of two, each after the last id of the one before.
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = state
                .jobs("search", "archive-1", after.as_deref(), 2)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = Some(page.last().unwrap().id.clone());
            pages.push(ids(&page));
        }
        assert_eq!(pages, [["e", "d"], ["c", "b"], ["a", "f"]]);

        // Pages of four: the tie at one time is split across pages.
        let first = state.jobs("search", "archive-1", None, 4).await.unwrap();
        assert_eq!(ids(&first), ["e", "d", "c", "b"]);
        let second = state
            .jobs("search", "archive-1", Some("b"), 4)
            .await
            .unwrap();
        assert_eq!(ids(&second), ["a", "f"]);
        let after_c = state
            .jobs("search", "archive-1", Some("c"), 1)
            .await
            .unwrap();
        assert_eq!(ids(&after_c), ["b"]);

        // An unknown token, or one of another resource or kind: empty.
        for token in ["zzz", "g", "h"] {
            assert!(
                state
                    .jobs("search", "archive-1", Some(token), 10)
                    .await
                    .unwrap()
                    .is_empty(),
                "{token}"
            );
        }
        assert!(
            state
                .jobs("search", "archive-1", None, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ids(&state.jobs("search", "archive-2", None, 10).await.unwrap()),
            ["g"]
        );
        assert_eq!(
            ids(&state.jobs("export", "archive-1", None, 10).await.unwrap()),
            ["h"]
        );
    }

    pub async fn job_transition_guard(backend: Backend) {
        let state = open(&backend).await;
        let running = job("import", "job-1", "al-1", "RUNNING", at(0));
        state.job_put(&running).await.unwrap();

        // RUNNING → COMPLETED, while still RUNNING: done.
        let mut completed = job("import", "job-1", "al-1", "COMPLETED", at(0));
        completed.document["ImportedItemsCount"] = json!(42);
        assert!(
            state
                .job_transition("import", "job-1", "RUNNING", &completed)
                .await
                .unwrap()
        );
        assert_eq!(
            state.job_get("import", "job-1").await.unwrap(),
            Some(completed.clone())
        );

        // A second job is cancelled while its import runs; the import's
        // RUNNING → COMPLETED must not overwrite the cancellation.
        state
            .job_put(&job("import", "job-2", "al-1", "RUNNING", at(1)))
            .await
            .unwrap();
        let cancelled = job("import", "job-2", "al-1", "CANCELLED", at(1));
        assert!(
            state
                .job_transition("import", "job-2", "RUNNING", &cancelled)
                .await
                .unwrap()
        );
        let late = job("import", "job-2", "al-1", "COMPLETED", at(1));
        assert!(
            !state
                .job_transition("import", "job-2", "RUNNING", &late)
                .await
                .unwrap()
        );
        assert_eq!(
            state.job_get("import", "job-2").await.unwrap(),
            Some(cancelled)
        );

        // No such job: nothing changes, and nothing is created.
        let ghost = job("import", "job-3", "al-1", "COMPLETED", at(2));
        assert!(
            !state
                .job_transition("import", "job-3", "RUNNING", &ghost)
                .await
                .unwrap()
        );
        assert_eq!(state.job_get("import", "job-3").await.unwrap(), None);

        // A job cannot change its kind or id by transition.
        let error = state
            .job_transition("import", "job-1", "COMPLETED", &ghost)
            .await
            .unwrap_err();
        assert!(matches!(error, StateError::Database(_)), "{error}");
        assert_eq!(
            state.job_get("import", "job-1").await.unwrap(),
            Some(completed)
        );

        // Racing transitions from one state: exactly one wins.
        state
            .job_put(&job("export", "x", "archive-1", "RUNNING", at(3)))
            .await
            .unwrap();
        let tasks: Vec<_> = ["COMPLETED", "FAILED", "CANCELLED", "COMPLETED"]
            .into_iter()
            .map(|to| {
                let state = state.clone();
                tokio::spawn(async move {
                    let next = job("export", "x", "archive-1", to, at(3));
                    state.job_transition("export", "x", "RUNNING", &next).await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() {
                won += 1;
            }
        }
        assert_eq!(won, 1);
        assert_ne!(
            state.job_get("export", "x").await.unwrap().unwrap().state,
            "RUNNING"
        );
    }

    pub async fn old_versions_are_pruned(backend: Backend) {
        let state = open(&backend).await;
        for parent in 0..5 {
            state
                .commit(parent, &json!({ "v": parent + 1 }), "api", "")
                .await
                .unwrap();
        }
        assert_eq!(state.prune_versions(2).await.unwrap(), 3);
        let left: Vec<u64> = state
            .versions(10)
            .await
            .unwrap()
            .iter()
            .map(|v| v.number)
            .collect();
        assert_eq!(left, vec![5, 4]);
        // Numbering goes on after the latest, never reusing a number.
        assert_eq!(state.commit(5, &json!({}), "api", "").await.unwrap(), 6);
        assert_eq!(
            state.prune_versions(0).await.unwrap(),
            2,
            "one is always kept"
        );
        assert_eq!(state.latest().await.unwrap().unwrap().number, 6);
    }

    pub async fn finished_jobs_expire_with_their_uploads(backend: Backend) {
        let state = open(&backend).await;
        for (id, st, t) in [
            ("old-done", "COMPLETED", 0),
            ("old-running", "RUNNING", 0),
            ("new-done", "COMPLETED", 100),
        ] {
            state
                .job_put(&job("archive-search", id, "a-1", st, at(t)))
                .await
                .unwrap();
            state
                .upload_put(&format!("archive-search/{id}"), b"rows")
                .await
                .unwrap();
        }
        let deleted = state
            .jobs_expire(at(50), &["COMPLETED", "FAILED"])
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        assert!(
            state
                .job_get("archive-search", "old-done")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            state
                .upload_get("archive-search/old-done")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            state
                .job_get("archive-search", "old-running")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            state
                .upload_get("archive-search/new-done")
                .await
                .unwrap()
                .is_some()
        );
    }

    pub async fn uploads_replace_and_delete(backend: Backend) {
        let state = open(&backend).await;
        assert_eq!(state.upload_get("import/job-1").await.unwrap(), None);

        state
            .upload_put("import/job-1", b"a@example.com\nb@example.com\n")
            .await
            .unwrap();
        assert_eq!(
            state.upload_get("import/job-1").await.unwrap().as_deref(),
            Some(&b"a@example.com\nb@example.com\n"[..])
        );

        // A re-upload replaces the bytes (here with every byte value).
        let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        state.upload_put("import/job-1", &binary).await.unwrap();
        assert_eq!(
            state.upload_get("import/job-1").await.unwrap(),
            Some(binary)
        );

        // Empty is an upload too.
        state.upload_put("import/job-2", b"").await.unwrap();
        assert_eq!(
            state.upload_get("import/job-2").await.unwrap(),
            Some(Vec::new())
        );

        state.upload_delete("import/job-1").await.unwrap();
        assert_eq!(state.upload_get("import/job-1").await.unwrap(), None);
        // Deleting what is not there is not an error.
        state.upload_delete("import/job-1").await.unwrap();
        state.upload_delete("never-uploaded").await.unwrap();
        assert_eq!(
            state.upload_get("import/job-2").await.unwrap(),
            Some(Vec::new())
        );
    }

    /// A resource document of about 5 MB, and an upload of that size.
    pub async fn large_document_round_trip(backend: Backend) {
        let state = open(&backend).await;
        let entries: Vec<Value> = (0..20_000)
            .map(|i| {
                json!({
                    "AddressListId": format!("al-{i:06}"),
                    "Name": format!("list «{i}» with \"quotes\", tabs\tand ünïcödé ✉"),
                    "Members": (0..4).map(|m| format!("user{m}.{i}@example.com")).collect::<Vec<_>>(),
                    "Weight": i as f64 / 7.0,
                    "Enabled": i % 3 == 0,
                    "Extra": null,
                })
            })
            .collect();
        let document = json!({ "AddressLists": entries });
        let size = document.to_string().len();
        assert!(
            (4_500_000..8_000_000).contains(&size),
            "document of {size} bytes"
        );

        state.commit(0, &document, "api", "bulk").await.unwrap();
        let read = state.latest().await.unwrap().unwrap();
        assert_eq!(read.document, document);
        assert_eq!(state.version(1).await.unwrap().unwrap().document, document);

        let mut job_document = document.clone();
        job_document["Status"] = json!("COMPLETED");
        let big_job = Job {
            document: job_document,
            ..job("export", "big", "archive-1", "COMPLETED", at(0))
        };
        state.job_put(&big_job).await.unwrap();
        assert_eq!(state.job_get("export", "big").await.unwrap(), Some(big_job));

        let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        state.upload_put("import/big", &bytes).await.unwrap();
        assert_eq!(state.upload_get("import/big").await.unwrap(), Some(bytes));
    }

    /// JSON comes back as it was: NUL characters, escapes, big integers,
    /// floats.
    pub async fn documents_round_trip_exactly(backend: Backend) {
        let state = open(&backend).await;
        let document = json!({
            "z": "last key first",
            "nul": "a\u{0}b",
            "controls": "\u{1}\u{1f}\n\r\t\\\"/",
            "astral": "𝄞 🙂",
            "max": u64::MAX,
            "min": i64::MIN,
            "float": 0.1 + 0.2,
            "tiny": 5e-324,
            "nested": { "list": [[], {}, [null, true, false]] },
            "a": "first key last",
        });
        state.commit(0, &document, "api", "exact").await.unwrap();
        let read = state.latest().await.unwrap().unwrap().document;
        assert_eq!(read, document);
        assert_eq!(read.to_string(), document.to_string());

        state
            .idempotent_put("op", "tok", "digest", &document)
            .await
            .unwrap();
        assert_eq!(
            state
                .idempotent_get("op", "tok")
                .await
                .unwrap()
                .unwrap()
                .response,
            document
        );
        // Scalars and empty values are documents too.
        for (n, document) in [json!(null), json!(0), json!("text"), json!([]), json!({})]
            .into_iter()
            .enumerate()
        {
            let number = state
                .commit(n as u64 + 1, &document, "api", "scalar")
                .await
                .unwrap();
            assert_eq!(
                state.version(number).await.unwrap().unwrap().document,
                document
            );
        }
    }

    /// Runs `sql` on the database of `backend`, outside the state.
    async fn raw(backend: &Backend, statements: &[&str]) {
        match backend {
            Backend::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
                    .await
                    .unwrap();
                for sql in statements {
                    sqlx::query(sql).execute(&pool).await.unwrap();
                }
                pool.close().await;
            }
            Backend::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                for sql in statements {
                    sqlx::query(sql).execute(&pool).await.unwrap();
                }
                pool.close().await;
            }
        }
    }

    /// A database an earlier Postern made (schema 1, no members table)
    /// gets the members table, and keeps what it had.
    pub async fn a_version_1_database_is_migrated(backend: Backend) {
        let state = open(&backend).await;
        state.commit(0, &doc(1), "api", "one").await.unwrap();
        state.close().await;
        raw(
            &backend,
            &[
                "DROP TABLE postern_members",
                "DELETE FROM postern_state_migrations WHERE version = 2",
            ],
        )
        .await;
        assert_eq!(migrations_applied(&backend).await, [1]);

        let state = open(&backend).await;
        assert_eq!(migrations_applied(&backend).await, [1, 2]);
        assert_eq!(state.latest().await.unwrap().unwrap().document, doc(1));
        assert_eq!(
            state
                .members_add("al-1", &addresses(&["a@example.com"]), at(0))
                .await
                .unwrap(),
            1
        );
        assert_eq!(state.members_count("al-1").await.unwrap(), 1);
    }

    fn addresses(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    pub async fn members_add_get_remove(backend: Backend) {
        let state = open(&backend).await;
        assert_eq!(state.members_count("al-1").await.unwrap(), 0);
        assert!(state.members_all("al-1").await.unwrap().is_empty());
        assert_eq!(
            state.members_get("al-1", "a@example.com").await.unwrap(),
            None
        );

        // Repeats count once; nothing to add is no error.
        let added = state
            .members_add(
                "al-1",
                &addresses(&["b@example.com", "a@example.com", "b@example.com"]),
                at(0),
            )
            .await
            .unwrap();
        assert_eq!(added, 2);
        assert_eq!(state.members_add("al-1", &[], at(1)).await.unwrap(), 0);

        // Adding again keeps the time each was first added.
        let added = state
            .members_add(
                "al-1",
                &addresses(&["a@example.com", "c@example.com"]),
                at(10),
            )
            .await
            .unwrap();
        assert_eq!(added, 1);
        let a = state
            .members_get("al-1", "a@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a, at(0));
        assert_eq!(a.offset(), UtcOffset::UTC, "times come back in UTC");
        assert_eq!(
            state.members_get("al-1", "c@example.com").await.unwrap(),
            Some(at(10))
        );
        // Addresses are stored as given: matching is exact.
        assert_eq!(
            state.members_get("al-1", "A@example.com").await.unwrap(),
            None
        );
        assert_eq!(state.members_count("al-1").await.unwrap(), 3);
        assert_eq!(
            state.members_all("al-1").await.unwrap(),
            addresses(&["a@example.com", "b@example.com", "c@example.com"])
        );

        assert!(state.members_remove("al-1", "b@example.com").await.unwrap());
        assert!(!state.members_remove("al-1", "b@example.com").await.unwrap());
        assert_eq!(
            state.members_get("al-1", "b@example.com").await.unwrap(),
            None
        );
        assert_eq!(state.members_count("al-1").await.unwrap(), 2);

        assert_eq!(state.members_drop("al-1").await.unwrap(), 2);
        assert_eq!(state.members_drop("al-1").await.unwrap(), 0);
        assert_eq!(state.members_count("al-1").await.unwrap(), 0);

        // A time outside the stored range is refused, and nothing is added.
        let too_late = OffsetDateTime::from_unix_timestamp(9_999_999_999).unwrap();
        assert!(matches!(
            state
                .members_add("al-1", &addresses(&["a@example.com"]), too_late)
                .await,
            Err(StateError::Database(m)) if m.contains("outside the range")
        ));
        assert_eq!(state.members_count("al-1").await.unwrap(), 0);
    }

    pub async fn members_pages_in_address_order(backend: Backend) {
        let state = open(&backend).await;
        // Byte-wise order: upper case before lower case, ASCII before the
        // rest, whatever the database's collation.
        let all = addresses(&[
            "zed@example.com",
            "Zed@example.com",
            "*@example.org",
            "émile@example.com",
            "amy@example.com",
            "bob@example.com",
            "bo@example.com",
        ]);
        state.members_add("al-1", &all, at(0)).await.unwrap();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(state.members_all("al-1").await.unwrap(), expected);

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = state
                .members_page("al-1", None, after.as_deref(), 3)
                .await
                .unwrap();
            assert!(page.len() <= 3);
            assert!(page.iter().all(|(_, t)| *t == at(0)));
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen.extend(page.into_iter().map(|(a, _)| a));
        }
        assert_eq!(seen, expected);

        // A page goes on after its anchor, even one removed meanwhile.
        state
            .members_remove("al-1", "bo@example.com")
            .await
            .unwrap();
        let page = state
            .members_page("al-1", None, Some("bo@example.com"), 2)
            .await
            .unwrap();
        assert_eq!(
            page.into_iter().map(|(a, _)| a).collect::<Vec<_>>(),
            addresses(&["bob@example.com", "zed@example.com"])
        );
        // With a prefix and an anchor.
        let page = state
            .members_page("al-1", Some("b"), Some("bo@example.com"), 10)
            .await
            .unwrap();
        assert_eq!(
            page.into_iter().map(|(a, _)| a).collect::<Vec<_>>(),
            addresses(&["bob@example.com"])
        );
        assert!(
            state
                .members_page("al-1", None, None, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn members_prefixes_are_literal(backend: Backend) {
        let state = open(&backend).await;
        let all = addresses(&[
            "100%@example.com",
            "100x@example.com",
            "a_b@example.com",
            "axb@example.com",
            "a\\b@example.com",
            "émile@example.com",
            "\u{10FFFF}@example.com",
            "bob@example.com",
        ]);
        state.members_add("al-1", &all, at(0)).await.unwrap();
        let with = |prefix: &'static str| {
            let state = state.clone();
            async move {
                state
                    .members_page("al-1", Some(prefix), None, 100)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(with("100%").await, addresses(&["100%@example.com"]));
        assert_eq!(with("a_").await, addresses(&["a_b@example.com"]));
        assert_eq!(with("a\\").await, addresses(&["a\\b@example.com"]));
        assert_eq!(with("%").await, Vec::<String>::new());
        assert_eq!(with("é").await, addresses(&["émile@example.com"]));
        assert_eq!(
            with("\u{10FFFF}").await,
            addresses(&["\u{10FFFF}@example.com"])
        );
        assert_eq!(
            with("bob@example.com").await,
            addresses(&["bob@example.com"])
        );
        assert_eq!(with("bob@example.comx").await, Vec::<String>::new());
        // An empty prefix is no filter.
        assert_eq!(with("").await.len(), all.len());
    }

    pub async fn members_replace_keeps_what_stays(backend: Backend) {
        let state = open(&backend).await;
        state
            .members_add(
                "al-1",
                &addresses(&["a@example.com", "b@example.com", "c@example.com"]),
                at(0),
            )
            .await
            .unwrap();
        state
            .members_replace(
                "al-1",
                &addresses(&[
                    "c@example.com",
                    "d@example.com",
                    "b@example.com",
                    "d@example.com",
                ]),
                at(60),
            )
            .await
            .unwrap();
        let page = state.members_page("al-1", None, None, 10).await.unwrap();
        assert_eq!(
            page,
            vec![
                ("b@example.com".to_string(), at(0)),
                ("c@example.com".to_string(), at(0)),
                ("d@example.com".to_string(), at(60)),
            ]
        );
        // The same members again change nothing; none is every one gone.
        state
            .members_replace(
                "al-1",
                &addresses(&["b@example.com", "c@example.com", "d@example.com"]),
                at(120),
            )
            .await
            .unwrap();
        assert_eq!(
            state.members_page("al-1", None, None, 10).await.unwrap(),
            page
        );
        state.members_replace("al-1", &[], at(180)).await.unwrap();
        assert_eq!(state.members_count("al-1").await.unwrap(), 0);

        // Large replacements, in several batches each way.
        let first: Vec<String> = (0..12_000)
            .map(|i| format!("u{i:05}@example.com"))
            .collect();
        state.members_replace("al-1", &first, at(0)).await.unwrap();
        let second: Vec<String> = (6_000..25_000)
            .map(|i| format!("u{i:05}@example.com"))
            .collect();
        state
            .members_replace("al-1", &second, at(60))
            .await
            .unwrap();
        assert_eq!(state.members_all("al-1").await.unwrap(), second);
        assert_eq!(
            state
                .members_get("al-1", "u06000@example.com")
                .await
                .unwrap(),
            Some(at(0))
        );
        assert_eq!(
            state
                .members_get("al-1", "u12000@example.com")
                .await
                .unwrap(),
            Some(at(60))
        );
        assert_eq!(
            state
                .members_get("al-1", "u05999@example.com")
                .await
                .unwrap(),
            None
        );
    }

    pub async fn members_of_lists_are_apart(backend: Backend) {
        let state = open(&backend).await;
        state
            .members_add(
                "al-1",
                &addresses(&["a@example.com", "b@example.com"]),
                at(0),
            )
            .await
            .unwrap();
        state
            .members_add(
                "al-2",
                &addresses(&["b@example.com", "c@example.com"]),
                at(5),
            )
            .await
            .unwrap();
        // A list id that is the start of another's is another list.
        state
            .members_add("al-10", &addresses(&["d@example.com"]), at(5))
            .await
            .unwrap();
        assert_eq!(
            state.members_all("al-1").await.unwrap(),
            addresses(&["a@example.com", "b@example.com"])
        );
        assert_eq!(
            state.members_get("al-2", "b@example.com").await.unwrap(),
            Some(at(5))
        );
        state
            .members_replace("al-1", &addresses(&["c@example.com"]), at(9))
            .await
            .unwrap();
        assert!(state.members_remove("al-2", "c@example.com").await.unwrap());
        assert_eq!(
            state.members_all("al-1").await.unwrap(),
            addresses(&["c@example.com"])
        );
        assert_eq!(
            state.members_all("al-2").await.unwrap(),
            addresses(&["b@example.com"])
        );
        assert_eq!(state.members_drop("al-1").await.unwrap(), 1);
        assert_eq!(state.members_count("al-2").await.unwrap(), 1);
        assert_eq!(state.members_count("al-10").await.unwrap(), 1);
        assert!(
            state
                .members_page("al-", Some("a"), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn members_survive_a_reopen(backend: Backend) {
        let state = open(&backend).await;
        state
            .members_add("al-1", &addresses(&["a@example.com"]), at(3))
            .await
            .unwrap();
        state.close().await;
        let reopened = open(&backend).await;
        assert_eq!(
            reopened.members_get("al-1", "a@example.com").await.unwrap(),
            Some(at(3))
        );
    }

    /// Writers on several connections at once (several nodes): every
    /// address ends up a member once, and each add counts what it added.
    pub async fn concurrent_member_writers(backend: Backend) {
        let states: Vec<State> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(open(&backend).await);
            }
            v
        };
        let tasks: Vec<_> = states
            .iter()
            .enumerate()
            .map(|(n, state)| {
                let state = state.clone();
                // Overlapping ranges: 0..2000, 1000..3000, 2000..4000.
                let list: Vec<String> = (n * 1000..n * 1000 + 2000)
                    .map(|i| format!("u{i:05}@example.com"))
                    .collect();
                tokio::spawn(async move {
                    let mut added = 0;
                    for chunk in list.chunks(250) {
                        added += state.members_add("al-1", chunk, at(0)).await.unwrap();
                    }
                    added
                })
            })
            .collect();
        let mut added = 0;
        for task in tasks {
            added += task.await.unwrap();
        }
        assert_eq!(added, 4000);
        assert_eq!(states[0].members_count("al-1").await.unwrap(), 4000);
    }

    /// A million addresses added in one call, in seconds: the figure is
    /// printed (`--nocapture`), not asserted.
    pub async fn a_million_members(backend: Backend) {
        let state = open(&backend).await;
        // Not in address order, as an import file gives them.
        let list: Vec<String> = (0..1_000_000u64)
            .map(|i| format!("user{:07}@example.com", (i * 7_919) % 1_000_000))
            .collect();
        let started = std::time::Instant::now();
        let added = state.members_add("al-big", &list, at(0)).await.unwrap();
        let add_time = started.elapsed();
        assert_eq!(added, 1_000_000);

        let started = std::time::Instant::now();
        let all = state.members_all("al-big").await.unwrap();
        let read_time = started.elapsed();
        assert_eq!(all.len(), 1_000_000);
        assert!(all.windows(2).all(|w| w[0] < w[1]));

        let started = std::time::Instant::now();
        assert_eq!(state.members_add("al-big", &list, at(9)).await.unwrap(), 0);
        let again_time = started.elapsed();

        let started = std::time::Instant::now();
        state
            .members_replace("al-big", &list[..999_000], at(9))
            .await
            .unwrap();
        let replace_time = started.elapsed();
        assert_eq!(state.members_count("al-big").await.unwrap(), 999_000);
        let page = state
            .members_page("al-big", Some("user05"), None, 3)
            .await
            .unwrap();
        assert_eq!(page.len(), 3);
        assert!(page[0].0.starts_with("user05"));
        println!(
            "{backend:?}: 1,000,000 members added in {add_time:?}, read in {read_time:?}, \
             added again (none new) in {again_time:?}, replaced (1,000 fewer) in {replace_time:?}"
        );
    }
}
