//! `tollway observe` (like `hubble observe`, through the relay: every
//! node's flows, merged in time order) and `tollway ui` (the service map).

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tollway_agent::flows::client::{self, NodeEvent, NodeTarget};
use tollway_flow::args::{ObserveArgs, filters_from_argv};
use tollway_flow::filter::FlowRequest;
use tollway_flow::print::{OutputFormat, PrintOptions, Printer, TimeFormat};
use tollway_flow::relay::{DEFAULT_MAX_DELAY, FollowMerger};

/// Short aliases of filter flags (Hubble's).
const SHORT: &[(&str, &str)] = &[("-n", "namespace"), ("-l", "label"), ("-t", "type")];

/// `tollway observe`: Hubble's filters and output formats. Every filter
/// flag may be repeated (values OR), and `--not` negates the filter flag
/// right after it.
#[derive(Args, Debug)]
pub struct ObserveCmd {
    /// Flows from or to pods in this namespace.
    #[arg(short = 'n', long)]
    namespace: Vec<String>,
    /// Flows from pods in this namespace.
    #[arg(long)]
    from_namespace: Vec<String>,
    /// Flows to pods in this namespace.
    #[arg(long)]
    to_namespace: Vec<String>,
    /// Flows from or to this pod (`[namespace/]name-prefix`).
    #[arg(long)]
    pod: Vec<String>,
    /// Flows from this pod.
    #[arg(long)]
    from_pod: Vec<String>,
    /// Flows to this pod.
    #[arg(long)]
    to_pod: Vec<String>,
    /// Flows from or to this service (`[namespace/]name`).
    #[arg(long)]
    service: Vec<String>,
    /// Flows from this service.
    #[arg(long)]
    from_service: Vec<String>,
    /// Flows to this service.
    #[arg(long)]
    to_service: Vec<String>,
    /// Flows from or to endpoints with these labels (`app=web,tier`).
    #[arg(short = 'l', long)]
    label: Vec<String>,
    /// Flows from endpoints with these labels.
    #[arg(long)]
    from_label: Vec<String>,
    /// Flows to endpoints with these labels.
    #[arg(long)]
    to_label: Vec<String>,
    /// Flows from or to this IP (or CIDR).
    #[arg(long)]
    ip: Vec<String>,
    /// Flows from this IP.
    #[arg(long)]
    from_ip: Vec<String>,
    /// Flows to this IP.
    #[arg(long)]
    to_ip: Vec<String>,
    /// Flows from or to this port.
    #[arg(long)]
    port: Vec<String>,
    /// Flows from this port.
    #[arg(long)]
    from_port: Vec<String>,
    /// Flows to this port.
    #[arg(long)]
    to_port: Vec<String>,
    /// Flows from or to this identity (number or reserved name).
    #[arg(long)]
    identity: Vec<String>,
    /// Flows from this identity.
    #[arg(long)]
    from_identity: Vec<String>,
    /// Flows to this identity.
    #[arg(long)]
    to_identity: Vec<String>,
    /// tcp, udp, icmp, http, dns.
    #[arg(long)]
    protocol: Vec<String>,
    /// FORWARDED, DROPPED, AUDIT, REDIRECTED, TRANSLATED, ERROR, TRACED.
    #[arg(long)]
    verdict: Vec<String>,
    /// Event type: trace, drop, policy-verdict, trace-sock, l7 (`type:subtype`).
    #[arg(short = 't', long = "type")]
    event_type: Vec<String>,
    /// HTTP method (L7 flows).
    #[arg(long)]
    http_method: Vec<String>,
    /// HTTP path, a regular expression (L7 flows).
    #[arg(long)]
    http_path: Vec<String>,
    /// HTTP status: `200`, or a class like `5+` (L7 flows).
    #[arg(long)]
    http_status: Vec<String>,
    /// ingress or egress.
    #[arg(long)]
    traffic_direction: Vec<String>,
    /// Flows observed on this node.
    #[arg(long)]
    node_name: Vec<String>,
    /// Drops with this reason (POLICY_DENIED, ...).
    #[arg(long)]
    drop_reason_desc: Vec<String>,
    /// Flows with these TCP flags (SYN,ACK).
    #[arg(long)]
    tcp_flags: Vec<String>,
    /// 4 or 6.
    #[arg(long)]
    ip_version: Vec<String>,
    /// Flows with this uuid.
    #[arg(long)]
    uuid: Vec<String>,
    /// Negate the filter flag that follows.
    #[arg(long, action = clap::ArgAction::Count)]
    not: u8,
    /// Flows since this time (RFC 3339) or this long ago (5m, 1h).
    #[arg(long)]
    since: Option<String>,
    /// Flows until this time (RFC 3339) or this long ago.
    #[arg(long)]
    until: Option<String>,
    /// The last N flows (default 20).
    #[arg(long)]
    last: Option<u64>,
    /// The first N flows.
    #[arg(long)]
    first: Option<u64>,
    /// Every stored flow.
    #[arg(long)]
    all: bool,
    /// Go on printing new flows as they come.
    #[arg(short = 'f', long)]
    follow: bool,
    /// compact (default), json, jsonpb, table or dict.
    #[arg(short = 'o', long, default_value = "compact")]
    output: String,
    /// Show each flow's node.
    #[arg(long)]
    print_node_name: bool,
    /// Show IP addresses, not pod and service names.
    #[arg(long)]
    numeric: bool,
    /// Time layout: StampMilli (default), RFC3339, RFC3339Milli, ...
    #[arg(long, default_value = "StampMilli")]
    time_format: String,
    /// Ask this relay (or one agent's --flows-listen address), host:port,
    /// instead of the lab's nodes (like hubble's --server / HUBBLE_SERVER).
    #[arg(long, env = "TOLLWAY_SERVER")]
    server: Option<String>,
}

/// The flow APIs to ask: `server` (a relay, or one agent), else every node
/// of the lab.
fn targets(lab: &str, server: Option<&str>) -> Result<Vec<NodeTarget>> {
    match server {
        Some(addr) => Ok(vec![NodeTarget::relay(addr)]),
        None => client::lab_targets(lab).with_context(|| {
            format!("lab {lab} (outside a lab, point --server or $TOLLWAY_SERVER at a relay)")
        }),
    }
}

fn request(args: &ObserveCmd) -> Result<FlowRequest> {
    let argv: Vec<String> = std::env::args().collect();
    let filters = filters_from_argv(&argv, SHORT)?;
    let observe = ObserveArgs {
        filters,
        since: args.since.clone(),
        until: args.until.clone(),
        last: args.last,
        first: args.first,
        all: args.all,
        follow: args.follow,
    };
    Ok(observe.to_request(jiff::Timestamp::now())?)
}

fn printer(args: &ObserveCmd) -> Result<Printer> {
    let Some(format) = OutputFormat::parse(&args.output) else {
        bail!(
            "-o {:?}: expected compact, json, jsonpb, table or dict",
            args.output
        );
    };
    let Some(time_format) = TimeFormat::parse(&args.time_format) else {
        bail!("--time-format {:?}: unknown layout", args.time_format);
    };
    Ok(Printer::new(
        format,
        PrintOptions {
            time_format,
            node_name: args.print_node_name,
            ip_translation: !args.numeric,
        },
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn warn_unreachable(status: &[tollway_flow::relay::NodeStatus]) {
    for s in status.iter().filter(|s| !s.reachable) {
        eprintln!(
            "warning: node {} is unreachable: {} (its flows are missing)",
            s.name,
            s.error.as_deref().unwrap_or("no answer")
        );
    }
}

/// Prints, compact, the flows of lab `lab` that `filter_args` (observe's
/// filter flags, as on the command line) select, last `last` of them;
/// returns how many (the demo's view of `tollway observe`).
pub(crate) fn print_flows(
    lab: &str,
    filter_args: &[&str],
    last: u64,
    indent: &str,
) -> Result<usize> {
    let observe = ObserveArgs {
        filters: filters_from_argv(filter_args, SHORT)?,
        last: Some(last),
        ..ObserveArgs::default()
    };
    let req = observe.to_request(jiff::Timestamp::now())?;
    let targets = client::lab_targets(lab).with_context(|| format!("lab {lab}"))?;
    let (flows, status) = runtime()?.block_on(client::query_all(&targets, &req));
    warn_unreachable(&status);
    let mut printer = Printer::new(OutputFormat::Compact, PrintOptions::default());
    for f in &flows {
        let mut out = String::new();
        printer.write(f, &mut out)?;
        for line in out.lines() {
            println!("{indent}{line}");
        }
    }
    Ok(flows.len())
}

/// `tollway observe`.
pub fn observe(lab: &str, args: ObserveCmd) -> Result<ExitCode> {
    let req = request(&args)?;
    let mut printer = printer(&args)?;
    let targets = targets(lab, args.server.as_deref())?;
    let rt = runtime()?;
    if !req.follow {
        let (flows, status) = rt.block_on(client::query_all(&targets, &req));
        warn_unreachable(&status);
        if status.iter().all(|s| !s.reachable) {
            bail!("no node of lab {lab} answered (is the lab up? `tollway lab status`)");
        }
        let mut out = String::new();
        for f in &flows {
            printer.write(f, &mut out)?;
        }
        printer.finish(&mut out);
        print!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(follow(&targets, req, printer))?;
    Ok(ExitCode::SUCCESS)
}

/// Follows every node, printing in time order (a flow waits at most
/// [`DEFAULT_MAX_DELAY`] for slower nodes).
async fn follow(targets: &[NodeTarget], req: FlowRequest, mut printer: Printer) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, NodeEvent)>(4096);
    for t in targets {
        tokio::spawn(client::follow_node(t.clone(), req.clone(), tx.clone()));
    }
    drop(tx);
    let mut merger = FollowMerger::new(targets.iter().map(|t| t.node.clone()), DEFAULT_MAX_DELAY);
    let mut open = targets.len();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let stdout = std::io::stdout();
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some((node, ev)) = ev else { break };
                match ev {
                    NodeEvent::Flow(f) => merger.push(&node, vec![f], jiff::Timestamp::now()),
                    NodeEvent::Lost(n) => eprintln!("warning: node {node}: {n} flows lost (the node's ring overwrote them)"),
                    NodeEvent::Unreachable { node, error } => {
                        eprintln!("warning: node {node} is unreachable: {error} (its flows are missing)");
                    }
                    NodeEvent::Closed(err) => {
                        merger.set_reachable(&node, false);
                        if let Some(e) = err {
                            eprintln!("warning: node {node} is unreachable: {e} (its flows are missing)");
                        }
                        open -= 1;
                        if open == 0 {
                            break;
                        }
                    }
                }
            }
            _ = tick.tick() => {}
        }
        let mut out = String::new();
        for f in merger.release(jiff::Timestamp::now()) {
            printer.write(&f, &mut out)?;
        }
        if !out.is_empty() {
            let mut lock = stdout.lock();
            if lock
                .write_all(out.as_bytes())
                .and_then(|()| lock.flush())
                .is_err()
            {
                return Ok(()); // stdout closed (a pipe's reader left)
            }
        }
    }
    let mut out = String::new();
    for f in merger.drain() {
        printer.write(&f, &mut out)?;
    }
    printer.finish(&mut out);
    print!("{out}");
    if open == 0 && !targets.is_empty() {
        bail!("every node's flow stream ended");
    }
    Ok(())
}

/// `tollway ui`.
#[derive(Args, Debug)]
pub struct UiCmd {
    /// Where to serve the page (Hubble UI's port is 12000).
    #[arg(long, default_value = "127.0.0.1:12000")]
    listen: String,
    /// Ask this relay (host:port) instead of the lab's nodes.
    #[arg(long, env = "TOLLWAY_SERVER")]
    server: Option<String>,
}

/// The UI's flows: the relay's, asked on each poll of the page.
struct RelayFeed {
    targets: Vec<NodeTarget>,
    handle: tokio::runtime::Handle,
}

impl tollway_ui::FlowFeed for RelayFeed {
    fn flows(
        &self,
        query: &tollway_ui::UiQuery,
    ) -> Result<tollway_ui::FeedPage, tollway_ui::FeedError> {
        let mut args = ObserveArgs {
            last: Some(query.limit as u64),
            ..ObserveArgs::default()
        };
        if let Some(ns) = &query.namespace {
            args.filters = filters_from_argv(&["--namespace", ns.as_str()], SHORT)
                .map_err(|e| tollway_ui::FeedError::Other(e.to_string()))?;
        }
        let mut req = args
            .to_request(jiff::Timestamp::now())
            .map_err(|e| tollway_ui::FeedError::Other(e.to_string()))?;
        req.since = query.since;
        let (flows, status) = self.handle.block_on(client::query_all(&self.targets, &req));
        if status.iter().all(|s| !s.reachable) && !status.is_empty() {
            return Err(tollway_ui::FeedError::Unavailable {
                reason: "no node answered".into(),
            });
        }
        let flows = flows
            .iter()
            .filter_map(|f| {
                serde_json::to_value(tollway_flow::model::FlowResponse::new((**f).clone())).ok()
            })
            .collect();
        Ok(tollway_ui::FeedPage {
            flows,
            unreachable_nodes: status
                .iter()
                .filter(|s| !s.reachable)
                .map(|s| s.name.clone())
                .collect(),
            messages: Vec::new(),
        })
    }
}

/// `tollway ui`: serves the service map of the lab's flows until stopped.
pub fn ui(lab: &str, args: UiCmd) -> Result<ExitCode> {
    let targets = targets(lab, args.server.as_deref())?;
    let rt = runtime()?;
    let feed = Arc::new(RelayFeed {
        targets,
        handle: rt.handle().clone(),
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        let addr = listener.local_addr().context("listening address")?;
        eprintln!("Tollway UI for lab {lab}: http://{addr}/ (Ctrl-C to stop)");
        tollway_ui::serve(listener, feed)
            .await
            .context("serving the UI")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `tollway relay`.
#[derive(Args, Debug)]
pub struct RelayCmd {
    /// Where to serve the cluster's flow API (Hubble Relay's port is 4245).
    #[arg(long, default_value = "0.0.0.0:4245")]
    listen: String,
    /// The agents: `dns:///name:port` (a headless Service of the agents'
    /// --flows-listen port, resolved for every request) or host:port,...
    #[arg(long, env = "TOLLWAY_RELAY_PEERS")]
    peers: String,
}

/// `tollway relay`: serves every peer's flows, merged, until stopped.
pub fn relay(args: RelayCmd) -> Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        eprintln!("Tollway relay on {} for {}", args.listen, args.peers);
        tollway_agent::flows::relay::serve(listener, args.peers).await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
