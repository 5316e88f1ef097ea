//! Supervision of the per-node agents: one `tollway agent` process per node,
//! in the node's network namespace and the lab's system cgroup, restarted
//! with back-off when it exits. An agent that outlived a daemon restart is
//! adopted (its PID file is checked against its start time), not restarted.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::container::{BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET_AFTER};
use crate::paths::LabPaths;
use crate::sys::process::{self, Placement};

fn pid_file(paths: &LabPaths, node: &str) -> PathBuf {
    paths.node_dir(node).join("agent.pid")
}

/// The agent's PID if it runs (PID and start time both match its PID file).
pub fn running_agent(paths: &LabPaths, node: &str) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file(paths, node)).ok()?;
    let mut it = text.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    (process::alive(pid) && process::start_time(pid) == Some(start)).then_some(pid)
}

async fn wait_exit(pid: i32) {
    match process::pidfd_open(pid) {
        Ok(fd) => super::container::wait_pidfd(pid, fd).await,
        Err(_) => {
            while process::alive(pid) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Keep the agent of `node` running, forever.
pub async fn supervise(paths: LabPaths, node: String, exe: PathBuf) {
    let mut backoff = BACKOFF_INITIAL;
    loop {
        let began = Instant::now();
        if let Some(pid) = running_agent(&paths, &node) {
            tracing::info!(%node, pid, "adopting running agent");
            wait_exit(pid).await;
        } else {
            match start(&paths, &node, &exe) {
                Ok(mut child) => {
                    let status = child.wait().await;
                    tracing::warn!(%node, ?status, "agent exited");
                }
                Err(e) => tracing::error!(%node, error = %e, "cannot start agent"),
            }
        }
        if began.elapsed() >= BACKOFF_RESET_AFTER {
            backoff = BACKOFF_INITIAL;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn start(
    paths: &LabPaths,
    node: &str,
    exe: &std::path::Path,
) -> crate::Result<tokio::process::Child> {
    let dir = paths.node_dir(node);
    std::fs::create_dir_all(&dir).map_err(|e| crate::LabError::io("creating", &dir, e))?;
    let log = process::log_file(&dir.join("agent.log"))?;
    let log2 = log
        .try_clone()
        .map_err(|e| crate::LabError::io("duplicating", dir.join("agent.log"), e))?;
    let hook = process::pre_exec_hook(&Placement {
        netns: Some(paths.node_netns(node)),
        cgroup: Some(paths.system_cgroup()?),
        new_session: true,
        resolv_conf: None,
    })?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["agent", "--lab", &paths.lab, "--node", node])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(false);
    // SAFETY: the hook makes only async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(hook);
    }
    let child = cmd.spawn().map_err(|source| crate::LabError::Spawn {
        program: exe.display().to_string(),
        hint: "the tollway binary",
        source,
    })?;
    if let Some(pid) = child.id() {
        let pid = pid as i32;
        let start = process::start_time(pid).unwrap_or(0);
        let f = pid_file(paths, node);
        std::fs::write(&f, format!("{pid} {start}\n"))
            .map_err(|e| crate::LabError::io("writing", f, e))?;
    }
    tracing::info!(node, pid = child.id(), "agent started");
    Ok(child)
}
