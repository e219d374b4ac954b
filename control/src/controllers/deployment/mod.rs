//! The Deployment controller (Kubernetes' `deployment_controller.go`, `rolling.go`,
//! `recreate.go`, `sync.go`, `progress.go`): one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>`; the new one scaled up and the old ones down within
//! `maxSurge`/`maxUnavailable` (RollingUpdate) or all old ones first (Recreate); revisions
//! and their history in annotations; the status and conditions `kubectl rollout status`
//! reads; a Deployment resized mid-rollout resizes its active ReplicaSets in proportion.
//!
//! The decision is `plan::plan`; `counts` holds the replica arithmetic, `status` the
//! status and conditions, `template` the pod template's identity (its hash).

mod counts;
pub mod plan;
mod status;
pub(super) mod template;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use super::owners::{self, controlled_by, controller_of, uid};
use super::reflector::Cache;
use super::replicaset::{self, is_active};
use super::runner::{self, Action, Source};
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::{DeleteOptions, Part};
use crate::api::{Api, ApiError};
use crate::events::EventType;
use crate::obj;
use crate::store::revision_of;
use counts::spec_replicas;
use plan::{annotations_mut, plan, Change};
use template::same_template;

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// Deployment annotations not copied to its ReplicaSets (`skipCopyAnnotation`).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
];

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let (api, caches) = (&ctx.api, &*ctx.caches);
    let Some(d) = caches.deployments.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let replica_sets = caches.replicasets.list(&key.namespace);
    let pods = caches.pods.list(&key.namespace);
    let plan = plan(&d, &replica_sets, &pods, Utc::now());
    let rs_res = caches.replicasets.resource();
    let ns = Some(key.namespace.as_str());
    let (mut rs_revision, mut d_revision) = (0, 0);
    let mut action = plan.action;
    for change in plan.changes {
        match change {
            Change::Owner(c) => rs_revision = rs_revision.max(c.write(api, rs_res, &d).await?),
            Change::CreateReplicaSet(rs) => match api.create(rs_res, ns, rs.clone(), false).await {
                Ok(created) => {
                    rs_revision = rs_revision.max(revision_of(&created));
                    scaling_event(ctx, &d, &created, 0).await;
                }
                Err(ApiError::AlreadyExists { .. }) => {
                    d_revision = d_revision.max(on_name_taken(api, caches, &d, &rs).await?);
                    action = Action::requeue(Duration::ZERO);
                }
                Err(e) => return Err(e.into()),
            },
            Change::UpdateReplicaSet(rs) => {
                let name = obj::name(&rs);
                let before = caches
                    .replicasets
                    .get(&key.namespace, name)
                    .map_or(0, |o| spec_replicas(&o));
                match api
                    .update(rs_res, ns, name, rs.clone(), Part::Main, false)
                    .await
                {
                    Ok(written) => {
                        rs_revision = rs_revision.max(revision_of(&written));
                        scaling_event(ctx, &d, &written, before).await;
                    }
                    // Changed meanwhile: its event brings this Deployment back.
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::DeleteReplicaSet(rs) => {
                let opts = DeleteOptions {
                    precondition_uid: Some(uid(&rs).to_string()),
                    ..Default::default()
                };
                match api.delete(rs_res, ns, obj::name(&rs), &opts).await {
                    Ok((o, _)) => rs_revision = rs_revision.max(revision_of(&o)),
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::SetRevision(revision) => {
                let res = caches.deployments.resource();
                let written = api
                    .update_with(res, ns, &key.name, Part::Main, |current| {
                        let mut next = current.clone();
                        annotations_mut(&mut next).insert(REVISION.into(), json!(revision));
                        Ok(Some(next))
                    })
                    .await;
                match written {
                    Ok(o) => d_revision = d_revision.max(revision_of(&o)),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::Status(status) => {
                d_revision =
                    d_revision.max(replicaset::write_status(api, caches, &d, status).await?)
            }
        }
    }
    caches.replicasets.caught_up(rs_revision).await;
    caches.deployments.caught_up(d_revision).await;
    Ok(action)
}

/// `ScalingReplicaSet`, as `kubectl describe deployment` shows it.
async fn scaling_event(ctx: &Context, d: &Value, rs: &Value, before: i64) {
    let after = spec_replicas(rs);
    let direction = match after.cmp(&before) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => return,
    };
    let msg = format!(
        "Scaled {direction} replica set {} from {before} to {after}",
        obj::name(rs)
    );
    ctx.events
        .record(d, EventType::Normal, "ScalingReplicaSet", &msg)
        .await;
}

/// The new ReplicaSet's name is taken. If by this Deployment's own ReplicaSet for this
/// template, the cache only lagged; otherwise it is a hash collision, and the
/// Deployment's `collisionCount` is bumped so the next hash differs.
async fn on_name_taken(
    api: &Api,
    caches: &Caches,
    d: &Value,
    rs: &Value,
) -> Result<u64, ControllerError> {
    let existing = api.get(
        caches.replicasets.resource(),
        Some(obj::namespace(d)),
        obj::name(rs),
    )?;
    let template = obj::get(d, &["spec", "template"]).unwrap_or(&Value::Null);
    let ours = controlled_by(&existing, uid(d))
        && same_template(
            obj::get(&existing, &["spec", "template"]).unwrap_or(&Value::Null),
            template,
        );
    if ours {
        return Ok(0);
    }
    let mut status = d.get("status").cloned().unwrap_or(json!({}));
    status["collisionCount"] =
        json!(obj::get_i64(d, &["status", "collisionCount"]).unwrap_or(0) + 1);
    replicaset::write_status(api, caches, d, status).await
}

/// The Deployment whose ReplicaSet controls a pod (Recreate waits for old pods to go).
fn owner_of_pod(replicasets: &Cache, pod: &Value) -> Vec<Key> {
    if is_active(pod) {
        // Only pods going away (or gone) unblock a Recreate rollout.
        return vec![];
    }
    let Some(r) = controller_of(pod).filter(|r| obj::str_or_empty(r, &["kind"]) == "ReplicaSet")
    else {
        return vec![];
    };
    replicasets
        .get(obj::namespace(pod), obj::str_or_empty(r, &["name"]))
        .and_then(|rs| {
            controller_of(&rs)
                .filter(|r| r["kind"] == "Deployment")
                .map(|r| Key::new(obj::namespace(pod), obj::str_or_empty(r, &["name"])))
        })
        .into_iter()
        .collect()
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let replicasets = caches.replicasets.clone();
    let mut sources = owners::sources(&caches.deployments, &caches.replicasets);
    sources.push(Source {
        cache: caches.pods.clone(),
        mapper: Arc::new(move |pod: &Value| owner_of_pod(&replicasets, pod)),
    });
    let ctx = Context::new(api, caches, "deployment-controller");
    runner::run("deployment", sources, |key| reconcile(&ctx, key)).await
}
