//! `tollway demo`: a 2-node lab with the seed's payments namespace, probed
//! pod to pod on one node and across nodes.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use tollway_api::Pod;
use tollway_lab::lab::{self, Output};
use tollway_state::StateSource;

use crate::progress::Reporter;

/// The example manifests, embedded so that the demo runs from anywhere.
/// The seed's CiliumNetworkPolicy, unchanged.
const SEED_POLICY: &str = include_str!("../../../../examples/seed/checkout-api-l7-policy.yaml");

const MANIFESTS: &[(&str, &str)] = &[
    (
        "examples/payments/00-namespace.yaml",
        include_str!("../../../../examples/payments/00-namespace.yaml"),
    ),
    (
        "examples/payments/checkout-api.yaml",
        include_str!("../../../../examples/payments/checkout-api.yaml"),
    ),
    (
        "examples/payments/web-frontend.yaml",
        include_str!("../../../../examples/payments/web-frontend.yaml"),
    ),
    (
        "examples/payments/batch-reporter.yaml",
        include_str!("../../../../examples/payments/batch-reporter.yaml"),
    ),
];

/// `tollway demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long to wait for the pods.
    #[arg(long, default_value = "90s")]
    timeout: String,
}

struct ProbeLine {
    from: String,
    to: String,
    target: String,
    outcome: String,
    ok: bool,
}

/// Run the demo.
pub fn run(lab_name: &str, args: DemoArgs) -> Result<ExitCode> {
    let timeout = super::resources::parse_duration(&args.timeout)?;
    println!("== 1. a 2-node lab ({lab_name})");
    let mut rep = Reporter::new(false);
    lab::up(lab_name, &lab::UpOptions { nodes: 2, lb: None }, &mut |p| {
        rep.step(p)
    })
    .with_context(|| format!("bringing lab {lab_name} up"))?;

    println!("\n== 2. tollway apply -f examples/payments/");
    let inputs: Vec<(String, String)> = MANIFESTS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    if super::resources::apply_inputs(lab_name, &inputs, false)? != ExitCode::SUCCESS {
        bail!("the example manifests did not apply");
    }

    println!("\n== 3. waiting for the pods (up to {timeout:?})");
    let (_, store) = lab::open_store(lab_name)?;
    let deadline = Instant::now() + timeout;
    let pods: Vec<Pod> = loop {
        let snap = store.snapshot()?;
        let pods: Vec<Pod> = snap
            .pods()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some("payments") && !p.metadata.is_terminating()
            })
            .cloned()
            .collect();
        let want: i64 = snap
            .deployments()
            .filter(|d| d.metadata.namespace.as_deref() == Some("payments"))
            .map(|d| d.replicas())
            .sum();
        if pods.len() as i64 == want && pods.iter().all(Pod::is_ready) {
            break pods;
        }
        if Instant::now() >= deadline {
            let st = lab::status(lab_name)?;
            let not_ready: Vec<String> = st
                .pods
                .iter()
                .filter(|p| !p.ready)
                .map(|p| format!("{}/{} ({})", p.namespace, p.name, p.phase))
                .collect();
            bail!("pods not ready after {timeout:?}: {}", not_ready.join(", "));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{:<36} {:<8} {:<12}", "POD", "NODE", "IP");
    for p in &pods {
        println!(
            "{:<36} {:<8} {:<12}",
            p.metadata.name,
            p.spec.node_name.as_deref().unwrap_or("-"),
            p.pod_ip().unwrap_or("-")
        );
    }

    println!("\n== 4. probes (tollway workload probe, run inside the client pods)");
    let by_app = |app: &str| -> Vec<&Pod> {
        pods.iter()
            .filter(|p| p.metadata.labels.get("app").map(String::as_str) == Some(app))
            .collect()
    };
    let (Some(web), Some(reporter)) = (
        by_app("web-frontend").first().copied(),
        by_app("batch-reporter").first().copied(),
    ) else {
        bail!("the example's client pods are missing");
    };
    let mut lines = Vec::new();
    let api = by_app("checkout-api");
    let same = api.iter().find(|p| p.spec.node_name == web.spec.node_name);
    let other = api.iter().find(|p| p.spec.node_name != web.spec.node_name);
    for target in [same, other].into_iter().flatten() {
        lines.push(probe(
            lab_name,
            web,
            target,
            8080,
            "POST",
            "/api/v2/orders",
        )?);
    }
    lines.push(probe(lab_name, reporter, web, 8080, "GET", "/hostname")?);
    let mut all_ok = true;
    for l in &lines {
        all_ok &= l.ok;
        println!(
            "  {} -> {}  {}\n      {}",
            l.from, l.to, l.target, l.outcome
        );
    }

    println!("\n== 5. ClusterIP through the eBPF datapath (no iptables rule anywhere)");
    let snap = store.snapshot()?;
    let vip = snap
        .services()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some("payments") && s.metadata.name == "checkout-api"
        })
        .and_then(|s| s.spec.cluster_ip.clone())
        .context("service payments/checkout-api has no cluster IP")?;
    let node = web.spec.node_name.clone().unwrap_or_default();
    let frontend = format!("{vip}:8080");
    let paths = tollway_lab::LabPaths::new(lab_name);
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = tollway_datapath::lb::LbMaps::open(&paths.bpf_node_dir(&node))
            .ok()
            .and_then(|m| tollway_agent::inspect::lb_list(&m).ok())
            .unwrap_or_default();
        let ready = rows
            .iter()
            .any(|r| r.frontend == frontend && r.backends.len() == api.len());
        if ready {
            break rows;
        }
        if Instant::now() >= deadline {
            bail!(
                "node {node}'s datapath does not list {frontend} with {} backends yet",
                api.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let url = format!("http://{vip}:8080/api/v2/orders");
    let spread = spread(lab_name, web, &url, 20)?;
    all_ok &= spread.values().sum::<usize>() == 20;
    println!("  20 x POST {url} from {} ({node}):", web.metadata.name);
    for (pod, n) in &spread {
        println!("      {n:>2} answered by {pod}");
    }
    println!("\n  tollway bpf lb list   (node {node})");
    let payments: Vec<tollway_agent::inspect::LbServiceRow> = rows
        .into_iter()
        .filter(|r| {
            snap.services().any(|s| {
                s.metadata.namespace.as_deref() == Some("payments")
                    && r.frontend
                        .starts_with(&format!("{}:", s.spec.cluster_ip.as_deref().unwrap_or("-")))
            })
        })
        .collect();
    for line in tollway_agent::inspect::render_lb_list(&payments).lines() {
        println!("  {line}");
    }

    println!(
        "\n== 6. identity-based policy: tollway apply -f examples/seed/checkout-api-l7-policy.yaml"
    );
    let seed = [(
        "examples/seed/checkout-api-l7-policy.yaml".to_string(),
        SEED_POLICY.to_string(),
    )];
    if super::resources::apply_inputs(lab_name, &seed, false)? != ExitCode::SUCCESS {
        bail!("the seed's CiliumNetworkPolicy did not apply");
    }
    wait_policy(lab_name, &paths, &store)?;
    let vip_url = format!("http://{vip}:8080/api/v2/orders");
    let allowed = probe_url(
        lab_name,
        web,
        "service checkout-api",
        &vip_url,
        "POST",
        3000,
    )?;
    let blocked = probe_url(
        lab_name,
        reporter,
        "service checkout-api",
        &vip_url,
        "POST",
        1000,
    )?;
    all_ok &= allowed.ok && !blocked.ok;
    for (l, want) in [(&allowed, "allowed"), (&blocked, "dropped by policy")] {
        println!(
            "  {} -> {}  {} (expected: {want})\n      {}",
            l.from, l.to, l.target, l.outcome
        );
    }
    if let Some(api_pod) = api.first() {
        let api_node = api_pod.spec.node_name.clone().unwrap_or_default();
        let maps = tollway_datapath::lb::PolicyMaps::open(&paths.bpf_node_dir(&api_node))?;
        let snap = store.snapshot()?;
        let ipc = tollway_agent::inspect_policy::ipcache_list(&maps)?;
        let labels = tollway_agent::inspect_policy::identity_labels(&snap, &ipc);
        let eps = tollway_agent::inspect_policy::endpoint_list(&maps, &snap, &labels)?;
        if let Some(ep) = eps
            .iter()
            .find(|e| Some(e.ipv4.as_str()) == api_pod.pod_ip())
        {
            let t = tollway_policy::translate_all(snap.network_policies(), snap.cilium_policies());
            let origins = t.rules.into_iter().map(|r| (r.id, r.origin)).collect();
            let rows = tollway_agent::inspect_policy::policy_get(
                &maps,
                ep.endpoint_id,
                &labels,
                &origins,
            )?;
            println!(
                "\n  tollway bpf policy get payments/{}   (node {api_node}, endpoint {})",
                api_pod.metadata.name, ep.endpoint_id
            );
            for line in tollway_agent::inspect_policy::render_policy_get(&rows).lines() {
                println!("  {line}");
            }
        }
    }

    println!("\n== 7. flows (like Hubble): tollway observe");
    // The agents report within a few ms; give the relay a moment anyway.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let web_pod = format!("payments/{}", web.metadata.name);
    let reporter_pod = format!("payments/{}", reporter.metadata.name);
    println!(
        "  tollway observe --from-pod {web_pod} --to-port 8080 --last 6   (the allowed connection)"
    );
    let seen_allowed = super::observe::print_flows(
        lab_name,
        &[
            "--from-pod",
            &web_pod,
            "--to-port",
            "8080",
            "--verdict",
            "FORWARDED",
        ],
        6,
        "    ",
    )?;
    println!(
        "  tollway observe --from-pod {reporter_pod} --verdict DROPPED --last 4   (the dropped one)"
    );
    let seen_dropped = super::observe::print_flows(
        lab_name,
        &["--from-pod", &reporter_pod, "--verdict", "DROPPED"],
        4,
        "    ",
    )?;
    println!(
        "  tollway observe --namespace payments --protocol http   (the seed's command: HTTP flows come with the L7 proxy; none yet)"
    );
    super::observe::print_flows(
        lab_name,
        &["--namespace", "payments", "--protocol", "http"],
        20,
        "    ",
    )?;
    if seen_allowed == 0 || seen_dropped == 0 {
        println!(
            "  MISSING: expected flows for both connections (allowed {seen_allowed}, dropped {seen_dropped})"
        );
        all_ok = false;
    }

    let web_name = &web.metadata.name;
    let tw = if lab_name == "default" {
        "tollway".to_string()
    } else {
        format!("tollway --lab {lab_name}")
    };
    println!(
        "\n== try next\n  {tw} ui   (the service map: open http://127.0.0.1:12000/?namespace=payments)\n  {tw} observe --namespace payments --follow\n  {tw} get pods -n payments -o wide\n  {tw} lab exec -n payments {web_name} -- tollway workload probe http://{}:8080/echo -o json\n  {tw} logs -n payments {}\n  {tw} scale deployment/checkout-api --replicas 3 -n payments\n  {tw} label namespace payments istio.io/dataplane-mode=ambient\n  {tw} lab exec --node {node} -- tollway status --verbose\n  {tw} bpf lb list --node {node}\n  {tw} endpoint list --node {node}\n  {tw} policy trace --src-k8s-pod payments/{} --dst-k8s-pod payments/{} --dport 8080\n  {tw} lab status\n  {tw} lab down",
        api.first().and_then(|p| p.pod_ip()).unwrap_or("POD_IP"),
        api.first()
            .map(|p| p.metadata.name.as_str())
            .unwrap_or("POD"),
        reporter.metadata.name,
        api.first()
            .map(|p| p.metadata.name.as_str())
            .unwrap_or("POD"),
    );
    let _ = store.version();
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn probe(
    lab_name: &str,
    from: &Pod,
    to: &Pod,
    port: u16,
    method: &str,
    path: &str,
) -> Result<ProbeLine> {
    let ip = to.pod_ip().unwrap_or("0.0.0.0");
    let url = format!("http://{ip}:{port}{path}");
    let node = to.spec.node_name.clone().unwrap_or_default();
    let to = format!("{} ({node})", to.metadata.name);
    probe_url(lab_name, from, &to, &url, method, 3000)
}

/// One probe of `url` from `from`; `to` names the target for display.
fn probe_url(
    lab_name: &str,
    from: &Pod,
    to: &str,
    url: &str,
    method: &str,
    timeout_ms: u64,
) -> Result<ProbeLine> {
    let exe = std::env::current_exe().context("finding the tollway binary")?;
    let timeout = timeout_ms.to_string();
    let argv: Vec<String> = [
        exe.display().to_string().as_str(),
        "workload",
        "probe",
        url,
        "--method",
        method,
        "--timeout-ms",
        timeout.as_str(),
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ns = from.metadata.namespace_or_default();
    let (code, out) =
        lab::exec_pod_with(lab_name, ns, &from.metadata.name, &argv, Output::Capture)?;
    let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    let a = &v["attempts"][0];
    let result = a["result"].as_str().unwrap_or("no answer");
    let status = a["status"]
        .as_u64()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let latency = a["latency_us"]
        .as_u64()
        .map(|l| format!(" in {l}us"))
        .unwrap_or_default();
    let body = a["body"].as_str().unwrap_or("");
    let answered = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|b| b["pod"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(60).collect());
    let node = |p: &Pod| p.spec.node_name.clone().unwrap_or_default();
    Ok(ProbeLine {
        from: format!("{} ({})", from.metadata.name, node(from)),
        to: to.to_string(),
        target: format!("{method} {url}"),
        outcome: if answered.is_empty() {
            format!("{result}{status}{latency}")
        } else {
            format!("{result}{status}{latency}, answered by {answered}")
        },
        ok: code == 0,
    })
}

/// Wait until every node's agent has synced the store's current version
/// (the policy just applied, and the identities it may need).
fn wait_policy(
    lab_name: &str,
    paths: &tollway_lab::LabPaths,
    store: &tollway_state::FileStore,
) -> Result<()> {
    let cfg = tollway_lab::LabConfig::load(paths)?
        .with_context(|| format!("lab {lab_name} does not exist"))?;
    let want = store.version()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let synced = cfg.nodes.iter().all(|n| {
            tollway_agent::AgentStatus::read(&paths.node_dir(&n.name)).is_some_and(|a| {
                a.sync.resource_version >= want && a.policy.rules > 0 && a.policy.errors.is_empty()
            })
        });
        if synced {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the agents did not program the policy within 20 s (see `tollway status`)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` requests to `url` from `from`, tallied by the answering pod.
fn spread(lab_name: &str, from: &Pod, url: &str, count: u32) -> Result<BTreeMap<String, usize>> {
    let exe = std::env::current_exe().context("finding the tollway binary")?;
    let argv: Vec<String> = [
        exe.display().to_string(),
        "workload".into(),
        "probe".into(),
        url.into(),
        "--method".into(),
        "POST".into(),
        "--count".into(),
        count.to_string(),
        "-o".into(),
        "json".into(),
    ]
    .into();
    let ns = from.metadata.namespace_or_default();
    let (_, out) = lab::exec_pod_with(lab_name, ns, &from.metadata.name, &argv, Output::Capture)?;
    let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    let mut tally = BTreeMap::new();
    for a in v["attempts"].as_array().cloned().unwrap_or_default() {
        if a["result"] != "ok" {
            continue;
        }
        let pod = serde_json::from_str::<Value>(a["body"].as_str().unwrap_or(""))
            .ok()
            .and_then(|b| b["pod"].as_str().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        *tally.entry(pod).or_insert(0) += 1;
    }
    Ok(tally)
}
