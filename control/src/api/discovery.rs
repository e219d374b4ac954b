//! Discovery documents: `/version`, `/api`, `/apis`, and each group version's resource list,
//! in the legacy (unaggregated) form every kubectl version understands.

use serde_json::{json, Value};

use super::metrics;
use super::resources::{self, ResourceInfo, VERBS};

/// The Kubernetes version whose API this server implements.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

pub fn version() -> Value {
    json!({
        "major": KUBERNETES_VERSION.0,
        "minor": KUBERNETES_VERSION.1,
        "gitVersion": format!("v{}.{}.0-wkube+{}", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1, env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

/// The groups served: those of the stored kinds, then the resource metrics API (which
/// metrics-server would add as an APIService).
fn served_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = resources::groups();
    groups.push((metrics::GROUP, vec![metrics::VERSION]));
    groups
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = served_groups()
        .iter()
        .map(|(name, versions)| group(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(name: &str) -> Option<Value> {
    let (_, versions) = served_groups().into_iter().find(|(g, _)| *g == name)?;
    let mut g = group(name, &versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn subresource(r: &ResourceInfo, sub: &str) -> Value {
    let (kind, verbs): (&str, &[&str]) = match sub {
        "log" => (r.kind, &["get"]),
        "binding" => ("Binding", &["create"]),
        "exec" => ("PodExecOptions", &["create", "get"]),
        "attach" => ("PodAttachOptions", &["create", "get"]),
        "scale" => ("Scale", &["get", "patch", "update"]),
        _ => (r.kind, &["get", "patch", "update"]),
    };
    let mut entry = json!({
        "name": format!("{}/{sub}", r.plural),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    // kubectl's scale client resolves the Scale kind's group version from these.
    if sub == "scale" {
        entry["group"] = json!("autoscaling");
        entry["version"] = json!("v1");
    }
    entry
}

/// `APIResourceList` for one group version, or `None` if nothing is served there.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (metrics::GROUP, metrics::VERSION) {
        return Some(metrics::resource_list());
    }
    let mut list = Vec::new();
    for r in resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        list.extend(r.subresources.iter().map(|s| subresource(r, s)));
    }
    if list.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_pods_and_their_subresources() {
        let l = resource_list("", "v1").unwrap();
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for n in [
            "pods",
            "pods/status",
            "pods/log",
            "pods/binding",
            "pods/exec",
            "pods/attach",
            "configmaps",
            "namespaces",
        ] {
            assert!(names.contains(&n), "{n} missing");
        }
        assert!(resource_list("policy", "v1").is_none());
        let metrics = resource_list("metrics.k8s.io", "v1beta1").unwrap();
        assert_eq!(metrics["resources"][1]["kind"], "PodMetrics");
        assert!(group_list()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"));
        let apps = resource_list("apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (&scale["group"], &scale["version"], &scale["kind"]),
            (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
        );
    }
}
