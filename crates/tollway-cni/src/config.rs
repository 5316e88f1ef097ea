//! The network configuration on stdin.
//!
//! ```json
//! {
//!   "cniVersion": "1.1.0",
//!   "name": "tollway",
//!   "type": "tollway-cni",
//!   "podCIDR": "10.244.0.0/24",
//!   "mtu": 1500,
//!   "dataDir": "/var/lib/tollway/cni/tollway",
//!   "agentDir": "/var/run/tollway",
//!   "agentSocket": "/var/run/tollway/agent.sock",
//!   "agentWaitSeconds": 30,
//!   "dns": { "nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"] }
//! }
//! ```
//!
//! Instead of `podCIDR`, a host-local-shaped `ipam` section may be given:
//! `{"type": "tollway", "subnet": "10.244.0.0/24", "gateway": "169.254.1.1",
//! "rangeStart": "10.244.0.10", "rangeEnd": "10.244.0.200",
//! "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "..."}`. IPAM is built in:
//! a delegated IPAM plugin (`ipam.type` other than `tollway` /
//! `tollway-cni`) is refused with code 2.
//!
//! Unknown top-level keys are refused with code 2, except namespaced ones
//! (containing `/` or `.`, such as `cni.dev/...`) and the spec's
//! well-known keys, which are accepted and ignored when not used.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Result};
use crate::result::{Dns, PrevResult, Route};

/// The link-local gateway pods route through (the lab's `POD_GATEWAY`):
/// answered by a permanent neighbour entry with the host veth's MAC.
pub const DEFAULT_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Default MTU.
pub const DEFAULT_MTU: u32 = 1500;
/// Default agent directory (endpoint records go to `cni-endpoints/` in it).
pub const DEFAULT_AGENT_DIR: &str = "/var/run/tollway";
/// Default IPAM root (`<root>/<network name>`).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/tollway/cni";

/// A `cni.dev/valid-attachments` entry (GC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Attachment {
    /// `containerID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    mtu: Option<u32>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<Ipv4Net>,
    ipam: Option<RawIpam>,
    data_dir: Option<PathBuf>,
    agent_dir: Option<PathBuf>,
    agent_socket: Option<PathBuf>,
    agent_wait_seconds: Option<u64>,
    dns: Option<Dns>,
    prev_result: Option<Value>,
    ip_masq: Option<bool>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<Attachment>>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(rename = "type")]
    ipam_type: Option<String>,
    subnet: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    range_start: Option<Ipv4Addr>,
    range_end: Option<Ipv4Addr>,
    routes: Option<Vec<Route>>,
    data_dir: Option<PathBuf>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// Top-level keys of the spec (and of runtimes) that are accepted whether
/// or not the plugin acts on them.
const WELL_KNOWN: &[&str] = &[
    "args",
    "runtimeConfig",
    "capabilities",
    "cniVersions",
    "disableCheck",
    "disableGC",
    "networkScaling",
];

/// A checked network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name`: the network.
    pub name: String,
    /// `type`.
    pub plugin_type: String,
    /// MTU of both veth ends.
    pub mtu: u32,
    /// The node's pod CIDR.
    pub subnet: Ipv4Net,
    /// The pods' gateway (link-local by default).
    pub gateway: Ipv4Addr,
    /// First address handed out.
    pub range_start: Ipv4Addr,
    /// Last address handed out.
    pub range_end: Ipv4Addr,
    /// Routes in the container (default: `0.0.0.0/0` via the gateway).
    pub routes: Vec<Route>,
    /// IPAM directory (allocations, one file per address).
    pub data_dir: PathBuf,
    /// Agent directory: endpoint records go to `<agentDir>/cni-endpoints/`.
    pub agent_dir: PathBuf,
    /// The agent's socket: STATUS reports not ready while it is missing.
    pub agent_socket: Option<PathBuf>,
    /// ADD waits this long for the agent to program the endpoint (its
    /// `.ready` marker) and fails with code 11 (try again later) if it
    /// does not; 0 returns at once.
    pub agent_wait_seconds: u64,
    /// DNS, passed through to the result.
    pub dns: Dns,
    /// `prevResult` (CHECK, DEL), raw.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The version in a configuration, for VERSION and for error replies (no
/// other checks).
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::config(
            "name",
            format!(
                "{name:?} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
            ),
        ))
    }
}

fn unsupported_extra(extra: &BTreeMap<String, Value>, prefix: &str) -> Result<()> {
    for key in extra.keys() {
        let namespaced = key.contains('/') || key.contains('.');
        if prefix.is_empty() && (namespaced || WELL_KNOWN.contains(&key.as_str())) {
            continue;
        }
        return Err(CniError::UnsupportedField {
            field: format!("{prefix}{key}"),
            reason: "tollway-cni does not know this field (see the crate's README for the keys it takes)"
                .into(),
        });
    }
    Ok(())
}

impl NetConf {
    /// Decode and check a configuration (code 6 if stdin is not JSON, 7 if
    /// the configuration is wrong, 2 for fields the plugin does not
    /// implement).
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let value: Value = serde_json::from_slice(stdin).map_err(|source| CniError::Decode {
            what: "the network configuration on stdin",
            source,
        })?;
        if !value.is_object() {
            return Err(CniError::config("(top level)", "must be a JSON object"));
        }
        let raw: RawConf = serde_json::from_value(value)
            .map_err(|e| CniError::config("(top level)", e.to_string()))?;
        unsupported_extra(&raw.extra, "")?;
        let cni_version = raw
            .cni_version
            .ok_or_else(|| CniError::config("cniVersion", "missing"))?;
        let name = raw
            .name
            .ok_or_else(|| CniError::config("name", "missing"))?;
        check_name(&name)?;
        let plugin_type = raw
            .plugin_type
            .ok_or_else(|| CniError::config("type", "missing"))?;
        if raw.ip_masq == Some(true) {
            return Err(CniError::UnsupportedField {
                field: "ipMasq".into(),
                reason: "Tollway routes pod addresses natively and does not masquerade".into(),
            });
        }
        let mtu = raw.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=65535).contains(&mtu) {
            return Err(CniError::config("mtu", format!("{mtu} is not in 68-65535")));
        }

        let ipam = raw.ipam;
        if let Some(i) = &ipam {
            unsupported_extra(&i.extra, "ipam.")?;
            if let Some(t) = &i.ipam_type
                && !matches!(t.as_str(), "tollway" | "tollway-cni")
            {
                return Err(CniError::UnsupportedField {
                    field: "ipam.type".into(),
                    reason: format!(
                        "{t:?}: IPAM is built in (omit ipam.type or set it to \"tollway\"); delegated IPAM plugins are not supported"
                    ),
                });
            }
        }
        let ipam_subnet = ipam.as_ref().and_then(|i| i.subnet);
        let subnet = match (raw.pod_cidr, ipam_subnet) {
            (Some(a), Some(b)) if a != b => {
                return Err(CniError::config(
                    "ipam.subnet",
                    format!("{b} differs from podCIDR {a}"),
                ));
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => {
                return Err(CniError::config(
                    "podCIDR",
                    "missing: set podCIDR (the node's pod CIDR) or ipam.subnet",
                ));
            }
        };
        if subnet.trunc() != subnet {
            return Err(CniError::config(
                "podCIDR",
                format!(
                    "{subnet} has host bits set (did you mean {}?)",
                    subnet.trunc()
                ),
            ));
        }
        let gateway = ipam
            .as_ref()
            .and_then(|i| i.gateway)
            .unwrap_or(DEFAULT_GATEWAY);
        if gateway.is_unspecified() || gateway.is_broadcast() || gateway.is_multicast() {
            return Err(CniError::config(
                "ipam.gateway",
                format!("{gateway} cannot be a gateway"),
            ));
        }
        let (first, last) = default_range(subnet);
        let range_start = ipam.as_ref().and_then(|i| i.range_start).unwrap_or(first);
        let range_end = ipam.as_ref().and_then(|i| i.range_end).unwrap_or(last);
        for (field, ip) in [
            ("ipam.rangeStart", range_start),
            ("ipam.rangeEnd", range_end),
        ] {
            if !subnet.contains(&ip) {
                return Err(CniError::config(field, format!("{ip} is outside {subnet}")));
            }
        }
        if range_start > range_end {
            return Err(CniError::config(
                "ipam.rangeEnd",
                format!("{range_end} is before rangeStart {range_start}"),
            ));
        }
        let routes = ipam
            .as_ref()
            .and_then(|i| i.routes.clone())
            .unwrap_or_else(|| {
                vec![Route {
                    dst: Ipv4Net::default(),
                    gw: Some(gateway),
                }]
            });
        let ipam_dir = ipam.as_ref().and_then(|i| i.data_dir.clone());
        let data_dir = match (raw.data_dir, ipam_dir) {
            (Some(a), Some(b)) if a != b => {
                return Err(CniError::config(
                    "ipam.dataDir",
                    format!("{} differs from dataDir {}", b.display(), a.display()),
                ));
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => PathBuf::from(DEFAULT_DATA_ROOT).join(&name),
        };
        for (field, p) in [
            ("dataDir", Some(&data_dir)),
            ("agentDir", raw.agent_dir.as_ref()),
        ] {
            if let Some(p) = p
                && !p.is_absolute()
            {
                return Err(CniError::config(
                    field,
                    format!("{} must be an absolute path", p.display()),
                ));
            }
        }
        if let Some(p) = &raw.prev_result
            && let Err(e) = serde_json::from_value::<PrevResult>(p.clone())
        {
            return Err(CniError::config("prevResult", e.to_string()));
        }
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            mtu,
            subnet,
            gateway,
            range_start,
            range_end,
            routes,
            data_dir,
            agent_dir: raw
                .agent_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT_DIR)),
            agent_socket: raw.agent_socket,
            agent_wait_seconds: raw.agent_wait_seconds.unwrap_or(0),
            dns: raw.dns.unwrap_or_default(),
            prev_result: raw.prev_result,
            valid_attachments: raw.valid_attachments.or(raw.attachments),
        })
    }

    /// The parsed `prevResult`, if any.
    pub fn prev_result(&self) -> Option<PrevResult> {
        self.prev_result
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Where endpoint records go.
    pub fn endpoints_dir(&self) -> PathBuf {
        self.agent_dir.join("cni-endpoints")
    }
}

/// The default range of a subnet: its hosts without the first one (left
/// for the node's router address, as the lab does), or every address of a
/// /31 or /32.
fn default_range(subnet: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let net = u32::from(subnet.network());
    let bcast = u32::from(subnet.broadcast());
    if subnet.prefix_len() >= 31 {
        (Ipv4Addr::from(net), Ipv4Addr::from(bcast))
    } else {
        (Ipv4Addr::from(net + 2), Ipv4Addr::from(bcast - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetConf> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(r#"{"cniVersion":"1.1.0","name":"tollway","type":"tollway-cni","podCIDR":"10.244.1.0/24"}"#).unwrap();
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.gateway, DEFAULT_GATEWAY);
        assert_eq!(c.range_start, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(c.range_end, Ipv4Addr::new(10, 244, 1, 254));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/tollway/cni/tollway"));
        assert_eq!(
            c.endpoints_dir(),
            PathBuf::from("/var/run/tollway/cni-endpoints")
        );
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(c.routes[0].gw, Some(DEFAULT_GATEWAY));
    }

    #[test]
    fn host_local_shaped_ipam_and_runtime_keys() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n.1","type":"tollway-cni","mtu":9000,
                "ipam":{"type":"tollway","subnet":"10.1.0.0/16","gateway":"10.1.0.1",
                        "rangeStart":"10.1.0.10","rangeEnd":"10.1.0.20",
                        "routes":[{"dst":"10.0.0.0/8"}],"dataDir":"/tmp/x"},
                "args":{"cni":{"labels":{}}},"runtimeConfig":{},"capabilities":{"portMappings":true},
                "cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}],
                "k8s.v1.cni.cncf.io/whatever":1,
                "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.10/32","interface":1}]}}"#,
        )
        .unwrap();
        assert_eq!(c.mtu, 9000);
        assert_eq!(c.gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(c.range_start, Ipv4Addr::new(10, 1, 0, 10));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.routes[0].gw, None);
        assert_eq!(c.valid_attachments.as_ref().unwrap().len(), 1);
        assert_eq!(c.prev_result().unwrap().ips[0].interface, Some(1));
    }

    #[test]
    fn errors_have_the_right_codes() {
        let cases: &[(&str, u32)] = &[
            ("not json", 6),
            ("", 6),
            ("[1]", 7),
            (r#"{"name":"n","type":"t","podCIDR":"10.0.0.0/24"}"#, 7),
            (
                r#"{"cniVersion":"1.1.0","type":"t","podCIDR":"10.0.0.0/24"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"-n","type":"t","podCIDR":"10.0.0.0/24"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","podCIDR":"10.0.0.0/24"}"#,
                7,
            ),
            (r#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#, 7),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.300/24"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.5/24"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","mtu":10}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","mtu":"big"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","ipam":{"subnet":"10.0.1.0/24"}}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","ipam":{"rangeStart":"10.9.0.1"}}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","ipam":{"rangeStart":"10.0.0.9","rangeEnd":"10.0.0.3"}}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","dataDir":"rel"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","prevResult":{"ips":"x"}}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","bridge":"cni0"}"#,
                2,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","ipMasq":true}"#,
                2,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","ipam":{"type":"host-local"}}"#,
                2,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","podCIDR":"10.0.0.0/24","ipam":{"ranges":[]}}"#,
                2,
            ),
        ];
        for (text, code) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.code(), *code, "{text}: {err}");
        }
    }

    #[test]
    fn small_subnets() {
        assert_eq!(
            default_range("10.0.0.8/31".parse().unwrap()),
            (Ipv4Addr::new(10, 0, 0, 8), Ipv4Addr::new(10, 0, 0, 9))
        );
        assert_eq!(
            default_range("10.0.0.8/29".parse().unwrap()),
            (Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 14))
        );
        assert_eq!(
            peek_version(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(peek_version(b"junk"), None);
    }
}
