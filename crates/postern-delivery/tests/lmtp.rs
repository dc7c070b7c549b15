//! The LMTP client against a real Dovecot LMTP server (RFC 2033: one
//! reply per accepted recipient after the final dot), over TCP and over a
//! Unix socket. Needs Dovecot: `apt-get install dovecot-lmtpd`.

#[path = "support/dovecot.rs"]
mod dovecot_support;
#[path = "support/peers.rs"]
mod peers;

use dovecot_support::dovecot;

use postern_delivery::{
    ClientSettings, Endpoint, Protocol, RecipientOutcome, TlsPolicy, Transaction, deliver,
};
use std::path::Path;
use std::time::Duration;

fn settings() -> ClientSettings {
    ClientSettings {
        helo_name: "postern.test".into(),
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
        extra_roots: Vec::new(),
    }
}

fn new_files(maildir: &Path) -> Vec<String> {
    match std::fs::read_dir(maildir.join("new")) {
        Ok(entries) => entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

const MESSAGE: &[u8] =
    b"From: a@sender.test\nTo: alice@example.test\nSubject: lmtp test\n\nhello\n.dot line\n";

#[tokio::test]
async fn one_reply_per_recipient_over_tcp() {
    let server = dovecot().await;
    let recipients: Vec<String> = [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tx = Transaction {
        mail_from: "a@sender.test",
        recipients: &recipients,
        message: MESSAGE,
    };
    let outcomes = deliver(
        &settings(),
        Protocol::Lmtp,
        &Endpoint::Tcp {
            host: "dovecot.test".into(),
            addr: server.addr,
        },
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    for (i, user) in [(0, "alice"), (2, "carol")] {
        match &outcomes[i] {
            RecipientOutcome::Delivered(reply) => {
                assert_eq!(reply.code, 250);
                assert_eq!(reply.status.as_deref(), Some("2.0.0"));
                // Dovecot names the recipient in each reply: the replies
                // were matched to the right recipients.
                assert!(
                    reply.text.starts_with(&format!("<{user}@example.test>")),
                    "{reply}"
                );
            }
            other => panic!("{user}: {other:?}"),
        }
    }
    match &outcomes[1] {
        RecipientOutcome::Failed {
            reason,
            reply: Some(reply),
        } => {
            assert_eq!(reply.code, 550);
            assert_eq!(reply.status.as_deref(), Some("5.1.1"));
            assert!(reason.contains("in reply to RCPT TO"), "{reason}");
        }
        other => panic!("bob: {other:?}"),
    }
    for user in ["alice", "carol"] {
        let files = new_files(&server.mail.join(format!("{user}@example.test")));
        assert_eq!(files.len(), 1, "{user}: {files:?}");
        assert!(files[0].contains("Subject: lmtp test"), "{}", files[0]);
        assert!(files[0].contains("\n.dot line"), "{}", files[0]);
    }
    assert!(!server.mail.join("bob@example.test").exists());
}

#[tokio::test]
async fn over_a_unix_socket_and_nobody_accepted() {
    let server = dovecot().await;
    let recipients = vec!["alice@example.test".to_string()];
    let tx = Transaction {
        mail_from: "",
        recipients: &recipients,
        message: MESSAGE,
    };
    let endpoint = Endpoint::Unix(server.socket.clone());
    let outcomes = deliver(
        &settings(),
        Protocol::Lmtp,
        &endpoint,
        TlsPolicy::Opportunistic,
        None,
        &tx,
    )
    .await
    .unwrap();
    assert!(
        matches!(&outcomes[0], RecipientOutcome::Delivered(r) if r.code == 250),
        "{outcomes:?}"
    );
    assert_eq!(new_files(&server.mail.join("alice@example.test")).len(), 1);

    // Only unknown recipients: each fails, no DATA.
    let recipients = vec![
        "bob@example.test".to_string(),
        "dave@example.test".to_string(),
    ];
    let tx = Transaction {
        recipients: &recipients,
        ..tx
    };
    let outcomes = deliver(
        &settings(),
        Protocol::Lmtp,
        &endpoint,
        TlsPolicy::Disabled,
        None,
        &tx,
    )
    .await
    .unwrap();
    for outcome in &outcomes {
        assert!(
            matches!(outcome, RecipientOutcome::Failed { reply: Some(r), .. } if r.code == 550),
            "{outcomes:?}"
        );
    }
}
