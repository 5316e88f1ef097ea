//! What the desired state as a whole asks of each backend address: its
//! flags are a property of the address across all services, which is why a
//! scoped plan needs this global (but incrementally maintained) view.

use std::collections::{BTreeMap, BTreeSet};

use crate::flags::{TW_BE_F_LOCAL, TW_BE_F_TERMINATING};
use crate::model::{BackendAddr, DesiredService, Frontend};

/// How the desired services use one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AddrDemand {
    /// Frontends listing it as active (with multiplicity, for robustness
    /// against duplicate frontends).
    active: BTreeMap<Frontend, u32>,
    /// Services listing it as terminating.
    terminating: u32,
    /// Services listing it (in either list) and as local.
    local: u32,
}

impl AddrDemand {
    fn flags(&self) -> Option<u8> {
        if self.active.is_empty() && self.terminating == 0 {
            return None;
        }
        let mut f = 0;
        if self.terminating > 0 {
            f |= TW_BE_F_TERMINATING;
        }
        if self.local > 0 {
            f |= TW_BE_F_LOCAL;
        }
        Some(f)
    }
}

/// The backend entries a desired state needs, across all its services: an
/// address is needed if any service lists it; it is terminating if any
/// service lists it as terminating (the flag describes the pod; it is then
/// in no slot anywhere) and local if any service listing it says so.
///
/// [`plan`](crate::plan) builds one from the whole desired state;
/// [`plan_scoped`](crate::plan_scoped) takes one the caller keeps in step
/// with the whole desired state ([`BackendDemand::add`] /
/// [`BackendDemand::remove`] for every desired service that appears,
/// changes or goes; [`DesiredState`](crate::DesiredState) does it), and
/// which remembers the addresses touched since [`BackendDemand::commit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendDemand {
    addrs: BTreeMap<BackendAddr, AddrDemand>,
    /// Addresses changed since the last commit, with their flags before the
    /// first change (`None`: not needed then).
    touched: BTreeMap<BackendAddr, Option<u8>>,
}

impl BackendDemand {
    /// The demand of a whole desired state (nothing touched).
    pub fn new(desired: &[DesiredService]) -> BackendDemand {
        let mut d = BackendDemand::default();
        for s in desired {
            d.change(s, true, false);
        }
        d
    }

    /// Count one more desired service.
    pub fn add(&mut self, d: &DesiredService) {
        self.change(d, true, true);
    }

    /// Stop counting a desired service: exactly one previously added.
    pub fn remove(&mut self, d: &DesiredService) {
        self.change(d, false, true);
    }

    fn change(&mut self, d: &DesiredService, add: bool, track: bool) {
        let active: BTreeSet<BackendAddr> = d.backends.iter().copied().collect();
        let terminating: BTreeSet<BackendAddr> = d.terminating.iter().copied().collect();
        let listed: BTreeSet<BackendAddr> = active.union(&terminating).copied().collect();
        let bump = |n: &mut u32| {
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
        };
        for b in listed {
            if track {
                let before = self.flags(&b);
                self.touched.entry(b).or_insert(before);
            }
            let e = self.addrs.entry(b).or_default();
            if active.contains(&b) {
                let n = e.active.entry(d.frontend).or_insert(0);
                bump(n);
                if *n == 0 {
                    e.active.remove(&d.frontend);
                }
            }
            if terminating.contains(&b) {
                bump(&mut e.terminating);
            }
            if d.local.contains(&b) {
                bump(&mut e.local);
            }
            if e.flags().is_none() {
                self.addrs.remove(&b);
            }
        }
    }

    /// The backend entry flags of a needed address; `None` if no service
    /// lists it.
    pub fn flags(&self, addr: &BackendAddr) -> Option<u8> {
        self.addrs.get(addr).and_then(AddrDemand::flags)
    }

    /// Number of needed addresses (backend entries).
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether no address is needed.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The needed addresses with their flags, by address.
    pub fn iter(&self) -> impl Iterator<Item = (BackendAddr, u8)> + '_ {
        self.addrs
            .iter()
            .filter_map(|(a, d)| d.flags().map(|f| (*a, f)))
    }

    /// The frontends listing `addr` as active.
    pub fn active_listers(&self, addr: &BackendAddr) -> impl Iterator<Item = &Frontend> + '_ {
        self.addrs
            .get(addr)
            .into_iter()
            .flat_map(|d| d.active.keys())
    }

    /// The addresses a service's slots hold, in slot order: its active
    /// backends that are terminating nowhere.
    pub fn active(&self, d: &DesiredService) -> Vec<BackendAddr> {
        super::BackendFlags::active(self, d)
    }

    /// The addresses added, removed or changed since the last
    /// [`BackendDemand::commit`] (possibly back to what they were).
    pub fn touched(&self) -> impl Iterator<Item = &BackendAddr> + '_ {
        self.touched.keys()
    }

    /// The frontends whose slots change because an address they list as
    /// active became terminating or stopped being terminating since the last
    /// commit: they belong in a scoped plan's scope even if their own
    /// desired service did not change.
    pub fn coupled(&self) -> BTreeSet<Frontend> {
        let term = |f: Option<u8>| f.is_some_and(|f| f & TW_BE_F_TERMINATING != 0);
        self.touched
            .iter()
            .filter(|(a, before)| term(**before) != term(self.flags(a)))
            .flat_map(|(a, _)| self.active_listers(a).copied())
            .collect()
    }

    /// Forget the touched addresses: call once a plan covering them has been
    /// executed.
    pub fn commit(&mut self) {
        self.touched.clear();
    }
}
