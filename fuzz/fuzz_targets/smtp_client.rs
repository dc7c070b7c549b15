//! Arbitrary bytes from a peer (what a hostile relay, mail exchanger or
//! LMTP server may answer) against the SMTP and LMTP client, over a unix
//! socket: no panic, no hang past the timeouts, and one outcome per
//! recipient when the session got that far.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_delivery::{ClientSettings, Endpoint, Protocol, TlsPolicy, Transaction, deliver};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let (lmtp, script) = match data.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => (false, data),
    };
    runtime().block_on(async {
        let dir = std::env::temp_dir().join(format!("postern-fuzz-client-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("peer.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let script = script.to_vec();
        let peer = tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(&script).await;
                let _ = socket.shutdown().await;
                // Read what the client says until it closes, so writes do
                // not fail before the script is consumed.
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut sink).await;
            }
        });
        let settings = ClientSettings {
            helo_name: "fuzz.example".into(),
            connect_timeout: Duration::from_millis(200),
            command_timeout: Duration::from_millis(200),
            data_timeout: Duration::from_millis(200),
            extra_roots: Vec::new(),
        };
        let recipients = vec!["a@example.test".to_string(), "b@example.test".to_string()];
        let tx = Transaction {
            mail_from: "s@example.test",
            recipients: &recipients,
            message: b"Subject: x\r\n\r\n.\r\nbody\r\n",
        };
        let protocol = if lmtp { Protocol::Lmtp } else { Protocol::Smtp };
        if let Ok(outcomes) =
            deliver(&settings, protocol, &Endpoint::Unix(path.clone()), TlsPolicy::Disabled, None, &tx).await
        {
            assert_eq!(outcomes.len(), recipients.len());
        }
        peer.abort();
    });
});
