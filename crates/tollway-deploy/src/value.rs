//! The template data model: Helm's values as Go sees them.
//!
//! Helm reads `values.yaml` through JSON, so every number there is a
//! `float64`; `--set` parses integers as `int64`. [`Value`] keeps that
//! distinction, because it shows in what a template prints (`%v` of a
//! `float64` of a million is `1e+06`) and in what `eq` accepts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A template value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Go's `nil` (a missing key, YAML `null`).
    #[default]
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int64` (`--set` integers, `len`, `int`).
    Int(i64),
    /// `float64` (every number of a YAML or JSON file).
    Float(f64),
    /// `string`.
    Str(String),
    /// `[]interface{}`.
    List(Vec<Value>),
    /// `map[string]interface{}`: Go ranges over maps in key order, and so
    /// does a `BTreeMap`.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// Go template truth: false, 0, nil, and empty strings, lists and maps
    /// are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// Sprig's `kindOf`: `invalid`, `bool`, `int64`, `float64`, `string`,
    /// `slice`, `map`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
        }
    }

    /// What `{{ x }}` prints (Go's `fmt.Sprint`; Helm then removes
    /// `<no value>`, so nil prints nothing).
    pub fn print(&self) -> String {
        let mut out = String::new();
        self.print_into(&mut out, true);
        out
    }

    /// Sprig's `toString`: like [`Value::print`], except that nil is
    /// `<nil>`.
    pub fn to_go_string(&self) -> String {
        match self {
            Value::Nil => "<nil>".to_string(),
            v => v.print(),
        }
    }

    fn print_into(&self, out: &mut String, top: bool) {
        match self {
            Value::Nil if top => {}
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&go_float(*f)),
            Value::Str(s) => out.push_str(s),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.print_into(out, false);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.print_into(out, false);
                }
                out.push(']');
            }
        }
    }

    /// From JSON as Helm reads a values file: every number is a float64.
    pub fn from_json_values(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => {
                Value::List(a.iter().map(Value::from_json_values).collect())
            }
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json_values(v)))
                    .collect(),
            ),
        }
    }

    /// To JSON (what `toJson` and `toYaml` start from). Floats that are
    /// whole numbers become JSON integers, as Go's encoder writes them.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    serde_json::Value::from(*f as i64)
                } else {
                    serde_json::Number::from_f64(*f)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
            }
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// A map's entry, or nil.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.get(key),
            _ => None,
        }
    }
}

/// Go's `%v` of a float64: the shortest digits that round-trip, in
/// exponent form when the decimal exponent is below -4 or at least 6
/// (strconv's rule for the shortest `%g`).
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `1.2345e6`.
    let e = format!("{f:e}");
    let (mantissa, exp) = match e.split_once('e') {
        Some((m, x)) => (m.to_string(), x.parse::<i32>().unwrap_or(0)),
        None => (e.clone(), 0),
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(go_float(6443.0), "6443");
        assert_eq!(go_float(16381.0), "16381");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1000000.0), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-3.0), "-3");
    }

    #[test]
    fn printing() {
        let m = Value::Map(
            [
                ("b".to_string(), Value::Int(1)),
                ("a".to_string(), Value::Nil),
            ]
            .into_iter()
            .collect(),
        );
        assert_eq!(m.print(), "map[a:<nil> b:1]");
        assert_eq!(Value::Nil.print(), "");
        assert_eq!(Value::Nil.to_go_string(), "<nil>");
        assert_eq!(
            Value::List(vec![Value::str("x"), Value::Bool(true)]).print(),
            "[x true]"
        );
    }
}
