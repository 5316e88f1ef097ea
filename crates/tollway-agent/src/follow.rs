//! Where the agent's loop reads the desired state: a [`ChangeSource`]
//! keeps a mirror of every object and says what changed since it was last
//! asked.
//!
//! - [`Follower`], the lab's store: the mirror is kept up to date from the
//!   store's journal (only the changes are read), and the wait wakes on the
//!   store's version file changing (inotify), so that a change reaches the
//!   datapath in microseconds rather than a polling period.
//! - [`tollway_kube::KubeSource`], the Kubernetes API: watchers on their own
//!   thread send changes through a channel, the wait blocks on it.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tollway_api::{Kind, Object, ObjectKey, Pod};
use tollway_state::{Event, FileStore, Snapshot, StateError, WatchResult, Watcher};

use crate::error::AgentError;

/// A mirror of the desired state that says what changed.
pub trait ChangeSource {
    /// The mirror.
    fn snapshot(&self) -> &Snapshot;
    /// Bring the mirror up to date; what changed.
    fn poll(&mut self) -> Result<Change, AgentError>;
    /// Block until something may have changed, or `timeout` passes.
    fn wait(&mut self, timeout: Duration);
    /// The source's health for the status (None: nothing to report, as
    /// for the lab's store).
    fn report(&self) -> Option<tollway_kube::KubeReport> {
        None
    }
    /// The agent applied a change of pods or other objects: a source that
    /// allocates identities asks for those `node`'s pods lack (the lab's
    /// daemon allocates them itself).
    fn changed(&mut self, _node: &str) {}
}

/// What changed since the last poll.
#[derive(Debug, Default)]
pub struct Delta {
    /// Services created, changed or removed.
    pub services: Vec<ObjectKey>,
    /// Pods changed: (before, after).
    pub pods: Vec<(Option<Pod>, Option<Pod>)>,
    /// EndpointSlices created, changed or removed (the endpoints of
    /// services without a selector).
    pub slices: Vec<ObjectKey>,
    /// Anything else changed (namespaces, nodes, policies, ...).
    pub others: Vec<ObjectKey>,
}

/// The result of a poll.
#[derive(Debug)]
pub enum Change {
    /// Nothing new.
    None,
    /// These objects changed (the mirror is updated already).
    Delta(Delta),
    /// The mirror was replaced wholesale (journal rotated).
    Full,
}

/// A mirror of the store that follows its journal.
pub struct Follower {
    watcher: Watcher,
    snap: Snapshot,
    inotify: Option<Inotify>,
}

impl Follower {
    /// Start from the store's current state.
    pub fn new(store: &FileStore) -> Result<Follower, StateError> {
        let (snap, watcher) = store.watch()?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .and_then(|i| {
                i.add_watch(
                    store.dir(),
                    AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
                )
                .ok()
                .map(|_| i)
            });
        Ok(Follower {
            watcher,
            snap,
            inotify,
        })
    }

    /// The mirror.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// Block until the store directory changes, or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) {
        match &self.inotify {
            Some(i) => {
                let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(i.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(ms));
                // Drain; the journal says what changed.
                while let Ok(events) = i.read_events() {
                    if events.is_empty() {
                        break;
                    }
                }
            }
            None => std::thread::sleep(timeout.min(Duration::from_millis(5))),
        }
    }

    /// Read the journal's new changes into the mirror.
    pub fn poll(&mut self) -> Result<Change, StateError> {
        match self.watcher.poll()? {
            WatchResult::Unchanged => Ok(Change::None),
            WatchResult::Resync(snap) => {
                self.snap = snap;
                Ok(Change::Full)
            }
            WatchResult::Events { rv, events } => {
                let mut d = Delta::default();
                for e in &events {
                    let key = match e {
                        Event::Put(o) => o.key(),
                        Event::Delete(k) => k.clone(),
                    };
                    match key.kind {
                        Kind::Service => d.services.push(key.clone()),
                        Kind::EndpointSlice => d.slices.push(key.clone()),
                        Kind::Pod => {
                            let before = match self.snap.get(&key) {
                                Some(Object::Pod(p)) => Some(p.clone()),
                                _ => None,
                            };
                            let after = match e {
                                Event::Put(o) => match o.as_ref() {
                                    Object::Pod(p) => Some(p.clone()),
                                    _ => None,
                                },
                                Event::Delete(_) => None,
                            };
                            d.pods.push((before, after));
                        }
                        _ => d.others.push(key.clone()),
                    }
                    self.snap.apply(e);
                }
                self.snap.resource_version = rv;
                Ok(Change::Delta(d))
            }
        }
    }
}

impl ChangeSource for Follower {
    fn snapshot(&self) -> &Snapshot {
        Follower::snapshot(self)
    }

    fn poll(&mut self) -> Result<Change, AgentError> {
        Ok(Follower::poll(self)?)
    }

    fn wait(&mut self, timeout: Duration) {
        Follower::wait(self, timeout);
    }
}

impl ChangeSource for tollway_kube::KubeSource {
    fn snapshot(&self) -> &Snapshot {
        tollway_kube::KubeSource::snapshot(self)
    }

    /// The watchers' changes, as the follower's delta. Changes of raw
    /// objects only (kinds tollway-api has no type for) are no change to
    /// the agent.
    fn poll(&mut self) -> Result<Change, AgentError> {
        Ok(match tollway_kube::KubeSource::poll(self) {
            tollway_kube::Polled::Changed(c) if !c.typed_is_empty() => Change::Delta(Delta {
                services: c.services,
                pods: c.pods,
                slices: c.slices,
                others: c.others,
            }),
            tollway_kube::Polled::Changed(_) | tollway_kube::Polled::None => Change::None,
        })
    }

    fn wait(&mut self, timeout: Duration) {
        tollway_kube::KubeSource::wait(self, timeout);
    }

    fn report(&self) -> Option<tollway_kube::KubeReport> {
        Some(tollway_kube::KubeSource::report(self))
    }

    fn changed(&mut self, node: &str) {
        let n = self.request_missing_identities(node);
        if n > 0 {
            tracing::debug!(label_sets = n, "asked for identities");
        }
    }
}
