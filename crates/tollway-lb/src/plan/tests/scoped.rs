//! `plan_scoped`: the same ops as a full plan for the frontends in scope,
//! nothing outside it.

use super::*;
use crate::plan::index::Indexes;

/// What a change may do to one pool frontend.
#[derive(Debug, Clone)]
enum Change {
    /// Remove it (if present).
    Remove,
    /// Add or replace it.
    Set(DesiredService),
}

fn change_strategy() -> impl Strategy<Value = BTreeMap<u8, Change>> {
    proptest::collection::btree_set(0u8..8, 1..=3).prop_flat_map(|fronts| {
        fronts
            .into_iter()
            .map(|i| {
                prop_oneof![
                    1 => Just(Change::Remove),
                    3 => service_strategy(i).prop_map(Change::Set),
                ]
                .prop_map(move |c| (i, c))
            })
            .collect::<Vec<_>>()
            .prop_map(|v| v.into_iter().collect())
    })
}

fn as_map(desired: &[DesiredService]) -> BTreeMap<Frontend, DesiredService> {
    desired.iter().map(|d| (d.frontend, d.clone())).collect()
}

/// Apply a change to the desired state and the demand; the frontends it
/// changed.
fn change(
    desired: &mut BTreeMap<Frontend, DesiredService>,
    demand: &mut BackendDemand,
    changes: &BTreeMap<u8, Change>,
) -> BTreeSet<Frontend> {
    let mut changed = BTreeSet::new();
    for (i, c) in changes {
        let f = pool_frontend(*i);
        if let Some(old) = desired.remove(&f) {
            demand.remove(&old);
        }
        if let Change::Set(d) = c {
            demand.add(d);
            desired.insert(f, d.clone());
        }
        changed.insert(f);
    }
    changed
}

/// Whether `op` writes something of a frontend outside `scope` in `before`.
fn outside_write(before: &Applied, scope: &BTreeSet<Frontend>, op: &Op) -> Option<String> {
    let outside_index = |index: &u16| {
        before
            .services
            .iter()
            .any(|(f, m)| m.rev_nat_index == *index && !scope.contains(f))
    };
    let named_outside = |id: &u32| {
        before
            .slots
            .iter()
            .any(|((f, _), b)| b == id && !scope.contains(f))
    };
    let bad = match op {
        Op::UpsertSlot { frontend, .. }
        | Op::DeleteSlot { frontend, .. }
        | Op::UpsertMaster { frontend, .. }
        | Op::DeleteMaster { frontend } => !scope.contains(frontend),
        Op::UpsertRevNat { index, .. }
        | Op::DeleteRevNat { index }
        | Op::SetMaglev { index, .. }
        | Op::DeleteMaglev { index }
        | Op::UpsertSrcRange { index, .. }
        | Op::DeleteSrcRange { index, .. } => outside_index(index),
        Op::DeleteBackend { id } => named_outside(id),
        Op::UpsertBackend { id, backend } => {
            named_outside(id) && before.backends.get(id).map(|b| b.addr) != Some(backend.addr)
        }
    };
    bad.then(|| format!("{op} writes outside the scope"))
}

/// The part of `a` that belongs to frontends outside `scope`: masters,
/// slots (with their backends' addresses), reverse-NAT entries, Maglev
/// tables and source ranges.
#[allow(clippy::type_complexity)]
fn outside_part(
    a: &Applied,
    scope: &BTreeSet<Frontend>,
) -> Vec<(
    Frontend,
    Option<AppliedService>,
    Vec<(u16, u32, Option<BackendAddr>)>,
    Option<Frontend>,
    Option<Vec<u32>>,
    Vec<SourceRange>,
)> {
    let fronts: BTreeSet<Frontend> = a
        .services
        .keys()
        .chain(a.slots.keys().map(|(f, _)| f))
        .filter(|f| !scope.contains(f))
        .copied()
        .collect();
    fronts
        .into_iter()
        .map(|f| {
            let m = a.services.get(&f).cloned();
            let slots = a
                .slots_of(&f)
                .map(|(s, id)| (s, id, a.backends.get(&id).map(|b| b.addr)))
                .collect();
            let index = m.as_ref().map(|m| m.rev_nat_index);
            let revnat = index.and_then(|i| a.revnat.get(&i).copied());
            let table = index.and_then(|i| a.maglev.get(&i).cloned());
            let ranges = index.map_or_else(Vec::new, |i| a.src_ranges_of(i).collect());
            (f, m, slots, revnat, table, ranges)
        })
        .collect()
}

fn check_indexes(a: &Applied) -> Result<(), TestCaseError> {
    let kept = a.index.0.get().expect("indexes built");
    prop_assert_eq!(kept, &Indexes::build(a), "indexes drifted from the maps");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn scoped_plan_is_the_full_plan_restricted_to_the_scope(
        history in proptest::collection::vec(desired_strategy(), 1..3),
        rounds in proptest::collection::vec((change_strategy(), 0u32..200), 1..5),
        m37 in any::<bool>(),
    ) {
        let cfg = LbConfig {
            default_algorithm: Algorithm::Random,
            maglev_m: if m37 { 37 } else { 31 },
        };
        // A state reached by full plans (leaving holes in the ids).
        let mut applied = Applied::default();
        for desired in &history {
            for op in plan(&applied, desired, &cfg).unwrap() {
                apply_to(&mut applied, &op);
            }
        }
        let base = history.last().unwrap();
        let mut desired = as_map(base);
        let mut demand = BackendDemand::new(base);
        if history.len() > 1 {
            // Half the time, start with the indexes built from the maps.
            applied.rebuild_indexes();
        }
        for (changes, cut) in &rounds {
            let changed = change(&mut desired, &mut demand, changes);
            let mut scope = changed.clone();
            scope.extend(demand.coupled());
            let all: Vec<DesiredService> = desired.values().cloned().collect();
            let subset: Vec<DesiredService> = desired
                .values()
                .filter(|d| scope.contains(&d.frontend))
                .cloned()
                .collect();

            let full = plan(&applied, &all, &cfg).unwrap();
            let mut scoped = plan_scoped(&applied, &subset, &scope, &demand, &cfg).unwrap();
            prop_assert_eq!(&scoped, &full, "scope {:?}", scope);

            let before = applied.clone();
            if *cut < 100 {
                // A crash part way; the same scope (nothing committed) is
                // planned again from there.
                let run = scoped.len() * *cut as usize / 100;
                for op in &scoped[..run] {
                    apply_to(&mut applied, op);
                    let bad = applied.inconsistencies();
                    prop_assert!(bad.is_empty(), "after {}: {:?}", op, bad);
                }
                let full = plan(&applied, &all, &cfg).unwrap();
                scoped = plan_scoped(&applied, &subset, &scope, &demand, &cfg).unwrap();
                prop_assert_eq!(&scoped, &full, "after a crash, scope {:?}", scope);
            }
            for op in &scoped {
                let prev = applied.clone();
                apply_to(&mut applied, op);
                prop_assert_ne!(&prev, &applied, "op {} changes nothing", op);
                let bad = applied.inconsistencies();
                prop_assert!(bad.is_empty(), "after {}: {:?}", op, bad);
                let admission = admission_within_bounds(&before, &all, &applied);
                prop_assert!(admission.is_ok(), "after {}: {:?}", op, admission);
                if let Some(e) = outside_write(&before, &scope, op) {
                    prop_assert!(false, "{}", e);
                }
            }
            check_indexes(&applied)?;
            let m = mismatch(&applied, &all, &cfg);
            prop_assert!(m.is_none(), "{:?}", m);
            prop_assert_eq!(outside_part(&before, &scope), outside_part(&applied, &scope));
            // Converged: nothing more to do, scoped or not.
            demand.commit();
            prop_assert_eq!(
                plan_scoped(&applied, &subset, &scope, &demand, &cfg).unwrap(),
                vec![]
            );
            prop_assert_eq!(plan(&applied, &all, &cfg).unwrap(), vec![]);
        }
    }

    /// Without the coupled frontends, a scope that would force a change
    /// outside it is refused rather than planned wrong.
    #[test]
    fn too_narrow_a_scope_is_refused(
        base in desired_strategy(),
        changes in change_strategy(),
    ) {
        let cfg = cfg();
        let mut applied = Applied::default();
        for op in plan(&applied, &base, &cfg).unwrap() {
            apply_to(&mut applied, &op);
        }
        let mut desired = as_map(&base);
        let mut demand = BackendDemand::new(&base);
        let scope = change(&mut desired, &mut demand, &changes);
        let all: Vec<DesiredService> = desired.values().cloned().collect();
        let subset: Vec<DesiredService> = desired
            .values()
            .filter(|d| scope.contains(&d.frontend))
            .cloned()
            .collect();
        let full = plan(&applied, &all, &cfg).unwrap();
        let touches_outside = full
            .iter()
            .any(|op| outside_write(&applied, &scope, op).is_some());
        match plan_scoped(&applied, &subset, &scope, &demand, &cfg) {
            Ok(ops) => {
                prop_assert!(!touches_outside, "planned {:?}, full plan {:?}", ops, full);
                prop_assert_eq!(ops, full);
            }
            Err(e) => {
                prop_assert!(matches!(e, LbError::OutOfScope { .. }), "{}", e);
                prop_assert!(!demand.coupled().is_subset(&scope));
            }
        }
    }
}

#[test]
fn coupled_frontends_are_required() {
    let cfg = cfg();
    // Backend 1 is active in both; making it terminating in one changes the
    // other's slots.
    let a_svc = svc(fe(1, 80), &[1, 2], &[]);
    let b_svc = svc(fe(2, 80), &[1], &[]);
    let base = [a_svc, b_svc.clone()];
    let mut applied = Applied::default();
    converge(&mut applied, &base, &cfg);
    let mut demand = BackendDemand::new(&base);
    let new_a = svc(fe(1, 80), &[2], &[1]);
    demand.remove(&base[0]);
    demand.add(&new_a);
    let scope = BTreeSet::from([fe(1, 80)]);
    let e = plan_scoped(
        &applied,
        std::slice::from_ref(&new_a),
        &scope,
        &demand,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, LbError::OutOfScope { frontend, .. } if frontend == fe(2, 80)),
        "{e}"
    );
    assert_eq!(demand.coupled(), BTreeSet::from([fe(2, 80)]));
    let scope = BTreeSet::from([fe(1, 80), fe(2, 80)]);
    let desired = [new_a, b_svc];
    let ops = plan_scoped(&applied, &desired, &scope, &demand, &cfg).unwrap();
    assert_eq!(ops, plan(&applied, &desired, &cfg).unwrap());
}

#[test]
fn inputs_are_checked() {
    let cfg = cfg();
    let applied = Applied::default();
    let s = svc(fe(1, 80), &[1], &[]);
    let demand = BackendDemand::new(std::slice::from_ref(&s));
    // Not in scope.
    let e = plan_scoped(
        &applied,
        std::slice::from_ref(&s),
        &BTreeSet::new(),
        &demand,
        &cfg,
    )
    .unwrap_err();
    assert!(matches!(e, LbError::OutOfScope { .. }), "{e}");
    // A backend the demand does not know.
    let e = plan_scoped(
        &applied,
        std::slice::from_ref(&s),
        &BTreeSet::from([fe(1, 80)]),
        &BackendDemand::default(),
        &cfg,
    )
    .unwrap_err();
    assert!(matches!(e, LbError::OutOfScope { .. }), "{e}");
}

#[test]
fn maps_changed_behind_the_indexes_back_are_noticed() {
    let cfg = cfg();
    let s1 = svc(fe(1, 80), &[1], &[]);
    let mut applied = Applied::default();
    converge(&mut applied, std::slice::from_ref(&s1), &cfg);
    let demand = BackendDemand::new(std::slice::from_ref(&s1));
    // Build the indexes, then change a map directly.
    plan_scoped(&applied, &[], &BTreeSet::new(), &demand, &cfg).unwrap();
    applied.backends.insert(
        2,
        AppliedBackend {
            addr: be(9),
            flags: 0,
        },
    );
    // The stale indexes would reuse id 2; the fresh build does not.
    let s2 = svc(fe(2, 80), &[3], &[]);
    let mut demand = demand;
    demand.add(&s2);
    let scope = BTreeSet::from([fe(2, 80)]);
    let ops = plan_scoped(&applied, std::slice::from_ref(&s2), &scope, &demand, &cfg).unwrap();
    assert_eq!(
        ops[0],
        Op::UpsertBackend {
            id: 3,
            backend: AppliedBackend {
                addr: be(3),
                flags: 0
            }
        }
    );
    applied.rebuild_indexes();
    assert!(applied.indexes().is_some());
}

#[test]
fn free_ids() {
    use crate::plan::index::FreeIds;
    let mut f = FreeIds::all(1, 10);
    for id in [1, 2, 3, 5, 10] {
        f.take(id);
    }
    assert_eq!(f.first_from(1), Some(4));
    assert_eq!(f.first_from(5), Some(6));
    assert_eq!(f.first_from(10), None);
    f.give(2);
    assert_eq!(f.first_from(1), Some(2));
    f.give(5);
    f.give(3);
    f.give(1);
    assert_eq!(f.ranges, BTreeMap::from([(1, 9)]));
    f.give(10);
    assert_eq!(f, FreeIds::all(1, 10));
    // Out of range: ignored.
    f.give(0);
    f.take(11);
    assert_eq!(f, FreeIds::all(1, 10));
    assert_eq!(f.first_from(u64::from(u32::MAX) + 1), None);
}
