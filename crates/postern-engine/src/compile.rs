//! Model conditions (rule and traffic policy) into compiled [`Cond`]s.

use crate::address_list::AddressList;
use crate::condition::{Cond, Family, NumOp, StrOp, StringIndexBuilder, VerdictSource};
use crate::envelope::TlsProtocol;
use crate::facts::{Attr, Needs};
use postern_model::*;
use std::sync::Arc;

/// Resolves the references conditions make: address lists and add-ons.
pub trait Catalog {
    fn address_list(&self, reference: &str) -> Option<Arc<AddressList>>;
    /// The canonical ARN of the add-on instance a reference names.
    fn analyzer(&self, reference: &str) -> Option<String>;
}

/// A reference the catalog does not know (the config resolver reports these
/// first, so this only happens when the engine is used without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownReference(pub String);

impl std::fmt::Display for UnknownReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown reference {:?}", self.0)
    }
}

impl std::error::Error for UnknownReference {}

pub(crate) struct Compiler<'a> {
    pub strings: StringIndexBuilder,
    pub needs: Needs,
    pub analysis_keys: Vec<(String, String)>,
    analysis_index: ahash::AHashMap<(String, String), u32>,
    catalog: &'a dyn Catalog,
}

impl<'a> Compiler<'a> {
    pub fn new(catalog: &'a dyn Catalog) -> Self {
        Compiler {
            strings: StringIndexBuilder::default(),
            needs: Needs::default(),
            analysis_keys: Vec::new(),
            analysis_index: ahash::AHashMap::new(),
            catalog,
        }
    }

    fn analysis_key(&mut self, analysis: &Analysis) -> Result<u32, UnknownReference> {
        let arn = self
            .catalog
            .analyzer(&analysis.analyzer)
            .ok_or_else(|| UnknownReference(analysis.analyzer.clone()))?;
        let key = (arn, analysis.result_field.clone());
        let next = self.analysis_keys.len() as u32;
        let index = *self.analysis_index.entry(key.clone()).or_insert(next);
        if index == next {
            self.analysis_keys.push(key);
        }
        Ok(index)
    }

    fn header(&mut self, name: &str) -> u32 {
        self.needs.header(name)
    }

    fn list(&self, lists: &[String]) -> Result<Arc<AddressList>, UnknownReference> {
        let reference = lists.first().cloned().unwrap_or_default();
        self.catalog
            .address_list(&reference)
            .ok_or(UnknownReference(reference))
    }

    fn string(&mut self, attr: Attr, op: RuleStringOperator, values: &[String]) -> Cond {
        match attr {
            Attr::From | Attr::To | Attr::Cc | Attr::Sender => self.needs.addresses = true,
            Attr::Subject => self.needs.subject = true,
            _ => {}
        }
        let (op, negate) = match op {
            RuleStringOperator::Equals => (StrOp::Equals, false),
            RuleStringOperator::NotEquals => (StrOp::Equals, true),
            RuleStringOperator::StartsWith => (StrOp::StartsWith, false),
            RuleStringOperator::EndsWith => (StrOp::EndsWith, false),
            RuleStringOperator::Contains => (StrOp::Contains, false),
        };
        let hit = self.strings.add(attr, op, values);
        Cond::Str { attr, hit, negate }
    }

    pub fn rule_condition(&mut self, condition: &RuleCondition) -> Result<Cond, UnknownReference> {
        Ok(match condition {
            RuleCondition::StringExpression(e) => {
                let attr = match &e.evaluate {
                    RuleStringToEvaluate::Attribute(a) => Attr::of(*a),
                    RuleStringToEvaluate::MimeHeaderAttribute(name) => {
                        Attr::Header(self.header(name))
                    }
                    RuleStringToEvaluate::Analysis(a) => Attr::Analysis(self.analysis_key(a)?),
                    RuleStringToEvaluate::ClientCertificateAttribute(a) => {
                        Attr::ClientCertificate(*a)
                    }
                };
                self.string(attr, e.operator, &e.values)
            }
            RuleCondition::NumberExpression(e) => Cond::Size {
                op: match e.operator {
                    RuleNumberOperator::Equals => NumOp::Eq,
                    RuleNumberOperator::NotEquals => NumOp::Ne,
                    RuleNumberOperator::LessThan => NumOp::Lt,
                    RuleNumberOperator::GreaterThan => NumOp::Gt,
                    RuleNumberOperator::LessThanOrEqual => NumOp::Le,
                    RuleNumberOperator::GreaterThanOrEqual => NumOp::Ge,
                },
                value: e.value,
            },
            RuleCondition::IpExpression(e) => Cond::Ip {
                nets: e
                    .values
                    .iter()
                    .filter_map(|v| postern_config::parse_cidr(v))
                    .collect(),
                family: Family::Any,
                negate: e.operator == RuleIpOperator::NotCidrMatches,
            },
            RuleCondition::BooleanExpression(e) => {
                let expect = e.operator == RuleBooleanOperator::IsTrue;
                match &e.evaluate {
                    RuleBooleanToEvaluate::Attribute(attr) => {
                        if *attr == RuleBooleanEmailAttribute::ReadReceiptRequested {
                            self.needs.read_receipt = true;
                        }
                        Cond::Flag {
                            attr: *attr,
                            expect,
                        }
                    }
                    RuleBooleanToEvaluate::Analysis(a) => Cond::AnalysisFlag {
                        key: self.analysis_key(a)?,
                        expect,
                    },
                    RuleBooleanToEvaluate::IsInAddressList(l) => {
                        let attr = match l.attribute {
                            RuleAddressListEmailAttribute::Recipient => Attr::Recipient,
                            RuleAddressListEmailAttribute::MailFrom => Attr::MailFrom,
                            RuleAddressListEmailAttribute::Sender => Attr::Sender,
                            RuleAddressListEmailAttribute::From => Attr::From,
                            RuleAddressListEmailAttribute::To => Attr::To,
                            RuleAddressListEmailAttribute::Cc => Attr::Cc,
                        };
                        if matches!(attr, Attr::Sender | Attr::From | Attr::To | Attr::Cc) {
                            self.needs.addresses = true;
                        }
                        Cond::InList {
                            attr,
                            list: self.list(&l.address_lists)?,
                            expect,
                        }
                    }
                }
            }
            RuleCondition::VerdictExpression(e) => Cond::Verdict {
                source: match &e.evaluate {
                    RuleVerdictToEvaluate::Attribute(RuleVerdictAttribute::Spf) => {
                        VerdictSource::Spf
                    }
                    RuleVerdictToEvaluate::Attribute(RuleVerdictAttribute::Dkim) => {
                        VerdictSource::Dkim
                    }
                    RuleVerdictToEvaluate::Analysis(a) => {
                        VerdictSource::Analysis(self.analysis_key(a)?)
                    }
                },
                values: e.values.clone(),
                negate: e.operator == RuleVerdictOperator::NotEquals,
            },
            RuleCondition::DmarcExpression(e) => Cond::Dmarc {
                values: e.values.clone(),
                negate: e.operator == RuleDmarcOperator::NotEquals,
            },
        })
    }

    pub fn policy_condition(
        &mut self,
        condition: &PolicyCondition,
    ) -> Result<Cond, UnknownReference> {
        Ok(match condition {
            PolicyCondition::StringExpression(e) => {
                let attr = match &e.evaluate {
                    IngressStringToEvaluate::Attribute(IngressStringEmailAttribute::Recipient) => {
                        Attr::Recipient
                    }
                    IngressStringToEvaluate::Analysis(a) => {
                        Attr::Analysis(self.analysis_key(&Analysis {
                            analyzer: a.analyzer.clone(),
                            result_field: a.result_field.clone(),
                        })?)
                    }
                };
                let op = match e.operator {
                    IngressStringOperator::Equals => RuleStringOperator::Equals,
                    IngressStringOperator::NotEquals => RuleStringOperator::NotEquals,
                    IngressStringOperator::StartsWith => RuleStringOperator::StartsWith,
                    IngressStringOperator::EndsWith => RuleStringOperator::EndsWith,
                    IngressStringOperator::Contains => RuleStringOperator::Contains,
                };
                self.string(attr, op, &e.values)
            }
            PolicyCondition::IpExpression(e) => Cond::Ip {
                nets: e
                    .values
                    .iter()
                    .filter_map(|v| postern_config::parse_cidr(v))
                    .collect(),
                family: Family::V4,
                negate: e.operator == IngressIpOperator::NotCidrMatches,
            },
            PolicyCondition::Ipv6Expression(e) => Cond::Ip {
                nets: e
                    .values
                    .iter()
                    .filter_map(|v| postern_config::parse_cidr(v))
                    .collect(),
                family: Family::V6,
                negate: e.operator == IngressIpOperator::NotCidrMatches,
            },
            PolicyCondition::TlsExpression(e) => {
                let version = match e.value {
                    IngressTlsProtocolAttribute::Tls12 => TlsProtocol::Tls12,
                    IngressTlsProtocolAttribute::Tls13 => TlsProtocol::Tls13,
                };
                match e.operator {
                    IngressTlsProtocolOperator::MinimumTlsVersion => Cond::TlsMinimum(version),
                    IngressTlsProtocolOperator::Is => Cond::TlsIs(version),
                }
            }
            PolicyCondition::BooleanExpression(e) => {
                let expect = e.operator == IngressBooleanOperator::IsTrue;
                match &e.evaluate {
                    IngressBooleanToEvaluate::Analysis(a) => Cond::AnalysisFlag {
                        key: self.analysis_key(&Analysis {
                            analyzer: a.analyzer.clone(),
                            result_field: a.result_field.clone(),
                        })?,
                        expect,
                    },
                    IngressBooleanToEvaluate::IsInAddressList(l) => Cond::InList {
                        attr: Attr::Recipient,
                        list: self.list(&l.address_lists)?,
                        expect,
                    },
                }
            }
        })
    }
}
