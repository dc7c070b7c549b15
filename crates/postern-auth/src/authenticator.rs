//! [`Authenticator`]: runs SPF, DKIM and ARC at once, then DMARC (which
//! needs the first two), all within one deadline, and builds the verdicts,
//! the Authentication-Results header and the trace details.

use crate::cache::{CAPACITY, Caches, TtlCache};
use crate::dmarc;
use crate::header::{self, ResInfo};
use crate::offline::{self, OfflineServer};
use crate::records::DnsRecords;
use crate::verdict::{self, DmarcPolicy, SignatureResult, Verdict};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, DkimOutput, DmarcResult, MX, MessageAuthenticator, Parameters,
    RecordSet, SpfOutput, SpfResult, Txt,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Per lookup and in all, for [`Authenticator::offline`]: a loopback
/// server answers in microseconds; this only bounds a wedged machine.
const OFFLINE_TIMEOUT: Duration = Duration::from_secs(30);

/// What authentication reads about one message.
pub struct AuthInput<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// The MAIL FROM address without angle brackets; "" for `<>`.
    pub mail_from: &'a str,
    /// The message as received.
    pub message: &'a [u8],
    /// The gateway's host name (Server.Hostname): the authserv-id, and
    /// SPF's `%{r}`.
    pub authserv_id: &'a str,
}

/// The verdicts, the header and the details for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    pub spf: Verdict,
    pub dkim: Verdict,
    pub dmarc: DmarcPolicy,
    /// ARC chain validation: Pass / Fail / Gray when there is no ARC set /
    /// ProcessingFailed on DNS trouble.
    pub arc: Verdict,
    /// The full `Authentication-Results: ...\r\n` header (RFC 8601) for this
    /// gateway: spf, dkim (one per signature), dmarc, arc.
    pub header: String,
    /// Human-readable details for the message trace, one per result, e.g.
    /// "spf=softfail (ip 203.0.113.5 not permitted by sender.test) smtp.mailfrom=a@sender.test".
    pub details: Vec<String>,
}

/// Where DNS answers come from: the network (cached by TTL), or fixed
/// records (offline rule tests). Cheap to clone; shared by all workers.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    /// Err: the offline server could not start; every check is then
    /// ProcessingFailed with this reason.
    dns: Result<MessageAuthenticator, String>,
    caches: Caches,
    timeout: Duration,
    _offline: Option<OfflineServer>,
}

type Params<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Authenticator {
    /// `nameservers` empty: /etc/resolv.conf; else exactly these (UDP, TCP
    /// for truncated answers). Answers are cached by TTL in mail-auth's
    /// caches (parsed records, 4096 entries per kind) and hickory's own
    /// (bounded; it also keeps negative answers). `timeout` bounds every
    /// lookup and the whole authentication: what a timeout leaves
    /// undecided is ProcessingFailed, never a hang.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<Authenticator, String> {
        if timeout.is_zero() {
            return Err("the authentication timeout must be more than zero".into());
        }
        let (config, mut opts) = postern_delivery::dns::resolver_config(nameservers, timeout)?;
        opts.edns0 = true;
        let dns = MessageAuthenticator::new(config, opts)
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Authenticator::build(Ok(dns), timeout, None))
    }

    /// Offline: answers only from `records`; a name not in them is
    /// NXDOMAIN, so a missing record gives a deterministic verdict, never a
    /// network lookup. The records are served by an authoritative server
    /// on a loopback TCP port of this process (see `offline.rs` for why),
    /// which stops when the last clone is dropped.
    pub fn offline(records: &DnsRecords) -> Authenticator {
        let (dns, server) = match offline::start(records) {
            Ok(server) => {
                let mut nameserver = NameServerConfig::tcp(server.addr.ip());
                for connection in &mut nameserver.connections {
                    connection.port = server.addr.port();
                }
                let config = ResolverConfig::from_parts(None, Vec::new(), vec![nameserver]);
                let mut opts = ResolverOpts::default();
                opts.timeout = OFFLINE_TIMEOUT;
                opts.attempts = 1;
                opts.ndots = 0;
                opts.use_hosts_file = ResolveHosts::Never;
                let dns = MessageAuthenticator::new(config, opts)
                    .map_err(|e| format!("cannot build the offline DNS resolver: {e}"));
                (dns, Some(server))
            }
            Err(e) => (Err(e), None),
        };
        Authenticator::build(dns, OFFLINE_TIMEOUT, server)
    }

    fn build(
        dns: Result<MessageAuthenticator, String>,
        timeout: Duration,
        offline: Option<OfflineServer>,
    ) -> Authenticator {
        Authenticator {
            inner: Arc::new(Inner {
                dns,
                caches: Caches::new(CAPACITY),
                timeout,
                _offline: offline,
            }),
        }
    }

    fn params<P>(&self, params: P) -> Params<'_, P> {
        let caches = &self.inner.caches;
        Parameters::new(params)
            .with_txt_cache(&caches.txt)
            .with_mx_cache(&caches.mx)
            .with_ipv4_cache(&caches.ipv4)
            .with_ipv6_cache(&caches.ipv6)
            .with_ptr_cache(&caches.ptr)
    }

    /// SPF, DKIM, ARC and DMARC for one message (see the crate doc for
    /// the mapping to verdicts).
    pub async fn authenticate(&self, input: &AuthInput<'_>) -> AuthOutcome {
        let dns = match &self.inner.dns {
            Ok(dns) => dns,
            Err(e) => return unavailable(input, e),
        };
        let timeout = self.inner.timeout;
        let deadline = Instant::now() + timeout;
        let parsed = AuthenticatedMessage::parse(input.message);

        // SPF checks MAIL FROM; for <>, the HELO identity (RFC 7208 §2.4).
        let spf_params = if input.mail_from.is_empty() {
            SpfParameters::verify_ehlo(input.client_ip, input.helo, input.authserv_id)
        } else {
            SpfParameters::verify_mail_from(
                input.client_ip,
                input.helo,
                input.authserv_id,
                input.mail_from,
            )
        };
        let spf_domain = spf_identity_domain(input);

        let spf = tokio::time::timeout_at(deadline, dns.verify_spf(self.params(spf_params)));
        let dkim = async {
            match &parsed {
                Some(message) => Some(
                    tokio::time::timeout_at(deadline, dns.verify_dkim(self.params(message))).await,
                ),
                None => None,
            }
        };
        let arc = async {
            match &parsed {
                Some(message) => Some(
                    tokio::time::timeout_at(deadline, dns.verify_arc(self.params(message))).await,
                ),
                None => None,
            }
        };
        let (spf, dkim, arc) = tokio::join!(spf, dkim, arc);

        let spf_timed_out = spf.is_err();
        let spf = spf.unwrap_or_else(|_| {
            SpfOutput::new(spf_domain.to_string()).with_result(SpfResult::TempError)
        });
        let (dkim, dkim_timed_out): (Vec<DkimOutput<'_>>, bool) = match dkim {
            Some(Ok(outputs)) => (outputs, false),
            Some(Err(_)) => (Vec::new(), true),
            None => (Vec::new(), false),
        };
        let (arc, arc_timed_out): (Option<ArcOutput<'_>>, bool) = match arc {
            Some(Ok(output)) => (Some(output), false),
            Some(Err(_)) => (None, true),
            None => (None, false),
        };

        let mut resinfos = Vec::new();
        let mut extra_details = Vec::new();

        // SPF
        resinfos.push(spf_resinfo(input, &spf, spf_timed_out.then_some(timeout)));
        let spf_verdict = verdict::spf(spf.result());

        // DKIM
        let from_domain = parsed
            .as_ref()
            .and_then(|m| m.from.first())
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let (dkim_verdict, dkim_resinfos) = if dkim_timed_out {
            (
                Verdict::ProcessingFailed,
                vec![ResInfo::new("dkim", "temperror").comment(timed_out(timeout))],
            )
        } else {
            dkim_results(&dkim, &from_domain)
        };
        resinfos.extend(dkim_resinfos);

        // DMARC
        let (dmarc_policy, dmarc_resinfo) = match &parsed {
            Some(message) => {
                let outcome = tokio::time::timeout_at(
                    deadline,
                    dns.verify_dmarc(
                        self.params(DmarcParameters::new(message, &dkim, spf_domain, &spf)),
                    ),
                )
                .await;
                match outcome {
                    Ok(output) => {
                        let message_id = message
                            .headers
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(b"Message-ID"))
                            .map(|(_, value)| value.trim_ascii());
                        self.dmarc_result(
                            dns,
                            &output,
                            dkim_timed_out,
                            deadline,
                            message_id,
                            input.message,
                            &mut extra_details,
                        )
                        .await
                    }
                    Err(_) => (
                        DmarcPolicy::None,
                        ResInfo::new("dmarc", "temperror")
                            .comment(timed_out(timeout))
                            .property("header.from", from_domain.clone()),
                    ),
                }
            }
            None => (
                DmarcPolicy::None,
                ResInfo::new("dmarc", "none").comment("no header section"),
            ),
        };
        resinfos.push(dmarc_resinfo);

        // ARC
        let (arc_verdict, arc_resinfo) = if arc_timed_out {
            (
                Verdict::ProcessingFailed,
                ResInfo::new("arc", "temperror").comment(timed_out(timeout)),
            )
        } else {
            arc_result(arc.as_ref())
        };
        resinfos.push(arc_resinfo.property("smtp.remote-ip", input.client_ip.to_string()));

        let mut details: Vec<String> = resinfos.iter().map(ResInfo::render).collect();
        details.extend(extra_details);
        AuthOutcome {
            spf: spf_verdict,
            dkim: dkim_verdict,
            dmarc: dmarc_policy,
            arc: arc_verdict,
            header: header::render(input.authserv_id, &resinfos),
            details,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn dmarc_result(
        &self,
        dns: &MessageAuthenticator,
        output: &mail_auth::DmarcOutput,
        dkim_timed_out: bool,
        deadline: Instant,
        message_id: Option<&[u8]>,
        message: &[u8],
        details: &mut Vec<String>,
    ) -> (DmarcPolicy, ResInfo) {
        let domain = output.domain().to_string();
        let result = output.result();
        let record = output.dmarc_record();
        let from = |r: ResInfo| r.property("header.from", domain.clone());
        if domain.is_empty() {
            return (
                DmarcPolicy::None,
                ResInfo::new("dmarc", "none").comment("no single From domain"),
            );
        }
        match (&result, record) {
            (DmarcResult::Pass, _) => {
                let comment = record
                    .map(|r| format!("p={} dis=none", r.p))
                    .unwrap_or_default();
                (
                    DmarcPolicy::None,
                    from(ResInfo::new("dmarc", "pass").comment(comment)),
                )
            }
            // A DKIM signature that could not be checked in time might
            // have aligned: DMARC cannot fail.
            (DmarcResult::Fail(_), Some(_)) if dkim_timed_out => (
                DmarcPolicy::None,
                from(ResInfo::new("dmarc", "temperror").comment("DKIM timed out")),
            ),
            (DmarcResult::Fail(_), Some(record)) => {
                let requested = dmarc::policy(output.policy());
                let mut applied = requested;
                let mut comment = format!("p={}", record.p);
                if record.sp != record.p {
                    comment.push_str(&format!(" sp={}", record.sp));
                }
                if record.t {
                    comment.push_str(" t=y");
                } else if requested != DmarcPolicy::None {
                    let pct =
                        match tokio::time::timeout_at(deadline, dmarc::pct(dns, &domain, record))
                            .await
                        {
                            Ok(pct) => pct,
                            Err(_) => {
                                details.push("dmarc: pct= lookup timed out; policy applied".into());
                                100
                            }
                        };
                    if pct < 100 {
                        comment.push_str(&format!(" pct={pct}"));
                        if !dmarc::sampled(pct, message_id, message) {
                            applied = requested.one_down();
                        }
                    }
                }
                comment.push_str(&format!(" dis={}", applied.keyword()));
                (
                    applied,
                    from(ResInfo::new("dmarc", "fail").comment(comment)),
                )
            }
            (DmarcResult::TempError(e), _) => (
                DmarcPolicy::None,
                from(ResInfo::new("dmarc", "temperror").comment(dns_reason(e))),
            ),
            (DmarcResult::PermError(e), _) => (
                DmarcPolicy::None,
                from(ResInfo::new("dmarc", "permerror").comment(e.to_string())),
            ),
            (DmarcResult::None, _) | (DmarcResult::Fail(_), None) => (
                DmarcPolicy::None,
                from(ResInfo::new("dmarc", "none").comment("no DMARC record")),
            ),
        }
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {} ms", timeout.as_millis())
}

fn dns_reason(error: &mail_auth::Error) -> String {
    match error {
        mail_auth::Error::Dns(mail_auth::DnsError::Resolver(e)) if e.is_empty() => {
            "DNS error".into()
        }
        mail_auth::Error::Dns(mail_auth::DnsError::Resolver(e)) => format!("DNS error: {e}"),
        other => other.to_string(),
    }
}

/// The domain SPF checks: MAIL FROM's, or HELO's for `<>` (and for a
/// MAIL FROM without `@`, as mail-auth does).
fn spf_identity_domain<'a>(input: &AuthInput<'a>) -> &'a str {
    if input.mail_from.is_empty() {
        input.helo
    } else {
        input
            .mail_from
            .rsplit_once('@')
            .map_or(input.helo, |(_, domain)| domain)
    }
}

fn spf_resinfo(
    input: &AuthInput<'_>,
    spf: &SpfOutput,
    timed_out_after: Option<Duration>,
) -> ResInfo {
    let ip = input.client_ip;
    let domain = spf.domain();
    let (keyword, comment) = match spf.result() {
        SpfResult::Pass => ("pass", format!("ip {ip} permitted by {domain}")),
        SpfResult::Fail => ("fail", format!("ip {ip} not permitted by {domain}")),
        SpfResult::SoftFail => ("softfail", format!("ip {ip} not permitted by {domain}")),
        SpfResult::Neutral => (
            "neutral",
            format!("{domain} neither permits nor denies ip {ip}"),
        ),
        SpfResult::None if domain.is_empty() => ("none", "no domain to check".to_string()),
        SpfResult::None => ("none", format!("no SPF record for {domain}")),
        SpfResult::TempError => (
            "temperror",
            match timed_out_after {
                Some(t) => format!("{domain}: {}", timed_out(t)),
                None => format!("DNS error evaluating the SPF record of {domain}"),
            },
        ),
        SpfResult::PermError => ("permerror", format!("invalid SPF record for {domain}")),
    };
    let resinfo = ResInfo::new("spf", keyword).comment(comment);
    if input.mail_from.is_empty() {
        resinfo.property("smtp.helo", input.helo)
    } else {
        resinfo.property("smtp.mailfrom", input.mail_from)
    }
}

/// The DKIM verdict and one resinfo per signature, passing signatures
/// aligned with the From domain first.
fn dkim_results(outputs: &[DkimOutput<'_>], from_domain: &str) -> (Verdict, Vec<ResInfo>) {
    if outputs.is_empty() {
        return (Verdict::Gray, vec![ResInfo::new("dkim", "none")]);
    }
    let mut ranked: Vec<(u8, SignatureResult, ResInfo)> = outputs
        .iter()
        .map(|output| {
            let (result, reason) = verdict::signature(output.result());
            let mut resinfo =
                ResInfo::new("dkim", result.keyword()).comment(reason.unwrap_or_default());
            let mut aligned = false;
            if let Some(signature) = output.signature() {
                let d = signature.d.to_ascii_lowercase();
                aligned = !from_domain.is_empty()
                    && (from_domain == d
                        || from_domain.ends_with(&format!(".{d}"))
                        || d.ends_with(&format!(".{from_domain}")));
                resinfo = resinfo
                    .property("header.d", d)
                    .property("header.s", signature.s.clone())
                    .property("header.b", b_prefix(&signature.b));
            }
            let rank = match (result, aligned) {
                (SignatureResult::Pass, true) => 0,
                (SignatureResult::Pass, false) => 1,
                _ => 2,
            };
            (rank, result, resinfo)
        })
        .collect();
    ranked.sort_by_key(|(rank, _, _)| *rank);
    let results: Vec<SignatureResult> = ranked.iter().map(|(_, r, _)| *r).collect();
    (
        verdict::dkim(&results),
        ranked.into_iter().map(|(_, _, r)| r).collect(),
    )
}

/// The first 8 characters of the signature's base64 (RFC 6008).
fn b_prefix(b: &[u8]) -> String {
    use base64::Engine as _;
    let prefix = &b[..b.len().min(6)];
    base64::engine::general_purpose::STANDARD.encode(prefix)
}

fn arc_result(arc: Option<&ArcOutput<'_>>) -> (Verdict, ResInfo) {
    let Some(arc) = arc else {
        return (Verdict::Gray, ResInfo::new("arc", "none"));
    };
    let (result, reason) = verdict::signature(arc.result());
    let mut comment = reason.unwrap_or_default();
    if let Some(last) = arc.sets().last() {
        let seal = last.seal.header;
        let chain = format!("i={} d={}", seal.i, seal.d);
        comment = if comment.is_empty() {
            chain
        } else {
            format!("{comment}; {chain}")
        };
    }
    (
        verdict::arc(result),
        ResInfo::new("arc", result.keyword()).comment(comment),
    )
}

/// Every check undecided: the offline server could not start.
fn unavailable(input: &AuthInput<'_>, reason: &str) -> AuthOutcome {
    let resinfos: Vec<ResInfo> = ["spf", "dkim", "dmarc", "arc"]
        .into_iter()
        .map(|method| ResInfo::new(method, "temperror").comment(reason))
        .collect();
    AuthOutcome {
        spf: Verdict::ProcessingFailed,
        dkim: Verdict::ProcessingFailed,
        dmarc: DmarcPolicy::None,
        arc: Verdict::ProcessingFailed,
        header: header::render(input.authserv_id, &resinfos),
        details: resinfos.iter().map(ResInfo::render).collect(),
    }
}
