//! What authentication and add-ons concluded about a message. The engine
//! never computes these: the pipeline does (or a rule test states them), and
//! the compiled rule set says which ones it needs.

use postern_model::{RuleDmarcPolicy, RuleVerdict};
use std::collections::HashMap;

/// An add-on's result field: text or a flag.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisValue {
    Bool(bool),
    Text(String),
}

impl AnalysisValue {
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            AnalysisValue::Bool(b) => b.to_string().into(),
            AnalysisValue::Text(t) => t.as_str().into(),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AnalysisValue::Bool(b) => Some(*b),
            AnalysisValue::Text(t) if t.eq_ignore_ascii_case("true") => Some(true),
            AnalysisValue::Text(t) if t.eq_ignore_ascii_case("false") => Some(false),
            AnalysisValue::Text(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts {
    pub spf: Option<RuleVerdict>,
    pub dkim: Option<RuleVerdict>,
    pub dmarc: Option<RuleDmarcPolicy>,
    /// Keyed by (add-on instance ARN, result field).
    pub analysis: HashMap<(String, String), AnalysisValue>,
}

impl Verdicts {
    pub fn analysis(&self, analyzer_arn: &str, field: &str) -> Option<&AnalysisValue> {
        // Avoids allocating a key for the lookup in the common small case.
        self.analysis
            .iter()
            .find(|((a, f), _)| a == analyzer_arn && f == field)
            .map(|(_, v)| v)
    }
}

/// An input the evaluation reached but was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Spf,
    Dkim,
    Dmarc,
    Analysis { analyzer: String, field: String },
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Spf => f.write_str("the SPF verdict"),
            Missing::Dkim => f.write_str("the DKIM verdict"),
            Missing::Dmarc => f.write_str("the DMARC policy"),
            Missing::Analysis { analyzer, field } => {
                write!(f, "the result {field} of add-on {analyzer}")
            }
        }
    }
}
