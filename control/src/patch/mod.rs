//! The three patch types `kubectl` sends: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386) and Kubernetes' strategic merge patch.
//!
//! `apply` is pure: original object and patch bytes in, patched object out. The HTTP layer
//! maps `PatchError::status_code` to the Status Kubernetes would answer with.

mod schema;
mod strategic;

use serde_json::Value;
use thiserror::Error;

pub use schema::{lookup, root_type, ListStrategy};

/// A patch `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

impl PatchType {
    /// Recognizes the media type, ignoring parameters such as `; charset=utf-8`.
    /// `application/apply-patch+yaml` (server-side apply) is not one of these.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            _ => None,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// Why a patch could not be applied. Display texts follow apimachinery's where one exists.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The body is not JSON at all (Kubernetes: 400 "invalid JSON patch").
    #[error("invalid JSON patch")]
    InvalidJson,
    /// The body is JSON but not of the shape the patch type needs (400).
    #[error("{0}")]
    Decode(String),
    /// A JSON patch operation failed against the object (422).
    #[error("{0}")]
    JsonPatchApply(String),
    /// apimachinery `mergepatch.ErrBadJSONDoc` (400).
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// `ErrBadPatchFormatForPrimitiveList` (400).
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    /// `ErrBadPatchFormatForRetainKeys` (400).
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    /// `ErrBadPatchFormatForSetElementOrderList` (400).
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    /// `ErrNoListOfLists` (422).
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// Any other strategic-merge failure; Kubernetes returns these as 500 InternalError.
    #[error("{0}")]
    Strategic(String),
}

impl PatchError {
    /// The HTTP status Kubernetes answers with (`interpretStrategicMergePatchError` and
    /// `applyJSPatch` in apiserver's `handlers/patch.go`). 400 → reason `BadRequest`,
    /// 422 → reason `Invalid`-less generic Status (empty reason), 500 → `InternalError`.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::InvalidJson
            | Self::Decode(_)
            | Self::BadJsonDoc
            | Self::BadPrimitiveList
            | Self::BadRetainKeys
            | Self::BadSetElementOrder => 400,
            Self::JsonPatchApply(_) | Self::ListOfLists => 422,
            Self::Strategic(_) => 500,
        }
    }
}

/// Applies `patch` of type `ty` to `original`. `kind` (e.g. "Pod", "Deployment") selects the
/// strategic-merge metadata; kinds without metadata merge maps and replace lists.
pub fn apply(
    kind: &str,
    original: &Value,
    patch: &[u8],
    ty: PatchType,
) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch).map_err(|_| PatchError::InvalidJson)?;
    match ty {
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_value(patch).map_err(|e| PatchError::Decode(e.to_string()))?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| PatchError::JsonPatchApply(e.to_string()))?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                // evanphx/json-patch refuses non-object merge patches against objects.
                return Err(PatchError::Decode("invalid JSON Patch".to_string()));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::StrategicMerge => strategic::apply(kind, original, patch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            ("application/merge-patch+json", Some(PatchType::Merge)),
            (
                "application/strategic-merge-patch+json; charset=utf-8",
                Some(PatchType::StrategicMerge),
            ),
            ("application/apply-patch+yaml", None),
            ("application/json", None),
        ];
        for (ct, want) in cases {
            assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
        }
    }

    #[test]
    fn json_patch_ops_and_errors() {
        let o = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        let p = br#"[{"op":"replace","path":"/metadata/labels/x","value":"2"},{"op":"add","path":"/metadata/labels/y","value":"3"}]"#;
        let got = apply("ConfigMap", &o, p, PatchType::Json);
        assert_eq!(
            got,
            Ok(json!({"metadata": {"name": "a", "labels": {"x": "2", "y": "3"}}}))
        );
        let bad = apply(
            "ConfigMap",
            &o,
            br#"[{"op":"remove","path":"/nope"}]"#,
            PatchType::Json,
        );
        assert_eq!(bad.as_ref().map_err(PatchError::status_code), Err(422));
        let test_fail = apply(
            "ConfigMap",
            &o,
            br#"[{"op":"test","path":"/metadata/name","value":"b"}]"#,
            PatchType::Json,
        );
        assert_eq!(test_fail.map_err(|e| e.status_code()), Err(422));
        assert_eq!(
            apply("ConfigMap", &o, b"{", PatchType::Json),
            Err(PatchError::InvalidJson)
        );
        assert_eq!(
            apply("ConfigMap", &o, br#"{"op":"add"}"#, PatchType::Json)
                .map_err(|e| e.status_code()),
            Err(400)
        );
    }

    #[test]
    fn merge_patch_rfc7386() {
        let o = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let got = apply(
            "X",
            &o,
            br#"{"a":"z","c":{"f":null},"l":[3]}"#,
            PatchType::Merge,
        );
        assert_eq!(got, Ok(json!({"a": "z", "c": {"d": "e"}, "l": [3]})));
        assert_eq!(
            apply("X", &o, b"[1]", PatchType::Merge).map_err(|e| e.status_code()),
            Err(400)
        );
    }
}
