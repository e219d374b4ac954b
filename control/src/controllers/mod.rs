//! Workload controllers, the node lifecycle and taint eviction controllers, and the
//! garbage collectors (owners, and pods of deleted nodes), over a small controller runtime
//! modelled on kube-runtime:
//!
//! - [`reflector`]: one watch cache per kind, filled by list + watch through the `Api` (the
//!   same interface as any client), shared by every controller;
//! - [`queue`]: a de-duplicating work queue;
//! - [`runner`]: turns cache changes into keys and calls `reconcile(key) -> Action`.
//!
//! Each controller's decision is a pure `plan(desired, observed) -> changes`, unit-tested
//! alone; its reconcile reads the caches, plans, writes, and waits for the caches to show
//! its writes (so it never decides twice on the same stale view: what Kubernetes'
//! "expectations" are for).
//!
//! Everything here runs on the raft leader only (see [`crate::leadership`]).

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod gc;
pub mod job;
pub mod node_lifecycle;
pub mod owners;
pub mod pod_gc;
pub mod pods;
pub mod queue;
pub mod reflector;
pub mod replicaset;
pub mod runner;
pub mod statefulset;
pub mod taint_eviction;
pub mod volume_binder;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use crate::api::resources::{ResourceInfo, RESOURCES};
use crate::api::{Api, ApiError};
use crate::events::EventRecorder;
use crate::obj;
use reflector::{Cache, Reflector};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0} is not a kind this server serves")]
    UnknownKind(String),
    #[error("a controller task failed: {0}")]
    Task(String),
}

/// The instant the controllers' plan tests decide at: 2024-01-01T00:01:00Z.
#[cfg(test)]
pub(crate) fn test_now() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 1, 0)
        .single()
        .unwrap_or_default()
}

/// A namespaced object's name: what work queues hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Key {
        Key {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of(o: &Value) -> Key {
        Key::new(obj::namespace(o), obj::name(o))
    }
}

/// The watch caches, one per kind.
pub struct Caches {
    pub pods: Cache,
    pub replicasets: Cache,
    pub deployments: Cache,
    pub statefulsets: Cache,
    /// ControllerRevisions, the StatefulSets' template history.
    pub revisions: Cache,
    pub jobs: Cache,
    pub cronjobs: Cache,
    pub daemonsets: Cache,
    pub nodes: Cache,
    /// Leases, where nodes heartbeat.
    pub leases: Cache,
    /// PersistentVolumeClaims, which StatefulSets create and the volume binder binds.
    pub claims: Cache,
    pub volumes: Cache,
    pub classes: Cache,
    /// Every cached kind, for the garbage collector.
    pub all: Vec<Cache>,
}

impl Caches {
    fn new(all: Vec<Cache>) -> Result<Caches, ControllerError> {
        let find = |kind: &str| {
            all.iter()
                .find(|c| c.resource().kind == kind)
                .cloned()
                .ok_or_else(|| ControllerError::UnknownKind(kind.into()))
        };
        Ok(Caches {
            pods: find("Pod")?,
            replicasets: find("ReplicaSet")?,
            deployments: find("Deployment")?,
            statefulsets: find("StatefulSet")?,
            revisions: find("ControllerRevision")?,
            jobs: find("Job")?,
            cronjobs: find("CronJob")?,
            daemonsets: find("DaemonSet")?,
            nodes: find("Node")?,
            leases: find("Lease")?,
            claims: find("PersistentVolumeClaim")?,
            volumes: find("PersistentVolume")?,
            classes: find("StorageClass")?,
            all,
        })
    }

    /// The cache of `o`'s kind.
    pub fn cache_of(&self, o: &Value) -> Result<&Cache, ControllerError> {
        let (api_version, kind) = (
            obj::str_or_empty(o, &["apiVersion"]),
            obj::str_or_empty(o, &["kind"]),
        );
        self.all
            .iter()
            .find(|c| c.resource().api_version() == api_version && c.resource().kind == kind)
            .ok_or_else(|| ControllerError::UnknownKind(format!("{api_version}/{kind}")))
    }

    pub fn resource_of(&self, o: &Value) -> Result<&'static ResourceInfo, ControllerError> {
        self.cache_of(o).map(Cache::resource)
    }
}

/// What a controller's reconciles work with.
pub struct Context {
    pub api: Api,
    pub caches: Arc<Caches>,
    /// Events on behalf of the controller (`kubectl describe` shows them).
    pub events: EventRecorder,
}

impl Context {
    pub fn new(api: Api, caches: Arc<Caches>, component: &str) -> Context {
        let events = EventRecorder::new(api.clone(), component, None);
        Context {
            api,
            caches,
            events,
        }
    }
}

/// The kinds the caches hold: all served kinds but Events, which carry no owner references
/// (Kubernetes expires them by age) and are by far the most written.
fn cached_kinds() -> impl Iterator<Item = &'static ResourceInfo> {
    RESOURCES.iter().filter(|r| r.kind != "Event")
}

/// The controllers' settings (kube-controller-manager's flags).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a node may stay silent before it is Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_monitor_grace_period: node_lifecycle::DEFAULT_GRACE_PERIOD,
        }
    }
}

/// Runs the caches, the workload and node controllers and the garbage collectors
/// until one of them fails, or until dropped (when this member stops leading).
pub async fn run(api: Api, settings: Settings) -> Result<(), ControllerError> {
    let mut tasks = JoinSet::new();
    let mut caches = Vec::new();
    for res in cached_kinds() {
        let (reflector, cache) = Reflector::new(api.clone(), res);
        tasks.spawn(reflector.run());
        caches.push(cache);
    }
    let caches = Arc::new(Caches::new(caches)?);
    tasks.spawn(replicaset::run(api.clone(), caches.clone()));
    tasks.spawn(deployment::run(api.clone(), caches.clone()));
    tasks.spawn(statefulset::run(api.clone(), caches.clone()));
    tasks.spawn(job::run(api.clone(), caches.clone()));
    tasks.spawn(cronjob::run(api.clone(), caches.clone()));
    tasks.spawn(daemonset::run(api.clone(), caches.clone()));
    tasks.spawn(volume_binder::run(api.clone(), caches.clone()));
    tasks.spawn(node_lifecycle::run(
        api.clone(),
        caches.clone(),
        settings.node_monitor_grace_period,
    ));
    tasks.spawn(taint_eviction::run(api.clone(), caches.clone()));
    tasks.spawn(pod_gc::run(api.clone(), caches.clone()));
    tasks.spawn(gc::run(api, caches));
    // The first to end ends them all (dropping the set aborts the rest).
    match tasks.join_next().await {
        Some(Ok(outcome)) => outcome,
        Some(Err(e)) => Err(ControllerError::Task(e.to_string())),
        None => Ok(()),
    }
}
