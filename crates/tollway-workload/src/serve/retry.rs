//! Per-uuid attempt counters for `?responseCode=N&succeedAfter=K&uuid=U`.

use std::collections::{HashMap, VecDeque};

/// How many distinct uuids are remembered; the oldest is forgotten beyond this.
pub(crate) const MAX_UUIDS: usize = 10_000;

/// Counts requests per uuid, forgetting the oldest uuid beyond a bound.
#[derive(Debug)]
pub(crate) struct RetryTable {
    counts: HashMap<String, u32>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Default for RetryTable {
    fn default() -> Self {
        Self::with_capacity(MAX_UUIDS)
    }
}

impl RetryTable {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            counts: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records one more request for `uuid` and returns its 1-based attempt number.
    pub(crate) fn next_attempt(&mut self, uuid: &str) -> u32 {
        if let Some(count) = self.counts.get_mut(uuid) {
            *count = count.saturating_add(1);
            return *count;
        }
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.counts.remove(&oldest);
            }
        }
        self.counts.insert(uuid.to_owned(), 1);
        self.order.push_back(uuid.to_owned());
        1
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_uuid() {
        let mut t = RetryTable::default();
        assert_eq!(t.next_attempt("a"), 1);
        assert_eq!(t.next_attempt("a"), 2);
        assert_eq!(t.next_attempt("b"), 1);
        assert_eq!(t.next_attempt("a"), 3);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn evicts_oldest() {
        let mut t = RetryTable::with_capacity(2);
        t.next_attempt("a");
        t.next_attempt("a");
        t.next_attempt("b");
        t.next_attempt("c"); // evicts "a"
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_attempt("b"), 2);
        assert_eq!(t.next_attempt("a"), 1); // forgotten, starts over; evicts "b"
        assert_eq!(t.next_attempt("c"), 2);
        assert_eq!(t.next_attempt("b"), 1);
    }
}
