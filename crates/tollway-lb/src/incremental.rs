//! The desired state kept up to date one Service, Pod or EndpointSlice
//! change at a time, with what changed since the last plan: the input of
//! [`plan_scoped`](crate::plan_scoped).

use std::collections::{BTreeMap, BTreeSet};

use tollway_api::{EndpointSlice, Pod, Service};

use crate::desired::{
    DesiredWarning, PodIndex, SliceIndex, selector_matches, service_frontends, service_of,
};
use crate::model::{DesiredService, Frontend, LbConfig, NodeContext, ServiceKey};
use crate::plan::BackendDemand;

/// One service's frontends (before contested frontends are resolved) and
/// warnings.
#[derive(Debug, Clone, Default, PartialEq)]
struct Output {
    frontends: Vec<DesiredService>,
    warnings: Vec<DesiredWarning>,
}

/// Label key → value → names of the services whose selector's first pair it
/// is (a service matching a pod's labels has its first pair among them).
type SelectorIndex = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Services, Pods and EndpointSlices with the desired state derived from
/// them, updated per change at the cost of the services the change affects
/// (a pod change: the services selecting it; a slice change: the
/// selector-less service it is labelled with, before and after).
///
/// It holds copies of the objects, each service's frontends, the claims on
/// every frontend (the first service by namespace and name wins a contested
/// one, as in [`desired_services`](crate::desired_services)), the resulting
/// desired state and its [`BackendDemand`], and the frontends whose desired
/// service changed since the last [`DesiredState::commit`].
///
/// [`DesiredState::desired`] and [`DesiredState::warnings`] always equal
/// what [`desired_services`](crate::desired_services) gives for the held
/// objects.
///
/// ```text
/// state.upsert_pod(pod);                         // or any other change
/// let (desired, scope) = state.pending();
/// let ops = plan_scoped(&applied, &desired, &scope, state.demand(), &cfg)?;
/// // execute ops, apply_to(&mut applied, op) for each
/// state.commit();
/// ```
#[derive(Debug, Clone)]
pub struct DesiredState {
    node: NodeContext,
    cfg: LbConfig,
    services: BTreeMap<ServiceKey, Service>,
    /// By namespace.
    selectors: BTreeMap<String, SelectorIndex>,
    pods: PodIndex,
    slices: SliceIndex,
    outputs: BTreeMap<ServiceKey, Output>,
    /// Frontend → (service, position in its output) of every claimant.
    claims: BTreeMap<Frontend, BTreeSet<(ServiceKey, usize)>>,
    /// Frontends with more than one claimant.
    contested: BTreeSet<Frontend>,
    /// Services with warnings.
    warned: BTreeSet<ServiceKey>,
    /// The desired state: each frontend's winning desired service.
    winners: BTreeMap<Frontend, DesiredService>,
    demand: BackendDemand,
    /// Frontends whose desired service changed since the last commit.
    dirty: BTreeSet<Frontend>,
}

impl DesiredState {
    /// No services, no pods, no slices.
    pub fn new(node: NodeContext, cfg: LbConfig) -> DesiredState {
        DesiredState {
            node,
            cfg,
            services: BTreeMap::new(),
            selectors: BTreeMap::new(),
            pods: PodIndex::new(),
            slices: SliceIndex::new(),
            outputs: BTreeMap::new(),
            claims: BTreeMap::new(),
            contested: BTreeSet::new(),
            warned: BTreeSet::new(),
            winners: BTreeMap::new(),
            demand: BackendDemand::default(),
            dirty: BTreeSet::new(),
        }
    }

    /// The state of these objects (copied). Every frontend is pending: plan
    /// it with [`plan`](crate::plan)`(applied, &state.desired(), cfg)` (or a
    /// scoped plan of [`DesiredState::pending`]), then commit.
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        pods: impl IntoIterator<Item = &'a Pod>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node: NodeContext,
        cfg: LbConfig,
    ) -> DesiredState {
        let mut state = DesiredState::new(node, cfg);
        state.pods = PodIndex::from_pods(pods);
        state.slices = SliceIndex::from_slices(slices);
        for svc in services {
            let key = ServiceKey::of(svc);
            if let Some(old) = state.services.remove(&key) {
                state.unindex_selector(&key, &old);
            }
            state.index_selector(&key, svc);
            state.services.insert(key, svc.clone());
        }
        let keys: Vec<ServiceKey> = state.services.keys().cloned().collect();
        for key in &keys {
            state.recompute(key);
        }
        state
    }

    /// The node the state is computed for.
    pub fn node(&self) -> &NodeContext {
        &self.node
    }

    /// The load-balancer settings it is computed with.
    pub fn config(&self) -> &LbConfig {
        &self.cfg
    }

    /// The held service with this namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// The held services, by namespace and name.
    pub fn services(&self) -> impl Iterator<Item = &Service> + '_ {
        self.services.values()
    }

    /// The held pods.
    pub fn pods(&self) -> &PodIndex {
        &self.pods
    }

    /// The held EndpointSlices.
    pub fn slices(&self) -> &SliceIndex {
        &self.slices
    }

    /// Add or replace a service; false if an equal one was held (nothing
    /// changes).
    pub fn upsert_service(&mut self, svc: Service) -> bool {
        let key = ServiceKey::of(&svc);
        if self.services.get(&key) == Some(&svc) {
            return false;
        }
        if let Some(old) = self.services.remove(&key) {
            self.unindex_selector(&key, &old);
        }
        self.index_selector(&key, &svc);
        self.services.insert(key.clone(), svc);
        self.recompute(&key);
        true
    }

    /// Remove a service; returns it.
    pub fn remove_service(&mut self, namespace: &str, name: &str) -> Option<Service> {
        let key = ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let old = self.services.remove(&key)?;
        self.unindex_selector(&key, &old);
        self.recompute(&key);
        Some(old)
    }

    /// Add or replace a pod; false if an equal one was held (nothing
    /// changes). Recomputes the services selecting the old or the new pod.
    pub fn upsert_pod(&mut self, pod: Pod) -> bool {
        let old = self
            .pods
            .get(pod.metadata.namespace_or_default(), &pod.metadata.name);
        if old == Some(&pod) {
            return false;
        }
        let affected = self.affected_services(old, Some(&pod));
        self.pods.upsert(pod);
        for key in &affected {
            self.recompute(key);
        }
        true
    }

    /// Remove a pod; returns it. Recomputes the services selecting it.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<Pod> {
        let old = self.pods.remove(namespace, name)?;
        let affected = self.affected_services(Some(&old), None);
        for key in &affected {
            self.recompute(key);
        }
        Some(old)
    }

    /// Add or replace an EndpointSlice; false if an equal one was held
    /// (nothing changes). Recomputes the selector-less services it belonged
    /// to and belongs to (a service with a selector takes its endpoints from
    /// pods).
    pub fn upsert_slice(&mut self, slice: EndpointSlice) -> bool {
        let old = self
            .slices
            .get(slice.metadata.namespace_or_default(), &slice.metadata.name);
        if old == Some(&slice) {
            return false;
        }
        let affected = self.slice_services(old, Some(&slice));
        self.slices.upsert(slice);
        for key in &affected {
            self.recompute(key);
        }
        true
    }

    /// Remove an EndpointSlice; returns it. Recomputes the selector-less
    /// service it belonged to.
    pub fn remove_slice(&mut self, namespace: &str, name: &str) -> Option<EndpointSlice> {
        let old = self.slices.remove(namespace, name)?;
        let affected = self.slice_services(Some(&old), None);
        for key in &affected {
            self.recompute(key);
        }
        Some(old)
    }

    /// The held selector-less services a slice change (`old` before,
    /// `new` after) can affect: those named by either's
    /// `kubernetes.io/service-name` label in its namespace.
    pub fn slice_services(
        &self,
        old: Option<&EndpointSlice>,
        new: Option<&EndpointSlice>,
    ) -> BTreeSet<ServiceKey> {
        old.into_iter()
            .chain(new)
            .filter_map(service_of)
            .filter(|k| {
                self.services
                    .get(k)
                    .is_some_and(|s| s.spec.selector.is_empty())
            })
            .collect()
    }

    /// The held services whose selector matches the old or the new labels
    /// of a pod, in its namespace: those whose endpoints the change can
    /// affect (as [`affected_services`](crate::affected_services), through
    /// the selector index).
    pub fn affected_services(&self, old: Option<&Pod>, new: Option<&Pod>) -> BTreeSet<ServiceKey> {
        let mut out = BTreeSet::new();
        for pod in old.into_iter().chain(new) {
            let namespace = pod.metadata.namespace_or_default();
            let Some(index) = self.selectors.get(namespace) else {
                continue;
            };
            let labels = &pod.metadata.labels;
            for (k, v) in labels {
                let Some(names) = index.get(k).and_then(|values| values.get(v)) else {
                    continue;
                };
                for name in names {
                    let key = ServiceKey {
                        namespace: namespace.to_string(),
                        name: name.clone(),
                    };
                    if self
                        .services
                        .get(&key)
                        .is_some_and(|s| selector_matches(&s.spec.selector, labels))
                    {
                        out.insert(key);
                    }
                }
            }
        }
        out
    }

    /// The whole desired state, sorted by frontend: what
    /// [`desired_services`](crate::desired_services) gives. O(frontends).
    pub fn desired(&self) -> Vec<DesiredService> {
        self.winners.values().cloned().collect()
    }

    /// The desired service of one frontend.
    pub fn desired_of(&self, frontend: &Frontend) -> Option<&DesiredService> {
        self.winners.get(frontend)
    }

    /// The warnings [`desired_services`](crate::desired_services) gives, in
    /// its order. Costs the warnings, not the services.
    pub fn warnings(&self) -> Vec<DesiredWarning> {
        let mut out: Vec<DesiredWarning> = self
            .warned
            .iter()
            .filter_map(|k| self.outputs.get(k))
            .flat_map(|o| o.warnings.iter().cloned())
            .collect();
        for f in &self.contested {
            let mut claimants = self
                .claims
                .get(f)
                .into_iter()
                .flatten()
                .filter_map(|(k, i)| self.outputs.get(k).and_then(|o| o.frontends.get(*i)));
            let Some(kept) = claimants.next() else {
                continue;
            };
            for d in claimants {
                out.push(DesiredWarning::DuplicateFrontend {
                    frontend: *f,
                    kept: kept.service.clone(),
                    dropped: d.service.clone(),
                });
            }
        }
        out
    }

    /// The backend demand of the whole desired state, with the addresses
    /// touched since the last commit: the `demand` of
    /// [`plan_scoped`](crate::plan_scoped).
    pub fn demand(&self) -> &BackendDemand {
        &self.demand
    }

    /// What to plan since the last commit: the desired services of the
    /// changed frontends that exist, and the scope: every frontend whose
    /// desired service appeared, changed or went, plus
    /// [`BackendDemand::coupled`]. Pass both to
    /// [`plan_scoped`](crate::plan_scoped).
    pub fn pending(&self) -> (Vec<DesiredService>, BTreeSet<Frontend>) {
        let mut scope = self.dirty.clone();
        scope.extend(self.demand.coupled());
        let desired = scope
            .iter()
            .filter_map(|f| self.winners.get(f))
            .cloned()
            .collect();
        (desired, scope)
    }

    /// Whether anything is pending.
    pub fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Forget what is pending: call once the plan of
    /// [`DesiredState::pending`] (or a full plan of
    /// [`DesiredState::desired`]) has been executed.
    pub fn commit(&mut self) {
        self.dirty.clear();
        self.demand.commit();
    }

    fn index_selector(&mut self, key: &ServiceKey, svc: &Service) {
        let Some((k, v)) = svc.spec.selector.iter().next() else {
            return;
        };
        self.selectors
            .entry(key.namespace.clone())
            .or_default()
            .entry(k.clone())
            .or_default()
            .entry(v.clone())
            .or_default()
            .insert(key.name.clone());
    }

    fn unindex_selector(&mut self, key: &ServiceKey, svc: &Service) {
        let Some((k, v)) = svc.spec.selector.iter().next() else {
            return;
        };
        let Some(ns) = self.selectors.get_mut(&key.namespace) else {
            return;
        };
        if let Some(values) = ns.get_mut(k) {
            if let Some(names) = values.get_mut(v) {
                names.remove(&key.name);
                if names.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                ns.remove(k);
            }
        }
        if ns.is_empty() {
            self.selectors.remove(&key.namespace);
        }
    }

    /// Recompute one service's frontends and everything that depends on
    /// them.
    fn recompute(&mut self, key: &ServiceKey) {
        let mut new = Output::default();
        if let Some(svc) = self.services.get(key) {
            let pods = &self.pods;
            let select =
                |s: &Service| pods.selected(s.metadata.namespace_or_default(), &s.spec.selector);
            let slices = &self.slices;
            let of_service = |s: &Service| {
                slices.of_service(s.metadata.namespace_or_default(), &s.metadata.name)
            };
            service_frontends(
                svc,
                &select,
                &of_service,
                &self.node,
                &self.cfg,
                &mut new.frontends,
                &mut new.warnings,
            );
        }
        let empty = Output::default();
        if self.outputs.get(key).unwrap_or(&empty) == &new {
            return;
        }
        let old = self.outputs.remove(key).unwrap_or_default();
        let mut touched = BTreeSet::new();
        for (i, d) in old.frontends.iter().enumerate() {
            if let Some(c) = self.claims.get_mut(&d.frontend) {
                c.remove(&(key.clone(), i));
                if c.is_empty() {
                    self.claims.remove(&d.frontend);
                }
            }
            touched.insert(d.frontend);
        }
        for (i, d) in new.frontends.iter().enumerate() {
            self.claims
                .entry(d.frontend)
                .or_default()
                .insert((key.clone(), i));
            touched.insert(d.frontend);
        }
        if new.warnings.is_empty() {
            self.warned.remove(key);
        } else {
            self.warned.insert(key.clone());
        }
        if new != empty {
            self.outputs.insert(key.clone(), new);
        }
        for f in touched {
            if self.claims.get(&f).is_some_and(|c| c.len() > 1) {
                self.contested.insert(f);
            } else {
                self.contested.remove(&f);
            }
            self.refresh(f);
        }
    }

    /// Make `f`'s winner the first claimant's desired service, keeping the
    /// demand in step and noting a change.
    fn refresh(&mut self, f: Frontend) {
        let new = self
            .claims
            .get(&f)
            .and_then(|c| c.first())
            .and_then(|(k, i)| self.outputs.get(k).and_then(|o| o.frontends.get(*i)));
        if self.winners.get(&f) == new {
            return;
        }
        let new = new.cloned();
        if let Some(old) = self.winners.remove(&f) {
            self.demand.remove(&old);
        }
        if let Some(n) = new {
            self.demand.add(&n);
            self.winners.insert(f, n);
        }
        self.dirty.insert(f);
    }
}

#[cfg(test)]
mod tests;
