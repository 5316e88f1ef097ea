//! Typed handles on the policy maps of `bpf/abi/policy.h` (`tw_ipcache4`,
//! `tw_endpoints`, `tw_policy`), opened from their pins like
//! [`LbMaps`](super::LbMaps) (a separate handle, so that tools that only need
//! the LB maps keep working on nodes whose datapath predates policy).
//!
//! A policy is never edited in place: [`PolicyMaps::set_policy`] builds a
//! complete new inner trie and swaps it in with one update of the outer map,
//! so the datapath sees either the old policy or the new one, never a
//! half-written one. [`PolicyMaps::build_policy`] and
//! [`PolicyMaps::install_policy`] are the two halves, for callers that want
//! to prepare a policy before making it visible.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, HashOfMaps, IterableMap as _, LpmTrie, MapData, MapError, lpm_trie::Key};
use tollway_abi::{Endpoint, IpcacheEntry, PolicyEntry, PolicyKey, TW_POLICY_ENTRIES_MAX};

use super::maps::{MapFill, MapsError, open_typed};

/// `BPF_F_NO_PREALLOC`: LPM tries require it, and the inner tries must have
/// exactly the flags of the template in `bpf/lib/maps.h`.
const BPF_F_NO_PREALLOC: u32 = 1;
/// `BPF_NOEXIST`.
const BPF_NOEXIST: u64 = 1;

/// Prefix lengths of a policy key: identity (32) and direction (8) are
/// always matched, then the protocol (8), then 0..16 bits of the port.
const POLICY_PREFIX_MIN: u32 = 40;
const POLICY_PREFIX_PROTO: u32 = 48;
const POLICY_PREFIX_MAX: u32 = 64;

/// The data of a `tw_policy_key` after its prefix length, as aya's
/// [`lpm_trie::Key`](Key) wants it (the kernel's key is the prefix length
/// followed by these 8 bytes, the same layout as [`PolicyKey`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PolicyPrefix {
    /// Peer identity.
    pub identity: u32,
    /// `TW_POL_INGRESS` / `TW_POL_EGRESS`.
    pub egress: u8,
    /// Protocol, 0 = any.
    pub proto: u8,
    /// Destination port (`__be16`).
    pub dport: u16,
}

// SAFETY: `#[repr(C)]`, integers only, no padding (4 + 1 + 1 + 2 = 8, and
// the test below checks the size); every bit pattern is valid.
unsafe impl aya::Pod for PolicyPrefix {}

/// One endpoint's policy trie.
pub type PolicyTrie = LpmTrie<MapData, PolicyPrefix, PolicyEntry>;

/// The handles.
pub struct PolicyMaps {
    /// Address prefix (`__be32` data) -> identity.
    pub ipcache: LpmTrie<MapData, u32, IpcacheEntry>,
    /// Host-side veth ifindex -> endpoint.
    pub endpoints: HashMap<MapData, u32, Endpoint>,
    /// Endpoint id -> its policy trie.
    pub policy: HashOfMaps<MapData, u32, PolicyTrie>,
    dir: PathBuf,
}

/// A complete policy trie that is not (yet) installed: what
/// [`PolicyMaps::build_policy`] makes and [`PolicyMaps::install_policy`]
/// swaps in.
pub struct PolicyTable {
    trie: PolicyTrie,
    len: usize,
}

impl PolicyTable {
    /// Entries written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no entries (the endpoint's defaults then decide).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kernel's id of the trie (what the outer map holds once installed).
    pub fn map_id(&self) -> Result<u32, MapsError> {
        trie_id(&self.trie)
    }

    /// Its entries, read back from the kernel.
    pub fn entries(&self) -> Result<Vec<(PolicyKey, PolicyEntry)>, MapsError> {
        read_trie(&self.trie)
    }
}

/// The trie's file descriptor (e.g. for `/proc/self/fdinfo/<fd>`, where
/// the kernel reports the map's memory as `memlock:`).
impl std::os::fd::AsFd for PolicyTable {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.trie.map().fd())
    }
}

fn access(op: &'static str, name: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Access { op, name, source }
}

fn trie_id(trie: &PolicyTrie) -> Result<u32, MapsError> {
    trie.map()
        .info()
        .map(|i| i.id())
        .map_err(access("info", "tw_policy"))
}

fn read_trie(trie: &PolicyTrie) -> Result<Vec<(PolicyKey, PolicyEntry)>, MapsError> {
    trie.iter()
        .map(|item| {
            item.map(|(k, v)| (policy_key(&k), v))
                .map_err(access("read inner", "tw_policy"))
        })
        .collect()
}

fn policy_key(k: &Key<PolicyPrefix>) -> PolicyKey {
    let d = k.data();
    PolicyKey {
        prefixlen: k.prefix_len(),
        identity: d.identity,
        egress: d.egress,
        proto: d.proto,
        dport: d.dport,
    }
}

/// The trie key of `key`, with the bits beyond its prefix length cleared
/// (the kernel ignores them, so two keys that differ only there are the
/// same entry: clearing them makes that visible as a duplicate, and what is
/// read back is what the datapath matches).
fn trie_key(key: &PolicyKey) -> Result<Key<PolicyPrefix>, MapsError> {
    let plen = key.prefixlen;
    if !(POLICY_PREFIX_MIN..=POLICY_PREFIX_MAX).contains(&plen) {
        return Err(MapsError::Invalid {
            name: "tw_policy",
            what: format!(
                "prefix length {plen} of {key:?} is outside {POLICY_PREFIX_MIN}..={POLICY_PREFIX_MAX}"
            ),
        });
    }
    let (proto, dport) = if plen < POLICY_PREFIX_PROTO {
        (0, 0)
    } else {
        let port_bits = plen - POLICY_PREFIX_PROTO;
        let mask = u16::MAX.checked_shl(16 - port_bits).unwrap_or(0);
        (key.proto, (u16::from_be(key.dport) & mask).to_be())
    };
    Ok(Key::new(
        plen,
        PolicyPrefix {
            identity: key.identity,
            egress: key.egress,
            proto,
            dport,
        },
    ))
}

/// The ipcache key of `addr/prefix_len`, host bits cleared.
fn ipcache_key(addr: Ipv4Addr, prefix_len: u8) -> Result<Key<u32>, MapsError> {
    if prefix_len > 32 {
        return Err(MapsError::Invalid {
            name: "tw_ipcache4",
            what: format!("prefix length {prefix_len} of {addr} is beyond 32"),
        });
    }
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ok(Key::new(
        u32::from(prefix_len),
        (u32::from(addr) & mask).to_be(),
    ))
}

/// `Ok(false)` for a key that was not there.
fn removed(result: Result<(), MapError>, name: &'static str) -> Result<bool, MapsError> {
    match result {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(source) => Err(MapsError::Access {
            op: "delete",
            name,
            source,
        }),
    }
}

impl PolicyMaps {
    /// Open the policy maps from their pins in `dir`.
    pub fn open(dir: &Path) -> Result<PolicyMaps, MapsError> {
        Ok(PolicyMaps {
            ipcache: open_typed(dir, "tw_ipcache4")?,
            endpoints: open_typed(dir, "tw_endpoints")?,
            policy: open_typed(dir, "tw_policy")?,
            dir: dir.to_path_buf(),
        })
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Map `addr/prefix_len` (host bits are cleared) to `entry`.
    pub fn ipcache_upsert(
        &mut self,
        addr: Ipv4Addr,
        prefix_len: u8,
        entry: &IpcacheEntry,
    ) -> Result<(), MapsError> {
        let key = ipcache_key(addr, prefix_len)?;
        self.ipcache
            .insert(&key, entry, 0)
            .map_err(access("update", "tw_ipcache4"))
    }

    /// Remove the exact prefix `addr/prefix_len`; `false` if it was absent.
    pub fn ipcache_delete(&mut self, addr: Ipv4Addr, prefix_len: u8) -> Result<bool, MapsError> {
        let key = ipcache_key(addr, prefix_len)?;
        removed(self.ipcache.remove(&key), "tw_ipcache4")
    }

    /// Every prefix: `(address, prefix length, entry)`.
    pub fn ipcache_entries(&self) -> Result<Vec<(Ipv4Addr, u8, IpcacheEntry)>, MapsError> {
        self.ipcache
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(access("iterate", "tw_ipcache4"))?;
                // prefix_len <= 32: the kernel refuses longer ones.
                let plen = u8::try_from(k.prefix_len()).unwrap_or(u8::MAX);
                Ok((Ipv4Addr::from(u32::from_be(k.data())), plen, v))
            })
            .collect()
    }

    /// The entry the datapath finds for `addr` (longest prefix), if any; a
    /// miss means `TW_ID_WORLD` to the datapath.
    pub fn ipcache_lookup(&self, addr: Ipv4Addr) -> Result<Option<IpcacheEntry>, MapsError> {
        match self.ipcache.get(&ipcache_key(addr, 32)?, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(MapsError::Access {
                op: "lookup",
                name: "tw_ipcache4",
                source,
            }),
        }
    }

    /// Put (or replace) the endpoint behind host-side veth `ifindex`.
    ///
    /// Set `TW_EP_F_POLICY` only once its policy is installed (the datapath
    /// does not look for a policy without it), and clear it before
    /// [`delete_policy`](Self::delete_policy).
    pub fn endpoint_upsert(&mut self, ifindex: u32, endpoint: &Endpoint) -> Result<(), MapsError> {
        self.endpoints
            .insert(ifindex, endpoint, 0)
            .map_err(access("update", "tw_endpoints"))
    }

    /// Remove the endpoint of `ifindex` (its pod becomes unmanaged: allowed
    /// both ways); `false` if there was none.
    pub fn endpoint_delete(&mut self, ifindex: u32) -> Result<bool, MapsError> {
        removed(self.endpoints.remove(&ifindex), "tw_endpoints")
    }

    /// Every endpoint, by ifindex.
    pub fn endpoints(&self) -> Result<Vec<(u32, Endpoint)>, MapsError> {
        self.endpoints
            .iter()
            .map(|item| item.map_err(access("iterate", "tw_endpoints")))
            .collect()
    }

    /// Build a complete policy trie from `entries`, not yet visible to the
    /// datapath. Keys must have prefix lengths 40..=64 (bits beyond the
    /// prefix are cleared) and be distinct; counters start at the given
    /// entries' `packets`/`bytes` (normally 0).
    pub fn build_policy(entries: &[(PolicyKey, PolicyEntry)]) -> Result<PolicyTable, MapsError> {
        if entries.len() > TW_POLICY_ENTRIES_MAX as usize {
            return Err(MapsError::Invalid {
                name: "tw_policy",
                what: format!(
                    "{} entries, more than the {TW_POLICY_ENTRIES_MAX} an endpoint's policy holds",
                    entries.len()
                ),
            });
        }
        // The inner map definition must equal the template's (type, sizes,
        // max_entries, flags): the kernel refuses the insert otherwise.
        let mut trie = PolicyTrie::create(TW_POLICY_ENTRIES_MAX, BPF_F_NO_PREALLOC)
            .map_err(access("create inner", "tw_policy"))?;
        for (key, entry) in entries {
            let k = trie_key(key)?;
            match trie.insert(&k, entry, BPF_NOEXIST) {
                Ok(()) => {}
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
                {
                    return Err(MapsError::Invalid {
                        name: "tw_policy",
                        what: format!("duplicate key {:?}", policy_key(&k)),
                    });
                }
                Err(source) => {
                    return Err(MapsError::Access {
                        op: "fill inner",
                        name: "tw_policy",
                        source,
                    });
                }
            }
        }
        Ok(PolicyTable {
            trie,
            len: entries.len(),
        })
    }

    /// Make `table` the policy of `endpoint_id`: one update of the outer
    /// map, which replaces the previous trie (if any) atomically. Packets
    /// see the old trie or the new one; the old one's counters go with it.
    pub fn install_policy(
        &mut self,
        endpoint_id: u32,
        table: &PolicyTable,
    ) -> Result<(), MapsError> {
        self.policy
            .insert(endpoint_id, &table.trie, 0)
            .map_err(access("update", "tw_policy"))
    }

    /// Replace the policy of `endpoint_id` by `entries`: a new complete
    /// trie ([`build_policy`](Self::build_policy)) swapped in with one
    /// update ([`install_policy`](Self::install_policy)); the live trie is
    /// never edited. On error, the previous policy stays in place.
    pub fn set_policy(
        &mut self,
        endpoint_id: u32,
        entries: &[(PolicyKey, PolicyEntry)],
    ) -> Result<(), MapsError> {
        let table = Self::build_policy(entries)?;
        self.install_policy(endpoint_id, &table)
    }

    /// Remove the policy of `endpoint_id` (only the endpoint's defaults
    /// apply then); `false` if it had none.
    pub fn delete_policy(&mut self, endpoint_id: u32) -> Result<bool, MapsError> {
        removed(self.policy.remove(&endpoint_id), "tw_policy")
    }

    /// The kernel's id of the trie installed for `endpoint_id`, if any.
    pub fn policy_map_id(&self, endpoint_id: u32) -> Result<Option<u32>, MapsError> {
        match self.policy.get(&endpoint_id, 0) {
            Ok(trie) => trie_id(&trie).map(Some),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(MapsError::Access {
                op: "lookup",
                name: "tw_policy",
                source,
            }),
        }
    }

    /// The installed policy of `endpoint_id` with its live hit counters
    /// (empty if it has none).
    pub fn policy_entries(
        &self,
        endpoint_id: u32,
    ) -> Result<Vec<(PolicyKey, PolicyEntry)>, MapsError> {
        match self.policy.get(&endpoint_id, 0) {
            Ok(trie) => read_trie(&trie),
            Err(MapError::KeyNotFound) => Ok(Vec::new()),
            Err(source) => Err(MapsError::Access {
                op: "lookup",
                name: "tw_policy",
                source,
            }),
        }
    }

    /// Endpoint ids that have a policy installed.
    pub fn policy_endpoints(&self) -> Result<Vec<u32>, MapsError> {
        self.policy
            .keys()
            .map(|k| k.map_err(access("iterate", "tw_policy")))
            .collect()
    }

    /// Size and use of the policy maps (for `tollway status`).
    pub fn fill(&self) -> Vec<MapFill> {
        fn count<K: aya::Pod>(keys: aya::maps::MapKeys<'_, K>) -> u32 {
            keys.filter(Result::is_ok).count() as u32
        }
        let max = |name: &'static str| {
            MapData::from_pin(self.dir.join(name))
                .ok()
                .and_then(|m| m.info().ok())
                .map_or(0, |i| i.max_entries())
        };
        vec![
            MapFill {
                name: "tw_ipcache4",
                max_entries: max("tw_ipcache4"),
                in_use: count(self.ipcache.keys()),
            },
            MapFill {
                name: "tw_endpoints",
                max_entries: max("tw_endpoints"),
                in_use: count(self.endpoints.keys()),
            },
            MapFill {
                name: "tw_policy",
                max_entries: max("tw_policy"),
                in_use: count(self.policy.keys()),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_key_layout_matches_the_abi() {
        assert_eq!(size_of::<Key<PolicyPrefix>>(), size_of::<PolicyKey>());
        assert_eq!(size_of::<PolicyPrefix>(), 8);
        assert_eq!(size_of::<Key<u32>>(), size_of::<tollway_abi::IpcacheKey>());
    }

    #[test]
    fn trie_keys_are_canonical_and_checked() {
        let key = |prefixlen, proto, port: u16| PolicyKey {
            prefixlen,
            identity: 300,
            egress: 1,
            proto,
            dport: port.to_be(),
        };
        let k = trie_key(&key(64, 6, 8080)).unwrap();
        assert_eq!(policy_key(&k), key(64, 6, 8080));
        // 8080..=8087 is /61: the 3 low bits are cleared.
        assert_eq!(
            policy_key(&trie_key(&key(61, 6, 8085)).unwrap()),
            key(61, 6, 8080)
        );
        // Any port of TCP, and any protocol.
        assert_eq!(
            policy_key(&trie_key(&key(48, 6, 443)).unwrap()),
            key(48, 6, 0)
        );
        assert_eq!(
            policy_key(&trie_key(&key(40, 6, 443)).unwrap()),
            key(40, 0, 0)
        );
        for bad in [0, 32, 39, 65] {
            assert!(trie_key(&key(bad, 6, 80)).is_err(), "prefix {bad}");
        }
        let k = ipcache_key(Ipv4Addr::new(10, 1, 2, 3), 16).unwrap();
        assert_eq!(
            (k.prefix_len(), Ipv4Addr::from(u32::from_be(k.data()))),
            (16, Ipv4Addr::new(10, 1, 0, 0))
        );
        assert_eq!(
            ipcache_key(Ipv4Addr::new(10, 1, 2, 3), 0).unwrap().data(),
            0
        );
        assert!(ipcache_key(Ipv4Addr::LOCALHOST, 33).is_err());
    }
}
