//! Values: `values.yaml`, `-f` files and `--set` / `--set-string`
//! overrides, merged as Helm merges them.

use std::collections::BTreeMap;

use crate::error::RenderError;
use crate::value::Value;

/// Parse a values file (YAML) the way Helm reads it: numbers are float64.
pub fn parse_values_yaml(what: &str, text: &str) -> Result<Value, RenderError> {
    if text.trim().is_empty() {
        return Ok(Value::Map(BTreeMap::new()));
    }
    let j: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| RenderError::Yaml {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    match Value::from_json_values(&j) {
        Value::Nil => Ok(Value::Map(BTreeMap::new())),
        v @ Value::Map(_) => Ok(v),
        other => Err(RenderError::Yaml {
            what: what.to_string(),
            message: format!("values must be a map, not a {}", other.kind()),
        }),
    }
}

/// Merge `over` onto `base` (Helm's coalescing of user values onto the
/// chart's): maps merge key by key, anything else replaces, and a nil
/// removes the key.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                if v == Value::Nil {
                    b.remove(&k);
                    continue;
                }
                match b.get_mut(&k) {
                    Some(slot @ Value::Map(_)) if matches!(v, Value::Map(_)) => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Apply one `--set` (typed: `true`, `false`, `null`, integers) or
/// `--set-string` (`typed = false`) expression to `values`:
/// `a.b=c,d[0]=e,f={x,y}`, with `\,` and `\.` escapes.
pub fn apply_set(values: &mut Value, expr: &str, typed: bool) -> Result<(), RenderError> {
    let err = |message: String| RenderError::Set {
        expr: expr.to_string(),
        message,
    };
    for assignment in split_unescaped(expr, ',', true) {
        if assignment.is_empty() {
            continue;
        }
        let Some((key, val)) = split_first_unescaped(&assignment, '=') else {
            return Err(err(format!(
                "{assignment:?}: key has no value (want key=value)"
            )));
        };
        let path = parse_key(&key).map_err(&err)?;
        let value = if val.starts_with('{') && val.ends_with('}') && val.len() >= 2 {
            Value::List(
                split_unescaped(&val[1..val.len() - 1], ',', false)
                    .into_iter()
                    .map(|v| typed_value(&unescape(&v), typed))
                    .collect(),
            )
        } else {
            typed_value(&unescape(&val), typed)
        };
        set_path(values, &path, value).map_err(&err)?;
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_key(key: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in split_unescaped(key, '.', false) {
        let part = part.as_str();
        let (name, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        let name = unescape(name);
        if name.is_empty() {
            return Err(format!("empty key segment in {key:?}"));
        }
        segs.push(Seg::Key(name));
        while !idx.is_empty() {
            let close = idx
                .find(']')
                .ok_or_else(|| format!("unclosed [ in {key:?}"))?;
            let n: usize = idx[1..close]
                .parse()
                .map_err(|_| format!("bad list index {:?} in {key:?}", &idx[1..close]))?;
            if n > 65535 {
                return Err(format!("list index {n} too large"));
            }
            segs.push(Seg::Index(n));
            idx = &idx[close + 1..];
            if !idx.is_empty() && !idx.starts_with('[') {
                return Err(format!("unexpected {idx:?} after an index in {key:?}"));
            }
        }
    }
    Ok(segs)
}

fn set_path(target: &mut Value, path: &[Seg], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *target = value;
        return Ok(());
    };
    match first {
        Seg::Key(k) => {
            if !matches!(target, Value::Map(_)) {
                *target = Value::Map(BTreeMap::new());
            }
            let Value::Map(m) = target else {
                return Err("not a map".to_string());
            };
            let slot = m.entry(k.clone()).or_insert(Value::Nil);
            set_path(slot, rest, value)
        }
        Seg::Index(i) => {
            if !matches!(target, Value::List(_)) {
                *target = Value::List(Vec::new());
            }
            let Value::List(l) = target else {
                return Err("not a list".to_string());
            };
            if l.len() <= *i {
                l.resize(*i + 1, Value::Nil);
            }
            set_path(&mut l[*i], rest, value)
        }
    }
}

/// Helm's typing of a `--set` value.
fn typed_value(s: &str, typed: bool) -> Value {
    if !typed {
        return Value::Str(s.to_string());
    }
    if s.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if s.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if s.eq_ignore_ascii_case("null") {
        return Value::Nil;
    }
    if s == "0" {
        return Value::Int(0);
    }
    if s.len() > 1 && s.starts_with('0') {
        return Value::Str(s.to_string());
    }
    match s.parse::<i64>() {
        Ok(i) if !s.starts_with('+') => Value::Int(i),
        _ => Value::Str(s.to_string()),
    }
}

/// Split on `sep` where it is not escaped (and, for `braces`, not inside
/// `{...}`); escapes are kept for the next step.
fn split_unescaped(s: &str, sep: char, braces: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '{' if braces => {
                depth += 1;
                cur.push(c);
            }
            '}' if braces => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            c if c == sep && depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn split_first_unescaped(s: &str, sep: char) -> Option<(String, String)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            return Some((s[..i].to_string(), s[i + 1..].to_string()));
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(exprs: &[&str]) -> serde_json::Value {
        let mut v = Value::Map(BTreeMap::new());
        for e in exprs {
            apply_set(&mut v, e, true).unwrap();
        }
        v.to_json()
    }

    #[test]
    fn set_expressions() {
        assert_eq!(
            set(&[
                "kubeProxyReplacement=true",
                "k8sServicePort=6443",
                "flows.relay.enabled=true"
            ]),
            serde_json::json!({"kubeProxyReplacement": true, "k8sServicePort": 6443,
                "flows": {"relay": {"enabled": true}}})
        );
        assert_eq!(
            set(&["a=x\\,y,b={1,two},c[1].d=0123,e\\.f=g"]),
            serde_json::json!({"a": "x,y", "b": [1, "two"], "c": [null, {"d": "0123"}], "e.f": "g"})
        );
        let mut v = Value::Map(BTreeMap::new());
        apply_set(&mut v, "p=6443", false).unwrap();
        assert_eq!(v.to_json(), serde_json::json!({"p": "6443"}));
        assert!(apply_set(&mut v, "novalue", true).is_err());
        assert!(apply_set(&mut v, "a[x]=1", true).is_err());
    }

    #[test]
    fn merging() {
        let mut base = parse_values_yaml("v", "a: {b: 1, c: 2}\nd: [1]\ne: x").unwrap();
        let over = parse_values_yaml("o", "a: {c: 3}\nd: [2, 3]\ne: null").unwrap();
        merge(&mut base, over);
        assert_eq!(
            base.to_json(),
            serde_json::json!({"a": {"b": 1, "c": 3}, "d": [2, 3]})
        );
    }
}
