//! Jobs, driven by the real kubectl (oldest and newest) against a real `wkube server`,
//! with WASI guests as the pods: examples/job.yaml (completions 3, parallelism 2)
//! completes with never more than two pods running; `kubectl wait` and `kubectl logs
//! job/...` work; a failing guest stops at its backoffLimit; a finished Job with
//! `ttlSecondsAfterFinished` goes away with its pods; `kubectl create job` works (a
//! protobuf body from kubectl 1.33); a template that restarts `Always` is refused;
//! examples/cronjob.yaml spawns a Job at the next minute, and `kubectl create job
//! --from=cronjob/...` runs one at once.

#[macro_use]
mod common;

use std::time::Duration;

use common::{table_rows, wait_for, Server, KUBECTL_VERSIONS};

const DEADLINE: Duration = Duration::from_secs(60);

with_each_kubectl!(job_flow, failing_job, cronjob_flow);

fn server() -> Server {
    let server = Server::start();
    server.import("hello", "hello:1.0");
    server.import("exit-code", "exit-code:1.0");
    server
}

fn job_flow(version: &str) {
    let server = server();
    let example = format!("{}/examples/job.yaml", env!("CARGO_MANIFEST_DIR"));
    let out = server.kubectl_ok(version, &["apply", "-f", &example]);
    assert_eq!(out.trim(), "job.batch/hello created");
    server.kubectl_ok(
        version,
        &[
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=60s",
        ],
    );
    let counts = server.jsonpath(
        version,
        &["job", "hello"],
        "{.status.succeeded} {.status.failed} {.status.completionTime}",
    );
    assert!(counts.starts_with("3  20"), "{counts}");
    // Three pods, labelled for their Job, none started beyond the parallelism: the
    // third was created only after one of the first two had finished.
    let pods = server.kubectl_ok(
        version,
        &[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=hello,job-name=hello",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "jsonpath={range .items[*]}{.metadata.creationTimestamp} {.status.containerStatuses[0].state.terminated.finishedAt} {.status.phase}{\"\\n\"}{end}",
        ],
    );
    let pods: Vec<Vec<&str>> = pods.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(pods.iter().all(|p| p[2] == "Succeeded"), "{pods:?}");
    let first_finished = pods[..2].iter().map(|p| p[1]).min().unwrap_or_default();
    assert!(
        pods[2][0] >= first_finished,
        "a third pod ran beside two: {pods:?}"
    );
    let logs = server.kubectl_ok(version, &["logs", "job/hello"]);
    assert!(
        logs.contains("Hello from wkube!") && logs.contains("GREETING=from a Job"),
        "{logs}"
    );
    let table = server.kubectl_ok(version, &["get", "jobs", "-o", "wide"]);
    let rows = table_rows(&table);
    let header = &rows[0][..];
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{table}"
    );
    let row = &rows[1];
    assert_eq!(row[..3], ["hello", "Complete", "3/3"], "{table}");
    let all = server.kubectl_ok(
        version,
        &["get", "deploy,rs,sts,ds,job,cronjob,pods", "-o", "wide"],
    );
    assert!(all.contains("job.batch/hello"), "{all}");

    // `kubectl create job` (protobuf from 1.33), finished and then removed by its TTL.
    server.kubectl_ok(version, &["create", "job", "made", "--image=hello:1.0"]);
    server.kubectl_ok(
        version,
        &[
            "wait",
            "--for=condition=complete",
            "job/made",
            "--timeout=60s",
        ],
    );
    server.kubectl_ok(
        version,
        &[
            "patch",
            "job",
            "made",
            "--type=merge",
            "-p",
            r#"{"spec":{"ttlSecondsAfterFinished":0}}"#,
        ],
    );
    wait_for("made and its pods deleted", DEADLINE, || {
        let jobs = server.kubectl_ok(version, &["get", "jobs", "-o", "name"]);
        let pods = server.kubectl_ok(
            version,
            &["get", "pods", "-l", "job-name=made", "-o", "name"],
        );
        (!jobs.contains("job.batch/made") && pods.trim().is_empty()).then_some(())
    });
}

fn failing_job(version: &str) {
    let server = server();
    let manifest = r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fail"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "exit-code:1.0", "args": ["3"]}]}}}}"#;
    server.kubectl_with_stdin(version, &["create", "-f", "-"], Some(manifest));
    server.kubectl_ok(
        version,
        &[
            "wait",
            "--for=condition=failed",
            "job/fail",
            "--timeout=60s",
        ],
    );
    let status = server.jsonpath(
        version,
        &["job", "fail"],
        "{.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}",
    );
    assert_eq!(status, "2 BackoffLimitExceeded");
    let row = server.kubectl_ok(version, &["get", "job", "fail", "--no-headers"]);
    assert!(
        row.starts_with("fail") && row.contains("Failed") && row.contains("0/1"),
        "{row}"
    );
    // No third attempt.
    let pods = server.kubectl_ok(
        version,
        &["get", "pods", "-l", "job-name=fail", "-o", "name"],
    );
    assert_eq!(pods.lines().count(), 2, "{pods}");
}

fn cronjob_flow(version: &str) {
    let server = server();
    let example = format!("{}/examples/cronjob.yaml", env!("CARGO_MANIFEST_DIR"));
    let out = server.kubectl_ok(version, &["apply", "-f", &example]);
    assert_eq!(out.trim(), "cronjob.batch/hello-every-minute created");
    let table = server.kubectl_ok(version, &["get", "cronjobs"]);
    let rows = table_rows(&table);
    let header = &rows[0][..];
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"],
        "{table}"
    );

    // `kubectl create cronjob` (protobuf from 1.33).
    server.kubectl_ok(
        version,
        &[
            "create",
            "cronjob",
            "hourly",
            "--image=hello:1.0",
            "--schedule=@hourly",
        ],
    );
    let made = server.jsonpath(
        version,
        &["cronjob", "hourly"],
        "{.spec.schedule} {.spec.concurrencyPolicy} {.spec.jobTemplate.spec.template.spec.restartPolicy}",
    );
    assert_eq!(made, "@hourly Allow OnFailure");

    // Run at once from the template: the Job is the CronJob's, marked as manual.
    server.kubectl_ok(
        version,
        &["create", "job", "now", "--from=cronjob/hello-every-minute"],
    );
    server.kubectl_ok(
        version,
        &[
            "wait",
            "--for=condition=complete",
            "job/now",
            "--timeout=60s",
        ],
    );
    let marks = server.jsonpath(
        version,
        &["job", "now"],
        "{.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate} {.metadata.ownerReferences[0].kind}",
    );
    assert_eq!(marks, "manual CronJob");

    // The schedule: a Job named after the minute it was due, within a minute.
    let scheduled = wait_for("a scheduled Job", Duration::from_secs(75), || {
        let jobs = server.kubectl_ok(version, &["get", "jobs", "-o", "name"]);
        jobs.lines()
            .filter_map(|l| l.strip_prefix("job.batch/hello-every-minute-"))
            .find(|minutes| minutes.parse::<i64>().is_ok())
            .map(str::to_string)
    });
    let job = format!("job/hello-every-minute-{scheduled}");
    server.kubectl_ok(
        version,
        &["wait", "--for=condition=complete", &job, "--timeout=60s"],
    );
    let annotation = server.jsonpath(
        version,
        &[&job],
        "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    );
    let minutes: i64 = scheduled.parse().unwrap_or_default();
    let due = chrono::DateTime::from_timestamp(minutes * 60, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    assert_eq!(annotation, due);
    wait_for("the CronJob's status", DEADLINE, || {
        let status = server.jsonpath(
            version,
            &["cronjob", "hello-every-minute"],
            "{.status.lastScheduleTime} {.status.lastSuccessfulTime}",
        );
        (status.starts_with(&due) && status.len() > due.len() + 1).then_some(())
    });
}

#[test]
fn bad_schedules_are_refused() {
    let server = Server::start();
    let out = server.kubectl(
        KUBECTL_VERSIONS[1],
        &["create", "cronjob", "bad", "--image=i", "--schedule=* * *"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"CronJob.batch "bad" is invalid: spec.schedule: Invalid value: "* * *": Expected exactly 5 fields, found 3: * * *"#),
        "{stderr}"
    );
}

#[test]
fn restart_always_is_refused() {
    let server = Server::start();
    let manifest = r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}"#;
    let out =
        server.kubectl_with_stdin(KUBECTL_VERSIONS[1], &["create", "-f", "-"], Some(manifest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"The Job "bad" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#),
        "{stderr}"
    );
}
