//! The archive against both backends: SQLite + a bodies directory, and
//! PostgreSQL + moto's S3. Every scenario runs on both (see `backends!`).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Env, Kind};
use postern_archive::{
    ArchiveError, EncryptionKey, ExportDestination, SearchQuery, StoreItem, retention,
};
use postern_model::{
    ArchiveBooleanEmailAttribute, ArchiveBooleanExpression, ArchiveBooleanOperator,
    ArchiveBooleanToEvaluate, ArchiveFilterCondition, ArchiveFilters, ArchiveStringEmailAttribute,
    ArchiveStringExpression, ArchiveStringOperator, ArchiveStringToEvaluate, RetentionPeriod, Row,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const ARCHIVE: &str = "a-1111";
const BASE: OffsetDateTime = datetime!(2026-03-10 12:00 UTC);

/// A test message: id, envelope, bytes. Message `i` of the corpus is
/// received at `BASE + i minutes`.
struct Msg {
    id: &'static str,
    env_from: &'static str,
    env_to: Vec<String>,
    bytes: Vec<u8>,
}

fn msg(id: &'static str, env_from: &'static str, env_to: &[&str], bytes: &[u8]) -> Msg {
    Msg {
        id,
        env_from,
        env_to: env_to.iter().map(|s| s.to_string()).collect(),
        bytes: bytes.to_vec(),
    }
}

fn corpus() -> Vec<Msg> {
    let junk: Vec<u8> = (0u32..600)
        .map(|i| (i.wrapping_mul(7919) % 256) as u8)
        .filter(|b| *b != b':')
        .collect();
    vec![
        msg(
            "m01-plain",
            "alice@sender.test",
            &["bob@dest.test"],
            b"Received: from mx.sender.test (mx.sender.test [192.0.2.10])\r\n\tby postern.test with ESMTPS id abc;\r\n\tTue, 10 Mar 2026 12:00:00 +0000\r\n\
Received: from laptop by mx.sender.test; Tue, 10 Mar 2026 11:59:58 +0000\r\n\
From: Alice Example <alice@sender.test>\r\n\
To: Bob <bob@dest.test>\r\n\
Subject: Quarterly report\r\n\
Date: Tue, 10 Mar 2026 11:59:57 +0000\r\n\
Message-ID: <q1@sender.test>\r\n\
X-Mailer: Thunderbird 128\r\n\
X-Priority: 3 (Normal)\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
The quarterly numbers are below.\r\nRevenue grew strongly.\r\n",
        ),
        msg(
            "m02-alternative",
            "carol@sender.test",
            &["bob@dest.test", "dave@dest.test"],
            b"From: carol@sender.test\r\n\
To: bob@dest.test\r\n\
Cc: Dave <dave@dest.test>, erin@other.test\r\n\
Subject: Lunch menu\r\n\
In-Reply-To: <q1@sender.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Pizza today\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Pizza <b>today</b></p>\r\n\
--b1--\r\n",
        ),
        msg(
            "m03-attachment",
            "bounce+123@vendor.test",
            &["accounts@dest.test"],
            b"From: Billing <billing@vendor.test>\r\n\
To: accounts@dest.test\r\n\
Subject: Invoice 2026-03\r\n\
X-Original-Mailer: SAP NetWeaver\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"mix\"\r\n\
\r\n\
--mix\r\n\
Content-Type: text/plain\r\n\
\r\n\
Please find the invoice attached.\r\n\
--mix\r\n\
Content-Type: application/pdf; name=\"invoice.pdf\"\r\n\
Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n\
--mix--\r\n",
        ),
        msg(
            "m04-encoded",
            "juergen@example.de",
            &["bob@dest.test"],
            b"From: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.de>\r\n\
To: bob@dest.test\r\n\
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Sch=C3=B6ne Gr=C3=BC=C3=9Fe\r\n",
        ),
        msg(
            "m05-latin1",
            "jean@example.fr",
            &["bob@other.test"],
            b"From: jean@example.fr\r\n\
To: bob@other.test\r\n\
Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=\r\n\
X-Mailer: Outl\xf6ok\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Le caf\xe9 est pr\xeat.\r\n",
        ),
        msg(
            "m06-folded",
            "lists@sender.test",
            &["r1@dest.test", "r2@dest.test", "r3@dest.test"],
            b"From: lists@sender.test\r\n\
To: r1@dest.test,\r\n r2@dest.test,\r\n r3@dest.test,\r\n r4@dest.test,\r\n r5@dest.test\r\n\
Subject: This is a very long subject line that\r\n goes on and on across\r\n several folded lines\r\n\
\r\n\
Short body.\r\n",
        ),
        msg(
            "m07-missing",
            "",
            &["postmaster@dest.test"],
            b"X-Custom: only header\n\nA body without the usual headers.\n",
        ),
        msg("m08-junk", "x@junk.test", &["bob@dest.test"], &junk),
        msg("m09-empty", "y@junk.test", &["bob@dest.test"], b""),
        msg(
            "m10-html",
            "news@shop.test",
            &["list@dest.test"],
            b"From: Shop <news@shop.test>\r\n\
To: list@dest.test\r\n\
Subject: Newsletter 100% free_stuff\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body><h1>Big sale</h1><p>Everything must go</p></body></html>\r\n",
        ),
        msg(
            "m11-injection",
            "mallory@evil.test",
            &["bob@dest.test"],
            b"From: mallory@evil.test\r\n\
To: bob@dest.test\r\n\
Subject: Robert'); DROP TABLE messages;--\r\n\
\r\n\
little bobby tables\r\n",
        ),
    ]
}

fn received(i: usize) -> OffsetDateTime {
    BASE + Duration::minutes(i as i64)
}

fn item<'a>(archive_id: &'a str, m: &'a Msg, at: OffsetDateTime) -> StoreItem<'a> {
    StoreItem {
        archive_id,
        archived_message_id: m.id,
        received: at,
        ingress_point_id: "inp-1",
        traffic_policy_id: "tp-1",
        rule_set_id: "rs-1",
        sender_hostname: Some("mx.sender.test"),
        sender_ip: "192.0.2.10",
        tls_protocol: Some("TLSv1.3"),
        tls_cipher_suite: Some("TLS_AES_128_GCM_SHA256"),
        envelope_helo: "mx.sender.test",
        envelope_from: m.env_from,
        envelope_to: &m.env_to,
        source_arn: "arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-1",
        message: &m.bytes,
        encryption: None,
    }
}

/// Stores the corpus (half one by one, half in a batch).
async fn load(env: &Env) -> Vec<Msg> {
    let corpus = corpus();
    let items: Vec<StoreItem<'_>> = corpus
        .iter()
        .enumerate()
        .map(|(i, m)| item(ARCHIVE, m, received(i)))
        .collect();
    for it in &items[..5] {
        env.archive.store(it).await.unwrap();
    }
    env.archive.store_batch(&items[5..]).await.unwrap();
    corpus
}

fn window() -> SearchQuery {
    SearchQuery {
        from: BASE - Duration::days(1),
        to: BASE + Duration::days(1),
        filters: None,
        max_results: 100,
        full_text: None,
    }
}

fn s(attribute: ArchiveStringEmailAttribute, values: &[&str]) -> ArchiveFilterCondition {
    ArchiveFilterCondition::StringExpression(ArchiveStringExpression {
        evaluate: ArchiveStringToEvaluate::Attribute(attribute),
        operator: ArchiveStringOperator::Contains,
        values: values.iter().map(|v| v.to_string()).collect(),
    })
}

fn attachments(yes: bool) -> ArchiveFilterCondition {
    ArchiveFilterCondition::BooleanExpression(ArchiveBooleanExpression {
        evaluate: ArchiveBooleanToEvaluate::Attribute(ArchiveBooleanEmailAttribute::HasAttachments),
        operator: if yes {
            ArchiveBooleanOperator::IsTrue
        } else {
            ArchiveBooleanOperator::IsFalse
        },
    })
}

fn filtered(
    include: Vec<ArchiveFilterCondition>,
    unless: Vec<ArchiveFilterCondition>,
) -> SearchQuery {
    SearchQuery {
        filters: Some(ArchiveFilters {
            include: (!include.is_empty()).then_some(include),
            unless: (!unless.is_empty()).then_some(unless),
        }),
        ..window()
    }
}

async fn ids(env: &Env, query: &SearchQuery) -> BTreeSet<String> {
    ids_in(env, ARCHIVE, query).await
}

async fn ids_in(env: &Env, archive: &str, query: &SearchQuery) -> BTreeSet<String> {
    env.archive
        .search(archive, query)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.archived_message_id.unwrap())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn all_ids() -> BTreeSet<String> {
    corpus().iter().map(|m| m.id.to_string()).collect()
}

use ArchiveStringEmailAttribute::{Cc, EnvelopeFrom, EnvelopeTo, From, Subject, To};

// ---------------------------------------------------------------- scenarios

async fn get_message_raw_and_content(env: Env) {
    let corpus = load(&env).await;
    // Every message's bytes come back exactly.
    for m in &corpus {
        assert_eq!(
            &env.archive.raw(m.id).await.unwrap()[..],
            &m.bytes[..],
            "{}",
            m.id
        );
    }
    let got = env
        .archive
        .get_message(Some(ARCHIVE), "m01-plain")
        .await
        .unwrap();
    assert_eq!(got.object_key, "archive/a-1111/2026/03/10/m01-plain.eml");
    assert_eq!(got.size, corpus[0].bytes.len() as u64);
    assert_eq!(got.metadata.ingress_point_id.as_deref(), Some("inp-1"));
    assert_eq!(got.metadata.traffic_policy_id.as_deref(), Some("tp-1"));
    assert_eq!(got.metadata.rule_set_id.as_deref(), Some("rs-1"));
    assert_eq!(
        got.metadata.sender_ip_address.as_deref(),
        Some("192.0.2.10")
    );
    assert_eq!(
        got.metadata.sender_hostname.as_deref(),
        Some("mx.sender.test")
    );
    assert_eq!(got.metadata.tls_protocol.as_deref(), Some("TLSv1.3"));
    assert_eq!(
        got.metadata.tls_cipher_suite.as_deref(),
        Some("TLS_AES_128_GCM_SHA256")
    );
    assert_eq!(
        got.metadata.timestamp,
        Some(postern_model::Timestamp(BASE.unix_timestamp() as f64))
    );
    assert_eq!(got.envelope.helo.as_deref(), Some("mx.sender.test"));
    assert_eq!(got.envelope.from.as_deref(), Some("alice@sender.test"));
    assert_eq!(got.envelope.to, Some(vec!["bob@dest.test".to_string()]));
    // The Row of a well-formed message, field by field.
    let row = &got.row;
    assert_eq!(
        row,
        &Row {
            archived_message_id: Some("m01-plain".into()),
            received_timestamp: Some(postern_model::Timestamp(BASE.unix_timestamp() as f64)),
            date: Some("Tue, 10 Mar 2026 11:59:57 +0000".into()),
            to: Some("Bob <bob@dest.test>".into()),
            from: Some("Alice Example <alice@sender.test>".into()),
            cc: None,
            subject: Some("Quarterly report".into()),
            message_id: Some("<q1@sender.test>".into()),
            has_attachments: Some(false),
            received_headers: Some(vec![
                "from mx.sender.test (mx.sender.test [192.0.2.10])\tby postern.test with ESMTPS id abc;\tTue, 10 Mar 2026 12:00:00 +0000".into(),
                "from laptop by mx.sender.test; Tue, 10 Mar 2026 11:59:58 +0000".into(),
            ]),
            in_reply_to: None,
            x_mailer: Some("Thunderbird 128".into()),
            x_original_mailer: None,
            x_priority: Some("3 (Normal)".into()),
            ingress_point_id: Some("inp-1".into()),
            sender_hostname: Some("mx.sender.test".into()),
            sender_ip_address: Some("192.0.2.10".into()),
            envelope: Some(got.envelope.clone()),
            source_arn: Some("arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-1".into()),
        }
    );
    // The search result is the same Row.
    let found = env
        .archive
        .search(ARCHIVE, &filtered(vec![s(Subject, &["quarterly"])], vec![]))
        .await
        .unwrap();
    assert_eq!(found, vec![got.row.clone()]);

    let m2 = env
        .archive
        .get_message(None, "m02-alternative")
        .await
        .unwrap();
    assert_eq!(
        m2.row.cc.as_deref(),
        Some("Dave <dave@dest.test>, erin@other.test")
    );
    assert_eq!(m2.row.in_reply_to.as_deref(), Some("<q1@sender.test>"));
    assert_eq!(m2.envelope.to.as_ref().unwrap().len(), 2);
    let m3 = env
        .archive
        .get_message(None, "m03-attachment")
        .await
        .unwrap();
    assert_eq!(m3.row.has_attachments, Some(true));
    assert_eq!(m3.row.x_original_mailer.as_deref(), Some("SAP NetWeaver"));
    assert_eq!(
        m3.row.from.as_deref(),
        Some("Billing <billing@vendor.test>")
    );
    let m4 = env.archive.get_message(None, "m04-encoded").await.unwrap();
    assert_eq!(m4.row.subject.as_deref(), Some("Grüße aus München"));
    assert_eq!(m4.row.from.as_deref(), Some("Jürgen <juergen@example.de>"));
    let m5 = env.archive.get_message(None, "m05-latin1").await.unwrap();
    assert_eq!(m5.row.subject.as_deref(), Some("Café crème"));
    assert!(m5.row.x_mailer.is_some());
    let m6 = env.archive.get_message(None, "m06-folded").await.unwrap();
    assert_eq!(
        m6.row.subject.as_deref(),
        Some("This is a very long subject line that goes on and on across several folded lines")
    );
    assert_eq!(
        m6.row.to.as_deref(),
        Some("r1@dest.test, r2@dest.test, r3@dest.test, r4@dest.test, r5@dest.test")
    );
    let m7 = env.archive.get_message(None, "m07-missing").await.unwrap();
    assert_eq!(
        (
            &m7.row.from,
            &m7.row.to,
            &m7.row.subject,
            &m7.row.date,
            &m7.row.message_id
        ),
        (&None, &None, &None, &None, &None)
    );
    assert_eq!(m7.row.received_headers, Some(vec![]));
    assert!(!m7.malformed);
    assert_eq!(m7.envelope.from.as_deref(), Some(""));

    // Content.
    let c1 = env.archive.get_content("m01-plain").await.unwrap();
    assert_eq!(
        c1.text.as_deref(),
        Some("The quarterly numbers are below.\r\nRevenue grew strongly.\r\n")
    );
    assert_eq!((c1.html, c1.message_malformed), (None, Some(false)));
    let c2 = env.archive.get_content("m02-alternative").await.unwrap();
    assert_eq!(c2.text.as_deref(), Some("Pizza today"));
    assert_eq!(c2.html.as_deref(), Some("<p>Pizza <b>today</b></p>"));
    let c4 = env.archive.get_content("m04-encoded").await.unwrap();
    assert_eq!(c4.text.as_deref(), Some("Schöne Grüße\r\n"));
    let c5 = env.archive.get_content("m05-latin1").await.unwrap();
    assert_eq!(c5.text.as_deref(), Some("Le café est prêt.\r\n"));
    let c10 = env.archive.get_content("m10-html").await.unwrap();
    assert_eq!(c10.text, None);
    assert!(c10.html.unwrap().contains("<h1>Big sale</h1>"));
    // Malformed: stored, raw retrievable, MessageMalformed true.
    for id in ["m08-junk", "m09-empty"] {
        let c = env.archive.get_content(id).await.unwrap();
        assert_eq!(c.message_malformed, Some(true), "{id}");
        assert_eq!((c.text, c.html), (None, None), "{id}");
        let g = env.archive.get_message(Some(ARCHIVE), id).await.unwrap();
        assert!(g.malformed, "{id}");
        assert_eq!(g.row.subject, None);
    }
    assert_eq!(env.archive.raw("m09-empty").await.unwrap().len(), 0);

    // Not found.
    for err in [
        env.archive.get_message(None, "nope").await.unwrap_err(),
        env.archive
            .get_message(Some("other-archive"), "m01-plain")
            .await
            .unwrap_err(),
        env.archive.get_content("nope").await.unwrap_err(),
        env.archive.raw("nope").await.unwrap_err(),
    ] {
        assert!(matches!(err, ArchiveError::NotFound(_)), "{err}");
    }
    // The body object is where get_message says, with the exact bytes.
    let object = env
        .storage
        .get(&env.bucket, &got.object_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&object[..], &corpus[0].bytes[..]);
}

async fn search_by_each_attribute(env: Env) {
    load(&env).await;
    let q = |c| filtered(vec![c], vec![]);
    let cases: Vec<(ArchiveFilterCondition, &[&str])> = vec![
        (
            s(To, &["bob@dest"]),
            &[
                "m01-plain",
                "m02-alternative",
                "m04-encoded",
                "m11-injection",
            ],
        ),
        (
            s(To, &["BOB@DEST.TEST"]),
            &[
                "m01-plain",
                "m02-alternative",
                "m04-encoded",
                "m11-injection",
            ],
        ),
        (s(To, &["Bob <"]), &["m01-plain"]),
        (s(To, &["r4@dest"]), &["m06-folded"]),
        (s(From, &["alice"]), &["m01-plain"]),
        (s(From, &["JÜRGEN"]), &["m04-encoded"]),
        (s(From, &["billing@vendor.test"]), &["m03-attachment"]),
        (s(Cc, &["dave"]), &["m02-alternative"]),
        (s(Cc, &["erin@other"]), &["m02-alternative"]),
        (s(Subject, &["report"]), &["m01-plain"]),
        (s(Subject, &["grüße"]), &["m04-encoded"]),
        (s(Subject, &["CAFÉ CRÈME"]), &["m05-latin1"]),
        (
            s(Subject, &["that goes on and on across several"]),
            &["m06-folded"],
        ),
        (
            s(Subject, &["report", "menu"]),
            &["m01-plain", "m02-alternative"],
        ),
        (
            s(Subject, &["Robert'); DROP TABLE messages;--"]),
            &["m11-injection"],
        ),
        (s(Subject, &["100%"]), &["m10-html"]),
        (s(Subject, &["%"]), &["m10-html"]),
        (s(Subject, &["_"]), &["m10-html"]),
        (s(Subject, &["h_m"]), &[]),
        (s(Subject, &["nothing like this"]), &[]),
        (s(EnvelopeFrom, &["bounce+123"]), &["m03-attachment"]),
        (s(EnvelopeFrom, &["ALICE@SENDER.TEST"]), &["m01-plain"]),
        (s(EnvelopeTo, &["dave@dest.test"]), &["m02-alternative"]),
        (s(EnvelopeTo, &["r3@"]), &["m06-folded"]),
        (s(EnvelopeTo, &["postmaster"]), &["m07-missing"]),
        // No single recipient contains a line break.
        (s(EnvelopeTo, &["r1@dest.test\nr2"]), &[]),
        (attachments(true), &["m03-attachment"]),
    ];
    for (condition, expected) in cases {
        assert_eq!(
            ids(&env, &q(condition.clone())).await,
            set(expected),
            "{condition:?}"
        );
    }
    let mut no_attachments = all_ids();
    no_attachments.remove("m03-attachment");
    assert_eq!(ids(&env, &q(attachments(false))).await, no_attachments);
    // An empty value is contained in everything, absent headers included.
    assert_eq!(ids(&env, &q(s(Subject, &[""]))).await, all_ids());
    // Empty Values is a validation error.
    let err = env
        .archive
        .search(ARCHIVE, &q(s(Subject, &[])))
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Invalid(_)), "{err}");
    assert!(err.message().contains("Include[0]"), "{err}");
}

async fn include_and_unless(env: Env) {
    load(&env).await;
    let bob = || s(To, &["bob@dest.test"]);
    let cases: Vec<(SearchQuery, &[&str])> = vec![
        (
            filtered(vec![bob(), s(Subject, &["menu"])], vec![]),
            &["m02-alternative"],
        ),
        (
            filtered(
                vec![bob(), s(Subject, &["report"]), s(Cc, &["dave"])],
                vec![],
            ),
            &[],
        ),
        (
            filtered(vec![bob()], vec![s(Subject, &["report"])]),
            &["m02-alternative", "m04-encoded", "m11-injection"],
        ),
        (
            filtered(
                vec![bob()],
                vec![s(Subject, &["report"]), s(From, &["jürgen", "mallory"])],
            ),
            &["m02-alternative"],
        ),
        (
            filtered(vec![], vec![attachments(false)]),
            &["m03-attachment"],
        ),
        (
            filtered(vec![attachments(false)], vec![attachments(false)]),
            &[],
        ),
        (
            filtered(
                vec![s(EnvelopeTo, &["dest.test"]), attachments(true)],
                vec![],
            ),
            &["m03-attachment"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            ids(&env, &query).await,
            set(expected),
            "{:?}",
            query.filters
        );
    }
    // No filters at all, and empty filter lists: everything.
    assert_eq!(ids(&env, &window()).await, all_ids());
    assert_eq!(ids(&env, &filtered(vec![], vec![])).await, all_ids());
}

async fn time_window_order_and_max_results(env: Env) {
    let corpus = load(&env).await;
    let from = received(2);
    let to = received(4);
    let query = SearchQuery {
        from,
        to,
        ..window()
    };
    // FromTimestamp inclusive, ToTimestamp exclusive.
    assert_eq!(
        ids(&env, &query).await,
        set(&["m03-attachment", "m04-encoded"])
    );
    let one_us = Duration::microseconds(1);
    let query = SearchQuery {
        from: from + one_us,
        to: to + one_us,
        ..window()
    };
    assert_eq!(ids(&env, &query).await, set(&["m04-encoded", "m05-latin1"]));
    let empty = SearchQuery {
        from,
        to: from,
        ..window()
    };
    assert!(ids(&env, &empty).await.is_empty());
    let backwards = SearchQuery {
        from: to,
        to: from,
        ..window()
    };
    assert!(matches!(
        env.archive.search(ARCHIVE, &backwards).await.unwrap_err(),
        ArchiveError::Invalid(_)
    ));
    // Newest first.
    let rows = env.archive.search(ARCHIVE, &window()).await.unwrap();
    let got: Vec<&str> = rows
        .iter()
        .map(|r| r.archived_message_id.as_deref().unwrap())
        .collect();
    let mut expected: Vec<&str> = corpus.iter().map(|m| m.id).collect();
    expected.reverse();
    assert_eq!(got, expected);
    // MaxResults keeps the newest.
    let three = SearchQuery {
        max_results: 3,
        ..window()
    };
    let rows = env.archive.search(ARCHIVE, &three).await.unwrap();
    let got: Vec<&str> = rows
        .iter()
        .map(|r| r.archived_message_id.as_deref().unwrap())
        .collect();
    assert_eq!(got, expected[..3]);
    let zero = SearchQuery {
        max_results: 0,
        ..window()
    };
    assert!(env.archive.search(ARCHIVE, &zero).await.unwrap().is_empty());
    // Another archive sees nothing of this one.
    assert!(ids_in(&env, "a-other", &window()).await.is_empty());
    assert_eq!(
        env.archive.count(ARCHIVE).await.unwrap(),
        corpus.len() as u64
    );
    assert_eq!(env.archive.count("a-other").await.unwrap(), 0);
}

async fn full_text(env: Env) {
    load(&env).await;
    let q = |text: &str| SearchQuery {
        full_text: Some(text.to_owned()),
        ..window()
    };
    let cases: &[(&str, &[&str])] = &[
        ("quarterly revenue", &["m01-plain"]),
        ("PIZZA", &["m02-alternative"]),
        ("big sale", &["m10-html"]),
        ("café", &["m05-latin1"]),
        ("schöne", &["m04-encoded"]),
        ("pizza revenue", &[]),
        ("quarter", &[]),
        ("bobby tables", &["m11-injection"]),
        (" ,, ", &[]),
        ("", &[]),
    ];
    for (text, expected) in cases {
        assert_eq!(ids(&env, &q(text)).await, set(expected), "{text:?}");
    }
    // Combined with filters.
    let mut query = filtered(vec![s(To, &["bob"])], vec![]);
    query.full_text = Some("today".into());
    assert_eq!(ids(&env, &query).await, set(&["m02-alternative"]));
}

async fn sql_injection_finds_nothing(env: Env) {
    load(&env).await;
    let attempts = [
        "' OR '1'='1",
        "x' OR 1=1 --",
        "%' OR 1=1 --",
        "\" OR \"\"=\"",
        "\\'; DELETE FROM messages; --",
        "'); DROP TABLE messages; SELECT ('",
        "$1",
        "*/ OR 1=1 /*",
    ];
    for attribute in [To, From, Cc, Subject, EnvelopeFrom, EnvelopeTo] {
        for value in attempts {
            let query = filtered(vec![s(attribute, &[value])], vec![]);
            assert!(
                ids(&env, &query).await.is_empty(),
                "{attribute:?} {value:?}"
            );
        }
        // As Unless values they exclude nothing.
        let query = filtered(vec![], vec![s(attribute, &attempts)]);
        assert_eq!(ids(&env, &query).await, all_ids(), "{attribute:?}");
    }
    for text in [
        "\" OR *",
        "' OR 1=1",
        "NEAR(a b)",
        "x\" OR \"y",
        "a:b",
        "NOT pizza",
        "pizza OR revenue",
    ] {
        let query = SearchQuery {
            full_text: Some(text.into()),
            ..window()
        };
        assert!(ids(&env, &query).await.is_empty(), "{text:?}");
    }
    // In the archive id too.
    assert!(ids_in(&env, "' OR '1'='1", &window()).await.is_empty());
    assert_eq!(
        env.archive.count(ARCHIVE).await.unwrap(),
        corpus().len() as u64
    );
}

async fn idempotent_store(env: Env) {
    let corpus = corpus();
    let first = item(ARCHIVE, &corpus[0], BASE);
    env.archive.store(&first).await.unwrap();
    env.archive.store(&first).await.unwrap();
    env.archive.store_batch(&[first, first]).await.unwrap();
    assert_eq!(env.archive.count(ARCHIVE).await.unwrap(), 1);
    // The same id again with other bytes and time replaces nothing.
    let other = corpus[1].bytes.clone();
    let mut again = item(ARCHIVE, &corpus[0], BASE + Duration::days(3));
    again.message = &other;
    env.archive.store(&again).await.unwrap();
    assert_eq!(
        &env.archive.raw("m01-plain").await.unwrap()[..],
        &corpus[0].bytes[..]
    );
    let got = env.archive.get_message(None, "m01-plain").await.unwrap();
    assert_eq!(got.row.subject.as_deref(), Some("Quarterly report"));
    assert_eq!(got.object_key, "archive/a-1111/2026/03/10/m01-plain.eml");
    // The id belongs to one archive.
    let elsewhere = item("a-2222", &corpus[0], BASE);
    let err = env.archive.store(&elsewhere).await.unwrap_err();
    assert!(matches!(err, ArchiveError::Invalid(_)), "{err}");
    // Invalid ids.
    for (archive, id) in [("a/b", "m"), ("a", "../m"), ("", "m"), ("a", "")] {
        let mut bad = item(archive, &corpus[1], BASE);
        bad.archived_message_id = id;
        let err = env.archive.store(&bad).await.unwrap_err();
        assert!(
            matches!(err, ArchiveError::Invalid(_)),
            "{archive:?} {id:?}: {err}"
        );
    }
    // Opening again (the migrations already applied) keeps everything.
    let reopened = env.reopen(vec![]).await;
    assert_eq!(reopened.count(ARCHIVE).await.unwrap(), 1);
}

async fn retention_expire_and_purge(env: Env) {
    let corpus = corpus();
    let now = datetime!(2026-06-15 08:00 UTC);
    let cutoff = retention::cutoff(RetentionPeriod::ThreeMonths, now).unwrap();
    assert_eq!(cutoff, datetime!(2026-03-15 08:00 UTC));
    let one_us = Duration::microseconds(1);
    let outside = item(ARCHIVE, &corpus[0], cutoff - one_us);
    let at_cutoff = item(ARCHIVE, &corpus[1], cutoff);
    let inside = item(ARCHIVE, &corpus[2], cutoff + one_us);
    let other_archive = item("a-other", &corpus[3], cutoff - Duration::days(400));
    for it in [outside, at_cutoff, inside, other_archive] {
        env.archive.store(&it).await.unwrap();
    }
    let outside_key = env
        .archive
        .get_message(None, "m01-plain")
        .await
        .unwrap()
        .object_key;
    assert!(
        env.storage
            .get(&env.bucket, &outside_key)
            .await
            .unwrap()
            .is_some()
    );
    // PERMANENT keeps everything.
    assert_eq!(retention::cutoff(RetentionPeriod::Permanent, now), None);
    // Expire: strictly before the cutoff.
    assert_eq!(env.archive.expire(ARCHIVE, cutoff).await.unwrap(), 1);
    assert!(matches!(
        env.archive
            .get_message(None, "m01-plain")
            .await
            .unwrap_err(),
        ArchiveError::NotFound(_)
    ));
    assert_eq!(
        env.storage.get(&env.bucket, &outside_key).await.unwrap(),
        None
    );
    assert_eq!(env.archive.count(ARCHIVE).await.unwrap(), 2);
    assert_eq!(env.archive.count("a-other").await.unwrap(), 1);
    assert!(env.archive.raw("m02-alternative").await.is_ok());
    assert!(env.archive.raw("m03-attachment").await.is_ok());
    assert_eq!(env.archive.expire(ARCHIVE, cutoff).await.unwrap(), 0);
    // The message just inside goes one microsecond later.
    assert_eq!(
        env.archive.expire(ARCHIVE, cutoff + one_us).await.unwrap(),
        1
    );
    // Full text is gone with the row (SQLite's FTS rows are deleted too).
    let q = SearchQuery {
        from: cutoff - Duration::days(1),
        to: cutoff + Duration::days(1),
        full_text: Some("pizza".into()),
        ..window()
    };
    assert!(ids(&env, &q).await.is_empty());
    // Purge.
    let kept_key = env
        .archive
        .get_message(None, "m03-attachment")
        .await
        .unwrap()
        .object_key;
    assert_eq!(env.archive.purge(ARCHIVE).await.unwrap(), 1);
    assert_eq!(env.archive.count(ARCHIVE).await.unwrap(), 0);
    assert_eq!(env.storage.get(&env.bucket, &kept_key).await.unwrap(), None);
    assert_eq!(env.archive.count("a-other").await.unwrap(), 1);
    // A purged id can be archived again.
    env.archive.store(&inside).await.unwrap();
    assert_eq!(env.archive.count(ARCHIVE).await.unwrap(), 1);
}

async fn export_round_trip(env: Env) {
    let corpus = load(&env).await;
    let destination = ExportDestination {
        storage: env.storage.clone(),
        bucket: env.export_bucket.clone(),
        prefix: "exports/e1/".into(),
    };
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let progress = move |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let never = AtomicBool::new(false);
    let n = env
        .archive
        .export(ARCHIVE, &window(), &destination, false, &progress, &never)
        .await
        .unwrap();
    assert_eq!(n, corpus.len() as u64);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.first(), Some(&(0, n)));
    assert_eq!(calls.last(), Some(&(n, n)));
    for m in &corpus {
        let eml = env
            .storage
            .get(&env.export_bucket, &format!("exports/e1/{}.eml", m.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&eml[..], &m.bytes[..], "{}", m.id);
        let json = env
            .storage
            .get(&env.export_bucket, &format!("exports/e1/{}.json", m.id))
            .await
            .unwrap();
        assert_eq!(json, None, "{}", m.id);
    }
    // With metadata, filtered, and MaxResults.
    let destination = ExportDestination {
        prefix: "exports/e2/".into(),
        ..destination
    };
    let mut query = filtered(vec![s(To, &["bob@dest.test"])], vec![]);
    query.max_results = 3;
    let n = env
        .archive
        .export(ARCHIVE, &query, &destination, true, &|_, _| {}, &never)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let rows = env.archive.search(ARCHIVE, &query).await.unwrap();
    for row in &rows {
        let id = row.archived_message_id.as_deref().unwrap();
        let json = env
            .storage
            .get(&env.export_bucket, &format!("exports/e2/{id}.json"))
            .await
            .unwrap()
            .unwrap();
        let exported: Row = serde_json::from_slice(&json).unwrap();
        assert_eq!(&exported, row);
        assert!(
            env.storage
                .get(&env.export_bucket, &format!("exports/e2/{id}.eml"))
                .await
                .unwrap()
                .is_some()
        );
    }
    // m01 is the oldest of the bob messages: not among the newest 3.
    assert!(
        env.storage
            .get(&env.export_bucket, "exports/e2/m01-plain.eml")
            .await
            .unwrap()
            .is_none()
    );
    // Cancelled after two messages.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let progress = move |done: u64, _total: u64| {
        if done == 2 {
            flag.store(true, Ordering::SeqCst);
        }
    };
    let destination = ExportDestination {
        prefix: "exports/e3/".into(),
        ..destination
    };
    let n = env
        .archive
        .export(ARCHIVE, &window(), &destination, false, &progress, &cancel)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let newest = corpus.last().unwrap().id;
    assert!(
        env.storage
            .get(&env.export_bucket, &format!("exports/e3/{newest}.eml"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        env.storage
            .get(&env.export_bucket, "exports/e3/m01-plain.eml")
            .await
            .unwrap()
            .is_none()
    );
}

async fn encryption_at_rest(env: Env) {
    let corpus = corpus();
    let key = EncryptionKey::from_bytes("k-2026", &[0x42; 32]);
    let mut it = item(ARCHIVE, &corpus[0], BASE);
    it.encryption = Some(&key);
    let mut it2 = item(ARCHIVE, &corpus[1], BASE + Duration::minutes(1));
    it2.encryption = Some(&key);
    env.archive.store(&it).await.unwrap();
    env.archive.store_batch(&[it2]).await.unwrap();
    let got = env.archive.get_message(None, "m01-plain").await.unwrap();
    assert_eq!(got.key_id.as_deref(), Some("k-2026"));
    // The object is not the plaintext.
    let object = env
        .storage
        .get(&env.bucket, &got.object_key)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(&object[..], &corpus[0].bytes[..]);
    assert!(object.starts_with(b"POSTERN-ARCHIVE-AES256GCM\n"));
    for needle in [&b"Quarterly"[..], b"alice@sender.test", b"Revenue"] {
        assert!(!object.windows(needle.len()).any(|w| w == needle));
    }
    // The index still answers (it is not encrypted).
    assert_eq!(
        ids(&env, &filtered(vec![s(Subject, &["quarterly"])], vec![])).await,
        set(&["m01-plain"])
    );
    // The archive opened with the key decrypts.
    let with_key = env.reopen(vec![key.clone()]).await;
    assert_eq!(
        &with_key.raw("m01-plain").await.unwrap()[..],
        &corpus[0].bytes[..]
    );
    assert_eq!(
        &with_key.raw("m02-alternative").await.unwrap()[..],
        &corpus[1].bytes[..]
    );
    assert_eq!(
        with_key
            .get_content("m02-alternative")
            .await
            .unwrap()
            .text
            .as_deref(),
        Some("Pizza today")
    );
    // Without the key, or with another key of the same id: clear errors.
    let err = env.archive.raw("m01-plain").await.unwrap_err();
    assert!(matches!(err, ArchiveError::Storage(_)), "{err}");
    assert!(
        err.message().contains("k-2026") && err.message().contains("not configured"),
        "{err}"
    );
    let wrong = env
        .reopen(vec![EncryptionKey::from_bytes("k-2026", &[0x43; 32])])
        .await;
    let err = wrong.raw("m01-plain").await.unwrap_err();
    assert!(err.message().contains("does not decrypt"), "{err}");
    assert!(wrong.get_content("m01-plain").await.is_err());
    // Export writes plaintext.
    let destination = ExportDestination {
        storage: env.storage.clone(),
        bucket: env.export_bucket.clone(),
        prefix: "enc/".into(),
    };
    let never = AtomicBool::new(false);
    let n = with_key
        .export(ARCHIVE, &window(), &destination, false, &|_, _| {}, &never)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let eml = env
        .storage
        .get(&env.export_bucket, "enc/m01-plain.eml")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&eml[..], &corpus[0].bytes[..]);
    // An export without the key fails rather than writing ciphertext.
    assert!(
        env.archive
            .export(ARCHIVE, &window(), &destination, false, &|_, _| {}, &never)
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------- wiring

macro_rules! backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite_directory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(Env::new(Kind::SqliteDirectory, vec![]).await).await;
                }
            )*
        }
        mod postgres_s3 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(Env::new(Kind::PostgresS3, vec![]).await).await;
                }
            )*
        }
    };
}

backends!(
    get_message_raw_and_content,
    search_by_each_attribute,
    include_and_unless,
    time_window_order_and_max_results,
    full_text,
    sql_injection_finds_nothing,
    idempotent_store,
    retention_expire_and_purge,
    export_round_trip,
    encryption_at_rest,
);
