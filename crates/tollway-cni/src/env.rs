//! The `CNI_*` environment a runtime gives the plugin.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{CniError, Result};

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Whether ADDs can be served.
    Status,
    /// Supported spec versions.
    Version,
    /// Remove what belongs to no valid attachment.
    Gc,
}

impl Command {
    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
            Command::Gc => "GC",
        }
    }

    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// `CNI_ARGS`: `K=V;K=V`, with the keys Kubernetes runtimes pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub infra_container_id: Option<String>,
    /// Every other key (`IgnoreUnknown`, ...): kept, not acted on.
    pub other: BTreeMap<String, String>,
}

impl CniArgs {
    /// Parse `CNI_ARGS`. Unknown keys are kept (the reference plugins
    /// reject them unless `IgnoreUnknown=1`; runtimes add their own keys,
    /// so Tollway ignores them); a pair without `=` is an error.
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut out = CniArgs::default();
        for pair in s.split(';').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(CniError::InvalidEnv {
                    name: "CNI_ARGS",
                    reason: format!("{pair:?} is not KEY=VALUE"),
                });
            };
            let (k, v) = (k.trim(), v.trim().to_string());
            if k.is_empty() {
                return Err(CniError::InvalidEnv {
                    name: "CNI_ARGS",
                    reason: format!("{pair:?} has an empty key"),
                });
            }
            let v_opt = (!v.is_empty()).then_some(v.clone());
            match k {
                "K8S_POD_NAMESPACE" => out.pod_namespace = v_opt,
                "K8S_POD_NAME" => out.pod_name = v_opt,
                "K8S_POD_UID" => out.pod_uid = v_opt,
                "K8S_POD_INFRA_CONTAINER_ID" => out.infra_container_id = v_opt,
                _ => {
                    out.other.insert(k.to_string(), v);
                }
            }
        }
        Ok(out)
    }
}

/// The whole environment, parsed but not yet checked against the command.
#[derive(Debug, Clone)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`: a path (`/var/run/netns/NAME`, `/proc/PID/ns/net`).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`: where plugins live (Tollway delegates to none).
    pub path: Option<Vec<PathBuf>>,
}

fn nonempty(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.is_empty())
}

impl CniEnv {
    /// Read the environment through `get` (`std::env::var(..).ok()` in the
    /// binary, a map in tests).
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<CniEnv> {
        let command = match nonempty(get, "CNI_COMMAND") {
            None => {
                return Err(CniError::InvalidEnv {
                    name: "CNI_COMMAND",
                    reason: "not set (one of ADD, DEL, CHECK, STATUS, VERSION, GC)".into(),
                });
            }
            Some(c) => Command::parse(&c).ok_or_else(|| CniError::InvalidEnv {
                name: "CNI_COMMAND",
                reason: format!(
                    "unknown command {c:?} (one of ADD, DEL, CHECK, STATUS, VERSION, GC)"
                ),
            })?,
        };
        let container_id = nonempty(get, "CNI_CONTAINERID");
        if let Some(id) = &container_id {
            validate_container_id(id)?;
        }
        let ifname = nonempty(get, "CNI_IFNAME");
        if let Some(i) = &ifname {
            validate_ifname(i)?;
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(CniEnv {
            command,
            container_id,
            netns: nonempty(get, "CNI_NETNS").map(PathBuf::from),
            ifname,
            args,
            path: get("CNI_PATH").map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            }),
        })
    }

    fn missing(&self, name: &'static str) -> CniError {
        CniError::InvalidEnv {
            name,
            reason: format!("required for {}", self.command.as_str()),
        }
    }

    /// `CNI_CONTAINERID`, required.
    pub fn require_container_id(&self) -> Result<&str> {
        self.container_id
            .as_deref()
            .ok_or_else(|| self.missing("CNI_CONTAINERID"))
    }

    /// `CNI_IFNAME`, required.
    pub fn require_ifname(&self) -> Result<&str> {
        self.ifname
            .as_deref()
            .ok_or_else(|| self.missing("CNI_IFNAME"))
    }

    /// `CNI_NETNS`, required.
    pub fn require_netns(&self) -> Result<&std::path::Path> {
        self.netns
            .as_deref()
            .ok_or_else(|| self.missing("CNI_NETNS"))
    }

    /// `CNI_PATH`, required by the spec for ADD, DEL, CHECK and GC (the
    /// plugin delegates to nothing, but a runtime that omits it is broken).
    pub fn require_path(&self) -> Result<()> {
        match &self.path {
            Some(_) => Ok(()),
            None => Err(self.missing("CNI_PATH")),
        }
    }
}

/// A container id: an alphanumeric, then alphanumerics, `_`, `.`, `-`.
pub fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::InvalidEnv {
            name: "CNI_CONTAINERID",
            reason: format!(
                "{id:?} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
            ),
        })
    }
}

/// An interface name: 1-15 bytes, not `.` or `..`, no `/`, `:` or space.
pub fn validate_ifname(name: &str) -> Result<()> {
    let reason = if name.len() > 15 {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("is not a valid name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(r) => Err(CniError::InvalidEnv {
            name: "CNI_IFNAME",
            reason: format!("{name:?} {r}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_vars(&move |k| m.get(k).cloned())
    }

    #[test]
    fn parses_a_kubelet_environment() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "3f6940ab5ab4"),
            ("CNI_NETNS", "/var/run/netns/cni-1234"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=payments;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=3f6940ab5ab4;K8S_POD_UID=u-1",
            ),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ])
        .unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.require_container_id().unwrap(), "3f6940ab5ab4");
        assert_eq!(e.require_ifname().unwrap(), "eth0");
        assert_eq!(e.args.pod_namespace.as_deref(), Some("payments"));
        assert_eq!(e.args.pod_name.as_deref(), Some("web-0"));
        assert_eq!(e.args.pod_uid.as_deref(), Some("u-1"));
        assert_eq!(
            e.args.other.get("IgnoreUnknown").map(String::as_str),
            Some("1")
        );
        assert_eq!(e.path.as_ref().unwrap().len(), 2);
        e.require_path().unwrap();
    }

    #[test]
    fn bad_environments_are_code_4() {
        for pairs in [
            vec![],
            vec![("CNI_COMMAND", "ATTACH")],
            vec![("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "-bad")],
            vec![("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "a b")],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_IFNAME", "a-very-long-ifname0"),
            ],
            vec![("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth/0")],
            vec![("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "..")],
            vec![("CNI_COMMAND", "ADD"), ("CNI_ARGS", "K8S_POD_NAME")],
            vec![("CNI_COMMAND", "ADD"), ("CNI_ARGS", "=x")],
        ] {
            let err = env(&pairs).expect_err(&format!("{pairs:?}"));
            assert_eq!(err.code(), 4, "{pairs:?}: {err}");
        }
        let e = env(&[("CNI_COMMAND", "DEL")]).unwrap();
        assert_eq!(e.require_container_id().unwrap_err().code(), 4);
        assert_eq!(e.require_ifname().unwrap_err().code(), 4);
        assert_eq!(e.require_netns().unwrap_err().code(), 4);
        assert_eq!(e.require_path().unwrap_err().code(), 4);
        assert!(
            e.require_path()
                .unwrap_err()
                .to_string()
                .contains("CNI_PATH")
        );
    }

    #[test]
    fn container_ids_and_ifnames() {
        for ok in ["a", "0b6c7e3e-1111-4a3c-9b1e-000000000001", "x_y.z-1"] {
            validate_container_id(ok).unwrap();
        }
        for bad in ["", "_a", ".a", "a/b", "a@b", "a:b"] {
            assert!(validate_container_id(bad).is_err(), "{bad}");
        }
        for ok in ["eth0", "net1", "a-b_c.d", "123456789012345"] {
            validate_ifname(ok).unwrap();
        }
        for bad in ["1234567890123456", ".", "..", "a:b", "a b"] {
            assert!(validate_ifname(bad).is_err(), "{bad}");
        }
    }
}
