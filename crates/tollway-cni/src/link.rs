//! The veth pair and what the kernel says about it, through iproute2.
//!
//! Host-side commands run in the plugin's own network namespace (the
//! node's). Container-side commands run in a child that enters the
//! container's namespace (`setns` on the `CNI_NETNS` path between fork and
//! exec), so any path a runtime gives works: `/var/run/netns/NAME`,
//! `/proc/PID/ns/net`, a bind mount elsewhere.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::error::{CniError, Result};

/// Names of a container's host-side veth and its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    /// `lxc` + 11 hex digits (14 bytes, under IFNAMSIZ).
    pub name: String,
    /// Locally administered MAC, the pod's gateway neighbour.
    pub mac: String,
}

/// The host side of `(container_id, ifname)`: FNV-1a of the container id
/// (of `id/ifname` for interfaces other than `eth0`), the scheme of the
/// lab's `PodLink::for_uid`, so a container whose id is the pod uid gets
/// the veth the lab's agent looks for.
pub fn host_link(container_id: &str, ifname: &str) -> HostLink {
    let key = if ifname == "eth0" {
        container_id.to_string()
    } else {
        format!("{container_id}/{ifname}")
    };
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let b = h.to_be_bytes();
    HostLink {
        name: format!("lxc{:011x}", h >> 20),
        mac: format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4]
        ),
    }
}

/// Where `ip` is: the first `ip` on `PATH`, else the usual places (a
/// runtime may run plugins with a minimal environment).
fn ip_program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("ip"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("ip"))
}

/// A network namespace to run commands in: `None` is the plugin's own.
#[derive(Debug, Clone, Copy)]
pub struct Ns<'a>(pub Option<&'a File>);

/// Open a network namespace path.
pub fn open_netns(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

fn run(ns: Ns<'_>, args: &[&str], script: Option<&str>) -> Result<String> {
    let program = ip_program();
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .stdin(if script.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(f) = ns.0 {
        let fd = f.as_raw_fd();
        // SAFETY: only setns(2) on a descriptor the parent keeps open for
        // the duration of the spawn; async-signal-safe, no allocation.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|source| CniError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    if let (Some(text), Some(mut stdin)) = (script, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| CniError::io("writing to", "ip -batch", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io("waiting for", program.clone(), e))?;
    if !out.status.success() {
        let mut command = format!("ip {}", args.join(" "));
        if let Some(s) = script {
            command.push_str(&format!(" <<< {}", s.trim_end().replace('\n', "; ")));
        }
        return Err(CniError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS...` in `ns`.
pub fn ip(ns: Ns<'_>, args: &[&str]) -> Result<String> {
    run(ns, args, None)
}

/// Many `ip` commands in one process (`ip -batch -`), stopping at the first
/// failure.
pub fn ip_batch(ns: Ns<'_>, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    run(ns, &["-batch", "-"], Some(&(lines.join("\n") + "\n"))).map(|_| ())
}

fn json(ns: Ns<'_>, args: &[&str]) -> Result<Vec<Value>> {
    let text = ip(ns, args)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).map_err(|source| CniError::Decode {
        what: "the output of `ip -j`",
        source,
    })
}

/// What the kernel says about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// ifindex.
    pub ifindex: u32,
    /// MAC.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// `veth`, `dummy`, ... (empty if the kernel gave none).
    pub kind: String,
}

/// A link by name, or `None` if it does not exist.
pub fn link(ns: Ns<'_>, name: &str) -> Result<Option<LinkInfo>> {
    let v = match json(ns, &["-j", "-d", "link", "show", "dev", name]) {
        Ok(v) => v,
        Err(CniError::Command { stderr, .. }) if stderr.contains("does not exist") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(v.first().map(|l| LinkInfo {
        ifindex: l["ifindex"].as_u64().unwrap_or(0) as u32,
        mac: l["address"].as_str().unwrap_or_default().to_string(),
        mtu: l["mtu"].as_u64().unwrap_or(0) as u32,
        up: l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
        kind: l["linkinfo"]["info_kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }))
}

/// Every link whose name starts with `prefix`.
pub fn links_with_prefix(ns: Ns<'_>, prefix: &str) -> Result<Vec<String>> {
    Ok(json(ns, &["-j", "link", "show"])?
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect())
}

/// IPv4 addresses of a link.
pub fn addresses(ns: Ns<'_>, name: &str) -> Result<Vec<Ipv4Net>> {
    let v = json(ns, &["-j", "-4", "addr", "show", "dev", name])?;
    let mut out = Vec::new();
    for l in &v {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(len)) = (
                a["local"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()),
                a["prefixlen"].as_u64(),
            ) && let Ok(net) = Ipv4Net::new(ip, len as u8)
            {
                out.push(net);
            }
        }
    }
    Ok(out)
}

/// An IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination (`0.0.0.0/0` for `default`).
    pub dst: Ipv4Net,
    /// Next hop.
    pub gateway: Option<Ipv4Addr>,
    /// Device.
    pub dev: String,
}

/// The main table's IPv4 routes.
pub fn routes(ns: Ns<'_>) -> Result<Vec<RouteInfo>> {
    let v = json(ns, &["-j", "-4", "route", "show"])?;
    Ok(v.iter()
        .filter_map(|r| {
            let dst = match r["dst"].as_str()? {
                "default" => Ipv4Net::default(),
                s if s.contains('/') => s.parse().ok()?,
                s => Ipv4Net::new(s.parse().ok()?, 32).ok()?,
            };
            Some(RouteInfo {
                dst,
                gateway: r["gateway"].as_str().and_then(|g| g.parse().ok()),
                dev: r["dev"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect())
}

/// The neighbour entry of `ip` on `dev`: its MAC and whether it is
/// permanent.
pub fn neighbour(ns: Ns<'_>, dev: &str, ip: Ipv4Addr) -> Result<Option<(String, bool)>> {
    let v = json(ns, &["-j", "-4", "neigh", "show", "dev", dev])?;
    Ok(v.iter()
        .find(|n| n["dst"].as_str() == Some(ip.to_string().as_str()))
        .map(|n| {
            (
                n["lladdr"].as_str().unwrap_or_default().to_string(),
                n["state"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "PERMANENT")),
            )
        }))
}

/// Delete a link if it exists (its veth peer goes with it). Returns
/// whether it existed.
pub fn delete_link(ns: Ns<'_>, name: &str) -> Result<bool> {
    match ip(ns, &["link", "del", "dev", name]) {
        Ok(_) => Ok(true),
        Err(CniError::Command { stderr, .. })
            if stderr.contains("Cannot find device") || stderr.contains("does not exist") =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_links_follow_the_lab_scheme() {
        let a = host_link("0b6c7e3e-1111-4a3c-9b1e-000000000001", "eth0");
        assert_eq!(a, host_link("0b6c7e3e-1111-4a3c-9b1e-000000000001", "eth0"));
        assert_ne!(a.name, host_link("other", "eth0").name);
        assert_ne!(
            a.name,
            host_link("0b6c7e3e-1111-4a3c-9b1e-000000000001", "net1").name
        );
        assert_eq!(a.name.len(), 14);
        assert!(a.name.starts_with("lxc"));
        assert!(a.mac.starts_with("02:"));
        assert_eq!(a.mac.len(), 17);
        // The same FNV-1a the lab computes for PodLink::for_uid("abc").
        let h = "abc".bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        assert_eq!(
            host_link("abc", "eth0").name,
            format!("lxc{:011x}", h >> 20)
        );
    }
}
