//! Network policy commands, in Cilium's shapes: `tollway policy get`,
//! `policy validate`, `policy trace`, `endpoint list`, `identity list`,
//! `bpf ipcache list`, `bpf policy get`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tollway_agent::inspect_policy as ip;
use tollway_api::{Object, decode_all};
use tollway_datapath::lb::PolicyMaps;
use tollway_lab::LabPaths;
use tollway_policy::{
    CidrIdentities, Direction, Flow, Rule, TW_ID_WORLD, Verdict, evaluate, translate_all,
};
use tollway_state::{Snapshot, StateSource as _};

use super::datapath::{NodeArg, json_flag, resolve};
use super::resources::{fail_with, parse_all, read_inputs};

/// The lab's objects, or (no such lab: the command runs in a Kubernetes
/// agent's container) the cluster's, listed once from the API server
/// with the container's service account (or $KUBECONFIG).
fn snapshot(lab: &str) -> Result<Snapshot> {
    if tollway_lab::LabConfig::load(&tollway_lab::LabPaths::new(lab))?.is_none() {
        let listed = tollway_kube::list_snapshot(
            tollway_kube::ClientSpec::Infer,
            &tollway_kube::KindRegistry::standard(),
        )
        .with_context(|| {
            format!("no lab {lab}: reading the Kubernetes cluster's objects instead")
        })?;
        for r in &listed.rejected {
            tracing::warn!(object = %r, "refused; not shown");
        }
        return Ok(listed.snapshot);
    }
    let (_, store) = tollway_lab::lab::open_store(lab)?;
    Ok(store.snapshot()?)
}

fn open_policy_maps(paths: &LabPaths, node: &str) -> Result<PolicyMaps> {
    PolicyMaps::open(&paths.bpf_node_dir(node)).with_context(|| {
        format!("node {node}: the policy maps are not there (is the agent running? see `tollway lab status`)")
    })
}

fn rules_of(snap: &Snapshot) -> (Vec<Rule>, Vec<String>) {
    let t = translate_all(snap.network_policies(), snap.cilium_policies());
    let errors = t.errors.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    (t.rules, errors)
}

/// `tollway policy`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Every rule the cluster's policies translate into, with its id and
    /// origin (the ids `bpf policy get` shows).
    Get {
        /// Output: json.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Check policy manifests (NetworkPolicy, CiliumNetworkPolicy,
    /// CiliumClusterwideNetworkPolicy) without applying them.
    Validate {
        /// Manifest file, directory, or - for stdin (repeatable).
        files: Vec<String>,
    },
    /// Whether a new connection from one pod to another would be allowed,
    /// by the egress policy of the source and the ingress policy of the
    /// destination (after service translation: use the backend's port).
    Trace {
        /// Source pod, `namespace/name`.
        #[arg(long = "src-k8s-pod")]
        src: String,
        /// Destination pod, `namespace/name`.
        #[arg(long = "dst-k8s-pod")]
        dst: String,
        /// Destination port.
        #[arg(long)]
        dport: u16,
        /// tcp or udp.
        #[arg(long, default_value = "tcp")]
        protocol: String,
    },
}

/// Run `tollway policy ...`.
pub fn policy(lab: &str, args: PolicyArgs) -> Result<ExitCode> {
    match args.command {
        PolicyCommand::Get { output } => {
            let snap = snapshot(lab)?;
            let (rules, errors) = rules_of(&snap);
            if json_flag(&output)? {
                println!("{}", serde_json::to_string_pretty(&rules)?);
            } else {
                println!(
                    "{:<6}{:<9}{:<7}{:<10}ORIGIN",
                    "ID", "DIR", "ACTION", "DEFAULT"
                );
                for r in &rules {
                    println!(
                        "{:<6}{:<9}{:<7}{:<10}{}",
                        r.id,
                        r.direction.to_string(),
                        format!("{:?}", r.action).to_lowercase(),
                        if r.default_deny { "deny" } else { "-" },
                        r.origin
                    );
                }
                println!("Revision: {}", snap.resource_version);
            }
            for e in &errors {
                eprintln!("warning: not enforced: {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Validate { files } => validate(&files),
        PolicyCommand::Trace {
            src,
            dst,
            dport,
            protocol,
        } => trace(lab, &src, &dst, dport, &protocol),
    }
}

fn validate(files: &[String]) -> Result<ExitCode> {
    if files.is_empty() {
        bail!("give at least one file, directory or -");
    }
    let inputs = read_inputs(files, true)?;
    let docs = match parse_all(&inputs) {
        Ok(d) => d,
        Err(errors) => return fail_with(errors, "the policies are not valid"),
    };
    let decoded = match decode_all(&docs) {
        Ok(d) => d,
        Err(errors) => {
            return fail_with(
                errors.iter().map(ToString::to_string).collect(),
                "the policies are not valid",
            );
        }
    };
    let mut nps = Vec::new();
    let mut cnps = Vec::new();
    for d in &decoded {
        for w in &d.warnings {
            eprintln!("Warning: {w}");
        }
        match &d.object {
            Object::NetworkPolicy(np) => nps.push(np),
            Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => {
                cnps.push(p)
            }
            other => eprintln!(
                "Skipping {} {}: not a policy",
                other.kind(),
                other.meta().name
            ),
        }
    }
    let t = translate_all(nps.iter().copied(), cnps.iter().copied());
    if !t.errors.is_empty() {
        return fail_with(
            t.errors.iter().map(|(n, e)| format!("{n}: {e}")).collect(),
            "the policies are not valid",
        );
    }
    println!(
        "All policies are valid: {} polic{} -> {} rules",
        nps.len() + cnps.len(),
        if nps.len() + cnps.len() == 1 {
            "y"
        } else {
            "ies"
        },
        t.rules.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn trace(lab: &str, src: &str, dst: &str, dport: u16, protocol: &str) -> Result<ExitCode> {
    let proto = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        p => bail!("unknown protocol {p:?} (tcp, udp)"),
    };
    let snap = snapshot(lab)?;
    let find = |what: &str, s: &str| -> Result<(String, Option<String>)> {
        let (ns, name) = s
            .split_once('/')
            .with_context(|| format!("{what} {s:?}: give namespace/name"))?;
        let pod = snap
            .pod(ns, name)
            .with_context(|| format!("{what}: pod {ns}/{name} not found"))?;
        Ok((
            pod.metadata.uid.clone().unwrap_or_default(),
            pod.spec.node_name.clone(),
        ))
    };
    let (src_uid, _) = find("source", src)?;
    let (dst_uid, dst_node) = find("destination", dst)?;
    let cp = tollway_agent::policy::cluster_policy(
        &snap,
        dst_node.as_deref().unwrap_or(""),
        &mut CidrIdentities::new(),
    );
    let id = |uid: &str| cp.pods.get(uid).map_or(TW_ID_WORLD, |p| p.identity);
    let (s, d) = (id(&src_uid), id(&dst_uid));
    let label_text = |i: u32| {
        cp.ctx
            .identities
            .get(&i)
            .map_or_else(|| "reserved:unknown".to_string(), ToString::to_string)
    };
    println!("Source:      {src} (identity {s}: {})", label_text(s));
    println!("Destination: {dst} (identity {d}: {})", label_text(d));
    println!("Port:        {dport}/{}", protocol.to_ascii_uppercase());
    let out = evaluate(
        &cp.rules,
        &cp.ctx,
        s,
        Flow {
            peer: d,
            direction: Direction::Egress,
            proto,
            port: dport,
        },
    );
    let inn = evaluate(
        &cp.rules,
        &cp.ctx,
        d,
        Flow {
            peer: s,
            direction: Direction::Ingress,
            proto,
            port: dport,
        },
    );
    let show = |v: Verdict| match v {
        Verdict::Allow => "ALLOWED",
        Verdict::Deny => "DENIED (by a deny rule)",
        Verdict::Denied => "DENIED (default deny: no rule allows it)",
    };
    println!("Egress of the source:       {}", show(out));
    println!("Ingress of the destination: {}", show(inn));
    let allowed = out == Verdict::Allow && inn == Verdict::Allow;
    println!(
        "Final verdict: {}",
        if allowed { "ALLOWED" } else { "DENIED" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `tollway endpoint`.
#[derive(Args, Debug)]
pub struct EndpointArgs {
    #[command(subcommand)]
    command: NodeList,
}

/// `tollway identity`.
#[derive(Args, Debug)]
pub struct IdentityArgs {
    #[command(subcommand)]
    command: NodeList,
}

#[derive(Subcommand, Debug)]
enum NodeList {
    /// List them.
    List {
        #[command(flatten)]
        node: NodeArg,
        /// Output: json.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
}

/// `tollway endpoint list`.
pub fn endpoint(lab: &str, args: EndpointArgs) -> Result<ExitCode> {
    let NodeList::List { node, output } = args.command;
    let (_, paths, node) = resolve(lab, &node)?;
    let maps = open_policy_maps(&paths, &node)?;
    let snap = snapshot(lab)?;
    let labels = ip::identity_labels(&snap, &ip::ipcache_list(&maps)?);
    let rows = ip::endpoint_list(&maps, &snap, &labels)?;
    if json_flag(&output)? {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", ip::render_endpoint_list(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tollway identity list`.
pub fn identity(lab: &str, args: IdentityArgs) -> Result<ExitCode> {
    let NodeList::List { node, output } = args.command;
    let (_, paths, node) = resolve(lab, &node)?;
    let snap = snapshot(lab)?;
    // The node's CIDR identities come from its ipcache; without maps the
    // cluster's identities are still shown.
    let ipcache = match PolicyMaps::open(&paths.bpf_node_dir(&node)) {
        Ok(m) => ip::ipcache_list(&m)?,
        Err(_) => Vec::new(),
    };
    let rows = ip::identity_list(&ip::identity_labels(&snap, &ipcache));
    if json_flag(&output)? {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", ip::render_identity_list(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tollway bpf ipcache list`.
pub fn bpf_ipcache(lab: &str, node: &NodeArg, output: &Option<String>) -> Result<ExitCode> {
    let (_, paths, node) = resolve(lab, node)?;
    let rows = ip::ipcache_list(&open_policy_maps(&paths, &node)?)?;
    if json_flag(output)? {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", ip::render_ipcache_list(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tollway bpf policy get ENDPOINT` (an endpoint id, or a pod as
/// `namespace/name`, or a pod name with `-n`).
pub fn bpf_policy_get(
    lab: &str,
    endpoint: &str,
    namespace: Option<&str>,
    node: &NodeArg,
    output: &Option<String>,
) -> Result<ExitCode> {
    let snap = snapshot(lab)?;
    // A pod: its node and address find the endpoint.
    let pod = match (endpoint.parse::<u32>(), endpoint.split_once('/'), namespace) {
        (Ok(_), _, _) => None,
        (_, Some((ns, name)), _) => Some((ns.to_string(), name.to_string())),
        (_, None, ns) => Some((ns.unwrap_or("default").to_string(), endpoint.to_string())),
    };
    let (node_arg, pod_ip) = match &pod {
        Some((ns, name)) => {
            let p = snap
                .pod(ns, name)
                .with_context(|| format!("pod {ns}/{name} not found"))?;
            let node = p
                .spec
                .node_name
                .clone()
                .with_context(|| format!("pod {ns}/{name} is not scheduled yet"))?;
            let ip = p
                .pod_ip()
                .with_context(|| format!("pod {ns}/{name} has no address yet"))?
                .to_string();
            (NodeArg { node: Some(node) }, Some(ip))
        }
        None => (node.clone(), None),
    };
    let (_, paths, node) = resolve(lab, &node_arg)?;
    let maps = open_policy_maps(&paths, &node)?;
    let ipcache = ip::ipcache_list(&maps)?;
    let labels = ip::identity_labels(&snap, &ipcache);
    let endpoint_id = match pod_ip {
        Some(want) => ip::endpoint_list(&maps, &snap, &labels)?
            .into_iter()
            .find(|e| e.ipv4 == want)
            .map(|e| e.endpoint_id)
            .with_context(|| {
                format!("{endpoint}: no endpoint on node {node} (is the pod running?)")
            })?,
        None => endpoint.parse()?,
    };
    let (rules, _) = rules_of(&snap);
    let origins: BTreeMap<u32, String> = rules.into_iter().map(|r| (r.id, r.origin)).collect();
    let rows = ip::policy_get(&maps, endpoint_id, &labels, &origins)?;
    if json_flag(output)? {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("Endpoint {endpoint_id} on {node}:");
        print!("{}", ip::render_policy_get(&rows));
    }
    Ok(ExitCode::SUCCESS)
}
