//! The resource metrics API (`metrics.k8s.io/v1beta1`), served the way metrics-server serves
//! it, so that `kubectl top node` and `kubectl top pod [--containers]` work without one.
//!
//! The usage comes from the node through the [`ResourceMetrics`] seam (kubelet's resource
//! metrics in Kubernetes, which metrics-server scrapes): rates over the last window, joined
//! here with the Node and Pod objects the request selects, as metrics-server joins them with
//! its listers. What metrics-server does, and this does too:
//! - a pod that is not `Running`, or has no usage over a whole window yet, is left out of
//!   lists; asked for by name it is `NotFound` (`podmetrics.metrics.k8s.io "ns/name"`);
//! - a pod or node that does not exist is the core API's `NotFound`;
//! - items are in the API's order (namespace, then name), `creationTimestamp` is the time
//!   of the request, the labels are the object's;
//! - cpu is a quantity of cores in its canonical form (`12345n`, `5m`), memory of bytes
//!   (`1234Ki`).
//!
//! The usage comes from every member's node: [`ClusterMetrics`] holds this member's own
//! and what the other members last reported of theirs through [`NODE_USAGE`] (wkube's
//! endpoint, client certificate required). A member that does not answer is left out, like
//! a kubelet metrics-server cannot scrape.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::errors::ApiError;
use super::objects::{Api, ListOptions};
use super::resources;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// Where a member reads what another member's node measured: [`Measurements`].
pub const NODE_USAGE: &str = "/wkube/v1/resource-usage";

/// Resource usage over a window: a cpu rate and the memory working set at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time consumed per second of the window, in nanoseconds (billionths of a core).
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// When a usage was measured: the end of its window, and how long the window was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub end: DateTime<Utc>,
    pub length: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub node: String,
    pub window: Window,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodUsage {
    pub pod_uid: String,
    pub window: Window,
    /// By container name, in the order the node found them.
    pub containers: Vec<(String, Usage)>,
}

/// What the nodes this API server reaches measured (kubelet's resource metrics).
pub trait ResourceMetrics: Send + Sync + 'static {
    fn nodes(&self) -> Vec<NodeUsage>;
    fn pods(&self) -> Vec<PodUsage>;
}

/// The source of an API server that reaches no node: every list is empty.
pub struct NoMetrics;

impl ResourceMetrics for NoMetrics {
    fn nodes(&self) -> Vec<NodeUsage> {
        Vec::new()
    }

    fn pods(&self) -> Vec<PodUsage> {
        Vec::new()
    }
}

/// What one node measured, as [`NODE_USAGE`] answers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    pub nodes: Vec<NodeUsage>,
    pub pods: Vec<PodUsage>,
}

impl Measurements {
    pub fn of(source: &dyn ResourceMetrics) -> Self {
        Measurements {
            nodes: source.nodes(),
            pods: source.pods(),
        }
    }
}

/// The usage of this member's node, and what the other members reported of theirs.
pub struct ClusterMetrics {
    local: Arc<dyn ResourceMetrics>,
    others: Mutex<Measurements>,
}

impl ClusterMetrics {
    pub fn new(local: Arc<dyn ResourceMetrics>) -> Self {
        ClusterMetrics {
            local,
            others: Mutex::default(),
        }
    }

    /// What this member's own node measured.
    pub fn local(&self) -> Measurements {
        Measurements::of(self.local.as_ref())
    }

    /// Replaces what the other members reported (a member missing from `others` has
    /// nothing shown).
    pub fn set_others(&self, others: Measurements) {
        *self.others.lock().unwrap_or_else(|e| e.into_inner()) = others;
    }

    fn others(&self) -> std::sync::MutexGuard<'_, Measurements> {
        self.others.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResourceMetrics for ClusterMetrics {
    fn nodes(&self) -> Vec<NodeUsage> {
        let mut nodes = self.local.nodes();
        nodes.extend(self.others().nodes.iter().cloned());
        nodes
    }

    fn pods(&self) -> Vec<PodUsage> {
        let mut pods = self.local.pods();
        pods.extend(self.others().pods.iter().cloned());
        pods
    }
}

/// The discovery document of `metrics.k8s.io/v1beta1`: read-only nodes and pods.
pub fn resource_list() -> Value {
    let resource = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [resource("nodes", "NodeMetrics", false), resource("pods", "PodMetrics", true)],
    })
}

/// One request of the metrics API: `path` is what follows `/apis/metrics.k8s.io/v1beta1/`.
pub fn serve(
    api: &Api,
    source: &dyn ResourceMetrics,
    path: &[&str],
    opts: &ListOptions,
) -> Result<Value, ApiError> {
    let now = Utc::now();
    match path {
        ["nodes"] => Ok(list("NodeMetricsList", node_items(api, source, opts, now)?)),
        ["nodes", name] => {
            let nodes = core("nodes")?;
            let node = api.get(nodes, None, name)?;
            node_metrics(&node, &source.nodes(), now)
                .ok_or_else(|| ApiError::not_found("nodemetrics.metrics.k8s.io", name))
        }
        ["pods"] => Ok(list(
            "PodMetricsList",
            pod_items(api, source, None, opts, now)?,
        )),
        ["namespaces", ns, "pods"] => Ok(list(
            "PodMetricsList",
            pod_items(api, source, Some(ns), opts, now)?,
        )),
        ["namespaces", ns, "pods", name] => {
            let pods = core("pods")?;
            let pod = api.get(pods, Some(ns), name)?;
            pod_metrics(&pod, &source.pods(), now).ok_or_else(|| {
                ApiError::not_found("podmetrics.metrics.k8s.io", &format!("{ns}/{name}"))
            })
        }
        _ => Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            kind: String::new(),
            name: String::new(),
            group: String::new(),
        }),
    }
}

fn core(plural: &str) -> Result<&'static resources::ResourceInfo, ApiError> {
    resources::find("", "v1", plural).ok_or_else(|| ApiError::Internal(format!("{plural} unknown")))
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

fn node_items(
    api: &Api,
    source: &dyn ResourceMetrics,
    opts: &ListOptions,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, ApiError> {
    let (mut nodes, _) = api.list(core("nodes")?, None, opts)?;
    nodes.sort_by(|a, b| name(a).cmp(name(b)));
    let usage = source.nodes();
    Ok(nodes
        .iter()
        .filter_map(|n| node_metrics(n, &usage, now))
        .collect())
}

fn pod_items(
    api: &Api,
    source: &dyn ResourceMetrics,
    ns: Option<&str>,
    opts: &ListOptions,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, ApiError> {
    let (mut pods, _) = api.list(core("pods")?, ns, opts)?;
    pods.sort_by(|a, b| (namespace(a), name(a)).cmp(&(namespace(b), name(b))));
    let usage = source.pods();
    Ok(pods
        .iter()
        .filter_map(|p| pod_metrics(p, &usage, now))
        .collect())
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn meta(obj: &Value, now: DateTime<Utc>) -> Value {
    let mut m = json!({"name": name(obj), "creationTimestamp": time(now)});
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        m["namespace"] = json!(ns);
    }
    if let Some(labels) = obj["metadata"].get("labels") {
        m["labels"] = labels.clone();
    }
    m
}

fn node_metrics(node: &Value, usage: &[NodeUsage], now: DateTime<Utc>) -> Option<Value> {
    let found = usage.iter().find(|u| u.node == name(node))?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": meta(node, now),
        "timestamp": time(found.window.end),
        "window": go_duration(found.window.length),
        "usage": quantities(found.usage),
    }))
}

fn pod_metrics(pod: &Value, usage: &[PodUsage], now: DateTime<Utc>) -> Option<Value> {
    if pod["status"]["phase"] != "Running" {
        return None;
    }
    let uid = pod["metadata"]["uid"].as_str()?;
    let found = usage
        .iter()
        .find(|u| u.pod_uid == uid && !u.containers.is_empty())?;
    let containers: Vec<Value> = found
        .containers
        .iter()
        .map(|(name, u)| json!({"name": name, "usage": quantities(*u)}))
        .collect();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": meta(pod, now),
        "timestamp": time(found.window.end),
        "window": go_duration(found.window.length),
        "containers": containers,
    }))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn quantities(u: Usage) -> Value {
    json!({"cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes)})
}

/// A number of nanocores in the canonical form of a Kubernetes quantity: the largest
/// decimal suffix that keeps it exact.
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    [
        ("", 1_000_000_000),
        ("m", 1_000_000),
        ("u", 1_000),
        ("n", 1),
    ]
    .iter()
    .find(|(_, unit)| nanocores % unit == 0)
    .map(|(suffix, unit)| format!("{}{suffix}", nanocores / unit))
    .unwrap_or_default()
}

/// A number of bytes in the canonical form of a binary Kubernetes quantity: the largest
/// power-of-1024 suffix that keeps it exact, or plain bytes.
pub fn memory_quantity(bytes: u64) -> String {
    ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"]
        .iter()
        .zip((1..=6u32).rev())
        .find(|(_, power)| {
            let unit = 1u64 << (10 * power);
            bytes >= unit && bytes % unit == 0
        })
        .map(|(suffix, power)| format!("{}{suffix}", bytes >> (10 * power)))
        .unwrap_or_else(|| bytes.to_string())
}

/// A duration as Go's `time.Duration.String()` writes it (how `metav1.Duration` is
/// serialized): `10s`, `10.5s`, `1m0.5s`, `800ms`.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return trimmed(d.as_nanos() as u64, 1_000_000, "ms");
    }
    let total = d.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let nanos = u64::from(d.subsec_nanos()) + seconds * 1_000_000_000;
    let seconds = trimmed(nanos, 1_000_000_000, "s");
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// `value / unit` with the fraction's trailing zeros dropped, then `suffix`.
fn trimmed(value: u64, unit: u64, suffix: &str) -> String {
    let (whole, fraction) = (value / unit, value % unit);
    if fraction == 0 {
        return format!("{whole}{suffix}");
    }
    let digits = unit.ilog10() as usize;
    let fraction = format!("{fraction:0digits$}");
    format!("{whole}.{}{suffix}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical() {
        for (n, q) in [
            (0, "0"),
            (2_000_000_000, "2"),
            (5_000_000, "5m"),
            (1_500_000_000, "1500m"),
            (7_000, "7u"),
            (123_456_789, "123456789n"),
        ] {
            assert_eq!(cpu_quantity(n), q, "{n}");
        }
        for (b, q) in [
            (0, "0"),
            (1000, "1000"),
            (1024, "1Ki"),
            (1536, "1536"),
            (4096 * 3, "12Ki"),
            (64 << 20, "64Mi"),
            (3 << 30, "3Gi"),
        ] {
            assert_eq!(memory_quantity(b), q, "{b}");
        }
    }

    #[test]
    fn durations_read_like_go() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(10_500), "10.5s"),
            (Duration::from_millis(1_002), "1.002s"),
            (Duration::from_millis(800), "800ms"),
            (Duration::from_millis(60_500), "1m0.5s"),
            (Duration::from_secs(3_661), "1h1m1s"),
        ] {
            assert_eq!(go_duration(d), s);
        }
    }

    fn usage(cpu: u64, mem: u64) -> Usage {
        Usage {
            cpu_nanocores: cpu,
            memory_bytes: mem,
        }
    }

    /// A source of fixed measurements.
    struct Fixed(Measurements);

    impl ResourceMetrics for Fixed {
        fn nodes(&self) -> Vec<NodeUsage> {
            self.0.nodes.clone()
        }

        fn pods(&self) -> Vec<PodUsage> {
            self.0.pods.clone()
        }
    }

    #[test]
    fn a_member_serves_its_own_node_and_what_the_others_reported() {
        let node = |name: &str| NodeUsage {
            node: name.into(),
            window: Window {
                end: Utc::now(),
                length: Duration::from_millis(1500),
            },
            usage: usage(1, 2),
        };
        let local = Measurements {
            nodes: vec![node("a")],
            pods: Vec::new(),
        };
        let cluster = ClusterMetrics::new(Arc::new(Fixed(local.clone())));
        // What another member reports comes over JSON.
        let reported = serde_json::to_string(&Measurements {
            nodes: vec![node("b")],
            pods: Vec::new(),
        })
        .unwrap();
        cluster.set_others(serde_json::from_str(&reported).unwrap());
        let names: Vec<String> = cluster.nodes().into_iter().map(|n| n.node).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(cluster.local(), local);
        cluster.set_others(Measurements::default());
        assert_eq!(cluster.nodes().len(), 1);
    }

    #[test]
    fn a_running_pod_with_usage_is_reported_like_metrics_server() {
        let end = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.6Z")
            .unwrap()
            .with_timezone(&Utc);
        let window = Window {
            end,
            length: Duration::from_secs(10),
        };
        let now = end + chrono::Duration::seconds(1);
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "status": {"phase": "Running"},
        });
        let samples = [PodUsage {
            pod_uid: "u1".into(),
            window,
            containers: vec![("c".into(), usage(5_000_000, 2 << 20))],
        }];
        assert_eq!(
            pod_metrics(&pod, &samples, now).unwrap(),
            json!({
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "p", "creationTimestamp": "2026-01-02T03:04:06Z", "namespace": "ns", "labels": {"app": "x"}},
                "timestamp": "2026-01-02T03:04:05Z",
                "window": "10s",
                "containers": [{"name": "c", "usage": {"cpu": "5m", "memory": "2Mi"}}],
            })
        );
        let mut pending = pod.clone();
        pending["status"]["phase"] = json!("Pending");
        assert_eq!(pod_metrics(&pending, &samples, now), None);
        let mut other = pod.clone();
        other["metadata"]["uid"] = json!("u2");
        assert_eq!(pod_metrics(&other, &samples, now), None);
    }
}
