//! `tollway`: the command-line tool. Thin: it parses flags, calls the
//! libraries and prints; every error is reported with context and a
//! non-zero exit code.

mod cmd;
mod printers;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tollway: an eBPF data plane and sidecar-less mesh for Kubernetes, with a
/// built-in multi-node lab.
#[derive(Parser, Debug)]
#[command(name = "tollway", version, about, propagate_version = true)]
struct Cli {
    /// The lab to act on.
    #[arg(long, global = true, env = "TOLLWAY_LAB", default_value = "default")]
    lab: String,
    /// Log more (repeat for more detail).
    #[arg(short = 'D', long = "debug", global = true, action = clap::ArgAction::Count)]
    debug: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, inspect and remove lab clusters.
    Lab(cmd::lab::LabArgs),
    /// Create or update objects from manifests (files, directories or -).
    Apply(cmd::resources::ApplyArgs),
    /// Delete objects by manifest or by kind and name.
    Delete(cmd::resources::DeleteArgs),
    /// List or show objects.
    Get(cmd::resources::GetArgs),
    /// Add, change or remove labels.
    Label(cmd::resources::LabelArgs),
    /// Set a deployment's replicas.
    Scale(cmd::resources::ScaleArgs),
    /// Wait for a condition on objects.
    Wait(cmd::resources::WaitArgs),
    /// Print a pod's container output.
    Logs(cmd::resources::LogsArgs),
    /// The built-in test workload: echo server and probe client.
    Workload(cmd::workload::WorkloadArgs),
    /// Bring up a 2-node lab with the payments example and probe it.
    Demo(cmd::demo::DemoArgs),
    /// The datapath's status on a node (like `cilium status`).
    Status(cmd::datapath::StatusArgs),
    /// Inspect BPF maps: `bpf lb list`, `bpf ct list`, `bpf ipcache list`,
    /// `bpf policy get`.
    Bpf(cmd::datapath::BpfArgs),
    /// Services as the datapath sees them: `service list`.
    Service(cmd::datapath::ServiceArgs),
    /// Network policy: `policy get`, `policy validate`, `policy trace`.
    Policy(cmd::policy::PolicyArgs),
    /// A node's endpoints and their policy enforcement: `endpoint list`.
    Endpoint(cmd::policy::EndpointArgs),
    /// Security identities: `identity list`.
    Identity(cmd::policy::IdentityArgs),
    /// Observe flows of every node (like `hubble observe`).
    Observe(Box<cmd::observe::ObserveCmd>),
    /// Serve the service map of the lab's flows (like Hubble UI).
    Ui(cmd::observe::UiCmd),
    /// Serve every agent's flows on one address (like Hubble Relay).
    Relay(cmd::observe::RelayCmd),
    /// Benchmarks: `bench service-lb` (and its `server` and `client`).
    Bench(cmd::bench::BenchArgs),
    /// Install the CNI plugin and its configuration on this node (the
    /// DaemonSet's init container).
    InstallCni(cmd::datapath::InstallCniArgs),
    /// The per-node agent (started by the lab daemon).
    #[command(hide = true)]
    Agent(cmd::datapath::AgentArgs),
}

fn main() -> ExitCode {
    // The CNI plugin: `tollway cni` (how the lab's kubelet calls it), or
    // this binary installed as `tollway-cni` in a runtime's CNI directory.
    // Before clap: the plugin's interface is its environment and stdin.
    if invoked_as_cni_plugin() {
        return tollway_cni::main();
    }
    let cli = Cli::parse();
    init_tracing(
        cli.debug,
        matches!(&cli.command, Command::Lab(l) if l.is_daemon()),
    );
    let result = match cli.command {
        Command::Lab(a) => cmd::lab::run(&cli.lab, a),
        Command::Apply(a) => cmd::resources::apply(&cli.lab, a),
        Command::Delete(a) => cmd::resources::delete(&cli.lab, a),
        Command::Get(a) => cmd::resources::get(&cli.lab, a),
        Command::Label(a) => cmd::resources::label(&cli.lab, a),
        Command::Scale(a) => cmd::resources::scale(&cli.lab, a),
        Command::Wait(a) => cmd::resources::wait(&cli.lab, a),
        Command::Logs(a) => cmd::resources::logs(&cli.lab, a),
        Command::Workload(a) => cmd::workload::run(a),
        Command::Demo(a) => cmd::demo::run(&cli.lab, a),
        Command::Status(a) => cmd::datapath::status(&cli.lab, a),
        Command::Bpf(a) => cmd::datapath::bpf(&cli.lab, a),
        Command::Service(a) => cmd::datapath::service(&cli.lab, a),
        Command::Policy(a) => cmd::policy::policy(&cli.lab, a),
        Command::Endpoint(a) => cmd::policy::endpoint(&cli.lab, a),
        Command::Identity(a) => cmd::policy::identity(&cli.lab, a),
        Command::Observe(a) => cmd::observe::observe(&cli.lab, *a),
        Command::Ui(a) => cmd::observe::ui(&cli.lab, a),
        Command::Relay(a) => cmd::observe::relay(a),
        Command::InstallCni(a) => cmd::datapath::install_cni(a),
        Command::Agent(a) => cmd::datapath::agent(&cli.lab, a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

fn invoked_as_cni_plugin() -> bool {
    let mut args = std::env::args_os();
    let argv0 = args.next();
    let by_name = argv0
        .as_deref()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "tollway-cni");
    by_name || args.next().is_some_and(|a| a == "cni")
}

/// The error and its causes on one line, skipping a cause whose text the
/// previous message already ends with (typed errors often embed their source).
fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.ends_with(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

fn init_tracing(verbose: u8, daemon: bool) {
    let default = match (daemon, verbose) {
        (true, 0) => "info",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
