//! Errors as a compiler reports them: file, line, column, the path of the
//! field, what was expected and what was found, with the source line.

use crate::yaml::Pos;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    /// `RuleSets[0].Rules[3].Conditions[1].StringExpression.Operator`, or empty
    /// for the document itself.
    pub path: String,
    pub message: String,
    /// The source line, for display.
    pub line_text: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = &self.line_text {
            let gutter = self.pos.line.to_string();
            write!(f, "\n {gutter} | {line}")?;
            let pad: String = line
                .chars()
                .take(self.pos.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n {} | {pad}^", " ".repeat(gutter.len()))?;
        }
        Ok(())
    }
}

/// Every error found in one file, in the order of the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub(crate) fn sort(&mut self) {
        self.0
            .sort_by(|a, b| a.pos.cmp(&b.pos).then(a.path.cmp(&b.path)));
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics for one source text.
pub(crate) struct Reporter<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    pub(crate) found: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Reporter<'a> {
        Reporter {
            file,
            lines: text.lines().collect(),
            found: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        let line_text = pos
            .line
            .checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .map(|l| l.trim_end().to_string());
        self.found.push(Diagnostic {
            file: self.file.to_string(),
            pos,
            path: path.to_string(),
            message: message.into(),
            line_text,
        });
    }

    pub(crate) fn finish(self) -> Diagnostics {
        let mut d = Diagnostics(self.found);
        d.sort();
        d
    }
}

/// The closest candidate, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    found: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let found_l = found.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&found_l, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(
            did_you_mean("EQUAL", ["EQUALS", "CONTAINS"]),
            Some("EQUALS")
        );
        assert_eq!(
            did_you_mean("Condtions", ["Conditions", "Unless"]),
            Some("Conditions")
        );
        assert_eq!(did_you_mean("Banana", ["Conditions", "Unless"]), None);
    }

    #[test]
    fn renders_like_a_compiler() {
        let mut r = Reporter::new("postern.yaml", "a:\n  b: EQUAL\n");
        r.error(
            Pos { line: 2, column: 6 },
            "a.b",
            "expected one of EQUALS; found \"EQUAL\"",
        );
        let text = r.finish().to_string();
        assert!(text.starts_with("postern.yaml:2:6: a.b: expected one of EQUALS; found \"EQUAL\"\n 2 |   b: EQUAL\n   |      ^"), "{text}");
        assert!(text.ends_with("1 error"));
    }
}
