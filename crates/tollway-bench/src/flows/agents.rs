//! The knobs and gauges of the flow pipeline that the benchmark uses: the
//! datapath's event config of both nodes (switched between the modes and
//! restored at the end), each agent's flow counters (`GET /v1/status` on
//! its `flows.sock`), the datapath's lost-event counter, and the CPU time
//! of each agent's `flow-reader` thread.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tollway_abi::{EventsConfig, TW_AGG_MEDIUM, TW_AGG_NONE};
use tollway_datapath::lb::{EventMaps, aggregation_name};
use tollway_lab::LabPaths;

use super::report::{NodeActivity, NodeEventsConfig};
use crate::error::BenchError;
use crate::harness::{Lab, NODES};

/// What the datapath reports, in one measured state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    /// `enabled = 0`: no event at all (the baseline).
    Off,
    /// On, aggregation medium (the agent's default).
    Medium,
    /// On, aggregation none: every packet at every observation point.
    None,
}

impl EventMode {
    /// Every mode, the baseline first.
    pub const ALL: [EventMode; 3] = [EventMode::Off, EventMode::Medium, EventMode::None];

    /// `off`, `medium`, `none`.
    pub fn key(self) -> &'static str {
        match self {
            EventMode::Off => "off",
            EventMode::Medium => "medium",
            EventMode::None => "none",
        }
    }

    /// For the tables.
    pub fn label(self) -> &'static str {
        match self {
            EventMode::Off => "events off",
            EventMode::Medium => "on, medium (default)",
            EventMode::None => "on, none (every packet)",
        }
    }

    /// `(enabled, level)` of `tw_events_cfg`. Off keeps the default level.
    pub fn config(self) -> (bool, u32) {
        match self {
            EventMode::Off => (false, TW_AGG_MEDIUM),
            EventMode::Medium => (true, TW_AGG_MEDIUM),
            EventMode::None => (true, TW_AGG_NONE),
        }
    }
}

/// Round `round`'s order of `modes`: rotated by one each round, so that
/// every mode comes first, second and third alike.
pub fn round_order<T: Copy>(modes: &[T], round: usize) -> Vec<T> {
    let n = modes.len();
    (0..n).map(|i| modes[(round + i) % n.max(1)]).collect()
}

/// Both nodes' event maps, with the config each had when opened; that
/// config is written back by [`EventSwitch::restore`], or on drop.
pub struct EventSwitch {
    nodes: Vec<(String, EventMaps, EventsConfig)>,
    restored: bool,
}

impl EventSwitch {
    /// Opens both nodes' event maps and remembers their config.
    pub fn open(paths: &LabPaths) -> Result<EventSwitch, BenchError> {
        let mut nodes = Vec::new();
        for n in NODES {
            let m = EventMaps::open(&paths.bpf_node_dir(n))
                .map_err(|e| BenchError::Lab(format!("opening the event maps of {n}: {e}")))?;
            let saved = m.config()?;
            nodes.push((n.to_string(), m, saved));
        }
        Ok(EventSwitch {
            nodes,
            restored: false,
        })
    }

    /// The configs found when opened.
    pub fn saved(&self) -> Vec<NodeEventsConfig> {
        self.nodes
            .iter()
            .map(|(n, _, c)| NodeEventsConfig {
                node: n.clone(),
                enabled: c.enabled != 0,
                level: aggregation_name(c.level).into(),
            })
            .collect()
    }

    /// Puts both nodes in `mode` and reads the config back.
    pub fn set(&mut self, mode: EventMode) -> Result<(), BenchError> {
        let (enabled, level) = mode.config();
        self.restored = false;
        for (n, m, _) in &mut self.nodes {
            m.set_config(enabled, level)?;
            let c = m.config()?;
            if (c.enabled != 0) != enabled || c.level != level {
                return Err(BenchError::Lab(format!(
                    "{n}: tw_events_cfg reads back enabled={} level={} after writing {}",
                    c.enabled,
                    c.level,
                    mode.key()
                )));
            }
        }
        Ok(())
    }

    /// Writes the saved configs back; true when they read back equal.
    pub fn restore(&mut self) -> bool {
        let mut ok = true;
        for (n, m, saved) in &mut self.nodes {
            let back = m
                .set_config(saved.enabled != 0, saved.level)
                .and_then(|()| m.config());
            match back {
                Ok(c) if c.enabled == saved.enabled && c.level == saved.level => {}
                Ok(_) => ok = false,
                Err(e) => {
                    eprintln!("warning: restoring the event config of {n}: {e}");
                    ok = false;
                }
            }
        }
        self.restored = ok;
        ok
    }

    /// `tw_events_lost` of `node` (summed over CPUs).
    pub fn lost(&self, node: &str) -> Result<u64, BenchError> {
        let (_, m, _) = self
            .nodes
            .iter()
            .find(|(n, _, _)| n == node)
            .ok_or_else(|| BenchError::Lab(format!("no event maps for {node}")))?;
        Ok(m.lost()?)
    }
}

impl Drop for EventSwitch {
    fn drop(&mut self) {
        if !self.restored {
            self.restore();
        }
    }
}

/// What an agent's `GET /v1/status` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FlowStatus {
    /// Flows decoded and stored since the agent started.
    pub seen: u64,
    /// What the agent last read of `tw_events_lost` (every second).
    #[serde(rename = "lostEvents", default)]
    pub lost_events: u64,
    /// Flows in the ring now.
    #[serde(default)]
    pub stored: u64,
    /// The ring's size.
    #[serde(default)]
    pub capacity: u64,
}

/// How long an agent may take to answer `GET /v1/status` (under a storm
/// it can take seconds).
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /v1/status` on the flow API's unix socket `socket` (HTTP/1.1,
/// one request, `Connection: close`).
pub fn flow_status(socket: &Path) -> Result<FlowStatus, BenchError> {
    let what = || socket.display().to_string();
    let mut s =
        UnixStream::connect(socket).map_err(|e| BenchError::io("connecting to", what(), e))?;
    let timeout = Some(STATUS_TIMEOUT);
    s.set_read_timeout(timeout)
        .and_then(|()| s.set_write_timeout(timeout))
        .map_err(|e| BenchError::io("setting timeouts on", what(), e))?;
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: tollway-flows\r\nConnection: close\r\n\r\n")
        .map_err(|e| BenchError::io("writing to", what(), e))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| BenchError::io("reading from", what(), e))?;
    parse_status_response(&buf).map_err(|reason| BenchError::Output {
        command: format!("GET /v1/status on {}", what()),
        reason,
        output: crate::harness::head(&String::from_utf8_lossy(&buf), 300),
    })
}

/// The JSON body of a `200` HTTP/1.1 response with a `Content-Length`.
fn parse_status_response(buf: &[u8]) -> Result<FlowStatus, String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the headers")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("status {status:?}"));
    }
    serde_json::from_slice(&buf[end + 4..]).map_err(|e| e.to_string())
}

/// The `schedstat` of the `flow-reader` thread of process `pid`.
pub fn find_reader_thread(pid: u32) -> Option<PathBuf> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    std::fs::read_dir(&dir).ok()?.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        (comm.trim() == "flow-reader").then(|| t.path().join("schedstat"))
    })
}

/// Pins every thread of process `pid` to CPU `cpu` (threads it starts
/// later inherit it from theirs); returns how many were pinned.
pub fn pin_process(pid: u32, cpu: usize) -> Result<usize, BenchError> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .map_err(|e| BenchError::io("pinning to", format!("CPU {cpu}"), e.into()))?;
    let dir = format!("/proc/{pid}/task");
    let mut n = 0;
    for t in std::fs::read_dir(&dir).map_err(|e| BenchError::io("listing", dir.clone(), e))? {
        let Some(tid) = t
            .ok()
            .and_then(|t| t.file_name().to_str()?.parse::<i32>().ok())
        else {
            continue;
        };
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set)
            .map_err(|e| BenchError::io("pinning", format!("thread {tid} of {pid}"), e.into()))?;
        n += 1;
    }
    Ok(n)
}

/// Nanoseconds on a CPU, and runnable but waiting for one, from a
/// `schedstat` (its first two fields).
pub fn cpu_ns(schedstat: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(schedstat).ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// A network namespace's UDP counters (`Udp:` of `/proc/net/snmp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpCounters {
    /// Datagrams delivered to (read by) sockets.
    pub in_datagrams: u64,
    /// Datagrams to a port nobody listens on.
    pub no_ports: u64,
    /// Datagrams dropped on receipt (full socket buffers included).
    pub in_errors: u64,
    /// Datagrams sent.
    pub out_datagrams: u64,
    /// Datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// Sends refused for a full send buffer.
    pub sndbuf_errors: u64,
}

impl UdpCounters {
    /// Datagrams that reached the UDP layer (read, dropped there, or to
    /// no port): they passed the datapath.
    pub fn reached(&self) -> u64 {
        self.in_datagrams + self.in_errors + self.no_ports
    }

    /// Datagrams the sockets handed to the stack: sent, or dropped on the
    /// way out (a full device queue counts as `SndbufErrors`, and the
    /// application is not told).
    pub fn sent(&self) -> u64 {
        self.out_datagrams + self.sndbuf_errors
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_datagrams: self.in_datagrams.saturating_sub(earlier.in_datagrams),
            no_ports: self.no_ports.saturating_sub(earlier.no_ports),
            in_errors: self.in_errors.saturating_sub(earlier.in_errors),
            out_datagrams: self.out_datagrams.saturating_sub(earlier.out_datagrams),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }
}

/// The `Udp:` counters of a `/proc/net/snmp` text.
pub fn parse_snmp_udp(text: &str) -> Option<UdpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp: "));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let get = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .and_then(|i| values.get(i).copied())
    };
    Some(UdpCounters {
        in_datagrams: get("InDatagrams")?,
        no_ports: get("NoPorts")?,
        in_errors: get("InErrors")?,
        out_datagrams: get("OutDatagrams")?,
        rcvbuf_errors: get("RcvbufErrors").unwrap_or(0),
        sndbuf_errors: get("SndbufErrors").unwrap_or(0),
    })
}

/// The UDP counters of network namespace `netns` (a name under
/// /var/run/netns), read by a thread that enters it (nothing else
/// changes namespace).
pub fn udp_counters(netns: &str) -> Result<UdpCounters, BenchError> {
    let path = format!("/var/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<UdpCounters, BenchError> {
            let f = std::fs::File::open(&path)
                .map_err(|e| BenchError::io("opening", path.clone(), e))?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| BenchError::io("entering", path.clone(), std::io::Error::from(e)))?;
            let snmp = "/proc/thread-self/net/snmp";
            let text = std::fs::read_to_string(snmp)
                .map_err(|e| BenchError::io("reading", format!("{snmp} in {netns}"), e))?;
            parse_snmp_udp(&text).ok_or_else(|| BenchError::Output {
                command: format!("{snmp} in {netns}"),
                reason: "no Udp: counters".into(),
                output: crate::harness::head(&text, 300),
            })
        })
        .join()
        .unwrap_or_else(|_| Err(BenchError::Lab("reading UDP counters panicked".into())))
    })
}

/// Packets the CPUs' input backlogs dropped (`/proc/net/softnet_stat`,
/// second column, summed; the whole machine).
pub fn backlog_drops() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/softnet_stat").ok()?;
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
        })
        .sum()
}

/// CPU time, for telling the run's own work from the machine's other
/// work: the machine's busy time (`/proc/stat`), the lab's cgroup's
/// (`cpu.stat` `usage_usec`: pods and what is exec'd in them, agents,
/// daemon) and this process's (not the short `tollway` commands it runs
/// outside the lab's cgroup).
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    at: Instant,
    machine_s: Option<f64>,
    lab_s: Option<f64>,
    own_s: Option<f64>,
}

impl CpuClock {
    /// Now, for the lab whose cgroup is `cgroup`.
    pub fn read(cgroup: Option<&Path>) -> CpuClock {
        let tck = 100.0; // USER_HZ on Linux
        let machine_s = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
            let f: Vec<f64> = t
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            let busy = [0, 1, 2, 5, 6, 7]
                .iter()
                .map(|i| f.get(*i).copied().unwrap_or(0.0))
                .sum::<f64>();
            Some(busy / tck)
        });
        let lab_s = cgroup.and_then(|c| {
            std::fs::read_to_string(c.join("cpu.stat"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))?
                .trim()
                .parse::<f64>()
                .ok()
                .map(|us| us / 1e6)
        });
        let own_s = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| {
                // After the command name, which may contain spaces.
                let rest = &t[t.rfind(')')? + 2..];
                let f: Vec<f64> = rest
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // utime and stime: fields 14 and 15, here 11 and 12. Not
                // the children's: the clients are counted in the lab's
                // cgroup, and again in their `tollway lab exec` parents'.
                Some(
                    (11..=12)
                        .map(|i| f.get(i).copied().unwrap_or(0.0))
                        .sum::<f64>()
                        / tck,
                )
            });
        CpuClock {
            at: Instant::now(),
            machine_s,
            lab_s,
            own_s,
        }
    }

    /// From `self` to `later`: (wall seconds, machine busy CPU-s, the
    /// run's own CPU-s).
    pub fn since(&self, later: &CpuClock) -> (f64, Option<f64>, Option<f64>) {
        let d = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0));
        let own = match (d(self.lab_s, later.lab_s), d(self.own_s, later.own_s)) {
            (Some(l), Some(o)) => Some(l + o),
            _ => None,
        };
        (
            later.at.duration_since(self.at).as_secs_f64(),
            d(self.machine_s, later.machine_s),
            own,
        )
    }
}

/// One node's gauges.
pub struct NodeGauges {
    /// The node.
    pub node: String,
    /// Its `flows.sock`.
    pub socket: PathBuf,
    /// Its agent's flow reader's `schedstat`, if found.
    pub reader: Option<PathBuf>,
    /// Its agent's PID.
    pub pid: u32,
}

/// A reading of one node's gauges.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeReading {
    /// The agent's `seen`.
    pub seen: u64,
    /// `tw_events_lost`, read from the map.
    pub lost: u64,
    /// The flow reader's time on a CPU and waiting for one (runnable), ns.
    pub reader_ns: Option<(u64, u64)>,
}

/// A reading of every node's gauges.
#[derive(Debug, Clone)]
pub struct Reading {
    /// When.
    pub at: Instant,
    /// Per node, in [`Gauges::nodes`]' order.
    pub nodes: Vec<NodeReading>,
}

/// Every node's gauges.
pub struct Gauges {
    /// Per node.
    pub nodes: Vec<NodeGauges>,
}

impl Gauges {
    /// Both nodes of `lab` (their agents must be up).
    pub(crate) fn new(lab: &Lab) -> Result<Gauges, BenchError> {
        let mut nodes = Vec::new();
        for n in NODES {
            let st = lab
                .agent(n)
                .ok_or_else(|| BenchError::Lab(format!("{n}: no agent status")))?;
            let socket = tollway_agent::flows::socket_path(&lab.paths.node_dir(n));
            nodes.push(NodeGauges {
                node: n.to_string(),
                socket,
                reader: find_reader_thread(st.pid),
                pid: st.pid,
            });
        }
        Ok(Gauges { nodes })
    }

    /// Reads one node.
    pub fn read_node(&self, i: usize, sw: &EventSwitch) -> Result<NodeReading, BenchError> {
        Ok(self.read_node_timed(i, sw)?.0)
    }

    /// Reads one node; also when (right after the agent's answer, which
    /// is when it read `seen`) and how long the agent took to answer, ms.
    pub fn read_node_timed(
        &self,
        i: usize,
        sw: &EventSwitch,
    ) -> Result<(NodeReading, Instant, f64), BenchError> {
        let g = &self.nodes[i];
        let t0 = Instant::now();
        let st = flow_status(&g.socket)?;
        let at = Instant::now();
        let r = NodeReading {
            seen: st.seen,
            lost: sw.lost(&g.node)?,
            reader_ns: g.reader.as_deref().and_then(cpu_ns),
        };
        Ok((r, at, (at - t0).as_secs_f64() * 1000.0))
    }

    /// Reads every node.
    pub fn read(&self, sw: &EventSwitch) -> Result<Reading, BenchError> {
        let at = Instant::now();
        let nodes = (0..self.nodes.len())
            .map(|i| self.read_node(i, sw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Reading { at, nodes })
    }
}

/// A node's activity, summed over windows.
#[derive(Debug, Clone, Default)]
pub struct ActivityAcc {
    seconds: f64,
    flows: u64,
    lost: u64,
    reader_ns: Option<(u64, u64)>,
    reader_missing: bool,
}

impl ActivityAcc {
    /// Adds the window from `a` to `b`.
    pub fn add(&mut self, a: &NodeReading, b: &NodeReading, seconds: f64) {
        self.seconds += seconds;
        self.flows += b.seen.saturating_sub(a.seen);
        self.lost += b.lost.saturating_sub(a.lost);
        match (a.reader_ns, b.reader_ns) {
            (Some(x), Some(y)) => {
                let acc = self.reader_ns.get_or_insert((0, 0));
                acc.0 += y.0.saturating_sub(x.0);
                acc.1 += y.1.saturating_sub(x.1);
            }
            _ => self.reader_missing = true,
        }
    }

    /// The total as a report.
    pub fn activity(&self, node: &str) -> NodeActivity {
        let per_s = |x: f64| {
            if self.seconds > 0.0 {
                (x / self.seconds * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let (cpu_s, wait_s) = if self.reader_missing {
            (None, None)
        } else {
            (
                self.reader_ns.map(|ns| ns.0 as f64 / 1e9),
                self.reader_ns.map(|ns| ns.1 as f64 / 1e9),
            )
        };
        NodeActivity {
            node: node.into(),
            seconds: (self.seconds * 1000.0).round() / 1000.0,
            flows: self.flows,
            lost_events: self.lost,
            reader_cpu_s: cpu_s.map(|s| (s * 1000.0).round() / 1000.0),
            flows_per_s: per_s(self.flows as f64),
            lost_per_s: per_s(self.lost as f64),
            reader_cpu_pct: cpu_s.map(|s| per_s(s * 100.0)),
            reader_wait_pct: wait_s.map(|s| per_s(s * 100.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_the_modes() {
        let m = EventMode::ALL;
        assert_eq!(round_order(&m, 0), m.to_vec());
        assert_eq!(
            round_order(&m, 1),
            vec![EventMode::Medium, EventMode::None, EventMode::Off]
        );
        assert_eq!(round_order(&m, 3), m.to_vec());
        let firsts: Vec<_> = (0..3).map(|r| round_order(&m, r)[0]).collect();
        assert_eq!(firsts, m.to_vec());
    }

    #[test]
    fn modes_map_to_the_config() {
        assert!(!EventMode::Off.config().0);
        assert_eq!(EventMode::Medium.config(), (true, TW_AGG_MEDIUM));
        assert_eq!(EventMode::None.config(), (true, TW_AGG_NONE));
        assert_eq!(aggregation_name(EventMode::None.config().1), "none");
    }

    #[test]
    fn status_responses_parse() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 80\r\n\r\n{\"node\":\"node-1\",\"capacity\":4095,\"stored\":12,\"seen\":345,\"lostEvents\":6}";
        let s = parse_status_response(ok).expect("parse");
        assert_eq!(
            s,
            FlowStatus {
                seen: 345,
                lost_events: 6,
                stored: 12,
                capacity: 4095
            }
        );
        assert!(parse_status_response(b"HTTP/1.1 404 Not Found\r\n\r\n{}").is_err());
        assert!(parse_status_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn activity_sums_windows_and_tolerates_a_missing_reader() {
        let r = |seen, lost, ns| NodeReading {
            seen,
            lost,
            reader_ns: ns,
        };
        let mut a = ActivityAcc::default();
        a.add(
            &r(100, 0, Some((0, 0))),
            &r(1100, 10, Some((500_000_000, 100_000_000))),
            1.0,
        );
        a.add(
            &r(2000, 10, Some((1_000_000_000, 0))),
            &r(3000, 30, Some((1_500_000_000, 100_000_000))),
            1.0,
        );
        let x = a.activity("node-1");
        assert_eq!((x.flows, x.lost_events), (2000, 30));
        assert_eq!(x.flows_per_s, 1000.0);
        assert_eq!(x.lost_per_s, 15.0);
        assert_eq!(x.reader_cpu_pct, Some(50.0));
        assert_eq!(x.reader_wait_pct, Some(10.0));
        a.add(&r(0, 0, None), &r(0, 0, Some((1, 1))), 1.0);
        assert_eq!(a.activity("node-1").reader_cpu_pct, None);
    }

    #[test]
    fn snmp_udp_counters_parse() {
        let t = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 1620 119 7 1781 5 2 0 0 0\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        let c = parse_snmp_udp(t).expect("udp");
        assert_eq!(c.in_datagrams, 1620);
        assert_eq!(c.reached(), 1620 + 119 + 7);
        assert_eq!(
            (c.out_datagrams, c.rcvbuf_errors, c.sndbuf_errors),
            (1781, 5, 2)
        );
        let later = UdpCounters {
            in_datagrams: 1700,
            ..c
        };
        assert_eq!(later.since(&c).in_datagrams, 80);
        assert_eq!(later.since(&c).out_datagrams, 0);
        assert!(parse_snmp_udp("Ip: x\n").is_none());
        assert!(backlog_drops().is_some() || !Path::new("/proc/net/softnet_stat").exists());
    }

    #[test]
    fn this_process_has_a_schedstat() {
        let me = std::process::id();
        let p = PathBuf::from(format!("/proc/{me}/schedstat"));
        assert!(cpu_ns(&p).is_some() || !p.exists());
        assert!(find_reader_thread(me).is_none());
    }
}
