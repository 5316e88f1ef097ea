//! Tollway's eBPF datapath: the C programs under `bpf/` (compiled by clang in
//! `build.rs` and embedded in this crate) and their typed aya loaders.
//!
//! * [`program_object`] returns an embedded object by name (one per
//!   `bpf/progs/*.c`).
//! * [`PassProgram`] loads `tw_pass` (count and pass), attaches it at classic
//!   clsact ingress, reads its counters, runs it with `BPF_PROG_TEST_RUN` and
//!   pins its maps.
//! * [`bpffs`] mounts the BPF filesystem and names pin directories
//!   (`/sys/fs/bpf/tollway/<lab>/<node>`).
//! * [`netns`] runs code inside a named network namespace on a dedicated
//!   thread.
//! * [`probe`] checks the kernel's features at start-up.
//! * [`testutil`] builds test packets by hand.
//!
//! Structs shared with the programs come from [`tollway_abi`].

pub mod bpffs;
pub mod lb;
pub mod netns;
mod pass;
pub mod probe;
pub mod testutil;

pub use pass::{PassProgram, TestRunResult, read_pinned_stats};
pub use tollway_abi::TwStats;

use std::path::PathBuf;

mod objects {
    include!(concat!(env!("OUT_DIR"), "/objects.rs"));
}

/// tc verdicts returned by classifier programs (`linux/pkt_cls.h`).
pub mod verdict {
    /// `TC_ACT_OK`: let the packet continue.
    pub const TC_ACT_OK: u32 = 0;
    /// `TC_ACT_SHOT`: drop the packet.
    pub const TC_ACT_SHOT: u32 = 2;
}

/// Returns the embedded eBPF object (ELF bytes, 8-byte aligned) built from
/// `bpf/progs/<name>.c`, e.g. `program_object("pass")`.
///
/// # Errors
///
/// [`DatapathError::UnknownObject`] if no such program was built.
pub fn program_object(name: &str) -> Result<&'static [u8], DatapathError> {
    objects::OBJECTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| DatapathError::UnknownObject {
            name: name.to_owned(),
            known: program_object_names().collect::<Vec<_>>().join(", "),
        })
}

/// Names of all embedded eBPF objects, sorted.
pub fn program_object_names() -> impl Iterator<Item = &'static str> {
    objects::OBJECTS.iter().map(|(n, _)| *n)
}

/// Errors from loading, attaching and using the eBPF programs.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// No object with this name is embedded.
    #[error("no embedded eBPF object named `{name}` (known: {known})")]
    UnknownObject {
        /// The requested name.
        name: String,
        /// Comma-separated names that do exist.
        known: String,
    },
    /// aya could not parse the object or create its maps.
    #[error("cannot load eBPF object `{object}`")]
    LoadObject {
        /// Object name.
        object: &'static str,
        /// aya's error.
        #[source]
        source: aya::EbpfError,
    },
    /// The object lacks a program it is expected to contain.
    #[error("eBPF object `{object}` has no program `{program}`")]
    MissingProgram {
        /// Object name.
        object: &'static str,
        /// Program (function) name.
        program: &'static str,
    },
    /// The object lacks a map it is expected to contain.
    #[error("eBPF object `{object}` has no map `{map}`")]
    MissingMap {
        /// Object name.
        object: &'static str,
        /// Map name.
        map: &'static str,
    },
    /// The program is not of the expected type.
    #[error("program `{program}` is not a tc classifier")]
    ProgramType {
        /// Program name.
        program: &'static str,
        /// aya's error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The kernel rejected the program (the verifier log is in the source).
    #[error("kernel rejected program `{program}`")]
    ProgramLoad {
        /// Program name.
        program: &'static str,
        /// aya's error, including the verifier log.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Adding the clsact qdisc failed (other than it already existing).
    #[error("cannot add clsact qdisc to `{ifname}`")]
    AddClsact {
        /// Interface name.
        ifname: String,
        /// aya's error.
        #[source]
        source: aya::programs::TcError,
    },
    /// The program is already attached to this interface by this handle.
    #[error("program `{program}` is already attached to `{ifname}`")]
    AlreadyAttached {
        /// Program name.
        program: &'static str,
        /// Interface name.
        ifname: String,
    },
    /// Attaching the program to an interface failed.
    #[error("cannot attach `{program}` to ingress of `{ifname}`")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Interface name.
        ifname: String,
        /// aya's error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Detaching the program from an interface failed.
    #[error("cannot detach `{program}` from `{ifname}`")]
    Detach {
        /// Program name.
        program: &'static str,
        /// Interface name.
        ifname: String,
        /// aya's error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Detaching was refused because the calling thread is in a different
    /// network namespace than the one the program was attached in.
    #[error(
        "refusing to detach `{program}` from `{ifname}`: the calling thread is not in the \
         network namespace it was attached in"
    )]
    WrongNetns {
        /// Program name.
        program: &'static str,
        /// Interface name.
        ifname: String,
    },
    /// Identifying the calling thread's network namespace failed.
    #[error("cannot identify the current network namespace")]
    Netns {
        /// The netns module's error.
        #[source]
        source: netns::NetnsError,
    },
    /// A map is not of the expected type or value layout.
    #[error("map `{map}` does not have the expected type or layout")]
    MapType {
        /// Map name or pin path.
        map: String,
        /// aya's error.
        #[source]
        source: aya::maps::MapError,
    },
    /// Reading a map entry failed.
    #[error("cannot read map `{map}`")]
    MapRead {
        /// Map name or pin path.
        map: String,
        /// aya's error.
        #[source]
        source: aya::maps::MapError,
    },
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN of `{program}` failed")]
    TestRun {
        /// Program name.
        program: &'static str,
        /// aya's error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The pin directory could not be created.
    #[error("cannot create pin directory {}", path.display())]
    PinDir {
        /// Directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The pin directory is not on a BPF filesystem, or checking failed.
    #[error("pin directory {} is not usable", path.display())]
    PinFs {
        /// Directory.
        path: PathBuf,
        /// The bpffs module's error.
        #[source]
        source: bpffs::BpffsError,
    },
    /// Pinning a map failed (e.g. the pin already exists).
    #[error("cannot pin map `{map}` at {}", path.display())]
    Pin {
        /// Map name.
        map: String,
        /// Pin path.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: aya::pin::PinError,
    },
    /// Opening a pinned map failed.
    #[error("cannot open pinned map {}", path.display())]
    OpenPin {
        /// Pin path.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: aya::maps::MapError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_object_is_embedded_elf() {
        let obj = program_object("pass").expect("pass object");
        assert_eq!(&obj[..4], b"\x7fELF");
        assert_eq!(
            obj.as_ptr().align_offset(8),
            0,
            "object must be 8-byte aligned"
        );
        assert!(program_object_names().any(|n| n == "pass"));
    }

    #[test]
    fn unknown_object_is_a_typed_error() {
        let err = program_object("nope").expect_err("unknown object");
        assert!(
            matches!(&err, DatapathError::UnknownObject { name, known } if name == "nope" && known.contains("pass")),
            "{err:?}"
        );
    }
}
