//! Root-only tests of identity-based policy in `bpf/progs/lxc.c` (and its
//! interplay with services and NodePort) with `BPF_PROG_TEST_RUN`.
//!
//! Endpoints are keyed by the ifindex of their host-side veth, so every
//! test runs in a throw-away network namespace with two veth pairs whose
//! host-side ends stand for the veths of pods A and B, and runs the programs with
//! `skb->ifindex` set to them (a `__sk_buff` context). Identities come from
//! the ipcache, policies are installed through `PolicyMaps`.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // shared with tests/lxc.rs, nodeport.rs and pass.rs
mod common;

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use common::lb::*;
use common::{TestNetns, chain, require_root};
use tollway_abi::{
    Config, Ct4Key, Endpoint, IpcacheEntry, Lb4Backend, Lb4Revnat, Lb4Service, PolicyEntry,
    PolicyKey, TW_BE_F_LOCAL, TW_CFG_F_NODEPORT, TW_CT_F_INGRESS, TW_CT_F_SERVICE,
    TW_EP_F_EGRESS_DEFAULT_DENY, TW_EP_F_INGRESS_DEFAULT_DENY, TW_EP_F_POLICY, TW_ID_ANY,
    TW_ID_CIDR_FIRST, TW_ID_HOST, TW_ID_REMOTE_NODE, TW_ID_WORLD, TW_IPC_F_CIDR, TW_IPC_F_ENDPOINT,
    TW_IPC_F_NODE, TW_LB_ALG_RANDOM, TW_LB_SCOPE_EXT, TW_POL_EGRESS, TW_POL_F_DENY, TW_POL_INGRESS,
    TW_SVC_F_CLUSTERIP, TW_SVC_F_NODEPORT, be16, be32,
};
use tollway_datapath::{
    lb::{PolicyMaps, PolicyTable},
    netns::run_in_netns,
    testutil::{
        ETH_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IcmpEchoPacket, Ipv4Endpoints, TcpPacket,
        UdpPacket, fix_ipv4_checksum, icmp_type, tcp_flags,
    },
    verdict::{TC_ACT_OK, TC_ACT_SHOT},
};

const DROP_POLICY_DENIED: u8 = 133;
const DROP_FRAG_NOT_FOUND: u8 = 175;
const DROP_POLICY_DENY: u8 = 181;

const FROM: &str = "tw_from_lxc";
const TO: &str = "tw_to_lxc";

/// Pods A and B on this node, a pod on another node.
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 6);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 7);
const ID_A: u32 = 1000;
const ID_B: u32 = 2000;
const ID_REMOTE: u32 = 3000;
const EP_A: u32 = 11;
const EP_B: u32 = 12;
/// This node and another one.
const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const OTHER_NODE: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);
/// A policy CIDR (192.0.2.0/24) and an address in it.
const CIDR_NET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 0);
const IN_CIDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const ID_CIDR: u32 = TW_ID_CIDR_FIRST + 1;
/// Not in the ipcache: the world.
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);

/// A node datapath in a network namespace whose veths `lxca` and `lxcb`
/// stand for the host-side veths of pods A and B.
struct Lab {
    node: Node,
    a: u32,
    b: u32,
}

/// Runs `f` on a lab (root only: fails otherwise), inside its namespace.
fn with_lab(tag: &str, f: impl FnOnce(&mut Lab) + Send) {
    require_root();
    let ns = TestNetns::create(tag);
    for (dev, peer) in [("lxca", "poda"), ("lxcb", "podb")] {
        ns.ip(&["link", "add", dev, "type", "veth", "peer", "name", peer]);
    }
    run_in_netns(&ns.path(), || {
        let index = |dev| {
            nix::net::if_::if_nametoindex(dev).unwrap_or_else(|e| panic!("ifindex of {dev}: {e}"))
        };
        let mut lab = Lab {
            node: Node::load(&format!("pol-{tag}"), "lxc"),
            a: index("lxca"),
            b: index("lxcb"),
        };
        assert!(lab.a > 1 && lab.b > 1 && lab.a != lab.b);
        lab.fill_ipcache();
        f(&mut lab);
    })
    .unwrap_or_else(|e| panic!("run_in_netns: {}", chain(&e)));
}

fn ipc(identity: u32, flags: u8, node_ip: Ipv4Addr) -> IpcacheEntry {
    IpcacheEntry {
        identity,
        node_ip: be32(node_ip),
        flags,
        pad: [0; 3],
    }
}

/// A key with the prefix length the match needs: any protocol (40), a
/// protocol and any port (48), a protocol and a port (64).
fn key(identity: u32, dir: u8, proto: u8, port: Option<u16>) -> PolicyKey {
    let (prefixlen, port) = match (proto, port) {
        (0, _) => (40, 0),
        (_, None) => (48, 0),
        (_, Some(p)) => (64, p),
    };
    PolicyKey {
        prefixlen,
        identity,
        egress: dir,
        proto,
        dport: be16(port),
    }
}

/// The fewest prefixes that cover the ports lo..=hi.
fn port_range(identity: u32, dir: u8, proto: u8, lo: u16, hi: u16) -> Vec<PolicyKey> {
    let (mut start, end) = (u32::from(lo), u32::from(hi));
    let mut out = Vec::new();
    while start <= end {
        let mut k = 0;
        while k < 16 && start % (1 << (k + 1)) == 0 && start + (1 << (k + 1)) - 1 <= end {
            k += 1;
        }
        out.push(PolicyKey {
            prefixlen: 48 + 16 - k,
            identity,
            egress: dir,
            proto,
            dport: be16(u16::try_from(start).unwrap()),
        });
        start += 1 << k;
    }
    out
}

fn allow(rule_id: u32) -> PolicyEntry {
    PolicyEntry {
        rule_id,
        ..PolicyEntry::default()
    }
}

fn deny(rule_id: u32) -> PolicyEntry {
    PolicyEntry {
        flags: TW_POL_F_DENY,
        rule_id,
        ..PolicyEntry::default()
    }
}

fn addrs(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Endpoints {
    Ipv4Endpoints {
        src_ip: src,
        dst_ip: dst,
        ..Ipv4Endpoints::default()
    }
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    TcpPacket {
        ip: addrs(src, dst),
        src_port: sport,
        dst_port: dport,
        seq: 1000,
        ack: if flags & tcp_flags::ACK != 0 { 5000 } else { 0 },
        flags,
        ..TcpPacket::default()
    }
    .build()
}

fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    tcp(src, sport, dst, dport, tcp_flags::SYN)
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    UdpPacket {
        ip: addrs(src, dst),
        src_port: sport,
        dst_port: dport,
        payload: b"datagram".to_vec(),
    }
    .build()
}

fn ping(src: Ipv4Addr, dst: Ipv4Addr, request: bool) -> Vec<u8> {
    IcmpEchoPacket {
        ip: addrs(src, dst),
        request,
        ..IcmpEchoPacket::default()
    }
    .build()
}

fn conn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Ct4Key {
    ct_key(src, dst, sport, dport, IPPROTO_TCP, flags)
}

impl Lab {
    /// The ipcache of the tests: both local pods, a remote pod, the two
    /// nodes and one CIDR.
    fn fill_ipcache(&mut self) {
        let p = &mut self.node.policy;
        for (addr, plen, entry) in [
            (POD_A, 32, ipc(ID_A, TW_IPC_F_ENDPOINT, NODE_IP)),
            (POD_B, 32, ipc(ID_B, TW_IPC_F_ENDPOINT, NODE_IP)),
            (
                REMOTE_POD,
                32,
                ipc(ID_REMOTE, TW_IPC_F_ENDPOINT, OTHER_NODE),
            ),
            (
                NODE_IP,
                32,
                ipc(TW_ID_HOST, TW_IPC_F_NODE, Ipv4Addr::UNSPECIFIED),
            ),
            (
                OTHER_NODE,
                32,
                ipc(TW_ID_REMOTE_NODE, TW_IPC_F_NODE, Ipv4Addr::UNSPECIFIED),
            ),
            (
                CIDR_NET,
                24,
                ipc(ID_CIDR, TW_IPC_F_CIDR, Ipv4Addr::UNSPECIFIED),
            ),
        ] {
            p.ipcache_upsert(addr, plen, &entry)
                .unwrap_or_else(|e| panic!("ipcache_upsert: {}", chain(&e)));
        }
    }

    /// Makes the pod behind `ifindex` a managed endpoint with `flags`
    /// (default-deny bits) and, if `rules` is not empty, a policy.
    fn manage(
        &mut self,
        ifindex: u32,
        (id, identity, ip): (u32, u32, Ipv4Addr),
        flags: u32,
        rules: &[(PolicyKey, PolicyEntry)],
    ) {
        let mut flags = flags;
        if !rules.is_empty() {
            // As the agent writes them: `l4` says the key names a protocol.
            let rules: Vec<_> = rules
                .iter()
                .map(|(k, e)| {
                    let mut e = *e;
                    e.l4 = u8::from(k.proto != 0);
                    (*k, e)
                })
                .collect();
            self.node
                .policy
                .set_policy(id, &rules)
                .unwrap_or_else(|e| panic!("set_policy: {}", chain(&e)));
            flags |= TW_EP_F_POLICY;
        }
        let ep = Endpoint {
            endpoint_id: id,
            identity,
            ip: be32(ip),
            flags,
        };
        self.node.policy.endpoint_upsert(ifindex, &ep).unwrap();
    }

    fn run(&self, program: &str, ifindex: u32, frame: &[u8]) -> u32 {
        self.node.run_on("lxc", program, frame, ifindex).retval
    }

    /// The packet must pass through `program` untouched.
    fn pass(&self, program: &str, ifindex: u32, frame: &[u8], what: &str) {
        let run = self.node.run_on("lxc", program, frame, ifindex);
        assert_eq!(
            run.retval,
            TC_ACT_OK,
            "{what}: must pass {program} (drops {:?})",
            self.node.maps.drop_counts()
        );
        assert_eq!(run.out, frame, "{what}: must pass {program} untouched");
    }

    /// The packet must be dropped by `program`, counted as `reason`.
    fn dropped(&self, program: &str, ifindex: u32, frame: &[u8], reason: u8, what: &str) {
        let before = self.node.drops(reason);
        assert_eq!(
            self.run(program, ifindex, frame),
            TC_ACT_SHOT,
            "{what}: must be dropped by {program}"
        );
        assert_eq!(
            self.node.drops(reason),
            before + 1,
            "{what}: one drop counted as reason {reason} (all: {:?})",
            self.node.maps.drop_counts()
        );
    }

    /// (packets, bytes) of an endpoint's policy entry.
    fn hits(&self, id: u32, key: &PolicyKey) -> (u64, u64) {
        let entries = self.node.policy.policy_entries(id).unwrap();
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, e)| (e.packets, e.bytes))
            .unwrap_or_else(|| panic!("no entry {key:?} in the policy of {id}: {entries:?}"))
    }

    fn add_service(&mut self, svc: &Svc) {
        let be = Lb4Backend {
            address: be32(svc.backend),
            port: be16(svc.backend_port),
            proto: svc.proto,
            flags: svc.backend_flags,
        };
        let maps = &mut self.node.maps;
        maps.backends.insert(svc.backend_id, be, 0).unwrap();
        let slot = Lb4Service {
            backend_id: svc.backend_id,
            ..Lb4Service::default()
        };
        maps.services
            .insert(
                lb_key(svc.vip, svc.port, 1, svc.proto, TW_LB_SCOPE_EXT),
                slot,
                0,
            )
            .unwrap();
        let master = Lb4Service {
            backend_id: 0,
            count: 1,
            rev_nat_index: svc.rev_nat,
            flags: svc.flags,
            algorithm: TW_LB_ALG_RANDOM,
            pad: 0,
            affinity_timeout: 0,
        };
        maps.services
            .insert(
                lb_key(svc.vip, svc.port, 0, svc.proto, TW_LB_SCOPE_EXT),
                master,
                0,
            )
            .unwrap();
        let revnat = Lb4Revnat {
            address: be32(svc.vip),
            port: be16(svc.port),
            pad: 0,
        };
        maps.revnat
            .insert(u32::from(svc.rev_nat), revnat, 0)
            .unwrap();
    }
}

/// A one-backend service.
struct Svc {
    vip: Ipv4Addr,
    port: u16,
    proto: u8,
    rev_nat: u16,
    flags: u16,
    backend_id: u32,
    backend: Ipv4Addr,
    backend_port: u16,
    backend_flags: u8,
}

fn a() -> (u32, u32, Ipv4Addr) {
    (EP_A, ID_A, POD_A)
}

fn b() -> (u32, u32, Ipv4Addr) {
    (EP_B, ID_B, POD_B)
}

#[test]
fn egress_allow_by_identity_and_port_else_default_deny() {
    with_lab("egress", |lab| {
        let rule = key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(8080));
        lab.manage(lab.a, a(), TW_EP_F_EGRESS_DEFAULT_DENY, &[(rule, allow(1))]);

        // Allowed: B's identity, TCP 8080. The connection is tracked in an
        // egress entry, and the rule counts the packet.
        let first = syn(POD_A, 40000, POD_B, 8080);
        lab.pass(FROM, lab.a, &first, "A -> B:8080");
        let ct = lab
            .node
            .ct_must(&conn(POD_A, 40000, POD_B, 8080, 0), "A's egress entry");
        assert_eq!((ct.tx_packets, ct.rx_packets), (1, 0));
        assert_eq!(lab.hits(EP_A, &rule), (1, first.len() as u64));

        // Its retransmission and the rest of the connection are
        // established: no second verdict.
        lab.pass(FROM, lab.a, &first, "retransmitted SYN");
        lab.pass(
            FROM,
            lab.a,
            &tcp(POD_A, 40000, POD_B, 8080, tcp_flags::ACK),
            "ACK",
        );
        assert_eq!(lab.hits(EP_A, &rule), (1, first.len() as u64));

        // A second connection: a second hit.
        let second = syn(POD_A, 40001, POD_B, 8080);
        lab.pass(FROM, lab.a, &second, "A -> B:8080 again");
        assert_eq!(
            lab.hits(EP_A, &rule),
            (2, (first.len() + second.len()) as u64)
        );

        // Everything else hits the default: denied, counted, untracked.
        for (frame, what) in [
            (syn(POD_A, 40002, POD_B, 8081), "another port"),
            (syn(POD_A, 40003, REMOTE_POD, 8080), "another identity"),
            (syn(POD_A, 40004, EXTERNAL, 8080), "the world"),
            (udp(POD_A, 40005, POD_B, 8080), "UDP to a TCP port"),
            (ping(POD_A, POD_B, true), "ICMP echo to a TCP rule"),
            (
                tcp(POD_A, 40006, POD_B, 8081, tcp_flags::ACK),
                "mid-stream TCP of no known connection",
            ),
        ] {
            lab.dropped(FROM, lab.a, &frame, DROP_POLICY_DENIED, what);
        }
        assert!(
            lab.node.ct(&conn(POD_A, 40002, POD_B, 8081, 0)).is_none(),
            "a denied connection leaves no conntrack entry"
        );
        assert_eq!(lab.hits(EP_A, &rule).0, 2);

        // A pod that is no endpoint (B's veth has no entry yet, nor has
        // loopback): everything passes.
        lab.pass(FROM, lab.b, &syn(POD_B, 40007, EXTERNAL, 1), "unmanaged B");
        lab.pass(
            FROM,
            0,
            &syn(POD_B, 40008, EXTERNAL, 2),
            "unmanaged loopback",
        );
        assert_eq!(lab.node.drops(DROP_POLICY_DENY), 0);
        eprintln!(
            "verifier: tw_from_lxc walked {:?} instructions, tw_to_lxc {:?}",
            lab.node.verified_insns("lxc", FROM),
            lab.node.verified_insns("lxc", TO)
        );
    });
}

#[test]
fn deny_beats_allow_for_the_identity_and_for_any() {
    with_lab("deny", |lab| {
        let allow_b_8080 = key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(8080));
        let deny_any_8080 = key(TW_ID_ANY, TW_POL_EGRESS, IPPROTO_TCP, Some(8080));
        let allow_any_9090 = key(TW_ID_ANY, TW_POL_EGRESS, IPPROTO_TCP, Some(9090));
        let deny_b_9090 = key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(9090));
        // Not default-deny: only the denies drop.
        lab.manage(
            lab.a,
            a(),
            0,
            &[
                (allow_b_8080, allow(1)),
                (deny_any_8080, deny(2)),
                (allow_any_9090, allow(3)),
                (deny_b_9090, deny(4)),
            ],
        );

        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 41000, POD_B, 8080),
            DROP_POLICY_DENY,
            "allowed for B, denied for any",
        );
        assert_eq!(lab.hits(EP_A, &deny_any_8080).0, 1, "the deny decided");
        assert_eq!(lab.hits(EP_A, &allow_b_8080).0, 0);
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 41001, POD_B, 9090),
            DROP_POLICY_DENY,
            "allowed for any, denied for B",
        );
        assert_eq!(lab.hits(EP_A, &deny_b_9090).0, 1);
        assert_eq!(lab.hits(EP_A, &allow_any_9090).0, 0);
        // The same port for another identity: only the ANY allow matches.
        lab.pass(
            FROM,
            lab.a,
            &syn(POD_A, 41002, REMOTE_POD, 9090),
            "9090 to another identity",
        );
        assert_eq!(lab.hits(EP_A, &allow_any_9090).0, 1);
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 41003, REMOTE_POD, 8080),
            DROP_POLICY_DENY,
            "8080 to another identity",
        );
        // No rule, no default-deny: allowed.
        lab.pass(
            FROM,
            lab.a,
            &syn(POD_A, 41004, POD_B, 7000),
            "a port without rules",
        );
        assert_eq!(lab.node.drops(DROP_POLICY_DENIED), 0);
    });
}

#[test]
fn port_ranges_and_protocols() {
    with_lab("ranges", |lab| {
        let range = port_range(ID_B, TW_POL_EGRESS, IPPROTO_TCP, 8000, 8099);
        assert!(
            range.len() > 1,
            "8000-8099 takes several prefixes: {range:?}"
        );
        let mut rules: Vec<_> = range.iter().map(|k| (*k, allow(1))).collect();
        // UDP, any port, to the remote pod; anything to the CIDR.
        rules.push((key(ID_REMOTE, TW_POL_EGRESS, IPPROTO_UDP, None), allow(2)));
        rules.push((key(ID_CIDR, TW_POL_EGRESS, 0, None), allow(3)));
        lab.manage(lab.a, a(), TW_EP_F_EGRESS_DEFAULT_DENY, &rules);
        // What the kernel holds is what was written.
        let mut got: Vec<PolicyKey> = lab
            .node
            .policy
            .policy_entries(EP_A)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut want: Vec<PolicyKey> = rules.iter().map(|(k, _)| *k).collect();
        got.sort_by_key(|k| (k.identity, k.proto, k.prefixlen, k.dport));
        want.sort_by_key(|k| (k.identity, k.proto, k.prefixlen, k.dport));
        assert_eq!(got, want);

        let mut sport = 42000;
        let mut next = || {
            sport += 1;
            sport
        };
        for port in [8000, 8001, 8063, 8064, 8095, 8096, 8099] {
            lab.pass(
                FROM,
                lab.a,
                &syn(POD_A, next(), POD_B, port),
                &format!("TCP {port}, in the range"),
            );
        }
        for port in [7999, 8100, 8128, 80, 65535] {
            lab.dropped(
                FROM,
                lab.a,
                &syn(POD_A, next(), POD_B, port),
                DROP_POLICY_DENIED,
                &format!("TCP {port}, out of the range"),
            );
        }
        lab.dropped(
            FROM,
            lab.a,
            &udp(POD_A, next(), POD_B, 8050),
            DROP_POLICY_DENIED,
            "UDP in the TCP range",
        );
        lab.dropped(
            FROM,
            lab.a,
            &ping(POD_A, POD_B, true),
            DROP_POLICY_DENIED,
            "ICMP to a TCP-only peer",
        );
        // UDP-only, any port.
        lab.pass(
            FROM,
            lab.a,
            &udp(POD_A, next(), REMOTE_POD, 53),
            "UDP 53 to the remote pod",
        );
        lab.pass(
            FROM,
            lab.a,
            &udp(POD_A, next(), REMOTE_POD, 65000),
            "UDP 65000 to the remote pod",
        );
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, next(), REMOTE_POD, 53),
            DROP_POLICY_DENIED,
            "TCP to a UDP-only peer",
        );
        lab.dropped(
            FROM,
            lab.a,
            &ping(POD_A, REMOTE_POD, true),
            DROP_POLICY_DENIED,
            "ICMP to a UDP-only peer",
        );
        // Any protocol: TCP, UDP and ICMP echo (proto ICMP, port 0).
        lab.pass(
            FROM,
            lab.a,
            &syn(POD_A, next(), IN_CIDR, 1234),
            "TCP to the CIDR",
        );
        lab.pass(
            FROM,
            lab.a,
            &udp(POD_A, next(), IN_CIDR, 4321),
            "UDP to the CIDR",
        );
        lab.pass(FROM, lab.a, &ping(POD_A, IN_CIDR, true), "ping to the CIDR");
        assert_eq!(
            lab.hits(EP_A, &key(ID_CIDR, TW_POL_EGRESS, 0, None)).0,
            3,
            "the any-protocol rule counted all three"
        );

        // Protocols conntrack does not know (GRE here) are judged packet by
        // packet, with port 0: only the any-protocol rule covers them.
        let gre = |dst| {
            let mut f = udp(POD_A, 1, dst, 1);
            f[ETH_HLEN + 9] = 47;
            fix_ipv4_checksum(&mut f);
            f
        };
        lab.pass(FROM, lab.a, &gre(IN_CIDR), "GRE to the CIDR");
        lab.pass(FROM, lab.a, &gre(IN_CIDR), "GRE to the CIDR, again");
        lab.dropped(
            FROM,
            lab.a,
            &gre(REMOTE_POD),
            DROP_POLICY_DENIED,
            "GRE to a UDP-only peer",
        );
        assert_eq!(lab.hits(EP_A, &key(ID_CIDR, TW_POL_EGRESS, 0, None)).0, 5);
    });
}

#[test]
fn ingress_peer_identity_comes_from_the_ipcache() {
    with_lab("ingress", |lab| {
        let from_a = key(ID_A, TW_POL_INGRESS, IPPROTO_TCP, Some(8080));
        let from_cidr = key(ID_CIDR, TW_POL_INGRESS, IPPROTO_TCP, Some(8080));
        let from_world = key(TW_ID_WORLD, TW_POL_INGRESS, IPPROTO_TCP, Some(9000));
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY,
            &[
                (from_a, allow(1)),
                (from_cidr, allow(2)),
                (from_world, allow(3)),
            ],
        );

        // A pod (/32 entry).
        let frame = syn(POD_A, 43000, POD_B, 8080);
        lab.pass(TO, lab.b, &frame, "pod A -> B:8080");
        let ct = lab.node.ct_must(
            &conn(POD_A, 43000, POD_B, 8080, TW_CT_F_INGRESS),
            "B's ingress entry",
        );
        assert_eq!((ct.tx_packets, ct.rx_packets), (1, 0));
        assert!(
            lab.node.ct(&conn(POD_A, 43000, POD_B, 8080, 0)).is_none(),
            "tw_to_lxc makes no egress entry"
        );
        assert_eq!(lab.hits(EP_B, &from_a), (1, frame.len() as u64));
        // A CIDR (the /24 is the longest match of the address).
        lab.pass(
            TO,
            lab.b,
            &syn(IN_CIDR, 43001, POD_B, 8080),
            "CIDR -> B:8080",
        );
        assert_eq!(lab.hits(EP_B, &from_cidr).0, 1);
        // A miss: the world, allowed on 9000 only.
        lab.pass(
            TO,
            lab.b,
            &syn(EXTERNAL, 43002, POD_B, 9000),
            "world -> B:9000",
        );
        assert_eq!(lab.hits(EP_B, &from_world).0, 1);
        for (frame, what) in [
            (syn(EXTERNAL, 43003, POD_B, 8080), "world -> B:8080"),
            (syn(REMOTE_POD, 43004, POD_B, 8080), "remote pod -> B:8080"),
            (syn(IN_CIDR, 43005, POD_B, 9000), "CIDR -> B:9000"),
            (syn(POD_A, 43006, POD_B, 8081), "pod A -> B:8081"),
            (udp(POD_A, 43007, POD_B, 8080), "UDP pod A -> B:8080"),
        ] {
            lab.dropped(TO, lab.b, &frame, DROP_POLICY_DENIED, what);
        }
        assert!(
            lab.node
                .ct(&conn(EXTERNAL, 43003, POD_B, 8080, TW_CT_F_INGRESS))
                .is_none()
        );

        // The identity follows the ipcache: the remote pod gets A's
        // identity, the CIDR entry goes (its address is the world now).
        let p = &mut lab.node.policy;
        p.ipcache_upsert(REMOTE_POD, 32, &ipc(ID_A, TW_IPC_F_ENDPOINT, OTHER_NODE))
            .unwrap();
        assert!(p.ipcache_delete(CIDR_NET, 24).unwrap());
        assert!(!p.ipcache_delete(CIDR_NET, 24).unwrap(), "already gone");
        assert_eq!(p.ipcache_lookup(IN_CIDR).unwrap(), None);
        assert_eq!(
            p.ipcache_lookup(REMOTE_POD).unwrap().unwrap().identity,
            ID_A
        );
        let listed: BTreeSet<(Ipv4Addr, u8, u32)> = p
            .ipcache_entries()
            .unwrap()
            .into_iter()
            .map(|(a, l, e)| (a, l, e.identity))
            .collect();
        assert_eq!(
            listed,
            BTreeSet::from([
                (POD_A, 32, ID_A),
                (POD_B, 32, ID_B),
                (REMOTE_POD, 32, ID_A),
                (NODE_IP, 32, TW_ID_HOST),
                (OTHER_NODE, 32, TW_ID_REMOTE_NODE),
            ])
        );
        lab.pass(
            TO,
            lab.b,
            &syn(REMOTE_POD, 43008, POD_B, 8080),
            "remote pod with A's identity",
        );
        lab.dropped(
            TO,
            lab.b,
            &syn(IN_CIDR, 43009, POD_B, 8080),
            DROP_POLICY_DENIED,
            "former CIDR address",
        );
        lab.pass(
            TO,
            lab.b,
            &syn(IN_CIDR, 43010, POD_B, 9000),
            "former CIDR address is the world",
        );
    });
}

#[test]
fn replies_pass_even_where_the_reverse_direction_is_default_deny() {
    with_lab("replies", |lab| {
        // A: egress to the world on 443 allowed, ingress default-deny.
        lab.manage(
            lab.a,
            a(),
            TW_EP_F_INGRESS_DEFAULT_DENY | TW_EP_F_EGRESS_DEFAULT_DENY,
            &[
                (
                    key(TW_ID_WORLD, TW_POL_EGRESS, IPPROTO_TCP, Some(443)),
                    allow(1),
                ),
                (
                    key(TW_ID_WORLD, TW_POL_EGRESS, IPPROTO_UDP, Some(53)),
                    allow(2),
                ),
                (
                    key(TW_ID_WORLD, TW_POL_EGRESS, IPPROTO_ICMP, None),
                    allow(3),
                ),
            ],
        );
        lab.pass(FROM, lab.a, &syn(POD_A, 44000, EXTERNAL, 443), "A's SYN");
        for (flags, what) in [
            (tcp_flags::SYN | tcp_flags::ACK, "SYN-ACK to A"),
            (tcp_flags::ACK | tcp_flags::PSH, "data to A"),
            (tcp_flags::FIN | tcp_flags::ACK, "FIN to A"),
        ] {
            lab.pass(TO, lab.a, &tcp(EXTERNAL, 443, POD_A, 44000, flags), what);
        }
        lab.pass(FROM, lab.a, &udp(POD_A, 44001, EXTERNAL, 53), "A's query");
        lab.pass(TO, lab.a, &udp(EXTERNAL, 53, POD_A, 44001), "the answer");
        // ICMP by protocol (prefix 48: any "port", and echo has port 0).
        lab.pass(FROM, lab.a, &ping(POD_A, EXTERNAL, true), "A's ping");
        lab.pass(TO, lab.a, &ping(EXTERNAL, POD_A, false), "the pong");
        let ct = lab
            .node
            .ct_must(&conn(POD_A, 44000, EXTERNAL, 443, 0), "A's connection");
        assert_eq!((ct.tx_packets, ct.rx_packets), (1, 3));
        // What is no reply is judged, and A's ingress is default-deny.
        lab.dropped(
            TO,
            lab.a,
            &syn(EXTERNAL, 443, POD_A, 44099),
            DROP_POLICY_DENIED,
            "a new connection to A",
        );
        // An echo request with the identifier of A's own ping is no reply
        // of it: ICMP keys are the same both ways, the type tells.
        lab.dropped(
            TO,
            lab.a,
            &ping(EXTERNAL, POD_A, true),
            DROP_POLICY_DENIED,
            "a ping to A",
        );

        // B: ingress from the world on 80 (and any ICMP) allowed, egress
        // default-deny.
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY | TW_EP_F_EGRESS_DEFAULT_DENY,
            &[
                (
                    key(TW_ID_WORLD, TW_POL_INGRESS, IPPROTO_TCP, Some(80)),
                    allow(1),
                ),
                (key(TW_ID_WORLD, TW_POL_INGRESS, 0, None), allow(2)),
            ],
        );
        lab.pass(TO, lab.b, &syn(EXTERNAL, 45000, POD_B, 80), "SYN to B");
        lab.pass(
            FROM,
            lab.b,
            &tcp(POD_B, 80, EXTERNAL, 45000, tcp_flags::SYN | tcp_flags::ACK),
            "B's SYN-ACK",
        );
        lab.pass(
            TO,
            lab.b,
            &tcp(EXTERNAL, 45000, POD_B, 80, tcp_flags::ACK),
            "the client's ACK",
        );
        lab.pass(
            FROM,
            lab.b,
            &tcp(POD_B, 80, EXTERNAL, 45000, tcp_flags::ACK | tcp_flags::PSH),
            "B's data",
        );
        lab.pass(
            TO,
            lab.b,
            &udp(EXTERNAL, 45001, POD_B, 5000),
            "datagram to B",
        );
        lab.pass(
            FROM,
            lab.b,
            &udp(POD_B, 5000, EXTERNAL, 45001),
            "B's answer",
        );
        lab.pass(TO, lab.b, &ping(EXTERNAL, POD_B, true), "ping to B");
        lab.pass(FROM, lab.b, &ping(POD_B, EXTERNAL, false), "B's pong");
        let ct = lab.node.ct_must(
            &conn(EXTERNAL, 45000, POD_B, 80, TW_CT_F_INGRESS),
            "B's ingress entry",
        );
        assert_eq!((ct.tx_packets, ct.rx_packets), (2, 2));
        // B opening a connection itself: default-deny.
        lab.dropped(
            FROM,
            lab.b,
            &syn(POD_B, 45002, EXTERNAL, 80),
            DROP_POLICY_DENIED,
            "B's own connection",
        );
        lab.dropped(
            FROM,
            lab.b,
            &tcp(POD_B, 81, EXTERNAL, 45000, tcp_flags::ACK),
            DROP_POLICY_DENIED,
            "B sending from another port: no reply",
        );
        // ICMP errors are related traffic, never judged.
        let mut unreach = ping(EXTERNAL, POD_A, true);
        unreach[ETH_HLEN + 20] = icmp_type::DEST_UNREACH;
        lab.pass(TO, lab.a, &unreach, "ICMP error to A");
        assert_eq!(lab.node.drops(DROP_POLICY_DENY), 0);
    });
}

#[test]
fn same_node_pods_each_endpoint_judges_once() {
    with_lab("pod2pod", |lab| {
        let a_out = key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, None);
        let b_in = key(ID_A, TW_POL_INGRESS, IPPROTO_TCP, Some(8080));
        let b_in_deny = key(ID_A, TW_POL_INGRESS, IPPROTO_TCP, Some(8443));
        let all = TW_EP_F_INGRESS_DEFAULT_DENY | TW_EP_F_EGRESS_DEFAULT_DENY;
        lab.manage(lab.a, a(), all, &[(a_out, allow(1))]);
        lab.manage(lab.b, b(), all, &[(b_in, allow(2)), (b_in_deny, deny(3))]);

        // A's SYN leaves A's veth (A's egress policy) and enters B's (B's
        // ingress policy).
        let syn_ab = syn(POD_A, 46000, POD_B, 8080);
        lab.pass(FROM, lab.a, &syn_ab, "SYN out of A");
        lab.pass(TO, lab.b, &syn_ab, "SYN into B");
        let egress = conn(POD_A, 46000, POD_B, 8080, 0);
        let ingress = conn(POD_A, 46000, POD_B, 8080, TW_CT_F_INGRESS);
        // The reply: out of B (B's ingress entry), into A (A's egress entry).
        let synack = tcp(POD_B, 8080, POD_A, 46000, tcp_flags::SYN | tcp_flags::ACK);
        lab.pass(FROM, lab.b, &synack, "SYN-ACK out of B");
        lab.pass(TO, lab.a, &synack, "SYN-ACK into A");
        let ack = tcp(POD_A, 46000, POD_B, 8080, tcp_flags::ACK);
        for _ in 0..3 {
            lab.pass(FROM, lab.a, &ack, "ACK out of A");
            lab.pass(TO, lab.b, &ack, "ACK into B");
        }
        let e = lab.node.ct_must(&egress, "A's egress entry");
        let i = lab.node.ct_must(&ingress, "B's ingress entry");
        assert_eq!((e.tx_packets, e.rx_packets), (4, 1), "A's veth only");
        assert_eq!((i.tx_packets, i.rx_packets), (4, 1), "B's veth only");
        for flags in [0, TW_CT_F_INGRESS] {
            assert!(
                lab.node
                    .ct(&conn(POD_B, 8080, POD_A, 46000, flags))
                    .is_none(),
                "no entry for the reply direction"
            );
        }
        // One verdict each for the one connection.
        assert_eq!(lab.hits(EP_A, &a_out), (1, syn_ab.len() as u64));
        assert_eq!(lab.hits(EP_B, &b_in), (1, syn_ab.len() as u64));

        // A may connect to 8443, B refuses: the SYN dies at B's veth.
        let syn_8443 = syn(POD_A, 46001, POD_B, 8443);
        lab.pass(FROM, lab.a, &syn_8443, "SYN to 8443 out of A");
        lab.dropped(TO, lab.b, &syn_8443, DROP_POLICY_DENY, "SYN to 8443 into B");
        lab.dropped(
            TO,
            lab.b,
            &syn_8443,
            DROP_POLICY_DENY,
            "its retransmission, judged again",
        );
        assert_eq!(lab.hits(EP_A, &a_out).0, 2);
        assert_eq!(lab.hits(EP_B, &b_in_deny).0, 2);
        assert!(lab.node.ct(&conn(POD_A, 46001, POD_B, 8443, 0)).is_some());
        assert!(
            lab.node
                .ct(&conn(POD_A, 46001, POD_B, 8443, TW_CT_F_INGRESS))
                .is_none(),
            "B keeps no entry for what it refused"
        );
        // Nor may B open a connection to A: B's egress is default-deny,
        // A's reply tuple of another connection is no reply for B.
        lab.dropped(
            FROM,
            lab.b,
            &syn(POD_B, 46002, POD_A, 8080),
            DROP_POLICY_DENIED,
            "B -> A",
        );
    });
}

#[test]
fn egress_policy_applies_after_clusterip_translation() {
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    with_lab("svc", |lab| {
        lab.add_service(&Svc {
            vip: VIP,
            port: 80,
            proto: IPPROTO_TCP,
            rev_nat: 1,
            flags: TW_SVC_F_CLUSTERIP,
            backend_id: 1,
            backend: POD_B,
            backend_port: 8080,
            backend_flags: 0,
        });
        // Only the service port is allowed: that is not what the
        // connection goes to after translation.
        lab.manage(
            lab.a,
            a(),
            TW_EP_F_EGRESS_DEFAULT_DENY,
            &[(key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(80)), allow(1))],
        );
        let to_vip = syn(POD_A, 47000, VIP, 80);
        lab.dropped(FROM, lab.a, &to_vip, DROP_POLICY_DENIED, "VIP:80 -> B:8080");
        assert!(
            lab.node
                .ct(&ct_key(POD_A, VIP, 47000, 80, IPPROTO_TCP, TW_CT_F_SERVICE))
                .is_none(),
            "a denied service connection leaves no SERVICE entry"
        );
        assert!(lab.node.ct(&conn(POD_A, 47000, POD_B, 8080, 0)).is_none());

        // The backend's port (and identity) is what the rule must name.
        let rule = key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(8080));
        lab.manage(lab.a, a(), TW_EP_F_EGRESS_DEFAULT_DENY, &[(rule, allow(2))]);
        let run = lab.node.run_on("lxc", FROM, &to_vip, lab.a);
        assert_eq!(run.retval, TC_ACT_OK, "VIP:80 -> B:8080 allowed");
        let out = run.frame();
        assert_eq!(out.ip.dst, POD_B, "DNATed to the backend");
        assert_eq!(lab.hits(EP_A, &rule).0, 1);
        let cct = lab
            .node
            .ct_must(&conn(POD_A, 47000, POD_B, 8080, 0), "A's egress entry");
        assert_eq!(cct.rev_nat_index, 1);
        // The backend's ingress policy sees A and the backend port.
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY,
            &[(key(ID_A, TW_POL_INGRESS, IPPROTO_TCP, Some(8080)), allow(3))],
        );
        lab.pass(TO, lab.b, &run.out, "the DNATed SYN into B");
        // B's reply: out of B as the reply of B's ingress entry, into A
        // reverse-NATed.
        let reply = tcp(POD_B, 8080, POD_A, 47000, tcp_flags::SYN | tcp_flags::ACK);
        lab.pass(FROM, lab.b, &reply, "B's SYN-ACK");
        let run = lab.node.run_on("lxc", TO, &reply, lab.a);
        assert_eq!(run.retval, TC_ACT_OK);
        let out = run.frame();
        assert_eq!(out.ip.src, VIP, "reverse NAT to the frontend");
        // Established: no second verdict, even if the policy changes.
        lab.manage(lab.a, a(), TW_EP_F_EGRESS_DEFAULT_DENY, &[]);
        let run = lab.node.run_on(
            "lxc",
            FROM,
            &tcp(POD_A, 47000, VIP, 80, tcp_flags::ACK),
            lab.a,
        );
        assert_eq!(run.retval, TC_ACT_OK, "established service flow");
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 47001, VIP, 80),
            DROP_POLICY_DENIED,
            "a new connection after the policy went",
        );
    });
}

#[test]
fn nodeport_to_a_local_backend_is_an_ingress_connection_of_the_pod() {
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
    const ID_CLIENTS: u32 = TW_ID_CIDR_FIRST + 2;
    with_lab("np", |lab| {
        lab.node
            .maps
            .set_config(&Config {
                node_ip: be32(NODE_IP),
                flags: TW_CFG_F_NODEPORT,
                nat_port_min: 61000,
                nat_port_max: 65000,
                ..Config::default()
            })
            .unwrap();
        lab.add_service(&Svc {
            vip: NODE_IP,
            port: 30080,
            proto: IPPROTO_TCP,
            rev_nat: 5,
            flags: TW_SVC_F_NODEPORT,
            backend_id: 1,
            backend: POD_B,
            backend_port: 8080,
            backend_flags: TW_BE_F_LOCAL,
        });
        lab.node
            .policy
            .ipcache_upsert(
                CLIENT,
                24,
                &ipc(ID_CLIENTS, TW_IPC_F_CIDR, Ipv4Addr::UNSPECIFIED),
            )
            .unwrap();
        let allowed = key(ID_CLIENTS, TW_POL_INGRESS, IPPROTO_TCP, Some(8080));
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY,
            &[
                (allowed, allow(1)),
                // The node port is not what reaches the pod.
                (
                    key(TW_ID_WORLD, TW_POL_INGRESS, IPPROTO_TCP, Some(30080)),
                    allow(2),
                ),
            ],
        );

        // The client's SYN: DNATed at the uplink, judged at B's veth with
        // the client's identity (not the node's).
        let run = lab.node.run_on(
            "nodeport",
            "tw_from_netdev",
            &syn(CLIENT, 48000, NODE_IP, 30080),
            0,
        );
        assert_eq!(run.retval, TC_ACT_OK);
        assert_eq!(run.frame().ip.dst, POD_B);
        let to_pod = run.out;
        lab.pass(TO, lab.b, &to_pod, "NodePort SYN into B");
        assert_eq!(lab.hits(EP_B, &allowed).0, 1);
        lab.node.ct_must(
            &conn(CLIENT, 48000, POD_B, 8080, TW_CT_F_INGRESS),
            "B's ingress entry",
        );
        let np = lab
            .node
            .ct_must(&conn(CLIENT, 48000, POD_B, 8080, 0), "the uplink's entry");
        assert_eq!(np.rev_nat_index, 5);
        // The reply: out of B (its ingress entry), out of the uplink with
        // node IP:node port.
        let reply = tcp(POD_B, 8080, CLIENT, 48000, tcp_flags::SYN | tcp_flags::ACK);
        lab.pass(FROM, lab.b, &reply, "B's SYN-ACK");
        let run = lab.node.run_on("nodeport", "tw_to_netdev", &reply, 0);
        assert_eq!(run.retval, TC_ACT_OK);
        let out = run.frame();
        assert_eq!(out.ip.src, NODE_IP, "reverse NAT at the uplink");
        // The rest of the connection: established, no more verdicts.
        let run = lab.node.run_on(
            "nodeport",
            "tw_from_netdev",
            &tcp(CLIENT, 48000, NODE_IP, 30080, tcp_flags::ACK),
            0,
        );
        assert_eq!(run.retval, TC_ACT_OK);
        lab.pass(TO, lab.b, &run.out, "the client's ACK into B");
        assert_eq!(lab.hits(EP_B, &allowed).0, 1);

        // Another client (the world): refused at B's veth, though the
        // uplink translated it.
        let run = lab.node.run_on(
            "nodeport",
            "tw_from_netdev",
            &syn(OTHER_CLIENT, 48001, NODE_IP, 30080),
            0,
        );
        assert_eq!(run.retval, TC_ACT_OK);
        lab.dropped(
            TO,
            lab.b,
            &run.out,
            DROP_POLICY_DENIED,
            "the world's NodePort SYN",
        );
        assert!(
            lab.node
                .ct(&conn(OTHER_CLIENT, 48001, POD_B, 8080, TW_CT_F_INGRESS))
                .is_none()
        );
    });
}

/// A UDP datagram from `src` to `dst` that takes three fragments.
fn big_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    UdpPacket {
        ip: addrs(src, dst),
        src_port: sport,
        dst_port: dport,
        payload: (0..3000u32).map(|i| (i % 247) as u8).collect(),
    }
    .build()
}

/// IPv4 fragments (tw_frag4): a later fragment has no ports of its own;
/// it gets its first fragment's, and with them the same connection and
/// the same verdict.
#[test]
fn fragments_get_the_verdict_of_their_first_fragment() {
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    with_lab("frag", |lab| {
        let out_rule = key(ID_B, TW_POL_EGRESS, IPPROTO_UDP, Some(8080));
        lab.manage(
            lab.a,
            a(),
            TW_EP_F_EGRESS_DEFAULT_DENY,
            &[(out_rule, allow(1))],
        );
        let in_rule = key(ID_A, TW_POL_INGRESS, IPPROTO_UDP, Some(8080));
        let in_deny = key(ID_A, TW_POL_INGRESS, IPPROTO_UDP, Some(7070));
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY | TW_EP_F_EGRESS_DEFAULT_DENY,
            &[(in_rule, allow(2)), (in_deny, deny(3))],
        );

        // Egress, allowed: every fragment passes untouched; the policy
        // judged the datagram once (its first fragment), conntrack counts
        // every fragment.
        let allowed = fragments(&big_udp(POD_A, 40000, POD_B, 8080), 0x0a01);
        assert_eq!(allowed.len(), 3);
        for (i, f) in allowed.iter().enumerate() {
            lab.pass(FROM, lab.a, f, &format!("allowed, fragment {i}"));
        }
        assert_eq!(lab.hits(EP_A, &out_rule), (1, allowed[0].len() as u64));
        let ct = lab.node.ct_must(
            &ct_key(POD_A, POD_B, 40000, 8080, IPPROTO_UDP, 0),
            "A's egress entry",
        );
        assert_eq!(ct.tx_packets, 3);

        // Egress, default-denied: the first fragment and, judged by its
        // ports, every later one; nothing tracked.
        let denied = fragments(&big_udp(POD_A, 40001, POD_B, 9090), 0x0a02);
        for (i, f) in denied.iter().enumerate() {
            let what = format!("denied, fragment {i}");
            lab.dropped(FROM, lab.a, f, DROP_POLICY_DENIED, &what);
        }
        assert!(
            lab.node
                .ct(&ct_key(POD_A, POD_B, 40001, 9090, IPPROTO_UDP, 0))
                .is_none()
        );

        // Into B: allowed in every fragment, or denied by a rule in every
        // fragment.
        let into_b = fragments(&big_udp(POD_A, 40002, POD_B, 8080), 0x0a03);
        for f in &into_b {
            lab.pass(TO, lab.b, f, "allowed into B");
        }
        assert_eq!(lab.hits(EP_B, &in_rule).0, 1);
        let ingress = ct_key(POD_A, POD_B, 40002, 8080, IPPROTO_UDP, TW_CT_F_INGRESS);
        assert_eq!(
            lab.node.ct_must(&ingress, "B's ingress entry").tx_packets,
            3
        );
        let refused = fragments(&big_udp(POD_A, 40003, POD_B, 7070), 0x0a04);
        for f in &refused {
            lab.dropped(TO, lab.b, f, DROP_POLICY_DENY, "denied into B");
        }
        assert_eq!(lab.hits(EP_B, &in_deny).0, 3, "each fragment judged");
        // B's fragmented answer to the allowed datagram: a reply in every
        // fragment, never judged (B's egress is default-deny with no rule:
        // only replies of B's ingress entries get out).
        let answer = fragments(&big_udp(POD_B, 8080, POD_A, 40002), 0x0b01);
        for f in &answer {
            lab.pass(FROM, lab.b, f, "B's answer");
        }
        assert_eq!(
            lab.node.ct_must(&ingress, "B's ingress entry").rx_packets,
            3
        );

        // A later fragment on its own: dropped before any verdict.
        let hits = lab.hits(EP_A, &out_rule);
        let lone = fragments(&big_udp(POD_A, 40004, POD_B, 8080), 0x0a05);
        lab.dropped(
            FROM,
            lab.a,
            &lone[1],
            DROP_FRAG_NOT_FOUND,
            "a later fragment alone",
        );
        assert_eq!(lab.hits(EP_A, &out_rule), hits);

        // Through a ClusterIP, judged as they leave (to the backend): an
        // allowed flow is DNATed in every fragment; of a denied one, the
        // first fragment is dropped by the policy and the later ones, which
        // may not open the flow it did not open, as fragments of no flow.
        for (port, backend_port, rev_nat) in [(53, 8080, 1), (54, 9090, 2)] {
            lab.add_service(&Svc {
                vip: VIP,
                port,
                proto: IPPROTO_UDP,
                rev_nat,
                flags: TW_SVC_F_CLUSTERIP,
                backend_id: u32::from(rev_nat),
                backend: POD_B,
                backend_port,
                backend_flags: 0,
            });
        }
        let ok = fragments(&big_udp(POD_A, 40005, VIP, 53), 0x0a06);
        let out = lab.node.run_fragments("lxc", FROM, &ok, lab.a, TC_ACT_OK);
        assert_fragments(
            &out,
            &fragments(&big_udp(POD_A, 40005, POD_B, 8080), 0x0a06),
        );
        let no = fragments(&big_udp(POD_A, 40006, VIP, 54), 0x0a07);
        lab.dropped(
            FROM,
            lab.a,
            &no[0],
            DROP_POLICY_DENIED,
            "first fragment to VIP:54",
        );
        for f in &no[1..] {
            lab.dropped(
                FROM,
                lab.a,
                f,
                DROP_FRAG_NOT_FOUND,
                "later fragment to VIP:54",
            );
        }
        assert!(
            lab.node
                .ct(&ct_key(POD_A, VIP, 40006, 54, IPPROTO_UDP, TW_CT_F_SERVICE))
                .is_none(),
            "no SERVICE entry for the denied flow"
        );
    });
}

#[test]
fn the_host_is_always_allowed_in() {
    with_lab("host", |lab| {
        // B: ingress default-deny, no policy at all (TW_EP_F_POLICY clear).
        lab.manage(lab.b, b(), TW_EP_F_INGRESS_DEFAULT_DENY, &[]);
        lab.pass(
            TO,
            lab.b,
            &syn(NODE_IP, 49000, POD_B, 8080),
            "kubelet probe",
        );
        lab.pass(TO, lab.b, &ping(NODE_IP, POD_B, true), "ping from the node");
        lab.dropped(
            TO,
            lab.b,
            &syn(OTHER_NODE, 49001, POD_B, 8080),
            DROP_POLICY_DENIED,
            "another node",
        );
        lab.dropped(
            TO,
            lab.b,
            &syn(POD_A, 49002, POD_B, 8080),
            DROP_POLICY_DENIED,
            "a pod",
        );
        // Even a deny for every peer does not shut the node out.
        let deny_all = key(TW_ID_ANY, TW_POL_INGRESS, 0, None);
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY,
            &[(deny_all, deny(1))],
        );
        lab.pass(
            TO,
            lab.b,
            &syn(NODE_IP, 49003, POD_B, 8080),
            "kubelet probe",
        );
        lab.dropped(
            TO,
            lab.b,
            &syn(POD_A, 49004, POD_B, 8080),
            DROP_POLICY_DENY,
            "a pod, denied",
        );
        // Only ingress: B's own connections to the node follow its egress
        // policy.
        lab.manage(lab.b, b(), TW_EP_F_EGRESS_DEFAULT_DENY, &[]);
        lab.dropped(
            FROM,
            lab.b,
            &syn(POD_B, 49005, NODE_IP, 10250),
            DROP_POLICY_DENIED,
            "B -> the node",
        );
    });
}

/// The keys of a policy, for comparisons.
fn keys_of(entries: &[(PolicyKey, PolicyEntry)]) -> BTreeSet<(u32, u8, u8, u16, u32)> {
    entries
        .iter()
        .map(|(k, _)| (k.identity, k.egress, k.proto, k.dport, k.prefixlen))
        .collect()
}

/// Policy P (`n` filler rules) allowing A to reach B on `port` and 7000.
fn policy_for(port: u16, n: u32) -> Vec<(PolicyKey, PolicyEntry)> {
    let mut rules = vec![
        (key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(7000)), allow(1)),
        (key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(port)), allow(2)),
    ];
    rules.extend((0..n).map(|i| {
        (
            key(
                100_000 + u32::from(port) * 1000 + i,
                TW_POL_EGRESS,
                IPPROTO_TCP,
                Some(1),
            ),
            allow(3),
        )
    }));
    rules
}

#[test]
fn set_policy_swaps_a_complete_trie_with_one_update() {
    with_lab("swap", |lab| {
        let p1 = policy_for(8080, 200);
        let p2 = policy_for(9090, 300);
        lab.manage(lab.a, a(), TW_EP_F_EGRESS_DEFAULT_DENY, &p1);
        let id1 = lab.node.policy.policy_map_id(EP_A).unwrap().unwrap();
        lab.pass(
            FROM,
            lab.a,
            &syn(POD_A, 50000, POD_B, 8080),
            "P1 allows 8080",
        );
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 50001, POD_B, 9090),
            DROP_POLICY_DENIED,
            "P1 denies 9090",
        );
        let rule_8080 = key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(8080));
        assert_eq!(lab.hits(EP_A, &rule_8080).0, 1);

        // P2 is built completely while P1 is still what the outer map
        // (and so the datapath) has.
        let table: PolicyTable = PolicyMaps::build_policy(&p2).unwrap();
        assert_eq!(table.len(), p2.len());
        assert_eq!(keys_of(&table.entries().unwrap()), keys_of(&p2));
        assert_ne!(table.map_id().unwrap(), id1);
        assert_eq!(lab.node.policy.policy_map_id(EP_A).unwrap(), Some(id1));
        assert_eq!(
            keys_of(&lab.node.policy.policy_entries(EP_A).unwrap()),
            keys_of(&p1)
        );
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 50002, POD_B, 9090),
            DROP_POLICY_DENIED,
            "P2 not installed yet",
        );
        // One update: the outer map now holds P2, complete.
        lab.node.policy.install_policy(EP_A, &table).unwrap();
        assert_eq!(
            lab.node.policy.policy_map_id(EP_A).unwrap(),
            Some(table.map_id().unwrap())
        );
        assert_eq!(
            keys_of(&lab.node.policy.policy_entries(EP_A).unwrap()),
            keys_of(&p2)
        );
        drop(table);
        lab.pass(
            FROM,
            lab.a,
            &syn(POD_A, 50003, POD_B, 9090),
            "P2 allows 9090",
        );
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 50004, POD_B, 8080),
            DROP_POLICY_DENIED,
            "P2 denies new 8080 connections",
        );
        lab.pass(
            FROM,
            lab.a,
            &tcp(POD_A, 50000, POD_B, 8080, tcp_flags::ACK),
            "the established 8080 connection goes on",
        );
        let rule_9090 = key(ID_B, TW_POL_EGRESS, IPPROTO_TCP, Some(9090));
        assert_eq!(lab.hits(EP_A, &rule_9090).0, 1, "P2's counters start fresh");

        // Under load: one thread swaps P1 and P2 back and forth, one reads
        // the installed policy, one opens connections to port 7000, which
        // both allow. A missing or half-written trie would show as an
        // empty or partial read, or as a default-deny drop.
        let dir = lab.node.pin_dir().to_path_buf();
        let done = AtomicBool::new(false);
        let (reads, runs) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let denied_before = lab.node.drops(DROP_POLICY_DENIED);
        let (k1, k2) = (keys_of(&p1), keys_of(&p2));
        let node = &lab.node;
        let a_if = lab.a;
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut maps = PolicyMaps::open(&dir).unwrap();
                for i in 0..100 {
                    let p = if i % 2 == 0 { &p1 } else { &p2 };
                    maps.set_policy(EP_A, p).unwrap();
                }
                done.store(true, Ordering::Release);
            });
            s.spawn(|| {
                let maps = PolicyMaps::open(&dir).unwrap();
                let mut seen = [0usize; 2];
                while !done.load(Ordering::Acquire) {
                    // An error is a trie freed between the outer lookup
                    // and opening it by id: nothing was observed.
                    let Ok(entries) = maps.policy_entries(EP_A) else {
                        continue;
                    };
                    let k = keys_of(&entries);
                    assert!(
                        k == k1 || k == k2,
                        "observed a policy of {} entries that is neither P1 nor P2",
                        entries.len()
                    );
                    seen[usize::from(k == k2)] += 1;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                eprintln!("reader saw P1 {} times, P2 {} times", seen[0], seen[1]);
            });
            s.spawn(|| {
                // Source ports 10000 and up; the checks below use others.
                let mut sport: u16 = 10000;
                while !done.load(Ordering::Acquire) {
                    sport = sport.wrapping_add(1).max(10000);
                    let run = node.run_on("lxc", FROM, &syn(POD_A, sport, POD_B, 7000), a_if);
                    assert_eq!(run.retval, TC_ACT_OK, "7000 is allowed by P1 and P2");
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            });
        });
        eprintln!(
            "100 swaps: {} consistent reads, {} allowed new connections",
            reads.load(Ordering::Relaxed),
            runs.load(Ordering::Relaxed)
        );
        assert!(reads.load(Ordering::Relaxed) > 0 && runs.load(Ordering::Relaxed) > 0);
        assert_eq!(lab.node.drops(DROP_POLICY_DENIED), denied_before);
        // The last swap installed P2.
        assert_eq!(
            keys_of(&lab.node.policy.policy_entries(EP_A).unwrap()),
            keys_of(&p2)
        );
        assert_eq!(lab.node.policy.policy_endpoints().unwrap(), vec![EP_A]);

        // Deleting the policy leaves the defaults.
        assert!(lab.node.policy.delete_policy(EP_A).unwrap());
        assert!(!lab.node.policy.delete_policy(EP_A).unwrap());
        assert!(lab.node.policy.policy_entries(EP_A).unwrap().is_empty());
        assert_eq!(lab.node.policy.policy_map_id(EP_A).unwrap(), None);
        lab.dropped(
            FROM,
            lab.a,
            &syn(POD_A, 9005, POD_B, 7000),
            DROP_POLICY_DENIED,
            "no policy: the default",
        );
        // Bad input never reaches the kernel's outer map.
        let mut dup = policy_for(8080, 0);
        dup.push(dup[0]);
        assert!(PolicyMaps::build_policy(&dup).is_err(), "duplicate key");
        let mut short = policy_for(8080, 0);
        short[0].0.prefixlen = 32;
        assert!(
            lab.node.policy.set_policy(EP_A, &short).is_err(),
            "prefix 32"
        );
        assert_eq!(lab.node.policy.policy_map_id(EP_A).unwrap(), None);
        // The endpoint table.
        let eps = lab.node.policy.endpoints().unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!((eps[0].0, eps[0].1.endpoint_id), (lab.a, EP_A));
        assert!(lab.node.policy.endpoint_delete(lab.a).unwrap());
        lab.pass(
            FROM,
            lab.a,
            &syn(POD_A, 9006, POD_B, 7000),
            "no endpoint: unmanaged",
        );
        let fill = lab.node.policy.fill();
        assert_eq!(fill.len(), 3);
        assert!(fill.iter().all(|f| f.max_entries > 0), "{fill:?}");
    });
}

// ---- Flow events (bpf/lib/events.h) ------------------------------------

use tollway_abi::{
    Event, TW_AGG_MAXIMUM, TW_AGG_MEDIUM, TW_AGG_NONE, TW_EV_DROP, TW_EV_F_ALLOWED, TW_EV_F_EGRESS,
    TW_EV_F_INGRESS, TW_EV_F_NEW, TW_EV_F_REPLY, TW_EV_POLICY_VERDICT, TW_EV_TRACE,
    TW_EVENTS_CAP_MAX, TW_EVENTS_RING_BYTES, TW_MATCH_L3_L4, TW_MATCH_L4_ONLY, TW_MATCH_NONE,
    TW_TRACE_FROM_LXC, TW_TRACE_TO_LXC, TW_TRACE_TO_STACK,
};
use tollway_datapath::lb::EventMaps;

impl Lab {
    /// Turns events on at aggregation `level` and empties the ring.
    fn events_on(&mut self, level: u32) {
        let mut ev = EventMaps::open(self.node.pin_dir()).unwrap();
        ev.set_config(true, level).unwrap();
        self.drain();
    }

    fn events_off(&mut self) {
        let mut ev = EventMaps::open(self.node.pin_dir()).unwrap();
        ev.set_config(false, TW_AGG_MEDIUM).unwrap();
    }

    /// Every record in the ring, consumed.
    fn drain(&self) -> Vec<(Event, Vec<u8>)> {
        let mut ring = EventMaps::ring(self.node.pin_dir()).unwrap();
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            let (ev, payload) = Event::parse(&item).expect("a whole record");
            out.push((ev, payload.to_vec()));
        }
        out
    }

    fn lost(&self) -> u64 {
        EventMaps::open(self.node.pin_dir())
            .unwrap()
            .lost()
            .unwrap()
    }
}

/// `(type, subtype)` of each event, in order.
fn kinds(events: &[(Event, Vec<u8>)]) -> Vec<(u8, u8)> {
    events.iter().map(|(e, _)| (e.ev_type, e.subtype)).collect()
}

#[test]
fn events_report_policy_verdicts_drops_and_traces() {
    with_lab("ev-verdicts", |lab| {
        let rule = key(ID_A, TW_POL_INGRESS, IPPROTO_TCP, Some(8080));
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY,
            &[(rule, allow(7))],
        );

        // Off: nothing at all, whatever happens.
        lab.events_off();
        lab.pass(
            TO,
            lab.b,
            &syn(POD_A, 41000, POD_B, 8080),
            "allowed, events off",
        );
        assert!(lab.drain().is_empty(), "events off: the ring stays empty");

        lab.events_on(TW_AGG_MEDIUM);
        // An allowed new connection: the verdict, then the trace.
        let first = syn(POD_A, 41001, POD_B, 8080);
        lab.pass(TO, lab.b, &first, "A -> B:8080");
        let ev = lab.drain();
        assert_eq!(
            kinds(&ev),
            vec![(TW_EV_POLICY_VERDICT, 0), (TW_EV_TRACE, TW_TRACE_TO_LXC)],
            "{ev:?}"
        );
        let (v, _) = &ev[0];
        assert_eq!(v.flags, TW_EV_F_INGRESS | TW_EV_F_NEW | TW_EV_F_ALLOWED);
        assert_eq!((v.match_type, v.rule_id), (TW_MATCH_L3_L4, 7));
        assert_eq!((v.src_id, v.dst_id), (ID_A, ID_B));
        assert_eq!((v.saddr, v.daddr), (be32(POD_A), be32(POD_B)));
        assert_eq!((v.sport, v.dport), (be16(41001), be16(8080)));
        assert_eq!(
            (v.proto, v.tcp_flags, v.len),
            (IPPROTO_TCP, tcp_flags::SYN, first.len() as u32)
        );
        assert_eq!(v.ifindex, lab.b);
        let (t, _) = &ev[1];
        assert_eq!(t.flags, TW_EV_F_INGRESS | TW_EV_F_NEW);

        // Medium aggregation: a packet with a TCP flag not seen before in
        // its direction is reported, a repeat is not.
        let ack = tcp(POD_A, 41001, POD_B, 8080, tcp_flags::ACK);
        let psh = tcp(POD_A, 41001, POD_B, 8080, tcp_flags::ACK | tcp_flags::PSH);
        for (frame, reported, what) in [
            (&ack, true, "first ACK"),
            (&ack, false, "second ACK"),
            (&psh, true, "first PSH"),
            (&psh, false, "second PSH"),
            (&psh, false, "third PSH"),
        ] {
            lab.pass(TO, lab.b, frame, what);
            let ev = lab.drain();
            let expect = if reported {
                vec![(TW_EV_TRACE, TW_TRACE_TO_LXC)]
            } else {
                vec![]
            };
            assert_eq!(kinds(&ev), expect, "{what}");
        }
        // The reply (B's SYN-ACK leaving B): a trace marked as a reply.
        lab.pass(
            FROM,
            lab.b,
            &tcp(POD_B, 8080, POD_A, 41001, tcp_flags::SYN | tcp_flags::ACK),
            "B's SYN-ACK",
        );
        let ev = lab.drain();
        assert_eq!(kinds(&ev), vec![(TW_EV_TRACE, TW_TRACE_TO_STACK)]);
        assert_eq!(ev[0].0.flags, TW_EV_F_EGRESS | TW_EV_F_REPLY);

        // A denied connection: the verdict and the drop, both with the
        // reason, and no trace.
        lab.dropped(
            TO,
            lab.b,
            &syn(POD_A, 41002, POD_B, 9090),
            DROP_POLICY_DENIED,
            "A -> B:9090",
        );
        let ev = lab.drain();
        assert_eq!(
            kinds(&ev),
            vec![
                (TW_EV_POLICY_VERDICT, DROP_POLICY_DENIED),
                (TW_EV_DROP, DROP_POLICY_DENIED)
            ],
            "{ev:?}"
        );
        assert_eq!(ev[0].0.flags & TW_EV_F_ALLOWED, 0);
        assert_eq!(ev[0].0.match_type, TW_MATCH_NONE);
        assert_eq!((ev[1].0.src_id, ev[1].0.dst_id), (ID_A, ID_B));
    });
}

#[test]
fn events_deny_rules_and_match_types() {
    with_lab("ev-deny", |lab| {
        // B: any peer to TCP 80 allowed (L4-only), A denied on TCP 80 (rule 9).
        let any80 = key(TW_ID_ANY, TW_POL_INGRESS, IPPROTO_TCP, Some(80));
        let a80 = key(ID_A, TW_POL_INGRESS, IPPROTO_TCP, Some(80));
        lab.manage(
            lab.b,
            b(),
            TW_EP_F_INGRESS_DEFAULT_DENY,
            &[(any80, allow(3)), (a80, deny(9))],
        );
        lab.events_on(TW_AGG_MEDIUM);
        lab.dropped(
            TO,
            lab.b,
            &syn(POD_A, 42000, POD_B, 80),
            DROP_POLICY_DENY,
            "A is denied",
        );
        let ev = lab.drain();
        assert_eq!(
            kinds(&ev),
            vec![
                (TW_EV_POLICY_VERDICT, DROP_POLICY_DENY),
                (TW_EV_DROP, DROP_POLICY_DENY)
            ]
        );
        assert_eq!((ev[0].0.match_type, ev[0].0.rule_id), (TW_MATCH_L3_L4, 9));

        lab.pass(
            TO,
            lab.b,
            &syn(REMOTE_POD, 42001, POD_B, 80),
            "others allowed",
        );
        let ev = lab.drain();
        assert_eq!(ev[0].0.ev_type, TW_EV_POLICY_VERDICT);
        assert_eq!((ev[0].0.match_type, ev[0].0.rule_id), (TW_MATCH_L4_ONLY, 3));
        assert_eq!(ev[0].0.src_id, ID_REMOTE);
    });
}

#[test]
fn events_unisolated_directions_have_no_verdict_and_levels_differ() {
    with_lab("ev-levels", |lab| {
        // A is not isolated: its "allow everything" entry is rule 0.
        let any = key(TW_ID_ANY, TW_POL_EGRESS, 0, None);
        lab.manage(lab.a, a(), TW_EP_F_EGRESS_DEFAULT_DENY, &[(any, allow(0))]);

        lab.events_on(TW_AGG_NONE);
        lab.pass(FROM, lab.a, &syn(POD_A, 43000, POD_B, 80), "SYN");
        let ev = lab.drain();
        // None: the receiving point too, and no verdict for rule 0.
        assert_eq!(
            kinds(&ev),
            vec![
                (TW_EV_TRACE, TW_TRACE_FROM_LXC),
                (TW_EV_TRACE, TW_TRACE_TO_STACK)
            ],
            "{ev:?}"
        );
        let ack = tcp(POD_A, 43000, POD_B, 80, tcp_flags::ACK);
        lab.pass(FROM, lab.a, &ack, "ACK");
        lab.pass(FROM, lab.a, &ack, "ACK again");
        assert_eq!(lab.drain().len(), 4, "none: every packet, both points");

        // Maximum: only the opening packet and the first SYN/FIN/RST.
        lab.events_on(TW_AGG_MAXIMUM);
        lab.pass(FROM, lab.a, &syn(POD_A, 43001, POD_B, 80), "SYN");
        lab.pass(
            FROM,
            lab.a,
            &tcp(POD_A, 43001, POD_B, 80, tcp_flags::ACK),
            "ACK",
        );
        lab.pass(
            FROM,
            lab.a,
            &tcp(POD_A, 43001, POD_B, 80, tcp_flags::ACK | tcp_flags::PSH),
            "PSH",
        );
        lab.pass(
            FROM,
            lab.a,
            &tcp(POD_A, 43001, POD_B, 80, tcp_flags::ACK | tcp_flags::FIN),
            "FIN",
        );
        let ev = lab.drain();
        assert_eq!(
            kinds(&ev),
            vec![
                (TW_EV_TRACE, TW_TRACE_TO_STACK),
                (TW_EV_TRACE, TW_TRACE_TO_STACK)
            ],
            "maximum: SYN and FIN only"
        );
        assert_eq!(ev[1].0.tcp_flags, tcp_flags::ACK | tcp_flags::FIN);
    });
}

#[test]
fn events_carry_dns_messages_and_service_translation() {
    with_lab("ev-dns", |lab| {
        lab.events_on(TW_AGG_MAXIMUM);
        // DNS is always reported, with the message after the record.
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03abc\x00\x00\x01\x00\x01";
        let frame = UdpPacket {
            ip: addrs(POD_A, POD_B),
            src_port: 45000,
            dst_port: 53,
            payload: query.to_vec(),
        }
        .build();
        for what in ["query", "retransmitted query"] {
            lab.pass(FROM, lab.a, &frame, what);
            let ev = lab.drain();
            assert_eq!(kinds(&ev), vec![(TW_EV_TRACE, TW_TRACE_TO_STACK)], "{what}");
            assert_eq!(usize::from(ev[0].0.cap_len), query.len());
            assert_eq!(ev[0].1, query.to_vec(), "{what}: the DNS message");
        }

        // ICMP: the type rides in the flags byte.
        lab.pass(FROM, lab.a, &ping(POD_A, POD_B, true), "echo request");
        let ev = lab.drain();
        assert_eq!(kinds(&ev), vec![(TW_EV_TRACE, TW_TRACE_TO_STACK)]);
        assert_eq!((ev[0].0.proto, ev[0].0.tcp_flags), (IPPROTO_ICMP, 8));

        // The tc path: a DNATed packet is reported as it leaves, to the
        // backend, with the frontend beside it.
        let vip = Ipv4Addr::new(10, 96, 0, 10);
        lab.add_service(&Svc {
            vip,
            port: 80,
            proto: IPPROTO_TCP,
            rev_nat: 5,
            flags: TW_SVC_F_CLUSTERIP,
            backend_id: 50,
            backend: POD_B,
            backend_port: 8080,
            backend_flags: TW_BE_F_LOCAL,
        });
        let run = lab
            .node
            .run_on("lxc", FROM, &syn(POD_A, 45001, vip, 80), lab.a);
        assert_eq!(run.retval, TC_ACT_OK);
        let ev = lab.drain();
        assert_eq!(kinds(&ev), vec![(TW_EV_TRACE, TW_TRACE_TO_STACK)]);
        let e = &ev[0].0;
        assert_eq!((e.daddr, e.dport), (be32(POD_B), be16(8080)));
        assert_eq!(
            (e.orig_addr, e.orig_port, e.rev_nat),
            (be32(vip), be16(80), 5)
        );
        assert_eq!(e.dst_id, ID_B);

        // Its reply, reverse-NATed on the way to A: still from the
        // backend, the frontend beside it.
        let reply = tcp(POD_B, 8080, POD_A, 45001, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(lab.run(TO, lab.a, &reply), TC_ACT_OK);
        let ev = lab.drain();
        assert_eq!(kinds(&ev), vec![(TW_EV_TRACE, TW_TRACE_TO_LXC)]);
        let e = &ev[0].0;
        assert_eq!((e.saddr, e.sport), (be32(POD_B), be16(8080)));
        assert_eq!((e.orig_addr, e.orig_port), (be32(vip), be16(80)));
        assert_ne!(e.flags & TW_EV_F_REPLY, 0);
    });
}

#[test]
fn events_of_fragments_carry_their_first_fragments_ports() {
    with_lab("ev-frag", |lab| {
        lab.events_on(TW_AGG_MAXIMUM);
        // A DNS answer too big for one fragment (always reported): the
        // first fragment's trace carries the start of the message, the
        // later ones the ports, and no bytes (they have no UDP header).
        let mut message = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00".to_vec();
        message.resize(2600, 0x61);
        let answer = UdpPacket {
            ip: addrs(POD_A, POD_B),
            src_port: 53,
            dst_port: 45000,
            payload: message.clone(),
        }
        .build();
        let frags = fragments(&answer, 0x0c01);
        assert_eq!(frags.len(), 3);
        for (i, f) in frags.iter().enumerate() {
            lab.pass(FROM, lab.a, f, &format!("fragment {i}"));
            let ev = lab.drain();
            assert_eq!(
                kinds(&ev),
                vec![(TW_EV_TRACE, TW_TRACE_TO_STACK)],
                "fragment {i}"
            );
            let (e, payload) = &ev[0];
            assert_eq!((e.sport, e.dport), (be16(53), be16(45000)), "fragment {i}");
            assert_eq!(e.len, f.len() as u32);
            if i == 0 {
                // As much of it as a record takes.
                let cap = (f.len() - (ETH_HLEN + 20 + 8)).min(TW_EVENTS_CAP_MAX as usize);
                assert_eq!(usize::from(e.cap_len), cap);
                assert_eq!(payload[..], message[..cap]);
            } else {
                assert_eq!(e.cap_len, 0, "fragment {i}");
            }
        }

        // A later fragment alone: a drop event with its addresses.
        let alone = fragments(&big_udp(POD_A, 45001, POD_B, 8080), 0x0c02);
        lab.dropped(
            FROM,
            lab.a,
            &alone[2],
            DROP_FRAG_NOT_FOUND,
            "a later fragment alone",
        );
        let ev = lab.drain();
        assert_eq!(kinds(&ev), vec![(TW_EV_DROP, DROP_FRAG_NOT_FOUND)]);
        let e = &ev[0].0;
        assert_eq!((e.saddr, e.daddr), (be32(POD_A), be32(POD_B)));
        assert_eq!((e.src_id, e.dst_id), (ID_A, ID_B));
        assert_eq!((e.proto, e.sport, e.dport), (IPPROTO_UDP, 0, 0));
        assert_eq!(e.flags, TW_EV_F_EGRESS);
    });
}

#[test]
fn a_full_ring_loses_events_not_packets() {
    with_lab("ev-full", |lab| {
        lab.events_on(TW_AGG_NONE);
        // Untracked by nobody's policy: every packet is two events (from
        // the pod, to the stack). Twice the ring's capacity in records.
        let records = TW_EVENTS_RING_BYTES / 64;
        let frame = udp(POD_A, 46000, POD_B, 9000);
        let run = lab.node.run_repeat("lxc", FROM, &frame, lab.a, records);
        assert_eq!(run.retval, TC_ACT_OK, "the datapath goes on");
        let lost = lab.lost();
        assert!(lost > 0, "a full ring counts lost events");
        let got = lab.drain().len() as u64;
        // Each record is 64 bytes plus the ring's 8-byte header.
        assert!(got > 0 && got < u64::from(records) * 2);
        assert_eq!(
            got + lost,
            u64::from(records) * 2,
            "every event is read or counted lost"
        );
        // The next packet finds room again.
        lab.pass(FROM, lab.a, &frame, "after the drain");
        assert_eq!(lab.drain().len(), 2);
        assert_eq!(lab.lost(), lost);
    });
}
