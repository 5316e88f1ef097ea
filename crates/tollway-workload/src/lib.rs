//! `tollway workload`: the built-in test workload, in the spirit of Kubernetes' agnhost
//! `netexec`.
//!
//! * [`serve()`] runs HTTP/1.1 + h2c, TCP and UDP echo listeners that answer with the pod
//!   name, until SIGTERM or SIGINT.
//! * [`probe()`] connects to an `http://`, `tcp://` or `udp://` target one or more times and
//!   returns a [`ProbeReport`] classifying each attempt.
//! * [`dns`]: the cluster DNS server (the lab's kube-dns, answering for the store's
//!   Services) and a one-shot client.
//!
//! The `tollway` binary embeds [`ServeArgs`] and [`ProbeArgs`] as the `workload serve` and
//! `workload probe` subcommands. Tests bind in-process with [`serve::Server::bind`].

pub mod dns;
mod error;
mod headers;
pub mod matrix;
pub mod probe;
pub mod serve;

pub use error::WorkloadError;
pub use matrix::{ProbeManyArgs, ProbeManyReport};
pub use probe::{Attempt, AttemptResult, OutputFormat, ProbeArgs, ProbeReport, Summary};
pub use serve::{BoundAddrs, ServeArgs, Server};

/// Serves until SIGTERM or SIGINT, keeps serving for `--shutdown-delay-ms` (a second
/// signal cuts that short), then drains in-flight work and returns `Ok(())`.
///
/// Fails before serving if a listener cannot be bound, the pod name cannot be determined
/// or the signal handlers cannot be installed.
pub async fn serve(args: ServeArgs) -> Result<(), WorkloadError> {
    let signals = serve::ShutdownSignal::install()?;
    let server = Server::bind(args).await?;
    let mut first = signals.spawn_counter();
    let mut second = first.clone();
    // A closed channel (the counter task is gone) also means: go on shutting down.
    let shutdown = async move {
        let _ = first.wait_for(|n| *n >= 1).await;
    };
    let hurry = async move {
        let _ = second.wait_for(|n| *n >= 2).await;
    };
    server.run_until(shutdown, hurry).await;
    Ok(())
}

/// Probes the target `args.count` times and reports every attempt.
///
/// Attempt failures (refused, timeout, ...) are part of the report; an error is returned
/// only when the arguments are invalid.
pub async fn probe(args: ProbeArgs) -> Result<ProbeReport, WorkloadError> {
    probe::run(args).await
}
