//! The pod garbage collector's orphan pass (kube-controller-manager's `podgc`,
//! `gcOrphaned`): a pod bound to a node that no longer exists has nobody to run it or to
//! finish its deletion, so it is deleted at once (grace period 0), with the
//! `DisruptionTarget` condition saying why. This is how the pods evicted from a dead node
//! (Terminating for good) go once an operator deletes its Node.
//!
//! As in Kubernetes, the node must have been missing for a quarantine period first, and is
//! looked up in the store, not only the cache: a pod bound to a node that is just
//! registering (and not yet in the cache) is left alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::disruption::{self, Disruption};
use super::runner::{self, Action};
use super::{Caches, Context, ControllerError, Key};
use crate::api::{Api, ApiError};
use crate::obj;

/// Kubernetes' `quarantineTime`.
const QUARANTINE: Duration = Duration::from_secs(40);

const NODE_GONE: Disruption = Disruption {
    reason: "DeletionByPodGC",
    message: "PodGC: node no longer exists",
};

/// What to do about a pod whose node may be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Its node exists, or it is bound to none.
    Keep,
    /// Its node is missing; look again after this long.
    Wait(Duration),
    /// Its node has been missing for the whole quarantine.
    Delete,
}

/// The decision for a pod bound to `node` (empty: unbound), whose node has been missing
/// since `missing_since` (by this controller's clock), if it is.
pub fn decide(node: &str, missing_since: Option<Instant>, now: Instant) -> Decision {
    match missing_since {
        _ if node.is_empty() => Decision::Keep,
        None => Decision::Keep,
        Some(since) => match QUARANTINE.checked_sub(now.saturating_duration_since(since)) {
            Some(left) if !left.is_zero() => Decision::Wait(left),
            _ => Decision::Delete,
        },
    }
}

/// When this controller first saw each node missing.
#[derive(Debug, Default)]
struct Missing {
    since: HashMap<String, Instant>,
}

impl Missing {
    /// When `node` was first seen missing, `None` if it exists (per the cache).
    fn observe(&mut self, caches: &Caches, node: &str, now: Instant) -> Option<Instant> {
        if node.is_empty() || caches.nodes.get("", node).is_some() {
            self.since.remove(node);
            return None;
        }
        Some(*self.since.entry(node.to_string()).or_insert(now))
    }
}

async fn reconcile(
    ctx: &Context,
    pod: Option<Arc<Value>>,
    decision: Decision,
) -> Result<Action, ControllerError> {
    let Some(pod) = pod else {
        return Ok(Action::done());
    };
    match decision {
        Decision::Keep => Ok(Action::done()),
        Decision::Wait(left) => Ok(Action::requeue(left)),
        Decision::Delete => {
            let node = obj::str_or_empty(&pod, &["spec", "nodeName"]);
            let nodes = ctx.caches.nodes.resource();
            match ctx.api.get(nodes, None, node) {
                Err(ApiError::NotFound { .. }) => {}
                // Back (or never gone): the cache will show it.
                Ok(_) => return Ok(Action::done()),
                Err(e) => return Err(e.into()),
            }
            tracing::info!(
                pod = obj::name(&pod),
                node,
                "deleting a pod of a node that no longer exists"
            );
            disruption::delete(ctx, &pod, NODE_GONE, Some(0)).await?;
            Ok(Action::done())
        }
    }
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let sources = super::pods::with_their_nodes(&caches);
    let ctx = Context::new(api, caches, "pod-garbage-collector");
    let mut missing = Missing::default();
    runner::run("pod-gc", sources, |key: Key| {
        let pod = ctx.caches.pods.get(&key.namespace, &key.name);
        let node = pod
            .as_deref()
            .map(|p| obj::str_or_empty(p, &["spec", "nodeName"]).to_string())
            .unwrap_or_default();
        let now = Instant::now();
        let since = missing.observe(&ctx.caches, &node, now);
        reconcile(&ctx, pod, decide(&node, since, now))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_of_a_missing_node_go_after_the_quarantine() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        assert_eq!(
            decide("", Some(t0), t0 + secs(100)),
            Decision::Keep,
            "unbound"
        );
        assert_eq!(decide("n1", None, t0), Decision::Keep, "the node exists");
        assert_eq!(
            decide("n1", Some(t0), t0 + secs(10)),
            Decision::Wait(secs(30))
        );
        assert_eq!(decide("n1", Some(t0), t0 + secs(40)), Decision::Delete);
        assert_eq!(decide("n1", Some(t0), t0 + secs(41)), Decision::Delete);
    }
}
