//! Defaulting as Kubernetes does it on create and update, so objects read back look like
//! they do from a real cluster (and `kubectl describe` finds the fields it prints).

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Fills defaults into `obj` of `kind`. Idempotent: applying it twice changes nothing.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => pod(obj),
        "Namespace" => namespace(obj),
        "Node" => node(obj),
        "Secret" => secret(obj),
        "Deployment" => workload(obj, true),
        "ReplicaSet" => workload(obj, false),
        "StatefulSet" => statefulset(obj),
        "DaemonSet" => daemonset(obj),
        "Job" => job(obj),
        "CronJob" => cronjob(obj),
        "PersistentVolumeClaim" => claim(obj),
        "PersistentVolume" => volume(obj),
        "StorageClass" => storage_class(obj),
        _ => {}
    }
}

/// apps/v1 `SetDefaults_Deployment` / `SetDefaults_ReplicaSet`, plus the pod spec defaults
/// of the template (Kubernetes defaults nested pod templates too, so a template read back
/// equals the one its pods are made from).
fn workload(obj: &mut Value, deployment: bool) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    if deployment {
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
        rolling_update(
            spec,
            "strategy",
            &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))],
        );
    }
    pod_template(spec);
}

/// A workload's update strategy `field`, RollingUpdate unless given, with the rolling
/// update's `defaults`.
fn rolling_update(spec: &mut Map<String, Value>, field: &str, defaults: &[(&str, Value)]) {
    set_default(spec, field, json!({}));
    let Some(strategy) = spec.get_mut(field).and_then(Value::as_object_mut) else {
        return;
    };
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type") != Some(&json!("RollingUpdate")) {
        return;
    }
    set_default(strategy, "rollingUpdate", json!({}));
    if let Some(ru) = strategy
        .get_mut("rollingUpdate")
        .and_then(Value::as_object_mut)
    {
        for (k, v) in defaults {
            set_default(ru, k, v.clone());
        }
    }
}

/// The pod spec defaults of a workload's `template`.
fn pod_template(spec: &mut Map<String, Value>) {
    if let Some(template) = spec.get_mut("template") {
        // A template patched in by a Go client (`kubectl rollout undo`) carries
        // `creationTimestamp: null`; Kubernetes' typed decoding drops such nulls.
        *template = crate::obj::strip_nulls(template);
        if let Some(template_spec) = template.get_mut("spec").and_then(Value::as_object_mut) {
            pod_spec(template_spec);
        }
    }
}

/// apps/v1 `SetDefaults_StatefulSet`; the template's pod spec as for the other workloads.
fn statefulset(obj: &mut Value) {
    workload(obj, false);
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    rolling_update(spec, "updateStrategy", &[("partition", json!(0))]);
    if let Some(templates) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        templates.iter_mut().for_each(claim);
    }
}

/// apps/v1 `SetDefaults_DaemonSet`.
fn daemonset(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "revisionHistoryLimit", json!(10));
    rolling_update(
        spec,
        "updateStrategy",
        &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
    );
    pod_template(spec);
}

/// The labels tying a Job's pods to it (the Job strategy's `generateSelector`).
pub const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_LABELS: [&str; 2] = ["controller-uid", "job-name"];

/// batch/v1 `SetDefaults_Job`, the template's pod spec, and the selector the Job strategy
/// generates from the Job's uid (unless `manualSelector`), with its labels on the template.
fn job(obj: &mut Value) {
    let uid = crate::obj::str_or_empty(obj, &["metadata", "uid"]).to_string();
    let name = crate::obj::name(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let unset = |k: &str| spec.get(k).is_none_or(Value::is_null);
    if unset("completions") && unset("parallelism") {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    let manual = spec.get("manualSelector") == Some(&json!(true));
    if !manual && !uid.is_empty() {
        set_default(
            spec,
            "selector",
            json!({"matchLabels": {JOB_UID_LABEL: uid}}),
        );
        let labels = spec
            .entry("template")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|t| t.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .map(|m| m.entry("labels").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut);
        if let Some(labels) = labels {
            for (key, value) in [
                (JOB_UID_LABEL, &uid),
                (JOB_NAME_LABEL, &name),
                (LEGACY_JOB_LABELS[0], &uid),
                (LEGACY_JOB_LABELS[1], &name),
            ] {
                set_default(labels, key, json!(value));
            }
        }
    }
    pod_template(spec);
}

/// batch/v1 `SetDefaults_CronJob`, and the pod spec defaults of the Job template's pods.
fn cronjob(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = spec
        .get_mut("jobTemplate")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_template(job_spec);
    }
}

/// core/v1 `SetDefaults_PersistentVolumeClaim`: a new claim is Pending until a volume
/// binds it.
fn claim(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(o) = obj.as_object_mut() {
        set_default(o, "status", json!({}));
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        set_default(status, "phase", json!("Pending"));
    }
}

/// core/v1 `SetDefaults_PersistentVolume`: manually created volumes are kept when released
/// (`Retain`), and a new volume is Pending until the binder sees it.
fn volume(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(o) = obj.as_object_mut() {
        set_default(o, "status", json!({}));
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        set_default(status, "phase", json!("Pending"));
    }
}

/// storage/v1 `SetDefaults_StorageClass`.
fn storage_class(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        set_default(o, "reclaimPolicy", json!("Delete"));
        set_default(o, "volumeBindingMode", json!("Immediate"));
    }
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn pod(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    // The default tolerations are admission's (`super::admission`), not defaulting: templates
    // keep no tolerations they were not given.
    pod_spec(spec);
}

fn pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "serviceAccountName", json!("default"));
    set_default(spec, "serviceAccount", json!("default"));
    set_default(spec, "priority", json!(0));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            containers
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(container);
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    let latest = c
        .get("image")
        .and_then(Value::as_str)
        .is_some_and(|image| image_tag(image).is_none_or(|t| t == "latest"));
    set_default(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// The tag of an image reference, if any (a digest reference has none).
fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("");
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

/// NoExecute taints carry the time they were added, from which tolerations count (the
/// node lifecycle controller sets it; a taint added by hand gets it here).
fn node(obj: &mut Value) {
    let taints = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("taints"))
        .and_then(Value::as_array_mut);
    for taint in taints
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        if taint.get("effect") == Some(&json!("NoExecute")) {
            set_default(taint, "timeAdded", json!(super::objects::now()));
        }
    }
}

fn namespace(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    set_default(o, "status", json!({"phase": "Active"}));
    set_default(o, "spec", json!({}));
    if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
        // The namespace controller's finalizer: it empties the namespace before it goes.
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
}

fn secret(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    set_default(o, "type", json!("Opaque"));
    // stringData is a write-only convenience: merged into data, never stored.
    if let Some(Value::Object(strings)) = o.remove("stringData") {
        let data = o.entry("data").or_insert_with(|| json!({})).as_object_mut();
        if let Some(data) = data {
            for (k, v) in strings {
                let text = v.as_str().unwrap_or_default();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults_follow_image_tag() {
        let mut p = json!({"spec": {"containers": [
            {"name": "a", "image": "hello:1.0"},
            {"name": "b", "image": "hello"},
            {"name": "c", "image": "127.0.0.1:5000/x:latest", "ports": [{"containerPort": 80}]}
        ]}});
        apply("Pod", &mut p);
        let c = &p["spec"]["containers"];
        assert_eq!(c[0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c[1]["imagePullPolicy"], "Always");
        assert_eq!(c[2]["imagePullPolicy"], "Always");
        assert_eq!(c[2]["ports"][0]["protocol"], "TCP");
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        let once = p.clone();
        apply("Pod", &mut p);
        assert_eq!(p, once);
    }

    #[test]
    fn deployment_defaults_like_apps_v1() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let template = &d["spec"]["template"]["spec"];
        assert_eq!(template["restartPolicy"], "Always");
        assert!(template.get("tolerations").is_none());
        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply("Deployment", &mut recreate);
        assert!(recreate["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn no_execute_taints_get_the_time_they_were_added() {
        let mut n = json!({"spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"},
            {"key": "b", "effect": "NoExecute"},
            {"key": "c", "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"}
        ]}});
        apply("Node", &mut n);
        let taints = &n["spec"]["taints"];
        assert!(taints[0].get("timeAdded").is_none());
        assert!(taints[1]["timeAdded"].is_string());
        assert_eq!(taints[2]["timeAdded"], "2024-01-01T00:00:00Z");
    }

    #[test]
    fn string_data_is_merged_into_data() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"b": "yz"}});
        apply("Secret", &mut s);
        assert_eq!(s["data"]["b"], "eXo=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }
}
