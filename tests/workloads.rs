//! Deployments, ReplicaSets and the garbage collector, driven by the real kubectl (oldest
//! and newest) against a real `wkube server`, with WASI guests as the pods: the issue's user
//! flow (apply, rollout status, set image, history, undo, scale, get -o wide), a rolling
//! update watched pod by pod, pause/resume, a progress deadline, ReplicaSet adoption and
//! release, and deletion with each propagation policy.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Server, WatchProcess, KUBECTL_VERSIONS};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A server with the long-running guest imported as `echo:1.0` and `echo:2.0`.
fn server() -> Server {
    let server = Server::start();
    server.import("ticker", "echo:1.0");
    server.import("ticker", "echo:2.0");
    server
}

fn names(server: &Server, version: &str, what: &str, selector: &str) -> Vec<String> {
    let out = server.kubectl_ok(version, &["get", what, "-l", selector, "-o", "name"]);
    out.lines().map(str::to_string).collect()
}

/// Waits until `jsonpath` on `object` reads `want`.
fn wait_jsonpath(server: &Server, version: &str, object: &[&str], path: &str, want: &str) {
    wait_for(
        &format!("{} {path} = {want}", object.join(" ")),
        DEADLINE,
        || (server.jsonpath(version, object, path) == want).then_some(()),
    );
}

/// examples/deployment.yaml, applied and rolled out.
fn apply_example(server: &Server, version: &str) {
    let out = server.kubectl_ok(version, &["apply", "-f", &example("deployment.yaml")]);
    assert_eq!(out.trim(), "deployment.apps/echo created");
    rollout_status(server, version);
}

/// `kubectl rollout status` of the example, which must succeed.
fn rollout_status(server: &Server, version: &str) {
    let status = server.kubectl_ok(
        version,
        &["rollout", "status", "deploy/echo", "--timeout=60s"],
    );
    assert!(
        status.contains("deployment \"echo\" successfully rolled out"),
        "{status}"
    );
}

with_each_kubectl!(
    deployment_flow,
    recreate,
    pause_resume_and_deadline,
    replicaset_ownership,
    cascades
);

fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

/// The pods at one point of a watch: the images of those serving.
#[derive(Debug, Clone)]
struct Moment {
    serving: Vec<String>,
}

/// The largest total of `spec.replicas` of the ReplicaSets over a label selector, from a
/// watch.
struct ReplicaSetSizes {
    max_total: Arc<Mutex<i64>>,
    _watch: WatchProcess,
}

impl ReplicaSetSizes {
    fn start(server: &Server, version: &str, selector: &str) -> ReplicaSetSizes {
        let max_total = Arc::new(Mutex::new(0));
        let seen = max_total.clone();
        let mut sizes = BTreeMap::new();
        let watch = WatchProcess::start(server, version, "replicasets", selector, move |event| {
            let name = event["object"]["metadata"]["name"].to_string();
            let replicas = event["object"]["spec"]["replicas"].as_i64().unwrap_or(0);
            match event["type"] == "DELETED" {
                true => sizes.remove(&name),
                false => sizes.insert(name, replicas),
            };
            let total = sizes.values().sum::<i64>();
            let mut max = seen.lock().unwrap();
            *max = (*max).max(total);
        });
        ReplicaSetSizes {
            max_total,
            _watch: watch,
        }
    }

    fn max_total(&self) -> i64 {
        *self.max_total.lock().unwrap()
    }
}

/// `kubectl get pods -w` over a label selector, as JSON watch events, folded into the
/// state of every pod after each event.
struct PodWatch {
    moments: Arc<Mutex<Vec<Moment>>>,
    _watch: WatchProcess,
}

/// Ready and not on its way out: a pod a Service would send traffic to.
fn serving(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_none()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn image(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl PodWatch {
    /// Starts watching; returns once `settled` pods serve `image`.
    fn start(
        server: &Server,
        version: &str,
        selector: &str,
        settled: usize,
        image: &str,
    ) -> PodWatch {
        let moments = Arc::new(Mutex::new(Vec::new()));
        let seen = moments.clone();
        let mut pods = BTreeMap::new();
        let watch = WatchProcess::start(server, version, "pods", selector, move |event| {
            let name = event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if event["type"] == "DELETED" {
                pods.remove(&name);
            } else {
                pods.insert(name, event["object"].clone());
            }
            let moment = Moment {
                serving: pods
                    .values()
                    .filter(|p| serving(p))
                    .map(self::image)
                    .collect(),
            };
            seen.lock().unwrap().push(moment);
        });
        let watch = PodWatch {
            moments,
            _watch: watch,
        };
        watch.wait_serving(settled, image);
        watch
    }

    /// Waits until exactly `count` pods serve, all of them `image`.
    fn wait_serving(&self, count: usize, image: &str) {
        wait_for(&format!("{count} pods serving {image}"), DEADLINE, || {
            let moments = self.moments.lock().unwrap();
            let last = moments.last()?;
            (last.serving.len() == count && last.serving.iter().all(|i| i == image)).then_some(())
        });
    }

    /// Every moment since `count` pods first served.
    fn since_settled(&self, count: usize) -> Vec<Moment> {
        let moments = self.moments.lock().unwrap();
        moments
            .iter()
            .skip_while(|m| m.serving.len() < count)
            .cloned()
            .collect()
    }
}

fn deployment_flow(version: &str) {
    let server = server();
    apply_example(&server, version);
    assert_eq!(names(&server, version, "pods", "app=echo").len(), 3);

    // A rolling update, watched pod by pod: never fewer than replicas - maxUnavailable
    // (3 - 1) pods serve, and at the end all serving pods run the new image.
    let watch = PodWatch::start(&server, version, "app=echo", 3, "echo:1.0");
    let sizes = ReplicaSetSizes::start(&server, version, "app=echo");
    wait_for("the ReplicaSet in the watch", DEADLINE, || {
        (sizes.max_total() == 3).then_some(())
    });
    let out = server.kubectl_ok(version, &["set", "image", "deploy/echo", "app=echo:2.0"]);
    assert_eq!(out.trim(), "deployment.apps/echo image updated");
    rollout_status(&server, version);
    watch.wait_serving(3, "echo:2.0");
    // ... never more than replicas + maxSurge (3 + 1) pods in the ReplicaSets together,
    // and old and new pods served side by side. The surge bounds the sets' sizes, as in
    // Kubernetes: when an old set shrinks, the new one may grow at once, a moment before
    // the old set's controller deletes the pod, so a fifth pod can briefly exist.
    let moments = watch.since_settled(3);
    let min = moments.iter().map(|m| m.serving.len()).min().unwrap_or(0);
    let max = sizes.max_total();
    eprintln!("rolling update: at least {min} pods serving, at most {max} pods in the sets");
    assert!(
        min >= 2,
        "only {min} pods were serving at one point of the rollout"
    );
    assert!(
        max <= 4,
        "the ReplicaSets held {max} pods at one point of the rollout"
    );
    drop(sizes);
    let mixed = |m: &Moment| m.serving.iter().any(|i| i != &m.serving[0]);
    assert!(
        moments.iter().any(mixed),
        "a rolling update serves both versions for a while"
    );
    drop(watch);

    let history = server.kubectl_ok(version, &["rollout", "history", "deploy/echo"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    let out = server.kubectl_ok(
        version,
        &["rollout", "undo", "deploy/echo", "--to-revision=1"],
    );
    assert_eq!(out.trim(), "deployment.apps/echo rolled back");
    rollout_status(&server, version);
    let image = "{.spec.template.spec.containers[0].image}";
    assert_eq!(
        server.jsonpath(version, &["deploy", "echo"], image),
        "echo:1.0"
    );
    // Revision 1's ReplicaSet is reused as revision 3; no third ReplicaSet appears.
    let revision = "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}";
    assert_eq!(server.jsonpath(version, &["deploy", "echo"], revision), "3");
    assert_eq!(names(&server, version, "rs", "app=echo").len(), 2);

    let out = server.kubectl_ok(version, &["scale", "deploy/echo", "--replicas=5"]);
    assert_eq!(out.trim(), "deployment.apps/echo scaled");
    wait_jsonpath(
        &server,
        version,
        &["deploy", "echo"],
        "{.status.availableReplicas}",
        "5",
    );

    let wide = server.kubectl_ok(version, &["get", "deploy,rs,pods", "-o", "wide"]);
    let sections: Vec<&str> = wide.split("\n\n").collect();
    assert_eq!(sections.len(), 3, "{wide}");
    assert_eq!(
        header(sections[0]),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(
        header(sections[1]),
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(
        header(sections[2])[..5],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let deploy_row: Vec<&str> = sections[0]
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        [
            deploy_row[0],
            deploy_row[1],
            deploy_row[2],
            deploy_row[3],
            deploy_row[5],
            deploy_row[6],
            deploy_row[7]
        ],
        [
            "deployment.apps/echo",
            "5/5",
            "5",
            "5",
            "app",
            "echo:1.0",
            "app=echo"
        ],
        "{wide}"
    );
    assert!(sections[1].contains("pod-template-hash="), "{wide}");
    let describe = server.kubectl_ok(version, &["describe", "deploy", "echo"]);
    for want in [
        "NewReplicaSetAvailable",
        "ScalingReplicaSet",
        "Scaled up replica set echo-",
    ] {
        assert!(
            describe.contains(want),
            "describe lacks {want}:\n{describe}"
        );
    }
    let plain = server.kubectl_ok(version, &["get", "deploy"]);
    assert_eq!(
        header(&plain),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );

    // A deleted pod is replaced.
    let pods = names(&server, version, "pods", "app=echo");
    server.kubectl_ok(version, &["delete", &pods[0]]);
    wait_for("a replacement pod", DEADLINE, || {
        let now = names(&server, version, "pods", "app=echo");
        (now.len() == 5 && !now.contains(&pods[0])).then_some(())
    });
    wait_jsonpath(
        &server,
        version,
        &["deploy", "echo"],
        "{.status.readyReplicas}",
        "5",
    );

    // Deleting the Deployment (background, kubectl's default) removes its ReplicaSets and pods.
    server.kubectl_ok(version, &["delete", "deploy", "echo"]);
    wait_for("the ReplicaSets and pods to go", DEADLINE, || {
        (names(&server, version, "rs", "app=echo").is_empty()
            && names(&server, version, "pods", "app=echo").is_empty())
        .then_some(())
    });
}

/// A Recreate rollout, watched: every old pod is gone before a new one serves.
fn recreate(version: &str) {
    let server = server();
    apply_example(&server, version);
    let to_recreate = r#"{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}"#;
    server.kubectl_ok(version, &["patch", "deploy/echo", "-p", to_recreate]);
    let watch = PodWatch::start(&server, version, "app=echo", 3, "echo:1.0");
    server.kubectl_ok(version, &["set", "image", "deploy/echo", "app=echo:2.0"]);
    rollout_status(&server, version);
    watch.wait_serving(3, "echo:2.0");
    for m in watch.since_settled(3) {
        let old = m.serving.iter().any(|i| i == "echo:1.0");
        let new = m.serving.iter().any(|i| i == "echo:2.0");
        assert!(!(old && new), "old and new pods served together: {m:?}");
    }
    let strategy = server.jsonpath(version, &["deploy", "echo"], "{.spec.strategy}");
    assert_eq!(strategy, r#"{"type":"Recreate"}"#);
}

/// Pause holds a template change back; resume rolls it out. A rollout that cannot
/// progress (an image that does not exist) fails `rollout status` at its deadline.
fn pause_resume_and_deadline(version: &str) {
    let server = server();
    apply_example(&server, version);
    server.kubectl_ok(version, &["rollout", "pause", "deploy/echo"]);
    server.kubectl_ok(version, &["set", "image", "deploy/echo", "app=echo:2.0"]);
    let progressing = "{.status.conditions[?(@.type=='Progressing')].reason}";
    wait_jsonpath(
        &server,
        version,
        &["deploy", "echo"],
        progressing,
        "DeploymentPaused",
    );
    assert_eq!(
        names(&server, version, "rs", "app=echo").len(),
        1,
        "no rollout while paused"
    );
    server.kubectl_ok(version, &["rollout", "resume", "deploy/echo"]);
    rollout_status(&server, version);
    assert_eq!(names(&server, version, "rs", "app=echo").len(), 2);

    server.kubectl_ok(
        version,
        &[
            "patch",
            "deploy/echo",
            "-p",
            r#"{"spec":{"progressDeadlineSeconds":2}}"#,
        ],
    );
    server.kubectl_ok(version, &["set", "image", "deploy/echo", "app=missing:1.0"]);
    let out = server.kubectl(
        version,
        &["rollout", "status", "deploy/echo", "--timeout=60s"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a stuck rollout succeeded");
    assert!(
        err.contains("deployment \"echo\" exceeded its progress deadline"),
        "{err}"
    );
    assert_eq!(
        server.jsonpath(version, &["deploy", "echo"], progressing),
        "ProgressDeadlineExceeded"
    );
}

const REPLICA_SET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: front
spec:
  replicas: 2
  selector:
    matchLabels:
      tier: front
  template:
    metadata:
      labels:
        tier: front
    spec:
      containers:
        - name: app
          image: echo:1.0
";

const ORPHAN_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: stray
  labels:
    tier: front
spec:
  containers:
    - name: app
      image: echo:1.0
";

/// A ReplicaSet adopts a matching orphan (and so creates one pod, not two), releases a pod
/// relabelled away and replaces it, scales through the scale subresource, and reports its
/// status.
fn replicaset_ownership(version: &str) {
    let server = server();
    server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(ORPHAN_POD));
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(REPLICA_SET));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner = "{.metadata.ownerReferences[0].name}";
    wait_jsonpath(&server, version, &["pod", "stray"], owner, "front");
    wait_jsonpath(
        &server,
        version,
        &["rs", "front"],
        "{.status.availableReplicas}",
        "2",
    );
    assert_eq!(names(&server, version, "pods", "tier=front").len(), 2);
    let status: Value =
        serde_json::from_str(&server.kubectl_ok(version, &["get", "rs", "front", "-o", "json"]))
            .unwrap();
    let s = &status["status"];
    assert_eq!(
        (
            &s["replicas"],
            &s["readyReplicas"],
            &s["fullyLabeledReplicas"],
            &s["observedGeneration"]
        ),
        (
            &Value::from(2),
            &Value::from(2),
            &Value::from(2),
            &Value::from(1)
        ),
        "{s}"
    );
    let controller = "{.metadata.ownerReferences[0].controller}/{.metadata.ownerReferences[0].blockOwnerDeletion}";
    assert_eq!(
        server.jsonpath(version, &["pod", "stray"], controller),
        "true/true"
    );

    server.kubectl_ok(
        version,
        &["label", "pod", "stray", "tier=elsewhere", "--overwrite"],
    );
    wait_jsonpath(&server, version, &["pod", "stray"], owner, "");
    wait_for("a replacement for the released pod", DEADLINE, || {
        (names(&server, version, "pods", "tier=front").len() == 2).then_some(())
    });

    let out = server.kubectl_ok(version, &["scale", "rs/front", "--replicas=4"]);
    assert_eq!(out.trim(), "replicaset.apps/front scaled");
    wait_jsonpath(
        &server,
        version,
        &["rs", "front"],
        "{.status.readyReplicas}",
        "4",
    );
    let table = server.kubectl_ok(version, &["get", "rs", "front"]);
    assert_eq!(
        header(&table),
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["front", "4", "4", "4"], "{table}");
}

/// A Deployment made by `kubectl create deployment`; `--cascade=orphan` leaves its
/// ReplicaSet and pods, without the Deployment's reference; `--cascade=foreground` removes
/// the owner only after its dependents; a deleted namespace takes its workloads along.
fn cascades(version: &str) {
    let server = server();
    // kubectl 1.33 sends this one as protobuf.
    let out = server.kubectl_ok(
        version,
        &[
            "create",
            "deployment",
            "echo",
            "--image=echo:1.0",
            "--replicas=3",
        ],
    );
    assert_eq!(out.trim(), "deployment.apps/echo created");
    rollout_status(&server, version);
    let rs = names(&server, version, "rs", "app=echo");
    server.kubectl_ok(version, &["delete", "deploy", "echo", "--cascade=orphan"]);
    let gone = server.kubectl(version, &["get", "deploy", "echo"]);
    assert!(
        !gone.status.success(),
        "kubectl returns once the Deployment is gone"
    );
    assert_eq!(names(&server, version, "rs", "app=echo"), rs);
    let rs_name = rs[0].trim_start_matches("replicaset.apps/");
    assert_eq!(
        server.jsonpath(version, &["rs", rs_name], "{.metadata.ownerReferences}"),
        "[]"
    );
    assert_eq!(names(&server, version, "pods", "app=echo").len(), 3);

    // The orphaned ReplicaSet still keeps its pods; now delete it in the foreground.
    server.kubectl_ok(version, &["delete", "rs", rs_name, "--cascade=foreground"]);
    assert!(names(&server, version, "rs", "app=echo").is_empty());
    assert!(
        names(&server, version, "pods", "app=echo").is_empty(),
        "the owner went before its pods"
    );

    // Deleting a namespace removes the workloads in it; kubectl waits until it is gone.
    server.kubectl_ok(version, &["create", "namespace", "team"]);
    let manifest = example("deployment.yaml");
    server.kubectl_ok(version, &["-n", "team", "apply", "-f", &manifest]);
    let status = [
        "-n",
        "team",
        "rollout",
        "status",
        "deploy/echo",
        "--timeout=60s",
    ];
    server.kubectl_ok(version, &status);
    server.kubectl_ok(version, &["delete", "namespace", "team"]);
    let left = server.kubectl_ok(
        version,
        &[
            "get",
            "pods,rs,deploy",
            "-A",
            "-l",
            "app=echo",
            "-o",
            "name",
        ],
    );
    assert_eq!(left.trim(), "", "left behind");
}

/// Bad Deployments get Kubernetes' 422 messages and nothing is stored.
#[test]
fn invalid_deployments_are_refused() {
    let server = Server::start();
    let bad_labels = std::fs::read_to_string(example("deployment.yaml"))
        .unwrap()
        .replace(
            "    metadata:\n      labels:\n        app: echo",
            "    metadata:\n      labels:\n        app: other",
        );
    let negative = std::fs::read_to_string(example("deployment.yaml"))
        .unwrap()
        .replace("replicas: 3", "replicas: -1");
    for version in KUBECTL_VERSIONS {
        let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(&bad_labels));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(
                "The Deployment \"echo\" is invalid: spec.template.metadata.labels: Invalid value"
            ) && err.contains("`selector` does not match template `labels`"),
            "{err}"
        );
        let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(&negative));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            "{err}"
        );
        assert!(names(&server, version, "deploy", "app=echo").is_empty());
    }
}

/// The controllers run on the raft leader only; when it is killed, the next leader's take
/// over: a Deployment scaled through a survivor gets its new pods. (Until node lifecycle
/// exists, the dead member's node is cordoned by hand so nothing is placed on it.)
#[test]
fn controllers_move_with_the_leader() {
    let version = KUBECTL_VERSIONS[1];
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let c = Server::start_member("c", Some(&first));
    let mut members = vec![first, b, c];
    for m in &members {
        m.import("ticker", "echo:1.0");
    }
    apply_example(&members[0], version);
    let leader = common::leader(&members);
    members[leader].kill9();
    let dead_node = ["a", "b", "c"][leader];
    let survivor = &members[(leader + 1) % 3];
    survivor.kubectl_ok(version, &["cordon", dead_node]);
    survivor.kubectl_ok(version, &["scale", "deploy/echo", "--replicas=6"]);
    wait_jsonpath(
        survivor,
        version,
        &["deploy", "echo"],
        "{.status.observedGeneration}/{.status.readyReplicas}",
        "2/6",
    );
    let on_dead = survivor.kubectl_ok(
        version,
        &[
            "get",
            "pods",
            "-l",
            "app=echo",
            "--field-selector",
            &format!("spec.nodeName={dead_node}"),
            "-o",
            "name",
        ],
    );
    assert!(
        on_dead.lines().count() <= 1,
        "new pods went to the dead node: {on_dead}"
    );
}

/// The Rust client's typed API (kube-rs, k8s-openapi) reads and writes Deployments,
/// ReplicaSets and their Scale as against Kubernetes: what wkube stores decodes into the
/// Kubernetes types.
#[test]
fn typed_rust_client() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

    let server = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = server.kube_client().await;
        let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
        let replica_sets: Api<ReplicaSet> = Api::default_namespaced(client);
        let manifest = std::fs::read_to_string(example("deployment.yaml")).unwrap();
        let d: Deployment = serde_yaml::from_str(&manifest).unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let available = |want: i32| {
            let deployments = deployments.clone();
            async move {
                for _ in 0..600 {
                    let d = deployments.get("echo").await.unwrap();
                    let status = d.status.unwrap_or_default();
                    if status.available_replicas == Some(want)
                        && status.updated_replicas == Some(want)
                    {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("not {want} available in time");
            }
        };
        let status = available(3).await;
        let conditions = status.conditions.unwrap_or_default();
        assert!(conditions.iter().any(
            |c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
        ));

        let scale = deployments.get_scale("echo").await.unwrap();
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
        assert_eq!(
            scale.status.map(|s| s.selector),
            Some(Some("app=echo".into()))
        );
        let more = Patch::Merge(serde_json::json!({"spec": {"replicas": 4}}));
        deployments
            .patch_scale("echo", &PatchParams::default(), &more)
            .await
            .unwrap();
        available(4).await;

        let sets = replica_sets
            .list(&ListParams::default().labels("app=echo"))
            .await
            .unwrap();
        assert_eq!(sets.items.len(), 1);
        let rs = &sets.items[0];
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Deployment", Some(true))
        );
        assert_eq!(rs.status.as_ref().map(|s| s.replicas), Some(4));

        deployments
            .delete("echo", &DeleteParams::foreground())
            .await
            .unwrap();
        for _ in 0..600 {
            let left = replica_sets
                .list(&ListParams::default().labels("app=echo"))
                .await
                .unwrap();
            if left.items.is_empty() && deployments.get_opt("echo").await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Deployment and its ReplicaSet are still there");
    });
}
