//! Derived indexes of [`Applied`], so that a scoped plan costs its scope
//! rather than the whole state: backend ids by address, free ids, which
//! slots name a backend, which masters use a reverse-NAT index.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use super::{Applied, Op};
use crate::model::{BackendAddr, Frontend};

/// Free ids of `lo..=hi` as disjoint, non-adjacent ranges (start → end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FreeIds {
    lo: u32,
    hi: u32,
    pub(super) ranges: BTreeMap<u32, u32>,
}

impl FreeIds {
    pub(super) fn all(lo: u32, hi: u32) -> FreeIds {
        FreeIds {
            lo,
            hi,
            ranges: BTreeMap::from([(lo, hi)]),
        }
    }

    fn range_of(&self, id: u32) -> Option<(u32, u32)> {
        self.ranges
            .range(..=id)
            .next_back()
            .filter(|(_, e)| id <= **e)
            .map(|(s, e)| (*s, *e))
    }

    /// Mark `id` used.
    pub(super) fn take(&mut self, id: u32) {
        if let Some((s, e)) = self.range_of(id) {
            self.ranges.remove(&s);
            if s < id {
                self.ranges.insert(s, id - 1);
            }
            if id < e {
                self.ranges.insert(id + 1, e);
            }
        }
    }

    /// Mark `id` free.
    pub(super) fn give(&mut self, id: u32) {
        if id < self.lo || id > self.hi || self.range_of(id).is_some() {
            return;
        }
        let mut start = id;
        let mut end = id;
        if let Some((s, e)) = self.ranges.range(..id).next_back().map(|(s, e)| (*s, *e))
            && e.checked_add(1) == Some(id)
        {
            self.ranges.remove(&s);
            start = s;
        }
        if let Some(next) = id.checked_add(1)
            && let Some(e) = self.ranges.remove(&next)
        {
            end = e;
        }
        self.ranges.insert(start, end);
    }

    /// The lowest free id `>= from`.
    pub(super) fn first_from(&self, from: u64) -> Option<u32> {
        let from = u32::try_from(from).ok()?;
        if self.range_of(from).is_some() {
            return Some(from);
        }
        self.ranges.range(from..).next().map(|(s, _)| *s)
    }
}

/// The indexes. Every field is a function of the six maps of [`Applied`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Indexes {
    /// Backend ids by address (one, unless a crash left duplicates).
    pub(super) ids_by_addr: BTreeMap<BackendAddr, BTreeSet<u32>>,
    /// Backend ids not in `tw_lb4_backends` (1..=u32::MAX).
    pub(super) free_ids: FreeIds,
    /// The slots naming each backend id.
    pub(super) slot_refs: BTreeMap<u32, BTreeSet<(Frontend, u16)>>,
    /// The masters using each reverse-NAT index.
    pub(super) masters_by_index: BTreeMap<u16, BTreeSet<Frontend>>,
    /// The reverse-NAT entries naming each frontend.
    pub(super) revnat_by_frontend: BTreeMap<Frontend, BTreeSet<u16>>,
    /// Reverse-NAT indexes (1..=65535) no master uses and in none of the
    /// reverse-NAT, Maglev and source-range maps.
    pub(super) free_indexes: FreeIds,
    /// The map sizes the indexes were last in step with (a cheap check that
    /// nobody changed the maps behind [`apply_to`](super::apply_to)'s back).
    sizes: [usize; 6],
}

fn sizes(a: &Applied) -> [usize; 6] {
    [
        a.services.len(),
        a.slots.len(),
        a.backends.len(),
        a.revnat.len(),
        a.maglev.len(),
        a.src_ranges.len(),
    ]
}

fn unlink<K: Ord, V: Ord>(m: &mut BTreeMap<K, BTreeSet<V>>, k: &K, v: &V) {
    if let Some(s) = m.get_mut(k) {
        s.remove(v);
        if s.is_empty() {
            m.remove(k);
        }
    }
}

fn link<K: Ord, V: Ord>(m: &mut BTreeMap<K, BTreeSet<V>>, k: K, v: V) {
    m.entry(k).or_default().insert(v);
}

impl Indexes {
    pub(super) fn build(a: &Applied) -> Indexes {
        let mut ix = Indexes {
            ids_by_addr: BTreeMap::new(),
            free_ids: FreeIds::all(1, u32::MAX),
            slot_refs: BTreeMap::new(),
            masters_by_index: BTreeMap::new(),
            revnat_by_frontend: BTreeMap::new(),
            free_indexes: FreeIds::all(1, u32::from(u16::MAX)),
            sizes: sizes(a),
        };
        for (id, b) in &a.backends {
            link(&mut ix.ids_by_addr, b.addr, *id);
            ix.free_ids.take(*id);
        }
        for ((f, slot), id) in &a.slots {
            link(&mut ix.slot_refs, *id, (*f, *slot));
        }
        for (f, m) in &a.services {
            link(&mut ix.masters_by_index, m.rev_nat_index, *f);
        }
        for (index, f) in &a.revnat {
            link(&mut ix.revnat_by_frontend, *f, *index);
        }
        let used = ix
            .masters_by_index
            .keys()
            .chain(a.revnat.keys())
            .chain(a.maglev.keys())
            .chain(a.src_ranges.iter().map(|(i, _)| i));
        for index in used {
            ix.free_indexes.take(u32::from(*index));
        }
        ix
    }

    /// Whether the indexes are (probably) in step with `a`.
    pub(super) fn fresh(&self, a: &Applied) -> bool {
        self.sizes == sizes(a)
    }

    /// Whether a reverse-NAT index is used by a master or a map.
    fn index_used(&self, a: &Applied, index: u16) -> bool {
        self.masters_by_index.contains_key(&index)
            || a.revnat.contains_key(&index)
            || a.maglev.contains_key(&index)
            || a.src_ranges_of(index).next().is_some()
    }

    fn refresh_index(&mut self, a: &Applied, index: u16) {
        if self.index_used(a, index) {
            self.free_indexes.take(u32::from(index));
        } else {
            self.free_indexes.give(u32::from(index));
        }
    }

    /// Execute `op` on `a`, keeping the indexes in step.
    pub(super) fn apply(&mut self, a: &mut Applied, op: &Op) {
        match op {
            Op::UpsertBackend { id, backend } => {
                match a.backends.insert(*id, *backend) {
                    Some(old) => unlink(&mut self.ids_by_addr, &old.addr, id),
                    None => self.free_ids.take(*id),
                }
                link(&mut self.ids_by_addr, backend.addr, *id);
            }
            Op::DeleteBackend { id } => {
                if let Some(old) = a.backends.remove(id) {
                    unlink(&mut self.ids_by_addr, &old.addr, id);
                    self.free_ids.give(*id);
                }
            }
            Op::UpsertRevNat { index, frontend } => {
                if let Some(old) = a.revnat.insert(*index, *frontend) {
                    unlink(&mut self.revnat_by_frontend, &old, index);
                }
                link(&mut self.revnat_by_frontend, *frontend, *index);
                self.refresh_index(a, *index);
            }
            Op::DeleteRevNat { index } => {
                if let Some(old) = a.revnat.remove(index) {
                    unlink(&mut self.revnat_by_frontend, &old, index);
                }
                self.refresh_index(a, *index);
            }
            Op::UpsertSlot {
                frontend,
                slot,
                backend_id,
            } => {
                if let Some(old) = a.slots.insert((*frontend, *slot), *backend_id) {
                    unlink(&mut self.slot_refs, &old, &(*frontend, *slot));
                }
                link(&mut self.slot_refs, *backend_id, (*frontend, *slot));
            }
            Op::DeleteSlot { frontend, slot } => {
                if let Some(old) = a.slots.remove(&(*frontend, *slot)) {
                    unlink(&mut self.slot_refs, &old, &(*frontend, *slot));
                }
            }
            Op::UpsertMaster {
                frontend,
                rev_nat_index,
                ..
            } => {
                let old = a.services.get(frontend).map(|m| m.rev_nat_index);
                super::apply_maps(a, op);
                if let Some(old) = old {
                    unlink(&mut self.masters_by_index, &old, frontend);
                    self.refresh_index(a, old);
                }
                link(&mut self.masters_by_index, *rev_nat_index, *frontend);
                self.refresh_index(a, *rev_nat_index);
            }
            Op::DeleteMaster { frontend } => {
                let old = a.services.get(frontend).map(|m| m.rev_nat_index);
                super::apply_maps(a, op);
                if let Some(old) = old {
                    unlink(&mut self.masters_by_index, &old, frontend);
                    self.refresh_index(a, old);
                }
            }
            Op::SetMaglev { index, .. }
            | Op::DeleteMaglev { index }
            | Op::UpsertSrcRange { index, .. }
            | Op::DeleteSrcRange { index, .. } => {
                super::apply_maps(a, op);
                self.refresh_index(a, *index);
            }
        }
        self.sizes = sizes(a);
    }
}

/// The lazily built indexes of an [`Applied`]: not part of its value (equal,
/// not serialized, not shown).
#[derive(Clone, Default)]
pub(super) struct IndexCell(pub(super) OnceLock<Indexes>);

impl PartialEq for IndexCell {
    fn eq(&self, _: &IndexCell) -> bool {
        true
    }
}

impl Eq for IndexCell {}

impl fmt::Debug for IndexCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0.get() {
            Some(_) => "IndexCell(built)",
            None => "IndexCell(not built)",
        })
    }
}
