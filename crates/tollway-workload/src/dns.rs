//! `tollway workload dns` and `tollway workload dig`: the cluster's DNS server (the lab's
//! kube-dns) and a one-shot client.
//!
//! The server is authoritative for `cluster.local.` and `svc.`, and answers:
//!
//! - `A <svc>.<ns>.svc.cluster.local.` (and `<svc>.<ns>.svc.`): the Service's cluster IP,
//!   or for a headless Service the addresses of its ready pods, with TTL [`TTL`];
//! - another type of such a name (`AAAA`, `SRV`, ...), a namespace
//!   (`<ns>.svc.cluster.local.`), `svc.cluster.local.` or an apex: NOERROR without answer;
//!   `SOA` of an apex: its SOA;
//! - any other name in those zones: NXDOMAIN (negative answers carry the zone's SOA);
//! - names outside them, other classes: REFUSED (it does not recurse); other opcodes:
//!   NOTIMP.
//!
//! Pieces, from pure to I/O:
//!
//! - [`Zone`]: the names of one store [`Snapshot`](tollway_state::Snapshot)
//!   ([`Zone::from_snapshot`]) and [`Zone::resolve`];
//! - [`answer`] / [`respond`]: a request message (or raw packet) to its answer;
//! - [`serve_dns`]: UDP (and TCP) listeners answering from a [`SharedZone`];
//! - [`follow_store`]: replaces the shared zone when the store's version changes;
//! - [`serve_store`]: all of it until SIGTERM, for the CLI;
//! - [`query`]: the client.

mod client;
mod server;
mod wire;
mod zone;

use std::io;
use std::net::SocketAddr;

pub use client::{
    DigArgs, DigFormat, DnsAnswer, DnsRecord, QueryOptions, parse_record_type, query, query_with,
    rcode_name,
};
pub use hickory_proto::op::ResponseCode;
pub use hickory_proto::rr::RecordType;
pub use server::{
    DnsServeArgs, follow_store, load_zone, reload_if_changed, serve_dns, serve_store,
};
pub use wire::{EDNS_PAYLOAD, Transport, answer, query_message, respond, soa_record};
pub use zone::{Apex, CLUSTER_DOMAIN, Resolution, ServiceEntry, SharedZone, TTL, Zone};

use crate::WorkloadError;

/// Why the DNS server or client failed as a whole (a single bad request is answered or
/// dropped, never an error).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A listener could not be bound (address in use, permission denied, ...).
    #[error("cannot bind the DNS {protocol} listener on {addr}: {source}")]
    Bind {
        /// `"udp"` or `"tcp"`.
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// A bound socket could not be handed to the async runtime.
    #[error("cannot serve on the DNS {protocol} socket: {source}")]
    Socket {
        /// `"udp"` or `"tcp"`.
        protocol: &'static str,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The store could not be read.
    #[error("reading the store: {0}")]
    State(#[from] tollway_state::StateError),
    /// The signal handlers could not be installed.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The name to look up is not a domain name.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The query could not be encoded.
    #[error("cannot encode the query for {name:?}: {reason}")]
    Encode {
        /// The name asked.
        name: String,
        /// Why.
        reason: String,
    },
    /// A socket operation of the client failed (ICMP port unreachable shows as
    /// "connection refused").
    #[error("{action} {server}: {source}")]
    Io {
        /// `"sending to"`, `"receiving from"`, ...
        action: &'static str,
        /// The server.
        server: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// No answer within the timeout.
    #[error("no answer from {server} within {timeout_ms} ms")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The server sent something that is not a DNS message (over TCP).
    #[error("bad answer from {server}: {reason}")]
    BadAnswer {
        /// The server.
        server: SocketAddr,
        /// What is wrong with it.
        reason: String,
    },
    /// The answer could not be rendered as JSON.
    #[error("cannot serialize the answer: {source}")]
    Serialize {
        /// The serde_json error.
        #[source]
        source: serde_json::Error,
    },
}

/// `tollway workload dig`: one query as the arguments say.
pub fn dig(args: &DigArgs) -> Result<DnsAnswer, DnsError> {
    query_with(
        args.server,
        &args.name,
        args.qtype,
        QueryOptions {
            timeout: std::time::Duration::from_millis(args.timeout_ms),
            tcp: args.tcp,
        },
    )
}
