//! The lab's file store: `store.json` (every object), `journal-<generation>.jsonl`
//! (every change, for watchers) and `version` (`<resource version>
//! <journal generation>`). `store.json` and `version` are replaced
//! atomically by rename; the journal is appended before the version moves;
//! all of it is written only under an exclusive lock on `store.lock`.
//!
//! A [`Watcher`] starts from a snapshot and then reads only the journal
//! lines after it, so a change costs a watcher the size of the change, not
//! of the store. When the journal grows past [`JOURNAL_ROTATE_BYTES`] a new
//! generation starts and watchers of the old one resynchronise.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tollway_api::{Object, ObjectKey};

use crate::StateSource;
use crate::error::StateError;
use crate::snapshot::Snapshot;

/// The store of one lab.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoreFile {
    resource_version: u64,
    objects: Vec<serde_json::Value>,
}

/// A write transaction: a private copy of the state that is written back
/// (with a new resource version) only if something changed.
#[derive(Debug)]
pub struct Txn {
    state: Snapshot,
    next_rv: u64,
    changed: bool,
    touched: BTreeSet<ObjectKey>,
}

impl Txn {
    /// The state as the transaction sees it (including its own writes).
    pub fn state(&self) -> &Snapshot {
        &self.state
    }

    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.state.objects.get(key)
    }

    /// Create or replace an object. The store keeps `uid` and
    /// `creationTimestamp`, bumps `generation` when the spec changes and sets
    /// `resourceVersion`. Returns false when nothing changed.
    pub fn put(&mut self, mut obj: Object) -> bool {
        let key = obj.key();
        let now = now_seconds();
        match self.state.objects.get(&key) {
            Some(old) => {
                let old_meta = old.meta().clone();
                let spec_changed = old.spec_value() != obj.spec_value();
                let m = obj.meta_mut();
                m.uid = old_meta.uid.clone();
                m.creation_timestamp = old_meta.creation_timestamp;
                m.generation = Some(old_meta.generation.unwrap_or(1) + i64::from(spec_changed));
                m.resource_version = old_meta.resource_version.clone();
                if &obj == old {
                    return false;
                }
            }
            None => {
                let m = obj.meta_mut();
                m.uid = Some(uuid::Uuid::new_v4().to_string());
                m.creation_timestamp = Some(now);
                m.generation = Some(1);
            }
        }
        obj.meta_mut().resource_version = Some(self.next_rv.to_string());
        self.touched.insert(key.clone());
        self.state.objects.insert(key, obj);
        self.changed = true;
        true
    }

    /// Drop every change made so far: nothing is written (dry runs).
    pub fn discard(&mut self) {
        self.changed = false;
        self.touched.clear();
    }

    /// Remove an object; returns it if it was there.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        let old = self.state.objects.remove(key);
        if old.is_some() {
            self.changed = true;
            self.touched.insert(key.clone());
        }
        old
    }
}

/// The current time, truncated to seconds as Kubernetes stores it.
pub fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

impl FileStore {
    /// Open (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<FileStore, StateError> {
        fs::create_dir_all(dir).map_err(|e| StateError::io("creating", dir, e))?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn store_path(&self) -> PathBuf {
        self.dir.join("store.json")
    }

    fn version_path(&self) -> PathBuf {
        self.dir.join("version")
    }

    fn read(&self) -> Result<Snapshot, StateError> {
        let path = self.store_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Snapshot::default()),
            Err(e) => return Err(StateError::io("reading", &path, e)),
        };
        let file: StoreFile =
            serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
        let mut snap = Snapshot {
            resource_version: file.resource_version,
            ..Snapshot::default()
        };
        for (index, v) in file.objects.into_iter().enumerate() {
            let obj = Object::from_value(v).map_err(|source| StateError::BadObject {
                path: path.clone(),
                index,
                source,
            })?;
            snap.objects.insert(obj.key(), obj);
        }
        Ok(snap)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(|e| StateError::io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| StateError::io("writing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| StateError::io("renaming into", path, e))
    }

    /// Run `f` on the current state under the store's exclusive lock, and
    /// write the result back if `f` changed anything and returned `Ok`.
    pub fn update<T, E: From<StateError>>(
        &self,
        f: impl FnOnce(&mut Txn) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock_path = self.dir.join("store.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StateError::io("opening", &lock_path, e))?;
        lock.lock()
            .map_err(|e| StateError::io("locking", &lock_path, e))?;
        let state = self.read()?;
        let next_rv = state.resource_version + 1;
        let mut txn = Txn {
            state,
            next_rv,
            changed: false,
            touched: BTreeSet::new(),
        };
        let out = f(&mut txn)?;
        if txn.changed {
            let file = StoreFile {
                resource_version: next_rv,
                objects: txn.state.objects.values().map(Object::to_value).collect(),
            };
            let bytes = serde_json::to_vec(&file).map_err(|source| StateError::Corrupt {
                path: self.store_path(),
                source,
            })?;
            self.write_atomic(&self.store_path(), &bytes)?;
            let generation = self.append_journal(&txn, next_rv)?;
            self.write_atomic(
                &self.version_path(),
                format!("{next_rv} {generation}").as_bytes(),
            )?;
        }
        drop(lock);
        Ok(out)
    }

    fn journal_path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("journal-{generation}.jsonl"))
    }

    /// The (resource version, journal generation) in the version file.
    fn read_version(&self) -> Result<(u64, u64), StateError> {
        let path = self.version_path();
        match fs::read_to_string(&path) {
            Ok(t) => {
                let mut it = t.split_whitespace();
                let rv = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let generation = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                Ok((rv, generation))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
            Err(e) => Err(StateError::io("reading", &path, e)),
        }
    }

    /// Append the transaction's changes to the journal (rotating it when it
    /// is large); returns the generation written to.
    fn append_journal(&self, txn: &Txn, rv: u64) -> Result<u64, StateError> {
        let (_, mut generation) = self.read_version()?;
        let path = self.journal_path(generation);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > JOURNAL_ROTATE_BYTES {
            let _ = fs::remove_file(&path);
            generation += 1;
        }
        let path = self.journal_path(generation);
        let mut out = Vec::new();
        for key in &txn.touched {
            let line = match txn.state.objects.get(key) {
                Some(obj) => JournalLine {
                    rv,
                    put: Some(obj.to_value()),
                    delete: None,
                },
                None => JournalLine {
                    rv,
                    put: None,
                    delete: Some(key.clone()),
                },
            };
            serde_json::to_writer(&mut out, &line).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
            out.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StateError::io("opening", &path, e))?;
        f.write_all(&out)
            .map_err(|e| StateError::io("appending to", &path, e))?;
        Ok(generation)
    }

    /// A snapshot and a watcher positioned right after it.
    pub fn watch(&self) -> Result<(Snapshot, Watcher), StateError> {
        let lock = self.shared_lock()?;
        let snap = self.read()?;
        let (rv, generation) = self.read_version()?;
        let offset = fs::metadata(self.journal_path(generation))
            .map(|m| m.len())
            .unwrap_or(0);
        drop(lock);
        let rv = rv.max(snap.resource_version);
        Ok((
            snap,
            Watcher {
                store: self.clone(),
                generation,
                offset,
                rv,
            },
        ))
    }

    fn shared_lock(&self) -> Result<File, StateError> {
        let lock_path = self.dir.join("store.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StateError::io("opening", &lock_path, e))?;
        lock.lock_shared()
            .map_err(|e| StateError::io("locking", &lock_path, e))?;
        Ok(lock)
    }
}

/// The journal grows to this size before a new generation starts.
pub const JOURNAL_ROTATE_BYTES: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct JournalLine {
    rv: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    put: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete: Option<ObjectKey>,
}

/// A change seen by a [`Watcher`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An object was created or changed (boxed: objects are large).
    Put(Box<Object>),
    /// An object was removed.
    Delete(ObjectKey),
}

/// What a [`Watcher::poll`] found.
#[derive(Debug)]
pub enum WatchResult {
    /// Nothing changed.
    Unchanged,
    /// These changes, up to resource version `rv`.
    Events {
        /// The resource version they bring the state to.
        rv: u64,
        /// The changes, in order.
        events: Vec<Event>,
    },
    /// The journal was rotated past this watcher: here is the whole state.
    Resync(Snapshot),
}

/// Follows the store's changes after a snapshot (see [`FileStore::watch`]).
#[derive(Debug)]
pub struct Watcher {
    store: FileStore,
    generation: u64,
    offset: u64,
    rv: u64,
}

impl Watcher {
    /// The resource version this watcher has seen up to.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Changes since the last poll. Only whole transactions are returned:
    /// lines of a transaction whose version is not published yet wait.
    pub fn poll(&mut self) -> Result<WatchResult, StateError> {
        use std::io::{Read, Seek, SeekFrom};
        let (rv, generation) = self.store.read_version()?;
        if rv == self.rv && generation == self.generation {
            return Ok(WatchResult::Unchanged);
        }
        if generation != self.generation {
            return self.resync();
        }
        let path = self.store.journal_path(generation);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(_) => return self.resync(),
        };
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| StateError::io("seeking", &path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| StateError::io("reading", &path, e))?;
        let mut events = Vec::new();
        let mut consumed = 0usize;
        let mut last = self.rv;
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if line.last() != Some(&b'\n') {
                break;
            }
            let parsed: JournalLine = match serde_json::from_slice(line) {
                Ok(l) => l,
                Err(_) => return self.resync(),
            };
            if parsed.rv > rv {
                break;
            }
            consumed += line.len();
            if parsed.rv <= self.rv {
                continue;
            }
            last = parsed.rv;
            match (parsed.put, parsed.delete) {
                (Some(v), _) => match Object::from_value(v) {
                    Ok(o) => events.push(Event::Put(Box::new(o))),
                    Err(_) => return self.resync(),
                },
                (None, Some(k)) => events.push(Event::Delete(k)),
                (None, None) => {}
            }
        }
        self.offset += consumed as u64;
        if last == self.rv {
            return Ok(WatchResult::Unchanged);
        }
        self.rv = last;
        Ok(WatchResult::Events { rv: last, events })
    }

    fn resync(&mut self) -> Result<WatchResult, StateError> {
        let (snap, fresh) = self.store.watch()?;
        *self = fresh;
        Ok(WatchResult::Resync(snap))
    }
}

impl StateSource for FileStore {
    fn version(&self) -> Result<u64, StateError> {
        Ok(self.read_version()?.0)
    }

    fn snapshot(&self) -> Result<Snapshot, StateError> {
        self.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollway_api::{Kind, ObjectMeta, ServiceAccount};

    fn sa(name: &str, label: &str) -> Object {
        let mut metadata = ObjectMeta {
            name: name.into(),
            namespace: Some("default".into()),
            ..Default::default()
        };
        metadata.labels.insert("l".into(), label.into());
        Object::ServiceAccount(ServiceAccount {
            api_version: "v1".into(),
            kind: "ServiceAccount".into(),
            metadata,
        })
    }

    #[test]
    fn writes_bump_the_version_and_keep_uid() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.version().unwrap(), 0);
        store
            .update(|t| Ok::<_, StateError>(t.put(sa("a", "1"))))
            .unwrap();
        assert_eq!(store.version().unwrap(), 1);
        let key = ObjectKey::new(Kind::ServiceAccount, Some("default"), "a");
        let uid = store
            .snapshot()
            .unwrap()
            .get(&key)
            .unwrap()
            .meta()
            .uid
            .clone();
        assert!(uid.is_some());
        // Same object again: no write.
        let changed = store
            .update(|t| Ok::<_, StateError>(t.put(sa("a", "1"))))
            .unwrap();
        assert!(!changed);
        assert_eq!(store.version().unwrap(), 1);
        // Changed labels: new version, same uid.
        store
            .update(|t| Ok::<_, StateError>(t.put(sa("a", "2"))))
            .unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.resource_version, 2);
        let o = snap.get(&key).unwrap();
        assert_eq!(o.meta().uid, uid);
        assert_eq!(o.meta().resource_version.as_deref(), Some("2"));
    }

    #[test]
    fn failed_transactions_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let r: Result<(), StateError> = store.update(|t| {
            t.put(sa("a", "1"));
            Err(StateError::io(
                "testing",
                dir.path(),
                std::io::Error::other("no"),
            ))
        });
        assert!(r.is_err());
        assert_eq!(store.version().unwrap(), 0);
        assert!(store.snapshot().unwrap().objects.is_empty());
    }

    #[test]
    fn concurrent_writers_do_not_lose_updates() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let s = store.clone();
                std::thread::spawn(move || {
                    for j in 0..25 {
                        s.update(|t| Ok::<_, StateError>(t.put(sa(&format!("sa-{i}-{j}"), "x"))))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.objects.len(), 100);
        assert_eq!(snap.resource_version, 100);
    }

    #[test]
    fn watchers_see_only_the_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        store
            .update(|t| Ok::<_, StateError>(t.put(sa("a", "1"))))
            .unwrap();
        let (snap, mut w) = store.watch().unwrap();
        assert_eq!(snap.objects.len(), 1);
        assert!(matches!(w.poll().unwrap(), WatchResult::Unchanged));
        store
            .update(|t| {
                t.put(sa("b", "1"));
                t.put(sa("a", "2"));
                Ok::<_, StateError>(())
            })
            .unwrap();
        let key_a = ObjectKey::new(Kind::ServiceAccount, Some("default"), "a");
        store
            .update(|t| Ok::<_, StateError>(t.remove(&key_a)))
            .unwrap();
        let WatchResult::Events { rv, events } = w.poll().unwrap() else {
            panic!("events expected")
        };
        assert_eq!(rv, 3);
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(&events[2], Event::Delete(k) if *k == key_a));
        let mut mirror = snap;
        for e in &events {
            mirror.apply(e);
        }
        let truth = store.snapshot().unwrap();
        assert_eq!(
            mirror.objects, truth.objects,
            "the mirror follows the store"
        );
        assert!(matches!(w.poll().unwrap(), WatchResult::Unchanged));
        // A dry-run style transaction that writes nothing shows nothing.
        store
            .update(|t| {
                t.put(sa("c", "1"));
                t.discard();
                Ok::<_, StateError>(())
            })
            .unwrap();
        assert!(matches!(w.poll().unwrap(), WatchResult::Unchanged));
    }

    #[test]
    fn a_rotated_journal_resyncs_watchers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        store
            .update(|t| Ok::<_, StateError>(t.put(sa("a", "1"))))
            .unwrap();
        let (_, mut w) = store.watch().unwrap();
        // Fake a journal past the rotation size.
        let (_, generation) = store.read_version().unwrap();
        let j = store.journal_path(generation);
        let f = OpenOptions::new().append(true).open(&j).unwrap();
        f.set_len(JOURNAL_ROTATE_BYTES + 1).unwrap();
        store
            .update(|t| Ok::<_, StateError>(t.put(sa("b", "1"))))
            .unwrap();
        assert!(!j.exists(), "old generation removed");
        match w.poll().unwrap() {
            WatchResult::Resync(s) => assert_eq!(s.objects.len(), 2),
            other => panic!("resync expected, got {other:?}"),
        }
        store
            .update(|t| Ok::<_, StateError>(t.put(sa("c", "1"))))
            .unwrap();
        assert!(matches!(w.poll().unwrap(), WatchResult::Events { .. }));
    }
}
