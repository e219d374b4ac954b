//! The Deployment's status and conditions (`calculateStatus`, `syncRolloutStatus`).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::counts::{max_unavailable, spec_replicas, status_count};
use super::plan::Sets;
use crate::controllers::replicaset::REPLICA_FAILURE;
use crate::controllers::runner::Action;
use crate::obj;

/// The Deployment's conditions being worked on (`SetDeploymentCondition` semantics).
pub(super) struct Conditions {
    pub(super) list: Vec<Value>,
    now: String,
}

impl Conditions {
    pub(super) fn of(d: &Value, now: DateTime<Utc>) -> Conditions {
        Conditions {
            list: obj::array(d, &["status", "conditions"]).to_vec(),
            now: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }

    pub(super) fn get(&self, kind: &str) -> Option<&Value> {
        self.list.iter().find(|c| c["type"] == kind)
    }

    /// A condition with the same status and reason is left as it is; one with the same
    /// status keeps its lastTransitionTime.
    pub(super) fn set(&mut self, kind: &str, status: &str, reason: &str, message: &str) {
        let mut transition = self.now.clone();
        if let Some(current) = self.get(kind) {
            if current["status"] == status && current["reason"] == reason {
                return;
            }
            if current["status"] == status {
                transition = obj::str_or_empty(current, &["lastTransitionTime"]).to_string();
            }
        }
        self.replace(kind, status, reason, message, transition);
    }

    pub(super) fn replace(
        &mut self,
        kind: &str,
        status: &str,
        reason: &str,
        message: &str,
        transition: String,
    ) {
        let condition = json!({"type": kind, "status": status, "lastUpdateTime": self.now,
            "lastTransitionTime": transition, "reason": reason, "message": message});
        match self.list.iter_mut().find(|c| c["type"] == kind) {
            Some(c) => *c = condition,
            None => self.list.push(condition),
        }
    }

    /// `checkPausedConditions`.
    pub(super) fn paused(&mut self, paused: bool) {
        let reason = self.get("Progressing").map(|c| c["reason"].clone());
        let was_paused = reason.as_ref().is_some_and(|r| r == "DeploymentPaused");
        if paused && !was_paused {
            self.set(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
            );
        } else if !paused && was_paused {
            self.set(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
            );
        }
    }
}

/// `calculateStatus` and `syncRolloutStatus`: the new status, and when to look again for
/// a progress deadline.
pub(super) fn status(
    d: &Value,
    sets: &Sets,
    mut conditions: Conditions,
    now: DateTime<Utc>,
) -> (Value, Action) {
    let all = sets.all();
    let sum = |field: &str| -> i64 { all.iter().map(|rs| status_count(rs, field)).sum() };
    let desired = spec_replicas(d);
    let available_pods = sum("availableReplicas");
    let total: i64 = all.iter().map(spec_replicas).sum();
    let replicas = sum("replicas");
    let updated = sets
        .new
        .as_ref()
        .map_or(0, |(rs, _)| status_count(rs, "replicas"));
    let ready = sum("readyReplicas");
    let generation = obj::get_i64(d, &["metadata", "generation"]).unwrap_or(0);
    if available_pods >= desired - max_unavailable(d) {
        conditions.set(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        );
    } else {
        conditions.set(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        );
    }
    let mut action = Action::done();
    let paused = obj::bool_or_false(d, &["spec", "paused"]);
    let deadline =
        obj::get_i64(d, &["spec", "progressDeadlineSeconds"]).filter(|s| *s < i64::from(i32::MAX));
    let rs_name = sets.new.as_ref().map(|(rs, _)| obj::name(rs).to_string());
    let subject = match &rs_name {
        Some(n) => format!("ReplicaSet {n:?}"),
        None => format!("Deployment {:?}", obj::name(d)),
    };
    let progressing = conditions.get("Progressing").cloned();
    let reason = progressing.as_ref().map(|c| c["reason"].clone());
    let complete_before = replicas == updated
        && reason
            .as_ref()
            .is_some_and(|r| r == "NewReplicaSetAvailable");
    if let (Some(deadline), false, false) = (deadline, paused, complete_before) {
        let old = |f: &str| status_count(d, f);
        let complete = updated == desired && replicas == desired && available_pods == desired;
        let progressed = updated > old("updatedReplicas")
            || replicas - updated < old("replicas") - old("updatedReplicas")
            || ready > old("readyReplicas")
            || available_pods > old("availableReplicas");
        if complete {
            conditions.set(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("{subject} has successfully progressed."),
            );
        } else if progressed {
            let transition = match &progressing {
                Some(c) if c["status"] == "True" => {
                    obj::str_or_empty(c, &["lastTransitionTime"]).to_string()
                }
                _ => conditions.now.clone(),
            };
            conditions.replace(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("{subject} is progressing."),
                transition,
            );
            action = Action::requeue(Duration::from_secs(deadline as u64));
        } else if let Some(c) = &progressing {
            let since = obj::get_time(c, &["lastUpdateTime"]).unwrap_or(now);
            let due = since + chrono::Duration::seconds(deadline);
            if c["reason"] == "ProgressDeadlineExceeded" || due < now {
                conditions.set(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("{subject} has timed out progressing."),
                );
            } else {
                action = Action::requeue(
                    (due - now).to_std().unwrap_or_default() + Duration::from_secs(1),
                );
            }
        }
    }
    // getReplicaFailures: the new ReplicaSet's failure to create pods, else an old one's.
    let failure = sets.new.iter().chain(&sets.old).find_map(|(rs, _)| {
        obj::array(rs, &["status", "conditions"])
            .iter()
            .find(|c| c["type"] == REPLICA_FAILURE)
            .cloned()
    });
    match failure {
        Some(c) => {
            let text = |k: &str| obj::str_or_empty(&c, &[k]).to_string();
            conditions.set(
                REPLICA_FAILURE,
                &text("status"),
                &text("reason"),
                &text("message"),
            );
        }
        None => conditions.list.retain(|c| c["type"] != REPLICA_FAILURE),
    }
    let mut s = Map::new();
    s.insert("observedGeneration".into(), json!(generation));
    for (k, v) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available_pods),
        ("unavailableReplicas", (total - available_pods).max(0)),
    ] {
        if v != 0 {
            s.insert(k.into(), json!(v));
        }
    }
    if let Some(c) = obj::get(d, &["status", "collisionCount"]) {
        s.insert("collisionCount".into(), c.clone());
    }
    // Timestamps alone do not make a new status (Kubernetes compares without them only
    // for conditions it did not touch; a condition touched is always newer).
    s.insert("conditions".into(), json!(conditions.list));
    (Value::Object(s), action)
}
