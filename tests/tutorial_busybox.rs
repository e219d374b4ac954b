//! The seed tutorial (`shared/seeds/000_5018a52924566902.txt`) step by step with busybox
//! containers and the real kubectl (oldest and newest), as its reader would type it:
//! ConfigMaps and Secrets as environment and as files ("mounted file updates, env does
//! not"), the multi-container sidecar pod (a shared emptyDir, a shared localhost, separate
//! process spaces, one container killed and restarted alone), persistent storage through
//! `kubectl exec`, and a StatefulSet's per-replica storage. nginx is busybox `httpd` here;
//! the registry is on loopback.

#[macro_use]
mod common;

use std::time::Duration;

use common::{table_rows, wait_for, Server};
use node::testing::Registry;

/// How long a step may take on a shared, busy machine.
const STEP: Duration = Duration::from_secs(60);

struct Tutorial {
    server: Server,
    version: &'static str,
    busybox: String,
    _registry: Registry,
    _dir: tempfile::TempDir,
}

impl Tutorial {
    fn start(version: &'static str) -> Tutorial {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::start(dir.path());
        let server = Server::pulling_from(&registry.address);
        Tutorial {
            server,
            version,
            busybox: registry.busybox(),
            _registry: registry,
            _dir: dir,
        }
    }

    fn k(&self, args: &[&str]) -> String {
        self.server.kubectl_ok(self.version, args)
    }

    /// Applies `manifest`, with `busybox` standing for the registry's image.
    fn apply(&self, manifest: &str) {
        let manifest = manifest.replace("image: busybox", &format!("image: {}", self.busybox));
        let out =
            self.server
                .kubectl_with_stdin(self.version, &["apply", "-f", "-"], Some(&manifest));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn delete(&self, manifest: &str) {
        let out =
            self.server
                .kubectl_with_stdin(self.version, &["delete", "-f", "-"], Some(manifest));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl exec`, its stdout once it succeeds (the container may still be starting).
    fn exec(&self, pod_and_container: &[&str], command: &[&str]) -> String {
        let mut args = vec!["exec"];
        args.extend(pod_and_container);
        args.push("--");
        args.extend(command);
        wait_for(&format!("kubectl {args:?}"), STEP, || {
            let out = self.server.kubectl(self.version, &args);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
    }

    fn wait_running(&self, pod: &str) {
        wait_for(&format!("{pod} to run"), STEP, || {
            let phase = self
                .server
                .jsonpath(self.version, &["pod", pod], "{.status.phase}");
            (phase == "Running").then_some(())
        });
    }

    /// Waits until `kubectl logs <args>` shows `text`.
    fn wait_logs(&self, args: &[&str], text: &str) -> String {
        let mut all = vec!["logs"];
        all.extend(args);
        wait_for(&format!("{text:?} in logs {args:?}"), STEP, || {
            let out = self.server.kubectl(self.version, &all);
            let logs = String::from_utf8_lossy(&out.stdout).into_owned();
            logs.contains(text).then_some(logs)
        })
    }
}

const CONFIG_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: config-test
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "env | grep -E 'GREETING|APP_MODE|DB_PASSWORD'; sleep 3600"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef:
          name: app-config
          key: GREETING
    - name: APP_MODE
      valueFrom:
        configMapKeyRef:
          name: app-config
          key: APP_MODE
    - name: DB_PASSWORD
      valueFrom:
        secretKeyRef:
          name: app-secret
          key: DB_PASSWORD
"#;

const CONFIG_POD_VOLUME: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: config-test-vol
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "cat /etc/config/GREETING; echo; cat /etc/secret/DB_PASSWORD; echo; sleep 3600"]
    volumeMounts:
    - name: config-vol
      mountPath: /etc/config
    - name: secret-vol
      mountPath: /etc/secret
  volumes:
  - name: config-vol
    configMap:
      name: app-config
  - name: secret-vol
    secret:
      secretName: app-secret
"#;

fn configmaps_and_secrets(version: &'static str) {
    let t = Tutorial::start(version);
    t.k(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=GREETING=Hello from ConfigMap",
        "--from-literal=APP_MODE=development",
    ]);
    let yaml = t.k(&["get", "configmap", "app-config", "-o", "yaml"]);
    assert!(yaml.contains("GREETING: Hello from ConfigMap"), "{yaml}");
    t.k(&[
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=DB_PASSWORD=zaphodbeeblebrox",
    ]);
    // Only base64 encoded, as the tutorial says.
    let yaml = t.k(&["get", "secret", "app-secret", "-o", "yaml"]);
    assert!(
        yaml.contains("DB_PASSWORD: emFwaG9kYmVlYmxlYnJveA=="),
        "{yaml}"
    );

    // As environment variables.
    t.apply(CONFIG_POD);
    let logs = t.wait_logs(&["config-test"], "DB_PASSWORD");
    for line in [
        "GREETING=Hello from ConfigMap",
        "APP_MODE=development",
        "DB_PASSWORD=zaphodbeeblebrox",
    ] {
        assert!(logs.lines().any(|l| l == line), "{line} not in {logs}");
    }

    // As mounted files.
    t.apply(CONFIG_POD_VOLUME);
    t.wait_logs(
        &["config-test-vol"],
        "Hello from ConfigMap\nzaphodbeeblebrox\n",
    );

    // Changes: the environment keeps its value, the mounted file follows.
    t.k(&[
        "patch",
        "configmap",
        "app-config",
        "-p",
        r#"{"data":{"GREETING":"UPDATED GREETING"}}"#,
    ]);
    t.wait_running("config-test");
    let env = t.exec(&["config-test"], &["env"]);
    assert!(
        env.lines().any(|l| l == "GREETING=Hello from ConfigMap"),
        "{env}"
    );
    wait_for("the mounted file to update", STEP, || {
        let file = t.exec(&["config-test-vol"], &["cat", "/etc/config/GREETING"]);
        (file == "UPDATED GREETING").then_some(())
    });

    // Clean up.
    t.delete(CONFIG_POD);
    t.delete(CONFIG_POD_VOLUME);
    t.k(&["delete", "configmap", "app-config"]);
    t.k(&["delete", "secret", "app-secret"]);
}

/// The sidecar pod, with busybox `httpd` as the writer: it logs each request to the shared
/// volume, and stops on TERM (as nginx does) even as its container's PID 1.
const SIDECAR_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: sidecar-demo
spec:
  containers:
  - name: writer
    image: busybox
    command:
      [
        "sh",
        "-c",
        "trap 'exit 0' TERM; mkdir -p /www; echo 'Welcome to httpd!' > /www/index.html; httpd -f -v -p 80 -h /www 2>> /var/log/nginx/access.log & wait",
      ]
    ports:
    - containerPort: 80
    volumeMounts:
    - name: shared-logs
      mountPath: /var/log/nginx
  - name: sidecar
    image: busybox
    command:
      [
        "sh",
        "-c",
        "until [ -e /var/log/nginx/access.log ]; do sleep 0.1; done; tail -f /var/log/nginx/access.log",
      ]
    volumeMounts:
    - name: shared-logs
      mountPath: /var/log/nginx
  volumes:
  - name: shared-logs
    emptyDir: {}
"#;

fn multi_container_pod(version: &'static str) {
    let t = Tutorial::start(version);
    t.apply(SIDECAR_POD);
    wait_for("2/2 ready", STEP, || {
        let table = t.k(&["get", "pod", "sidecar-demo"]);
        (table_rows(&table)[1][1] == "2/2").then_some(())
    });

    // Both containers reach the server on localhost: they share the pod's network.
    let page = t.exec(
        &["sidecar-demo", "-c", "writer"],
        &["wget", "-qO-", "localhost:80"],
    );
    assert_eq!(page, "Welcome to httpd!\n");
    let page = t.exec(
        &["sidecar-demo", "-c", "sidecar"],
        &["wget", "-O-", "localhost:80"],
    );
    assert_eq!(page, "Welcome to httpd!\n");
    let files = t.exec(
        &["sidecar-demo", "-c", "sidecar"],
        &["ls", "/var/log/nginx"],
    );
    assert_eq!(files, "access.log\n");
    // The sidecar shipped the requests, which came from localhost.
    t.wait_logs(&["sidecar-demo", "-c", "sidecar"], "127.0.0.1");

    // They do not share a process space.
    let ps = t.exec(&["sidecar-demo", "-c", "sidecar"], &["ps", "-A"]);
    assert!(ps.contains("tail"), "{ps}");
    assert!(!ps.contains("httpd"), "{ps}");

    // Killing the writer's PID 1 restarts the writer only.
    t.exec(&["sidecar-demo", "-c", "writer"], &["kill", "1"]);
    let restarts = |c: &str| {
        let path = format!("{{.status.containerStatuses[?(@.name==\"{c}\")].restartCount}}");
        t.server.jsonpath(version, &["pod", "sidecar-demo"], &path)
    };
    wait_for("the writer to restart", STEP, || {
        (restarts("writer") == "1").then_some(())
    });
    assert_eq!(restarts("sidecar"), "0");
    wait_for("2/2 ready again", STEP, || {
        let table = t.k(&["get", "pod", "sidecar-demo"]);
        (table_rows(&table)[1][1] == "2/2").then_some(())
    });
    t.delete(SIDECAR_POD);
}

const PVC: &str = r#"
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

const STORAGE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: storage-test
spec:
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
    volumeMounts:
    - name: persistent-storage
      mountPath: /data
  volumes:
  - name: persistent-storage
    persistentVolumeClaim:
      claimName: data-pvc
"#;

fn persistent_storage(version: &'static str) {
    let t = Tutorial::start(version);
    t.apply(PVC);
    let describe = wait_for("the claim to wait for its consumer", STEP, || {
        let d = t.k(&["describe", "pvc", "data-pvc"]);
        d.contains("waiting for first consumer to be created before binding")
            .then_some(d)
    });
    assert!(describe.contains("Pending"), "{describe}");
    t.apply(STORAGE_POD);
    t.wait_running("storage-test");
    let claims = t.k(&["get", "pvc"]);
    assert_eq!(table_rows(&claims)[1][1], "Bound", "{claims}");
    t.exec(
        &["storage-test"],
        &["sh", "-c", "echo 'hello' > /data/test.txt"],
    );
    t.k(&["delete", "pod", "storage-test"]);
    t.apply(STORAGE_POD);
    t.wait_running("storage-test");
    let file = t.exec(&["storage-test"], &["cat", "/data/test.txt"]);
    assert_eq!(file, "hello\n");
    t.delete(STORAGE_POD);
    t.delete(PVC);
    wait_for("the volume to be gone", STEP, || {
        let out = t.server.kubectl(version, &["get", "pv"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("No resources found")
            .then_some(())
    });
}

/// The tutorial's StatefulSet (its headless Service left out: wkube serves no Services
/// yet), with busybox `httpd` serving each replica's volume.
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
      - name: nginx
        image: busybox
        command: ["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]
        ports: [{ containerPort: 80 }]
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata: { name: www }
    spec:
      accessModes: ["ReadWriteOnce"]
      resources: { requests: { storage: 100Mi } }
"#;

fn statefulset_storage(version: &'static str) {
    let t = Tutorial::start(version);
    t.apply(STATEFULSET);
    t.k(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    let claims = t.k(&["get", "pvc"]);
    assert_eq!(table_rows(&claims).len(), 4, "{claims}");
    for (pod, text) in [("web-0", "aa"), ("web-1", "bb"), ("web-2", "cc")] {
        let write = format!("echo '{text}' > /usr/share/nginx/html/index.html");
        t.exec(&[pod], &["/bin/sh", "-c", &write]);
        let read = t.exec(&[pod], &["cat", "/usr/share/nginx/html/index.html"]);
        assert_eq!(read, format!("{text}\n"));
    }
    // Data is stable across a replaced pod.
    let uid = t
        .server
        .jsonpath(version, &["pod", "web-0"], "{.metadata.uid}");
    // Not kubectl's wait, which can hang on a successor of the same name
    // (kubernetes/kubernetes#135563; see storage.rs).
    t.k(&["delete", "pod", "web-0", "--wait=false"]);
    wait_for("a new web-0", STEP, || {
        let now = t
            .server
            .jsonpath(version, &["pod", "web-0"], "{.metadata.uid}");
        (!now.is_empty() && now != uid).then_some(())
    });
    let read = t.exec(&["web-0"], &["cat", "/usr/share/nginx/html/index.html"]);
    assert_eq!(read, "aa\n");
    // Clean up: the claims outlive the set.
    t.delete(STATEFULSET);
    assert_eq!(t.k(&["get", "pvc", "-o", "name"]).lines().count(), 3);
    // Not kubectl's own wait, which has no deadline: poll for the claims to go.
    t.k(&["delete", "pvc", "-l", "app=web", "--wait=false"]);
    wait_for("the claims to go", STEP, || {
        let out = t.server.kubectl(version, &["get", "pvc"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("No resources found")
            .then_some(())
    });
}

with_each_kubectl!(
    configmaps_and_secrets,
    multi_container_pod,
    persistent_storage,
    statefulset_storage
);
