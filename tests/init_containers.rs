//! Init containers (`spec.initContainers`) on the node, seen through the real kubectl: run
//! in order to completion before the app containers, failing as the restart policy says,
//! and not run again after a node restart.

mod common;

use std::time::Duration;

use common::Server;

/// A pod whose init containers are `(name, args)` of the `confwatch` guest, sharing an
/// emptyDir at /data with its app container `app` (`app_image`, `app_args`).
fn pod(name: &str, policy: &str, inits: &[(&str, &str)], app: (&str, &str)) -> String {
    let container = |name: &str, image: &str, args: &str| {
        format!("  - name: {name}\n    image: {image}\n    args: {args}\n    volumeMounts: [{{name: data, mountPath: /data}}]\n")
    };
    let inits: String = inits
        .iter()
        .map(|(n, args)| container(n, "confwatch:1.0", args))
        .collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  volumes: [{{name: data, emptyDir: {{}}}}]\n  initContainers:\n{inits}  containers:\n{}",
        container("app", app.0, app.1)
    )
}

fn start() -> Server {
    let server = Server::start();
    server.import("confwatch", "confwatch:1.0");
    server.import("exit-code", "exit-code:1.0");
    server.import("ticker", "ticker:1.0");
    server
}

fn status_column(server: &Server, version: &str, pod: &str) -> String {
    let row = server.kubectl_ok(version, &["get", "pod", pod, "--no-headers"]);
    row.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// The second init container reads what the first wrote (so it ran after it), the app
/// reads it too, and the app starts only once both completed.
#[test]
fn init_containers_run_in_order_before_the_app() {
    let server = start();
    for version in ["1.27", "1.33"] {
        let name = format!("init-{}", version.replace('.', "-"));
        let manifest = pod(
            &name,
            "Never",
            &[
                ("first", "[write, /data/a, from-first]"),
                ("second", "[cat, /data/a]"),
            ],
            ("confwatch:1.0", "[cat, /data/a]"),
        );
        server.apply(version, &manifest);
        common::wait_for("the pod to succeed", Duration::from_secs(30), || {
            (server.jsonpath(version, &["pod", &name], "{.status.phase}") == "Succeeded")
                .then_some(())
        });
        let inits = server.jsonpath(
            version,
            &["pod", &name],
            "{range .status.initContainerStatuses[*]}{.name}={.state.terminated.reason}/{.state.terminated.exitCode}/{.ready}/{.restartCount} {end}",
        );
        assert_eq!(inits, "first=Completed/0/true/0 second=Completed/0/true/0 ");
        let initialized = server.jsonpath(
            version,
            &["pod", &name],
            "{.status.conditions[?(@.type==\"Initialized\")].status}",
        );
        assert_eq!(initialized, "True");
        let second_finished = server.jsonpath(
            version,
            &["pod", &name],
            "{.status.initContainerStatuses[1].state.terminated.finishedAt}",
        );
        let app_started = server.jsonpath(
            version,
            &["pod", &name],
            "{.status.containerStatuses[0].state.terminated.startedAt}",
        );
        // RFC 3339 UTC timestamps of one format compare as strings.
        assert!(
            app_started >= second_finished,
            "app started {app_started}, second init finished {second_finished}"
        );
        let logs = server.kubectl_ok(version, &["logs", &name, "-c", "second"]);
        assert_eq!(logs.trim(), "from-first");
        let logs = server.kubectl_ok(version, &["logs", &name, "-c", "app"]);
        assert_eq!(logs.trim(), "from-first");
        assert_eq!(status_column(&server, version, &name), "Completed");
    }
}

#[test]
fn a_failed_init_container_fails_a_never_pod() {
    let server = start();
    server.apply(
        "1.33",
        &pod(
            "doomed",
            "Never",
            &[("setup", "[cat, /data/missing]")],
            ("ticker:1.0", "[]"),
        ),
    );
    common::wait_for("the pod to fail", Duration::from_secs(30), || {
        (server.jsonpath("1.33", &["pod", "doomed"], "{.status.phase}") == "Failed").then_some(())
    });
    let init = server.jsonpath(
        "1.33",
        &["pod", "doomed"],
        "{.status.initContainerStatuses[0].state.terminated.reason}/{.status.initContainerStatuses[0].state.terminated.exitCode}",
    );
    assert_eq!(init, "Error/1");
    // The app container never started.
    let app = server.jsonpath(
        "1.33",
        &["pod", "doomed"],
        "{.status.containerStatuses[0].state.waiting.reason}",
    );
    assert_eq!(app, "PodInitializing");
    let initialized = server.jsonpath(
        "1.33",
        &["pod", "doomed"],
        "{.status.conditions[?(@.type==\"Initialized\")].status}/{.status.conditions[?(@.type==\"Initialized\")].reason}",
    );
    assert_eq!(initialized, "False/ContainersNotInitialized");
    for version in ["1.27", "1.33"] {
        assert_eq!(status_column(&server, version, "doomed"), "Init:Error");
    }
}

/// Under `Always` and `OnFailure` a failing init container is restarted with the back-off
/// and the pod stays `Pending`.
#[test]
fn a_failing_init_container_restarts_and_the_pod_stays_pending() {
    let server = start();
    for policy in ["Always", "OnFailure"] {
        let name = format!("retry-{}", policy.to_lowercase());
        server.apply(
            "1.33",
            &pod(
                &name,
                policy,
                &[("setup", "[cat, /data/missing]")],
                ("ticker:1.0", "[]"),
            ),
        );
        common::wait_for("CrashLoopBackOff", Duration::from_secs(30), || {
            let restarts = server.jsonpath(
                "1.33",
                &["pod", &name],
                "{.status.initContainerStatuses[0].restartCount}",
            );
            (restarts.parse::<u32>().ok()? >= 1
                && status_column(&server, "1.33", &name) == "Init:CrashLoopBackOff")
                .then_some(())
        });
        let phase = server.jsonpath("1.33", &["pod", &name], "{.status.phase}");
        assert_eq!(phase, "Pending");
        let app = server.jsonpath(
            "1.33",
            &["pod", &name],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        assert_eq!(app, "PodInitializing");
    }
}

/// A node restarted with `kill -9` does not run a completed init container again: it
/// knows from the pod's status, as kubelet does while the sandbox lives.
#[test]
fn completed_init_containers_are_not_rerun_after_a_node_restart() {
    let mut server = start();
    server.apply(
        "1.33",
        &pod(
            "kept",
            "Always",
            &[("setup", "[write, /data/a, once]")],
            ("ticker:1.0", "[]"),
        ),
    );
    let init_status = "{.status.initContainerStatuses[0].containerID} {.status.initContainerStatuses[0].restartCount}";
    common::wait_for("the app to run", Duration::from_secs(30), || {
        (server.jsonpath("1.33", &["pod", "kept"], "{.status.phase}") == "Running").then_some(())
    });
    let before = server.jsonpath("1.33", &["pod", "kept"], init_status);
    assert!(
        before.starts_with("wasmtime://") && before.ends_with(" 0"),
        "{before}"
    );
    server.kill9();
    server.spawn();
    // The app runs again (it died with the node), the init container did not.
    common::wait_for("the app to run again", Duration::from_secs(30), || {
        let restarts = server.jsonpath(
            "1.33",
            &["pod", "kept"],
            "{.status.containerStatuses[0].restartCount}",
        );
        (restarts == "1").then_some(())
    });
    assert_eq!(
        server.jsonpath("1.33", &["pod", "kept"], init_status),
        before
    );
}
