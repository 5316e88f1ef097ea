//! Conntrack garbage collection with an adaptive interval: sweep often when
//! many entries expire, rarely when few do (Cilium's approach).

use std::time::Duration;

use aya::maps::MapError;
use tollway_abi::TW_CT_MAX;
use tollway_datapath::lb::{LbMaps, MapsError};

use crate::status::GcReport;

/// Shortest interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(300);
/// First interval.
pub const START_INTERVAL: Duration = Duration::from_secs(10);
/// Fill above which the map counts as (nearly) full.
pub const FULL_FILL: f64 = 0.9;

/// The next interval after a sweep that deleted `deleted` of `entries`
/// (pure, so the policy is tested without a kernel).
pub fn next_interval(current: Duration, entries: usize, deleted: usize, fill: f64) -> Duration {
    let ratio = if entries == 0 {
        0.0
    } else {
        deleted as f64 / entries as f64
    };
    let next = if fill >= FULL_FILL || ratio > 0.25 {
        current / 2
    } else if ratio < 0.05 {
        current.mul_f64(1.5)
    } else {
        current
    };
    next.clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns()`.
pub fn ktime_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// One sweep: delete expired conntrack and NodePort NAT entries.
pub fn sweep(maps: &mut LbMaps, report: &mut GcReport) -> Result<Duration, MapsError> {
    let now = ktime_ns();
    let mut entries = 0usize;
    let mut expired = Vec::new();
    for item in maps.ct.iter() {
        let (k, v) = item.map_err(|source| MapsError::Access {
            op: "iterate",
            name: "tw_ct4",
            source,
        })?;
        entries += 1;
        if v.expires < now {
            expired.push(k);
        }
    }
    for k in &expired {
        match maps.ct.remove(k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(MapsError::Access {
                    op: "delete",
                    name: "tw_ct4",
                    source,
                });
            }
        }
    }
    let mut nat_expired = Vec::new();
    for item in maps.np_nat.iter() {
        let (k, v) = item.map_err(|source| MapsError::Access {
            op: "iterate",
            name: "tw_np_nat4",
            source,
        })?;
        if v.expires < now {
            nat_expired.push(k);
        }
    }
    for k in &nat_expired {
        let _ = maps.np_nat.remove(k);
    }
    let fill = (entries - expired.len()) as f64 / f64::from(TW_CT_MAX);
    let current = Duration::from_secs_f64(report.interval_seconds.max(MIN_INTERVAL.as_secs_f64()));
    let next = next_interval(current, entries, expired.len(), fill);
    report.runs += 1;
    report.last_entries = entries;
    report.last_deleted = expired.len();
    report.total_deleted += expired.len() as u64;
    report.fill = fill;
    report.interval_seconds = next.as_secs_f64();
    report.full_warning = (fill >= FULL_FILL).then(|| {
        format!(
            "tw_ct4 is {:.0}% full ({} of {TW_CT_MAX}): new flows evict the least recently used entries",
            fill * 100.0,
            entries - expired.len()
        )
    });
    if let Some(w) = &report.full_warning {
        tracing::warn!("{w}");
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_adapts() {
        let t = Duration::from_secs(10);
        assert_eq!(
            next_interval(t, 100, 50, 0.1),
            Duration::from_secs(5),
            "many expired: sooner"
        );
        assert_eq!(
            next_interval(t, 100, 1, 0.1),
            Duration::from_secs(15),
            "few expired: later"
        );
        assert_eq!(next_interval(t, 100, 10, 0.1), t, "in between: same");
        assert_eq!(
            next_interval(t, 100, 0, 0.95),
            Duration::from_secs(5),
            "nearly full: sooner"
        );
        assert_eq!(
            next_interval(Duration::from_secs(1), 10, 10, 0.0),
            MIN_INTERVAL
        );
        assert_eq!(next_interval(MAX_INTERVAL, 0, 0, 0.0), MAX_INTERVAL);
    }
}
