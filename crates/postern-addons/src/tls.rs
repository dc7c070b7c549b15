//! The rustls client configuration for an Rspamd reached over HTTPS: the
//! ring provider, as everywhere in Postern, and the platform's trust store.

use std::sync::Arc;

use rustls::ClientConfig;

/// A client configuration verifying servers against the platform's roots.
/// ALPN offers HTTP/1.1 only.
pub(crate) fn client_config() -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
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
