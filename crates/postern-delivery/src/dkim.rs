//! DKIM signing (RFC 6376, RFC 8463) with mail-auth 0.13 (ring): RSA-SHA256 and
//! Ed25519-SHA256, relaxed/relaxed.
//!
//! The key is chosen by the author's domain (the From header): a key for
//! that domain or for a parent of it; the most specific one wins. Only the
//! listed header fields that are present are signed, so that a later hop
//! may still add, say, a Reply-To it lacks (signing absent fields would
//! forbid that).

use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

/// The header fields signed when present, in this order.
const SIGNED: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

enum Secret {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

/// A private key with the domain (`d=`) and selector (`s=`) it signs for.
pub struct DkimKey {
    domain: String,
    selector: String,
    secret: Secret,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithm = match self.secret {
            Secret::Rsa(_) => "rsa-sha256",
            Secret::Ed25519(_) => "ed25519-sha256",
        };
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &algorithm)
            .finish()
    }
}

impl DkimKey {
    /// An RSA key (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY") or an
    /// Ed25519 key (PKCS#8 "PRIVATE KEY") in PEM.
    pub fn from_pem(domain: &str, selector: &str, pem: &str) -> Result<DkimKey, String> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || selector.trim().is_empty() {
            return Err("a DKIM key needs a domain and a selector".into());
        }
        let context = format!("DKIM key {selector}._domainkey.{domain}");
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("{context}: no private key in the PEM text: {e}"))?;
        let secret = match der {
            PrivateKeyDer::Pkcs1(_) => Secret::Rsa(
                RsaKey::<Sha256>::from_key_der(der)
                    .map_err(|e| format!("{context}: invalid RSA key: {e}"))?,
            ),
            PrivateKeyDer::Pkcs8(ref pkcs8) => {
                // "maybe unchecked": OpenSSL writes PKCS#8 v1, without the public key.
                match Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                    Ok(key) => Secret::Ed25519(key),
                    Err(_) => Secret::Rsa(RsaKey::<Sha256>::from_key_der(der).map_err(|e| {
                        format!("{context}: a PKCS#8 key that is neither RSA nor Ed25519: {e}")
                    })?),
                }
            }
            PrivateKeyDer::Sec1(_) => {
                return Err(format!(
                    "{context}: an EC (SEC1) key; DKIM keys are RSA or Ed25519"
                ));
            }
            _ => return Err(format!("{context}: unsupported key format")),
        };
        Ok(DkimKey {
            domain,
            selector: selector.trim().to_string(),
            secret,
        })
    }

    /// The signing domain (`d=`), lowercase.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    fn sign(&self, headers: &[&str], message: &[u8]) -> Result<String, String> {
        DkimSigner::from_key(Borrowed(&self.secret))
            .domain(self.domain.clone())
            .selector(self.selector.clone())
            .headers(headers.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .map(|signature| signature.to_header())
            .map_err(|e| format!("DKIM signing for {} failed: {e}", self.domain))
    }
}

/// The key, lent to a signer built for one message (the signed header
/// list differs per message; the signer owns its key).
struct Borrowed<'a>(&'a Secret);

impl SigningKey for Borrowed<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        match self.0 {
            Secret::Rsa(key) => key.sign(input),
            Secret::Ed25519(key) => key.sign(input),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self.0 {
            Secret::Rsa(key) => key.algorithm(),
            Secret::Ed25519(key) => key.algorithm(),
        }
    }
}

/// The DKIM-Signature header (with trailing CRLF) to put on top of
/// `message`, signed by the key whose domain equals the From header's
/// domain or is a parent of it (the longest such domain); `None` if no key
/// applies or the message has no From address.
pub fn sign(keys: &[DkimKey], message: &[u8]) -> Result<Option<String>, String> {
    let fields = header_fields(message);
    let Some(from) = fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("From"))
        .and_then(|(_, value)| address_domain(value))
    else {
        return Ok(None);
    };
    let key = keys
        .iter()
        .filter(|k| {
            from == k.domain
                || (from.len() > k.domain.len()
                    && from.ends_with(&k.domain)
                    && from.as_bytes()[from.len() - k.domain.len() - 1] == b'.')
        })
        .max_by_key(|k| k.domain.len());
    let Some(key) = key else {
        return Ok(None);
    };
    let present: Vec<&str> = SIGNED
        .iter()
        .copied()
        .filter(|wanted| {
            fields
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
        })
        .collect();
    key.sign(&present, message).map(Some)
}

/// The header section's fields as (name, unfolded value).
fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(&text);
            }
            continue;
        }
        match text.split_once(':') {
            Some((name, value)) => fields.push((name.trim().to_string(), value.to_string())),
            // Not a header line: the header section is malformed; stop.
            None => break,
        }
    }
    fields
}

/// The domain of the first address in a From value, lowercase:
/// `"A. B" <a@Example.COM>` and `a@example.com (A)` both give
/// `example.com`.
fn address_domain(value: &str) -> Option<String> {
    let address = match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value
            .split([',', ' ', '\t', '('])
            .find(|part| part.contains('@'))?,
    };
    let (_, domain) = address.trim().rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domains() {
        assert_eq!(
            address_domain(" \"A, B\" <a@Example.COM>").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            address_domain(" a@b.example (A)").as_deref(),
            Some("b.example")
        );
        assert_eq!(address_domain(" undisclosed"), None);
    }

    #[test]
    fn folded_headers() {
        let fields = header_fields(b"From: a\r\n <a@x.test>\r\nSubject: s\r\n\r\nFrom: body@y\r\n");
        assert_eq!(fields.len(), 2);
        assert_eq!(address_domain(&fields[0].1).as_deref(), Some("x.test"));
    }

    #[test]
    fn bad_pem() {
        let err = DkimKey::from_pem("x.test", "s", "not a key").unwrap_err();
        assert!(err.contains("no private key"), "{err}");
    }
}
