//! The cluster's names, as kube-dns/CoreDNS serve them: Services of the store → addresses.
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use hickory_proto::rr::{Name, RecordType};
use tollway_api::{Kind, Object, Pod, Service, ServiceType};
use tollway_state::Snapshot;

/// The cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The TTL of every record served (answers and the SOA of negative answers).
pub const TTL: u32 = 30;

/// The zones this server is authoritative for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apex {
    /// `cluster.local.`: `<svc>.<ns>.svc.cluster.local.`.
    ClusterDomain,
    /// `svc.`: `<svc>.<ns>.svc.` (the short form, without the cluster domain).
    Svc,
}

impl Apex {
    /// The zone's name (`cluster.local.` or `svc.`).
    pub fn name(self) -> Name {
        match self {
            Apex::ClusterDomain => name_of(&["cluster", "local"]),
            Apex::Svc => name_of(&["svc"]),
        }
    }
}

/// An absolute name of constant, valid labels (the root if one were not).
pub(crate) fn name_of(labels: &[&str]) -> Name {
    Name::from_labels(labels.iter().map(|l| l.as_bytes())).unwrap_or_else(|_| Name::root())
}

/// What the zone says about one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The name exists and has these IPv4 addresses (an `A` or `ANY` question about a
    /// Service with at least one address).
    Addresses {
        /// The zone.
        apex: Apex,
        /// The addresses, sorted.
        addresses: Vec<Ipv4Addr>,
    },
    /// The name is an ExternalName Service: whatever the question, the answer is a
    /// `CNAME` to this name (this server does not recurse: the client resolves it).
    Alias {
        /// The zone.
        apex: Apex,
        /// The Service's `externalName`, absolute.
        target: Name,
    },
    /// An `SOA` (or `ANY`) question about a zone's apex: answer with its SOA.
    Soa {
        /// The zone.
        apex: Apex,
    },
    /// The name exists but has no record of the asked type (NOERROR with no answer):
    /// `AAAA` of a Service, `A` of a namespace, a headless Service without ready pods.
    NoData {
        /// The zone.
        apex: Apex,
    },
    /// The name is in a zone served here but does not exist (NXDOMAIN).
    NxDomain {
        /// The zone.
        apex: Apex,
    },
    /// The name is in no zone served here (REFUSED: this server does not recurse).
    Refused,
}

impl Resolution {
    /// The zone the name is in, unless refused.
    pub fn apex(&self) -> Option<Apex> {
        match self {
            Resolution::Addresses { apex, .. }
            | Resolution::Alias { apex, .. }
            | Resolution::Soa { apex }
            | Resolution::NoData { apex }
            | Resolution::NxDomain { apex } => Some(*apex),
            Resolution::Refused => None,
        }
    }
}

/// One Service's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// `clusterIP: None`: the addresses are the ready pods'.
    pub headless: bool,
    /// The cluster IP, or (headless) the ready pods' IPs; sorted, no duplicates.
    pub addresses: Vec<Ipv4Addr>,
}

impl ServiceEntry {
    /// A Service with a cluster IP.
    pub fn cluster_ip(ip: Ipv4Addr) -> ServiceEntry {
        ServiceEntry {
            headless: false,
            addresses: vec![ip],
        }
    }
}

/// The names served: namespaces and Services, at one store version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    serial: u32,
    namespaces: BTreeSet<String>,
    services: BTreeMap<(String, String), ServiceEntry>,
    /// ExternalName Services: their `externalName`.
    aliases: BTreeMap<(String, String), Name>,
}

impl Zone {
    /// An empty zone with this SOA serial.
    pub fn new(serial: u32) -> Zone {
        Zone {
            serial,
            ..Zone::default()
        }
    }

    /// The zone of a store snapshot: every namespace, and every Service (ClusterIP,
    /// NodePort and LoadBalancer: its cluster IP; headless: the IPv4 addresses of the pods
    /// it selects that are ready (or all of them with `publishNotReadyAddresses`), not
    /// terminating, and not `Succeeded`/`Failed`, as the Endpoints controller would list
    /// them; ExternalName: a `CNAME` to its `externalName`). The SOA serial is the store's
    /// resource version (wrapping, as serials do).
    pub fn from_snapshot(snap: &Snapshot) -> Zone {
        let mut zone = Zone::new(snap.resource_version as u32);
        for ns in snap.namespaces() {
            zone.add_namespace(&ns.metadata.name);
        }
        for svc in snap.services() {
            let ns = svc.metadata.namespace_or_default();
            if svc.service_type() == ServiceType::ExternalName {
                // Validated as a DNS name; one that is not is left out.
                if let Some(target) = svc
                    .spec
                    .external_name
                    .as_deref()
                    .and_then(|n| Name::from_ascii(n).ok())
                {
                    zone.add_alias(ns, &svc.metadata.name, target);
                }
                continue;
            }
            let entry = if svc.is_headless() {
                let pods = snap.list(Kind::Pod, Some(ns)).filter_map(|o| match o {
                    Object::Pod(p) => Some(p),
                    _ => None,
                });
                ServiceEntry {
                    headless: true,
                    addresses: endpoint_addresses(svc, pods),
                }
            } else {
                ServiceEntry {
                    headless: false,
                    addresses: svc
                        .spec
                        .cluster_ip
                        .as_deref()
                        .and_then(|ip| ip.parse().ok())
                        .into_iter()
                        .collect(),
                }
            };
            zone.add_service(ns, &svc.metadata.name, entry);
        }
        zone
    }

    /// Add a namespace (`<ns>.svc.cluster.local.` exists, with no address).
    pub fn add_namespace(&mut self, namespace: &str) {
        self.namespaces.insert(namespace.to_ascii_lowercase());
    }

    /// Add or replace a Service (its namespace too). Addresses are sorted and deduplicated.
    pub fn add_service(&mut self, namespace: &str, name: &str, mut entry: ServiceEntry) {
        entry.addresses.sort_unstable();
        entry.addresses.dedup();
        self.add_namespace(namespace);
        let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
        self.aliases.remove(&key);
        self.services.insert(key, entry);
    }

    /// Add or replace an ExternalName Service (its namespace too): its name is an alias
    /// (`CNAME`) of `target` (made absolute).
    pub fn add_alias(&mut self, namespace: &str, name: &str, mut target: Name) {
        target.set_fqdn(true);
        self.add_namespace(namespace);
        let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
        self.services.remove(&key);
        self.aliases.insert(key, target);
    }

    /// What an ExternalName Service's name is an alias of.
    pub fn alias(&self, namespace: &str, name: &str) -> Option<&Name> {
        self.aliases
            .get(&(namespace.to_ascii_lowercase(), name.to_ascii_lowercase()))
    }

    /// A Service's record.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services
            .get(&(namespace.to_ascii_lowercase(), name.to_ascii_lowercase()))
    }

    /// The Services, as `((namespace, name), entry)`, in order.
    pub fn services(&self) -> impl Iterator<Item = (&(String, String), &ServiceEntry)> {
        self.services.iter()
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Answer a question (class IN) about `name` (case-insensitive; absolute or not, it is
    /// read as absolute).
    pub fn resolve(&self, name: &Name, qtype: RecordType) -> Resolution {
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        let (apex, rel) = match labels.as_slice() {
            [rest @ .., a, b] if a == "cluster" && b == "local" => (Apex::ClusterDomain, rest),
            [rest @ .., s] if s == "svc" => (Apex::Svc, rest),
            _ => return Resolution::Refused,
        };
        if rel.is_empty() {
            return match qtype {
                RecordType::SOA | RecordType::ANY => Resolution::Soa { apex },
                _ => Resolution::NoData { apex },
            };
        }
        // Below the apex: only the `svc` subtree has names.
        let under_svc = match apex {
            Apex::Svc => Some(rel),
            Apex::ClusterDomain => match rel {
                [rest @ .., s] if s == "svc" => Some(rest),
                _ => None,
            },
        };
        match under_svc {
            None => Resolution::NxDomain { apex },
            // `svc.cluster.local.`: an empty non-terminal.
            Some([]) => Resolution::NoData { apex },
            Some([ns]) if self.namespaces.contains(ns) => Resolution::NoData { apex },
            Some([name, ns]) => match self.services.get(&(ns.clone(), name.clone())) {
                None => match self.aliases.get(&(ns.clone(), name.clone())) {
                    Some(target) => Resolution::Alias {
                        apex,
                        target: target.clone(),
                    },
                    None => Resolution::NxDomain { apex },
                },
                Some(entry) => match qtype {
                    RecordType::A | RecordType::ANY if !entry.addresses.is_empty() => {
                        Resolution::Addresses {
                            apex,
                            addresses: entry.addresses.clone(),
                        }
                    }
                    _ => Resolution::NoData { apex },
                },
            },
            Some(_) => Resolution::NxDomain { apex },
        }
    }
}

/// The IPv4 addresses of a headless Service's endpoints among `pods` (those of its
/// namespace): selected by a non-empty selector, with an IPv4 pod IP, not
/// `Succeeded`/`Failed`, not terminating, and ready unless `publishNotReadyAddresses`.
fn endpoint_addresses<'p>(svc: &Service, pods: impl Iterator<Item = &'p Pod>) -> Vec<Ipv4Addr> {
    let selector = &svc.spec.selector;
    if selector.is_empty() {
        return Vec::new();
    }
    let publish_not_ready = svc.spec.publish_not_ready_addresses == Some(true);
    let mut out: Vec<Ipv4Addr> = pods
        .filter(|p| {
            selector
                .iter()
                .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
        })
        .filter(|p| !matches!(p.phase(), "Succeeded" | "Failed"))
        .filter(|p| !p.metadata.is_terminating())
        .filter(|p| publish_not_ready || p.is_ready())
        .filter_map(|p| p.pod_ip()?.parse().ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The zone the server answers from, replaced whole when the store changes; readers
/// never see a partial zone. Clones share the same zone.
#[derive(Debug, Clone, Default)]
pub struct SharedZone {
    inner: Arc<RwLock<Arc<Zone>>>,
}

impl SharedZone {
    /// Share `zone`.
    pub fn new(zone: Zone) -> SharedZone {
        SharedZone {
            inner: Arc::new(RwLock::new(Arc::new(zone))),
        }
    }

    /// The current zone.
    pub fn get(&self) -> Arc<Zone> {
        // A writer that panicked left a whole zone behind (the swap is one assignment).
        match self.inner.read() {
            Ok(z) => Arc::clone(&z),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replace the zone.
    pub fn replace(&self, zone: Zone) {
        let zone = Arc::new(zone);
        match self.inner.write() {
            Ok(mut z) => *z = zone,
            Err(poisoned) => *poisoned.into_inner() = zone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn zone() -> Zone {
        let mut z = Zone::new(7);
        z.add_namespace("default");
        z.add_service(
            "kube-system",
            "kube-dns",
            ServiceEntry::cluster_ip(Ipv4Addr::new(10, 96, 0, 10)),
        );
        z.add_service(
            "default",
            "db",
            ServiceEntry {
                headless: true,
                addresses: vec![Ipv4Addr::new(10, 244, 1, 3), Ipv4Addr::new(10, 244, 0, 2)],
            },
        );
        z.add_service("default", "empty", ServiceEntry::default());
        z
    }

    fn addrs(r: &Resolution) -> Vec<String> {
        match r {
            Resolution::Addresses { addresses, .. } => {
                addresses.iter().map(ToString::to_string).collect()
            }
            other => panic!("no addresses: {other:?}"),
        }
    }

    #[test]
    fn service_names_resolve_in_both_forms_and_any_case() {
        let z = zone();
        for n in [
            "kube-dns.kube-system.svc.cluster.local.",
            "kube-dns.kube-system.svc.cluster.local",
            "KUBE-DNS.Kube-System.SVC.Cluster.Local.",
            "kube-dns.kube-system.svc.",
        ] {
            let r = z.resolve(&name(n), RecordType::A);
            assert_eq!(addrs(&r), ["10.96.0.10"], "{n}");
        }
        assert_eq!(
            z.resolve(&name("kube-dns.kube-system.svc."), RecordType::A)
                .apex(),
            Some(Apex::Svc)
        );
        assert_eq!(
            z.resolve(
                &name("kube-dns.kube-system.svc.cluster.local."),
                RecordType::ANY
            )
            .apex(),
            Some(Apex::ClusterDomain)
        );
    }

    #[test]
    fn headless_services_answer_with_their_pods_sorted() {
        let z = zone();
        let r = z.resolve(&name("db.default.svc.cluster.local."), RecordType::A);
        assert_eq!(addrs(&r), ["10.244.0.2", "10.244.1.3"]);
        // No ready pod: the name exists, with no address.
        let r = z.resolve(&name("empty.default.svc.cluster.local."), RecordType::A);
        assert_eq!(
            r,
            Resolution::NoData {
                apex: Apex::ClusterDomain
            }
        );
    }

    #[test]
    fn other_types_unknown_names_and_foreign_names() {
        let z = zone();
        let c = Apex::ClusterDomain;
        let q = |n: &str, t| z.resolve(&name(n), t);
        assert_eq!(
            q("kube-dns.kube-system.svc.cluster.local.", RecordType::AAAA),
            Resolution::NoData { apex: c }
        );
        assert_eq!(
            q("kube-dns.kube-system.svc.cluster.local.", RecordType::SRV),
            Resolution::NoData { apex: c }
        );
        assert_eq!(
            q("nope.kube-system.svc.cluster.local.", RecordType::A),
            Resolution::NxDomain { apex: c }
        );
        assert_eq!(
            q("kube-dns.nope.svc.cluster.local.", RecordType::A),
            Resolution::NxDomain { apex: c }
        );
        assert_eq!(
            q("x.kube-dns.kube-system.svc.cluster.local.", RecordType::A),
            Resolution::NxDomain { apex: c }
        );
        assert_eq!(
            q("foo.cluster.local.", RecordType::A),
            Resolution::NxDomain { apex: c }
        );
        assert_eq!(
            q("nope.svc.", RecordType::A),
            Resolution::NxDomain { apex: Apex::Svc }
        );
        // Namespaces and the svc subtree exist, without addresses.
        for n in [
            "default.svc.cluster.local.",
            "kube-system.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
            "default.svc.",
        ] {
            assert!(
                matches!(q(n, RecordType::A), Resolution::NoData { .. }),
                "{n}"
            );
        }
        assert_eq!(
            q("cluster.local.", RecordType::SOA),
            Resolution::Soa { apex: c }
        );
        assert_eq!(
            q("svc.", RecordType::SOA),
            Resolution::Soa { apex: Apex::Svc }
        );
        for n in ["example.com.", "local.", "cluster.local.example.com.", "."] {
            assert_eq!(q(n, RecordType::A), Resolution::Refused, "{n}");
        }
    }

    fn snapshot() -> Snapshot {
        use serde_json::json;
        use tollway_api::{Namespace, Service};
        let ns = |name: &str| {
            Object::Namespace(
                serde_json::from_value::<Namespace>(json!({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
                }))
                .unwrap(),
            )
        };
        let svc = |name: &str, spec: serde_json::Value| {
            Object::Service(
                serde_json::from_value::<Service>(json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": "shop"}, "spec": spec
                }))
                .unwrap(),
            )
        };
        let pod = |name: &str, app: &str, ip: &str, ready: bool, extra: serde_json::Value| {
            let mut v = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
                "spec": {"nodeName": "node-1"},
                "status": {
                    "phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
                }
            });
            if let (Some(m), Some(x)) = (v["metadata"].as_object_mut(), extra.as_object()) {
                m.extend(x.clone());
            }
            Object::Pod(serde_json::from_value::<Pod>(v).unwrap())
        };
        let objects = [
            ns("default"),
            ns("shop"),
            svc(
                "api",
                json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}], "selector": {"app": "api"}}),
            ),
            svc(
                "db",
                json!({"clusterIP": "None", "ports": [{"port": 5432}], "selector": {"app": "db"}}),
            ),
            svc(
                "db-all",
                json!({"clusterIP": "None", "publishNotReadyAddresses": true, "ports": [{"port": 5432}], "selector": {"app": "db"}}),
            ),
            svc(
                "manual",
                json!({"clusterIP": "None", "ports": [{"port": 1}]}),
            ),
            svc(
                "payments-db",
                json!({"type": "ExternalName", "externalName": "db.payments.example.com."}),
            ),
            svc(
                "lb",
                json!({"type": "LoadBalancer", "clusterIP": "10.96.0.21", "ports": [{"port": 80}]}),
            ),
            pod("db-0", "db", "10.244.1.7", true, json!({})),
            pod("db-1", "db", "10.244.0.9", true, json!({})),
            pod("db-2", "db", "10.244.0.3", false, json!({})),
            pod(
                "db-3",
                "db",
                "10.244.0.4",
                true,
                json!({"deletionTimestamp": "2024-01-01T00:00:00Z"}),
            ),
            pod("api-0", "api", "10.244.0.5", true, json!({})),
        ];
        Snapshot {
            resource_version: (1u64 << 32) + 5,
            objects: objects.into_iter().map(|o| (o.key(), o)).collect(),
        }
    }

    #[test]
    fn the_zone_of_a_snapshot() {
        let z = Zone::from_snapshot(&snapshot());
        assert_eq!(z.serial(), 5, "the serial wraps");
        let ips = |name: &str| {
            z.service("shop", name)
                .unwrap()
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(ips("api"), ["10.96.0.20"]);
        assert!(!z.service("shop", "api").unwrap().headless);
        // Ready, not terminating, sorted.
        assert_eq!(ips("db"), ["10.244.0.9", "10.244.1.7"]);
        assert!(z.service("shop", "db").unwrap().headless);
        assert_eq!(ips("db-all"), ["10.244.0.3", "10.244.0.9", "10.244.1.7"]);
        assert!(ips("manual").is_empty(), "no selector: no endpoints");
        assert_eq!(ips("lb"), ["10.96.0.21"]);
        // ExternalName: an alias, whatever the type asked.
        assert!(z.service("shop", "payments-db").is_none());
        let target = Name::from_ascii("db.payments.example.com.").unwrap();
        assert_eq!(z.alias("shop", "Payments-DB"), Some(&target));
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::SRV] {
            assert_eq!(
                z.resolve(&name("payments-db.shop.svc."), qtype),
                Resolution::Alias {
                    apex: Apex::Svc,
                    target: target.clone()
                }
            );
        }
        // A Service replacing it by name is no alias any more.
        let mut z2 = z.clone();
        z2.add_service("shop", "payments-db", ServiceEntry::default());
        assert!(z2.alias("shop", "payments-db").is_none());
        assert_eq!(
            z.resolve(&name("default.svc.cluster.local."), RecordType::A),
            Resolution::NoData {
                apex: Apex::ClusterDomain
            }
        );
        assert_eq!(
            z.resolve(&name("nope.svc.cluster.local."), RecordType::A),
            Resolution::NxDomain {
                apex: Apex::ClusterDomain
            }
        );
    }

    #[test]
    fn apex_names() {
        assert_eq!(Apex::ClusterDomain.name().to_ascii(), "cluster.local.");
        assert_eq!(Apex::Svc.name().to_ascii(), "svc.");
        assert!(Apex::Svc.name().is_fqdn());
    }

    #[test]
    fn shared_zone_is_replaced_whole() {
        let shared = SharedZone::new(Zone::new(1));
        let other = shared.clone();
        let before = shared.get();
        other.replace(zone());
        assert_eq!(before.serial(), 1);
        assert_eq!(shared.get().serial(), 7);
        assert!(shared.get().service("kube-system", "kube-dns").is_some());
    }
}
