//! `tollway-cni`: Tollway's CNI plugin (spec 1.1; also speaks 0.3.x, 0.4.0
//! and 1.0.0).
//!
//! ADD gives a container a veth pair: `CNI_IFNAME` inside with a /32 from
//! the node's pod CIDR and a default route via a link-local gateway
//! (169.254.1.1) that a permanent neighbour entry resolves to the host-side
//! veth; on the host side (the namespace the plugin runs in: the node), a
//! route to the /32 over that veth. This is the lab's scheme
//! (`tollway_lab::net`), Calico's and Cilium's too: no bridge, no address
//! on the host side, and the agent's tc programs on the host veth see all
//! of the pod's traffic.
//!
//! - [`env`]: the `CNI_*` variables; [`config`]: the network configuration;
//!   [`result`]: the result JSON; [`error`]: errors and their codes.
//! - [`ipam`]: host-local allocations on disk, under `flock`.
//! - [`link`]: iproute2 (host side here, container side via `setns`).
//! - [`endpoint`]: the records that tell the agent about endpoints.
//! - [`plugin`]: the six commands.
//!
//! [`run`] is the whole plugin as a function of its environment and stdin;
//! [`main`] wires it to the process.

pub mod config;
pub mod endpoint;
pub mod env;
pub mod error;
pub mod install;
pub mod ipam;
pub mod link;
pub mod plugin;
pub mod result;
pub mod version;

pub use config::NetConf;
pub use error::{CniError, Result};

/// What a run prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// stdout (a result, a version list, an error, or nothing).
    pub stdout: String,
    /// The exit code (0 on success).
    pub exit_code: u8,
}

/// Run the plugin: `get` reads environment variables, `stdin` is the
/// network configuration.
pub fn run(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version_hint = config::peek_version(stdin)
        .filter(|v| version::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| version::LATEST.to_string());
    match plugin::dispatch(get, stdin) {
        Ok(Some(v)) => Outcome {
            stdout: format!("{v:#}\n"),
            exit_code: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(e) => Outcome {
            stdout: format!("{:#}\n", e.to_json(&version_hint)),
            exit_code: 1,
        },
    }
}

/// The plugin as a process: environment, stdin, stdout, exit code. Errors
/// also go to stderr, for runtimes that log it.
pub fn main() -> std::process::ExitCode {
    use std::io::{Read, Write};
    let mut stdin = Vec::new();
    let mut out = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&|k| std::env::var(k).ok(), &stdin),
        Err(e) => {
            let err = CniError::io("reading", "stdin", e);
            Outcome {
                stdout: format!("{:#}\n", err.to_json(version::LATEST)),
                exit_code: 1,
            }
        }
    };
    if out.exit_code != 0 {
        eprintln!("tollway-cni: {}", out.stdout.trim());
    }
    let mut so = std::io::stdout().lock();
    if so
        .write_all(out.stdout.as_bytes())
        .and_then(|()| so.flush())
        .is_err()
    {
        out.exit_code = 1;
    }
    std::process::ExitCode::from(out.exit_code)
}
