//! The lab daemon (`tollway lab daemon`): the lab's control plane and the
//! kubelet of every node, in one supervised process per lab.
//!
//! It watches the store (polling its version file), runs the controllers in
//! a store transaction, runs pods, and writes their status back. Pods run in
//! their own sessions and cgroups: killing the daemon leaves them running,
//! and the next daemon adopts them.

pub mod agents;
pub mod container;
pub mod controllers;
pub mod kubelet;
pub mod spec;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tollway_api::Kind;
use tollway_api::Object;
use tollway_state::{Event, FileStore, StateError, StateSource, WatchResult};

use crate::config::LabConfig;
use crate::error::{LabError, Result};
use crate::paths::LabPaths;
use kubelet::Kubelet;

/// How often the store's version is polled.
const POLL: Duration = Duration::from_millis(100);
/// A full reconcile happens at least this often, changed or not.
const RESYNC: Duration = Duration::from_secs(2);
/// How often leftovers are swept.
const SWEEP: Duration = Duration::from_secs(10);

/// Run the daemon of lab `lab` until SIGTERM/SIGINT.
pub async fn run(lab: &str) -> Result<()> {
    let paths = LabPaths::new(lab);
    let cfg = LabConfig::load(&paths)?.ok_or_else(|| LabError::NoSuchLab { name: lab.into() })?;
    let store = FileStore::open(&paths.store_dir())?;
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("finding", "current executable", e))?;
    write_pid_file(&paths)?;
    tracing::info!(lab, pid = std::process::id(), "lab daemon started");

    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (pod_tx, mut pod_rx) = mpsc::unbounded_channel();
    for n in &cfg.nodes {
        tokio::spawn(agents::supervise(
            paths.clone(),
            n.name.clone(),
            exe.clone(),
        ));
    }
    let mut kubelet = Kubelet::new(paths.clone(), Arc::new(cfg), exe, ev_tx, pod_tx);
    let mut tick = tokio::time::interval(POLL);
    // The journal tells which kinds changed: Services alone concern no
    // controller and no kubelet (the agents translate them), so a service
    // change costs the daemon no full read of the store.
    let (_, mut watcher) = store.watch()?;
    let mut first = true;
    let mut last_sync = Instant::now();
    let mut last_sweep: Option<Instant> = None;
    let mut gone = Vec::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| LabError::io("installing", "SIGTERM handler", e))?;

    loop {
        tokio::select! {
            Some((uid, name, ev)) = ev_rx.recv() => kubelet.on_container(&uid, &name, ev),
            Some(msg) = pod_rx.recv() => {
                if let Some(g) = kubelet.on_pod(msg) {
                    gone.push(g);
                }
            }
            _ = tick.tick() => {
                // Pods reported gone leave the store before the next sync:
                // a snapshot that still had them would start them again.
                flush(&store, &mut kubelet, &mut gone)?;
                let relevant = match watcher.poll()? {
                    WatchResult::Unchanged => false,
                    WatchResult::Resync(_) => true,
                    WatchResult::Events { events, .. } => events.iter().any(|e| match e {
                        Event::Put(o) => o.kind() != Kind::Service,
                        Event::Delete(k) => k.kind != Kind::Service,
                    }),
                };
                if first || relevant || last_sync.elapsed() >= RESYNC {
                    first = false;
                    store.update(|txn| {
                        controllers::run_all(txn);
                        Ok::<_, StateError>(())
                    })?;
                    let snap = store.snapshot()?;
                    kubelet.sync(&snap);
                    last_sync = Instant::now();
                    if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP) {
                        kubelet.sweep_orphans(&snap);
                        last_sweep = Some(Instant::now());
                    }
                }
                kubelet.start_ready();
                flush(&store, &mut kubelet, &mut gone)?;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!(lab, "lab daemon stopping; pods keep running");
    let _ = std::fs::remove_file(paths.daemon_pid_file());
    Ok(())
}

/// Write pod statuses and remove pods that are gone, in one transaction.
fn flush(
    store: &FileStore,
    kubelet: &mut Kubelet,
    gone: &mut Vec<(tollway_api::ObjectKey, String)>,
) -> Result<()> {
    let statuses = kubelet.take_dirty();
    if statuses.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let removed = std::mem::take(gone);
    store.update(|txn| {
        for (key, uid, status) in statuses {
            if let Some(Object::Pod(p)) = txn.get(&key)
                && p.metadata.uid.as_deref() == Some(uid.as_str())
            {
                let mut p = p.clone();
                p.status = Some(status);
                txn.put(Object::Pod(p));
            }
        }
        for (key, uid) in removed {
            let same = txn
                .get(&key)
                .is_some_and(|o| o.meta().uid.as_deref() == Some(uid.as_str()));
            if same {
                txn.remove(&key);
            }
        }
        tollway_state::registry::finalize_namespaces(txn);
        Ok::<_, StateError>(())
    })?;
    Ok(())
}

fn write_pid_file(paths: &LabPaths) -> Result<()> {
    let pid = std::process::id() as i32;
    let start = crate::sys::process::start_time(pid).unwrap_or(0);
    let p = paths.daemon_pid_file();
    std::fs::write(&p, format!("{pid} {start}\n")).map_err(|e| LabError::io("writing", p, e))
}

/// The daemon's PID if it is running (checked against its start time, so a
/// reused PID is not mistaken for it).
pub fn running_pid(paths: &LabPaths) -> Option<i32> {
    let text = std::fs::read_to_string(paths.daemon_pid_file()).ok()?;
    let mut it = text.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    (crate::sys::process::alive(pid) && crate::sys::process::start_time(pid) == Some(start))
        .then_some(pid)
}
