//! [`SearchQuery`] to a SQL `WHERE` clause. Every user value is a bound
//! parameter; `CONTAINS` values are lowercased and their `LIKE` wildcards
//! (`%`, `_`) and the escape character `\` are escaped.

use postern_model::{
    ArchiveBooleanEmailAttribute, ArchiveBooleanOperator, ArchiveBooleanToEvaluate,
    ArchiveFilterCondition, ArchiveFilters, ArchiveStringEmailAttribute, ArchiveStringOperator,
    ArchiveStringToEvaluate,
};

use crate::ArchiveError;
use crate::index::Value;
use crate::ingest;

/// What `search` and `export` look for.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// Received at or after this instant (inclusive).
    pub from: time::OffsetDateTime,
    /// Received before this instant (exclusive).
    pub to: time::OffsetDateTime,
    pub filters: Option<ArchiveFilters>,
    /// At most this many results (newest first).
    pub max_results: usize,
    /// An extension: words that must all appear in the body text.
    pub full_text: Option<String>,
}

pub(crate) fn micros(at: time::OffsetDateTime) -> i64 {
    let us = at.unix_timestamp_nanos() / 1000;
    us.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// A `WHERE` clause and its parameters, numbered from `$1`.
#[derive(Debug, Default)]
pub(crate) struct Where {
    pub sql: String,
    pub values: Vec<Value>,
}

impl Where {
    fn param(&mut self, value: Value) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    /// Everything of an archive.
    pub(crate) fn archive(archive_id: &str) -> Where {
        let mut w = Where::default();
        let p = w.param(Value::Text(archive_id.to_owned()));
        w.sql = format!("archive_id = {p}");
        w
    }

    /// An archive's messages received before `cutoff`.
    pub(crate) fn before(archive_id: &str, cutoff: time::OffsetDateTime) -> Where {
        let mut w = Where::archive(archive_id);
        let p = w.param(Value::Int(micros(cutoff)));
        w.sql.push_str(&format!(" AND received_us < {p}"));
        w
    }
}

/// Builds the clause for `query` over `archive_id`. `postgres` picks the
/// full-text syntax. `None` when the query can match nothing (a full-text
/// query without a word).
pub(crate) fn build(
    archive_id: &str,
    query: &SearchQuery,
    postgres: bool,
) -> Result<Option<Where>, ArchiveError> {
    if query.to < query.from {
        return Err(ArchiveError::Invalid(format!(
            "ToTimestamp ({}) is before FromTimestamp ({})",
            query.to, query.from
        )));
    }
    let mut w = Where::archive(archive_id);
    let from = w.param(Value::Int(micros(query.from)));
    let to = w.param(Value::Int(micros(query.to)));
    w.sql.push_str(&format!(
        " AND received_us >= {from} AND received_us < {to}"
    ));
    if let Some(filters) = &query.filters {
        let ArchiveFilters { include, unless } = filters;
        for (i, condition) in include.iter().flatten().enumerate() {
            let sql = condition_sql(&mut w, condition, &format!("Include[{i}]"))?;
            w.sql.push_str(&format!(" AND {sql}"));
        }
        for (i, condition) in unless.iter().flatten().enumerate() {
            let sql = condition_sql(&mut w, condition, &format!("Unless[{i}]"))?;
            w.sql.push_str(&format!(" AND NOT {sql}"));
        }
    }
    if let Some(text) = &query.full_text {
        let words = ingest::words(text);
        if words.is_empty() {
            return Ok(None);
        }
        if postgres {
            let p = w.param(Value::Text(words.join(" ")));
            w.sql
                .push_str(&format!(" AND words @@ plainto_tsquery('simple', {p})"));
        } else {
            // Words are letters and digits only; quoting each makes it a
            // plain term, and terms side by side must all match.
            let terms: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
            let p = w.param(Value::Text(terms.join(" ")));
            w.sql.push_str(&format!(
                " AND seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH {p})"
            ));
        }
    }
    Ok(Some(w))
}

/// One condition as a parenthesised boolean SQL expression.
fn condition_sql(
    w: &mut Where,
    condition: &ArchiveFilterCondition,
    at: &str,
) -> Result<String, ArchiveError> {
    match condition {
        ArchiveFilterCondition::StringExpression(e) => {
            let ArchiveStringToEvaluate::Attribute(attribute) = &e.evaluate;
            let ArchiveStringOperator::Contains = e.operator;
            if e.values.is_empty() {
                return Err(ArchiveError::Invalid(format!(
                    "{at}.StringExpression.Values: at least one value is required"
                )));
            }
            let column = match attribute {
                ArchiveStringEmailAttribute::To => "s_to",
                ArchiveStringEmailAttribute::From => "s_from",
                ArchiveStringEmailAttribute::Cc => "s_cc",
                ArchiveStringEmailAttribute::Subject => "s_subject",
                ArchiveStringEmailAttribute::EnvelopeFrom => "s_env_from",
                ArchiveStringEmailAttribute::EnvelopeTo => "s_env_to",
            };
            let mut alternatives = Vec::new();
            for value in &e.values {
                // Recipients are joined with '\n' in s_env_to: a value with
                // a line break is in no single recipient.
                if *attribute == ArchiveStringEmailAttribute::EnvelopeTo && value.contains('\n') {
                    continue;
                }
                let pattern = format!("%{}%", escape_like(&value.to_lowercase()));
                let p = w.param(Value::Text(pattern));
                alternatives.push(format!("{column} LIKE {p} ESCAPE '\\'"));
            }
            if alternatives.is_empty() {
                return Ok("(1 = 0)".to_owned());
            }
            Ok(format!("({})", alternatives.join(" OR ")))
        }
        ArchiveFilterCondition::BooleanExpression(e) => {
            let ArchiveBooleanToEvaluate::Attribute(ArchiveBooleanEmailAttribute::HasAttachments) =
                &e.evaluate;
            Ok(match e.operator {
                ArchiveBooleanOperator::IsTrue => "(has_attachments = 1)",
                ArchiveBooleanOperator::IsFalse => "(has_attachments = 0)",
            }
            .to_owned())
        }
    }
}

/// `%`, `_` and `\` taken literally under `ESCAPE '\'`.
fn escape_like(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like(r"50%_off\x"), r"50\%\_off\\x");
    }
}
