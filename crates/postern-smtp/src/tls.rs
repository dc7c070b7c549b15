//! TLS for STARTTLS and implicit TLS: a certificate and key from files, or a
//! self-signed pair generated once and kept under the data directory.

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Loads a PEM certificate chain and private key.
pub fn load(
    cert: &Path,
    key: &Path,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no certificate", cert.display()),
        ));
    }
    let key = rustls_pemfile::private_key(&mut io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no private key", key.display()),
            )
        })?;
    Ok((certs, key))
}

/// The self-signed pair under `dir` (`tls/cert.pem`, `tls/key.pem`),
/// generated for `hostname` on first use.
pub fn self_signed(
    dir: &Path,
    hostname: &str,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let tls_dir = dir.join("tls");
    let cert = tls_dir.join("cert.pem");
    let key = tls_dir.join("key.pem");
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(&tls_dir)?;
        let generated =
            rcgen::generate_simple_self_signed(vec![hostname.to_string(), "localhost".to_string()])
                .map_err(|e| io::Error::other(format!("cannot generate a certificate: {e}")))?;
        write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, generated.cert.pem())?;
    }
    load(&cert, &key)
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?
    };
    #[cfg(not(unix))]
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)
}

/// A server config for the given pair; with a trust store, client
/// certificates are required and verified against it (MTLS).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<(
        rustls::RootCertStore,
        Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
    )>,
) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?;
    let builder = match client_roots {
        Some((roots, crls)) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .with_crls(crls)
            .build()
            .map_err(|e| io::Error::other(format!("trust store: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("certificate and key: {e}"),
        )
    })?;
    Ok(Arc::new(config))
}

/// Certificate revocation lists from PEM text (CrlContent).
pub fn crls(
    pem: &str,
) -> io::Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>> {
    rustls_pemfile::crls(&mut pem.as_bytes()).collect()
}

/// A trust store from PEM text (an MTLS ingress point's CAContent).
pub fn trust_store(ca_pem: &str) -> io::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert?).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("CA certificate: {e}"))
        })?;
        found += 1;
    }
    if found == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no CA certificate in the trust store",
        ));
    }
    Ok(roots)
}

/// The attributes of a client certificate that rules can read.
pub fn certificate_attributes(
    der: &[u8],
) -> Vec<(postern_model::RuleClientCertificateAttribute, String)> {
    use postern_model::RuleClientCertificateAttribute as A;
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for cn in cert.subject().iter_common_name() {
        if let Ok(text) = cn.as_str() {
            out.push((A::Cn, text.to_string()));
        }
    }
    out.push((A::SerialNumber, cert.raw_serial_as_string()));
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(v) => out.push((A::SanRfc822Name, v.to_string())),
                GeneralName::DNSName(v) => out.push((A::SanDnsName, v.to_string())),
                GeneralName::URI(v) => out.push((A::SanUniformResourceIdentifier, v.to_string())),
                GeneralName::DirectoryName(v) => out.push((A::SanDirectoryName, v.to_string())),
                GeneralName::RegisteredID(v) => out.push((A::SanRegisteredId, v.to_id_string())),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => Some(std::net::IpAddr::from(
                            <[u8; 4]>::try_from(*bytes).expect("4 bytes"),
                        )),
                        16 => Some(std::net::IpAddr::from(
                            <[u8; 16]>::try_from(*bytes).expect("16 bytes"),
                        )),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        out.push((A::SanIpAddress, ip.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    out
}
