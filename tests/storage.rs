//! Persistent storage with the real kubectl (oldest and newest): the seed tutorial's
//! "Persistent storage" steps with WASI guests (the default `local-path` class, a claim
//! that waits for its first consumer, a volume provisioned on the consumer's node, data
//! that outlives the pod, the volume and its directory deleted with the claim), a
//! hand-made hostPath volume bound at once and `Released` after its claim, claim
//! protection while a pod uses the claim, the tutorial's StatefulSet storage steps (a
//! claim per replica, its data back after the pod is replaced, the claims kept after the
//! set is deleted), and the validation messages.

#[macro_use]
mod common;

use std::time::Duration;

use common::{table_rows, wait_for, Server};

const IMAGE: &str = "confwatch:1.0";
/// How long a step may take on a shared, busy machine.
const STEP: Duration = Duration::from_secs(60);

fn server() -> Server {
    let server = Server::start();
    server.import("confwatch", IMAGE);
    server
}

fn apply(server: &Server, version: &str, manifest: &str) {
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CLAIM: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data-pvc
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
"#;

/// A pod that runs `confwatch <args>` once with the claim at /data.
fn storage_pod(name: &str, args: &[&str]) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {IMAGE}
    args: {args:?}
    volumeMounts:
    - name: persistent-storage
      mountPath: /data
  volumes:
  - name: persistent-storage
    persistentVolumeClaim:
      claimName: data-pvc
"#
    )
}

fn wait_phase(server: &Server, version: &str, kind_name: &[&str], phase: &str) {
    wait_for(&format!("{kind_name:?} {phase}"), STEP, || {
        (server.jsonpath(version, kind_name, "{.status.phase}") == phase).then_some(())
    });
}

/// The row of `name` in `kubectl get <kind>`.
fn row(server: &Server, version: &str, kind: &str, name: &str) -> Vec<String> {
    let table = server.kubectl_ok(version, &["get", kind]);
    table_rows(&table)
        .into_iter()
        .find(|r| r[0] == name)
        .unwrap_or_else(|| panic!("no {name} in {table}"))
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn tutorial(version: &str) {
    let server = server();
    let k = |args: &[&str]| server.kubectl_ok(version, args);

    // The default class, as kind shows its own.
    let classes = k(&["get", "storageclass"]);
    let rows = table_rows(&classes);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ],
        "{classes}"
    );
    assert_eq!(
        rows[1][..6],
        [
            "local-path",
            "(default)",
            "wkube.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{classes}"
    );

    // The claim waits for its first consumer; no volume exists yet.
    apply(&server, version, CLAIM);
    let claim = row(&server, version, "pvc", "data-pvc");
    assert_eq!(claim[1], "Pending");
    assert_eq!(claim[2], "local-path", "{claim:?}");
    let out = server.kubectl(version, &["get", "pv"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found"),
        "{out:?}"
    );
    wait_for("the WaitForFirstConsumer event", STEP, || {
        k(&["describe", "pvc", "data-pvc"])
            .contains("waiting for first consumer to be created before binding")
            .then_some(())
    });

    // A pod uses it: the claim is bound to a volume provisioned for it on the pod's node.
    apply(
        &server,
        version,
        &storage_pod("storage-test", &["write", "/data/test.txt", "kept"]),
    );
    wait_phase(&server, version, &["pod", "storage-test"], "Succeeded");
    let claim = row(&server, version, "pvc", "data-pvc");
    assert_eq!(claim[1], "Bound", "{claim:?}");
    let volume = claim[2].clone();
    assert!(volume.starts_with("pvc-"), "{claim:?}");
    assert_eq!(claim[3..6], ["1Gi", "RWO", "local-path"], "{claim:?}");
    let pv = row(&server, version, "pv", &volume);
    assert_eq!(
        pv[1..7],
        [
            "1Gi",
            "RWO",
            "Delete",
            "Bound",
            "default/data-pvc",
            "local-path"
        ],
        "{pv:?}"
    );
    let dir = server.data_dir.path().join("pods/local-path").join(&volume);
    assert_eq!(
        std::fs::read_to_string(dir.join("test.txt")).unwrap(),
        "kept"
    );

    // A new pod finds the data the first one wrote.
    k(&["delete", "pod", "storage-test"]);
    apply(
        &server,
        version,
        &storage_pod("storage-test", &["cat", "/data/test.txt"]),
    );
    wait_phase(&server, version, &["pod", "storage-test"], "Succeeded");
    assert_eq!(k(&["logs", "storage-test"]).trim(), "kept");

    // Deleting the claim deletes its volume (reclaim policy Delete) and the directory.
    k(&["delete", "pod", "storage-test"]);
    k(&["delete", "pvc", "data-pvc"]);
    wait_for("the volume to be deleted", STEP, || {
        let out = server.kubectl(version, &["get", "pv", &volume]);
        String::from_utf8_lossy(&out.stderr)
            .contains("NotFound")
            .then_some(())
    });
    wait_for("the directory to be removed", STEP, || {
        (!dir.exists()).then_some(())
    });
}

fn manual_volume(version: &str) {
    let server = server();
    let k = |args: &[&str]| server.kubectl_ok(version, args);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("seed.txt"), "from the admin").unwrap();
    apply(
        &server,
        version,
        &format!(
            r#"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: manual
spec:
  capacity:
    storage: 5Gi
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  hostPath:
    path: {}
"#,
            host.path().display()
        ),
    );
    // A claim of no class binds to it at once (no consumer needed), bigger than asked.
    apply(
        &server,
        version,
        &CLAIM.replace("spec:\n", "spec:\n  storageClassName: \"\"\n"),
    );
    wait_phase(&server, version, &["pvc", "data-pvc"], "Bound");
    let claim = row(&server, version, "pvc", "data-pvc");
    assert_eq!(
        claim[1..5],
        ["Bound", "manual", "5Gi", "RWO,ROX"],
        "{claim:?}"
    );
    let pv = row(&server, version, "pv", "manual");
    assert_eq!(
        pv[1..6],
        ["5Gi", "RWO,ROX", "Retain", "Bound", "default/data-pvc"],
        "{pv:?}"
    );
    apply(
        &server,
        version,
        &storage_pod("reader", &["cat", "/data/seed.txt"]),
    );
    wait_phase(&server, version, &["pod", "reader"], "Succeeded");
    assert_eq!(k(&["logs", "reader"]).trim(), "from the admin");

    // While a pod uses the claim, deleting it leaves it Terminating (pvc-protection).
    apply(
        &server,
        version,
        &storage_pod("holder", &["watch", "/data", "seed.txt"]),
    );
    wait_phase(&server, version, &["pod", "holder"], "Running");
    k(&["delete", "pvc", "data-pvc", "--wait=false"]);
    wait_for("the claim to show Terminating", STEP, || {
        (row(&server, version, "pvc", "data-pvc")[1] == "Terminating").then_some(())
    });
    assert_eq!(row(&server, version, "pv", "manual")[4], "Bound");
    k(&["delete", "pod", "holder", "reader"]);

    // Released, not deleted: the admin's data stays.
    wait_for("the volume to be Released", STEP, || {
        (row(&server, version, "pv", "manual")[4] == "Released").then_some(())
    });
    assert!(host.path().join("seed.txt").exists());
}

/// The tutorial's StatefulSet (its headless Service left out: wkube serves no Services
/// yet), with a guest that logs what its volume's `index.html` holds.
const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web-headless
  replicas: 3
  selector:
    matchLabels: { app: web }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: app
        image: confwatch:1.0
        args: [watch, /usr/share/nginx/html, index.html]
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata: { name: www }
    spec:
      accessModes: ["ReadWriteOnce"]
      resources: { requests: { storage: 100Mi } }
"#;

/// Waits until `pod`'s log shows the guest saw `index.html` hold `text`.
fn wait_seen(server: &Server, version: &str, pod: &str, text: &str) {
    let want = format!("seen index.html={text}");
    wait_for(&format!("{want:?} in {pod}"), STEP, || {
        let out = server.kubectl(version, &["logs", pod]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == want)
            .then_some(())
    });
}

fn statefulset_storage(version: &str) {
    let server = server();
    let k = |args: &[&str]| server.kubectl_ok(version, args);
    apply(&server, version, STATEFULSET);
    k(&["rollout", "status", "statefulset/web", "--timeout=60s"]);

    // A claim per replica, each bound to its own volume. The guests cannot be exec'd
    // into, so the data is written where the node keeps each volume, as `kubectl exec
    // ... echo 'aa' > index.html` would.
    let claims = k(&["get", "pvc"]);
    for (pod, text) in [("web-0", "aa"), ("web-1", "bb"), ("web-2", "cc")] {
        let claim = format!("www-{pod}");
        let row = row(&server, version, "pvc", &claim);
        assert_eq!(row[1], "Bound", "{claims}");
        let dir = server.data_dir.path().join("pods/local-path").join(&row[2]);
        std::fs::write(dir.join("index.html"), text).unwrap();
        wait_seen(&server, version, pod, text);
    }

    // Data is stable: a replaced web-0 finds its volume's data.
    let uid = server.jsonpath(version, &["pod", "web-0"], "{.metadata.uid}");
    // Without kubectl's wait: kubectl before 1.35 waits forever when the pod is gone and
    // its successor of the same name is there between two of its reads, which a WASI pod,
    // stopped in milliseconds, makes likely (kubernetes/kubernetes#135563).
    k(&["delete", "pod", "web-0", "--wait=false"]);
    wait_for("a new web-0", STEP, || {
        let now = server.jsonpath(version, &["pod", "web-0"], "{.metadata.uid}");
        (!now.is_empty() && now != uid).then_some(())
    });
    wait_seen(&server, version, "web-0", "aa");

    // Scaling down keeps the claims; so does deleting the set.
    k(&["scale", "statefulset", "web", "--replicas=1"]);
    wait_for("web-1 and web-2 to go", STEP, || {
        let pods = k(&["get", "pods", "-o", "name"]);
        (pods.trim() == "pod/web-0").then_some(())
    });
    let out = server.kubectl_with_stdin(version, &["delete", "-f", "-"], Some(STATEFULSET));
    assert!(out.status.success(), "{out:?}");
    let claims = k(&["get", "pvc", "-o", "name"]);
    assert_eq!(claims.lines().count(), 3, "{claims}");
    // Not kubectl's own wait, which has no deadline: poll for the claims to go.
    k(&["delete", "pvc", "-l", "app=web", "--wait=false"]);
    wait_for("the claims to go", STEP, || {
        let out = server.kubectl(version, &["get", "pvc"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("No resources found")
            .then_some(())
    });
    wait_for("the volumes to be deleted", STEP, || {
        let out = server.kubectl(version, &["get", "pv"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("No resources found")
            .then_some(())
    });
}

fn bad_input(version: &str) {
    let server = Server::start();
    let refused = |manifest: &str| {
        let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(manifest));
        assert!(!out.status.success(), "{manifest} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&CLAIM.replace("  accessModes: [ReadWriteOnce]\n", ""));
    assert!(
        err.contains("spec.accessModes: Required value: at least 1 access mode is required"),
        "{err}"
    );
    let err = refused(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: twice
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  hostPath:
    path: /tmp
  nfs:
    server: example.invalid
    path: /
"#,
    );
    assert!(
        err.contains("spec.nfs: Forbidden: may not specify more than 1 volume type"),
        "{err}"
    );
    let err = refused(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: later
provisioner: wkube.io/local-path
volumeBindingMode: Later
"#,
    );
    assert!(
        err.contains("volumeBindingMode: Unsupported value: \"Later\""),
        "{err}"
    );
}

with_each_kubectl!(tutorial, manual_volume, statefulset_storage, bad_input);
