//! Kubernetes name, label and port-name rules (apimachinery's validation).
//!
//! Each check returns `Err(reason)` in Kubernetes' own words, so an error
//! reads the way `kubectl` users know.

/// DNS-1123 label: namespaces, container names, service port names.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "must be no more than 63 characters, got {}",
            s.len()
        ));
    }
    let b = s.as_bytes();
    let ok = b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character, got {s:?}"
        ));
    }
    Ok(())
}

/// DNS-1123 subdomain: pod, deployment, service account names.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!(
            "must be no more than 253 characters, got {}",
            s.len()
        ));
    }
    for part in s.split('.') {
        if dns1123_label(part).is_err() {
            return Err(format!(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character, got {s:?}"
            ));
        }
    }
    Ok(())
}

/// DNS-1035 label: service names (must start with a letter).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    dns1123_label(s).map_err(|_| {
        format!(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character, got {s:?}"
        )
    })?;
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(format!(
            "a DNS-1035 label must start with an alphabetic character, got {s:?}"
        ));
    }
    Ok(())
}

/// IANA service name: container port names and named `targetPort`s.
pub fn iana_svc_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("must be 1-15 characters, got {:?}", s));
    }
    let b = s.as_bytes();
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        return Err(format!(
            "must contain only lower case alphanumeric characters or '-', got {s:?}"
        ));
    }
    if !b.iter().any(|c| c.is_ascii_lowercase()) {
        return Err(format!("must contain at least one letter, got {s:?}"));
    }
    if b[0] == b'-' || b[b.len() - 1] == b'-' || s.contains("--") {
        return Err(format!(
            "must not begin or end with '-' or contain '--', got {s:?}"
        ));
    }
    Ok(())
}

fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Label and annotation keys: `[prefix/]name`, prefix a DNS subdomain.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && dns1123_subdomain(p).is_err()
    {
        return Err(format!("prefix part of {s:?} must be a DNS-1123 subdomain"));
    }
    if !qualified_name_part(name) {
        return Err(format!(
            "name part of {s:?} must consist of alphanumeric characters, '-', '_' or '.', must start and end with an alphanumeric character, and be at most 63 characters"
        ));
    }
    Ok(())
}

/// Label values: empty, or up to 63 characters of the qualified-name alphabet.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || qualified_name_part(s) {
        Ok(())
    } else {
        Err(format!(
            "a valid label value must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters), got {s:?}"
        ))
    }
}

/// Environment variable names (C identifiers, plus '.' and '-' as Kubernetes allows).
pub fn env_var_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit, got {s:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        assert!(dns1123_label("payments").is_ok());
        assert!(dns1123_label("Payments").is_err());
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1035_label("checkout-api").is_ok());
        assert!(dns1035_label("1api").is_err());
        assert!(iana_svc_name("http").is_ok());
        assert!(iana_svc_name("serve-80-tcp").is_ok());
        assert!(iana_svc_name("8080").is_err());
        assert!(iana_svc_name("a--b").is_err());
        assert!(iana_svc_name("sixteen-chars-xx").is_err());
        assert!(qualified_name("app").is_ok());
        assert!(qualified_name("app.kubernetes.io/name").is_ok());
        assert!(qualified_name("istio.io/dataplane-mode").is_ok());
        assert!(qualified_name("Bad_/x").is_err());
        assert!(qualified_name("a/").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("ambient").is_ok());
        assert!(label_value("a b").is_err());
        assert!(env_var_name("POD_NAME").is_ok());
        assert!(env_var_name("1X").is_err());
    }
}
