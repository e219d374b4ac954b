//! What the server serves, read from its discovery documents: maps a manifest's
//! `apiVersion`+`kind`, or a resource name a user types (`po`, `pods`, `Pod`,
//! `runtimeclasses.node.k8s.io`), to the resource's REST path.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("the server doesn't have a resource type \"{0}\"")]
    UnknownType(String),
    #[error(transparent)]
    Request(#[from] kube::Error),
}

/// One resource (not a subresource) of one group version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

impl ApiResource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How kubectl names the kind in `pod/hello created`: lower-case kind, then the group.
    pub fn kind_ref(&self) -> String {
        self.with_group(&self.kind.to_lowercase())
    }

    /// How the server names the resource in messages: `pods`, `runtimeclasses.node.k8s.io`.
    pub fn qualified(&self) -> String {
        self.with_group(&self.plural)
    }

    fn with_group(&self, name: &str) -> String {
        if self.group.is_empty() {
            name.to_string()
        } else {
            format!("{name}.{}", self.group)
        }
    }

    /// The collection's path; `namespace` is ignored for cluster-scoped resources and
    /// `None` means every namespace.
    pub fn path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{root}/namespaces/{ns}/{}", self.plural),
            _ => format!("{root}/{}", self.plural),
        }
    }

    /// The names a user may type for this resource, lower-case.
    fn matches(&self, typed: &str) -> bool {
        let typed = typed.to_lowercase();
        let (name, group) = match typed.split_once('.') {
            Some((n, g)) => (n, Some(g)),
            None => (typed.as_str(), None),
        };
        let group_ok = match group {
            None => true,
            // `pods.v1`, `runtimeclasses.v1.node.k8s.io`, `runtimeclasses.node.k8s.io`
            Some(g) => {
                g == self.group
                    || g == self.version && self.group.is_empty()
                    || g == format!("{}.{}", self.version, self.group)
            }
        };
        group_ok
            && (name == self.plural
                || name == self.singular
                || name == self.kind.to_lowercase()
                || self.short_names.iter().any(|s| s == name))
    }
}

/// Every resource the server lists, preferred group versions first.
#[derive(Debug, Default)]
pub struct Discovery {
    resources: Vec<ApiResource>,
}

impl Discovery {
    pub async fn run(client: &kube::Client) -> Result<Self, DiscoveryError> {
        let mut lists = Vec::new();
        for version in client.list_core_api_versions().await?.versions {
            lists.push(client.list_core_api_resources(&version).await?);
        }
        for group in client.list_api_groups().await?.groups {
            let preferred = group.preferred_version.map(|v| v.group_version);
            let mut versions: Vec<String> = group
                .versions
                .into_iter()
                .map(|v| v.group_version)
                .collect();
            // The preferred version first, so a bare name resolves to it.
            versions.sort_by_key(|v| Some(v) != preferred.as_ref());
            for gv in versions {
                lists.push(client.list_api_group_resources(&gv).await?);
            }
        }
        Ok(Self::from_lists(lists))
    }

    pub(super) fn from_lists(lists: Vec<APIResourceList>) -> Self {
        let mut resources = Vec::new();
        for list in lists {
            let (group, version) = match list.group_version.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), list.group_version.clone()),
            };
            for r in list.resources.into_iter().filter(|r| !r.name.contains('/')) {
                resources.push(ApiResource {
                    group: group.clone(),
                    version: version.clone(),
                    singular: if r.singular_name.is_empty() {
                        r.kind.to_lowercase()
                    } else {
                        r.singular_name
                    },
                    kind: r.kind,
                    plural: r.name,
                    short_names: r.short_names.unwrap_or_default(),
                    namespaced: r.namespaced,
                });
            }
        }
        Discovery { resources }
    }

    /// The resource of a manifest's `apiVersion` and `kind`.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<&ApiResource> {
        self.resources
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
    }

    /// The resource a user typed on the command line.
    pub fn for_name(&self, typed: &str) -> Result<&ApiResource, DiscoveryError> {
        self.resources
            .iter()
            .find(|r| r.matches(typed))
            .ok_or_else(|| DiscoveryError::UnknownType(typed.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn discovery() -> Discovery {
        let core = json!({"groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": [], "shortNames": ["po"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": []},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": [], "shortNames": ["no"]},
        ]});
        let node = json!({"groupVersion": "node.k8s.io/v1", "resources": [
            {"name": "runtimeclasses", "singularName": "", "namespaced": false, "kind": "RuntimeClass", "verbs": []},
        ]});
        Discovery::from_lists(vec![
            serde_json::from_value(core).unwrap(),
            serde_json::from_value(node).unwrap(),
        ])
    }

    #[test]
    fn names_resolve_by_plural_singular_short_kind_and_group() {
        let d = discovery();
        for typed in ["po", "pod", "pods", "Pod", "PODS", "pods.v1"] {
            assert_eq!(d.for_name(typed).unwrap().plural, "pods", "{typed}");
        }
        for typed in [
            "runtimeclass",
            "runtimeclasses",
            "runtimeclasses.node.k8s.io",
            "runtimeclass.v1.node.k8s.io",
        ] {
            assert_eq!(
                d.for_name(typed).unwrap().plural,
                "runtimeclasses",
                "{typed}"
            );
        }
        assert_eq!(
            d.for_name("log").unwrap_err().to_string(),
            "the server doesn't have a resource type \"log\""
        );
        assert!(d.for_name("pods.apps").is_err());
    }

    #[test]
    fn kinds_resolve_with_their_api_version() {
        let d = discovery();
        let rc = d.for_kind("node.k8s.io/v1", "RuntimeClass").unwrap();
        assert_eq!(rc.kind_ref(), "runtimeclass.node.k8s.io");
        assert_eq!(rc.path(Some("ns")), "/apis/node.k8s.io/v1/runtimeclasses");
        assert!(d.for_kind("v1", "RuntimeClass").is_none());
        let pods = d.for_kind("v1", "Pod").unwrap();
        assert_eq!(pods.path(Some("a")), "/api/v1/namespaces/a/pods");
        assert_eq!(pods.path(None), "/api/v1/pods");
        assert_eq!(pods.qualified(), "pods");
    }
}
