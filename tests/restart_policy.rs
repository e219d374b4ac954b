//! Restart policies with kubelet's back-off, seen through the real kubectl.

mod common;

use std::time::Duration;

use common::Server;

fn pod(name: &str, policy: &str, code: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: main\n    image: exit-code:1.0\n    args: [\"{code}\"]\n"
    )
}

#[test]
fn on_failure_restarts_with_back_off_until_crash_loop() {
    let server = Server::start();
    server.import("exit-code", "exit-code:1.0");
    let out = server.kubectl_with_stdin(
        "1.33",
        &["apply", "-f", "-"],
        Some(&pod("crasher", "OnFailure", "3")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first crash restarts at once, the second waits 10 s in CrashLoopBackOff.
    let mut restarts_seen = Vec::new();
    common::wait_for(
        "CrashLoopBackOff after two restarts",
        Duration::from_secs(60),
        || {
            let out = server.kubectl_ok("1.33", &["get", "pod", "crasher", "--no-headers"]);
            let cols: Vec<String> = out.split_whitespace().map(str::to_string).collect();
            let restarts: u32 = cols.get(3)?.parse().ok()?;
            if restarts_seen.last() != Some(&restarts) {
                restarts_seen.push(restarts);
            }
            (cols[2] == "CrashLoopBackOff" && restarts >= 2).then_some(())
        },
    );
    assert!(
        restarts_seen.windows(2).all(|w| w[0] < w[1]),
        "restarts must only increase: {restarts_seen:?}"
    );
    let last = server.jsonpath(
        "1.33",
        &["pod", "crasher"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "3");
    let phase = server.jsonpath("1.33", &["pod", "crasher"], "{.status.phase}");
    assert_eq!(phase, "Running");
    let events = server.kubectl_ok("1.33", &["describe", "pod", "crasher"]);
    assert!(
        events.contains("Back-off restarting failed container"),
        "{events}"
    );
}

#[test]
fn never_ends_failed_with_the_exit_code() {
    let server = Server::start();
    server.import("exit-code", "exit-code:1.0");
    let out = server.kubectl_with_stdin(
        "1.27",
        &["apply", "-f", "-"],
        Some(&pod("once", "Never", "3")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_for("the pod to fail", Duration::from_secs(30), || {
        (server.jsonpath("1.27", &["pod", "once"], "{.status.phase}") == "Failed").then_some(())
    });
    let code = server.jsonpath(
        "1.27",
        &["pod", "once"],
        "{.status.containerStatuses[0].state.terminated.exitCode}",
    );
    assert_eq!(code, "3");
    let reason = server.jsonpath(
        "1.27",
        &["pod", "once"],
        "{.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(reason, "Error");
    let row = server.kubectl_ok("1.27", &["get", "pod", "once", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["0/1", "Error", "0"], "{row}");
    // It does not run again: the restart count stays 0.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.jsonpath(
            "1.27",
            &["pod", "once"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

/// `resources.limits.memory` holds for a WASI guest as for a container: one that grows past
/// it is OOM-killed (137, `OOMKilled`, which `kubectl get pod` shows), and restarted as its
/// policy says.
#[test]
fn a_guest_over_its_memory_limit_is_oom_killed() {
    let server = Server::start();
    server.import("ticker", "ticker:1.0");
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hungry\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: ticker:1.0\n    args: [hold, \"64\"]\n    resources:\n      limits:\n        memory: 32Mi\n";
    let out = server.kubectl_with_stdin("1.33", &["apply", "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_for("the pod to fail", Duration::from_secs(30), || {
        (server.jsonpath("1.33", &["pod", "hungry"], "{.status.phase}") == "Failed").then_some(())
    });
    let terminated = server.jsonpath(
        "1.33",
        &["pod", "hungry"],
        "{.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(terminated, "137 OOMKilled");
    let row = server.kubectl_ok("1.33", &["get", "pod", "hungry", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["0/1", "OOMKilled"], "{row}");
}
