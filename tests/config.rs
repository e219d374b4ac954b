//! ConfigMaps, Secrets and volumes reaching WASI guests, with the real kubectl (oldest and
//! newest): the seed tutorial's steps (env from a ConfigMap and a Secret, envFrom, mounted
//! files, "mounted file updates, env does not"), `CreateContainerConfigError` until the
//! ConfigMap exists, a guest that never sees a torn ConfigMap over 100 patches, and the
//! other volumes: an emptyDir shared by two containers, a projected volume (downwardAPI +
//! configMap + secret), a hostPath with its type checked, FailedMount until a Secret
//! exists, an immutable ConfigMap that is not followed, and a memory emptyDir whose
//! `sizeLimit` is a tmpfs of that size.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{wait_for, Server, KUBECTL_VERSIONS};

const IMAGE: &str = "confwatch:1.0";
/// How long a pod may take to get going on a shared, busy machine.
const START: Duration = Duration::from_secs(60);
/// The promise: an API write is visible to a running guest within this.
const PROPAGATION: Duration = Duration::from_secs(1);

fn server() -> Server {
    let server = Server::start();
    server.import("confwatch", IMAGE);
    server
}

fn apply(server: &Server, version: &str, manifest: &str) -> String {
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn logs(server: &Server, version: &str, pod: &str, container: &str) -> String {
    let out = server.kubectl(version, &["logs", pod, "-c", container, "--timestamps"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `container`'s log has a line ending in `text`; returns that line's time.
fn wait_for_log(
    server: &Server,
    version: &str,
    pod: &str,
    container: &str,
    text: &str,
) -> SystemTime {
    wait_for(&format!("{text:?} in {pod}/{container}"), START, || {
        logs(server, version, pod, container)
            .lines()
            .find(|l| l.split_once(' ').is_some_and(|(_, rest)| rest == text))
            .map(line_time)
    })
}

/// Asserts that the `app` container of `pod` logged each of `lines`.
fn assert_logged(server: &Server, version: &str, pod: &str, lines: &[&str]) {
    let out = logs(server, version, pod, "app");
    for want in lines {
        let found = out.lines().any(|l| l.ends_with(&format!(" {want}")));
        assert!(found, "{want} not in {out}");
    }
}

/// The time `kubectl logs --timestamps` puts in front of a line.
fn line_time(line: &str) -> SystemTime {
    let ts = line.split(' ').next().unwrap_or_default();
    let t = chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts:?}: {e}"));
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.timestamp_nanos_opt().unwrap() as u64)
}

fn tutorial(version: &str) {
    let server = server();
    let k = |args: &[&str]| server.kubectl_ok(version, args);

    // Setup, imperatively, as the tutorial does.
    let out = k(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=GREETING=Hello from ConfigMap",
        "--from-literal=APP_MODE=development",
    ]);
    assert_eq!(out.trim(), "configmap/app-config created");
    let yaml = k(&["get", "configmap", "app-config", "-o", "yaml"]);
    assert!(yaml.contains("GREETING: Hello from ConfigMap"), "{yaml}");
    let out = k(&[
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=DB_PASSWORD=zaphodbeeblebrox",
    ]);
    assert_eq!(out.trim(), "secret/app-secret created");
    let yaml = k(&["get", "secret", "app-secret", "-o", "yaml"]);
    // Only base64-encoded, as the tutorial points out.
    assert!(
        yaml.contains("DB_PASSWORD: emFwaG9kYmVlYmxlYnJveA=="),
        "{yaml}"
    );

    // Consuming as env vars.
    apply(&server, version, &config_pod());
    wait_for_log(
        &server,
        version,
        "config-test",
        "app",
        "GREETING=Hello from ConfigMap",
    );
    assert_logged(
        &server,
        version,
        "config-test",
        &["APP_MODE=development", "DB_PASSWORD=zaphodbeeblebrox"],
    );

    // envFrom with a prefix, the downward API and $(VAR) expansion in args.
    k(&[
        "create",
        "configmap",
        "odd-keys",
        "--from-literal=1st=x",
        "--from-literal=FINE=yes",
    ]);
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: env-from
  labels: {{app: demo}}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch"]
    args: ["$(MODE)"]
    envFrom:
    - configMapRef: {{name: app-config}}
      prefix: CFG_
    - secretRef: {{name: app-secret}}
    - configMapRef: {{name: not-there, optional: true}}
    - configMapRef: {{name: odd-keys}}
    env:
    - name: MODE
      value: env
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: APP_LABEL
      valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}
    - name: MEMORY_MIB
      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
    - name: MESSAGE
      value: "$(CFG_GREETING) to $(POD_NAME), $$(kept) $(UNDEFINED)"
    resources:
      limits: {{memory: 64Mi}}
"#
        ),
    );
    wait_for_log(&server, version, "env-from", "app", "POD_NAME=env-from");
    assert_logged(
        &server,
        version,
        "env-from",
        &[
            "CFG_GREETING=Hello from ConfigMap",
            "CFG_APP_MODE=development",
            "DB_PASSWORD=zaphodbeeblebrox",
            "APP_LABEL=demo",
            "MEMORY_MIB=64",
            "MESSAGE=Hello from ConfigMap to env-from, $(kept) $(UNDEFINED)",
            "FINE=yes",
        ],
    );
    // A key that is no variable name is skipped, with kubelet's warning.
    let describe = k(&["describe", "pod", "env-from"]);
    assert!(
        describe.contains("InvalidEnvironmentVariableNames")
            && describe
                .contains("Keys [1st] from the EnvFrom configMap default/odd-keys were skipped"),
        "{describe}"
    );

    // Consuming as mounted files; a second container mounts one key by subPath.
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: config-test-vol
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch", "watch", "/etc/config", "GREETING", "APP_MODE"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef: {{name: app-config, key: GREETING}}
    volumeMounts:
    - name: config-vol
      mountPath: /etc/config
    - name: secret-vol
      mountPath: /etc/secret
  - name: fixed
    image: {IMAGE}
    command: ["confwatch", "watch", "/etc/fixed", "GREETING"]
    volumeMounts:
    - name: config-vol
      mountPath: /etc/fixed/GREETING
      subPath: GREETING
  - name: cat
    image: {IMAGE}
    command: ["confwatch", "watch", "/etc/secret", "DB_PASSWORD"]
    volumeMounts:
    - name: secret-vol
      mountPath: /etc/secret
      readOnly: true
  volumes:
  - name: config-vol
    configMap:
      name: app-config
  - name: secret-vol
    secret:
      secretName: app-secret
"#
        ),
    );
    wait_for_log(
        &server,
        version,
        "config-test-vol",
        "app",
        "seen GREETING=Hello from ConfigMap APP_MODE=development",
    );
    wait_for_log(
        &server,
        version,
        "config-test-vol",
        "fixed",
        "seen GREETING=Hello from ConfigMap",
    );
    wait_for_log(
        &server,
        version,
        "config-test-vol",
        "cat",
        "seen DB_PASSWORD=zaphodbeeblebrox",
    );

    // Changes: the mounted file updates (within a second, not kubelet's minute), the
    // environment and the subPath mount do not, and nothing restarts.
    let before = SystemTime::now();
    k(&[
        "patch",
        "configmap",
        "app-config",
        "-p",
        r#"{"data":{"GREETING":"UPDATED GREETING"}}"#,
    ]);
    let seen = wait_for_log(
        &server,
        version,
        "config-test-vol",
        "app",
        "seen GREETING=UPDATED GREETING APP_MODE=development",
    );
    let latency = seen.duration_since(before).unwrap_or_default();
    assert!(
        latency < PROPAGATION,
        "the update took {latency:?} to reach the guest"
    );
    eprintln!("configmap update visible to the guest {latency:?} after kubectl patch started");
    let out = logs(&server, version, "config-test-vol", "app");
    assert!(
        out.lines()
            .any(|l| l.ends_with(" env GREETING=Hello from ConfigMap")),
        "{out}"
    );
    assert!(!out.contains("env GREETING=UPDATED"), "{out}");
    let fixed = logs(&server, version, "config-test-vol", "fixed");
    assert!(
        !fixed.contains("UPDATED"),
        "subPath mounts do not update: {fixed}"
    );
    let restarts = server.jsonpath(
        version,
        &["pod", "config-test-vol"],
        "{.status.containerStatuses[*].restartCount}",
    );
    assert_eq!(restarts, "0 0 0");
    let table = k(&["get", "pod", "config-test-vol"]);
    assert!(
        table.contains("3/3") && table.contains("Running"),
        "{table}"
    );

    // Clean up.
    let out = server.kubectl_with_stdin(version, &["delete", "-f", "-"], Some(&config_pod()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pod \"config-test\" deleted"
    );
    for args in [
        ["delete", "pod", "env-from"],
        ["delete", "pod", "config-test-vol"],
        ["delete", "configmap", "app-config"],
        ["delete", "secret", "app-secret"],
    ] {
        k(&args);
    }

    // Declarative definitions: the same pod reads the manifest's base64 secret.
    apply(&server, version, DECLARATIVE);
    apply(&server, version, &config_pod());
    wait_for_log(
        &server,
        version,
        "config-test",
        "app",
        "DB_PASSWORD=sup3rs3cr3t",
    );
}

/// The tutorial's `config-pod.yaml`: the three values as environment variables.
fn config_pod() -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: config-test
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch", "env"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef: {{name: app-config, key: GREETING}}
    - name: APP_MODE
      valueFrom:
        configMapKeyRef: {{name: app-config, key: APP_MODE}}
    - name: DB_PASSWORD
      valueFrom:
        secretKeyRef: {{name: app-secret, key: DB_PASSWORD}}
"#
    )
}

/// The tutorial's declarative ConfigMap and Secret.
const DECLARATIVE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  GREETING: "Hello from ConfigMap"
  APP_MODE: "development"
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
type: Opaque
data:
  DB_PASSWORD: c3VwM3JzM2NyM3Q=
"#;

fn waiting_message(server: &Server, version: &str, pod: &str) -> String {
    server.jsonpath(
        version,
        &["pod", pod],
        "{.status.containerStatuses[0].state.waiting.message}",
    )
}

fn config_error_until_the_configmap_exists(version: &str) {
    let server = server();
    let k = |args: &[&str]| server.kubectl_ok(version, args);
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: early
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch", "watch", "/etc/late", "COLOR"]
    env:
    - name: COLOR
      valueFrom:
        configMapKeyRef: {{name: late-config, key: COLOR}}
    volumeMounts:
    - {{name: late, mountPath: /etc/late}}
  volumes:
  - name: late
    configMap: {{name: late-config, optional: true}}
"#
        ),
    );
    wait_for(
        "CreateContainerConfigError in kubectl get pod",
        START,
        || {
            let table = k(&["get", "pod", "early"]);
            table.contains("CreateContainerConfigError").then_some(())
        },
    );
    assert_eq!(
        waiting_message(&server, version, "early"),
        "configmap \"late-config\" not found"
    );
    let describe = k(&["describe", "pod", "early"]);
    for want in [
        "CreateContainerConfigError",
        "Error: configmap \"late-config\" not found",
    ] {
        assert!(
            describe.contains(want),
            "describe lacks {want}:\n{describe}"
        );
    }

    // The ConfigMap appears without the key: still blocked, for the key now.
    k(&[
        "create",
        "configmap",
        "late-config",
        "--from-literal=SHAPE=round",
    ]);
    wait_for("the missing key reported", START, || {
        (waiting_message(&server, version, "early")
            == "couldn't find key COLOR in ConfigMap default/late-config")
            .then_some(())
    });
    k(&[
        "patch",
        "configmap",
        "late-config",
        "-p",
        r#"{"data":{"COLOR":"green"}}"#,
    ]);
    wait_for_log(&server, version, "early", "app", "env COLOR=green");
    wait_for_log(&server, version, "early", "app", "seen COLOR=green");
    let table = k(&["get", "pod", "early"]);
    assert!(
        table.contains("Running") && table.contains("1/1"),
        "{table}"
    );

    // Bad input: keys that are no file names, mounts outside the container's tree.
    let bad = server.kubectl_with_stdin(
        version,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  \"..secret\": x\n  \"a/b\": y\n"),
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("data[..secret]: Invalid value: \"..secret\": must not start with '..'"),
        "{err}"
    );
    assert!(err.contains("data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters"), "{err}");
    let bad = server.kubectl_with_stdin(
        version,
        &["apply", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: a\n    image: {IMAGE}\n    volumeMounts:\n    - {{name: v, mountPath: etc/x, subPath: ../up}}\n    - {{name: nope, mountPath: /y}}\n  volumes:\n  - name: v\n    configMap:\n      name: c\n      items: [{{key: k, path: ../../etc/passwd}}]\n")),
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    for want in [
        "spec.volumes[0].configMap.items[0].path: Invalid value: \"../../etc/passwd\": must not contain '..'",
        "spec.containers[0].volumeMounts[0].mountPath: Invalid value: \"etc/x\": must be an absolute path",
        "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../up\": must not contain '..'",
        "spec.containers[0].volumeMounts[1].name: Not found: \"nope\"",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
}

/// A guest reads three keys of a mounted ConfigMap through one directory descriptor in a
/// loop while the ConfigMap is patched 100 times: it never sees keys from two versions,
/// and sees the last version within a second of the last patch.
fn no_torn_reads_over_100_patches(version: &str) {
    let server = server();
    let k = |args: &[&str]| server.kubectl_ok(version, args);
    let data = |n: u32| format!(r#"{{"data":{{"a":"v{n}","b":"v{n}","c":"v{n}"}}}}"#);
    apply(
        &server,
        version,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: abc\ndata: {a: v0, b: v0, c: v0}\n",
    );
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch", "watch", "/cfg", "a", "b", "c"]
    volumeMounts:
    - {{name: abc, mountPath: /cfg}}
  volumes:
  - name: abc
    configMap: {{name: abc}}
"#
        ),
    );
    wait_for_log(&server, version, "reader", "app", "seen a=v0 b=v0 c=v0");
    // When each patch started (before kubectl runs, so latencies are upper bounds).
    let mut patched = Vec::new();
    let started = Instant::now();
    for n in 1..=100 {
        patched.push(SystemTime::now());
        k(&["patch", "configmap", "abc", "--type=merge", "-p", &data(n)]);
    }
    eprintln!("100 patches took {:?}", started.elapsed());
    let seen = wait_for_log(
        &server,
        version,
        "reader",
        "app",
        "seen a=v100 b=v100 c=v100",
    );
    let latency = seen.duration_since(patched[99]).unwrap_or_default();
    assert!(latency < PROPAGATION, "the last version took {latency:?}");
    let out = logs(&server, version, "reader", "app");
    let mut latencies = Vec::new();
    for line in out.lines() {
        let Some((_, seen)) = line.split_once(" seen ") else {
            continue;
        };
        let values: Vec<&str> = seen.split(' ').map(|kv| &kv[2..]).collect();
        assert!(values.iter().all(|v| *v == values[0]), "torn read: {seen}");
        let n: usize = values[0][1..].parse().expect("vN");
        if n > 0 {
            latencies.push(
                line_time(line)
                    .duration_since(patched[n - 1])
                    .unwrap_or_default(),
            );
        }
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "the guest saw {} of 100 versions; kubectl patch start -> guest read: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert!(at(0.99) < PROPAGATION, "p99 {:?}", at(0.99));
}

fn volumes(version: &str) {
    let server = server();
    let k = |args: &[&str]| server.kubectl_ok(version, args);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("file"), "from the host").unwrap();
    k(&[
        "create",
        "configmap",
        "vol-config",
        "--from-literal=a=alpha",
    ]);
    k(&[
        "create",
        "secret",
        "generic",
        "vol-secret",
        "--from-literal=pw=s3cret",
    ]);
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: volumes
  labels: {{app: v1}}
spec:
  restartPolicy: OnFailure
  containers:
  - name: writer
    image: {IMAGE}
    command: ["confwatch", "write", "/shared/msg", "hello from the writer"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: reader
    image: {IMAGE}
    command: ["confwatch", "watch", "/shared", "msg"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: info
    image: {IMAGE}
    command: ["confwatch", "watch", "/etc/podinfo", "name", "app", "cfg/a", "pw"]
    volumeMounts: [{{name: podinfo, mountPath: /etc/podinfo}}]
  - name: host
    image: {IMAGE}
    command: ["confwatch", "cat", "/host/file"]
    volumeMounts: [{{name: host, mountPath: /host, readOnly: true}}]
  volumes:
  - name: shared
    emptyDir: {{medium: Memory}}
  - name: podinfo
    projected:
      sources:
      - downwardAPI:
          items:
          - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
          - {{path: app, fieldRef: {{fieldPath: "metadata.labels['app']"}}}}
      - configMap:
          name: vol-config
          items: [{{key: a, path: cfg/a}}]
      - secret:
          name: vol-secret
  - name: host
    hostPath: {{path: {}, type: Directory}}
"#,
            host.path().display()
        ),
    );
    wait_for_log(
        &server,
        version,
        "volumes",
        "reader",
        "seen msg=hello from the writer",
    );
    wait_for_log(
        &server,
        version,
        "volumes",
        "info",
        "seen name=volumes app=v1 cfg/a=alpha pw=s3cret",
    );
    wait_for_log(&server, version, "volumes", "host", "from the host");
    let uid = server.jsonpath(version, &["pod", "volumes"], "{.metadata.uid}");
    let shm = format!("/dev/shm/wkube/{uid}/volumes/kubernetes.io~empty-dir/shared/msg");
    assert_eq!(
        std::fs::read_to_string(&shm).unwrap(),
        "hello from the writer"
    );
    // The projected configMap follows its source.
    k(&[
        "patch",
        "configmap",
        "vol-config",
        "-p",
        r#"{"data":{"a":"beta"}}"#,
    ]);
    wait_for_log(
        &server,
        version,
        "volumes",
        "info",
        "seen name=volumes app=v1 cfg/a=beta pw=s3cret",
    );

    // So do the downwardAPI files, for the pod's labels.
    k(&["label", "pod", "volumes", "app=v2", "--overwrite"]);
    wait_for_log(
        &server,
        version,
        "volumes",
        "info",
        "seen name=volumes app=v2 cfg/a=beta pw=s3cret",
    );

    // A missing Secret holds the pod in ContainerCreating with kubelet's FailedMount event,
    // and so does a hostPath of the wrong type; the first starts once the Secret exists.
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: mount-wait
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch", "watch", "/etc/s", "token"]
    volumeMounts: [{{name: s, mountPath: /etc/s}}]
  volumes:
  - name: s
    secret: {{secretName: not-yet}}
---
apiVersion: v1
kind: Pod
metadata:
  name: wrong-type
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch", "ls", "/h"]
    volumeMounts: [{{name: h, mountPath: /h}}]
  volumes:
  - name: h
    hostPath: {{path: {}, type: File}}
"#,
            host.path().display()
        ),
    );
    let describe = |pod: &str, want: &str| {
        wait_for(&format!("{want:?} in describe {pod}"), START, || {
            let text = k(&["describe", "pod", pod]);
            text.contains(want).then_some(text)
        })
    };
    let text = describe(
        "mount-wait",
        "MountVolume.SetUp failed for volume \"s\" : secret \"not-yet\" not found",
    );
    assert!(
        text.contains("FailedMount") && text.contains("ContainerCreating"),
        "{text}"
    );
    describe(
        "wrong-type",
        &format!(
            "hostPath type check failed: {} is not a file",
            host.path().display()
        ),
    );
    k(&[
        "create",
        "secret",
        "generic",
        "not-yet",
        "--from-literal=token=t0k3n",
    ]);
    wait_for_log(&server, version, "mount-wait", "app", "seen token=t0k3n");

    // An immutable ConfigMap is read once and not watched: replacing it (the only way to
    // change it) does not reach the pod, while a mutable one beside it does.
    let frozen = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata: {{v: \"{v}\"}}\n")
    };
    apply(&server, version, &frozen("1"));
    k(&["create", "configmap", "barrier", "--from-literal=v=1"]);
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: frozen
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: ["confwatch", "watch", "/cfg", "frozen", "barrier"]
    volumeMounts: [{{name: both, mountPath: /cfg}}]
  volumes:
  - name: both
    projected:
      sources:
      - configMap: {{name: frozen, items: [{{key: v, path: frozen}}]}}
      - configMap: {{name: barrier, items: [{{key: v, path: barrier}}]}}
"#
        ),
    );
    wait_for_log(&server, version, "frozen", "app", "seen frozen=1 barrier=1");
    k(&["delete", "configmap", "frozen"]);
    apply(&server, version, &frozen("2"));
    k(&[
        "patch",
        "configmap",
        "barrier",
        "-p",
        r#"{"data":{"v":"2"}}"#,
    ]);
    wait_for_log(&server, version, "frozen", "app", "seen frozen=1 barrier=2");
    let out = server.kubectl_ok(version, &["logs", "frozen"]);
    assert!(!out.contains("frozen=2"), "{out}");

    // Deleting the pod removes its emptyDir.
    k(&["delete", "pod", "volumes"]);
    assert!(
        !std::path::Path::new(&shm).exists(),
        "{shm} outlived its pod"
    );
}

/// A memory emptyDir with a `sizeLimit` is a tmpfs of that size: a container writing more
/// fails with ENOSPC, one writing less succeeds, and the mount goes with the pod.
fn memory_size_limit(version: &str) {
    let server = server();
    let big = "x".repeat(100 * 1024);
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: sized
spec:
  restartPolicy: Never
  containers:
  - name: small
    image: {IMAGE}
    command: ["confwatch", "write", "/scratch/small", "fits"]
    volumeMounts: [{{name: roomy, mountPath: /scratch}}]
  - name: big
    image: {IMAGE}
    command: ["confwatch", "write", "/scratch/big", "{big}"]
    volumeMounts: [{{name: cramped, mountPath: /scratch}}]
  volumes:
  - name: roomy
    emptyDir: {{medium: Memory, sizeLimit: 64Ki}}
  - name: cramped
    emptyDir: {{medium: Memory, sizeLimit: 64Ki}}
"#
        ),
    );
    let exit_code = |container: &str| {
        let path = format!(
            "{{.status.containerStatuses[?(@.name==\"{container}\")].state.terminated.exitCode}}"
        );
        server.jsonpath(version, &["pod", "sized"], &path)
    };
    wait_for("both containers to finish", START, || {
        (!exit_code("small").is_empty() && !exit_code("big").is_empty()).then_some(())
    });
    assert_eq!(exit_code("small"), "0");
    assert_eq!(exit_code("big"), "1");
    let out = server.kubectl(version, &["logs", "sized", "-c", "big"]);
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("write: /scratch/big:"), "{err}");
    let uid = server.jsonpath(version, &["pod", "sized"], "{.metadata.uid}");
    let dir = format!("/dev/shm/wkube/{uid}/volumes/kubernetes.io~empty-dir/cramped");
    let mounted = || {
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(dir.as_str()))
    };
    assert!(mounted(), "no tmpfs at {dir}");
    server.kubectl_ok(version, &["delete", "pod", "sized"]);
    assert!(!mounted(), "the tmpfs at {dir} outlived its pod");
}

/// Each scenario runs twice: with the oldest and with the newest kubectl.
macro_rules! with_both_kubectls {
    ($($scenario:ident => $oldest:ident, $newest:ident;)*) => {$(
        #[test]
        fn $oldest() {
            $scenario(KUBECTL_VERSIONS[0]);
        }

        #[test]
        fn $newest() {
            $scenario(KUBECTL_VERSIONS[1]);
        }
    )*};
}

with_both_kubectls! {
    tutorial => tutorial_config_and_secrets_with_oldest_kubectl, tutorial_config_and_secrets_with_newest_kubectl;
    config_error_until_the_configmap_exists => config_error_until_the_configmap_exists_with_oldest_kubectl, config_error_until_the_configmap_exists_with_newest_kubectl;
    no_torn_reads_over_100_patches => no_torn_reads_over_100_patches_with_oldest_kubectl, no_torn_reads_over_100_patches_with_newest_kubectl;
    volumes => volumes_with_oldest_kubectl, volumes_with_newest_kubectl;
    memory_size_limit => memory_size_limit_with_oldest_kubectl, memory_size_limit_with_newest_kubectl;
}
