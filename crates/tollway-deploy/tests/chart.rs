//! The chart, rendered with the default values and with the seed's
//! `helm install` flags: every object is a valid Kubernetes object, and the
//! security and wiring invariants hold.

// Helpers outside the #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value as Json;

/// Scenarios whose every object is checked.
fn scenarios() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("default", vec![]),
        ("seed", SEED_SETS.to_vec()),
        (
            "everything",
            vec![
                "kubeProxyReplacement=true",
                "k8sServiceHost=10.0.0.1",
                "flows.relay.enabled=true",
                "flows.ui.enabled=true",
                "ambient.enabled=true",
                "loadBalancer.algorithm=maglev",
                "maglev.tableSize=65521",
            ],
        ),
        (
            "minimal",
            vec![
                "flows.enabled=false",
                "cni.install=false",
                "agent.appArmorProfile=",
                "agent.seLinuxOptions=null",
            ],
        ),
    ]
}

#[test]
fn every_object_is_a_valid_kubernetes_object() {
    for (name, sets) in scenarios() {
        let rendered = render(&sets);
        let docs = rendered.documents().unwrap();
        assert!(docs.len() >= 5, "{name}: only {} documents", docs.len());
        let mut seen = BTreeSet::new();
        for d in &docs {
            validate_typed(&d.value).unwrap_or_else(|e| panic!("{name}: {}: {e}", describe(d)));
            let key = d.describe();
            assert!(seen.insert(key.clone()), "{name}: {key} rendered twice");
            // Namespaced objects go to the release's namespace; cluster
            // objects carry no namespace.
            let cluster_scoped = matches!(
                d.value["kind"].as_str(),
                Some("ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition")
            );
            assert_eq!(
                d.value["metadata"]["namespace"].as_str(),
                (!cluster_scoped).then_some("kube-system"),
                "{name}: {key}"
            );
            assert_eq!(
                d.value["metadata"]["labels"]["app.kubernetes.io/part-of"], "tollway",
                "{name}: {key}"
            );
        }
        for d in rendered.crd_documents().unwrap() {
            validate_typed(&d.value).unwrap_or_else(|e| panic!("{name}: {}: {e}", describe(&d)));
        }
    }
}

#[test]
fn the_strict_check_catches_misspelled_and_mistyped_fields() {
    let docs = docs(&[]);
    let mut ds = get(&docs, "DaemonSet", "tollway").clone();
    ds["spec"]["template"]["spec"]["hostNetwrok"] = Json::Bool(true);
    let e = validate_typed(&ds).unwrap_err();
    assert!(e.contains("spec.template.spec.hostNetwrok"), "{e}");
    let mut ds = get(&docs, "DaemonSet", "tollway").clone();
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = Json::from("x");
    let e = validate_typed(&ds).unwrap_err();
    assert!(e.contains("containers[0].ports[0].containerPort"), "{e}");
    let mut cm = get(&docs, "ConfigMap", "tollway-config").clone();
    cm["data"]["flow-buffer-capacity"] = Json::from(4095);
    assert!(
        validate_typed(&cm).is_err(),
        "ConfigMap data must be strings"
    );
}

#[test]
fn the_seed_command_renders_the_objects_its_kubectl_commands_use() {
    let docs = docs(SEED_SETS);
    // kubectl -n kube-system exec ds/tollway -- tollway status --verbose
    let ds = get(&docs, "DaemonSet", "tollway");
    let agent = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(agent["name"], "tollway-agent");
    assert_eq!(strings(&agent["command"]), ["tollway"]);
    assert_eq!(
        strings(&agent["args"]),
        [
            "agent",
            "--kubernetes",
            "--node=$(K8S_NODE_NAME)",
            "--lb-algorithm=$(TOLLWAY_LB_ALGORITHM)",
            "--maglev-table-size=$(TOLLWAY_MAGLEV_TABLE_SIZE)",
            "--node-port-range=$(TOLLWAY_NODE_PORT_RANGE)",
            "--socket-lb-cgroup=/run/tollway/cgroupv2",
        ]
    );
    // kubectl -n kube-system exec deploy/tollway-relay -- tollway observe ...
    let relay = get(&docs, "Deployment", "tollway-relay");
    let rc = &relay["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&rc["command"]), ["tollway"]);
    assert_eq!(
        rc["image"], agent["image"],
        "the relay's image has the tollway CLI"
    );
    assert_eq!(env(rc)["TOLLWAY_SERVER"], "127.0.0.1:4245");
    let peers = strings(&rc["args"]);
    assert!(
        peers.contains(
            &"--peers=dns:///tollway-peer.kube-system.svc.cluster.local:4244".to_string()
        ),
        "{peers:?}"
    );
    let peer = get(&docs, "Service", "tollway-peer");
    assert_eq!(peer["spec"]["clusterIP"], "None");
    assert_eq!(
        get(&docs, "Service", "tollway-relay")["spec"]["ports"][0]["port"],
        80
    );
    // The UI on 12000, fed by the relay.
    let ui = get(&docs, "Deployment", "tollway-ui");
    let uc = &ui["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        strings(&uc["args"]),
        [
            "ui",
            "--listen=0.0.0.0:12000",
            "--server=tollway-relay.kube-system.svc.cluster.local:80"
        ]
    );
    let ui_svc = get(&docs, "Service", "tollway-ui");
    assert_eq!(ui_svc["spec"]["ports"][0]["port"], 12000);
    // The agent's settings.
    let cm = get(&docs, "ConfigMap", "tollway-config");
    assert_eq!(cm["data"]["kube-proxy-replacement"], "true");
    assert_eq!(cm["data"]["enable-flows"], "true");
    // Without the flags: no relay, no UI, no kube-proxy replacement.
    let default = common::docs(&[]);
    assert!(find(&default, "Deployment", "tollway-relay").is_none());
    assert!(find(&default, "Deployment", "tollway-ui").is_none());
    assert_eq!(
        get(&default, "ConfigMap", "tollway-config")["data"]["kube-proxy-replacement"],
        "false"
    );
}

#[test]
fn kube_proxy_replacement_points_the_agent_at_the_api_server() {
    let docs = docs(SEED_SETS);
    let ds = get(&docs, "DaemonSet", "tollway");
    let e = env(&ds["spec"]["template"]["spec"]["containers"][0]);
    assert_eq!(
        e["KUBERNETES_SERVICE_HOST"],
        "api.payments-cluster.internal"
    );
    assert_eq!(e["KUBERNETES_SERVICE_PORT"], "6443");
    assert_eq!(
        e["K8S_NODE_NAME"],
        serde_json::json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}})
    );
    // Without kube-proxy replacement the agent uses the kubernetes Service.
    let default = common::docs(&[]);
    let ds = get(&default, "DaemonSet", "tollway");
    let e = env(&ds["spec"]["template"]["spec"]["containers"][0]);
    assert!(!e.contains_key("KUBERNETES_SERVICE_HOST"), "{e:?}");
    assert!(e.contains_key("K8S_NODE_NAME"));
    // A port given as a string works too.
    let d = common::docs(&[
        "kubeProxyReplacement=true",
        "k8sServiceHost=10.1.2.3",
        "k8sServicePort=443",
    ]);
    let e = env(&get(&d, "DaemonSet", "tollway")["spec"]["template"]["spec"]["containers"][0]);
    assert_eq!(e["KUBERNETES_SERVICE_HOST"], "10.1.2.3");
    assert_eq!(e["KUBERNETES_SERVICE_PORT"], "443");
}

const AGENT_CAPS: &[&str] = &["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE"];

#[test]
fn no_privileged_container_and_only_the_listed_capabilities() {
    for (name, sets) in scenarios() {
        let docs = docs(&sets);
        for (workload, spec) in pod_specs(&docs) {
            for key in ["hostPID", "hostIPC"] {
                assert!(spec.get(key).is_none(), "{name}: {workload}: {key}");
            }
            assert_eq!(
                spec["hostNetwork"] == true,
                workload == "DaemonSet tollway",
                "{name}: {workload}: only the agent is on the host network"
            );
            for c in containers(spec) {
                let who = format!("{name}: {workload}/{}", c["name"]);
                let sc = &c["securityContext"];
                assert!(sc.is_object(), "{who}: no securityContext");
                assert_ne!(sc["privileged"], true, "{who}: privileged");
                assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{who}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{who}");
                let mut add = strings(&sc["capabilities"]["add"]);
                add.sort();
                if c["name"] == "tollway-agent" {
                    assert_eq!(add, AGENT_CAPS, "{who}");
                    // The API refuses allowPrivilegeEscalation=false with
                    // SYS_ADMIN: it must be left unset.
                    assert!(sc.get("allowPrivilegeEscalation").is_none(), "{who}");
                } else {
                    assert!(add.is_empty(), "{who}: adds {add:?}");
                    assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
                }
                if c["name"] == "tollway-relay" || c["name"] == "tollway-ui" {
                    assert_eq!(sc["runAsNonRoot"], true, "{who}");
                }
            }
        }
    }
}

#[test]
fn the_agent_mounts_bpffs_cgroup2_and_the_cni_directories() {
    let docs = docs(SEED_SETS);
    let ds = get(&docs, "DaemonSet", "tollway");
    let spec = &ds["spec"]["template"]["spec"];
    let volumes: BTreeMap<String, &Json> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect();
    let host = |n: &str| volumes[n]["hostPath"]["path"].as_str().unwrap().to_string();
    assert_eq!(host("bpf-maps"), "/sys/fs/bpf");
    assert_eq!(host("cgroup"), "/sys/fs/cgroup");
    assert_eq!(host("cni-path"), "/opt/cni/bin");
    assert_eq!(host("etc-cni-netd"), "/etc/cni/net.d");
    assert_eq!(host("tollway-run"), "/var/run/tollway");
    let agent = &spec["containers"][0];
    let mount = |c: &Json, vol: &str| -> Json {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == vol)
            .cloned()
            .unwrap_or_else(|| panic!("{} does not mount {vol}", c["name"]))
    };
    assert_eq!(mount(agent, "bpf-maps")["mountPath"], "/sys/fs/bpf");
    // Bidirectional propagation would need a privileged container.
    assert_eq!(
        mount(agent, "bpf-maps")["mountPropagation"],
        "HostToContainer"
    );
    let cg = mount(agent, "cgroup");
    let args = strings(&agent["args"]);
    assert!(
        args.contains(&format!(
            "--socket-lb-cgroup={}",
            cg["mountPath"].as_str().unwrap()
        )),
        "{args:?}"
    );
    // The init container installs the plugin and its configuration.
    let init = &spec["initContainers"][0];
    assert_eq!(init["name"], "install-cni");
    let args = strings(&init["args"]);
    // `tollway cni ...` is the CNI plugin itself (crates/tollway/src/main.rs).
    assert_eq!(args[0], "install-cni");
    assert!(
        args.contains(&"--conf=/etc/tollway/cni/05-tollway.conflist".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--bin-dir=/host/opt/cni/bin".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--conf-dir=/host/etc/cni/net.d".to_string()),
        "{args:?}"
    );
    assert_eq!(mount(init, "cni-path")["mountPath"], "/host/opt/cni/bin");
    assert_eq!(
        mount(init, "etc-cni-netd")["mountPath"],
        "/host/etc/cni/net.d"
    );
    assert_eq!(mount(init, "cni-config")["mountPath"], "/etc/tollway/cni");
    // The configuration it writes is a valid CNI conflist for tollway-cni.
    let cni = get(&docs, "ConfigMap", "tollway-cni-config");
    let conf: Json =
        serde_json::from_str(cni["data"]["05-tollway.conflist"].as_str().unwrap()).unwrap();
    assert_eq!(conf["name"], "tollway");
    assert_eq!(conf["plugins"].as_array().unwrap().len(), 1);
    // What the runtime hands the plugin (the list's name and version, the
    // plugin's keys) plus the podCIDR the installer adds: tollway-cni's
    // own parser accepts it.
    let mut plugin = conf["plugins"][0].clone();
    plugin["name"] = conf["name"].clone();
    plugin["cniVersion"] = conf["cniVersion"].clone();
    plugin["podCIDR"] = Json::from("10.244.1.0/24");
    let parsed = tollway_cni::config::NetConf::parse(plugin.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("tollway-cni refuses the chart's configuration: {e}"));
    assert_eq!(parsed.plugin_type, "tollway-cni");
    assert_eq!(parsed.mtu, 1500);
    // The plugin's agent directory is the one the agent mounts.
    let run = volumes["tollway-run"]["hostPath"]["path"].as_str().unwrap();
    assert_eq!(parsed.agent_dir.to_str().unwrap(), run);
    assert!(parsed.agent_socket.unwrap().starts_with(run));
    assert_eq!(mount(agent, "tollway-run")["mountPath"], run);
    // The installer reads the node's podCIDR: it knows its node, and the
    // API server's address when the agent replaces kube-proxy.
    let ie = env(init);
    assert!(ie.contains_key("K8S_NODE_NAME"), "{ie:?}");
    assert_eq!(
        ie["KUBERNETES_SERVICE_HOST"],
        "api.payments-cluster.internal"
    );
    assert!(
        args.contains(&"--node=$(K8S_NODE_NAME)".to_string()),
        "{args:?}"
    );
}

#[test]
fn every_volume_is_mounted_and_every_mount_has_a_volume() {
    for (name, sets) in scenarios() {
        let docs = docs(&sets);
        for (workload, spec) in pod_specs(&docs) {
            let volumes: BTreeSet<String> = spec["volumes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let mut mounted = BTreeSet::new();
            for c in containers(spec) {
                for m in c["volumeMounts"].as_array().into_iter().flatten() {
                    let v = m["name"].as_str().unwrap().to_string();
                    assert!(
                        volumes.contains(&v),
                        "{name}: {workload}/{}: mounts unknown volume {v}",
                        c["name"]
                    );
                    mounted.insert(v);
                }
            }
            assert_eq!(volumes, mounted, "{name}: {workload}: unmounted volumes");
            for v in spec["volumes"].as_array().into_iter().flatten() {
                if let Some(cm) = v["configMap"]["name"].as_str() {
                    assert!(
                        find(&docs, "ConfigMap", cm).is_some(),
                        "{name}: {workload}: volume of missing ConfigMap {cm}"
                    );
                }
            }
        }
    }
}

#[test]
fn ports_are_named_and_probes_and_services_use_them() {
    for (name, sets) in scenarios() {
        let docs = docs(&sets);
        let mut pods: Vec<(BTreeMap<String, String>, BTreeSet<String>)> = Vec::new();
        for (workload, spec) in pod_specs(&docs) {
            let mut names = BTreeSet::new();
            for c in containers(spec) {
                for p in c["ports"].as_array().into_iter().flatten() {
                    let n = p["name"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: {workload}: unnamed port {p}"));
                    assert!(
                        n.len() <= 15 && !n.is_empty(),
                        "{name}: {workload}: port name {n}"
                    );
                    assert!(
                        names.insert(n.to_string()),
                        "{name}: {workload}: port name {n} twice"
                    );
                    assert!(
                        p["protocol"].is_string(),
                        "{name}: {workload}: {n} has no protocol"
                    );
                }
            }
            for c in containers(spec) {
                for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                    let pr = &c[probe];
                    if pr.is_null() {
                        continue;
                    }
                    let port = pr["httpGet"]["port"]
                        .as_str()
                        .or(pr["tcpSocket"]["port"].as_str());
                    let port = port.unwrap_or_else(|| {
                        panic!("{name}: {workload}: {probe} by number, not by name")
                    });
                    assert!(
                        names.contains(port),
                        "{name}: {workload}: {probe} uses unknown port {port}"
                    );
                }
            }
            if c_is_main(spec) {
                let c = &spec["containers"][0];
                assert!(
                    c["livenessProbe"].is_object() && c["readinessProbe"].is_object(),
                    "{name}: {workload}: probes"
                );
            }
            let labels = spec_labels(&docs, &workload);
            pods.push((labels, names));
        }
        for svc in docs.iter().filter(|d| d["kind"] == "Service") {
            let sname = svc["metadata"]["name"].as_str().unwrap();
            let selector: BTreeMap<String, String> = svc["spec"]["selector"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let targets: Vec<&(BTreeMap<String, String>, BTreeSet<String>)> = pods
                .iter()
                .filter(|(labels, _)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
                .collect();
            assert!(
                !targets.is_empty(),
                "{name}: Service {sname} selects no workload"
            );
            for p in svc["spec"]["ports"].as_array().unwrap() {
                let pn = p["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: Service {sname}: unnamed port"));
                let t = p["targetPort"].as_str().unwrap_or_else(|| {
                    panic!("{name}: Service {sname}/{pn}: targetPort by number")
                });
                assert!(
                    targets.iter().all(|(_, names)| names.contains(t)),
                    "{name}: Service {sname}/{pn}: no container port {t}"
                );
            }
        }
    }
}

fn c_is_main(spec: &Json) -> bool {
    spec["containers"].as_array().is_some_and(|a| !a.is_empty())
}

fn spec_labels(docs: &[Json], workload: &str) -> BTreeMap<String, String> {
    let (kind, name) = workload.split_once(' ').unwrap();
    let w = get(docs, kind, name);
    let labels: BTreeMap<String, String> = w["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    // The workload's selector selects its own pods.
    for (k, v) in w["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            labels.get(k).map(String::as_str),
            v.as_str(),
            "{workload}: selector {k}"
        );
    }
    labels
}

#[test]
fn metrics_port_9965_is_announced_to_prometheus() {
    let docs = docs(SEED_SETS);
    let ds = get(&docs, "DaemonSet", "tollway");
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9965");
    let agent = &ds["spec"]["template"]["spec"]["containers"][0];
    let port = agent["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "flows-metrics")
        .unwrap();
    assert_eq!(port["containerPort"], 9965);
    assert_eq!(
        get(&docs, "ConfigMap", "tollway-config")["data"]["flows-metrics-port"],
        "9965"
    );
    let svc = get(&docs, "Service", "tollway-flows-metrics");
    assert_eq!(svc["metadata"]["annotations"]["prometheus.io/port"], "9965");
    // With flows off: no annotations, no flow ports, no flow events.
    let off = common::docs(&["flows.enabled=false"]);
    let ds = get(&off, "DaemonSet", "tollway");
    assert!(ds["spec"]["template"]["metadata"]["annotations"].is_null());
    let agent = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        agent["ports"].as_array().unwrap().len(),
        1,
        "only the health port"
    );
    assert_eq!(env(agent)["TOLLWAY_NO_FLOW_EVENTS"], "true");
    assert!(find(&off, "Service", "tollway-peer").is_none());
    assert_eq!(
        get(&off, "ConfigMap", "tollway-config")["data"]["flows-metrics-port"],
        "0"
    );
}

#[test]
fn every_config_key_the_agent_reads_exists() {
    for (name, sets) in scenarios() {
        let docs = docs(&sets);
        for (workload, spec) in pod_specs(&docs) {
            for c in containers(spec) {
                for (var, v) in env(c) {
                    if let Some(r) = v.get("configMapKeyRef") {
                        let cm = get(&docs, "ConfigMap", r["name"].as_str().unwrap());
                        let key = r["key"].as_str().unwrap();
                        assert!(
                            cm["data"][key].is_string(),
                            "{name}: {workload}: {var} reads missing key {key}"
                        );
                    }
                }
            }
        }
    }
    // Kubernetes expands $(VAR) in args only for variables the container
    // defines (anything else stays literal): every one must be defined.
    for (name, sets) in scenarios() {
        let docs = docs(&sets);
        for (workload, spec) in pod_specs(&docs) {
            for c in containers(spec) {
                let defined = env(c);
                for a in strings(&c["args"]) {
                    let mut rest = a.as_str();
                    while let Some(start) = rest.find("$(") {
                        let end = rest[start..].find(')').unwrap() + start;
                        let var = &rest[start + 2..end];
                        assert!(
                            defined.contains_key(var),
                            "{name}: {workload}/{}: {a} uses undefined {var}",
                            c["name"]
                        );
                        rest = &rest[end..];
                    }
                }
            }
        }
    }
    // In env values, $(VAR) expands only for variables defined earlier in
    // the list.
    for (name, sets) in scenarios() {
        let docs = docs(&sets);
        for (workload, spec) in pod_specs(&docs) {
            for c in containers(spec) {
                let mut earlier = BTreeSet::new();
                for e in c["env"].as_array().into_iter().flatten() {
                    let var = e["name"].as_str().unwrap();
                    if let Some(v) = e["value"].as_str() {
                        let mut rest = v;
                        while let Some(start) = rest.find("$(") {
                            let end = rest[start..].find(')').unwrap() + start;
                            let used = &rest[start + 2..end];
                            assert!(
                                earlier.contains(used),
                                "{name}: {workload}/{}: {var}={v} uses {used}, not defined before it",
                                c["name"]
                            );
                            rest = &rest[end..];
                        }
                    }
                    earlier.insert(var.to_string());
                }
            }
        }
    }
    // The agent's container lets the inspect commands find the agent.
    let defaults = docs(&[] as &[&str]);
    let agent =
        &get(&defaults, "DaemonSet", "tollway")["spec"]["template"]["spec"]["containers"][0];
    let e = env(agent);
    assert_eq!(e["TOLLWAY_LAB"], "$(TOLLWAY_CLUSTER_NAME)");
    assert_eq!(e["TOLLWAY_NODE"], "$(K8S_NODE_NAME)");
    let state = e["TOLLWAY_STATE_DIR"].as_str().unwrap();
    let mounts: Vec<&str> = agent["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(
        mounts.iter().any(|m| state.starts_with(m)),
        "the state directory {state} is on a mount (the root filesystem is read-only): {mounts:?}"
    );
    let off = common::docs(&["socketLB.enabled=false", "agent.uplink=ens5"]);
    let args = strings(
        &get(&off, "DaemonSet", "tollway")["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    assert!(
        args.contains(&"--no-socket-lb".to_string()) && args.contains(&"--uplink=ens5".to_string()),
        "{args:?}"
    );
    // The settings reach the agent under the names its flags read.
    let docs = docs(&[
        "loadBalancer.algorithm=maglev",
        "maglev.tableSize=4093",
        "bpf.monitorAggregation=low",
    ]);
    let cm = &get(&docs, "ConfigMap", "tollway-config")["data"];
    assert_eq!(cm["bpf-lb-algorithm"], "maglev");
    assert_eq!(cm["bpf-lb-maglev-table-size"], "4093");
    assert_eq!(cm["monitor-aggregation"], "low");
    let agent = &get(&docs, "DaemonSet", "tollway")["spec"]["template"]["spec"]["containers"][0];
    let e = env(agent);
    for (var, key) in [
        ("TOLLWAY_MONITOR_AGGREGATION", "monitor-aggregation"),
        ("TOLLWAY_FLOW_BUFFER", "flow-buffer-capacity"),
        ("TOLLWAY_METRICS_PORT", "flows-metrics-port"),
        ("TOLLWAY_LB_ALGORITHM", "bpf-lb-algorithm"),
        ("TOLLWAY_MAGLEV_TABLE_SIZE", "bpf-lb-maglev-table-size"),
        ("TOLLWAY_NODE_PORT_RANGE", "node-port-range"),
        ("TOLLWAY_CLUSTER_NAME", "cluster-name"),
    ] {
        assert_eq!(e[var]["configMapKeyRef"]["key"], key, "{var}");
    }
}

/// (apiGroup, resource) → verbs, as designed: reads of what the datapath is
/// computed from, writes only of the identities the agents allocate.
fn designed_rbac(ambient: bool) -> BTreeMap<(String, String), BTreeSet<String>> {
    let read = ["get", "list", "watch"];
    let mut m = BTreeMap::new();
    let mut add = |group: &str, resources: &[&str], verbs: &[&str]| {
        for r in resources {
            m.insert(
                (group.to_string(), r.to_string()),
                verbs.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>(),
            );
        }
    };
    add(
        "",
        &["pods", "services", "namespaces", "serviceaccounts", "nodes"],
        &read,
    );
    add("discovery.k8s.io", &["endpointslices"], &read);
    add("networking.k8s.io", &["networkpolicies"], &read);
    add(
        "cilium.io",
        &["ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"],
        &read,
    );
    add(
        "tollway.io",
        &["tollwayidentities"],
        // create: allocation; patch: the garbage collector's mark (set
        // and removed); delete: the sweep. No update.
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    if ambient {
        add(
            "security.istio.io",
            &["authorizationpolicies", "peerauthentications"],
            &read,
        );
        add(
            "gateway.networking.k8s.io",
            &["gateways", "httproutes", "grpcroutes"],
            &read,
        );
    }
    m
}

#[test]
fn rbac_is_least_privilege() {
    for (sets, ambient) in [
        (SEED_SETS.to_vec(), false),
        (vec!["ambient.enabled=true"], true),
    ] {
        let docs = docs(&sets);
        let role = get(&docs, "ClusterRole", "tollway");
        let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for rule in role["rules"].as_array().unwrap() {
            assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
            for g in strings(&rule["apiGroups"]) {
                for r in strings(&rule["resources"]) {
                    assert!(g != "*" && r != "*", "wildcard in {rule}");
                    let verbs = got.entry((g.clone(), r)).or_default();
                    for v in strings(&rule["verbs"]) {
                        assert_ne!(v, "*", "wildcard verb in {rule}");
                        verbs.insert(v);
                    }
                }
            }
        }
        assert_eq!(got, designed_rbac(ambient));
        let binding = get(&docs, "ClusterRoleBinding", "tollway");
        assert_eq!(binding["roleRef"]["name"], "tollway");
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "tollway", "namespace": "kube-system"}])
        );
        // Only the agent has a role; the relay and the UI get no token.
        assert_eq!(
            docs.iter().filter(|d| d["kind"] == "ClusterRole").count(),
            1
        );
        assert!(!docs.iter().any(|d| d["kind"] == "Role"));
        for (workload, spec) in pod_specs(&docs) {
            let sa = spec["serviceAccountName"].as_str().unwrap();
            assert!(
                find(&docs, "ServiceAccount", sa).is_some(),
                "{workload}: {sa}"
            );
            let token = spec["automountServiceAccountToken"] == true;
            assert_eq!(
                token,
                workload == "DaemonSet tollway",
                "{workload}: token mounted"
            );
        }
    }
}

#[test]
fn hubble_names_are_aliases_of_flows() {
    let flows = docs(SEED_SETS);
    let hubble = common::docs(&[
        "kubeProxyReplacement=true",
        "k8sServiceHost=api.payments-cluster.internal",
        "k8sServicePort=6443",
        "hubble.enabled=true",
        "hubble.relay.enabled=true",
        "hubble.ui.enabled=true",
    ]);
    assert_eq!(flows, hubble);
    // A hubble.* value that is given wins over flows.*.
    let off = common::docs(&["hubble.enabled=false"]);
    assert_eq!(
        get(&off, "ConfigMap", "tollway-config")["data"]["enable-flows"],
        "false"
    );
    let relay = common::docs(&["hubble.relay.enabled=true"]);
    assert!(find(&relay, "Deployment", "tollway-relay").is_some());
}

#[test]
fn load_balancer_and_ambient_settings() {
    let docs = docs(&[
        "loadBalancer.algorithm=maglev",
        "maglev.tableSize=65521",
        "socketLB.enabled=false",
        "ambient.enabled=true",
    ]);
    let cm = &get(&docs, "ConfigMap", "tollway-config")["data"];
    assert_eq!(cm["bpf-lb-algorithm"], "maglev");
    assert_eq!(cm["bpf-lb-maglev-table-size"], "65521");
    assert_eq!(cm["bpf-lb-sock"], "false");
    assert_eq!(cm["enable-ambient"], "true");
    let agent = &get(&docs, "DaemonSet", "tollway")["spec"]["template"]["spec"]["containers"][0];
    let ports: Vec<i64> = agent["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert!(
        ports.contains(&15008) && ports.contains(&15020),
        "{ports:?}"
    );
}

#[test]
fn bad_settings_are_refused_at_install_time() {
    for (sets, want) in [
        (
            vec!["kubeProxyReplacement=strict"],
            "kubeProxyReplacement must be true or false",
        ),
        (
            vec!["kubeProxyReplacement=true"],
            "kubeProxyReplacement=true needs k8sServiceHost",
        ),
        (
            vec!["loadBalancer.algorithm=roundrobin"],
            "loadBalancer.algorithm must be random or maglev",
        ),
        (
            vec!["maglev.tableSize=1000"],
            "maglev.tableSize must be one of",
        ),
        (
            vec!["bpf.monitorAggregation=all"],
            "bpf.monitorAggregation must be",
        ),
        (vec!["flows.ui.enabled=true"], "needs flows.relay.enabled"),
        (
            vec!["flows.enabled=false", "flows.relay.enabled=true"],
            "needs flows.enabled",
        ),
        (
            vec!["routingMode=tunnel"],
            "routingMode \"tunnel\" is not supported yet",
        ),
    ] {
        let e = try_render(&sets)
            .err()
            .unwrap_or_else(|| panic!("{sets:?} rendered"));
        assert!(e.to_string().contains(want), "{sets:?}: {e}");
    }
    // Accepted spellings.
    render(&["kubeProxyReplacement=false"]);
    let docs = common::docs(&["kubeProxyReplacement=true", "k8sServiceHost=h"]);
    assert_eq!(
        get(&docs, "ConfigMap", "tollway-config")["data"]["kube-proxy-replacement"],
        "true"
    );
}

#[test]
fn set_string_values_render_the_same() {
    let chart = chart();
    let typed = chart
        .render(
            &tollway_deploy::RenderOptions::new("tollway", "kube-system")
                .with_set(SEED_SETS.iter().copied()),
        )
        .unwrap()
        .documents()
        .unwrap();
    let mut opts = tollway_deploy::RenderOptions::new("tollway", "kube-system");
    opts.set_string = SEED_SETS.iter().map(|s| s.to_string()).collect();
    let strings = chart.render(&opts).unwrap().documents().unwrap();
    let a: Vec<&Json> = typed.iter().map(|d| &d.value).collect();
    let b: Vec<&Json> = strings.iter().map(|d| &d.value).collect();
    assert_eq!(a, b);
}

#[test]
fn notes_show_the_seed_commands() {
    let notes = render(SEED_SETS).notes.unwrap();
    assert!(notes.contains("kubectl -n kube-system exec ds/tollway -- tollway status --verbose | grep KubeProxyReplacement"), "{notes}");
    assert!(notes.contains("kubectl -n kube-system exec deploy/tollway-relay -- tollway observe --namespace payments --protocol http"), "{notes}");
    assert!(
        notes.contains("port-forward svc/tollway-ui 12000"),
        "{notes}"
    );
    let plain = render(&[]).notes.unwrap();
    assert!(!plain.contains("tollway-relay"), "{plain}");
}
