//! Numeric security identities: the reserved ones, endpoint identities
//! ([`IdentityAllocator`]) and CIDR identities ([`CidrIdentities`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::abi::{
    TW_ID_CIDR_FIRST, TW_ID_CLUSTER_FIRST, TW_ID_HEALTH, TW_ID_HOST, TW_ID_INIT,
    TW_ID_KUBE_APISERVER, TW_ID_REMOTE_NODE, TW_ID_UNMANAGED, TW_ID_WORLD,
};
use crate::labels::{Label, LabelSet, SOURCE_CIDR};

/// The reserved identities and their `reserved:` label names (Cilium's
/// numbers).
const RESERVED: &[(u32, &str)] = &[
    (TW_ID_HOST, "host"),
    (TW_ID_WORLD, "world"),
    (TW_ID_UNMANAGED, "unmanaged"),
    (TW_ID_HEALTH, "health"),
    (TW_ID_INIT, "init"),
    (TW_ID_REMOTE_NODE, "remote-node"),
    (TW_ID_KUBE_APISERVER, "kube-apiserver"),
];

/// The labels of a reserved identity (`reserved:host` for 1, ...); the
/// empty set for any other number.
pub fn reserved_labels(id: u32) -> LabelSet {
    RESERVED
        .iter()
        .filter(|(n, _)| *n == id)
        .map(|(_, name)| Label::reserved(name))
        .collect()
}

/// Every reserved identity with its labels, to put into
/// [`PolicyContext::identities`](crate::PolicyContext::identities) so that
/// selectors naming `reserved:` labels can match them.
pub fn reserved_identities() -> BTreeMap<u32, LabelSet> {
    RESERVED
        .iter()
        .map(|(id, _)| (*id, reserved_labels(*id)))
        .collect()
}

/// The lowest number in `first..=last` that `used` does not contain.
fn lowest_free<V>(used: &BTreeMap<u32, V>, first: u32, last: u32) -> Option<u32> {
    let mut candidate = first;
    for &id in used.range(first..=last).map(|(id, _)| id) {
        if id != candidate {
            break;
        }
        candidate = candidate.checked_add(1)?;
    }
    (candidate <= last).then_some(candidate)
}

/// The last endpoint identity (the one before the CIDR range).
const CLUSTER_LAST: u32 = TW_ID_CIDR_FIRST - 1;

/// Deterministic, stable allocation of endpoint identities
/// (`TW_ID_CLUSTER_FIRST..TW_ID_CIDR_FIRST`) for label sets.
///
/// The same set always keeps its number; a new set gets the lowest free
/// number. Nodes agree because the agent persists the table in the cluster
/// store and rebuilds the allocator with [`IdentityAllocator::from_existing`].
/// Serializes as the table (`{"256": ["k8s:app=web", ...], ...}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<u32, LabelSet>", into = "BTreeMap<u32, LabelSet>")]
pub struct IdentityAllocator {
    by_id: BTreeMap<u32, LabelSet>,
    by_labels: BTreeMap<LabelSet, u32>,
}

impl IdentityAllocator {
    /// An empty allocator.
    pub fn new() -> IdentityAllocator {
        IdentityAllocator::default()
    }

    /// An allocator holding existing assignments. Fails if a number is
    /// outside the endpoint range or two numbers have the same labels.
    pub fn from_existing(table: BTreeMap<u32, LabelSet>) -> Result<IdentityAllocator, PolicyError> {
        let mut by_labels = BTreeMap::new();
        for (&id, labels) in &table {
            if !(TW_ID_CLUSTER_FIRST..=CLUSTER_LAST).contains(&id) {
                return Err(PolicyError::IdentityOutOfRange {
                    identity: id,
                    first: TW_ID_CLUSTER_FIRST,
                    last: CLUSTER_LAST,
                });
            }
            if let Some(first) = by_labels.insert(labels.clone(), id) {
                return Err(PolicyError::DuplicateIdentity {
                    first,
                    second: id,
                    labels: labels.to_string(),
                });
            }
        }
        Ok(IdentityAllocator {
            by_id: table,
            by_labels,
        })
    }

    /// The identity of `labels`: the existing one, or the lowest free number
    /// ≥ `TW_ID_CLUSTER_FIRST`.
    pub fn allocate(&mut self, labels: &LabelSet) -> Result<u32, PolicyError> {
        if let Some(&id) = self.by_labels.get(labels) {
            return Ok(id);
        }
        let id = lowest_free(&self.by_id, TW_ID_CLUSTER_FIRST, CLUSTER_LAST).ok_or(
            PolicyError::IdentitiesExhausted {
                first: TW_ID_CLUSTER_FIRST,
                last: CLUSTER_LAST,
            },
        )?;
        self.by_id.insert(id, labels.clone());
        self.by_labels.insert(labels.clone(), id);
        Ok(id)
    }

    /// Releases every identity whose labels are not in `in_use`; returns the
    /// released numbers (ascending). Their numbers become free for reuse.
    pub fn release_unused(&mut self, in_use: &BTreeSet<LabelSet>) -> Vec<u32> {
        let released: Vec<u32> = self
            .by_id
            .iter()
            .filter(|(_, l)| !in_use.contains(*l))
            .map(|(id, _)| *id)
            .collect();
        for id in &released {
            if let Some(labels) = self.by_id.remove(id) {
                self.by_labels.remove(&labels);
            }
        }
        released
    }

    /// The identity of `labels`, if allocated.
    pub fn get(&self, labels: &LabelSet) -> Option<u32> {
        self.by_labels.get(labels).copied()
    }

    /// The labels of identity `id`, if allocated.
    pub fn labels(&self, id: u32) -> Option<&LabelSet> {
        self.by_id.get(&id)
    }

    /// The table: identity → labels.
    pub fn table(&self) -> &BTreeMap<u32, LabelSet> {
        &self.by_id
    }
}

impl TryFrom<BTreeMap<u32, LabelSet>> for IdentityAllocator {
    type Error = PolicyError;

    fn try_from(table: BTreeMap<u32, LabelSet>) -> Result<IdentityAllocator, PolicyError> {
        IdentityAllocator::from_existing(table)
    }
}

impl From<IdentityAllocator> for BTreeMap<u32, LabelSet> {
    fn from(a: IdentityAllocator) -> BTreeMap<u32, LabelSet> {
        a.by_id
    }
}

/// The labels of a CIDR identity, like Cilium's `GetCIDRLabels`:
/// `cidr:<prefix>` for the CIDR and for every shorter enclosing prefix down
/// to `cidr:0.0.0.0/0`, plus `reserved:world` (a CIDR identity is outside
/// the cluster). A selector for a wider CIDR thus matches the identity of
/// every CIDR inside it.
pub fn cidr_labels(cidr: Ipv4Net) -> LabelSet {
    let cidr = cidr.trunc();
    let mut set: LabelSet = (0..=cidr.prefix_len())
        .filter_map(|len| Ipv4Net::new(cidr.addr(), len).ok())
        .map(|n| Label::new(SOURCE_CIDR, &n.trunc().to_string(), ""))
        .collect();
    set.insert(Label::reserved("world"));
    set
}

/// The CIDR a CIDR identity stands for: its most specific `cidr:` label.
/// `None` if the labels have no (valid IPv4) `cidr:` label.
pub fn identity_cidr(labels: &LabelSet) -> Option<Ipv4Net> {
    labels
        .iter()
        .filter(|l| l.source == SOURCE_CIDR)
        .filter_map(|l| l.key.parse::<Ipv4Net>().ok())
        .max_by_key(|n| n.prefix_len())
}

/// Allocation of CIDR identities (≥ `TW_ID_CIDR_FIRST`) for the CIDRs that
/// policies mention (see [`policy_cidrs`](crate::policy_cidrs)).
///
/// CIDR identities are local to a node (Cilium's local scope); allocation is
/// deterministic (lowest free number) and stable while a CIDR stays in use.
/// The agent puts each CIDR into `tw_ipcache4` with its identity; addresses
/// inside a more specific known prefix (a pod /32, a narrower policy CIDR)
/// resolve to that prefix instead, which is what makes the `except` lists
/// and nested CIDRs of policies work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<u32, Ipv4Net>", into = "BTreeMap<u32, Ipv4Net>")]
pub struct CidrIdentities {
    by_id: BTreeMap<u32, Ipv4Net>,
    by_cidr: BTreeMap<Ipv4Net, u32>,
}

impl CidrIdentities {
    /// No CIDR identities.
    pub fn new() -> CidrIdentities {
        CidrIdentities::default()
    }

    /// CIDR identities from existing assignments (CIDRs are truncated to
    /// their network). Fails on numbers below `TW_ID_CIDR_FIRST` or a CIDR
    /// with two numbers.
    pub fn from_existing(table: BTreeMap<u32, Ipv4Net>) -> Result<CidrIdentities, PolicyError> {
        let mut out = CidrIdentities::new();
        for (id, cidr) in table {
            if id < TW_ID_CIDR_FIRST {
                return Err(PolicyError::IdentityOutOfRange {
                    identity: id,
                    first: TW_ID_CIDR_FIRST,
                    last: u32::MAX,
                });
            }
            let cidr = cidr.trunc();
            if let Some(first) = out.by_cidr.insert(cidr, id) {
                return Err(PolicyError::DuplicateIdentity {
                    first,
                    second: id,
                    labels: cidr_labels(cidr).to_string(),
                });
            }
            out.by_id.insert(id, cidr);
        }
        Ok(out)
    }

    /// The identity of `cidr` (truncated to its network): the existing one
    /// or the lowest free number ≥ `TW_ID_CIDR_FIRST`.
    pub fn allocate(&mut self, cidr: Ipv4Net) -> Result<u32, PolicyError> {
        let cidr = cidr.trunc();
        if let Some(&id) = self.by_cidr.get(&cidr) {
            return Ok(id);
        }
        let id = lowest_free(&self.by_id, TW_ID_CIDR_FIRST, u32::MAX).ok_or(
            PolicyError::IdentitiesExhausted {
                first: TW_ID_CIDR_FIRST,
                last: u32::MAX,
            },
        )?;
        self.by_id.insert(id, cidr);
        self.by_cidr.insert(cidr, id);
        Ok(id)
    }

    /// Releases the identities of CIDRs not in `in_use`; returns their
    /// numbers (ascending).
    pub fn release_unused(&mut self, in_use: &BTreeSet<Ipv4Net>) -> Vec<u32> {
        let in_use: BTreeSet<Ipv4Net> = in_use.iter().map(Ipv4Net::trunc).collect();
        let released: Vec<u32> = self
            .by_id
            .iter()
            .filter(|(_, c)| !in_use.contains(*c))
            .map(|(id, _)| *id)
            .collect();
        for id in &released {
            if let Some(cidr) = self.by_id.remove(id) {
                self.by_cidr.remove(&cidr);
            }
        }
        released
    }

    /// The identity of `cidr`, if allocated.
    pub fn get(&self, cidr: Ipv4Net) -> Option<u32> {
        self.by_cidr.get(&cidr.trunc()).copied()
    }

    /// The CIDR of identity `id`, if allocated.
    pub fn cidr(&self, id: u32) -> Option<Ipv4Net> {
        self.by_id.get(&id).copied()
    }

    /// The table: identity → CIDR.
    pub fn table(&self) -> &BTreeMap<u32, Ipv4Net> {
        &self.by_id
    }

    /// Every CIDR identity with its [labels](cidr_labels), to put into
    /// [`PolicyContext::identities`](crate::PolicyContext::identities).
    pub fn identities(&self) -> BTreeMap<u32, LabelSet> {
        self.by_id
            .iter()
            .map(|(id, cidr)| (*id, cidr_labels(*cidr)))
            .collect()
    }

    /// The identity `tw_ipcache4` resolves `addr` to among these CIDRs (the
    /// longest matching prefix), ignoring pods and nodes.
    pub fn resolve(&self, addr: Ipv4Addr) -> Option<u32> {
        self.by_cidr
            .iter()
            .filter(|(c, _)| c.contains(&addr))
            .max_by_key(|(c, _)| c.prefix_len())
            .map(|(_, id)| *id)
    }
}

impl TryFrom<BTreeMap<u32, Ipv4Net>> for CidrIdentities {
    type Error = PolicyError;

    fn try_from(table: BTreeMap<u32, Ipv4Net>) -> Result<CidrIdentities, PolicyError> {
        CidrIdentities::from_existing(table)
    }
}

impl From<CidrIdentities> for BTreeMap<u32, Ipv4Net> {
    fn from(c: CidrIdentities) -> BTreeMap<u32, Ipv4Net> {
        c.by_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> LabelSet {
        s.parse().unwrap()
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn reserved() {
        assert_eq!(reserved_labels(TW_ID_HOST).to_string(), "reserved:host");
        assert_eq!(reserved_labels(2).to_string(), "reserved:world");
        assert_eq!(reserved_labels(6).to_string(), "reserved:remote-node");
        assert_eq!(reserved_labels(7).to_string(), "reserved:kube-apiserver");
        assert!(reserved_labels(0).is_empty());
        assert!(reserved_labels(256).is_empty());
        assert_eq!(
            reserved_identities().keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6, 7]
        );
    }

    #[test]
    fn allocation_is_stable_and_lowest_free() {
        let mut a = IdentityAllocator::new();
        let web = set("k8s:app=web");
        let db = set("k8s:app=db");
        let api = set("k8s:app=api");
        assert_eq!(a.allocate(&web).unwrap(), 256);
        assert_eq!(a.allocate(&db).unwrap(), 257);
        assert_eq!(a.allocate(&web).unwrap(), 256);
        assert_eq!(a.allocate(&api).unwrap(), 258);
        // Release db: 257 is free again and goes to the next new set.
        let released = a.release_unused(&[web.clone(), api.clone()].into());
        assert_eq!(released, vec![257]);
        assert_eq!(a.get(&db), None);
        assert_eq!(a.labels(256), Some(&web));
        let other = set("k8s:app=other");
        assert_eq!(a.allocate(&other).unwrap(), 257);
        assert_eq!(a.allocate(&db).unwrap(), 259);
        assert_eq!(a.allocate(&api).unwrap(), 258);
    }

    #[test]
    fn from_existing_and_serde() {
        let table: BTreeMap<u32, LabelSet> =
            [(256, set("k8s:app=web")), (300, set("k8s:app=db"))].into();
        let mut a = IdentityAllocator::from_existing(table.clone()).unwrap();
        assert_eq!(a.allocate(&set("k8s:app=db")).unwrap(), 300);
        assert_eq!(a.allocate(&set("k8s:app=x")).unwrap(), 257);
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.starts_with(r#"{"256":["k8s:app=web"]"#), "{json}");
        let back: IdentityAllocator = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);

        let dup: BTreeMap<u32, LabelSet> =
            [(256, set("k8s:app=web")), (257, set("k8s:app=web"))].into();
        assert!(matches!(
            IdentityAllocator::from_existing(dup),
            Err(PolicyError::DuplicateIdentity {
                first: 256,
                second: 257,
                ..
            })
        ));
        let low: BTreeMap<u32, LabelSet> = [(7, set("k8s:app=web"))].into();
        assert!(matches!(
            IdentityAllocator::from_existing(low),
            Err(PolicyError::IdentityOutOfRange { identity: 7, .. })
        ));
        assert!(serde_json::from_str::<IdentityAllocator>(r#"{"5":[]}"#).is_err());
    }

    #[test]
    fn cidr_labels_include_enclosing_prefixes() {
        let l = cidr_labels(net("10.1.2.0/24"));
        assert_eq!(l.len(), 26);
        for s in ["cidr:10.1.2.0/24", "cidr:10.0.0.0/8", "cidr:0.0.0.0/0"] {
            assert!(l.contains(&s.parse().unwrap()), "{s}");
        }
        assert!(l.contains(&Label::reserved("world")));
        assert!(!l.contains(&"cidr:10.1.3.0/24".parse().unwrap()));
        assert_eq!(identity_cidr(&l), Some(net("10.1.2.0/24")));
        // Host bits are dropped.
        assert_eq!(cidr_labels(net("10.1.2.3/24")), l);
        assert_eq!(identity_cidr(&set("k8s:app=web")), None);
    }

    #[test]
    fn cidr_identities() {
        let mut c = CidrIdentities::new();
        assert_eq!(c.allocate(net("10.0.0.0/8")).unwrap(), TW_ID_CIDR_FIRST);
        assert_eq!(
            c.allocate(net("10.1.0.0/16")).unwrap(),
            TW_ID_CIDR_FIRST + 1
        );
        assert_eq!(c.allocate(net("10.9.9.9/8")).unwrap(), TW_ID_CIDR_FIRST);
        assert_eq!(
            c.resolve("10.1.2.3".parse().unwrap()),
            Some(TW_ID_CIDR_FIRST + 1)
        );
        assert_eq!(
            c.resolve("10.2.2.3".parse().unwrap()),
            Some(TW_ID_CIDR_FIRST)
        );
        assert_eq!(c.resolve("11.2.2.3".parse().unwrap()), None);
        assert_eq!(
            c.release_unused(&[net("10.1.0.0/16")].into()),
            vec![TW_ID_CIDR_FIRST]
        );
        assert_eq!(c.allocate(net("192.168.0.0/16")).unwrap(), TW_ID_CIDR_FIRST);
        let ids = c.identities();
        assert_eq!(
            identity_cidr(&ids[&TW_ID_CIDR_FIRST]),
            Some(net("192.168.0.0/16"))
        );
        let json = serde_json::to_string(&c).unwrap();
        let back: CidrIdentities = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!(CidrIdentities::from_existing([(300, net("10.0.0.0/8"))].into()).is_err());
    }
}
