//! Delivery status notifications (RFC 3464 in a multipart/report, RFC 6522):
//! about recipients the outbound queue could not deliver to, and the ones
//! a Bounce action asks for.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

/// One recipient's entry in a DSN.
#[derive(Debug, Clone)]
pub struct FailedRecipient {
    pub recipient: String,
    /// Enhanced status code, e.g. "5.1.1".
    pub status: String,
    /// The host that answered, when one did.
    pub remote_mta: Option<String>,
    /// `smtp; 550 5.1.1 user unknown`, or a reason of Postern's own.
    pub diagnostic: String,
}

/// What a DSN says.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The reporting MTA (Server.Hostname).
    pub reporting_mta: &'a str,
    /// The From address of the DSN.
    pub from: &'a str,
    /// The original envelope sender, to whom the DSN goes.
    pub to: &'a str,
    /// The queue id of the original message.
    pub queue_id: &'a str,
    /// Unique per DSN: the left part of its Message-ID.
    pub report_id: &'a str,
    /// When the original message arrived (seconds since the Unix epoch).
    pub arrival: f64,
    pub recipients: &'a [FailedRecipient],
    /// The human-readable explanation; a default one when None.
    pub text: Option<&'a str>,
    /// The original message; its header goes into the DSN.
    pub original: &'a [u8],
}

/// The header section of a message (up to and including the blank line),
/// or the whole message when it has no body.
fn header_section(message: &[u8]) -> &[u8] {
    let crlf = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2);
    let lf = message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1);
    match (crlf, lf) {
        (Some(a), Some(b)) => &message[..a.min(b)],
        (Some(a), None) => &message[..a],
        (None, Some(b)) => &message[..b],
        (None, None) => message,
    }
}

/// A field value cannot hold a line break.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

pub fn build(report: &Report) -> Vec<u8> {
    let arrival = Date::new(report.arrival as i64).to_rfc822();
    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nX-Postern-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        one_line(report.reporting_mta),
        one_line(report.queue_id),
        arrival
    );
    let now = Date::now().to_rfc822();
    for r in report.recipients {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            one_line(&r.recipient),
            one_line(&r.status)
        ));
        if let Some(mta) = &r.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(mta)));
        }
        status.push_str(&format!(
            "Diagnostic-Code: {}\r\nLast-Attempt-Date: {now}\r\n",
            one_line(&r.diagnostic)
        ));
    }

    let text = match report.text {
        Some(text) => text.to_string(),
        None => {
            let mut text = format!(
                "This is the mail system at host {}.\r\n\r\nYour message could not be delivered to one or more recipients.\r\nIt is attached below.\r\n\r\n",
                report.reporting_mta
            );
            for r in report.recipients {
                text.push_str(&format!("<{}>: {}\r\n", r.recipient, r.diagnostic));
            }
            text
        }
    };

    let original = String::from_utf8_lossy(header_section(report.original)).into_owned();
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "utf-8"),
                text,
            ),
            MimePart::new(ContentType::new("message/delivery-status"), status),
            MimePart::new(ContentType::new("text/rfc822-headers"), original),
        ],
    );
    MessageBuilder::new()
        .from(("Mail Delivery System", report.from))
        .to(report.to)
        .subject("Undelivered Mail Returned to Sender")
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .date(Date::now())
        .message_id(format!("{}.dsn@{}", report.report_id, report.reporting_mta))
        .body(body)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;

    #[test]
    fn a_dsn_is_a_delivery_status_report_with_the_original_header() {
        let original = b"From: a@x.example\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let dsn = build(&Report {
            reporting_mta: "mx.test",
            from: "MAILER-DAEMON@mx.test",
            to: "a@x.example",
            queue_id: "Q1",
            report_id: "J1",
            arrival: 1_700_000_000.0,
            recipients: &[FailedRecipient {
                recipient: "b@y.example".into(),
                status: "5.1.1".into(),
                remote_mta: Some("mx.y.example".into()),
                diagnostic: "smtp; 550 5.1.1 no such user".into(),
            }],
            text: None,
            original,
        });
        let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        let ct = parsed.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(parsed.parts.len(), 4);
        let text = String::from_utf8_lossy(&dsn);
        assert!(text.contains("Final-Recipient: rfc822; b@y.example\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.y.example\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user"), "{text}");
        assert!(text.contains("Reporting-MTA: dns; mx.test"));
        assert!(text.contains("Subject: hello"));
        assert!(!text.contains("secret body"), "only the header is returned");
        assert!(text.contains("Auto-Submitted: auto-replied"));
        assert!(text.contains("Message-ID: <J1.dsn@mx.test>"), "{text}");
    }

    #[test]
    fn values_cannot_break_the_report_lines() {
        let dsn = build(&Report {
            reporting_mta: "mx.test",
            from: "MAILER-DAEMON@mx.test",
            to: "a@x.example",
            queue_id: "Q1",
            report_id: "J2",
            arrival: 0.0,
            recipients: &[FailedRecipient {
                recipient: "b@y.example".into(),
                status: "5.0.0".into(),
                remote_mta: None,
                diagnostic: "smtp; 550 x\r\nInjected: yes".into(),
            }],
            text: Some("custom text"),
            original: b"Subject: x\r\n",
        });
        let text = String::from_utf8_lossy(&dsn);
        assert!(!text.contains("\r\nInjected: yes"));
        assert!(text.contains("custom text"));
    }
}
