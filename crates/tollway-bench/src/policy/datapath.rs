//! Part 2 of `tollway bench policy`: TCP_CRR and TCP_RR latency to a
//! server pod with and without a 100-rule ingress policy, in a lab of its
//! own, the two states alternating round by round.
//!
//! The policy ([`policy_manifest`]) selects the server pod; 99 rules
//! allow addresses of 198.18.0.0/24 (one /32 each, its own port each) and
//! one allows the client pod's labels on the server's port. The CIDR
//! peers are what makes the rules real entries: every /32 gets a CIDR
//! identity and the server's trie an entry for it, whereas rules naming
//! labels no pod has compile to nothing. Under the policy the server's
//! ingress is default-deny and its trie holds 99 + 1 entries (plus the
//! egress allow-all); without it, the trie holds the two allow-all
//! entries: the datapath does the same two lookups per new connection in
//! both states, in a 101-entry trie or a 2-entry one.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::Mode;
use crate::error::BenchError;
use crate::harness::{
    Acc, Lab, NAMESPACE, NODES, SERVER_NODE, SERVER_POD, SERVER_PORT, SOCK_POD, drops, head,
    run_client, wait_for,
};
use crate::policy::report::{DatapathPart, StateMeasure, Switch};
use crate::progress::Progress;
use crate::stats::ratio;

/// The policy's name.
pub const POLICY_NAME: &str = "bench-100-rules";
/// Ingress rules of the policy.
pub const POLICY_RULES: usize = 100;
/// A pod on the client's node that the policy does not allow.
const INTRUDER_POD: &str = "intruder";
/// Where the client and the intruder run.
const CLIENT_NODE: &str = "node-1";

/// What to run.
#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// The `tollway` binary.
    pub tollway: PathBuf,
    /// Time per state and mode, split over the rounds.
    pub duration: Duration,
    /// Rounds (the states alternate).
    pub rounds: usize,
    /// Warm-up of each client run.
    pub warmup: Duration,
    /// Pin the client and the server to this CPU.
    pub cpu: Option<usize>,
    /// The lab's name.
    pub lab: String,
}

/// The CiliumNetworkPolicy of state (b): `rules` ingress rules selecting
/// the server, the last one allowing the client (`app: bench-client`) on
/// the server's port.
pub fn policy_manifest(rules: usize) -> Value {
    let mut ingress: Vec<Value> = (1..rules)
        .map(|k| {
            json!({
                "fromCIDR": [format!("198.18.{}.{}/32", k / 256, k % 256)],
                "toPorts": [{"ports": [{"port": (9000 + k).to_string(), "protocol": "TCP"}]}]
            })
        })
        .collect();
    ingress.push(json!({
        "fromEndpoints": [{"matchLabels": {"app": "bench-client"}}],
        "toPorts": [{"ports": [{"port": SERVER_PORT.to_string(), "protocol": "TCP"}]}]
    }));
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": POLICY_NAME, "namespace": NAMESPACE},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": "bench-server"}},
            "ingress": ingress
        }
    })
}

/// The normalized rules `manifest` translates to.
pub fn policy_rule_count(manifest: &Value) -> Result<usize, BenchError> {
    let p: tollway_api::CiliumNetworkPolicy = serde_json::from_value(manifest.clone())
        .map_err(|e| BenchError::Synthetic(format!("the benchmark's policy: {e}")))?;
    Ok(tollway_policy::cilium_policy_rules(&p)?.len())
}

/// The server (as in `bench service-lb`), the client (labelled, so that
/// the policy can allow it) and a pod the policy does not allow.
fn pods_yaml(cpu: Option<usize>) -> String {
    let pin = cpu.map_or(String::new(), |c| format!(", --cpu, \"{c}\""));
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {SERVER_POD}
  namespace: {NAMESPACE}
  labels: {{app: bench-server}}
spec:
  nodeName: {SERVER_NODE}
  containers:
  - name: server
    command: [tollway, bench, server, --port, "{SERVER_PORT}"{pin}]
    ports: [{{name: http, containerPort: {SERVER_PORT}}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: {SOCK_POD}
  namespace: {NAMESPACE}
  labels: {{app: bench-client}}
spec:
  nodeName: {CLIENT_NODE}
  containers: [{{name: client, command: [sleep, "86400"]}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: {INTRUDER_POD}
  namespace: {NAMESPACE}
  labels: {{app: bench-intruder}}
spec:
  nodeName: {CLIENT_NODE}
  containers: [{{name: client, command: [sleep, "86400"]}}]
"#
    )
}

struct Run<'a> {
    opts: &'a DatapathOptions,
    lab: &'a Lab,
    progress: &'a Progress,
    manifest: Vec<u8>,
    base_rules: usize,
    policy_rules: usize,
    server: SocketAddrV4,
}

impl Run<'_> {
    fn store_version(&self) -> Result<u64, BenchError> {
        let path = self.lab.paths.store_dir().join("version");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| BenchError::io("reading", path.display().to_string(), e))?;
        text.split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| BenchError::Lab(format!("{}: no version in {text:?}", path.display())))
    }

    /// Both agents have synced store version `version` and report `rules`
    /// policy rules.
    fn wait_agents(&self, version: u64, rules: usize) -> Result<(), BenchError> {
        let result = wait_for(
            &format!("both agents to report {rules} policy rules at version {version}"),
            Duration::from_secs(60),
            Duration::from_millis(2),
            || {
                Ok(NODES
                    .iter()
                    .all(|n| {
                        self.lab.agent(n).is_some_and(|s| {
                            s.sync.resource_version >= version
                                && s.policy.resource_version >= version
                                && s.policy.rules == rules
                        })
                    })
                    .then_some(()))
            },
        );
        if let Err(BenchError::Timeout { .. }) = &result {
            let errors: Vec<String> = NODES
                .iter()
                .filter_map(|n| self.lab.agent(n))
                .flat_map(|s| s.policy.errors)
                .collect();
            if !errors.is_empty() {
                return Err(BenchError::Lab(format!(
                    "the agents did not install the policy: {}",
                    errors.join("; ")
                )));
            }
        }
        result
    }

    /// Apply or delete the policy and wait until both agents have it.
    fn switch(&self, with_policy: bool) -> Result<Switch, BenchError> {
        let action = if with_policy { "apply" } else { "delete" };
        self.progress
            .step(format!("{action} {NAMESPACE}/{POLICY_NAME}"));
        let t0 = Instant::now();
        self.lab.tw(
            &[action, "-f", "-"],
            Some(self.manifest.clone()),
            Duration::from_secs(60),
        )?;
        let version = self.store_version()?;
        let rules = self.base_rules + if with_policy { self.policy_rules } else { 0 };
        self.wait_agents(version, rules)?;
        Ok(Switch {
            action: action.into(),
            ms: (t0.elapsed().as_secs_f64() * 1e5).round() / 100.0,
        })
    }

    /// Entries of the server's installed trie.
    fn server_entries(&self) -> Result<usize, BenchError> {
        let pod = format!("{NAMESPACE}/{SERVER_POD}");
        let args = ["bpf", "policy", "get", pod.as_str(), "-o", "json"];
        let v = self.lab.json(&args)?;
        v.as_array()
            .map(Vec::len)
            .ok_or_else(|| BenchError::Output {
                command: Lab::what(&args),
                reason: "not a list of entries".into(),
                output: head(&v.to_string(), 300),
            })
    }

    fn client(
        &self,
        pod: &str,
        mode: Mode,
        secs: f64,
        warmup: Duration,
    ) -> Result<crate::client::ClientReport, BenchError> {
        run_client(
            self.lab,
            self.opts.cpu,
            pod,
            self.server,
            mode,
            secs,
            warmup,
        )
    }

    /// Whether one short CRR run from `pod` gets through.
    fn reaches(&self, pod: &str) -> Result<bool, BenchError> {
        let r = self.client(pod, Mode::Crr, 0.1, Duration::ZERO)?;
        Ok(r.ops > 0 && r.errors == 0)
    }
}

fn setup(
    opts: &DatapathOptions,
    lab: &mut Lab,
    progress: &Progress,
) -> Result<Ipv4Addr, BenchError> {
    progress.step(format!("bringing up lab {} (2 nodes)", lab.name));
    lab.bring_up(2)?;
    progress.step("starting the server (node-2), client and intruder pods (node-1)");
    lab.start_pods(pods_yaml(opts.cpu), NAMESPACE)?;
    let pod = lab.json(&["get", "pod", SERVER_POD, "-n", NAMESPACE, "-o", "json"])?;
    pod["status"]["podIP"]
        .as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| BenchError::Output {
            command: format!("tollway get pod {SERVER_POD}"),
            reason: "no status.podIP".into(),
            output: head(&pod.to_string(), 300),
        })
}

/// Run the datapath part in `lab` (brought up here; the caller takes it
/// down).
pub(crate) fn run(
    opts: &DatapathOptions,
    lab: &mut Lab,
    progress: &Progress,
) -> Result<DatapathPart, BenchError> {
    let manifest = policy_manifest(POLICY_RULES);
    let policy_rules = policy_rule_count(&manifest)?;
    let ip = setup(opts, lab, progress)?;
    let server = SocketAddrV4::new(ip, SERVER_PORT);
    let lab: &Lab = lab;
    let mut run = Run {
        opts,
        lab,
        progress,
        manifest: serde_json::to_vec(&manifest)?,
        base_rules: 0,
        policy_rules,
        server,
    };
    progress.step(format!("waiting for the server on {server}"));
    wait_for(
        "the benchmark server to answer",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || Ok(run.reaches(SOCK_POD).unwrap_or(false).then_some(())),
    )?;
    progress.step("warming up (2 s of CRR, not recorded)");
    run.client(SOCK_POD, Mode::Crr, 2.0, Duration::ZERO)?;
    progress.step("waiting for both agents");
    let version = run.store_version()?;
    let base = wait_for(
        "both agents to catch up",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let st: Vec<_> = NODES.iter().filter_map(|n| run.lab.agent(n)).collect();
            Ok((st.len() == NODES.len()
                && st.iter().all(|s| {
                    s.sync.resource_version >= version && s.policy.resource_version >= version
                }))
            .then(|| st.iter().map(|s| s.policy.rules).max().unwrap_or(0)))
        },
    )?;
    run.base_rules = base;
    let mut unrelated_before = run.reaches(INTRUDER_POD)?;
    let mut unrelated_dropped = None;

    let mut states = [
        StateMeasure {
            state: "no policy".into(),
            ..Default::default()
        },
        StateMeasure {
            state: format!("{POLICY_RULES}-rule policy"),
            ..Default::default()
        },
    ];
    states[0].server_trie_entries.push(run.server_entries()?);
    let mut accs: [[Acc; 2]; 2] = Default::default();
    let mut switches = Vec::new();
    let rounds = opts.rounds;
    let secs = opts.duration.as_secs_f64() / rounds as f64;
    let mut current = 0usize;
    for round in 0..rounds {
        // a b | b a | a b ...: each state first every other round.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for state in order {
            if state != current {
                switches.push(run.switch(state == 1)?);
                current = state;
                let entries = run.server_entries()?;
                if state == 1 && entries < POLICY_RULES {
                    return Err(BenchError::Lab(format!(
                        "the server's trie has {entries} entries under the policy, expected at least {POLICY_RULES}"
                    )));
                }
                states[state].server_trie_entries.push(entries);
                if !run.reaches(SOCK_POD)? {
                    return Err(BenchError::Lab(format!(
                        "the client cannot reach {server} with {}",
                        states[state].state
                    )));
                }
                if state == 1 && unrelated_dropped.is_none() {
                    progress.step("checking that an unrelated pod is refused (2 s timeout)");
                    unrelated_dropped = Some(unrelated_before && !run.reaches(INTRUDER_POD)?);
                }
                if state == 0 && !unrelated_before {
                    unrelated_before = run.reaches(INTRUDER_POD)?;
                }
            }
            for (mi, mode) in [Mode::Crr, Mode::Rr].into_iter().enumerate() {
                progress.step(format!(
                    "{}: {} round {}/{rounds} -> {server}",
                    states[state].state,
                    mode.as_str().to_uppercase(),
                    round + 1
                ));
                let r = run.client(SOCK_POD, mode, secs, opts.warmup)?;
                accs[state][mi].add(&r);
            }
        }
    }
    // Leave the lab as it started.
    if current == 1 {
        switches.push(run.switch(false)?);
    }
    for (s, a) in states.iter_mut().zip(&accs) {
        s.crr = a[0].measure();
        s.rr = a[1].measure();
    }
    let p = |s: &StateMeasure, crr: bool, q99: bool| {
        let m = if crr { &s.crr } else { &s.rr };
        Some(if q99 {
            m.latency.p99_us
        } else {
            m.latency.p50_us
        })
    };
    let (a, b) = (&states[0], &states[1]);
    let part = DatapathPart {
        lab: opts.lab.clone(),
        target: server.to_string(),
        policy: format!("{NAMESPACE}/{POLICY_NAME}"),
        policy_ingress_rules: POLICY_RULES,
        policy_rules,
        crr_p50_ratio: ratio(p(b, true, false), p(a, true, false)),
        crr_p99_ratio: ratio(p(b, true, true), p(a, true, true)),
        rr_p50_ratio: ratio(p(b, false, false), p(a, false, false)),
        rr_p99_ratio: ratio(p(b, false, true), p(a, false, true)),
        unrelated_pod_dropped: unrelated_dropped,
        switches,
        datapath_drops: drops(&run.lab.paths),
        states: states.to_vec(),
    };
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_has_the_asked_rules() {
        let m = policy_manifest(POLICY_RULES);
        let ingress = m["spec"]["ingress"].as_array().expect("ingress");
        assert_eq!(ingress.len(), POLICY_RULES);
        let last = &ingress[POLICY_RULES - 1];
        assert_eq!(
            last["fromEndpoints"][0]["matchLabels"]["app"],
            "bench-client"
        );
        assert_eq!(last["toPorts"][0]["ports"][0]["port"], "8000");
        // Distinct CIDRs and ports for the others.
        let cidrs: std::collections::BTreeSet<String> = ingress[..POLICY_RULES - 1]
            .iter()
            .map(|r| r["fromCIDR"][0].as_str().expect("cidr").to_string())
            .collect();
        assert_eq!(cidrs.len(), POLICY_RULES - 1);
        assert!(cidrs.contains("198.18.0.1/32"));
        // Default deny plus one rule per ingress item.
        assert_eq!(policy_rule_count(&m).expect("rules"), POLICY_RULES + 1);
        assert!(pods_yaml(Some(1)).contains("labels: {app: bench-client}"));
        assert!(pods_yaml(None).contains("labels: {app: bench-intruder}"));
    }

    #[test]
    fn the_policy_compiles_to_one_entry_per_rule_for_the_server() {
        use tollway_policy::{CidrIdentities, ClusterObjects, cluster_policy, compile};
        let m = policy_manifest(POLICY_RULES);
        let cnp: tollway_api::CiliumNetworkPolicy = serde_json::from_value(m).expect("cnp");
        let ns: tollway_api::Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}
        }))
        .expect("ns");
        let pod = |name: &str, app: &str, ip: &str, node: &str| -> tollway_api::Pod {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE, "uid": name,
                             "labels": {"app": app}},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                "status": {"podIP": ip}
            }))
            .expect("pod")
        };
        let pods = [
            pod("server", "bench-server", "10.244.2.5", "node-2"),
            pod("client-sock", "bench-client", "10.244.1.5", "node-1"),
            pod("intruder", "bench-intruder", "10.244.1.6", "node-1"),
        ];
        let sets = tollway_policy::wanted_label_sets([&ns], &pods);
        let mut alloc = tollway_policy::IdentityAllocator::new();
        let ids: Vec<tollway_api::CiliumIdentity> = sets
            .iter()
            .map(|s| tollway_api::CiliumIdentity {
                api_version: "cilium.io/v2".into(),
                kind: "CiliumIdentity".into(),
                metadata: tollway_api::ObjectMeta {
                    name: alloc.allocate(s).expect("id").to_string(),
                    ..Default::default()
                },
                security_labels: tollway_policy::security_labels_map(s),
            })
            .collect();
        let objects = ClusterObjects {
            namespaces: vec![&ns],
            pods: pods.iter().collect(),
            identities: ids.iter().collect(),
            cilium_policies: vec![&cnp],
            ..Default::default()
        };
        let cp = cluster_policy(&objects, "node-2", &mut CidrIdentities::new());
        let server = cp.pods["server"].identity;
        let compiled = compile(&cp.rules, &cp.ctx, &[server].into()).expect("compile");
        let p = &compiled[&server];
        assert!(p.ingress_default_deny);
        assert_eq!(p.entries.len(), POLICY_RULES);
        let trie = tollway_agent::policy::trie_entries(p);
        assert_eq!(trie.len(), POLICY_RULES + 1, "plus the egress allow-all");
    }
}
