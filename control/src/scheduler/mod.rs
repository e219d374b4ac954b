//! The scheduler, shaped like kube-scheduler: a [`snapshot`] of nodes and the pods on them
//! kept from watch caches, a [`queue`] of pods to place, a scheduling [`cycle`] that is a
//! pure function of the pod and the snapshot (the [`plugins`]' filters, then their scores),
//! and binding through the `binding` path of the API done asynchronously, many binds in
//! flight, the pod counting on its node ("assumed") from the moment its bind is issued.
//!
//! A pod that fits nowhere gets `PodScheduled=False` (reason `Unschedulable`) and a
//! `FailedScheduling` event with Kubernetes' message, once per distinct message; it waits
//! until a node is added or changes, a pod goes or lands, or the periodic flush, and then
//! its backoff (see [`queue`]).
//!
//! Only pods for `default-scheduler` (or naming no scheduler) without scheduling gates are
//! placed. It runs on the raft leader only (see [`crate::leadership`]).

pub mod affinity_index;
pub mod cycle;
pub mod plugins;
pub mod queue;
pub mod requests;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::task::JoinSet;

use crate::api::objects::{now, Part};
use crate::api::resources::{self, ResourceInfo};
use crate::api::{Api, ApiError};
use crate::controllers::reflector::{Cache, Change, Reflector};
use crate::controllers::{ControllerError, Key};
use crate::events::{EventRecorder, EventType};
use crate::obj;
use crate::persistent_volumes as pv;
use queue::SchedulingQueue;
use snapshot::Snapshot;

const SCHEDULER_NAME: &str = "default-scheduler";
/// How often pods that fit nowhere are tried again even if nothing seemed to change
/// (kube-scheduler's flush of unschedulable pods).
const FLUSH: Duration = Duration::from_secs(10);
/// Binds in flight at once: each is a raft round trip, so throughput comes from overlap.
const BINDS_IN_FLIGHT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Cache(#[from] ControllerError),
    #[error("{0} is not a kind this server serves")]
    UnknownKind(&'static str),
    #[error("the {0} watch cache stopped")]
    CacheStopped(&'static str),
}

fn find(resource: &'static str) -> Result<&'static ResourceInfo, SchedulerError> {
    resources::find("", "v1", resource).ok_or(SchedulerError::UnknownKind(resource))
}

/// Whether this scheduler should place the pod now.
fn wants_scheduling(pod: &Value) -> bool {
    obj::str_or_empty(pod, &["spec", "nodeName"]).is_empty()
        && obj::get(pod, &["metadata", "deletionTimestamp"]).is_none()
        && matches!(
            obj::str_or_empty(pod, &["spec", "schedulerName"]),
            "" | SCHEDULER_NAME
        )
        && obj::array(pod, &["spec", "schedulingGates"]).is_empty()
        && !matches!(
            obj::str_or_empty(pod, &["status", "phase"]),
            "Succeeded" | "Failed"
        )
}

/// The message of the pod's `PodScheduled=False` condition, if it has one.
fn reported(pod: &Value) -> Option<&str> {
    obj::array(pod, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        .and_then(|c| obj::get_str(c, &["message"]))
}

pub struct Scheduler {
    api: Api,
    events: EventRecorder,
}

/// The storage objects the volume checks of pods with claims read.
struct StorageCaches {
    claims: Cache,
    volumes: Cache,
    classes: Cache,
}

/// What the scheduling loop works on.
struct State {
    pods: Cache,
    nodes: Cache,
    storage: StorageCaches,
    snapshot: Snapshot,
    queue: SchedulingQueue,
    /// The last message reported per unschedulable pod, so it is not written again.
    reported: HashMap<Key, String>,
    binds: JoinSet<(Key, Result<(), ApiError>)>,
    reports: JoinSet<()>,
}

impl State {
    fn resync(&mut self) {
        self.snapshot = self.snapshot.rebuilt(self.nodes.all(), self.pods.all());
        self.queue.clear();
        for pod in self.pods.all() {
            if wants_scheduling(&pod) && !self.snapshot.is_assumed(&Key::of(&pod)) {
                self.queue.update(pod);
            }
        }
    }

    fn pod_changed(&mut self, change: Change) {
        match change {
            Change::Applied { old, new } => {
                let key = Key::of(&new);
                self.snapshot.update_pod(new.clone());
                if wants_scheduling(&new) {
                    if !self.snapshot.is_assumed(&key) {
                        self.queue.update(new);
                    }
                    return;
                }
                self.queue.remove(&key);
                self.reported.remove(&key);
                // A pod that lands, goes, or relabels may change affinities and room.
                let moved = old.is_none_or(|o| {
                    obj::labels(&o) != obj::labels(&new)
                        || obj::str_or_empty(&o, &["spec", "nodeName"]).is_empty()
                        || obj::get(&new, &["metadata", "deletionTimestamp"]).is_some()
                });
                if moved {
                    self.queue.unpark_all(Instant::now());
                }
            }
            Change::Deleted(gone) => {
                let key = Key::of(&gone);
                self.snapshot.remove_pod(&key);
                self.queue.remove(&key);
                self.reported.remove(&key);
                self.queue.unpark_all(Instant::now());
            }
            Change::Resynced => self.resync(),
        }
    }

    fn node_changed(&mut self, change: Change) {
        match change {
            Change::Applied { new, .. } => {
                self.snapshot.set_node(new);
                self.queue.unpark_all(Instant::now());
            }
            Change::Deleted(gone) => self.snapshot.remove_node(obj::name(&gone)),
            Change::Resynced => self.resync(),
        }
    }

    /// A bind finished: on failure the pod stops counting on the node and, if still
    /// pending, waits for the next try.
    fn bind_done(&mut self, key: Key, result: Result<(), ApiError>) {
        let Err(e) = result else { return };
        self.snapshot.forget(&key);
        match e {
            // Bound by someone else, or gone: the watch brings the truth.
            ApiError::Conflict { .. } | ApiError::NotFound { .. } => {}
            e => tracing::warn!(pod = ?key, error = %e, "bind failed"),
        }
        if let Some(pod) = self.pods.get(&key.namespace, &key.name) {
            if wants_scheduling(&pod) {
                self.queue.update(pod);
                self.queue.park(key, Instant::now());
            }
        }
    }
}

/// Reads a change that may have arrived; a subscriber that fell behind resyncs.
fn received(
    result: Result<Change, RecvError>,
    kind: &'static str,
) -> Result<Change, SchedulerError> {
    match result {
        Ok(change) => Ok(change),
        Err(RecvError::Lagged(_)) => Ok(Change::Resynced),
        Err(RecvError::Closed) => Err(SchedulerError::CacheStopped(kind)),
    }
}

fn try_received(
    rx: &mut Receiver<Change>,
    kind: &'static str,
) -> Result<Option<Change>, SchedulerError> {
    match rx.try_recv() {
        Ok(change) => Ok(Some(change)),
        Err(TryRecvError::Empty) => Ok(None),
        Err(TryRecvError::Lagged(_)) => Ok(Some(Change::Resynced)),
        Err(TryRecvError::Closed) => Err(SchedulerError::CacheStopped(kind)),
    }
}

impl Scheduler {
    pub fn new(api: Api) -> Self {
        let events = EventRecorder::new(api.clone(), SCHEDULER_NAME, None);
        Scheduler { api, events }
    }

    /// Runs until a watch cache fails, or until dropped.
    pub async fn run(self) -> Result<(), SchedulerError> {
        let (pod_reflector, pods) = Reflector::new(self.api.clone(), find("pods")?);
        let (node_reflector, nodes) = Reflector::new(self.api.clone(), find("nodes")?);
        // Subscribed before the reflectors start, so the first resync is heard.
        let mut pod_changes = pods.subscribe();
        let mut node_changes = nodes.subscribe();
        let mut reflectors = JoinSet::new();
        reflectors.spawn(pod_reflector.run());
        reflectors.spawn(node_reflector.run());
        let mut storage = Vec::new();
        for (group, plural) in [
            ("", "persistentvolumeclaims"),
            ("", "persistentvolumes"),
            ("storage.k8s.io", "storageclasses"),
        ] {
            let res =
                resources::find(group, "v1", plural).ok_or(SchedulerError::UnknownKind(plural))?;
            let (reflector, cache) = Reflector::new(self.api.clone(), res);
            reflectors.spawn(reflector.run());
            storage.push(cache);
        }
        // A claim bound or a volume added may let parked pods fit.
        let mut storage_changes: Vec<Receiver<Change>> =
            storage.iter().map(Cache::subscribe).collect();
        let [claims, volumes, classes] =
            <[Cache; 3]>::try_from(storage).map_err(|_| SchedulerError::UnknownKind("storage"))?;
        let mut state = State {
            pods,
            nodes,
            storage: StorageCaches {
                claims,
                volumes,
                classes,
            },
            snapshot: Snapshot::default(),
            queue: SchedulingQueue::default(),
            reported: HashMap::new(),
            binds: JoinSet::new(),
            reports: JoinSet::new(),
        };
        let mut flush = tokio::time::interval(FLUSH);
        loop {
            // Every change already there first, so the cycle sees the freshest snapshot.
            while let Some(c) = try_received(&mut pod_changes, "pods")? {
                state.pod_changed(c);
            }
            while let Some(c) = try_received(&mut node_changes, "nodes")? {
                state.node_changed(c);
            }
            while let Some(Ok((key, result))) = state.binds.try_join_next() {
                state.bind_done(key, result);
            }
            if state.binds.len() < BINDS_IN_FLIGHT {
                if let Some(pod) = state.queue.pop(Instant::now()) {
                    self.attempt(&mut state, pod);
                    continue;
                }
            }
            let backoff_over = async {
                match state.queue.next_due() {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = pod_changes.recv() => state.pod_changed(received(c, "pods")?),
                c = node_changes.recv() => state.node_changed(received(c, "nodes")?),
                Some(done) = state.binds.join_next(), if !state.binds.is_empty() => {
                    if let Ok((key, result)) = done {
                        state.bind_done(key, result);
                    }
                }
                Some(_) = state.reports.join_next(), if !state.reports.is_empty() => {}
                _ = backoff_over => {}
                _ = flush.tick() => state.queue.unpark_all(Instant::now()),
                c = storage_changed(&mut storage_changes) => {
                    c?;
                    state.queue.unpark_all(Instant::now());
                }
                Some(stopped) = reflectors.join_next() => {
                    stopped.map_err(|e| ControllerError::Task(e.to_string()))??;
                    return Err(SchedulerError::CacheStopped("pods or nodes"));
                }
            }
        }
    }

    /// One cycle for `pod`: bind it in the background, or report why it fits nowhere.
    fn attempt(&self, state: &mut State, pod: Arc<Value>) {
        let key = Key::of(&pod);
        let with_claims = pv::pod_claims(&pod).next().is_some();
        let storage = with_claims.then(|| {
            let s = &state.storage;
            (
                s.claims.list(&key.namespace),
                s.volumes.all(),
                s.classes.all(),
                state.pods.list(&key.namespace),
            )
        });
        let view = storage
            .as_ref()
            .map(|(claims, volumes, classes, pods)| pv::VolumeView {
                claims,
                volumes,
                classes,
                pods,
            });
        match cycle::schedule(pod.clone(), &state.snapshot, view.as_ref()) {
            Ok(node) => {
                let select = view
                    .as_ref()
                    .map(|v| pv::awaiting_consumer(&pod, v))
                    .unwrap_or_default();
                state.snapshot.assume(&pod, &node);
                state.queue.remove(&key);
                state.reported.remove(&key);
                let (api, events) = (self.api.clone(), self.events.clone());
                state.binds.spawn(bind(api, events, pod, node, select));
            }
            Err(fit) => {
                state.queue.park(key.clone(), Instant::now());
                let message = fit.to_string();
                let known = state.reported.get(&key).map(String::as_str);
                if known == Some(&message) || (known.is_none() && reported(&pod) == Some(&message))
                {
                    return;
                }
                state.reported.insert(key, message.clone());
                let (api, events) = (self.api.clone(), self.events.clone());
                state.reports.spawn(report(api, events, pod, message));
            }
        }
    }
}

/// Waits for a change of any of the storage caches.
async fn storage_changed(changes: &mut [Receiver<Change>]) -> Result<(), SchedulerError> {
    let next = changes.iter_mut().map(|rx| Box::pin(rx.recv()));
    let (result, _, _) = futures::future::select_all(next).await;
    match result {
        Ok(_) | Err(RecvError::Lagged(_)) => Ok(()),
        Err(RecvError::Closed) => Err(SchedulerError::CacheStopped("storage")),
    }
}

/// Binds the pod, after naming the node on its claims that wait for their first consumer
/// (the provisioner and the binder read it).
async fn bind(
    api: Api,
    events: EventRecorder,
    pod: Arc<Value>,
    node: String,
    select_on: Vec<String>,
) -> (Key, Result<(), ApiError>) {
    let key = Key::of(&pod);
    for claim in &select_on {
        if let Err(e) = select_node(&api, &key.namespace, claim, &node).await {
            return (key, Err(e));
        }
    }
    let result = api.bind(&key.namespace, &key.name, &node).await;
    if result.is_ok() {
        // Stage timing of the pod start path (scripts/pod-start-stages.py).
        tracing::debug!(pod = key.name.as_str(), %node, "bound");
        let msg = format!(
            "Successfully assigned {}/{} to {node}",
            key.namespace, key.name
        );
        events
            .record(&pod, EventType::Normal, "Scheduled", &msg)
            .await;
    }
    (key, result.map(|_| ()))
}

/// Writes [`pv::SELECTED_NODE`] on a claim.
async fn select_node(api: &Api, ns: &str, claim: &str, node: &str) -> Result<(), ApiError> {
    let claims = resources::find("", "v1", "persistentvolumeclaims")
        .ok_or_else(|| ApiError::Internal("persistentvolumeclaims unknown".into()))?;
    let result = api
        .update_with(claims, Some(ns), claim, Part::Main, |current| {
            let mut c = current.clone();
            c["metadata"]["annotations"][pv::SELECTED_NODE] = json!(node);
            Ok((c != *current).then_some(c))
        })
        .await;
    match result {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets the `PodScheduled=False` condition `kubectl describe` shows for pending pods and
/// records the `FailedScheduling` event.
async fn report(api: Api, events: EventRecorder, pod: Arc<Value>, message: String) {
    let Ok(pods) = find("pods") else { return };
    let result = api
        .update_with(pods, Some(obj::namespace(&pod)), obj::name(&pod), Part::Status, |current| {
            if !wants_scheduling(current) {
                return Ok(None);
            }
            let mut p = current.clone();
            let Some(status) = p["status"].as_object_mut() else { return Ok(None) };
            let conditions = status.entry("conditions").or_insert_with(|| json!([]));
            if let Some(list) = conditions.as_array_mut() {
                list.retain(|c| c["type"] != "PodScheduled");
                list.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": message, "lastProbeTime": null, "lastTransitionTime": now()}));
            }
            Ok(Some(p))
        })
        .await;
    match result {
        Ok(_) => {
            events
                .record(&pod, EventType::Warning, "FailedScheduling", &message)
                .await
        }
        Err(ApiError::NotFound { .. }) => {}
        Err(e) => {
            tracing::warn!(pod = obj::name(&pod), error = %e, "cannot mark the pod unschedulable")
        }
    }
}
