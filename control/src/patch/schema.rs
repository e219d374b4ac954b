//! Strategic-merge patch metadata as a small static type graph: for each type, the fields
//! whose child type or list strategy matters (the `patchStrategy`/`patchMergeKey` struct
//! tags of k8s.io/api). Fields not listed are plain: maps merge, lists are replaced.

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Atomic: the patch's list replaces the original (the default).
    Replace,
    /// `patchStrategy: merge`; `key` is the `patchMergeKey` for lists of objects, `None` for
    /// lists of primitives (set union, e.g. `metadata.finalizers`).
    Merge { key: Option<&'static str> },
}

impl ListStrategy {
    pub fn is_merge(&self) -> bool {
        matches!(self, ListStrategy::Merge { .. })
    }

    pub fn merge_key(&self) -> Option<&'static str> {
        match self {
            ListStrategy::Merge { key } => *key,
            ListStrategy::Replace => None,
        }
    }
}

/// A type name in the graph; `None` is "unknown" (everything plain).
pub type Ty = Option<&'static str>;

type Field = (&'static str, Ty, ListStrategy);

/// `patchStrategy: merge` with a merge key; a macro so the tables stay promotable to
/// `'static` constants.
macro_rules! merge {
    ($key:literal) => {
        ListStrategy::Merge { key: Some($key) }
    };
}

const MERGE_PRIMITIVES: ListStrategy = ListStrategy::Merge { key: None };
const REPLACE: ListStrategy = ListStrategy::Replace;

fn fields(ty: &str) -> &'static [Field] {
    match ty {
        "ObjectMeta" => &[
            ("ownerReferences", None, merge!("uid")),
            ("finalizers", None, MERGE_PRIMITIVES),
        ],
        "Object" => &[("metadata", Some("ObjectMeta"), REPLACE)],
        "Pod" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("spec", Some("PodSpec"), REPLACE),
            ("status", Some("PodStatus"), REPLACE),
        ],
        "PodTemplateSpec" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("spec", Some("PodSpec"), REPLACE),
        ],
        "PodTemplate" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("template", Some("PodTemplateSpec"), REPLACE),
        ],
        "PodSpec" => &[
            ("containers", Some("Container"), merge!("name")),
            ("initContainers", Some("Container"), merge!("name")),
            ("ephemeralContainers", Some("Container"), merge!("name")),
            ("volumes", Some("Volume"), merge!("name")),
            ("imagePullSecrets", None, merge!("name")),
            ("hostAliases", None, merge!("ip")),
            ("topologySpreadConstraints", None, merge!("topologyKey")),
            ("resourceClaims", None, merge!("name")),
            ("schedulingGates", None, merge!("name")),
        ],
        "Container" => &[
            ("ports", None, merge!("containerPort")),
            ("env", None, merge!("name")),
            ("volumeMounts", None, merge!("mountPath")),
            ("volumeDevices", None, merge!("devicePath")),
        ],
        "PodStatus" => &[
            ("conditions", None, merge!("type")),
            ("podIPs", None, merge!("ip")),
            ("hostIPs", None, merge!("ip")),
            ("resourceClaimStatuses", None, merge!("name")),
        ],
        "Node" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("spec", Some("NodeSpec"), REPLACE),
            ("status", Some("NodeStatus"), REPLACE),
        ],
        "NodeSpec" => &[("podCIDRs", None, MERGE_PRIMITIVES)],
        "NodeStatus" => &[
            ("conditions", None, merge!("type")),
            ("addresses", None, merge!("type")),
        ],
        "Service" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("spec", Some("ServiceSpec"), REPLACE),
            ("status", Some("ConditionsStatus"), REPLACE),
        ],
        "ServiceSpec" => &[("ports", None, merge!("port"))],
        "Workload" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("spec", Some("WorkloadSpec"), REPLACE),
            ("status", Some("ConditionsStatus"), REPLACE),
        ],
        "WorkloadSpec" => &[("template", Some("PodTemplateSpec"), REPLACE)],
        "ConditionsStatus" => &[("conditions", None, merge!("type"))],
        "CronJob" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("spec", Some("CronJobSpec"), REPLACE),
        ],
        "CronJobSpec" => &[("jobTemplate", Some("JobTemplateSpec"), REPLACE)],
        "JobTemplateSpec" => &[
            ("metadata", Some("ObjectMeta"), REPLACE),
            ("spec", Some("WorkloadSpec"), REPLACE),
        ],
        _ => &[],
    }
}

/// The root type of an object of `kind`. Every kind has `metadata`, so unknown kinds still
/// merge finalizers and owner references.
pub fn root_type(kind: &str) -> Ty {
    Some(match kind {
        "Pod" => "Pod",
        "PodTemplate" => "PodTemplate",
        "Node" => "Node",
        "Service" => "Service",
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => "Workload",
        "CronJob" => "CronJob",
        _ => "Object",
    })
}

/// The child type and list strategy of `field` in `ty`.
pub fn lookup(ty: Ty, field: &str) -> (Ty, ListStrategy) {
    ty.and_then(|t| fields(t).iter().find(|(name, _, _)| *name == field))
        .map_or((None, REPLACE), |(_, child, strategy)| (*child, *strategy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_table() {
        let pod_spec = lookup(lookup(root_type("Pod"), "spec").0, "containers");
        assert_eq!(pod_spec, (Some("Container"), merge!("name")));
        let deploy_template = lookup(lookup(root_type("Deployment"), "spec").0, "template").0;
        assert_eq!(
            lookup(lookup(deploy_template, "spec").0, "volumes").1,
            merge!("name")
        );
        let cron = lookup(
            lookup(lookup(root_type("CronJob"), "spec").0, "jobTemplate").0,
            "spec",
        )
        .0;
        assert_eq!(lookup(cron, "template").0, Some("PodTemplateSpec"));
        assert_eq!(lookup(Some("NodeSpec"), "taints").1, ListStrategy::Replace);
        assert_eq!(
            lookup(lookup(root_type("Widget"), "metadata").0, "finalizers").1,
            MERGE_PRIMITIVES
        );
        assert_eq!(lookup(None, "anything"), (None, ListStrategy::Replace));
    }
}
