//! Scans through a real clamd, started by the test with a configuration and
//! a signature database written into a temporary directory (nothing is
//! downloaded: the only signature is the test's own, for EICAR).

#[path = "../../postern-delivery/tests/support/peers.rs"]
mod peers;

#[path = "support/clamd.rs"]
mod clamd_support;

use clamd_support::{eicar, email_with_attachment as email, reported_signature};
use postern_addons::{AddonError, ClamResult, Clamd, ClamdAddress};
use std::net::SocketAddr;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn scans_over_tcp_and_unix_socket() {
    let running = clamd_support::start().await;
    let infected = email(&eicar());
    let clean = email(b"Quarterly figures: all fine.\r\n");
    for address in [
        ClamdAddress::Tcp(running.tcp),
        ClamdAddress::Unix(running.unix.clone()),
    ] {
        let clamd = Clamd::new(address.clone(), TIMEOUT);
        clamd.ping().await.unwrap();
        let found = clamd.scan(&infected).await.unwrap();
        assert!(found.infected, "{address}: {found:?}");
        let signature = found.signature.unwrap();
        // clamd marks signatures from unsigned databases as UNOFFICIAL.
        assert_eq!(signature, reported_signature(), "{address}");
        assert_eq!(
            clamd.scan(&clean).await,
            Ok(ClamResult {
                infected: false,
                signature: None
            }),
            "{address}"
        );
        // The raw EICAR string alone, not in an email.
        assert!(clamd.scan(&eicar()).await.unwrap().infected, "{address}");
        assert!(!clamd.scan(b"").await.unwrap().infected, "{address}");
    }

    // Larger than StreamMaxLength (1 MiB).
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', 3 << 20));
    for address in [
        ClamdAddress::Tcp(running.tcp),
        ClamdAddress::Unix(running.unix.clone()),
    ] {
        let error = Clamd::new(address.clone(), TIMEOUT)
            .scan(&big)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, AddonError::Protocol(m) if m.contains("StreamMaxLength")),
            "{address}: {error}"
        );
    }
}

#[tokio::test]
async fn clamd_not_running_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = SocketAddr::from(([127, 0, 0, 1], peers::free_port()));
    for address in [
        ClamdAddress::Tcp(tcp),
        ClamdAddress::Unix(dir.path().join("missing.sock")),
    ] {
        let clamd = Clamd::new(address.clone(), TIMEOUT);
        let error = clamd.scan(b"Subject: x\r\n\r\nx\r\n").await.unwrap_err();
        assert!(
            matches!(error, AddonError::Unavailable(_)),
            "{address}: {error}"
        );
        let error = clamd.ping().await.unwrap_err();
        assert!(
            matches!(error, AddonError::Unavailable(_)),
            "{address}: {error}"
        );
    }
}
