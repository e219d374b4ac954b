//! The README tour with the real kubectl, oldest and newest version: apply (twice), get
//! with labels and output formats, watch a pod's life, describe, logs, label, annotate,
//! patch, create configmap, delete.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Server, KUBECTL_VERSIONS};

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn tour(version: &str) {
    let server = Server::start();
    server.import("hello", "hello:1.0");

    // Watch from before the pod exists, so every phase it goes through is seen.
    let mut watch = std::process::Command::new(common::kubectl_path(version))
        .env("KUBECONFIG", server.kubeconfig())
        .args(["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    std::thread::sleep(Duration::from_millis(300)); // let the watch open (it only listens)

    let out = server.kubectl_ok(version, &["apply", "-f", &example("hello-pod.yaml")]);
    assert_eq!(out.trim(), "pod/hello created");

    common::wait_for("hello to succeed", Duration::from_secs(30), || {
        let phase = server.jsonpath(version, &["pod", "hello"], "{.status.phase}");
        (phase == "Succeeded").then_some(())
    });
    // The watch stream saw Pending/ContainerCreating, then Running, then Completed.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = watch.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok)
            {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let statuses: Vec<String> = common::wait_for(
        "the watch to show Completed",
        Duration::from_secs(10),
        || {
            let statuses: Vec<String> = lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with("hello "))
                .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
                .collect();
            statuses
                .iter()
                .any(|s| s == "Completed")
                .then_some(statuses)
        },
    );
    watch.kill().expect("stop kubectl get -w");
    let _ = watch.wait();
    reader.join().expect("watch reader");
    let text = lines.lock().unwrap().join("\n");
    let first = |s: &str| statuses.iter().position(|x| x == s);
    let pending = first("Pending")
        .or(first("ContainerCreating"))
        .unwrap_or_else(|| panic!("no Pending in {text}"));
    let running = first("Running").unwrap_or_else(|| panic!("no Running in {text}"));
    let completed = first("Completed").unwrap_or_else(|| panic!("no Completed in {text}"));
    assert!(
        pending < running && running < completed,
        "order: {statuses:?}"
    );

    // The default table has Kubernetes' columns.
    let table = server.kubectl_ok(version, &["get", "pods"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        table.lines().nth(1).unwrap().starts_with("hello"),
        "{table}"
    );
    let wide = server.kubectl_ok(version, &["get", "pods", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("NODE"), "{wide}");
    assert!(wide.contains("node-1"), "{wide}");

    // Logs: what the component printed.
    let logs = server.kubectl_ok(version, &["logs", "hello"]);
    assert!(logs.contains("Hello from wkube!"), "{logs}");
    assert!(logs.contains("from"), "{logs}");
    assert!(logs.contains("Hi there"), "{logs}");

    // A second apply of a changed manifest updates in place.
    let changed = std::fs::read_to_string(example("hello-pod.yaml"))
        .unwrap()
        .replace("app: hello", "app: hello\n    tier: demo");
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(&changed));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pod/hello configured"
    );
    let by_label = server.kubectl_ok(version, &["get", "pods", "-l", "tier=demo", "-o", "name"]);
    assert_eq!(by_label.trim(), "pod/hello");
    let none = server.kubectl_ok(version, &["get", "pods", "-l", "tier!=demo", "-o", "name"]);
    assert_eq!(none.trim(), "");

    // -o json and -o yaml carry the object as stored.
    let json: serde_json::Value =
        serde_json::from_str(&server.kubectl_ok(version, &["get", "pod", "hello", "-o", "json"]))
            .unwrap();
    assert_eq!(json["spec"]["containers"][0]["image"], "hello:1.0");
    assert_eq!(
        json["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    assert!(json["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    let yaml = server.kubectl_ok(version, &["get", "pod", "hello", "-o", "yaml"]);
    assert!(yaml.contains("tier: demo"), "{yaml}");

    // describe shows the pod and its events.
    let describe = server.kubectl_ok(version, &["describe", "pod", "hello"]);
    for want in [
        "Name:",
        "hello",
        "Status:",
        "Succeeded",
        "Events:",
        "Scheduled",
        "Started",
    ] {
        assert!(
            describe.contains(want),
            "describe lacks {want}:\n{describe}"
        );
    }

    // label, annotate, patch (strategic, merge and JSON patch).
    server.kubectl_ok(version, &["label", "pod", "hello", "env=test"]);
    server.kubectl_ok(version, &["annotate", "pod", "hello", "note=checked"]);
    server.kubectl_ok(
        version,
        &[
            "patch",
            "pod",
            "hello",
            "-p",
            r#"{"metadata":{"labels":{"patched":"strategic"}}}"#,
        ],
    );
    server.kubectl_ok(
        version,
        &[
            "patch",
            "pod",
            "hello",
            "--type=merge",
            "-p",
            r#"{"metadata":{"annotations":{"merged":"yes"}}}"#,
        ],
    );
    server.kubectl_ok(
        version,
        &[
            "patch",
            "pod",
            "hello",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/jsonpatch","value":"yes"}]"#,
        ],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&server.kubectl_ok(version, &["get", "pod", "hello", "-o", "json"]))
            .unwrap();
    let meta = &meta["metadata"];
    assert_eq!(meta["labels"]["env"], "test");
    assert_eq!(meta["labels"]["patched"], "strategic");
    assert_eq!(meta["labels"]["jsonpatch"], "yes");
    assert_eq!(meta["annotations"]["note"], "checked");
    assert_eq!(meta["annotations"]["merged"], "yes");

    // create configmap
    let out = server.kubectl_ok(
        version,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
            "--from-literal=size=2",
        ],
    );
    assert_eq!(out.trim(), "configmap/settings created");
    assert_eq!(
        server.jsonpath(version, &["configmap", "settings"], "{.data.color}"),
        "blue"
    );
    let cms = server.kubectl_ok(version, &["get", "configmaps"]);
    assert!(
        cms.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "DATA", "AGE"]),
        "{cms}"
    );

    // delete
    let out = server.kubectl_ok(version, &["delete", "pod", "hello"]);
    assert_eq!(out.trim(), "pod \"hello\" deleted");
    let gone = server.kubectl(version, &["get", "pod", "hello"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("pods \"hello\" not found"));
}

#[test]
fn tour_with_oldest_kubectl() {
    tour(KUBECTL_VERSIONS[0]);
}

#[test]
fn tour_with_newest_kubectl() {
    tour(KUBECTL_VERSIONS[1]);
}
