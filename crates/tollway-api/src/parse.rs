//! Manifest text (multi-document YAML, or JSON) → raw documents that remember
//! the line of every field, so that later errors can point at it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

use crate::error::{ManifestError, Problem};

/// One object's manifest, still untyped: a JSON value plus the line of each
/// field path.
#[derive(Debug, Clone)]
pub struct RawDocument {
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based index among the file's non-empty documents.
    pub index: usize,
    /// For `kind: List` documents, the index of this object in `items`.
    pub item: Option<usize>,
    /// The object.
    pub value: Value,
    lines: BTreeMap<String, u64>,
}

impl RawDocument {
    /// Build a document from an already parsed value (no line information).
    pub fn from_value(file: &str, index: usize, value: Value) -> Self {
        RawDocument {
            file: file.to_string(),
            index,
            item: None,
            value,
            lines: BTreeMap::new(),
        }
    }

    /// The line of the field at `path` (like `spec.ports[0].port`), or of the
    /// nearest enclosing node that has one.
    pub fn line_of(&self, path: &str) -> Option<u64> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            if p.is_empty() {
                return None;
            }
            p = match p.rfind(['.', '[']) {
                Some(i) => &p[..i],
                None => "",
            };
        }
    }

    /// The path prefix this object has inside its document (`items[3].` for
    /// list items, empty otherwise).
    pub fn path_prefix(&self) -> String {
        match self.item {
            Some(i) => format!("items[{i}]."),
            None => String::new(),
        }
    }
}

/// Parse every document of a manifest file.
///
/// Empty documents are skipped; a `kind: List` document is expanded into its
/// items. YAML and JSON are both accepted (JSON is parsed as YAML's flow
/// style).
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<RawDocument>, ManifestError> {
    let docs: Vec<Spanned<Node>> = serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| {
            let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
            let plain = e.without_snippet().to_string();
            ManifestError {
                file: file.to_string(),
                document: None,
                line,
                object: None,
                problem: Problem::Syntax {
                    message: strip_location_suffix(&plain),
                },
            }
        })?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let mut lines = BTreeMap::new();
        let value = flatten(doc, String::new(), &mut lines);
        let is_list = value.get("kind").and_then(Value::as_str) == Some("List")
            && value.get("items").is_some_and(Value::is_array);
        if is_list {
            let items = match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            for (j, item) in items.into_iter().enumerate() {
                let prefix = format!("items[{j}]");
                let item_lines = lines
                    .iter()
                    .filter_map(|(k, v)| {
                        let rest = k.strip_prefix(&prefix)?;
                        let rest = rest.strip_prefix('.').unwrap_or(rest);
                        Some((rest.to_string(), *v))
                    })
                    .collect();
                out.push(RawDocument {
                    file: file.to_string(),
                    index: i + 1,
                    item: Some(j),
                    value: item,
                    lines: item_lines,
                });
            }
        } else {
            out.push(RawDocument {
                file: file.to_string(),
                index: i + 1,
                item: None,
                value,
                lines,
            });
        }
    }
    if out.is_empty() {
        return Err(ManifestError {
            file: file.to_string(),
            document: None,
            line: None,
            object: None,
            problem: Problem::Empty,
        });
    }
    Ok(out)
}

/// Parser limits sized for manifests of whole clusters (tens of thousands of
/// objects in one file), still bounded against hostile input.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 100_000_000;
    budget.max_events = budget.max_events.max(400_000_000);
    budget.max_total_scalar_bytes = 1 << 30;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// serde-saphyr appends " at line L column C" to some messages; the line is
/// reported separately, so drop it from the text.
fn strip_location_suffix(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg);
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

fn flatten(node: Spanned<Node>, path: String, lines: &mut BTreeMap<String, u64>) -> Value {
    let line = node.referenced.line();
    if line > 0 {
        lines.insert(path.clone(), line);
    }
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::Number(Number::from(i)),
        Node::UInt(u) => Value::Number(Number::from(u)),
        Node::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, n)| flatten(n, format!("{path}[{i}]"), lines))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (k, n) in entries {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                map.insert(k, flatten(n, child, lines));
            }
            Value::Object(map)
        }
    }
}

/// A YAML node whose children remember where they were written.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(String, Spanned<Node>)>),
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Spanned<Node>)> = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            if entries.iter().any(|(k, _)| *k == key.0) {
                return Err(de::Error::custom(format!("duplicate key {:?}", key.0)));
            }
            entries.push((key.0, value));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A mapping key: Kubernetes keys are strings, but YAML lets `80: x` be a
/// number; keep its text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
                Ok(Key(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".to_string()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_with_lines() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n";
        let docs = parse_documents("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].index, 1);
        assert_eq!(docs[1].value["spec"]["ports"][0]["port"], 80);
        assert_eq!(docs[1].line_of("spec.ports[0].port"), Some(13));
        assert_eq!(docs[1].line_of("metadata.name"), Some(10));
        // An unknown path falls back to its nearest parent.
        assert_eq!(docs[1].line_of("spec.ports[0].nodePort"), Some(13));
    }

    #[test]
    fn json_is_accepted() {
        let docs = parse_documents(
            "f.json",
            r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}"#,
        )
        .unwrap();
        assert_eq!(docs[0].value["metadata"]["name"], "x");
    }

    #[test]
    fn list_is_expanded() {
        let text = "kind: List\napiVersion: v1\nitems:\n- kind: Namespace\n  apiVersion: v1\n  metadata: {name: a}\n- kind: Namespace\n  apiVersion: v1\n  metadata:\n    name: b\n";
        let docs = parse_documents("l.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].item, Some(1));
        assert_eq!(docs[1].line_of("metadata.name"), Some(10));
        assert_eq!(docs[1].path_prefix(), "items[1].");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse_documents("bad.yaml", "a: b\n  c: [\n").unwrap_err();
        assert!(matches!(err.problem, Problem::Syntax { .. }), "{err}");
        assert!(err.line.is_some(), "{err}");
        assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_documents("d.yaml", "a: 1\na: 2\n").unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let err = parse_documents("e.yaml", "---\n").unwrap_err();
        assert_eq!(err.problem, Problem::Empty);
    }
}
