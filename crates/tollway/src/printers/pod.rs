//! The READY, STATUS and RESTARTS cells of a pod, computed as kubectl's
//! `printPod` does.

use jiff::Timestamp;
use tollway_api::Pod;

use super::age;

/// The cells kubectl derives from a pod's container statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodSummary {
    /// `ready/total`.
    pub ready: String,
    /// `Running`, `CrashLoopBackOff`, `Terminating`, ...
    pub status: String,
    /// `3`, or `3 (12s ago)` when the last termination time is known.
    pub restarts: String,
}

/// Phases after which a pod never runs again.
fn terminal(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// Summarize a pod the way `kubectl get pods` does.
///
/// STATUS starts from the phase (`Pending` without status), is replaced by
/// `status.reason` when set, then by the first container (in spec order)
/// that is waiting with a reason, terminated with a reason, or terminated
/// without one (`ExitCode:N`). `Completed` turns back into `Running` (or
/// `NotReady`) while another container still runs. A pod being deleted is
/// `Terminating` unless its phase is terminal (`Unknown` when its node is
/// lost).
pub(super) fn summarize(pod: &Pod, now: Timestamp) -> PodSummary {
    let total = pod.spec.containers.len();
    let phase = pod.phase();
    let mut reason = phase.to_string();
    let mut ready = 0usize;
    let mut restarts: u64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let status_reason = pod.status.as_ref().and_then(|s| s.reason.as_deref());
    if let Some(r) = status_reason.filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    let statuses = pod
        .status
        .as_ref()
        .map(|s| s.container_statuses.as_slice())
        .unwrap_or_default();
    let mut has_running = false;
    // kubectl walks the statuses backwards, so the first container wins.
    for c in statuses.iter().rev() {
        restarts += u64::from(c.restart_count);
        if let Some(finished) = c.last_state.terminated.as_ref().and_then(|t| t.finished_at) {
            last_restart = Some(last_restart.map_or(finished, |l| l.max(finished)));
        }
        let waiting = c.state.waiting.as_ref().filter(|w| !w.reason.is_empty());
        let terminated = c.state.terminated.as_ref();
        if let Some(w) = waiting {
            reason = w.reason.clone();
        } else if let Some(t) = terminated {
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => r.to_string(),
                None => format!("ExitCode:{}", t.exit_code),
            };
        } else if c.ready && c.state.running.is_some() {
            has_running = true;
            ready += 1;
        }
    }
    if reason == "Completed" && has_running {
        reason = if pod.is_ready() {
            "Running"
        } else {
            "NotReady"
        }
        .to_string();
    }
    if pod.metadata.is_terminating() {
        if status_reason == Some("NodeLost") {
            reason = "Unknown".to_string();
        } else if !terminal(phase) {
            reason = "Terminating".to_string();
        }
    }
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", age::since(Some(t), now)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollway_api::{
        Container, ContainerState, ContainerStatus, ObjectMeta, PodCondition, PodSpec, PodStatus,
        StateRunning, StateTerminated, StateWaiting,
    };

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn now() -> Timestamp {
        ts("2024-05-01T12:00:00Z")
    }

    fn pod(containers: &[&str]) -> Pod {
        Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: ObjectMeta {
                name: "p".into(),
                ..Default::default()
            },
            spec: PodSpec {
                containers: containers
                    .iter()
                    .map(|n| Container {
                        name: n.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn running(name: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            state: ContainerState {
                running: Some(StateRunning {
                    started_at: ts("2024-05-01T11:00:00Z"),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn waiting(name: &str, reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: ContainerState {
                waiting: Some(StateWaiting {
                    reason: reason.into(),
                    message: None,
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn terminated(name: &str, reason: Option<&str>, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: ContainerState {
                terminated: Some(StateTerminated {
                    exit_code: code,
                    reason: reason.map(str::to_string),
                    started_at: None,
                    finished_at: None,
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn with_status(mut p: Pod, phase: &str, statuses: Vec<ContainerStatus>) -> Pod {
        p.status = Some(PodStatus {
            phase: phase.into(),
            container_statuses: statuses,
            ..Default::default()
        });
        p
    }

    #[test]
    fn no_status_is_pending_zero_ready() {
        let s = summarize(&pod(&["a", "b"]), now());
        assert_eq!(s.ready, "0/2");
        assert_eq!(s.status, "Pending");
        assert_eq!(s.restarts, "0");
    }

    #[test]
    fn running_counts_ready_containers() {
        let p = with_status(
            pod(&["a", "b"]),
            "Running",
            vec![running("a", true), running("b", false)],
        );
        let s = summarize(&p, now());
        assert_eq!(s.ready, "1/2");
        assert_eq!(s.status, "Running");
    }

    #[test]
    fn waiting_reason_beats_phase_and_status_reason() {
        let mut p = with_status(
            pod(&["a"]),
            "Running",
            vec![waiting("a", "CrashLoopBackOff")],
        );
        if let Some(s) = p.status.as_mut() {
            s.reason = Some("Evicted".into());
        }
        assert_eq!(summarize(&p, now()).status, "CrashLoopBackOff");
        let p = with_status(
            pod(&["a"]),
            "Pending",
            vec![waiting("a", "ContainerCreating")],
        );
        assert_eq!(summarize(&p, now()).status, "ContainerCreating");
    }

    #[test]
    fn first_container_reason_wins() {
        let p = with_status(
            pod(&["a", "b"]),
            "Running",
            vec![
                waiting("a", "ImagePullBackOff"),
                waiting("b", "CrashLoopBackOff"),
            ],
        );
        assert_eq!(summarize(&p, now()).status, "ImagePullBackOff");
    }

    #[test]
    fn terminated_reasons() {
        let p = with_status(
            pod(&["a"]),
            "Failed",
            vec![terminated("a", Some("Error"), 1)],
        );
        assert_eq!(summarize(&p, now()).status, "Error");
        let p = with_status(
            pod(&["a"]),
            "Succeeded",
            vec![terminated("a", Some("Completed"), 0)],
        );
        assert_eq!(summarize(&p, now()).status, "Completed");
        let p = with_status(pod(&["a"]), "Failed", vec![terminated("a", None, 137)]);
        assert_eq!(summarize(&p, now()).status, "ExitCode:137");
    }

    #[test]
    fn completed_with_a_running_sibling_is_running_or_not_ready() {
        let mut p = with_status(
            pod(&["a", "b"]),
            "Running",
            vec![terminated("a", Some("Completed"), 0), running("b", true)],
        );
        assert_eq!(summarize(&p, now()).status, "NotReady");
        if let Some(s) = p.status.as_mut() {
            s.conditions.push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: None,
            });
        }
        assert_eq!(summarize(&p, now()).status, "Running");
    }

    #[test]
    fn status_reason_beats_phase() {
        let mut p = with_status(pod(&["a"]), "Failed", vec![]);
        if let Some(s) = p.status.as_mut() {
            s.reason = Some("Evicted".into());
        }
        assert_eq!(summarize(&p, now()).status, "Evicted");
    }

    #[test]
    fn terminating_beats_everything_but_terminal_phases() {
        let mut p = with_status(
            pod(&["a"]),
            "Running",
            vec![waiting("a", "CrashLoopBackOff")],
        );
        p.metadata.deletion_timestamp = Some(now());
        assert_eq!(summarize(&p, now()).status, "Terminating");
        let mut done = with_status(
            pod(&["a"]),
            "Succeeded",
            vec![terminated("a", Some("Completed"), 0)],
        );
        done.metadata.deletion_timestamp = Some(now());
        assert_eq!(summarize(&done, now()).status, "Completed");
        let mut lost = with_status(pod(&["a"]), "Running", vec![running("a", true)]);
        lost.metadata.deletion_timestamp = Some(now());
        if let Some(s) = lost.status.as_mut() {
            s.reason = Some("NodeLost".into());
        }
        assert_eq!(summarize(&lost, now()).status, "Unknown");
    }

    #[test]
    fn restarts_with_last_termination_time() {
        let mut a = running("a", true);
        a.restart_count = 2;
        a.last_state.terminated = Some(StateTerminated {
            exit_code: 1,
            reason: Some("Error".into()),
            started_at: None,
            finished_at: Some(ts("2024-05-01T11:59:30Z")),
        });
        let mut b = running("b", true);
        b.restart_count = 1;
        b.last_state.terminated = Some(StateTerminated {
            exit_code: 1,
            reason: Some("Error".into()),
            started_at: None,
            finished_at: Some(ts("2024-05-01T11:59:48Z")),
        });
        let p = with_status(pod(&["a", "b"]), "Running", vec![a, b]);
        let s = summarize(&p, now());
        assert_eq!(s.restarts, "3 (12s ago)");
        assert_eq!(s.ready, "2/2");
    }

    #[test]
    fn restarts_without_termination_time() {
        let mut a = running("a", true);
        a.restart_count = 4;
        let p = with_status(pod(&["a"]), "Running", vec![a]);
        assert_eq!(summarize(&p, now()).restarts, "4");
    }
}
