//! `toYaml`: block YAML in the style of Helm's (sigs.k8s.io/yaml over
//! go-yaml v2): keys sorted, two-space indentation, sequences not indented
//! under their key, `{}` and `[]` for empty collections. Strings that YAML
//! 1.1 could read as something else (`yes`, `0123`, `1e3`, `10.0.0.1`) are
//! double-quoted.

use crate::value::Value;

/// The YAML text of a value, without a trailing newline (Helm trims it).
pub fn to_yaml(v: &Value) -> String {
    let v = normalize(v);
    match &v {
        Value::Map(m) if !m.is_empty() => block(&v).join("\n"),
        Value::List(l) if !l.is_empty() => block(&v).join("\n"),
        _ => scalar(&v),
    }
}

/// Floats that are whole numbers print as integers (Go writes the JSON
/// number `6443`, which YAML reads back as an int).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Int(*f as i64),
        Value::List(l) => Value::List(l.iter().map(normalize).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        v => v.clone(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Map(m) => !m.is_empty(),
        Value::List(l) => !l.is_empty(),
        _ => false,
    }
}

fn block(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Map(m) => {
            for (k, val) in m {
                let key = string_scalar(k);
                if !is_block(val) {
                    out.push(format!("{key}: {}", scalar(val)));
                    continue;
                }
                out.push(format!("{key}:"));
                let pad = if matches!(val, Value::Map(_)) {
                    "  "
                } else {
                    ""
                };
                out.extend(block(val).into_iter().map(|l| format!("{pad}{l}")));
            }
        }
        Value::List(l) => {
            for item in l {
                if !is_block(item) {
                    out.push(format!("- {}", scalar(item)));
                    continue;
                }
                for (i, line) in block(item).into_iter().enumerate() {
                    out.push(if i == 0 {
                        format!("- {line}")
                    } else {
                        format!("  {line}")
                    });
                }
            }
        }
        v => out.push(scalar(v)),
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Nil => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            if f.is_finite() {
                format!("{f}")
            } else if f.is_nan() {
                ".nan".to_string()
            } else if *f > 0.0 {
                ".inf".to_string()
            } else {
                "-.inf".to_string()
            }
        }
        Value::Str(s) => string_scalar(s),
        Value::List(_) => "[]".to_string(),
        Value::Map(_) => "{}".to_string(),
    }
}

/// YAML 1.1 words that read as booleans or null.
const RESERVED: &[&str] = &[
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
];

/// A string as a plain scalar when YAML 1.1 and 1.2 both read it back as
/// this string (go-yaml's rule: it would not resolve to a bool, null or
/// number, and holds no indicator), else double-quoted (JSON escapes are
/// valid YAML).
pub fn string_scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let lower = s.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) {
        return false;
    }
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, ".inf" | ".nan") {
        return false;
    }
    // Anything made only of digits and number punctuation could be an int,
    // a float, a sexagesimal or a date: quote it.
    if (first.is_ascii_digit() || matches!(first, '+' | '-' | '.'))
        && s.chars().all(|c| {
            c.is_ascii_hexdigit()
                || matches!(c, 'x' | 'X' | 'o' | 'O' | '_' | '.' | ':' | '+' | '-')
        })
    {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || s.ends_with(':') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.starts_with(' ') || s.ends_with(' ') {
        return false;
    }
    s.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn helm_style() {
        let v = map(&[
            ("b", Value::Float(6443.0)),
            (
                "a",
                Value::List(vec![
                    Value::str("x"),
                    map(&[("k", Value::str("true")), ("j", Value::List(vec![]))]),
                ]),
            ),
            (
                "c",
                map(&[
                    ("d", Value::str("10.0.0.1")),
                    ("e", Value::Map(BTreeMap::new())),
                ]),
            ),
            ("s", Value::str("two words")),
            ("r", Value::str("100m")),
        ]);
        assert_eq!(
            to_yaml(&v),
            "a:\n- x\n- j: []\n  k: \"true\"\nb: 6443\nc:\n  d: \"10.0.0.1\"\n  e: {}\nr: 100m\ns: two words"
        );
        assert_eq!(to_yaml(&Value::Map(BTreeMap::new())), "{}");
        assert_eq!(to_yaml(&Value::str("NET_ADMIN")), "NET_ADMIN");
    }

    #[test]
    fn output_reads_back() {
        let v = map(&[
            ("n", Value::str("0123")),
            ("y", Value::str("yes")),
            ("q", Value::str("a \"b\"\nc")),
            ("f", Value::str("1e3")),
            ("i", Value::str("-.inf")),
            ("c", Value::str("a: b")),
            ("d", Value::str("2001-12-14")),
            ("h", Value::str("0x1F")),
            ("s", Value::str("10:20")),
            (
                "l",
                Value::List(vec![Value::List(vec![Value::Int(1), Value::Int(2)])]),
            ),
        ]);
        let back: serde_json::Value = serde_saphyr::from_str(&to_yaml(&v)).unwrap();
        assert_eq!(back, v.to_json());
    }
}
