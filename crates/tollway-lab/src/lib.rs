//! The lab: a real multi-node cluster on one machine, out of Linux network
//! namespaces, cgroups and processes (like kind does with containers).
//!
//! - [`lab`]: `up` / `down` / `status` / `exec`.
//! - [`addons`]: what `lab up` creates in `kube-system` (the DNS server).
//! - [`net`]: fabric bridge, node namespaces with native routing, pod veths.
//! - [`daemon`]: the per-lab control plane (scheduler, deployment
//!   controller, garbage collector) and kubelet (pods as supervised
//!   processes in their own namespace and cgroup).
//! - [`cni`]: pod networking through the CNI plugin (`tollway cni`).
//! - [`sys`]: typed wrappers over iproute2, netns, cgroup v2 and processes.
//!
//! Invariant: nothing is ever added to the machine's root network
//! namespace, and every name the lab makes carries its lab's prefix.

pub mod addons;
pub mod cni;
pub mod config;
pub mod daemon;
mod error;
pub mod lab;
pub mod net;
pub mod paths;
pub mod sys;

pub use config::{LabConfig, LbSettings, NodeConfig};
pub use error::{LabError, Result};
pub use paths::LabPaths;
