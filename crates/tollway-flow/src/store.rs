//! The flow store: a ring of the last `capacity` flows (Hubble's ring
//! buffer, 4095 by default), numbered from 1 in arrival order.
//!
//! One short mutex guards the ring. The writer (the ring buffer reader)
//! holds it for one `push`; readers hold it only to copy `Arc`s out, and
//! filter afterwards, so a slow reader never holds up the writer for more
//! than a copy of at most `capacity` pointers. Followers wait on a
//! condition variable for flows newer than the last one they saw, and
//! learn how many they missed if the ring overwrote them in between.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::filter::{CompiledRequest, FilterError, FlowRequest};
use crate::model::Flow;

/// Hubble's default ring size.
pub const DEFAULT_CAPACITY: usize = 4095;

/// The ring.
#[derive(Debug)]
pub struct FlowStore {
    inner: Mutex<Ring>,
    cond: Condvar,
    capacity: usize,
}

#[derive(Debug)]
struct Ring {
    /// `(seq, flow)`, oldest first.
    flows: VecDeque<(u64, Arc<Flow>)>,
    /// The seq of the newest flow (0 before any).
    last_seq: u64,
    /// Followers blocked in `wait_newer`: a push wakes them only if there
    /// are any (no futex call per flow otherwise).
    waiters: usize,
}

/// What [`FlowStore::wait_newer`] returns.
#[derive(Debug, Clone, Default)]
pub struct Newer {
    /// Flows newer than the given seq, oldest first (may be empty on
    /// timeout).
    pub flows: Vec<Arc<Flow>>,
    /// The seq to pass next time (the newest returned, or the one given).
    pub next_after: u64,
    /// Flows newer than the given seq that the ring overwrote before this
    /// call (Hubble's lost events of source `HUBBLE_RING_BUFFER`).
    pub lost: u64,
}

impl Default for FlowStore {
    fn default() -> FlowStore {
        FlowStore::new(DEFAULT_CAPACITY)
    }
}

impl FlowStore {
    /// A store of `capacity` flows (at least 1).
    pub fn new(capacity: usize) -> FlowStore {
        let capacity = capacity.max(1);
        FlowStore {
            inner: Mutex::new(Ring {
                flows: VecDeque::with_capacity(capacity),
                last_seq: 0,
                waiters: 0,
            }),
            cond: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic elsewhere while holding the lock leaves the ring whole
        // (every update is a single push/pop), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many flows it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds a flow (overwriting the oldest when full); returns its seq.
    pub fn push(&self, flow: Flow) -> u64 {
        self.push_arc(Arc::new(flow))
    }

    /// Adds a shared flow; returns its seq.
    pub fn push_arc(&self, flow: Arc<Flow>) -> u64 {
        let (seq, wake) = {
            let mut r = self.lock();
            if r.flows.len() == self.capacity {
                r.flows.pop_front();
            }
            r.last_seq += 1;
            let seq = r.last_seq;
            r.flows.push_back((seq, flow));
            (seq, r.waiters > 0)
        };
        if wake {
            self.cond.notify_all();
        }
        seq
    }

    /// Flows pushed since the start.
    pub fn flows_seen(&self) -> u64 {
        self.lock().last_seq
    }

    /// Flows stored now.
    pub fn len(&self) -> usize {
        self.lock().flows.len()
    }

    /// Whether no flow is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq of the newest flow (0 if none): where a follower that wants
    /// only new flows starts.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    fn snapshot(&self) -> (Vec<Arc<Flow>>, u64) {
        let r = self.lock();
        (
            r.flows.iter().map(|(_, f)| Arc::clone(f)).collect(),
            r.last_seq,
        )
    }

    /// Compiles `req` and queries (see [`FlowStore::query_compiled`]).
    pub fn query(&self, req: &FlowRequest) -> Result<Vec<Arc<Flow>>, FilterError> {
        Ok(self.query_compiled(&req.compile()?))
    }

    /// The stored flows that match (filters, since, until), in arrival
    /// order: the last `number` of them, or the first `number` with
    /// `first`, or all for `number: None`.
    pub fn query_compiled(&self, req: &CompiledRequest) -> Vec<Arc<Flow>> {
        self.query_and_seq(req).0
    }

    /// As [`FlowStore::query_compiled`], with the seq of the newest stored
    /// flow at that moment: a follower passes it to
    /// [`FlowStore::wait_newer`] to get every later flow exactly once.
    pub fn query_and_seq(&self, req: &CompiledRequest) -> (Vec<Arc<Flow>>, u64) {
        let limit = req
            .number
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if limit == 0 {
            return (Vec::new(), self.last_seq());
        }
        if req.is_unfiltered() {
            // Everything matches: copy only what is returned.
            let r = self.lock();
            let n = r.flows.len().min(limit);
            let skip = if req.first { 0 } else { r.flows.len() - n };
            let out = r
                .flows
                .iter()
                .skip(skip)
                .take(n)
                .map(|(_, f)| Arc::clone(f))
                .collect();
            return (out, r.last_seq);
        }
        let (all, seq) = self.snapshot();
        let out = if req.first {
            all.into_iter()
                .filter(|f| req.matches(f))
                .take(limit)
                .collect()
        } else {
            let mut rev: Vec<Arc<Flow>> = all
                .into_iter()
                .rev()
                .filter(|f| req.matches(f))
                .take(limit)
                .collect();
            rev.reverse();
            rev
        };
        (out, seq)
    }

    /// The flows with a seq greater than `after_seq`, oldest first,
    /// waiting up to `timeout` for one if there is none yet.
    pub fn wait_newer(&self, after_seq: u64, timeout: Duration) -> Newer {
        let deadline = Instant::now() + timeout;
        let mut r = self.lock();
        while r.last_seq <= after_seq {
            let now = Instant::now();
            if now >= deadline {
                return Newer {
                    flows: Vec::new(),
                    next_after: after_seq,
                    lost: 0,
                };
            }
            r.waiters += 1;
            r = match self.cond.wait_timeout(r, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
            r.waiters -= 1;
        }
        let oldest = r.flows.front().map_or(r.last_seq + 1, |(s, _)| *s);
        let lost = oldest.saturating_sub(after_seq + 1);
        // Seqs are consecutive: skip straight to the first wanted one.
        let skip = usize::try_from((after_seq + 1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        let flows: Vec<Arc<Flow>> = r
            .flows
            .iter()
            .skip(skip)
            .map(|(_, f)| Arc::clone(f))
            .collect();
        Newer {
            flows,
            next_after: r.last_seq,
            lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FlowFilter;
    use crate::model::Verdict;
    use jiff::Timestamp;

    fn flow(i: i64, verdict: Verdict) -> Flow {
        Flow {
            time: Timestamp::from_second(1_700_000_000 + i).unwrap(),
            verdict,
            node_name: format!("n{i}"),
            ..Flow::default()
        }
    }

    fn names(flows: &[Arc<Flow>]) -> Vec<String> {
        flows.iter().map(|f| f.node_name.clone()).collect()
    }

    #[test]
    fn ring_overwrites_oldest_and_counts() {
        let s = FlowStore::new(3);
        for i in 0..5 {
            assert_eq!(s.push(flow(i, Verdict::Forwarded)), i as u64 + 1);
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.flows_seen(), 5);
        let all = s.query(&FlowRequest::default()).unwrap();
        assert_eq!(names(&all), ["n2", "n3", "n4"]);
        let last2 = FlowRequest {
            number: Some(2),
            ..FlowRequest::default()
        };
        assert_eq!(names(&s.query(&last2).unwrap()), ["n3", "n4"]);
        let first2 = FlowRequest {
            first: true,
            ..last2
        };
        assert_eq!(names(&s.query(&first2).unwrap()), ["n2", "n3"]);
    }

    #[test]
    fn last_and_first_number_with_filters() {
        let s = FlowStore::new(100);
        for i in 0..10 {
            let v = if i % 2 == 0 {
                Verdict::Dropped
            } else {
                Verdict::Forwarded
            };
            s.push(flow(i, v));
        }
        let dropped = FlowFilter {
            verdict: vec![Verdict::Dropped],
            ..FlowFilter::default()
        };
        let mut req = FlowRequest {
            whitelist: vec![dropped],
            number: Some(2),
            ..FlowRequest::default()
        };
        assert_eq!(names(&s.query(&req).unwrap()), ["n6", "n8"]);
        req.first = true;
        assert_eq!(names(&s.query(&req).unwrap()), ["n0", "n2"]);
        req.number = Some(0);
        assert!(s.query(&req).unwrap().is_empty());
        req.number = None;
        req.first = false;
        req.since = Some(Timestamp::from_second(1_700_000_004).unwrap());
        req.until = Some(Timestamp::from_second(1_700_000_006).unwrap());
        assert_eq!(names(&s.query(&req).unwrap()), ["n4", "n6"]);
    }

    #[test]
    fn wait_newer_returns_new_flows_and_losses() {
        let s = FlowStore::new(3);
        let start = s.last_seq();
        assert_eq!(start, 0);
        let none = s.wait_newer(start, Duration::from_millis(10));
        assert!(none.flows.is_empty());
        assert_eq!((none.next_after, none.lost), (0, 0));
        s.push(flow(0, Verdict::Forwarded));
        s.push(flow(1, Verdict::Forwarded));
        let got = s.wait_newer(start, Duration::from_millis(10));
        assert_eq!(names(&got.flows), ["n0", "n1"]);
        assert_eq!((got.next_after, got.lost), (2, 0));
        for i in 2..7 {
            s.push(flow(i, Verdict::Forwarded));
        }
        // Seqs 3..=4 were overwritten (the ring holds 5, 6, 7).
        let got = s.wait_newer(got.next_after, Duration::ZERO);
        assert_eq!(names(&got.flows), ["n4", "n5", "n6"]);
        assert_eq!((got.next_after, got.lost), (7, 2));
    }

    #[test]
    fn query_and_seq_then_follow_sees_each_flow_once() {
        let s = FlowStore::new(10);
        s.push(flow(0, Verdict::Forwarded));
        let (hist, seq) = s.query_and_seq(&FlowRequest::default().compile().unwrap());
        s.push(flow(1, Verdict::Forwarded));
        let next = s.wait_newer(seq, Duration::ZERO);
        assert_eq!(names(&hist), ["n0"]);
        assert_eq!(names(&next.flows), ["n1"]);
    }

    #[test]
    fn writer_and_readers_concurrently() {
        let s = Arc::new(FlowStore::new(64));
        let total = 5_000u64;
        let writer = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..total {
                    s.push(flow(i as i64, Verdict::Forwarded));
                }
            })
        };
        let follower = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let (mut after, mut seen, mut lost) = (0u64, 0u64, 0u64);
                let mut last_time = None;
                while after < total {
                    let n = s.wait_newer(after, Duration::from_secs(5));
                    for f in &n.flows {
                        // Arrival order is kept.
                        assert!(last_time.is_none_or(|t| f.time > t));
                        last_time = Some(f.time);
                    }
                    seen += n.flows.len() as u64;
                    lost += n.lost;
                    after = n.next_after;
                }
                (seen, lost)
            })
        };
        let querier = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let req = FlowRequest {
                    number: Some(10),
                    ..FlowRequest::default()
                }
                .compile()
                .unwrap();
                for _ in 0..200 {
                    let got = s.query_compiled(&req);
                    assert!(got.len() <= 10);
                    assert!(got.windows(2).all(|w| w[0].time < w[1].time));
                }
            })
        };
        writer.join().unwrap();
        querier.join().unwrap();
        let (seen, lost) = follower.join().unwrap();
        assert_eq!(
            seen + lost,
            total,
            "every flow is either seen or counted lost"
        );
        assert_eq!(s.flows_seen(), total);
        assert_eq!(s.len(), 64);
    }
}
