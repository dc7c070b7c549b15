//! YAML (and JSON, its subset) read into a tree that remembers where every
//! node and every mapping key came from.
//!
//! Scalars keep their text and whether they were plain (unquoted); what a
//! scalar means (string, number, boolean, null) is decided by the shape it is
//! validated against, not guessed here. Duplicate keys are errors. Aliases are
//! expanded, with a bound on the expanded size against "billion laughs".

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Line and column, both 1-based, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(span: Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    /// A plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn describe(&self) -> String {
        match &self.value {
            _ if self.is_null() => "null".into(),
            Value::Scalar { text, .. } => format!("{text:?}"),
            Value::Seq(items) if items.len() == 1 => "a list of 1 item".into(),
            Value::Seq(items) => format!("a list of {} items", items.len()),
            Value::Map(_) => "a mapping".into(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl Node {
    /// The tree of a JSON value, for checking API requests with the same
    /// validator as documents. Strings become quoted scalars, numbers,
    /// booleans and `null` plain ones; object members that are `null` are
    /// left out (JSON's null is an absent member). Positions are synthetic:
    /// the line is the node's place in document order, so that problems
    /// sort in the order of the value.
    pub fn from_json(value: &serde_json::Value) -> Node {
        let mut line = 0;
        node_of_json(value, &mut line)
    }
}

fn node_of_json(value: &serde_json::Value, line: &mut usize) -> Node {
    use serde_json::Value as Json;
    *line += 1;
    let pos = Pos {
        line: *line,
        column: 1,
    };
    let scalar = |text: String, plain: bool| Value::Scalar { text, plain };
    let value = match value {
        Json::Null => scalar("null".into(), true),
        Json::Bool(b) => scalar(b.to_string(), true),
        Json::Number(n) => scalar(n.to_string(), true),
        Json::String(text) => scalar(text.clone(), false),
        Json::Array(items) => Value::Seq(items.iter().map(|v| node_of_json(v, line)).collect()),
        Json::Object(members) => Value::Map(
            members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    *line += 1;
                    let key = Node {
                        pos: Pos {
                            line: *line,
                            column: 1,
                        },
                        value: scalar(k.clone(), false),
                    };
                    (key, node_of_json(v, line))
                })
                .collect(),
        ),
    };
    Node { pos, value }
}

/// A syntax error or a duplicate key, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    /// The field path of a duplicate key; empty for syntax errors.
    pub path: String,
    pub message: String,
}

/// Expanded aliases may not make the tree larger than this many nodes.
const MAX_NODES: usize = 3_000_000;

pub struct Document {
    pub root: Node,
    /// Duplicate keys: the document is still usable (the first key wins).
    pub errors: Vec<YamlError>,
}

pub fn parse(text: &str) -> Result<Document, YamlError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        errors: Vec::new(),
        nodes: 0,
        path: String::new(),
    };
    let mut root = None;
    loop {
        let (event, span) = builder.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(YamlError {
                        pos: Pos::of(span),
                        path: String::new(),
                        message: "expected a single YAML document; found a second one".into(),
                    });
                }
                let (event, span) = builder.next()?;
                root = Some(builder.node(event, span)?);
            }
            other => {
                return Err(YamlError {
                    pos: Pos::of(span),
                    path: String::new(),
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        }
    }
    let root = root.unwrap_or(Node {
        pos: Pos { line: 1, column: 1 },
        value: Value::Scalar {
            text: String::new(),
            plain: true,
        },
    });
    Ok(Document {
        root,
        errors: builder.errors,
    })
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    errors: Vec<YamlError>,
    nodes: usize,
    /// The field path of the node being built, as the validator writes it.
    path: String,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(pair)) => Ok(pair),
            Some(Err(error)) => Err(YamlError {
                pos: Pos {
                    line: error.marker().line(),
                    column: error.marker().col() + 1,
                },
                path: String::new(),
                message: format!("invalid YAML: {}", error.info()),
            }),
            None => Err(YamlError {
                pos: Pos::default(),
                path: String::new(),
                message: "invalid YAML: unexpected end of input".into(),
            }),
        }
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos,
                path: String::new(),
                message: format!(
                    "document too large: more than {MAX_NODES} nodes after expanding aliases"
                ),
            });
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Node, YamlError> {
        let pos = Pos::of(span);
        self.count(1, pos)?;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => (
                Node {
                    pos,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                },
                anchor,
            ),
            Event::Alias(id) => {
                let size = self
                    .anchors
                    .get(&id)
                    .map(size_of)
                    .ok_or_else(|| YamlError {
                        pos,
                        path: String::new(),
                        message: "invalid YAML: alias to an unknown anchor".into(),
                    })?;
                self.count(size, pos)?;
                let node = self.anchors[&id].clone();
                return Ok(Node { pos, ..node });
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let mark = self.path.len();
                    self.path.push_str(&format!("[{}]", items.len()));
                    let item = self.node(event, span);
                    self.path.truncate(mark);
                    items.push(item?);
                }
                (
                    Node {
                        pos,
                        value: Value::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(event, span)?;
                    let (event, span) = self.next()?;
                    let first = entries.iter().find(|(k, _)| same_key(k, &key));
                    let duplicate = first.map(|(k, _)| k.pos.line);
                    let mark = self.path.len();
                    push_key(&mut self.path, &key);
                    if let Some(line) = duplicate {
                        self.errors.push(YamlError {
                            pos: key.pos,
                            path: self.path.clone(),
                            message: format!(
                                "duplicate key {} (first given on line {line})",
                                key.describe()
                            ),
                        });
                    }
                    let value = self.node(event, span);
                    self.path.truncate(mark);
                    let value = value?;
                    if duplicate.is_some() {
                        continue;
                    }
                    entries.push((key, value));
                }
                (
                    Node {
                        pos,
                        value: Value::Map(entries),
                    },
                    anchor,
                )
            }
            other => {
                return Err(YamlError {
                    pos,
                    path: String::new(),
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

/// Appends a mapping key to a field path the way the validator writes it:
/// `.Name` for a member name, `["key"]` for other keys (keys of map shapes).
fn push_key(path: &mut String, key: &Node) {
    match &key.value {
        Value::Scalar { text, .. }
            if text.starts_with(|c: char| c.is_ascii_alphabetic())
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(text);
        }
        Value::Scalar { text, .. } => path.push_str(&format!("[{text:?}]")),
        _ => path.push_str(&format!("[{}]", key.describe())),
    }
}

/// Keys are the same when their text is, quoted or not.
fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Scalar { text: x, .. }, Value::Scalar { text: y, .. }) => x == y,
        (x, y) => x == y,
    }
}

fn size_of(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => items.iter().map(size_of).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| size_of(k) + size_of(v)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("a:\n  b: [1, \"x\"]\n").unwrap();
        let b = doc.root.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.pos, Pos { line: 2, column: 6 });
        let Value::Seq(items) = &b.value else {
            panic!()
        };
        assert_eq!(
            items[1].pos,
            Pos {
                line: 2,
                column: 10
            }
        );
        assert!(matches!(
            &items[1].value,
            Value::Scalar { plain: false, .. }
        ));
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let doc = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(doc.errors.len(), 1);
        assert_eq!(doc.errors[0].pos, Pos { line: 3, column: 1 });
    }

    #[test]
    fn duplicate_keys_have_the_field_path() {
        let doc = parse("a:\n  - b: 1\n    b: 2\nm:\n  X-Team: 1\n  X-Team: 2\n").unwrap();
        let paths: Vec<&str> = doc.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a[0].b", "m[\"X-Team\"]"]);
        assert!(doc.errors[0].message.contains("first given on line 2"));
    }

    #[test]
    fn json_is_read_too() {
        let doc = parse("{\"a\": {\"b\": [true, null]}}").unwrap();
        assert!(doc.root.get("a").unwrap().get("b").is_some());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").err().unwrap();
        assert!(err.pos.line >= 1, "{err:?}");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text += &format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            );
        }
        assert!(parse(&text).err().unwrap().message.contains("too large"));
    }
}
