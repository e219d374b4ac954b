//! Pod status as the kubelet reports it, computed from what the node knows about each
//! container. Pure: no I/O, so the phase and condition rules are unit-tested as tables.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the node knows about one container of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub state: State,
    /// How the previous run ended, shown as `lastState`.
    pub last_terminated: Option<Terminated>,
    pub restart_count: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: DateTime<Utc>,
    },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub container_id: String,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRecord {
            name: name.into(),
            image: image.into(),
            image_id: String::new(),
            container_id: String::new(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_terminated: None,
            restart_count: 0,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Whether it ran to successful completion: what an init container must do before
    /// the next one starts.
    pub fn completed(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    /// Whether it ended in failure and will not run again.
    fn failed(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code != 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// The policy an init container follows: it runs to success, so one that succeeded
    /// is never restarted, even under `Always`.
    pub fn for_init(self) -> Self {
        match self {
            RestartPolicy::Never => RestartPolicy::Never,
            _ => RestartPolicy::OnFailure,
        }
    }

    /// Whether a container that ended with `exit_code` is started again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// The pod phase by kubelet's rules (`getPhase`): while its init containers have not all
/// completed the pod is `Pending`, or `Failed` if one failed for good (`restartPolicy:
/// Never`); then a container waiting after it has run counts as stopped, not pending.
pub fn phase(
    policy: RestartPolicy,
    init_containers: &[ContainerRecord],
    containers: &[ContainerRecord],
) -> &'static str {
    if init_containers.iter().any(ContainerRecord::failed) && policy == RestartPolicy::Never {
        return "Failed";
    }
    if !init_containers.iter().all(ContainerRecord::completed) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } => match &c.last_terminated {
                Some(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                None => waiting += 1,
            },
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            RestartPolicy::Always => "Running",
            RestartPolicy::OnFailure if stopped != succeeded => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

/// A Kubernetes timestamp (whole seconds, as metav1.Time is serialized).
pub fn time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default())
}

pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

fn terminated(t: &Terminated) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: Some(time(t.started_at)),
            finished_at: Some(time(t.finished_at)),
            container_id: Some(t.container_id.clone()).filter(|s| !s.is_empty()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_status(c: &ContainerRecord) -> ContainerStatus {
    let state = match &c.state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        State::Terminated(t) => terminated(t),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: Some(c.container_id.clone()).filter(|s| !s.is_empty()),
        ready: c.is_running(),
        started: Some(c.is_running()),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: Some(
            c.last_terminated
                .as_ref()
                .map(terminated)
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, since: DateTime<Utc>) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        last_transition_time: Some(time(since)),
        ..Default::default()
    }
}

/// Everything needed to write a pod's status.
pub struct StatusInput<'a> {
    pub policy: RestartPolicy,
    pub init_containers: &'a [ContainerRecord],
    pub containers: &'a [ContainerRecord],
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    pub start_time: DateTime<Utc>,
    /// Conditions from the previous status, to keep their transition times stable.
    pub previous: Option<&'a PodStatus>,
    pub now: DateTime<Utc>,
}

pub fn pod_status(input: &StatusInput) -> PodStatus {
    let phase = phase(input.policy, input.init_containers, input.containers);
    let initialized = input.init_containers.iter().all(ContainerRecord::completed);
    let all_running =
        !input.containers.is_empty() && input.containers.iter().all(ContainerRecord::is_running);
    let ready_reason = (!all_running && phase != "Succeeded").then_some("ContainersNotReady");
    let done_reason = (phase == "Succeeded" || phase == "Failed").then_some("PodCompleted");
    let keep = |kind: &str, ok: bool| {
        input
            .previous
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .filter(|c| (c.status == "True") == ok)
            .and_then(|c| c.last_transition_time.as_ref().map(from_time))
            .unwrap_or(input.now)
    };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            true,
            None,
            keep("PodReadyToStartContainers", true),
        ),
        condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            keep("Initialized", initialized),
        ),
        condition(
            "Ready",
            all_running,
            done_reason.or(ready_reason),
            keep("Ready", all_running),
        ),
        condition(
            "ContainersReady",
            all_running,
            done_reason.or(ready_reason),
            keep("ContainersReady", all_running),
        ),
        condition("PodScheduled", true, None, keep("PodScheduled", true)),
    ];
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(input.host_ip.into()),
        host_ips: Some(vec![HostIP {
            ip: input.host_ip.into(),
        }]),
        pod_ip: Some(input.pod_ip.into()).filter(|s: &String| !s.is_empty()),
        pod_ips: Some(vec![PodIP {
            ip: input.pod_ip.into(),
        }])
        .filter(|_| !input.pod_ip.is_empty()),
        start_time: Some(time(input.start_time)),
        init_container_statuses: Some(
            input
                .init_containers
                .iter()
                .map(|c| ContainerStatus {
                    ready: c.completed(),
                    ..container_status(c)
                })
                .collect(),
        )
        .filter(|s: &Vec<_>| !s.is_empty()),
        container_statuses: Some(input.containers.iter().map(container_status).collect()),
        qos_class: input.previous.and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn term(code: i32) -> Terminated {
        Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: at(0),
            finished_at: at(1),
            container_id: String::new(),
        }
    }

    fn rec(state: State, last: Option<Terminated>) -> ContainerRecord {
        ContainerRecord {
            state,
            last_terminated: last,
            ..ContainerRecord::new("c", "img")
        }
    }

    fn waiting(reason: &str) -> State {
        State::Waiting {
            reason: reason.into(),
            message: None,
        }
    }

    #[test]
    fn phase_follows_kubelet_rules() {
        use RestartPolicy::*;
        let running = State::Running { started_at: at(0) };
        let cases: Vec<(RestartPolicy, Vec<ContainerRecord>, &str)> = vec![
            (
                Always,
                vec![rec(waiting("ContainerCreating"), None)],
                "Pending",
            ),
            (Always, vec![rec(waiting("ErrImagePull"), None)], "Pending"),
            (Always, vec![rec(running.clone(), None)], "Running"),
            (
                Never,
                vec![rec(State::Terminated(term(0)), None)],
                "Succeeded",
            ),
            (Never, vec![rec(State::Terminated(term(3)), None)], "Failed"),
            (
                OnFailure,
                vec![rec(State::Terminated(term(0)), None)],
                "Succeeded",
            ),
            (
                OnFailure,
                vec![rec(waiting("CrashLoopBackOff"), Some(term(3)))],
                "Running",
            ),
            (
                Always,
                vec![rec(waiting("CrashLoopBackOff"), Some(term(0)))],
                "Running",
            ),
            (
                Never,
                vec![rec(running, None), rec(State::Terminated(term(1)), None)],
                "Running",
            ),
            (
                Never,
                vec![
                    rec(State::Terminated(term(0)), None),
                    rec(State::Terminated(term(1)), None),
                ],
                "Failed",
            ),
        ];
        for (policy, containers, want) in cases {
            assert_eq!(
                phase(policy, &[], &containers),
                want,
                "{policy:?} {containers:?}"
            );
        }
    }

    #[test]
    fn init_containers_hold_the_pod_pending_or_fail_it() {
        use RestartPolicy::*;
        let done = rec(State::Terminated(term(0)), None);
        let failed = rec(State::Terminated(term(1)), None);
        let retrying = rec(waiting("CrashLoopBackOff"), Some(term(1)));
        let app = [rec(waiting("PodInitializing"), None)];
        let running = [rec(State::Running { started_at: at(2) }, None)];
        let cases: Vec<(
            RestartPolicy,
            Vec<ContainerRecord>,
            &[ContainerRecord],
            &str,
        )> = vec![
            (Never, vec![failed.clone()], &app, "Failed"),
            (OnFailure, vec![retrying.clone()], &app, "Pending"),
            (Always, vec![done.clone(), retrying], &app, "Pending"),
            (Always, vec![done.clone()], &app, "Pending"),
            (Always, vec![done.clone()], &running, "Running"),
        ];
        for (policy, inits, containers, want) in cases {
            assert_eq!(
                phase(policy, &inits, containers),
                want,
                "{policy:?} {inits:?}"
            );
        }
        let status = |inits: &[ContainerRecord]| {
            let s = pod_status(&StatusInput {
                policy: Always,
                init_containers: inits,
                containers: &app,
                host_ip: "127.0.0.1",
                pod_ip: "127.0.0.1",
                start_time: at(0),
                previous: None,
                now: at(6),
            });
            let c = s.conditions.unwrap().into_iter();
            let c = c.clone().find(|c| c.type_ == "Initialized").unwrap();
            let ready = s.init_container_statuses.unwrap()[0].ready;
            (c.status, c.reason, ready)
        };
        assert_eq!(
            status(&[failed]),
            (
                "False".into(),
                Some("ContainersNotInitialized".into()),
                false
            )
        );
        assert_eq!(status(&[done]), ("True".into(), None, true));
    }

    #[test]
    fn restart_policy_decides_restarts() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(3));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(!RestartPolicy::Never.restarts(1));
    }

    #[test]
    fn status_reports_last_state_and_readiness() {
        let c = ContainerRecord {
            restart_count: 2,
            ..rec(State::Running { started_at: at(5) }, Some(term(3)))
        };
        let s = pod_status(&StatusInput {
            policy: RestartPolicy::OnFailure,
            init_containers: &[],
            containers: &[c],
            host_ip: "127.0.0.1",
            pod_ip: "127.0.0.1",
            start_time: at(0),
            previous: None,
            now: at(6),
        });
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = &s.container_statuses.unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.restart_count, 2);
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            3
        );
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
    }
}
