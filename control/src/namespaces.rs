//! The namespace controller: a namespace marked for deletion (`Terminating`) has everything in
//! it deleted, then its `kubernetes` finalizer removed, at which point the store drops it.
//!
//! This is Kubernetes' order: pods are deleted gracefully like any other delete, so their
//! node stops them first; the namespace only goes once nothing is left in it. `kubectl delete
//! namespace` waits for exactly that.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api::objects::{name_of, DeleteOptions, ListOptions, Part};
use crate::api::resources::{self, ResourceInfo, RESOURCES};
use crate::api::{Api, ApiError};

/// How often terminating namespaces are looked at again while they wait for pods to stop.
const RECHECK: Duration = Duration::from_secs(1);

/// The finalizer the namespace controller owns (`spec.finalizers`).
const FINALIZER: &str = "kubernetes";

pub struct NamespaceController {
    api: Api,
}

impl NamespaceController {
    pub fn new(api: Api) -> Self {
        NamespaceController { api }
    }

    /// Runs until the store closes.
    pub async fn run(self) -> Result<(), ApiError> {
        let namespaces = namespaces()?;
        loop {
            let mut watch = self.api.watch(namespaces, None, ListOptions::default())?;
            let mut recheck = tokio::time::interval(RECHECK);
            loop {
                tokio::select! {
                    event = watch.next() => match event {
                        Some(e) if e.kind == "ERROR" => break,
                        Some(e) if is_terminating(&e.object) => self.finalize(name_of(&e.object)).await,
                        Some(_) => {}
                        None => return Ok(()),
                    },
                    _ = recheck.tick() => self.finalize_all().await?,
                }
            }
        }
    }

    async fn finalize_all(&self) -> Result<(), ApiError> {
        let (all, _) = self
            .api
            .list(namespaces()?, None, &ListOptions::default())?;
        for ns in all.iter().filter(|ns| is_terminating(ns)) {
            self.finalize(name_of(ns)).await;
        }
        Ok(())
    }

    async fn finalize(&self, namespace: &str) {
        if let Err(e) = self.try_finalize(namespace).await {
            tracing::warn!(namespace, error = %e, "cannot finalize namespace");
        }
    }

    /// Deletes what is left in `namespace`; once nothing is, drops the finalizer.
    async fn try_finalize(&self, namespace: &str) -> Result<(), ApiError> {
        // Objects still there after this pass: pods stopping on their node, or finalizers.
        let mut left = 0;
        for res in namespaced() {
            let (items, _) = self
                .api
                .list(res, Some(namespace), &ListOptions::default())?;
            for item in &items {
                if item["metadata"].get("deletionTimestamp").is_some() {
                    left += 1;
                    continue;
                }
                match self
                    .api
                    .delete(
                        res,
                        Some(namespace),
                        name_of(item),
                        &DeleteOptions::default(),
                    )
                    .await
                {
                    Ok((_, gone)) => left += usize::from(!gone),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if left > 0 {
            return Ok(());
        }
        let result = self
            .api
            .update_with(namespaces()?, None, namespace, Part::Main, |current| {
                Ok(without_finalizer(current))
            })
            .await;
        match result {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn namespaces() -> Result<&'static ResourceInfo, ApiError> {
    resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::Internal("namespaces unknown".into()))
}

/// Namespaced kinds, events last: deleting pods records events about them.
fn namespaced() -> impl Iterator<Item = &'static ResourceInfo> {
    let (events, others): (Vec<_>, Vec<_>) = RESOURCES
        .iter()
        .filter(|r| r.namespaced)
        .partition(|r| r.kind == "Event");
    others.into_iter().chain(events)
}

fn is_terminating(ns: &Value) -> bool {
    ns["metadata"].get("deletionTimestamp").is_some()
}

/// The namespace without the controller's finalizer (an unchanged namespace if it has none:
/// updating it still removes a namespace that is finalized already).
fn without_finalizer(ns: &Value) -> Option<Value> {
    let finalizers = ns["spec"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let kept: Vec<Value> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
    let mut ns = ns.clone();
    ns["spec"]["finalizers"] = json!(kept);
    Some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn only_the_kubernetes_finalizer_is_removed() {
        let ns = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes", "example.com/keep"]}});
        assert_eq!(
            without_finalizer(&ns).unwrap()["spec"]["finalizers"],
            json!(["example.com/keep"])
        );
        let none = json!({"metadata": {"name": "a"}, "spec": {}});
        assert_eq!(
            without_finalizer(&none).unwrap()["spec"]["finalizers"],
            json!([])
        );
    }

    #[test]
    fn events_are_deleted_last() {
        let kinds: Vec<&str> = namespaced().map(|r| r.kind).collect();
        assert_eq!(kinds.last(), Some(&"Event"));
        assert!(kinds.contains(&"Pod") && kinds.contains(&"ConfigMap"));
        assert!(!kinds.contains(&"Namespace"));
    }

    #[tokio::test]
    async fn a_deleted_namespace_goes_once_its_contents_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let api = Api::new(store);
        let ns_res = namespaces().unwrap();
        let cms = resources::find("", "v1", "configmaps").unwrap();
        api.create(
            ns_res,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
            false,
        )
        .await
        .unwrap();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "team"}});
        api.create(cms, Some("team"), cm, false).await.unwrap();
        let (_, gone) = api
            .delete(ns_res, None, "team", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(!gone, "a namespace is only marked at first");
        assert_eq!(
            api.get(ns_res, None, "team").unwrap()["status"]["phase"],
            "Terminating"
        );

        let controller = NamespaceController::new(api.clone());
        controller.finalize_all().await.unwrap();
        assert!(matches!(
            api.get(cms, Some("team"), "c"),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            api.get(ns_res, None, "team"),
            Err(ApiError::NotFound { .. })
        ));
    }
}
