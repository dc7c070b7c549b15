//! The Received header this gateway adds (RFC 5321 4.4), with the protocol
//! types of RFC 3848 (ESMTPS, ESMTPSA, UTF8SMTPS, ...).

use postern_smtp::SessionMeta;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

pub fn received(
    meta: &SessionMeta,
    hostname: &str,
    queue_id: &str,
    recipient: Option<&str>,
) -> String {
    let mut protocol = String::from(if meta.smtputf8 {
        "UTF8SMTP"
    } else if meta.esmtp {
        "ESMTP"
    } else {
        "SMTP"
    });
    if meta.esmtp || meta.smtputf8 {
        if meta.tls.is_some() {
            protocol.push('S');
        }
        if meta.authenticated.is_some() {
            protocol.push('A');
        }
    }
    let when = OffsetDateTime::from_unix_timestamp(meta.received_at as i64)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc2822)
        .unwrap_or_default();
    let helo = clean(&meta.helo);
    let host = meta
        .sender_hostname
        .as_deref()
        .map(clean)
        .unwrap_or_else(|| "unknown".into());
    let mut value = format!(
        "from {helo} ({host} [{}])\r\n\tby {hostname} (Postern) with {protocol} id {queue_id}",
        meta.sender_ip
    );
    if let Some(tls) = &meta.tls {
        value += &format!(
            "\r\n\t(version={} cipher={})",
            clean(&tls.protocol),
            clean(&tls.cipher)
        );
    }
    if let Some(rcpt) = recipient {
        value += &format!("\r\n\tfor <{}>", clean(rcpt));
    }
    value += &format!(";\r\n\t{when}");
    value
}

/// What the client said, made safe for a header: printable, no CR or LF.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' {
                '?'
            } else {
                c
            }
        })
        .take(255)
        .collect()
}
