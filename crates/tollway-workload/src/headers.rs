//! Header map flattening shared by the server's echo and the probe's report.

use std::collections::BTreeMap;

use http::HeaderMap;

/// Lowercase names; repeated headers joined with ", "; values decoded as lossy UTF-8.
pub(crate) fn join_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn headers_are_joined() {
        let mut h = HeaderMap::new();
        h.append("X-A", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("host", HeaderValue::from_static("h"));
        let j = join_headers(&h);
        assert_eq!(j.get("x-a").map(String::as_str), Some("1, 2"));
        assert_eq!(j.get("host").map(String::as_str), Some("h"));
        assert_eq!(j.len(), 2);
    }
}
