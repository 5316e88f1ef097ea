//! One container: a supervised process in its pod's namespace and cgroup,
//! restarted with exponential back-off as its restart policy says.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::sys::process::{self, Placement};

/// First back-off after a crash; doubles up to [`BACKOFF_MAX`]. Kubernetes
/// uses 10 s → 300 s; the lab is for quick experiments, so it is shorter.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long gets its back-off reset.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// When to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Always.
    Always,
    /// After a non-zero exit.
    OnFailure,
    /// Never.
    Never,
}

impl RestartPolicy {
    /// From the pod spec's string (validated already).
    pub fn parse(s: &str) -> Self {
        match s {
            "OnFailure" => RestartPolicy::OnFailure,
            "Never" => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// A process found running when the daemon started.
#[derive(Debug)]
pub struct Adopted {
    /// Its PID.
    pub pid: i32,
    /// A pidfd for it.
    pub pidfd: OwnedFd,
    /// When it started (from the stored status).
    pub started_at: Timestamp,
}

/// Everything needed to run one container.
#[derive(Debug)]
pub struct ContainerSpec {
    /// The pod's uid.
    pub pod_uid: String,
    /// Container name.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Full environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Output file.
    pub log: PathBuf,
    /// Where the process runs.
    pub placement: Placement,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// A running process to adopt instead of starting one.
    pub adopt: Option<Adopted>,
}

/// What happened to a container.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerEvent {
    /// A process started.
    Started {
        /// Its PID.
        pid: i32,
        /// When.
        at: Timestamp,
        /// Found running (adopted), not started by us.
        adopted: bool,
    },
    /// It could not be started.
    StartFailed {
        /// Why.
        message: String,
        /// When.
        at: Timestamp,
    },
    /// The process exited.
    Exited {
        /// Exit code (128+N for signal N; -1 when unknown, for adopted processes).
        code: i32,
        /// When it started.
        started_at: Timestamp,
        /// When it exited.
        at: Timestamp,
    },
    /// Waiting to restart.
    BackOff {
        /// For how long.
        delay: Duration,
    },
    /// Will not run again (restart policy, or the pod is stopping).
    Done,
}

/// A message to the daemon: (pod uid, container name, event).
pub type EventTx = mpsc::UnboundedSender<(String, String, ContainerEvent)>;

/// Run a container until `stop` becomes true (the caller kills the
/// processes; this task sees them exit and stops restarting them).
pub async fn supervise(mut spec: ContainerSpec, tx: EventTx, mut stop: watch::Receiver<bool>) {
    let send = |e: ContainerEvent| {
        let _ = tx.send((spec.pod_uid.clone(), spec.name.clone(), e));
    };
    let mut backoff = BACKOFF_INITIAL;
    let mut adopt = spec.adopt.take();
    loop {
        if *stop.borrow() {
            break;
        }
        let began = Instant::now();
        let (started_at, code) = match adopt.take() {
            Some(a) => {
                send(ContainerEvent::Started {
                    pid: a.pid,
                    at: a.started_at,
                    adopted: true,
                });
                wait_pidfd(a.pid, a.pidfd).await;
                (a.started_at, -1)
            }
            None => match start(&spec) {
                Ok(mut child) => {
                    let at = Timestamp::now();
                    send(ContainerEvent::Started {
                        pid: child.id().map_or(0, |p| p as i32),
                        at,
                        adopted: false,
                    });
                    let code = match child.wait().await {
                        Ok(status) => exit_code(status),
                        Err(_) => -1,
                    };
                    (at, code)
                }
                Err(message) => {
                    send(ContainerEvent::StartFailed {
                        message,
                        at: Timestamp::now(),
                    });
                    (Timestamp::now(), 128)
                }
            },
        };
        send(ContainerEvent::Exited {
            code,
            started_at,
            at: Timestamp::now(),
        });
        if *stop.borrow() || !spec.restart.restarts_after(code) {
            break;
        }
        if began.elapsed() >= BACKOFF_RESET_AFTER {
            backoff = BACKOFF_INITIAL;
        }
        send(ContainerEvent::BackOff { delay: backoff });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    send(ContainerEvent::Done);
}

fn start(spec: &ContainerSpec) -> Result<tokio::process::Child, String> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err("empty command".into());
    };
    let log = process::log_file(&spec.log).map_err(|e| e.to_string())?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("duplicating log file: {e}"))?;
    let hook = process::pre_exec_hook(&spec.placement).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(false);
    // SAFETY: the hook makes only async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(hook);
    }
    cmd.spawn().map_err(|e| format!("starting {program}: {e}"))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Wait until the process behind a pidfd exits.
pub(crate) async fn wait_pidfd(pid: i32, fd: OwnedFd) {
    // SAFETY: the OwnedFd is moved into the AsyncFd and stays open, as the
    // same descriptor, until the AsyncFd is dropped.
    let registered = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
    if let Ok(afd) = registered
        && afd.readable().await.is_ok()
    {
        return;
    }
    // pidfds poll since Linux 5.3; should that fail, watch /proc instead.
    while process::alive(pid) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
