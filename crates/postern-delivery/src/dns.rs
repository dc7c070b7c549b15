//! Mail exchangers for a domain (RFC 5321 §5.1), on hickory-resolver.
//!
//! - MX records sorted by preference, equal preferences shuffled, each
//!   with its A and AAAA addresses (an exchanger whose names don't
//!   resolve is kept with no addresses: the caller skips it, and if no
//!   exchanger has an address the answer is Temporary).
//! - No MX record: the domain itself is the implicit MX (preference 0).
//! - Null MX (RFC 7505: a single "0 ."): Permanent.
//! - NXDOMAIN: Permanent. SERVFAIL, REFUSED, timeouts, I/O: Temporary.
//! - An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) needs no DNS.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A DNS client for MX lookups.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

/// One mail exchanger and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanger {
    /// Without the trailing dot.
    pub host: String,
    pub preference: u16,
    pub addrs: Vec<IpAddr>,
}

/// Why there are no exchangers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// Try again later (SERVFAIL, timeout, no address for any exchanger).
    Temporary(String),
    /// The domain does not accept mail (NXDOMAIN, null MX, invalid name).
    Permanent(String),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::Temporary(s) | DnsError::Permanent(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for DnsError {}

/// The resolver configuration `Server.Dns` describes, shared by every part
/// of the gateway that asks DNS (MX lookups, authentication, block lists):
/// `nameservers` empty: the system's resolv.conf, else exactly these (UDP,
/// and TCP for truncated answers); one attempt bounded by `timeout`; names
/// are absolute (no search domain is appended).
pub fn resolver_config(
    nameservers: &[SocketAddr],
    timeout: Duration,
) -> Result<(ResolverConfig, ResolverOpts), String> {
    let (config, mut opts) = if nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                server
            })
            .collect();
        (
            ResolverConfig::from_parts(None, Vec::new(), servers),
            ResolverOpts::default(),
        )
    };
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.ndots = 0;
    Ok((config, opts))
}

/// The answer to one query, negative answers separated from failures.
enum Answer {
    Records(Vec<RData>),
    NoData,
    NxDomain,
}

impl Dns {
    /// `nameservers` empty: the system's resolv.conf. Else exactly these
    /// (UDP, and TCP for truncated answers), e.g. 127.0.0.1:5353 in tests.
    /// `timeout` is per query attempt; answers are not cached.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<Dns, String> {
        let (config, mut opts) = resolver_config(nameservers, timeout)?;
        opts.cache_size = 0;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    /// Mail exchangers for a domain, best first (see the module doc).
    pub async fn mail_exchangers(&self, domain: &str) -> Result<Vec<Exchanger>, DnsError> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            return address_literal(literal).map(|addr| {
                vec![Exchanger {
                    host: domain.to_string(),
                    preference: 0,
                    addrs: vec![addr],
                }]
            });
        }
        let name = fqdn(domain)?;
        let mut exchangers = match self.query(&name, RecordType::MX).await? {
            Answer::NxDomain => {
                return Err(DnsError::Permanent(format!(
                    "{domain}: domain not found (NXDOMAIN)"
                )));
            }
            Answer::NoData => {
                // RFC 5321 §5.1: the domain itself, as if it had an MX of 0.
                let addrs = self.addresses(&name).await?;
                if addrs.is_empty() {
                    return Err(DnsError::Permanent(format!(
                        "{domain}: no MX, A or AAAA record"
                    )));
                }
                return Ok(vec![Exchanger {
                    host: trim_dot(&name),
                    preference: 0,
                    addrs,
                }]);
            }
            Answer::Records(records) => {
                let mut mx: Vec<(u16, Name)> = records
                    .into_iter()
                    .filter_map(|r| match r {
                        RData::MX(mx) => Some((mx.preference, mx.exchange)),
                        _ => None,
                    })
                    .collect();
                if mx.iter().any(|(_, exchange)| exchange.is_root()) {
                    // RFC 7505 §3: a null MX is the only MX; if others
                    // are published too, the domain is still misconfigured
                    // for mail and we don't guess.
                    return Err(DnsError::Permanent(format!(
                        "{domain}: the domain does not accept mail (null MX, RFC 7505)"
                    )));
                }
                shuffle(&mut mx);
                mx.sort_by_key(|(preference, _)| *preference);
                mx.dedup_by(|a, b| a.1 == b.1);
                mx
            }
        }
        .into_iter()
        .map(|(preference, exchange)| (preference, exchange, Vec::new()))
        .collect::<Vec<_>>();

        let mut last_error = None;
        for (_, exchange, addrs) in &mut exchangers {
            match self.addresses(exchange).await {
                Ok(found) => *addrs = found,
                Err(e) => last_error = Some(e),
            }
        }
        let exchangers: Vec<Exchanger> = exchangers
            .into_iter()
            .map(|(preference, exchange, addrs)| Exchanger {
                host: trim_dot(&exchange),
                preference,
                addrs,
            })
            .collect();
        if exchangers.iter().all(|e| e.addrs.is_empty()) {
            let why = last_error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no A or AAAA record".into());
            let hosts: Vec<&str> = exchangers.iter().map(|e| e.host.as_str()).collect();
            return Err(DnsError::Temporary(format!(
                "{domain}: no address for any mail exchanger ({}): {why}",
                hosts.join(", ")
            )));
        }
        Ok(exchangers)
    }

    /// TXT records of `name`, each one's strings concatenated.
    pub async fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, DnsError> {
        let name = fqdn(name)?;
        match self.query(&name, RecordType::TXT).await? {
            Answer::Records(records) => Ok(records
                .into_iter()
                .filter_map(|r| match r {
                    RData::TXT(txt) => Some(txt.txt_data.iter().flat_map(|s| s.to_vec()).collect()),
                    _ => None,
                })
                .collect()),
            Answer::NoData => Ok(Vec::new()),
            Answer::NxDomain => Err(DnsError::Permanent(format!(
                "{name}: domain not found (NXDOMAIN)"
            ))),
        }
    }

    /// A and AAAA of `name`, IPv4 first. NXDOMAIN and no data are an empty
    /// list; a failure of both queries is an error.
    async fn addresses(&self, name: &Name) -> Result<Vec<IpAddr>, DnsError> {
        let (a, aaaa) = tokio::join!(
            self.query(name, RecordType::A),
            self.query(name, RecordType::AAAA)
        );
        let mut addrs = Vec::new();
        let mut error = None;
        for answer in [a, aaaa] {
            match answer {
                Ok(Answer::Records(records)) => {
                    addrs.extend(records.into_iter().filter_map(|r| match r {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                        _ => None,
                    }))
                }
                Ok(_) => {}
                Err(e) => error = Some(e),
            }
        }
        match error {
            Some(e) if addrs.is_empty() => Err(e),
            _ => Ok(addrs),
        }
    }

    async fn query(&self, name: &Name, kind: RecordType) -> Result<Answer, DnsError> {
        match self.resolver.lookup(name.clone(), kind).await {
            Ok(lookup) => {
                let records: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == kind)
                    .map(|r| r.data.clone())
                    .collect();
                Ok(if records.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records(records)
                })
            }
            Err(e) => classify(name, kind, e),
        }
    }
}

fn classify(name: &Name, kind: RecordType, error: NetError) -> Result<Answer, DnsError> {
    let what = format!("{} {kind}", trim_dot(name));
    match &error {
        NetError::Dns(HickoryDnsError::NoRecordsFound(no)) => match no.response_code {
            ResponseCode::NXDomain => Ok(Answer::NxDomain),
            ResponseCode::NoError => Ok(Answer::NoData),
            code => Err(DnsError::Temporary(format!("{what}: {code}"))),
        },
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => {
            Err(DnsError::Temporary(format!("{what}: {code}")))
        }
        NetError::Timeout => Err(DnsError::Temporary(format!("{what}: timeout"))),
        _ => Err(DnsError::Temporary(format!("{what}: {error}"))),
    }
}

fn fqdn(domain: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_str_relaxed(domain)
        .map_err(|e| DnsError::Permanent(format!("{domain}: invalid domain name: {e}")))?;
    name.set_fqdn(true);
    Ok(name)
}

fn trim_dot(name: &Name) -> String {
    let text = name.to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_string()
}

/// `192.0.2.1` or `IPv6:2001:db8::1` (RFC 5321 §4.1.3).
fn address_literal(literal: &str) -> Result<IpAddr, DnsError> {
    let parsed = match literal.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => literal[5..]
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6),
        _ => literal.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    };
    parsed.ok_or_else(|| DnsError::Permanent(format!("[{literal}]: invalid address literal")))
}

/// Shuffles so that equal preferences come out in random order once the
/// (stable) sort by preference has run. Randomness from the std hasher's
/// per-process random keys: good enough to spread load.
fn shuffle<T>(items: &mut [T]) {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for i in (1..items.len()).rev() {
        let mut hasher = state.build_hasher();
        hasher.write_usize(i);
        let j = (hasher.finish() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(
            address_literal("192.0.2.1"),
            Ok("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            address_literal("IPv6:2001:db8::1"),
            Ok("2001:db8::1".parse().unwrap())
        );
        assert!(matches!(
            address_literal("2001:db8::1"),
            Err(DnsError::Permanent(_))
        ));
        assert!(matches!(address_literal("x"), Err(DnsError::Permanent(_))));
    }

    #[test]
    fn shuffle_keeps_items() {
        let mut v: Vec<u32> = (0..20).collect();
        shuffle(&mut v);
        v.sort();
        assert_eq!(v, (0..20).collect::<Vec<_>>());
    }
}
