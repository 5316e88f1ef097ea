//! A Hubble-UI-like service map for Tollway's flows.
//!
//! [`serve`] answers on a TCP listener with one self-contained page (`GET /`: inline
//! JavaScript and CSS, no external fetches) that draws the flows of a namespace as a
//! service map in SVG plus a flow table, and polls the JSON API every second:
//!
//! - `GET /api/flows?namespace=NS&since=T&limit=N` → `{"flows":[...],"unreachable_nodes":[...],"messages":[...]}`
//! - `GET /api/namespaces` → `{"namespaces":[...]}`
//! - `GET /healthz` → `ok`
//!
//! Flows come from a [`FlowFeed`]: JSON objects in Hubble's shape, what
//! `hubble observe -o json` prints per line (`{"flow":{...},"node_name":..,"time":..}`;
//! a bare flow object without the `"flow"` wrapper is accepted too). [`MemoryFeed`] is a
//! feed over flows held in memory.
//!
//! [`browser`] runs Debian's headless Chromium against a page (DOM dump, screenshot) and
//! finds elements in the dumped DOM, for tests in this crate and end-to-end tests
//! elsewhere.

pub mod browser;
pub mod flow;
mod query;
mod server;

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;
use serde_json::Value;

pub use server::{serve, serve_with_shutdown};

/// Flows answered when a request names no `limit`.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` a request may ask for.
pub const MAX_LIMIT: usize = 10_000;
/// How many recent flows [`FlowFeed::namespaces`] looks at by default.
pub const NAMESPACE_SCAN_LIMIT: usize = MAX_LIMIT;

/// What the page asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiQuery {
    /// Only flows whose source or destination is in this namespace.
    pub namespace: Option<String>,
    /// Only flows at or after this time (inclusive: the page deduplicates).
    pub since: Option<Timestamp>,
    /// At most this many flows: the newest ones that match.
    pub limit: usize,
}

impl Default for UiQuery {
    fn default() -> Self {
        Self {
            namespace: None,
            since: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// One answer of a [`FlowFeed`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedPage {
    /// Hubble-shaped flow objects, oldest first.
    pub flows: Vec<Value>,
    /// Nodes whose flows could not be read: the page shows a warning banner.
    pub unreachable_nodes: Vec<String>,
    /// Other warnings for the banner (e.g. "ring buffer overran, flows lost").
    pub messages: Vec<String>,
}

/// Why a feed could not answer. The server answers 503 with the message.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The flow source cannot be reached at all (e.g. no relay, no node answered).
    #[error("flow source unavailable: {reason}")]
    Unavailable { reason: String },
    /// Reading flows failed.
    #[error("reading flows: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else, with a message for a person.
    #[error("{0}")]
    Other(String),
}

/// Where the UI gets its flows. Synchronous: the server calls it from
/// `tokio::task::spawn_blocking`.
pub trait FlowFeed {
    /// The flows that match `query`, oldest first, at most `query.limit` (the newest).
    fn flows(&self, query: &UiQuery) -> Result<FeedPage, FeedError>;

    /// Namespaces seen in recent flows, sorted. By default: the namespaces of the
    /// sources and destinations of the last [`NAMESPACE_SCAN_LIMIT`] flows.
    fn namespaces(&self) -> Result<Vec<String>, FeedError> {
        let page = self.flows(&UiQuery {
            namespace: None,
            since: None,
            limit: NAMESPACE_SCAN_LIMIT,
        })?;
        let names: BTreeSet<String> = page
            .flows
            .iter()
            .flat_map(flow::namespaces)
            .map(str::to_owned)
            .collect();
        Ok(names.into_iter().collect())
    }
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Accepting a connection failed with an error that is not transient.
    #[error("accepting a connection: {0}")]
    Accept(#[source] std::io::Error),
}

/// A [`FlowFeed`] over flows held in memory, in the order they were added (which should
/// be time order). Thread-safe: flows can be pushed while the server reads.
#[derive(Debug, Default)]
pub struct MemoryFeed {
    inner: Mutex<MemoryFeedInner>,
}

#[derive(Debug, Default)]
struct MemoryFeedInner {
    flows: Vec<Value>,
    unreachable_nodes: Vec<String>,
    messages: Vec<String>,
    capacity: Option<usize>,
}

impl MemoryFeed {
    /// A feed holding `flows` (oldest first).
    pub fn new(flows: Vec<Value>) -> Self {
        Self {
            inner: Mutex::new(MemoryFeedInner {
                flows,
                ..MemoryFeedInner::default()
            }),
        }
    }

    /// Keeps at most `capacity` flows, dropping the oldest (like Hubble's ring).
    pub fn with_capacity_limit(self, capacity: usize) -> Self {
        {
            let mut inner = self.lock();
            inner.capacity = Some(capacity);
            inner.trim();
        }
        self
    }

    /// Appends one flow (the newest).
    pub fn push(&self, flow: Value) {
        let mut inner = self.lock();
        inner.flows.push(flow);
        inner.trim();
    }

    /// Sets the nodes reported as unreachable with every answer.
    pub fn set_unreachable_nodes(&self, nodes: Vec<String>) {
        self.lock().unreachable_nodes = nodes;
    }

    /// Sets the warnings reported with every answer.
    pub fn set_messages(&self, messages: Vec<String>) {
        self.lock().messages = messages;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryFeedInner> {
        // The data stays consistent even if a holder panicked: keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryFeedInner {
    fn trim(&mut self) {
        if let Some(capacity) = self.capacity
            && self.flows.len() > capacity
        {
            let excess = self.flows.len() - capacity;
            self.flows.drain(..excess);
        }
    }
}

impl FlowFeed for MemoryFeed {
    fn flows(&self, query: &UiQuery) -> Result<FeedPage, FeedError> {
        let inner = self.lock();
        Ok(FeedPage {
            flows: flow::apply_query(&inner.flows, query),
            unreachable_nodes: inner.unreachable_nodes.clone(),
            messages: inner.messages.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flow(time: &str, src_ns: &str, dst_ns: &str) -> Value {
        json!({"flow": {"time": time, "source": {"namespace": src_ns}, "destination": {"namespace": dst_ns}}, "time": time})
    }

    #[test]
    fn memory_feed_filters_and_limits() {
        let feed = MemoryFeed::new(vec![
            flow("2026-12-01T10:00:00Z", "a", "b"),
            flow("2026-12-01T10:00:01Z", "c", "c"),
            flow("2026-12-01T10:00:02.5Z", "b", "c"),
        ]);
        let page = feed
            .flows(&UiQuery {
                namespace: Some("b".into()),
                ..UiQuery::default()
            })
            .unwrap();
        assert_eq!(page.flows.len(), 2);
        let page = feed
            .flows(&UiQuery {
                since: Some("2026-12-01T10:00:01Z".parse().unwrap()),
                ..UiQuery::default()
            })
            .unwrap();
        assert_eq!(page.flows.len(), 2, "since is inclusive");
        let page = feed
            .flows(&UiQuery {
                limit: 1,
                ..UiQuery::default()
            })
            .unwrap();
        assert_eq!(page.flows, vec![flow("2026-12-01T10:00:02.5Z", "b", "c")]);
        assert_eq!(feed.namespaces().unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn memory_feed_capacity_drops_oldest() {
        let feed = MemoryFeed::default().with_capacity_limit(2);
        for s in 0..5 {
            feed.push(flow(&format!("2026-12-01T10:00:0{s}Z"), "a", "a"));
        }
        let page = feed.flows(&UiQuery::default()).unwrap();
        assert_eq!(page.flows.len(), 2);
        assert_eq!(page.flows[0]["time"], "2026-12-01T10:00:03Z");
    }
}
