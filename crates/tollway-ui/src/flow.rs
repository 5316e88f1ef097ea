//! Reading the few fields of a Hubble-shaped flow that the server filters on.
//!
//! A flow is either the line `hubble observe -o json` prints
//! (`{"flow":{...},"node_name":..,"time":..}`) or the bare inner flow object.

use jiff::Timestamp;
use serde_json::Value;

use crate::UiQuery;

/// The inner flow object: `value["flow"]` when present, else `value` itself.
pub fn inner(value: &Value) -> &Value {
    match value.get("flow") {
        Some(flow) if flow.is_object() => flow,
        _ => value,
    }
}

/// The flow's time (`flow.time`, else the wrapper's `time`), if it parses as RFC 3339.
pub fn time(value: &Value) -> Option<Timestamp> {
    inner(value)
        .get("time")
        .or_else(|| value.get("time"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// The namespaces of the flow's source and destination (zero, one or two; equal ones once).
pub fn namespaces(value: &Value) -> impl Iterator<Item = &str> {
    let flow = inner(value);
    let source = endpoint_namespace(flow, "source");
    let destination = endpoint_namespace(flow, "destination").filter(|d| Some(*d) != source);
    source.into_iter().chain(destination)
}

fn endpoint_namespace<'a>(flow: &'a Value, side: &str) -> Option<&'a str> {
    flow.get(side)?
        .get("namespace")?
        .as_str()
        .filter(|ns| !ns.is_empty())
}

/// Whether the flow passes the query's namespace and time filters (not the limit). A flow
/// without a readable time never passes a `since` filter.
pub fn matches(value: &Value, query: &UiQuery) -> bool {
    if let Some(ns) = &query.namespace
        && !namespaces(value).any(|n| n == ns)
    {
        return false;
    }
    match query.since {
        Some(since) => time(value).is_some_and(|t| t >= since),
        None => true,
    }
}

/// The flows (oldest first) that match `query`: the newest `query.limit` of them, still
/// oldest first.
pub fn apply_query<'a>(flows: impl IntoIterator<Item = &'a Value>, query: &UiQuery) -> Vec<Value> {
    let mut out: Vec<Value> = flows
        .into_iter()
        .filter(|f| matches(f, query))
        .cloned()
        .collect();
    if out.len() > query.limit {
        let excess = out.len() - query.limit;
        out.drain(..excess);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_wrapped_and_bare_flows() {
        let wrapped = json!({"flow": {"time": "2026-12-01T10:00:00.123456789Z",
            "source": {"namespace": "payments"}, "destination": {"namespace": "kube-system"}}});
        let bare = json!({"time": "2026-12-01T10:00:00Z", "source": {"labels": ["reserved:world"]},
            "destination": {"namespace": "payments"}});
        assert_eq!(
            time(&wrapped).map(|t| t.subsec_nanosecond()),
            Some(123_456_789)
        );
        assert_eq!(
            namespaces(&wrapped).collect::<Vec<_>>(),
            ["payments", "kube-system"]
        );
        assert_eq!(namespaces(&bare).collect::<Vec<_>>(), ["payments"]);
        let same = json!({"source": {"namespace": "a"}, "destination": {"namespace": "a"}});
        assert_eq!(namespaces(&same).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn since_compares_instants_not_strings() {
        // "…00.5Z" sorts before "…00Z" as a string; as an instant it is later.
        let flow = json!({"time": "2026-12-01T10:00:00.5Z"});
        let query = UiQuery {
            since: Some("2026-12-01T10:00:00Z".parse().unwrap()),
            ..UiQuery::default()
        };
        assert!(matches(&flow, &query));
        assert!(!matches(&json!({"no": "time"}), &query));
    }
}
