//! Reserved security identities (Cilium's numbers), as Hubble names them.

use tollway_abi::{
    TW_ID_HEALTH, TW_ID_HOST, TW_ID_INIT, TW_ID_KUBE_APISERVER, TW_ID_REMOTE_NODE, TW_ID_UNMANAGED,
    TW_ID_WORLD,
};

/// `(number, name)` of every reserved identity Hubble knows, with 0
/// (`unknown`).
pub const RESERVED: &[(u32, &str)] = &[
    (0, "unknown"),
    (TW_ID_HOST, "host"),
    (TW_ID_WORLD, "world"),
    (TW_ID_UNMANAGED, "unmanaged"),
    (TW_ID_HEALTH, "health"),
    (TW_ID_INIT, "init"),
    (TW_ID_REMOTE_NODE, "remote-node"),
    (TW_ID_KUBE_APISERVER, "kube-apiserver"),
    (8, "ingress"),
    (9, "world-ipv4"),
    (10, "world-ipv6"),
];

/// The name of a reserved identity (`host`), `None` for any other.
pub fn reserved_name(id: u32) -> Option<&'static str> {
    RESERVED
        .iter()
        .find(|(n, _)| *n == id)
        .map(|(_, name)| *name)
}

/// The number of a reserved identity's name.
pub fn reserved_number(name: &str) -> Option<u32> {
    RESERVED.iter().find(|(_, n)| *n == name).map(|(id, _)| *id)
}

/// The labels Hubble shows for a reserved identity (`["reserved:world"]`);
/// empty for 0 and non-reserved numbers.
pub fn reserved_labels(id: u32) -> Vec<String> {
    match reserved_name(id) {
        Some(name) if id != 0 => vec![format!("reserved:{name}")],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert_eq!(reserved_name(1), Some("host"));
        assert_eq!(reserved_name(6), Some("remote-node"));
        assert_eq!(reserved_name(256), None);
        assert_eq!(reserved_number("world"), Some(2));
        assert_eq!(reserved_labels(2), vec!["reserved:world".to_string()]);
        assert!(reserved_labels(0).is_empty());
        assert!(reserved_labels(12345).is_empty());
    }
}
