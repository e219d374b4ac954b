//! The OpenAPI v3 documents kubectl reads before it writes: it checks that a kind's PATCH
//! accepts `fieldValidation` (server-side field validation) and otherwise fails or falls
//! back to client-side schema validation. Each group version gets a document with its
//! operations and their group-version-kind; schemas are left out (kubectl does not need
//! them for these commands).

use serde_json::{json, Map, Value};

use super::resources::{ResourceInfo, RESOURCES};

/// The group-version path segment, `api/v1` or `apis/<group>/<version>`.
fn gv_path(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

/// A content hash of this build's documents: they change only with the binary.
fn hash() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub fn root() -> Value {
    let mut paths = Map::new();
    for r in RESOURCES {
        let p = gv_path(r);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash())}));
    }
    json!({ "paths": paths })
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &ResourceInfo, verb: &str, params: &[&str]) -> Value {
    json!({
        "operationId": format!("{verb}{}", r.kind),
        "parameters": params.iter().map(|p| parameter(p)).collect::<Vec<_>>(),
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "responses": {"200": {"description": "OK"}},
    })
}

/// The document of one group version (`api/v1`, `apis/node.k8s.io/v1`), if served.
pub fn group_version(path: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut found = false;
    for r in RESOURCES.iter().filter(|r| gv_path(r) == path) {
        found = true;
        let base = if r.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("/{path}/{}", r.plural)
        };
        let write = ["dryRun", "fieldManager", "fieldValidation"];
        paths.insert(
            base.clone(),
            json!({
                "get": operation(r, "list", &["labelSelector", "fieldSelector", "resourceVersion", "watch"]),
                "post": operation(r, "post", &write),
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": operation(r, "get", &[]),
                "put": operation(r, "put", &write),
                "patch": operation(r, "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
                "delete": operation(r, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
    }
    found.then(|| {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": format!("v{}.{}", super::discovery::KUBERNETES_VERSION.0, super::discovery::KUBERNETES_VERSION.1)},
            "paths": paths,
            "components": {"schemas": {}},
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_patch_declares_field_validation() {
        let doc = group_version("api/v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(root()["paths"].get("apis/node.k8s.io/v1").is_some());
        assert!(group_version("apis/apps/v1").is_none());
    }
}
