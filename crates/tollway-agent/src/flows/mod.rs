//! The node's flow service (Hubble's observer, in the agent): a reader of
//! the datapath's event ring that decodes every event into a flow
//! ([`tollway_flow::decode`]), enriched from the store's view of the
//! cluster ([`resolver`]), keeps the last flows in a ring
//! ([`tollway_flow::store::FlowStore`]) and counts them in Hubble's
//! metrics; and a server ([`server`]) that answers queries and follows
//! over HTTP on a unix socket, and serves the metrics on TCP.

pub mod client;
pub mod relay;
pub mod resolver;
pub mod server;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tollway_abi::Event;
use tollway_datapath::lb::{EventMaps, aggregation_name};
use tollway_flow::decode::{Clock, Decoder, StaticResolver};
use tollway_flow::metrics::FlowMetrics;
use tollway_flow::store::FlowStore;

use crate::error::AgentError;

/// How long a flow may wait in the datapath's ring before the reader
/// looks (the datapath wakes it earlier when the ring fills up).
const READ_INTERVAL: Duration = Duration::from_millis(100);

/// Hubble's default ring of flows.
pub const DEFAULT_BUFFER: usize = 4095;
/// The port of Hubble's metrics server.
pub const METRICS_PORT: u16 = 9965;
/// The agent's health port (`/healthz`, `/readyz`; Cilium's is 9879).
pub const HEALTH_PORT: u16 = 9879;
/// Hubble's name for events the datapath's ring had no room for.
pub const LOST_SOURCE_DATAPATH: &str = "PERF_EVENT_RING_BUFFER";
/// Hubble's name for flows the flow ring overwrote before a reader saw them.
pub const LOST_SOURCE_RING: &str = "HUBBLE_RING_BUFFER";

/// How the node observes flows (`tollway agent` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// Datapath events on at all.
    pub enabled: bool,
    /// `TW_AGG_*`.
    pub aggregation: u32,
    /// Flows kept.
    pub buffer: usize,
    /// Where the metrics are served (`None`: not at all).
    pub metrics_port: Option<u16>,
    /// Where `/healthz` and `/readyz` are served on 127.0.0.1 (`None`: not
    /// at all).
    pub health_port: Option<u16>,
    /// The flow API on TCP too (`--flows-listen`, for a relay), besides
    /// the unix socket.
    pub listen: Option<String>,
    /// The API on one more unix socket (`--api-socket`): the one the CNI
    /// plugin's STATUS checks for (`agentSocket` in its configuration).
    pub api_socket: Option<PathBuf>,
}

impl Default for FlowConfig {
    fn default() -> FlowConfig {
        FlowConfig {
            enabled: true,
            aggregation: tollway_abi::TW_AGG_MEDIUM,
            buffer: DEFAULT_BUFFER,
            metrics_port: Some(METRICS_PORT),
            health_port: Some(HEALTH_PORT),
            listen: None,
            api_socket: None,
        }
    }
}

/// What `tollway status` shows of flows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowsReport {
    /// Events on.
    pub enabled: bool,
    /// Monitor aggregation level.
    pub aggregation: String,
    /// Flows the ring keeps.
    pub capacity: usize,
    /// Flows in it now.
    pub stored: usize,
    /// Flows seen since the agent started.
    pub seen: u64,
    /// Events the datapath's ring had no room for (since it was created).
    pub lost_events: u64,
    /// Events that decoded to nothing (unknown types, short records).
    pub undecodable: u64,
    /// The flow API (HTTP over this unix socket).
    pub socket: String,
    /// The metrics address, if served.
    pub metrics: Option<String>,
}

/// State shared by the reader, the server and the agent's loop.
pub struct Shared {
    /// The flows.
    pub store: FlowStore,
    /// The cluster as the decoder sees it; replaced whole.
    pub resolver: RwLock<Arc<StaticResolver>>,
    /// Hubble's metrics.
    pub metrics: FlowMetrics,
    lost: AtomicU64,
    undecodable: AtomicU64,
    /// The agent has done its first full sync (`/readyz`).
    ready: std::sync::atomic::AtomicBool,
    node: String,
}

impl Shared {
    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The metrics in Prometheus' text format.
    pub fn encode_metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// The running flow service of a node.
pub struct FlowService {
    shared: Arc<Shared>,
    config: FlowConfig,
    socket: PathBuf,
    metrics_addr: Option<String>,
}

/// The flow API's socket of a node (under its directory in the lab).
pub fn socket_path(node_dir: &Path) -> PathBuf {
    node_dir.join("flows.sock")
}

impl FlowService {
    /// Turns the datapath's events on (or off) as configured, and starts the
    /// reader and the server threads.
    pub fn start(
        node: &str,
        pin_dir: &Path,
        node_dir: &Path,
        config: FlowConfig,
    ) -> Result<FlowService, AgentError> {
        let mut maps = EventMaps::open(pin_dir)?;
        maps.set_config(config.enabled, config.aggregation)?;
        let ring = EventMaps::ring(pin_dir)?;
        let shared = Arc::new(Shared {
            store: FlowStore::new(config.buffer),
            resolver: RwLock::new(Arc::new(StaticResolver::new())),
            metrics: FlowMetrics::new(node),
            lost: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            ready: std::sync::atomic::AtomicBool::new(false),
            node: node.to_string(),
        });
        let reader_shared = shared.clone();
        std::thread::Builder::new()
            .name("flow-reader".into())
            .spawn(move || read_events(ring, maps, &reader_shared))
            .map_err(|source| AgentError::Thread {
                what: "flow reader",
                source,
            })?;
        let socket = socket_path(node_dir);
        let metrics_addr = config.metrics_port.map(|p| format!("0.0.0.0:{p}"));
        let health_addr = config.health_port.map(|p| format!("127.0.0.1:{p}"));
        server::spawn(
            shared.clone(),
            socket.clone(),
            metrics_addr.clone(),
            health_addr,
            config.listen.clone(),
            config.api_socket.clone(),
        )?;
        Ok(FlowService {
            shared,
            config,
            socket,
            metrics_addr,
        })
    }

    /// Says the agent is ready (its first full sync is done): `/readyz`
    /// answers 200 from now on.
    pub fn set_ready(&self) {
        self.shared.ready.store(true, Ordering::Relaxed);
    }

    /// Replaces the decoder's view of the cluster.
    pub fn set_resolver(&self, resolver: StaticResolver) {
        let new = Arc::new(resolver);
        match self.shared.resolver.write() {
            Ok(mut r) => *r = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// The report for the status file.
    pub fn report(&self) -> FlowsReport {
        FlowsReport {
            enabled: self.config.enabled,
            aggregation: aggregation_name(self.config.aggregation).into(),
            capacity: self.shared.store.capacity(),
            stored: self.shared.store.len(),
            seen: self.shared.store.flows_seen(),
            lost_events: self.shared.lost.load(Ordering::Relaxed),
            undecodable: self.shared.undecodable.load(Ordering::Relaxed),
            socket: self.socket.display().to_string(),
            metrics: self.metrics_addr.clone(),
        }
    }
}

fn clock_now() -> Clock {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono = if rc == 0 {
        (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
    } else {
        0
    };
    Clock::new(jiff::Timestamp::now(), mono)
}

/// Flow uuids (v4 format) without a system call per flow: one random seed
/// from the OS, then a xorshift generator (ids need to be unique, not
/// secret).
struct FlowIds(u64, u64);

impl FlowIds {
    fn new() -> FlowIds {
        let seed = uuid::Uuid::new_v4().as_u64_pair();
        FlowIds(seed.0 | 1, seed.1 | 1)
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift128+
        let (mut a, b) = (self.0, self.1);
        self.0 = b;
        a ^= a << 23;
        a ^= a >> 17;
        a ^= b ^ (b >> 26);
        self.1 = a;
        a.wrapping_add(b)
    }

    fn next_uuid(&mut self) -> String {
        let hi = u128::from(self.next_u64()) << 64;
        let bytes = (hi | u128::from(self.next_u64())).to_be_bytes();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// Waits up to `timeout` for the ring to have data.
fn wait_readable(fd: i32, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd; the fd is the ring's, open for the
    // reader's whole life.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// The reader: drains the ring in batches, decodes, stores and counts.
fn read_events(mut ring: aya::maps::RingBuf<aya::maps::MapData>, maps: EventMaps, shared: &Shared) {
    let fd = ring.as_raw_fd();
    let mut decoder = Decoder::new(clock_now());
    let mut ids = FlowIds::new();
    let mut clock_at = Instant::now();
    let mut lost_at = Instant::now() - Duration::from_secs(10);
    loop {
        // The datapath wakes the reader only once the ring holds
        // TW_EVENTS_WAKEUP_BYTES (a wakeup per event costs the sender an
        // interrupt); below that, this timeout bounds a flow's delay.
        wait_readable(fd, READ_INTERVAL);
        if clock_at.elapsed() > Duration::from_secs(10) {
            // The wall clock may be stepped: re-read both clocks.
            decoder.clock = clock_now();
            clock_at = Instant::now();
        }
        let resolver = match shared.resolver.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut batch = 0;
        while let Some(item) = ring.next() {
            let flow = Event::parse(&item)
                .and_then(|(ev, payload)| decoder.decode(&ev, payload, &*resolver, &shared.node));
            drop(item);
            match flow {
                Some(mut flow) => {
                    flow.uuid = ids.next_uuid();
                    shared.metrics.record(&flow);
                    shared.store.push(flow);
                }
                None => {
                    shared.undecodable.fetch_add(1, Ordering::Relaxed);
                }
            }
            batch += 1;
            if batch >= 8192 {
                break; // pick up a newer resolver now and then
            }
        }
        if lost_at.elapsed() >= Duration::from_secs(1) {
            if let Ok(n) = maps.lost() {
                shared.lost.store(n, Ordering::Relaxed);
                shared.metrics.set_lost_events(LOST_SOURCE_DATAPATH, n);
            }
            lost_at = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_ids_are_v4_uuids_and_distinct() {
        let mut ids = FlowIds::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = ids.next_uuid();
            let u = uuid::Uuid::parse_str(&id).expect("a uuid");
            assert_eq!(u.get_version_num(), 4);
            assert!(seen.insert(id));
        }
    }
}
