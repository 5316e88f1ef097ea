//! Parsing `/api/flows` query strings into a [`UiQuery`], with messages for a person.

use jiff::Timestamp;

use crate::{DEFAULT_LIMIT, MAX_LIMIT, UiQuery};

/// A bad query string: the server answers 400 with the message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum QueryError {
    #[error("parameter {name:?}: bad percent-encoding")]
    Encoding { name: String },
    #[error("unknown parameter {name:?} (known: {known})")]
    Unknown { name: String, known: &'static str },
    #[error("parameter {name:?} given more than once")]
    Repeated { name: String },
    #[error(
        "namespace {value:?} is not a valid namespace name (lowercase letters, digits and '-', \
         starting and ending with a letter or digit, at most 63 characters)"
    )]
    Namespace { value: String },
    #[error(
        "since {value:?} is not an RFC 3339 timestamp (e.g. 2026-12-01T10:00:00.123456789Z): {reason}"
    )]
    Since { value: String, reason: String },
    #[error("limit {value:?} is not a whole number from 1 to {MAX_LIMIT}")]
    Limit { value: String },
}

/// Splits `a=b&c=d` into decoded pairs (`+` is a space). Empty pieces are skipped.
pub(crate) fn pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut out = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name_decoded = decode(name).ok_or_else(|| QueryError::Encoding {
            name: name.to_owned(),
        })?;
        let value = decode(value).ok_or_else(|| QueryError::Encoding {
            name: name_decoded.clone(),
        })?;
        out.push((name_decoded, value));
    }
    Ok(out)
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Parses the `/api/flows` query string. An empty value means the parameter is absent.
pub(crate) fn parse_flows_query(query: &str) -> Result<UiQuery, QueryError> {
    let mut namespace = None;
    let mut since = None;
    let mut limit = None;
    for (name, value) in pairs(query)? {
        let slot: &mut Option<String> = match name.as_str() {
            "namespace" => &mut namespace,
            "since" => &mut since,
            "limit" => &mut limit,
            _ => {
                return Err(QueryError::Unknown {
                    name,
                    known: "namespace, since, limit",
                });
            }
        };
        if slot.is_some() {
            return Err(QueryError::Repeated { name });
        }
        *slot = Some(value);
    }
    let namespace = namespace.filter(|v| !v.is_empty());
    if let Some(ns) = &namespace
        && !valid_namespace(ns)
    {
        return Err(QueryError::Namespace { value: ns.clone() });
    }
    let since = match since.filter(|v| !v.is_empty()) {
        None => None,
        Some(value) => Some(value.parse::<Timestamp>().map_err(|e| QueryError::Since {
            reason: e.to_string(),
            value,
        })?),
    };
    let limit = match limit.filter(|v| !v.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(QueryError::Limit { value }),
        },
    };
    Ok(UiQuery {
        namespace,
        since,
        limit,
    })
}

/// An RFC 1123 label, as Kubernetes requires of namespace names.
fn valid_namespace(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(ok)
        && b.last().is_some_and(ok)
        && b.iter().all(|c| ok(c) || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_parameters() {
        let q = parse_flows_query(
            "namespace=payments&since=2026-12-01T10%3A00%3A00.123456789Z&limit=50",
        )
        .unwrap();
        assert_eq!(q.namespace.as_deref(), Some("payments"));
        assert_eq!(
            q.since.map(|t| t.to_string()).as_deref(),
            Some("2026-12-01T10:00:00.123456789Z")
        );
        assert_eq!(q.limit, 50);
        assert_eq!(parse_flows_query("").unwrap(), UiQuery::default());
        assert_eq!(
            parse_flows_query("namespace=&since=").unwrap(),
            UiQuery::default()
        );
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(matches!(
            parse_flows_query("namespace=Payments"),
            Err(QueryError::Namespace { .. })
        ));
        assert!(matches!(
            parse_flows_query("since=yesterday"),
            Err(QueryError::Since { .. })
        ));
        for bad in ["limit=0", "limit=-1", "limit=10001", "limit=x"] {
            assert!(
                matches!(parse_flows_query(bad), Err(QueryError::Limit { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_flows_query("verdict=DROPPED"),
            Err(QueryError::Unknown { .. })
        ));
        assert!(matches!(
            parse_flows_query("limit=1&limit=2"),
            Err(QueryError::Repeated { .. })
        ));
        assert!(matches!(
            parse_flows_query("namespace=%zz"),
            Err(QueryError::Encoding { .. })
        ));
    }
}
