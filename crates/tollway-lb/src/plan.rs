//! The applied state (what the BPF maps hold), and the ordered map writes
//! that take it to the desired state without a packet ever seeing a
//! half-written service.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use serde::{Serialize, Serializer};

use crate::LbError;
use crate::flags::{
    TW_BE_F_LOCAL, TW_BE_F_TERMINATING, TW_LB_BACKENDS_MAX, TW_LB_MAGLEV_MAX, TW_LB_SERVICES_MAX,
    TW_LB_SRC_RANGE_MAX, TW_SVC_F_SRC_RANGE,
};
use crate::maglev::maglev_table;
use crate::model::{Algorithm, BackendAddr, DesiredService, Frontend, LbConfig, SourceRange};

mod demand;
mod index;
mod scoped;

pub use demand::BackendDemand;
use index::{IndexCell, Indexes};
pub use scoped::plan_scoped;

/// A master entry of `tw_lb4_services` (backend slot 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AppliedService {
    /// Number of backend slots (1..=count) new flows choose from.
    pub count: u16,
    /// The service id: key of `tw_lb4_revnat` and `tw_lb4_maglev`; > 0.
    pub rev_nat_index: u16,
    /// `TW_SVC_F_*`.
    pub flags: u16,
    /// How new flows pick a backend.
    pub algorithm: Algorithm,
    /// ClientIP affinity timeout in seconds, 0 without affinity.
    pub affinity_timeout: u32,
}

/// An entry of `tw_lb4_backends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct AppliedBackend {
    /// Pod IP, target port, protocol.
    pub addr: BackendAddr,
    /// `TW_BE_F_LOCAL | TW_BE_F_TERMINATING`.
    pub flags: u8,
}

/// What the BPF maps hold, as the agent reads them back (and as
/// [`apply_to`] keeps it up to date).
///
/// Fill the public maps (starting from [`Applied::default`]), then change
/// it only through [`apply_to`]; if you change the maps directly after a
/// [`plan_scoped`], call [`Applied::rebuild_indexes`].
///
/// It mirrors the maps one to one, so that every intermediate state of a
/// plan (and the state after a crash mid-plan) can be expressed: slot
/// entries exist independently of their master, the master's count may be
/// smaller or larger than the number of slot entries, and Maglev tables are
/// keyed by reverse-NAT index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Master entries of `tw_lb4_services` (slot 0), by frontend.
    #[serde(serialize_with = "ser_services")]
    pub services: BTreeMap<Frontend, AppliedService>,
    /// Backend slot entries of `tw_lb4_services` (slot >= 1): backend id.
    #[serde(serialize_with = "ser_slots")]
    pub slots: BTreeMap<(Frontend, u16), u32>,
    /// `tw_lb4_backends`, by backend id.
    pub backends: BTreeMap<u32, AppliedBackend>,
    /// `tw_lb4_revnat`, by reverse-NAT index. The map stores only the
    /// address and port; when reading it back, take the protocol and scope
    /// from the master whose `rev_nat_index` it is.
    pub revnat: BTreeMap<u16, Frontend>,
    /// `tw_lb4_maglev`: the inner table (M backend ids) by reverse-NAT index.
    pub maglev: BTreeMap<u16, Vec<u32>>,
    /// `tw_lb4_srcrange`: (reverse-NAT index, range) of every entry: the
    /// clients a frontend with `TW_SVC_F_SRC_RANGE` admits.
    #[serde(serialize_with = "ser_src_ranges")]
    pub src_ranges: BTreeSet<(u16, SourceRange)>,
    /// Indexes derived from the six maps for [`plan_scoped`]: built on
    /// first use (or by [`Applied::rebuild_indexes`]) and kept in step by
    /// [`apply_to`]. Not part of the value: ignored by `==`, not serialized.
    #[serde(skip)]
    index: IndexCell,
}

fn ser_services<S: Serializer>(
    m: &BTreeMap<Frontend, AppliedService>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        frontend: &'a Frontend,
        #[serde(flatten)]
        master: &'a AppliedService,
    }
    s.collect_seq(
        m.iter()
            .map(|(frontend, master)| Entry { frontend, master }),
    )
}

fn ser_slots<S: Serializer>(m: &BTreeMap<(Frontend, u16), u32>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        frontend: &'a Frontend,
        slot: u16,
        backend_id: u32,
    }
    s.collect_seq(m.iter().map(|((frontend, slot), id)| Entry {
        frontend,
        slot: *slot,
        backend_id: *id,
    }))
}

fn ser_src_ranges<S: Serializer>(
    m: &BTreeSet<(u16, SourceRange)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry {
        rev_nat_index: u16,
        range: SourceRange,
    }
    s.collect_seq(m.iter().map(|(rev_nat_index, range)| Entry {
        rev_nat_index: *rev_nat_index,
        range: *range,
    }))
}

/// A way in which an applied state could mislead a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Inconsistency {
    /// A master counts a slot that does not exist.
    MissingSlot {
        /// The service.
        frontend: Frontend,
        /// The slot.
        slot: u16,
    },
    /// A counted slot names a backend that does not exist.
    SlotWithoutBackend {
        /// The service.
        frontend: Frontend,
        /// The slot.
        slot: u16,
        /// The missing backend.
        backend_id: u32,
    },
    /// A master's reverse-NAT entry does not exist.
    MissingRevNat {
        /// The service.
        frontend: Frontend,
        /// Its index.
        rev_nat_index: u16,
    },
    /// A Maglev master with backends has no (or an empty) table.
    MissingMaglev {
        /// The service.
        frontend: Frontend,
        /// Its index.
        rev_nat_index: u16,
    },
    /// A Maglev table in use names a backend that does not exist.
    MaglevWithoutBackend {
        /// The service.
        frontend: Frontend,
        /// Its index.
        rev_nat_index: u16,
        /// The missing backend.
        backend_id: u32,
    },
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inconsistency::MissingSlot { frontend, slot } => {
                write!(f, "{frontend}: slot {slot} is counted but missing")
            }
            Inconsistency::SlotWithoutBackend {
                frontend,
                slot,
                backend_id,
            } => write!(
                f,
                "{frontend}: slot {slot} names missing backend {backend_id}"
            ),
            Inconsistency::MissingRevNat {
                frontend,
                rev_nat_index,
            } => write!(
                f,
                "{frontend}: reverse-NAT entry {rev_nat_index} is missing"
            ),
            Inconsistency::MissingMaglev {
                frontend,
                rev_nat_index,
            } => write!(f, "{frontend}: Maglev table {rev_nat_index} is missing"),
            Inconsistency::MaglevWithoutBackend {
                frontend,
                rev_nat_index,
                backend_id,
            } => write!(
                f,
                "{frontend}: Maglev table {rev_nat_index} names missing backend {backend_id}"
            ),
        }
    }
}

impl Applied {
    /// Rebuild the indexes [`plan_scoped`] uses from the maps, now (they are
    /// otherwise built on the first scoped plan). O(size of the maps). Call
    /// it after filling or changing the public maps directly; [`apply_to`]
    /// keeps them in step by itself.
    pub fn rebuild_indexes(&mut self) {
        let ix = Indexes::build(self);
        self.index = IndexCell(OnceLock::from(ix));
    }

    /// The indexes if they are in step with the maps (built now if never
    /// built); `None` if the maps were changed behind [`apply_to`]'s back.
    fn indexes(&self) -> Option<&Indexes> {
        let ix = self.index.0.get_or_init(|| Indexes::build(self));
        ix.fresh(self).then_some(ix)
    }

    /// The source ranges of one reverse-NAT index, in order.
    pub fn src_ranges_of(&self, index: u16) -> impl Iterator<Item = SourceRange> + '_ {
        self.src_ranges
            .range((index, SourceRange::MIN)..=(index, SourceRange::MAX))
            .map(|(_, r)| *r)
    }

    /// The slot entries of one frontend, by slot.
    pub fn slots_of(&self, frontend: &Frontend) -> impl Iterator<Item = (u16, u32)> + '_ {
        self.slots
            .range((*frontend, 0)..=(*frontend, u16::MAX))
            .map(|((_, slot), id)| (*slot, *id))
    }

    /// Everything the datapath could read and trip over: counted slots that
    /// are missing or name missing backends, missing reverse-NAT entries,
    /// missing Maglev tables or tables naming missing backends. Empty for
    /// every state a plan passes through.
    pub fn inconsistencies(&self) -> Vec<Inconsistency> {
        let mut out = Vec::new();
        for (frontend, m) in &self.services {
            let frontend = *frontend;
            for slot in 1..=m.count {
                match self.slots.get(&(frontend, slot)) {
                    None => out.push(Inconsistency::MissingSlot { frontend, slot }),
                    Some(id) if !self.backends.contains_key(id) => {
                        out.push(Inconsistency::SlotWithoutBackend {
                            frontend,
                            slot,
                            backend_id: *id,
                        });
                    }
                    Some(_) => {}
                }
            }
            let rev_nat_index = m.rev_nat_index;
            if !self.revnat.contains_key(&rev_nat_index) {
                out.push(Inconsistency::MissingRevNat {
                    frontend,
                    rev_nat_index,
                });
            }
            if m.algorithm == Algorithm::Maglev && m.count > 0 {
                match self.maglev.get(&rev_nat_index) {
                    Some(t) if !t.is_empty() => {
                        let missing: BTreeSet<u32> = t
                            .iter()
                            .filter(|id| !self.backends.contains_key(id))
                            .copied()
                            .collect();
                        out.extend(missing.into_iter().map(|backend_id| {
                            Inconsistency::MaglevWithoutBackend {
                                frontend,
                                rev_nat_index,
                                backend_id,
                            }
                        }));
                    }
                    _ => out.push(Inconsistency::MissingMaglev {
                        frontend,
                        rev_nat_index,
                    }),
                }
            }
        }
        out
    }
}

/// One BPF map write. The agent executes a plan's ops in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Write `tw_lb4_backends[id]`.
    UpsertBackend {
        /// Backend id.
        id: u32,
        /// The entry.
        backend: AppliedBackend,
    },
    /// Delete `tw_lb4_backends[id]`.
    DeleteBackend {
        /// Backend id.
        id: u32,
    },
    /// Write `tw_lb4_revnat[index]` (address and port of the frontend).
    UpsertRevNat {
        /// Reverse-NAT index.
        index: u16,
        /// The frontend.
        frontend: Frontend,
    },
    /// Delete `tw_lb4_revnat[index]`.
    DeleteRevNat {
        /// Reverse-NAT index.
        index: u16,
    },
    /// Write the slot entry `(frontend, slot)` with `backend_id`.
    UpsertSlot {
        /// The service.
        frontend: Frontend,
        /// The slot, from 1.
        slot: u16,
        /// The backend.
        backend_id: u32,
    },
    /// Delete the slot entry `(frontend, slot)`.
    DeleteSlot {
        /// The service.
        frontend: Frontend,
        /// The slot, from 1.
        slot: u16,
    },
    /// Write the master entry `(frontend, 0)`.
    UpsertMaster {
        /// The service.
        frontend: Frontend,
        /// Number of slots.
        count: u16,
        /// The service id.
        rev_nat_index: u16,
        /// `TW_SVC_F_*`.
        flags: u16,
        /// The algorithm.
        algorithm: Algorithm,
        /// Affinity timeout, 0 for none.
        affinity_timeout: u32,
    },
    /// Delete the master entry `(frontend, 0)`.
    DeleteMaster {
        /// The service.
        frontend: Frontend,
    },
    /// Build an inner array with `table` and swap it in at
    /// `tw_lb4_maglev[index]`.
    SetMaglev {
        /// Reverse-NAT index of the service.
        index: u16,
        /// M backend ids.
        table: Vec<u32>,
    },
    /// Delete `tw_lb4_maglev[index]`.
    DeleteMaglev {
        /// Reverse-NAT index.
        index: u16,
    },
    /// Write the `tw_lb4_srcrange` entry admitting `range` to the frontend
    /// with reverse-NAT index `index`.
    UpsertSrcRange {
        /// Reverse-NAT index.
        index: u16,
        /// The range.
        range: SourceRange,
    },
    /// Delete the `tw_lb4_srcrange` entry `(index, range)`.
    DeleteSrcRange {
        /// Reverse-NAT index.
        index: u16,
        /// The range.
        range: SourceRange,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::UpsertBackend { id, backend } => write!(
                f,
                "upsert backend {id} {} flags {:#04x}",
                backend.addr, backend.flags
            ),
            Op::DeleteBackend { id } => write!(f, "delete backend {id}"),
            Op::UpsertRevNat { index, frontend } => {
                write!(f, "upsert revnat {index} {frontend}")
            }
            Op::DeleteRevNat { index } => write!(f, "delete revnat {index}"),
            Op::UpsertSlot {
                frontend,
                slot,
                backend_id,
            } => write!(f, "upsert slot {frontend} #{slot} -> backend {backend_id}"),
            Op::DeleteSlot { frontend, slot } => write!(f, "delete slot {frontend} #{slot}"),
            Op::UpsertMaster {
                frontend,
                count,
                rev_nat_index,
                flags,
                algorithm,
                affinity_timeout,
            } => write!(
                f,
                "upsert master {frontend} count {count} revnat {rev_nat_index} flags {flags:#06x} {algorithm} affinity {affinity_timeout}"
            ),
            Op::DeleteMaster { frontend } => write!(f, "delete master {frontend}"),
            Op::SetMaglev { index, table } => {
                write!(f, "set maglev {index} ({} entries)", table.len())
            }
            Op::DeleteMaglev { index } => write!(f, "delete maglev {index}"),
            Op::UpsertSrcRange { index, range } => write!(f, "upsert src range {index} {range}"),
            Op::DeleteSrcRange { index, range } => write!(f, "delete src range {index} {range}"),
        }
    }
}

/// The model of executing `op`: what the maps hold afterwards (and the
/// indexes of [`Applied`], if built, kept in step).
pub fn apply_to(applied: &mut Applied, op: &Op) {
    let mut cell = std::mem::take(&mut applied.index);
    match cell.0.get_mut() {
        Some(ix) => ix.apply(applied, op),
        None => apply_maps(applied, op),
    }
    applied.index = cell;
}

/// [`apply_to`] on the maps only.
fn apply_maps(applied: &mut Applied, op: &Op) {
    match op {
        Op::UpsertBackend { id, backend } => {
            applied.backends.insert(*id, *backend);
        }
        Op::DeleteBackend { id } => {
            applied.backends.remove(id);
        }
        Op::UpsertRevNat { index, frontend } => {
            applied.revnat.insert(*index, *frontend);
        }
        Op::DeleteRevNat { index } => {
            applied.revnat.remove(index);
        }
        Op::UpsertSlot {
            frontend,
            slot,
            backend_id,
        } => {
            applied.slots.insert((*frontend, *slot), *backend_id);
        }
        Op::DeleteSlot { frontend, slot } => {
            applied.slots.remove(&(*frontend, *slot));
        }
        Op::UpsertMaster {
            frontend,
            count,
            rev_nat_index,
            flags,
            algorithm,
            affinity_timeout,
        } => {
            applied.services.insert(
                *frontend,
                AppliedService {
                    count: *count,
                    rev_nat_index: *rev_nat_index,
                    flags: *flags,
                    algorithm: *algorithm,
                    affinity_timeout: *affinity_timeout,
                },
            );
        }
        Op::DeleteMaster { frontend } => {
            applied.services.remove(frontend);
        }
        Op::SetMaglev { index, table } => {
            applied.maglev.insert(*index, table.clone());
        }
        Op::DeleteMaglev { index } => {
            applied.maglev.remove(index);
        }
        Op::UpsertSrcRange { index, range } => {
            applied.src_ranges.insert((*index, *range));
        }
        Op::DeleteSrcRange { index, range } => {
            applied.src_ranges.remove(&(*index, *range));
        }
    }
}

/// Backend flags by address, as [`BackendDemand`] gives them.
trait BackendFlags {
    /// The entry flags of a needed address; `None` if no service lists it.
    fn flags(&self, addr: &BackendAddr) -> Option<u8>;

    /// The addresses a service's slots hold, in slot order: its active
    /// backends that are terminating nowhere.
    fn active(&self, d: &DesiredService) -> Vec<BackendAddr> {
        let set: BTreeSet<BackendAddr> = d
            .backends
            .iter()
            .filter(|b| self.flags(b).is_some_and(|f| f & TW_BE_F_TERMINATING == 0))
            .copied()
            .collect();
        set.into_iter().collect()
    }
}

impl BackendFlags for BackendDemand {
    fn flags(&self, addr: &BackendAddr) -> Option<u8> {
        BackendDemand::flags(self, addr)
    }
}

/// The flags of [`BackendDemand::new`] without its bookkeeping for
/// incremental use (which frontend lists what): what a full plan needs.
struct BackendView {
    flags: BTreeMap<BackendAddr, u8>,
}

impl BackendView {
    fn new(desired: &[DesiredService]) -> BackendView {
        let mut flags: BTreeMap<BackendAddr, u8> = BTreeMap::new();
        for d in desired {
            for b in &d.backends {
                flags.entry(*b).or_insert(0);
            }
            for b in &d.terminating {
                *flags.entry(*b).or_insert(0) |= TW_BE_F_TERMINATING;
            }
            // Local counts for the addresses the service lists.
            for b in &d.local {
                if d.backends.contains(b) || d.terminating.contains(b) {
                    *flags.entry(*b).or_insert(0) |= TW_BE_F_LOCAL;
                }
            }
        }
        BackendView { flags }
    }
}

impl BackendFlags for BackendView {
    fn flags(&self, addr: &BackendAddr) -> Option<u8> {
        self.flags.get(addr).copied()
    }
}

/// The target state of one frontend, with ids resolved.
struct Target<'a> {
    desired: &'a DesiredService,
    master: AppliedService,
    slots: Vec<u32>,
    table: Option<Vec<u32>>,
    /// Its entries in `tw_lb4_srcrange` (none without `TW_SVC_F_SRC_RANGE`).
    ranges: BTreeSet<SourceRange>,
}

/// The target state with ids resolved against the applied state.
struct Resolved<'a> {
    backends: BTreeMap<u32, AppliedBackend>,
    revnat: BTreeMap<u16, Frontend>,
    services: Vec<Target<'a>>,
}

fn check_duplicates(desired: &[DesiredService]) -> Result<(), LbError> {
    let mut seen: BTreeMap<Frontend, &DesiredService> = BTreeMap::new();
    for d in desired {
        if let Some(first) = seen.insert(d.frontend, d) {
            return Err(LbError::DuplicateFrontend {
                frontend: d.frontend,
                first: first.service.to_string(),
                second: d.service.to_string(),
            });
        }
    }
    Ok(())
}

fn resolve<'a>(
    applied: &Applied,
    desired: &'a [DesiredService],
    cfg: &LbConfig,
) -> Result<Resolved<'a>, LbError> {
    check_duplicates(desired)?;
    let view = BackendView::new(desired);
    if view.flags.len() > TW_LB_BACKENDS_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_backends",
            needed: view.flags.len(),
            max: TW_LB_BACKENDS_MAX,
        });
    }

    // Backend ids: an existing address keeps its (lowest) id; new ones get
    // the lowest ids not in the map.
    let mut existing: BTreeMap<BackendAddr, u32> = BTreeMap::new();
    for (id, b) in &applied.backends {
        existing.entry(b.addr).or_insert(*id);
    }
    let mut ids: BTreeMap<BackendAddr, u32> = BTreeMap::new();
    let mut backends = BTreeMap::new();
    // A u64 cursor: ids go up to u32::MAX and the cursor one past it.
    let mut next_id: u64 = 1;
    for (addr, flags) in &view.flags {
        let (addr, flags) = (*addr, *flags);
        let id = match existing.get(&addr) {
            Some(id) => *id,
            None => {
                while u32::try_from(next_id).is_ok_and(|id| applied.backends.contains_key(&id)) {
                    next_id += 1;
                }
                let id = u32::try_from(next_id).map_err(|_| LbError::BackendIdsExhausted {
                    in_use: applied.backends.len() + ids.len(),
                })?;
                next_id += 1;
                id
            }
        };
        ids.insert(addr, id);
        backends.insert(id, AppliedBackend { addr, flags });
    }

    let indexes = rev_nat_indexes(applied, desired)?;

    let mut services = Vec::with_capacity(desired.len());
    let mut entries = 0usize;
    let mut tables = 0usize;
    let mut ranges = 0usize;
    for d in desired {
        let t = target(d, &view, &ids, indexes[&d.frontend], cfg)?;
        entries += 1 + t.slots.len();
        tables += usize::from(t.table.is_some());
        ranges += t.ranges.len();
        services.push(t);
    }
    if entries > TW_LB_SERVICES_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_services",
            needed: entries,
            max: TW_LB_SERVICES_MAX,
        });
    }
    if tables > TW_LB_MAGLEV_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_maglev",
            needed: tables,
            max: TW_LB_MAGLEV_MAX,
        });
    }
    if ranges > TW_LB_SRC_RANGE_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_srcrange",
            needed: ranges,
            max: TW_LB_SRC_RANGE_MAX,
        });
    }
    services.sort_by_key(|t| t.desired.frontend);
    let revnat = services
        .iter()
        .map(|t| (t.master.rev_nat_index, t.desired.frontend))
        .collect();
    Ok(Resolved {
        backends,
        revnat,
        services,
    })
}

/// The target of one desired service: its active backends' ids in address
/// order, its master, its Maglev table.
fn target<'a>(
    d: &'a DesiredService,
    view: &impl BackendFlags,
    ids: &BTreeMap<BackendAddr, u32>,
    rev_nat_index: u16,
    cfg: &LbConfig,
) -> Result<Target<'a>, LbError> {
    let active = view.active(d);
    let count = u16::try_from(active.len()).map_err(|_| LbError::TooManyBackends {
        frontend: d.frontend,
        service: d.service.to_string(),
        backends: active.len(),
    })?;
    let slots: Vec<u32> = active.iter().map(|a| ids[a]).collect();
    let table = if d.algorithm == Algorithm::Maglev && !active.is_empty() {
        let names: Vec<String> = active.iter().map(ToString::to_string).collect();
        let pairs: Vec<(u32, &str)> = slots
            .iter()
            .zip(&names)
            .map(|(id, n)| (*id, n.as_str()))
            .collect();
        Some(maglev_table(&pairs, cfg.maglev_m)?)
    } else {
        None
    };
    Ok(Target {
        desired: d,
        master: AppliedService {
            count,
            rev_nat_index,
            flags: d.flags(),
            algorithm: d.algorithm,
            affinity_timeout: d.affinity_timeout.unwrap_or(0),
        },
        slots,
        table,
        ranges: d.src_ranges().iter().copied().collect(),
    })
}

/// Step 2 of a plan for one service: its slots, Maglev table and master in
/// the order that keeps it whole, then its slots beyond the new count; its
/// source ranges around them: new ones before the master (so that a master
/// getting `TW_SVC_F_SRC_RANGE` finds them), stale ones after it while the
/// master is flagged at this index now (the old ones admit until the new
/// ones do, and until the flag goes), else before it (an entry of an index
/// whose master is not flagged is consulted by nobody).
fn service_ops(
    applied: &Applied,
    t: &Target<'_>,
    wanted_tables: &mut BTreeSet<u16>,
    ops: &mut Vec<Op>,
) {
    let frontend = t.desired.frontend;
    let old = applied.services.get(&frontend);
    let old_count = old.map_or(0, |m| m.count);
    let new_count = t.master.count;
    let master = (old != Some(&t.master)).then_some(Op::UpsertMaster {
        frontend,
        count: t.master.count,
        rev_nat_index: t.master.rev_nat_index,
        flags: t.master.flags,
        algorithm: t.master.algorithm,
        affinity_timeout: t.master.affinity_timeout,
    });
    let table = t.table.as_ref().and_then(|table| {
        let index = t.master.rev_nat_index;
        wanted_tables.insert(index);
        (applied.maglev.get(&index) != Some(table)).then(|| Op::SetMaglev {
            index,
            table: table.clone(),
        })
    });
    let mut slots = Vec::new();
    for (i, id) in t.slots.iter().enumerate() {
        // i < count <= u16::MAX.
        let slot = u16::try_from(i + 1).unwrap_or(u16::MAX);
        if applied.slots.get(&(frontend, slot)) != Some(id) {
            slots.push(Op::UpsertSlot {
                frontend,
                slot,
                backend_id: *id,
            });
        }
    }
    let stale = applied
        .slots_of(&frontend)
        .filter(|(slot, _)| *slot > new_count)
        .map(|(slot, _)| Op::DeleteSlot { frontend, slot });
    let index = t.master.rev_nat_index;
    let have: BTreeSet<SourceRange> = applied.src_ranges_of(index).collect();
    let add = t.ranges.difference(&have).map(|range| Op::UpsertSrcRange {
        index,
        range: *range,
    });
    let remove = have.difference(&t.ranges).map(|range| Op::DeleteSrcRange {
        index,
        range: *range,
    });
    let checked_now =
        old.is_some_and(|m| m.rev_nat_index == index && m.flags & TW_SVC_F_SRC_RANGE != 0);
    let mut ranges_after = Vec::new();
    if checked_now {
        ops.extend(add);
        ranges_after.extend(remove);
    } else {
        ops.extend(remove);
        ops.extend(add);
    }
    if new_count < old_count {
        ops.extend(table);
        ops.extend(master);
        ops.extend(slots);
    } else {
        ops.extend(slots);
        ops.extend(table);
        ops.extend(master);
    }
    ops.extend(stale);
    ops.extend(ranges_after);
}

/// Reverse-NAT indexes: a frontend keeps its master's index; else it takes
/// an unreferenced reverse-NAT entry already naming it (left by an
/// interrupted plan); else the lowest index in no map.
fn rev_nat_indexes(
    applied: &Applied,
    desired: &[DesiredService],
) -> Result<BTreeMap<Frontend, u16>, LbError> {
    let mut out: BTreeMap<Frontend, u16> = BTreeMap::new();
    let mut claimed: BTreeSet<u16> = BTreeSet::new();
    let wanted: BTreeSet<Frontend> = desired.iter().map(|d| d.frontend).collect();
    for f in &wanted {
        if let Some(m) = applied.services.get(f)
            && m.rev_nat_index != 0
            && claimed.insert(m.rev_nat_index)
        {
            out.insert(*f, m.rev_nat_index);
        }
    }
    let referenced: BTreeSet<u16> = applied.services.values().map(|m| m.rev_nat_index).collect();
    for (index, f) in &applied.revnat {
        if *index != 0
            && wanted.contains(f)
            && !out.contains_key(f)
            && !referenced.contains(index)
            && claimed.insert(*index)
        {
            out.insert(*f, *index);
        }
    }
    let mut next: u32 = 1;
    for f in &wanted {
        if out.contains_key(f) {
            continue;
        }
        let index = loop {
            let index = u16::try_from(next).map_err(|_| LbError::RevNatExhausted {
                in_use: claimed.len() + referenced.len(),
            })?;
            next += 1;
            let used = claimed.contains(&index)
                || referenced.contains(&index)
                || applied.revnat.contains_key(&index)
                || applied.maglev.contains_key(&index)
                || applied.src_ranges_of(index).next().is_some();
            if !used {
                break index;
            }
        };
        claimed.insert(index);
        out.insert(*f, index);
    }
    Ok(out)
}

/// The ordered map writes from `applied` to `desired`.
///
/// Nothing is flushed: unchanged services and backends produce no ops, and
/// planning again from the result gives no ops. Backend ids and reverse-NAT
/// indexes are kept; new ones are the lowest free (in no map). The order
/// keeps every state in between consistent (see
/// [`Applied::inconsistencies`]), and while a frontend exists it admits at
/// least the clients both the old and the new state admit (the one state's,
/// if the other lacks the frontend) and nobody neither admits:
///
/// 1. new or changed backends, new or changed reverse-NAT entries;
/// 2. per service (by frontend): new source ranges (and, unless the master
///    checks them now, stale ones); when it grows or stays: changed slots,
///    the Maglev table, then the master; when it shrinks: the Maglev table,
///    the master (smaller count) first, then changed slots; then slots
///    beyond the count are deleted, then the stale source ranges of a master
///    that checked them;
/// 3. removed services: master, slots, source ranges, Maglev table,
///    reverse-NAT entry;
/// 4. left-over Maglev tables, source ranges, reverse-NAT entries and slots;
/// 5. backends no service references (active or terminating).
///
/// # Errors
///
/// Duplicate frontends, an invalid Maglev M, id exhaustion, or more entries
/// than the maps hold.
pub fn plan(
    applied: &Applied,
    desired: &[DesiredService],
    cfg: &LbConfig,
) -> Result<Vec<Op>, LbError> {
    let r = resolve(applied, desired, cfg)?;
    let mut ops = Vec::new();

    // 1. Backends and reverse-NAT entries first.
    for (id, b) in &r.backends {
        if applied.backends.get(id) != Some(b) {
            ops.push(Op::UpsertBackend {
                id: *id,
                backend: *b,
            });
        }
    }
    for (index, f) in &r.revnat {
        if applied.revnat.get(index) != Some(f) {
            ops.push(Op::UpsertRevNat {
                index: *index,
                frontend: *f,
            });
        }
    }

    // 2. Services.
    let mut wanted_tables: BTreeSet<u16> = BTreeSet::new();
    for t in &r.services {
        service_ops(applied, t, &mut wanted_tables, &mut ops);
    }

    // 3. Removed services.
    let wanted: BTreeSet<Frontend> = r.services.iter().map(|t| t.desired.frontend).collect();
    let mut deleted_tables: BTreeSet<u16> = BTreeSet::new();
    let mut deleted_revnat: BTreeSet<u16> = BTreeSet::new();
    let mut deleted_ranges: BTreeSet<u16> = BTreeSet::new();
    for (frontend, m) in &applied.services {
        if wanted.contains(frontend) {
            continue;
        }
        let frontend = *frontend;
        ops.push(Op::DeleteMaster { frontend });
        ops.extend(
            applied
                .slots_of(&frontend)
                .map(|(slot, _)| Op::DeleteSlot { frontend, slot }),
        );
        let index = m.rev_nat_index;
        if !r.revnat.contains_key(&index) && deleted_ranges.insert(index) {
            ops.extend(delete_src_ranges(applied, index));
        }
        if applied.maglev.contains_key(&index)
            && !wanted_tables.contains(&index)
            && deleted_tables.insert(index)
        {
            ops.push(Op::DeleteMaglev { index });
        }
        if applied.revnat.contains_key(&index)
            && !r.revnat.contains_key(&index)
            && deleted_revnat.insert(index)
        {
            ops.push(Op::DeleteRevNat { index });
        }
    }

    // 4. Left-overs: tables of services that no longer use Maglev (or have
    //    no backends, or changed index), unreferenced entries, and slots
    //    without a master.
    for index in applied.maglev.keys() {
        if !wanted_tables.contains(index) && !deleted_tables.contains(index) {
            ops.push(Op::DeleteMaglev { index: *index });
        }
    }
    let range_indexes: BTreeSet<u16> = applied.src_ranges.iter().map(|(i, _)| *i).collect();
    for index in range_indexes {
        if !r.revnat.contains_key(&index) && !deleted_ranges.contains(&index) {
            ops.extend(delete_src_ranges(applied, index));
        }
    }
    for index in applied.revnat.keys() {
        if !r.revnat.contains_key(index) && !deleted_revnat.contains(index) {
            ops.push(Op::DeleteRevNat { index: *index });
        }
    }
    for (frontend, slot) in applied.slots.keys() {
        if !wanted.contains(frontend) && !applied.services.contains_key(frontend) {
            ops.push(Op::DeleteSlot {
                frontend: *frontend,
                slot: *slot,
            });
        }
    }

    // 5. Backends nothing references any more.
    for id in applied.backends.keys() {
        if !r.backends.contains_key(id) {
            ops.push(Op::DeleteBackend { id: *id });
        }
    }
    Ok(ops)
}

/// Deletes of every source range of `index`.
fn delete_src_ranges(applied: &Applied, index: u16) -> impl Iterator<Item = Op> + '_ {
    applied
        .src_ranges_of(index)
        .map(move |range| Op::DeleteSrcRange { index, range })
}

/// Whether `applied` is exactly the desired state, ids aside (see
/// [`mismatch`]).
pub fn matches(applied: &Applied, desired: &[DesiredService], cfg: &LbConfig) -> bool {
    mismatch(applied, desired, cfg).is_none()
}

/// The first difference between `applied` and the desired state, ids aside:
/// the backend entries (addresses and flags), each frontend's master (count,
/// flags, algorithm, affinity), its slots (the active backends in address
/// order, terminating ones excluded), its reverse-NAT entry, Maglev table
/// and source ranges, and nothing else in any map. `None` when they match.
pub fn mismatch(applied: &Applied, desired: &[DesiredService], cfg: &LbConfig) -> Option<String> {
    if let Err(e) = check_duplicates(desired) {
        return Some(e.to_string());
    }
    let view = BackendView::new(desired);
    let want = &view.flags;
    let have: BTreeMap<BackendAddr, u8> = applied
        .backends
        .values()
        .map(|b| (b.addr, b.flags))
        .collect();
    if have.len() != applied.backends.len() {
        return Some("two backend ids have the same address".into());
    }
    if &have != want {
        return Some(format!(
            "backends differ: applied {have:?}, desired {want:?}"
        ));
    }
    let wanted: BTreeSet<Frontend> = desired.iter().map(|d| d.frontend).collect();
    let masters: BTreeSet<Frontend> = applied.services.keys().copied().collect();
    if wanted != masters {
        return Some(format!(
            "frontends differ: applied {masters:?}, desired {wanted:?}"
        ));
    }
    let mut indexes = BTreeSet::new();
    let mut tables = BTreeSet::new();
    for d in desired {
        let f = d.frontend;
        let m = &applied.services[&f];
        let active = view.active(d);
        let expect = (
            active.len(),
            d.flags(),
            d.algorithm,
            d.affinity_timeout.unwrap_or(0),
        );
        let got = (
            usize::from(m.count),
            m.flags,
            m.algorithm,
            m.affinity_timeout,
        );
        if expect != got {
            return Some(format!(
                "{f}: master (count, flags, algorithm, affinity) is {got:?}, want {expect:?}"
            ));
        }
        let slots: Vec<(u16, u32)> = applied.slots_of(&f).collect();
        let addrs: Option<Vec<BackendAddr>> = slots
            .iter()
            .enumerate()
            .map(|(i, (slot, id))| {
                (usize::from(*slot) == i + 1)
                    .then(|| applied.backends.get(id).map(|b| b.addr))
                    .flatten()
            })
            .collect();
        if addrs.as_ref() != Some(&active) {
            return Some(format!("{f}: slots {slots:?} do not hold {active:?}"));
        }
        if m.rev_nat_index == 0 || !indexes.insert(m.rev_nat_index) {
            return Some(format!("{f}: reverse-NAT index {} reused", m.rev_nat_index));
        }
        if applied.revnat.get(&m.rev_nat_index) != Some(&f) {
            return Some(format!(
                "{f}: reverse-NAT entry {} is {:?}",
                m.rev_nat_index,
                applied.revnat.get(&m.rev_nat_index)
            ));
        }
        let table = applied.maglev.get(&m.rev_nat_index);
        if d.algorithm == Algorithm::Maglev && !active.is_empty() {
            let names: Vec<String> = active.iter().map(ToString::to_string).collect();
            let pairs: Vec<(u32, &str)> = slots
                .iter()
                .zip(&names)
                .map(|((_, id), n)| (*id, n.as_str()))
                .collect();
            let want = match maglev_table(&pairs, cfg.maglev_m) {
                Ok(t) => t,
                Err(e) => return Some(e.to_string()),
            };
            if table != Some(&want) {
                return Some(format!("{f}: Maglev table differs"));
            }
            tables.insert(m.rev_nat_index);
        } else if table.is_some() {
            return Some(format!("{f}: has a Maglev table it does not use"));
        }
        let ranges: BTreeSet<SourceRange> = applied.src_ranges_of(m.rev_nat_index).collect();
        if !ranges
            .iter()
            .eq(d.src_ranges().iter().collect::<BTreeSet<_>>())
        {
            return Some(format!(
                "{f}: source ranges {ranges:?}, want {:?}",
                d.src_ranges()
            ));
        }
    }
    let revnat: BTreeSet<u16> = applied.revnat.keys().copied().collect();
    if revnat != indexes {
        return Some(format!("reverse-NAT entries {revnat:?}, want {indexes:?}"));
    }
    let maglev: BTreeSet<u16> = applied.maglev.keys().copied().collect();
    if maglev != tables {
        return Some(format!("Maglev tables {maglev:?}, want {tables:?}"));
    }
    if let Some((index, range)) = applied
        .src_ranges
        .iter()
        .find(|(i, _)| !indexes.contains(i))
    {
        return Some(format!(
            "source range {range} of reverse-NAT index {index}, which no frontend has"
        ));
    }
    None
}

#[cfg(test)]
mod tests;
