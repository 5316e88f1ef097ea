//! Latency histograms: recorded in nanoseconds with 3 significant digits
//! (HdrHistogram), shipped between the client and the harness as their
//! non-empty buckets, merged across rounds, and summarised in microseconds.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded: 60 s, in nanoseconds (higher values are
/// clamped to it).
const MAX_NS: u64 = 60_000_000_000;

/// A latency histogram.
#[derive(Debug, Clone)]
pub struct Latency {
    h: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

/// One non-empty bucket: `[highest equivalent value in ns, count]`.
pub type Bucket = (u64, u64);

/// Percentiles and friends, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Latency {
    /// An empty histogram (1 ns .. 60 s, 3 significant digits).
    pub fn new() -> Self {
        // The bounds are constants that HdrHistogram accepts.
        #[allow(clippy::expect_used)]
        let h = Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds");
        Latency { h }
    }

    /// Record one latency.
    pub fn record_ns(&mut self, ns: u64) {
        self.h.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Record `count` samples of one value.
    pub fn record_n(&mut self, ns: u64, count: u64) {
        // Cannot fail: the value is clamped into the bounds.
        let _ = self.h.record_n(ns.clamp(1, MAX_NS), count);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// The non-empty buckets (what a client ships to the harness).
    pub fn buckets(&self) -> Vec<Bucket> {
        self.h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// A histogram from shipped buckets.
    pub fn from_buckets(buckets: &[Bucket]) -> Self {
        let mut l = Latency::new();
        l.add_buckets(buckets);
        l
    }

    /// Add shipped buckets.
    pub fn add_buckets(&mut self, buckets: &[Bucket]) {
        for (v, c) in buckets {
            self.record_n(*v, *c);
        }
    }

    /// Add another histogram.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: cannot fail.
        let _ = self.h.add(&other.h);
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        us(self.h.value_at_quantile(q))
    }

    /// Percentiles, in microseconds (all zero when empty).
    pub fn summary(&self) -> Summary {
        if self.h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.h.len(),
            min_us: us(self.h.min()),
            mean_us: round1(self.h.mean() / 1000.0),
            p50_us: self.quantile_us(0.50),
            p90_us: self.quantile_us(0.90),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            max_us: us(self.h.max()),
        }
    }
}

fn us(ns: u64) -> f64 {
    round1(ns as f64 / 1000.0)
}

/// Round to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The exact nearest-rank percentile of samples (sorted in place): the
/// smallest value with at least `q` of the samples at or below it.
pub fn nearest_rank(samples: &mut [u64], q: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (q * samples.len() as f64).ceil().max(1.0) as usize;
    samples.get(rank.min(samples.len()) - 1).copied()
}

/// `a / b`, rounded to two decimals; `None` when either is missing or `b`
/// is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    }
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if !n.is_multiple_of(2) {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&mut v, 0.5), Some(50));
        assert_eq!(nearest_rank(&mut v, 0.99), Some(99));
        assert_eq!(nearest_rank(&mut v, 1.0), Some(100));
        assert_eq!(nearest_rank(&mut v, 0.0), Some(1));
        let mut one = vec![7];
        assert_eq!(nearest_rank(&mut one, 0.99), Some(7));
        assert_eq!(nearest_rank(&mut [], 0.5), None);
    }

    #[test]
    fn histogram_percentiles_are_within_a_thousandth_of_the_exact_ones() {
        // A skewed, deterministic set: mostly ~60 µs, a tail to ~2 ms.
        let mut samples = Vec::new();
        let mut x: u64 = 12345;
        for i in 0..50_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = (x >> 33) % 20_000;
            let base = if i % 100 == 0 { 900_000 } else { 55_000 };
            samples.push(base + jitter * if i % 100 == 0 { 50 } else { 1 });
        }
        let mut h = Latency::new();
        for s in &samples {
            h.record_ns(*s);
        }
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = nearest_rank(&mut samples, q).expect("samples") as f64 / 1000.0;
            let got = h.quantile_us(q);
            assert!(
                (got - exact).abs() <= exact * 0.001 + 0.1,
                "q={q}: histogram {got} vs exact {exact}"
            );
        }
        let s = h.summary();
        assert_eq!(s.count, 50_000);
        assert!(s.p50_us < s.p99_us && s.p99_us <= s.max_us);
    }

    #[test]
    fn buckets_round_trip_and_merge_like_recording_everything_once() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        let mut all = Latency::new();
        for i in 0..1000u64 {
            let v = 40_000 + i * 37;
            if i % 3 == 0 {
                a.record_ns(v);
            } else {
                b.record_ns(v);
            }
            all.record_ns(v);
        }
        let mut merged = Latency::from_buckets(&a.buckets());
        merged.add_buckets(&b.buckets());
        assert_eq!(merged.summary(), all.summary());
        let mut m2 = a.clone();
        m2.merge(&b);
        assert_eq!(m2.summary(), all.summary());
        assert_eq!(merged.count(), 1000);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = Latency::new();
        h.record_ns(0);
        h.record_ns(u64::MAX);
        assert_eq!(h.count(), 2);
        assert!(h.summary().max_us >= 59_000_000.0);
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Latency::new().summary(), Summary::default());
    }

    #[test]
    fn ratios_and_medians() {
        assert_eq!(ratio(Some(63.0), Some(60.0)), Some(1.05));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
