//! The kinds this API server serves, with what discovery says about each.

#[derive(Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; "" is the core group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources beside the object itself ("status", "log", "binding", "exec", "scale").
    pub subresources: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Objects of this kind carry a `spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
}

/// The defaults for a namespaced kind of the core group; each entry below names what differs.
const CORE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "",
    plural: "",
    singular: "",
    namespaced: true,
    short_names: &[],
    subresources: &[],
    categories: &[],
    has_spec: false,
};

pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        subresources: &["status"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        subresources: &["status", "log", "binding", "exec", "attach"],
        categories: &["all"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        ..CORE
    },
    ResourceInfo {
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        ..CORE
    },
    ResourceInfo {
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        subresources: &["status"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        ..CORE
    },
    ResourceInfo {
        group: "node.k8s.io",
        kind: "RuntimeClass",
        plural: "runtimeclasses",
        singular: "runtimeclass",
        namespaced: false,
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        subresources: &["status", "scale"],
        categories: &["all"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        subresources: &["status", "scale"],
        categories: &["all"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        short_names: &["sts"],
        subresources: &["status", "scale"],
        categories: &["all"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        subresources: &["status"],
        categories: &["all"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        group: "batch",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        subresources: &["status"],
        categories: &["all"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        group: "batch",
        kind: "CronJob",
        plural: "cronjobs",
        singular: "cronjob",
        short_names: &["cj"],
        subresources: &["status"],
        categories: &["all"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
        subresources: &["status"],
        has_spec: true,
        ..CORE
    },
    ResourceInfo {
        group: "storage.k8s.io",
        kind: "StorageClass",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
        ..CORE
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        ..CORE
    },
    ResourceInfo {
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        short_names: &["pvc"],
        subresources: &["status"],
        has_spec: true,
        ..CORE
    },
];

/// The verbs every resource here supports (discovery lists them; kubectl checks them).
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `runtimeclasses.node.k8s.io`: the name Kubernetes uses in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Store key prefix for all objects of this kind, or for one namespace of them.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}/{ns}/", self.qualified()),
            _ => format!("{}/", self.qualified()),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        let ns = if self.namespaced {
            namespace.unwrap_or_default()
        } else {
            ""
        };
        format!("{}/{ns}/{name}", self.qualified())
    }
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The API groups other than core, each with its versions, in discovery order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_namespaces_and_scopes() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "a"), "pods/default/a");
        assert_eq!(pods.prefix(Some("default")), "pods/default/");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "nodes//n1");
        let rc = find_kind("node.k8s.io/v1", "RuntimeClass").unwrap();
        assert_eq!(
            rc.key(None, "wasmtime"),
            "runtimeclasses.node.k8s.io//wasmtime"
        );
    }

    #[test]
    fn groups_are_listed_once() {
        assert_eq!(
            groups(),
            vec![
                ("node.k8s.io", vec!["v1"]),
                ("apps", vec!["v1"]),
                ("batch", vec!["v1"]),
                ("storage.k8s.io", vec!["v1"]),
                ("coordination.k8s.io", vec!["v1"])
            ]
        );
    }
}
