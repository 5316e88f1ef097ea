//! Parsing of the probe TARGET and of `--header Name:Value`.

use std::net::Ipv6Addr;

use http::uri::{Authority, PathAndQuery};
use http::{HeaderName, HeaderValue};

use crate::WorkloadError;

/// The transport a target asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Tcp,
    Udp,
}

/// A parsed `http://`, `tcp://` or `udp://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub scheme: Scheme,
    /// Host name or IP, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written (brackets kept), for the HTTP Host header.
    pub authority: Authority,
    /// `/path?query`; `/` when the target has none. Always `/` for TCP and UDP.
    pub path_and_query: PathAndQuery,
}

const TARGET_FORMS: &str =
    "expected http://host[:port][/path][?query], tcp://host:port or udp://host:port";

/// Parses a probe target.
pub(crate) fn parse_target(input: &str) -> Result<Target, WorkloadError> {
    let err = |reason: String| WorkloadError::InvalidTarget {
        target: input.to_owned(),
        reason,
    };
    let (scheme, rest) = input
        .split_once("://")
        .ok_or_else(|| err(format!("missing scheme; {TARGET_FORMS}")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "tcp" => Scheme::Tcp,
        "udp" => Scheme::Udp,
        "https" => return Err(err("https is not supported (h2c/HTTP only)".into())),
        other => return Err(err(format!("unknown scheme {other:?}; {TARGET_FORMS}"))),
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    // A fragment is never sent.
    let tail = tail.split('#').next().unwrap_or("");
    if scheme != Scheme::Http && !tail.is_empty() && tail != "/" {
        return Err(err("tcp:// and udp:// targets take no path or query".into()));
    }
    if authority.contains('@') {
        return Err(err("user info (user@host) is not supported".into()));
    }
    let (host, port) = split_host_port(authority).map_err(err)?;
    let port = match (port, scheme) {
        (Some(port), _) => port,
        (None, Scheme::Http) => 80,
        (None, _) => return Err(err("a port is required (host:port)".into())),
    };
    let authority: Authority = authority
        .parse()
        .map_err(|e| err(format!("invalid host {authority:?}: {e}")))?;
    let path_and_query = match tail {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    let path_and_query: PathAndQuery = path_and_query
        .parse()
        .map_err(|e| err(format!("invalid path or query: {e}")))?;
    Ok(Target {
        scheme,
        host,
        port,
        authority,
        path_and_query,
    })
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in an IPv6 address".to_owned())?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            after => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {after:?} after the IPv6 address"))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("IPv6 addresses must be written in brackets, like [::1]:80".into());
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(0) => Err("port 0 cannot be probed".to_owned()),
            Ok(port) => Ok(port),
            Err(_) => Err(format!("invalid port {p:?} (expected 1..=65535)")),
        })
        .transpose()?;
    Ok((host.to_owned(), port))
}

/// Parses `Name:Value` (spaces around either part are trimmed).
pub(crate) fn parse_header(input: &str) -> Result<(HeaderName, HeaderValue), WorkloadError> {
    let err = |reason: &str| WorkloadError::InvalidHeader {
        header: input.to_owned(),
        reason: reason.to_owned(),
    };
    let (name, value) = input
        .split_once(':')
        .ok_or_else(|| err("expected Name:Value"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(err("empty header name"));
    }
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| err("the name is not a valid HTTP header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| err("the value contains characters not allowed in a header"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &str) -> String {
        match parse_target(input) {
            Err(WorkloadError::InvalidTarget { target, reason }) => {
                assert_eq!(target, input);
                reason
            }
            other => panic!("{input}: expected InvalidTarget, got {other:?}"),
        }
    }

    #[test]
    fn http_targets() {
        let t = parse_target("http://10.0.0.1:8080/echo?a=1&b=2").unwrap();
        assert_eq!(t.scheme, Scheme::Http);
        assert_eq!(t.host, "10.0.0.1");
        assert_eq!(t.port, 8080);
        assert_eq!(t.authority.as_str(), "10.0.0.1:8080");
        assert_eq!(t.path_and_query.as_str(), "/echo?a=1&b=2");

        let t = parse_target("HTTP://svc.ns.svc.cluster.local").unwrap();
        assert_eq!(t.host, "svc.ns.svc.cluster.local");
        assert_eq!(t.port, 80);
        assert_eq!(t.path_and_query.as_str(), "/");

        let t = parse_target("http://web:81?delay=5#frag").unwrap();
        assert_eq!(t.path_and_query.as_str(), "/?delay=5");

        let t = parse_target("http://[fd00::1]:8080/hostname").unwrap();
        assert_eq!(t.host, "fd00::1");
        assert_eq!(t.port, 8080);
        assert_eq!(t.authority.as_str(), "[fd00::1]:8080");

        let t = parse_target("http://[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
    }

    #[test]
    fn tcp_and_udp_targets() {
        let t = parse_target("tcp://127.0.0.1:9000").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port),
            (Scheme::Tcp, "127.0.0.1", 9000)
        );
        let t = parse_target("udp://dns.kube-system:53/").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port),
            (Scheme::Udp, "dns.kube-system", 53)
        );
    }

    #[test]
    fn bad_targets() {
        assert!(reason("10.0.0.1:80").contains("missing scheme"));
        assert!(reason("ftp://h:21").contains("unknown scheme"));
        assert!(reason("https://h").contains("https"));
        assert!(reason("tcp://h").contains("port is required"));
        assert!(reason("udp://h:53/x").contains("no path"));
        assert!(reason("http://:80/").contains("missing host"));
        assert!(reason("http:///x").contains("missing host"));
        assert!(reason("http://h:0/").contains("port 0"));
        assert!(reason("http://h:70000/").contains("invalid port"));
        assert!(reason("http://h:/").contains("invalid port"));
        assert!(reason("http://h:x/").contains("invalid port"));
        assert!(reason("http://::1:80/").contains("brackets"));
        assert!(reason("http://[::1/").contains("unclosed"));
        assert!(reason("http://[nope]:80/").contains("IPv6"));
        assert!(reason("http://[::1]x/").contains("after the IPv6"));
        assert!(reason("http://u@h/").contains("user info"));
        assert!(reason("http://h/a b").contains("path"));
    }

    #[test]
    fn headers() {
        let (n, v) = parse_header("X-Test: some value ").unwrap();
        assert_eq!(n.as_str(), "x-test");
        assert_eq!(v.to_str().unwrap(), "some value");
        let (n, v) = parse_header("a:b:c").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("a", "b:c"));
        let (_, v) = parse_header("empty:").unwrap();
        assert_eq!(v.to_str().unwrap(), "");

        for (bad, why) in [
            ("no-colon", "Name:Value"),
            (": v", "empty header name"),
            ("bad name: v", "header name"),
            ("x: a\u{7f}b", "not allowed"),
        ] {
            match parse_header(bad) {
                Err(WorkloadError::InvalidHeader { header, reason }) => {
                    assert_eq!(header, bad);
                    assert!(reason.contains(why), "{bad}: {reason}");
                }
                other => panic!("{bad}: expected InvalidHeader, got {other:?}"),
            }
        }
    }
}
