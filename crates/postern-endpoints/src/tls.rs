//! The rustls client configuration for outbound HTTPS (the HTTP endpoints
//! and S3): the ring provider, as everywhere in Postern, and the platform's
//! trust store with the configured extra roots added.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;

/// A client configuration verifying servers against the platform's roots
/// plus `extra_roots`. ALPN offers HTTP/1.1 only.
pub(crate) fn client_config(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = if extra_roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
    }
    .map_err(|e| format!("TLS trust store: {e}"))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
