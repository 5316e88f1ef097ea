//! Host-local IPAM on disk: one file per allocated address in `dataDir`
//! (named by the address, holding `CONTAINERID\nIFNAME\n`), changed only
//! under an exclusive `flock` on `dataDir/lock`, so concurrent ADDs never
//! hand out one address twice. The same (container, ifname) gets its
//! address back (an ADD retried by the runtime), the lowest free address
//! otherwise.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::NetConf;
use crate::error::{CniError, Result};

/// How long an operation waits for the lock before answering "try again
/// later" (code 11).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// The allocations of one network on this node.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    first: u32,
    last: u32,
    reserved: Vec<Ipv4Addr>,
    range: String,
    lock_timeout: Duration,
}

/// The held lock (released on drop, when the file closes).
struct Lock {
    _file: File,
}

impl Store {
    /// The store of a configuration.
    pub fn new(conf: &NetConf) -> Store {
        Store {
            dir: conf.data_dir.clone(),
            first: u32::from(conf.range_start),
            last: u32::from(conf.range_end),
            reserved: vec![conf.gateway],
            range: format!("{}-{} of {}", conf.range_start, conf.range_end, conf.subnet),
            lock_timeout: LOCK_TIMEOUT,
        }
    }

    /// The same store with another lock timeout.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Store {
        self.lock_timeout = timeout;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Lock> {
        std::fs::create_dir_all(&self.dir).map_err(|e| CniError::io("creating", &self.dir, e))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CniError::io("opening", &path, e))?;
        let deadline = Instant::now() + self.lock_timeout;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(CniError::TryAgainLater {
                            what: format!("the IPAM lock {}", path.display()),
                            seconds: self.lock_timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(CniError::io("locking", &path, e));
                }
            }
        }
    }

    /// Every allocation, by address (unreadable files count as allocated
    /// to an unknown owner, so their address is never handed out).
    fn read_all(&self) -> Result<Vec<(Ipv4Addr, Option<Owner>)>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CniError::io("listing", &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| CniError::io("listing", &self.dir, e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let owner = std::fs::read_to_string(entry.path()).ok().and_then(|t| {
                let mut lines = t.lines();
                let container_id = lines.next()?.trim().to_string();
                let ifname = lines.next()?.trim().to_string();
                (!container_id.is_empty()).then_some(Owner {
                    container_id,
                    ifname,
                })
            });
            out.push((ip, owner));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }

    fn candidates(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (self.first..=self.last)
            .map(Ipv4Addr::from)
            .filter(|ip| !self.reserved.contains(ip))
    }

    fn write_owner(&self, ip: Ipv4Addr, owner: &Owner) -> Result<()> {
        let path = self.dir.join(ip.to_string());
        let tmp = self.dir.join(format!(".{ip}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| CniError::io("creating", &tmp, e))?;
        f.write_all(format!("{}\n{}\n", owner.container_id, owner.ifname).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| CniError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| CniError::io("renaming", &path, e))
    }

    /// The owner's address, allocating the lowest free one if it has none.
    /// Returns the address and whether it is new.
    pub fn allocate(&self, container_id: &str, ifname: &str) -> Result<(Ipv4Addr, bool)> {
        let _lock = self.lock()?;
        let all = self.read_all()?;
        let owner = Owner {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        };
        if let Some((ip, _)) = all.iter().find(|(_, o)| o.as_ref() == Some(&owner)) {
            return Ok((*ip, false));
        }
        let taken: std::collections::BTreeSet<Ipv4Addr> = all.iter().map(|(ip, _)| *ip).collect();
        let free = self
            .candidates()
            .find(|ip| !taken.contains(ip))
            .ok_or_else(|| CniError::PoolExhausted {
                range: self.range.clone(),
                allocated: taken.len(),
            })?;
        self.write_owner(free, &owner)?;
        Ok((free, true))
    }

    /// The owner's address, if it has one.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>> {
        let _lock = self.lock()?;
        Ok(self
            .read_all()?
            .into_iter()
            .find(|(_, o)| {
                o.as_ref()
                    .is_some_and(|o| o.container_id == container_id && o.ifname == ifname)
            })
            .map(|(ip, _)| ip))
    }

    /// Release the owner's address (idempotent). Returns what was released.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let mut out = Vec::new();
        for (ip, o) in self.read_all()? {
            if o.is_some_and(|o| o.container_id == container_id && o.ifname == ifname) {
                self.remove(ip)?;
                out.push(ip);
            }
        }
        Ok(out)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<()> {
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io("removing", path, e)),
        }
    }

    /// Every allocation.
    pub fn list(&self) -> Result<Vec<(Ipv4Addr, Option<Owner>)>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        self.read_all()
    }

    /// Release every allocation whose owner `keep` refuses (GC); returns
    /// the released allocations.
    pub fn retain(&self, keep: impl Fn(&Owner) -> bool) -> Result<Vec<(Ipv4Addr, Option<Owner>)>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let mut out = Vec::new();
        for (ip, o) in self.read_all()? {
            if !o.as_ref().is_some_and(&keep) {
                self.remove(ip)?;
                out.push((ip, o));
            }
        }
        Ok(out)
    }

    /// How many addresses are still free.
    pub fn free(&self) -> Result<usize> {
        let all = self.list()?;
        let taken: std::collections::BTreeSet<Ipv4Addr> = all.iter().map(|(ip, _)| *ip).collect();
        Ok(self.candidates().filter(|ip| !taken.contains(ip)).count())
    }

    /// Whether the store can be written: creates the directory, takes the
    /// lock, writes and removes a probe file.
    pub fn probe_writable(&self) -> Result<()> {
        let _lock = self.lock()?;
        let probe = self.dir.join(".status-probe");
        std::fs::write(&probe, b"ok").map_err(|e| CniError::io("writing", &probe, e))?;
        std::fs::remove_file(&probe).map_err(|e| CniError::io("removing", &probe, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, cidr: &str) -> Store {
        let conf = NetConf::parse(
            format!(
                r#"{{"cniVersion":"1.1.0","name":"t","type":"tollway-cni","podCIDR":"{cidr}","dataDir":"{}"}}"#,
                dir.display()
            )
            .as_bytes(),
        )
        .unwrap();
        Store::new(&conf)
    }

    #[test]
    fn allocates_lowest_free_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir.path().join("net"), "10.244.1.0/29");
        // /29: .1 left for the node, .2-.6 handed out.
        let (a, new) = s.allocate("c1", "eth0").unwrap();
        assert_eq!((a, new), (Ipv4Addr::new(10, 244, 1, 2), true));
        assert_eq!(s.allocate("c1", "eth0").unwrap(), (a, false), "retried ADD");
        let (b, _) = s.allocate("c1", "net1").unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3), "another interface");
        assert_eq!(s.find("c1", "net1").unwrap(), Some(b));
        assert_eq!(s.release("c1", "eth0").unwrap(), vec![a]);
        assert!(s.release("c1", "eth0").unwrap().is_empty(), "idempotent");
        assert_eq!(s.allocate("c2", "eth0").unwrap().0, a, "reused");
        assert_eq!(s.free().unwrap(), 3);
        for i in 0..3 {
            s.allocate(&format!("x{i}"), "eth0").unwrap();
        }
        let err = s.allocate("too-many", "eth0").unwrap_err();
        assert_eq!(err.code(), 101, "{err}");
        let gone = s.retain(|o| o.container_id.starts_with('x')).unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(s.list().unwrap().len(), 3);
        s.probe_writable().unwrap();
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "10.244.2.0/24");
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || s.allocate(&format!("c{i}"), "eth0"))
            })
            .collect();
        let mut ips: Vec<Ipv4Addr> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap().0)
            .collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 16);
    }

    #[test]
    fn a_missing_store_releases_nothing_and_a_busy_lock_is_code_11() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir.path().join("never-made"), "10.0.0.0/24");
        assert!(s.release("c", "eth0").unwrap().is_empty());
        assert!(
            !dir.path().join("never-made").exists(),
            "DEL creates nothing"
        );
        // Hold the lock from another open file description.
        let s2 = store(dir.path(), "10.0.0.0/24").with_lock_timeout(Duration::from_millis(50));
        let held = s2.lock().unwrap();
        let err = s2.allocate("c", "eth0").unwrap_err();
        assert_eq!(err.code(), 11, "{err}");
        drop(held);
        s2.allocate("c", "eth0").unwrap();
    }
}
