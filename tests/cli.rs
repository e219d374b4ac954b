//! The kubectl-like verbs of the `wkube` binary against a real server, checked against
//! what the real kubectl sees and prints.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use serde_json::Value;

const KUBECTL: &str = "1.33";

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = server
        .wkube()
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wkube");
    if let Some(input) = stdin {
        use std::io::Write as _;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wkube output")
}

/// Runs `wkube ARGS`, failing the test with its stderr if it fails; returns stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    ok_with_stdin(server, args, None)
}

fn ok_with_stdin(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(server, args, stdin);
    assert!(
        out.status.success(),
        "wkube {} failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `wkube ARGS`, which must fail; returns (stdout, stderr).
fn fails(server: &Server, args: &[&str]) -> (String, String) {
    let out = run(server, args, None);
    assert!(
        !out.status.success(),
        "wkube {} succeeded: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn names(server: &Server, kind: &str) -> String {
    server.jsonpath(KUBECTL, &[kind], "{.items[*].metadata.name}")
}

/// A long-running `wkube` whose stdout and stderr lines are collected as they arrive.
struct Streaming {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Streaming {
    fn start(server: &Server, args: &[&str]) -> Self {
        let mut child = server
            .wkube()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wkube");
        let lines = collect(child.stdout.take().expect("stdout"));
        let errors = collect(child.stderr.take().expect("stderr"));
        Streaming {
            child,
            lines,
            errors,
        }
    }

    /// Waits until `done` holds for the stdout lines so far; returns them.
    fn wait_until(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        common::wait_for(what, Duration::from_secs(30), || {
            let lines = self.lines.lock().unwrap().clone();
            done(&lines).then_some(lines)
        })
    }

    /// Waits for a stderr line starting with `prefix`.
    fn wait_for_stderr(&self, prefix: &str) {
        common::wait_for(prefix, Duration::from_secs(30), || {
            let errors = self.errors.lock().unwrap();
            errors.iter().any(|l| l.starts_with(prefix)).then_some(())
        })
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_phase(server: &Server, pod: &str, phase: &str) {
    common::wait_for(
        &format!("{pod} to be {phase}"),
        Duration::from_secs(30),
        || (server.jsonpath(KUBECTL, &["pod", pod], "{.status.phase}") == phase).then_some(()),
    );
}

#[test]
fn apply_creates_then_configures_then_leaves_unchanged() {
    let server = Server::start();
    let manifest = std::fs::read_to_string(example("hello-pod.yaml")).unwrap();
    let out = ok(&server, &["apply", "-f", &example("hello-pod.yaml")]);
    assert_eq!(out, "pod/hello created\n");

    let changed = manifest.replace("app: hello", "app: hello\n    tier: demo");
    let out = ok_with_stdin(&server, &["apply", "-f", "-"], Some(&changed));
    assert_eq!(out, "pod/hello configured\n");
    assert_eq!(
        server.jsonpath(KUBECTL, &["pod", "hello"], "{.metadata.labels.tier}"),
        "demo"
    );
    let out = ok_with_stdin(&server, &["apply", "-f", "-"], Some(&changed));
    assert_eq!(out, "pod/hello unchanged\n");

    // Dropping a label from the manifest removes it from the object.
    let out = ok(&server, &["apply", "-f", &example("hello-pod.yaml")]);
    assert_eq!(out, "pod/hello configured\n");
    let labels = server.jsonpath(KUBECTL, &["pod", "hello"], "{.metadata.labels}");
    assert_eq!(labels, r#"{"app":"hello"}"#);
    // kubectl reads the same last-applied annotation and agrees nothing changed.
    let out = server.kubectl_ok(KUBECTL, &["apply", "-f", &example("hello-pod.yaml")]);
    assert_eq!(out.trim(), "pod/hello unchanged");
}

#[test]
fn apply_reads_a_directory_in_sorted_order_and_stdin() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cm = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    std::fs::write(dir.path().join("b.yaml"), cm("second")).unwrap();
    std::fs::write(dir.path().join("a.yml"), cm("first")).unwrap();
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "third"}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let out = ok(&server, &["apply", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(
        out,
        "configmap/first created\nconfigmap/second created\nconfigmap/third created\n"
    );

    let out = ok_with_stdin(&server, &["apply", "-f", "-"], Some(&cm("from-stdin")));
    assert_eq!(out, "configmap/from-stdin created\n");
    assert_eq!(
        names(&server, "configmaps"),
        "first from-stdin second third"
    );
}

#[test]
fn apply_with_one_invalid_document_stores_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good-one\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good-two\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (stdout, stderr) = fails(&server, &["apply", "-f", file]);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(&format!(
            "Error from server (Invalid): error when creating \"{file}\" (document at line 6): \
             ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        )),
        "{stderr}"
    );
    assert_eq!(names(&server, "configmaps"), "", "nothing may be stored");
}

#[test]
fn apply_reports_yaml_errors_with_file_line_and_column() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (_, stderr) = fails(&server, &["apply", "-f", file]);
    // The flow sequence opened on line 9 is still open at the end of the file (line 10).
    assert!(
        stderr.starts_with(&format!(
            "error: {file}:10:1: did not find expected ',' or ']'"
        )),
        "{stderr}"
    );
    assert_eq!(names(&server, "configmaps"), "");
}

#[test]
fn apply_reports_unknown_kinds_with_file_and_line() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("widgets.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\n# a widget\n\
         apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (_, stderr) = fails(&server, &["apply", "-f", file]);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: resource mapping not found for name: \"w\" namespace: \"\" from \"{file}\" \
             (document at line 7): no matches for kind \"Widget\" in version \"example.com/v1\""
        )
    );
    assert_eq!(names(&server, "configmaps"), "");
}

#[test]
fn apply_creates_a_namespace_and_its_objects_together() {
    let server = Server::start();
    let out = ok_with_stdin(
        &server,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team-a\n",
        ),
    );
    assert_eq!(
        out,
        "namespace/team-a created\nconfigmap/settings created\n"
    );
    let got = server.kubectl_ok(
        KUBECTL,
        &["get", "configmap", "settings", "-n", "team-a", "-o", "name"],
    );
    assert_eq!(got.trim(), "configmap/settings");
}

#[test]
fn get_tables_match_kubectls() {
    let server = Server::start();
    server.import("hello", "hello:1.0");
    ok(&server, &["apply", "-f", &example("hello-pod.yaml")]);
    wait_phase(&server, "hello", "Succeeded");

    let table = ok(&server, &["get", "pods"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "NAME    READY   STATUS      RESTARTS   AGE");
    assert!(
        lines[1].starts_with("hello   0/1     Completed   0          "),
        "{table}"
    );
    let kubectl = server.kubectl_ok(KUBECTL, &["get", "pods"]);
    assert_eq!(lines[0], kubectl.lines().next().unwrap());

    for args in [
        &["get", "pods", "-o", "wide"][..],
        &["get", "pods", "-A"],
        &["get", "nodes", "-o", "wide"],
        &["get", "namespaces"],
    ] {
        let ours = ok(&server, args);
        let theirs = server.kubectl_ok(KUBECTL, args);
        // Same columns, same widths, same cells except for ages ticking in between.
        assert_eq!(
            ours.lines().next(),
            theirs.lines().next(),
            "{args:?}:\n{ours}\n{theirs}"
        );
        assert_eq!(ours.lines().count(), theirs.lines().count(), "{args:?}");
    }
    let wide = ok(&server, &["get", "pods", "-o", "wide"]);
    assert!(wide.lines().nth(1).unwrap().contains("node-1"), "{wide}");
    let all = ok(&server, &["get", "pods", "-A"]);
    assert!(all.starts_with("NAMESPACE   NAME    READY"), "{all}");
    assert!(
        all.lines().nth(1).unwrap().starts_with("default     hello"),
        "{all}"
    );
}

#[test]
fn get_of_several_types_prints_a_table_each_like_kubectl() {
    let server = Server::start();
    ok(&server, &["create", "configmap", "a", "--from-literal=k=v"]);
    let args = &["get", "cm,ns,runtimeclasses"][..];
    let ours = ok(&server, args);
    let theirs = server.kubectl_ok(KUBECTL, args);
    let first_words = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect()
    };
    // Same tables in the same order, same names with their type prefixes, blank lines
    // between the tables; only ages may tick in between.
    assert_eq!(first_words(&ours), first_words(&theirs), "{ours}\n{theirs}");
    assert!(ours.contains("configmap/a "), "{ours}");
    assert!(ours.contains("namespace/default "), "{ours}");
    assert!(ours.contains("\n\nNAME "), "{ours}");

    let names = ok(&server, &["get", "cm,ns", "-o", "name"]);
    assert_eq!(
        names,
        server.kubectl_ok(KUBECTL, &["get", "cm,ns", "-o", "name"])
    );
    let list: Value = serde_json::from_str(&ok(&server, &["get", "cm,ns", "-o", "json"])).unwrap();
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"ConfigMap") && kinds.contains(&"Namespace"),
        "{kinds:?}"
    );
    let empty = run(&server, &["get", "secrets,pods"], None);
    assert!(empty.status.success());
    assert_eq!(
        String::from_utf8_lossy(&empty.stderr).trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn get_prints_json_yaml_and_names() {
    let server = Server::start();
    ok(&server, &["create", "configmap", "a", "--from-literal=k=v"]);
    ok(&server, &["create", "configmap", "b", "--from-literal=k=w"]);

    let ours: Value =
        serde_json::from_str(&ok(&server, &["get", "cm", "a", "-o", "json"])).unwrap();
    let theirs: Value =
        serde_json::from_str(&server.kubectl_ok(KUBECTL, &["get", "cm", "a", "-o", "json"]))
            .unwrap();
    assert_eq!(ours, theirs);
    let text = ok(&server, &["get", "cm", "a", "-o", "json"]);
    assert!(
        text.starts_with("{\n    \"apiVersion\": \"v1\",\n    \"data\""),
        "{text}"
    );

    let ours: Value =
        serde_yaml::from_str(&ok(&server, &["get", "cm", "a", "-o", "yaml"])).unwrap();
    assert_eq!(ours, theirs);

    let list: Value = serde_json::from_str(&ok(&server, &["get", "cm", "-o", "json"])).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][1]["data"]["k"], "w");
    assert_eq!(list["items"][1]["kind"], "ConfigMap");
    let list: Value =
        serde_yaml::from_str(&ok(&server, &["get", "cm", "a", "b", "-o", "yaml"])).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    assert_eq!(
        ok(&server, &["get", "cm", "-o", "name"]),
        "configmap/a\nconfigmap/b\n"
    );
    let rc = ok(&server, &["get", "runtimeclasses", "-o", "name"]);
    assert!(rc.starts_with("runtimeclass.node.k8s.io/"), "{rc}");

    // Like kubectl, what exists is printed and each missing name is an error.
    let out = run(&server, &["get", "cm", "a", "nope", "-o", "name"], None);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "configmap/a\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (NotFound): configmaps \"nope\" not found"
    );
}

#[test]
fn get_filters_by_label_field_and_namespace() {
    let server = Server::start();
    ok_with_stdin(
        &server,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: red\n  labels: {color: red}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: blue\n  labels: {color: blue}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: elsewhere\n  namespace: other\n  labels: {color: red}\n",
        ),
    );
    assert_eq!(
        ok(&server, &["get", "cm", "-l", "color=red", "-o", "name"]),
        "configmap/red\n"
    );
    assert_eq!(
        ok(&server, &["get", "cm", "-l", "color!=red", "-o", "name"]),
        "configmap/blue\n"
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "cm",
                "--field-selector",
                "metadata.name=blue",
                "-o",
                "name"
            ]
        ),
        "configmap/blue\n"
    );
    assert_eq!(
        ok(&server, &["get", "cm", "-n", "other", "-o", "name"]),
        "configmap/elsewhere\n"
    );
    let all = ok(&server, &["get", "cm", "-A", "-l", "color=red"]);
    let rows: Vec<Vec<&str>> = all
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "DATA", "AGE"]);
    assert_eq!(&rows[1][..2], ["default", "red"]);
    assert_eq!(&rows[2][..2], ["other", "elsewhere"]);
    let out = run(&server, &["get", "cm", "-l", "color=green"], None);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn get_accepts_kubectl_aliases() {
    let server = Server::start();
    for (aliases, header) in [
        (&["po", "pod", "pods", "Pod"][..], "NAME"),
        (&["cm", "configmap", "configmaps"], "NAME"),
        (&["secret", "secrets"], "NAME"),
        (&["ns", "namespace", "namespaces"], "NAME"),
        (&["no", "node", "nodes"], "NAME"),
        (&["ev", "event", "events"], "LAST"),
        (
            &[
                "runtimeclass",
                "runtimeclasses",
                "runtimeclasses.node.k8s.io",
            ],
            "NAME",
        ),
    ] {
        for alias in aliases {
            let out = run(&server, &["get", alias], None);
            assert!(
                out.status.success(),
                "{alias}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                text.starts_with(header) || err.starts_with("No resources found"),
                "{alias}: {text}{err}"
            );
        }
    }
    let (_, stderr) = fails(&server, &["get", "widgets"]);
    assert_eq!(
        stderr.trim(),
        "error: the server doesn't have a resource type \"widgets\""
    );
}

#[test]
fn get_watch_shows_pending_running_completed() {
    let server = Server::start();
    server.import("hello", "hello:1.0");
    let watch = Streaming::start(&server, &["get", "pods", "-w"]);
    // The watch goes on from its list's resourceVersion, so once the (empty) list has been
    // printed, every later change is seen.
    watch.wait_for_stderr("No resources found in default namespace.");
    ok(&server, &["apply", "-f", &example("hello-pod.yaml")]);
    let lines = watch.wait_until("the watch to show Completed", |lines| {
        lines.iter().any(|l| l.contains(" Completed "))
    });
    assert_eq!(
        lines[0], "NAME    READY   STATUS    RESTARTS   AGE",
        "{lines:?}"
    );
    let statuses: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default())
        .collect();
    let first = |s: &str| statuses.iter().position(|x| *x == s);
    let pending = first("Pending").or(first("ContainerCreating"));
    let running = first("Running");
    let completed = first("Completed");
    assert!(
        pending.is_some() && pending < running && running < completed,
        "{lines:?}"
    );
}

#[test]
fn describe_shows_the_pod_and_its_events() {
    let server = Server::start();
    server.import("hello", "hello:1.0");
    ok(&server, &["apply", "-f", &example("hello-pod.yaml")]);
    wait_phase(&server, "hello", "Succeeded");
    let text = common::wait_for("the Started event", Duration::from_secs(10), || {
        let text = ok(&server, &["describe", "pod", "hello"]);
        text.contains("Started").then_some(text)
    });
    for want in [
        "Name:             hello",
        "Namespace:        default",
        "Node:             node-1/",
        "Labels:           app=hello",
        "Status:           Succeeded",
        "    Image:         hello:1.0",
        "    State:          Terminated",
        "      Reason:       Completed",
        "      Exit Code:    0",
        "    Ready:          False",
        "    Restart Count:  0",
        "      GREETING:  Hi there",
        "Conditions:",
        "Events:",
        "  Type    Reason     Age   From               Message",
        "default-scheduler  Successfully assigned default/hello to node-1",
        "Started container hello",
    ] {
        assert!(text.contains(want), "describe lacks {want:?}:\n{text}");
    }
    let scheduled = text.find("Scheduled").expect("Scheduled event");
    assert!(
        scheduled < text.find("Started container").unwrap(),
        "{text}"
    );

    ok(
        &server,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
        ],
    );
    let text = ok(&server, &["describe", "cm", "settings"]);
    assert!(
        text.starts_with("Name:         settings\nNamespace:    default\n"),
        "{text}"
    );
    assert!(text.contains("data:\n  color: blue\n"), "{text}");
    assert!(text.ends_with("Events:  <none>\n"), "{text}");
}

#[test]
fn delete_by_name_file_label_and_all() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cms.yaml");
    let cm = |name: &str, tier: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{tier: {tier}}}\n")
    };
    std::fs::write(
        &file,
        cm("from-file", "x") + "---\n" + &cm("from-file-2", "x"),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let all = [
        cm("one", "a"),
        cm("two", "b"),
        cm("three", "b"),
        cm("four", "c"),
    ]
    .join("---\n");
    ok_with_stdin(&server, &["apply", "-f", "-"], Some(&all));
    ok(&server, &["apply", "-f", file]);

    assert_eq!(
        ok(&server, &["delete", "cm", "one"]),
        "configmap \"one\" deleted\n"
    );
    assert_eq!(
        ok(&server, &["delete", "-f", file]),
        "configmap \"from-file\" deleted\nconfigmap \"from-file-2\" deleted\n"
    );
    assert_eq!(
        ok(&server, &["delete", "cm", "-l", "tier=b"]),
        "configmap \"three\" deleted\nconfigmap \"two\" deleted\n"
    );
    assert_eq!(names(&server, "configmaps"), "four");
    assert_eq!(
        ok(&server, &["delete", "cm", "--all"]),
        "configmap \"four\" deleted\n"
    );
    assert_eq!(names(&server, "configmaps"), "");

    let (_, stderr) = fails(&server, &["delete", "pod", "ghost"]);
    assert_eq!(
        stderr.trim(),
        "Error from server (NotFound): pods \"ghost\" not found"
    );
}

#[test]
fn delete_of_a_pod_waits_until_it_is_gone() {
    let server = Server::start();
    server.import("ticker", "ticker:1.0");
    ok(&server, &["apply", "-f", &example("ticker-pod.yaml")]);
    wait_phase(&server, "ticker", "Running");
    assert_eq!(
        ok(&server, &["delete", "pod", "ticker"]),
        "pod \"ticker\" deleted\n"
    );
    let gone = server.kubectl(KUBECTL, &["get", "pod", "ticker"]);
    assert!(!gone.status.success(), "the pod outlived delete");
}

#[test]
fn logs_tail_timestamps_and_follow() {
    let server = Server::start();
    server.import("hello", "hello:1.0");
    server.import("ticker", "ticker:1.0");
    ok(&server, &["apply", "-f", &example("hello-pod.yaml")]);
    ok(&server, &["apply", "-f", &example("ticker-pod.yaml")]);
    wait_phase(&server, "hello", "Succeeded");

    let all = ok(&server, &["logs", "hello"]);
    assert_eq!(
        all,
        "Hello from wkube!\nargs: [\"hello\", \"from\", \"a\", \"pod\"]\nGREETING=Hi there\n"
    );
    assert_eq!(
        ok(&server, &["logs", "hello", "--tail", "1"]),
        "GREETING=Hi there\n"
    );
    let stamped = ok(&server, &["logs", "hello", "-c", "hello", "--timestamps"]);
    for (line, plain) in stamped.lines().zip(all.lines()) {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{line}"
        );
        assert_eq!(rest, plain);
    }

    wait_phase(&server, "ticker", "Running");
    let follow = Streaming::start(&server, &["logs", "ticker", "-f"]);
    let lines = follow.wait_until("tick 3 followed", |lines| {
        lines.iter().any(|l| l == "tick 3")
    });
    assert_eq!(lines[..3], ["tick 1", "tick 2", "tick 3"]);
}

#[test]
fn logs_previous_shows_the_previous_run() {
    let server = Server::start();
    server.import("exit-code", "exit-code:1.0");
    ok_with_stdin(
        &server,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: crasher\nspec:\n  restartPolicy: OnFailure\n  \
             containers:\n  - name: main\n    image: exit-code:1.0\n    args: [\"3\"]\n",
        ),
    );
    common::wait_for("a restart", Duration::from_secs(30), || {
        let n = server.jsonpath(
            KUBECTL,
            &["pod", "crasher"],
            "{.status.containerStatuses[0].restartCount}",
        );
        (n.parse::<u32>().ok()? >= 1).then_some(())
    });
    let previous = common::wait_for("the previous run's log", Duration::from_secs(10), || {
        let out = run(
            &server,
            &["logs", "crasher", "--previous", "--timestamps"],
            None,
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(previous.contains(" exiting with code 3"), "{previous}");
    let current = common::wait_for("the current run's log", Duration::from_secs(10), || {
        let out = run(&server, &["logs", "crasher", "--timestamps"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    });
    // Both runs print the same; the previous one printed it earlier.
    let stamp = |text: &str| {
        let first = text.split_whitespace().next().unwrap().to_string();
        chrono::DateTime::parse_from_rfc3339(&first).unwrap()
    };
    assert!(stamp(&previous) < stamp(&current), "{previous}\n{current}");
    let describe = ok(&server, &["describe", "pod", "crasher"]);
    assert!(
        describe.contains("    Last State:     Terminated\n"),
        "{describe}"
    );
    assert!(describe.contains("      Exit Code:    3\n"), "{describe}");
}

#[test]
fn create_configmap_and_secret_from_literals_and_files() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.conf");
    std::fs::write(&file, "mode=fast\n").unwrap();
    let file = file.to_str().unwrap();
    let out = ok(
        &server,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
            &format!("--from-file={file}"),
            &format!("--from-file=renamed.conf={file}"),
        ],
    );
    assert_eq!(out, "configmap/settings created\n");
    assert_eq!(
        server.jsonpath(KUBECTL, &["configmap", "settings"], "{.data}"),
        r#"{"app.conf":"mode=fast\n","color":"blue","renamed.conf":"mode=fast\n"}"#
    );

    let out = ok(
        &server,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
            &format!("--from-file={file}"),
        ],
    );
    assert_eq!(out, "secret/creds created\n");
    let secret: Value = serde_json::from_str(
        &server.kubectl_ok(KUBECTL, &["get", "secret", "creds", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["user"], "YWRtaW4=");
    assert_eq!(secret["data"]["app.conf"], "bW9kZT1mYXN0Cg==");

    let (_, stderr) = fails(
        &server,
        &["create", "configmap", "settings", "--from-literal=a=b"],
    );
    assert_eq!(
        stderr.trim(),
        "Error from server (AlreadyExists): configmaps \"settings\" already exists"
    );
}

#[test]
fn version_prints_client_and_server_versions() {
    let server = Server::start();
    let out = ok(&server, &["version"]);
    let raw: Value =
        serde_json::from_str(&server.kubectl_ok(KUBECTL, &["get", "--raw", "/version"])).unwrap();
    assert_eq!(
        out,
        format!(
            "Client Version: v{}\nServer Version: {}\n",
            env!("CARGO_PKG_VERSION"),
            raw["gitVersion"].as_str().unwrap()
        )
    );
}
