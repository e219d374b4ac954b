//! Deployments and ReplicaSets (`printDeployment`, `printReplicaSet`).

use super::age;
use crate::obj;
use crate::selectors::LabelSelector;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// `layoutContainerCells`: container names and images of the pod template, comma-joined.
fn containers_and_images(o: &Value) -> (String, String) {
    template_containers(obj::get(o, &["spec"]).unwrap_or(&Value::Null))
}

/// Container names and images of `spec.template`.
fn template_containers(spec: &Value) -> (String, String) {
    let containers = obj::array(spec, &["template", "spec", "containers"]);
    let names: Vec<&str> = containers
        .iter()
        .map(|c| obj::str_or_empty(c, &["name"]))
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| obj::str_or_empty(c, &["image"]))
        .collect();
    (names.join(","), images.join(","))
}

/// `printCronJob`; the wide columns are of the Job template.
pub fn cronjob(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let job = obj::get(o, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
    let (containers, images) = template_containers(job);
    let suspend = match obj::get(o, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = match obj::get(o, &["status", "lastScheduleTime"]) {
        Some(_) => age(o, &["status", "lastScheduleTime"], now),
        None => "<none>".to_string(),
    };
    // `metav1.FormatLabelSelector`: `<none>` for no selector.
    let selector = match job.get("selector") {
        None | Some(Value::Null) => "<none>".to_string(),
        Some(_) => selector_string(&json!({"spec": job})),
    };
    vec![
        json!(obj::name(o)),
        json!(obj::str_or_empty(o, &["spec", "schedule"])),
        json!(obj::get_str(o, &["spec", "timeZone"]).unwrap_or("<none>")),
        json!(suspend),
        json!(obj::array(o, &["status", "active"]).len()),
        json!(last),
        json!(age(o, &["metadata", "creationTimestamp"], now)),
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

/// `metav1.LabelSelectorAsSelector(spec.selector).String()`, `<invalid>` when it does not
/// convert.
fn selector_string(o: &Value) -> String {
    let sel = obj::get(o, &["spec", "selector"]).unwrap_or(&Value::Null);
    LabelSelector::from_json(sel).map_or_else(|_| "<invalid>".to_string(), |s| s.to_string())
}

fn int(o: &Value, path: &[&str]) -> Value {
    json!(obj::get_i64(o, path).unwrap_or(0))
}

pub fn deployment(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = containers_and_images(o);
    let ready = obj::get_i64(o, &["status", "readyReplicas"]).unwrap_or(0);
    // spec.replicas defaults to 1 before the object is stored; treat absence the same way.
    let desired = obj::get_i64(o, &["spec", "replicas"]).unwrap_or(1);
    vec![
        json!(obj::name(o)),
        json!(format!("{ready}/{desired}")),
        int(o, &["status", "updatedReplicas"]),
        int(o, &["status", "availableReplicas"]),
        json!(age(o, &["metadata", "creationTimestamp"], now)),
        json!(containers),
        json!(images),
        json!(selector_string(o)),
    ]
}

pub fn replicaset(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = containers_and_images(o);
    vec![
        json!(obj::name(o)),
        json!(obj::get_i64(o, &["spec", "replicas"]).unwrap_or(1)),
        int(o, &["status", "replicas"]),
        int(o, &["status", "readyReplicas"]),
        json!(age(o, &["metadata", "creationTimestamp"], now)),
        json!(containers),
        json!(images),
        json!(selector_string(o)),
    ]
}

pub fn statefulset(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = containers_and_images(o);
    let ready = obj::get_i64(o, &["status", "readyReplicas"]).unwrap_or(0);
    let desired = obj::get_i64(o, &["spec", "replicas"]).unwrap_or(1);
    vec![
        json!(obj::name(o)),
        json!(format!("{ready}/{desired}")),
        json!(age(o, &["metadata", "creationTimestamp"], now)),
        json!(containers),
        json!(images),
    ]
}

/// `printControllerRevision`: the controller as `<kind>.<group>/<name>`.
pub fn revision(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let controller = obj::array(o, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| r["controller"] == true)
        .map_or("<none>".to_string(), |r| {
            let kind = obj::str_or_empty(r, &["kind"]).to_lowercase();
            let group = obj::str_or_empty(r, &["apiVersion"])
                .rsplit_once('/')
                .map_or("", |(g, _)| g);
            let name = obj::str_or_empty(r, &["name"]);
            if group.is_empty() {
                format!("{kind}/{name}")
            } else {
                format!("{kind}.{group}/{name}")
            }
        });
    vec![
        json!(obj::name(o)),
        json!(controller),
        int(o, &["revision"]),
        json!(age(o, &["metadata", "creationTimestamp"], now)),
    ]
}

/// `printDaemonSet`: the node selector as `k=v` pairs, `<none>` without one.
pub fn daemonset(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = containers_and_images(o);
    let node_selector = obj::object(o, &["spec", "template", "spec", "nodeSelector"])
        .filter(|m| !m.is_empty())
        .map_or("<none>".to_string(), |m| {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            pairs.join(",")
        });
    vec![
        json!(obj::name(o)),
        int(o, &["status", "desiredNumberScheduled"]),
        int(o, &["status", "currentNumberScheduled"]),
        int(o, &["status", "numberReady"]),
        int(o, &["status", "updatedNumberScheduled"]),
        int(o, &["status", "numberAvailable"]),
        json!(node_selector),
        json!(age(o, &["metadata", "creationTimestamp"], now)),
        json!(containers),
        json!(images),
        json!(selector_string(o)),
    ]
}

/// The first of a Job's conditions (in `printJob`'s order) that holds, as its status.
fn job_status(o: &Value) -> &'static str {
    let holds = |t: &str| {
        obj::array(o, &["status", "conditions"])
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    let deleting = obj::get(o, &["metadata", "deletionTimestamp"]).is_some();
    match () {
        _ if holds("Complete") => "Complete",
        _ if holds("Failed") => "Failed",
        _ if deleting => "Terminating",
        _ if holds("Suspended") => "Suspended",
        _ if holds("FailureTarget") => "FailureTarget",
        _ if holds("SuccessCriteriaMet") => "SuccessCriteriaMet",
        _ => "Running",
    }
}

/// `printJob`.
pub fn job(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = containers_and_images(o);
    let succeeded = obj::get_i64(o, &["status", "succeeded"]).unwrap_or(0);
    let completions = match (
        obj::get_i64(o, &["spec", "completions"]),
        obj::get_i64(o, &["spec", "parallelism"]),
    ) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    };
    let duration = match (
        obj::get_time(o, &["status", "startTime"]),
        obj::get_time(o, &["status", "completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => super::human_duration(now - start),
        (Some(start), Some(end)) => super::human_duration(end - start),
    };
    vec![
        json!(obj::name(o)),
        json!(job_status(o)),
        json!(completions),
        json!(duration),
        json!(age(o, &["metadata", "creationTimestamp"], now)),
        json!(containers),
        json!(images),
        json!(selector_string(o)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cronjob_rows() {
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 10, 0)
            .single()
            .unwrap_or_default();
        let c = json!({"metadata": {"name": "tick", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"schedule": "*/1 * * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "hello:1.0"}]}}}}},
            "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": "2024-01-01T00:09:00Z"}});
        assert_eq!(
            cronjob(&c, now),
            vec![
                json!("tick"),
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("60s"),
                json!("10m"),
                json!("c"),
                json!("hello:1.0"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn job_rows() {
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 10, 0)
            .single()
            .unwrap_or_default();
        let running = json!({"metadata": {"name": "pi", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"completions": 3, "parallelism": 2, "selector": {"matchLabels": {"j": "pi"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2024-01-01T00:00:00Z"}});
        assert_eq!(
            job(&running, now),
            vec![
                json!("pi"),
                json!("Running"),
                json!("1/3"),
                json!("10m"),
                json!("10m"),
                json!("pi"),
                json!("perl"),
                json!("j=pi")
            ]
        );
        let done = json!({"metadata": {"name": "q"}, "spec": {"parallelism": 4},
            "status": {"startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:42Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            job(&done, now)[1..4],
            [json!("Complete"), json!("0/1 of 4"), json!("42s")]
        );
    }

    #[test]
    fn workload_rows() {
        let now = Utc
            .with_ymd_and_hms(2024, 1, 3, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
                     "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            deployment(&d, now),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("2d"),
                json!("a,b"),
                json!("nginx,busybox"),
                json!("app=web,tier in (a,b)")
            ]
        );
        let rs = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        assert_eq!(
            replicaset(&rs, now),
            vec![
                json!("web-1"),
                json!(2),
                json!(2),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("app=web")
            ]
        );
    }
}
