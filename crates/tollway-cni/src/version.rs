//! CNI spec versions: which ones the plugin speaks, and for which commands.

use crate::env::Command;
use crate::error::{CniError, Result};

/// Every version the plugin speaks (the `VERSION` answer).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version, used where the caller gave none.
pub const LATEST: &str = "1.1.0";

/// `MAJOR.MINOR.PATCH` as numbers.
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.');
    let out = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then_some(out)
}

/// The oldest version a command exists in: CHECK came with 0.4.0, STATUS
/// and GC with 1.1.0.
fn minimum(command: Command) -> &'static str {
    match command {
        Command::Check => "0.4.0",
        Command::Status | Command::Gc => "1.1.0",
        _ => "0.3.0",
    }
}

/// Check that `version` is supported, and that `command` exists in it.
pub fn check(version: &str, command: Command) -> Result<()> {
    let min = minimum(command);
    let supported: Vec<&str> = SUPPORTED_VERSIONS
        .iter()
        .copied()
        .filter(|v| parse(v) >= parse(min))
        .collect();
    if supported.contains(&version) {
        Ok(())
    } else {
        Err(CniError::IncompatibleVersion {
            version: version.to_string(),
            command: command.as_str(),
            supported: supported.join(", "),
        })
    }
}

/// Whether results of this version carry `"version": "4"` on IPs (0.3.x
/// and 0.4.0 do; 1.0.0 dropped it).
pub fn ips_have_version(version: &str) -> bool {
    parse(version).is_some_and(|v| v < (1, 0, 0))
}

/// Whether interfaces may carry `mtu` (added in 1.1.0).
pub fn interfaces_have_mtu(version: &str) -> bool {
    parse(version).is_some_and(|v| v >= (1, 1, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_by_command() {
        for v in SUPPORTED_VERSIONS {
            check(v, Command::Add).unwrap();
            check(v, Command::Del).unwrap();
        }
        assert_eq!(check("0.2.0", Command::Add).unwrap_err().code(), 1);
        assert_eq!(check("2.0.0", Command::Add).unwrap_err().code(), 1);
        assert_eq!(check("banana", Command::Add).unwrap_err().code(), 1);
        assert_eq!(check("0.3.1", Command::Check).unwrap_err().code(), 1);
        check("0.4.0", Command::Check).unwrap();
        assert_eq!(check("1.0.0", Command::Gc).unwrap_err().code(), 1);
        assert_eq!(check("1.0.0", Command::Status).unwrap_err().code(), 1);
        check("1.1.0", Command::Status).unwrap();
        assert!(ips_have_version("0.4.0") && !ips_have_version("1.0.0"));
        assert!(interfaces_have_mtu("1.1.0") && !interfaces_have_mtu("1.0.0"));
        assert_eq!(parse("1.1.0"), Some((1, 1, 0)));
        assert_eq!(parse("1.1"), None);
        assert_eq!(parse("1.1.0.0"), None);
    }
}
