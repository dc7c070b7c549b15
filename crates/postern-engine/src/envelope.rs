//! What the SMTP session knows about a message: the connection, the
//! envelope and the client certificate.

use postern_model::RuleClientCertificateAttribute;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsProtocol {
    /// TLS 1.0 or 1.1: encrypted, but below every minimum the model offers.
    Legacy,
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientCertificate {
    /// Values of each attribute; SANs may have several.
    pub attributes: Vec<(RuleClientCertificateAttribute, String)>,
}

impl ClientCertificate {
    pub fn values(&self, attribute: RuleClientCertificateAttribute) -> impl Iterator<Item = &str> {
        self.attributes
            .iter()
            .filter(move |(a, _)| *a == attribute)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub sender_ip: IpAddr,
    pub helo: Option<String>,
    /// `None` for a plaintext session.
    pub tls: Option<TlsProtocol>,
    /// The session was TLS from its first byte (implicit TLS).
    pub tls_wrapped: bool,
    pub client_certificate: Option<ClientCertificate>,
    /// The MAIL FROM address, empty for the null sender `<>`.
    pub mail_from: String,
    /// RCPT TO addresses exactly as received (subaddress included).
    pub recipients: Vec<String>,
    /// The SIZE= the client declared, if any.
    pub declared_size: Option<u64>,
}

impl Envelope {
    pub fn new(sender_ip: IpAddr, mail_from: &str, recipients: &[&str]) -> Envelope {
        Envelope {
            sender_ip,
            helo: None,
            tls: None,
            tls_wrapped: false,
            client_certificate: None,
            mail_from: mail_from.to_string(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            declared_size: None,
        }
    }
}
