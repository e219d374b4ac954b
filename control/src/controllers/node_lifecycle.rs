//! The node lifecycle controller (kube-controller-manager's `node-lifecycle-controller`).
//!
//! A node is alive while its heartbeats move: the `renewTime` of its Lease in
//! `kube-node-lease` and the `lastHeartbeatTime` of its Ready condition. The controller
//! notes by its own clock when it last saw either move (Kubernetes' "probe timestamp": the
//! node's clock is not trusted, and a newly elected leader starts counting afresh rather
//! than condemning every node at once). A node silent for longer than the grace period
//! (`--node-monitor-grace-period`) gets its conditions set to Unknown (`NodeStatusUnknown`)
//! and its pods marked not ready.
//!
//! The Ready condition then becomes taints: Unknown gives `node.kubernetes.io/unreachable`,
//! False gives `node.kubernetes.io/not-ready`, each as NoSchedule (the scheduler keeps new
//! pods away) and NoExecute (the taint eviction controller deletes the pods that do not
//! tolerate it, see [`super::taint_eviction`]); True removes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::pods;
use super::runner::{self, Action, Source};
use super::{Caches, Context, ControllerError};
use crate::api::objects::Part;
use crate::api::Api;
use crate::bootstrap::NODE_LEASE_NAMESPACE;
use crate::events::EventType;
use crate::obj;
use crate::taints::{NOT_READY, UNREACHABLE};

/// kube-controller-manager's default `--node-monitor-grace-period`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(40);

/// How often an unreachable node is looked at again (`--node-monitor-period`), so pods
/// that reach it meanwhile are marked not ready too.
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// The node conditions the kubelet posts and this controller turns Unknown.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The latest heartbeats of a node, as written by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    lease_renewed: String,
    ready_heartbeat: String,
}

impl Heartbeat {
    pub fn of(node: &Value, lease: Option<&Value>) -> Heartbeat {
        Heartbeat {
            lease_renewed: lease
                .map(|l| obj::str_or_empty(l, &["spec", "renewTime"]).to_string())
                .unwrap_or_default(),
            ready_heartbeat: ready_condition(node)
                .map(|c| obj::str_or_empty(c, &["lastHeartbeatTime"]).to_string())
                .unwrap_or_default(),
        }
    }
}

/// When this controller last saw each node's heartbeats move, by its own clock.
#[derive(Debug, Default)]
pub struct Probes {
    seen: HashMap<String, (Heartbeat, Instant)>,
}

impl Probes {
    /// How long `node` has been silent at `now`: zero when `beat` differs from the last
    /// heartbeat seen (or none was seen yet).
    pub fn silence(&mut self, node: &str, beat: Heartbeat, now: Instant) -> Duration {
        match self.seen.get(node) {
            Some((last, at)) if *last == beat => now.saturating_duration_since(*at),
            _ => {
                self.seen.insert(node.to_string(), (beat, now));
                Duration::ZERO
            }
        }
    }

    pub fn forget(&mut self, node: &str) {
        self.seen.remove(node);
    }
}

/// What to change on a node.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// The node's new conditions, when they change.
    pub conditions: Option<Vec<Value>>,
    /// The node's new taints, when they change.
    pub taints: Option<Vec<Value>>,
    /// The node is unreachable: its pods are marked not ready.
    pub pods_not_ready: bool,
    /// When to look again if nothing changes before.
    pub recheck: Duration,
}

fn ready_condition(node: &Value) -> Option<&Value> {
    obj::array(node, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == "Ready")
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `tryUpdateNodeHealth` for a node silent past the grace period: each kubelet condition
/// becomes Unknown (one never posted is added as such), keeping its last heartbeat.
/// `None` when they are all Unknown already.
fn unknown_conditions(node: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    let mut conditions = obj::array(node, &["status", "conditions"]).to_vec();
    let mut changed = false;
    for kind in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c["type"] == kind) {
            Some(c) if c["status"] == "Unknown" => {}
            Some(c) => {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(time(now));
                changed = true;
            }
            None => {
                conditions.push(json!({
                    "type": kind,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": obj::str_or_empty(node, &["metadata", "creationTimestamp"]),
                    "lastTransitionTime": time(now),
                }));
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn is_lifecycle_taint(taint: &Value) -> bool {
    let key = obj::str_or_empty(taint, &["key"]);
    let effect = obj::str_or_empty(taint, &["effect"]);
    (key == NOT_READY || key == UNREACHABLE) && (effect == "NoSchedule" || effect == "NoExecute")
}

/// The node's taints with the lifecycle taints that `ready` (the Ready condition's status)
/// calls for, and without those it does not. NoExecute taints carry the time they were
/// added, from which tolerations count; taints kept keep theirs. `None` when unchanged.
fn lifecycle_taints(node: &Value, ready: &str, now: DateTime<Utc>) -> Option<Vec<Value>> {
    let key = match ready {
        "False" => Some(NOT_READY),
        "Unknown" => Some(UNREACHABLE),
        _ => None,
    };
    let wanted = |t: &Value| key.is_some_and(|k| obj::str_or_empty(t, &["key"]) == k);
    let current = obj::array(node, &["spec", "taints"]);
    let mut taints: Vec<Value> = current
        .iter()
        .filter(|t| !is_lifecycle_taint(t) || wanted(t))
        .cloned()
        .collect();
    for effect in key.map_or(&[][..], |_| &["NoSchedule", "NoExecute"][..]) {
        let present = taints
            .iter()
            .any(|t| wanted(t) && obj::str_or_empty(t, &["effect"]) == *effect);
        if !present {
            let mut taint = json!({"key": key, "effect": effect});
            if *effect == "NoExecute" {
                taint["timeAdded"] = json!(time(now));
            }
            taints.push(taint);
        }
    }
    (taints != current).then_some(taints)
}

/// The decision for `node`, silent for `silence`.
pub fn plan(node: &Value, silence: Duration, grace: Duration, now: DateTime<Utc>) -> Plan {
    let stale = silence > grace;
    let conditions = stale.then(|| unknown_conditions(node, now)).flatten();
    let ready = match &conditions {
        Some(_) => "Unknown",
        None => ready_condition(node)
            .map(|c| obj::str_or_empty(c, &["status"]))
            .unwrap_or_default(),
    };
    Plan {
        taints: lifecycle_taints(node, ready, now),
        pods_not_ready: ready == "Unknown",
        recheck: match stale {
            true => MONITOR_PERIOD,
            // Just past the moment the node would turn stale.
            false => grace - silence + Duration::from_millis(100),
        },
        conditions,
    }
}

/// A pod's status with its Ready condition False (`MarkPodsNotReady`); `None` when it has
/// no Ready condition or it is False already.
pub fn not_ready_status(pod: &Value, now: DateTime<Utc>) -> Option<Value> {
    let mut status = pod.get("status")?.clone();
    let ready = status
        .get_mut("conditions")?
        .as_array_mut()?
        .iter_mut()
        .find(|c| c["type"] == "Ready" && c["status"] != "False")?;
    ready["status"] = json!("False");
    ready["lastTransitionTime"] = json!(time(now));
    Some(status)
}

struct Controller {
    ctx: Context,
    grace: Duration,
}

impl Controller {
    /// How long `name` has been silent, from the caches (`None`: the node is gone).
    fn observe(&self, probes: &mut Probes, name: &str) -> Option<(Arc<Value>, Duration)> {
        let Some(node) = self.ctx.caches.nodes.get("", name) else {
            probes.forget(name);
            return None;
        };
        let lease = self.ctx.caches.leases.get(NODE_LEASE_NAMESPACE, name);
        let silence = probes.silence(name, Heartbeat::of(&node, lease.as_deref()), Instant::now());
        Some((node, silence))
    }

    async fn reconcile(
        &self,
        observed: Option<(Arc<Value>, Duration)>,
    ) -> Result<Action, ControllerError> {
        let Some((node, silence)) = observed else {
            return Ok(Action::done());
        };
        let plan = plan(&node, silence, self.grace, Utc::now());
        let nodes = self.ctx.caches.nodes.resource();
        let name = obj::name(&node);
        if let Some(conditions) = plan.conditions {
            // Only over the status this decision saw: a heartbeat that arrived meanwhile
            // wins (the next reconcile sees it).
            let seen = ready_condition(&node).cloned();
            let written = self
                .ctx
                .api
                .update_with(nodes, None, name, Part::Status, |current| {
                    if ready_condition(current) != seen.as_ref() {
                        return Ok(None);
                    }
                    let mut next = current.clone();
                    next["status"]["conditions"] = json!(conditions);
                    Ok(Some(next))
                })
                .await?;
            if ready_condition(&written).is_some_and(|c| c["status"] == "Unknown") {
                let msg = format!("Node {name} status is now: NodeNotReady");
                self.ctx
                    .events
                    .record(&written, EventType::Normal, "NodeNotReady", &msg)
                    .await;
            }
            // The taints follow from the written status, on the reconcile its change brings.
            return Ok(Action::done());
        }
        if let Some(taints) = plan.taints {
            let seen = node["spec"]["taints"].clone();
            self.ctx
                .api
                .update_with(nodes, None, name, Part::Main, |current| {
                    if current["spec"]["taints"] != seen {
                        return Ok(None);
                    }
                    let mut next = current.clone();
                    next["spec"]["taints"] = json!(taints);
                    Ok(Some(next))
                })
                .await?;
        }
        if plan.pods_not_ready {
            self.mark_pods_not_ready(name).await?;
        }
        Ok(Action::requeue(plan.recheck))
    }

    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), ControllerError> {
        for pod in self.ctx.caches.pods.all() {
            if obj::str_or_empty(&pod, &["spec", "nodeName"]) != node
                || not_ready_status(&pod, Utc::now()).is_none()
            {
                continue;
            }
            if pods::update_status(&self.ctx, &pod, |p| not_ready_status(p, Utc::now())).await? {
                self.ctx
                    .events
                    .record(
                        &pod,
                        EventType::Warning,
                        "NodeNotReady",
                        "Node is not ready",
                    )
                    .await;
            }
        }
        Ok(())
    }
}

pub async fn run(api: Api, caches: Arc<Caches>, grace: Duration) -> Result<(), ControllerError> {
    let by_name = |o: &Value| vec![obj::name(o).to_string()];
    let sources = vec![
        Source {
            cache: caches.nodes.clone(),
            mapper: Arc::new(by_name),
        },
        Source {
            cache: caches.leases.clone(),
            mapper: Arc::new(move |lease: &Value| match obj::namespace(lease) {
                NODE_LEASE_NAMESPACE => by_name(lease),
                _ => Vec::new(),
            }),
        },
    ];
    let controller = Controller {
        ctx: Context::new(api, caches, "node-controller"),
        grace,
    };
    let mut probes = Probes::default();
    runner::run("node-lifecycle", sources, |name: String| {
        let observed = controller.observe(&mut probes, &name);
        controller.reconcile(observed)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::test_now as now;

    const GRACE: Duration = Duration::from_secs(40);

    /// A node whose kubelet posted Ready = `ready` (and pressure conditions False, or
    /// Unknown with it), or nothing.
    fn node(ready: Option<&str>, taints: Value) -> Value {
        let condition = |kind: &str, status: &str| {
            json!({"type": kind, "status": status, "reason": "Kubelet",
                "lastHeartbeatTime": "2024-01-01T00:00:10Z", "lastTransitionTime": "2024-01-01T00:00:00Z"})
        };
        let conditions: Vec<Value> = ready
            .map(|s| {
                let pressure = if s == "Unknown" { "Unknown" } else { "False" };
                vec![
                    condition("MemoryPressure", pressure),
                    condition("DiskPressure", pressure),
                    condition("PIDPressure", pressure),
                    condition("Ready", s),
                ]
            })
            .unwrap_or_default();
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"taints": taints}, "status": {"conditions": conditions}})
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn keys(taints: &[Value]) -> Vec<String> {
        taints
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    obj::str_or_empty(t, &["key"]),
                    obj::str_or_empty(t, &["effect"])
                )
            })
            .collect()
    }

    #[test]
    fn a_node_within_the_grace_period_is_left_alone_until_it_ends() {
        let p = plan(&node(Some("True"), json!([])), secs(30), GRACE, now());
        assert_eq!(
            p,
            Plan {
                conditions: None,
                taints: None,
                pods_not_ready: false,
                recheck: secs(10) + Duration::from_millis(100),
            }
        );
    }

    #[test]
    fn a_silent_node_turns_unknown_like_kubernetes() {
        let p = plan(&node(Some("True"), json!([])), secs(41), GRACE, now());
        let conditions = p.conditions.unwrap();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        assert_eq!(ready["lastHeartbeatTime"], "2024-01-01T00:00:10Z");
        assert_eq!(ready["lastTransitionTime"], "2024-01-01T00:01:00Z");
        assert_eq!(conditions.len(), 4);
        assert!(conditions.iter().all(|c| c["status"] == "Unknown"));
        assert!(p.pods_not_ready);
        assert_eq!(
            keys(&p.taints.unwrap()),
            [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
    }

    #[test]
    fn an_unknown_node_keeps_its_taints_and_their_time() {
        let taints = json!([
            {"key": "dedicated", "value": "x", "effect": "NoSchedule"},
            {"key": UNREACHABLE, "effect": "NoSchedule"},
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:50Z"}
        ]);
        let n = node(Some("Unknown"), taints);
        let p = plan(&n, secs(100), GRACE, now());
        assert_eq!(p.conditions, None, "Unknown already");
        assert_eq!(p.taints, None, "the taints are there, with their time");
        assert!(p.pods_not_ready);
        assert_eq!(p.recheck, MONITOR_PERIOD);
    }

    #[test]
    fn a_node_that_says_not_ready_gets_the_not_ready_taints() {
        let n = node(
            Some("False"),
            json!([{"key": UNREACHABLE, "effect": "NoExecute"}]),
        );
        let taints = plan(&n, secs(0), GRACE, now()).taints.unwrap();
        assert_eq!(
            keys(&taints),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        assert_eq!(taints[1]["timeAdded"], "2024-01-01T00:01:00Z");
        assert!(taints[0].get("timeAdded").is_none());
        assert!(!plan(&n, secs(0), GRACE, now()).pods_not_ready);
    }

    #[test]
    fn a_node_back_to_ready_loses_only_the_lifecycle_taints() {
        let taints = json!([
            {"key": UNREACHABLE, "effect": "NoSchedule"},
            {"key": "dedicated", "effect": "NoExecute"},
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:50Z"}
        ]);
        let p = plan(&node(Some("True"), taints), secs(0), GRACE, now());
        assert_eq!(keys(&p.taints.unwrap()), ["dedicated:NoExecute"]);
        assert!(!p.pods_not_ready);
    }

    #[test]
    fn a_node_that_never_posted_status_is_unknown_after_the_grace_period() {
        let young = plan(&node(None, json!([])), secs(5), GRACE, now());
        assert_eq!((young.conditions, young.taints), (None, None));
        let old = plan(&node(None, json!([])), secs(50), GRACE, now());
        let conditions = old.conditions.unwrap();
        assert_eq!(conditions.len(), 4);
        assert_eq!(conditions[0]["type"], "Ready");
        assert_eq!(conditions[0]["reason"], "NodeStatusNeverUpdated");
        assert_eq!(
            conditions[0]["message"],
            "Kubelet never posted node status."
        );
        assert_eq!(conditions[0]["lastHeartbeatTime"], "2024-01-01T00:00:00Z");
    }

    #[test]
    fn silence_counts_from_the_last_heartbeat_that_moved() {
        let mut probes = Probes::default();
        let t0 = Instant::now();
        let lease = |renewed: &str| json!({"spec": {"renewTime": renewed}});
        let n = node(Some("True"), json!([]));
        let beat = |l: &Value| Heartbeat::of(&n, Some(l));
        let first = lease("2024-01-01T00:00:00.000000Z");
        assert_eq!(probes.silence("n1", beat(&first), t0), Duration::ZERO);
        assert_eq!(probes.silence("n1", beat(&first), t0 + secs(7)), secs(7));
        let renewed = lease("2024-01-01T00:00:10.000000Z");
        assert_eq!(
            probes.silence("n1", beat(&renewed), t0 + secs(9)),
            Duration::ZERO
        );
        assert_eq!(probes.silence("n1", beat(&renewed), t0 + secs(12)), secs(3));
        probes.forget("n1");
        assert_eq!(
            probes.silence("n1", beat(&renewed), t0 + secs(20)),
            Duration::ZERO
        );
    }

    #[test]
    fn pods_of_an_unreachable_node_lose_readiness_once() {
        let pod = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
        ]}});
        let status = not_ready_status(&pod, now()).unwrap();
        assert_eq!(status["conditions"][1]["status"], "False");
        assert_eq!(
            status["conditions"][1]["lastTransitionTime"],
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(status["conditions"][0]["status"], "True");
        let marked = json!({"status": status});
        assert_eq!(not_ready_status(&marked, now()), None);
        assert_eq!(
            not_ready_status(&json!({"status": {"phase": "Pending"}}), now()),
            None
        );
    }
}
