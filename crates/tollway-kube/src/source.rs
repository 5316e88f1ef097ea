//! The watchers and the caller's side of them.
//!
//! [`KubeSource::start`] starts a thread running a tokio runtime with one
//! kube-runtime [`watcher`] per kind of the registry (list, then watch from
//! the list's resource version with bookmarks; after an error it resumes
//! from the last version seen, and relists on 410 Gone), behind a back-off
//! (client-go's by default: 0.8 s doubling to 30 s, with jitter). Each
//! watcher converts its objects and sends [`Update`]s through a channel;
//! [`KubeSource::poll`] applies them to the mirror on the caller's thread
//! and returns what changed. A health probe (`GET /version`) tells whether
//! the API server answers; nothing in the mirror changes while it does
//! not.
//!
//! With a node name ([`SourceOptions::node`]), [`KubeSource::poll`] also
//! starts a garbage-collection pass of the identities every
//! [`SourceOptions::identity_gc_interval`], when the source is synced and
//! connected and its node is the lowest-named Node in the mirror: the
//! pass ([`crate::identity::IdentityGc`]) runs on the watchers' runtime
//! with the label sets of every pod, and its counters go into the report.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::utils::StreamBackoff;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::Value;
use tollway_policy::LabelSet;
use tollway_state::Snapshot;

use crate::error::KubeError;
use crate::identity::{IdentityAllocator, IdentityGc, UNUSED_SINCE};
use crate::mirror::{AnyKey, Changes, Mirror, RawKey, Update};
use crate::registry::{Converted, KindEntry, KindRegistry, Produces};
use crate::report::{IdentityGcReport, KindReport, KubeReport, RECENT_REJECTIONS};

/// Where the client's configuration comes from.
#[derive(Debug, Clone)]
pub enum ClientSpec {
    /// In-cluster (the pod's service account) if available, else what
    /// kube's `Config::infer` finds (`$KUBECONFIG`, `~/.kube/config`).
    Infer,
    /// This kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// A configuration built by the caller (tests: a plain `http://` URL).
    Config(Box<kube::Config>),
}

/// How long to wait before retrying a failed list or watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// kube-runtime's default, client-go's reflector parameters: 0.8 s,
    /// doubling up to 30 s, with jitter; reset after 120 s without error.
    ClientGo,
    /// Doubling from `min` to `max`, no jitter (tests).
    Exponential {
        /// First delay.
        min: Duration,
        /// Largest delay.
        max: Duration,
    },
}

struct Exponential {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Iterator for Exponential {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for Exponential {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

impl Backoff {
    fn build(self) -> Box<dyn kube::runtime::utils::Backoff> {
        match self {
            Backoff::ClientGo => Box::new(watcher::DefaultBackoff::default()),
            Backoff::Exponential { min, max } => Box::new(Exponential {
                min,
                max,
                next: min,
            }),
        }
    }
}

/// How the source runs.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// The kinds to watch.
    pub registry: KindRegistry,
    /// Retry delays.
    pub backoff: Backoff,
    /// How often the API server's health is probed.
    pub probe_interval: Duration,
    /// `timeoutSeconds` of each watch request (None: kube's 290 s).
    pub watch_timeout: Option<u32>,
    /// Objects per list page (None: unbounded).
    pub page_size: Option<u32>,
    /// The node this source's agent runs on. Identity garbage collection
    /// needs it (None: off): passes run only in the agent whose node name
    /// is the lowest among the Node objects of the mirror.
    pub node: Option<String>,
    /// Time between identity garbage-collection passes (Cilium's
    /// `identity-gc-interval`: 15 min).
    pub identity_gc_interval: Duration,
    /// How long an unused identity stays marked before it is deleted
    /// (Cilium's `identity-heartbeat-timeout` is of this order: 15 min).
    /// Watches lagging by less than this cannot lose an identity in use.
    pub identity_gc_grace: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            registry: KindRegistry::standard(),
            backoff: Backoff::ClientGo,
            probe_interval: Duration::from_secs(10),
            watch_timeout: None,
            page_size: Some(500),
            node: None,
            identity_gc_interval: Duration::from_secs(15 * 60),
            identity_gc_grace: Duration::from_secs(15 * 60),
        }
    }
}

/// What [`KubeSource::poll`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// Nothing changed.
    None,
    /// These changes (the mirror is updated already).
    Changed(Changes),
}

#[derive(Debug, Default)]
struct KindHealth {
    served: bool,
    error: Option<String>,
    lists: u64,
}

#[derive(Debug, Default)]
struct Health {
    api_server: String,
    server_version: Option<String>,
    connected: bool,
    last_event: Option<Timestamp>,
    last_error: Option<(String, Timestamp)>,
    rejected: u64,
    recent_rejections: VecDeque<String>,
    identities_created: u64,
    identity_error: Option<String>,
    identities_reclaimed: u64,
    gc: GcHealth,
    kinds: Vec<KindHealth>,
}

/// The identity garbage collection's counters.
#[derive(Debug, Default)]
struct GcHealth {
    passes: u64,
    marked: u64,
    unmarked: u64,
    deleted: u64,
    conflicts: u64,
    waiting: u64,
    last_pass: Option<Timestamp>,
    error: Option<(String, Timestamp)>,
}

/// When the next identity garbage-collection pass is due, and where it
/// goes.
struct GcSchedule {
    node: String,
    interval: Duration,
    grace: Duration,
    next: Instant,
    /// To the pass task: the label sets of every pod (room for one: a
    /// pass due while one is still queued is skipped).
    tx: tokio::sync::mpsc::Sender<BTreeSet<LabelSet>>,
}

impl Health {
    fn error(&mut self, message: String) {
        self.last_error = Some((message, Timestamp::now()));
    }

    fn rejected(&mut self, message: String) {
        self.rejected += 1;
        if self.recent_rejections.len() == RECENT_REJECTIONS {
            self.recent_rejections.pop_front();
        }
        self.recent_rejections.push_back(message);
    }
}

type Shared = Arc<Mutex<Health>>;

fn lock(h: &Shared) -> MutexGuard<'_, Health> {
    // A panic while holding the lock leaves plain counters: keep going.
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Kubernetes API as a source of desired state: a mirror kept by
/// watchers running on their own thread.
pub struct KubeSource {
    mirror: Mirror,
    registry: KindRegistry,
    rx: mpsc::Receiver<Update>,
    pending: Vec<Update>,
    listed: BTreeSet<Produces>,
    health: Shared,
    identities: tokio::sync::mpsc::UnboundedSender<LabelSet>,
    gc: Option<GcSchedule>,
    client: Client,
    version: u64,
    stopped: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub(crate) async fn load_config(spec: ClientSpec) -> Result<kube::Config, KubeError> {
    match spec {
        ClientSpec::Infer => match kube::Config::incluster() {
            Ok(c) => Ok(c),
            Err(_) => kube::Config::infer()
                .await
                .map_err(|source| KubeError::Infer { source }),
        },
        ClientSpec::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path).map_err(|source| {
                KubeError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| KubeError::Kubeconfig { path, source })
        }
        ClientSpec::Config(c) => Ok(*c),
    }
}

/// Node `node`'s `spec.podCIDR`, asked once (what the CNI installer puts
/// into the node's CNI configuration).
pub async fn node_pod_cidr(spec: ClientSpec, node: &str) -> Result<Option<String>, KubeError> {
    let config = load_config(spec).await?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|source| KubeError::Client { url, source })?;
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let n = api.get(node).await.map_err(|source| KubeError::Request {
        what: format!("get node {node}"),
        source,
    })?;
    Ok(n.spec.and_then(|s| s.pod_cidr))
}

impl KubeSource {
    /// Connect (configuration only: the API server need not be up) and
    /// start watching. The mirror fills as the lists come in: see
    /// [`KubeSource::synced`].
    pub fn start(spec: ClientSpec, options: SourceOptions) -> Result<KubeSource, KubeError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(Client, String), KubeError>>();
        let (tx, rx) = mpsc::channel();
        let (id_tx, id_rx) = tokio::sync::mpsc::unbounded_channel();
        let (gc_tx, gc_rx) = tokio::sync::mpsc::channel(1);
        let gc = options.node.clone().map(|node| GcSchedule {
            node,
            interval: options.identity_gc_interval,
            grace: options.identity_gc_grace,
            next: Instant::now() + options.identity_gc_interval,
            tx: gc_tx,
        });
        let gc_grace = gc.as_ref().map(|g| g.grace);
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let health: Shared = Arc::new(Mutex::new(Health {
            kinds: options
                .registry
                .entries()
                .iter()
                .map(|_| KindHealth {
                    served: true,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }));
        let registry = options.registry.clone();
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name("kube-watch".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = ready_tx.send(Err(KubeError::Runtime {
                            what: "runtime",
                            source,
                        }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let config = match load_config(spec).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let url = config.cluster_url.to_string();
                    let client = match Client::try_from(config) {
                        Ok(c) => c,
                        Err(source) => {
                            let _ = ready_tx.send(Err(KubeError::Client { url, source }));
                            return;
                        }
                    };
                    lock(&h).api_server = url.clone();
                    let _ = ready_tx.send(Ok((client.clone(), url)));
                    let mut tasks = tokio::task::JoinSet::new();
                    for (index, entry) in options.registry.entries().iter().enumerate() {
                        tasks.spawn(watch_kind(
                            client.clone(),
                            entry.clone(),
                            index,
                            tx.clone(),
                            h.clone(),
                            options.clone(),
                        ));
                    }
                    tasks.spawn(probe(client.clone(), h.clone(), options.probe_interval));
                    if let Some(grace) = gc_grace {
                        tasks.spawn(collect_identities(
                            IdentityGc::new(client.clone(), grace),
                            gc_rx,
                            h.clone(),
                        ));
                    }
                    tasks.spawn(allocate_identities(
                        IdentityAllocator::new(client),
                        id_rx,
                        h.clone(),
                    ));
                    let _ = shutdown_rx.await;
                    tasks.abort_all();
                });
            })
            .map_err(|source| KubeError::Runtime {
                what: "thread",
                source,
            })?;
        let (client, url) = ready_rx.recv().map_err(|_| KubeError::Stopped)??;
        tracing::info!(api_server = %url, kinds = registry.entries().len(), "watching the Kubernetes API");
        Ok(KubeSource {
            mirror: Mirror::new(),
            registry,
            rx,
            pending: Vec::new(),
            listed: BTreeSet::new(),
            health,
            identities: id_tx,
            gc,
            client,
            version: 0,
            stopped: false,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The typed objects.
    pub fn snapshot(&self) -> &Snapshot {
        self.mirror.snapshot()
    }

    /// The whole mirror (raw objects too: EndpointSlices).
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The raw objects of a kind (`EndpointSlice`).
    pub fn raw_objects<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a RawKey, &'a Value)> {
        self.mirror.raw_of(kind)
    }

    /// A client for other requests (it runs on the watchers' runtime,
    /// which lives as long as this source).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Every kind has been listed once (before that, the mirror is
    /// incomplete: do not reconcile from it).
    pub fn synced(&self) -> bool {
        self.listed.len() == self.registry.entries().len()
    }

    /// Apply what the watchers sent since the last call.
    pub fn poll(&mut self) -> Polled {
        let mut changes = Changes::default();
        for u in std::mem::take(&mut self.pending) {
            self.apply(u, &mut changes);
        }
        loop {
            match self.rx.try_recv() {
                Ok(u) => self.apply(u, &mut changes),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    if !self.stopped {
                        self.stopped = true;
                        tracing::error!("the Kubernetes watchers stopped; keeping the last state");
                    }
                    break;
                }
            }
        }
        self.schedule_gc();
        if changes.is_empty() {
            return Polled::None;
        }
        self.version += 1;
        self.mirror.snapshot_mut().resource_version = self.version;
        Polled::Changed(changes)
    }

    /// The node whose agent collects unused identities: the lowest node
    /// name in the mirror.
    fn collector(&self) -> Option<&str> {
        self.mirror
            .snapshot()
            .nodes()
            .map(|n| n.metadata.name.as_str())
            .min()
    }

    /// Start an identity garbage-collection pass if one is due, the source
    /// is synced and connected, and this node is the collector.
    fn schedule_gc(&mut self) {
        let Some(gc) = &self.gc else {
            return;
        };
        let now = Instant::now();
        if now < gc.next {
            return;
        }
        let ready = self.synced() && !self.stopped && lock(&self.health).connected;
        let wanted = (ready && self.collector() == Some(gc.node.as_str())).then(|| {
            let snap = self.mirror.snapshot();
            tollway_policy::wanted_label_sets(snap.namespaces(), snap.pods())
        });
        let Some(gc) = &mut self.gc else {
            return;
        };
        gc.next = now + gc.interval;
        if let Some(wanted) = wanted
            && gc.tx.try_send(wanted).is_err()
        {
            tracing::debug!("identity garbage collection: the last pass is still running; skipped");
        }
    }

    fn apply(&mut self, u: Update, changes: &mut Changes) {
        if let Update::Relisted { produces, .. } = &u {
            self.listed.insert(produces.clone());
        }
        self.mirror.apply(u, changes);
    }

    /// Block until a watcher sends something, or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) {
        if !self.pending.is_empty() {
            return;
        }
        if self.stopped {
            std::thread::sleep(timeout);
            return;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(u) => self.pending.push(u),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.stopped = true;
                std::thread::sleep(timeout);
            }
        }
    }

    /// Ask for identities for these label sets (created in the background;
    /// they reach the mirror through the watch).
    pub fn request_identities(&self, sets: impl IntoIterator<Item = LabelSet>) {
        for s in sets {
            let _ = self.identities.send(s);
        }
    }

    /// Ask for an identity for every security label set of `node`'s pods
    /// that the mirror has none for, or whose identity (the lowest number,
    /// if several carry the set) carries the garbage collector's mark:
    /// allocating removes the mark, which saves it from the sweep. Returns
    /// how many were asked for.
    pub fn request_missing_identities(&self, node: &str) -> usize {
        let snap = self.mirror.snapshot();
        let local = snap
            .pods()
            .filter(|p| p.spec.node_name.as_deref() == Some(node));
        let wanted = tollway_policy::wanted_label_sets(snap.namespaces(), local);
        // Each set's lowest identity, and whether it is marked.
        let mut have: BTreeMap<LabelSet, (u32, bool)> = BTreeMap::new();
        for i in snap.cilium_identities() {
            let (Some(id), Ok(labels)) = (i.number(), tollway_policy::identity_labels(i)) else {
                continue;
            };
            let marked = i.metadata.annotations.contains_key(UNUSED_SINCE);
            let e = have.entry(labels).or_insert((id, marked));
            if id < e.0 {
                *e = (id, marked);
            }
        }
        let missing: Vec<LabelSet> = wanted
            .into_iter()
            .filter(|s| have.get(s).is_none_or(|(_, marked)| *marked))
            .collect();
        let n = missing.len();
        self.request_identities(missing);
        n
    }

    /// The source's health.
    pub fn report(&self) -> KubeReport {
        let h = lock(&self.health);
        let mut lists = 0;
        let kinds = self
            .registry
            .entries()
            .iter()
            .zip(&h.kinds)
            .map(|(e, k)| {
                lists += k.lists;
                let produces = e.produces();
                KindReport {
                    kind: e.resource.kind.clone(),
                    objects: self.mirror.count(&produces),
                    synced: self.listed.contains(&produces),
                    served: k.served,
                    error: k.error.clone(),
                }
            })
            .collect();
        let relists = lists.saturating_sub(h.kinds.iter().filter(|k| k.lists > 0).count() as u64);
        let (last_error, last_error_at) = match (&h.last_error, self.stopped) {
            (_, true) => (
                Some("the watchers' thread stopped".to_string()),
                Some(Timestamp::now().to_string()),
            ),
            (Some((m, t)), false) => (Some(m.clone()), Some(t.to_string())),
            (None, false) => (None, None),
        };
        KubeReport {
            api_server: h.api_server.clone(),
            server_version: h.server_version.clone(),
            connected: h.connected && !self.stopped,
            synced: self.synced(),
            last_event: h.last_event.map(|t| t.to_string()),
            last_error,
            last_error_at,
            relists,
            rejected: h.rejected,
            recent_rejections: h.recent_rejections.iter().cloned().collect(),
            identities_created: h.identities_created,
            identity_error: h.identity_error.clone(),
            identities_reclaimed: h.identities_reclaimed,
            identity_gc: self.gc.as_ref().map(|g| IdentityGcReport {
                node: g.node.clone(),
                collector: self.collector().map(str::to_string),
                interval_seconds: g.interval.as_secs(),
                grace_seconds: g.grace.as_secs(),
                passes: h.gc.passes,
                marked: h.gc.marked,
                unmarked: h.gc.unmarked,
                deleted: h.gc.deleted,
                conflicts: h.gc.conflicts,
                waiting: h.gc.waiting,
                last_pass: h.gc.last_pass.map(|t| t.to_string()),
                last_error: h.gc.error.as_ref().map(|(m, _)| m.clone()),
                last_error_at: h.gc.error.as_ref().map(|(_, t)| t.to_string()),
            }),
            kinds,
        }
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The HTTP status of an error the API server answered (None: it did not
/// answer: connection refused, reset, timed out).
fn answered(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::WatchError(s) => Some(s.code),
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::NoResourceVersion => Some(200),
        _ => None,
    }
}

/// Convert one watched object; a refusal is reported, and yields the
/// object's key (if it has one) so that it can leave the mirror.
fn convert(
    entry: &KindEntry,
    obj: DynamicObject,
    health: &Shared,
) -> Result<Converted, Option<AnyKey>> {
    let value = match serde_json::to_value(&obj) {
        Ok(v) => v,
        Err(e) => {
            lock(health).rejected(format!("{}: {e}", entry.path()));
            return Err(None);
        }
    };
    let key = entry.key_of(&value);
    entry.convert(value).map_err(|message| {
        tracing::warn!(kind = %entry.resource.kind, error = %message, "object refused; skipped");
        lock(health).rejected(message);
        key
    })
}

async fn watch_kind(
    client: Client,
    entry: KindEntry,
    index: usize,
    tx: mpsc::Sender<Update>,
    health: Shared,
    options: SourceOptions,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &entry.resource);
    // Bookmarks are on by default (`allowWatchBookmarks=true`).
    let mut config = watcher::Config {
        page_size: options.page_size,
        ..watcher::Config::default()
    };
    if let Some(t) = options.watch_timeout {
        config = config.timeout(t);
    }
    let stream = StreamBackoff::new(watcher(api, config), options.backoff.build());
    let mut stream = std::pin::pin!(stream);
    let produces = entry.produces();
    let mut buffer: Vec<Converted> = Vec::new();
    let kind = entry.resource.kind.clone();
    while let Some(item) = stream.next().await {
        let update = match item {
            Ok(Event::Init) => {
                buffer.clear();
                None
            }
            Ok(Event::InitApply(o)) => {
                if let Ok(c) = convert(&entry, o, &health) {
                    buffer.push(c);
                }
                None
            }
            Ok(Event::InitDone) => {
                let objects = std::mem::take(&mut buffer);
                let mut h = lock(&health);
                h.connected = true;
                h.last_event = Some(Timestamp::now());
                if let Some(k) = h.kinds.get_mut(index) {
                    k.served = true;
                    k.error = None;
                    k.lists += 1;
                    if k.lists > 1 {
                        tracing::info!(%kind, objects = objects.len(), "relisted");
                    }
                }
                Some(Update::Relisted {
                    produces: produces.clone(),
                    objects,
                })
            }
            Ok(Event::Apply(o)) => {
                let u = match convert(&entry, o, &health) {
                    Ok(c) => Some(Update::Put(c)),
                    // It no longer decodes: it leaves the mirror.
                    Err(key) => key.map(Update::Remove),
                };
                let mut h = lock(&health);
                h.connected = true;
                h.last_event = Some(Timestamp::now());
                u
            }
            Ok(Event::Delete(o)) => {
                let key = serde_json::to_value(&o).ok().and_then(|v| entry.key_of(&v));
                let mut h = lock(&health);
                h.connected = true;
                h.last_event = Some(Timestamp::now());
                key.map(Update::Remove)
            }
            Err(e) => {
                let code = answered(&e);
                let mut h = lock(&health);
                match code {
                    Some(410) => {
                        // Expired: the watcher relists; nothing is wrong.
                        h.connected = true;
                        tracing::debug!(%kind, error = %e, "expired; relisting");
                        None
                    }
                    Some(404) => {
                        // Not served (a CRD not installed): it counts as
                        // empty, and the list is retried with back-off.
                        h.connected = true;
                        let first = h.kinds.get(index).is_some_and(|k| k.served);
                        if let Some(k) = h.kinds.get_mut(index) {
                            k.served = false;
                            k.error = None;
                        }
                        if first {
                            tracing::warn!(%kind, path = %entry.path(), "not served by the API server; counted as empty");
                        }
                        Some(Update::Relisted {
                            produces: produces.clone(),
                            objects: Vec::new(),
                        })
                    }
                    answered => {
                        h.connected = answered.is_some();
                        let message = format!("{kind}: {e}");
                        tracing::warn!(error = %message, "watch failed; retrying with back-off");
                        if let Some(k) = h.kinds.get_mut(index) {
                            k.error = Some(e.to_string());
                        }
                        h.error(message);
                        None
                    }
                }
            }
        };
        if let Some(u) = update
            && tx.send(u).is_err()
        {
            return;
        }
    }
}

/// Probe the API server's health every `interval`.
async fn probe(client: Client, health: Shared, interval: Duration) {
    let limit = interval.max(Duration::from_secs(5));
    loop {
        let r = tokio::time::timeout(limit, client.apiserver_version()).await;
        {
            let mut h = lock(&health);
            match r {
                Ok(Ok(info)) => {
                    h.connected = true;
                    h.server_version = Some(info.git_version);
                }
                Ok(Err(kube::Error::Api(s))) => {
                    // It answered (a 403 on /version, say).
                    h.connected = true;
                    tracing::debug!(error = %s, "version probe refused");
                }
                Ok(Err(e)) => {
                    h.connected = false;
                    h.error(format!("API server unreachable: {e}"));
                }
                Err(_) => {
                    h.connected = false;
                    h.error(format!(
                        "API server unreachable: no answer within {}s",
                        limit.as_secs()
                    ));
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// A label set asked for again within this time is not re-allocated (its
/// identity is on its way through the watch).
const IDENTITY_DEDUP: Duration = Duration::from_secs(5);

async fn allocate_identities(
    alloc: IdentityAllocator,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<LabelSet>,
    health: Shared,
) {
    let mut recent: BTreeMap<LabelSet, Instant> = BTreeMap::new();
    while let Some(set) = rx.recv().await {
        recent.retain(|_, t| t.elapsed() < IDENTITY_DEDUP);
        if recent.contains_key(&set) {
            continue;
        }
        recent.insert(set.clone(), Instant::now());
        match alloc.allocate(&set).await {
            Ok(a) => {
                let mut h = lock(&health);
                h.identity_error = None;
                if a.created {
                    h.identities_created += 1;
                    tracing::info!(identity = a.id, labels = %set, "created identity");
                }
                if a.reclaimed {
                    h.identities_reclaimed += 1;
                    tracing::info!(identity = a.id, labels = %set, "reclaimed identity from the garbage collection");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity allocation failed; retried on the next change");
                lock(&health).identity_error = Some(e.to_string());
                recent.remove(&set);
            }
        }
    }
}

/// Run the identity garbage-collection passes [`KubeSource::poll`] asks
/// for.
async fn collect_identities(
    gc: IdentityGc,
    mut rx: tokio::sync::mpsc::Receiver<BTreeSet<LabelSet>>,
    health: Shared,
) {
    while let Some(wanted) = rx.recv().await {
        let result = gc.pass(&wanted, Timestamp::now()).await;
        let mut h = lock(&health);
        match result {
            Ok(p) => {
                let g = &mut h.gc;
                g.passes += 1;
                g.marked += p.marked;
                g.unmarked += p.unmarked;
                g.deleted += p.deleted;
                g.conflicts += p.conflicts;
                g.waiting = p.waiting;
                g.last_pass = Some(Timestamp::now());
                g.error = None;
                tracing::debug!(?p, "identity garbage collection pass");
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity garbage collection failed; retried at the next interval");
                h.gc.error = Some((e.to_string(), Timestamp::now()));
            }
        }
    }
}
