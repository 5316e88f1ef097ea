//! Root-only tests of `bpf/progs/nodeport.c` (`tw_from_netdev`,
//! `tw_to_netdev`) with `BPF_PROG_TEST_RUN`: every test loads the node
//! datapath with its maps pinned in a fresh directory, writes the node's
//! config and NodePort services through `LbMaps`, runs hand-built frames
//! through the programs and checks the frames that come out (fields and
//! checksums recomputed from the output) and the maps. The last tests send
//! real traffic through throw-away network namespaces.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // shared with tests/lxc.rs and tests/pass.rs
mod common;

use std::{collections::BTreeSet, net::Ipv4Addr, time::Duration};

use common::lb::*;
use common::{chain, require_root};
use tollway_abi::{
    Config, Ct4Key, Lb4Backend, Lb4Revnat, Lb4Service, Nat4Entry, TW_BE_F_LOCAL, TW_CFG_F_NODEPORT,
    TW_CT_F_INGRESS, TW_CT_F_SERVICE, TW_CT_LIFETIME_NONTCP, TW_CT_LIFETIME_TCP_CLOSE,
    TW_CT_LIFETIME_TCP_ESTABLISHED, TW_CT_LIFETIME_TCP_SYN, TW_CT_S_ESTABLISHED, TW_CT_S_NODEPORT,
    TW_CT_S_SEEN_REPLY, TW_CT_S_SYN_SEEN, TW_LB_ALG_RANDOM, TW_LB_SCOPE_EXT, TW_LB_SCOPE_INT,
    TW_SVC_F_CLUSTERIP, TW_SVC_F_ETP_LOCAL, TW_SVC_F_EXTERNAL_IP, TW_SVC_F_LOADBALANCER,
    TW_SVC_F_NODEPORT, TW_SVC_F_SRC_RANGE, TW_SVC_F_TWO_SCOPES, be16, be32,
};
use tollway_abi::{Event, TW_AGG_MEDIUM, TW_EV_DROP};
use tollway_datapath::lb::EventMaps;
use tollway_datapath::{
    testutil::{
        ETH_HLEN, ETH_P_ARP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN,
        IcmpEchoPacket, Ipv4Endpoints, ParsedFrame, ParsedL4, TcpPacket, UDP_HLEN, UdpPacket,
        ether_frame, icmp_type, ipv4_checksum_ok, l4_checksum_ok, tcp_flags,
    },
    verdict::{TC_ACT_OK, TC_ACT_SHOT},
};

const TC_ACT_REDIRECT: u32 = 7;
const DROP_CT_INVALID_HDR: u8 = 135;
const DROP_NO_SERVICE: u8 = 158;
const DROP_NAT_NO_MAPPING: u8 = 167;
const DROP_FRAG_NOT_FOUND: u8 = 175;

const FROM: &str = "tw_from_netdev";
const TO: &str = "tw_to_netdev";

/// The lab's addressing: node 172.18.0.2 on the shared bridge, the
/// external client at 172.18.255.254.
const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const NODE_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x02];
const NODE2_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x03];
const CLIENT: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 254);
const CLIENT_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0xff, 0xfe];
/// The host side of a local pod's veth, and the pod.
const LXC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];
const UPLINK_IFINDEX: u32 = 2;
const NODE_PORT: u16 = 30080;
const BACKEND_PORT: u16 = 8080;
const NAT_MIN: u16 = 61000;
const NAT_MAX: u16 = 65000;

/// Backends 1..=9 are pods on this node (10.244.1.x, TW_BE_F_LOCAL),
/// 11..=29 pods on other nodes (10.244.2.x).
fn backend_ip(id: u32) -> Ipv4Addr {
    let id = u8::try_from(id).unwrap();
    if id < 10 {
        Ipv4Addr::new(10, 244, 1, 10 + id)
    } else {
        Ipv4Addr::new(10, 244, 2, id)
    }
}

fn is_local(id: u32) -> bool {
    id < 10
}

/// A frontend of the uplink: by default a NodePort on the node IP.
struct Service {
    address: Ipv4Addr,
    port: u16,
    proto: u8,
    rev_nat: u16,
    backends: Vec<u32>,
    flags: u16,
    scope: u8,
}

impl Service {
    fn tcp(rev_nat: u16, backends: &[u32]) -> Service {
        Service {
            address: NODE_IP,
            port: NODE_PORT,
            proto: IPPROTO_TCP,
            rev_nat,
            backends: backends.to_vec(),
            flags: TW_SVC_F_NODEPORT,
            scope: TW_LB_SCOPE_EXT,
        }
    }

    fn udp(rev_nat: u16, backends: &[u32]) -> Service {
        Service {
            proto: IPPROTO_UDP,
            ..Service::tcp(rev_nat, backends)
        }
    }
}

/// The SERVICE entry of a client flow to node IP:node port.
fn svc_ct_key(sport: u16, proto: u8) -> Ct4Key {
    ct_key(CLIENT, NODE_IP, sport, NODE_PORT, proto, TW_CT_F_SERVICE)
}

/// The connection entry of a client flow to a (local) backend.
fn conn_ct_key(sport: u16, backend: u32, proto: u8) -> Ct4Key {
    ct_key(CLIENT, backend_ip(backend), sport, BACKEND_PORT, proto, 0)
}

/// The tw_np_nat4 key of a SNATed flow: its reply as it arrives.
fn nat_key(backend: u32, nat_port: u16, proto: u8) -> Ct4Key {
    ct_key(
        backend_ip(backend),
        NODE_IP,
        BACKEND_PORT,
        nat_port,
        proto,
        0,
    )
}

fn node_config() -> Config {
    Config {
        node_ip: be32(NODE_IP),
        flags: TW_CFG_F_NODEPORT,
        uplink_ifindex: UPLINK_IFINDEX,
        nat_port_min: NAT_MIN,
        nat_port_max: NAT_MAX,
        ..Config::default()
    }
}

impl Node {
    /// A datapath with the lab's node config (NodePort on).
    fn new() -> Node {
        let mut node = Node::load("np", "nodeport");
        node.maps.set_config(&node_config()).unwrap();
        node
    }

    fn run(&mut self, program: &str, frame: &[u8]) -> Run {
        self.run_in("nodeport", program, frame)
    }

    fn add_backend(&mut self, id: u32, proto: u8) {
        let be = Lb4Backend {
            address: be32(backend_ip(id)),
            port: be16(BACKEND_PORT),
            proto,
            flags: if is_local(id) { TW_BE_F_LOCAL } else { 0 },
        };
        self.maps.backends.insert(id, be, 0).unwrap();
    }

    /// Installs a frontend in the ABI's order: backends, slots, master.
    fn add_service(&mut self, svc: &Service) {
        for &id in &svc.backends {
            self.add_backend(id, svc.proto);
        }
        for (i, &id) in svc.backends.iter().enumerate() {
            let slot = u16::try_from(i + 1).unwrap();
            let entry = Lb4Service {
                backend_id: id,
                ..Lb4Service::default()
            };
            self.maps
                .services
                .insert(
                    lb_key(svc.address, svc.port, slot, svc.proto, svc.scope),
                    entry,
                    0,
                )
                .unwrap();
        }
        let master = Lb4Service {
            backend_id: 0,
            count: u16::try_from(svc.backends.len()).unwrap(),
            rev_nat_index: svc.rev_nat,
            flags: svc.flags,
            algorithm: TW_LB_ALG_RANDOM,
            pad: 0,
            affinity_timeout: 0,
        };
        self.maps
            .services
            .insert(
                lb_key(svc.address, svc.port, 0, svc.proto, svc.scope),
                master,
                0,
            )
            .unwrap();
        let revnat = Lb4Revnat {
            address: be32(svc.address),
            port: be16(svc.port),
            pad: 0,
        };
        self.maps
            .revnat
            .insert(u32::from(svc.rev_nat), revnat, 0)
            .unwrap();
    }

    fn nat(&self, key: &Ct4Key) -> Option<Nat4Entry> {
        self.maps.np_nat.get(key, 0).ok()
    }

    /// Runs a client packet that must be SNATed to a remote backend and
    /// returns (backend id, nat port).
    fn snat(&mut self, frame: &[u8]) -> (u32, u16) {
        let run = self.run(FROM, frame);
        assert_eq!(
            run.retval,
            TC_ACT_REDIRECT,
            "SNATed packet must be redirected (bpf_redirect_neigh); drops {:?}, {} mappings",
            self.maps.drop_counts(),
            self.maps.np_nat.keys().count()
        );
        assert!(
            ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out),
            "checksums after DNAT + SNAT"
        );
        let out = run.frame();
        assert_eq!(out.ip.src, NODE_IP, "SNATed to the node IP");
        let (sport, dport) = ports(&out.l4);
        assert_eq!(dport, BACKEND_PORT);
        let cfg = self.maps.config().unwrap();
        assert!(
            (cfg.nat_port_min..=cfg.nat_port_max).contains(&sport),
            "nat port {sport} out of the configured range"
        );
        let id = (11..=29)
            .find(|&id| backend_ip(id) == out.ip.dst)
            .unwrap_or_else(|| panic!("DNATed to {}, which is no remote backend", out.ip.dst));
        (id, sport)
    }
}

fn ports(l4: &ParsedL4) -> (u16, u16) {
    match *l4 {
        ParsedL4::Tcp {
            src_port, dst_port, ..
        }
        | ParsedL4::Udp {
            src_port, dst_port, ..
        } => (src_port, dst_port),
        ref other => panic!("no TCP/UDP: {other:?}"),
    }
}

/// Addressing of a packet from the client arriving at the uplink.
fn client_ep(dst: Ipv4Addr) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac: CLIENT_MAC,
        dst_mac: NODE_MAC,
        src_ip: CLIENT,
        dst_ip: dst,
        ttl: 64,
    }
}

/// A local pod's reply leaving by the uplink (routed by the kernel).
fn pod_reply_ep(src: Ipv4Addr) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac: NODE_MAC,
        dst_mac: CLIENT_MAC,
        src_ip: src,
        dst_ip: CLIENT,
        ttl: 63,
    }
}

/// A remote backend's reply arriving at the uplink from its node.
fn remote_reply_ep(backend: u32) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac: NODE2_MAC,
        dst_mac: NODE_MAC,
        src_ip: backend_ip(backend),
        dst_ip: NODE_IP,
        ttl: 63,
    }
}

fn syn(sport: u16) -> TcpPacket {
    TcpPacket {
        ip: client_ep(NODE_IP),
        src_port: sport,
        dst_port: NODE_PORT,
        seq: 1000,
        ack: 0,
        flags: tcp_flags::SYN,
        ..TcpPacket::default()
    }
}

fn client_tcp(sport: u16, flags: u8, payload: &[u8]) -> TcpPacket {
    TcpPacket {
        flags,
        seq: 1001,
        ack: 5001,
        payload: payload.to_vec(),
        ..syn(sport)
    }
}

fn datagram(sport: u16, payload: &[u8]) -> UdpPacket {
    UdpPacket {
        ip: client_ep(NODE_IP),
        src_port: sport,
        dst_port: NODE_PORT,
        payload: payload.to_vec(),
    }
}

/// Zeroes the IPv4 and L4 checksum fields (TCP/UDP/ICMP) of a copy.
fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

#[test]
fn local_backend_dnat_keeps_the_client_and_the_reply_is_reverse_natted() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(7, &[1]));

    // SYN to node IP:node port: DNAT to the local pod, client kept,
    // handed to the kernel (which routes it to the pod's veth).
    let frame = syn(40000).build();
    let before = mono_ns();
    let run = node.run(FROM, &frame);
    let after = mono_ns();
    eprintln!(
        "tw_from_netdev local-backend SYN: BPF_PROG_TEST_RUN duration {:?}",
        run.duration
    );
    assert_eq!(run.retval, TC_ACT_OK);
    let dnat = TcpPacket {
        ip: client_ep(backend_ip(1)),
        dst_port: BACKEND_PORT,
        ..syn(40000)
    }
    .build();
    assert_translated(&run, &dnat);

    let sct = node.ct_must(&svc_ct_key(40000, IPPROTO_TCP), "SERVICE");
    assert_eq!((sct.backend_id, sct.rev_nat_index, sct.nat_port), (1, 7, 0));
    assert_eq!(sct.state, TW_CT_S_SYN_SEEN | TW_CT_S_NODEPORT);
    assert_eq!((sct.tx_packets, sct.tx_bytes), (1, frame.len() as u64));
    assert_lifetime(sct.expires, before, after, TW_CT_LIFETIME_TCP_SYN, "SYN");
    let cct = node.ct_must(&conn_ct_key(40000, 1, IPPROTO_TCP), "connection");
    assert_eq!((cct.backend_id, cct.rev_nat_index), (1, 7));
    assert_eq!(cct.state, TW_CT_S_SYN_SEEN | TW_CT_S_NODEPORT);
    assert_eq!((cct.tx_packets, cct.rx_packets), (1, 0));
    assert!(
        node.maps.np_nat.keys().next().is_none(),
        "a local backend needs no SNAT mapping"
    );

    // The pod's SYN-ACK leaves by the uplink: source back to node IP:node port.
    let reply = |flags, payload: &[u8]| TcpPacket {
        ip: pod_reply_ep(backend_ip(1)),
        src_port: BACKEND_PORT,
        dst_port: 40000,
        seq: 5000,
        ack: 1001,
        flags,
        window: 1000,
        payload: payload.to_vec(),
    };
    let synack = reply(tcp_flags::SYN | tcp_flags::ACK, b"").build();
    let run = node.run(TO, &synack);
    eprintln!(
        "tw_to_netdev reverse NAT: BPF_PROG_TEST_RUN duration {:?}",
        run.duration
    );
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = TcpPacket {
        ip: pod_reply_ep(NODE_IP),
        src_port: NODE_PORT,
        ..reply(tcp_flags::SYN | tcp_flags::ACK, b"")
    }
    .build();
    assert_translated(&run, &expected);
    let cct = node.ct_must(&conn_ct_key(40000, 1, IPPROTO_TCP), "connection");
    assert_eq!((cct.rx_packets, cct.rx_bytes), (1, synack.len() as u64));
    assert_ne!(cct.state & TW_CT_S_SEEN_REPLY, 0);
    let sct = node.ct_must(&svc_ct_key(40000, IPPROTO_TCP), "SERVICE");
    assert_eq!(sct.rx_packets, 1, "the SERVICE entry sees the reply too");

    // The handshake's ACK and data: same backend, established lifetimes.
    let before = mono_ns();
    let run = node.run(FROM, &client_tcp(40000, tcp_flags::ACK, b"GET /").build());
    let after = mono_ns();
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.frame().ip.dst, backend_ip(1));
    let sct = node.ct_must(&svc_ct_key(40000, IPPROTO_TCP), "SERVICE");
    assert_ne!(sct.state & TW_CT_S_ESTABLISHED, 0);
    assert_lifetime(
        sct.expires,
        before,
        after,
        TW_CT_LIFETIME_TCP_ESTABLISHED,
        "SERVICE established",
    );
    let data = reply(tcp_flags::PSH | tcp_flags::ACK, b"200 OK").build();
    let run = node.run(TO, &data);
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = TcpPacket {
        ip: pod_reply_ep(NODE_IP),
        src_port: NODE_PORT,
        ..reply(tcp_flags::PSH | tcp_flags::ACK, b"200 OK")
    }
    .build();
    assert_translated(&run, &expected);
    assert!(node.maps.drop_counts().unwrap().is_empty());

    // Timing of the common cases over many runs.
    let new_flows: Vec<Duration> = (0..200u16)
        .map(|i| {
            let run = node.run(FROM, &syn(50000 + i).build());
            assert_eq!(run.retval, TC_ACT_OK);
            run.duration
        })
        .collect();
    let established: Vec<Duration> = (0..200)
        .map(|_| {
            let run = node.run(FROM, &client_tcp(40000, tcp_flags::ACK, b"x").build());
            assert_eq!(run.retval, TC_ACT_OK);
            run.duration
        })
        .collect();
    let replies: Vec<Duration> = (0..200)
        .map(|_| {
            let run = node.run(TO, &data);
            assert_eq!(run.retval, TC_ACT_OK);
            run.duration
        })
        .collect();
    let (a, b) = median(new_flows);
    let (c, d) = median(established);
    let (e, f) = median(replies);
    eprintln!(
        "local backend over 200 runs (min/median): new flow {a:?}/{b:?}, established \
         {c:?}/{d:?}, reply rev NAT {e:?}/{f:?}"
    );
    eprintln!(
        "verifier: tw_from_netdev walked {:?} instructions, tw_to_netdev {:?}",
        node.verified_insns("nodeport", FROM),
        node.verified_insns("nodeport", TO)
    );
}

#[test]
fn local_backend_udp_dnat_and_reverse_nat() {
    let mut node = Node::new();
    node.add_service(&Service::udp(8, &[2]));

    let query = datagram(33333, b"a query");
    let before = mono_ns();
    let run = node.run(FROM, &query.build());
    let after = mono_ns();
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = UdpPacket {
        ip: client_ep(backend_ip(2)),
        dst_port: BACKEND_PORT,
        ..query.clone()
    }
    .build();
    assert_translated(&run, &expected);
    let cct = node.ct_must(&conn_ct_key(33333, 2, IPPROTO_UDP), "connection");
    assert_eq!((cct.rev_nat_index, cct.state), (8, TW_CT_S_NODEPORT));
    assert_lifetime(cct.expires, before, after, TW_CT_LIFETIME_NONTCP, "UDP");

    let answer = UdpPacket {
        ip: pod_reply_ep(backend_ip(2)),
        src_port: BACKEND_PORT,
        dst_port: 33333,
        payload: b"the answer".to_vec(),
    };
    let run = node.run(TO, &answer.build());
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = UdpPacket {
        ip: pod_reply_ep(NODE_IP),
        src_port: NODE_PORT,
        ..answer.clone()
    }
    .build();
    assert_translated(&run, &expected);

    // A reply without UDP checksum (0) keeps having none.
    let mut nocsum = answer.build();
    nocsum[ETH_HLEN + IPV4_HLEN + 6..ETH_HLEN + IPV4_HLEN + 8].copy_from_slice(&[0, 0]);
    let run = node.run(TO, &nocsum);
    assert_eq!(run.retval, TC_ACT_OK);
    assert!(ipv4_checksum_ok(&run.out));
    let out = run.frame();
    assert_eq!(out.ip.src, NODE_IP);
    assert!(
        matches!(
            out.l4,
            ParsedL4::Udp {
                checksum: 0,
                src_port: NODE_PORT,
                ..
            }
        ),
        "{:?}",
        out.l4
    );
}

/// The whole local-backend path across both objects, as the kernel runs
/// it: uplink ingress, pod veth egress (tw_to_lxc), the pod's reply at pod
/// veth ingress (tw_from_lxc), uplink egress. Exactly one program rewrites
/// each direction. The uplink's connection entry (an egress entry, flags 0)
/// is accounted by the uplink's programs; the pod's veth, for which the
/// flow is a connection the pod receives, keeps its own ingress entry
/// (TW_CT_F_INGRESS) of the same tuple, as for any connection to a pod.
#[test]
fn local_backend_flow_through_the_pod_veth_is_translated_once() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(7, &[1]));

    let run = node.run(FROM, &syn(41000).build());
    assert_eq!(run.retval, TC_ACT_OK);
    // The kernel forwards it to the pod's veth: new MACs, TTL - 1.
    let to_pod = TcpPacket {
        ip: Ipv4Endpoints {
            src_mac: LXC_MAC,
            dst_mac: POD_MAC,
            ttl: 63,
            ..client_ep(backend_ip(1))
        },
        dst_port: BACKEND_PORT,
        ..syn(41000)
    }
    .build();
    let run = node.run_in("lxc", "tw_to_lxc", &to_pod);
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.out, to_pod, "tw_to_lxc must not touch a NodePort flow");

    let pod_reply = |ep: Ipv4Endpoints| {
        TcpPacket {
            ip: ep,
            src_port: BACKEND_PORT,
            dst_port: 41000,
            seq: 5000,
            ack: 1001,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            ..TcpPacket::default()
        }
        .build()
    };
    let from_pod = pod_reply(Ipv4Endpoints {
        src_mac: POD_MAC,
        dst_mac: LXC_MAC,
        src_ip: backend_ip(1),
        dst_ip: CLIENT,
        ttl: 64,
    });
    let run = node.run_in("lxc", "tw_from_lxc", &from_pod);
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.out, from_pod, "tw_from_lxc must not touch the reply");
    let cct = node.ct_must(&conn_ct_key(41000, 1, IPPROTO_TCP), "connection");
    assert_eq!(
        (cct.tx_packets, cct.rx_packets),
        (1, 0),
        "the uplink's entry is the uplink's: the pod's veth leaves it alone"
    );
    let ingress = Ct4Key {
        flags: TW_CT_F_INGRESS,
        ..conn_ct_key(41000, 1, IPPROTO_TCP)
    };
    let ict = node.ct_must(&ingress, "the pod's ingress entry");
    assert_eq!(
        (ict.tx_packets, ict.rx_packets, ict.rev_nat_index),
        (1, 1, 0),
        "tw_to_lxc opened the pod's ingress entry with the SYN, tw_from_lxc found the reply \
         as its reply"
    );
    assert_eq!(ict.state, TW_CT_S_SYN_SEEN | TW_CT_S_SEEN_REPLY);
    for flags in [0, TW_CT_F_INGRESS] {
        assert!(
            node.ct(&ct_key(
                backend_ip(1),
                CLIENT,
                BACKEND_PORT,
                41000,
                IPPROTO_TCP,
                flags
            ))
            .is_none(),
            "no entry for the reply direction"
        );
    }

    let run = node.run(TO, &pod_reply(pod_reply_ep(backend_ip(1))));
    assert_eq!(run.retval, TC_ACT_OK);
    assert_translated(
        &run,
        &TcpPacket {
            ip: pod_reply_ep(NODE_IP),
            src_port: NODE_PORT,
            dst_port: 41000,
            seq: 5000,
            ack: 1001,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            ..TcpPacket::default()
        }
        .build(),
    );
    let cct = node.ct_must(&conn_ct_key(41000, 1, IPPROTO_TCP), "connection");
    assert_eq!((cct.tx_packets, cct.rx_packets), (1, 1));
    assert_eq!(
        cct.state,
        TW_CT_S_SYN_SEEN | TW_CT_S_SEEN_REPLY | TW_CT_S_NODEPORT
    );
    let ict = node.ct_must(&ingress, "the pod's ingress entry");
    assert_eq!(
        (ict.tx_packets, ict.rx_packets),
        (1, 1),
        "tw_to_netdev leaves the pod's entry alone"
    );
    eprintln!(
        "verifier: tw_from_lxc walked {:?} instructions, tw_to_lxc {:?}",
        node.verified_insns("lxc", "tw_from_lxc"),
        node.verified_insns("lxc", "tw_to_lxc")
    );
}

#[test]
fn remote_backend_dnat_snat_and_the_reply_goes_back_to_the_client() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(9, &[11]));

    // SYN: DNAT to the remote pod, SNAT to node IP:nat port, redirected.
    let frame = syn(40000).build();
    let before = mono_ns();
    let run = node.run(FROM, &frame);
    eprintln!(
        "tw_from_netdev remote-backend SYN (DNAT + SNAT + port allocation): duration {:?}",
        run.duration
    );
    assert_eq!(run.retval, TC_ACT_REDIRECT, "bpf_redirect_neigh");
    let (id, nat_port) = node.snat(&frame);
    assert_eq!(id, 11);
    // The first run allocated its own port; the retransmission (a SYN on
    // a live, non-closing entry) keeps it.
    let first_port = ports(&run.frame().l4).0;
    assert_eq!(nat_port, first_port, "a retransmitted SYN keeps its port");
    let expected = TcpPacket {
        ip: Ipv4Endpoints {
            src_ip: NODE_IP,
            ..client_ep(backend_ip(11))
        },
        src_port: nat_port,
        dst_port: BACKEND_PORT,
        ..syn(40000)
    }
    .build();
    assert_translated(&run, &expected);

    let skey = svc_ct_key(40000, IPPROTO_TCP);
    let sct = node.ct_must(&skey, "SERVICE");
    assert_eq!((sct.backend_id, sct.rev_nat_index), (11, 9));
    assert_eq!(
        sct.nat_port,
        be16(nat_port),
        "the SERVICE entry keeps the port"
    );
    assert_eq!(sct.state, TW_CT_S_SYN_SEEN | TW_CT_S_NODEPORT);
    let nat = node
        .nat(&nat_key(11, nat_port, IPPROTO_TCP))
        .expect("tw_np_nat4 entry of the flow");
    assert_eq!(
        nat,
        Nat4Entry {
            expires: sct.expires,
            client_addr: be32(CLIENT),
            frontend_addr: be32(NODE_IP),
            client_port: be16(40000),
            frontend_port: be16(NODE_PORT),
            pad: 0,
        },
        "np_nat entry fields; it expires with the SERVICE entry"
    );
    assert_lifetime(
        nat.expires,
        before,
        mono_ns(),
        TW_CT_LIFETIME_TCP_SYN,
        "mapping of a new flow",
    );
    assert_eq!(
        node.maps.np_nat.keys().count(),
        1,
        "one mapping for the flow"
    );
    assert!(
        node.ct(&conn_ct_key(40000, 11, IPPROTO_TCP)).is_none(),
        "a SNATed flow has no client -> backend entry (the packet does not carry it)"
    );

    // The backend's SYN-ACK: to client:cport, from node IP:node port.
    let reply = |flags, payload: &[u8]| TcpPacket {
        ip: remote_reply_ep(11),
        src_port: BACKEND_PORT,
        dst_port: nat_port,
        seq: 5000,
        ack: 1001,
        flags,
        window: 1000,
        payload: payload.to_vec(),
    };
    let synack = reply(tcp_flags::SYN | tcp_flags::ACK, b"").build();
    let run = node.run(FROM, &synack);
    assert_eq!(run.retval, TC_ACT_REDIRECT, "the reply is redirected out");
    let expected = TcpPacket {
        ip: Ipv4Endpoints {
            src_ip: NODE_IP,
            dst_ip: CLIENT,
            ..remote_reply_ep(11)
        },
        src_port: NODE_PORT,
        dst_port: 40000,
        ..reply(tcp_flags::SYN | tcp_flags::ACK, b"")
    }
    .build();
    assert_translated(&run, &expected);
    let sct = node.ct_must(&skey, "SERVICE");
    assert_eq!((sct.tx_packets, sct.rx_packets), (2, 1));
    assert_ne!(sct.state & TW_CT_S_SEEN_REPLY, 0);

    // Next packets of the flow: same nat port; the handshake completes
    // and the mapping follows the entry's lifetime.
    let before = mono_ns();
    let (id, port) = node.snat(&client_tcp(40000, tcp_flags::ACK, b"").build());
    let after = mono_ns();
    assert_eq!((id, port), (11, nat_port), "same backend, same nat port");
    let sct = node.ct_must(&skey, "SERVICE");
    assert_ne!(sct.state & TW_CT_S_ESTABLISHED, 0);
    assert_lifetime(
        sct.expires,
        before,
        after,
        TW_CT_LIFETIME_TCP_ESTABLISHED,
        "established",
    );
    let nat = node.nat(&nat_key(11, nat_port, IPPROTO_TCP)).unwrap();
    assert_eq!(nat.expires, sct.expires, "refreshed with the SERVICE entry");
    for _ in 0..5 {
        let (id, port) =
            node.snat(&client_tcp(40000, tcp_flags::PSH | tcp_flags::ACK, b"data").build());
        assert_eq!((id, port), (11, nat_port));
    }
    let data = reply(tcp_flags::PSH | tcp_flags::ACK, b"response").build();
    let run = node.run(FROM, &data);
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    let out = run.frame();
    assert!(ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out));
    assert_eq!((out.ip.src, out.ip.dst), (NODE_IP, CLIENT));
    assert_eq!(ports(&out.l4), (NODE_PORT, 40000));

    // FIN both ways: closing lifetime, mirrored in the mapping.
    node.snat(&client_tcp(40000, tcp_flags::FIN | tcp_flags::ACK, b"").build());
    let before = mono_ns();
    let run = node.run(FROM, &reply(tcp_flags::FIN | tcp_flags::ACK, b"").build());
    let after = mono_ns();
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    let sct = node.ct_must(&skey, "SERVICE");
    assert_lifetime(
        sct.expires,
        before,
        after,
        TW_CT_LIFETIME_TCP_CLOSE,
        "FIN/FIN",
    );
    let nat = node.nat(&nat_key(11, nat_port, IPPROTO_TCP)).unwrap();
    assert_eq!(nat.expires, sct.expires, "the reply refreshed the mapping");
    assert!(node.maps.drop_counts().unwrap().is_empty());

    // A new SYN on the closed tuple is a new flow (a new mapping).
    let (id, _) = node.snat(&syn(40000).build());
    assert_eq!(id, 11);
    let sct = node.ct_must(&skey, "SERVICE reopened");
    assert_eq!(
        (sct.state, sct.tx_packets),
        (TW_CT_S_SYN_SEEN | TW_CT_S_NODEPORT, 1)
    );

    // Timing.
    let new_flows: Vec<Duration> = (0..200u16)
        .map(|i| node.run(FROM, &syn(50000 + i).build()).duration)
        .collect();
    let established: Vec<Duration> = (0..200)
        .map(|_| {
            node.run(FROM, &client_tcp(40000, tcp_flags::ACK, b"x").build())
                .duration
        })
        .collect();
    let (a, b) = median(new_flows);
    let (c, d) = median(established);
    eprintln!(
        "remote backend over 200 runs (min/median): new flow with port allocation \
         {a:?}/{b:?}, established {c:?}/{d:?}"
    );
}

#[test]
fn remote_backend_udp_snat_and_reply() {
    let mut node = Node::new();
    node.add_service(&Service::udp(10, &[12]));

    let query = datagram(5353, b"query");
    let (id, nat_port) = node.snat(&query.build());
    assert_eq!(id, 12);
    let run = node.run(FROM, &query.build());
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert_translated(
        &run,
        &UdpPacket {
            ip: Ipv4Endpoints {
                src_ip: NODE_IP,
                ..client_ep(backend_ip(12))
            },
            src_port: nat_port,
            dst_port: BACKEND_PORT,
            ..query.clone()
        }
        .build(),
    );
    let sct = node.ct_must(&svc_ct_key(5353, IPPROTO_UDP), "SERVICE");
    let nat = node.nat(&nat_key(12, nat_port, IPPROTO_UDP)).unwrap();
    assert_eq!(nat.expires, sct.expires);
    assert_eq!(
        (nat.client_addr, nat.client_port),
        (be32(CLIENT), be16(5353))
    );

    let answer = UdpPacket {
        ip: remote_reply_ep(12),
        src_port: BACKEND_PORT,
        dst_port: nat_port,
        payload: b"answer".to_vec(),
    };
    let before = mono_ns();
    let run = node.run(FROM, &answer.build());
    let after = mono_ns();
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert_translated(
        &run,
        &UdpPacket {
            ip: Ipv4Endpoints {
                src_ip: NODE_IP,
                dst_ip: CLIENT,
                ..answer.ip
            },
            src_port: NODE_PORT,
            dst_port: 5353,
            ..answer.clone()
        }
        .build(),
    );
    let sct = node.ct_must(&svc_ct_key(5353, IPPROTO_UDP), "SERVICE");
    assert_eq!(sct.rx_packets, 1);
    assert_lifetime(
        sct.expires,
        before,
        after,
        TW_CT_LIFETIME_NONTCP,
        "UDP reply",
    );
    let nat = node.nat(&nat_key(12, nat_port, IPPROTO_UDP)).unwrap();
    assert_eq!(nat.expires, sct.expires);

    // A mapping the LRU lost is put back on the flow's next packet.
    node.maps
        .np_nat
        .remove(&nat_key(12, nat_port, IPPROTO_UDP))
        .unwrap();
    let (_, port) = node.snat(&query.build());
    assert_eq!(port, nat_port, "the flow keeps its port");
    assert!(node.nat(&nat_key(12, nat_port, IPPROTO_UDP)).is_some());
}

#[test]
fn nat_ports_are_distinct_in_range_and_exhaustion_drops() {
    let mut node = Node::new();
    node.add_service(&Service::udp(11, &[13]));

    // Many flows to one backend: each its own port, all in range.
    let mut seen = BTreeSet::new();
    for sport in 0..300u16 {
        let (_, port) = node.snat(&datagram(20000 + sport, b"x").build());
        assert!(seen.insert(port), "nat port {port} handed out twice");
    }
    assert_eq!(node.maps.np_nat.keys().count(), 300);

    // A range of 3 ports (outside the first range, whose 300 mappings
    // for the same backend are still live): the fourth flow finds none.
    let mut cfg = node_config();
    cfg.nat_port_min = 60000;
    cfg.nat_port_max = 60002;
    node.maps.set_config(&cfg).unwrap();
    let mut small = BTreeSet::new();
    for sport in 0..3u16 {
        let (_, port) = node.snat(&datagram(30000 + sport, b"x").build());
        assert!((60000..=60002).contains(&port), "{port}");
        small.insert(port);
    }
    assert_eq!(small.len(), 3, "every port of the range is found");
    let run = node.run(FROM, &datagram(30003, b"x").build());
    assert_eq!(run.retval, TC_ACT_SHOT, "no free port: dropped");
    assert_eq!(node.drops(DROP_NAT_NO_MAPPING), 1);
    assert!(
        node.ct(&svc_ct_key(30003, IPPROTO_UDP)).is_none(),
        "no entry for a flow that could not be mapped"
    );

    // An expired mapping frees its port: it is reclaimed.
    let stale = nat_key(13, 60001, IPPROTO_UDP);
    let mut entry = node.nat(&stale).unwrap();
    entry.expires = 1;
    node.maps.np_nat.insert(stale, entry, 0).unwrap();
    let (_, port) = node.snat(&datagram(30004, b"x").build());
    assert_eq!(port, 60001, "the expired mapping's port is reused");
    let nat = node.nat(&stale).unwrap();
    assert_eq!(nat.client_port, be16(30004));
    assert!(nat.expires > mono_ns());

    // Ports are per backend: another backend has the whole range again.
    node.add_service(&Service {
        port: NODE_PORT + 1,
        ..Service::udp(12, &[14])
    });
    let run = node.run(
        FROM,
        &UdpPacket {
            dst_port: NODE_PORT + 1,
            ..datagram(30005, b"x")
        }
        .build(),
    );
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert_eq!(node.drops(DROP_NAT_NO_MAPPING), 1);

    // No usable range configured: no SNAT.
    cfg.nat_port_min = 0;
    cfg.nat_port_max = 0;
    node.maps.set_config(&cfg).unwrap();
    let run = node.run(FROM, &datagram(30006, b"x").build());
    assert_eq!(run.retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_NAT_NO_MAPPING), 2);
}

#[test]
fn expired_np_nat_entry_is_not_used() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(9, &[11]));
    let key = nat_key(11, 61005, IPPROTO_TCP);
    let entry = Nat4Entry {
        expires: 1,
        client_addr: be32(CLIENT),
        frontend_addr: be32(NODE_IP),
        client_port: be16(40000),
        frontend_port: be16(NODE_PORT),
        pad: 0,
    };
    node.maps.np_nat.insert(key, entry, 0).unwrap();
    let reply = TcpPacket {
        ip: remote_reply_ep(11),
        src_port: BACKEND_PORT,
        dst_port: 61005,
        flags: tcp_flags::SYN | tcp_flags::ACK,
        ..TcpPacket::default()
    }
    .build();
    let run = node.run(FROM, &reply);
    assert_eq!(run.retval, TC_ACT_OK, "left to the stack");
    assert_eq!(run.out, reply, "an expired mapping must not translate");

    // The same mapping alive translates.
    node.maps
        .np_nat
        .insert(
            key,
            Nat4Entry {
                expires: mono_ns() + 60 * NSEC,
                ..entry
            },
            0,
        )
        .unwrap();
    let run = node.run(FROM, &reply);
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    let out = run.frame();
    assert_eq!((out.ip.src, out.ip.dst), (NODE_IP, CLIENT));
    assert_eq!(ports(&out.l4), (NODE_PORT, 40000));
}

#[test]
fn etp_local_without_a_local_backend_drops() {
    let mut node = Node::new();
    // externalTrafficPolicy=Local on a node without a local endpoint: the
    // EXT scope has no backend, the INT scope lists the remote ones.
    let flags = TW_SVC_F_NODEPORT | TW_SVC_F_ETP_LOCAL | TW_SVC_F_TWO_SCOPES;
    for proto in [IPPROTO_TCP, IPPROTO_UDP] {
        node.add_service(&Service {
            flags,
            proto,
            ..Service::tcp(20, &[])
        });
        node.add_service(&Service {
            flags,
            proto,
            scope: TW_LB_SCOPE_INT,
            ..Service::tcp(20, &[11, 12])
        });
    }
    let run = node.run(FROM, &syn(40000).build());
    assert_eq!(run.retval, TC_ACT_SHOT, "dropped, as kube-proxy does");
    // Cilium's reason for it: no service backend (as a drop, no reject).
    assert_eq!(node.drops(DROP_NO_SERVICE), 1);
    let run = node.run(FROM, &datagram(40001, b"q").build());
    assert_eq!(run.retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_NO_SERVICE), 2);
    assert!(node.ct(&svc_ct_key(40000, IPPROTO_TCP)).is_none());
    assert!(node.maps.np_nat.keys().next().is_none());

    // With a local endpoint in the EXT scope: DNAT, client kept.
    node.add_service(&Service {
        flags,
        ..Service::tcp(20, &[3])
    });
    for sport in 40010..40030 {
        let run = node.run(FROM, &syn(sport).build());
        assert_eq!(run.retval, TC_ACT_OK);
        let out = run.frame();
        assert_eq!((out.ip.src, out.ip.dst), (CLIENT, backend_ip(3)));
    }
}

#[test]
fn cluster_policy_without_backend_rejects() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(30, &[]));
    node.add_service(&Service::udp(31, &[]));

    let run = node.run(FROM, &syn(40000).build());
    assert_eq!(run.retval, TC_ACT_REDIRECT, "the RST goes back out");
    assert!(ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out));
    let out = run.frame();
    assert_eq!((out.dst_mac, out.src_mac), (CLIENT_MAC, NODE_MAC));
    assert_eq!((out.ip.src, out.ip.dst), (NODE_IP, CLIENT));
    match out.l4 {
        ParsedL4::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ack,
            ..
        } => {
            assert_eq!((src_port, dst_port), (NODE_PORT, 40000));
            assert_eq!(flags, tcp_flags::RST | tcp_flags::ACK);
            assert_eq!((seq, ack), (0, 1001));
        }
        ref other => panic!("not TCP: {other:?}"),
    }
    assert_eq!(node.drops(DROP_NO_SERVICE), 1);

    let query = datagram(40001, &[0xab; 40]).build();
    let run = node.run(FROM, &query);
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert!(ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out));
    assert_eq!(
        run.out.len(),
        ETH_HLEN + IPV4_HLEN + 8 + IPV4_HLEN + UDP_HLEN
    );
    let out = run.frame();
    assert_eq!((out.dst_mac, out.src_mac), (CLIENT_MAC, NODE_MAC));
    assert_eq!(
        (out.ip.src, out.ip.dst, out.ip.proto),
        (NODE_IP, CLIENT, IPPROTO_ICMP)
    );
    match out.l4 {
        ParsedL4::Icmp {
            icmp_type: t,
            code,
            ref payload,
            ..
        } => {
            assert_eq!(
                (t, code),
                (icmp_type::DEST_UNREACH, icmp_type::CODE_PORT_UNREACH)
            );
            assert_eq!(
                payload.as_slice(),
                &query[ETH_HLEN..ETH_HLEN + IPV4_HLEN + UDP_HLEN]
            );
        }
        ref other => panic!("not ICMP: {other:?}"),
    }
    assert_eq!(node.drops(DROP_NO_SERVICE), 2);
}

#[test]
fn non_nodeport_traffic_passes_byte_identical() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(7, &[1]));
    // A ClusterIP-only frontend keyed on the node IP is no NodePort.
    node.add_service(&Service {
        port: 8443,
        flags: TW_SVC_F_CLUSTERIP,
        ..Service::tcp(40, &[1])
    });

    let unchanged = |node: &mut Node, prog: &str, frame: &[u8], what: &str| {
        let run = node.run(prog, frame);
        assert_eq!(run.retval, TC_ACT_OK, "{what} through {prog}");
        assert_eq!(run.out, frame, "{what} through {prog} must not change");
    };

    let arp = ether_frame([0xff; 6], CLIENT_MAC, ETH_P_ARP, &[0x11; 28]);
    let ipv6 = ether_frame(NODE_MAC, CLIENT_MAC, ETH_P_IPV6, &[0x60; 60]);
    for prog in [FROM, TO] {
        unchanged(&mut node, prog, &arp, "ARP");
        unchanged(&mut node, prog, &ipv6, "IPv6");
    }
    // Other ports of the node IP (ssh, the kubelet), other protocols.
    unchanged(
        &mut node,
        FROM,
        &TcpPacket {
            dst_port: 22,
            ..syn(40000)
        }
        .build(),
        "ssh to the node",
    );
    unchanged(
        &mut node,
        FROM,
        &UdpPacket {
            dst_port: 53,
            ..datagram(40001, b"q")
        }
        .build(),
        "UDP to another port",
    );
    unchanged(
        &mut node,
        FROM,
        &UdpPacket {
            dst_port: NODE_PORT,
            ..datagram(40001, b"q")
        }
        .build(),
        "UDP to a TCP-only node port",
    );
    unchanged(
        &mut node,
        FROM,
        &TcpPacket {
            dst_port: 8443,
            ..syn(40002)
        }
        .build(),
        "a frontend without TW_SVC_F_NODEPORT",
    );
    unchanged(
        &mut node,
        FROM,
        &IcmpEchoPacket {
            ip: client_ep(NODE_IP),
            ..IcmpEchoPacket::default()
        }
        .build(),
        "ping to the node",
    );
    // The node port on another destination: traffic through the node to
    // a pod, or to another node's address.
    for dst in [backend_ip(1), Ipv4Addr::new(172, 18, 0, 3)] {
        unchanged(
            &mut node,
            FROM,
            &TcpPacket {
                ip: client_ep(dst),
                ..syn(40003)
            }
            .build(),
            "the node port of another address",
        );
    }
    // A remote pod's reply to a local pod (pod-to-pod across nodes).
    unchanged(
        &mut node,
        FROM,
        &TcpPacket {
            ip: Ipv4Endpoints {
                src_ip: backend_ip(11),
                dst_ip: backend_ip(1),
                ..client_ep(NODE_IP)
            },
            src_port: 80,
            dst_port: 45000,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            ..TcpPacket::default()
        }
        .build(),
        "remote pod to local pod",
    );

    // Egress: a local pod's connection to a remote pod, tracked by
    // tw_from_lxc (no NODEPORT entry), its SYN and the pod answering a
    // remote client whose SYN tw_to_lxc tracked (in an ingress entry).
    let pod_ep = |dst| Ipv4Endpoints {
        src_mac: NODE_MAC,
        dst_mac: NODE2_MAC,
        src_ip: backend_ip(1),
        dst_ip: dst,
        ttl: 63,
    };
    let outgoing = TcpPacket {
        ip: pod_ep(backend_ip(11)),
        src_port: 45001,
        dst_port: 80,
        ..TcpPacket::default()
    }
    .build();
    let run = node.run_in("lxc", "tw_from_lxc", &outgoing);
    assert_eq!(run.retval, TC_ACT_OK);
    unchanged(&mut node, TO, &outgoing, "pod to remote pod");
    let incoming = TcpPacket {
        ip: Ipv4Endpoints {
            src_mac: LXC_MAC,
            dst_mac: POD_MAC,
            src_ip: backend_ip(12),
            dst_ip: backend_ip(1),
            ttl: 63,
        },
        src_port: 46000,
        dst_port: 8080,
        ..TcpPacket::default()
    }
    .build();
    assert_eq!(node.run_in("lxc", "tw_to_lxc", &incoming).retval, TC_ACT_OK);
    let answer = TcpPacket {
        ip: pod_ep(backend_ip(12)),
        src_port: 8080,
        dst_port: 46000,
        flags: tcp_flags::SYN | tcp_flags::ACK,
        ..TcpPacket::default()
    }
    .build();
    unchanged(&mut node, TO, &answer, "local pod answering a remote pod");
    let ct = node.ct_must(
        &ct_key(
            backend_ip(12),
            backend_ip(1),
            46000,
            8080,
            IPPROTO_TCP,
            TW_CT_F_INGRESS,
        ),
        "remote pod to local pod",
    );
    assert_eq!(ct.rx_packets, 0, "tw_to_netdev leaves other entries alone");
    // The node's own traffic.
    unchanged(
        &mut node,
        TO,
        &TcpPacket {
            ip: Ipv4Endpoints {
                src_ip: NODE_IP,
                ..pod_ep(CLIENT)
            },
            src_port: NODE_PORT,
            dst_port: 40000,
            ..TcpPacket::default()
        }
        .build(),
        "the node's own traffic",
    );

    // NodePort off: even a NodePort SYN passes both ways untouched.
    let mut cfg = node_config();
    cfg.flags = 0;
    node.maps.set_config(&cfg).unwrap();
    unchanged(&mut node, FROM, &syn(40009).build(), "NodePort disabled");
    assert!(node.ct(&svc_ct_key(40009, IPPROTO_TCP)).is_none());
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "nothing was dropped"
    );
}

#[test]
fn malformed_packets_to_the_node_ip_are_dropped_others_pass() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(7, &[1]));
    let full = syn(40000).build();
    let cut = &full[..ETH_HLEN + IPV4_HLEN + 10];
    let run = node.run(FROM, cut);
    assert_eq!(run.retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_CT_INVALID_HDR), 1);

    let through = TcpPacket {
        ip: client_ep(backend_ip(1)),
        ..syn(40000)
    }
    .build();
    let cut = &through[..ETH_HLEN + IPV4_HLEN + 10];
    let run = node.run(FROM, cut);
    assert_eq!(run.retval, TC_ACT_OK, "not addressed to the node: not ours");
    assert_eq!(run.out, cut);
    let run = node.run(TO, cut);
    assert_eq!(run.retval, TC_ACT_OK, "egress never drops");
    assert_eq!(node.drops(DROP_CT_INVALID_HDR), 1);
}

/// A payload of `len` bytes, different for every `seed`.
fn big_payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(11).wrapping_add(seed))
        .collect()
}

/// IPv4 fragments (tw_frag4) of UDP datagrams larger than the MTU to a
/// node port with a local backend, and to a LoadBalancer IP: DNATed in
/// every fragment, and the pod's fragmented answers reverse-NATed in every
/// fragment on their way out.
#[test]
fn fragmented_udp_to_a_local_backend_is_translated_in_every_fragment() {
    let mut node = Node::new();
    node.add_service(&Service::udp(8, &[2]));
    node.add_service(&Service::vip(
        LB_IP,
        TW_SVC_F_LOADBALANCER,
        IPPROTO_UDP,
        9,
        &[3],
    ));

    for (frontend, port, backend, id) in [
        (NODE_IP, NODE_PORT, 2, 0x5101),
        (LB_IP, SVC_PORT, 3, 0x5201),
    ] {
        let query = UdpPacket {
            dst_port: port,
            ip: client_ep(frontend),
            ..datagram(33333, &big_payload(3000, 1))
        };
        let sent = fragments(&query.build(), id);
        let out = node.run_fragments("nodeport", FROM, &sent, 0, TC_ACT_OK);
        let dnat = UdpPacket {
            ip: client_ep(backend_ip(backend)),
            dst_port: BACKEND_PORT,
            ..query.clone()
        };
        assert_fragments(&out, &fragments(&dnat.build(), id));

        let answer = UdpPacket {
            ip: pod_reply_ep(backend_ip(backend)),
            src_port: BACKEND_PORT,
            dst_port: 33333,
            payload: big_payload(3500, 2),
        };
        let sent = fragments(&answer.build(), id + 1);
        let out = node.run_fragments("nodeport", TO, &sent, 0, TC_ACT_OK);
        let rev = UdpPacket {
            ip: pod_reply_ep(frontend),
            src_port: port,
            ..answer.clone()
        };
        assert_fragments(&out, &fragments(&rev.build(), id + 1));
        let cct = node.ct_must(
            &ct_key(
                CLIENT,
                backend_ip(backend),
                33333,
                BACKEND_PORT,
                IPPROTO_UDP,
                0,
            ),
            "connection",
        );
        assert_eq!((cct.tx_packets, cct.rx_packets), (3, 3), "{frontend}");
    }
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "{:?}",
        node.maps.drop_counts()
    );

    // A later fragment whose first fragment was not seen: passed to the
    // node's stack (it may be the node's own traffic arriving out of
    // order), opening nothing; passed through the node too (the pod's veth
    // judges it), never dropped on the way out.
    let lone = fragments(&datagram(33334, &big_payload(3000, 3)).build(), 0x5301);
    let run = node.run(FROM, &lone[1]);
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.out, lone[1], "untouched");
    assert_eq!(node.drops(DROP_FRAG_NOT_FOUND), 0);
    assert!(node.ct(&svc_ct_key(33334, IPPROTO_UDP)).is_none());
    let through = UdpPacket {
        ip: client_ep(backend_ip(5)),
        ..datagram(33335, &big_payload(3000, 4))
    };
    let through = fragments(&through.build(), 0x5302);
    let run = node.run(FROM, &through[1]);
    assert_eq!((run.retval, &run.out), (TC_ACT_OK, &through[1]));
    let out = UdpPacket {
        ip: pod_reply_ep(backend_ip(5)),
        ..datagram(33336, &big_payload(3000, 5))
    };
    let out = fragments(&out.build(), 0x5303);
    let run = node.run(TO, &out[2]);
    assert_eq!((run.retval, &run.out), (TC_ACT_OK, &out[2]));
    assert_eq!(node.drops(DROP_FRAG_NOT_FOUND), 0);
}

/// A fragmented datagram to a node port with a remote backend: DNAT and
/// SNAT (one nat port) in every fragment, all redirected; the backend's
/// fragmented answer back to the client in every fragment.
#[test]
fn fragmented_udp_to_a_remote_backend_is_snatted_in_every_fragment() {
    let mut node = Node::new();
    node.add_service(&Service::udp(10, &[12]));

    let query = datagram(5353, &big_payload(3000, 6));
    let sent = fragments(&query.build(), 0x6101);
    let out = node.run_fragments("nodeport", FROM, &sent, 0, TC_ACT_REDIRECT);
    let nat_port = ports(&ParsedFrame::parse(&out[0]).unwrap().l4).0;
    assert!((NAT_MIN..=NAT_MAX).contains(&nat_port), "{nat_port}");
    let snat = UdpPacket {
        ip: Ipv4Endpoints {
            src_ip: NODE_IP,
            ..client_ep(backend_ip(12))
        },
        src_port: nat_port,
        dst_port: BACKEND_PORT,
        ..query.clone()
    };
    assert_fragments(&out, &fragments(&snat.build(), 0x6101));
    assert_eq!(node.maps.np_nat.keys().count(), 1, "one mapping");
    let sct = node.ct_must(&svc_ct_key(5353, IPPROTO_UDP), "SERVICE");
    assert_eq!((sct.tx_packets, sct.nat_port), (3, be16(nat_port)));

    let answer = UdpPacket {
        ip: remote_reply_ep(12),
        src_port: BACKEND_PORT,
        dst_port: nat_port,
        payload: big_payload(3300, 7),
    };
    let sent = fragments(&answer.build(), 0x6102);
    let out = node.run_fragments("nodeport", FROM, &sent, 0, TC_ACT_REDIRECT);
    let back = UdpPacket {
        ip: Ipv4Endpoints {
            src_ip: NODE_IP,
            dst_ip: CLIENT,
            ..answer.ip
        },
        src_port: NODE_PORT,
        dst_port: 5353,
        ..answer.clone()
    };
    assert_fragments(&out, &fragments(&back.build(), 0x6102));
    let sct = node.ct_must(&svc_ct_key(5353, IPPROTO_UDP), "SERVICE");
    assert_eq!(sct.rx_packets, 3);
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "{:?}",
        node.maps.drop_counts()
    );

    // A later fragment of a new flow (its first fragment lost): it opens
    // nothing, takes no nat port.
    let lost = fragments(&datagram(5354, &big_payload(3000, 8)).build(), 0x6103);
    assert_eq!(node.run(FROM, &lost[2]).retval, TC_ACT_OK);
    assert_eq!(node.drops(DROP_FRAG_NOT_FOUND), 0);
    assert_eq!(node.maps.np_nat.keys().count(), 1, "no second mapping");
}

/// Liveness as in lxc: a flow keeps its backend while it exists, even out
/// of every slot (graceful termination); once it is gone the flow is moved,
/// and a SNATed flow gets a mapping for its new backend.
#[test]
fn established_flow_keeps_its_backend_until_it_is_gone() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(50, &[11]));
    let (_, port_11) = node.snat(&syn(42000).build());

    // Backend 11 leaves the slots (terminating), 12 takes over.
    node.add_backend(12, IPPROTO_TCP);
    node.maps
        .services
        .insert(
            lb_key(NODE_IP, NODE_PORT, 1, IPPROTO_TCP, TW_LB_SCOPE_EXT),
            Lb4Service {
                backend_id: 12,
                ..Lb4Service::default()
            },
            0,
        )
        .unwrap();
    for _ in 0..3 {
        let (id, port) = node.snat(&client_tcp(42000, tcp_flags::ACK, b"more").build());
        assert_eq!(
            (id, port),
            (11, port_11),
            "the flow keeps its backend and port"
        );
    }
    for sport in 42001..42010 {
        assert_eq!(node.snat(&syn(sport).build()).0, 12, "new flows avoid it");
    }

    // Backend 11 is gone: the flow moves, with a mapping for 12.
    node.maps.backends.remove(&11).unwrap();
    let (id, port) = node.snat(&client_tcp(42000, tcp_flags::ACK, b"").build());
    assert_eq!(id, 12);
    let sct = node.ct_must(&svc_ct_key(42000, IPPROTO_TCP), "moved");
    assert_eq!((sct.backend_id, sct.nat_port), (12, be16(port)));
    let nat = node.nat(&nat_key(12, port, IPPROTO_TCP)).unwrap();
    assert_eq!(nat.client_port, be16(42000));
    assert_eq!(nat.expires, sct.expires);

    // The same for a local backend (no mapping involved).
    node.add_service(&Service {
        port: NODE_PORT + 2,
        ..Service::tcp(51, &[1])
    });
    let to = |sport, flags| TcpPacket {
        dst_port: NODE_PORT + 2,
        ..client_tcp(sport, flags, b"")
    };
    let run = node.run(FROM, &to(43000, tcp_flags::SYN).build());
    assert_eq!(run.frame().ip.dst, backend_ip(1));
    node.add_backend(2, IPPROTO_TCP);
    node.maps
        .services
        .insert(
            lb_key(NODE_IP, NODE_PORT + 2, 1, IPPROTO_TCP, TW_LB_SCOPE_EXT),
            Lb4Service {
                backend_id: 2,
                ..Lb4Service::default()
            },
            0,
        )
        .unwrap();
    let run = node.run(FROM, &to(43000, tcp_flags::ACK).build());
    assert_eq!(run.frame().ip.dst, backend_ip(1), "kept while it exists");
    node.maps.backends.remove(&1).unwrap();
    let run = node.run(FROM, &to(43000, tcp_flags::ACK).build());
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.frame().ip.dst, backend_ip(2), "moved once it is gone");
    let cct = node.ct_must(&conn_ct_key(43000, 2, IPPROTO_TCP), "moved connection");
    assert_eq!((cct.backend_id, cct.rev_nat_index), (2, 51));
    assert_ne!(cct.state & TW_CT_S_NODEPORT, 0);
}

// ---------------------------------------------------------------------------
// LoadBalancer ingress IPs and external IPs that reach the node from outside.
// ---------------------------------------------------------------------------

/// A Service's external IP and a LoadBalancer's ingress IP on the lab's
/// network, owned by no node: a router (or MetalLB) sends them to one.
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 200, 10);
const LB_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 200, 20);
/// Their service port.
const SVC_PORT: u16 = 80;
/// Both kinds: (address, flag, what).
const VIPS: [(Ipv4Addr, u16, &str); 2] = [
    (EXTERNAL_IP, TW_SVC_F_EXTERNAL_IP, "external IP"),
    (LB_IP, TW_SVC_F_LOADBALANCER, "LoadBalancer IP"),
];

impl Service {
    /// A LoadBalancer or external IP frontend (`flags`) at `address`:80.
    fn vip(address: Ipv4Addr, flags: u16, proto: u8, rev_nat: u16, backends: &[u32]) -> Service {
        Service {
            address,
            port: SVC_PORT,
            proto,
            flags,
            ..Service::tcp(rev_nat, backends)
        }
    }
}

/// A client's SYN to `dst`:80.
fn syn_to(dst: Ipv4Addr, sport: u16) -> TcpPacket {
    TcpPacket {
        ip: client_ep(dst),
        dst_port: SVC_PORT,
        ..syn(sport)
    }
}

/// The SERVICE entry of a client flow to `frontend`:80.
fn vip_ct_key(frontend: Ipv4Addr, sport: u16, proto: u8) -> Ct4Key {
    ct_key(CLIENT, frontend, sport, SVC_PORT, proto, TW_CT_F_SERVICE)
}

#[test]
fn external_and_load_balancer_ips_dnat_to_a_local_backend_and_replies_come_from_them() {
    let mut node = Node::new();
    for (i, (vip, flag, what)) in VIPS.into_iter().enumerate() {
        let n = u16::try_from(i).unwrap();
        let (tcp_be, udp_be) = (1 + i as u32, 3 + i as u32);
        let (tcp_rev, udp_rev) = (60 + n, 62 + n);
        node.add_service(&Service::vip(vip, flag, IPPROTO_TCP, tcp_rev, &[tcp_be]));
        node.add_service(&Service::vip(vip, flag, IPPROTO_UDP, udp_rev, &[udp_be]));

        // SYN to the address: DNAT to the pod, the client kept, handed to
        // the kernel (which routes it to the pod's veth).
        let sport = 40000 + n;
        let run = node.run(FROM, &syn_to(vip, sport).build());
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_translated(
            &run,
            &TcpPacket {
                ip: client_ep(backend_ip(tcp_be)),
                dst_port: BACKEND_PORT,
                ..syn_to(vip, sport)
            }
            .build(),
        );
        let sct = node.ct_must(&vip_ct_key(vip, sport, IPPROTO_TCP), what);
        assert_eq!(
            (sct.backend_id, sct.rev_nat_index, sct.nat_port),
            (tcp_be, tcp_rev, 0),
            "{what}"
        );
        assert_eq!(sct.state, TW_CT_S_SYN_SEEN | TW_CT_S_NODEPORT, "{what}");
        let cct = node.ct_must(&conn_ct_key(sport, tcp_be, IPPROTO_TCP), what);
        assert_eq!((cct.backend_id, cct.rev_nat_index), (tcp_be, tcp_rev));
        assert_ne!(cct.state & TW_CT_S_NODEPORT, 0, "{what}");

        // The pod's SYN-ACK leaves by the uplink from the address the
        // client sent to (not the node IP).
        let synack = TcpPacket {
            ip: pod_reply_ep(backend_ip(tcp_be)),
            src_port: BACKEND_PORT,
            dst_port: sport,
            seq: 5000,
            ack: 1001,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            ..TcpPacket::default()
        };
        let run = node.run(TO, &synack.build());
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_translated(
            &run,
            &TcpPacket {
                ip: pod_reply_ep(vip),
                src_port: SVC_PORT,
                ..synack.clone()
            }
            .build(),
        );
        let sct = node.ct_must(&vip_ct_key(vip, sport, IPPROTO_TCP), what);
        assert_eq!(
            sct.rx_packets, 1,
            "{what}: the SERVICE entry sees the reply"
        );

        // The handshake's ACK: the same backend.
        let run = node.run(
            FROM,
            &TcpPacket {
                ip: client_ep(vip),
                dst_port: SVC_PORT,
                ..client_tcp(sport, tcp_flags::ACK, b"GET /")
            }
            .build(),
        );
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_eq!(run.frame().ip.dst, backend_ip(tcp_be), "{what}");

        // UDP: the same, both ways.
        let query = UdpPacket {
            ip: client_ep(vip),
            dst_port: SVC_PORT,
            ..datagram(33000 + n, b"a query")
        };
        let run = node.run(FROM, &query.build());
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_translated(
            &run,
            &UdpPacket {
                ip: client_ep(backend_ip(udp_be)),
                dst_port: BACKEND_PORT,
                ..query.clone()
            }
            .build(),
        );
        let answer = UdpPacket {
            ip: pod_reply_ep(backend_ip(udp_be)),
            src_port: BACKEND_PORT,
            dst_port: 33000 + n,
            payload: b"the answer".to_vec(),
        };
        let run = node.run(TO, &answer.build());
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_translated(
            &run,
            &UdpPacket {
                ip: pod_reply_ep(vip),
                src_port: SVC_PORT,
                ..answer.clone()
            }
            .build(),
        );
    }
    assert!(
        node.maps.np_nat.keys().next().is_none(),
        "local backends need no SNAT mapping"
    );
    assert!(node.maps.drop_counts().unwrap().is_empty());
}

#[test]
fn external_and_load_balancer_ips_snat_to_a_remote_backend_and_replies_come_from_them() {
    let mut node = Node::new();
    for (i, (vip, flag, what)) in VIPS.into_iter().enumerate() {
        let n = u16::try_from(i).unwrap();
        let (be, rev) = (11 + i as u32, 70 + n);
        node.add_service(&Service::vip(vip, flag, IPPROTO_TCP, rev, &[be]));

        // SYN: DNAT to the remote pod, SNAT to node IP:nat port,
        // redirected; the retransmission keeps the port.
        let sport = 40100 + n;
        let frame = syn_to(vip, sport).build();
        let (id, nat_port) = node.snat(&frame);
        assert_eq!(id, be, "{what}");
        let run = node.run(FROM, &frame);
        assert_eq!(run.retval, TC_ACT_REDIRECT, "{what}");
        assert_translated(
            &run,
            &TcpPacket {
                ip: Ipv4Endpoints {
                    src_ip: NODE_IP,
                    ..client_ep(backend_ip(be))
                },
                src_port: nat_port,
                dst_port: BACKEND_PORT,
                ..syn_to(vip, sport)
            }
            .build(),
        );
        let skey = vip_ct_key(vip, sport, IPPROTO_TCP);
        let sct = node.ct_must(&skey, what);
        assert_eq!(
            (sct.backend_id, sct.rev_nat_index, sct.nat_port),
            (be, rev, be16(nat_port)),
            "{what}"
        );
        assert_eq!(sct.state, TW_CT_S_SYN_SEEN | TW_CT_S_NODEPORT, "{what}");
        let nat = node
            .nat(&nat_key(be, nat_port, IPPROTO_TCP))
            .unwrap_or_else(|| panic!("{what}: the flow's tw_np_nat4 entry"));
        assert_eq!(
            (
                nat.client_addr,
                nat.client_port,
                nat.frontend_addr,
                nat.frontend_port,
                nat.expires
            ),
            (
                be32(CLIENT),
                be16(sport),
                be32(vip),
                be16(SVC_PORT),
                sct.expires
            ),
            "{what}: the mapping restores the address the client sent to"
        );

        // The backend's SYN-ACK to node IP:nat port: back to the client,
        // from the frontend.
        let synack = TcpPacket {
            ip: remote_reply_ep(be),
            src_port: BACKEND_PORT,
            dst_port: nat_port,
            seq: 5000,
            ack: 1001,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            ..TcpPacket::default()
        };
        let run = node.run(FROM, &synack.build());
        assert_eq!(run.retval, TC_ACT_REDIRECT, "{what}: redirected out");
        let restored = TcpPacket {
            ip: Ipv4Endpoints {
                src_ip: vip,
                dst_ip: CLIENT,
                ..remote_reply_ep(be)
            },
            src_port: SVC_PORT,
            dst_port: sport,
            ..synack.clone()
        }
        .build();
        assert_translated(&run, &restored);
        let sct = node.ct_must(&skey, what);
        assert_eq!((sct.tx_packets, sct.rx_packets), (2, 1), "{what}");
        assert_ne!(sct.state & TW_CT_S_SEEN_REPLY, 0, "{what}");

        // Out through the uplink's egress (where the redirect sends it):
        // left as it is, although its source is no node IP.
        let out = run.out.clone();
        let run = node.run(TO, &out);
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_eq!(
            run.out, out,
            "{what}: the restored reply is not touched again"
        );

        // The next packet of the flow: same backend, same port.
        let (id, port) = node.snat(
            &TcpPacket {
                ip: client_ep(vip),
                dst_port: SVC_PORT,
                ..client_tcp(sport, tcp_flags::ACK, b"")
            }
            .build(),
        );
        assert_eq!((id, port), (be, nat_port), "{what}");
    }
    assert_eq!(node.maps.np_nat.keys().count(), 2, "one mapping per flow");
    assert!(node.maps.drop_counts().unwrap().is_empty());
}

#[test]
fn other_addresses_than_the_node_ip_pass_unchanged_unless_they_are_frontends() {
    let mut node = Node::new();
    node.add_service(&Service::vip(
        EXTERNAL_IP,
        TW_SVC_F_EXTERNAL_IP,
        IPPROTO_TCP,
        80,
        &[1],
    ));
    // A ClusterIP reached from outside is not served at the uplink, nor a
    // NodePort frontend on an address that is not the node's (another
    // node's IP, or this node's former one).
    let cluster_ip = Ipv4Addr::new(10, 96, 0, 10);
    node.add_service(&Service {
        address: cluster_ip,
        port: SVC_PORT,
        flags: TW_SVC_F_CLUSTERIP,
        ..Service::tcp(81, &[1])
    });
    let other_node = Ipv4Addr::new(172, 18, 0, 3);
    node.add_service(&Service {
        address: other_node,
        ..Service::tcp(82, &[1])
    });

    let unchanged = |node: &mut Node, frame: &[u8], what: &str| {
        let run = node.run(FROM, frame);
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_eq!(run.out, frame, "{what} must not change");
    };
    let tcp = |dst: Ipv4Addr, dport: u16| {
        TcpPacket {
            ip: client_ep(dst),
            dst_port: dport,
            ..syn(40200)
        }
        .build()
    };
    unchanged(
        &mut node,
        &tcp(Ipv4Addr::new(172, 18, 200, 99), 80),
        "no frontend",
    );
    unchanged(
        &mut node,
        &tcp(EXTERNAL_IP, 81),
        "another port of the external IP",
    );
    unchanged(
        &mut node,
        &UdpPacket {
            ip: client_ep(EXTERNAL_IP),
            dst_port: SVC_PORT,
            ..datagram(40201, b"q")
        }
        .build(),
        "UDP to a TCP-only external IP",
    );
    unchanged(
        &mut node,
        &IcmpEchoPacket {
            ip: client_ep(EXTERNAL_IP),
            ..IcmpEchoPacket::default()
        }
        .build(),
        "ping to the external IP",
    );
    unchanged(
        &mut node,
        &tcp(cluster_ip, SVC_PORT),
        "a ClusterIP from outside",
    );
    unchanged(
        &mut node,
        &tcp(other_node, NODE_PORT),
        "a NodePort frontend on another node's address",
    );
    unchanged(
        &mut node,
        &tcp(backend_ip(1), BACKEND_PORT),
        "to a local pod, through the node",
    );
    // What traffic through the node costs now: one lookup (the kernel
    // reports the mean over the runs).
    let through = tcp(backend_ip(1), BACKEND_PORT);
    let run = node.run_repeat("nodeport", FROM, &through, 0, 10_000);
    assert_eq!(
        (run.retval, run.out.as_slice()),
        (TC_ACT_OK, through.as_slice())
    );
    eprintln!(
        "tw_from_netdev, a packet through the node: {:?} per run",
        run.duration
    );
    // A malformed L4 header to the external IP is not dropped (as to any
    // address that is not the node's).
    let full = syn_to(EXTERNAL_IP, 40202).build();
    unchanged(
        &mut node,
        &full[..ETH_HLEN + IPV4_HLEN + 10],
        "truncated TCP",
    );
    assert!(
        node.maps.ct.keys().next().is_none(),
        "no conntrack entry for any of them"
    );

    // NodePort off: the external IP passes too.
    let mut cfg = node_config();
    cfg.flags = 0;
    node.maps.set_config(&cfg).unwrap();
    unchanged(&mut node, &full, "the external IP with NodePort disabled");
    assert!(node.maps.ct.keys().next().is_none());
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "nothing was dropped"
    );
}

#[test]
fn external_and_load_balancer_ips_without_a_backend_drop_with_etp_local_else_reject() {
    let mut node = Node::new();
    for (i, (vip, flag, what)) in VIPS.into_iter().enumerate() {
        let n = u16::try_from(i).unwrap();
        let rev = 90 + n;
        // externalTrafficPolicy=Local, no endpoint on this node: the EXT
        // scope has no backend, the INT scope (pods' twin) the remote ones.
        let flags = flag | TW_SVC_F_ETP_LOCAL | TW_SVC_F_TWO_SCOPES;
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            node.add_service(&Service::vip(vip, flags, proto, rev, &[]));
            node.add_service(&Service {
                scope: TW_LB_SCOPE_INT,
                ..Service::vip(vip, flags, proto, rev, &[11, 12])
            });
        }
        let dropped = node.drops(DROP_NO_SERVICE);
        let run = node.run(FROM, &syn_to(vip, 40300 + n).build());
        assert_eq!(
            run.retval, TC_ACT_SHOT,
            "{what}: dropped, as kube-proxy does"
        );
        let run = node.run(
            FROM,
            &UdpPacket {
                ip: client_ep(vip),
                dst_port: SVC_PORT,
                ..datagram(40310 + n, b"q")
            }
            .build(),
        );
        assert_eq!(run.retval, TC_ACT_SHOT, "{what}");
        assert_eq!(node.drops(DROP_NO_SERVICE), dropped + 2, "{what}");
        assert!(
            node.ct(&vip_ct_key(vip, 40300 + n, IPPROTO_TCP)).is_none(),
            "{what}"
        );

        // With a local endpoint in the EXT scope: DNAT, client kept.
        node.add_service(&Service::vip(vip, flags, IPPROTO_TCP, rev, &[3]));
        let run = node.run(FROM, &syn_to(vip, 40320 + n).build());
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        let out = run.frame();
        assert_eq!((out.ip.src, out.ip.dst), (CLIENT, backend_ip(3)), "{what}");
    }
    assert!(node.maps.np_nat.keys().next().is_none());

    // externalTrafficPolicy=Cluster without any backend: a reset from the
    // external IP itself, sent back out.
    node.add_service(&Service {
        port: SVC_PORT + 1,
        ..Service::vip(EXTERNAL_IP, TW_SVC_F_EXTERNAL_IP, IPPROTO_TCP, 95, &[])
    });
    let dropped = node.drops(DROP_NO_SERVICE);
    let run = node.run(
        FROM,
        &TcpPacket {
            dst_port: SVC_PORT + 1,
            ..syn_to(EXTERNAL_IP, 40330)
        }
        .build(),
    );
    assert_eq!(run.retval, TC_ACT_REDIRECT, "the RST goes back out");
    assert!(ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out));
    let out = run.frame();
    assert_eq!((out.dst_mac, out.src_mac), (CLIENT_MAC, NODE_MAC));
    assert_eq!((out.ip.src, out.ip.dst), (EXTERNAL_IP, CLIENT));
    match out.l4 {
        ParsedL4::Tcp {
            src_port,
            dst_port,
            flags,
            ..
        } => {
            assert_eq!((src_port, dst_port), (SVC_PORT + 1, 40330));
            assert_eq!(flags, tcp_flags::RST | tcp_flags::ACK);
        }
        ref other => panic!("not TCP: {other:?}"),
    }
    assert_eq!(node.drops(DROP_NO_SERVICE), dropped + 1);
}

/// An external IP that is the node's own address is served there too (as
/// kube-proxy does), beside the node ports.
#[test]
fn an_external_ip_equal_to_the_node_ip_is_served() {
    let mut node = Node::new();
    node.add_service(&Service::vip(
        NODE_IP,
        TW_SVC_F_EXTERNAL_IP,
        IPPROTO_TCP,
        96,
        &[1],
    ));
    let run = node.run(FROM, &syn_to(NODE_IP, 40400).build());
    assert_eq!(run.retval, TC_ACT_OK);
    assert_translated(
        &run,
        &TcpPacket {
            ip: client_ep(backend_ip(1)),
            dst_port: BACKEND_PORT,
            ..syn_to(NODE_IP, 40400)
        }
        .build(),
    );
    let synack = TcpPacket {
        ip: pod_reply_ep(backend_ip(1)),
        src_port: BACKEND_PORT,
        dst_port: 40400,
        flags: tcp_flags::SYN | tcp_flags::ACK,
        ..TcpPacket::default()
    };
    let run = node.run(TO, &synack.build());
    assert_eq!(run.retval, TC_ACT_OK);
    assert_translated(
        &run,
        &TcpPacket {
            ip: pod_reply_ep(NODE_IP),
            src_port: SVC_PORT,
            ..synack.clone()
        }
        .build(),
    );
}

// ---------------------------------------------------------------------------
// spec.loadBalancerSourceRanges: TW_SVC_F_SRC_RANGE and tw_lb4_srcrange.
// ---------------------------------------------------------------------------

const DROP_NOT_IN_SRC_RANGE: u8 = 177;
/// A client outside the ranges of the tests below (CLIENT is inside).
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const LB_RANGED: u16 = TW_SVC_F_LOADBALANCER | TW_SVC_F_SRC_RANGE;

impl Node {
    /// Admits `address/len` to the frontend with reverse-NAT index `rev_nat`.
    fn add_src_range(&mut self, rev_nat: u16, address: Ipv4Addr, len: u8) {
        self.maps.set_src_range(rev_nat, address, len).unwrap();
    }

    /// The ranges CLIENT is in (and an unrelated one) for `rev_nat`.
    fn admit_client(&mut self, rev_nat: u16) {
        self.add_src_range(rev_nat, Ipv4Addr::new(172, 18, 255, 0), 24);
        self.add_src_range(rev_nat, Ipv4Addr::new(10, 0, 0, 0), 8);
    }

    /// Whether any conntrack entry or SNAT mapping names `client`.
    fn tracks(&self, client: Ipv4Addr) -> bool {
        let ct = self
            .maps
            .ct
            .keys()
            .filter_map(Result::ok)
            .any(|k| k.saddr == be32(client) || k.daddr == be32(client));
        let nat = self
            .maps
            .np_nat
            .iter()
            .filter_map(Result::ok)
            .any(|(_, v)| v.client_addr == be32(client));
        ct || nat
    }

    fn events_on(&mut self) {
        EventMaps::open(self.pin_dir())
            .unwrap()
            .set_config(true, TW_AGG_MEDIUM)
            .unwrap();
    }

    /// The drop events in the ring (consumed): (reason, source,
    /// destination, destination port).
    fn drop_events(&self) -> Vec<(u8, Ipv4Addr, Ipv4Addr, u16)> {
        let mut ring = EventMaps::ring(self.pin_dir()).unwrap();
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            let (ev, _) = Event::parse(&item).expect("a whole record");
            if ev.ev_type == TW_EV_DROP {
                out.push((
                    ev.subtype,
                    Ipv4Addr::from(u32::from_be(ev.saddr)),
                    Ipv4Addr::from(u32::from_be(ev.daddr)),
                    u16::from_be(ev.dport),
                ));
            }
        }
        out
    }
}

/// A SYN from `src` to `dst`:`dport`.
fn syn_from(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, sport: u16) -> TcpPacket {
    TcpPacket {
        ip: Ipv4Endpoints {
            src_ip: src,
            ..client_ep(dst)
        },
        dst_port: dport,
        ..syn(sport)
    }
}

/// A LoadBalancer IP with source ranges: a client inside them is served
/// exactly as without them (local DNAT, UDP, remote DNAT + SNAT); one
/// outside is dropped with NOT_IN_SRC_RANGE (counted, reported as a drop
/// event) before any translation: no conntrack entry, no SNAT mapping.
#[test]
fn load_balancer_source_ranges_admit_only_their_clients() {
    let mut node = Node::new();
    let remote_port = SVC_PORT + 1;
    node.add_service(&Service::vip(LB_IP, LB_RANGED, IPPROTO_TCP, 100, &[1]));
    node.add_service(&Service::vip(LB_IP, LB_RANGED, IPPROTO_UDP, 101, &[2]));
    node.add_service(&Service {
        port: remote_port,
        ..Service::vip(LB_IP, LB_RANGED, IPPROTO_TCP, 102, &[11])
    });
    for rev in [100, 101, 102] {
        node.admit_client(rev);
    }
    // The outsider's range belongs to another frontend: ranges are per
    // frontend (keyed by its reverse-NAT index).
    node.add_src_range(103, OUTSIDER, 32);
    node.events_on();
    let _ = node.drop_events();

    // Inside: translated as before.
    let syn_in = syn_to(LB_IP, 41000);
    let run = node.run(FROM, &syn_in.build());
    assert_eq!(run.retval, TC_ACT_OK);
    assert_translated(
        &run,
        &TcpPacket {
            ip: client_ep(backend_ip(1)),
            dst_port: BACKEND_PORT,
            ..syn_in.clone()
        }
        .build(),
    );
    let sct = node.ct_must(&vip_ct_key(LB_IP, 41000, IPPROTO_TCP), "the admitted flow");
    assert_eq!((sct.backend_id, sct.rev_nat_index), (1, 100));
    let query = UdpPacket {
        ip: client_ep(LB_IP),
        dst_port: SVC_PORT,
        ..datagram(41001, b"a query")
    };
    let run = node.run(FROM, &query.build());
    assert_eq!(run.retval, TC_ACT_OK);
    assert_translated(
        &run,
        &UdpPacket {
            ip: client_ep(backend_ip(2)),
            dst_port: BACKEND_PORT,
            ..query.clone()
        }
        .build(),
    );
    let (id, _) = node.snat(
        &TcpPacket {
            dst_port: remote_port,
            ..syn_to(LB_IP, 41002)
        }
        .build(),
    );
    assert_eq!(id, 11);
    assert_eq!(node.maps.np_nat.keys().count(), 1);
    assert_eq!(node.drops(DROP_NOT_IN_SRC_RANGE), 0);
    assert!(node.drop_events().is_empty());

    // Outside: dropped, TCP and UDP, local and remote backends alike.
    let outsider = [
        syn_from(OUTSIDER, LB_IP, SVC_PORT, 42000).build(),
        UdpPacket {
            ip: Ipv4Endpoints {
                src_ip: OUTSIDER,
                ..client_ep(LB_IP)
            },
            dst_port: SVC_PORT,
            ..datagram(42001, b"a query")
        }
        .build(),
        syn_from(OUTSIDER, LB_IP, remote_port, 42002).build(),
    ];
    for (i, frame) in outsider.iter().enumerate() {
        let run = node.run(FROM, frame);
        assert_eq!(run.retval, TC_ACT_SHOT, "outsider packet {i}");
    }
    assert_eq!(node.drops(DROP_NOT_IN_SRC_RANGE), 3);
    assert!(
        !node.tracks(OUTSIDER),
        "no conntrack entry, no SNAT mapping"
    );
    assert_eq!(
        node.maps.np_nat.keys().count(),
        1,
        "the admitted flow's only"
    );
    assert_eq!(
        node.drop_events(),
        [
            (DROP_NOT_IN_SRC_RANGE, OUTSIDER, LB_IP, SVC_PORT),
            (DROP_NOT_IN_SRC_RANGE, OUTSIDER, LB_IP, SVC_PORT),
            (DROP_NOT_IN_SRC_RANGE, OUTSIDER, LB_IP, remote_port),
        ]
    );
    let drops = node.maps.drop_counts().unwrap();
    assert_eq!(drops, [(DROP_NOT_IN_SRC_RANGE, 3)], "nothing else dropped");
}

/// Only a frontend with TW_SVC_F_SRC_RANGE is checked: without the flag
/// everyone is served (its ranges, if any, are not looked at), and the
/// same service's node port is not filtered (Cilium's default). With the
/// flag and no entry (a Service listing IPv6 ranges only) nobody is.
#[test]
fn source_ranges_apply_to_flagged_frontends_only() {
    let mut node = Node::new();
    // The service's LoadBalancer IP with ranges, its node port without.
    node.add_service(&Service::vip(LB_IP, LB_RANGED, IPPROTO_TCP, 110, &[1]));
    node.admit_client(110);
    node.add_service(&Service::tcp(111, &[1]));
    // A LoadBalancer IP without the flag, though ranges are there.
    node.add_service(&Service {
        port: SVC_PORT + 1,
        ..Service::vip(LB_IP, TW_SVC_F_LOADBALANCER, IPPROTO_TCP, 112, &[1])
    });
    node.admit_client(112);
    // With the flag and no range at all.
    node.add_service(&Service {
        port: SVC_PORT + 2,
        ..Service::vip(LB_IP, LB_RANGED, IPPROTO_TCP, 113, &[1])
    });

    let served = |node: &mut Node, frame: TcpPacket, what: &str| {
        let run = node.run(FROM, &frame.build());
        assert_eq!(run.retval, TC_ACT_OK, "{what}");
        assert_translated(
            &run,
            &TcpPacket {
                ip: Ipv4Endpoints {
                    dst_ip: backend_ip(1),
                    ..frame.ip
                },
                dst_port: BACKEND_PORT,
                ..frame.clone()
            }
            .build(),
        );
    };
    let dropped = |node: &mut Node, frame: TcpPacket, what: &str| {
        let before = node.drops(DROP_NOT_IN_SRC_RANGE);
        let run = node.run(FROM, &frame.build());
        assert_eq!(run.retval, TC_ACT_SHOT, "{what}");
        assert_eq!(node.drops(DROP_NOT_IN_SRC_RANGE), before + 1, "{what}");
    };
    dropped(
        &mut node,
        syn_from(OUTSIDER, LB_IP, SVC_PORT, 43000),
        "the ranged LoadBalancer IP",
    );
    served(
        &mut node,
        syn_from(OUTSIDER, NODE_IP, NODE_PORT, 43001),
        "the same service's node port",
    );
    served(
        &mut node,
        syn_from(OUTSIDER, LB_IP, SVC_PORT + 1, 43002),
        "a LoadBalancer IP without the flag",
    );
    served(
        &mut node,
        syn_from(CLIENT, LB_IP, SVC_PORT + 1, 43003),
        "a LoadBalancer IP without the flag, from inside",
    );
    dropped(
        &mut node,
        syn_from(CLIENT, LB_IP, SVC_PORT + 2, 43004),
        "the flag without ranges: CLIENT",
    );
    dropped(
        &mut node,
        syn_from(OUTSIDER, LB_IP, SVC_PORT + 2, 43005),
        "the flag without ranges: the outsider",
    );
    // The whole address space admits everyone.
    node.add_src_range(113, Ipv4Addr::UNSPECIFIED, 0);
    served(
        &mut node,
        syn_from(OUTSIDER, LB_IP, SVC_PORT + 2, 43006),
        "0.0.0.0/0",
    );
    assert_eq!(node.drops(DROP_NOT_IN_SRC_RANGE), 3);
}

/// Every packet to the frontend is checked, not only a flow's first: when
/// the client's range goes (the Service changed), its established flow
/// stops too, and the conntrack entry it has is left alone.
#[test]
fn a_removed_range_stops_established_flows() {
    let mut node = Node::new();
    node.add_service(&Service::vip(LB_IP, LB_RANGED, IPPROTO_TCP, 120, &[1]));
    node.add_src_range(120, CLIENT, 32);
    let ack = TcpPacket {
        ip: client_ep(LB_IP),
        dst_port: SVC_PORT,
        ..client_tcp(44000, tcp_flags::ACK, b"GET /")
    };
    let run = node.run(FROM, &syn_to(LB_IP, 44000).build());
    assert_eq!(run.retval, TC_ACT_OK);
    let run = node.run(FROM, &ack.build());
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.frame().ip.dst, backend_ip(1));
    let before = node.ct_must(&vip_ct_key(LB_IP, 44000, IPPROTO_TCP), "the flow");

    node.maps.delete_src_range(120, CLIENT, 32).unwrap();
    let run = node.run(FROM, &ack.build());
    assert_eq!(run.retval, TC_ACT_SHOT, "the established flow is cut");
    assert_eq!(node.drops(DROP_NOT_IN_SRC_RANGE), 1);
    let after = node.ct_must(&vip_ct_key(LB_IP, 44000, IPPROTO_TCP), "the flow");
    assert_eq!(after.tx_packets, before.tx_packets, "not accounted");

    // Back in: the flow goes on with its backend.
    node.add_src_range(120, Ipv4Addr::new(172, 18, 0, 0), 16);
    let run = node.run(FROM, &ack.build());
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.frame().ip.dst, backend_ip(1));
    assert_eq!(
        node.maps.src_ranges().unwrap(),
        [(120, Ipv4Addr::new(172, 18, 0, 0), 16)]
    );
}

// ---------------------------------------------------------------------------
// Real traffic through network namespaces.
// ---------------------------------------------------------------------------

mod real {
    use super::*;
    use common::TestNetns;
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use tollway_datapath::netns::run_in_netns;

    pub const EXT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
    pub const NODE1_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
    pub const NODE2_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 3);
    pub const POD1_IP: Ipv4Addr = Ipv4Addr::new(10, 98, 1, 5);
    pub const POD2_IP: Ipv4Addr = Ipv4Addr::new(10, 98, 2, 5);
    /// The pods' gateway, a link-local address as in the lab (Cilium's
    /// style): a static neighbour entry for the host side of the veth.
    const GW: &str = "169.254.1.1";
    pub const LOCAL_PORT: u16 = 30080;
    pub const REMOTE_PORT: u16 = 30081;
    pub const TIMEOUT: Duration = Duration::from_secs(3);
    const BULK: usize = 4 << 20;

    fn sysctl(ns: &TestNetns, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        // /proc/sys/net is the calling thread's network namespace.
        run_in_netns(&ns.path(), || {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {path}: {e}"))
        })
        .unwrap();
    }

    fn ifindex(ns: &TestNetns, ifname: &str) -> u32 {
        let name = std::ffi::CString::new(ifname).unwrap();
        run_in_netns(&ns.path(), || {
            // SAFETY: `name` is a valid NUL-terminated string.
            unsafe { libc::if_nametoindex(name.as_ptr()) }
        })
        .unwrap()
    }

    /// A node namespace with `eth0` on the fabric and one pod.
    pub struct NodeNs {
        pub ns: TestNetns,
        pub pod: TestNetns,
    }

    /// external and the nodes on one bridge (in a namespace of its own),
    /// like the lab's docker network.
    pub struct Lab {
        pub nodes: Vec<NodeNs>,
        pub ext: TestNetns,
        _fabric: TestNetns,
    }

    impl Lab {
        pub fn new(n_nodes: usize) -> Lab {
            require_root();
            let fabric = TestNetns::create("fab");
            fabric.ip(&["link", "add", "br0", "type", "bridge"]);
            fabric.ip(&["link", "set", "br0", "up"]);
            let ext = TestNetns::create("ext");
            let plug = |ns: &TestNetns, port: &str, addr: &str| {
                fabric.ip(&[
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns.name(),
                ]);
                fabric.ip(&["link", "set", port, "master", "br0", "up"]);
                ns.ip(&["link", "set", "lo", "up"]);
                ns.ip(&["addr", "add", addr, "dev", "eth0"]);
                ns.ip(&["link", "set", "eth0", "up"]);
            };
            plug(&ext, "p-ext", &format!("{EXT_IP}/24"));
            let mut nodes = Vec::new();
            for i in 0..n_nodes {
                let (node_ip, pod_ip) = if i == 0 {
                    (NODE1_IP, POD1_IP)
                } else {
                    (NODE2_IP, POD2_IP)
                };
                let ns = TestNetns::create(&format!("node{}", i + 1));
                plug(&ns, &format!("p-node{}", i + 1), &format!("{node_ip}/24"));
                sysctl(&ns, "net.ipv4.ip_forward", "1");
                sysctl(&ns, "net.ipv4.conf.all.rp_filter", "0");
                sysctl(&ns, "net.ipv4.conf.eth0.rp_filter", "0");
                let pod = TestNetns::create(&format!("pod{}", i + 1));
                ns.ip(&[
                    "link",
                    "add",
                    "lxcpod",
                    "address",
                    "02:00:00:00:aa:01",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    pod.name(),
                ]);
                ns.ip(&["link", "set", "lxcpod", "up"]);
                ns.ip(&["route", "add", &format!("{pod_ip}/32"), "dev", "lxcpod"]);
                sysctl(&ns, "net.ipv4.conf.lxcpod.rp_filter", "0");
                pod.ip(&["link", "set", "lo", "up"]);
                pod.ip(&["addr", "add", &format!("{pod_ip}/32"), "dev", "eth0"]);
                pod.ip(&["link", "set", "eth0", "up"]);
                pod.ip(&["route", "add", GW, "dev", "eth0", "scope", "link"]);
                pod.ip(&["route", "add", "default", "via", GW, "dev", "eth0"]);
                pod.ip(&[
                    "neigh",
                    "replace",
                    GW,
                    "lladdr",
                    "02:00:00:00:aa:01",
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ]);
                nodes.push(NodeNs { ns, pod });
            }
            if n_nodes == 2 {
                nodes[0].ns.ip(&[
                    "route",
                    "add",
                    "10.98.2.0/24",
                    "via",
                    &NODE2_IP.to_string(),
                    "dev",
                    "eth0",
                ]);
                nodes[1].ns.ip(&[
                    "route",
                    "add",
                    "10.98.1.0/24",
                    "via",
                    &NODE1_IP.to_string(),
                    "dev",
                    "eth0",
                ]);
            }
            Lab {
                nodes,
                ext,
                _fabric: fabric,
            }
        }
    }

    /// Loads a node's datapath (own pin dir), writes its config and
    /// attaches the programs to its uplink and its pod's veth.
    pub fn node_datapath(node: &NodeNs, node_ip: Ipv4Addr, tag: &str) -> Node {
        let mut dp = Node::load(tag, "nodeport");
        let uplink = ifindex(&node.ns, "eth0");
        dp.maps
            .set_config(&Config {
                node_ip: be32(node_ip),
                flags: TW_CFG_F_NODEPORT,
                uplink_ifindex: uplink,
                nat_port_min: NAT_MIN,
                nat_port_max: NAT_MAX,
                ..Config::default()
            })
            .unwrap();
        run_in_netns(&node.ns.path(), || {
            let state = dp
                .dp
                .attach_uplink("eth0")
                .unwrap_or_else(|e| panic!("attach_uplink: {}", chain(&e)));
            assert!(state.is_some(), "the nodeport object is built");
            dp.dp
                .attach_pod_interface("lxcpod")
                .unwrap_or_else(|e| panic!("attach_pod_interface: {}", chain(&e)));
        })
        .unwrap();
        dp
    }

    /// Installs TCP and UDP NodePort frontends `port` on `node_ip` with
    /// one backend, `pod_ip:8080`.
    pub fn add_nodeport(
        dp: &mut Node,
        node_ip: Ipv4Addr,
        port: u16,
        pod_ip: Ipv4Addr,
        local: bool,
        rev_nat: u16,
    ) {
        add_frontend(dp, node_ip, port, TW_SVC_F_NODEPORT, pod_ip, local, rev_nat);
    }

    /// Installs TCP and UDP frontends `address:port` of kind `flags` with
    /// one backend, `pod_ip:8080` (backend ids and reverse-NAT indexes
    /// derived from `rev_nat`, unique per call).
    pub fn add_frontend(
        dp: &mut Node,
        address: Ipv4Addr,
        port: u16,
        flags: u16,
        pod_ip: Ipv4Addr,
        local: bool,
        rev_nat: u16,
    ) {
        for (i, proto) in [IPPROTO_TCP, IPPROTO_UDP].into_iter().enumerate() {
            let id = u32::from(rev_nat) * 10 + i as u32;
            let rev = rev_nat * 2 + i as u16;
            dp.maps
                .backends
                .insert(
                    id,
                    Lb4Backend {
                        address: be32(pod_ip),
                        port: be16(BACKEND_PORT),
                        proto,
                        flags: if local { TW_BE_F_LOCAL } else { 0 },
                    },
                    0,
                )
                .unwrap();
            dp.maps
                .services
                .insert(
                    lb_key(address, port, 1, proto, TW_LB_SCOPE_EXT),
                    Lb4Service {
                        backend_id: id,
                        ..Lb4Service::default()
                    },
                    0,
                )
                .unwrap();
            dp.maps
                .services
                .insert(
                    lb_key(address, port, 0, proto, TW_LB_SCOPE_EXT),
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
            dp.maps
                .revnat
                .insert(
                    u32::from(rev),
                    Lb4Revnat {
                        address: be32(address),
                        port: be16(port),
                        pad: 0,
                    },
                    0,
                )
                .unwrap();
        }
    }

    /// Servers in the pod: a TCP listener and a UDP socket on
    /// `pod_ip:8080` (sockets keep the namespace they were made in).
    pub fn servers(pod: &TestNetns, pod_ip: Ipv4Addr) -> (TcpListener, UdpSocket) {
        run_in_netns(&pod.path(), || {
            let addr: SocketAddr = (pod_ip, BACKEND_PORT).into();
            let listener = TcpListener::bind(addr).unwrap();
            let udp = UdpSocket::bind(addr).unwrap();
            udp.set_read_timeout(Some(TIMEOUT)).unwrap();
            (listener, udp)
        })
        .unwrap()
    }

    /// From the external client: a TCP connection and a UDP exchange with
    /// `node_ip:port`, answered by the servers. Returns the peers the
    /// servers saw (TCP, UDP).
    pub fn exchange(
        ext: &TestNetns,
        node_ip: Ipv4Addr,
        port: u16,
        listener: &TcpListener,
        udp_server: &UdpSocket,
    ) -> (SocketAddr, SocketAddr) {
        let (stream, udp) = run_in_netns(&ext.path(), || {
            let stream = TcpStream::connect_timeout(&(node_ip, port).into(), TIMEOUT)
                .unwrap_or_else(|e| panic!("TCP connect to {node_ip}:{port}: {e}"));
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            (&stream).write_all(b"ping").unwrap();
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(Some(TIMEOUT)).unwrap();
            // Connected: the socket only takes datagrams from the node
            // port, so an answer proves the reverse translation.
            udp.connect((node_ip, port)).unwrap();
            udp.send(b"query").unwrap();
            (stream, udp)
        })
        .unwrap();
        let mut stream = stream;

        let (mut conn, tcp_peer) = listener.accept().unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 64];
        conn.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"ping");
        conn.write_all(b"pong").unwrap();
        let (n, udp_peer) = udp_server
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("UDP query at the pod: {e}"));
        assert_eq!(&buf[..n], b"query");
        udp_server.send_to(b"answer", udp_peer).unwrap();

        let mut got = [0u8; 4];
        stream
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("TCP answer through {node_ip}:{port}: {e}"));
        assert_eq!(&got, b"pong");
        let n = udp
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("UDP answer from {node_ip}:{port}: {e}"));
        assert_eq!(&buf[..n], b"answer");

        // Bulk both ways: the stacks send GSO super-packets with
        // CHECKSUM_PARTIAL through the veths, which the programs rewrite
        // whole; any checksum or segmentation mistake corrupts or stalls
        // the stream.
        let bulk: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
        let started = std::time::Instant::now();
        let echo = std::thread::scope(|scope| {
            let server = scope.spawn(move || {
                let mut data = vec![0u8; BULK];
                conn.read_exact(&mut data)
                    .unwrap_or_else(|e| panic!("bulk upload at the pod: {e}"));
                conn.write_all(&data).unwrap();
                // The client's FIN arrives: a clean close through the
                // translation too.
                let mut rest = [0u8; 1];
                assert_eq!(conn.read(&mut rest).unwrap(), 0, "FIN from the client");
                data
            });
            stream.write_all(&bulk).unwrap();
            let mut back = vec![0u8; BULK];
            stream
                .read_exact(&mut back)
                .unwrap_or_else(|e| panic!("bulk download through {node_ip}:{port}: {e}"));
            assert!(back == bulk, "the download is corrupted");
            drop(stream);
            server.join().unwrap()
        });
        assert!(echo == bulk, "the upload is corrupted");
        eprintln!(
            "{node_ip}:{port}: {} KiB each way in {:?}",
            BULK / 1024,
            started.elapsed()
        );
        (tcp_peer, udp_peer)
    }
}

/// external -> node:nodePort -> a pod on that node, through the real
/// kernel paths: tw_from_netdev on the node's uplink, the kernel's routing
/// to the pod's veth (tw_to_lxc), the pod's reply (tw_from_lxc), routing to
/// the uplink (tw_to_netdev). The pod sees the client's own address.
#[test]
fn real_traffic_local_backend() {
    use real::*;
    let lab = Lab::new(1);
    let mut dp = node_datapath(&lab.nodes[0], NODE1_IP, "real-local");
    add_nodeport(&mut dp, NODE1_IP, LOCAL_PORT, POD1_IP, true, 1);
    let (listener, udp) = servers(&lab.nodes[0].pod, POD1_IP);

    let (tcp_peer, udp_peer) = exchange(&lab.ext, NODE1_IP, LOCAL_PORT, &listener, &udp);
    eprintln!("local backend: the pod saw TCP {tcp_peer}, UDP {udp_peer}");
    assert_eq!(tcp_peer.ip(), std::net::IpAddr::V4(EXT_IP), "client kept");
    assert_eq!(udp_peer.ip(), std::net::IpAddr::V4(EXT_IP), "client kept");

    let key = Ct4Key {
        saddr: be32(EXT_IP),
        daddr: be32(POD1_IP),
        sport: be16(tcp_peer.port()),
        dport: be16(BACKEND_PORT),
        proto: IPPROTO_TCP,
        flags: 0,
        pad: 0,
    };
    let ct = dp.ct_must(&key, "the real connection");
    eprintln!("local backend: connection entry {ct:?}");
    assert_ne!(ct.state & TW_CT_S_NODEPORT, 0);
    assert_ne!(ct.state & TW_CT_S_ESTABLISHED, 0);
    assert!(ct.rx_packets > 0, "replies seen");
    assert!(
        dp.maps.drop_counts().unwrap().is_empty(),
        "{:?}",
        dp.maps.drop_counts()
    );
}

/// external -> node1:nodePort -> a pod behind node2: DNAT + SNAT on node1,
/// redirect_neigh to node2 (by the pod CIDR route), the pod's reply to
/// node1's nat port, translated back and redirected to the client. node2
/// runs its own datapath, which must leave the flow alone.
#[test]
fn real_traffic_remote_backend_snat() {
    use real::*;
    let lab = Lab::new(2);
    let mut dp1 = node_datapath(&lab.nodes[0], NODE1_IP, "real-n1");
    let dp2 = node_datapath(&lab.nodes[1], NODE2_IP, "real-n2");
    add_nodeport(&mut dp1, NODE1_IP, REMOTE_PORT, POD2_IP, false, 2);
    let (listener, udp) = servers(&lab.nodes[1].pod, POD2_IP);

    let (tcp_peer, udp_peer) = exchange(&lab.ext, NODE1_IP, REMOTE_PORT, &listener, &udp);
    eprintln!("remote backend: the pod saw TCP {tcp_peer}, UDP {udp_peer}");
    for peer in [tcp_peer, udp_peer] {
        assert_eq!(peer.ip(), std::net::IpAddr::V4(NODE1_IP), "SNATed to node1");
        assert!((NAT_MIN..=NAT_MAX).contains(&peer.port()), "{peer}");
    }
    let nat = dp1
        .maps
        .np_nat
        .get(
            &Ct4Key {
                saddr: be32(POD2_IP),
                daddr: be32(NODE1_IP),
                sport: be16(BACKEND_PORT),
                dport: be16(tcp_peer.port()),
                proto: IPPROTO_TCP,
                flags: 0,
                pad: 0,
            },
            0,
        )
        .expect("node1's mapping of the TCP flow");
    assert_eq!(
        (nat.client_addr, nat.frontend_addr, nat.frontend_port),
        (be32(EXT_IP), be32(NODE1_IP), be16(REMOTE_PORT))
    );
    for (name, dp) in [("node1", &dp1), ("node2", &dp2)] {
        assert!(
            dp.maps.drop_counts().unwrap().is_empty(),
            "{name}: {:?}",
            dp.maps.drop_counts()
        );
    }
    assert!(
        dp2.maps.np_nat.keys().next().is_none(),
        "node2 translated nothing"
    );
}

/// external -> a LoadBalancer / external IP routed to node1 (as a router
/// or MetalLB would send it; no node owns the address) -> a pod on node1
/// and a pod behind node2, through the real kernel paths. The client talks
/// to the address it chose (its UDP socket is connected to it, its TCP
/// stack would reset replies from another), and the pods see it (local)
/// or node1 (remote, SNATed).
#[test]
fn real_traffic_external_and_load_balancer_ips() {
    use real::*;
    use std::net::IpAddr;
    let external_ip = Ipv4Addr::new(192, 0, 2, 10);
    let lb_ip = Ipv4Addr::new(192, 0, 2, 20);
    let lab = Lab::new(2);
    // Only the client knows the way: node1 has no route to 192.0.2.0/24,
    // so an untranslated packet would go nowhere.
    lab.ext.ip(&[
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        &NODE1_IP.to_string(),
        "dev",
        "eth0",
    ]);
    let mut dp1 = node_datapath(&lab.nodes[0], NODE1_IP, "real-vip-n1");
    let dp2 = node_datapath(&lab.nodes[1], NODE2_IP, "real-vip-n2");
    add_frontend(
        &mut dp1,
        external_ip,
        LOCAL_PORT,
        TW_SVC_F_EXTERNAL_IP,
        POD1_IP,
        true,
        3,
    );
    add_frontend(
        &mut dp1,
        external_ip,
        REMOTE_PORT,
        TW_SVC_F_EXTERNAL_IP,
        POD2_IP,
        false,
        4,
    );
    add_frontend(
        &mut dp1,
        lb_ip,
        LOCAL_PORT,
        TW_SVC_F_LOADBALANCER,
        POD1_IP,
        true,
        5,
    );
    add_frontend(
        &mut dp1,
        lb_ip,
        REMOTE_PORT,
        TW_SVC_F_LOADBALANCER,
        POD2_IP,
        false,
        6,
    );
    let (listener1, udp1) = servers(&lab.nodes[0].pod, POD1_IP);
    let (listener2, udp2) = servers(&lab.nodes[1].pod, POD2_IP);

    for vip in [external_ip, lb_ip] {
        let (tcp_peer, udp_peer) = exchange(&lab.ext, vip, LOCAL_PORT, &listener1, &udp1);
        eprintln!("{vip}: the local pod saw TCP {tcp_peer}, UDP {udp_peer}");
        assert_eq!(tcp_peer.ip(), IpAddr::V4(EXT_IP), "{vip}: client kept");
        assert_eq!(udp_peer.ip(), IpAddr::V4(EXT_IP), "{vip}: client kept");

        let (tcp_peer, udp_peer) = exchange(&lab.ext, vip, REMOTE_PORT, &listener2, &udp2);
        eprintln!("{vip}: the remote pod saw TCP {tcp_peer}, UDP {udp_peer}");
        for peer in [tcp_peer, udp_peer] {
            assert_eq!(peer.ip(), IpAddr::V4(NODE1_IP), "{vip}: SNATed to node1");
            assert!((NAT_MIN..=NAT_MAX).contains(&peer.port()), "{peer}");
        }
        let nat = dp1
            .maps
            .np_nat
            .get(
                &ct_key(
                    POD2_IP,
                    NODE1_IP,
                    BACKEND_PORT,
                    tcp_peer.port(),
                    IPPROTO_TCP,
                    0,
                ),
                0,
            )
            .expect("node1's mapping of the TCP flow");
        assert_eq!(
            (nat.client_addr, nat.frontend_addr, nat.frontend_port),
            (be32(EXT_IP), be32(vip), be16(REMOTE_PORT)),
            "{vip}"
        );
    }
    for (name, dp) in [("node1", &dp1), ("node2", &dp2)] {
        assert!(
            dp.maps.drop_counts().unwrap().is_empty(),
            "{name}: {:?}",
            dp.maps.drop_counts()
        );
    }
    assert!(
        dp2.maps.np_nat.keys().next().is_none(),
        "node2 translated nothing"
    );
}

/// external -> node1's node ports (a pod on node1, a pod behind node2)
/// with 4000-byte UDP datagrams over links of MTU 1500, through the real
/// kernel paths: every program on the way gets fragments (node1's uplink
/// DNATs, and SNATs, each one; node2's uplink and the pods' veths pass them
/// on), and the answers, fragmented by the pods' stacks, come back whole
/// from the node port the client's socket is connected to.
#[test]
fn real_traffic_fragmented_udp() {
    use real::*;
    use std::net::{IpAddr, UdpSocket};
    use tollway_datapath::netns::run_in_netns;

    let lab = Lab::new(2);
    let mut dp1 = node_datapath(&lab.nodes[0], NODE1_IP, "real-frag-n1");
    let dp2 = node_datapath(&lab.nodes[1], NODE2_IP, "real-frag-n2");
    add_nodeport(&mut dp1, NODE1_IP, LOCAL_PORT, POD1_IP, true, 1);
    add_nodeport(&mut dp1, NODE1_IP, REMOTE_PORT, POD2_IP, false, 2);
    let (_tcp1, udp1) = servers(&lab.nodes[0].pod, POD1_IP);
    let (_tcp2, udp2) = servers(&lab.nodes[1].pod, POD2_IP);

    for (port, server, seen_as) in [(LOCAL_PORT, &udp1, EXT_IP), (REMOTE_PORT, &udp2, NODE1_IP)] {
        let query = big_payload(4000, 1);
        let answer = big_payload(4000, 2);
        let client = run_in_netns(&lab.ext.path(), || {
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(Some(TIMEOUT)).unwrap();
            udp.connect((NODE1_IP, port)).unwrap();
            assert_eq!(udp.send(&query).unwrap(), query.len());
            udp
        })
        .unwrap();
        let mut buf = vec![0u8; 8192];
        let (n, peer) = server
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("the fragmented query to port {port} at the pod: {e}"));
        assert!(
            buf[..n] == query[..],
            "port {port}: the query arrived whole"
        );
        assert_eq!(peer.ip(), IpAddr::V4(seen_as), "port {port}");
        server.send_to(&answer, peer).unwrap();
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("the fragmented answer from port {port}: {e}"));
        assert!(
            buf[..n] == answer[..],
            "port {port}: the answer arrived whole"
        );
        eprintln!("fragmented UDP through {NODE1_IP}:{port}: the pod saw {peer}");
    }
    for (name, dp) in [("node1", &dp1), ("node2", &dp2)] {
        assert!(
            dp.maps.drop_counts().unwrap().is_empty(),
            "{name}: {:?}",
            dp.maps.drop_counts()
        );
        let tracked = dp.maps.frag.keys().filter(Result::is_ok).count();
        eprintln!("{name}: {tracked} datagrams in tw_frag4");
        assert!(tracked > 0, "{name} saw first fragments");
    }
}

/// spec.loadBalancerSourceRanges through the real kernel paths, with two
/// client addresses on the external host: a LoadBalancer IP routed to
/// node1 (as in `real_traffic_external_and_load_balancer_ips`) whose
/// frontends admit only 10.99.0.100/32 serves that client (a pod on node1,
/// and a pod behind node2 through SNAT) and drops the other address,
/// 10.99.0.101, at node1's uplink (TCP and UDP, no conntrack entry, no
/// SNAT mapping), while the same service's node port serves the other
/// address as before.
#[test]
fn real_traffic_load_balancer_source_ranges() {
    use real::*;
    use std::net::{IpAddr, TcpStream, UdpSocket};
    use tollway_datapath::netns::run_in_netns;

    let lb_ip = Ipv4Addr::new(192, 0, 2, 30);
    let outsider = Ipv4Addr::new(10, 99, 0, 101);
    let lab = Lab::new(2);
    lab.ext
        .ip(&["addr", "add", &format!("{outsider}/24"), "dev", "eth0"]);
    // Which of its addresses the client sends from, per destination.
    let from = |dst: &str, src: Ipv4Addr| {
        lab.ext.ip(&[
            "route",
            "replace",
            dst,
            "via",
            &NODE1_IP.to_string(),
            "dev",
            "eth0",
            "src",
            &src.to_string(),
        ]);
    };
    from("192.0.2.0/24", EXT_IP);
    from(&format!("{NODE1_IP}/32"), outsider);

    let mut dp1 = node_datapath(&lab.nodes[0], NODE1_IP, "real-src-n1");
    let dp2 = node_datapath(&lab.nodes[1], NODE2_IP, "real-src-n2");
    // TCP and UDP frontends each (reverse-NAT indexes 2n and 2n + 1).
    add_frontend(&mut dp1, lb_ip, LOCAL_PORT, LB_RANGED, POD1_IP, true, 7);
    add_frontend(&mut dp1, lb_ip, REMOTE_PORT, LB_RANGED, POD2_IP, false, 8);
    for rev in 14..=17 {
        dp1.maps.set_src_range(rev, EXT_IP, 32).unwrap();
    }
    add_nodeport(&mut dp1, NODE1_IP, LOCAL_PORT, POD1_IP, true, 9);
    let (listener1, udp1) = servers(&lab.nodes[0].pod, POD1_IP);
    let (listener2, udp2) = servers(&lab.nodes[1].pod, POD2_IP);

    // The admitted client, to both backends.
    let (tcp_peer, udp_peer) = exchange(&lab.ext, lb_ip, LOCAL_PORT, &listener1, &udp1);
    assert_eq!(tcp_peer.ip(), IpAddr::V4(EXT_IP), "client kept");
    assert_eq!(udp_peer.ip(), IpAddr::V4(EXT_IP), "client kept");
    let (tcp_peer, udp_peer) = exchange(&lab.ext, lb_ip, REMOTE_PORT, &listener2, &udp2);
    for peer in [tcp_peer, udp_peer] {
        assert_eq!(peer.ip(), IpAddr::V4(NODE1_IP), "SNATed to node1");
    }
    eprintln!("source ranges: {EXT_IP} reached {lb_ip} (both backends)");

    // The other address reaches the same service's node port: its path
    // works both ways.
    let (tcp_peer, udp_peer) = exchange(&lab.ext, NODE1_IP, LOCAL_PORT, &listener1, &udp1);
    assert_eq!(
        tcp_peer.ip(),
        IpAddr::V4(outsider),
        "the node port is not filtered"
    );
    assert_eq!(udp_peer.ip(), IpAddr::V4(outsider));
    assert_eq!(dp1.drops(DROP_NOT_IN_SRC_RANGE), 0);

    // ... but not the LoadBalancer IP.
    from("192.0.2.0/24", outsider);
    let short = Duration::from_millis(1500);
    for port in [LOCAL_PORT, REMOTE_PORT] {
        let (tcp, udp) = run_in_netns(&lab.ext.path(), || {
            let tcp = TcpStream::connect_timeout(&(lb_ip, port).into(), short);
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.connect((lb_ip, port)).unwrap();
            udp.send(b"query").unwrap();
            (tcp, udp)
        })
        .unwrap();
        let local = udp.local_addr().unwrap();
        assert_eq!(
            local.ip(),
            IpAddr::V4(outsider),
            "sent from the other address"
        );
        match tcp {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{port}: {e}"),
            Ok(s) => panic!(
                "{outsider} connected to {lb_ip}:{port} from {:?}",
                s.local_addr()
            ),
        }
    }
    for (name, udp) in [("node1's pod", &udp1), ("node2's pod", &udp2)] {
        udp.set_read_timeout(Some(short)).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, peer)) = udp.recv_from(&mut buf) {
            panic!("{name} got {:?} from {peer}", &buf[..n]);
        }
    }
    let dropped = dp1.drops(DROP_NOT_IN_SRC_RANGE);
    eprintln!("source ranges: {outsider} dropped at {lb_ip}, {dropped} packets");
    // Both SYNs (and their retransmissions) and both datagrams.
    assert!(dropped >= 4, "{dropped}");
    assert_eq!(
        lb_state_of(&dp1, outsider, lb_ip, 14..=17),
        (0, 0),
        "no conntrack entry, no SNAT mapping for the LoadBalancer IP"
    );
    // (What the check sees: the admitted client's flows.)
    assert_ne!(lb_state_of(&dp1, EXT_IP, lb_ip, 14..=17), (0, 0));
    let drops = dp1.maps.drop_counts().unwrap();
    assert!(
        drops.iter().all(|(code, _)| *code == DROP_NOT_IN_SRC_RANGE),
        "{drops:?}"
    );
    assert!(dp2.maps.drop_counts().unwrap().is_empty());
    assert!(
        dp2.maps
            .ct
            .keys()
            .filter_map(Result::ok)
            .all(|k| k.saddr != be32(outsider)),
        "nothing of the outsider reached node2"
    );
}

/// (Conntrack entries naming `client` that belong to the frontends with a
/// reverse-NAT index in `revs`, SNAT mappings of `client` to `frontend`).
fn lb_state_of(
    dp: &Node,
    client: Ipv4Addr,
    frontend: Ipv4Addr,
    revs: std::ops::RangeInclusive<u16>,
) -> (usize, usize) {
    let ct = dp
        .maps
        .ct
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| {
            (k.saddr == be32(client) || k.daddr == be32(client)) && revs.contains(&v.rev_nat_index)
        })
        .count();
    let nat = dp
        .maps
        .np_nat
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.client_addr == be32(client) && v.frontend_addr == be32(frontend))
        .count();
    (ct, nat)
}
