//! Relay: one stream of flows from several nodes, in time order (what
//! Hubble Relay does for `hubble observe` across a cluster).
//!
//! * [`merge_by_time`] merges the answers of the nodes to one query;
//! * [`FollowMerger`] merges followed streams: it holds flows back until
//!   every reachable node has reported past their time, or until they have
//!   waited `max_delay` (so one quiet or slow node delays the stream by at
//!   most that much). It is pure: the caller passes the time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::Flow;

/// How long [`FollowMerger`] holds a flow back at most, by default.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(200);

/// Whether a node answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub name: String,
    /// It answered.
    pub reachable: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Merges per-node flow lists into one in time order (ties: the node
/// listed first, then the node's own order), then keeps the last `number`
/// (or the first, with `first`; all for `None`). Each list is sorted by
/// time first (stably: it usually already is).
pub fn merge_by_time(
    per_node: Vec<Vec<Arc<Flow>>>,
    number: Option<u64>,
    first: bool,
) -> Vec<Arc<Flow>> {
    let mut lists = per_node;
    for l in &mut lists {
        l.sort_by_key(|f| f.time);
    }
    let total: usize = lists.iter().map(Vec::len).sum();
    let mut heap: BinaryHeap<Reverse<(Timestamp, usize, usize)>> = lists
        .iter()
        .enumerate()
        .filter_map(|(n, l)| l.first().map(|f| Reverse((f.time, n, 0))))
        .collect();
    let mut out = Vec::with_capacity(total);
    while let Some(Reverse((_, n, i))) = heap.pop() {
        out.push(Arc::clone(&lists[n][i]));
        if let Some(next) = lists[n].get(i + 1) {
            heap.push(Reverse((next.time, n, i + 1)));
        }
    }
    let limit = number.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    if out.len() > limit {
        if first {
            out.truncate(limit);
        } else {
            out.drain(..out.len() - limit);
        }
    }
    out
}

#[derive(Debug)]
struct Pending {
    time: Timestamp,
    node: usize,
    seq: u64,
    deadline: Timestamp,
    flow: Arc<Flow>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Pending) -> bool {
        self.key() == o.key()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Pending) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Pending) -> std::cmp::Ordering {
        self.key().cmp(&o.key())
    }
}
impl Pending {
    fn key(&self) -> (Timestamp, usize, u64) {
        (self.time, self.node, self.seq)
    }
}

#[derive(Debug)]
struct Cursor {
    name: String,
    watermark: Option<Timestamp>,
    active: bool,
}

/// Merges followed streams of several nodes in time order.
#[derive(Debug)]
pub struct FollowMerger {
    nodes: Vec<Cursor>,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    max_delay: SignedDuration,
}

impl FollowMerger {
    /// A merger for these nodes (more can come with [`FollowMerger::push`]).
    pub fn new<S: Into<String>>(nodes: impl IntoIterator<Item = S>, max_delay: Duration) -> Self {
        FollowMerger {
            nodes: nodes
                .into_iter()
                .map(|n| Cursor {
                    name: n.into(),
                    watermark: None,
                    active: true,
                })
                .collect(),
            heap: BinaryHeap::new(),
            seq: 0,
            max_delay: SignedDuration::try_from(max_delay).unwrap_or(SignedDuration::MAX),
        }
    }

    fn node(&mut self, name: &str) -> usize {
        if let Some(i) = self.nodes.iter().position(|c| c.name == name) {
            return i;
        }
        self.nodes.push(Cursor {
            name: name.to_string(),
            watermark: None,
            active: true,
        });
        self.nodes.len() - 1
    }

    /// A batch from `node`, received at `now`: the node has reported every
    /// flow up to the newest of them.
    pub fn push(&mut self, node: &str, flows: Vec<Arc<Flow>>, now: Timestamp) {
        let n = self.node(node);
        let deadline = now.checked_add(self.max_delay).unwrap_or(Timestamp::MAX);
        for flow in flows {
            let c = &mut self.nodes[n];
            c.watermark = Some(c.watermark.map_or(flow.time, |w| w.max(flow.time)));
            self.seq += 1;
            self.heap.push(Reverse(Pending {
                time: flow.time,
                node: n,
                seq: self.seq,
                deadline,
                flow,
            }));
        }
    }

    /// `node` has nothing older than `up_to` left to send (e.g. its poll
    /// came back empty at that time).
    pub fn heartbeat(&mut self, node: &str, up_to: Timestamp) {
        let n = self.node(node);
        let c = &mut self.nodes[n];
        c.watermark = Some(c.watermark.map_or(up_to, |w| w.max(up_to)));
    }

    /// Marks a node reachable or not: unreachable nodes hold nothing back.
    pub fn set_reachable(&mut self, node: &str, reachable: bool) {
        let n = self.node(node);
        self.nodes[n].active = reachable;
    }

    /// Flows waiting.
    pub fn pending(&self) -> usize {
        self.heap.len()
    }

    /// The flows that can go out at `now`, in time order: those no
    /// reachable node can still precede, and those that waited
    /// `max_delay`.
    pub fn release(&mut self, now: Timestamp) -> Vec<Arc<Flow>> {
        let safe = self
            .nodes
            .iter()
            .filter(|c| c.active)
            .map(|c| c.watermark)
            .min()
            .unwrap_or(Some(Timestamp::MAX));
        let mut out = Vec::new();
        while let Some(Reverse(head)) = self.heap.peek() {
            let due = safe.is_some_and(|w| head.time <= w) || head.deadline <= now;
            if !due {
                break;
            }
            if let Some(Reverse(p)) = self.heap.pop() {
                out.push(p.flow);
            }
        }
        out
    }

    /// Everything still waiting, in time order (at the end of a stream).
    pub fn drain(&mut self) -> Vec<Arc<Flow>> {
        let mut out = Vec::with_capacity(self.heap.len());
        while let Some(Reverse(p)) = self.heap.pop() {
            out.push(p.flow);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(node: &str, ms: i64) -> Arc<Flow> {
        Arc::new(Flow {
            time: Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap(),
            node_name: node.to_string(),
            ..Flow::default()
        })
    }

    fn ids(v: &[Arc<Flow>]) -> Vec<String> {
        v.iter()
            .map(|x| {
                let ms = x.time.as_millisecond() - 1_700_000_000_000;
                format!("{}{}", x.node_name, ms)
            })
            .collect()
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn merge_orders_by_time_with_stable_ties() {
        let a = vec![f("a", 1), f("a", 5), f("a", 5)];
        let b = vec![f("b", 0), f("b", 5), f("b", 9)];
        let all = merge_by_time(vec![a.clone(), b.clone()], None, false);
        assert_eq!(ids(&all), ["b0", "a1", "a5", "a5", "b5", "b9"]);
        assert_eq!(
            ids(&merge_by_time(vec![a.clone(), b.clone()], Some(2), false)),
            ["b5", "b9"]
        );
        assert_eq!(ids(&merge_by_time(vec![a, b], Some(2), true)), ["b0", "a1"]);
        assert!(merge_by_time(vec![], Some(3), false).is_empty());
        // Unsorted input is sorted first.
        assert_eq!(
            ids(&merge_by_time(
                vec![vec![f("a", 3), f("a", 1)]],
                None,
                false
            )),
            ["a1", "a3"]
        );
    }

    #[test]
    fn follow_waits_for_every_node() {
        let mut m = FollowMerger::new(["a", "b"], Duration::from_millis(200));
        m.push("a", vec![f("a", 10), f("a", 20)], at(25));
        assert!(m.release(at(30)).is_empty(), "b has not reported yet");
        m.push("b", vec![f("b", 15)], at(31));
        assert_eq!(ids(&m.release(at(31))), ["a10", "b15"]);
        m.heartbeat("b", at(40));
        assert_eq!(ids(&m.release(at(41))), ["a20"]);
        assert_eq!(m.pending(), 0);
    }

    #[test]
    fn follow_releases_after_max_delay() {
        let mut m = FollowMerger::new(["a", "quiet"], Duration::from_millis(200));
        m.push("a", vec![f("a", 10)], at(10));
        assert!(m.release(at(209)).is_empty());
        assert_eq!(ids(&m.release(at(210))), ["a10"]);
    }

    #[test]
    fn unreachable_nodes_hold_nothing_back() {
        let mut m = FollowMerger::new(["a", "down"], Duration::from_secs(10));
        m.set_reachable("down", false);
        m.push("a", vec![f("a", 1), f("a", 2)], at(2));
        assert_eq!(ids(&m.release(at(2))), ["a1", "a2"]);
        m.push("late", vec![f("late", 0)], at(3));
        assert_eq!(
            ids(&m.release(at(3))),
            ["late0"],
            "a new node's own flows are safe"
        );
        m.push("a", vec![f("a", 5)], at(4));
        assert!(m.release(at(4)).is_empty(), "late has not reported past 5");
        assert_eq!(ids(&m.drain()), ["a5"]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn merge_is_a_sorted_permutation(lists in proptest::collection::vec(proptest::collection::vec(0i64..50, 0..20), 0..5)) {
                let per_node: Vec<Vec<Arc<Flow>>> = lists.iter().enumerate()
                    .map(|(n, l)| l.iter().map(|ms| f(&format!("n{n}-"), *ms)).collect())
                    .collect();
                let total: usize = lists.iter().map(Vec::len).sum();
                let out = merge_by_time(per_node, None, false);
                prop_assert_eq!(out.len(), total);
                prop_assert!(out.windows(2).all(|w| w[0].time <= w[1].time));
            }

            #[test]
            fn follow_output_is_sorted_when_nodes_are(batches in proptest::collection::vec((0usize..3, 1i64..20), 1..40)) {
                // Each node's flows are increasing in time; batches interleave.
                let names = ["a", "b", "c"];
                let mut m = FollowMerger::new(names, Duration::from_secs(3600));
                let mut clock = [0i64; 3];
                let mut out = Vec::new();
                let mut now = 0;
                for (node, step) in batches {
                    clock[node] += step;
                    now += 1;
                    m.push(names[node], vec![f(names[node], clock[node])], at(now));
                    out.extend(m.release(at(now)));
                }
                out.extend(m.drain());
                prop_assert!(out.windows(2).all(|w| w[0].time <= w[1].time));
            }
        }
    }
}
