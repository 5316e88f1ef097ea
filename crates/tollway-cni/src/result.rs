//! The spec's result JSON (what ADD prints and what CHECK and DEL get
//! back as `prevResult`), written in the shape of the requested version.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::version;

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The interface name.
    pub name: String,
    /// Its MAC.
    pub mac: String,
    /// Its MTU (written for 1.1.0 and later).
    pub mtu: Option<u32>,
    /// The netns path, for interfaces inside the container.
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length.
    pub address: Ipv4Net,
    /// Default gateway of the address.
    pub gateway: Option<Ipv4Addr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A route (in the configuration's `ipam.routes` and in results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination.
    pub dst: Ipv4Net,
    /// Next hop (the gateway when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
}

/// DNS settings (passed through from the configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A whole result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces: the host-side veth first, then the container's.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes set up in the container.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
}

impl CniResult {
    /// The JSON of this result for spec `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let with_mtu = version::interfaces_have_mtu(cni_version);
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = json!({ "name": i.name, "mac": i.mac });
                if let (true, Some(mtu)) = (with_mtu, i.mtu) {
                    o["mtu"] = json!(mtu);
                }
                if let Some(s) = &i.sandbox {
                    o["sandbox"] = json!(s);
                }
                o
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = json!({ "address": ip.address.to_string() });
                if version::ips_have_version(cni_version) {
                    o["version"] = json!("4");
                }
                if let Some(gw) = ip.gateway {
                    o["gateway"] = json!(gw.to_string());
                }
                if let Some(i) = ip.interface {
                    o["interface"] = json!(i);
                }
                o
            })
            .collect();
        json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": self.routes,
            "dns": self.dns,
        })
    }
}

/// What CHECK needs from a `prevResult` (any version's shape; unknown
/// fields are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrevResult {
    /// Interfaces.
    #[serde(default)]
    pub interfaces: Vec<PrevInterface>,
    /// Addresses.
    #[serde(default)]
    pub ips: Vec<PrevIp>,
}

/// An interface of a `prevResult`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrevInterface {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// MAC.
    #[serde(default)]
    pub mac: Option<String>,
    /// Netns path.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// An address of a `prevResult`.
#[derive(Debug, Clone, Deserialize)]
pub struct PrevIp {
    /// `a.b.c.d/n` (IPv6 entries are kept as text and ignored).
    pub address: String,
    /// Interface index.
    #[serde(default)]
    pub interface: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "lxc0123456789a".into(),
                    mac: "02:aa:bb:cc:dd:ee".into(),
                    mtu: Some(1500),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:58:0a:f4:00:02".into(),
                    mtu: Some(1500),
                    sandbox: Some("/var/run/netns/x".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.244.0.2/32".parse().unwrap(),
                gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some(Ipv4Addr::new(169, 254, 1, 1)),
            }],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                search: vec!["svc.cluster.local".into()],
                ..Dns::default()
            },
        }
    }

    #[test]
    fn result_json_per_version() {
        let v11 = sample().to_json("1.1.0");
        assert_eq!(
            v11,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "lxc0123456789a", "mac": "02:aa:bb:cc:dd:ee", "mtu": 1500},
                    {"name": "eth0", "mac": "0a:58:0a:f4:00:02", "mtu": 1500, "sandbox": "/var/run/netns/x"}
                ],
                "ips": [{"address": "10.244.0.2/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
            })
        );
        let v10 = sample().to_json("1.0.0");
        assert!(v10["interfaces"][0].get("mtu").is_none());
        assert!(v10["ips"][0].get("version").is_none());
        let v04 = sample().to_json("0.4.0");
        assert_eq!(v04["ips"][0]["version"], "4");
        assert_eq!(v04["cniVersion"], "0.4.0");
        // A result reads back as a prevResult.
        let prev: PrevResult = serde_json::from_value(v11).unwrap();
        assert_eq!(
            prev.interfaces[1].sandbox.as_deref(),
            Some("/var/run/netns/x")
        );
        assert_eq!(prev.ips[0].interface, Some(1));
    }
}
