//! Deleting pods for the cluster's sake rather than their owner's (taint eviction, pod
//! garbage collection): as Kubernetes does, the pod first gets the `DisruptionTarget`
//! condition saying why, so its owner (a Job's pod failure policy) and the user can tell.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{owners, pods, Context, ControllerError};
use crate::api::objects::DeleteOptions;
use crate::api::ApiError;
use crate::obj;

/// Why a pod is deleted: the condition's reason and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disruption {
    pub reason: &'static str,
    pub message: &'static str,
}

/// The pod's status with a `DisruptionTarget` condition for `why` (replacing any earlier
/// one); `None` when it says so already.
pub fn disrupted_status(pod: &Value, why: Disruption, now: DateTime<Utc>) -> Option<Value> {
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    let condition = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": why.reason,
        "message": why.message,
        "lastTransitionTime": now.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    let conditions = status
        .as_object_mut()?
        .entry("conditions")
        .or_insert_with(|| json!([]))
        .as_array_mut()?;
    match conditions
        .iter_mut()
        .find(|c| c["type"] == "DisruptionTarget")
    {
        Some(c) if c["status"] == "True" && c["reason"] == why.reason => return None,
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
    Some(status)
}

/// Marks this very pod (not a successor of the same name) with `why`, then deletes it
/// with `grace_period_seconds` (`None`: the pod's own). Gone already is no error.
pub async fn delete(
    ctx: &Context,
    pod: &Value,
    why: Disruption,
    grace_period_seconds: Option<i64>,
) -> Result<(), ControllerError> {
    pods::update_status(ctx, pod, |p| disrupted_status(p, why, Utc::now())).await?;
    let opts = DeleteOptions {
        grace_period_seconds,
        precondition_uid: Some(owners::uid(pod).to_string()),
        ..Default::default()
    };
    let res = ctx.caches.pods.resource();
    match ctx
        .api
        .delete(res, Some(obj::namespace(pod)), obj::name(pod), &opts)
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::test_now as now;

    const WHY: Disruption = Disruption {
        reason: "DeletionByTaintManager",
        message: "Taint manager: deleting due to NoExecute taint",
    };

    #[test]
    fn the_condition_is_added_once() {
        let pod = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let status = disrupted_status(&pod, WHY, now()).unwrap();
        assert_eq!(
            status["conditions"][1],
            json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": "2024-01-01T00:01:00Z"})
        );
        assert_eq!(
            disrupted_status(&json!({"status": status}), WHY, now()),
            None
        );
        let bare = disrupted_status(&json!({}), WHY, now()).unwrap();
        assert_eq!(bare["conditions"][0]["type"], "DisruptionTarget");
    }
}
