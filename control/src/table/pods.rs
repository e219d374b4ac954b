//! `printPod`: READY, STATUS, RESTARTS and the wide columns, computed exactly as Kubernetes
//! does, because users read the STATUS column to understand what their pod is doing.

use super::age;
use crate::obj;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Row conditions Kubernetes attaches to finished pods (kubectl uses them to mark rows).
fn finished_conditions(phase: &str) -> Option<Value> {
    let (reason, message) = match phase {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

fn is_restartable_init_container(spec_init: &[Value], name: &str) -> bool {
    spec_init.iter().any(|c| {
        obj::str_or_empty(c, &["name"]) == name
            && obj::str_or_empty(c, &["restartPolicy"]) == "Always"
    })
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    let reason = obj::str_or_empty(t, &["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = obj::get_i64(t, &["signal"]).unwrap_or(0);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!(
            "{prefix}ExitCode:{}",
            obj::get_i64(t, &["exitCode"]).unwrap_or(0)
        )
    }
}

/// The later of `current` and the container's last termination time.
fn later_restart(current: Option<DateTime<Utc>>, status: &Value) -> Option<DateTime<Utc>> {
    let finished = obj::get_time(status, &["lastState", "terminated", "finishedAt"]);
    match (current, finished) {
        (Some(c), Some(f)) => Some(c.max(f)),
        (c, f) => c.or(f),
    }
}

fn condition_true(pod: &Value, ty: &str) -> bool {
    obj::array(pod, &["status", "conditions"]).iter().any(|c| {
        obj::str_or_empty(c, &["type"]) == ty && obj::str_or_empty(c, &["status"]) == "True"
    })
}

pub fn row(pod: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
    let spec_init = obj::array(pod, &["spec", "initContainers"]);
    let mut total = obj::array(pod, &["spec", "containers"]).len();
    total += spec_init
        .iter()
        .filter(|c| obj::str_or_empty(c, &["restartPolicy"]) == "Always")
        .count();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let phase = obj::str_or_empty(pod, &["status", "phase"]);
    let mut reason = phase.to_string();
    let status_reason = obj::str_or_empty(pod, &["status", "reason"]);
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    for c in obj::array(pod, &["status", "conditions"]) {
        if obj::str_or_empty(c, &["type"]) == "PodScheduled"
            && obj::str_or_empty(c, &["reason"]) == "SchedulingGated"
        {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut initializing = false;
    for (i, cs) in obj::array(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = obj::get_i64(cs, &["restartCount"]).unwrap_or(0);
        restarts += count;
        last_restart = later_restart(last_restart, cs);
        let name = obj::str_or_empty(cs, &["name"]);
        let sidecar = is_restartable_init_container(spec_init, name);
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later_restart(last_sidecar_restart, cs);
        }
        let terminated = obj::get(cs, &["state", "terminated"]).filter(|v| v.is_object());
        let waiting_reason = obj::get(cs, &["state", "waiting"])
            .filter(|v| v.is_object())
            .map(|w| obj::str_or_empty(w, &["reason"]));
        if terminated.is_some_and(|t| obj::get_i64(t, &["exitCode"]).unwrap_or(0) == 0) {
            continue;
        }
        if sidecar && obj::bool_or_false(cs, &["started"]) {
            if obj::bool_or_false(cs, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = terminated_reason(t, "Init:");
        } else if let Some(w) = waiting_reason.filter(|w| !w.is_empty() && *w != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in obj::array(pod, &["status", "containerStatuses"])
            .iter()
            .rev()
        {
            restarts += obj::get_i64(cs, &["restartCount"]).unwrap_or(0);
            last_restart = later_restart(last_restart, cs);
            let waiting = obj::get(cs, &["state", "waiting"]).filter(|v| v.is_object());
            let terminated = obj::get(cs, &["state", "terminated"]).filter(|v| v.is_object());
            let running = obj::get(cs, &["state", "running"]).is_some_and(Value::is_object);
            if let Some(w) = waiting.filter(|w| !obj::str_or_empty(w, &["reason"]).is_empty()) {
                reason = obj::str_or_empty(w, &["reason"]).to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if obj::bool_or_false(cs, &["ready"]) && running {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose containers completed but one still runs reads as running/not ready.
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = obj::get(pod, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!(
                "{restarts} ({} ago)",
                super::human_duration(now.signed_duration_since(t))
            )
        }
        _ => restarts.to_string(),
    };

    let none_if_empty = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let ip = obj::array(pod, &["status", "podIPs"])
        .first()
        .map(|p| obj::str_or_empty(p, &["ip"]))
        .unwrap_or_else(|| obj::str_or_empty(pod, &["status", "podIP"]));
    let gates = obj::array(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = obj::array(pod, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = obj::str_or_empty(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| obj::str_or_empty(c, &["type"]) == ty)
                    .is_some_and(|c| obj::str_or_empty(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    let cells = vec![
        json!(obj::name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, &["metadata", "creationTimestamp"], now)),
        json!(none_if_empty(ip)),
        json!(none_if_empty(obj::str_or_empty(pod, &["spec", "nodeName"]))),
        json!(none_if_empty(obj::str_or_empty(
            pod,
            &["status", "nominatedNodeName"]
        ))),
        json!(readiness_gates),
    ];
    (cells, finished_conditions(phase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 1, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": spec, "status": status})
    }

    fn one(name: &str) -> Value {
        json!({"containers": [{"name": name, "image": "x"}]})
    }

    /// (description, pod, READY, STATUS, RESTARTS)
    #[test]
    fn pod_status_table() {
        let running = json!({"running": {"startedAt": "2024-01-01T00:00:00Z"}});
        let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
            (
                "pending, no statuses",
                pod(one("a"), json!({"phase": "Pending"})),
                "0/1",
                "Pending",
                "0",
            ),
            (
                "running and ready",
                pod(
                    one("a"),
                    json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": running}]}),
                ),
                "1/1",
                "Running",
                "0",
            ),
            (
                "container creating",
                pod(
                    one("a"),
                    json!({"phase": "Pending", "containerStatuses": [{"name": "a", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                "0/1",
                "ContainerCreating",
                "0",
            ),
            (
                "crash loop with last restart time",
                pod(
                    one("a"),
                    json!({"phase": "Running", "containerStatuses": [{"name": "a", "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:55:00Z"}}}]}),
                ),
                "0/1",
                "CrashLoopBackOff",
                "4 (5m ago)",
            ),
            (
                "image pull backoff",
                pod(
                    one("a"),
                    json!({"phase": "Pending", "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
                ),
                "0/1",
                "ImagePullBackOff",
                "0",
            ),
            (
                "completed",
                pod(
                    one("a"),
                    json!({"phase": "Succeeded", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                "0/1",
                "Completed",
                "0",
            ),
            (
                "terminated by signal without reason",
                pod(
                    one("a"),
                    json!({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                ),
                "0/1",
                "Signal:9",
                "0",
            ),
            (
                "terminated with exit code without reason",
                pod(
                    one("a"),
                    json!({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 2}}}]}),
                ),
                "0/1",
                "ExitCode:2",
                "0",
            ),
            (
                "init container running",
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": running}],
                           "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                "0/1",
                "Init:0/1",
                "0",
            ),
            (
                "init container failed",
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                ),
                "0/1",
                "Init:Error",
                "0",
            ),
            (
                "init container crash looping",
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                ),
                "0/1",
                "Init:CrashLoopBackOff",
                "3",
            ),
            (
                "init exit code without reason",
                pod(
                    json!({"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 0}}}, {"name": "j", "state": {"terminated": {"exitCode": 3}}}]}),
                ),
                "0/1",
                "Init:ExitCode:3",
                "0",
            ),
            (
                "second init container pending",
                pod(
                    json!({"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 0}}}, {"name": "j", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                "0/1",
                "Init:1/2",
                "0",
            ),
            (
                "sidecar started and ready counts",
                pod(
                    json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                           "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "restartCount": 1, "state": running}],
                           "containerStatuses": [{"name": "a", "ready": true, "state": running}]}),
                ),
                "2/2",
                "Running",
                "1",
            ),
            (
                "completed container with another still running and pod not ready",
                pod(
                    json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                    json!({"phase": "Running", "containerStatuses": [
                        {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "b", "ready": true, "state": running}]}),
                ),
                "1/2",
                "NotReady",
                "0",
            ),
            (
                "terminating",
                json!({"metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z", "deletionTimestamp": "2024-01-01T00:59:00Z"},
                       "spec": one("a"), "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "state": running}]}}),
                "1/1",
                "Terminating",
                "0",
            ),
            (
                "node lost",
                json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:59:00Z"},
                       "spec": one("a"), "status": {"phase": "Running", "reason": "NodeLost"}}),
                "0/1",
                "Unknown",
                "0",
            ),
            (
                "status.reason wins (evicted)",
                pod(one("a"), json!({"phase": "Failed", "reason": "Evicted"})),
                "0/1",
                "Evicted",
                "0",
            ),
            (
                "scheduling gated",
                pod(
                    one("a"),
                    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ),
                "0/1",
                "SchedulingGated",
                "0",
            ),
        ];
        for (desc, p, ready, status, restarts) in cases {
            let (cells, _) = row(&p, now());
            assert_eq!(cells[1], json!(ready), "{desc}");
            assert_eq!(cells[2], json!(status), "{desc}");
            assert_eq!(cells[3], json!(restarts), "{desc}");
        }
    }

    #[test]
    fn pod_wide_cells_and_conditions() {
        let p = json!({"metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]},
            "status": {"phase": "Succeeded", "podIPs": [{"ip": "10.0.0.5"}], "conditions": [{"type": "x", "status": "True"}, {"type": "y", "status": "False"}]}});
        let (cells, conditions) = row(&p, now());
        assert_eq!(
            cells,
            vec![
                json!("p"),
                json!("0/1"),
                json!("Succeeded"),
                json!("0"),
                json!("60m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("1/2")
            ]
        );
        assert_eq!(
            conditions.map(|c| c[0]["reason"].clone()),
            Some(json!("Succeeded"))
        );
        let bare = json!({"metadata": {"name": "q"}, "spec": {"containers": []}});
        let (cells, conditions) = row(&bare, now());
        assert_eq!(cells[4], json!("<unknown>"));
        assert_eq!(cells[5], json!("<none>"));
        assert!(conditions.is_none());
    }
}
