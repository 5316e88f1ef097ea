//! Tollway's benchmarks.
//!
//! `tollway bench service-lb` ([`harness::service_lb`]) measures service
//! load balancing in a lab of its own: connect-per-request (CRR) and
//! request/response (RR) latency through the direct path, Tollway's socket
//! LB and tc paths, and a faithful reproduction of kube-proxy's iptables
//! mode ([`kubeproxy`]), at several service counts, plus how long loading
//! the services and changing one takes. Its pods run `tollway bench
//! server` ([`server`]) and `tollway bench client` ([`client`]).
//!
//! `tollway bench policy` ([`policy`]) measures what network policy costs
//! the control plane and the datapath; `tollway bench flows` ([`flows`])
//! what flow events cost the datapath (TCP_RR, single-stream throughput)
//! and how many flows one agent decodes and stores under a storm.

pub mod client;
mod error;
pub mod flows;
pub mod harness;
pub mod kubeproxy;
pub mod policy;
pub mod progress;
pub mod report;
pub mod server;
pub mod stats;

/// Pin the calling thread (and what it starts later) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> Result<(), BenchError> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set))
        .map_err(|e| BenchError::io("pinning to", format!("CPU {cpu}"), std::io::Error::from(e)))
}

pub use error::BenchError;
pub use flows::{FlowsOptions, flows};
pub use harness::{Backend, ServiceLbOptions, service_lb};
pub use policy::{PolicyOptions, policy};
pub use report::Report;
