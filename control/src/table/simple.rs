//! Printers of the single-object kinds: nodes, events, namespaces, configmaps, secrets,
//! runtimeclasses, leases, services.

use super::age;
use crate::obj;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const CREATED: [&str; 2] = ["metadata", "creationTimestamp"];

fn none_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

fn unknown_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<unknown>".to_string()
    } else {
        s.to_string()
    }
}

fn len_of(o: &Value, field: &str) -> usize {
    obj::object(o, &[field]).map_or(0, |m| m.len())
}

/// `printNode`.
pub fn node(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = obj::array(o, &["status", "conditions"])
        .iter()
        .rfind(|c| obj::str_or_empty(c, &["type"]) == "Ready")
    {
        if obj::str_or_empty(c, &["status"]) == "True" {
            status.push("Ready".into());
        } else {
            status.push("NotReady".into());
        }
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if obj::bool_or_false(o, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in obj::labels(o).into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" {
            let v = v.as_str().unwrap_or("");
            if !v.is_empty() {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let address = |ty: &str| {
        obj::array(o, &["status", "addresses"])
            .iter()
            .find(|a| obj::str_or_empty(a, &["type"]) == ty)
            .map_or("<none>".to_string(), |a| {
                obj::str_or_empty(a, &["address"]).to_string()
            })
    };
    let info = |f: &str| unknown_if_empty(obj::str_or_empty(o, &["status", "nodeInfo", f]));
    vec![
        json!(obj::name(o)),
        json!(status.join(",")),
        json!(none_if_empty(&roles.join(","))),
        json!(age(o, &CREATED, now)),
        json!(obj::str_or_empty(
            o,
            &["status", "nodeInfo", "kubeletVersion"]
        )),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// `printEvent` (wide form, the one the server sends).
pub fn event(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let since = |path: &[&str]| {
        obj::get_time(o, path).map(|t| super::human_duration(now.signed_duration_since(t)))
    };
    let first = since(&["firstTimestamp"])
        .or_else(|| since(&["eventTime"]))
        .unwrap_or_else(|| "<unknown>".to_string());
    let mut last = since(&["lastTimestamp"]).unwrap_or_else(|| first.clone());
    let mut count = obj::get_i64(o, &["count"]).unwrap_or(0);
    if obj::get(o, &["series"]).is_some_and(Value::is_object) {
        last = since(&["series", "lastObservedTime"]).unwrap_or_else(|| "<unknown>".to_string());
        count = obj::get_i64(o, &["series", "count"]).unwrap_or(0);
    } else if count == 0 {
        // Singleton events from the events.k8s.io API carry no count.
        count = 1;
    }
    let kind = obj::str_or_empty(o, &["involvedObject", "kind"]).to_lowercase();
    let involved_name = obj::str_or_empty(o, &["involvedObject", "name"]);
    let target = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        obj::str_or_empty(o, &["source", "component"]),
        obj::str_or_empty(o, &["reportingComponent"]),
    );
    let instance = first_non_empty(
        obj::str_or_empty(o, &["source", "host"]),
        obj::str_or_empty(o, &["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(obj::str_or_empty(o, &["type"])),
        json!(obj::str_or_empty(o, &["reason"])),
        json!(target),
        json!(obj::str_or_empty(o, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(obj::str_or_empty(o, &["message"]).trim()),
        json!(first),
        json!(count),
        json!(obj::name(o)),
    ]
}

pub fn namespace(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(obj::name(o)),
        json!(obj::str_or_empty(o, &["status", "phase"])),
        json!(age(o, &CREATED, now)),
    ]
}

pub fn configmap(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(obj::name(o)),
        json!(len_of(o, "data") + len_of(o, "binaryData")),
        json!(age(o, &CREATED, now)),
    ]
}

pub fn secret(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(obj::name(o)),
        json!(obj::str_or_empty(o, &["type"])),
        json!(len_of(o, "data")),
        json!(age(o, &CREATED, now)),
    ]
}

pub fn runtimeclass(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(obj::name(o)),
        json!(obj::str_or_empty(o, &["handler"])),
        json!(age(o, &CREATED, now)),
    ]
}

pub fn lease(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(obj::name(o)),
        json!(obj::str_or_empty(o, &["spec", "holderIdentity"])),
        json!(age(o, &CREATED, now)),
    ]
}

/// `printPersistentVolumeClaim`: capacity and access modes are the bound volume's, so
/// empty while the claim is unbound.
pub fn claim(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let volume = obj::str_or_empty(o, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let capacity = obj::str_or_empty(o, &["status", "capacity", "storage"]);
        (
            capacity.to_string(),
            access_modes(o, &["status", "accessModes"]),
        )
    };
    vec![
        json!(obj::name(o)),
        json!(phase_or_terminating(o)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(obj::str_or_empty(o, &["spec", "storageClassName"])),
        json!(or_unset(o, &["spec", "volumeAttributesClassName"])),
        json!(age(o, &CREATED, now)),
        json!(or_unset(o, &["spec", "volumeMode"])),
    ]
}

/// `printPersistentVolume`.
pub fn volume(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match obj::get(o, &["spec", "claimRef"]) {
        Some(r) => format!(
            "{}/{}",
            obj::str_or_empty(r, &["namespace"]),
            obj::str_or_empty(r, &["name"])
        ),
        None => String::new(),
    };
    vec![
        json!(obj::name(o)),
        json!(obj::str_or_empty(o, &["spec", "capacity", "storage"])),
        json!(access_modes(o, &["spec", "accessModes"])),
        json!(obj::str_or_empty(
            o,
            &["spec", "persistentVolumeReclaimPolicy"]
        )),
        json!(phase_or_terminating(o)),
        json!(claim),
        json!(obj::str_or_empty(o, &["spec", "storageClassName"])),
        json!(or_unset(o, &["spec", "volumeAttributesClassName"])),
        json!(obj::str_or_empty(o, &["status", "reason"])),
        json!(age(o, &CREATED, now)),
        json!(or_unset(o, &["spec", "volumeMode"])),
    ]
}

/// `printStorageClass`: the default class is named `<name> (default)`.
pub fn storage_class(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut name = obj::name(o).to_string();
    if crate::storage_class::is_default(o) {
        name.push_str(" (default)");
    }
    vec![
        json!(name),
        json!(obj::str_or_empty(o, &["provisioner"])),
        json!(obj::str_or_empty(o, &["reclaimPolicy"])),
        json!(obj::str_or_empty(o, &["volumeBindingMode"])),
        json!(obj::bool_or_false(o, &["allowVolumeExpansion"])),
        json!(age(o, &CREATED, now)),
    ]
}

fn phase_or_terminating(o: &Value) -> &str {
    if obj::get(o, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        obj::str_or_empty(o, &["status", "phase"])
    }
}

fn or_unset(o: &Value, path: &[&str]) -> String {
    match obj::str_or_empty(o, path) {
        "" => "<unset>".to_string(),
        v => v.to_string(),
    }
}

/// `GetAccessModesAsString`: abbreviated, in this order whatever the object's.
fn access_modes(o: &Value, path: &[&str]) -> String {
    let granted: Vec<&str> = obj::array(o, path)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let modes: Vec<&str> = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| granted.contains(mode))
    .map(|(_, short)| *short)
    .collect();
    modes.join(",")
}

/// `printService`.
pub fn service(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let svc_type = obj::str_or_empty(o, &["spec", "type"]);
    let cluster_ip = obj::array(o, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .map_or("<none>".to_string(), str::to_string);
    let external_ips: Vec<&str> = obj::array(o, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => none_if_empty(&external_ips.join(",")),
        "LoadBalancer" => {
            let lb: Vec<&str> = obj::array(o, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| {
                    let ip = obj::str_or_empty(i, &["ip"]);
                    if ip.is_empty() {
                        obj::str_or_empty(i, &["hostname"])
                    } else {
                        ip
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            let all: Vec<&str> = lb.iter().chain(external_ips.iter()).copied().collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => obj::str_or_empty(o, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = obj::array(o, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = obj::get_i64(p, &["port"]).unwrap_or(0);
            let proto = obj::str_or_empty(p, &["protocol"]);
            match obj::get_i64(p, &["nodePort"]).filter(|n| *n > 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    // labels.FormatLabels: sorted k=v pairs, "<none>" when empty.
    let mut selector: Vec<String> = obj::object(o, &["spec", "selector"])
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", obj::scalar_string(v)))
        .collect();
    selector.sort();
    vec![
        json!(obj::name(o)),
        json!(svc_type),
        json!(cluster_ip),
        json!(external),
        json!(none_if_empty(&ports.join(","))),
        json!(age(o, &CREATED, now)),
        json!(none_if_empty(&selector.join(","))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 5, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn node_rows() {
        let n = json!({"metadata": {"name": "n1", "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0-wkube", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "wkube://0.1"}}});
        assert_eq!(
            node(&n, now()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge,worker"),
                json!("5m"),
                json!("v1.33.0-wkube"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("wkube://0.1"),
            ]
        );
        let bare = json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let cells = node(&bare, now());
        assert_eq!(cells[1], json!("NotReady"));
        assert_eq!(cells[2], json!("<none>"));
        assert_eq!(cells[7], json!("<unknown>"));
        assert_eq!(
            node(&json!({"metadata": {"name": "n3"}}), now())[1],
            json!("Unknown")
        );
    }

    #[test]
    fn event_rows() {
        let e = json!({"metadata": {"name": "p.1"}, "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
            "reason": "Pulled", "message": " pulled \n", "type": "Normal", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:04:00Z", "count": 3});
        assert_eq!(
            event(&e, now()),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/p"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("pulled"),
                json!("5m"),
                json!(3),
                json!("p.1"),
            ]
        );
        let new_style = json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "Node"}, "eventTime": "2024-01-01T00:03:00.000000Z",
            "reportingComponent": "wkube", "series": {"count": 4, "lastObservedTime": "2024-01-01T00:04:30.000000Z"}});
        let cells = event(&new_style, now());
        assert_eq!(cells[0], json!("30s"));
        assert_eq!(cells[3], json!("node"));
        assert_eq!(cells[5], json!("wkube"));
        assert_eq!(cells[7], json!("2m"));
        assert_eq!(cells[8], json!(4));
        assert_eq!(
            event(&json!({"metadata": {"name": "y"}}), now())[8],
            json!(1)
        );
    }

    #[test]
    fn small_kind_rows() {
        let t = "2024-01-01T00:00:00Z";
        assert_eq!(
            namespace(
                &json!({"metadata": {"name": "default", "creationTimestamp": t}, "status": {"phase": "Active"}}),
                now()
            ),
            vec![json!("default"), json!("Active"), json!("5m")]
        );
        assert_eq!(
            secret(
                &json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "", "b": ""}}),
                now()
            ),
            vec![json!("s"), json!("Opaque"), json!(2), json!("<unknown>")]
        );
        assert_eq!(
            runtimeclass(
                &json!({"metadata": {"name": "wasm"}, "handler": "wasmtime"}),
                now()
            )[1],
            json!("wasmtime")
        );
        assert_eq!(
            lease(
                &json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "n1"}}),
                now()
            )[1],
            json!("n1")
        );
        assert_eq!(
            lease(&json!({"metadata": {"name": "l"}, "spec": {}}), now())[1],
            json!("")
        );
    }

    #[test]
    fn service_rows() {
        let s = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"b": "2", "a": "1"}}});
        assert_eq!(
            service(&s, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("<unknown>"),
                json!("a=1,b=2"),
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]}, "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}}});
        assert_eq!(service(&lb, now())[3], json!("5.6.7.8,1.2.3.4"));
        let pending = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(service(&pending, now())[3], json!("<pending>"));
        assert_eq!(service(&pending, now())[2], json!("<none>"));
        assert_eq!(service(&pending, now())[4], json!("<none>"));
        let ext = json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(service(&ext, now())[3], json!("example.com"));
    }
}
