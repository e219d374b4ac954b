//! Taint-based eviction (kube-controller-manager's `taint-eviction-controller`): a pod on a
//! node with a NoExecute taint it does not tolerate is deleted at once; one tolerating it
//! for `tolerationSeconds` is deleted that long after the taint's `timeAdded` (Kubernetes
//! counts from when its in-memory queue first saw the taint; the taint's own time gives the
//! same answer and survives a change of leader); one tolerating it without a limit stays.
//!
//! The deletion is the ordinary graceful one: on an unreachable node nobody confirms that
//! the containers stopped, so the pod stays Terminating until the node comes back (and its
//! agent finishes the deletion) or the Node is deleted (then [`super::pod_gc`] removes it),
//! as in Kubernetes. Its controller does not count terminating pods, so it creates a
//! replacement at once, which the scheduler places on a node without the NoSchedule taint.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::disruption::{self, Disruption};
use super::runner::{self, Action};
use super::{Caches, Context, ControllerError, Key};
use crate::api::Api;
use crate::events::EventType;
use crate::obj;
use crate::taints::tolerates;

const TAINTED: Disruption = Disruption {
    reason: "DeletionByTaintManager",
    message: "Taint manager: deleting due to NoExecute taint",
};

/// When a pod on a tainted node is to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It tolerates every NoExecute taint of its node for good.
    Never,
    /// At this time (now or in the past: at once).
    At(DateTime<Utc>),
}

/// `processPodOnNode` and `getMinTolerationTime`: each NoExecute taint evicts after the
/// shortest `tolerationSeconds` of the tolerations matching it (a negative one is zero),
/// never when none of them has a limit, at once when none matches; the earliest wins. A
/// taint without `timeAdded` counts from `now`.
pub fn eviction(tolerations: &[Value], taints: &[Value], now: DateTime<Utc>) -> Eviction {
    let mut earliest = Eviction::Never;
    for taint in taints.iter().filter(|t| t["effect"] == "NoExecute") {
        let matching: Vec<&Value> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::At(now);
        }
        let Some(seconds) = matching
            .iter()
            .filter_map(|t| t["tolerationSeconds"].as_i64())
            .min()
        else {
            continue;
        };
        let added = obj::get_time(taint, &["timeAdded"]).unwrap_or(now);
        let at = added + chrono::Duration::seconds(seconds.max(0));
        earliest = match earliest {
            Eviction::At(t) if t <= at => earliest,
            _ => Eviction::At(at),
        };
    }
    earliest
}

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let Some(pod) = ctx.caches.pods.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let node_name = obj::str_or_empty(&pod, &["spec", "nodeName"]);
    if node_name.is_empty() || obj::get(&pod, &["metadata", "deletionTimestamp"]).is_some() {
        return Ok(Action::done());
    }
    let Some(node) = ctx.caches.nodes.get("", node_name) else {
        return Ok(Action::done());
    };
    let now = Utc::now();
    let tolerations = obj::array(&pod, &["spec", "tolerations"]);
    let at = match eviction(tolerations, obj::array(&node, &["spec", "taints"]), now) {
        Eviction::Never => return Ok(Action::done()),
        Eviction::At(at) => at,
    };
    match (at - now).to_std() {
        Ok(wait) if !wait.is_zero() => return Ok(Action::requeue(wait)),
        _ => {}
    }
    let msg = format!("Marking for deletion Pod {}/{}", key.namespace, key.name);
    ctx.events
        .record(&pod, EventType::Normal, "TaintManagerEviction", &msg)
        .await;
    disruption::delete(ctx, &pod, TAINTED, None).await?;
    Ok(Action::done())
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let sources = super::pods::with_their_nodes(&caches);
    let ctx = Context::new(api, caches, "taint-eviction-controller");
    runner::run("taint-eviction", sources, |key| reconcile(&ctx, key)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::test_now as now;
    use crate::taints::{NOT_READY, UNREACHABLE};
    use serde_json::json;

    fn at(s: &str) -> Eviction {
        Eviction::At(obj::parse_time(s).unwrap())
    }

    fn unreachable_since(added: &str) -> Value {
        json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": added})
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Value {
        let mut t = json!({"key": key, "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = seconds {
            t["tolerationSeconds"] = json!(s);
        }
        t
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once() {
        let taints = [unreachable_since("2024-01-01T00:00:59Z")];
        assert_eq!(eviction(&[], &taints, now()), Eviction::At(now()));
        let other = [toleration(NOT_READY, Some(300))];
        assert_eq!(eviction(&other, &taints, now()), Eviction::At(now()));
    }

    #[test]
    fn a_tolerated_taint_evicts_its_seconds_after_it_was_added() {
        let taints = [unreachable_since("2024-01-01T00:00:58Z")];
        let tolerations = [toleration(UNREACHABLE, Some(3))];
        assert_eq!(
            eviction(&tolerations, &taints, now()),
            at("2024-01-01T00:01:01Z")
        );
        let shortest = [
            toleration(UNREACHABLE, Some(3)),
            json!({"operator": "Exists", "tolerationSeconds": 1}),
        ];
        assert_eq!(
            eviction(&shortest, &taints, now()),
            at("2024-01-01T00:00:59Z")
        );
        let negative = [toleration(UNREACHABLE, Some(-5))];
        assert_eq!(
            eviction(&negative, &taints, now()),
            at("2024-01-01T00:00:58Z")
        );
    }

    #[test]
    fn forever_tolerating_pods_stay() {
        let taints = [unreachable_since("2024-01-01T00:00:00Z")];
        let daemon = [toleration(UNREACHABLE, None), toleration(NOT_READY, None)];
        assert_eq!(eviction(&daemon, &taints, now()), Eviction::Never);
    }

    #[test]
    fn only_no_execute_taints_evict_and_the_earliest_wins() {
        let taints = [
            json!({"key": UNREACHABLE, "effect": "NoSchedule"}),
            unreachable_since("2024-01-01T00:00:30Z"),
            json!({"key": "maintenance", "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:50Z"}),
        ];
        let tolerations = [
            toleration(UNREACHABLE, Some(60)),
            toleration("maintenance", Some(5)),
        ];
        assert_eq!(
            eviction(&tolerations, &taints, now()),
            at("2024-01-01T00:00:55Z")
        );
        assert_eq!(eviction(&[], &taints[..1], now()), Eviction::Never);
    }

    #[test]
    fn a_taint_without_time_counts_from_now() {
        let taints = [json!({"key": UNREACHABLE, "effect": "NoExecute"})];
        let tolerations = [toleration(UNREACHABLE, Some(10))];
        assert_eq!(
            eviction(&tolerations, &taints, now()),
            at("2024-01-01T00:01:10Z")
        );
    }
}
