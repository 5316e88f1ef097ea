//! The lab's file store: `store.json` (every object) and `version` (the
//! resource version, polled by watchers), both replaced atomically by
//! rename, written only under an exclusive lock on `store.lock`.

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
        self.state.objects.insert(key, obj);
        self.changed = true;
        true
    }

    /// Drop every change made so far: nothing is written (dry runs).
    pub fn discard(&mut self) {
        self.changed = false;
    }

    /// Remove an object; returns it if it was there.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        let old = self.state.objects.remove(key);
        if old.is_some() {
            self.changed = true;
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
            self.write_atomic(&self.version_path(), next_rv.to_string().as_bytes())?;
        }
        drop(lock);
        Ok(out)
    }
}

impl StateSource for FileStore {
    fn version(&self) -> Result<u64, StateError> {
        let path = self.version_path();
        match fs::read_to_string(&path) {
            Ok(t) => Ok(t.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StateError::io("reading", &path, e)),
        }
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
}
