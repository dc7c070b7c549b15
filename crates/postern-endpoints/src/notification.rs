//! The JSON documents Postern sends for actions, shaped like Amazon SES's
//! (see "Contents of notifications for Amazon SES email receiving" and the
//! SES Lambda event), and the parsing of a Lambda function's answer.
//!
//! All functions are pure: the same [`MailFacts`] give the same document.
//! The message is parsed with mail-parser only to list its headers and read
//! the common ones; a message that does not parse gives empty `headers` and
//! `commonHeaders`, never an error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::{Address, MessageParser};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// Headers in a HEADERS notification, a Lambda event and a Q Business
/// document: at most this many bytes of names and values.
pub const HEADERS_LIMIT: usize = 100 * 1024;
/// Headers in a CONTENT notification (which carries the whole message too).
pub const CONTENT_HEADERS_LIMIT: usize = 20 * 1024;

/// What the documents say about one message and one action.
#[derive(Debug, Clone)]
pub struct MailFacts<'a> {
    /// Postern's queue id.
    pub message_id: &'a str,
    /// When the message was received.
    pub timestamp: OffsetDateTime,
    /// The envelope MAIL FROM (`""` for `<>`).
    pub source: &'a str,
    /// The envelope recipients this action is for.
    pub destination: &'a [String],
    /// The whole message as delivered (headers added by rules included).
    pub message: &'a [u8],
    /// From receipt to this action.
    pub processing_time_ms: u64,
    /// Verdicts, e.g. `PASS`, `FAIL`, `GRAY`, `PROCESSING_FAILED`.
    pub spf: &'a str,
    pub dkim: &'a str,
    pub dmarc: &'a str,
    pub spam: &'a str,
    pub virus: &'a str,
}

/// How the message is written into a CONTENT notification
/// (`SnsNotificationEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The raw message as text; bytes that are not UTF-8 become U+FFFD.
    Utf8,
    /// The raw message in standard base64, byte for byte.
    Base64,
}

/// What an SNS notification carries (`SnsNotificationPayloadType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    /// `mail` with up to [`HEADERS_LIMIT`] of headers; no `content`.
    Headers,
    /// `content` (the message) and up to [`CONTENT_HEADERS_LIMIT`] of headers.
    Content,
}

/// The SES "Received" notification for an SNS action.
///
/// `receipt.action` is `{"type":"SNS","topicArn":..,"encoding":"UTF8"|"BASE64"}`;
/// `content` is present for [`PayloadType::Content`] only.
pub fn sns_notification(
    facts: &MailFacts,
    topic_arn: &str,
    encoding: Encoding,
    payload: PayloadType,
) -> Value {
    let limit = match payload {
        PayloadType::Headers => HEADERS_LIMIT,
        PayloadType::Content => CONTENT_HEADERS_LIMIT,
    };
    let encoding_name = match encoding {
        Encoding::Utf8 => "UTF8",
        Encoding::Base64 => "BASE64",
    };
    let action = json!({"type": "SNS", "topicArn": topic_arn, "encoding": encoding_name});
    let mut document = Map::new();
    document.insert("notificationType".into(), "Received".into());
    document.insert("mail".into(), mail_object(facts, limit).0);
    document.insert("receipt".into(), receipt_object(facts, action));
    if payload == PayloadType::Content {
        let content = match encoding {
            Encoding::Utf8 => String::from_utf8_lossy(facts.message).into_owned(),
            Encoding::Base64 => BASE64.encode(facts.message),
        };
        document.insert("content".into(), content.into());
    }
    Value::Object(document)
}

/// The event a Lambda function receives: one record with `mail` (headers,
/// no content) and `receipt` whose action is
/// `{"type":"Lambda","functionArn":..,"invocationType":..}`.
pub fn lambda_event(facts: &MailFacts, function_arn: &str, invocation_type: &str) -> Value {
    let action = json!({
        "type": "Lambda",
        "functionArn": function_arn,
        "invocationType": invocation_type,
    });
    json!({
        "Records": [{
            "eventSource": "aws:ses",
            "eventVersion": "1.0",
            "ses": {
                "mail": mail_object(facts, HEADERS_LIMIT).0,
                "receipt": receipt_object(facts, action),
            }
        }]
    })
}

/// What Postern POSTs for DeliverToQBusiness: the message as one document
/// (id = queue id, title = decoded subject or `""`, content = base64 of the
/// message) plus the `mail` object.
pub fn qbusiness_document(facts: &MailFacts, application_id: &str, index_id: &str) -> Value {
    let (mail, subject) = mail_object(facts, HEADERS_LIMIT);
    json!({
        "applicationId": application_id,
        "indexId": index_id,
        "document": {
            "id": facts.message_id,
            "title": subject.unwrap_or_default(),
            "contentType": "message/rfc822",
            "content": BASE64.encode(facts.message),
        },
        "mail": mail,
    })
}

/// What a `REQUEST_RESPONSE` Lambda function asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Go on with the rule's next action.
    Continue,
    /// Skip the rest of this rule's actions.
    StopRule,
    /// Skip the rest of the rule set for this message.
    StopRuleSet,
}

/// Reads a function's answer: `{"disposition":"CONTINUE"|"STOP_RULE"|"STOP_RULE_SET"}`,
/// values case-insensitive. An empty body, `null`, or an object without
/// `disposition` means [`Disposition::Continue`]. Anything else is an error
/// saying what was wrong.
pub fn parse_disposition(body: &[u8]) -> Result<Disposition, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Disposition::Continue);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("function response is not JSON: {e}"))?;
    let object = match value {
        Value::Null => return Ok(Disposition::Continue),
        Value::Object(object) => object,
        other => {
            return Err(format!(
                "function response must be a JSON object or null, found {}",
                json_kind(&other)
            ));
        }
    };
    match object.get("disposition") {
        None => Ok(Disposition::Continue),
        Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
            "CONTINUE" => Ok(Disposition::Continue),
            "STOP_RULE" => Ok(Disposition::StopRule),
            "STOP_RULE_SET" => Ok(Disposition::StopRuleSet),
            _ => Err(format!(
                "function response: disposition must be one of CONTINUE, STOP_RULE, \
                 STOP_RULE_SET; found {s:?}"
            )),
        },
        Some(other) => Err(format!(
            "function response: disposition must be a string, found {}",
            json_kind(other)
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const ISO_8601_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `2015-09-11T20:32:33.936Z`.
fn iso8601(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(ISO_8601_MILLIS)
        .unwrap_or_default()
}

/// `receipt`: the verdicts and the action. Its timestamp is when the action
/// was triggered: the receipt time plus the processing time.
fn receipt_object(facts: &MailFacts, action: Value) -> Value {
    let triggered = facts.timestamp
        + time::Duration::milliseconds(i64::try_from(facts.processing_time_ms).unwrap_or(i64::MAX));
    json!({
        "timestamp": iso8601(triggered),
        "processingTimeMillis": facts.processing_time_ms,
        "recipients": facts.destination,
        "spamVerdict": {"status": facts.spam},
        "virusVerdict": {"status": facts.virus},
        "spfVerdict": {"status": facts.spf},
        "dkimVerdict": {"status": facts.dkim},
        "dmarcVerdict": {"status": facts.dmarc},
        "action": action,
    })
}

/// `mail`, with headers up to `limit` bytes (names plus values), and the
/// decoded subject.
fn mail_object(facts: &MailFacts, limit: usize) -> (Value, Option<String>) {
    let parsed = MessageParser::default().parse_headers(facts.message);
    let mut headers = Vec::new();
    let mut truncated = false;
    let mut common = Map::new();
    let mut subject = None;
    if let Some(message) = &parsed {
        let raw = facts.message;
        let mut used = 0usize;
        for header in message.headers() {
            let name = raw_name(
                raw,
                header.offset_field as usize,
                header.offset_start as usize,
            );
            let value = unfold(slice(
                raw,
                header.offset_start as usize,
                header.offset_end as usize,
            ));
            used += name.len() + value.len();
            if used > limit {
                truncated = true;
                break;
            }
            headers.push(json!({"name": name, "value": value}));
        }

        let return_path = message
            .header_raw("Return-Path")
            .map(|v| unfold(v.as_bytes()))
            .map(|v| v.trim_start_matches('<').trim_end_matches('>').to_owned())
            .or_else(|| (!facts.source.is_empty()).then(|| facts.source.to_owned()));
        if let Some(return_path) = return_path {
            common.insert("returnPath".into(), return_path.into());
        }
        for (key, address) in [
            ("from", message.from()),
            ("sender", message.sender()),
            ("replyTo", message.reply_to()),
            ("to", message.to()),
            ("cc", message.cc()),
            ("bcc", message.bcc()),
        ] {
            if let Some(address) = address {
                common.insert(key.into(), addresses(address).into());
            }
        }
        if let Some(date) = message.header_raw("Date") {
            common.insert("date".into(), unfold(date.as_bytes()).into());
        }
        if let Some(id) = message.header_raw("Message-ID") {
            common.insert("messageId".into(), unfold(id.as_bytes()).into());
        }
        if let Some(s) = message.subject() {
            common.insert("subject".into(), s.into());
            subject = Some(s.to_owned());
        }
    }
    let mail = json!({
        "timestamp": iso8601(facts.timestamp),
        "source": facts.source,
        "messageId": facts.message_id,
        "destination": facts.destination,
        "headersTruncated": truncated,
        "headers": headers,
        "commonHeaders": common,
    });
    (mail, subject)
}

fn slice(raw: &[u8], start: usize, end: usize) -> &[u8] {
    raw.get(start..end.max(start)).unwrap_or_default()
}

/// The field name as written: from the start of the field to the colon.
fn raw_name(raw: &[u8], field_start: usize, value_start: usize) -> String {
    let field = slice(raw, field_start, value_start);
    let name = field.split(|&b| b == b':').next().unwrap_or_default();
    String::from_utf8_lossy(name).trim().to_owned()
}

/// The value with line folds removed (the whitespace after each fold is
/// kept) and surrounding whitespace trimmed.
fn unfold(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let unfolded: String = text.chars().filter(|&c| c != '\r' && c != '\n').collect();
    unfolded.trim().to_owned()
}

/// `["Jane Doe <jane@example.com>", "bob@example.com"]`; group members are
/// listed without the group.
fn addresses(address: &Address) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |name: Option<&str>, email: Option<&str>| {
        let email = email.unwrap_or_default();
        match name.filter(|n| !n.is_empty()) {
            Some(name) if email.is_empty() => out.push(name.to_owned()),
            Some(name) => out.push(format!("{} <{email}>", quote_name(name))),
            None if !email.is_empty() => out.push(email.to_owned()),
            None => {}
        }
    };
    match address {
        Address::List(list) => {
            for addr in list {
                push(addr.name.as_deref(), addr.address.as_deref());
            }
        }
        Address::Group(groups) => {
            for group in groups {
                for addr in &group.addresses {
                    push(addr.name.as_deref(), addr.address.as_deref());
                }
            }
        }
    }
    out
}

/// A display name as a phrase: quoted when it holds RFC 5322 specials.
fn quote_name(name: &str) -> String {
    if name.contains(|c: char| "()<>[]:;@\\,.\"".contains(c)) {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"Return-Path: <bounce@sender.example>\r\n\
Received: from mx.sender.example\r\n\tby postern; Fri, 11 Sep 2015 20:32:33 +0000\r\n\
From: \"Doe, Jane\" <jane@sender.example>\r\n\
To: bob@example.com, Carol <carol@example.com>\r\n\
Cc: dave@example.com\r\n\
Subject: =?utf-8?q?Caf=C3=A9?= menu\r\n\
Date: Fri, 11 Sep 2015 20:32:32 +0000\r\n\
Message-ID: <abc@sender.example>\r\n\
X-Postern-Added: yes\r\n\
\r\n\
Body \xff line\r\n";

    fn facts<'a>(message: &'a [u8], destination: &'a [String]) -> MailFacts<'a> {
        MailFacts {
            message_id: "q-0001",
            timestamp: time::macros::datetime!(2015-09-11 20:32:33.936 UTC),
            source: "bounce@sender.example",
            destination,
            message,
            processing_time_ms: 222,
            spf: "PASS",
            dkim: "FAIL",
            dmarc: "GRAY",
            spam: "PASS",
            virus: "PROCESSING_FAILED",
        }
    }

    fn rcpts() -> Vec<String> {
        vec!["bob@example.com".to_owned()]
    }

    #[test]
    fn sns_headers_notification_fields() {
        let rcpts = rcpts();
        let doc = sns_notification(
            &facts(MESSAGE, &rcpts),
            "arn:aws:sns:us-east-1:123456789012:t",
            Encoding::Utf8,
            PayloadType::Headers,
        );
        assert_eq!(doc["notificationType"], "Received");
        assert!(doc.get("content").is_none());
        let mail = &doc["mail"];
        assert_eq!(mail["timestamp"], "2015-09-11T20:32:33.936Z");
        assert_eq!(mail["source"], "bounce@sender.example");
        assert_eq!(mail["messageId"], "q-0001");
        assert_eq!(mail["destination"], json!(["bob@example.com"]));
        assert_eq!(mail["headersTruncated"], false);
        let headers = mail["headers"].as_array().unwrap();
        assert_eq!(headers.len(), 9);
        assert_eq!(
            headers[0],
            json!({"name": "Return-Path", "value": "<bounce@sender.example>"})
        );
        assert_eq!(
            headers[1],
            json!({"name": "Received", "value": "from mx.sender.example\tby postern; Fri, 11 Sep 2015 20:32:33 +0000"})
        );
        assert_eq!(
            headers[8],
            json!({"name": "X-Postern-Added", "value": "yes"})
        );
        let common = &mail["commonHeaders"];
        assert_eq!(common["returnPath"], "bounce@sender.example");
        assert_eq!(
            common["from"],
            json!(["\"Doe, Jane\" <jane@sender.example>"])
        );
        assert_eq!(
            common["to"],
            json!(["bob@example.com", "Carol <carol@example.com>"])
        );
        assert_eq!(common["cc"], json!(["dave@example.com"]));
        assert!(common.get("bcc").is_none());
        assert_eq!(common["date"], "Fri, 11 Sep 2015 20:32:32 +0000");
        assert_eq!(common["messageId"], "<abc@sender.example>");
        assert_eq!(common["subject"], "Café menu");

        let receipt = &doc["receipt"];
        assert_eq!(receipt["timestamp"], "2015-09-11T20:32:34.158Z");
        assert_eq!(receipt["processingTimeMillis"], 222);
        assert_eq!(receipt["recipients"], json!(["bob@example.com"]));
        assert_eq!(receipt["spfVerdict"], json!({"status": "PASS"}));
        assert_eq!(receipt["dkimVerdict"], json!({"status": "FAIL"}));
        assert_eq!(receipt["dmarcVerdict"], json!({"status": "GRAY"}));
        assert_eq!(receipt["spamVerdict"], json!({"status": "PASS"}));
        assert_eq!(
            receipt["virusVerdict"],
            json!({"status": "PROCESSING_FAILED"})
        );
        assert_eq!(
            receipt["action"],
            json!({"type": "SNS", "topicArn": "arn:aws:sns:us-east-1:123456789012:t", "encoding": "UTF8"})
        );
    }

    #[test]
    fn content_utf8_is_lossy_and_base64_is_exact() {
        let rcpts = rcpts();
        let f = facts(MESSAGE, &rcpts);
        let utf8 = sns_notification(&f, "arn", Encoding::Utf8, PayloadType::Content);
        let text = utf8["content"].as_str().unwrap();
        assert!(text.starts_with("Return-Path: <bounce@sender.example>\r\n"));
        assert!(text.ends_with("Body \u{fffd} line\r\n"));

        let b64 = sns_notification(&f, "arn", Encoding::Base64, PayloadType::Content);
        assert_eq!(b64["receipt"]["action"]["encoding"], "BASE64");
        let decoded = BASE64.decode(b64["content"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, MESSAGE);
    }

    /// A message whose headers total about 60 KB: complete in a HEADERS
    /// notification (100 KB), truncated in a CONTENT one (20 KB).
    #[test]
    fn header_truncation_limits() {
        let mut message = Vec::new();
        for i in 0..60 {
            message
                .extend_from_slice(format!("X-Filler-{i:02}: {}\r\n", "v".repeat(1000)).as_bytes());
        }
        message.extend_from_slice(b"Subject: big\r\n\r\nbody\r\n");
        let rcpts = rcpts();
        let f = facts(&message, &rcpts);

        let headers = sns_notification(&f, "arn", Encoding::Utf8, PayloadType::Headers);
        assert_eq!(headers["mail"]["headersTruncated"], false);
        assert_eq!(headers["mail"]["headers"].as_array().unwrap().len(), 61);

        let content = sns_notification(&f, "arn", Encoding::Utf8, PayloadType::Content);
        assert_eq!(content["mail"]["headersTruncated"], true);
        let kept = content["mail"]["headers"].as_array().unwrap();
        assert_eq!(kept.len(), 20, "20 headers of 1011 bytes fit in 20 KiB");
        assert_eq!(kept[19]["name"], "X-Filler-19");
        // commonHeaders are read from the whole header section.
        assert_eq!(content["mail"]["commonHeaders"]["subject"], "big");

        let mut huge = Vec::new();
        for i in 0..120 {
            huge.extend_from_slice(format!("X-Filler-{i:03}: {}\r\n", "v".repeat(1000)).as_bytes());
        }
        huge.extend_from_slice(b"\r\nbody\r\n");
        let f = facts(&huge, &rcpts);
        let headers = sns_notification(&f, "arn", Encoding::Utf8, PayloadType::Headers);
        assert_eq!(headers["mail"]["headersTruncated"], true);
        assert_eq!(headers["mail"]["headers"].as_array().unwrap().len(), 101);
    }

    #[test]
    fn lambda_event_shape() {
        let rcpts = rcpts();
        let event = lambda_event(
            &facts(MESSAGE, &rcpts),
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "RequestResponse",
        );
        let records = event["Records"].as_array().unwrap();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record["eventSource"], "aws:ses");
        assert_eq!(record["eventVersion"], "1.0");
        let ses = &record["ses"];
        assert_eq!(ses["mail"]["messageId"], "q-0001");
        assert!(ses["mail"].get("content").is_none());
        assert!(ses.get("content").is_none());
        assert_eq!(ses["mail"]["commonHeaders"]["subject"], "Café menu");
        assert_eq!(
            ses["receipt"]["action"],
            json!({
                "type": "Lambda",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                "invocationType": "RequestResponse"
            })
        );
        assert_eq!(ses["receipt"]["spfVerdict"]["status"], "PASS");
    }

    #[test]
    fn qbusiness_document_shape() {
        let rcpts = rcpts();
        let doc = qbusiness_document(&facts(MESSAGE, &rcpts), "app-1", "index-1");
        assert_eq!(doc["applicationId"], "app-1");
        assert_eq!(doc["indexId"], "index-1");
        assert_eq!(doc["document"]["id"], "q-0001");
        assert_eq!(doc["document"]["title"], "Café menu");
        assert_eq!(doc["document"]["contentType"], "message/rfc822");
        let content = BASE64
            .decode(doc["document"]["content"].as_str().unwrap())
            .unwrap();
        assert_eq!(content, MESSAGE);
        assert_eq!(doc["mail"]["messageId"], "q-0001");
    }

    #[test]
    fn unparseable_message_gives_empty_headers() {
        let rcpts = rcpts();
        let mut f = facts(b"", &rcpts);
        f.source = "";
        let doc = sns_notification(&f, "arn", Encoding::Utf8, PayloadType::Headers);
        assert_eq!(doc["mail"]["headers"], json!([]));
        assert_eq!(doc["mail"]["commonHeaders"], json!({}));
        assert_eq!(doc["mail"]["source"], "");
    }

    #[test]
    fn dispositions() {
        use Disposition::*;
        let ok: &[(&[u8], Disposition)] = &[
            (b"", Continue),
            (b"  \n", Continue),
            (b"null", Continue),
            (b"{}", Continue),
            (b"{\"other\":1}", Continue),
            (b"{\"disposition\":\"CONTINUE\"}", Continue),
            (b"{\"disposition\":\"stop_rule\"}", StopRule),
            (b"{\"disposition\":\"Stop_Rule_Set\"}", StopRuleSet),
        ];
        for (body, expected) in ok {
            assert_eq!(
                parse_disposition(body),
                Ok(*expected),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let bad: &[(&[u8], &str)] = &[
            (b"STOP_RULE", "not JSON"),
            (b"[1]", "found an array"),
            (b"\"STOP_RULE\"", "found a string"),
            (
                b"{\"disposition\":3}",
                "disposition must be a string, found a number",
            ),
            (b"{\"disposition\":\"HALT\"}", "found \"HALT\""),
        ];
        for (body, expected) in bad {
            let err = parse_disposition(body).unwrap_err();
            assert!(
                err.contains(expected),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
