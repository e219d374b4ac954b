//! StatefulSets, driven by the real kubectl (oldest and newest) against a real
//! `wkube server`, with WASI guests as the pods: examples/statefulset.yaml creates web-0,
//! web-1, web-2 in order and a watch sees each Ready before the next exists; a deleted
//! web-1 comes back as web-1; an image change replaces pods highest ordinal first; scaling
//! down removes the highest ordinal first, one at a time; claims outlive pods and the set.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{table_rows, wait_for, Server, WatchProcess, KUBECTL_VERSIONS};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// One watch event of a pod, reduced to what ordering checks need.
#[derive(Debug, Clone)]
struct Seen {
    kind: String,
    name: String,
    uid: String,
    ready: bool,
    deleting: bool,
    image: String,
}

/// `kubectl get pods -w` over a selector, every event kept in order.
struct PodEvents {
    events: Arc<Mutex<Vec<Seen>>>,
    _watch: WatchProcess,
}

impl PodEvents {
    fn start(server: &Server, version: &str, selector: &str) -> PodEvents {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let watch = WatchProcess::start(server, version, "pods", selector, move |e| {
            let pod = &e["object"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            seen.lock().unwrap().push(Seen {
                kind: text(&e["type"]),
                name: text(&pod["metadata"]["name"]),
                uid: text(&pod["metadata"]["uid"]),
                ready: pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True"),
                deleting: pod["metadata"].get("deletionTimestamp").is_some(),
                image: text(&pod["spec"]["containers"][0]["image"]),
            });
        });
        PodEvents {
            events,
            _watch: watch,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for an event from index `from` on satisfying `f`.
    fn wait(&self, from: usize, what: &str, f: impl Fn(&Seen) -> bool) {
        wait_for(what, DEADLINE, || {
            self.seen().iter().skip(from).any(&f).then_some(())
        })
    }
}

fn first(events: &[Seen], f: impl Fn(&Seen) -> bool) -> Option<usize> {
    events.iter().position(f)
}

with_each_kubectl!(statefulset_flow);

/// The revision numbers `kubectl rollout history` lists.
fn revisions(server: &Server, version: &str) -> Vec<String> {
    let history = server.kubectl_ok(version, &["rollout", "history", "sts/web"]);
    table_rows(&history)
        .iter()
        .filter_map(|r| r.first().filter(|c| c.parse::<u32>().is_ok()))
        .map(|c| c.to_string())
        .collect()
}

fn rollout_status(server: &Server, version: &str) -> String {
    server.kubectl_ok(version, &["rollout", "status", "sts/web", "--timeout=60s"])
}

fn statefulset_flow(version: &str) {
    let server = Server::start();
    server.import("ticker", "echo:1.0");
    server.import("ticker", "echo:2.0");
    let watch = PodEvents::start(&server, version, "app=web");
    let example = format!("{}/examples/statefulset.yaml", env!("CARGO_MANIFEST_DIR"));
    let out = server.kubectl_ok(version, &["apply", "-f", &example]);
    assert_eq!(out.trim(), "statefulset.apps/web created");
    let status = rollout_status(&server, version);
    assert!(
        status.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{status}"
    );

    // Created in order: each pod appears only after the one before it was Ready.
    let events = watch.seen();
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready = first(&events, |e| e.name == before && e.ready);
        let added = first(&events, |e| e.name == after);
        assert!(
            ready.is_some() && ready < added,
            "{after} before {before} was ready: {events:#?}"
        );
    }

    // Stable identity: labels, hostname, and a claim per pod, bound to a local-path
    // volume provisioned for it.
    let labels = server.jsonpath(
        version,
        &["pod", "web-1"],
        "{.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.spec.hostname} {.spec.subdomain}",
    );
    assert_eq!(labels, "web-1 web-1 web");
    let claims = server.kubectl_ok(version, &["get", "pvc"]);
    assert_eq!(
        table_rows(&claims)[0][..3],
        ["NAME", "STATUS", "VOLUME"],
        "{claims}"
    );
    for c in ["www-web-0", "www-web-1", "www-web-2"] {
        let row = table_rows(&claims)
            .into_iter()
            .find(|r| r[0] == c)
            .unwrap_or_else(|| panic!("no {c} in {claims}"));
        assert_eq!(row[1], "Bound", "{claims}");
        assert!(row[2].starts_with("pvc-"), "{claims}");
        assert_eq!(row[5], "local-path", "{claims}");
    }
    let table = server.kubectl_ok(version, &["get", "sts", "-o", "wide"]);
    let rows = table_rows(&table);
    let header = &rows[0][..];
    assert_eq!(
        header,
        ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"],
        "{table}"
    );
    let row = &rows[1];
    assert_eq!(
        (row[0], row[1], row[3], row[4]),
        ("web", "3/3", "app", "echo:1.0")
    );
    let all = server.kubectl_ok(
        version,
        &["get", "deploy,rs,sts,ds,job,cronjob,pods", "-o", "wide"],
    );
    assert!(
        all.contains("statefulset.apps/web") && all.contains("pod/web-2"),
        "{all}"
    );

    // A deleted web-1 comes back as web-1.
    let old_uid = server.jsonpath(version, &["pod", "web-1"], "{.metadata.uid}");
    server.kubectl_ok(version, &["delete", "pod", "web-1", "--wait=false"]);
    watch.wait(0, "web-1 back and ready", |e| {
        e.name == "web-1" && e.uid != old_uid && e.ready && !e.deleting
    });

    // A new image replaces pods highest ordinal first, each after the previous is back.
    let mark = watch.seen().len();
    server.kubectl_ok(version, &["set", "image", "sts/web", "app=echo:2.0"]);
    let status = rollout_status(&server, version);
    assert!(
        status.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{status}"
    );
    let events = watch.seen().split_off(mark);
    let replaced = |name: &str| {
        first(&events, |e| {
            e.name == name && e.image == "echo:2.0" && e.ready
        })
        .unwrap_or_else(|| panic!("{name} never served echo:2.0: {events:#?}"))
    };
    let deleted = |name: &str| {
        first(&events, |e| e.name == name && e.deleting)
            .unwrap_or_else(|| panic!("{name} never replaced: {events:#?}"))
    };
    assert!(replaced("web-2") < deleted("web-1"), "{events:#?}");
    assert!(replaced("web-1") < deleted("web-0"), "{events:#?}");

    // Both templates are ControllerRevisions: history lists them, undo goes back.
    assert_eq!(revisions(&server, version), ["1", "2"]);
    let records = server.kubectl_ok(version, &["get", "controllerrevisions"]);
    let rows = table_rows(&records);
    assert_eq!(
        rows[0],
        ["NAME", "CONTROLLER", "REVISION", "AGE"],
        "{records}"
    );
    assert!(
        rows[1..].iter().all(|r| r[1] == "statefulset.apps/web"),
        "{records}"
    );
    let out = server.kubectl_ok(version, &["rollout", "undo", "sts/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&server, version);
    wait_for("web-0 back at echo:1.0", DEADLINE, || {
        let image = server.jsonpath(version, &["pod", "web-0"], "{.spec.containers[0].image}");
        (image == "echo:1.0").then_some(())
    });
    assert_eq!(
        revisions(&server, version),
        ["2", "3"],
        "the restored template is the newest"
    );

    // Scaling down removes web-2 first, and web-1 only once web-2 is gone.
    let mark = watch.seen().len();
    server.kubectl_ok(version, &["scale", "sts/web", "--replicas=1"]);
    watch.wait(mark, "web-1 deleted", |e| {
        e.name == "web-1" && e.kind == "DELETED"
    });
    let events = watch.seen().split_off(mark);
    let gone = first(&events, |e| e.name == "web-2" && e.kind == "DELETED");
    let going = first(&events, |e| e.name == "web-1" && e.deleting);
    assert!(gone.is_some() && gone < going, "{events:#?}");
    wait_for("1 replica reported", DEADLINE, || {
        (server.jsonpath(version, &["sts", "web"], "{.status.replicas}") == "1").then_some(())
    });

    // The claims stay when the pods and the set go.
    server.kubectl_ok(version, &["delete", "sts", "web"]);
    wait_for("pods gone", DEADLINE, || {
        server
            .kubectl_ok(version, &["get", "pods", "-l", "app=web", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    let claims = server.kubectl_ok(version, &["get", "pvc", "-o", "name"]);
    assert_eq!(
        claims.lines().collect::<Vec<_>>(),
        [
            "persistentvolumeclaim/www-web-0",
            "persistentvolumeclaim/www-web-1",
            "persistentvolumeclaim/www-web-2"
        ]
    );
}

#[test]
fn invalid_statefulsets_are_refused() {
    let server = Server::start();
    let manifest = r#"{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bad"},
        "spec": {"podManagementPolicy": "Sometimes", "selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}"#;
    let out =
        server.kubectl_with_stdin(KUBECTL_VERSIONS[1], &["create", "-f", "-"], Some(manifest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"The StatefulSet "bad" is invalid: spec.podManagementPolicy: Unsupported value: "Sometimes": supported values: "OrderedReady", "Parallel""#),
        "{stderr}"
    );
}
