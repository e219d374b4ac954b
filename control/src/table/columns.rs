//! Column definitions per resource, in the order and with the names, types and priorities
//! of Kubernetes' printers. Descriptions are the API field docs the printers use.

use serde_json::{json, Value};

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";
const SELECTOR_DOC: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.";

/// (name, type, format, description, priority)
type Col = (&'static str, &'static str, &'static str, &'static str, u8);

const NAME: Col = ("Name", "string", "name", NAME_DOC, 0);
const AGE: Col = ("Age", "string", "", AGE_DOC, 0);

fn cols(resource: &str) -> Vec<Col> {
    match resource {
        "pods" => vec![
            NAME,
            ("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
            ("Status", "string", "", "The aggregate status of the containers in this pod.", 0),
            ("Restarts", "string", "", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
            AGE,
            ("IP", "string", "", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
            ("Node", "string", "", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename", 1),
            ("Nominated Node", "string", "", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.", 1),
            ("Readiness Gates", "string", "", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates", 1),
        ],
        "namespaces" => vec![NAME, ("Status", "string", "", "The status of the namespace", 0), AGE],
        "configmaps" => vec![
            NAME,
            ("Data", "string", "", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", 0),
            AGE,
        ],
        "secrets" => vec![
            NAME,
            ("Type", "string", "", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
            ("Data", "string", "", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", 0),
            AGE,
        ],
        "nodes" => vec![
            NAME,
            ("Status", "string", "", "The status of the node", 0),
            ("Roles", "string", "", "The roles of the node", 0),
            AGE,
            ("Version", "string", "", "Kubelet Version reported by the node.", 0),
            ("Internal-IP", "string", "", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).", 1),
            ("External-IP", "string", "", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).", 1),
            ("OS-Image", "string", "", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
            ("Kernel-Version", "string", "", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
            ("Container-Runtime", "string", "", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
        ],
        "events" => vec![
            ("Last Seen", "string", "", "The time at which the most recent occurrence of this event was recorded.", 0),
            ("Type", "string", "", "Type of this event (Normal, Warning), new types could be added in the future", 0),
            ("Reason", "string", "", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
            ("Object", "string", "", "The object that this event is about.", 0),
            ("Subobject", "string", "", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.", 1),
            ("Source", "string", "", "The component reporting this event. Should be a short machine understandable string.", 1),
            ("Message", "string", "", "A human-readable description of the status of this operation.", 0),
            ("First Seen", "string", "", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)", 1),
            ("Count", "string", "", "The number of times this event has occurred.", 1),
            ("Name", "string", "name", NAME_DOC, 1),
        ],
        "runtimeclasses" => vec![
            NAME,
            ("Handler", "string", "", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class. The possible values are specific to the node & CRI configuration.  It is assumed that all handlers are available on every node, and handlers of the same name are equivalent on every node. For example, a handler called \"runc\" might specify that the runc OCI runtime (using native Linux containers) will be used to run the containers in a pod. The Handler must be lowercase, conform to the DNS Label (RFC 1123) requirements, and is immutable.", 0),
            AGE,
        ],
        "deployments" => vec![
            NAME,
            ("Ready", "string", "", "Number of the pod with ready state", 0),
            ("Up-to-date", "integer", "", "Total number of non-terminating pods targeted by this deployment that have the desired template spec.", 0),
            ("Available", "integer", "", "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
            AGE,
            ("Containers", "string", "", CONTAINERS_DOC, 1),
            ("Images", "string", "", IMAGES_DOC, 1),
            ("Selector", "string", "", SELECTOR_DOC, 1),
        ],
        "replicasets" => vec![
            NAME,
            ("Desired", "integer", "", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset", 0),
            ("Current", "integer", "", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset", 0),
            ("Ready", "integer", "", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.", 0),
            AGE,
            ("Containers", "string", "", CONTAINERS_DOC, 1),
            ("Images", "string", "", IMAGES_DOC, 1),
            ("Selector", "string", "", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
        ],
        "statefulsets" => vec![
            NAME,
            ("Ready", "string", "", "Number of the pod with ready state", 0),
            AGE,
            ("Containers", "string", "", CONTAINERS_DOC, 1),
            ("Images", "string", "", IMAGES_DOC, 1),
        ],
        "controllerrevisions" => vec![
            NAME,
            ("Controller", "string", "", "Controller of the object", 0),
            ("Revision", "string", "", "Revision indicates the revision of the state represented by Data.", 0),
            AGE,
        ],
        "daemonsets" => vec![
            NAME,
            ("Desired", "integer", "", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", 0),
            ("Current", "integer", "", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", 0),
            ("Ready", "integer", "", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.", 0),
            ("Up-to-date", "integer", "", "The total number of nodes that are running updated daemon pod", 0),
            ("Available", "integer", "", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)", 0),
            ("Node Selector", "string", "", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/", 0),
            AGE,
            ("Containers", "string", "", CONTAINERS_DOC, 1),
            ("Images", "string", "", IMAGES_DOC, 1),
            ("Selector", "string", "", SELECTOR_DOC, 1),
        ],
        "jobs" => vec![
            NAME,
            ("Status", "string", "", "Status of the job.", 0),
            ("Completions", "string", "", "The desired number of successfully finished pods the job should be run with. More info: https://kubernetes.io/docs/concepts/workloads/controllers/jobs-run-to-completion/", 0),
            ("Duration", "string", "", "Time required to complete the job.", 0),
            AGE,
            ("Containers", "string", "", CONTAINERS_DOC, 1),
            ("Images", "string", "", IMAGES_DOC, 1),
            ("Selector", "string", "", SELECTOR_DOC, 1),
        ],
        "cronjobs" => vec![
            NAME,
            ("Schedule", "string", "", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.", 0),
            ("Timezone", "string", "", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones", 0),
            ("Suspend", "boolean", "", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.", 0),
            ("Active", "integer", "", "A list of pointers to currently running jobs.", 0),
            ("Last Schedule", "string", "", "Information when was the last time the job was successfully scheduled.", 0),
            AGE,
            ("Containers", "string", "", CONTAINERS_DOC, 1),
            ("Images", "string", "", IMAGES_DOC, 1),
            ("Selector", "string", "", SELECTOR_DOC, 1),
        ],
        "persistentvolumes" => vec![
            NAME,
            ("Capacity", "string", "", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity", 0),
            ("Access Modes", "string", "", "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes", 0),
            ("Reclaim Policy", "string", "", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming", 0),
            ("Status", "string", "", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase", 0),
            ("Claim", "string", "", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding", 0),
            ("StorageClass", "string", "", "storageClassName is the name of StorageClass to which this persistent volume belongs. Empty value means that this volume does not belong to any StorageClass.", 0),
            ("VolumeAttributesClass", "string", "", "Name of VolumeAttributesClass to which this persistent volume belongs. Empty value is not allowed. When this field is not set, it indicates that this volume does not belong to any VolumeAttributesClass.", 0),
            ("Reason", "string", "", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.", 0),
            AGE,
            ("VolumeMode", "string", "", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.", 1),
        ],
        "storageclasses" => vec![
            NAME,
            ("Provisioner", "string", "", "provisioner indicates the type of the provisioner.", 0),
            ("ReclaimPolicy", "string", "", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.", 0),
            ("VolumeBindingMode", "string", "", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.", 0),
            ("AllowVolumeExpansion", "string", "", "allowVolumeExpansion shows whether the storage class allow volume expand.", 0),
            AGE,
        ],
        "persistentvolumeclaims" => vec![
            NAME,
            ("Status", "string", "", "phase represents the current phase of PersistentVolumeClaim.", 0),
            ("Volume", "string", "", "volumeName is the binding reference to the PersistentVolume backing this claim.", 0),
            ("Capacity", "string", "", "capacity represents the actual resources of the underlying volume.", 0),
            ("Access Modes", "string", "", "accessModes contains the desired access modes the volume should have. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1", 0),
            ("StorageClass", "string", "", "storageClassName is the name of the StorageClass required by the claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#class-1", 0),
            ("VolumeAttributesClass", "string", "", "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.", 0),
            AGE,
            ("VolumeMode", "string", "", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.", 1),
        ],
        "services" => vec![
            NAME,
            ("Type", "string", "", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.", 0),
            ("Cluster-IP", "string", "", "clusterIP is the IP address of the service and is usually assigned randomly.", 0),
            ("External-IP", "string", "", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.", 0),
            ("Port(s)", "string", "", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
            AGE,
            ("Selector", "string", "", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/", 1),
        ],
        "leases" => vec![
            NAME,
            ("Holder", "string", "", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.", 0),
            AGE,
        ],
        // rest.NewDefaultTableConvertor: name and creation time as a date.
        _ => vec![NAME, ("Created At", "date", "", AGE_DOC, 0)],
    }
}

/// The `columnDefinitions` of a Table for `resource`. Every field is always present, as
/// `metav1.TableColumnDefinition` has no `omitempty`.
pub fn column_definitions(resource: &str) -> Value {
    Value::Array(
        cols(resource)
            .into_iter()
            .map(|(name, ty, format, description, priority)| {
                json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(resource: &str) -> Vec<(String, u64)> {
        column_definitions(resource)
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or("").to_string(),
                            c["priority"].as_u64().unwrap_or(9),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn columns_match_kubectl_headers() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "pods",
                &["Name", "Ready", "Status", "Restarts", "Age"],
                &["IP", "Node", "Nominated Node", "Readiness Gates"],
            ),
            ("namespaces", &["Name", "Status", "Age"], &[]),
            ("configmaps", &["Name", "Data", "Age"], &[]),
            ("secrets", &["Name", "Type", "Data", "Age"], &[]),
            (
                "nodes",
                &["Name", "Status", "Roles", "Age", "Version"],
                &[
                    "Internal-IP",
                    "External-IP",
                    "OS-Image",
                    "Kernel-Version",
                    "Container-Runtime",
                ],
            ),
            (
                "events",
                &["Last Seen", "Type", "Reason", "Object", "Message"],
                &["Subobject", "Source", "First Seen", "Count", "Name"],
            ),
            ("runtimeclasses", &["Name", "Handler", "Age"], &[]),
            (
                "deployments",
                &["Name", "Ready", "Up-to-date", "Available", "Age"],
                &["Containers", "Images", "Selector"],
            ),
            (
                "replicasets",
                &["Name", "Desired", "Current", "Ready", "Age"],
                &["Containers", "Images", "Selector"],
            ),
            (
                "statefulsets",
                &["Name", "Ready", "Age"],
                &["Containers", "Images"],
            ),
            (
                "persistentvolumes",
                &[
                    "Name",
                    "Capacity",
                    "Access Modes",
                    "Reclaim Policy",
                    "Status",
                    "Claim",
                    "StorageClass",
                    "VolumeAttributesClass",
                    "Reason",
                    "Age",
                ],
                &["VolumeMode"],
            ),
            (
                "storageclasses",
                &[
                    "Name",
                    "Provisioner",
                    "ReclaimPolicy",
                    "VolumeBindingMode",
                    "AllowVolumeExpansion",
                    "Age",
                ],
                &[],
            ),
            (
                "persistentvolumeclaims",
                &[
                    "Name",
                    "Status",
                    "Volume",
                    "Capacity",
                    "Access Modes",
                    "StorageClass",
                    "VolumeAttributesClass",
                    "Age",
                ],
                &["VolumeMode"],
            ),
            (
                "services",
                &[
                    "Name",
                    "Type",
                    "Cluster-IP",
                    "External-IP",
                    "Port(s)",
                    "Age",
                ],
                &["Selector"],
            ),
            ("leases", &["Name", "Holder", "Age"], &[]),
            ("widgets", &["Name", "Created At"], &[]),
        ];
        for (resource, normal, wide) in cases {
            let got = names(resource);
            let got_normal: Vec<&str> = got
                .iter()
                .filter(|(_, p)| *p == 0)
                .map(|(n, _)| n.as_str())
                .collect();
            let got_wide: Vec<&str> = got
                .iter()
                .filter(|(_, p)| *p == 1)
                .map(|(n, _)| n.as_str())
                .collect();
            assert_eq!(&got_normal, normal, "{resource}");
            assert_eq!(&got_wide, wide, "{resource}");
        }
        let pods = column_definitions("pods");
        assert_eq!(pods[0]["format"], "name");
        assert_eq!(pods[1]["format"], "");
        assert_eq!(pods[3]["type"], "string");
    }
}
