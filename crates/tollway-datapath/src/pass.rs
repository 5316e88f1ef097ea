//! Loader for `bpf/progs/pass.c`: the `tw_pass` tc classifier, which counts
//! every packet in the per-CPU `tw_stats` map and returns `TC_ACT_OK`.

use std::{
    marker::PhantomData,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, TestRun as _, TestRunOptions,
    maps::{Map, MapData, PerCpuArray},
    programs::{
        Link as _, SchedClassifier, TcAttachType,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions},
    },
};
use tollway_abi::{TW_STATS_KEY_TOTAL, TwStats};

use crate::{
    DatapathError, bpffs,
    netns::{self, NetnsId},
    program_object,
};

const OBJECT: &str = "pass";
const PROGRAM: &str = "tw_pass";
const STATS_MAP: &str = "tw_stats";

/// Result of one `BPF_PROG_TEST_RUN` invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value (a tc verdict, see [`crate::verdict`]).
    pub retval: u32,
    /// Run time reported by the kernel.
    pub duration: Duration,
}

/// One classic (netlink) clsact attachment.
#[derive(Debug)]
struct Attachment {
    ifname: String,
    netns: NetnsId,
    /// `None` once detached or given up.
    link: Option<SchedClassifierLink>,
}

/// The loaded `tw_pass` program and its `tw_stats` map.
///
/// Attachments are made with classic tc (clsact qdisc + netlink filter, not
/// TCX) and are detached when the handle is dropped or [`detach`] is called.
/// Netlink acts in the network namespace of the calling thread, so a handle
/// is deliberately `!Send`: it stays on the thread (and so in the namespace)
/// that attached it. As a second line of defence, detaching from a thread in
/// a different namespace is refused (and on drop the attachment is left to
/// die with its interface) rather than sent to the wrong namespace.
///
/// [`detach`]: PassProgram::detach
#[derive(Debug)]
pub struct PassProgram {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
    _not_send: PhantomData<*const ()>,
}

impl PassProgram {
    /// Name of the program in the object and in `tc filter show`.
    pub const PROGRAM_NAME: &'static str = PROGRAM;
    /// Name of the per-CPU stats map (also its pin file name).
    pub const STATS_MAP_NAME: &'static str = STATS_MAP;

    /// Loads the embedded `pass` object and the `tw_pass` program into the
    /// kernel. Nothing is attached yet.
    ///
    /// # Errors
    ///
    /// [`DatapathError`] if the object cannot be parsed or its maps created,
    /// or the verifier rejects the program (typically: not root).
    pub fn load() -> Result<Self, DatapathError> {
        let bytes = program_object(OBJECT)?;
        let mut ebpf = Ebpf::load(bytes).map_err(|source| DatapathError::LoadObject {
            object: OBJECT,
            source,
        })?;
        let program = ebpf
            .program_mut(PROGRAM)
            .ok_or(DatapathError::MissingProgram {
                object: OBJECT,
                program: PROGRAM,
            })?;
        let classifier: &mut SchedClassifier =
            program
                .try_into()
                .map_err(|source| DatapathError::ProgramType {
                    program: PROGRAM,
                    source,
                })?;
        classifier
            .load()
            .map_err(|source| DatapathError::ProgramLoad {
                program: PROGRAM,
                source,
            })?;
        if ebpf.map(STATS_MAP).is_none() {
            return Err(DatapathError::MissingMap {
                object: OBJECT,
                map: STATS_MAP,
            });
        }
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
            _not_send: PhantomData,
        })
    }

    fn classifier(&self) -> Result<&SchedClassifier, DatapathError> {
        let program = self
            .ebpf
            .program(PROGRAM)
            .ok_or(DatapathError::MissingProgram {
                object: OBJECT,
                program: PROGRAM,
            })?;
        program
            .try_into()
            .map_err(|source| DatapathError::ProgramType {
                program: PROGRAM,
                source,
            })
    }

    fn classifier_mut(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        let program = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(DatapathError::MissingProgram {
                object: OBJECT,
                program: PROGRAM,
            })?;
        program
            .try_into()
            .map_err(|source| DatapathError::ProgramType {
                program: PROGRAM,
                source,
            })
    }

    /// Attaches `tw_pass` at the clsact ingress hook of `ifname` in the
    /// calling thread's network namespace, adding the clsact qdisc if the
    /// interface has none. Uses classic netlink tc (direct-action filter),
    /// never TCX. The qdisc is left in place on detach.
    ///
    /// # Errors
    ///
    /// [`DatapathError`] if the interface does not exist, the qdisc cannot be
    /// added, this handle is already attached there, or the attach fails.
    pub fn attach_ingress(&mut self, ifname: &str) -> Result<(), DatapathError> {
        let netns = netns::current_netns().map_err(|source| DatapathError::Netns { source })?;
        if self
            .attachments
            .iter()
            .any(|a| a.ifname == ifname && a.netns == netns && a.link.is_some())
        {
            return Err(DatapathError::AlreadyAttached {
                program: PROGRAM,
                ifname: ifname.to_owned(),
            });
        }
        match tc::qdisc_add_clsact(ifname) {
            Ok(()) => {}
            Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(source) => {
                return Err(DatapathError::AddClsact {
                    ifname: ifname.to_owned(),
                    source,
                });
            }
        }
        let attach_error = |source| DatapathError::Attach {
            program: PROGRAM,
            ifname: ifname.to_owned(),
            source,
        };
        let classifier = self.classifier_mut()?;
        let link_id = classifier
            .attach_with_options(
                ifname,
                TcAttachType::Ingress,
                TcAttachOptions::Netlink(NlOptions::default()),
            )
            .map_err(attach_error)?;
        let link = classifier.take_link(link_id).map_err(attach_error)?;
        self.attachments.push(Attachment {
            ifname: ifname.to_owned(),
            netns,
            link: Some(link),
        });
        Ok(())
    }

    /// Interfaces this handle is currently attached to.
    pub fn attached_interfaces(&self) -> impl Iterator<Item = &str> {
        self.attachments
            .iter()
            .filter(|a| a.link.is_some())
            .map(|a| a.ifname.as_str())
    }

    /// Detaches every attachment made by this handle. Must be called from
    /// the network namespace the attachments were made in.
    ///
    /// # Errors
    ///
    /// [`DatapathError::WrongNetns`] if called from another namespace (the
    /// attachments are kept), [`DatapathError::Detach`] if netlink fails.
    pub fn detach(&mut self) -> Result<(), DatapathError> {
        let here = netns::current_netns().map_err(|source| DatapathError::Netns { source })?;
        if let Some(a) = self
            .attachments
            .iter()
            .find(|a| a.link.is_some() && a.netns != here)
        {
            return Err(DatapathError::WrongNetns {
                program: PROGRAM,
                ifname: a.ifname.clone(),
            });
        }
        let mut first_error = None;
        for attachment in self.attachments.drain(..) {
            if let Some(link) = attachment.link
                && let Err(source) = link.detach()
                && first_error.is_none()
            {
                first_error = Some(DatapathError::Detach {
                    program: PROGRAM,
                    ifname: attachment.ifname,
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn stats_map(&self) -> Result<PerCpuArray<&MapData, TwStats>, DatapathError> {
        let map = self.ebpf.map(STATS_MAP).ok_or(DatapathError::MissingMap {
            object: OBJECT,
            map: STATS_MAP,
        })?;
        PerCpuArray::try_from(map).map_err(|source| DatapathError::MapType {
            map: STATS_MAP.to_owned(),
            source,
        })
    }

    /// Packet and byte counts summed over all CPUs.
    ///
    /// # Errors
    ///
    /// [`DatapathError`] if the map cannot be read.
    pub fn stats(&self) -> Result<TwStats, DatapathError> {
        sum_stats(&self.stats_map()?, STATS_MAP)
    }

    /// Runs `tw_pass` once on `packet` (an Ethernet frame) with
    /// `BPF_PROG_TEST_RUN`. The run updates the real `tw_stats` map.
    ///
    /// # Errors
    ///
    /// [`DatapathError::TestRun`] if the kernel refuses the run (e.g. the
    /// packet is shorter than an Ethernet header).
    pub fn test_run(&self, packet: &[u8]) -> Result<TestRunResult, DatapathError> {
        let opts = TestRunOptions {
            data_in: Some(packet),
            repeat: 1,
            ..TestRunOptions::default()
        };
        let result =
            self.classifier()?
                .test_run(opts)
                .map_err(|source| DatapathError::TestRun {
                    program: PROGRAM,
                    source,
                })?;
        Ok(TestRunResult {
            retval: result.return_value,
            duration: result.duration,
        })
    }

    /// Pins every map of the object as `dir/<map name>` (e.g.
    /// `dir/tw_stats`), creating `dir` if needed, and returns the pin paths.
    /// `dir` must be on a bpffs (see [`bpffs::ensure_bpffs`] and
    /// [`bpffs::pin_dir`]). Pins outlive this handle; remove the files to
    /// release them.
    ///
    /// # Errors
    ///
    /// [`DatapathError`] if `dir` cannot be created, is not on bpffs, or a
    /// pin fails (e.g. it already exists).
    pub fn pin_maps(&self, dir: &Path) -> Result<Vec<PathBuf>, DatapathError> {
        std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir {
            path: dir.to_owned(),
            source,
        })?;
        bpffs::require_bpffs(dir).map_err(|source| DatapathError::PinFs {
            path: dir.to_owned(),
            source,
        })?;
        let mut pinned = Vec::new();
        for (name, map) in self.ebpf.maps() {
            let path = dir.join(name);
            map.pin(&path).map_err(|source| DatapathError::Pin {
                map: name.to_owned(),
                path: path.clone(),
                source,
            })?;
            pinned.push(path);
        }
        Ok(pinned)
    }
}

impl Drop for PassProgram {
    fn drop(&mut self) {
        let here = netns::current_netns().ok();
        for attachment in &mut self.attachments {
            if let Some(link) = attachment.link.take() {
                if here == Some(attachment.netns) {
                    // Nothing useful to do with a failure while dropping.
                    let _ignored = link.detach();
                } else {
                    // Detaching would send netlink requests to the wrong
                    // namespace; the filter goes away with its interface.
                    std::mem::forget(link);
                }
            }
        }
    }
}

/// Opens a pinned `tw_stats` map (as written by [`PassProgram::pin_maps`])
/// from a fresh handle and returns its counts summed over all CPUs.
///
/// # Errors
///
/// [`DatapathError`] if the pin cannot be opened, is not a per-CPU array of
/// [`TwStats`], or cannot be read.
pub fn read_pinned_stats(path: &Path) -> Result<TwStats, DatapathError> {
    let label = path.display().to_string();
    let data = MapData::from_pin(path).map_err(|source| DatapathError::OpenPin {
        path: path.to_owned(),
        source,
    })?;
    let map = Map::from_map_data(data).map_err(|source| DatapathError::MapType {
        map: label.clone(),
        source,
    })?;
    let array: PerCpuArray<MapData, TwStats> =
        PerCpuArray::try_from(map).map_err(|source| DatapathError::MapType {
            map: label.clone(),
            source,
        })?;
    sum_stats(&array, &label)
}

fn sum_stats<T: std::borrow::Borrow<MapData>>(
    array: &PerCpuArray<T, TwStats>,
    label: &str,
) -> Result<TwStats, DatapathError> {
    let per_cpu = array
        .get(&TW_STATS_KEY_TOTAL, 0)
        .map_err(|source| DatapathError::MapRead {
            map: label.to_owned(),
            source,
        })?;
    Ok(per_cpu
        .iter()
        .fold(TwStats::ZERO, |acc, cpu| acc.merged(*cpu)))
}
