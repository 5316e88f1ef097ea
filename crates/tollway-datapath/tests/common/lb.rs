//! The harness shared by the LB datapath tests (`lxc.rs`, `nodeport.rs`):
//! a node datapath loaded with its maps pinned in a directory of its own,
//! `BPF_PROG_TEST_RUN` runs, and map keys and checks they all need.

#![allow(clippy::unwrap_used)]

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use aya::{
    TestRun as _, TestRunOptions,
    programs::{Program, SchedClassifier},
};
use tollway_abi::{Ct4Key, CtEntry, Frag4Entry, Frag4Key, Lb4Key, be16, be32};
use tollway_datapath::{
    bpffs::{self, BPFFS_MOUNT},
    lb::{LbMaps, LoadOptions, MAP_NAMES, NodeDatapath, PolicyMaps},
    testutil::{
        ETH_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ParsedFrame, ipv4_checksum_ok,
        ipv4_fragments, l4_checksum_ok, reassemble_ipv4, set_ipv4_id,
    },
};

use super::{PinTree, chain, require_root};

pub const NSEC: u64 = 1_000_000_000;

/// Monotonic clock, the one `bpf_ktime_get_ns` reads.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    u64::try_from(ts.tv_sec).unwrap() * NSEC + u64::try_from(ts.tv_nsec).unwrap()
}

/// A loaded node datapath with its maps, pinned in a directory of its own
/// that is removed when the test ends, however it ends.
pub struct Node {
    pub dp: NodeDatapath,
    pub maps: LbMaps,
    pub policy: PolicyMaps,
    // Last: the pins go after the handles.
    _pins: PinTree,
}

/// One `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct Run {
    pub retval: u32,
    pub out: Vec<u8>,
    pub duration: Duration,
}

impl Run {
    pub fn frame(&self) -> ParsedFrame {
        ParsedFrame::parse(&self.out)
            .unwrap_or_else(|| panic!("output is no IPv4 frame: {:02x?}", self.out))
    }
}

impl Node {
    /// Load the datapath in a fresh pin directory (named after `tag`); the
    /// object `object` must be built.
    pub fn load(tag: &str, object: &str) -> Node {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        require_root();
        bpffs::ensure_bpffs(Path::new(BPFFS_MOUNT))
            .unwrap_or_else(|e| panic!("ensure_bpffs: {}", chain(&e)));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(BPFFS_MOUNT)
            .join("tollway-test")
            .join(format!("{}-{tag}-{n}", std::process::id()));
        let pins = PinTree::new(&dir);
        let dp = NodeDatapath::load(&LoadOptions {
            pin_dir: dir.clone(),
        })
        .unwrap_or_else(|e| panic!("NodeDatapath::load: {}", chain(&e)));
        assert!(
            dp.has(object),
            "the {object} object must be built and loaded"
        );
        for name in MAP_NAMES {
            assert!(
                dir.join(name).exists(),
                "map {name} is not pinned in {}",
                dir.display()
            );
        }
        let maps = LbMaps::open(&dir).unwrap_or_else(|e| panic!("LbMaps::open: {}", chain(&e)));
        let policy =
            PolicyMaps::open(&dir).unwrap_or_else(|e| panic!("PolicyMaps::open: {}", chain(&e)));
        Node {
            dp,
            maps,
            policy,
            _pins: pins,
        }
    }

    /// The pin directory of the node's maps.
    pub fn pin_dir(&self) -> &Path {
        self.dp.pin_dir()
    }

    /// Run a program of an object on a frame (the skb's device: loopback).
    pub fn run_in(&mut self, object: &str, program: &str, frame: &[u8]) -> Run {
        self.run_on(object, program, frame, 0)
    }

    /// Run a program of an object on a frame as if it passed the device
    /// `ifindex` (`skb->ifindex`; 0: loopback). The device must exist in
    /// the calling thread's network namespace.
    pub fn run_on(&self, object: &str, program: &str, frame: &[u8], ifindex: u32) -> Run {
        self.run_repeat(object, program, frame, ifindex, 1)
    }

    /// [`Node::run_on`], `repeat` times in one `BPF_PROG_TEST_RUN` (the
    /// output is the last run's).
    pub fn run_repeat(
        &self,
        object: &str,
        program: &str,
        frame: &[u8],
        ifindex: u32,
        repeat: u32,
    ) -> Run {
        // struct __sk_buff up to `ifindex` (offset 40); the kernel takes
        // the device from it when it is > 1 and zero-fills the rest.
        let mut ctx = [0u8; 44];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let ebpf = self.dp.object(object).unwrap();
        let prog: &Program = ebpf.program(program).unwrap();
        let prog: &SchedClassifier = prog.try_into().unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: (ifindex > 1).then_some(&ctx[..]),
                repeat,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("test_run({program}): {}", chain(&e)));
        out.truncate(usize::try_from(result.data_size_out).unwrap());
        Run {
            retval: result.return_value,
            out,
            duration: result.duration,
        }
    }

    /// Instructions the verifier walked for a program (kernel >= 5.16).
    pub fn verified_insns(&mut self, object: &str, program: &str) -> Option<u32> {
        let ebpf = self.dp.object_mut(object)?;
        ebpf.program(program)?
            .info()
            .ok()?
            .verified_instruction_count()
    }

    pub fn ct(&self, key: &Ct4Key) -> Option<CtEntry> {
        self.maps.ct.get(key, 0).ok()
    }

    pub fn ct_must(&self, key: &Ct4Key, what: &str) -> CtEntry {
        self.ct(key)
            .unwrap_or_else(|| panic!("no conntrack entry for {what}: {key:?}"))
    }

    pub fn drops(&self, reason: u8) -> u64 {
        self.maps
            .drop_counts()
            .unwrap()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n)
    }
}

pub fn lb_key(addr: Ipv4Addr, port: u16, slot: u16, proto: u8, scope: u8) -> Lb4Key {
    Lb4Key {
        address: be32(addr),
        dport: be16(port),
        backend_slot: slot,
        proto,
        scope,
        pad: [0; 2],
    }
}

pub fn ct_key(
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    flags: u8,
) -> Ct4Key {
    Ct4Key {
        saddr: be32(saddr),
        daddr: be32(daddr),
        sport: be16(sport),
        dport: be16(dport),
        proto,
        flags,
        pad: 0,
    }
}

/// The frame with its IPv4 and L4 checksums zeroed.
pub fn without_checksums(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let ihl = usize::from(f[ETH_HLEN] & 0x0f) * 4;
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
    let l4 = ETH_HLEN + ihl;
    let at = match f[ETH_HLEN + 9] {
        IPPROTO_TCP => l4 + 16,
        IPPROTO_UDP => l4 + 6,
        IPPROTO_ICMP => l4 + 2,
        _ => return f,
    };
    f[at..at + 2].copy_from_slice(&[0, 0]);
    f
}

/// The program's output is `expected` (built by hand with the translated
/// addresses) byte for byte beyond the checksums, and both checksums of
/// the output, recomputed from its bytes, are right.
pub fn assert_translated(run: &Run, expected: &[u8]) {
    assert!(
        ipv4_checksum_ok(&run.out),
        "IPv4 checksum of {:02x?}",
        run.out
    );
    assert!(l4_checksum_ok(&run.out), "L4 checksum of {:02x?}", run.out);
    assert_eq!(
        without_checksums(&run.out),
        without_checksums(expected),
        "output differs from the expected frame beyond checksums"
    );
}

/// `expires` of an entry written between `before` and `after` with a
/// lifetime of `secs`.
pub fn assert_lifetime(expires: u64, before: u64, after: u64, secs: u32, what: &str) {
    let l = u64::from(secs) * NSEC;
    assert!(
        expires >= before + l && expires <= after + l,
        "{what}: expires {expires} is not now + {secs}s (now in [{before}, {after}])"
    );
}

/// Room for IPv4 payload in each fragment the tests' senders make (a 1500
/// byte MTU leaves 1480; less gives three fragments to a 3000-byte
/// datagram).
pub const FRAG_DATA: usize = 1200;

/// The fragments of `frame`, its IPv4 identification set to `id`, as a
/// sender's stack sends a datagram that does not fit (lowest offset first).
pub fn fragments(frame: &[u8], id: u16) -> Vec<Vec<u8>> {
    let mut f = frame.to_vec();
    set_ipv4_id(&mut f, id);
    ipv4_fragments(&f, FRAG_DATA)
        .unwrap_or_else(|| panic!("a frame of {} bytes does not fragment", frame.len()))
}

/// Every fragment that came out is its expected one byte for byte, IPv4
/// checksum included, and they reassemble into a datagram whose L4
/// checksum (in the first fragment, over the whole datagram) is right.
pub fn assert_fragments(outs: &[Vec<u8>], expected: &[Vec<u8>]) {
    assert_eq!(outs.len(), expected.len(), "number of fragments");
    for (i, (out, exp)) in outs.iter().zip(expected).enumerate() {
        assert!(ipv4_checksum_ok(out), "fragment {i}: IPv4 checksum");
        assert!(
            out == exp,
            "fragment {i} differs from the expected one:\n got {:02x?}\nwant {:02x?}",
            &out[..out.len().min(64)],
            &exp[..exp.len().min(64)]
        );
    }
    let whole = reassemble_ipv4(outs).expect("the fragments reassemble");
    assert!(
        l4_checksum_ok(&whole),
        "L4 checksum of the reassembled datagram"
    );
}

/// The `tw_frag4` key of a datagram.
pub fn frag_key(saddr: Ipv4Addr, daddr: Ipv4Addr, id: u16, proto: u8) -> Frag4Key {
    Frag4Key {
        saddr: be32(saddr),
        daddr: be32(daddr),
        id: be16(id),
        proto,
        pad: 0,
    }
}

impl Node {
    /// What `tw_frag4` holds for a datagram.
    pub fn frag(&self, key: &Frag4Key) -> Option<Frag4Entry> {
        self.maps.frag.get(key, 0).ok()
    }

    /// Runs every fragment through a program; each must get `verdict`.
    /// Returns the frames that came out.
    pub fn run_fragments(
        &self,
        object: &str,
        program: &str,
        frags: &[Vec<u8>],
        ifindex: u32,
        verdict: u32,
    ) -> Vec<Vec<u8>> {
        frags
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let run = self.run_on(object, program, f, ifindex);
                assert_eq!(
                    run.retval,
                    verdict,
                    "fragment {i} through {program} (drops {:?})",
                    self.maps.drop_counts()
                );
                run.out
            })
            .collect()
    }
}
