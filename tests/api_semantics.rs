//! Kubernetes API semantics through real clients: selectors, metadata, namespaces, the
//! objects present at start, watch from a resourceVersion, deletecollection.

mod common;

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};

use common::Server;

const KUBECTL: &str = "1.33";

fn names(out: &str) -> Vec<String> {
    let mut names: Vec<String> = out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    names
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm
}

#[test]
fn label_selectors_support_every_operator() {
    let server = Server::start();
    let manifests = "\
apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {env: dev, tier: web}}\n---\n\
apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, labels: {env: prod}}\n---\n\
apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {env: test, tier: db}}\n";
    let out = server.kubectl_with_stdin(KUBECTL, &["apply", "-f", "-"], Some(manifests));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let select = |selector: &str| {
        let out = server.kubectl_ok(
            KUBECTL,
            &["get", "configmaps", "-l", selector, "-o", "name"],
        );
        names(&out)
            .into_iter()
            .map(|n| n.trim_start_matches("configmap/").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(select("env=dev"), ["a"]);
    assert_eq!(select("env!=dev"), ["b", "c"]);
    assert_eq!(select("env in (dev,test)"), ["a", "c"]);
    assert_eq!(select("env notin (dev,test)"), ["b"]);
    assert_eq!(select("tier"), ["a", "c"]);
    assert_eq!(select("!tier"), ["b"]);
    assert_eq!(select("tier,env=test"), ["c"]);
    // A malformed selector is a BadRequest, as kubectl shows it.
    let bad = server.kubectl(KUBECTL, &["get", "configmaps", "-l", "env in dev"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unable to parse requirement"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn field_selectors_filter_by_name_namespace_node_and_phase() {
    let server = Server::start();
    server.import("hello", "hello:1.0");
    server.import("ticker", "ticker:1.0");
    let manifests = format!("{}/examples/hello-pod.yaml", env!("CARGO_MANIFEST_DIR"));
    server.kubectl_ok(KUBECTL, &["apply", "-f", &manifests]);
    let ticker = format!("{}/examples/ticker-pod.yaml", env!("CARGO_MANIFEST_DIR"));
    server.kubectl_ok(KUBECTL, &["apply", "-f", &ticker, "-n", "kube-system"]);
    common::wait_for(
        "hello to succeed and ticker to run",
        Duration::from_secs(30),
        || {
            let hello = server.jsonpath(KUBECTL, &["pod", "hello"], "{.status.phase}");
            let ticker = server.jsonpath(
                KUBECTL,
                &["pod", "ticker", "-n", "kube-system"],
                "{.status.phase}",
            );
            (hello == "Succeeded" && ticker == "Running").then_some(())
        },
    );
    let select = |selector: &str| {
        names(&server.kubectl_ok(
            KUBECTL,
            &[
                "get",
                "pods",
                "-A",
                "--field-selector",
                selector,
                "-o",
                "name",
            ],
        ))
    };
    assert_eq!(select("status.phase=Succeeded"), ["pod/hello"]);
    assert_eq!(select("status.phase!=Succeeded"), ["pod/ticker"]);
    assert_eq!(select("metadata.namespace=kube-system"), ["pod/ticker"]);
    assert_eq!(select("metadata.name=hello"), ["pod/hello"]);
    assert_eq!(select("spec.nodeName=node-1"), ["pod/hello", "pod/ticker"]);
    assert_eq!(select("spec.nodeName=elsewhere"), Vec::<String>::new());
    let bad = server.kubectl(
        KUBECTL,
        &["get", "pods", "--field-selector", "spec.image=x"],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("field label not supported: spec.image"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn objects_carry_uid_timestamps_generation_and_revisions() {
    let server = Server::start();
    server.import("ticker", "ticker:1.0");
    let ticker = format!("{}/examples/ticker-pod.yaml", env!("CARGO_MANIFEST_DIR"));
    server.kubectl_ok(KUBECTL, &["apply", "-f", &ticker]);
    let meta = |path: &str| server.jsonpath(KUBECTL, &["pod", "ticker"], path);
    let uid = meta("{.metadata.uid}");
    assert_eq!(uid.len(), 36, "a UUID: {uid}");
    assert!(meta("{.metadata.creationTimestamp}").ends_with('Z'));
    assert_eq!(meta("{.metadata.generation}"), "1");
    let rv: u64 = meta("{.metadata.resourceVersion}").parse().unwrap();

    // A metadata change leaves generation alone; a spec change bumps it.
    server.kubectl_ok(KUBECTL, &["label", "pod", "ticker", "extra=1"]);
    assert_eq!(meta("{.metadata.generation}"), "1");
    let rv2: u64 = meta("{.metadata.resourceVersion}").parse().unwrap();
    assert!(rv2 > rv, "resourceVersion grows: {rv} -> {rv2}");
    server.kubectl_ok(
        KUBECTL,
        &[
            "patch",
            "pod",
            "ticker",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/activeDeadlineSeconds","value":3600}]"#,
        ],
    );
    assert_eq!(meta("{.metadata.generation}"), "2");
    assert_eq!(meta("{.metadata.uid}"), uid);

    // AlreadyExists and a missing namespace are the Kubernetes errors.
    let dup = server.kubectl(KUBECTL, &["create", "-f", &ticker]);
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("Error from server (AlreadyExists)"),
        "{dup:?}"
    );
    let missing = server.kubectl(KUBECTL, &["create", "configmap", "x", "-n", "nope"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("namespaces \"nope\" not found"),
        "{missing:?}"
    );
}

#[test]
fn namespaces_node_and_runtime_class_exist_at_start() {
    let server = Server::start();
    let namespaces = names(&server.kubectl_ok(KUBECTL, &["get", "namespaces", "-o", "name"]));
    for ns in [
        "namespace/default",
        "namespace/kube-node-lease",
        "namespace/kube-public",
        "namespace/kube-system",
    ] {
        assert!(namespaces.contains(&ns.to_string()), "{namespaces:?}");
    }
    let rc = server.kubectl_ok(KUBECTL, &["get", "runtimeclass", "wasmtime"]);
    let header: Vec<&str> = rc.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "HANDLER", "AGE"]);
    assert!(rc.lines().nth(1).unwrap().starts_with("wasmtime"), "{rc}");
    let nodes = server.kubectl_ok(KUBECTL, &["get", "nodes", "-o", "wide"]);
    let header: Vec<&str> = nodes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..6],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    );
    let row: Vec<&str> = nodes.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[5]),
        ("node-1", "Ready", "127.0.0.1"),
        "{nodes}"
    );
    let capacity = server.jsonpath(
        KUBECTL,
        &["node", "node-1"],
        "{.status.capacity.cpu} {.status.capacity.pods}",
    );
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(capacity, format!("{cpus} 110"));
}

#[test]
fn watch_from_a_resource_version_replays_what_came_after() {
    let server = Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cms: Api<ConfigMap> = Api::namespaced(server.kube_client().await, "default");
        let a = cms
            .create(&PostParams::default(), &config_map("a", &[]))
            .await
            .unwrap();
        let from = a.metadata.resource_version.clone().unwrap();
        let mut changed = a.clone();
        changed.data = Some([("k".to_string(), "v".to_string())].into());
        cms.replace("a", &PostParams::default(), &changed)
            .await
            .unwrap();
        cms.create(&PostParams::default(), &config_map("b", &[]))
            .await
            .unwrap();
        cms.delete("a", &DeleteParams::default()).await.unwrap();

        let events: Vec<(String, String)> = cms
            .watch(&WatchParams::default().timeout(5), &from)
            .await
            .unwrap()
            .take(3)
            .map_ok(|e| match e {
                WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.unwrap()),
                WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.unwrap()),
                WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.unwrap()),
                other => panic!("unexpected {other:?}"),
            })
            .try_collect()
            .await
            .unwrap();
        let expected: Vec<(String, String)> = [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
            .iter()
            .map(|(t, n)| (t.to_string(), n.to_string()))
            .collect();
        assert_eq!(events, expected);
    });
}

#[test]
fn deletecollection_removes_only_what_the_selector_matches() {
    let server = Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cms: Api<ConfigMap> = Api::namespaced(server.kube_client().await, "default");
        for (name, team) in [("a", "red"), ("b", "red"), ("c", "blue")] {
            cms.create(&PostParams::default(), &config_map(name, &[("team", team)]))
                .await
                .unwrap();
        }
        cms.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("team=red"),
        )
        .await
        .unwrap();
        let left: Vec<String> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        assert_eq!(left, ["c"]);
    });
}

#[test]
fn deleting_a_namespace_deletes_what_is_in_it() {
    let server = Server::start();
    server.import("ticker", "ticker:1.0");
    server.kubectl_ok(KUBECTL, &["create", "namespace", "team"]);
    let ticker = format!("{}/examples/ticker-pod.yaml", env!("CARGO_MANIFEST_DIR"));
    server.kubectl_ok(KUBECTL, &["apply", "-n", "team", "-f", &ticker]);
    server.kubectl_ok(
        KUBECTL,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "team",
            "--from-literal=a=1",
        ],
    );
    common::wait_for("ticker to run", Duration::from_secs(30), || {
        (server.jsonpath(KUBECTL, &["pod", "ticker", "-n", "team"], "{.status.phase}") == "Running")
            .then_some(())
    });

    // kubectl waits until the namespace is gone, which needs its running pod stopped first.
    let out = server.kubectl_ok(KUBECTL, &["delete", "namespace", "team", "--timeout=60s"]);
    assert_eq!(out.trim(), "namespace \"team\" deleted");
    let gone = server.kubectl(KUBECTL, &["get", "namespace", "team"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("namespaces \"team\" not found"),
        "{gone:?}"
    );
    assert_eq!(
        server
            .kubectl_ok(
                KUBECTL,
                &["get", "pods,configmaps", "-n", "team", "-o", "name"]
            )
            .trim(),
        ""
    );

    let refused = server.kubectl(KUBECTL, &["delete", "namespace", "default"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("namespaces \"default\" is forbidden: this namespace may not be deleted"),
        "{refused:?}"
    );
}
