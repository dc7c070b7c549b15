//! Arbitrary messages (what any sender may send) into the SES-shaped
//! documents of PublishToSns, InvokeLambda and DeliverToQBusiness, and
//! arbitrary function answers into the disposition parser: no panic, and
//! the documents are JSON objects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_endpoints::notification::{
    Encoding, MailFacts, PayloadType, lambda_event, parse_disposition, qbusiness_document,
    sns_notification,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_disposition(data);
    let destination = vec!["a@example.test".to_string()];
    let facts = MailFacts {
        message_id: "Q1",
        timestamp: time::OffsetDateTime::UNIX_EPOCH,
        source: "s@example.test",
        destination: &destination,
        message: data,
        processing_time_ms: 1,
        spf: "PASS",
        dkim: "PASS",
        dmarc: "PASS",
        spam: "DISABLED",
        virus: "DISABLED",
    };
    for encoding in [Encoding::Utf8, Encoding::Base64] {
        for payload in [PayloadType::Headers, PayloadType::Content] {
            let doc = sns_notification(&facts, "arn:aws:sns:us-east-1:000000000000:t", encoding, payload);
            assert!(doc.is_object());
        }
    }
    assert!(lambda_event(&facts, "arn:aws:lambda:us-east-1:000000000000:function:f", "Event").is_object());
    assert!(qbusiness_document(&facts, "app", "index").is_object());
});
