//! Thin, typed wrappers over what the lab asks of the kernel: commands
//! (iproute2), network namespaces, cgroup v2, sysctls and processes.

pub mod cgroup;
pub mod cmd;
pub mod netns;
pub mod process;
