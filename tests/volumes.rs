//! Volumes of WASI guests with the real kubectl (oldest and newest): an emptyDir shared by
//! two containers, a projected volume (downwardAPI + configMap + secret), a hostPath with
//! its type checked, and a pod held in ContainerCreating (FailedMount) until its Secret
//! exists.

mod common;

use std::time::Duration;

use common::{wait_for, Server, KUBECTL_VERSIONS};

const IMAGE: &str = "confwatch:1.0";
const START: Duration = Duration::from_secs(60);

fn apply(server: &Server, version: &str, manifest: &str) {
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for_line(server: &Server, version: &str, pod: &str, container: &str, line: &str) {
    wait_for(&format!("{line:?} from {pod}/{container}"), START, || {
        let out = server.kubectl(version, &["logs", pod, "-c", container]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == line)
            .then_some(())
    });
}

fn volumes(version: &str) {
    let server = Server::start();
    server.import("confwatch", IMAGE);
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
    emptyDir: {{}}
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
    wait_for_line(
        &server,
        version,
        "volumes",
        "reader",
        "seen msg=hello from the writer",
    );
    wait_for_line(
        &server,
        version,
        "volumes",
        "info",
        "seen name=volumes app=v1 cfg/a=alpha pw=s3cret",
    );
    wait_for_line(&server, version, "volumes", "host", "from the host");
    // The projected configMap follows its source.
    k(&[
        "patch",
        "configmap",
        "vol-config",
        "-p",
        r#"{"data":{"a":"beta"}}"#,
    ]);
    wait_for_line(
        &server,
        version,
        "volumes",
        "info",
        "seen name=volumes app=v1 cfg/a=beta pw=s3cret",
    );

    // So do the downwardAPI files, for the pod's labels.
    k(&["label", "pod", "volumes", "app=v2", "--overwrite"]);
    wait_for_line(
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
    wait_for_line(&server, version, "mount-wait", "app", "seen token=t0k3n");

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
    wait_for_line(&server, version, "frozen", "app", "seen frozen=1 barrier=1");
    k(&["delete", "configmap", "frozen"]);
    apply(&server, version, &frozen("2"));
    k(&[
        "patch",
        "configmap",
        "barrier",
        "-p",
        r#"{"data":{"v":"2"}}"#,
    ]);
    wait_for_line(&server, version, "frozen", "app", "seen frozen=1 barrier=2");
    let out = server.kubectl_ok(version, &["logs", "frozen"]);
    assert!(!out.contains("frozen=2"), "{out}");
}

#[test]
fn volumes_with_oldest_kubectl() {
    volumes(KUBECTL_VERSIONS[0]);
}

#[test]
fn volumes_with_newest_kubectl() {
    volumes(KUBECTL_VERSIONS[1]);
}
