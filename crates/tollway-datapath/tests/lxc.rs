//! Root-only tests of `bpf/progs/lxc.c` (`tw_from_lxc`, `tw_to_lxc`) with
//! `BPF_PROG_TEST_RUN`: every test loads the node datapath with its maps
//! pinned in a fresh directory, writes services into the maps through
//! `LbMaps`, runs hand-built frames through the programs and checks the
//! frames that come out (fields and recomputed checksums) and the maps.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // shared with tests/pass.rs, which uses the rest
mod common;

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use common::lb::*;
use common::{chain, require_root};
use tollway_abi::{
    Config, Ct4Key, CtEntry, Endpoint, Frag4Entry, IpcacheEntry, Lb4AffinityKey, Lb4Backend,
    Lb4Revnat, Lb4Service, LbAffinity, TW_CT_F_INGRESS, TW_CT_F_SERVICE, TW_CT_LIFETIME_NONTCP,
    TW_CT_LIFETIME_TCP_CLOSE, TW_CT_LIFETIME_TCP_ESTABLISHED, TW_CT_LIFETIME_TCP_SYN,
    TW_CT_S_ESTABLISHED, TW_CT_S_FIN_RX, TW_CT_S_FIN_TX, TW_CT_S_RST, TW_CT_S_SEEN_REPLY,
    TW_CT_S_SYN_SEEN, TW_EP_F_INGRESS_DEFAULT_DENY, TW_FRAG_F_ICMP_ECHO, TW_FRAG_F_PORTS,
    TW_IPC_F_ENDPOINT, TW_LB_ALG_MAGLEV, TW_LB_ALG_RANDOM, TW_LB_SCOPE_EXT, TW_LB_SCOPE_INT,
    TW_SVC_F_AFFINITY, TW_SVC_F_CLUSTERIP, TW_SVC_F_TWO_SCOPES, be16, be32,
};
use tollway_datapath::{
    testutil::{
        ETH_HLEN, ETH_P_ARP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN,
        IcmpEchoPacket, Ipv4Endpoints, ParsedFrame, ParsedL4, TcpPacket, UDP_HLEN, UdpPacket,
        ether_frame, fix_ipv4_checksum, icmp_type, ipv4_checksum_ok, l4_checksum_ok, tcp_flags,
        with_ipv4_options,
    },
    verdict::{TC_ACT_OK, TC_ACT_SHOT},
};

const TC_ACT_REDIRECT: u32 = 7;
const DROP_NO_SERVICE: u8 = 158;
const DROP_FRAG_NOT_FOUND: u8 = 175;
const DROP_POLICY_DENIED: u8 = 133;
const IPPROTO_GRE: u8 = 47;

const FROM: &str = "tw_from_lxc";
const TO: &str = "tw_to_lxc";

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x05];
/// The host side of the client pod's veth (its default gateway).
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x00, 0x01];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);

fn backend_ip(id: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 2, 10 + u8::try_from(id).unwrap())
}

/// A service to install: `backends` are (id, in a slot).
struct Service {
    vip: Ipv4Addr,
    port: u16,
    proto: u8,
    rev_nat: u16,
    backends: Vec<u32>,
    flags: u16,
    algorithm: u8,
    affinity_timeout: u32,
    scope: u8,
}

impl Service {
    fn tcp(rev_nat: u16, backends: &[u32]) -> Service {
        Service {
            vip: VIP,
            port: VIP_PORT,
            proto: IPPROTO_TCP,
            rev_nat,
            backends: backends.to_vec(),
            flags: TW_SVC_F_CLUSTERIP,
            algorithm: TW_LB_ALG_RANDOM,
            affinity_timeout: 0,
            scope: TW_LB_SCOPE_EXT,
        }
    }
}

/// The SERVICE entry key of a client flow to the VIP.
fn svc_ct_key(client: Ipv4Addr, sport: u16, proto: u8, port: u16) -> Ct4Key {
    ct_key(client, VIP, sport, port, proto, TW_CT_F_SERVICE)
}

fn conn_ct_key(client: Ipv4Addr, sport: u16, backend: u32, proto: u8) -> Ct4Key {
    ct_key(client, backend_ip(backend), sport, BACKEND_PORT, proto, 0)
}

impl Node {
    fn new() -> Node {
        Node::load("lxc", "lxc")
    }

    fn run(&mut self, program: &str, frame: &[u8]) -> Run {
        self.run_in("lxc", program, frame)
    }

    fn add_backend(&mut self, id: u32, proto: u8) {
        let be = Lb4Backend {
            address: be32(backend_ip(id)),
            port: be16(BACKEND_PORT),
            proto,
            flags: 0,
        };
        self.maps.backends.insert(id, be, 0).unwrap();
    }

    /// Installs a service in the ABI's order: backends, slots, master.
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
                    lb_key(svc.vip, svc.port, slot, svc.proto, svc.scope),
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
            algorithm: svc.algorithm,
            pad: 0,
            affinity_timeout: svc.affinity_timeout,
        };
        self.maps
            .services
            .insert(
                lb_key(svc.vip, svc.port, 0, svc.proto, svc.scope),
                master,
                0,
            )
            .unwrap();
        let revnat = Lb4Revnat {
            address: be32(svc.vip),
            port: be16(svc.port),
            pad: 0,
        };
        self.maps
            .revnat
            .insert(u32::from(svc.rev_nat), revnat, 0)
            .unwrap();
    }

    /// Sends a client packet and returns the backend it was DNATed to.
    fn backend_of(&mut self, frame: &[u8]) -> u32 {
        let run = self.run(FROM, frame);
        assert_eq!(run.retval, TC_ACT_OK, "service packet must pass after DNAT");
        let out = run.frame();
        assert!(
            ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out),
            "checksums after DNAT"
        );
        let dst = out.ip.dst;
        (1..=16)
            .find(|&id| backend_ip(id) == dst)
            .unwrap_or_else(|| panic!("DNATed to {dst}, which is no backend"))
    }
}

fn client_ip() -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac: CLIENT_MAC,
        dst_mac: HOST_MAC,
        src_ip: CLIENT,
        dst_ip: VIP,
        ttl: 64,
    }
}

/// Addressing of a packet going to the client pod (tc egress of its veth).
fn to_client_ip(src: Ipv4Addr) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac: HOST_MAC,
        dst_mac: CLIENT_MAC,
        src_ip: src,
        dst_ip: CLIENT,
        ttl: 63,
    }
}

fn syn(sport: u16) -> TcpPacket {
    TcpPacket {
        ip: client_ip(),
        src_port: sport,
        dst_port: VIP_PORT,
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

fn backend_tcp(backend: u32, dport: u16, flags: u8, payload: &[u8]) -> TcpPacket {
    TcpPacket {
        ip: to_client_ip(backend_ip(backend)),
        src_port: BACKEND_PORT,
        dst_port: dport,
        seq: 5000,
        ack: 1001,
        flags,
        window: 1000,
        payload: payload.to_vec(),
    }
}

/// Zeroes the IPv4 and L4 checksum fields (TCP/UDP/ICMP) of a copy.
/// Linux's jhash_3words over the flow, as bpf/lib/lb.h's tw_hash_flow4:
/// the raw network-order fields read as host-order integers.
fn maglev_hash(saddr: Ipv4Addr, daddr: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut a = u32::from_ne_bytes(saddr.octets());
    let mut b = u32::from_ne_bytes(daddr.octets());
    let sp = u32::from(u16::from_ne_bytes(sport.to_be_bytes()));
    let dp = u32::from(u16::from_ne_bytes(dport.to_be_bytes()));
    let mut c = (sp << 16) | dp;
    let init = u32::from(proto)
        .wrapping_add(0xdead_beef)
        .wrapping_add(3 << 2);
    a = a.wrapping_add(init);
    b = b.wrapping_add(init);
    c = c.wrapping_add(init);
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

#[test]
fn clusterip_tcp_dnat_and_reverse_nat() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[1]));

    // SYN to the VIP: DNAT to the backend.
    let frame = syn(40000).build();
    let before = mono_ns();
    let run = node.run(FROM, &frame);
    let after = mono_ns();
    eprintln!(
        "tw_from_lxc ClusterIP TCP SYN DNAT: BPF_PROG_TEST_RUN duration {:?} ({}-byte frame)",
        run.duration,
        frame.len()
    );
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = TcpPacket {
        ip: Ipv4Endpoints {
            dst_ip: backend_ip(1),
            ..client_ip()
        },
        dst_port: BACKEND_PORT,
        ..syn(40000)
    }
    .build();
    assert_translated(&run, &expected);

    // Conntrack: the SERVICE entry names the backend, the connection
    // entry (to the backend) carries the rev NAT index.
    let sct = node.ct_must(&svc_ct_key(CLIENT, 40000, IPPROTO_TCP, VIP_PORT), "SERVICE");
    assert_eq!(sct.backend_id, 1);
    assert_eq!(sct.rev_nat_index, 1);
    assert_eq!(sct.state, TW_CT_S_SYN_SEEN);
    assert_eq!((sct.tx_packets, sct.tx_bytes), (1, frame.len() as u64));
    assert_eq!(sct.tx_flags_seen, tcp_flags::SYN);
    assert_lifetime(
        sct.expires,
        before,
        after,
        TW_CT_LIFETIME_TCP_SYN,
        "SERVICE after SYN",
    );
    let created = u64::from(sct.created);
    assert!(
        created >= before / NSEC && created <= after / NSEC,
        "created {created}"
    );
    let cct = node.ct_must(&conn_ct_key(CLIENT, 40000, 1, IPPROTO_TCP), "connection");
    assert_eq!((cct.backend_id, cct.rev_nat_index), (1, 1));
    assert_eq!(cct.state, TW_CT_S_SYN_SEEN);
    assert_eq!((cct.tx_packets, cct.rx_packets), (1, 0));

    // SYN-ACK from the backend, on its way to the client: reverse NAT.
    let reply = backend_tcp(1, 40000, tcp_flags::SYN | tcp_flags::ACK, b"").build();
    let run = node.run(TO, &reply);
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = TcpPacket {
        ip: to_client_ip(VIP),
        src_port: VIP_PORT,
        ..backend_tcp(1, 40000, tcp_flags::SYN | tcp_flags::ACK, b"")
    }
    .build();
    assert_translated(&run, &expected);
    let cct = node.ct_must(&conn_ct_key(CLIENT, 40000, 1, IPPROTO_TCP), "connection");
    assert_eq!((cct.rx_packets, cct.rx_bytes), (1, reply.len() as u64));
    assert_ne!(cct.state & TW_CT_S_SEEN_REPLY, 0);

    // A data segment with IPv4 options: the L4 header is found after them
    // and translated the same way.
    let data = client_tcp(
        40000,
        tcp_flags::PSH | tcp_flags::ACK,
        b"GET / HTTP/1.1\r\n\r\n",
    )
    .build();
    let data = with_ipv4_options(&data, &[0x01, 0x01, 0x01, 0x01]).unwrap();
    let run = node.run(FROM, &data);
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = TcpPacket {
        ip: Ipv4Endpoints {
            dst_ip: backend_ip(1),
            ..client_ip()
        },
        dst_port: BACKEND_PORT,
        ..client_tcp(
            40000,
            tcp_flags::PSH | tcp_flags::ACK,
            b"GET / HTTP/1.1\r\n\r\n",
        )
    }
    .build();
    let expected = with_ipv4_options(&expected, &[0x01, 0x01, 0x01, 0x01]).unwrap();
    assert_translated(&run, &expected);

    // Timing of the two common cases, over many runs (each run is a
    // single BPF_PROG_TEST_RUN, so the first-run cost above is included
    // there and amortised here).
    let median = |mut v: Vec<Duration>| -> (Duration, Duration) {
        v.sort();
        (v[0], v[v.len() / 2])
    };
    let new_flows: Vec<Duration> = (0..200u16)
        .map(|i| {
            let run = node.run(FROM, &syn(50000 + i).build());
            assert_eq!(run.retval, TC_ACT_OK);
            run.duration
        })
        .collect();
    let established: Vec<Duration> = (0..200)
        .map(|_| {
            let run = node.run(FROM, &client_tcp(40000, tcp_flags::ACK, b"data").build());
            assert_eq!(run.retval, TC_ACT_OK);
            run.duration
        })
        .collect();
    let (min_new, med_new) = median(new_flows);
    let (min_est, med_est) = median(established);
    eprintln!(
        "tw_from_lxc DNAT over 200 runs: new flow (SYN) min {min_new:?} median {med_new:?}; \
         established (conntrack hit) min {min_est:?} median {med_est:?}"
    );
    eprintln!(
        "verifier: tw_from_lxc walked {:?} instructions, tw_to_lxc {:?}",
        node.verified_insns("lxc", FROM),
        node.verified_insns("lxc", TO)
    );
}

#[test]
fn clusterip_udp_dnat_and_reverse_nat() {
    let mut node = Node::new();
    let dns = Ipv4Addr::new(10, 96, 0, 53);
    node.add_service(&Service {
        vip: dns,
        port: 53,
        proto: IPPROTO_UDP,
        ..Service::tcp(2, &[3])
    });

    let query = UdpPacket {
        ip: Ipv4Endpoints {
            dst_ip: dns,
            ..client_ip()
        },
        src_port: 33333,
        dst_port: 53,
        payload: b"\x12\x34 a DNS query".to_vec(),
    };
    let before = mono_ns();
    let run = node.run(FROM, &query.build());
    let after = mono_ns();
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = UdpPacket {
        ip: Ipv4Endpoints {
            dst_ip: backend_ip(3),
            ..query.ip
        },
        dst_port: BACKEND_PORT,
        ..query.clone()
    }
    .build();
    assert_translated(&run, &expected);
    let skey = ct_key(CLIENT, dns, 33333, 53, IPPROTO_UDP, TW_CT_F_SERVICE);
    let sct = node.ct_must(&skey, "SERVICE");
    assert_eq!((sct.backend_id, sct.rev_nat_index), (3, 2));
    assert_lifetime(
        sct.expires,
        before,
        after,
        TW_CT_LIFETIME_NONTCP,
        "UDP SERVICE",
    );
    let ckey = ct_key(CLIENT, backend_ip(3), 33333, BACKEND_PORT, IPPROTO_UDP, 0);
    let cct = node.ct_must(&ckey, "connection");
    assert_eq!(
        (cct.backend_id, cct.rev_nat_index, cct.tx_packets),
        (3, 2, 1)
    );

    // The answer: source restored to the frontend.
    let answer = UdpPacket {
        ip: to_client_ip(backend_ip(3)),
        src_port: BACKEND_PORT,
        dst_port: 33333,
        payload: b"\x12\x34 the answer".to_vec(),
    };
    let before = mono_ns();
    let run = node.run(TO, &answer.build());
    let after = mono_ns();
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = UdpPacket {
        ip: to_client_ip(dns),
        src_port: 53,
        ..answer.clone()
    }
    .build();
    assert_translated(&run, &expected);
    let cct = node.ct_must(&ckey, "connection");
    assert_eq!((cct.tx_packets, cct.rx_packets), (1, 1));
    assert_ne!(cct.state & TW_CT_S_SEEN_REPLY, 0);
    assert_lifetime(
        cct.expires,
        before,
        after,
        TW_CT_LIFETIME_NONTCP,
        "UDP refreshed by the reply",
    );

    // A datagram without checksum (0) keeps having none.
    let mut nocsum = UdpPacket {
        src_port: 33334,
        ..query.clone()
    }
    .build();
    nocsum[ETH_HLEN + IPV4_HLEN + 6..ETH_HLEN + IPV4_HLEN + 8].copy_from_slice(&[0, 0]);
    let run = node.run(FROM, &nocsum);
    assert_eq!(run.retval, TC_ACT_OK);
    let out = run.frame();
    assert_eq!(out.ip.dst, backend_ip(3));
    assert!(ipv4_checksum_ok(&run.out));
    assert!(
        matches!(
            out.l4,
            ParsedL4::Udp {
                checksum: 0,
                dst_port: BACKEND_PORT,
                ..
            }
        ),
        "{:?}",
        out.l4
    );
}

#[test]
fn tcp_state_transitions_and_lifetimes() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[1]));
    let ckey = conn_ct_key(CLIENT, 41000, 1, IPPROTO_TCP);
    let skey = svc_ct_key(CLIENT, 41000, IPPROTO_TCP, VIP_PORT);

    let step = |node: &mut Node, prog: &str, frame: Vec<u8>| -> (u64, u64) {
        let before = mono_ns();
        let run = node.run(prog, &frame);
        assert_eq!(run.retval, TC_ACT_OK, "{prog}");
        (before, mono_ns())
    };

    let (b, a) = step(&mut node, FROM, syn(41000).build());
    let ct = node.ct_must(&ckey, "after SYN");
    assert_eq!(ct.state, TW_CT_S_SYN_SEEN);
    assert_lifetime(ct.expires, b, a, TW_CT_LIFETIME_TCP_SYN, "SYN");

    let (b, a) = step(
        &mut node,
        TO,
        backend_tcp(1, 41000, tcp_flags::SYN | tcp_flags::ACK, b"").build(),
    );
    let ct = node.ct_must(&ckey, "after SYN-ACK");
    assert_eq!(
        ct.state,
        TW_CT_S_SYN_SEEN | TW_CT_S_SEEN_REPLY,
        "one side has ACKed"
    );
    assert_lifetime(ct.expires, b, a, TW_CT_LIFETIME_TCP_SYN, "SYN-ACK");

    let (b, a) = step(
        &mut node,
        FROM,
        client_tcp(41000, tcp_flags::ACK, b"").build(),
    );
    let ct = node.ct_must(&ckey, "after ACK");
    assert_eq!(
        ct.state,
        TW_CT_S_SYN_SEEN | TW_CT_S_SEEN_REPLY | TW_CT_S_ESTABLISHED
    );
    assert_lifetime(
        ct.expires,
        b,
        a,
        TW_CT_LIFETIME_TCP_ESTABLISHED,
        "established",
    );
    let st = node.ct_must(&skey, "SERVICE after ACK");
    assert_ne!(
        st.state & TW_CT_S_ESTABLISHED,
        0,
        "the SERVICE entry sees replies too"
    );
    assert_lifetime(
        st.expires,
        b,
        a,
        TW_CT_LIFETIME_TCP_ESTABLISHED,
        "SERVICE established",
    );

    // FIN from the client: half closed, still established lifetime.
    let (b, a) = step(
        &mut node,
        FROM,
        client_tcp(41000, tcp_flags::FIN | tcp_flags::ACK, b"").build(),
    );
    let ct = node.ct_must(&ckey, "after FIN");
    assert_ne!(ct.state & TW_CT_S_FIN_TX, 0);
    assert_eq!(ct.state & TW_CT_S_FIN_RX, 0);
    assert_lifetime(
        ct.expires,
        b,
        a,
        TW_CT_LIFETIME_TCP_ESTABLISHED,
        "half closed",
    );

    // FIN from the backend: closing, close lifetime.
    let (b, a) = step(
        &mut node,
        TO,
        backend_tcp(1, 41000, tcp_flags::FIN | tcp_flags::ACK, b"").build(),
    );
    let ct = node.ct_must(&ckey, "after FIN/FIN");
    assert_ne!(ct.state & TW_CT_S_FIN_RX, 0);
    assert_lifetime(ct.expires, b, a, TW_CT_LIFETIME_TCP_CLOSE, "FIN both ways");
    assert_eq!(
        ct.tx_flags_seen,
        tcp_flags::SYN | tcp_flags::ACK | tcp_flags::FIN
    );
    assert_eq!(
        ct.rx_flags_seen,
        tcp_flags::SYN | tcp_flags::ACK | tcp_flags::FIN
    );
    assert_eq!((ct.tx_packets, ct.rx_packets), (3, 2));
    let st = node.ct_must(&skey, "SERVICE after FIN/FIN");
    assert_lifetime(
        st.expires,
        b,
        a,
        TW_CT_LIFETIME_TCP_CLOSE,
        "SERVICE FIN both ways",
    );

    // The last ACK keeps the close lifetime.
    let (b, a) = step(
        &mut node,
        FROM,
        client_tcp(41000, tcp_flags::ACK, b"").build(),
    );
    assert_lifetime(
        node.ct_must(&ckey, "last ACK").expires,
        b,
        a,
        TW_CT_LIFETIME_TCP_CLOSE,
        "last ACK",
    );

    // A new SYN on the closing tuple opens a new connection.
    let (b, a) = step(&mut node, FROM, syn(41000).build());
    let ct = node.ct_must(&ckey, "after SYN on a closed tuple");
    assert_eq!(ct.state, TW_CT_S_SYN_SEEN, "fresh entry");
    assert_eq!((ct.tx_packets, ct.rx_packets), (1, 0));
    assert_lifetime(ct.expires, b, a, TW_CT_LIFETIME_TCP_SYN, "reopened");
    let st = node.ct_must(&skey, "SERVICE reopened");
    assert_eq!((st.state, st.tx_packets), (TW_CT_S_SYN_SEEN, 1));

    // RST from the backend: closing at once.
    let rkey = conn_ct_key(CLIENT, 41001, 1, IPPROTO_TCP);
    step(&mut node, FROM, syn(41001).build());
    let (b, a) = step(
        &mut node,
        TO,
        backend_tcp(1, 41001, tcp_flags::RST | tcp_flags::ACK, b"").build(),
    );
    let ct = node.ct_must(&rkey, "after RST");
    assert_ne!(ct.state & TW_CT_S_RST, 0);
    assert_lifetime(ct.expires, b, a, TW_CT_LIFETIME_TCP_CLOSE, "RST");

    // An expired entry counts as absent: its (stale) backend is ignored
    // and the entry is overwritten.
    node.add_backend(2, IPPROTO_TCP); // exists, but in no slot
    let stale = CtEntry {
        expires: 1,
        backend_id: 2,
        rev_nat_index: 1,
        state: TW_CT_S_ESTABLISHED,
        tx_packets: 77,
        created: 1,
        ..CtEntry::default()
    };
    let ekey = svc_ct_key(CLIENT, 41002, IPPROTO_TCP, VIP_PORT);
    node.maps.ct.insert(ekey, stale, 0).unwrap();
    node.maps
        .ct
        .insert(conn_ct_key(CLIENT, 41002, 2, IPPROTO_TCP), stale, 0)
        .unwrap();
    let (b, a) = step(&mut node, FROM, syn(41002).build());
    let ct = node.ct_must(&ekey, "SERVICE replacing an expired one");
    assert_eq!(
        ct.backend_id, 1,
        "the expired entry's backend must not be used"
    );
    assert_eq!((ct.tx_packets, ct.state), (1, TW_CT_S_SYN_SEEN));
    assert!(u64::from(ct.created) >= b / NSEC);
    assert_lifetime(ct.expires, b, a, TW_CT_LIFETIME_TCP_SYN, "replaced entry");

    // Untranslated traffic: a SYN opens an entry (no rev NAT), a
    // mid-stream segment of an unknown connection does not.
    step(
        &mut node,
        FROM,
        TcpPacket {
            ip: Ipv4Endpoints {
                dst_ip: EXTERNAL,
                ..client_ip()
            },
            dst_port: 443,
            ..syn(42000)
        }
        .build(),
    );
    let ct = node.ct_must(
        &ct_key(CLIENT, EXTERNAL, 42000, 443, IPPROTO_TCP, 0),
        "external SYN",
    );
    assert_eq!(
        (ct.rev_nat_index, ct.backend_id, ct.state),
        (0, 0, TW_CT_S_SYN_SEEN)
    );
    step(
        &mut node,
        FROM,
        TcpPacket {
            ip: Ipv4Endpoints {
                dst_ip: EXTERNAL,
                ..client_ip()
            },
            dst_port: 443,
            ..client_tcp(42001, tcp_flags::ACK, b"x")
        }
        .build(),
    );
    assert!(
        node.ct(&ct_key(CLIENT, EXTERNAL, 42001, 443, IPPROTO_TCP, 0))
            .is_none()
    );
}

#[test]
fn established_flow_keeps_a_terminating_backend() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[1, 2]));

    // Open flows until one lands on each backend.
    let mut flows: BTreeMap<u32, u16> = BTreeMap::new();
    for sport in 43000..43100 {
        let id = node.backend_of(&syn(sport).build());
        flows.entry(id).or_insert(sport);
        if flows.len() == 2 {
            break;
        }
    }
    let (&_, &sport_1) = flows
        .iter()
        .find(|(id, _)| **id == 1)
        .expect("a flow on backend 1");

    // Backend 1 leaves every slot (terminating) but stays in the backends
    // map: shrink the master first, then fix the slots.
    node.maps
        .services
        .insert(
            lb_key(VIP, VIP_PORT, 1, IPPROTO_TCP, TW_LB_SCOPE_EXT),
            Lb4Service {
                backend_id: 2,
                ..Lb4Service::default()
            },
            0,
        )
        .unwrap();
    let master_key = lb_key(VIP, VIP_PORT, 0, IPPROTO_TCP, TW_LB_SCOPE_EXT);
    let mut master = node.maps.services.get(&master_key, 0).unwrap();
    master.count = 1;
    node.maps.services.insert(master_key, master, 0).unwrap();
    node.maps
        .services
        .remove(&lb_key(VIP, VIP_PORT, 2, IPPROTO_TCP, TW_LB_SCOPE_EXT))
        .unwrap();

    // The established flow goes on to backend 1 ...
    for _ in 0..5 {
        let id = node.backend_of(&client_tcp(sport_1, tcp_flags::ACK, b"more").build());
        assert_eq!(id, 1, "an established flow keeps its terminating backend");
    }
    // ... new flows never pick it.
    for sport in 44000..44050 {
        assert_eq!(node.backend_of(&syn(sport).build()), 2, "new flow {sport}");
    }

    // Once the backend is gone for good, the flow is moved.
    node.maps.backends.remove(&1).unwrap();
    assert_eq!(
        node.backend_of(&client_tcp(sport_1, tcp_flags::ACK, b"").build()),
        2
    );
    let sct = node.ct_must(&svc_ct_key(CLIENT, sport_1, IPPROTO_TCP, VIP_PORT), "moved");
    assert_eq!(sct.backend_id, 2);
}

#[test]
fn random_selection_spreads_over_three_backends() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[1, 2, 3]));
    let mut hits: BTreeMap<u32, u32> = BTreeMap::new();
    for sport in 0..300u16 {
        *hits
            .entry(node.backend_of(&syn(20000 + sport).build()))
            .or_default() += 1;
    }
    eprintln!("random: hits per backend {hits:?}");
    assert_eq!(hits.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    // Binomial(300, 1/3): mean 100, sd 8.2; 50 is six sd away.
    assert!(hits.values().all(|&n| n >= 50), "{hits:?}");
    // Every flow recorded its own backend.
    for sport in 0..300u16 {
        let sct = node.ct_must(
            &svc_ct_key(CLIENT, 20000 + sport, IPPROTO_TCP, VIP_PORT),
            "flow",
        );
        assert!((1..=3).contains(&sct.backend_id));
    }
}

#[test]
fn maglev_selection_follows_the_installed_table() {
    const M: u32 = 251; // a prime other than the default
    let mut node = Node::new();
    node.maps
        .set_config(&Config {
            maglev_m: M,
            ..Config::default()
        })
        .unwrap();
    node.add_service(&Service {
        algorithm: TW_LB_ALG_MAGLEV,
        ..Service::tcp(5, &[1, 2, 3])
    });
    // An irregular table, so that a wrong index shows.
    let table: Vec<u32> = (0..M).map(|i| 1 + (i * 7 + i / 3 + i * i) % 3).collect();
    node.maps
        .set_maglev(5, &table)
        .unwrap_or_else(|e| panic!("set_maglev: {}", chain(&e)));
    assert_eq!(
        node.maps.maglev_table(5).unwrap().as_deref(),
        Some(&table[..])
    );

    let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
    for i in 0..200u16 {
        let client = Ipv4Addr::new(10, 0, 1, 2 + u8::try_from(i % 50).unwrap());
        let sport = 30000 + i * 13;
        let frame = TcpPacket {
            ip: Ipv4Endpoints {
                src_ip: client,
                ..client_ip()
            },
            ..syn(sport)
        }
        .build();
        let want = table[(maglev_hash(client, VIP, sport, VIP_PORT, IPPROTO_TCP) % M) as usize];
        let got = node.backend_of(&frame);
        assert_eq!(
            got, want,
            "flow {client}:{sport}: Maglev must follow the table"
        );
        *seen.entry(got).or_default() += 1;

        // Stable per flow: forget the flow's conntrack, and it lands on
        // the same backend again.
        node.maps
            .ct
            .remove(&svc_ct_key(client, sport, IPPROTO_TCP, VIP_PORT))
            .unwrap();
        node.maps
            .ct
            .remove(&conn_ct_key(client, sport, got, IPPROTO_TCP))
            .unwrap();
        assert_eq!(
            node.backend_of(&frame),
            got,
            "flow {client}:{sport} is not stable"
        );
    }
    eprintln!("maglev: hits per backend {seen:?}");
    assert_eq!(
        seen.len(),
        3,
        "the table's three backends are all used: {seen:?}"
    );

    // Without a table, Maglev falls back to random: still a backend.
    node.maps.delete_maglev(5).unwrap();
    for sport in 50000..50020 {
        let id = node.backend_of(&syn(sport).build());
        assert!((1..=3).contains(&id));
    }
}

#[test]
fn client_ip_affinity_sticks_across_source_ports() {
    let mut node = Node::new();
    node.add_service(&Service {
        flags: TW_SVC_F_CLUSTERIP | TW_SVC_F_AFFINITY,
        affinity_timeout: 300,
        ..Service::tcp(7, &[1, 2, 3])
    });
    let akey = |client: Ipv4Addr| Lb4AffinityKey {
        client: be32(client),
        rev_nat_index: 7,
        pad: 0,
    };

    let before = mono_ns();
    let first = node.backend_of(&syn(1000).build());
    let aff = node.maps.affinity.get(&akey(CLIENT), 0).unwrap();
    assert_eq!(aff.backend_id, first);
    assert!(aff.last_used >= before && aff.last_used <= mono_ns());
    for sport in 1001..1060 {
        assert_eq!(
            node.backend_of(&syn(sport).build()),
            first,
            "port {sport} left the affinity"
        );
    }

    // Other clients are spread (and each sticks to its own choice).
    let mut others = BTreeMap::new();
    for host in 100..130u8 {
        let client = Ipv4Addr::new(10, 0, 1, host);
        let frame = |sport| {
            TcpPacket {
                ip: Ipv4Endpoints {
                    src_ip: client,
                    ..client_ip()
                },
                ..syn(sport)
            }
            .build()
        };
        let id = node.backend_of(&frame(2000));
        assert_eq!(node.backend_of(&frame(2001)), id);
        *others.entry(id).or_insert(0) += 1;
    }
    assert!(others.len() > 1, "affinity must be per client: {others:?}");

    // An affinity to a backend in no slot (terminating) is not followed.
    let client = Ipv4Addr::new(10, 0, 1, 200);
    node.add_backend(4, IPPROTO_TCP);
    node.maps
        .affinity
        .insert(
            akey(client),
            LbAffinity {
                last_used: mono_ns(),
                backend_id: 4,
                pad: 0,
            },
            0,
        )
        .unwrap();
    let frame = TcpPacket {
        ip: Ipv4Endpoints {
            src_ip: client,
            ..client_ip()
        },
        ..syn(3000)
    }
    .build();
    let id = node.backend_of(&frame);
    assert_ne!(id, 4, "a backend out of every slot gets no new flows");
    assert_eq!(
        node.maps.affinity.get(&akey(client), 0).unwrap().backend_id,
        id
    );

    // An affinity older than the timeout is replaced by a fresh choice.
    let client = Ipv4Addr::new(10, 0, 1, 201);
    let old = mono_ns() - 301 * NSEC;
    node.maps
        .affinity
        .insert(
            akey(client),
            LbAffinity {
                last_used: old,
                backend_id: 1,
                pad: 0,
            },
            0,
        )
        .unwrap();
    let frame = TcpPacket {
        ip: Ipv4Endpoints {
            src_ip: client,
            ..client_ip()
        },
        ..syn(3001)
    }
    .build();
    let id = node.backend_of(&frame);
    let aff = node.maps.affinity.get(&akey(client), 0).unwrap();
    assert_eq!(aff.backend_id, id);
    assert!(
        aff.last_used > old + 300 * NSEC,
        "expired affinity refreshed"
    );
}

#[test]
fn two_scope_frontend_uses_the_internal_scope() {
    let mut node = Node::new();
    // externalTrafficPolicy=Local: the external scope lists only the local
    // backend 1, the internal scope every backend (2 here, to tell apart).
    node.add_service(&Service {
        flags: TW_SVC_F_CLUSTERIP | TW_SVC_F_TWO_SCOPES,
        ..Service::tcp(9, &[1])
    });
    node.add_service(&Service {
        flags: TW_SVC_F_CLUSTERIP | TW_SVC_F_TWO_SCOPES,
        scope: TW_LB_SCOPE_INT,
        ..Service::tcp(9, &[2])
    });
    for sport in 45000..45020 {
        assert_eq!(
            node.backend_of(&syn(sport).build()),
            2,
            "pods use the internal scope"
        );
    }
}

#[test]
fn no_backend_rejects_tcp_with_rst_ack() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[]));
    assert_eq!(node.drops(DROP_NO_SERVICE), 0);

    let frame = syn(40000).build();
    let run = node.run(FROM, &frame);
    assert_eq!(run.retval, TC_ACT_REDIRECT, "the RST goes back to the pod");
    assert_eq!(
        run.out.len(),
        ETH_HLEN + IPV4_HLEN + 20,
        "truncated to the headers"
    );
    assert!(ipv4_checksum_ok(&run.out), "IPv4 checksum of the RST");
    assert!(l4_checksum_ok(&run.out), "TCP checksum of the RST");
    let out = run.frame();
    assert_eq!(
        (out.dst_mac, out.src_mac),
        (CLIENT_MAC, HOST_MAC),
        "MACs swapped"
    );
    assert_eq!(
        (out.ip.src, out.ip.dst),
        (VIP, CLIENT),
        "from the frontend to the client"
    );
    assert_eq!(
        (out.ip.header_len, out.ip.total_len, out.ip.proto),
        (20, 40, IPPROTO_TCP)
    );
    match out.l4 {
        ParsedL4::Tcp {
            src_port,
            dst_port,
            seq,
            ack,
            header_len,
            flags,
            ref payload,
            ..
        } => {
            assert_eq!((src_port, dst_port), (VIP_PORT, 40000));
            assert_eq!(flags, tcp_flags::RST | tcp_flags::ACK);
            assert_eq!((seq, ack), (0, 1001), "RST to a SYN: seq 0, ack = ISN + 1");
            assert_eq!(header_len, 20);
            assert!(payload.is_empty());
        }
        ref other => panic!("not TCP: {other:?}"),
    }
    assert_eq!(node.drops(DROP_NO_SERVICE), 1);
    assert!(
        node.ct(&svc_ct_key(CLIENT, 40000, IPPROTO_TCP, VIP_PORT))
            .is_none()
    );

    // A mid-stream segment with data and IP options: seq = its ack,
    // ack = its seq + data length, a plain 20-byte IPv4 header back.
    let data = client_tcp(40001, tcp_flags::PSH | tcp_flags::ACK, &[7u8; 10]).build();
    let data = with_ipv4_options(&data, &[0x01, 0x01, 0x01, 0x01]).unwrap();
    let run = node.run(FROM, &data);
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert!(ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out));
    let out = run.frame();
    assert_eq!(out.ip.header_len, 20);
    assert!(
        matches!(out.l4, ParsedL4::Tcp { seq: 5001, ack: 1011, flags, src_port: VIP_PORT, dst_port: 40001, .. } if flags == tcp_flags::RST | tcp_flags::ACK),
        "{:?}",
        out.l4
    );
    assert_eq!(node.drops(DROP_NO_SERVICE), 2);

    // A RST is never answered: dropped (and counted).
    let rst = client_tcp(40002, tcp_flags::RST, b"").build();
    let run = node.run(FROM, &rst);
    assert_eq!(run.retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_NO_SERVICE), 3);
}

#[test]
fn no_backend_rejects_udp_with_icmp_port_unreachable() {
    let mut node = Node::new();
    node.add_service(&Service {
        proto: IPPROTO_UDP,
        ..Service::tcp(3, &[])
    });

    for options in [
        &[][..],
        &[0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01][..],
    ] {
        let before = node.drops(DROP_NO_SERVICE);
        let datagram = UdpPacket {
            ip: client_ip(),
            src_port: 40000,
            dst_port: VIP_PORT,
            payload: vec![0xab; 100],
        }
        .build();
        let datagram = if options.is_empty() {
            datagram
        } else {
            with_ipv4_options(&datagram, options).unwrap()
        };
        let ihl = IPV4_HLEN + options.len();
        let run = node.run(FROM, &datagram);
        assert_eq!(
            run.retval, TC_ACT_REDIRECT,
            "the ICMP error goes back to the pod"
        );
        let quote_len = ihl + 8;
        assert_eq!(run.out.len(), ETH_HLEN + IPV4_HLEN + 8 + quote_len);
        assert!(
            ipv4_checksum_ok(&run.out),
            "IPv4 checksum of the ICMP error"
        );
        assert!(l4_checksum_ok(&run.out), "ICMP checksum");
        let out = run.frame();
        assert_eq!((out.dst_mac, out.src_mac), (CLIENT_MAC, HOST_MAC));
        assert_eq!(
            (out.ip.src, out.ip.dst, out.ip.proto),
            (VIP, CLIENT, IPPROTO_ICMP)
        );
        assert_eq!(usize::from(out.ip.total_len), IPV4_HLEN + 8 + quote_len);
        match out.l4 {
            ParsedL4::Icmp {
                icmp_type: t,
                code,
                rest,
                ref payload,
                ..
            } => {
                assert_eq!(
                    (t, code),
                    (icmp_type::DEST_UNREACH, icmp_type::CODE_PORT_UNREACH)
                );
                assert_eq!(rest, [0; 4]);
                // The quote: the original IPv4 header (options included)
                // and the first 8 bytes after it, the UDP header.
                assert_eq!(
                    payload.as_slice(),
                    &datagram[ETH_HLEN..ETH_HLEN + quote_len]
                );
                let inner =
                    ParsedFrame::parse(&[&datagram[..ETH_HLEN], payload.as_slice()].concat());
                let inner = inner.expect("quoted header parses");
                assert_eq!((inner.ip.src, inner.ip.dst), (CLIENT, VIP));
                assert!(matches!(
                    inner.l4,
                    ParsedL4::Udp {
                        src_port: 40000,
                        dst_port: VIP_PORT,
                        ..
                    }
                ));
            }
            ref other => panic!("not ICMP: {other:?}"),
        }
        assert_eq!(node.drops(DROP_NO_SERVICE), before + 1);
    }
    // A short datagram (the reply is longer than the request: the frame
    // grows) is rejected the same way.
    let small = UdpPacket {
        ip: client_ip(),
        src_port: 40001,
        dst_port: VIP_PORT,
        payload: Vec::new(),
    }
    .build();
    let run = node.run(FROM, &small);
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert_eq!(
        run.out.len(),
        ETH_HLEN + IPV4_HLEN + 8 + IPV4_HLEN + UDP_HLEN
    );
    assert!(ipv4_checksum_ok(&run.out) && l4_checksum_ok(&run.out));
    assert_eq!(node.drops(DROP_NO_SERVICE), 3);
}

#[test]
fn non_ipv4_and_non_service_traffic_passes_unchanged() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[1]));

    let unchanged = |node: &mut Node, prog: &str, frame: &[u8], what: &str| {
        let run = node.run(prog, frame);
        assert_eq!(run.retval, TC_ACT_OK, "{what} through {prog}");
        assert_eq!(run.out, frame, "{what} through {prog} must not change");
    };

    let arp = ether_frame([0xff; 6], CLIENT_MAC, ETH_P_ARP, &[0x11; 28]);
    let ipv6 = ether_frame(HOST_MAC, CLIENT_MAC, ETH_P_IPV6, &[0x60; 60]);
    for prog in [FROM, TO] {
        unchanged(&mut node, prog, &arp, "ARP");
        unchanged(&mut node, prog, &ipv6, "IPv6");
    }

    // TCP to something that is no service: untouched, but tracked.
    let ext = TcpPacket {
        ip: Ipv4Endpoints {
            dst_ip: EXTERNAL,
            ..client_ip()
        },
        dst_port: 443,
        ..syn(46000)
    };
    unchanged(
        &mut node,
        FROM,
        &ext.build(),
        "TCP SYN to an external address",
    );
    // The service port on another address, and another port of the VIP.
    unchanged(
        &mut node,
        FROM,
        &TcpPacket {
            dst_port: 81,
            ..syn(46001)
        }
        .build(),
        "VIP:81",
    );
    let reply = TcpPacket {
        ip: to_client_ip(EXTERNAL),
        src_port: 443,
        dst_port: 46000,
        flags: tcp_flags::SYN | tcp_flags::ACK,
        ..TcpPacket::default()
    };
    unchanged(
        &mut node,
        TO,
        &reply.build(),
        "SYN-ACK from the external address",
    );
    let ct = node.ct_must(
        &ct_key(CLIENT, EXTERNAL, 46000, 443, IPPROTO_TCP, 0),
        "external",
    );
    assert_eq!((ct.tx_packets, ct.rx_packets, ct.rev_nat_index), (1, 1, 0));

    // UDP to no service.
    let udp = UdpPacket {
        ip: Ipv4Endpoints {
            dst_ip: EXTERNAL,
            ..client_ip()
        },
        src_port: 5353,
        dst_port: 53,
        payload: b"q".to_vec(),
    };
    unchanged(&mut node, FROM, &udp.build(), "UDP to an external address");
    assert!(
        node.ct(&ct_key(CLIENT, EXTERNAL, 5353, 53, IPPROTO_UDP, 0))
            .is_some()
    );

    // ICMP echo: tracked by identifier, replies counted.
    let ping = IcmpEchoPacket {
        ip: Ipv4Endpoints {
            dst_ip: EXTERNAL,
            ..client_ip()
        },
        ..IcmpEchoPacket::default()
    };
    unchanged(&mut node, FROM, &ping.build(), "ICMP echo request");
    let pong = IcmpEchoPacket {
        ip: to_client_ip(EXTERNAL),
        request: false,
        ..IcmpEchoPacket::default()
    };
    unchanged(&mut node, TO, &pong.build(), "ICMP echo reply");
    let ct = node.ct_must(
        &ct_key(CLIENT, EXTERNAL, 0x4242, 0, IPPROTO_ICMP, 0),
        "ICMP echo",
    );
    assert_eq!((ct.tx_packets, ct.rx_packets), (1, 1));

    // A remote client talking to the pod as a server: the entry is the
    // pod's ingress entry (TW_CT_F_INGRESS) of the remote's tuple, the
    // pod's answers are its replies.
    let remote = Ipv4Addr::new(10, 0, 3, 9);
    let incoming = TcpPacket {
        ip: to_client_ip(remote),
        src_port: 47000,
        dst_port: 8443,
        ..TcpPacket::default()
    };
    unchanged(&mut node, TO, &incoming.build(), "SYN to the pod");
    let answer = TcpPacket {
        ip: Ipv4Endpoints {
            dst_ip: remote,
            ..client_ip()
        },
        src_port: 8443,
        dst_port: 47000,
        flags: tcp_flags::SYN | tcp_flags::ACK,
        ..TcpPacket::default()
    };
    unchanged(&mut node, FROM, &answer.build(), "SYN-ACK from the pod");
    let ct = node.ct_must(
        &ct_key(remote, CLIENT, 47000, 8443, IPPROTO_TCP, TW_CT_F_INGRESS),
        "pod as server",
    );
    assert_eq!((ct.tx_packets, ct.rx_packets), (1, 1));
    assert_ne!(ct.state & TW_CT_S_SEEN_REPLY, 0);
    for flags in [0, TW_CT_F_INGRESS] {
        assert!(
            node.ct(&ct_key(CLIENT, remote, 8443, 47000, IPPROTO_TCP, flags))
                .is_none(),
            "no entry for the reply direction"
        );
    }
    assert!(
        node.ct(&ct_key(remote, CLIENT, 47000, 8443, IPPROTO_TCP, 0))
            .is_none(),
        "no egress entry for a connection the pod received"
    );

    // A later fragment of a protocol without ports needs nothing from its
    // first fragment: untouched, untracked, never looked up.
    let mut frag = client_tcp(48000, tcp_flags::ACK, &[1; 24]).build();
    frag[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&0x0003u16.to_be_bytes());
    frag[ETH_HLEN + 9] = IPPROTO_GRE;
    fix_ipv4_checksum(&mut frag);
    unchanged(&mut node, FROM, &frag, "later fragment of GRE");
    unchanged(&mut node, TO, &frag, "later fragment of GRE");
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "nothing was dropped"
    );
    assert!(
        node.maps.frag.keys().next().is_none(),
        "no fragment was tracked"
    );
}

/// A payload of `len` bytes, different for every `seed`.
fn big_payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// IPv4 fragments (tw_frag4): a UDP datagram larger than the MTU (a big
/// DNS answer, EDNS) reaches the backend whole, and so does its answer.
#[test]
fn fragmented_udp_to_a_clusterip_is_translated_in_every_fragment() {
    let mut node = Node::new();
    let dns = Ipv4Addr::new(10, 96, 0, 53);
    node.add_service(&Service {
        vip: dns,
        port: 53,
        proto: IPPROTO_UDP,
        ..Service::tcp(2, &[3])
    });
    node.add_service(&Service {
        vip: dns,
        port: 54,
        proto: IPPROTO_UDP,
        ..Service::tcp(4, &[])
    });

    // A 3000-byte query in three fragments: every one DNATed; the first
    // also gets the backend port, and its checksum (over the whole
    // datagram) the deltas of both; the others only the address and
    // their header checksums.
    let query = UdpPacket {
        ip: Ipv4Endpoints {
            dst_ip: dns,
            ..client_ip()
        },
        src_port: 33333,
        dst_port: 53,
        payload: big_payload(3000, 1),
    };
    let dnat = UdpPacket {
        ip: Ipv4Endpoints {
            dst_ip: backend_ip(3),
            ..query.ip
        },
        dst_port: BACKEND_PORT,
        ..query.clone()
    };
    let sent = fragments(&query.build(), 0x4321);
    assert_eq!(sent.len(), 3);
    let out = node.run_fragments("lxc", FROM, &sent, 0, TC_ACT_OK);
    assert_fragments(&out, &fragments(&dnat.build(), 0x4321));
    // The first fragment left its ports for the others, as it came.
    assert_eq!(
        node.frag(&frag_key(CLIENT, dns, 0x4321, IPPROTO_UDP)),
        Some(Frag4Entry {
            sport: be16(33333),
            dport: be16(53),
            flags: TW_FRAG_F_PORTS,
            l4_info: 0,
            pad: 0,
        })
    );
    // One flow, every fragment accounted in both entries.
    let bytes: u64 = sent.iter().map(|f| f.len() as u64).sum();
    let skey = ct_key(CLIENT, dns, 33333, 53, IPPROTO_UDP, TW_CT_F_SERVICE);
    let sct = node.ct_must(&skey, "SERVICE");
    assert_eq!(
        (sct.backend_id, sct.tx_packets, sct.tx_bytes),
        (3, 3, bytes)
    );
    let ckey = ct_key(CLIENT, backend_ip(3), 33333, BACKEND_PORT, IPPROTO_UDP, 0);
    let cct = node.ct_must(&ckey, "connection");
    assert_eq!(
        (cct.rev_nat_index, cct.tx_packets, cct.tx_bytes),
        (2, 3, bytes)
    );

    // The 4000-byte answer, fragmented on the backend's side: every
    // fragment reverse-NATed.
    let answer = UdpPacket {
        ip: to_client_ip(backend_ip(3)),
        src_port: BACKEND_PORT,
        dst_port: 33333,
        payload: big_payload(4000, 2),
    };
    let rev = UdpPacket {
        ip: to_client_ip(dns),
        src_port: 53,
        ..answer.clone()
    };
    let sent = fragments(&answer.build(), 0x8765);
    assert_eq!(sent.len(), 4);
    let out = node.run_fragments("lxc", TO, &sent, 0, TC_ACT_OK);
    assert_fragments(&out, &fragments(&rev.build(), 0x8765));
    assert_eq!(node.ct_must(&ckey, "connection").rx_packets, 4);
    assert_eq!(node.ct_must(&skey, "SERVICE").rx_packets, 4);
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "{:?}",
        node.maps.drop_counts()
    );

    // A later fragment whose first fragment never came (lost, or yet to
    // come): dropped and counted, both ways, and nothing is tracked.
    let lost = UdpPacket {
        src_port: 33334,
        ..query.clone()
    };
    let lost = fragments(&lost.build(), 0x1111);
    assert_eq!(node.run(FROM, &lost[1]).retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_FRAG_NOT_FOUND), 1);
    assert!(
        node.ct(&ct_key(
            CLIENT,
            dns,
            33334,
            53,
            IPPROTO_UDP,
            TW_CT_F_SERVICE
        ))
        .is_none()
    );
    let stray = UdpPacket {
        dst_port: 33335,
        ..answer.clone()
    };
    let stray = fragments(&stray.build(), 0x1112);
    assert_eq!(node.run(TO, &stray[2]).retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_FRAG_NOT_FOUND), 2);

    // Out of order: the last fragment before the first is dropped (as
    // Cilium does); once the first came, the rest take its way.
    let late = UdpPacket {
        src_port: 33336,
        ..query.clone()
    };
    let late = fragments(&late.build(), 0x2222);
    assert_eq!(node.run(FROM, &late[2]).retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_FRAG_NOT_FOUND), 3);
    let out = node.run_fragments("lxc", FROM, &late, 0, TC_ACT_OK);
    let expected = UdpPacket {
        src_port: 33336,
        ..dnat.clone()
    };
    assert_fragments(&out, &fragments(&expected.build(), 0x2222));

    // No backend: the first fragment is rejected (ICMP port unreachable
    // to the client); the later ones belong to no flow, and open none.
    let nobody = UdpPacket {
        dst_port: 54,
        ..query.clone()
    };
    let nobody = fragments(&nobody.build(), 0x3333);
    let run = node.run(FROM, &nobody[0]);
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert!(
        matches!(
            run.frame().l4,
            ParsedL4::Icmp {
                icmp_type: icmp_type::DEST_UNREACH,
                ..
            }
        ),
        "{:?}",
        run.frame().l4
    );
    for f in &nobody[1..] {
        assert_eq!(node.run(FROM, f).retval, TC_ACT_SHOT);
    }
    assert_eq!(node.drops(DROP_NO_SERVICE), 1);
    assert_eq!(node.drops(DROP_FRAG_NOT_FOUND), 5);

    // A whole datagram without DF (offset 0, MF clear) is no fragment.
    let small = |p: &UdpPacket| {
        let mut f = UdpPacket {
            src_port: 33337,
            payload: b"small".to_vec(),
            ..p.clone()
        }
        .build();
        f[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&[0, 0]);
        fix_ipv4_checksum(&mut f);
        f
    };
    let run = node.run(FROM, &small(&query));
    assert_eq!(run.retval, TC_ACT_OK);
    assert_eq!(run.out, small(&dnat));
    assert!(
        node.frag(&frag_key(CLIENT, dns, 0x1234, IPPROTO_UDP))
            .is_none(),
        "a whole datagram leaves no fragment entry"
    );
}

/// TCP segments and ICMP echoes too big for the path (a sender that did
/// not learn the MTU, a big ping): every fragment goes the first one's way.
#[test]
fn fragmented_tcp_and_icmp_echo_take_their_first_fragments_way() {
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[1]));
    assert_eq!(node.run(FROM, &syn(40000).build()).retval, TC_ACT_OK);
    let synack = backend_tcp(1, 40000, tcp_flags::SYN | tcp_flags::ACK, b"");
    assert_eq!(node.run(TO, &synack.build()).retval, TC_ACT_OK);

    // A 2500-byte segment to the VIP: DNATed in all three fragments, the
    // first with the backend port and the checksum of the whole segment.
    let data = client_tcp(
        40000,
        tcp_flags::PSH | tcp_flags::ACK,
        &big_payload(2500, 3),
    );
    let sent = fragments(&data.build(), 0x0101);
    assert_eq!(sent.len(), 3);
    let out = node.run_fragments("lxc", FROM, &sent, 0, TC_ACT_OK);
    let dnat = TcpPacket {
        ip: Ipv4Endpoints {
            dst_ip: backend_ip(1),
            ..client_ip()
        },
        dst_port: BACKEND_PORT,
        ..data.clone()
    };
    assert_fragments(&out, &fragments(&dnat.build(), 0x0101));
    let entry = node
        .frag(&frag_key(CLIENT, VIP, 0x0101, IPPROTO_TCP))
        .expect("the first fragment's entry");
    assert_eq!(
        (entry.sport, entry.dport, entry.flags, entry.l4_info),
        (
            be16(40000),
            be16(VIP_PORT),
            TW_FRAG_F_PORTS,
            tcp_flags::PSH | tcp_flags::ACK
        )
    );
    // And the answer, reverse-NATed in every fragment.
    let answer = backend_tcp(
        1,
        40000,
        tcp_flags::PSH | tcp_flags::ACK,
        &big_payload(2500, 4),
    );
    let out = node.run_fragments("lxc", TO, &fragments(&answer.build(), 0x0202), 0, TC_ACT_OK);
    let rev = TcpPacket {
        ip: to_client_ip(VIP),
        src_port: VIP_PORT,
        ..answer.clone()
    };
    assert_fragments(&out, &fragments(&rev.build(), 0x0202));
    let cct = node.ct_must(&conn_ct_key(CLIENT, 40000, 1, IPPROTO_TCP), "connection");
    assert_eq!((cct.tx_packets, cct.rx_packets), (1 + 3, 1 + 3));

    // A 3000-byte ping and its answer: one exchange in conntrack (by the
    // identifier the first fragments carry), the frames untouched.
    let ping = IcmpEchoPacket {
        ip: Ipv4Endpoints {
            dst_ip: EXTERNAL,
            ..client_ip()
        },
        payload: big_payload(3000, 5),
        ..IcmpEchoPacket::default()
    };
    let sent = fragments(&ping.build(), 0x0303);
    assert_eq!(node.run_fragments("lxc", FROM, &sent, 0, TC_ACT_OK), sent);
    assert_eq!(
        node.frag(&frag_key(CLIENT, EXTERNAL, 0x0303, IPPROTO_ICMP)),
        Some(Frag4Entry {
            sport: be16(0x4242),
            dport: 0,
            flags: TW_FRAG_F_ICMP_ECHO,
            l4_info: icmp_type::ECHO_REQUEST,
            pad: 0,
        })
    );
    let pong = IcmpEchoPacket {
        ip: to_client_ip(EXTERNAL),
        request: false,
        ..ping.clone()
    };
    let sent = fragments(&pong.build(), 0x0404);
    assert_eq!(node.run_fragments("lxc", TO, &sent, 0, TC_ACT_OK), sent);
    let ct = node.ct_must(
        &ct_key(CLIENT, EXTERNAL, 0x4242, 0, IPPROTO_ICMP, 0),
        "ICMP echo",
    );
    assert_eq!((ct.tx_packets, ct.rx_packets), (3, 3));
    assert!(
        node.maps.drop_counts().unwrap().is_empty(),
        "{:?}",
        node.maps.drop_counts()
    );
}

#[test]
fn malformed_ipv4_is_dropped_and_counted() {
    const DROP_INVALID: u8 = 134;
    const DROP_CT_INVALID_HDR: u8 = 135;
    let mut node = Node::new();
    node.add_service(&Service::tcp(1, &[1]));

    // IHL below 5.
    let mut bad_ihl = syn(40000).build();
    bad_ihl[ETH_HLEN] = 0x44;
    for (n, prog) in [FROM, TO].into_iter().enumerate() {
        assert_eq!(node.run(prog, &bad_ihl).retval, TC_ACT_SHOT, "{prog}");
        assert_eq!(node.drops(DROP_INVALID), n as u64 + 1);
    }

    // A TCP header cut short.
    let full = syn(40000).build();
    let cut = &full[..ETH_HLEN + IPV4_HLEN + 10];
    for (n, prog) in [FROM, TO].into_iter().enumerate() {
        assert_eq!(node.run(prog, cut).retval, TC_ACT_SHOT, "{prog}");
        assert_eq!(node.drops(DROP_CT_INVALID_HDR), n as u64 + 1);
    }
    assert!(
        node.ct(&svc_ct_key(CLIENT, 40000, IPPROTO_TCP, VIP_PORT))
            .is_none()
    );
}

/// The programs on a real veth: a pod (its own netns) reaches a service
/// whose backend is a socket of the "host" netns, gets TCP RST and ICMP
/// port unreachable from frontends without backends, all through the
/// kernel's real paths (CHECKSUM_PARTIAL skbs from the pod's stack, the
/// redirect back into the pod).
#[test]
fn attached_to_a_pod_veth_real_traffic() {
    use std::io::{ErrorKind, Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

    require_root();
    let host = common::TestNetns::create("host");
    let pod = common::TestNetns::create("pod");
    host.ip(&[
        "link",
        "add",
        "twh",
        "type",
        "veth",
        "peer",
        "name",
        "twp",
        "netns",
        pod.name(),
    ]);
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["addr", "add", "10.0.1.1/24", "dev", "twh"]);
    host.ip(&["addr", "add", &format!("{}/32", backend_ip(1)), "dev", "lo"]);
    host.ip(&["link", "set", "twh", "up"]);
    pod.ip(&["link", "set", "lo", "up"]);
    pod.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "twp"]);
    pod.ip(&["link", "set", "twp", "up"]);
    pod.ip(&["route", "add", "default", "via", "10.0.1.1"]);

    let pod_path = pod.path();
    let timeout = Some(Duration::from_secs(3));
    tollway_datapath::netns::run_in_netns(&host.path(), || {
        let mut node = Node::new();
        node.add_service(&Service::tcp(1, &[1]));
        node.add_service(&Service {
            port: 53,
            proto: IPPROTO_UDP,
            ..Service::tcp(2, &[1])
        });
        node.add_service(&Service {
            port: 81,
            ..Service::tcp(3, &[])
        });
        node.add_service(&Service {
            port: 54,
            proto: IPPROTO_UDP,
            ..Service::tcp(4, &[])
        });
        node.dp
            .attach_pod_interface("twh")
            .unwrap_or_else(|e| panic!("attach_pod_interface: {}", chain(&e)));

        let backend: SocketAddr = (backend_ip(1), BACKEND_PORT).into();
        let listener = TcpListener::bind(backend).unwrap();
        let udp_backend = UdpSocket::bind(backend).unwrap();
        udp_backend.set_read_timeout(timeout).unwrap();

        // TCP and UDP to the services with a backend (sockets keep the
        // namespace they were made in, so they are used from here on).
        let (mut stream, udp) = tollway_datapath::netns::run_in_netns(&pod_path, || {
            let stream =
                TcpStream::connect_timeout(&(VIP, VIP_PORT).into(), Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connect to the VIP: {e}"));
            stream.set_read_timeout(timeout).unwrap();
            (&stream).write_all(b"ping").unwrap();
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(timeout).unwrap();
            udp.connect((VIP, 53)).unwrap();
            udp.send(b"query").unwrap();
            (stream, udp)
        })
        .unwrap();

        let (mut conn, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), CLIENT, "the backend sees the pod's own address");
        let mut buf = [0u8; 16];
        conn.set_read_timeout(timeout).unwrap();
        conn.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"ping");
        conn.write_all(b"pong").unwrap();
        let (n, from) = udp_backend.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from.ip()),
            (&b"query"[..], std::net::IpAddr::V4(CLIENT))
        );
        udp_backend.send_to(b"answer", from).unwrap();

        // The replies reach the pod's sockets, which only accept them
        // from the frontend: reverse NAT worked.
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        let n = udp
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("UDP answer from the VIP: {e}"));
        assert_eq!(&buf[..n], b"answer");

        // No backend: refused at once, not a timeout.
        let refused = tollway_datapath::netns::run_in_netns(&pod_path, || {
            let started = std::time::Instant::now();
            let tcp = TcpStream::connect_timeout(&(VIP, 81).into(), Duration::from_secs(3))
                .map(|_| ())
                .map_err(|e| e.kind());
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(timeout).unwrap();
            udp.connect((VIP, 54)).unwrap();
            udp.send(b"query").unwrap();
            let mut b = [0u8; 8];
            let udp = udp.recv(&mut b).map(|_| ()).map_err(|e| e.kind());
            (tcp, udp, started.elapsed())
        })
        .unwrap();
        eprintln!("no-backend attempts: {refused:?}");
        assert_eq!(
            refused.0,
            Err(ErrorKind::ConnectionRefused),
            "TCP to a VIP without backends"
        );
        assert_eq!(
            refused.1,
            Err(ErrorKind::ConnectionRefused),
            "UDP to a VIP without backends"
        );
        assert!(
            refused.2 < Duration::from_secs(2),
            "rejects must be immediate"
        );
        assert!(node.drops(DROP_NO_SERVICE) >= 2);
        drop(conn);
    })
    .unwrap();
}

/// The programs on a real veth with datagrams larger than its MTU (1500):
/// the pod's stack fragments a 4000-byte query to a ClusterIP, the host's
/// stack fragments the backend's 4000-byte answer, and both arrive whole,
/// through tw_from_lxc and tw_to_lxc (the tc path: no socket LB here).
/// Untranslated later fragments would go to the VIP, which nothing
/// routes, and the reassembly of both datagrams would fail.
#[test]
fn attached_to_a_pod_veth_fragmented_udp_real_traffic() {
    use std::net::{SocketAddr, UdpSocket};

    require_root();
    let host = common::TestNetns::create("host");
    let pod = common::TestNetns::create("pod");
    host.ip(&[
        "link",
        "add",
        "twh",
        "type",
        "veth",
        "peer",
        "name",
        "twp",
        "netns",
        pod.name(),
    ]);
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["addr", "add", "10.0.1.1/24", "dev", "twh"]);
    host.ip(&["addr", "add", &format!("{}/32", backend_ip(1)), "dev", "lo"]);
    host.ip(&["link", "set", "twh", "up"]);
    pod.ip(&["link", "set", "lo", "up"]);
    pod.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "twp"]);
    pod.ip(&["link", "set", "twp", "up"]);
    pod.ip(&["route", "add", "default", "via", "10.0.1.1"]);
    let mtu = host.ip(&["-o", "link", "show", "twh"]);
    assert!(mtu.contains("mtu 1500"), "{mtu}");

    let pod_path = pod.path();
    let timeout = Some(Duration::from_secs(3));
    tollway_datapath::netns::run_in_netns(&host.path(), || {
        let mut node = Node::new();
        node.add_service(&Service {
            port: 53,
            proto: IPPROTO_UDP,
            ..Service::tcp(2, &[1])
        });
        node.dp
            .attach_pod_interface("twh")
            .unwrap_or_else(|e| panic!("attach_pod_interface: {}", chain(&e)));
        let backend: SocketAddr = (backend_ip(1), BACKEND_PORT).into();
        let server = UdpSocket::bind(backend).unwrap();
        server.set_read_timeout(timeout).unwrap();

        let query = big_payload(4000, 7);
        let answer = big_payload(4000, 8);
        let client = tollway_datapath::netns::run_in_netns(&pod_path, || {
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(timeout).unwrap();
            udp.connect((VIP, 53)).unwrap();
            assert_eq!(udp.send(&query).unwrap(), query.len());
            udp
        })
        .unwrap();

        let mut buf = vec![0u8; 8192];
        let (n, from) = server
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("the fragmented query at the backend: {e}"));
        assert_eq!(from.ip(), std::net::IpAddr::V4(CLIENT));
        assert!(buf[..n] == query[..], "the query arrived whole");
        server.send_to(&answer, from).unwrap();
        // The pod's socket is connected to the VIP: it takes the answer
        // only if every fragment came from there.
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("the fragmented answer from the VIP: {e}"));
        assert!(buf[..n] == answer[..], "the answer arrived whole");

        let port = client.local_addr().unwrap().port();
        let ct = node.ct_must(
            &ct_key(CLIENT, backend_ip(1), port, BACKEND_PORT, IPPROTO_UDP, 0),
            "the connection",
        );
        eprintln!("fragmented UDP through the pod's veth: connection entry {ct:?}");
        // 4008 bytes of UDP in fragments of at most 1480.
        assert_eq!((ct.tx_packets, ct.rx_packets), (3, 3));
        let tracked = node.maps.frag.keys().filter(Result::is_ok).count();
        assert_eq!(tracked, 2, "the query's and the answer's first fragments");
        assert!(
            node.maps.drop_counts().unwrap().is_empty(),
            "{:?}",
            node.maps.drop_counts()
        );
    })
    .unwrap();
}

/// Cilium's IPV4_LOOPBACK: the source the pod sees on a hairpin connection.
const LOOPBACK: Ipv4Addr = Ipv4Addr::new(169, 254, 42, 1);

/// A frontend at `VIP:port` whose only backend (id `id`) is the client pod
/// itself, at `BACKEND_PORT`.
fn add_self_service(node: &mut Node, id: u32, rev_nat: u16, proto: u8, port: u16) {
    let be = Lb4Backend {
        address: be32(CLIENT),
        port: be16(BACKEND_PORT),
        proto,
        flags: 0,
    };
    node.maps.backends.insert(id, be, 0).unwrap();
    let slot = Lb4Service {
        backend_id: id,
        ..Lb4Service::default()
    };
    node.maps
        .services
        .insert(lb_key(VIP, port, 1, proto, TW_LB_SCOPE_EXT), slot, 0)
        .unwrap();
    let master = Lb4Service {
        count: 1,
        rev_nat_index: rev_nat,
        flags: TW_SVC_F_CLUSTERIP,
        algorithm: TW_LB_ALG_RANDOM,
        ..Lb4Service::default()
    };
    node.maps
        .services
        .insert(lb_key(VIP, port, 0, proto, TW_LB_SCOPE_EXT), master, 0)
        .unwrap();
    let revnat = Lb4Revnat {
        address: be32(VIP),
        port: be16(port),
        pad: 0,
    };
    node.maps
        .revnat
        .insert(u32::from(rev_nat), revnat, 0)
        .unwrap();
}

/// Addressing of a packet the client pod sends (to its gateway's MAC).
fn from_pod(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac: CLIENT_MAC,
        dst_mac: HOST_MAC,
        src_ip: src,
        dst_ip: dst,
        ttl: 64,
    }
}

/// Addressing of a packet sent back into the client pod by tw_from_lxc
/// (the Ethernet addresses swapped, the TTL kept).
fn into_pod(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_mac: HOST_MAC,
        dst_mac: CLIENT_MAC,
        src_ip: src,
        dst_ip: dst,
        ttl: 64,
    }
}

/// Hairpin on the tc path: the client pod reaches a ClusterIP whose
/// backend is the pod itself. The first direction is DNATed to the pod and
/// SNATed to 169.254.42.1, then sent back into the pod (redirect, MACs
/// swapped); the pod's answer to 169.254.42.1 gets the pod as its
/// destination again and goes back in, and tw_to_lxc restores the
/// frontend as its source. The pod's ingress policy (default deny here)
/// does not judge its own hairpin connection, but does judge anything else
/// from 169.254.42.1. A flow to another service's backend is unchanged.
#[test]
fn hairpin_to_its_own_clusterip_is_snated_and_reverse_translated() {
    let mut node = Node::new();
    add_self_service(&mut node, 7, 1, IPPROTO_TCP, VIP_PORT);
    add_self_service(&mut node, 8, 2, IPPROTO_UDP, 53);
    node.add_service(&Service {
        port: 81,
        ..Service::tcp(3, &[1])
    });
    // The pod is a managed endpoint whose ingress is default deny; its
    // egress is open. The device of the test runs is loopback (ifindex 1).
    node.policy
        .ipcache_upsert(
            CLIENT,
            32,
            &IpcacheEntry {
                identity: 1000,
                node_ip: 0,
                flags: TW_IPC_F_ENDPOINT,
                pad: [0; 3],
            },
        )
        .unwrap();
    let ep = Endpoint {
        endpoint_id: 11,
        identity: 1000,
        ip: be32(CLIENT),
        flags: TW_EP_F_INGRESS_DEFAULT_DENY,
    };
    node.policy.endpoint_upsert(1, &ep).unwrap();

    let tcp = |ip: Ipv4Endpoints, sport: u16, dport: u16, flags: u8, payload: &[u8]| TcpPacket {
        ip,
        src_port: sport,
        dst_port: dport,
        seq: 1000,
        ack: if flags & tcp_flags::ACK != 0 { 5001 } else { 0 },
        flags,
        window: 1000,
        payload: payload.to_vec(),
    };

    // SYN to the ClusterIP: DNAT to the pod itself, SNAT to the loopback
    // address, back into the pod.
    let syn = tcp(from_pod(CLIENT, VIP), 40000, VIP_PORT, tcp_flags::SYN, b"");
    let run = node.run(FROM, &syn.build());
    assert_eq!(
        run.retval, TC_ACT_REDIRECT,
        "the hairpin SYN goes back into the pod"
    );
    let hairpinned = TcpPacket {
        ip: into_pod(LOOPBACK, CLIENT),
        dst_port: BACKEND_PORT,
        ..syn.clone()
    }
    .build();
    assert_translated(&run, &hairpinned);
    let sct = node.ct_must(&svc_ct_key(CLIENT, 40000, IPPROTO_TCP, VIP_PORT), "SERVICE");
    assert_eq!((sct.backend_id, sct.rev_nat_index), (7, 1));
    let ckey = ct_key(CLIENT, CLIENT, 40000, BACKEND_PORT, IPPROTO_TCP, 0);
    let cct = node.ct_must(&ckey, "the hairpin connection");
    assert_eq!(
        (cct.rev_nat_index, cct.tx_packets, cct.rx_packets),
        (1, 1, 0)
    );

    // On its way into the pod: the pod talking to itself, no ingress
    // policy (default deny would drop a stranger), no ingress entry.
    let run = node.run(TO, &run.out);
    assert_eq!(run.retval, TC_ACT_OK, "drops {:?}", node.maps.drop_counts());
    assert_eq!(
        run.out, hairpinned,
        "tw_to_lxc leaves the hairpin SYN as it is"
    );
    let ikey = ct_key(
        LOOPBACK,
        CLIENT,
        40000,
        BACKEND_PORT,
        IPPROTO_TCP,
        TW_CT_F_INGRESS,
    );
    assert!(node.ct(&ikey).is_none(), "no ingress entry for a hairpin");

    // The pod's SYN-ACK to the loopback address: back to the pod...
    let synack = tcp(
        from_pod(CLIENT, LOOPBACK),
        BACKEND_PORT,
        40000,
        tcp_flags::SYN | tcp_flags::ACK,
        b"",
    );
    let run = node.run(FROM, &synack.build());
    assert_eq!(
        run.retval, TC_ACT_REDIRECT,
        "the hairpin reply goes back into the pod"
    );
    let looped = TcpPacket {
        ip: into_pod(CLIENT, CLIENT),
        ..synack.clone()
    }
    .build();
    assert_translated(&run, &looped);
    // ... where its source becomes the frontend.
    let run = node.run(TO, &run.out);
    assert_eq!(run.retval, TC_ACT_OK);
    let restored = TcpPacket {
        ip: into_pod(VIP, CLIENT),
        src_port: VIP_PORT,
        ..synack.clone()
    }
    .build();
    assert_translated(&run, &restored);
    let cct = node.ct_must(&ckey, "the hairpin connection");
    assert_eq!((cct.tx_packets, cct.rx_packets), (1, 1));
    assert_ne!(cct.state & TW_CT_S_SEEN_REPLY, 0);
    let sct = node.ct_must(&svc_ct_key(CLIENT, 40000, IPPROTO_TCP, VIP_PORT), "SERVICE");
    assert_eq!((sct.tx_packets, sct.rx_packets), (1, 1));

    // Established data goes the same way.
    let data = tcp(
        from_pod(CLIENT, VIP),
        40000,
        VIP_PORT,
        tcp_flags::PSH | tcp_flags::ACK,
        b"ping",
    );
    let run = node.run(FROM, &data.build());
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    let expected = TcpPacket {
        ip: into_pod(LOOPBACK, CLIENT),
        dst_port: BACKEND_PORT,
        ..data.clone()
    }
    .build();
    assert_translated(&run, &expected);
    assert_eq!(node.run(TO, &run.out).retval, TC_ACT_OK);
    assert_eq!(node.drops(DROP_POLICY_DENIED), 0);

    // 169.254.42.1 without a hairpin connection behind it: the usual way.
    // Into the pod, the ingress policy judges (and drops) it; from the
    // pod, it is a new connection like any other, left untouched.
    let stranger = tcp(
        into_pod(LOOPBACK, CLIENT),
        40001,
        BACKEND_PORT,
        tcp_flags::SYN,
        b"",
    );
    assert_eq!(node.run(TO, &stranger.build()).retval, TC_ACT_SHOT);
    assert_eq!(node.drops(DROP_POLICY_DENIED), 1);
    let out = tcp(
        from_pod(CLIENT, LOOPBACK),
        BACKEND_PORT,
        40001,
        tcp_flags::SYN,
        b"",
    )
    .build();
    let run = node.run(FROM, &out);
    assert_eq!((run.retval, &run.out), (TC_ACT_OK, &out));

    // UDP: the query and its answer, the same way.
    let query = UdpPacket {
        ip: from_pod(CLIENT, VIP),
        src_port: 33333,
        dst_port: 53,
        payload: b"\x12\x34 a query".to_vec(),
    };
    let run = node.run(FROM, &query.build());
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    let hairpinned = UdpPacket {
        ip: into_pod(LOOPBACK, CLIENT),
        dst_port: BACKEND_PORT,
        ..query.clone()
    }
    .build();
    assert_translated(&run, &hairpinned);
    let run = node.run(TO, &run.out);
    assert_eq!((run.retval, &run.out), (TC_ACT_OK, &hairpinned));
    let answer = UdpPacket {
        ip: from_pod(CLIENT, LOOPBACK),
        src_port: BACKEND_PORT,
        dst_port: 33333,
        payload: b"\x12\x34 the answer".to_vec(),
    };
    let run = node.run(FROM, &answer.build());
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    let looped = UdpPacket {
        ip: into_pod(CLIENT, CLIENT),
        ..answer.clone()
    }
    .build();
    assert_translated(&run, &looped);
    let run = node.run(TO, &run.out);
    assert_eq!(run.retval, TC_ACT_OK);
    let restored = UdpPacket {
        ip: into_pod(VIP, CLIENT),
        src_port: 53,
        ..answer.clone()
    }
    .build();
    assert_translated(&run, &restored);
    let ukey = ct_key(CLIENT, CLIENT, 33333, BACKEND_PORT, IPPROTO_UDP, 0);
    let uct = node.ct_must(&ukey, "the UDP hairpin connection");
    assert_eq!(
        (uct.rev_nat_index, uct.tx_packets, uct.rx_packets),
        (2, 1, 1)
    );

    // Another service's backend: DNAT only, to the stack as ever.
    let other = tcp(from_pod(CLIENT, VIP), 40002, 81, tcp_flags::SYN, b"");
    let run = node.run(FROM, &other.build());
    assert_eq!(run.retval, TC_ACT_OK);
    let expected = TcpPacket {
        ip: from_pod(CLIENT, backend_ip(1)),
        dst_port: BACKEND_PORT,
        ..other.clone()
    }
    .build();
    assert_translated(&run, &expected);
    assert_eq!(
        node.drops(DROP_POLICY_DENIED),
        1,
        "{:?}",
        node.maps.drop_counts()
    );
}

/// Hairpin through the kernel's real paths: a pod whose address is the
/// only backend of a TCP and a UDP service reaches both from itself (no
/// socket LB: the tc path), sees 169.254.42.1 as its peer on the server
/// side and the frontend on the client side.
#[test]
fn attached_to_a_pod_veth_hairpin_real_traffic() {
    use std::io::{Read as _, Write as _};
    use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};

    require_root();
    let host = common::TestNetns::create("host");
    let pod = common::TestNetns::create("pod");
    host.ip(&[
        "link",
        "add",
        "twh",
        "type",
        "veth",
        "peer",
        "name",
        "twp",
        "netns",
        pod.name(),
    ]);
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["addr", "add", "10.0.1.1/24", "dev", "twh"]);
    host.ip(&["link", "set", "twh", "up"]);
    pod.ip(&["link", "set", "lo", "up"]);
    pod.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "twp"]);
    pod.ip(&["link", "set", "twp", "up"]);
    pod.ip(&["route", "add", "default", "via", "10.0.1.1"]);

    let pod_path = pod.path();
    let timeout = Some(Duration::from_secs(3));
    tollway_datapath::netns::run_in_netns(&host.path(), || {
        let mut node = Node::new();
        add_self_service(&mut node, 7, 1, IPPROTO_TCP, VIP_PORT);
        add_self_service(&mut node, 8, 2, IPPROTO_UDP, 53);
        node.dp
            .attach_pod_interface("twh")
            .unwrap_or_else(|e| panic!("attach_pod_interface: {}", chain(&e)));

        let (client_port, udp_port) = tollway_datapath::netns::run_in_netns(&pod_path, || {
            let listener = TcpListener::bind((CLIENT, BACKEND_PORT)).unwrap();
            let udp_server = UdpSocket::bind((CLIENT, BACKEND_PORT)).unwrap();
            udp_server.set_read_timeout(timeout).unwrap();

            let mut stream =
                TcpStream::connect_timeout(&(VIP, VIP_PORT).into(), Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connect to its own ClusterIP: {e}"));
            stream.set_read_timeout(timeout).unwrap();
            assert_eq!(stream.peer_addr().unwrap(), (VIP, VIP_PORT).into());
            stream.write_all(b"ping").unwrap();
            let (mut conn, peer) = listener.accept().unwrap();
            assert_eq!(
                peer.ip(),
                IpAddr::V4(LOOPBACK),
                "the server side sees the loopback address"
            );
            let mut buf = [0u8; 32];
            conn.set_read_timeout(timeout).unwrap();
            conn.read_exact(&mut buf[..4]).unwrap();
            assert_eq!(&buf[..4], b"ping");
            conn.write_all(b"pong").unwrap();
            stream.read_exact(&mut buf[..4]).unwrap();
            assert_eq!(&buf[..4], b"pong");

            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(timeout).unwrap();
            udp.connect((VIP, 53)).unwrap();
            udp.send(b"query").unwrap();
            let (n, from) = udp_server
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("the query at the pod's own server: {e}"));
            assert_eq!(
                (&buf[..n], from.ip()),
                (&b"query"[..], IpAddr::V4(LOOPBACK))
            );
            udp_server.send_to(b"answer", from).unwrap();
            // Connected to the VIP: taken only from there.
            let n = udp
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("the UDP answer from its own ClusterIP: {e}"));
            assert_eq!(&buf[..n], b"answer");
            (
                stream.local_addr().unwrap().port(),
                udp.local_addr().unwrap().port(),
            )
        })
        .unwrap();

        let tcp = node.ct_must(
            &ct_key(CLIENT, CLIENT, client_port, BACKEND_PORT, IPPROTO_TCP, 0),
            "the TCP hairpin connection",
        );
        let udp = node.ct_must(
            &ct_key(CLIENT, CLIENT, udp_port, BACKEND_PORT, IPPROTO_UDP, 0),
            "the UDP hairpin connection",
        );
        eprintln!("hairpin connection entries: TCP {tcp:?}, UDP {udp:?}");
        assert!(tcp.tx_packets >= 3 && tcp.rx_packets >= 2, "{tcp:?}");
        assert_eq!((udp.tx_packets, udp.rx_packets), (1, 1));
        assert!(
            node.maps.drop_counts().unwrap().is_empty(),
            "{:?}",
            node.maps.drop_counts()
        );
    })
    .unwrap();
}
