//! Root-only tests of the `tw_pass` pipeline: BPF_PROG_TEST_RUN, a real
//! classic-tc attachment inside throw-away network namespaces, and map
//! pinning. They never touch the root network namespace.

#[allow(dead_code)] // the LB harness in common/lb.rs is for lxc.rs and nodeport.rs
mod common;

use std::{net::UdpSocket, path::Path, time::Duration};

use common::{PinTree, TestNetns, chain, require_root};
use tollway_datapath::{
    DatapathError, PassProgram, TwStats,
    bpffs::{self, BPFFS_MOUNT},
    netns::{self, run_in_netns},
    read_pinned_stats,
    testutil::{ETH_HLEN, IPV4_HLEN, TcpPacket, UDP_HLEN, tcp_flags},
    verdict::TC_ACT_OK,
};

fn load() -> PassProgram {
    PassProgram::load().unwrap_or_else(|e| panic!("PassProgram::load: {}", chain(&e)))
}

fn stats(prog: &PassProgram) -> TwStats {
    prog.stats()
        .unwrap_or_else(|e| panic!("stats: {}", chain(&e)))
}

#[test]
fn test_run_counts_one_packet_and_passes_it() {
    require_root();
    let prog = load();
    let before = stats(&prog);
    assert_eq!(before, TwStats::ZERO, "a freshly loaded map starts at zero");

    let packet = TcpPacket {
        flags: tcp_flags::PSH | tcp_flags::ACK,
        payload: b"tollway test payload".to_vec(),
        ..TcpPacket::default()
    }
    .build();
    let result = prog
        .test_run(&packet)
        .unwrap_or_else(|e| panic!("test_run: {}", chain(&e)));
    eprintln!(
        "tw_pass BPF_PROG_TEST_RUN: retval {} duration {:?} for a {}-byte frame",
        result.retval,
        result.duration,
        packet.len()
    );
    assert_eq!(result.retval, TC_ACT_OK);

    let after = stats(&prog);
    assert_eq!(
        after.packets - before.packets,
        1,
        "exactly one packet counted"
    );
    assert_eq!(
        after.bytes - before.bytes,
        packet.len() as u64,
        "skb->len is the whole frame"
    );
}

#[test]
fn test_run_rejects_a_runt_frame_with_a_typed_error() {
    require_root();
    let prog = load();
    let err = prog
        .test_run(&[0u8; ETH_HLEN - 1])
        .expect_err("the kernel refuses frames shorter than an Ethernet header");
    assert!(matches!(err, DatapathError::TestRun { .. }), "{err:?}");
    assert_eq!(stats(&prog), TwStats::ZERO, "nothing ran, nothing counted");
}

/// What the attach test observed inside namespace A.
#[derive(Debug)]
struct Observed {
    before: TwStats,
    after: TwStats,
    received: usize,
    filters_attached: String,
    filters_detached: String,
}

#[test]
fn attached_at_clsact_ingress_counts_real_traffic() {
    const DATAGRAMS: usize = 5;
    const PAYLOAD: &[u8] = b"tollway over veth";
    const PORT: u16 = 47_123;

    require_root();
    let outer = netns::current_netns().expect("identify the test's own netns");

    // Declared before use so both are deleted however the test ends.
    let a = TestNetns::create("a");
    let b = TestNetns::create("b");
    a.ip(&[
        "link",
        "add",
        "twa",
        "type",
        "veth",
        "peer",
        "name",
        "twb",
        "netns",
        b.name(),
    ]);
    a.ip(&["addr", "add", "10.200.0.1/30", "dev", "twa"]);
    a.ip(&["link", "set", "lo", "up"]);
    a.ip(&["link", "set", "twa", "up"]);
    b.ip(&["addr", "add", "10.200.0.2/30", "dev", "twb"]);
    b.ip(&["link", "set", "lo", "up"]);
    b.ip(&["link", "set", "twb", "up"]);

    let b_path = b.path();
    let observed = run_in_netns(&a.path(), || {
        let here = netns::current_netns().expect("identify netns A");
        assert_ne!(here, outer, "must be inside netns A, never the root netns");

        let mut prog = load();
        prog.attach_ingress("twa")
            .unwrap_or_else(|e| panic!("attach_ingress(twa): {}", chain(&e)));
        let before = stats(&prog);

        let rx = UdpSocket::bind(("10.200.0.1", PORT)).expect("bind receiver in A");
        rx.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("receiver timeout");

        run_in_netns(&b_path, || {
            let tx = UdpSocket::bind("10.200.0.2:0").expect("bind sender in B");
            for _ in 0..DATAGRAMS {
                tx.send_to(PAYLOAD, ("10.200.0.1", PORT))
                    .expect("send from B to A");
            }
        })
        .unwrap_or_else(|e| panic!("enter netns B: {}", chain(&e)));

        let mut received = 0;
        let mut buf = [0u8; 128];
        while received < DATAGRAMS {
            match rx.recv_from(&mut buf) {
                Ok((n, _)) => {
                    assert_eq!(&buf[..n], PAYLOAD);
                    received += 1;
                }
                Err(e) => {
                    eprintln!("receiver gave up after {received} datagrams: {e}");
                    break;
                }
            }
        }

        let after = stats(&prog);
        let filters_attached = a.tc(&["filter", "show", "dev", "twa", "ingress"]);
        prog.detach()
            .unwrap_or_else(|e| panic!("detach: {}", chain(&e)));
        let filters_detached = a.tc(&["filter", "show", "dev", "twa", "ingress"]);
        Observed {
            before,
            after,
            received,
            filters_attached,
            filters_detached,
        }
    })
    .unwrap_or_else(|e| panic!("enter netns A: {}", chain(&e)));

    eprintln!("observed in {}: {observed:#?}", a.name());
    assert_eq!(
        observed.received, DATAGRAMS,
        "tw_pass returned TC_ACT_OK, so every datagram must be delivered"
    );
    let packets = observed.after.packets - observed.before.packets;
    let bytes = observed.after.bytes - observed.before.bytes;
    assert!(
        packets >= DATAGRAMS as u64,
        "counted {packets} packets at ingress, sent {DATAGRAMS}"
    );
    let min_bytes = (DATAGRAMS * (ETH_HLEN + IPV4_HLEN + UDP_HLEN + PAYLOAD.len())) as u64;
    assert!(
        bytes >= min_bytes,
        "counted {bytes} bytes, expected >= {min_bytes}"
    );
    assert!(
        observed.filters_attached.contains("tw_pass")
            && observed.filters_attached.contains("direct-action"),
        "classic tc filter expected, got: {}",
        observed.filters_attached
    );
    assert!(
        !observed.filters_detached.contains("tw_pass"),
        "filter still present after detach: {}",
        observed.filters_detached
    );
}

#[test]
fn maps_pin_and_reopen_from_a_fresh_handle() {
    require_root();
    bpffs::ensure_bpffs(Path::new(BPFFS_MOUNT))
        .unwrap_or_else(|e| panic!("ensure_bpffs: {}", chain(&e)));

    let lab = format!("test-{}", std::process::id());
    let dir = bpffs::checked_pin_dir(&lab, "node-a").expect("valid pin names");
    let _cleanup = PinTree::new(&Path::new(bpffs::PIN_ROOT).join(&lab));
    assert!(dir.starts_with(bpffs::PIN_ROOT));

    let prog = load();
    let packet = TcpPacket::default().build();
    for _ in 0..3 {
        let r = prog
            .test_run(&packet)
            .unwrap_or_else(|e| panic!("test_run: {}", chain(&e)));
        assert_eq!(r.retval, TC_ACT_OK);
    }
    let expected = TwStats {
        packets: 3,
        bytes: 3 * packet.len() as u64,
    };
    assert_eq!(stats(&prog), expected);

    let pins = prog
        .pin_maps(&dir)
        .unwrap_or_else(|e| panic!("pin_maps({}): {}", dir.display(), chain(&e)));
    let pin = dir.join(PassProgram::STATS_MAP_NAME);
    assert_eq!(pins, vec![pin.clone()]);

    let reopened = read_pinned_stats(&pin).unwrap_or_else(|e| panic!("reopen: {}", chain(&e)));
    assert_eq!(reopened, expected, "the pin is the same map");

    // Pinning again at the same place is a typed error, not a panic.
    let again = prog.pin_maps(&dir).expect_err("pin already exists");
    assert!(matches!(again, DatapathError::Pin { .. }), "{again:?}");

    // The pin keeps the map alive after the loader is gone.
    drop(prog);
    let after_drop = read_pinned_stats(&pin).unwrap_or_else(|e| panic!("reopen: {}", chain(&e)));
    assert_eq!(after_drop, expected);

    std::fs::remove_file(&pin).expect("remove pin");
    let gone = read_pinned_stats(&pin).expect_err("pin removed");
    assert!(matches!(gone, DatapathError::OpenPin { .. }), "{gone:?}");
}
