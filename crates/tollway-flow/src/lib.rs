//! Hubble-like flow visibility, without I/O: the flow model and its JSON
//! ([`model`]), datapath events into flows ([`decode`], with DNS payloads
//! from [`dns`]), the flow ring ([`store`]), filters and requests
//! ([`filter`]), `observe` arguments into requests ([`args`]), printers
//! ([`print`]), merging several nodes' flows ([`relay`]) and Prometheus
//! metrics ([`metrics`]).
//!
//! The agent reads the ring buffer, [`decode::Decoder::decode`]s each
//! record, records it in [`metrics::FlowMetrics`] and pushes it into a
//! [`store::FlowStore`], which it serves queries ([`filter::FlowRequest`])
//! from. The CLI turns its arguments into a request with
//! [`args::ObserveArgs::to_request`], merges the nodes' answers with
//! [`relay`] and prints them with [`print`].
//!
//! Flows leave `uuid` empty: set it where flows get their identity (the
//! agent, e.g. `uuid::Uuid::new_v4()`), if wanted.

pub mod args;
pub mod decode;
pub mod dns;
pub mod filter;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod print;
pub mod relay;
pub mod store;

pub use args::{ArgsError, FilterArg, FilterFlag, ObserveArgs};
pub use decode::{Clock, Decoder, DnsL7, EndpointInfo, Resolver, ServiceRef, StaticResolver};
pub use filter::{CompiledRequest, FilterError, FlowFilter, FlowRequest};
pub use metrics::FlowMetrics;
pub use model::{Flow, FlowResponse, Verdict};
pub use print::{OutputFormat, PrintOptions, Printer};
pub use relay::{FollowMerger, NodeStatus, merge_by_time};
pub use store::FlowStore;

/// A flow for tests: 10.0.1.5:43210 -> 10.0.2.7:8080 over TCP, FORWARDED,
/// at `time`, with TCP flags `flags`; tests set the rest.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::model::{Flow, Ip, IpVersion, Layer4, Tcp, TcpFlags, Verdict};

    pub(crate) fn tcp_flow(time: &str, flags: u8) -> Flow {
        Flow {
            time: time.parse().expect("a test time"),
            verdict: Verdict::Forwarded,
            ip: Some(Ip {
                source: "10.0.1.5".into(),
                destination: "10.0.2.7".into(),
                ip_version: IpVersion::V4,
                encrypted: false,
            }),
            l4: Some(Layer4::Tcp(Tcp {
                source_port: 43210,
                destination_port: 8080,
                flags: Some(TcpFlags::from_bits(flags)),
            })),
            ..Flow::default()
        }
    }
}
