//! An event storm: ~100k packets/s of DNS-port datagrams (which the
//! datapath always reports, with their payload) between two pods for a few
//! seconds, first with the agent reading the ring, then with the agent
//! stopped so that the ring fills up. The datapath must deliver every
//! datagram both times, and the lost events must be counted and shown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Lab;
use serde_json::Value;

const RATE: u64 = 100_000;

fn netns(lab: &Lab, ns: &str, pod: &str) -> PathBuf {
    PathBuf::from(format!("/run/netns/tw_{}_pod_{ns}_{pod}", lab.name))
}

/// Counts datagrams arriving at `port` in the pod's namespace until `stop`.
fn receiver(
    ns: PathBuf,
    port: u16,
    count: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        tollway_datapath::netns::run_in_netns(&ns, || {
            let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind the receiver");
            let _ = nix::sys::socket::setsockopt(
                &s,
                nix::sys::socket::sockopt::RcvBufForce,
                &(32 << 20),
            );
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            ready.store(true, Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::SeqCst) {
                if s.recv(&mut buf).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Drain what is queued.
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            while s.recv(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
        .expect("enter the receiver's namespace");
    })
}

/// Sends at RATE per second for `secs` from the pod's namespace; returns
/// how many were sent and the rate achieved.
fn storm(ns: PathBuf, to: SocketAddr, secs: u64) -> (u64, f64) {
    std::thread::spawn(move || {
        tollway_datapath::netns::run_in_netns(&ns, || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect(to).unwrap();
            let payload = [0x5au8; 64];
            let started = Instant::now();
            let mut sent = 0u64;
            let total = RATE * secs;
            while sent < total {
                // Paced in batches of 1,000 (1 ms at the target rate).
                let due = Duration::from_micros(sent * 1_000_000 / RATE);
                let now = started.elapsed();
                if now < due {
                    std::thread::sleep(due - now);
                }
                for _ in 0..1000 {
                    if s.send(&payload).is_ok() {
                        sent += 1;
                    }
                }
            }
            (sent, sent as f64 / started.elapsed().as_secs_f64())
        })
        .expect("enter the sender's namespace")
    })
    .join()
    .unwrap()
}

fn flows_report(lab: &Lab, node: &str) -> Value {
    lab.json(&["status", "--node", node, "-o", "json"])["agent"]["flows"].clone()
}

fn round(
    lab: &Lab,
    what: &str,
    src: &Path,
    dst: &Path,
    to: SocketAddr,
    port: u16,
    secs: u64,
) -> (u64, u64, f64) {
    let count = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let rx = receiver(
        dst.to_path_buf(),
        port,
        count.clone(),
        ready.clone(),
        stop.clone(),
    );
    lab.eventually(Duration::from_secs(5), "receiver bound", || {
        ready.load(Ordering::SeqCst).then_some(())
    });
    let (sent, rate) = storm(src.to_path_buf(), to, secs);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    rx.join().unwrap();
    let got = count.load(Ordering::Relaxed);
    eprintln!("{what}: sent {sent} at {rate:.0}/s, received {got}");
    (sent, got, rate)
}

#[test]
fn an_event_storm_loses_events_not_packets() {
    let lab = Lab::up("storm", 1);
    lab.apply_ok(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: src, labels: {app: src}}\nspec:\n  containers:\n  - {name: c, command: [tollway, workload, serve]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: dst, labels: {app: dst}}\nspec:\n  containers:\n  - {name: c, command: [tollway, workload, serve]}\n",
    );
    lab.wait_ready("default");
    let dst_ip = lab.pod_ip("default", "dst");
    let src = netns(&lab, "default", "src");
    let dst = netns(&lab, "default", "dst");
    let to: SocketAddr = format!("{dst_ip}:53").parse().unwrap();

    let before = flows_report(&lab, "node-1");
    let lost_before = before["lostEvents"].as_u64().unwrap();

    // 1. The agent reads along.
    let (sent, got, rate1) = round(&lab, "agent running", &src, &dst, to, 53, 3);
    assert!(
        got * 1000 >= sent * 995,
        "the datapath delivered {got} of {sent}"
    );

    // 2. The agent stopped: the ring fills, the datapath goes on.
    let pid = lab.json(&["status", "--node", "node-1", "-o", "json"])["agent"]["pid"]
        .as_i64()
        .unwrap() as i32;
    let agent = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let result = std::panic::catch_unwind(|| round(&lab, "agent stopped", &src, &dst, to, 53, 2));
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGCONT).unwrap();
    let (sent, got, rate2) = result.unwrap();
    assert!(
        got * 1000 >= sent * 995,
        "with a full ring the datapath delivered {got} of {sent}"
    );
    assert!(
        rate2 >= rate1 * 0.8,
        "the sender's rate with a full ring: {rate2:.0}/s vs {rate1:.0}/s"
    );

    // The lost events are counted and shown (status, metrics, observe).
    let report = lab.eventually(Duration::from_secs(10), "lost events reported", || {
        let r = flows_report(&lab, "node-1");
        (r["lostEvents"].as_u64().unwrap_or(0) > lost_before).then_some(r)
    });
    let lost = report["lostEvents"].as_u64().unwrap() - lost_before;
    eprintln!("lost events: {lost}; flows seen: {}", report["seen"]);
    assert!(
        lost > 1000,
        "a 4 MiB ring of ~584-byte records holds ~7,000: {lost} lost"
    );
    let status = lab.ok(&["status", "--node", "node-1"]);
    assert!(status.contains("Lost events:"), "{status}");
    // The agent reads again afterwards.
    let seen = report["seen"].as_u64().unwrap();
    assert!(seen > 0);
}
