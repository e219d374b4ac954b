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
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash())}),
        );
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
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(root()["paths"].get("apis/node.k8s.io/v1").is_some());
        assert!(group_version("apis/policy/v1").is_none());
    }
}

/// The OpenAPI v2 document, which older kubectl versions (1.27) fetch before `apply` of an
/// existing object to look up strategic-merge metadata. It carries no definitions, so
/// kubectl uses the metadata compiled into it for built-in kinds (what it does for any
/// kind the document lacks). kubectl asks for gnostic's protobuf encoding; JSON is served
/// to clients that ask for JSON.
pub fn v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": version()}, "paths": {}, "definitions": {}})
}

fn version() -> String {
    format!(
        "v{}.{}",
        super::discovery::KUBERNETES_VERSION.0,
        super::discovery::KUBERNETES_VERSION.1
    )
}

/// gnostic `openapi_v2.Document { swagger = 1; info = 2 }` with `Info { title = 1; version = 2 }`.
pub fn v2_protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    proto_string(&mut info, 1, "Kubernetes");
    proto_string(&mut info, 2, &version());
    let mut doc = Vec::new();
    proto_string(&mut doc, 1, "2.0");
    proto_bytes(&mut doc, 2, &info);
    doc
}

/// What kube-openapi answers for the protobuf document (the `@` form kubectl asks for is
/// not a valid media type to parse back).
pub const V2_PROTOBUF_TYPE: &str = "application/octet-stream";

fn proto_string(out: &mut Vec<u8>, field: u8, s: &str) {
    proto_bytes(out, field, s.as_bytes());
}

/// A length-delimited protobuf field (wire type 2).
fn proto_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    let mut len = bytes.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod v2_tests {
    use super::*;

    #[test]
    fn v2_protobuf_encodes_swagger_and_info() {
        let doc = v2_protobuf();
        assert_eq!(&doc[..5], b"\x0a\x032.0");
        assert_eq!(doc[5], 0x12);
        assert_eq!(doc[6] as usize, doc.len() - 7);
        assert!(doc.windows(10).any(|w| w == b"Kubernetes"));
    }
}
