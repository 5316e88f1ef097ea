use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::flags::{TW_SVC_F_AFFINITY, TW_SVC_F_CLUSTERIP, TW_SVC_F_LOADBALANCER};
use crate::model::{FrontendKind, Proto, Scope, ServiceName};

const M: u32 = 31;

fn cfg() -> LbConfig {
    LbConfig {
        default_algorithm: Algorithm::Random,
        maglev_m: M,
    }
}

fn fe(last: u8, port: u16) -> Frontend {
    Frontend {
        address: Ipv4Addr::new(10, 96, 0, last),
        port,
        proto: Proto::Tcp,
        scope: Scope::External,
    }
}

fn be(last: u8) -> BackendAddr {
    BackendAddr {
        address: Ipv4Addr::new(10, 244, 1, last),
        port: 8080,
        proto: Proto::Tcp,
    }
}

fn svc(frontend: Frontend, backends: &[u8], terminating: &[u8]) -> DesiredService {
    DesiredService {
        frontend,
        kind: FrontendKind::ClusterIp,
        service: ServiceName {
            namespace: "shop".into(),
            name: format!("svc-{}", frontend.address.octets()[3]),
            port_name: None,
        },
        backends: backends.iter().map(|b| be(*b)).collect(),
        terminating: terminating.iter().map(|b| be(*b)).collect(),
        local: BTreeSet::new(),
        algorithm: Algorithm::Random,
        affinity_timeout: None,
        etp_local: false,
        two_scopes: false,
        source_ranges: None,
    }
}

fn range(a: [u8; 4], len: u8) -> SourceRange {
    SourceRange::new(Ipv4Addr::from(a), len).unwrap()
}

/// A LoadBalancer frontend admitting `ranges` (`None`: everyone).
fn lb(frontend: Frontend, backends: &[u8], ranges: Option<&[SourceRange]>) -> DesiredService {
    DesiredService {
        kind: FrontendKind::LoadBalancer,
        source_ranges: ranges.map(<[SourceRange]>::to_vec),
        ..svc(frontend, backends, &[])
    }
}

// ---- What a frontend admits, for the ordering of source ranges ----

/// The clients the maps let reach `f` (a union of ranges; `0.0.0.0/0`:
/// everyone), or `None` if `f` is no frontend.
fn admitted(a: &Applied, f: &Frontend) -> Option<BTreeSet<SourceRange>> {
    let m = a.services.get(f)?;
    Some(if m.flags & TW_SVC_F_SRC_RANGE == 0 {
        BTreeSet::from([SourceRange::MIN])
    } else {
        a.src_ranges_of(m.rev_nat_index).collect()
    })
}

/// The clients a desired frontend admits.
fn desired_admitted(d: &DesiredService) -> BTreeSet<SourceRange> {
    match &d.source_ranges {
        None => BTreeSet::from([SourceRange::MIN]),
        Some(v) => v.iter().copied().collect(),
    }
}

/// Whether the union of `set` covers every address of `p`.
fn covered(set: &BTreeSet<SourceRange>, p: SourceRange) -> bool {
    if set.iter().any(|r| r.contains(p)) {
        return true;
    }
    if p.prefix_len() == 32 || !set.iter().any(|r| p.contains(*r)) {
        return false;
    }
    let len = p.prefix_len() + 1;
    let upper = u32::from(p.network()) | (1 << (32 - u32::from(len)));
    covered(set, SourceRange::new(p.network(), len).unwrap())
        && covered(set, SourceRange::new(Ipv4Addr::from(upper), len).unwrap())
}

fn subset(a: &BTreeSet<SourceRange>, b: &BTreeSet<SourceRange>) -> bool {
    a.iter().all(|p| covered(b, *p))
}

fn intersection(a: &BTreeSet<SourceRange>, b: &BTreeSet<SourceRange>) -> BTreeSet<SourceRange> {
    let mut out = BTreeSet::new();
    for x in a {
        for y in b {
            if x.contains(*y) {
                out.insert(*y);
            } else if y.contains(*x) {
                out.insert(*x);
            }
        }
    }
    out
}

/// During a plan from `before` to `desired`, in state `now`: every frontend
/// admits at least the clients both `before` and `desired` admit (the one
/// that has it, if the other lacks the frontend) and nobody neither admits.
fn admission_within_bounds(
    before: &Applied,
    desired: &[DesiredService],
    now: &Applied,
) -> Result<(), String> {
    for f in now.services.keys() {
        let Some(got) = admitted(now, f) else {
            continue;
        };
        let old = admitted(before, f);
        let new = desired
            .iter()
            .find(|d| d.frontend == *f)
            .map(desired_admitted);
        let (lower, upper) = match (old, new) {
            (Some(o), Some(n)) => (intersection(&o, &n), o.union(&n).copied().collect()),
            (Some(o), None) => (o.clone(), o),
            (None, Some(n)) => (n.clone(), n),
            (None, None) => return Err(format!("{f} is a frontend of neither state")),
        };
        if !subset(&lower, &got) {
            return Err(format!("{f} admits {got:?}, less than {lower:?}"));
        }
        if !subset(&got, &upper) {
            return Err(format!("{f} admits {got:?}, more than {upper:?}"));
        }
    }
    Ok(())
}

/// Plan, apply op by op checking consistency and admission after each, and
/// check the result matches and re-planning is empty.
fn converge(applied: &mut Applied, desired: &[DesiredService], cfg: &LbConfig) -> Vec<Op> {
    let ops = plan(applied, desired, cfg).unwrap();
    let start = applied.clone();
    for op in &ops {
        let before = applied.clone();
        apply_to(applied, op);
        assert_ne!(&before, applied, "op {op} changes nothing");
        let bad = applied.inconsistencies();
        assert!(bad.is_empty(), "after {op}: {bad:?}");
        if let Err(e) = admission_within_bounds(&start, desired, applied) {
            panic!("after {op}: {e}\nops: {ops:#?}");
        }
    }
    if let Some(m) = mismatch(applied, desired, cfg) {
        panic!("after the plan: {m}\nops: {ops:#?}");
    }
    assert_eq!(plan(applied, desired, cfg).unwrap(), vec![]);
    ops
}

fn names(ops: &[Op]) -> Vec<String> {
    ops.iter().map(ToString::to_string).collect()
}

fn position(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
    ops.iter().position(f).unwrap()
}

#[test]
fn create_from_empty_in_order() {
    let mut a = Applied::default();
    let f = fe(1, 80);
    let ops = converge(&mut a, &[svc(f, &[2, 1], &[])], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert backend 1 10.244.1.1:8080/TCP flags 0x00",
            "upsert backend 2 10.244.1.2:8080/TCP flags 0x00",
            "upsert revnat 1 10.96.0.1:80/TCP",
            "upsert slot 10.96.0.1:80/TCP #1 -> backend 1",
            "upsert slot 10.96.0.1:80/TCP #2 -> backend 2",
            "upsert master 10.96.0.1:80/TCP count 2 revnat 1 flags 0x0001 random affinity 0",
        ]
    );
    assert_eq!(a.services[&f].flags, TW_SVC_F_CLUSTERIP);
}

#[test]
fn unchanged_state_gives_no_ops() {
    let mut a = Applied::default();
    let d = [svc(fe(1, 80), &[1, 2], &[3]), svc(fe(2, 80), &[2, 4], &[])];
    converge(&mut a, &d, &cfg());
    assert_eq!(plan(&a, &d, &cfg()).unwrap(), vec![]);
    // Input order does not matter.
    let mut rev = d.to_vec();
    rev.reverse();
    assert_eq!(plan(&a, &rev, &cfg()).unwrap(), vec![]);
}

#[test]
fn growth_writes_the_master_last() {
    let mut a = Applied::default();
    let f = fe(1, 80);
    converge(&mut a, &[svc(f, &[2, 4], &[])], &cfg());
    let ops = converge(&mut a, &[svc(f, &[1, 2, 4], &[])], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert backend 3 10.244.1.1:8080/TCP flags 0x00",
            "upsert slot 10.96.0.1:80/TCP #1 -> backend 3",
            "upsert slot 10.96.0.1:80/TCP #2 -> backend 1",
            "upsert slot 10.96.0.1:80/TCP #3 -> backend 2",
            "upsert master 10.96.0.1:80/TCP count 3 revnat 1 flags 0x0001 random affinity 0",
        ]
    );
}

#[test]
fn shrink_writes_the_master_first_and_deletes_backends_last() {
    let mut a = Applied::default();
    let f = fe(1, 80);
    converge(&mut a, &[svc(f, &[1, 2, 3], &[])], &cfg());
    let ops = converge(&mut a, &[svc(f, &[2, 3], &[])], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert master 10.96.0.1:80/TCP count 2 revnat 1 flags 0x0001 random affinity 0",
            "upsert slot 10.96.0.1:80/TCP #1 -> backend 2",
            "upsert slot 10.96.0.1:80/TCP #2 -> backend 3",
            "delete slot 10.96.0.1:80/TCP #3",
            "delete backend 1",
        ]
    );
}

#[test]
fn terminating_backend_keeps_its_entry_but_leaves_the_slots() {
    let mut a = Applied::default();
    let f = fe(1, 80);
    converge(&mut a, &[svc(f, &[1, 2], &[])], &cfg());
    let ops = converge(&mut a, &[svc(f, &[1], &[2])], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert backend 2 10.244.1.2:8080/TCP flags 0x02",
            "upsert master 10.96.0.1:80/TCP count 1 revnat 1 flags 0x0001 random affinity 0",
            "delete slot 10.96.0.1:80/TCP #2",
        ]
    );
    // Gone for good: now the entry goes.
    let ops = converge(&mut a, &[svc(f, &[1], &[])], &cfg());
    assert_eq!(names(&ops), ["delete backend 2"]);
}

#[test]
fn terminating_anywhere_means_in_no_slot() {
    let mut a = Applied::default();
    let d = [svc(fe(1, 80), &[1, 2], &[]), svc(fe(2, 80), &[], &[2])];
    converge(&mut a, &d, &cfg());
    assert_eq!(a.services[&fe(1, 80)].count, 1);
    let id = a.slots[&(fe(1, 80), 1)];
    assert_eq!(a.backends[&id].addr, be(1));
    let two = a.backends.values().find(|b| b.addr == be(2)).unwrap();
    assert_eq!(two.flags, TW_BE_F_TERMINATING);
}

#[test]
fn local_flag() {
    let mut a = Applied::default();
    let mut s = svc(fe(1, 80), &[1, 2], &[3]);
    s.local = BTreeSet::from([be(2), be(3)]);
    converge(&mut a, &[s], &cfg());
    let flags: Vec<(BackendAddr, u8)> = a.backends.values().map(|b| (b.addr, b.flags)).collect();
    assert_eq!(
        flags,
        [
            (be(1), 0),
            (be(2), TW_BE_F_LOCAL),
            (be(3), TW_BE_F_LOCAL | TW_BE_F_TERMINATING)
        ]
    );
}

#[test]
fn ids_are_kept_and_new_ones_are_the_lowest_free() {
    let mut a = Applied::default();
    converge(
        &mut a,
        &[svc(fe(1, 80), &[1, 2, 3], &[]), svc(fe(2, 80), &[], &[])],
        &cfg(),
    );
    assert_eq!(a.services[&fe(2, 80)].rev_nat_index, 2);
    // Backend 2 (id 2) and service 1 (index 1) go away.
    converge(&mut a, &[svc(fe(2, 80), &[1, 3], &[])], &cfg());
    assert_eq!(a.services[&fe(2, 80)].rev_nat_index, 2);
    let ids: Vec<(u32, BackendAddr)> = a.backends.iter().map(|(i, b)| (*i, b.addr)).collect();
    assert_eq!(ids, [(1, be(1)), (3, be(3))]);
    // New ones fill the holes.
    converge(
        &mut a,
        &[svc(fe(2, 80), &[1, 3, 9], &[]), svc(fe(3, 80), &[7], &[])],
        &cfg(),
    );
    assert_eq!(a.services[&fe(3, 80)].rev_nat_index, 1);
    let ids: Vec<(u32, BackendAddr)> = a.backends.iter().map(|(i, b)| (*i, b.addr)).collect();
    assert_eq!(ids, [(1, be(1)), (2, be(7)), (3, be(3)), (4, be(9))]);
}

#[test]
fn removed_service_order() {
    let mut a = Applied::default();
    let keep = svc(fe(1, 80), &[1], &[]);
    let mut gone = svc(fe(2, 80), &[1, 2], &[]);
    gone.algorithm = Algorithm::Maglev;
    converge(&mut a, &[keep.clone(), gone], &cfg());
    let ops = converge(&mut a, &[keep], &cfg());
    assert_eq!(
        names(&ops),
        [
            "delete master 10.96.0.2:80/TCP",
            "delete slot 10.96.0.2:80/TCP #1",
            "delete slot 10.96.0.2:80/TCP #2",
            "delete maglev 2",
            "delete revnat 2",
            "delete backend 2",
        ]
    );
}

#[test]
fn maglev_lifecycle() {
    let mut a = Applied::default();
    let f = fe(1, 80);
    let mut s = svc(f, &[1, 2], &[]);
    s.algorithm = Algorithm::Maglev;
    let ops = converge(&mut a, std::slice::from_ref(&s), &cfg());
    let set = position(&ops, |o| matches!(o, Op::SetMaglev { .. }));
    let master = position(&ops, |o| matches!(o, Op::UpsertMaster { .. }));
    let last_slot = ops
        .iter()
        .rposition(|o| matches!(o, Op::UpsertSlot { .. }))
        .unwrap();
    assert!(last_slot < set && set < master, "{ops:#?}");
    assert_eq!(a.maglev[&1].len(), M as usize);

    // Shrink: the table is replaced before the master shrinks.
    s.backends = vec![be(2)];
    let ops = converge(&mut a, std::slice::from_ref(&s), &cfg());
    assert!(matches!(ops[0], Op::SetMaglev { index: 1, .. }), "{ops:#?}");
    assert!(
        matches!(ops[1], Op::UpsertMaster { count: 1, .. }),
        "{ops:#?}"
    );
    assert!(a.maglev[&1].iter().all(|id| *id == 2));

    // A different M rebuilds only the table.
    let m37 = LbConfig {
        maglev_m: 37,
        ..cfg()
    };
    let ops = converge(&mut a, std::slice::from_ref(&s), &m37);
    assert_eq!(names(&ops), ["set maglev 1 (37 entries)"]);

    // No backends: the master goes to count 0, then the table goes.
    s.backends.clear();
    let ops = converge(&mut a, std::slice::from_ref(&s), &m37);
    assert_eq!(
        names(&ops),
        [
            "upsert master 10.96.0.1:80/TCP count 0 revnat 1 flags 0x0001 maglev affinity 0",
            "delete slot 10.96.0.1:80/TCP #1",
            "delete maglev 1",
            "delete backend 2",
        ]
    );

    // Back to random with backends: no table.
    s.backends = vec![be(1)];
    s.algorithm = Algorithm::Random;
    converge(&mut a, std::slice::from_ref(&s), &m37);
    assert!(a.maglev.is_empty());
}

#[test]
fn maglev_to_random_deletes_the_table_after_the_master() {
    let mut a = Applied::default();
    let mut s = svc(fe(1, 80), &[1, 2], &[]);
    s.algorithm = Algorithm::Maglev;
    converge(&mut a, std::slice::from_ref(&s), &cfg());
    s.algorithm = Algorithm::Random;
    s.affinity_timeout = Some(60);
    let ops = converge(&mut a, std::slice::from_ref(&s), &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert master 10.96.0.1:80/TCP count 2 revnat 1 flags 0x0009 random affinity 60",
            "delete maglev 1",
        ]
    );
    assert_eq!(
        a.services[&fe(1, 80)].flags,
        TW_SVC_F_CLUSTERIP | TW_SVC_F_AFFINITY
    );
}

#[test]
fn selectorless_frontend_exists_with_no_slots() {
    let mut a = Applied::default();
    let ops = converge(&mut a, &[svc(fe(1, 443), &[], &[])], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert revnat 1 10.96.0.1:443/TCP",
            "upsert master 10.96.0.1:443/TCP count 0 revnat 1 flags 0x0001 random affinity 0",
        ]
    );
}

#[test]
fn interrupted_plan_recovers() {
    let mut a = Applied::default();
    let d = [svc(fe(1, 80), &[1, 2], &[]), svc(fe(2, 80), &[3], &[])];
    let ops = plan(&a, &d, &cfg()).unwrap();
    // Crash after the backends, revnat entries and one slot.
    for op in &ops[..6] {
        apply_to(&mut a, op);
    }
    assert!(a.services.is_empty() && !a.revnat.is_empty());
    let rest = converge(&mut a, &d, &cfg());
    // The orphan reverse-NAT entries are reused, nothing is rewritten.
    assert!(
        !rest
            .iter()
            .any(|o| matches!(o, Op::UpsertRevNat { .. } | Op::UpsertBackend { .. })),
        "{rest:#?}"
    );
    assert_eq!(a.services[&fe(1, 80)].rev_nat_index, 1);
    // A crash leftover that nobody wants is cleaned up.
    let ops = plan(&Applied::default(), &d, &cfg()).unwrap();
    let mut b = Applied::default();
    for op in &ops[..6] {
        apply_to(&mut b, op);
    }
    converge(&mut b, &[], &cfg());
    assert_eq!(b, Applied::default());
}

#[test]
fn errors() {
    let a = Applied::default();
    let s = svc(fe(1, 80), &[1], &[]);
    let e = plan(&a, &[s.clone(), s.clone()], &cfg()).unwrap_err();
    assert!(matches!(e, LbError::DuplicateFrontend { .. }), "{e}");
    let mut m = s.clone();
    m.algorithm = Algorithm::Maglev;
    let bad = LbConfig {
        maglev_m: 32,
        ..cfg()
    };
    assert_eq!(
        plan(&a, &[m.clone()], &bad),
        Err(LbError::MaglevNotPrime { m: 32 })
    );
    // A bad M does not matter without Maglev services.
    assert!(plan(&a, &[s], &bad).is_ok());
    let mut big = svc(fe(1, 80), &[], &[]);
    big.backends = (0..=u16::MAX as u32)
        .map(|i| BackendAddr {
            address: Ipv4Addr::from(0x0af4_0000 + i),
            port: 80,
            proto: Proto::Tcp,
        })
        .collect();
    let e = plan(&a, &[big], &cfg()).unwrap_err();
    assert!(
        matches!(
            e,
            LbError::TooManyBackends {
                backends: 65536,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn revnat_exhaustion_is_an_error() {
    let mut a = Applied::default();
    for i in 1..=u16::MAX {
        a.revnat.insert(i, fe(200, i));
    }
    let e = plan(&a, &[svc(fe(1, 80), &[], &[])], &cfg()).unwrap_err();
    assert!(matches!(e, LbError::RevNatExhausted { .. }), "{e}");
}

#[test]
fn inconsistencies_are_reported() {
    let mut a = Applied::default();
    let f = fe(1, 80);
    a.services.insert(
        f,
        AppliedService {
            count: 2,
            rev_nat_index: 5,
            flags: TW_SVC_F_CLUSTERIP,
            algorithm: Algorithm::Maglev,
            affinity_timeout: 0,
        },
    );
    a.slots.insert((f, 1), 9);
    let bad = a.inconsistencies();
    assert_eq!(
        bad,
        [
            Inconsistency::SlotWithoutBackend {
                frontend: f,
                slot: 1,
                backend_id: 9
            },
            Inconsistency::MissingSlot {
                frontend: f,
                slot: 2
            },
            Inconsistency::MissingRevNat {
                frontend: f,
                rev_nat_index: 5
            },
            Inconsistency::MissingMaglev {
                frontend: f,
                rev_nat_index: 5
            },
        ]
    );
    assert_eq!(
        bad[0].to_string(),
        "10.96.0.1:80/TCP: slot 1 names missing backend 9"
    );
    // Planning from it repairs it.
    let d = [svc(f, &[1, 2], &[])];
    for op in &plan(&a, &d, &cfg()).unwrap() {
        apply_to(&mut a, op);
    }
    assert!(a.inconsistencies().is_empty());
    assert_eq!(mismatch(&a, &d, &cfg()), None);
    assert_eq!(plan(&a, &d, &cfg()).unwrap(), vec![]);
}

#[test]
fn json() {
    let mut a = Applied::default();
    let mut s = svc(fe(1, 80), &[1], &[]);
    s.algorithm = Algorithm::Maglev;
    let ops = converge(&mut a, &[s], &cfg());
    let j = serde_json::to_value(&a).unwrap();
    assert_eq!(j["services"][0]["frontend"]["address"], "10.96.0.1");
    assert_eq!(j["services"][0]["count"], 1);
    assert_eq!(j["slots"][0]["backend_id"], 1);
    assert_eq!(j["backends"]["1"]["addr"]["port"], 8080);
    let j = serde_json::to_value(&ops).unwrap();
    assert_eq!(j[0]["op"], "upsert_backend");
    assert_eq!(j.as_array().unwrap().last().unwrap()["op"], "upsert_master");
}

#[test]
fn source_ranges_go_in_before_the_flag_and_out_after_it() {
    let mut a = Applied::default();
    let f = fe(1, 80);
    let office = range([203, 0, 113, 0], 24);
    let vpn = range([10, 8, 0, 0], 16);
    let lab = range([192, 0, 2, 0], 24);
    let plain = TW_SVC_F_LOADBALANCER;
    let checked = TW_SVC_F_LOADBALANCER | TW_SVC_F_SRC_RANGE;

    // New, restricted: the ranges first, then the master with the flag.
    let ops = converge(&mut a, &[lb(f, &[1], Some(&[vpn, office]))], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert backend 1 10.244.1.1:8080/TCP flags 0x00",
            "upsert revnat 1 10.96.0.1:80/TCP",
            "upsert src range 1 10.8.0.0/16",
            "upsert src range 1 203.0.113.0/24",
            "upsert slot 10.96.0.1:80/TCP #1 -> backend 1",
            "upsert master 10.96.0.1:80/TCP count 1 revnat 1 flags 0x00a0 random affinity 0",
        ]
    );
    assert_eq!(a.services[&f].flags, checked);
    assert_eq!(a.src_ranges_of(1).collect::<Vec<_>>(), [vpn, office]);

    // Ranges change, the flag stays: the new one in, the master untouched,
    // then the old one out.
    let ops = converge(&mut a, &[lb(f, &[1], Some(&[office, lab]))], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert src range 1 192.0.2.0/24",
            "delete src range 1 10.8.0.0/16"
        ]
    );

    // No more ranges: the flag goes first, then the entries.
    let ops = converge(&mut a, &[lb(f, &[1], None)], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert master 10.96.0.1:80/TCP count 1 revnat 1 flags 0x0020 random affinity 0",
            "delete src range 1 192.0.2.0/24",
            "delete src range 1 203.0.113.0/24",
        ]
    );
    assert_eq!(a.services[&f].flags, plain);
    assert!(a.src_ranges.is_empty());

    // An existing frontend gets ranges: entries, then the flag.
    let ops = converge(&mut a, &[lb(f, &[1], Some(&[lab]))], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert src range 1 192.0.2.0/24",
            "upsert master 10.96.0.1:80/TCP count 1 revnat 1 flags 0x00a0 random affinity 0",
        ]
    );

    // IPv6 ranges only: the flag with no entry admits nobody.
    let ops = converge(&mut a, &[lb(f, &[1], Some(&[]))], &cfg());
    assert_eq!(names(&ops), ["delete src range 1 192.0.2.0/24"]);
    assert_eq!(a.services[&f].flags, checked);
    assert_eq!(admitted(&a, &f), Some(BTreeSet::new()));

    // Removed: the master, its slots, its ranges, its reverse-NAT entry.
    converge(&mut a, &[lb(f, &[1], Some(&[office]))], &cfg());
    let ops = converge(&mut a, &[], &cfg());
    assert_eq!(
        names(&ops),
        [
            "delete master 10.96.0.1:80/TCP",
            "delete slot 10.96.0.1:80/TCP #1",
            "delete src range 1 203.0.113.0/24",
            "delete revnat 1",
            "delete backend 1",
        ]
    );
    assert_eq!(a, Applied::default());
}

#[test]
fn ranges_are_per_frontend_index() {
    let mut a = Applied::default();
    let office = range([203, 0, 113, 0], 24);
    let d = [
        lb(fe(1, 80), &[1], Some(&[office])),
        lb(fe(1, 443), &[1], Some(&[office])),
        lb(fe(2, 80), &[1], None),
    ];
    converge(&mut a, &d, &cfg());
    let indexes: Vec<u16> = d
        .iter()
        .map(|d| a.services[&d.frontend].rev_nat_index)
        .collect();
    assert_eq!(
        a.src_ranges,
        BTreeSet::from([(indexes[0], office), (indexes[1], office)])
    );
    assert_eq!(a.services[&fe(2, 80)].flags & TW_SVC_F_SRC_RANGE, 0);
    // A missing entry is a mismatch, and planning puts it back.
    a.src_ranges.remove(&(indexes[1], office));
    let m = mismatch(&a, &d, &cfg()).unwrap();
    assert!(m.contains("source ranges"), "{m}");
    assert_eq!(
        names(&plan(&a, &d, &cfg()).unwrap()),
        [format!("upsert src range {} 203.0.113.0/24", indexes[1])]
    );
    // So is an entry of an index no frontend has.
    a.src_ranges.insert((indexes[1], office));
    a.src_ranges.insert((99, office));
    let m = mismatch(&a, &d, &cfg()).unwrap();
    assert!(m.contains("reverse-NAT index 99"), "{m}");
    assert_eq!(
        names(&plan(&a, &d, &cfg()).unwrap()),
        ["delete src range 99 203.0.113.0/24"]
    );
}

#[test]
fn an_index_with_left_over_ranges_is_not_reused() {
    // A crash left ranges of index 1 behind (its master and reverse-NAT
    // entry gone): a new frontend gets another index, and they go.
    let mut a = Applied::default();
    let office = range([203, 0, 113, 0], 24);
    a.src_ranges.insert((1, office));
    let ops = converge(&mut a, &[lb(fe(1, 80), &[], None)], &cfg());
    assert_eq!(
        names(&ops),
        [
            "upsert revnat 2 10.96.0.1:80/TCP",
            "upsert master 10.96.0.1:80/TCP count 0 revnat 2 flags 0x0020 random affinity 0",
            "delete src range 1 203.0.113.0/24",
        ]
    );
}

#[test]
fn left_over_ranges_of_a_reused_index_go_before_the_flag() {
    // A crash after the ranges of a new frontend: the orphan reverse-NAT
    // entry and its ranges are reused; what is not wanted any more goes
    // before the master gets the flag.
    let office = range([203, 0, 113, 0], 24);
    let vpn = range([10, 8, 0, 0], 16);
    let f = fe(1, 80);
    let ops = plan(
        &Applied::default(),
        &[lb(f, &[], Some(&[office, vpn]))],
        &cfg(),
    )
    .unwrap();
    let mut a = Applied::default();
    for op in &ops[..3] {
        apply_to(&mut a, op);
    }
    assert!(a.services.is_empty() && a.src_ranges.len() == 2, "{a:?}");
    let ops = converge(&mut a, &[lb(f, &[], Some(&[office]))], &cfg());
    assert_eq!(
        names(&ops),
        [
            "delete src range 1 10.8.0.0/16",
            "upsert master 10.96.0.1:80/TCP count 0 revnat 1 flags 0x00a0 random affinity 0",
        ]
    );
}

#[test]
fn too_many_ranges_is_an_error() {
    let a = Applied::default();
    let many: Vec<SourceRange> = (0..=u32::try_from(TW_LB_SRC_RANGE_MAX).unwrap())
        .map(|i| SourceRange::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap())
        .collect();
    let e = plan(&a, &[lb(fe(1, 80), &[], Some(&many))], &cfg()).unwrap_err();
    assert_eq!(
        e,
        LbError::MapFull {
            map: "tw_lb4_srcrange",
            needed: TW_LB_SRC_RANGE_MAX + 1,
            max: TW_LB_SRC_RANGE_MAX
        }
    );
    assert!(plan(&a, &[lb(fe(1, 80), &[], Some(&many[1..]))], &cfg()).is_ok());
}

#[test]
fn admission_bounds_catch_a_wrong_order() {
    // The checker itself: a master flagged before its ranges admits
    // nobody, less than the new state does.
    let f = fe(1, 80);
    let office = range([203, 0, 113, 0], 24);
    let d = [lb(f, &[], Some(&[office]))];
    let mut a = Applied::default();
    converge(&mut a, &[lb(f, &[], None)], &cfg());
    let before = a.clone();
    let master = a.services.get_mut(&f).unwrap();
    master.flags |= TW_SVC_F_SRC_RANGE;
    let e = admission_within_bounds(&before, &d, &a).unwrap_err();
    assert!(e.contains("less than"), "{e}");
    a.src_ranges.insert((1, office));
    assert_eq!(admission_within_bounds(&before, &d, &a), Ok(()));
    // From restricted to restricted, an entry beyond both admits too many.
    let before = a.clone();
    a.src_ranges.insert((1, range([10, 0, 0, 0], 8)));
    let e = admission_within_bounds(&before, &d, &a).unwrap_err();
    assert!(e.contains("more than"), "{e}");
    // Coverage is exact: two halves cover their parent.
    let halves = BTreeSet::from([range([10, 0, 0, 0], 9), range([10, 128, 0, 0], 9)]);
    assert!(subset(&BTreeSet::from([range([10, 0, 0, 0], 8)]), &halves));
    let one = BTreeSet::from([range([10, 0, 0, 0], 9)]);
    assert!(!subset(&BTreeSet::from([range([10, 0, 0, 0], 8)]), &one));
}

#[test]
fn source_ranges_json() {
    let mut a = Applied::default();
    let ops = converge(
        &mut a,
        &[lb(fe(1, 80), &[], Some(&[range([10, 8, 0, 0], 16)]))],
        &cfg(),
    );
    let j = serde_json::to_value(&a).unwrap();
    assert_eq!(
        j["src_ranges"],
        serde_json::json!([{"rev_nat_index": 1, "range": "10.8.0.0/16"}])
    );
    let j = serde_json::to_value(&ops).unwrap();
    assert_eq!(
        j[1],
        serde_json::json!({"op": "upsert_src_range", "index": 1, "range": "10.8.0.0/16"})
    );
}

// ---- Property test ----

const POOL: u8 = 24;

fn pool_backend(i: u8) -> BackendAddr {
    BackendAddr {
        address: Ipv4Addr::new(10, 244, i % 4, i / 4 + 1),
        port: if i.is_multiple_of(3) { 80 } else { 8080 },
        proto: if i.is_multiple_of(5) {
            Proto::Udp
        } else {
            Proto::Tcp
        },
    }
}

fn pool_frontend(i: u8) -> Frontend {
    let (address, port) = if i < 6 {
        (Ipv4Addr::new(10, 96, 0, i / 2 + 1), 80 + u16::from(i % 2))
    } else {
        (Ipv4Addr::new(192, 168, 1, 1), 30000)
    };
    Frontend {
        address,
        port,
        proto: Proto::Tcp,
        scope: if i == 7 {
            Scope::Internal
        } else {
            Scope::External
        },
    }
}

fn subset_of_pool() -> impl Strategy<Value = BTreeSet<u8>> {
    proptest::collection::btree_set(0..POOL, 0..12)
}

/// Source ranges the pool's LoadBalancer frontends may admit (nested and
/// disjoint ones).
fn pool_range(i: u8) -> SourceRange {
    match i {
        0 => range([10, 0, 0, 0], 8),
        1 => range([10, 1, 0, 0], 16),
        2 => range([10, 1, 2, 0], 24),
        3 => range([192, 168, 0, 0], 16),
        4 => range([203, 0, 113, 7], 32),
        _ => range([0, 0, 0, 0], 0),
    }
}

fn ranges_strategy() -> impl Strategy<Value = Option<Vec<SourceRange>>> {
    proptest::option::of(proptest::collection::btree_set(0u8..6, 0..4))
        .prop_map(|s| s.map(|s| s.into_iter().map(pool_range).collect()))
}

fn service_strategy(i: u8) -> impl Strategy<Value = DesiredService> {
    (
        subset_of_pool(),
        subset_of_pool(),
        subset_of_pool(),
        any::<bool>(),
        proptest::option::of(1u32..100),
        any::<bool>(),
        ranges_strategy(),
    )
        .prop_map(move |(act, term, local, maglev, affinity, etp, ranges)| {
            let addrs = |s: &BTreeSet<u8>| s.iter().map(|b| pool_backend(*b)).collect::<Vec<_>>();
            let backends = addrs(&act);
            let terminating = addrs(&term);
            let local = local
                .iter()
                .map(|b| pool_backend(*b))
                .filter(|b| backends.contains(b) || terminating.contains(b))
                .collect();
            let node_port = i >= 6;
            let load_balancer = (2..6).contains(&i);
            DesiredService {
                frontend: pool_frontend(i),
                kind: if node_port {
                    FrontendKind::NodePort
                } else if load_balancer {
                    FrontendKind::LoadBalancer
                } else {
                    FrontendKind::ClusterIp
                },
                service: ServiceName {
                    namespace: "ns".into(),
                    name: format!("s{i}"),
                    port_name: None,
                },
                backends,
                terminating,
                local,
                algorithm: if maglev {
                    Algorithm::Maglev
                } else {
                    Algorithm::Random
                },
                affinity_timeout: affinity,
                etp_local: node_port && i == 6 && etp,
                two_scopes: node_port && etp,
                source_ranges: ranges.filter(|_| load_balancer),
            }
        })
}

fn desired_strategy() -> impl Strategy<Value = Vec<DesiredService>> {
    proptest::collection::btree_set(0u8..8, 0..=8)
        .prop_flat_map(|fronts| fronts.into_iter().map(service_strategy).collect::<Vec<_>>())
}

/// One step: a desired state, M, and how much of the plan runs before a
/// "crash" (>= 100: all of it).
fn step_strategy() -> impl Strategy<Value = (Vec<DesiredService>, bool, u32)> {
    (desired_strategy(), any::<bool>(), 0u32..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_intermediate_state_is_consistent(
        steps in proptest::collection::vec(step_strategy(), 1..5)
    ) {
        let mut applied = Applied::default();
        let last = steps.len() - 1;
        for (n, (desired, m37, cut)) in steps.into_iter().enumerate() {
            let cfg = LbConfig { default_algorithm: Algorithm::Random, maglev_m: if m37 { 37 } else { 31 } };
            let before = applied.clone();
            let ops = plan(&applied, &desired, &cfg).unwrap();
            let run = if n == last || cut >= 100 {
                ops.len()
            } else {
                ops.len() * cut as usize / 100
            };
            for op in &ops[..run] {
                let prev = applied.clone();
                apply_to(&mut applied, op);
                prop_assert_ne!(&prev, &applied, "op {} changes nothing", op);
                let bad = applied.inconsistencies();
                prop_assert!(bad.is_empty(), "after {}: {:?}", op, bad);
                let admission = admission_within_bounds(&before, &desired, &applied);
                prop_assert!(admission.is_ok(), "after {}: {:?}", op, admission);
            }
            if run == ops.len() {
                let m = mismatch(&applied, &desired, &cfg);
                prop_assert!(m.is_none(), "{:?}", m);
                prop_assert_eq!(plan(&applied, &desired, &cfg).unwrap(), vec![]);
                // Ids survive: backends by address, frontends' indexes.
                for (id, b) in &before.backends {
                    if let Some(now) = applied.backends.get(id) {
                        prop_assert_eq!(now.addr, b.addr);
                    }
                    let still = applied.backends.values().any(|x| x.addr == b.addr);
                    if still {
                        prop_assert!(applied.backends.get(id).is_some_and(|x| x.addr == b.addr));
                    }
                }
                for (f, m) in &before.services {
                    if let Some(now) = applied.services.get(f) {
                        prop_assert_eq!(now.rev_nat_index, m.rev_nat_index);
                    }
                }
            }
        }
    }
}

mod scoped;
