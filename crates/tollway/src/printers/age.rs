//! Ages as `kubectl get` shows them (`apimachinery`'s `duration.HumanDuration`).

use jiff::Timestamp;

/// A duration in whole seconds, rounded the way `kubectl` rounds ages:
/// `45s`, `119s`, `3m20s`, `3m`, `42m`, `5h3m`, `20h`, `3d4h`, `30d`, `2y10d`,
/// `9y`. Up to a second in the future is `0s` (clock skew); further is
/// `<invalid>`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", secs % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// `12m`, or `12m5s` when the smaller unit is not zero.
fn with_remainder(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

/// The time elapsed from `then` to `now`, as [`human_duration`];
/// `<unknown>` when there is no timestamp (kubectl's `translateTimestampSince`).
pub fn since(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_band() {
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(-2), "<invalid>");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(90), "90s");
        assert_eq!(human_duration(119), "119s");
    }

    #[test]
    fn minutes_with_seconds_band() {
        assert_eq!(human_duration(120), "2m");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(180), "3m");
        assert_eq!(human_duration(599), "9m59s");
    }

    #[test]
    fn minutes_band() {
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(601), "10m");
        assert_eq!(human_duration(3 * 3600 - 1), "179m");
    }

    #[test]
    fn hours_with_minutes_band() {
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(5 * 3600 + 3 * 60 + 59), "5h3m");
        assert_eq!(human_duration(8 * 3600 - 1), "7h59m");
    }

    #[test]
    fn hours_band() {
        assert_eq!(human_duration(8 * 3600), "8h");
        assert_eq!(human_duration(20 * 3600 + 59 * 60), "20h");
        assert_eq!(human_duration(48 * 3600 - 1), "47h");
    }

    #[test]
    fn days_with_hours_band() {
        assert_eq!(human_duration(48 * 3600), "2d");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600 + 1), "3d4h");
        assert_eq!(human_duration(8 * 86400 - 1), "7d23h");
    }

    #[test]
    fn days_band() {
        assert_eq!(human_duration(8 * 86400), "8d");
        assert_eq!(human_duration(30 * 86400 + 5 * 3600), "30d");
        assert_eq!(human_duration(2 * 365 * 86400 - 1), "729d");
    }

    #[test]
    fn years_with_days_band() {
        assert_eq!(human_duration(2 * 365 * 86400), "2y");
        assert_eq!(human_duration((2 * 365 + 10) * 86400), "2y10d");
        assert_eq!(human_duration(8 * 365 * 86400 - 1), "7y364d");
    }

    #[test]
    fn years_band() {
        assert_eq!(human_duration(8 * 365 * 86400), "8y");
        assert_eq!(human_duration((9 * 365 + 100) * 86400), "9y");
    }

    #[test]
    fn since_timestamp() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let then: Timestamp = "2024-05-01T11:56:40Z".parse().unwrap();
        assert_eq!(since(Some(then), now), "3m20s");
        assert_eq!(since(None, now), "<unknown>");
        let future: Timestamp = "2024-05-01T12:00:10Z".parse().unwrap();
        assert_eq!(since(Some(future), now), "<invalid>");
    }
}
