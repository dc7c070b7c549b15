//! The verdicts rule conditions read, and how mail-auth's results map to
//! them. Pure functions of mail-auth's outputs; the table is in the crate
//! documentation (`lib.rs`).

use mail_auth::arc::ArcError;
use mail_auth::common::crypto::CryptoError;
use mail_auth::dkim::DkimError;
use mail_auth::{DkimResult, DnsError, Error, SpfResult};

/// The verdicts rule conditions read, with the model's values
/// (`RuleVerdict`: `PASS`, `FAIL`, `GRAY`, `PROCESSING_FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Gray,
    ProcessingFailed,
}

/// The DMARC policy the From domain asks to apply to this message
/// (`RuleDmarcPolicy`: `NONE`, `QUARANTINE`, `REJECT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl Verdict {
    /// The model's spelling: `PASS`, `FAIL`, `GRAY`, `PROCESSING_FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Gray => "GRAY",
            Verdict::ProcessingFailed => "PROCESSING_FAILED",
        }
    }
}

impl DmarcPolicy {
    /// The model's spelling: `NONE`, `QUARANTINE`, `REJECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "NONE",
            DmarcPolicy::Quarantine => "QUARANTINE",
            DmarcPolicy::Reject => "REJECT",
        }
    }

    /// The next policy down (RFC 7489 §6.6.4, for messages not sampled by
    /// `pct=`): reject → quarantine → none.
    pub(crate) fn one_down(self) -> DmarcPolicy {
        match self {
            DmarcPolicy::Reject => DmarcPolicy::Quarantine,
            DmarcPolicy::Quarantine | DmarcPolicy::None => DmarcPolicy::None,
        }
    }

    /// Lowercase, as DMARC records and Authentication-Results spell it.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// SPF (RFC 7208 §2.6): pass → Pass; fail → Fail; softfail, neutral,
/// none → Gray; temperror, permerror → ProcessingFailed (a timeout is
/// reported by mail-auth, or by us, as temperror).
pub(crate) fn spf(result: SpfResult) -> Verdict {
    match result {
        SpfResult::Pass => Verdict::Pass,
        SpfResult::Fail => Verdict::Fail,
        SpfResult::SoftFail | SpfResult::Neutral | SpfResult::None => Verdict::Gray,
        SpfResult::TempError | SpfResult::PermError => Verdict::ProcessingFailed,
    }
}

/// How one DKIM signature (or ARC set) ended, in RFC 8601 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureResult {
    Pass,
    /// The signature was checked and did not verify: bad signature, body
    /// hash mismatch, expired, i= outside d=, revoked key, no key.
    Fail,
    /// The signature or its key record is malformed or unsupported.
    PermError,
    /// DNS trouble fetching the key: a later attempt may decide.
    TempError,
    None,
}

impl SignatureResult {
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            SignatureResult::Pass => "pass",
            SignatureResult::Fail => "fail",
            SignatureResult::PermError => "permerror",
            SignatureResult::TempError => "temperror",
            SignatureResult::None => "none",
        }
    }
}

/// One DKIM signature's (or the ARC chain's) result and a short reason.
pub(crate) fn signature(result: &DkimResult) -> (SignatureResult, Option<String>) {
    match result {
        DkimResult::Pass => (SignatureResult::Pass, None),
        DkimResult::None => (SignatureResult::None, None),
        DkimResult::TempError(e) => (SignatureResult::TempError, Some(reason(e))),
        DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => {
            (classify(e), Some(reason(e)))
        }
    }
}

/// RFC 6376 §6.1 calls all of these PERMFAIL; RFC 8601 separates "the
/// signature did not verify" (fail) from "could not be checked" (permerror).
fn classify(error: &Error) -> SignatureResult {
    match error {
        Error::Dns(DnsError::Resolver(_)) => SignatureResult::TempError,
        // ring reports a failed Ed25519 verification as Library("Unspecified").
        Error::Crypto(CryptoError::FailedVerification | CryptoError::Library(_))
        | Error::Dkim(
            DkimError::FailedBodyHashMatch
            | DkimError::FailedAuidMatch
            | DkimError::SignatureExpired
            | DkimError::RevokedPublicKey,
        )
        | Error::Arc(
            ArcError::FailedBodyHashMatch
            | ArcError::SignatureExpired
            | ArcError::BrokenChain
            | ArcError::InvalidCV
            | ArcError::InvalidInstance(_)
            | ArcError::ChainTooLong,
        )
        // RFC 6376 §6.1.2: no key record is "PERMFAIL (no key for signature)".
        | Error::Dns(DnsError::RecordNotFound(_)) => SignatureResult::Fail,
        _ => SignatureResult::PermError,
    }
}

fn reason(error: &Error) -> String {
    match error {
        Error::Crypto(CryptoError::FailedVerification | CryptoError::Library(_)) => {
            "signature did not verify".into()
        }
        Error::Dkim(DkimError::FailedBodyHashMatch) | Error::Arc(ArcError::FailedBodyHashMatch) => {
            "body hash mismatch".into()
        }
        Error::Dkim(DkimError::FailedAuidMatch) => "i= is not within d=".into(),
        Error::Dkim(DkimError::SignatureExpired) | Error::Arc(ArcError::SignatureExpired) => {
            "signature expired".into()
        }
        Error::Dkim(DkimError::RevokedPublicKey) => "key revoked".into(),
        Error::Dns(DnsError::RecordNotFound(_)) => "no key for signature".into(),
        Error::Dns(DnsError::InvalidRecordType) | Error::ParseError => "invalid key record".into(),
        Error::Dns(DnsError::Resolver(e)) if e.is_empty() => "DNS error".into(),
        Error::Dns(DnsError::Resolver(e)) => format!("DNS error: {e}"),
        other => other.to_string(),
    }
}

/// DKIM over all signatures: Pass if one passes; else ProcessingFailed if
/// one could not be checked for DNS trouble (a retry might pass it); else
/// Fail if there were signatures (failed, no key, revoked, malformed);
/// Gray if there were none.
pub(crate) fn dkim(results: &[SignatureResult]) -> Verdict {
    if results.is_empty() || results.iter().all(|r| *r == SignatureResult::None) {
        Verdict::Gray
    } else if results.contains(&SignatureResult::Pass) {
        Verdict::Pass
    } else if results.contains(&SignatureResult::TempError) {
        Verdict::ProcessingFailed
    } else {
        Verdict::Fail
    }
}

/// ARC chain validation (RFC 8617 §5.2): pass → Pass; none (no ARC set)
/// → Gray; DNS trouble → ProcessingFailed; anything else → Fail.
pub(crate) fn arc(result: SignatureResult) -> Verdict {
    match result {
        SignatureResult::Pass => Verdict::Pass,
        SignatureResult::None => Verdict::Gray,
        SignatureResult::TempError => Verdict::ProcessingFailed,
        SignatureResult::Fail | SignatureResult::PermError => Verdict::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::hickory_resolver::proto::op::ResponseCode;

    #[test]
    fn spf_table() {
        for (result, verdict) in [
            (SpfResult::Pass, Verdict::Pass),
            (SpfResult::Fail, Verdict::Fail),
            (SpfResult::SoftFail, Verdict::Gray),
            (SpfResult::Neutral, Verdict::Gray),
            (SpfResult::None, Verdict::Gray),
            (SpfResult::TempError, Verdict::ProcessingFailed),
            (SpfResult::PermError, Verdict::ProcessingFailed),
        ] {
            assert_eq!(spf(result), verdict, "{result:?}");
        }
    }

    #[test]
    fn dkim_signature_table() {
        let cases = [
            (DkimResult::Pass, SignatureResult::Pass),
            (
                DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)),
                SignatureResult::Fail,
            ),
            (
                DkimResult::Fail(Error::Crypto(CryptoError::FailedVerification)),
                SignatureResult::Fail,
            ),
            (
                DkimResult::Fail(Error::Crypto(CryptoError::Library("Unspecified".into()))),
                SignatureResult::Fail,
            ),
            (
                DkimResult::Fail(Error::Crypto(CryptoError::IncompatibleAlgorithms)),
                SignatureResult::PermError,
            ),
            (
                DkimResult::PermError(Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain))),
                SignatureResult::Fail,
            ),
            (
                DkimResult::PermError(Error::Dkim(DkimError::RevokedPublicKey)),
                SignatureResult::Fail,
            ),
            (
                DkimResult::PermError(Error::Dns(DnsError::InvalidRecordType)),
                SignatureResult::PermError,
            ),
            (
                DkimResult::Neutral(Error::Dkim(DkimError::UnsupportedAlgorithm)),
                SignatureResult::PermError,
            ),
            (
                DkimResult::TempError(Error::Dns(DnsError::Resolver("timeout".into()))),
                SignatureResult::TempError,
            ),
        ];
        for (result, expected) in cases {
            assert_eq!(signature(&result).0, expected, "{result:?}");
        }
    }

    #[test]
    fn dkim_over_signatures() {
        use SignatureResult::*;
        assert_eq!(dkim(&[]), Verdict::Gray);
        assert_eq!(dkim(&[Fail, Pass]), Verdict::Pass);
        assert_eq!(dkim(&[TempError, Pass]), Verdict::Pass);
        assert_eq!(dkim(&[TempError, Fail]), Verdict::ProcessingFailed);
        assert_eq!(dkim(&[PermError]), Verdict::Fail);
        assert_eq!(dkim(&[Fail]), Verdict::Fail);
    }

    #[test]
    fn model_spellings() {
        assert_eq!(
            serde_json::to_string(&Verdict::ProcessingFailed).unwrap(),
            "\"PROCESSING_FAILED\""
        );
        assert_eq!(
            serde_json::to_string(&DmarcPolicy::None).unwrap(),
            "\"NONE\""
        );
        assert_eq!(DmarcPolicy::Quarantine.as_str(), "QUARANTINE");
        assert_eq!(DmarcPolicy::Reject.one_down(), DmarcPolicy::Quarantine);
        assert_eq!(DmarcPolicy::Quarantine.one_down(), DmarcPolicy::None);
    }
}
