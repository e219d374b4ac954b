//! The `scale` subresource: an `autoscaling/v1` `Scale` view of a workload's
//! `spec.replicas` (what `kubectl scale` and autoscalers read and write).

use serde_json::{json, Value};

use super::errors::ApiError;
use super::objects::{invalid_kind, Api, Part};
use super::resources::ResourceInfo;
use crate::patch::{self, PatchType};
use crate::selectors::LabelSelector;
use crate::store::revision_of;
use crate::validation::FieldError;

/// The Scale of a workload object.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = LabelSelector::from_json(&obj["spec"]["selector"])
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    })
}

impl Api {
    pub fn get_scale(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get(res, ns, name).map(|o| scale_of(&o))
    }

    /// PUT: the Scale's `spec.replicas` becomes the object's, conditional on the Scale's
    /// resourceVersion when it carries one.
    pub async fn update_scale(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        scale: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.write_scale(res, ns, name, dry_run, |_| Ok(scale.clone()))
            .await
    }

    /// PATCH: the patch applies to the current Scale.
    pub async fn patch_scale(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        ty: PatchType,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.write_scale(res, ns, name, dry_run, |current| {
            patch::apply("Scale", current, body, ty)
                .map_err(|e| ApiError::BadRequest(e.to_string()))
        })
        .await
    }

    /// Applies `change` to the latest Scale and writes its replicas into the object.
    async fn write_scale(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let apply = |current: &Value| -> Result<Value, ApiError> {
            let new = change(&scale_of(current))?;
            let pinned = revision_of(&new);
            if pinned != 0 && pinned != revision_of(current) {
                return Err(ApiError::conflict(&res.qualified(), name));
            }
            let replicas = replicas_of(&new, name)?;
            let mut updated = current.clone();
            updated["spec"]["replicas"] = json!(replicas);
            Ok(updated)
        };
        if dry_run {
            return apply(&self.get(res, ns, name)?).map(|o| scale_of(&o));
        }
        let updated = self
            .update_with(res, ns, name, Part::Main, |current| {
                apply(current).map(Some)
            })
            .await?;
        Ok(scale_of(&updated))
    }
}

/// The Scale's `spec.replicas`, validated as `ValidateScale` does.
fn replicas_of(scale: &Value, name: &str) -> Result<i64, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        let errors = [FieldError::invalid(
            "spec.replicas",
            json!(replicas),
            "must be greater than or equal to 0",
        )];
        return Err(invalid_kind("Scale", "autoscaling", name, &errors));
    }
    Ok(replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_mirrors_replicas_and_selector() {
        let d = json!({"metadata": {"name": "d", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "a"}}}, "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=a"}));
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        let bad = json!({"spec": {"replicas": -2}});
        assert_eq!(
            replicas_of(&bad, "d").unwrap_err().to_string(),
            "Scale.autoscaling \"d\" is invalid: spec.replicas: Invalid value: -2: must be greater than or equal to 0"
        );
    }
}
