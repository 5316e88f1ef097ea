//! Loading the node datapath and putting its programs in place, so that they
//! stay in place when the agent exits or is killed:
//!
//! * maps are pinned by name in the node's pin directory and reused by every
//!   later load (a restarted agent adopts them, never flushes them);
//! * tc programs are classic cls_bpf filters at a fixed priority and handle,
//!   which the kernel keeps after the process exits; a later load replaces
//!   them atomically (same priority and handle);
//! * cgroup programs are bpf links pinned under `links/`; a later load
//!   attaches the new programs first, then unpins the old links, so there is
//!   never a moment without translation.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::programs::cgroup_sock_addr::CgroupSockAddr;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{CgroupAttachMode, SchedClassifier, TcAttachType, tc};
use aya::{Ebpf, EbpfLoader};

use crate::program_object_names;

/// tc programs: (object, program, attach point).
pub const TC_PROGRAMS: &[(&str, &str, &str)] = &[
    ("lxc", "tw_from_lxc", "pod veth ingress"),
    ("lxc", "tw_to_lxc", "pod veth egress"),
    ("nodeport", "tw_from_netdev", "uplink ingress"),
    ("nodeport", "tw_to_netdev", "uplink egress"),
];

/// cgroup socket programs: (object, program, hook).
pub const SOCK_PROGRAMS: &[(&str, &str, &str)] = &[
    ("sock", "tw_sock4_conn", "connect4"),
    ("sock", "tw_sock4_send", "sendmsg4"),
    ("sock", "tw_sock4_recv", "recvmsg4"),
    ("sock", "tw_sock4_peer", "getpeername4"),
];

/// The tc priority and handle every Tollway filter uses.
const TC_PRIORITY: u16 = 1;
const TC_HANDLE: TcHandle = TcHandle::new(0, 1);

/// Errors of loading and attaching.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The pin directory could not be created.
    #[error("cannot create pin directory {}", path.display())]
    PinDir {
        /// Directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// aya could not load an object (maps, BTF, relocations).
    #[error("cannot load eBPF object `{object}`")]
    Object {
        /// Object name.
        object: &'static str,
        /// aya's error.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// An object lacks a program.
    #[error("eBPF object `{object}` has no program `{program}` of the expected type")]
    MissingProgram {
        /// Object.
        object: &'static str,
        /// Program.
        program: &'static str,
    },
    /// The kernel refused a program (the verifier log is in the source).
    #[error("kernel rejected program `{program}`")]
    Verifier {
        /// Program.
        program: &'static str,
        /// aya's error with the verifier log.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Attaching failed.
    #[error("cannot attach `{program}` to {target}")]
    Attach {
        /// Program.
        program: &'static str,
        /// Interface or cgroup.
        target: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Adding the clsact qdisc failed.
    #[error("cannot add a clsact qdisc to {ifname}")]
    Clsact {
        /// Interface.
        ifname: String,
        /// aya's error.
        #[source]
        source: Box<tc::TcError>,
    },
    /// Opening a cgroup or pinning its link failed.
    #[error("cgroup {}: {what}", path.display())]
    Cgroup {
        /// The cgroup directory or link pin.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}

/// Options of a load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `/sys/fs/bpf/tollway/<lab>/<node>`.
    pub pin_dir: PathBuf,
}

/// Whether an attach put a program in place or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ProgramState {
    /// Nothing was attached there before.
    Attached,
    /// An earlier filter or link was replaced without a gap.
    Replaced,
}

/// The loaded datapath of one node.
pub struct NodeDatapath {
    objects: BTreeMap<&'static str, Ebpf>,
    pin_dir: PathBuf,
}

impl NodeDatapath {
    /// Load every datapath object that is built (`lxc`, `sock`, `nodeport`),
    /// with its maps pinned by name in `opts.pin_dir` (reusing existing pins).
    pub fn load(opts: &LoadOptions) -> Result<NodeDatapath, LoadError> {
        std::fs::create_dir_all(&opts.pin_dir).map_err(|source| LoadError::PinDir {
            path: opts.pin_dir.clone(),
            source,
        })?;
        let built: Vec<&str> = program_object_names().collect();
        let mut objects = BTreeMap::new();
        for object in ["lxc", "sock", "nodeport"] {
            if !built.contains(&object) {
                continue;
            }
            let bytes = crate::program_object(object).map_err(|_| LoadError::MissingProgram {
                object,
                program: "(object)",
            })?;
            let mut ebpf = EbpfLoader::new()
                .default_map_pin_directory(&opts.pin_dir)
                .load(bytes)
                .map_err(|source| LoadError::Object {
                    object,
                    source: Box::new(source),
                })?;
            for (o, program, _) in TC_PROGRAMS.iter().filter(|(o, _, _)| *o == object) {
                let p: &mut SchedClassifier = ebpf
                    .program_mut(program)
                    .and_then(|p| p.try_into().ok())
                    .ok_or(LoadError::MissingProgram { object: o, program })?;
                p.load().map_err(|source| LoadError::Verifier {
                    program,
                    source: Box::new(source),
                })?;
            }
            for (o, program, _) in SOCK_PROGRAMS.iter().filter(|(o, _, _)| *o == object) {
                let p: &mut CgroupSockAddr = ebpf
                    .program_mut(program)
                    .and_then(|p| p.try_into().ok())
                    .ok_or(LoadError::MissingProgram { object: o, program })?;
                p.load().map_err(|source| LoadError::Verifier {
                    program,
                    source: Box::new(source),
                })?;
            }
            objects.insert(object, ebpf);
        }
        Ok(NodeDatapath {
            objects,
            pin_dir: opts.pin_dir.clone(),
        })
    }

    /// Whether an object was built and loaded.
    pub fn has(&self, object: &str) -> bool {
        self.objects.contains_key(object)
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The loaded object, for tests that drive programs directly.
    pub fn object_mut(&mut self, object: &str) -> Option<&mut Ebpf> {
        self.objects.get_mut(object)
    }

    /// The loaded object, shared (e.g. to run programs from several
    /// threads at once).
    pub fn object(&self, object: &str) -> Option<&Ebpf> {
        self.objects.get(object)
    }

    fn classifier(
        &mut self,
        object: &'static str,
        program: &'static str,
    ) -> Result<&mut SchedClassifier, LoadError> {
        self.objects
            .get_mut(object)
            .and_then(|o| o.program_mut(program))
            .and_then(|p| p.try_into().ok())
            .ok_or(LoadError::MissingProgram { object, program })
    }

    /// Attach a tc program at the fixed priority and handle of the
    /// interface's ingress or egress, replacing an earlier one atomically.
    /// The filter stays after this process exits.
    fn attach_tc(
        &mut self,
        object: &'static str,
        program: &'static str,
        ifname: &str,
        attach_type: TcAttachType,
    ) -> Result<ProgramState, LoadError> {
        match tc::qdisc_add_clsact(ifname) {
            Ok(()) => {}
            Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(source) => {
                return Err(LoadError::Clsact {
                    ifname: ifname.into(),
                    source: Box::new(source),
                });
            }
        }
        let target = format!("{ifname} ({attach_type:?})");
        let err = |source| LoadError::Attach {
            program,
            target: target.clone(),
            source: Box::new(source),
        };
        let prog = self.classifier(object, program)?;
        let created = prog.attach_with_options(
            ifname,
            attach_type,
            TcAttachOptions::Netlink(NlOptions {
                priority: TC_PRIORITY,
                handle: TC_HANDLE,
                classid: None,
            }),
        );
        let (id, state) = match created {
            Ok(id) => (id, ProgramState::Attached),
            Err(_) => {
                // A filter is there already (an earlier agent's): replace it
                // in place, keeping priority and handle.
                let existing = SchedClassifierLink::attached(
                    ifname,
                    attach_type,
                    TC_PRIORITY,
                    TC_HANDLE,
                    None,
                )
                .map_err(|e| err(aya::programs::ProgramError::IOError(e)))?;
                (
                    prog.attach_to_link(existing).map_err(err)?,
                    ProgramState::Replaced,
                )
            }
        };
        let link = prog.take_link(id).map_err(err)?;
        // Dropping the link would detach the filter: the datapath must
        // outlive the agent, so the link is deliberately never dropped.
        std::mem::forget(link);
        Ok(state)
    }

    /// Put the pod programs on a pod's host-side veth.
    pub fn attach_pod_interface(&mut self, ifname: &str) -> Result<ProgramState, LoadError> {
        let a = self.attach_tc("lxc", "tw_from_lxc", ifname, TcAttachType::Ingress)?;
        let b = self.attach_tc("lxc", "tw_to_lxc", ifname, TcAttachType::Egress)?;
        Ok(
            if a == ProgramState::Replaced || b == ProgramState::Replaced {
                ProgramState::Replaced
            } else {
                ProgramState::Attached
            },
        )
    }

    /// Put the NodePort programs on the node's uplink (if built).
    pub fn attach_uplink(&mut self, ifname: &str) -> Result<Option<ProgramState>, LoadError> {
        if !self.has("nodeport") {
            return Ok(None);
        }
        let a = self.attach_tc("nodeport", "tw_from_netdev", ifname, TcAttachType::Ingress)?;
        let b = self.attach_tc("nodeport", "tw_to_netdev", ifname, TcAttachType::Egress)?;
        Ok(Some(
            if a == ProgramState::Replaced || b == ProgramState::Replaced {
                ProgramState::Replaced
            } else {
                ProgramState::Attached
            },
        ))
    }

    /// Attach the socket LB programs to a cgroup (if built): new links are
    /// attached and pinned first, then earlier links are unpinned.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<Option<ProgramState>, LoadError> {
        if !self.has("sock") {
            return Ok(None);
        }
        let links_dir = self.pin_dir.join("links");
        std::fs::create_dir_all(&links_dir).map_err(|source| LoadError::PinDir {
            path: links_dir.clone(),
            source,
        })?;
        let tag = crate::lb::loader::path_tag(cgroup);
        let old: Vec<PathBuf> = std::fs::read_dir(&links_dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.contains(&tag))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let cg = std::fs::File::open(cgroup).map_err(|e| LoadError::Cgroup {
            path: cgroup.to_path_buf(),
            what: format!("cannot open: {e}"),
        })?;
        for (object, program, hook) in SOCK_PROGRAMS {
            let err = |source| LoadError::Attach {
                program,
                target: format!("cgroup {} ({hook})", cgroup.display()),
                source: Box::new(source),
            };
            let p: &mut CgroupSockAddr = self
                .objects
                .get_mut(object)
                .and_then(|o| o.program_mut(program))
                .and_then(|p| p.try_into().ok())
                .ok_or(LoadError::MissingProgram { object, program })?;
            // bpf links take no attach flags (BPF_F_ALLOW_MULTI is EINVAL
            // there): several links on one cgroup always run, in order.
            let id = p
                .attach(cg.as_fd(), CgroupAttachMode::Single)
                .map_err(err)?;
            let link = p.take_link(id).map_err(err)?;
            let fd: FdLink = link.try_into().map_err(|e| LoadError::Cgroup {
                path: cgroup.to_path_buf(),
                what: format!("link of {program} is not a bpf link: {e}"),
            })?;
            // bpffs refuses names with a dot.
            let pin = links_dir.join(format!("{program}-{tag}-{generation}"));
            fd.pin(&pin).map_err(|e| LoadError::Cgroup {
                path: pin.clone(),
                what: format!("cannot pin link: {}", error_chain(&e)),
            })?;
        }
        for p in &old {
            if let Ok(link) = PinnedLink::from_pin(p) {
                // Unpinning drops the last reference: the old program detaches.
                let _ = link.unpin();
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(Some(if old.is_empty() {
            ProgramState::Attached
        } else {
            ProgramState::Replaced
        }))
    }
}

/// A short stable tag for a path (link pins are named after their cgroup).
pub(crate) fn path_tag(p: &Path) -> String {
    let h = p
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("{h:016x}")
}

/// An error and its sources on one line (aya's pin errors hide the errno in
/// their source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
