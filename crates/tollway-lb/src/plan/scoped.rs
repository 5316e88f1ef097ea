//! A plan restricted to some frontends: what [`plan`](super::plan) would do
//! for them, at a cost proportional to them rather than to the whole state.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Applied, AppliedBackend, BackendDemand, Indexes, Op, Target, check_duplicates,
    delete_src_ranges, service_ops, target,
};
use crate::LbError;
use crate::flags::{
    TW_BE_F_TERMINATING, TW_LB_BACKENDS_MAX, TW_LB_MAGLEV_MAX, TW_LB_SERVICES_MAX,
    TW_LB_SRC_RANGE_MAX,
};
use crate::model::{BackendAddr, DesiredService, Frontend, LbConfig};

fn out_of_scope(frontend: Frontend, reason: &'static str) -> LbError {
    LbError::OutOfScope { frontend, reason }
}

/// The ordered map writes that take the frontends in `scope` from
/// `applied` to `desired`, leaving every other frontend as it is.
///
/// - `scope`: the frontends to plan, normally the old frontends (as in
///   `applied`) and the new ones of the services that changed, plus
///   [`BackendDemand::coupled`];
/// - `desired`: the desired services of the frontends in scope that should
///   exist (a frontend of `scope` missing here is removed); every one must
///   be in `scope`;
/// - `demand`: the backend demand of the *whole* new desired state, with the
///   addresses touched since the state `applied` was planned for (see
///   [`BackendDemand`]); backend flags are a property of the address across
///   all services, so they come from here.
///
/// The ops are those of [`plan`](super::plan)`(applied, whole desired)`
/// when everything outside the scope already matches its desired state:
/// same ids (kept ones kept, new ones the lowest free anywhere), same order
/// rules, every intermediate state consistent. Outside the scope nothing is
/// written: no master, slot, Maglev table, source range or reverse-NAT
/// entry of another frontend; backend entries still named by another frontend's slots and
/// reverse-NAT indexes used by another frontend's master are never deleted.
/// Backend entries the scope needs (or the touched addresses) are written
/// with their global flags.
///
/// Cost: the scope, its backends and the touched addresses, times log of the
/// state (plus Maglev tables of the scope's Maglev services), using the
/// indexes of [`Applied`].
///
/// # Errors
///
/// As [`plan`](super::plan) (capacity checks are made on the resulting
/// whole state), and [`LbError::OutOfScope`] if a desired frontend is not in
/// `scope`, `demand` lacks an address `desired` lists, or a frontend outside
/// the scope would have to change (it lists, or has a slot for, an address
/// whose terminating flag changes: add [`BackendDemand::coupled`] to the
/// scope).
pub fn plan_scoped(
    applied: &Applied,
    desired: &[DesiredService],
    scope: &BTreeSet<Frontend>,
    demand: &BackendDemand,
    cfg: &LbConfig,
) -> Result<Vec<Op>, LbError> {
    check_duplicates(desired)?;
    let mut desired: Vec<&DesiredService> = desired.iter().collect();
    desired.sort_by_key(|d| d.frontend);
    for d in &desired {
        if !scope.contains(&d.frontend) {
            return Err(out_of_scope(
                d.frontend,
                "a desired frontend is not in the scope",
            ));
        }
        let listed = d.backends.iter().chain(&d.terminating);
        if listed.into_iter().any(|b| demand.flags(b).is_none()) {
            return Err(out_of_scope(
                d.frontend,
                "lists a backend the backend demand does not know",
            ));
        }
    }
    if demand.len() > TW_LB_BACKENDS_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_backends",
            needed: demand.len(),
            max: TW_LB_BACKENDS_MAX,
        });
    }
    let rebuilt;
    let ix = match applied.indexes() {
        Some(ix) => ix,
        None => {
            rebuilt = Indexes::build(applied);
            &rebuilt
        }
    };
    let outside = |f: &Frontend| !scope.contains(f);
    // A backend id some slot outside the scope names.
    let named_outside = |id: &u32| {
        ix.slot_refs
            .get(id)
            .is_some_and(|refs| refs.iter().any(|(f, _)| outside(f)))
    };
    // A reverse-NAT index some master outside the scope uses.
    let used_outside = |index: &u16| {
        ix.masters_by_index
            .get(index)
            .is_some_and(|fs| fs.iter().any(outside))
    };

    // Backends: the addresses the scope lists now or named before, and the
    // touched ones.
    let mut candidates: BTreeSet<BackendAddr> = demand.touched().copied().collect();
    for d in &desired {
        candidates.extend(d.backends.iter().chain(&d.terminating));
    }
    for f in scope {
        for (_, id) in applied.slots_of(f) {
            if let Some(b) = applied.backends.get(&id) {
                candidates.insert(b.addr);
            }
        }
    }
    let mut ids: BTreeMap<BackendAddr, u32> = BTreeMap::new();
    let mut backends: BTreeMap<u32, AppliedBackend> = BTreeMap::new();
    let mut gone: BTreeSet<u32> = BTreeSet::new();
    let mut next_id: u64 = 1;
    let no_ids = BTreeSet::new();
    for addr in &candidates {
        let existing = ix.ids_by_addr.get(addr).unwrap_or(&no_ids);
        let Some(flags) = demand.flags(addr) else {
            gone.extend(existing.iter().filter(|id| !named_outside(id)));
            continue;
        };
        let id = match existing.first() {
            Some(id) => *id,
            None => {
                let id = ix
                    .free_ids
                    .first_from(next_id)
                    .ok_or(LbError::BackendIdsExhausted {
                        in_use: applied.backends.len() + ids.len(),
                    })?;
                next_id = u64::from(id) + 1;
                id
            }
        };
        // An address becoming (or ceasing to be) terminating changes the
        // slots of every frontend listing it as active.
        let was = applied.backends.get(&id).map(|b| b.flags);
        let term = flags & TW_BE_F_TERMINATING != 0;
        let flipped = was.map_or(!term, |w| (w & TW_BE_F_TERMINATING != 0) != term);
        if flipped {
            if let Some(f) = demand.active_listers(addr).find(|f| outside(f)) {
                return Err(out_of_scope(
                    *f,
                    "lists as active a backend whose terminating flag changes; add it to the scope",
                ));
            }
            for other in existing {
                if let Some((f, _)) = ix
                    .slot_refs
                    .get(other)
                    .and_then(|refs| refs.iter().find(|(f, _)| outside(f)))
                {
                    return Err(out_of_scope(
                        *f,
                        "has a slot for a backend whose terminating flag changes; add it to the scope",
                    ));
                }
            }
        }
        ids.insert(*addr, id);
        backends.insert(id, AppliedBackend { addr: *addr, flags });
        // Duplicate ids of the address (left by a crash) go, unless named
        // outside.
        gone.extend(
            existing
                .iter()
                .filter(|other| **other != id && !named_outside(other)),
        );
    }

    // Reverse-NAT indexes, as `rev_nat_indexes`: keep the master's, else an
    // unused entry naming the frontend, else the lowest free.
    let mut index_of: BTreeMap<Frontend, u16> = BTreeMap::new();
    let mut claimed: BTreeSet<u16> = BTreeSet::new();
    for d in &desired {
        let f = d.frontend;
        if let Some(m) = applied.services.get(&f)
            && m.rev_nat_index != 0
            && !used_outside(&m.rev_nat_index)
            && claimed.insert(m.rev_nat_index)
        {
            index_of.insert(f, m.rev_nat_index);
        }
    }
    for d in &desired {
        let f = d.frontend;
        if index_of.contains_key(&f) {
            continue;
        }
        let orphan = ix.revnat_by_frontend.get(&f).and_then(|indexes| {
            indexes
                .iter()
                .find(|i| **i != 0 && !ix.masters_by_index.contains_key(i) && !claimed.contains(i))
        });
        if let Some(i) = orphan {
            claimed.insert(*i);
            index_of.insert(f, *i);
        }
    }
    let mut next_index: u64 = 1;
    for d in &desired {
        let f = d.frontend;
        if index_of.contains_key(&f) {
            continue;
        }
        let index = ix
            .free_indexes
            .first_from(next_index)
            .and_then(|i| u16::try_from(i).ok())
            .ok_or(LbError::RevNatExhausted {
                in_use: claimed.len() + ix.masters_by_index.len(),
            })?;
        next_index = u64::from(index) + 1;
        claimed.insert(index);
        index_of.insert(f, index);
    }

    let mut targets: Vec<Target<'_>> = Vec::with_capacity(desired.len());
    for d in &desired {
        targets.push(target(d, demand, &ids, index_of[&d.frontend], cfg)?);
    }
    let wanted: BTreeSet<Frontend> = targets.iter().map(|t| t.desired.frontend).collect();
    let revnat: BTreeMap<u16, Frontend> = targets
        .iter()
        .map(|t| (t.master.rev_nat_index, t.desired.frontend))
        .collect();
    // Indexes whose entries or tables the scope may leave behind: its old
    // masters', the entries naming it, its new ones.
    let mut related: BTreeSet<u16> = revnat.keys().copied().collect();
    for f in scope {
        if let Some(m) = applied.services.get(f) {
            related.insert(m.rev_nat_index);
        }
        if let Some(indexes) = ix.revnat_by_frontend.get(f) {
            related.extend(indexes);
        }
    }
    related.retain(|i| !used_outside(i));

    // Capacity, of the whole state after the plan.
    let mut entries = applied.services.len() + applied.slots.len();
    for f in scope {
        entries -= usize::from(applied.services.contains_key(f)) + applied.slots_of(f).count();
    }
    entries += targets.iter().map(|t| 1 + t.slots.len()).sum::<usize>();
    if entries > TW_LB_SERVICES_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_services",
            needed: entries,
            max: TW_LB_SERVICES_MAX,
        });
    }
    let tables = applied.maglev.len()
        - related
            .iter()
            .filter(|i| applied.maglev.contains_key(i))
            .count()
        + targets.iter().filter(|t| t.table.is_some()).count();
    if tables > TW_LB_MAGLEV_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_maglev",
            needed: tables,
            max: TW_LB_MAGLEV_MAX,
        });
    }
    let ranges = applied.src_ranges.len()
        - related
            .iter()
            .map(|i| applied.src_ranges_of(*i).count())
            .sum::<usize>()
        + targets.iter().map(|t| t.ranges.len()).sum::<usize>();
    if ranges > TW_LB_SRC_RANGE_MAX {
        return Err(LbError::MapFull {
            map: "tw_lb4_srcrange",
            needed: ranges,
            max: TW_LB_SRC_RANGE_MAX,
        });
    }

    // 1. Backends and reverse-NAT entries first.
    let mut ops = Vec::new();
    for (id, b) in &backends {
        if applied.backends.get(id) != Some(b) {
            ops.push(Op::UpsertBackend {
                id: *id,
                backend: *b,
            });
        }
    }
    for (index, f) in &revnat {
        if applied.revnat.get(index) != Some(f) {
            ops.push(Op::UpsertRevNat {
                index: *index,
                frontend: *f,
            });
        }
    }

    // 2. Services.
    let mut wanted_tables: BTreeSet<u16> = BTreeSet::new();
    for t in &targets {
        service_ops(applied, t, &mut wanted_tables, &mut ops);
    }

    // 3. Removed services.
    let mut deleted_tables: BTreeSet<u16> = BTreeSet::new();
    let mut deleted_revnat: BTreeSet<u16> = BTreeSet::new();
    let mut deleted_ranges: BTreeSet<u16> = BTreeSet::new();
    for frontend in scope {
        let Some(m) = applied.services.get(frontend) else {
            continue;
        };
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
        if related.contains(&index) && !revnat.contains_key(&index) && deleted_ranges.insert(index)
        {
            ops.extend(delete_src_ranges(applied, index));
        }
        if related.contains(&index)
            && applied.maglev.contains_key(&index)
            && !wanted_tables.contains(&index)
            && deleted_tables.insert(index)
        {
            ops.push(Op::DeleteMaglev { index });
        }
        if related.contains(&index)
            && applied.revnat.contains_key(&index)
            && !revnat.contains_key(&index)
            && deleted_revnat.insert(index)
        {
            ops.push(Op::DeleteRevNat { index });
        }
    }

    // 4. Left-overs of the scope.
    for index in &related {
        if applied.maglev.contains_key(index)
            && !wanted_tables.contains(index)
            && !deleted_tables.contains(index)
        {
            ops.push(Op::DeleteMaglev { index: *index });
        }
    }
    for index in &related {
        if !revnat.contains_key(index) && !deleted_ranges.contains(index) {
            ops.extend(delete_src_ranges(applied, *index));
        }
    }
    for index in &related {
        if applied.revnat.contains_key(index)
            && !revnat.contains_key(index)
            && !deleted_revnat.contains(index)
        {
            ops.push(Op::DeleteRevNat { index: *index });
        }
    }
    for frontend in scope {
        if !wanted.contains(frontend) && !applied.services.contains_key(frontend) {
            ops.extend(applied.slots_of(frontend).map(|(slot, _)| Op::DeleteSlot {
                frontend: *frontend,
                slot,
            }));
        }
    }

    // 5. Backends nothing needs any more.
    for id in &gone {
        if !backends.contains_key(id) {
            ops.push(Op::DeleteBackend { id: *id });
        }
    }
    Ok(ops)
}
