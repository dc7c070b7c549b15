//! Conditions compiled for speed, shared by traffic policies and rule sets.
//!
//! String conditions of one attribute are merged into one Aho-Corasick
//! automaton: a single pass over a header value finds every value of every
//! rule that occurs in it, and its position tells EQUALS, STARTS_WITH,
//! ENDS_WITH and CONTAINS apart. NOT_EQUALS is compiled as EQUALS and
//! negated, which is exactly "none of the values is equal". Every other
//! condition is a comparison, a CIDR table or a hash lookup.

use crate::address::normalize;
use crate::address_list::AddressList;
use crate::envelope::TlsProtocol;
use crate::facts::{Attr, Facts};
use crate::verdicts::{AnalysisValue, Missing, Verdicts};
use ahash::AHashMap;
use aho_corasick::{AhoCorasick, MatchKind};
use ipnet::IpNet;
use postern_model::{RuleBooleanEmailAttribute, RuleDmarcPolicy, RuleVerdict};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrOp {
    Equals,
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
    Any,
}

/// Which verdict a verdict condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerdictSource {
    Spf,
    Dkim,
    Analysis(u32),
}

/// One compiled condition. `negate` turns "matches" into "does not match".
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    /// Bit `hit` of the string index is set when some value matched.
    Str {
        attr: Attr,
        hit: u32,
        negate: bool,
    },
    Size {
        op: NumOp,
        value: f64,
    },
    Ip {
        nets: Vec<IpNet>,
        family: Family,
        negate: bool,
    },
    TlsMinimum(TlsProtocol),
    TlsIs(TlsProtocol),
    Flag {
        attr: RuleBooleanEmailAttribute,
        expect: bool,
    },
    InList {
        attr: Attr,
        list: Arc<AddressList>,
        expect: bool,
    },
    AnalysisFlag {
        key: u32,
        expect: bool,
    },
    Verdict {
        source: VerdictSource,
        values: Vec<RuleVerdict>,
        negate: bool,
    },
    Dmarc {
        values: Vec<RuleDmarcPolicy>,
        negate: bool,
    },
}

impl Cond {
    /// Whether the outcome can differ between recipients of one message.
    pub(crate) fn per_recipient(&self) -> bool {
        matches!(
            self,
            Cond::Str {
                attr: Attr::Recipient,
                ..
            } | Cond::InList {
                attr: Attr::Recipient,
                ..
            }
        )
    }
}

/// Where in a candidate a value was found, for the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub candidate: u32,
    pub value: u32,
}

/// Values of one pattern text: which condition, which operator, which value.
#[derive(Debug, Clone, Copy)]
struct Use {
    hit: u32,
    op: StrOp,
    value: u32,
}

#[derive(Debug)]
struct AttrIndex {
    automaton: AhoCorasick,
    uses: Vec<Vec<Use>>,
}

/// The distinct pattern texts of one attribute and who uses each.
#[derive(Debug, Default)]
struct AttrPatterns {
    texts: Vec<String>,
    uses: Vec<Vec<Use>>,
    slots: AHashMap<String, usize>,
}

/// Builds the per-attribute automata while conditions are compiled.
#[derive(Debug, Default)]
pub(crate) struct StringIndexBuilder {
    patterns: AHashMap<Attr, AttrPatterns>,
    hits: u32,
}

impl StringIndexBuilder {
    /// Registers a string condition; returns its hit bit.
    pub(crate) fn add(&mut self, attr: Attr, op: StrOp, values: &[String]) -> u32 {
        let hit = self.hits;
        self.hits += 1;
        let AttrPatterns { texts, uses, slots } = self.patterns.entry(attr).or_default();
        for (i, value) in values.iter().enumerate() {
            let text = match attr {
                Attr::MailFrom
                | Attr::Helo
                | Attr::Recipient
                | Attr::Sender
                | Attr::From
                | Attr::To
                | Attr::Cc => normalize(value),
                _ => value.to_lowercase(),
            };
            if text.is_empty() {
                // A value that is empty once normalized (" ", "<>") would
                // match everywhere; it matches nothing.
                continue;
            }
            let slot = *slots.entry(text.clone()).or_insert_with(|| {
                texts.push(text);
                uses.push(Vec::new());
                texts.len() - 1
            });
            uses[slot].push(Use {
                hit,
                op,
                value: i as u32,
            });
        }
        hit
    }

    pub(crate) fn build(self) -> StringIndex {
        let mut by_attr = Vec::new();
        for (attr, patterns) in self.patterns {
            let automaton = aho_corasick::AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns.texts)
                .expect("patterns compile");
            by_attr.push((
                attr,
                AttrIndex {
                    automaton,
                    uses: patterns.uses,
                },
            ));
        }
        StringIndex {
            by_attr,
            hits: self.hits as usize,
        }
    }
}

#[derive(Debug)]
pub(crate) struct StringIndex {
    by_attr: Vec<(Attr, AttrIndex)>,
    pub(crate) hits: usize,
}

impl StringIndex {
    /// Runs every attribute's automaton over its candidates.
    /// `per_recipient` selects the recipient attribute or all the others.
    pub(crate) fn scan<'c>(
        &self,
        hits: &mut [Option<Hit>],
        per_recipient: bool,
        candidates: impl Fn(Attr) -> Candidates<'c>,
    ) {
        for (attr, index) in &self.by_attr {
            if (*attr == Attr::Recipient) != per_recipient {
                continue;
            }
            for (c, candidate) in candidates(*attr).iter().enumerate() {
                let len = candidate.len();
                for m in index.automaton.find_overlapping_iter(candidate.as_str()) {
                    for u in &index.uses[m.pattern().as_usize()] {
                        let matched = match u.op {
                            StrOp::Contains => true,
                            StrOp::StartsWith => m.start() == 0,
                            StrOp::EndsWith => m.end() == len,
                            StrOp::Equals => m.start() == 0 && m.end() == len,
                        };
                        let slot = &mut hits[u.hit as usize];
                        if matched && slot.is_none() {
                            *slot = Some(Hit {
                                candidate: c as u32,
                                value: u.value,
                            });
                        }
                    }
                }
            }
        }
    }
}

/// Candidate strings for one attribute, borrowed or computed.
pub(crate) enum Candidates<'a> {
    Borrowed(&'a [String]),
    Owned(Vec<String>),
}

impl Candidates<'_> {
    fn iter(&self) -> std::slice::Iter<'_, String> {
        match self {
            Candidates::Borrowed(s) => s.iter(),
            Candidates::Owned(v) => v.iter(),
        }
    }
}

/// The add-on results a compiled set reads, looked up once per message.
pub(crate) fn analysis_values<'v>(
    keys: &[(String, String)],
    verdicts: &'v Verdicts,
) -> Vec<Option<&'v AnalysisValue>> {
    keys.iter()
        .map(|(arn, field)| verdicts.analysis(arn, field))
        .collect()
}

/// An add-on result as the candidate of a string condition.
pub(crate) fn analysis_candidates<'c>(
    analysis: &[Option<&AnalysisValue>],
    key: u32,
) -> Candidates<'c> {
    Candidates::Owned(
        analysis[key as usize]
            .map(|v| vec![v.as_text().to_lowercase()])
            .unwrap_or_default(),
    )
}

/// Everything a condition may read while one recipient is evaluated.
pub(crate) struct Input<'a> {
    pub facts: &'a Facts,
    pub sender_ip: IpAddr,
    pub tls: Option<TlsProtocol>,
    pub tls_wrapped: bool,
    pub verdicts: &'a Verdicts,
    /// Add-on results, by the compiled set's analysis keys.
    pub analysis: &'a [Option<&'a AnalysisValue>],
    pub analysis_keys: &'a [(String, String)],
    pub recipient: &'a str,
    pub hits: &'a [Option<Hit>],
}

impl Input<'_> {
    fn analysis(&self, key: u32) -> Result<&AnalysisValue, Missing> {
        self.analysis[key as usize].ok_or_else(|| {
            let (analyzer, field) = &self.analysis_keys[key as usize];
            Missing::Analysis {
                analyzer: analyzer.clone(),
                field: field.clone(),
            }
        })
    }
}

pub(crate) fn eval(cond: &Cond, input: &Input) -> Result<bool, Missing> {
    Ok(match cond {
        Cond::Str { attr, hit, negate } => {
            if let Attr::Analysis(key) = attr {
                input.analysis(*key)?;
            }
            input.hits[*hit as usize].is_some() != *negate
        }
        Cond::Size { op, value } => {
            let size = input.facts.size as f64;
            match op {
                NumOp::Eq => size == *value,
                NumOp::Ne => size != *value,
                NumOp::Lt => size < *value,
                NumOp::Gt => size > *value,
                NumOp::Le => size <= *value,
                NumOp::Ge => size >= *value,
            }
        }
        Cond::Ip {
            nets,
            family,
            negate,
        } => {
            let ip = input.sender_ip.to_canonical();
            let family_ok = match family {
                Family::V4 => ip.is_ipv4(),
                Family::V6 => ip.is_ipv6(),
                Family::Any => true,
            };
            let inside = family_ok && nets.iter().any(|n| n.contains(&ip));
            inside != *negate
        }
        Cond::TlsMinimum(min) => input.tls.is_some_and(|v| v >= *min),
        Cond::TlsIs(version) => input.tls == Some(*version),
        Cond::Flag { attr, expect } => {
            let value = match attr {
                RuleBooleanEmailAttribute::ReadReceiptRequested => input.facts.read_receipt,
                RuleBooleanEmailAttribute::Tls => input.tls.is_some(),
                RuleBooleanEmailAttribute::TlsWrapped => input.tls_wrapped,
            };
            value == *expect
        }
        Cond::InList { attr, list, expect } => {
            let member = if *attr == Attr::Recipient {
                list.contains(input.recipient)
            } else {
                input
                    .facts
                    .candidates(*attr)
                    .iter()
                    .any(|a| list.contains(a))
            };
            member == *expect
        }
        Cond::AnalysisFlag { key, expect } => input.analysis(*key)?.as_bool() == Some(*expect),
        Cond::Verdict {
            source,
            values,
            negate,
        } => {
            let verdict = match source {
                VerdictSource::Spf => input.verdicts.spf.ok_or(Missing::Spf)?,
                VerdictSource::Dkim => input.verdicts.dkim.ok_or(Missing::Dkim)?,
                VerdictSource::Analysis(key) => {
                    let text = input.analysis(*key)?.as_text().to_ascii_uppercase();
                    match RuleVerdict::ALL.iter().find(|v| v.as_str() == text) {
                        Some(v) => *v,
                        // Not a verdict: equal to none of the values.
                        None => return Ok(*negate),
                    }
                }
            };
            values.contains(&verdict) != *negate
        }
        Cond::Dmarc { values, negate } => {
            let policy = input.verdicts.dmarc.ok_or(Missing::Dmarc)?;
            values.contains(&policy) != *negate
        }
    })
}
