//! The replica arithmetic of a rollout: sizes, availability, surge and unavailability.

use serde_json::Value;

use super::REVISION;
use crate::obj;
use crate::validation::int_or_percent_value;

pub(super) fn spec_replicas(o: &Value) -> i64 {
    obj::get_i64(o, &["spec", "replicas"]).unwrap_or(1)
}

pub(super) fn status_count(o: &Value, field: &str) -> i64 {
    obj::get_i64(o, &["status", field]).unwrap_or(0)
}

/// Available pods of a ReplicaSet, counted no higher than it is scaled to: a ReplicaSet
/// just scaled down still reports the pods it is about to delete.
pub(super) fn available(rs: &Value) -> i64 {
    status_count(rs, "availableReplicas").min(spec_replicas(rs))
}

pub(super) fn revision(o: &Value) -> i64 {
    obj::get_str(o, &["metadata", "annotations", REVISION])
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub(super) fn is_rolling(d: &Value) -> bool {
    obj::str_or_empty(d, &["spec", "strategy", "type"]) != "Recreate"
}

/// `GetScaledValueFromIntOrPercent`.
pub(super) fn scaled(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::String(s)) if s.ends_with('%') => {
            let pct = int_or_percent_value(&Value::String(s.clone())).unwrap_or(0);
            let x = pct * total;
            if round_up {
                (x + 99) / 100
            } else {
                x / 100
            }
        }
        Some(v) => int_or_percent_value(v).unwrap_or(0),
        None => 0,
    }
}

/// `ResolveFenceposts`: (max surge, max unavailable) in pods.
pub(super) fn fenceposts(d: &Value) -> (i64, i64) {
    let desired = spec_replicas(d);
    let ru = obj::get(d, &["spec", "strategy", "rollingUpdate"]);
    let surge = scaled(ru.and_then(|r| r.get("maxSurge")), desired, true);
    let unavailable = scaled(ru.and_then(|r| r.get("maxUnavailable")), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// `MaxUnavailable`.
pub(super) fn max_unavailable(d: &Value) -> i64 {
    let desired = spec_replicas(d);
    if !is_rolling(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}

/// `NewRSNewReplicas` for a rolling update: the new ReplicaSet grows while all pods stay
/// within `replicas + maxSurge`.
pub(super) fn new_rs_replicas(d: &Value, all: &[Value], new_rs_replicas: i64) -> i64 {
    let desired = spec_replicas(d);
    let current: i64 = all.iter().map(spec_replicas).sum();
    let max_total = desired + fenceposts(d).0;
    if current >= max_total {
        return new_rs_replicas;
    }
    new_rs_replicas + (max_total - current).min(desired - new_rs_replicas)
}
