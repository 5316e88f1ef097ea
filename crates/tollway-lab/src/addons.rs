//! What every lab runs from the start, as a cluster's add-ons: the DNS server,
//! `kube-system/kube-dns` (a Deployment running `tollway workload dns` for the lab, and its
//! Service on the service CIDR's `.10`, 10.96.0.10 by default).
//!
//! `lab up` creates whichever of them is missing and leaves existing ones alone, so a
//! user's changes (scale, delete) hold until the next `lab up`.

use std::net::Ipv4Addr;

use tollway_state::{FileStore, StateSource, WriteError, registry};

use crate::config::LabConfig;
use crate::error::Result;
use crate::paths::state_root;

/// The add-ons' namespace.
pub const NAMESPACE: &str = "kube-system";

/// The DNS Deployment's and Service's name.
pub const KUBE_DNS: &str = "kube-dns";

/// The DNS Service's address: the service CIDR's `.10`, as kubeadm picks it (the
/// registry's dynamic allocation starts above it).
pub fn kube_dns_ip(cfg: &LabConfig) -> Ipv4Addr {
    let net = u32::from(cfg.cluster.service_cidr.network());
    Ipv4Addr::from(net.saturating_add(10))
}

/// The cluster's DNS domain (kubelet's `--cluster-domain`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The `/etc/resolv.conf` kubelet gives a pod of `namespace` with
/// `dnsPolicy: ClusterFirst` (the default): the cluster DNS first, with
/// the namespace's, the cluster's services' and the cluster's search
/// domains and `ndots:5`, so that `web`, `web.shop` and
/// `web.shop.svc.cluster.local` all resolve. Only cluster names resolve:
/// the lab's DNS does not forward.
pub fn pod_resolv_conf(namespace: &str, dns: Ipv4Addr) -> String {
    format!(
        "search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\nnameserver {dns}\noptions ndots:5\n"
    )
}

/// Whether a pod's `dnsPolicy` asks for the cluster's DNS (unset and
/// `ClusterFirst`, and `ClusterFirstWithHostNet`); `Default` and `None`
/// keep the node's resolver configuration.
pub fn uses_cluster_dns(dns_policy: Option<&str>) -> bool {
    matches!(
        dns_policy,
        None | Some("ClusterFirst") | Some("ClusterFirstWithHostNet")
    )
}

/// The DNS add-on's manifests (a Deployment, then its Service).
pub fn kube_dns_manifest(lab: &str, ip: Ipv4Addr) -> String {
    // A lab under another state root: the DNS pod must read the same store.
    let env = match std::env::var("TOLLWAY_STATE_DIR") {
        Ok(dir) if !dir.is_empty() => format!(
            "\n        env:\n        - {{name: TOLLWAY_STATE_DIR, value: {}}}",
            serde_json::Value::String(state_root().display().to_string())
        ),
        _ => String::new(),
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {KUBE_DNS}
  namespace: {NAMESPACE}
  labels: {{k8s-app: {KUBE_DNS}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{k8s-app: {KUBE_DNS}}}
  template:
    metadata:
      labels: {{k8s-app: {KUBE_DNS}}}
    spec:
      containers:
      - name: dns
        command: [tollway, workload, dns, --lab, "{lab}"]{env}
        ports:
        - {{name: dns, containerPort: 53, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
---
apiVersion: v1
kind: Service
metadata:
  name: {KUBE_DNS}
  namespace: {NAMESPACE}
  labels: {{k8s-app: {KUBE_DNS}}}
spec:
  clusterIP: {ip}
  selector: {{k8s-app: {KUBE_DNS}}}
  ports:
  - {{name: dns, port: 53, targetPort: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 53, targetPort: 53, protocol: TCP}}
"#
    )
}

/// Create the DNS Deployment and Service if they are missing (through the registry's
/// rules, like `tollway apply`).
pub fn ensure(store: &FileStore, cfg: &LabConfig) -> Result<()> {
    let snap = store.snapshot()?;
    let docs = tollway_api::parse_documents(
        "<lab add-ons>",
        &kube_dns_manifest(&cfg.name, kube_dns_ip(cfg)),
    )
    .map_err(|e| WriteError::Invalid(vec![e]))?;
    let missing: Vec<_> = tollway_api::decode_all(&docs)
        .map_err(WriteError::Invalid)?
        .into_iter()
        .filter(|d| snap.get(&d.object.key()).is_none())
        .collect();
    if !missing.is_empty() {
        registry::apply(store, missing, &cfg.cluster)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tollway_api::{Kind, Object, ObjectKey};

    use super::*;

    #[test]
    fn kube_dns_is_created_once_at_10() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        registry::bootstrap(&store).unwrap();
        let cfg = LabConfig::plan("t", 2).unwrap();
        assert_eq!(kube_dns_ip(&cfg), Ipv4Addr::new(10, 96, 0, 10));
        ensure(&store, &cfg).unwrap();
        let snap = store.snapshot().unwrap();
        let dep_key = ObjectKey::new(Kind::Deployment, Some(NAMESPACE), KUBE_DNS);
        let svc_key = ObjectKey::new(Kind::Service, Some(NAMESPACE), KUBE_DNS);
        let Some(Object::Service(svc)) = snap.get(&svc_key) else {
            panic!("no service")
        };
        assert_eq!(svc.spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        let ports: Vec<_> = svc
            .spec
            .ports
            .iter()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port, p.protocol()))
            .collect();
        assert_eq!(
            ports,
            [
                ("dns".into(), 53, tollway_api::Protocol::Udp),
                ("dns-tcp".into(), 53, tollway_api::Protocol::Tcp)
            ]
        );
        let Some(Object::Deployment(dep)) = snap.get(&dep_key) else {
            panic!("no deployment")
        };
        assert_eq!(dep.replicas(), 1);
        let c = &dep.spec.template.spec.containers[0];
        assert_eq!(c.command, ["tollway", "workload", "dns", "--lab", "t"]);
        assert_eq!(
            dep.spec
                .template
                .metadata
                .labels
                .get("k8s-app")
                .map(String::as_str),
            Some("kube-dns")
        );

        // Again: nothing changes; a user's change stays.
        let v = store.version().unwrap();
        ensure(&store, &cfg).unwrap();
        assert_eq!(store.version().unwrap(), v);
        registry::delete(
            &store,
            std::slice::from_ref(&dep_key),
            tollway_state::DeleteOptions::default(),
        )
        .unwrap();
        ensure(&store, &cfg).unwrap();
        assert!(store.snapshot().unwrap().get(&dep_key).is_some());
    }
}
