//! Running iproute2.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{LabError, Result};

const IP_HINT: &str = "install iproute2: apt-get install -y iproute2";

/// Run a command, returning stdout; a non-zero exit is an error with stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            program: program.into(),
            hint: IP_HINT,
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip [-n NETNS] ARGS...`
pub fn ip(netns: Option<&str>, args: &[&str]) -> Result<String> {
    let mut full = Vec::with_capacity(args.len() + 2);
    if let Some(ns) = netns {
        full.extend(["-n", ns]);
    }
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Run many `ip` commands in one process (`ip -n NETNS -batch -`); stops at
/// the first failure and reports it.
pub fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: "ip".into(),
            hint: IP_HINT,
            source,
        })?;
    let script = lines.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| LabError::io("writing to", "ip -batch", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io("waiting for", "ip -batch", e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("ip {} <<< {}", args.join(" "), lines.join("; ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
