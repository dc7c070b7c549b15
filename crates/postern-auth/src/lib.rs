//! Email authentication of inbound mail: SPF, DKIM, DMARC and ARC with
//! mail-auth 0.13 (ring), and the Authentication-Results header (RFC 8601).
//!
//! # Layout
//!
//! - `authenticator.rs`: [`Authenticator`] (network or offline DNS),
//!   [`AuthInput`], [`AuthOutcome`]; runs the checks within one deadline.
//! - `verdict.rs`: [`Verdict`], [`DmarcPolicy`] and the mapping from
//!   mail-auth's results (the table below).
//! - `dmarc.rs`: the policy to apply, with deterministic `pct=` sampling.
//! - `header.rs`: the Authentication-Results field and its value syntax.
//! - `strip.rs`: [`strip_forged_results`].
//! - `records.rs`: [`DnsRecords`], zone-file text for offline use.
//! - `offline.rs`: the loopback DNS server behind [`Authenticator::offline`].
//! - `cache.rs`: the bounded TTL caches mail-auth keeps parsed records in.
//!
//! # Verdicts
//!
//! | Check | Result (RFC) | Verdict |
//! |---|---|---|
//! | SPF (RFC 7208; MAIL FROM, or HELO for `<>`, §2.4) | pass | `PASS` |
//! | | fail | `FAIL` |
//! | | softfail, neutral, none | `GRAY` |
//! | | temperror, permerror, timeout | `PROCESSING_FAILED` |
//! | DKIM (RFC 6376), over all signatures | one signature passes | `PASS` |
//! | | none passes, one has DNS trouble (temperror, timeout) | `PROCESSING_FAILED` |
//! | | none passes: bad signature, body hash mismatch, expired, i= outside d=, no key (NXDOMAIN), revoked key (p=), malformed signature or key record, unsupported algorithm | `FAIL` |
//! | | no signature | `GRAY` |
//! | ARC (RFC 8617) | chain valid | `PASS` |
//! | | chain invalid (broken, cv=fail, bad seal or AMS, no key) | `FAIL` |
//! | | no ARC set | `GRAY` |
//! | | DNS trouble, timeout | `PROCESSING_FAILED` |
//! | DMARC (RFC 7489) | pass | `NONE` |
//! | | fail | the record's `p=` (`sp=` for a subdomain without its own record; `np=` for a non-existent one), one level down with `t=y`, and with `pct=` < 100 one level down for messages outside the sample |
//! | | no record, no single From domain | `NONE` |
//! | | temperror (DNS), permerror | `NONE` (the header and details say which) |
//!
//! Decisions worth stating:
//!
//! - DKIM "no key" and "revoked key" are `FAIL`: RFC 6376 §6.1.2 and
//!   §3.6.1 make them PERMFAIL, and a retry gives the same answer; a
//!   sender with a broken key gets what an unsigned-but-claimed message
//!   deserves. So are malformed signatures and key records (RFC 6376
//!   PERMFAIL; the header says `permerror`). Only DNS trouble, which a
//!   retry may resolve, is `PROCESSING_FAILED`, and only when no other
//!   signature passed.
//! - DKIM `FAIL` wins over `GRAY`: a message with a signature that fails
//!   is not treated like an unsigned one.
//! - DMARC is evaluated by mail-auth 0.13, which follows DMARCbis (RFC
//!   9989): the policy record is found by a DNS tree walk rather than a
//!   public suffix list, and `np=` applies to non-existent subdomains.
//!   `pct=` (which DMARCbis dropped) is applied here: a message is in the
//!   sample when the FNV-1a hash of its Message-ID (the whole message when
//!   there is none) modulo 100 is below `pct` (see `dmarc.rs`).
//! - DMARC "fail" while a DKIM check timed out is reported as temperror
//!   (`NONE`): the signature that timed out might have aligned.
//! - The header's authserv-id is [`AuthInput::authserv_id`]. Call
//!   [`strip_forged_results`] on the message before adding the header.

mod authenticator;
mod cache;
mod dmarc;
mod header;
mod offline;
mod records;
mod strip;
mod verdict;

pub use authenticator::{AuthInput, AuthOutcome, Authenticator};
pub use records::DnsRecords;
pub use strip::strip_forged_results;
pub use verdict::{DmarcPolicy, Verdict};
