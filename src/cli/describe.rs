//! `wkube describe`: kubectl's pod description (`pkg/describe` `describePod`), a generic one
//! for other kinds, and the object's events under both.

use chrono::{DateTime, Local, Utc};
use clap::Args;
use control::obj;
use control::table::human_duration;
use serde_json::{Map, Value};

use super::apply::LAST_APPLIED;
use super::client::{Cluster, Selectors};
use super::discovery::ApiResource;
use super::printer::TabWriter;
use super::Connection;

#[derive(Args)]
pub struct DescribeArgs {
    /// The resource type: `pod`, `po`, `configmap`, ...
    kind: String,
    /// The objects; all of the kind (matching `-l`) when none are named.
    names: Vec<String>,
    #[arg(short = 'l', long)]
    selector: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

pub async fn run(args: DescribeArgs) -> anyhow::Result<()> {
    let cluster = args.conn.connect().await?;
    let res = cluster.discovery.for_name(&args.kind)?;
    let ns = args.conn.namespace_or(&cluster);
    let objects = if args.names.is_empty() {
        let sel = Selectors {
            labels: args.selector.clone(),
            fields: None,
        };
        let list = cluster.list(res, Some(&ns), &sel).await?;
        list["items"].as_array().cloned().unwrap_or_default()
    } else {
        let mut objects = Vec::new();
        for name in &args.names {
            objects.push(cluster.get(res, Some(&ns), name).await?);
        }
        objects
    };
    let mut texts = Vec::new();
    for object in objects {
        let events = events_of(&cluster, res, &object).await?;
        texts.push(describe(res, &object, &events, Utc::now()));
    }
    print!("{}", texts.join("\n\n"));
    Ok(())
}

/// The events about `object`, oldest first, found the way kubectl finds them.
async fn events_of(
    cluster: &Cluster,
    res: &ApiResource,
    object: &Value,
) -> anyhow::Result<Vec<Value>> {
    let Some(events) = cluster.discovery.for_kind("v1", "Event") else {
        return Ok(Vec::new());
    };
    let namespace = obj::namespace(object);
    let fields = format!(
        "involvedObject.name={},involvedObject.namespace={namespace},involvedObject.kind={},involvedObject.uid={}",
        obj::name(object),
        res.kind,
        obj::str_or_empty(object, &["metadata", "uid"]),
    );
    let sel = Selectors {
        labels: None,
        fields: Some(fields),
    };
    // Events about cluster-scoped objects may be recorded in any namespace.
    let ns = (!namespace.is_empty()).then_some(namespace);
    let list = cluster.list(events, ns, &sel).await?;
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(last_seen);
    Ok(items)
}

fn last_seen(event: &Value) -> Option<DateTime<Utc>> {
    obj::get_time(event, &["lastTimestamp"])
        .or_else(|| obj::get_time(event, &["eventTime"]))
        .or_else(|| obj::get_time(event, &["metadata", "creationTimestamp"]))
}

/// The description of `object` with its `events`, relative to `now`.
pub fn describe(res: &ApiResource, object: &Value, events: &[Value], now: DateTime<Utc>) -> String {
    let mut d = Description::default();
    if res.group.is_empty() && res.kind == "Pod" {
        d.pod(object);
    } else {
        d.generic(res, object);
    }
    d.events(events, now);
    TabWriter::describe().format(&d.text)
}

/// kubectl's `PrefixWriter`: lines of tab-separated cells, indented two spaces per level.
#[derive(Default)]
struct Description {
    text: String,
}

/// `<none>` for an empty string, as kubectl prints missing values.
fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

/// `time.RFC1123Z` in the local zone, as kubectl prints timestamps.
fn timestamp(o: &Value, path: &[&str]) -> Option<String> {
    obj::get_time(o, path).map(|t| {
        t.with_timezone(&Local)
            .format("%a, %d %b %Y %H:%M:%S %z")
            .to_string()
    })
}

impl Description {
    fn line(&mut self, level: usize, text: &str) {
        self.text.push_str(&"  ".repeat(level));
        self.text.push_str(text);
        self.text.push('\n');
    }

    /// `printLabelsMultiline` (and the annotation flavour): sorted, one per line, the
    /// first beside the title.
    fn map(&mut self, title: &str, map: Option<&Map<String, Value>>, separator: &str) {
        let mut entries: Vec<(&String, String)> = map
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != LAST_APPLIED)
            .map(|(k, v)| (k, obj::scalar_string(v)))
            .collect();
        entries.sort();
        if entries.is_empty() {
            self.line(0, &format!("{title}:\t<none>"));
        }
        for (i, (k, v)) in entries.iter().enumerate() {
            let lead = if i == 0 {
                format!("{title}:")
            } else {
                String::new()
            };
            self.line(0, &format!("{lead}\t{k}{separator}{v}"));
        }
    }

    fn pod(&mut self, pod: &Value) {
        let s = |path: &[&str]| obj::str_or_empty(pod, path).to_string();
        self.line(0, &format!("Name:\t{}", obj::name(pod)));
        self.line(0, &format!("Namespace:\t{}", obj::namespace(pod)));
        if let Some(p) = obj::get_i64(pod, &["spec", "priority"]) {
            self.line(0, &format!("Priority:\t{p}"));
        }
        let runtime_class = s(&["spec", "runtimeClassName"]);
        if !runtime_class.is_empty() {
            self.line(0, &format!("Runtime Class Name:\t{runtime_class}"));
        }
        let account = s(&["spec", "serviceAccountName"]);
        if !account.is_empty() {
            self.line(0, &format!("Service Account:\t{account}"));
        }
        let node = match (s(&["spec", "nodeName"]), s(&["status", "hostIP"])) {
            (n, _) if n.is_empty() => "<none>".to_string(),
            (n, ip) => format!("{n}/{ip}"),
        };
        self.line(0, &format!("Node:\t{node}"));
        if let Some(t) = timestamp(pod, &["status", "startTime"]) {
            self.line(0, &format!("Start Time:\t{t}"));
        }
        self.map("Labels", obj::labels(pod), "=");
        self.map(
            "Annotations",
            obj::object(pod, &["metadata", "annotations"]),
            ": ",
        );
        self.line(0, &format!("Status:\t{}", s(&["status", "phase"])));
        for (title, path) in [("Reason", "reason"), ("Message", "message")] {
            let v = s(&["status", path]);
            if !v.is_empty() {
                self.line(0, &format!("{title}:\t{v}"));
            }
        }
        self.line(0, &format!("IP:\t{}", s(&["status", "podIP"])));
        let ips: Vec<&str> = obj::array(pod, &["status", "podIPs"])
            .iter()
            .filter_map(|ip| ip["ip"].as_str())
            .collect();
        if ips.is_empty() {
            self.line(0, "IPs:\t<none>");
        } else {
            self.line(0, "IPs:");
            for ip in ips {
                self.line(1, &format!("IP:\t{ip}"));
            }
        }
        for (title, spec, status) in [
            ("Init Containers", "initContainers", "initContainerStatuses"),
            ("Containers", "containers", "containerStatuses"),
        ] {
            let containers = obj::array(pod, &["spec", spec]);
            if spec == "containers" || !containers.is_empty() {
                self.containers(title, containers, obj::array(pod, &["status", status]));
            }
        }
        let conditions = obj::array(pod, &["status", "conditions"]);
        if !conditions.is_empty() {
            self.line(0, "Conditions:");
            self.line(1, "Type\tStatus");
            for c in conditions {
                let cell = |k: &str| obj::str_or_empty(c, &[k]).to_string();
                self.line(1, &format!("{} \t{} ", cell("type"), cell("status")));
            }
        }
        self.volumes(obj::array(pod, &["spec", "volumes"]));
        self.line(0, &format!("QoS Class:\t{}", s(&["status", "qosClass"])));
        self.map(
            "Node-Selectors",
            obj::object(pod, &["spec", "nodeSelector"]),
            "=",
        );
        self.tolerations(obj::array(pod, &["spec", "tolerations"]));
    }

    fn containers(&mut self, title: &str, containers: &[Value], statuses: &[Value]) {
        self.line(0, &format!("{title}:"));
        for c in containers {
            let name = obj::str_or_empty(c, &["name"]);
            let status = statuses.iter().find(|s| s["name"] == name);
            self.line(1, &format!("{name}:"));
            if let Some(st) = status {
                let id = obj::str_or_empty(st, &["containerID"]);
                self.line(2, &format!("Container ID:\t{id}"));
            }
            self.line(2, &format!("Image:\t{}", obj::str_or_empty(c, &["image"])));
            if let Some(st) = status {
                self.line(
                    2,
                    &format!("Image ID:\t{}", obj::str_or_empty(st, &["imageID"])),
                );
            }
            self.ports(c);
            for (title, key) in [("Command", "command"), ("Args", "args")] {
                let items = obj::array(c, &[key]);
                if !items.is_empty() {
                    self.line(2, &format!("{title}:"));
                    for item in items {
                        self.line(3, &obj::scalar_string(item));
                    }
                }
            }
            if let Some(st) = status {
                self.state("State", &st["state"]);
                if st.pointer("/lastState/terminated").is_some() {
                    self.state("Last State", &st["lastState"]);
                }
                let ready = if obj::bool_or_false(st, &["ready"]) {
                    "True"
                } else {
                    "False"
                };
                self.line(2, &format!("Ready:\t{ready}"));
                let restarts = obj::get_i64(st, &["restartCount"]).unwrap_or(0);
                self.line(2, &format!("Restart Count:\t{restarts}"));
            }
            self.env(c);
            let mounts = obj::array(c, &["volumeMounts"]);
            if mounts.is_empty() {
                self.line(2, "Mounts:\t<none>");
            } else {
                self.line(2, "Mounts:");
                for m in mounts {
                    let mode = if obj::bool_or_false(m, &["readOnly"]) {
                        "ro"
                    } else {
                        "rw"
                    };
                    self.line(
                        3,
                        &format!(
                            "{} from {} ({mode})",
                            obj::str_or_empty(m, &["mountPath"]),
                            obj::str_or_empty(m, &["name"])
                        ),
                    );
                }
            }
        }
    }

    /// `Port:`/`Host Port:`, plural when there are several.
    fn ports(&mut self, c: &Value) {
        for (title, key) in [("Port", "containerPort"), ("Host Port", "hostPort")] {
            let ports: Vec<String> = obj::array(c, &["ports"])
                .iter()
                .map(|p| {
                    let protocol = obj::get_str(p, &["protocol"]).unwrap_or("TCP");
                    format!("{}/{protocol}", obj::get_i64(p, &[key]).unwrap_or(0))
                })
                .collect();
            let title = if ports.len() > 1 {
                format!("{title}s")
            } else {
                title.to_string()
            };
            self.line(2, &format!("{title}:\t{}", or_none(&ports.join(", "))));
        }
    }

    /// `describeStatus`: Running, Waiting or Terminated with their details.
    fn state(&mut self, title: &str, state: &Value) {
        let time = |path: &[&str]| timestamp(state, path).unwrap_or_default();
        if state.get("running").is_some() {
            self.line(2, &format!("{title}:\tRunning"));
            self.line(3, &format!("Started:\t{}", time(&["running", "startedAt"])));
        } else if let Some(t) = state.get("terminated") {
            self.line(2, &format!("{title}:\tTerminated"));
            for (label, key) in [("Reason", "reason"), ("Message", "message")] {
                let v = obj::str_or_empty(t, &[key]);
                if !v.is_empty() {
                    self.line(3, &format!("{label}:\t{v}"));
                }
            }
            let code = obj::get_i64(t, &["exitCode"]).unwrap_or(0);
            self.line(3, &format!("Exit Code:\t{code}"));
            if let Some(signal) = obj::get_i64(t, &["signal"]).filter(|s| *s > 0) {
                self.line(3, &format!("Signal:\t{signal}"));
            }
            self.line(
                3,
                &format!("Started:\t{}", time(&["terminated", "startedAt"])),
            );
            self.line(
                3,
                &format!("Finished:\t{}", time(&["terminated", "finishedAt"])),
            );
        } else {
            self.line(2, &format!("{title}:\tWaiting"));
            let reason = obj::str_or_empty(state, &["waiting", "reason"]);
            if !reason.is_empty() {
                self.line(3, &format!("Reason:\t{reason}"));
            }
        }
    }

    fn env(&mut self, c: &Value) {
        let env = obj::array(c, &["env"]);
        let env_from = obj::array(c, &["envFrom"]);
        if env.is_empty() && env_from.is_empty() {
            self.line(2, "Environment:\t<none>");
            return;
        }
        if !env_from.is_empty() {
            self.line(2, "Environment Variables from:");
            for from in env_from {
                let (kind, source) = match from.get("configMapRef") {
                    Some(r) => ("ConfigMap", r),
                    None => ("Secret", &from["secretRef"]),
                };
                let name = obj::str_or_empty(source, &["name"]);
                let optional = obj::bool_or_false(source, &["optional"]);
                self.line(3, &format!("{name}\t{kind}\tOptional: {optional}"));
            }
        }
        self.line(2, "Environment:");
        for e in env {
            let name = obj::str_or_empty(e, &["name"]);
            let from = &e["valueFrom"];
            let value = if let Some(r) = from.get("configMapKeyRef") {
                format!(
                    "<set to the key '{}' of config map '{}'>\tOptional: {}",
                    obj::str_or_empty(r, &["key"]),
                    obj::str_or_empty(r, &["name"]),
                    obj::bool_or_false(r, &["optional"])
                )
            } else if let Some(r) = from.get("secretKeyRef") {
                format!(
                    "<set to the key '{}' in secret '{}'>\tOptional: {}",
                    obj::str_or_empty(r, &["key"]),
                    obj::str_or_empty(r, &["name"]),
                    obj::bool_or_false(r, &["optional"])
                )
            } else if let Some(r) = from.get("fieldRef") {
                format!(
                    " ({}:{})",
                    obj::str_or_empty(r, &["apiVersion"]),
                    obj::str_or_empty(r, &["fieldPath"])
                )
            } else {
                obj::str_or_empty(e, &["value"]).to_string()
            };
            // Multi-line values continue in the value column.
            for (i, part) in value.split('\n').enumerate() {
                let lead = if i == 0 {
                    format!("{name}:")
                } else {
                    String::new()
                };
                self.line(3, &format!("{lead}\t{part}"));
            }
        }
    }

    fn volumes(&mut self, volumes: &[Value]) {
        if volumes.is_empty() {
            self.line(0, "Volumes:\t<none>");
            return;
        }
        self.line(0, "Volumes:");
        for v in volumes {
            self.line(1, &format!("{}:", obj::str_or_empty(v, &["name"])));
            if let Some(cm) = v.get("configMap") {
                self.line(2, "Type:\tConfigMap (a volume populated by a ConfigMap)");
                self.line(2, &format!("Name:\t{}", obj::str_or_empty(cm, &["name"])));
                self.line(
                    2,
                    &format!("Optional:\t{}", obj::bool_or_false(cm, &["optional"])),
                );
            } else if let Some(secret) = v.get("secret") {
                self.line(2, "Type:\tSecret (a volume populated by a Secret)");
                let name = obj::str_or_empty(secret, &["secretName"]);
                self.line(2, &format!("SecretName:\t{name}"));
                let optional = obj::bool_or_false(secret, &["optional"]);
                self.line(2, &format!("Optional:\t{optional}"));
            } else if let Some(dir) = v.get("emptyDir") {
                self.line(
                    2,
                    "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)",
                );
                self.line(
                    2,
                    &format!("Medium:\t{}", obj::str_or_empty(dir, &["medium"])),
                );
                let limit = obj::get_str(dir, &["sizeLimit"]).unwrap_or("<unset>");
                self.line(2, &format!("SizeLimit:\t{limit}"));
            } else {
                let kind = v
                    .as_object()
                    .and_then(|m| m.keys().find(|k| k.as_str() != "name"))
                    .map_or("<unknown>", String::as_str);
                self.line(2, &format!("Type:\t{kind}"));
            }
        }
    }

    /// `printPodTolerationsMultiline`: `key=value:Effect op=Exists for 300s`.
    fn tolerations(&mut self, tolerations: &[Value]) {
        if tolerations.is_empty() {
            self.line(0, "Tolerations:\t<none>");
        }
        for (i, t) in tolerations.iter().enumerate() {
            let f = |k: &str| obj::str_or_empty(t, &[k]);
            let mut text = f("key").to_string();
            if !f("value").is_empty() {
                text += &format!("={}", f("value"));
            }
            if !f("effect").is_empty() {
                text += &format!(":{}", f("effect"));
            }
            if f("operator") == "Exists" && f("value").is_empty() {
                text += if text.is_empty() {
                    "op=Exists"
                } else {
                    " op=Exists"
                };
            }
            if let Some(secs) = obj::get_i64(t, &["tolerationSeconds"]) {
                text += &format!(" for {secs}s");
            }
            let lead = if i == 0 { "Tolerations:" } else { "" };
            self.line(0, &format!("{lead}\t{text}"));
        }
    }

    /// kubectl's generic describer, with the rest of the object as YAML.
    fn generic(&mut self, res: &ApiResource, object: &Value) {
        self.line(0, &format!("Name:\t{}", obj::name(object)));
        if res.namespaced {
            self.line(0, &format!("Namespace:\t{}", obj::namespace(object)));
        }
        self.map("Labels", obj::labels(object), "=");
        let annotations = obj::object(object, &["metadata", "annotations"]);
        self.map("Annotations", annotations, ": ");
        let mut rest = object.clone();
        if let Some(meta) = rest["metadata"].as_object_mut() {
            for shown in [
                "name",
                "namespace",
                "labels",
                "annotations",
                "managedFields",
            ] {
                meta.remove(shown);
            }
        }
        for line in serde_yaml::to_string(&rest)
            .expect("a Value always serializes")
            .lines()
        {
            self.line(0, line);
        }
    }

    /// `DescribeEvents`: Type, Reason, Age (`5s (x3 over 2m)` for repeats), From, Message.
    fn events(&mut self, events: &[Value], now: DateTime<Utc>) {
        if events.is_empty() {
            self.line(0, "Events:\t<none>");
            return;
        }
        self.line(0, "Events:");
        self.line(1, "Type\tReason\tAge\tFrom\tMessage");
        self.line(1, "----\t------\t----\t----\t-------");
        let since = |e: &Value, path: &[&str]| match obj::get_time(e, path) {
            Some(t) => human_duration(now.signed_duration_since(t)),
            None => "<unknown>".to_string(),
        };
        for e in events {
            let first = if obj::get(e, &["eventTime"]).is_some_and(|t| !t.is_null()) {
                since(e, &["eventTime"])
            } else {
                since(e, &["firstTimestamp"])
            };
            let count = obj::get_i64(e, &["count"]).unwrap_or(0);
            let age = if let Some(series) = e.get("series").filter(|s| s.is_object()) {
                let n = obj::get_i64(series, &["count"]).unwrap_or(0);
                format!(
                    "{} (x{n} over {first})",
                    since(series, &["lastObservedTime"])
                )
            } else if count > 1 {
                format!("{} (x{count} over {first})", since(e, &["lastTimestamp"]))
            } else {
                first
            };
            let from = match obj::str_or_empty(e, &["source", "component"]) {
                "" => obj::str_or_empty(e, &["reportingComponent"]),
                c => c,
            };
            let cells = [
                obj::str_or_empty(e, &["type"]),
                obj::str_or_empty(e, &["reason"]),
                &age,
                from,
                obj::str_or_empty(e, &["message"]).trim(),
            ];
            self.line(1, &cells.join("\t"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use serde_json::json;

    fn pods() -> ApiResource {
        ApiResource {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
            singular: "pod".into(),
            short_names: vec!["po".into()],
            namespaced: true,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 1, 0).single().unwrap()
    }

    #[test]
    fn pod_description_has_kubectls_sections() {
        let pod = json!({
            "metadata": {"name": "hello", "namespace": "default", "labels": {"b": "2", "a": "1"},
                "annotations": {LAST_APPLIED: "{}"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "hello:1.0",
                "args": ["x"], "env": [{"name": "GREETING", "value": "Hi"}]}]},
            "status": {"phase": "Succeeded", "hostIP": "10.0.0.1", "podIP": "10.0.0.2",
                "qosClass": "BestEffort",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "c", "ready": false, "restartCount": 1,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}]},
        });
        let event = json!({"type": "Normal", "reason": "Scheduled", "message": "assigned ",
            "source": {"component": "default-scheduler"}, "count": 1,
            "firstTimestamp": "2024-01-01T00:00:30Z", "lastTimestamp": "2024-01-01T00:00:30Z"});
        let text = describe(&pods(), &pod, &[event], now());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Name:         hello");
        assert_eq!(lines[2], "Node:         node-1/10.0.0.1");
        assert_eq!(lines[3], "Labels:       a=1");
        assert_eq!(lines[4], "              b=2");
        assert_eq!(lines[5], "Annotations:  <none>");
        for want in [
            "    State:          Terminated",
            "      Reason:       Completed",
            "    Last State:     Terminated",
            "      Exit Code:    3",
            "    Restart Count:  1",
            "      GREETING:  Hi",
            "  Ready          False ",
            "QoS Class:       BestEffort",
            "  Type    Reason     Age   From               Message",
            "  Normal  Scheduled  30s   default-scheduler  assigned",
        ] {
            assert!(lines.contains(&want), "no {want:?} in\n{text}");
        }
    }

    #[test]
    fn other_kinds_are_described_generically() {
        let cm_res = ApiResource {
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            singular: "configmap".into(),
            short_names: vec![],
            ..pods()
        };
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "d", "uid": "u"}, "data": {"k": "v"}});
        let text = describe(&cm_res, &cm, &[], now());
        assert_eq!(
            text,
            "Name:         c\nNamespace:    d\nLabels:       <none>\nAnnotations:  <none>\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  uid: u\ndata:\n  k: v\nEvents:  <none>\n"
        );
    }
}
