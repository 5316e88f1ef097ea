//! `tollway lab ...`

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tollway_lab::lab;

use crate::progress::Reporter;

/// `tollway lab`.
#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

impl LabArgs {
    /// Whether this is the daemon (which logs at info by default).
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, LabCommand::Daemon)
    }
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Create a lab, or check and repair an existing one (idempotent).
    Up {
        /// Lab name (same as the global --lab).
        #[arg(long)]
        name: Option<String>,
        /// Number of nodes.
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// Backend selection of services: random or maglev (a service may
        /// choose with the service.cilium.io/lb-algorithm annotation).
        #[arg(long, value_parser = ["random", "maglev"])]
        lb_algorithm: Option<String>,
        /// Maglev table size M (a prime).
        #[arg(long)]
        maglev_table_size: Option<u32>,
        /// Turn the socket LB off: ClusterIP traffic is translated per packet by tc.
        #[arg(long)]
        no_socket_lb: bool,
        /// Output format: json prints the report.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Remove everything a lab made (also after a crash).
    Down {
        /// Lab name (same as the global --lab).
        #[arg(long)]
        name: Option<String>,
    },
    /// Nodes and pods of a lab.
    Status {
        /// Output format: json.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Labs on this machine.
    List,
    /// Run a command in a pod (its network namespace and cgroup), or with
    /// --node in a node's network namespace.
    Exec {
        /// Namespace of the pod.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Run in this node instead of a pod.
        #[arg(long, conflicts_with_all = ["pod", "external"])]
        node: Option<String>,
        /// Run in the `external` namespace: a client outside the cluster.
        #[arg(long, conflicts_with = "pod")]
        external: bool,
        /// The pod.
        #[arg(required_unless_present_any = ["node", "external"])]
        pod: Option<String>,
        /// The command and its arguments (after --).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run the lab's control plane and kubelets (started by `lab up`).
    #[command(hide = true)]
    Daemon,
}

fn is_json(output: &Option<String>) -> Result<bool> {
    match output.as_deref() {
        None => Ok(false),
        Some("json") => Ok(true),
        Some(o) => anyhow::bail!("unknown output format {o:?} (json)"),
    }
}

/// Run a lab command.
pub fn run(global_lab: &str, args: LabArgs) -> Result<ExitCode> {
    match args.command {
        LabCommand::Up {
            name,
            nodes,
            lb_algorithm,
            maglev_table_size,
            no_socket_lb,
            output,
        } => {
            let json = is_json(&output)?;
            let name = name.as_deref().unwrap_or(global_lab);
            let lb = (lb_algorithm.is_some() || maglev_table_size.is_some() || no_socket_lb).then(
                || {
                    let d = tollway_lab::LbSettings::default();
                    tollway_lab::LbSettings {
                        algorithm: lb_algorithm.unwrap_or(d.algorithm),
                        maglev_table_size: maglev_table_size.unwrap_or(d.maglev_table_size),
                        socket_lb: !no_socket_lb,
                    }
                },
            );
            let mut rep = Reporter::new(json);
            let report = lab::up(name, &lab::UpOptions { nodes, lb }, &mut |p| rep.step(p))
                .with_context(|| format!("bringing lab {name} up"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                if !report.rebuilt_nodes.is_empty() {
                    eprintln!("rebuilt broken nodes: {}", report.rebuilt_nodes.join(", "));
                }
                let st = lab::status(name)?;
                println!("lab {name}: {} nodes", st.nodes.len());
                for n in &st.nodes {
                    println!("  {}  {}  pods {}", n.name, n.ip, n.pod_cidr);
                }
                println!(
                    "next: tollway --lab {name} apply -f examples/payments/   (or: tollway demo)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { name } => {
            let name = name.as_deref().unwrap_or(global_lab);
            let mut rep = Reporter::new(false);
            let report = lab::down(name, &mut |p| rep.step(p))
                .with_context(|| format!("taking lab {name} down"))?;
            println!(
                "lab {name} removed ({} network namespaces{})",
                report.namespaces,
                if report.killed_processes {
                    ", processes killed"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { output } => {
            let st = lab::status(global_lab)?;
            if is_json(&output)? {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(ExitCode::SUCCESS);
            }
            match st.daemon_pid {
                Some(pid) => println!("lab {}: daemon running (pid {pid})", st.name),
                None => println!(
                    "lab {}: daemon NOT running (run `tollway --lab {} lab up`)",
                    st.name, st.name
                ),
            }
            println!("service CIDR {}", st.service_cidr);
            println!("\nNODE       IP           POD CIDR         HEALTHY");
            for n in &st.nodes {
                println!(
                    "{:<10} {:<12} {:<16} {}",
                    n.name, n.ip, n.pod_cidr, n.healthy
                );
            }
            println!(
                "\nNAMESPACE/POD                                  NODE       IP            PHASE       READY  RESTARTS"
            );
            for p in &st.pods {
                println!(
                    "{:<46} {:<10} {:<13} {:<11} {:<6} {}",
                    format!("{}/{}", p.namespace, p.name),
                    p.node.as_deref().unwrap_or("<none>"),
                    p.ip.as_deref().unwrap_or("<none>"),
                    p.phase,
                    p.ready,
                    p.restarts
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::List => {
            for l in lab::list() {
                println!("{l}");
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec {
            namespace,
            node,
            external,
            pod,
            command,
        } => {
            let code = match (node, external, pod) {
                (Some(node), _, _) => lab::exec_node(global_lab, &node, &command)?,
                (None, true, _) => lab::exec_external(global_lab, &command)?,
                (None, false, Some(pod)) => lab::exec_pod(global_lab, &namespace, &pod, &command)?,
                (None, false, None) => anyhow::bail!("give a POD, --node NODE or --external"),
            };
            Ok(ExitCode::from(
                u8::try_from(code.clamp(0, 255)).unwrap_or(1),
            ))
        }
        LabCommand::Daemon => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(tollway_lab::daemon::run(global_lab))
                .with_context(|| format!("lab daemon of {global_lab}"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
