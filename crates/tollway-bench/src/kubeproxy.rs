//! kube-proxy's iptables mode, reproduced: the chain names it hashes and the
//! `iptables-restore` input it writes for ClusterIP services, following
//! `pkg/proxy/iptables/proxier.go` (Kubernetes 1.28): a full sync
//! ([`full_sync`]), a partial sync after one service changed
//! ([`partial_sync`]), and the jump rules it ensures once at start
//! ([`jump_rules`]).
//!
//! Only what ClusterIP services with ready endpoints produce is modelled:
//! no NodePorts, external IPs, load balancers, session affinity or traffic
//! policies (the benchmark's services have none of them).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use sha2::{Digest, Sha256};

/// One port of one service, with its endpoints (all ready, all "cluster").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The port's name ("" for an unnamed port).
    pub port_name: String,
    /// ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// Service port (TCP).
    pub port: u16,
    /// Endpoints (`IP:targetPort`).
    pub endpoints: Vec<SocketAddrV4>,
}

impl ServicePort {
    /// `ns/name:port` (kube-proxy's `ServicePortName.String()`; no
    /// `:port` for an unnamed port).
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    /// `KUBE-SVC-...`, the service's cluster-policy chain.
    pub fn svc_chain(&self) -> String {
        format!(
            "KUBE-SVC-{}",
            port_proto_hash(&self.port_name_string(), PROTO)
        )
    }

    /// `KUBE-SEP-...`, the chain of one endpoint.
    pub fn sep_chain(&self, endpoint: &SocketAddrV4) -> String {
        sep_chain_name(&self.port_name_string(), PROTO, &endpoint.to_string())
    }
}

/// The only protocol modelled (lowercase, as kube-proxy hashes it).
const PROTO: &str = "tcp";

/// kube-proxy's settings that change the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxierConfig {
    /// `--cluster-cidr` (the local-traffic detector): traffic to a
    /// ClusterIP from outside it is masqueraded. `None`: no detector.
    pub cluster_cidr: Option<String>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `1 << --iptables-masquerade-bit` (default bit 14).
    pub masquerade_mark: String,
    /// Whether `iptables` supports `MASQUERADE --random-fully`.
    pub random_fully: bool,
    /// `--iptables-localhost-nodeports` (default true): adds the
    /// KUBE-FIREWALL rule against martian localnet traffic.
    pub localhost_nodeports: bool,
}

impl Default for ProxierConfig {
    fn default() -> Self {
        ProxierConfig {
            cluster_cidr: None,
            masquerade_all: false,
            masquerade_mark: "0x4000".into(),
            random_fully: true,
            localhost_nodeports: true,
        }
    }
}

/// Above this many endpoints in all, kube-proxy drops the per-endpoint
/// comments ("large cluster mode").
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// RFC 4648 base32 (standard alphabet, with padding), as Go's
/// `base32.StdEncoding`.
pub fn base32_std(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // Characters that carry data: ceil(len * 8 / 5).
        let used = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < used {
                let idx = ((bits >> (35 - i * 5)) & 0x1f) as usize;
                out.push(ALPHABET[idx] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hash16(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut s = base32_std(&digest);
    s.truncate(16);
    s
}

/// kube-proxy's `portProtoHash`: the first 16 characters of
/// base32(sha256(servicePortName + protocol)).
pub fn port_proto_hash(service_port_name: &str, protocol: &str) -> String {
    hash16(&format!("{service_port_name}{protocol}"))
}

/// kube-proxy's `servicePortEndpointChainName`.
pub fn sep_chain_name(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&format!("{service_port_name}{protocol}{endpoint}"))
    )
}

/// kube-proxy's `computeProbability`: `1/n` with ten decimals.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// A comment argument as kube-proxy writes it into the restore input:
/// quoted when it has a space.
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

/// The rules kube-proxy ensures with `iptables -I` once at start (and
/// after a flush), as `iptables-restore --noflush` input: the jumps from
/// the built-in chains into its own, kubelet's KUBE-FIREWALL jumps, and the
/// canary chains it watches. Each `-I` prepends, as `EnsureRule(Prepend)` does.
pub fn jump_rules() -> String {
    // (table, chain it jumps to, built-in chain, comment, extra match)
    const JUMPS: &[(&str, &str, &str, &str, &str)] = &[
        (
            "filter",
            "KUBE-EXTERNAL-SERVICES",
            "INPUT",
            "kubernetes externally-visible service portals",
            "-m conntrack --ctstate NEW",
        ),
        (
            "filter",
            "KUBE-EXTERNAL-SERVICES",
            "FORWARD",
            "kubernetes externally-visible service portals",
            "-m conntrack --ctstate NEW",
        ),
        (
            "filter",
            "KUBE-NODEPORTS",
            "INPUT",
            "kubernetes health check service ports",
            "",
        ),
        (
            "filter",
            "KUBE-SERVICES",
            "FORWARD",
            "kubernetes service portals",
            "-m conntrack --ctstate NEW",
        ),
        (
            "filter",
            "KUBE-SERVICES",
            "OUTPUT",
            "kubernetes service portals",
            "-m conntrack --ctstate NEW",
        ),
        (
            "filter",
            "KUBE-FORWARD",
            "FORWARD",
            "kubernetes forwarding rules",
            "",
        ),
        (
            "filter",
            "KUBE-PROXY-FIREWALL",
            "INPUT",
            "kubernetes load balancer firewall",
            "-m conntrack --ctstate NEW",
        ),
        (
            "filter",
            "KUBE-PROXY-FIREWALL",
            "OUTPUT",
            "kubernetes load balancer firewall",
            "-m conntrack --ctstate NEW",
        ),
        (
            "filter",
            "KUBE-PROXY-FIREWALL",
            "FORWARD",
            "kubernetes load balancer firewall",
            "-m conntrack --ctstate NEW",
        ),
        (
            "nat",
            "KUBE-SERVICES",
            "OUTPUT",
            "kubernetes service portals",
            "",
        ),
        (
            "nat",
            "KUBE-SERVICES",
            "PREROUTING",
            "kubernetes service portals",
            "",
        ),
        (
            "nat",
            "KUBE-POSTROUTING",
            "POSTROUTING",
            "kubernetes postrouting rules",
            "",
        ),
        // kubelet's (kube-proxy ensures them too), without a comment.
        ("filter", "KUBE-FIREWALL", "INPUT", "", ""),
        ("filter", "KUBE-FIREWALL", "OUTPUT", "", ""),
    ];
    let mut out = String::new();
    for table in ["mangle", "filter", "nat"] {
        let _ = writeln!(out, "*{table}");
        // The canary chain kube-proxy's monitor watches in each table.
        out.push_str(":KUBE-PROXY-CANARY - [0:0]\n");
        let mut chains: Vec<&str> = JUMPS.iter().filter(|j| j.0 == table).map(|j| j.1).collect();
        chains.sort_unstable();
        chains.dedup();
        for c in &chains {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for (t, dst, src, text, extra) in JUMPS {
            if *t != table {
                continue;
            }
            let mut line = format!("-I {src}");
            if !extra.is_empty() {
                line.push(' ');
                line.push_str(extra);
            }
            if !text.is_empty() {
                line.push(' ');
                line.push_str(&comment(text));
            }
            let _ = writeln!(out, "{line} -j {dst}");
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Input for `iptables-restore` (without `--noflush`) that empties the
/// filter, nat and mangle tables and deletes their user chains.
pub fn flush_all() -> String {
    "*mangle\nCOMMIT\n*filter\nCOMMIT\n*nat\nCOMMIT\n".to_string()
}

/// Which services a sync writes the chains of.
enum Sync<'a> {
    Full,
    Partial(&'a [usize]),
}

/// The `iptables-restore --noflush --counters` input of a full sync, in the
/// services' order (KUBE-SERVICES matches them in that order, so the last
/// service is matched after all the others).
pub fn full_sync(cfg: &ProxierConfig, services: &[ServicePort]) -> String {
    sync(cfg, services, Sync::Full)
}

/// The input of a partial sync after the services at `changed` (indexes
/// into `services`) changed: kube-proxy rewrites the filter table and the
/// nat table's top-level chains whole (so all of KUBE-SERVICES), but only
/// the changed services' own KUBE-SVC/KUBE-SEP chains.
pub fn partial_sync(cfg: &ProxierConfig, services: &[ServicePort], changed: &[usize]) -> String {
    sync(cfg, services, Sync::Partial(changed))
}

fn sync(cfg: &ProxierConfig, services: &[ServicePort], which: Sync<'_>) -> String {
    let mark = &cfg.masquerade_mark;
    let total_endpoints: usize = services.iter().map(|s| s.endpoints.len()).sum();
    let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS;

    let mut filter_chains = String::new();
    let mut filter_rules = String::new();
    for c in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        let _ = writeln!(filter_chains, ":{c} - [0:0]");
    }
    let mut nat_chains = String::new();
    let mut nat_rules = String::with_capacity(services.len() * 400);
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(nat_chains, ":{c} - [0:0]");
    }
    let _ = writeln!(
        nat_rules,
        "-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
    );
    let _ = writeln!(nat_rules, "-A KUBE-POSTROUTING -j MARK --xor-mark {mark}");
    let _ = writeln!(
        nat_rules,
        "-A KUBE-POSTROUTING {} -j MASQUERADE{}",
        comment("kubernetes service traffic requiring SNAT"),
        if cfg.random_fully {
            " --random-fully"
        } else {
            ""
        }
    );
    let _ = writeln!(nat_rules, "-A KUBE-MARK-MASQ -j MARK --or-mark {mark}");
    if cfg.localhost_nodeports {
        filter_chains.push_str(":KUBE-FIREWALL - [0:0]\n");
        let _ = writeln!(
            filter_rules,
            "-A KUBE-FIREWALL {} -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
            comment("block incoming localnet connections")
        );
    }

    for (i, svc) in services.iter().enumerate() {
        let spn = svc.port_name_string();
        let svc_chain = svc.svc_chain();
        let matcher = format!(
            "{} -m {PROTO} -p {PROTO} -d {} --dport {}",
            comment(&format!("{spn} cluster IP")),
            svc.cluster_ip,
            svc.port
        );
        if svc.endpoints.is_empty() {
            // No endpoints: REJECT in the filter table, no nat chains.
            let _ = writeln!(
                filter_rules,
                "-A KUBE-SERVICES {} -m {PROTO} -p {PROTO} -d {} --dport {} -j REJECT",
                comment(&format!("{spn} has no endpoints")),
                svc.cluster_ip,
                svc.port
            );
            continue;
        }
        // Capture the ClusterIP (always written: KUBE-SERVICES is rewritten
        // whole on every sync).
        let _ = writeln!(nat_rules, "-A KUBE-SERVICES {matcher} -j {svc_chain}");

        let write_chains = match which {
            Sync::Full => true,
            Sync::Partial(changed) => changed.contains(&i),
        };
        if !write_chains {
            // Unchanged: kube-proxy writes these to a discard buffer.
            continue;
        }
        let (chains, rules) = (&mut nat_chains, &mut nat_rules);
        let _ = writeln!(chains, ":{svc_chain} - [0:0]");
        if cfg.masquerade_all {
            let _ = writeln!(rules, "-A {svc_chain} {matcher} -j KUBE-MARK-MASQ");
        } else if let Some(cidr) = &cfg.cluster_cidr {
            let _ = writeln!(
                rules,
                "-A {svc_chain} {matcher} ! -s {cidr} -j KUBE-MARK-MASQ"
            );
        }
        let n = svc.endpoints.len();
        for (j, ep) in svc.endpoints.iter().enumerate() {
            let mut line = format!("-A {svc_chain}");
            if !large {
                line.push(' ');
                line.push_str(&comment(&format!("{spn} -> {ep}")));
            }
            if j + 1 < n {
                let _ = write!(
                    line,
                    " -m statistic --mode random --probability {}",
                    probability(n - j)
                );
            }
            let _ = writeln!(rules, "{line} -j {}", svc.sep_chain(ep));
        }
        for ep in &svc.endpoints {
            let sep = svc.sep_chain(ep);
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let c = if large {
                String::new()
            } else {
                format!(" {}", comment(&spn))
            };
            let _ = writeln!(rules, "-A {sep}{c} -s {} -j KUBE-MARK-MASQ", ep.ip());
            let _ = writeln!(
                rules,
                "-A {sep}{c} -m {PROTO} -p {PROTO} -j DNAT --to-destination {ep}"
            );
        }
    }
    // The NodePort tail call: the last rule of KUBE-SERVICES.
    let _ = writeln!(
        nat_rules,
        "-A KUBE-SERVICES {} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
        comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    );
    filter_rules.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    let _ = writeln!(
        filter_rules,
        "-A KUBE-FORWARD {} -m mark --mark {mark}/{mark} -j ACCEPT",
        comment("kubernetes forwarding rules")
    );
    let _ = writeln!(
        filter_rules,
        "-A KUBE-FORWARD {} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        comment("kubernetes forwarding conntrack rule")
    );

    let mut out =
        String::with_capacity(filter_chains.len() + filter_rules.len() + nat_rules.len() + 64);
    out.push_str("*filter\n");
    out.push_str(&filter_chains);
    out.push_str(&filter_rules);
    out.push_str("COMMIT\n*nat\n");
    out.push_str(&nat_chains);
    out.push_str(&nat_rules);
    out.push_str("COMMIT\n");
    out
}

/// Rules (`-A` lines) in a restore input.
pub fn rule_count(restore: &str) -> usize {
    restore.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Chains (`:NAME` lines) in a restore input.
pub fn chain_count(restore: &str) -> usize {
    restore.lines().filter(|l| l.starts_with(':')).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc1(endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "ns1".into(),
            name: "svc1".into(),
            port_name: "p80".into(),
            cluster_ip: Ipv4Addr::new(172, 30, 0, 41),
            port: 80,
            endpoints: endpoints
                .iter()
                .map(|e| e.parse().expect("endpoint"))
                .collect(),
        }
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10.
        for (input, want) in [
            ("", ""),
            ("f", "MY======"),
            ("fo", "MZXQ===="),
            ("foo", "MZXW6==="),
            ("foob", "MZXW6YQ="),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI======"),
        ] {
            assert_eq!(base32_std(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn chain_names_match_the_ones_kube_proxy_makes() {
        // Names seen in every cluster and in kube-proxy's own tests.
        assert_eq!(
            port_proto_hash("default/kubernetes:https", "tcp"),
            "NPX46M4PTMTKRN6Y"
        );
        assert_eq!(
            port_proto_hash("kube-system/kube-dns:dns", "udp"),
            "TCOU7JCQXEZGVUNU"
        );
        assert_eq!(
            port_proto_hash("kube-system/kube-dns:dns-tcp", "tcp"),
            "ERIFXISQEP7F7OF4"
        );
        let s = svc1(&["10.180.0.1:80"]);
        assert_eq!(s.port_name_string(), "ns1/svc1:p80");
        assert_eq!(s.svc_chain(), "KUBE-SVC-XPGD46QRK7WJZT7O");
        assert_eq!(
            s.sep_chain(&"10.180.0.1:80".parse().expect("ep")),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert_eq!(
            sep_chain_name("ns1/svc1:p80", "tcp", "10.180.0.2:80"),
            "KUBE-SEP-LXVODXWDISEETFEF"
        );
        let unnamed = ServicePort {
            port_name: String::new(),
            ..s
        };
        assert_eq!(unnamed.port_name_string(), "ns1/svc1");
    }

    #[test]
    fn probabilities_are_one_over_the_endpoints_left() {
        assert_eq!(probability(2), "0.5000000000");
        assert_eq!(probability(3), "0.3333333333");
        assert_eq!(probability(4), "0.2500000000");
    }

    #[test]
    fn full_sync_of_one_service_is_kube_proxys_output() {
        let cfg = ProxierConfig {
            cluster_cidr: Some("10.0.0.0/8".into()),
            random_fully: false,
            localhost_nodeports: false,
            ..Default::default()
        };
        let got = full_sync(&cfg, &[svc1(&["10.180.0.1:80", "10.180.0.2:80"])]);
        // As in kube-proxy's TestOverallIPTablesRules / TestLoadBalancer
        // (pkg/proxy/iptables/proxier_test.go), in its write order.
        let want = r#"*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-LXVODXWDISEETFEF - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j KUBE-SEP-LXVODXWDISEETFEF
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
"#;
        assert_eq!(got, want);
    }

    fn many(n: usize) -> Vec<ServicePort> {
        (0..n)
            .map(|i| ServicePort {
                namespace: "bench".into(),
                name: format!("lb-{i:05}"),
                port_name: "http".into(),
                cluster_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + i as u32),
                port: 80,
                endpoints: vec!["10.244.1.2:8000".parse().expect("ep")],
            })
            .collect()
    }

    #[test]
    fn the_last_service_is_matched_last_and_big_clusters_lose_endpoint_comments() {
        let cfg = ProxierConfig {
            cluster_cidr: Some("10.244.0.0/16".into()),
            ..Default::default()
        };
        let svcs = many(1001);
        let text = full_sync(&cfg, &svcs);
        let kube_services: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES "))
            .collect();
        assert_eq!(kube_services.len(), 1002);
        assert!(kube_services[1000].contains("bench/lb-01000:http cluster IP"));
        assert!(kube_services[1000].contains("-d 10.128.3.233 --dport 80"));
        assert!(kube_services[1001].contains("KUBE-NODEPORTS"));
        // 1,001 endpoints > 1,000: no comments on the endpoint rules.
        let sep = svcs[5].sep_chain(&svcs[5].endpoints[0]);
        assert!(text.contains(&format!(
            "-A {sep} -m tcp -p tcp -j DNAT --to-destination 10.244.1.2:8000\n"
        )));
        assert!(text.contains(&format!("-A {} -j {sep}\n", svcs[5].svc_chain())));
        assert!(text.contains("-j MASQUERADE --random-fully\n"));
        assert!(text.contains(":KUBE-FIREWALL - [0:0]\n"));
        // Per service: SVC + SEP chains; rules: capture, masq, SVC->SEP, 2 SEP.
        assert_eq!(chain_count(&text), 5 + 1 + 4 + 2 * 1001);
        assert_eq!(rule_count(&text), 4 + 3 + 1 + 5 * 1001 + 1);
        // With 1,000 they keep them.
        let text = full_sync(&cfg, &many(1000));
        assert!(text.contains("-m comment --comment bench/lb-00005:http -s 10.244.1.2"));
    }

    #[test]
    fn partial_sync_rewrites_kube_services_whole_but_only_the_changed_chains() {
        let cfg = ProxierConfig {
            cluster_cidr: Some("10.244.0.0/16".into()),
            ..Default::default()
        };
        let mut svcs = many(10);
        svcs[9].port = 81;
        let text = partial_sync(&cfg, &svcs, &[9]);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("-A KUBE-SERVICES "))
                .count(),
            11
        );
        let svc_chains: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(":KUBE-SVC-") || l.starts_with(":KUBE-SEP-"))
            .collect();
        assert_eq!(svc_chains.len(), 2, "{svc_chains:?}");
        assert!(text.contains(&format!(":{} - [0:0]", svcs[9].svc_chain())));
        assert!(text.contains(&format!(
            "-A {} -m comment --comment \"bench/lb-00009:http cluster IP\" -m tcp -p tcp -d 10.128.0.10 --dport 81 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ",
            svcs[9].svc_chain()
        )));
        assert!(!text.contains(&format!(":{} ", svcs[3].svc_chain())));
    }

    #[test]
    fn jump_rules_link_the_builtin_chains() {
        let j = jump_rules();
        assert!(j.contains(
            "-I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
        ));
        assert!(j.contains(
            "-I FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
        ));
        assert!(j.contains("-I INPUT -j KUBE-FIREWALL\n"));
        assert_eq!(j.matches("COMMIT").count(), 3);
        assert_eq!(flush_all().matches("COMMIT").count(), 3);
    }

    #[test]
    fn services_without_endpoints_are_rejected_in_filter() {
        let text = full_sync(&ProxierConfig::default(), &[svc1(&[])]);
        assert!(text.contains(
            "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT"
        ));
        assert!(!text.contains("KUBE-SVC-"));
    }
}
