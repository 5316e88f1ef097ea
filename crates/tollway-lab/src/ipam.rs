//! Host-local IPAM: each node hands out addresses of its pod CIDR, recorded
//! in `ipam/<node>.json` and changed only under an exclusive lock, so that
//! concurrent callers (the daemon now, CNI ADDs later) never collide.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// One node's allocations.
#[derive(Debug, Clone)]
pub struct Ipam {
    node: String,
    cidr: Ipv4Net,
    file: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Allocations {
    /// Address → owner (a pod uid).
    allocations: BTreeMap<Ipv4Addr, String>,
}

impl Ipam {
    /// The IPAM of `node`, stored in `dir`.
    pub fn new(dir: PathBuf, node: &str, cidr: Ipv4Net) -> Ipam {
        Ipam {
            node: node.to_string(),
            cidr,
            file: dir.join(format!("{node}.json")),
        }
    }

    fn with_lock<T>(&self, f: impl FnOnce(&mut Allocations) -> Result<(T, bool)>) -> Result<T> {
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
        }
        let lock_path = self.file.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LabError::io("opening", &lock_path, e))?;
        lock.lock()
            .map_err(|e| LabError::io("locking", &lock_path, e))?;
        let mut allocs: Allocations = match std::fs::read_to_string(&self.file) {
            Ok(t) => serde_json::from_str(&t).map_err(|source| LabError::BadFile {
                path: self.file.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Allocations::default(),
            Err(e) => return Err(LabError::io("reading", &self.file, e)),
        };
        let (out, changed) = f(&mut allocs)?;
        if changed {
            let text =
                serde_json::to_string_pretty(&allocs).map_err(|source| LabError::BadFile {
                    path: self.file.clone(),
                    source,
                })?;
            let tmp = self.file.with_extension("tmp");
            std::fs::write(&tmp, text).map_err(|e| LabError::io("writing", &tmp, e))?;
            std::fs::rename(&tmp, &self.file)
                .map_err(|e| LabError::io("renaming", &self.file, e))?;
        }
        Ok(out)
    }

    /// The owner's address, allocating the lowest free one if it has none.
    /// The network address, the first host (reserved for the node's router
    /// address) and the broadcast address are never handed out.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        self.with_lock(|a| {
            if let Some((ip, _)) = a.allocations.iter().find(|(_, o)| o.as_str() == owner) {
                return Ok((*ip, false));
            }
            let free = self
                .cidr
                .hosts()
                .skip(1)
                .find(|ip| !a.allocations.contains_key(ip))
                .ok_or_else(|| LabError::IpamFull {
                    node: self.node.clone(),
                    cidr: self.cidr.to_string(),
                })?;
            a.allocations.insert(free, owner.to_string());
            Ok((free, true))
        })
    }

    /// Release the owner's address (idempotent).
    pub fn release(&self, owner: &str) -> Result<()> {
        self.with_lock(|a| {
            let before = a.allocations.len();
            a.allocations.retain(|_, o| o != owner);
            Ok(((), a.allocations.len() != before))
        })
    }

    /// Every allocation.
    pub fn list(&self) -> Result<BTreeMap<Ipv4Addr, String>> {
        self.with_lock(|a| Ok((a.allocations.clone(), false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_stably_and_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let cidr: Ipv4Net = "10.244.1.0/29".parse().unwrap();
        let ipam = Ipam::new(dir.path().to_path_buf(), "node-2", cidr);
        let a = ipam.allocate("uid-a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(
            ipam.allocate("uid-a").unwrap(),
            a,
            "same owner, same address"
        );
        let b = ipam.allocate("uid-b").unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3));
        ipam.release("uid-a").unwrap();
        assert_eq!(
            ipam.allocate("uid-c").unwrap(),
            a,
            "freed address is reused"
        );
        // /29: hosts .1-.6, .1 reserved → .2-.6 = 5 addresses.
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let ipam = ipam.clone();
                std::thread::spawn(move || ipam.allocate(&format!("t{i}")))
            })
            .collect();
        let got: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        let mut uniq = got.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 3, "{got:?}");
        assert!(matches!(
            ipam.allocate("one-too-many"),
            Err(LabError::IpamFull { .. })
        ));
        assert_eq!(ipam.list().unwrap().len(), 5);
    }
}
