//! Conntrack garbage collection on real, pinned maps (root): expired
//! entries go, live ones stay, the interval adapts, a (nearly) full map is
//! reported, and a new flow on a full map is still tracked (the map is an
//! LRU hash: the least recently used entry makes room, nothing is dropped).
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use aya::programs::SchedClassifier;
use aya::{TestRun as _, TestRunOptions};
use tollway_abi::{Ct4Key, CtEntry, TW_CT_MAX, be16, be32};
use tollway_agent::ctgc::{self, ktime_ns};
use tollway_agent::status::GcReport;
use tollway_datapath::lb::{LbMaps, LoadOptions, NodeDatapath};
use tollway_datapath::testutil::{Ipv4Endpoints, TcpPacket};

struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(tag: &str) -> (Pins, NodeDatapath, LbMaps) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads BPF programs and must run as root"
    );
    tollway_datapath::bpffs::ensure_bpffs(std::path::Path::new(
        tollway_datapath::bpffs::BPFFS_MOUNT,
    ))
    .unwrap();
    let dir = PathBuf::from(format!(
        "/sys/fs/bpf/tollway-test/agent-{tag}-{}",
        std::process::id()
    ));
    let pins = Pins(dir.clone());
    let dp = NodeDatapath::load(&LoadOptions {
        pin_dir: dir.clone(),
    })
    .unwrap();
    let maps = LbMaps::open(&dir).unwrap();
    (pins, dp, maps)
}

fn key(i: u32) -> Ct4Key {
    Ct4Key {
        saddr: be32(Ipv4Addr::from(0x0a00_0000 + (i >> 16))),
        daddr: be32(Ipv4Addr::new(10, 96, 0, 11)),
        sport: be16((i & 0xffff) as u16),
        dport: be16(80),
        proto: 6,
        ..Default::default()
    }
}

#[test]
fn sweep_deletes_expired_entries_and_adapts() {
    let (_pins, _dp, mut maps) = setup("sweep");
    let now = ktime_ns();
    for i in 0..100 {
        let expires = if i < 60 {
            now - 1
        } else {
            now + 3_600_000_000_000
        };
        maps.ct
            .insert(
                key(i),
                CtEntry {
                    expires,
                    ..Default::default()
                },
                0,
            )
            .unwrap();
    }
    let mut report = GcReport {
        interval_seconds: 10.0,
        ..Default::default()
    };
    let next = ctgc::sweep(&mut maps, &mut report).unwrap();
    assert_eq!(report.last_entries, 100);
    assert_eq!(report.last_deleted, 60);
    assert_eq!(maps.ct.keys().count(), 40);
    assert!(maps.ct.get(&key(99), 0).is_ok() && maps.ct.get(&key(0), 0).is_err());
    assert_eq!(next.as_secs(), 5, "most entries expired: sweep sooner");
    assert!(report.full_warning.is_none());
    // Nothing expires: back off.
    let next = ctgc::sweep(&mut maps, &mut report).unwrap();
    assert_eq!(report.last_deleted, 0);
    assert!(next.as_secs_f64() > 5.0, "{next:?}");
}

#[test]
fn a_full_map_is_reported_and_new_flows_are_still_tracked() {
    let (_pins, mut dp, mut maps) = setup("full");
    let now = ktime_ns();
    let live = CtEntry {
        expires: now + 3_600_000_000_000,
        ..Default::default()
    };
    let n = TW_CT_MAX;
    for i in 0..n {
        maps.ct.insert(key(i), live, 0).unwrap();
    }
    let mut report = GcReport {
        interval_seconds: 10.0,
        ..Default::default()
    };
    ctgc::sweep(&mut maps, &mut report).unwrap();
    let warning = report.full_warning.clone().expect("a full map is reported");
    assert!(warning.contains("least recently used"), "{warning}");
    assert!(report.fill > 0.99, "{}", report.fill);

    // A new flow through the pod program: tracked, not dropped.
    let prog: &mut SchedClassifier = dp
        .object_mut("lxc")
        .unwrap()
        .program_mut("tw_from_lxc")
        .unwrap()
        .try_into()
        .unwrap();
    let client = Ipv4Addr::new(10, 244, 9, 9);
    let server = Ipv4Addr::new(10, 244, 8, 8);
    let frame = TcpPacket {
        ip: Ipv4Endpoints {
            src_ip: client,
            dst_ip: server,
            ..Default::default()
        },
        src_port: 43210,
        dst_port: 8080,
        ..Default::default()
    }
    .build();
    let mut out = vec![0u8; frame.len() + 64];
    let opts = TestRunOptions {
        data_in: Some(&frame),
        data_out: Some(&mut out),
        ..Default::default()
    };
    let r = prog.test_run(opts).unwrap();
    assert_eq!(r.return_value, 0, "passed, not dropped");
    let new_key = Ct4Key {
        saddr: be32(client),
        daddr: be32(server),
        sport: be16(43210),
        dport: be16(8080),
        proto: 6,
        ..Default::default()
    };
    assert!(
        maps.ct.get(&new_key, 0).is_ok(),
        "the new flow is tracked on a full map"
    );
    assert!(maps.ct.keys().count() as u32 <= n, "still within capacity");
}
