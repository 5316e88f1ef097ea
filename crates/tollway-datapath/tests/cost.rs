//! Per-packet cost of unfragmented packets through every tc program of the
//! node datapath (`lxc.c`, `nodeport.c`), with `BPF_PROG_TEST_RUN`, and the
//! exact frames that come out (checked against frames built by hand with the
//! translated addresses, checksums included). Unfragmented packets never
//! touch the fragment tracking (`tw_frag4` stays empty).
//!
//! The numbers are printed (mean and median of many runs), with the
//! verifier's instruction counts; set `TW_DUMP_DIR` to also write every
//! output frame there in hex, to compare two builds byte for byte.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // shared with the other tests
mod common;

use std::{net::Ipv4Addr, time::Duration};

use common::lb::*;
use tollway_abi::{
    Config, Lb4Backend, Lb4Revnat, Lb4Service, TW_BE_F_LOCAL, TW_CFG_F_NODEPORT, TW_LB_ALG_RANDOM,
    TW_LB_SCOPE_EXT, TW_SVC_F_CLUSTERIP, TW_SVC_F_LOADBALANCER, TW_SVC_F_NODEPORT,
    TW_SVC_F_SRC_RANGE, be16, be32,
};
use tollway_datapath::{
    testutil::{IPPROTO_UDP, Ipv4Endpoints, TcpPacket, UdpPacket, tcp_flags},
    verdict::TC_ACT_OK,
};

const POD: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x05];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x00, 0x01];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
const VIP_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 13);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const NODE_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x02];
const CLIENT: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 254);
const CLIENT_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0xff, 0xfe];
const NP_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 11);
const NODE_PORT: u16 = 30053;
/// A LoadBalancer ingress IP routed to the node, at its service port.
const LB_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 200, 20);
const LB_PORT: u16 = 53;
const BACKEND_PORT: u16 = 8080;

/// Single runs per measured case (each its own BPF_PROG_TEST_RUN: the
/// translating cases change the frame, so repeats would measure another
/// path).
const SINGLE_RUNS: usize = 20000;
/// Repeats per BPF_PROG_TEST_RUN and calls, for cases that leave the frame
/// as it is.
const REPEAT: u32 = 50_000;
const REPEAT_CALLS: usize = 20;

fn ep(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac,
        dst_mac,
        src_ip: src,
        dst_ip: dst,
        ttl: 64,
    }
}

fn udp(ip: Ipv4Endpoints, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    UdpPacket {
        ip,
        src_port: sport,
        dst_port: dport,
        payload: payload.to_vec(),
    }
    .build()
}

fn tcp(ip: Ipv4Endpoints, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    TcpPacket {
        ip,
        src_port: sport,
        dst_port: dport,
        seq: 1000,
        ack: 5000,
        flags,
        payload: b"payload of a segment".to_vec(),
        ..TcpPacket::default()
    }
    .build()
}

fn add_udp_service(
    node: &mut Node,
    vip: Ipv4Addr,
    port: u16,
    flags: u16,
    id: u32,
    backend: Ipv4Addr,
    be_flags: u8,
) {
    let rev = u16::try_from(id).unwrap();
    node.maps
        .backends
        .insert(
            id,
            Lb4Backend {
                address: be32(backend),
                port: be16(BACKEND_PORT),
                proto: IPPROTO_UDP,
                flags: be_flags,
            },
            0,
        )
        .unwrap();
    node.maps
        .services
        .insert(
            lb_key(vip, port, 1, IPPROTO_UDP, TW_LB_SCOPE_EXT),
            Lb4Service {
                backend_id: id,
                ..Lb4Service::default()
            },
            0,
        )
        .unwrap();
    node.maps
        .services
        .insert(
            lb_key(vip, port, 0, IPPROTO_UDP, TW_LB_SCOPE_EXT),
            Lb4Service {
                count: 1,
                rev_nat_index: rev,
                flags,
                algorithm: TW_LB_ALG_RANDOM,
                ..Lb4Service::default()
            },
            0,
        )
        .unwrap();
    node.maps
        .revnat
        .insert(
            u32::from(rev),
            Lb4Revnat {
                address: be32(vip),
                port: be16(port),
                pad: 0,
            },
            0,
        )
        .unwrap();
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn dump(name: &str, frame: &[u8]) {
    if let Some(dir) = std::env::var_os("TW_DUMP_DIR") {
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.hex")), hex).unwrap();
    }
}

struct Case {
    name: &'static str,
    object: &'static str,
    program: &'static str,
    input: Vec<u8>,
    expected: Vec<u8>,
}

#[test]
fn unfragmented_per_packet_cost_and_output() {
    let mut node = Node::load("cost", "lxc");
    node.maps
        .set_config(&Config {
            node_ip: be32(NODE_IP),
            flags: TW_CFG_F_NODEPORT,
            uplink_ifindex: 2,
            nat_port_min: 61000,
            nat_port_max: 65000,
            ..Config::default()
        })
        .unwrap();
    add_udp_service(&mut node, VIP, 53, TW_SVC_F_CLUSTERIP, 1, VIP_BACKEND, 0);
    add_udp_service(
        &mut node,
        NODE_IP,
        NODE_PORT,
        TW_SVC_F_NODEPORT,
        2,
        NP_BACKEND,
        TW_BE_F_LOCAL,
    );
    add_udp_service(
        &mut node,
        LB_IP,
        LB_PORT,
        TW_SVC_F_LOADBALANCER,
        3,
        NP_BACKEND,
        TW_BE_F_LOCAL,
    );
    // The same with spec.loadBalancerSourceRanges: 64 ranges of which the
    // client's is one (a /24; the others /16s elsewhere).
    add_udp_service(
        &mut node,
        LB_IP,
        LB_PORT + 1,
        TW_SVC_F_LOADBALANCER | TW_SVC_F_SRC_RANGE,
        4,
        NP_BACKEND,
        TW_BE_F_LOCAL,
    );
    node.maps
        .set_src_range(4, Ipv4Addr::new(172, 18, 255, 0), 24)
        .unwrap();
    for i in 0..63u8 {
        node.maps
            .set_src_range(4, Ipv4Addr::new(100, i, 0, 0), 16)
            .unwrap();
    }
    let payload = [0x5a_u8; 64];
    let to_pod = |src| ep(HOST_MAC, POD_MAC, src, POD);
    let from_pod = |dst| ep(POD_MAC, HOST_MAC, POD, dst);
    let cases = vec![
        Case {
            name: "from_lxc_clusterip_udp_dnat",
            object: "lxc",
            program: "tw_from_lxc",
            input: udp(from_pod(VIP), 33333, 53, &payload),
            expected: udp(from_pod(VIP_BACKEND), 33333, BACKEND_PORT, &payload),
        },
        Case {
            name: "to_lxc_clusterip_udp_rev_nat",
            object: "lxc",
            program: "tw_to_lxc",
            input: udp(to_pod(VIP_BACKEND), BACKEND_PORT, 33333, &payload),
            expected: udp(to_pod(VIP), 53, 33333, &payload),
        },
        Case {
            name: "from_lxc_tcp_to_external",
            object: "lxc",
            program: "tw_from_lxc",
            input: tcp(from_pod(EXTERNAL), 44444, 443, tcp_flags::SYN),
            expected: tcp(from_pod(EXTERNAL), 44444, 443, tcp_flags::SYN),
        },
        Case {
            name: "from_lxc_tcp_to_external_established",
            object: "lxc",
            program: "tw_from_lxc",
            input: tcp(from_pod(EXTERNAL), 44444, 443, tcp_flags::ACK),
            expected: tcp(from_pod(EXTERNAL), 44444, 443, tcp_flags::ACK),
        },
        Case {
            name: "to_lxc_tcp_reply_from_external",
            object: "lxc",
            program: "tw_to_lxc",
            input: tcp(to_pod(EXTERNAL), 443, 44444, tcp_flags::ACK),
            expected: tcp(to_pod(EXTERNAL), 443, 44444, tcp_flags::ACK),
        },
        Case {
            name: "from_netdev_nodeport_udp_dnat",
            object: "nodeport",
            program: "tw_from_netdev",
            input: udp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, NODE_IP),
                40000,
                NODE_PORT,
                &payload,
            ),
            expected: udp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, NP_BACKEND),
                40000,
                BACKEND_PORT,
                &payload,
            ),
        },
        Case {
            name: "from_netdev_lb_ip_udp_dnat",
            object: "nodeport",
            program: "tw_from_netdev",
            input: udp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, LB_IP),
                40002,
                LB_PORT,
                &payload,
            ),
            expected: udp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, NP_BACKEND),
                40002,
                BACKEND_PORT,
                &payload,
            ),
        },
        Case {
            name: "from_netdev_lb_ip_source_ranges_udp_dnat",
            object: "nodeport",
            program: "tw_from_netdev",
            input: udp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, LB_IP),
                40003,
                LB_PORT + 1,
                &payload,
            ),
            expected: udp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, NP_BACKEND),
                40003,
                BACKEND_PORT,
                &payload,
            ),
        },
        Case {
            name: "to_netdev_nodeport_udp_rev_dnat",
            object: "nodeport",
            program: "tw_to_netdev",
            input: udp(
                ep(NODE_MAC, CLIENT_MAC, NP_BACKEND, CLIENT),
                BACKEND_PORT,
                40000,
                &payload,
            ),
            expected: udp(
                ep(NODE_MAC, CLIENT_MAC, NODE_IP, CLIENT),
                NODE_PORT,
                40000,
                &payload,
            ),
        },
        Case {
            name: "from_netdev_through_the_node",
            object: "nodeport",
            program: "tw_from_netdev",
            input: tcp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, NP_BACKEND),
                40001,
                8443,
                tcp_flags::ACK,
            ),
            expected: tcp(
                ep(CLIENT_MAC, NODE_MAC, CLIENT, NP_BACKEND),
                40001,
                8443,
                tcp_flags::ACK,
            ),
        },
    ];

    let mut report = Vec::new();
    for case in &cases {
        // The first run opens the flow; the measured ones find it.
        let first = node.run_in(case.object, case.program, &case.input);
        assert_eq!(first.retval, TC_ACT_OK, "{}: first run", case.name);
        assert_eq!(
            first.out, case.expected,
            "{}: first output, byte for byte",
            case.name
        );
        dump(&format!("{}-first", case.name), &first.out);
        let mut singles = Vec::with_capacity(SINGLE_RUNS);
        for _ in 0..SINGLE_RUNS {
            let run = node.run_in(case.object, case.program, &case.input);
            assert_eq!(run.retval, TC_ACT_OK, "{}", case.name);
            singles.push(run.duration);
        }
        let last = node.run_in(case.object, case.program, &case.input);
        assert_eq!(
            last.out, case.expected,
            "{}: steady output, byte for byte",
            case.name
        );
        dump(&format!("{}-steady", case.name), &last.out);
        let repeated = (case.input == case.expected).then(|| {
            let v: Vec<Duration> = (0..REPEAT_CALLS)
                .map(|_| {
                    let run = node.run_repeat(case.object, case.program, &case.input, 0, REPEAT);
                    assert_eq!(run.retval, TC_ACT_OK, "{}", case.name);
                    assert_eq!(run.out, case.expected, "{}: repeated output", case.name);
                    run.duration
                })
                .collect();
            (mean(&v), median(&v))
        });
        report.push((case.name, mean(&singles), median(&singles), repeated));
    }
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "nothing was dropped: {:?}",
        node.maps.drop_counts()
    );
    assert!(
        node.maps.frag.keys().next().is_none(),
        "unfragmented packets leave no fragment-tracking entry"
    );
    eprintln!(
        "per-packet cost, unfragmented ({SINGLE_RUNS} single runs: mean / median; \
         {REPEAT_CALLS} x {REPEAT} repeats: mean / median):"
    );
    for (name, m, md, rep) in &report {
        match rep {
            Some((rm, rmd)) => {
                eprintln!("  {name:<40} {m:>9.1?} {md:>9.1?}   {rm:>9.1?} {rmd:>9.1?}")
            }
            None => eprintln!("  {name:<40} {m:>9.1?} {md:>9.1?}"),
        }
    }
    for (object, program) in [
        ("lxc", "tw_from_lxc"),
        ("lxc", "tw_to_lxc"),
        ("nodeport", "tw_from_netdev"),
        ("nodeport", "tw_to_netdev"),
    ] {
        let info = node
            .dp
            .object(object)
            .unwrap()
            .program(program)
            .unwrap()
            .info()
            .unwrap();
        eprintln!(
            "verifier: {program} walked {:?} instructions; program {:?} bytes translated, {} \
             bytes jitted",
            node.verified_insns(object, program),
            info.size_translated(),
            info.size_jitted()
        );
    }
}
