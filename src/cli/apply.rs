//! `wkube apply -f`: kubectl's client-side apply. The manifest last applied is kept in the
//! object's `kubectl.kubernetes.io/last-applied-configuration` annotation (so kubectl and
//! wkube can take turns applying), and an existing object gets a strategic merge patch that
//! sets what the manifest says and removes what an earlier manifest said but this one no
//! longer does.
//!
//! All or nothing, as far as a client can make it: every document of every file is parsed
//! and resolved, then every write is tried with `dryRun=All`, and only when all of them
//! pass are the writes made.

use std::collections::HashSet;

use clap::Args;
use control::patch::{self as smp, ListStrategy};
use serde_json::{json, Map, Value};

use super::client::{ClientError, Cluster};
use super::discovery::ApiResource;
use super::manifest::{self, Document};
use super::printer;
use super::{Connection, Reported};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them (*.yaml, *.yml, *.json), or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

/// What applying one document does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The object does not exist: create it with this body.
    Create(Value),
    /// The object exists: send this strategic merge patch.
    Patch(Value),
    /// The manifest is the one last applied.
    Unchanged,
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Action::Create(_) => "created",
            Action::Patch(_) => "configured",
            Action::Unchanged => "unchanged",
        }
    }
}

/// A document resolved to where it is written, with what to do there.
struct Planned<'a> {
    doc: &'a Document,
    res: &'a ApiResource,
    namespace: Option<String>,
    action: Action,
}

impl Planned<'_> {
    fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `error when creating "FILE" (document at line N)`: kubectl's wording, plus the line.
    fn context(&self) -> String {
        let doing = match self.action {
            Action::Create(_) => "creating",
            _ => "patching",
        };
        format!(
            "error when {doing} \"{}\" (document at line {})",
            self.doc.file, self.doc.line
        )
    }

    async fn write(&self, cluster: &Cluster, dry_run: bool) -> Result<(), ClientError> {
        let result = match &self.action {
            Action::Create(body) => cluster.create(self.res, self.ns(), body, dry_run).await,
            Action::Patch(patch) => {
                let name = self.doc.name();
                cluster
                    .patch(self.res, self.ns(), name, patch, dry_run)
                    .await
            }
            Action::Unchanged => return Ok(()),
        };
        result.map(drop).map_err(|e| e.when(self.context()))
    }
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let docs = manifest::read_all(&args.files, "apply")?;
    let cluster = args.conn.connect().await?;
    let default_ns = args.conn.namespace_or(&cluster);

    let mut resolved = Vec::new();
    for doc in &docs {
        let (res, namespace) = manifest::resolve(doc, &cluster.discovery, &default_ns)?;
        resolved.push((doc, res, namespace));
    }

    let mut plans = Vec::new();
    for (doc, res, namespace) in resolved {
        let live = match cluster.get(res, namespace.as_deref(), doc.name()).await {
            Ok(live) => Some(live),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let manifest = with_namespace(&doc.object, namespace.as_deref());
        if live.as_ref().is_some_and(|l| last_applied(l).is_none()) {
            eprintln!(
                "Warning: resource {}/{} is missing the {LAST_APPLIED} annotation which is \
                 required by wkube apply. It will be patched automatically.",
                res.qualified(),
                doc.name()
            );
        }
        let action = plan(&manifest, live.as_ref());
        plans.push(Planned {
            doc,
            res,
            namespace,
            action,
        });
    }

    // Objects in a namespace this same apply creates cannot be dry-run before the namespace
    // exists; their real write still comes after the namespace's.
    let new_namespaces: HashSet<&str> = plans
        .iter()
        .filter(|p| p.res.kind == "Namespace" && matches!(p.action, Action::Create(_)))
        .map(|p| p.doc.name())
        .collect();
    let mut failed = false;
    for p in &plans {
        match p.write(&cluster, true).await {
            Err(ClientError::Server(e))
                if e.status.reason == "NotFound"
                    && e.status.details.as_ref().is_some_and(|d| {
                        d.kind == "namespaces" && new_namespaces.contains(d.name.as_str())
                    }) => {}
            Err(e) => {
                eprintln!("{}", super::render(&e.into()));
                failed = true;
            }
            Ok(()) => {}
        }
    }
    if failed {
        return Err(Reported.into());
    }
    for p in &plans {
        p.write(&cluster, false).await?;
        println!("{}/{} {}", p.res.kind_ref(), p.doc.name(), p.action.verb());
    }
    Ok(())
}

/// The manifest with the namespace it is applied to, which kubectl also records in the
/// last-applied annotation.
fn with_namespace(object: &Value, namespace: Option<&str>) -> Value {
    let mut object = object.clone();
    if let (Some(ns), Some(meta)) = (namespace, object["metadata"].as_object_mut()) {
        meta.insert("namespace".into(), json!(ns));
    }
    object
}

/// The manifest recorded in `live`'s annotation, if any and readable.
fn last_applied(live: &Value) -> Option<Value> {
    live.pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// Decides what applying `manifest` does given the `live` object (if it exists).
pub fn plan(manifest: &Value, live: Option<&Value>) -> Action {
    // What kubectl records: the manifest with its annotations minus this one, kept as an
    // empty map when that leaves none, keys sorted (Go marshals maps sorted). Recording
    // the same bytes lets kubectl and wkube each see the other's apply as unchanged.
    let mut applied = manifest.clone();
    if let Some(meta) = applied["metadata"].as_object_mut() {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.remove(LAST_APPLIED);
        }
    }
    let applied = printer::sort_keys(&applied);
    let previous = live.map(|l| last_applied(l).unwrap_or_else(|| json!({})));
    if previous.as_ref() == Some(&applied) {
        return Action::Unchanged;
    }
    // kubectl stores `json.Marshal` output plus the newline its encoder adds.
    let recorded = serde_json::to_string(&applied).expect("a Value always serializes") + "\n";
    let mut desired = applied;
    if let Some(meta) = desired["metadata"].as_object_mut() {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        annotations[LAST_APPLIED] = json!(recorded);
    }
    match previous {
        None => Action::Create(desired),
        Some(previous) => {
            let kind = desired["kind"].as_str().unwrap_or_default();
            Action::Patch(patch(&previous, &desired, smp::root_type(kind)))
        }
    }
}

/// A type in the server's strategic-merge schema (`None`: no list merges below).
type Ty = Option<&'static str>;

/// A strategic merge patch from the manifest last applied to the desired one: the desired
/// fields as they are, `null` for map keys that are gone, `$patch: delete` for elements of
/// merge-keyed lists that are gone, and `$deleteFromPrimitiveList` for gone elements of
/// merged primitive lists. Other lists are atomic and simply replaced.
fn patch(previous: &Value, desired: &Value, ty: Ty) -> Value {
    let (Value::Object(prev), Value::Object(want)) = (previous, desired) else {
        return desired.clone();
    };
    let mut out = Map::new();
    for (key, value) in want {
        let (child, strategy) = smp::lookup(ty, key);
        let value = match (prev.get(key), value, strategy) {
            (Some(Value::Array(old)), Value::Array(new), ListStrategy::Merge { key: Some(k) }) => {
                json!(merge_list(old, new, k, child))
            }
            (Some(Value::Array(old)), Value::Array(new), ListStrategy::Merge { key: None }) => {
                let gone: Vec<&Value> = old.iter().filter(|v| !new.contains(v)).collect();
                if !gone.is_empty() {
                    out.insert(format!("$deleteFromPrimitiveList/{key}"), json!(gone));
                }
                value.clone()
            }
            (Some(old), _, _) => patch(old, value, child),
            (None, _, _) => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    for key in prev.keys().filter(|k| !want.contains_key(*k)) {
        out.insert(key.clone(), Value::Null);
    }
    Value::Object(out)
}

fn merge_list(old: &[Value], new: &[Value], key: &str, ty: Ty) -> Vec<Value> {
    let find = |list: &[Value], v: &Value| -> Option<Value> {
        list.iter().find(|e| e.get(key) == v.get(key)).cloned()
    };
    let mut out: Vec<Value> = new
        .iter()
        .map(|n| match find(old, n) {
            Some(o) => patch(&o, n, ty),
            None => n.clone(),
        })
        .collect();
    for o in old.iter().filter(|o| find(new, o).is_none()) {
        out.push(json!({key: o[key], "$patch": "delete"}));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: Value, env: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i", "env": env}]}})
    }

    fn live_after(action: &Action) -> Value {
        match action {
            Action::Create(body) => body.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_records_the_manifest() {
        let m = pod(json!({"a": "1"}), json!([]));
        let body = live_after(&plan(&m, None));
        let recorded = body["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        assert!(recorded.ends_with('\n'));
        let mut want = m.clone();
        want["metadata"]["annotations"] = json!({});
        assert_eq!(serde_json::from_str::<Value>(recorded).unwrap(), want);
        assert!(recorded.starts_with(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{},"labels""#
        ));
        assert_eq!(body["spec"], m["spec"]);
    }

    #[test]
    fn same_manifest_is_unchanged() {
        let m = pod(json!({"a": "1"}), json!([]));
        let live = live_after(&plan(&m, None));
        assert_eq!(plan(&m, Some(&live)), Action::Unchanged);
        // Applying what `get -o yaml` shows (annotation included) changes nothing either.
        assert_eq!(plan(&live, Some(&live)), Action::Unchanged);
    }

    #[test]
    fn removed_fields_become_nulls_and_deletes() {
        let old = pod(
            json!({"a": "1", "b": "2"}),
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]),
        );
        let live = live_after(&plan(&old, None));
        let new = pod(json!({"a": "1"}), json!([{"name": "X", "value": "3"}]));
        let Action::Patch(p) = plan(&new, Some(&live)) else {
            panic!("not a patch");
        };
        assert_eq!(p["metadata"]["labels"], json!({"a": "1", "b": null}));
        assert_eq!(
            p["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "3"}, {"name": "Y", "$patch": "delete"}])
        );
        assert!(p["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap()
            .contains("\"value\":\"3\""));
        // The server's own strategic merge yields the new manifest's fields.
        let bytes = serde_json::to_vec(&p).unwrap();
        let merged = smp::apply("Pod", &live, &bytes, smp::PatchType::StrategicMerge).unwrap();
        assert_eq!(merged["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(
            merged["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "3"}])
        );
    }

    #[test]
    fn merged_primitive_lists_delete_what_is_gone() {
        let meta = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
        let live = live_after(&plan(&meta(json!(["a", "b"])), None));
        let Action::Patch(p) = plan(&meta(json!(["a"])), Some(&live)) else {
            panic!("not a patch");
        };
        assert_eq!(
            p["metadata"]["$deleteFromPrimitiveList/finalizers"],
            json!(["b"])
        );
    }

    #[test]
    fn objects_without_the_annotation_are_patched() {
        let m = pod(json!({"a": "1"}), json!([]));
        let live = json!({"metadata": {"name": "p"}});
        let Action::Patch(p) = plan(&m, Some(&live)) else {
            panic!("not a patch");
        };
        assert_eq!(p["metadata"]["labels"], json!({"a": "1"}));
    }
}
