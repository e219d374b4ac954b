//! The scheduler: binds each unbound pod to a Ready, schedulable node. It watches pods like
//! any client and binds through the `binding` subresource path of the API.
//!
//! This first version places pods on the Ready node with the fewest pods; the filters and
//! scores of kube-scheduler come with the controllers issue.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use serde_json::json;

use crate::api::objects::{name_of, now, ListOptions, Part};
use crate::api::{resources, Api, ApiError};
use crate::events::{EventRecorder, EventType};
use crate::persistent_volumes as pv;
use crate::selectors::FieldSelector;

/// How often pods that fit nowhere are tried again (nodes may have come up meanwhile).
const RETRY: Duration = Duration::from_secs(1);

/// What the volume checks of one pod read.
#[derive(Default)]
struct Storage {
    claims: Vec<Value>,
    volumes: Vec<Value>,
    classes: Vec<Value>,
}

pub struct Scheduler {
    api: Api,
    events: EventRecorder,
}

fn is_ready(node: &Value) -> bool {
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready && node["spec"]["unschedulable"].as_bool() != Some(true)
}

/// The node for a pod, given the nodes and how many pods each already runs.
pub fn choose(nodes: &[Value], pods_on: impl Fn(&str) -> usize) -> Option<&str> {
    nodes
        .iter()
        .filter(|n| is_ready(n))
        .map(name_of)
        .min_by_key(|n| (pods_on(n), n.to_string()))
}

impl Scheduler {
    pub fn new(api: Api) -> Self {
        let events = EventRecorder::new(api.clone(), "default-scheduler", None);
        Scheduler { api, events }
    }

    /// Runs until the store closes.
    pub async fn run(self) -> Result<(), ApiError> {
        let pods = resources::find("", "v1", "pods")
            .ok_or_else(|| ApiError::Internal("pods unknown".into()))?;
        let unbound = FieldSelector::parse("spec.nodeName=")
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        loop {
            let opts = ListOptions {
                field_selector: Some(unbound.clone()),
                ..Default::default()
            };
            let mut watch = self.api.watch(pods, None, opts)?;
            let mut retry = tokio::time::interval(RETRY);
            loop {
                tokio::select! {
                    event = watch.next() => match event {
                        Some(e) if e.kind == "ADDED" || e.kind == "MODIFIED" => self.schedule(&e.object).await,
                        Some(e) if e.kind == "ERROR" => break,
                        Some(_) => {}
                        None => return Ok(()),
                    },
                    _ = retry.tick() => self.retry_pending().await?,
                }
            }
        }
    }

    async fn retry_pending(&self) -> Result<(), ApiError> {
        let pods = resources::find("", "v1", "pods")
            .ok_or_else(|| ApiError::Internal("pods unknown".into()))?;
        let opts = ListOptions {
            field_selector: Some(
                FieldSelector::parse("spec.nodeName=")
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            ),
            ..Default::default()
        };
        for pod in self.api.list(pods, None, &opts)?.0 {
            self.schedule(&pod).await;
        }
        Ok(())
    }

    async fn schedule(&self, pod: &Value) {
        if pod["metadata"].get("deletionTimestamp").is_some()
            || pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        {
            return;
        }
        let placing = std::time::Instant::now();
        match self.place(pod).await {
            Ok(Some(node)) => {
                // Stage timing of the pod start path (see BENCHMARKS.md).
                let took = placing.elapsed();
                tracing::debug!(pod = name_of(pod), %node, ?took, "bound");
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
                let msg = format!("Successfully assigned {ns}/{} to {node}", name_of(pod));
                self.events
                    .record(pod, EventType::Normal, "Scheduled", &msg)
                    .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(pod = name_of(pod), error = %e, "scheduling failed"),
        }
    }

    /// Binds the pod; `Ok(None)` when it fits nowhere yet (recorded as FailedScheduling) or
    /// someone else bound it first.
    async fn place(&self, pod: &Value) -> Result<Option<String>, ApiError> {
        let nodes_res = resources::find("", "v1", "nodes")
            .ok_or_else(|| ApiError::Internal("nodes unknown".into()))?;
        let pods_res = resources::find("", "v1", "pods")
            .ok_or_else(|| ApiError::Internal("pods unknown".into()))?;
        let (nodes, _) = self.api.list(nodes_res, None, &ListOptions::default())?;
        let uses_claims = pv::pod_claims(pod).next().is_some();
        // Counting pods per node means decoding every pod in the store, once per pod
        // scheduled; with a single Ready node there is nothing to compare, so skip it.
        let all_pods = if uses_claims || nodes.iter().filter(|n| is_ready(n)).count() > 1 {
            self.api.list(pods_res, None, &ListOptions::default())?.0
        } else {
            Vec::new()
        };
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let storage = if uses_claims {
            self.storage(ns)?
        } else {
            Default::default()
        };
        let view = pv::VolumeView {
            claims: &storage.claims,
            volumes: &storage.volumes,
            classes: &storage.classes,
            pods: &all_pods,
        };
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let nodes_total = nodes.len();
        let nodes: Vec<Value> = nodes
            .into_iter()
            .filter(|n| match pv::fits_node(pod, n, &view) {
                Ok(()) => true,
                Err(reason) => {
                    *reasons.entry(reason).or_default() += 1;
                    false
                }
            })
            .collect();
        let pods_on = |n: &str| {
            all_pods
                .iter()
                .filter(|p| p["spec"]["nodeName"] == n)
                .count()
        };
        let Some(node) = choose(&nodes, pods_on).map(str::to_string) else {
            if !nodes.is_empty() {
                reasons.insert(
                    "node(s) were not ready or unschedulable".into(),
                    nodes.len(),
                );
            }
            let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            let msg = format!(
                "0/{nodes_total} nodes are available: {}.",
                reasons.join(", ")
            );
            if !already_reported(pod) {
                self.mark_unschedulable(pods_res, pod, &msg).await?;
                self.events
                    .record(pod, EventType::Warning, "FailedScheduling", &msg)
                    .await;
            }
            return Ok(None);
        };
        for claim in pv::awaiting_consumer(pod, &view) {
            self.select_node(claim, &node).await?;
        }
        match self.api.bind(ns, name_of(pod), &node).await {
            Ok(_) => Ok(Some(node)),
            Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Scheduler {
    /// The claims of `ns` and the cluster's volumes and classes.
    fn storage(&self, ns: &str) -> Result<Storage, ApiError> {
        let list = |plural: &str, group: &str, ns: Option<&str>| {
            let res = resources::find(group, "v1", plural)
                .ok_or_else(|| ApiError::Internal(format!("{plural} unknown")))?;
            Ok::<_, ApiError>(self.api.list(res, ns, &ListOptions::default())?.0)
        };
        Ok(Storage {
            claims: list("persistentvolumeclaims", "", Some(ns))?,
            volumes: list("persistentvolumes", "", None)?,
            classes: list("storageclasses", "storage.k8s.io", None)?,
        })
    }

    /// Names the node of a `WaitForFirstConsumer` claim's first consumer, for the
    /// provisioner and the binder.
    async fn select_node(&self, claim: &Value, node: &str) -> Result<(), ApiError> {
        let claims = resources::find("", "v1", "persistentvolumeclaims")
            .ok_or_else(|| ApiError::Internal("persistentvolumeclaims unknown".into()))?;
        let ns = claim["metadata"]["namespace"].as_str();
        let result = self
            .api
            .update_with(claims, ns, name_of(claim), Part::Main, |current| {
                let mut c = current.clone();
                c["metadata"]["annotations"][pv::SELECTED_NODE] = json!(node);
                Ok(Some(c))
            })
            .await;
        match result {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the `PodScheduled=False` condition `kubectl describe` shows for pending pods.
    async fn mark_unschedulable(
        &self,
        pods: &'static resources::ResourceInfo,
        pod: &Value,
        msg: &str,
    ) -> Result<(), ApiError> {
        let ns = pod["metadata"]["namespace"].as_str();
        let result = self
            .api
            .update_with(pods, ns, name_of(pod), Part::Status, |current| {
                let mut p = current.clone();
                let Some(status) = p["status"].as_object_mut() else { return Ok(None) };
                let conditions = status.entry("conditions").or_insert_with(|| json!([]));
                if let Some(list) = conditions.as_array_mut() {
                    list.retain(|c| c["type"] != "PodScheduled");
                    list.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": msg, "lastProbeTime": null, "lastTransitionTime": now()}));
                }
                Ok(Some(p))
            })
            .await;
        match result {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A pod that already has an unschedulable condition is not reported again each retry.
fn already_reported(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, unschedulable: bool) -> Value {
        json!({"metadata": {"name": name}, "spec": {"unschedulable": unschedulable},
               "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn picks_least_loaded_ready_node() {
        let nodes = vec![
            node("a", true, false),
            node("b", true, false),
            node("c", false, false),
            node("d", true, true),
        ];
        assert_eq!(choose(&nodes, |n| if n == "a" { 3 } else { 1 }), Some("b"));
        assert_eq!(choose(&nodes[2..], |_| 0), None);
    }
}
