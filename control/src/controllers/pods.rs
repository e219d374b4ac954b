//! Creating and deleting a controller's pods, with the events Kubernetes' controllers
//! record for each (`kubectl describe` shows them on the owner).

use serde_json::Value;

use std::sync::Arc;

use super::owners;
use super::runner::Source;
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::{DeleteOptions, Part};
use crate::api::ApiError;
use crate::events::EventType;
use crate::obj;
use crate::store::revision_of;

/// Creates `pod` for `owner`: `SuccessfulCreate` or `FailedCreate`.
pub async fn create(ctx: &Context, owner: &Value, pod: Value) -> Result<Value, ApiError> {
    let res = ctx.caches.pods.resource();
    let created = ctx
        .api
        .create(res, Some(obj::namespace(owner)), pod, false)
        .await;
    let (kind, reason, msg) = match &created {
        Ok(p) => (
            EventType::Normal,
            "SuccessfulCreate",
            format!("Created pod: {}", obj::name(p)),
        ),
        Err(e) => (
            EventType::Warning,
            "FailedCreate",
            format!("Error creating: {e}"),
        ),
    };
    ctx.events.record(owner, kind, reason, &msg).await;
    created
}

/// Deletes this very pod of `owner` (not a successor of the same name), recording
/// `SuccessfulDelete`; returns the revision written, 0 if it was gone already.
pub async fn delete(ctx: &Context, owner: &Value, pod: &Value) -> Result<u64, ControllerError> {
    let opts = DeleteOptions {
        precondition_uid: Some(owners::uid(pod).to_string()),
        ..Default::default()
    };
    let (res, name) = (ctx.caches.pods.resource(), obj::name(pod));
    match ctx
        .api
        .delete(res, Some(obj::namespace(pod)), name, &opts)
        .await
    {
        Ok((o, _)) => {
            let msg = format!("Deleted pod: {name}");
            ctx.events
                .record(owner, EventType::Normal, "SuccessfulDelete", &msg)
                .await;
            Ok(revision_of(&o))
        }
        Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Rewrites this very pod's status (not a successor of the same name) as `next` makes it
/// from the current one; says whether it wrote (`next` had a change, the pod is still there).
pub async fn update_status(
    ctx: &Context,
    pod: &Value,
    next: impl Fn(&Value) -> Option<Value>,
) -> Result<bool, ApiError> {
    let res = ctx.caches.pods.resource();
    let uid = owners::uid(pod);
    // Decided by the last try (a conflict tries again on the newer pod).
    let mut wrote = false;
    let written = ctx
        .api
        .update_with(
            res,
            Some(obj::namespace(pod)),
            obj::name(pod),
            Part::Status,
            |current| {
                let status = (owners::uid(current) == uid)
                    .then(|| next(current))
                    .flatten();
                wrote = status.is_some();
                Ok(status.map(|status| {
                    let mut o = current.clone();
                    o["status"] = status;
                    o
                }))
            },
        )
        .await;
    match written {
        Ok(_) => Ok(wrote),
        Err(ApiError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The sources of a controller of pods by their node: each pod, and every pod bound to a
/// node that changes (its taints, its deletion).
pub fn with_their_nodes(caches: &Caches) -> Vec<Source<Key>> {
    let pods = caches.pods.clone();
    vec![
        Source {
            cache: caches.pods.clone(),
            mapper: Arc::new(|pod: &Value| vec![Key::of(pod)]),
        },
        Source {
            cache: caches.nodes.clone(),
            mapper: Arc::new(move |node: &Value| {
                let name = obj::name(node);
                pods.all()
                    .iter()
                    .filter(|p| obj::str_or_empty(p, &["spec", "nodeName"]) == name)
                    .map(|p| Key::of(p))
                    .collect()
            }),
        },
    ]
}
