//! Typed handles on the maps of `bpf/abi/lb.h`, `ct.h`, `frag.h` and
//! `drop.h`, opened from their pins
//! (`/sys/fs/bpf/tollway/<lab>/<node>/<map>`), so that the agent, the CLI
//! and tests all see the same kernel objects. The maps of `policy.h` have
//! their own handles, [`PolicyMaps`](super::PolicyMaps).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, HashOfMaps, LpmTrie, Map, MapData, MapError, PerCpuArray};
use tollway_abi::{
    Config, Ct4Key, CtEntry, Frag4Entry, Frag4Key, Lb4AffinityKey, Lb4Backend, Lb4Key,
    Lb4ReverseSk, Lb4ReverseSkKey, Lb4Revnat, Lb4Service, LbAffinity, Nat4Entry, TW_DROPS_MAX,
    TW_LB_SRC_RANGE_FIXED_BITS,
};

/// The data of a `tw_lb4_src_range_key` after its prefix length, as aya's
/// [`lpm_trie::Key`](Key) wants it (the kernel's key is the prefix length
/// followed by these 8 bytes, the layout of
/// [`Lb4SrcRangeKey`](tollway_abi::Lb4SrcRangeKey)).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SrcRangePrefix {
    /// The frontend's reverse-NAT index.
    pub rev_nat_index: u16,
    /// Zero.
    pub pad: u16,
    /// The range's network address (`__be32`).
    pub address: u32,
}

// SAFETY: `#[repr(C)]`, integers only, no padding (2 + 2 + 4 = 8, and the
// test below checks the size); every bit pattern is valid.
unsafe impl aya::Pod for SrcRangePrefix {}

/// The value of every `tw_lb4_srcrange` entry.
const SRC_RANGE_PRESENT: u8 = 1;

/// Every map of the node datapath, by pinned name.
pub const MAP_NAMES: &[&str] = &[
    "tw_lb4_services",
    "tw_lb4_backends",
    "tw_lb4_revnat",
    "tw_lb4_maglev",
    "tw_lb4_affinity",
    "tw_lb4_rev_sk",
    "tw_lb4_srcrange",
    "tw_sock_skip",
    "tw_config",
    "tw_ct4",
    "tw_np_nat4",
    "tw_frag4",
    "tw_drops",
    "tw_ipcache4",
    "tw_endpoints",
    "tw_policy",
    "tw_events",
    "tw_events_cfg",
    "tw_events_lost",
];

/// Errors of map access.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    /// A pinned map could not be opened.
    #[error("cannot open pinned map {path}")]
    Open {
        /// The pin.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// A map has another type than expected.
    #[error("map {name} has an unexpected type")]
    Type {
        /// Map name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// A lookup, update or delete failed.
    #[error("{op} on map {name} failed")]
    Access {
        /// What was done.
        op: &'static str,
        /// Map name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// What was to be written is not valid for the map.
    #[error("invalid content for map {name}: {what}")]
    Invalid {
        /// Map name.
        name: &'static str,
        /// What is wrong.
        what: String,
    },
}

/// Size and use of one map (for `tollway status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MapFill {
    /// Map name.
    pub name: &'static str,
    /// Capacity.
    pub max_entries: u32,
    /// Entries in use (for per-CPU arrays: non-zero entries).
    pub in_use: u32,
}

/// The node datapath's maps.
pub struct LbMaps {
    /// Frontends and their backend slots.
    pub services: HashMap<MapData, Lb4Key, Lb4Service>,
    /// Backends by id.
    pub backends: HashMap<MapData, u32, Lb4Backend>,
    /// Frontends by rev NAT index.
    pub revnat: HashMap<MapData, u32, Lb4Revnat>,
    /// Maglev tables by rev NAT index (inner arrays of backend ids).
    pub maglev: HashOfMaps<MapData, u32, Array<MapData, u32>>,
    /// ClientIP affinity.
    pub affinity: HashMap<MapData, Lb4AffinityKey, LbAffinity>,
    /// Socket LB reverse translations.
    pub rev_sk: HashMap<MapData, Lb4ReverseSkKey, Lb4ReverseSk>,
    /// Source ranges of LoadBalancer frontends (`TW_SVC_F_SRC_RANGE`).
    pub src_range: LpmTrie<MapData, SrcRangePrefix, u8>,
    /// cgroups whose sockets skip the socket LB (use the tc path).
    pub sock_skip: HashMap<MapData, u64, u32>,
    /// Node settings (entry 0).
    pub config: Array<MapData, Config>,
    /// Connection tracking.
    pub ct: HashMap<MapData, Ct4Key, CtEntry>,
    /// NodePort SNAT translations.
    pub np_nat: HashMap<MapData, Ct4Key, Nat4Entry>,
    /// IPv4 fragment tracking: the first fragments' L4 headers (written by
    /// the datapath only).
    pub frag: HashMap<MapData, Frag4Key, Frag4Entry>,
    /// Drop counters by reason (per CPU).
    pub drops: PerCpuArray<MapData, u64>,
    dir: PathBuf,
}

fn open(dir: &Path, name: &'static str) -> Result<Map, MapsError> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(|source| MapsError::Open {
        path: path.clone(),
        source,
    })?;
    Map::from_map_data(data).map_err(|source| MapsError::Open { path, source })
}

/// Opens the pin `name` in `dir` as a typed map.
pub(super) fn open_typed<T>(dir: &Path, name: &'static str) -> Result<T, MapsError>
where
    T: TryFrom<Map, Error = MapError>,
{
    open(dir, name)?
        .try_into()
        .map_err(|source| MapsError::Type { name, source })
}

macro_rules! typed {
    ($dir:expr, $name:literal) => {
        open($dir, $name)?
            .try_into()
            .map_err(|source| MapsError::Type {
                name: $name,
                source,
            })?
    };
}

impl LbMaps {
    /// Open every map from its pin in `dir`.
    pub fn open(dir: &Path) -> Result<LbMaps, MapsError> {
        Ok(LbMaps {
            services: typed!(dir, "tw_lb4_services"),
            backends: typed!(dir, "tw_lb4_backends"),
            revnat: typed!(dir, "tw_lb4_revnat"),
            maglev: typed!(dir, "tw_lb4_maglev"),
            affinity: typed!(dir, "tw_lb4_affinity"),
            rev_sk: typed!(dir, "tw_lb4_rev_sk"),
            src_range: typed!(dir, "tw_lb4_srcrange"),
            sock_skip: typed!(dir, "tw_sock_skip"),
            config: typed!(dir, "tw_config"),
            ct: typed!(dir, "tw_ct4"),
            np_nat: typed!(dir, "tw_np_nat4"),
            frag: typed!(dir, "tw_frag4"),
            drops: typed!(dir, "tw_drops"),
            dir: dir.to_path_buf(),
        })
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Node settings.
    pub fn config(&self) -> Result<Config, MapsError> {
        self.config.get(&0, 0).map_err(|source| MapsError::Access {
            op: "lookup",
            name: "tw_config",
            source,
        })
    }

    /// Write node settings.
    pub fn set_config(&mut self, cfg: &Config) -> Result<(), MapsError> {
        self.config
            .set(0, cfg, 0)
            .map_err(|source| MapsError::Access {
                op: "update",
                name: "tw_config",
                source,
            })
    }

    /// Install (or atomically replace) the Maglev table of a frontend: a new
    /// inner array is filled completely, then swapped in with one update.
    pub fn set_maglev(&mut self, rev_nat_index: u16, table: &[u32]) -> Result<(), MapsError> {
        // The kernel compares map_flags when an inner map is inserted, and
        // the template of bpf/lib/maps.h has BPF_F_INNER_MAP (so that
        // tables of any size M are accepted): inner arrays need it too.
        const BPF_F_INNER_MAP: u32 = 0x1000;
        let len = u32::try_from(table.len()).unwrap_or(u32::MAX);
        let mut inner: Array<MapData, u32> =
            Array::create(len.max(1), BPF_F_INNER_MAP).map_err(|source| MapsError::Access {
                op: "create inner",
                name: "tw_lb4_maglev",
                source,
            })?;
        for (i, id) in table.iter().enumerate() {
            inner
                .set(i as u32, id, 0)
                .map_err(|source| MapsError::Access {
                    op: "fill inner",
                    name: "tw_lb4_maglev",
                    source,
                })?;
        }
        self.maglev
            .insert(u32::from(rev_nat_index), &inner, 0)
            .map_err(|source| MapsError::Access {
                op: "update",
                name: "tw_lb4_maglev",
                source,
            })
    }

    /// Remove a frontend's Maglev table.
    pub fn delete_maglev(&mut self, rev_nat_index: u16) -> Result<(), MapsError> {
        match self.maglev.remove(&u32::from(rev_nat_index)) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(MapsError::Access {
                op: "delete",
                name: "tw_lb4_maglev",
                source,
            }),
        }
    }

    /// The Maglev table of a frontend, if it has one.
    pub fn maglev_table(&self, rev_nat_index: u16) -> Result<Option<Vec<u32>>, MapsError> {
        match self.maglev.get(&u32::from(rev_nat_index), 0) {
            Ok(inner) => {
                let v: Result<Vec<u32>, MapError> = inner.iter().collect();
                v.map(Some).map_err(|source| MapsError::Access {
                    op: "read inner",
                    name: "tw_lb4_maglev",
                    source,
                })
            }
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(MapsError::Access {
                op: "lookup",
                name: "tw_lb4_maglev",
                source,
            }),
        }
    }

    /// Admit `address/prefix_len` (host bits are cleared) to the frontend
    /// with reverse-NAT index `rev_nat_index`.
    pub fn set_src_range(
        &mut self,
        rev_nat_index: u16,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), MapsError> {
        let key = src_range_key(rev_nat_index, address, prefix_len)?;
        self.src_range
            .insert(&key, SRC_RANGE_PRESENT, 0)
            .map_err(|source| MapsError::Access {
                op: "update",
                name: "tw_lb4_srcrange",
                source,
            })
    }

    /// Remove the exact range `address/prefix_len` of a frontend (absent:
    /// nothing to do).
    pub fn delete_src_range(
        &mut self,
        rev_nat_index: u16,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), MapsError> {
        let key = src_range_key(rev_nat_index, address, prefix_len)?;
        match self.src_range.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(source) => Err(MapsError::Access {
                op: "delete",
                name: "tw_lb4_srcrange",
                source,
            }),
        }
    }

    /// Every source range: `(rev_nat_index, network, prefix length)`.
    /// Entries a reader cannot make sense of (a prefix length outside the
    /// range part, a non-zero pad) are skipped.
    pub fn src_ranges(&self) -> Result<Vec<(u16, Ipv4Addr, u8)>, MapsError> {
        let mut out = Vec::new();
        for item in self.src_range.keys() {
            let k = item.map_err(|source| MapsError::Access {
                op: "iterate",
                name: "tw_lb4_srcrange",
                source,
            })?;
            if let Some(r) = src_range_of(&k) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Drop counters summed over CPUs, by reason code (non-zero only).
    pub fn drop_counts(&self) -> Result<Vec<(u8, u64)>, MapsError> {
        let mut out = Vec::new();
        for code in 0..TW_DROPS_MAX.min(256) {
            let v = self
                .drops
                .get(&code, 0)
                .map_err(|source| MapsError::Access {
                    op: "lookup",
                    name: "tw_drops",
                    source,
                })?;
            let total: u64 = v.iter().sum();
            if total > 0 {
                out.push((code as u8, total));
            }
        }
        Ok(out)
    }

    /// Size and use of every map.
    pub fn fill(&self) -> Vec<MapFill> {
        fn count<K: aya::Pod>(keys: aya::maps::MapKeys<'_, K>) -> u32 {
            keys.filter(Result::is_ok).count() as u32
        }
        let max = |name: &'static str| {
            aya::maps::MapData::from_pin(self.dir.join(name))
                .ok()
                .and_then(|m| m.info().ok())
                .map_or(0, |i| i.max_entries())
        };
        vec![
            MapFill {
                name: "tw_lb4_services",
                max_entries: max("tw_lb4_services"),
                in_use: count(self.services.keys()),
            },
            MapFill {
                name: "tw_lb4_backends",
                max_entries: max("tw_lb4_backends"),
                in_use: count(self.backends.keys()),
            },
            MapFill {
                name: "tw_lb4_revnat",
                max_entries: max("tw_lb4_revnat"),
                in_use: count(self.revnat.keys()),
            },
            MapFill {
                name: "tw_lb4_maglev",
                max_entries: max("tw_lb4_maglev"),
                in_use: count(self.maglev.keys()),
            },
            MapFill {
                name: "tw_lb4_affinity",
                max_entries: max("tw_lb4_affinity"),
                in_use: count(self.affinity.keys()),
            },
            MapFill {
                name: "tw_lb4_rev_sk",
                max_entries: max("tw_lb4_rev_sk"),
                in_use: count(self.rev_sk.keys()),
            },
            MapFill {
                name: "tw_lb4_srcrange",
                max_entries: max("tw_lb4_srcrange"),
                in_use: count(self.src_range.keys()),
            },
            MapFill {
                name: "tw_sock_skip",
                max_entries: max("tw_sock_skip"),
                in_use: count(self.sock_skip.keys()),
            },
            MapFill {
                name: "tw_ct4",
                max_entries: max("tw_ct4"),
                in_use: count(self.ct.keys()),
            },
            MapFill {
                name: "tw_np_nat4",
                max_entries: max("tw_np_nat4"),
                in_use: count(self.np_nat.keys()),
            },
            MapFill {
                name: "tw_frag4",
                max_entries: max("tw_frag4"),
                in_use: count(self.frag.keys()),
            },
        ]
    }
}

/// The trie key of a frontend's range `address/prefix_len`, host bits
/// cleared (the kernel ignores them; clearing makes what is read back what
/// the datapath matches).
fn src_range_key(
    rev_nat_index: u16,
    address: Ipv4Addr,
    prefix_len: u8,
) -> Result<Key<SrcRangePrefix>, MapsError> {
    if prefix_len > 32 {
        return Err(MapsError::Invalid {
            name: "tw_lb4_srcrange",
            what: format!("prefix length {prefix_len} of {address} is beyond 32"),
        });
    }
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ok(Key::new(
        TW_LB_SRC_RANGE_FIXED_BITS + u32::from(prefix_len),
        SrcRangePrefix {
            rev_nat_index,
            pad: 0,
            address: (u32::from(address) & mask).to_be(),
        },
    ))
}

/// `(rev_nat_index, network, prefix length)` of a trie key, if it is one
/// [`src_range_key`] can make.
fn src_range_of(k: &Key<SrcRangePrefix>) -> Option<(u16, Ipv4Addr, u8)> {
    let d = k.data();
    let plen = k.prefix_len().checked_sub(TW_LB_SRC_RANGE_FIXED_BITS)?;
    let plen = u8::try_from(plen).ok().filter(|p| *p <= 32)?;
    (d.pad == 0).then(|| {
        (
            d.rev_nat_index,
            Ipv4Addr::from(u32::from_be(d.address)),
            plen,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn src_range_key_layout_matches_the_abi() {
        assert_eq!(
            size_of::<Key<SrcRangePrefix>>(),
            size_of::<tollway_abi::Lb4SrcRangeKey>()
        );
        assert_eq!(size_of::<SrcRangePrefix>(), 8);
    }

    #[test]
    fn src_range_keys_are_canonical_and_checked() {
        let k = src_range_key(7, Ipv4Addr::new(10, 1, 2, 3), 16).unwrap();
        assert_eq!(k.prefix_len(), 48);
        assert_eq!(src_range_of(&k), Some((7, Ipv4Addr::new(10, 1, 0, 0), 16)));
        let all = src_range_key(9, Ipv4Addr::new(10, 1, 2, 3), 0).unwrap();
        assert_eq!((all.prefix_len(), all.data().address), (32, 0));
        assert_eq!(src_range_of(&all), Some((9, Ipv4Addr::UNSPECIFIED, 0)));
        let host = src_range_key(1, Ipv4Addr::new(203, 0, 113, 7), 32).unwrap();
        assert_eq!(
            src_range_of(&host),
            Some((1, Ipv4Addr::new(203, 0, 113, 7), 32))
        );
        assert!(src_range_key(1, Ipv4Addr::LOCALHOST, 33).is_err());
        // Keys no writer makes are not read as ranges.
        let short = Key::new(16, SrcRangePrefix::default());
        assert_eq!(src_range_of(&short), None);
        let padded = Key::new(
            40,
            SrcRangePrefix {
                pad: 1,
                ..SrcRangePrefix::default()
            },
        );
        assert_eq!(src_range_of(&padded), None);
    }
}
