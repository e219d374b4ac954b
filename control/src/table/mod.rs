//! Server-side `meta.k8s.io/v1` `Table` rendering for `kubectl get`, following Kubernetes'
//! printers (`pkg/printers/internalversion/printers.go`).
//!
//! The API server always prints the wide form (`GenerateOptions{Wide: true}`): every row has
//! a cell for every column, and kubectl hides `priority: 1` columns unless `-o wide`.

mod columns;
mod pods;
mod simple;
mod workloads;

use crate::obj;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub use columns::column_definitions;

/// The `includeObject` query parameter of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// The default: a `PartialObjectMetadata` per row.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the query value; unknown values are the caller's 400 to give.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "" | "Metadata" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// Builds the Table for `objects` of `resource`; `list_meta` becomes the Table's metadata
/// (resourceVersion, continue).
pub fn table(
    resource: &str,
    objects: &[Value],
    now: DateTime<Utc>,
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (cells, conditions) = row_cells(resource, o, now);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(c) = conditions {
                row.insert("conditions".into(), c);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_object_metadata(o));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), o.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": if list_meta.is_null() { json!({}) } else { list_meta },
        "columnDefinitions": column_definitions(resource),
        "rows": rows,
    })
}

/// The `PartialObjectMetadata` of an object, as `includeObject=Metadata` returns it.
pub fn partial_object_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The cells of one row and, for pods, the row conditions.
fn row_cells(resource: &str, o: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
    match resource {
        "pods" => pods::row(o, now),
        "nodes" => (simple::node(o, now), None),
        "events" => (simple::event(o, now), None),
        "namespaces" => (simple::namespace(o, now), None),
        "configmaps" => (simple::configmap(o, now), None),
        "secrets" => (simple::secret(o, now), None),
        "runtimeclasses" => (simple::runtimeclass(o, now), None),
        "leases" => (simple::lease(o, now), None),
        "services" => (simple::service(o, now), None),
        "deployments" => (workloads::deployment(o, now), None),
        "replicasets" => (workloads::replicaset(o, now), None),
        "statefulsets" => (workloads::statefulset(o, now), None),
        "daemonsets" => (workloads::daemonset(o, now), None),
        "controllerrevisions" => (workloads::revision(o, now), None),
        "jobs" => (workloads::job(o, now), None),
        "cronjobs" => (workloads::cronjob(o, now), None),
        "persistentvolumeclaims" => (simple::claim(o, now), None),
        "persistentvolumes" => (simple::volume(o, now), None),
        "storageclasses" => (simple::storage_class(o, now), None),
        _ => (default_row(o), None),
    }
}

/// The default table convertor's row: name and RFC 3339 creation time.
fn default_row(o: &Value) -> Vec<Value> {
    let created = obj::get_time(o, &["metadata", "creationTimestamp"])
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    vec![json!(obj::name(o)), json!(created)]
}

/// `translateTimestampSince`: `<unknown>` for a missing timestamp, else `HumanDuration`.
pub fn age(o: &Value, path: &[&str], now: DateTime<Utc>) -> String {
    match obj::get_time(o, path) {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// apimachinery's `duration.HumanDuration`: about 2–3 significant figures.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn human_duration_table() {
        let cases: &[(i64, &str)] = &[
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 25 * 60, "3h25m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 5 * 3600, "3d5h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (800 * 86400, "2y70d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::seconds(*secs)), *want, "{secs}");
        }
    }

    #[test]
    fn table_shape_and_include_object() {
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 10, 0)
            .single()
            .unwrap_or_default();
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": []}, "data": {"a": "1"}, "binaryData": {"b": ""}});
        let t = table(
            "configmaps",
            std::slice::from_ref(&cm),
            now,
            IncludeObject::Metadata,
            json!({"resourceVersion": "7"}),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        assert_eq!(t["rows"][0]["cells"], json!(["c", 2, "10m"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "c");
        let t = table(
            "configmaps",
            std::slice::from_ref(&cm),
            now,
            IncludeObject::None,
            Value::Null,
        );
        assert!(t["rows"][0].get("object").is_none());
        assert_eq!(t["metadata"], json!({}));
        let t = table(
            "configmaps",
            std::slice::from_ref(&cm),
            now,
            IncludeObject::Object,
            Value::Null,
        );
        assert_eq!(t["rows"][0]["object"], cm);
        let t = table("widgets", &[cm], now, IncludeObject::None, Value::Null);
        assert_eq!(t["rows"][0]["cells"], json!(["c", "2024-01-01T00:00:00Z"]));
    }
}
