//! The query parameters the HTTP server understands: `delay`, `responseCode`,
//! `succeedAfter` and `uuid`. Other parameters are ignored; values are not
//! percent-decoded.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// Longest accepted `?delay=` (larger values are capped to this).
pub(crate) const MAX_DELAY_MS: u64 = 600_000;
/// Longest accepted `?uuid=`, to keep the retry table bounded in bytes too.
pub(crate) const MAX_UUID_LEN: usize = 256;

/// What the query asks the server to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Params {
    /// `?delay=MS`, capped to [`MAX_DELAY_MS`].
    pub delay: Option<Duration>,
    /// `?responseCode=N[&succeedAfter=K&uuid=U]`.
    pub failure: Option<Failure>,
}

/// Answer with `status`: always, or only for the first `succeed_after` requests of a uuid.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub sequence: Option<Sequence>,
}

/// The per-uuid part of a [`Failure`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Sequence {
    pub uuid: String,
    pub succeed_after: u32,
}

/// A query parameter with a bad value; answered with 400.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParamError {
    pub param: &'static str,
    pub reason: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid query parameter {}: {}", self.param, self.reason)
    }
}

/// Parses a status code in the 100..=999 range.
pub(crate) fn parse_status(text: &str) -> Option<StatusCode> {
    let code: u16 = text.parse().ok()?;
    if !(100..=999).contains(&code) {
        return None;
    }
    StatusCode::from_u16(code).ok()
}

/// Parses the raw query string (without the `?`).
pub(crate) fn parse(query: &str) -> Result<Params, ParamError> {
    let mut delay = None;
    let mut response_code = None;
    let mut succeed_after = None;
    let mut uuid = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "delay" => delay = Some(value),
            "responseCode" => response_code = Some(value),
            "succeedAfter" => succeed_after = Some(value),
            "uuid" => uuid = Some(value),
            _ => {}
        }
    }

    let delay = delay
        .map(|v| {
            v.parse::<u64>()
                .map(|ms| Duration::from_millis(ms.min(MAX_DELAY_MS)))
                .map_err(|_| ParamError {
                    param: "delay",
                    reason: format!("{v:?} is not a number of milliseconds"),
                })
        })
        .transpose()?;

    let status = response_code
        .map(|v| {
            parse_status(v).ok_or_else(|| ParamError {
                param: "responseCode",
                reason: format!("{v:?} is not a status code in 100..=999"),
            })
        })
        .transpose()?;
    let succeed_after = succeed_after
        .map(|v| {
            v.parse::<u32>().map_err(|_| ParamError {
                param: "succeedAfter",
                reason: format!("{v:?} is not a non-negative count"),
            })
        })
        .transpose()?;
    if let Some(u) = uuid
        && (u.is_empty() || u.len() > MAX_UUID_LEN)
    {
        return Err(ParamError {
            param: "uuid",
            reason: format!("must be 1 to {MAX_UUID_LEN} characters"),
        });
    }

    let failure = match (status, succeed_after, uuid) {
        (None, None, None) => None,
        (Some(status), None, None) => Some(Failure {
            status,
            sequence: None,
        }),
        (Some(status), Some(succeed_after), Some(uuid)) => Some(Failure {
            status,
            sequence: Some(Sequence {
                uuid: uuid.to_owned(),
                succeed_after,
            }),
        }),
        (None, _, _) => {
            return Err(ParamError {
                param: "responseCode",
                reason: "is required with succeedAfter and uuid".into(),
            });
        }
        (Some(_), None, Some(_)) => {
            return Err(ParamError {
                param: "succeedAfter",
                reason: "is required with responseCode and uuid".into(),
            });
        }
        (Some(_), Some(_), None) => {
            return Err(ParamError {
                param: "uuid",
                reason: "is required with responseCode and succeedAfter".into(),
            });
        }
    };
    Ok(Params { delay, failure })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_unknown() {
        assert_eq!(parse("").unwrap(), Params::default());
        assert_eq!(parse("a=1&&b&c=").unwrap(), Params::default());
    }

    #[test]
    fn delay() {
        assert_eq!(
            parse("delay=250").unwrap().delay,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse("delay=99999999").unwrap().delay,
            Some(Duration::from_millis(MAX_DELAY_MS))
        );
        for bad in ["delay=", "delay=-1", "delay=1.5", "delay=abc", "delay"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.param, "delay", "{bad}");
            assert!(err.to_string().contains("delay"), "{err}");
        }
    }

    #[test]
    fn response_code_alone() {
        let f = parse("responseCode=503").unwrap().failure.unwrap();
        assert_eq!(f.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(f.sequence, None);
    }

    #[test]
    fn sequence() {
        let p = parse("uuid=abc&responseCode=500&succeedAfter=3&delay=1").unwrap();
        assert_eq!(p.delay, Some(Duration::from_millis(1)));
        let f = p.failure.unwrap();
        assert_eq!(f.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            f.sequence,
            Some(Sequence {
                uuid: "abc".into(),
                succeed_after: 3
            })
        );
    }

    #[test]
    fn sequence_needs_all_three() {
        assert_eq!(parse("uuid=a").unwrap_err().param, "responseCode");
        assert_eq!(parse("succeedAfter=1").unwrap_err().param, "responseCode");
        assert_eq!(
            parse("responseCode=500&uuid=a").unwrap_err().param,
            "succeedAfter"
        );
        assert_eq!(
            parse("responseCode=500&succeedAfter=1").unwrap_err().param,
            "uuid"
        );
        assert_eq!(
            parse("responseCode=500&succeedAfter=x&uuid=a")
                .unwrap_err()
                .param,
            "succeedAfter"
        );
        let long = "x".repeat(MAX_UUID_LEN + 1);
        assert_eq!(
            parse(&format!("responseCode=500&succeedAfter=1&uuid={long}"))
                .unwrap_err()
                .param,
            "uuid"
        );
    }

    #[test]
    fn status_range() {
        assert_eq!(parse_status("100"), Some(StatusCode::CONTINUE));
        assert_eq!(parse_status("999").map(|s| s.as_u16()), Some(999));
        for bad in ["99", "1000", "0", "", "abc", "-200", "20x"] {
            assert_eq!(parse_status(bad), None, "{bad}");
        }
        assert_eq!(parse("responseCode=42").unwrap_err().param, "responseCode");
    }
}
