use std::collections::BTreeMap;

use tollway_api::{
    CiliumIdentity, CiliumNetworkPolicy, Deployment, EndpointSlice, Kind, Namespace, NetworkPolicy,
    Node, Object, ObjectKey, Pod, Service,
};

/// Every object at one resource version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The store's resource version.
    pub resource_version: u64,
    /// Objects by key.
    pub objects: BTreeMap<ObjectKey, Object>,
}

impl Snapshot {
    /// Apply a watcher's change.
    pub fn apply(&mut self, event: &crate::file::Event) {
        match event {
            crate::file::Event::Put(o) => {
                self.objects.insert(o.key(), (**o).clone());
            }
            crate::file::Event::Delete(k) => {
                self.objects.remove(k);
            }
        }
    }

    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// Objects of a kind, optionally in one namespace, in key order. Keys
    /// sort by kind first, so this is a range scan, not a full one.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> impl Iterator<Item = &Object> {
        let ns = namespace.map(str::to_string);
        let start = ObjectKey {
            kind,
            namespace: None,
            name: String::new(),
        };
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind)
            .filter(move |(k, _)| ns.is_none() || k.namespace == ns)
            .map(|(_, o)| o)
    }

    /// All pods.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.list(Kind::Pod, None).filter_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })
    }

    /// All services.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.list(Kind::Service, None).filter_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        })
    }

    /// All EndpointSlices.
    pub fn endpoint_slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.list(Kind::EndpointSlice, None)
            .filter_map(|o| match o {
                Object::EndpointSlice(s) => Some(s),
                _ => None,
            })
    }

    /// All deployments.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.list(Kind::Deployment, None).filter_map(|o| match o {
            Object::Deployment(d) => Some(d),
            _ => None,
        })
    }

    /// All nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.list(Kind::Node, None).filter_map(|o| match o {
            Object::Node(n) => Some(n),
            _ => None,
        })
    }

    /// All Kubernetes NetworkPolicies.
    pub fn network_policies(&self) -> impl Iterator<Item = &NetworkPolicy> {
        self.list(Kind::NetworkPolicy, None)
            .filter_map(|o| match o {
                Object::NetworkPolicy(p) => Some(p),
                _ => None,
            })
    }

    /// All Cilium policies: every CiliumNetworkPolicy, then every
    /// CiliumClusterwideNetworkPolicy (tell them apart with
    /// [`CiliumNetworkPolicy::is_clusterwide`]).
    pub fn cilium_policies(&self) -> impl Iterator<Item = &CiliumNetworkPolicy> {
        self.list(Kind::CiliumNetworkPolicy, None)
            .chain(self.list(Kind::CiliumClusterwideNetworkPolicy, None))
            .filter_map(|o| match o {
                Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => {
                    Some(p)
                }
                _ => None,
            })
    }

    /// All namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.list(Kind::Namespace, None).filter_map(|o| match o {
            Object::Namespace(n) => Some(n),
            _ => None,
        })
    }

    /// All CiliumIdentities.
    pub fn cilium_identities(&self) -> impl Iterator<Item = &CiliumIdentity> {
        self.list(Kind::CiliumIdentity, None)
            .filter_map(|o| match o {
                Object::CiliumIdentity(i) => Some(i),
                _ => None,
            })
    }

    /// A namespace.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        match self
            .objects
            .get(&ObjectKey::new(Kind::Namespace, None, name))
        {
            Some(Object::Namespace(n)) => Some(n),
            _ => None,
        }
    }

    /// A pod.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        match self
            .objects
            .get(&ObjectKey::new(Kind::Pod, Some(namespace), name))
        {
            Some(Object::Pod(p)) => Some(p),
            _ => None,
        }
    }
}
