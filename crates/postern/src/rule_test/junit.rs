//! JUnit XML, the format CI systems read.

use super::Report;
use std::collections::BTreeMap;

pub fn render(report: &Report) -> String {
    let mut by_file: BTreeMap<&str, Vec<&super::CaseResult>> = BTreeMap::new();
    for case in &report.cases {
        by_file.entry(case.file.as_str()).or_default().push(case);
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out += &format!(
        "<testsuites name=\"postern test\" tests=\"{}\" failures=\"{}\">\n",
        report.cases.len(),
        report.failed()
    );
    for (file, cases) in by_file {
        let failures = cases.iter().filter(|c| !c.failures.is_empty()).count();
        out += &format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            escape(file),
            cases.len()
        );
        for case in cases {
            out += &format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                escape(file),
                escape(&case.name)
            );
            if case.failures.is_empty() {
                out += "/>\n";
            } else {
                let text = case.failures.join("\n");
                let first = text.lines().next().unwrap_or_default();
                out += &format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    escape(first),
                    escape(&text)
                );
            }
        }
        out += "  </testsuite>\n";
    }
    out += "</testsuites>\n";
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
