//! OCI containers in pods, for real: `wkube server` runs busybox (built from Debian's
//! busybox-static, served by a registry on loopback) through its own containerd, and the
//! real kubectl sees what kubelet would show. Needs root, containerd, runc, the CNI plugins,
//! docker-registry, skopeo and htpasswd (scripts/test.sh installs them).

#[macro_use]
mod common;

use std::time::Duration;

use common::Server;
use node::containerd::network::PodNetwork;
use node::testing::Registry;

/// A node with a registry on loopback it may pull from over plain HTTP. Fields drop in
/// order: the server (and its containerd and sandboxes) before the registry and its files.
struct OciNode {
    server: Server,
    registry: Registry,
    _dir: tempfile::TempDir,
}

impl OciNode {
    fn start() -> OciNode {
        OciNode::with_registry(Registry::start)
    }

    fn with_registry(start: impl FnOnce(&std::path::Path) -> Registry) -> OciNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = start(dir.path());
        let server = Server::pulling_from(&registry.address);
        OciNode {
            server,
            registry,
            _dir: dir,
        }
    }

    fn apply(&self, kubectl: &str, manifest: &str) {
        let out = self
            .server
            .kubectl_with_stdin(kubectl, &["apply", "-f", "-"], Some(manifest));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A pod of one busybox container running `script` with `sh -c`; `extra` is more of
    /// the container's YAML, indented to its level.
    fn busybox_pod(&self, name: &str, policy: &str, script: &str, extra: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 10\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", {script:?}]\n{extra}",
            image = self.registry.busybox(),
        )
    }

    fn jsonpath(&self, kubectl: &str, pod: &str, path: &str) -> String {
        self.server.jsonpath(kubectl, &["pod", pod], path)
    }

    /// Waits until the pod's container is terminated; returns `(exitCode, reason)`.
    fn terminated(&self, kubectl: &str, pod: &str) -> (String, String) {
        let state = "{.status.containerStatuses[0].state.terminated}";
        common::wait_for(&format!("{pod} to end"), Duration::from_secs(60), || {
            (!self.jsonpath(kubectl, pod, state).is_empty()).then_some(())
        });
        let code = self.jsonpath(
            kubectl,
            pod,
            "{.status.containerStatuses[0].state.terminated.exitCode}",
        );
        let reason = self.jsonpath(
            kubectl,
            pod,
            "{.status.containerStatuses[0].state.terminated.reason}",
        );
        (code, reason)
    }

    fn wait_running(&self, kubectl: &str, pod: &str) {
        common::wait_for(&format!("{pod} to run"), Duration::from_secs(60), || {
            (self.jsonpath(kubectl, pod, "{.status.phase}") == "Running").then_some(())
        });
    }

    /// Waits until `count` containers of the pod run.
    fn wait_all_running(&self, kubectl: &str, pod: &str, count: usize) {
        let running = "{.status.containerStatuses[*].state.running}";
        common::wait_for(
            &format!("{count} running containers in {pod}"),
            Duration::from_secs(60),
            || {
                let states = self.jsonpath(kubectl, pod, running);
                (states.matches("startedAt").count() == count).then_some(())
            },
        );
    }

    /// Asks the node's containerd over CRI.
    fn cri<T>(&self, ask: impl AsyncFnOnce(&mut node::containerd::CriClient) -> T) -> T {
        let socket = self
            .server
            .data_dir
            .path()
            .join("containerd/containerd.sock");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let mut cri = node::containerd::connect(&socket)
                    .await
                    .expect("the node's containerd");
                ask(&mut cri).await
            })
    }

    /// The sandboxes of the node's containerd: `(the pods', the pool's unclaimed)`.
    fn sandboxes_by_use(&self) -> (Vec<String>, Vec<String>) {
        let dir = self.server.data_dir.path().join("containerd");
        self.cri(async |cri| {
            let found = node::testing::sandboxes_by_use(cri, &dir).await;
            found.expect("ListPodSandbox")
        })
    }

    /// How many sandboxes of pods the node's containerd has (the pool's aside).
    fn sandboxes(&self) -> usize {
        self.sandboxes_by_use().0.len()
    }

    /// The sandbox the containers of the pod with this uid run in.
    fn sandbox_of(&self, uid: &str) -> String {
        self.cri(async |cri| {
            let request = cri::v1::ListContainersRequest {
                filter: Some(cri::v1::ContainerFilter {
                    label_selector: [("io.kubernetes.pod.uid".to_string(), uid.to_string())].into(),
                    ..Default::default()
                }),
            };
            let listed = cri.runtime.list_containers(request).await;
            let containers = listed.expect("ListContainers").into_inner().containers;
            containers[0].pod_sandbox_id.clone()
        })
    }

    /// How many containers, in any state, the node's containerd has.
    fn containers(&self) -> usize {
        self.cri(async |cri| {
            let request = cri::v1::ListContainersRequest::default();
            let listed = cri.runtime.list_containers(request).await;
            listed
                .expect("ListContainers")
                .into_inner()
                .containers
                .len()
        })
    }
}

with_each_kubectl!(
    busybox_runs_logs_and_exits,
    exec_reaches_the_container,
    attach_reaches_a_containers_stdin
);

/// Exit codes and reasons come from the container; its output is `kubectl logs`; its
/// address is from the node's pod network.
fn busybox_runs_logs_and_exits(kubectl: &str) {
    let node = OciNode::start();
    node.apply(
        kubectl,
        &node.busybox_pod("fails", "Never", "echo hello from busybox; exit 3", ""),
    );
    node.apply(
        kubectl,
        &node.busybox_pod("succeeds", "Never", "echo done", ""),
    );
    assert_eq!(
        node.terminated(kubectl, "fails"),
        ("3".to_string(), "Error".to_string())
    );
    assert_eq!(
        node.terminated(kubectl, "succeeds"),
        ("0".to_string(), "Completed".to_string())
    );
    let logs = node.server.kubectl_ok(kubectl, &["logs", "fails"]);
    assert_eq!(logs, "hello from busybox\n");
    let phase = node.jsonpath(kubectl, "fails", "{.status.phase}");
    assert_eq!(phase, "Failed");
    let id = node.jsonpath(
        kubectl,
        "fails",
        "{.status.containerStatuses[0].containerID}",
    );
    assert!(id.starts_with("containerd://"), "{id}");
    let image_id = node.jsonpath(kubectl, "fails", "{.status.containerStatuses[0].imageID}");
    assert!(image_id.contains("@sha256:"), "{image_id}");

    let wide = node
        .server
        .kubectl_ok(kubectl, &["get", "pod", "fails", "-o", "wide"]);
    let rows = common::table_rows(&wide);
    let ip_column = rows[0].iter().position(|c| *c == "IP").expect("IP column");
    let ip = rows[1][ip_column];
    let subnet = PodNetwork::for_dir(&node.server.data_dir.path().join("containerd")).subnet;
    assert!(
        ip.starts_with(subnet.trim_end_matches("0/24")),
        "{ip} is not in {subnet}"
    );
    let events = node
        .server
        .kubectl_ok(kubectl, &["describe", "pod", "fails"]);
    assert!(events.contains("Successfully pulled image"), "{events}");
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let node = OciNode::start();
    let grow = "x=0123456789abcdef; while true; do x=$x$x; done";
    let limits = "    resources:\n      limits:\n        memory: 16Mi\n";
    node.apply("1.33", &node.busybox_pod("hungry", "Never", grow, limits));
    let (code, reason) = node.terminated("1.33", "hungry");
    assert_eq!((code.as_str(), reason.as_str()), ("137", "OOMKilled"));
    let table = node.server.kubectl_ok("1.33", &["get", "pod", "hungry"]);
    assert!(table.contains("OOMKilled"), "{table}");
}

#[test]
fn a_missing_image_shows_err_image_pull_then_back_off() {
    let node = OciNode::start();
    let image = format!("{}/nope:1", node.registry.address);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n  - name: main\n    image: {image}\n"
    );
    node.apply("1.33", &manifest);
    let reason = "{.status.containerStatuses[0].state.waiting.reason}";
    let mut seen = Vec::new();
    common::wait_for(
        "ErrImagePull then ImagePullBackOff",
        Duration::from_secs(60),
        || {
            let now = node.jsonpath("1.33", "missing", reason);
            if seen.last() != Some(&now) {
                seen.push(now.clone());
            }
            (now == "ImagePullBackOff").then_some(())
        },
    );
    assert!(seen.iter().any(|s| s == "ErrImagePull"), "{seen:?}");
    let message = node.jsonpath(
        "1.33",
        "missing",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(message.contains("not found"), "{message}");
    // An image it cannot pull counts as a container image: the pod has its sandbox, and
    // its address, while the image backs off.
    let ip = node.jsonpath("1.33", "missing", "{.status.podIP}");
    assert!(ip.starts_with("10.244."), "{ip}");

    // `Never` does not pull at all.
    let never = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: never\nspec:\n  containers:\n  - name: main\n    image: {}\n    imagePullPolicy: Never\n",
        node.registry.busybox()
    );
    node.apply("1.33", &never);
    common::wait_for("ErrImageNeverPull", Duration::from_secs(60), || {
        (node.jsonpath("1.33", "never", reason) == "ErrImageNeverPull").then_some(())
    });
    let message = node.jsonpath(
        "1.33",
        "never",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert_eq!(
        message,
        format!(
            "Container image \"{}\" is not present with pull policy of Never",
            node.registry.busybox()
        )
    );
}

#[test]
fn deleting_a_pod_stops_its_container_gracefully_and_removes_the_sandbox() {
    let node = OciNode::start();
    let script = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    node.apply("1.33", &node.busybox_pod("graceful", "Always", script, ""));
    node.wait_running("1.33", "graceful");
    common::wait_for("the container to be ready", Duration::from_secs(30), || {
        node.server
            .kubectl_ok("1.33", &["logs", "graceful"])
            .contains("ready")
            .then_some(())
    });
    assert_eq!(node.sandboxes(), 1);
    let uid = node.jsonpath("1.33", "graceful", "{.metadata.uid}");
    node.server
        .kubectl_ok("1.33", &["delete", "pod", "graceful", "--wait=true"]);
    // The trap ran: the container got SIGTERM, not SIGKILL, and said so in its log.
    let log = node
        .server
        .data_dir
        .path()
        .join(format!("logs/pods/default_graceful_{uid}/main/0.log"));
    let log = std::fs::read_to_string(&log).expect("the container's log");
    assert!(log.contains("stdout F got TERM"), "{log}");
    assert_eq!(node.sandboxes(), 0);
}

#[test]
fn a_private_registry_needs_the_pods_image_pull_secrets() {
    let node = OciNode::with_registry(|dir| Registry::start_private(dir, "puller", "s3cret"));
    let image = node.registry.busybox();
    let pod = |name: &str, secrets: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n{secrets}  containers:\n  - name: main\n    image: {image}\n    command: [\"echo\", \"pulled with a login\"]\n"
        )
    };
    node.apply("1.33", &pod("anonymous", ""));
    let reason = "{.status.containerStatuses[0].state.waiting.reason}";
    let message = common::wait_for("ErrImagePull", Duration::from_secs(60), || {
        let state = node.jsonpath("1.33", "anonymous", reason);
        (state == "ErrImagePull" || state == "ImagePullBackOff").then(|| {
            node.jsonpath(
                "1.33",
                "anonymous",
                "{.status.containerStatuses[0].state.waiting.message}",
            )
        })
    });
    // The registry's refusal, as the node's puller words it (like containerd's).
    assert!(message.contains("unauthorized"), "{message}");

    node.server.kubectl_ok(
        "1.33",
        &[
            "create",
            "secret",
            "docker-registry",
            "login",
            &format!("--docker-server={}", node.registry.address),
            "--docker-username=puller",
            "--docker-password=s3cret",
        ],
    );
    node.apply(
        "1.33",
        &pod("with-login", "  imagePullSecrets:\n  - name: login\n"),
    );
    let (code, _) = node.terminated("1.33", "with-login");
    assert_eq!(code, "0");
    let logs = node.server.kubectl_ok("1.33", &["logs", "with-login"]);
    assert_eq!(logs, "pulled with a login\n");
}

#[test]
fn a_restarted_node_adopts_its_running_containers() {
    let mut node = OciNode::start();
    let script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    node.apply("1.33", &node.busybox_pod("survivor", "Always", script, ""));
    node.wait_running("1.33", "survivor");
    let status = "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt} {.status.podIP}";
    let before = node.jsonpath("1.33", "survivor", status);

    node.server.kill9();
    node.server.spawn();

    // Still the same container, still running, not restarted; its log goes on.
    let ticks = |node: &OciNode| {
        node.server
            .kubectl_ok("1.33", &["logs", "survivor"])
            .lines()
            .count()
    };
    let seen = ticks(&node);
    common::wait_for(
        "more ticks after the restart",
        Duration::from_secs(30),
        || (ticks(&node) > seen + 2).then_some(()),
    );
    assert_eq!(node.jsonpath("1.33", "survivor", status), before);
    assert_eq!(
        node.jsonpath("1.33", "survivor", "{.status.phase}"),
        "Running"
    );
    let restarts = node.jsonpath(
        "1.33",
        "survivor",
        "{.status.containerStatuses[0].restartCount}",
    );
    assert_eq!(restarts, "0");
    assert_eq!(node.sandboxes(), 1);
    // And the adopted container is still the node's to stop.
    node.server
        .kubectl_ok("1.33", &["delete", "pod", "survivor", "--wait=true"]);
    assert_eq!(node.sandboxes(), 0);
}

/// Once the node runs containerd it keeps sandboxes made ahead of time: a new pod takes
/// one, with its own hostname in it, keeps it across a restart of the node, and the pool
/// makes another.
#[test]
fn a_pod_takes_its_sandbox_from_the_pool_and_keeps_it() {
    let mut node = OciNode::start();
    node.apply(
        "1.33",
        &node.busybox_pod("first", "Always", "sleep 3600", ""),
    );
    node.wait_running("1.33", "first");
    let pool_full = |node: &OciNode| {
        common::wait_for("the pool to fill", Duration::from_secs(60), || {
            let (_, pool) = node.sandboxes_by_use();
            (pool.len() == 2).then_some(pool)
        })
    };
    let ready = pool_full(&node);

    node.apply(
        "1.33",
        &node.busybox_pod("pooled", "Always", "sleep 3600", ""),
    );
    node.wait_running("1.33", "pooled");
    let uid = node.jsonpath("1.33", "pooled", "{.metadata.uid}");
    let sandbox = node.sandbox_of(&uid);
    assert!(
        ready.contains(&sandbox),
        "{sandbox} is not one of {ready:?}"
    );
    let names = ["exec", "pooled", "--", "sh", "-c"];
    let names = [&names[..], &["hostname; cat /etc/hostname; echo $HOSTNAME"]].concat();
    assert_eq!(
        node.server.kubectl_ok("1.33", &names),
        "pooled\npooled\npooled\n"
    );
    let ip = node.cri(async |cri| cri.sandbox_ip(&sandbox).await.expect("PodSandboxStatus"));
    assert_eq!(Some(node.jsonpath("1.33", "pooled", "{.status.podIP}")), ip);

    let status = "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.podIP}";
    let before = node.jsonpath("1.33", "pooled", status);
    node.server.kill9();
    node.server.spawn();
    common::wait_for("the pod adopted", Duration::from_secs(60), || {
        (node.jsonpath("1.33", "pooled", "{.status.phase}") == "Running").then_some(())
    });
    assert_eq!(node.jsonpath("1.33", "pooled", status), before);
    assert_eq!(
        node.server.kubectl_ok("1.33", &names),
        "pooled\npooled\npooled\n"
    );
    assert!(node.sandboxes_by_use().0.contains(&sandbox));
    pool_full(&node);

    node.server
        .kubectl_ok("1.33", &["delete", "pod", "pooled", "--wait=true"]);
    common::wait_for("the sandbox to go", Duration::from_secs(30), || {
        let (pods, pool) = node.sandboxes_by_use();
        (!pods.contains(&sandbox) && !pool.contains(&sandbox)).then_some(())
    });
}

#[test]
fn the_pod_spec_reaches_the_container() {
    let node = OciNode::start();
    let image = node.registry.busybox();
    // env, args, workingDir, an emptyDir shared by two containers, and cgroup limits.
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: spec
spec:
  restartPolicy: Never
  volumes:
  - name: shared
    emptyDir: {{}}
  containers:
  - name: writer
    image: {image}
    command: ["sh", "-c"]
    args: ["echo $GREETING from $(pwd) > /shared/note"]
    workingDir: /tmp
    env:
    - name: GREETING
      value: hello
    volumeMounts:
    - name: shared
      mountPath: /shared
  - name: reader
    image: {image}
    command: ["sh", "-c", "until [ -s /data/note ]; do sleep 0.1; done; cat /data/note; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]
    resources:
      limits:
        memory: 32Mi
        cpu: 500m
    volumeMounts:
    - name: shared
      mountPath: /data
      readOnly: true
"#
    );
    node.apply("1.33", &manifest);
    common::wait_for("the pod to succeed", Duration::from_secs(60), || {
        (node.jsonpath("1.33", "spec", "{.status.phase}") == "Succeeded").then_some(())
    });
    let logs = node
        .server
        .kubectl_ok("1.33", &["logs", "spec", "-c", "reader"]);
    assert_eq!(logs, format!("hello from /tmp\n{}\n", 32 << 20));
}

/// ConfigMap and Secret volumes reach OCI containers as kubelet writes them (tmpfs, an
/// atomically swapped `..data`): a mounted key follows an update within 2 s, a `subPath`
/// mount keeps the value it started with, and no Secret byte lands under the data directory.
#[test]
fn config_volumes_follow_updates_in_oci_containers() {
    // The container logs a digest of the Secret, not the Secret: logs are on disk.
    const SECRET_MD5: &str = "33e1b232"; // md5("s3cret")
    let node = OciNode::start();
    let image = node.registry.busybox();
    let k = |args: &[&str]| node.server.kubectl_ok("1.33", args);
    k(&["create", "configmap", "settings", "--from-literal=a=one"]);
    k(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=pw=s3cret",
    ]);
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: config
spec:
  volumes:
  - name: c
    configMap:
      name: settings
  - name: s
    secret:
      secretName: creds
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "while true; do echo $(cat /etc/settings/a) $(cat /etc/fixed-a) $(cat /etc/creds/pw | md5sum | head -c 8); sleep 0.1; done"]
    volumeMounts:
    - name: c
      mountPath: /etc/settings
    - name: c
      mountPath: /etc/fixed-a
      subPath: a
    - name: s
      mountPath: /etc/creds
"#
    );
    node.apply("1.33", &manifest);
    let seen = |line: &str| {
        // Fails until the container has started.
        let out = node
            .server
            .kubectl("1.33", &["logs", "config", "--timestamps"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.split_once(' ').is_some_and(|(_, rest)| rest == line))
            .map(|l| {
                let ts = l.split(' ').next().unwrap_or_default();
                chrono::DateTime::parse_from_rfc3339(ts).expect("a timestamp")
            })
    };
    common::wait_for("the first values", Duration::from_secs(60), || {
        seen(&format!("one one {SECRET_MD5}"))
    });
    let patched = chrono::Utc::now();
    k(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"a":"two"}}"#,
    ]);
    let updated = common::wait_for("the update", Duration::from_secs(30), || {
        seen(&format!("two one {SECRET_MD5}"))
    });
    let took = updated.signed_duration_since(patched);
    assert!(
        took < chrono::Duration::seconds(2),
        "the update took {took}"
    );
    let dir = node.server.data_dir.path().to_path_buf();
    let out = std::process::Command::new("grep")
        .args(["-r", "-l", "s3cret"])
        .arg(&dir)
        .output()
        .expect("grep");
    assert!(
        out.stdout.is_empty(),
        "secret bytes on disk: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `kubectl exec` through the API server to containerd's streaming server: the output
/// streams, the exit code, and stdin until its end (kubectl 1.27 speaks SPDY, 1.33 tries
/// WebSocket first).
fn exec_reaches_the_container(kubectl: &str) {
    let node = OciNode::start();
    node.apply(
        kubectl,
        &node.busybox_pod("shell", "Always", "sleep 3600", ""),
    );
    node.wait_running(kubectl, "shell");
    let out = node.server.kubectl(
        kubectl,
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(3));
    let out = node.server.kubectl_with_stdin(
        kubectl,
        &["exec", "-i", "shell", "--", "sh", "-c", "tr a-z A-Z"],
        Some("piped through\n"),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED THROUGH\n");
    // A command that is not in the image is the runtime's error, as kubectl shows it.
    let out = node
        .server
        .kubectl(kubectl, &["exec", "shell", "--", "no-such-command"]);
    assert!(!out.status.success());
}

/// `kubectl attach -i` reaches the stdin of a container that asked for one (`stdin: true`)
/// and shows its output, `kubectl attach -it` drives one with a terminal (`tty: true`) from
/// a pseudo-terminal; a WASI component has no process to attach to and says so.
fn attach_reaches_a_containers_stdin(kubectl: &str) {
    let node = OciNode::start();
    node.server.import("ticker", "ticker:1.0");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: attached
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    command: ["sh"]
    stdin: true
  - name: term
    image: {image}
    command: ["sh"]
    stdin: true
    tty: true
  - name: guest
    image: ticker:1.0
"#,
        image = node.registry.busybox()
    );
    node.apply(kubectl, &manifest);
    node.wait_all_running(kubectl, "attached", 3);
    let mut attach = std::process::Command::new(common::kubectl_path(kubectl))
        .env("KUBECONFIG", node.server.kubeconfig())
        .args(["attach", "-i", "attached", "-c", "main"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl attach");
    let seen = record(attach.stdout.take().expect("stdout"));
    // Stdin stays open: containerd ends an attach session when its stdin ends.
    let mut input = attach.stdin.take().expect("stdin");
    let mut say = |line: &str| {
        use std::io::Write as _;
        input.write_all(line.as_bytes()).expect("write stdin");
    };
    // Said until seen: containerd adds an attached output after it starts passing the
    // attached input on, so what the shell says at once may be gone before the session
    // sees it.
    say("until [ -e /tmp/stop ]; do echo attached-$((6*7)); sleep 0.1; done\n");
    say("exit 4\n");
    common::wait_for("the attached output", Duration::from_secs(30), || {
        seen.lock()
            .expect("recorded output")
            .contains("attached-42\n")
            .then_some(())
    });
    let stop = ["exec", "attached", "-c", "main", "--", "touch", "/tmp/stop"];
    node.server.kubectl_ok(kubectl, &stop);
    // The shell reads on and exits, which ends the session.
    common::wait_for("kubectl attach to end", Duration::from_secs(30), || {
        attach.try_wait().expect("kubectl attach")
    });
    let exit_code = "{.status.containerStatuses[?(@.name==\"main\")].state.terminated.exitCode}";
    common::wait_for("the shell to end", Duration::from_secs(30), || {
        (node.jsonpath(kubectl, "attached", exit_code) == "4").then_some(())
    });
    // A container with a terminal, attached from one (`-it`).
    let pty = Pty::open(24, 80);
    let seen = pty.record();
    let mut attach = pty.run(
        std::process::Command::new(common::kubectl_path(kubectl))
            .env("KUBECONFIG", node.server.kubeconfig())
            .args(["attach", "-it", "attached", "-c", "term"]),
    );
    let shows = |what: &str| seen.lock().expect("recorded output").contains(what);
    // Typed until answered, for the reason above.
    common::wait_for("the terminal's answer", Duration::from_secs(30), || {
        pty.type_keys("echo tty-$((6*7))\n");
        shows("tty-42\r\n").then_some(())
    });
    pty.type_keys("exit 5\n");
    common::wait_for("kubectl attach -it to end", Duration::from_secs(30), || {
        attach.try_wait().expect("kubectl attach -it")
    });
    let exit_code = "{.status.containerStatuses[?(@.name==\"term\")].state.terminated.exitCode}";
    common::wait_for(
        "the terminal's shell to end",
        Duration::from_secs(30),
        || (node.jsonpath(kubectl, "attached", exit_code) == "5").then_some(()),
    );
    let out = node
        .server
        .kubectl(kubectl, &["attach", "attached", "-c", "guest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is a WebAssembly component"), "{stderr}");
}

/// `examples/sidecar-pod.yaml`: busybox httpd serves a page the WASI sidecar wrote into
/// their shared emptyDir; the sidecar fetches it over the pod's localhost and ships the
/// request log httpd writes; both are ready (2/2); killing the web container restarts it
/// alone.
#[test]
fn the_sidecar_example_mixes_oci_and_wasi_containers() {
    let node = OciNode::start();
    node.server.import("log-shipper", "log-shipper:1.0");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sidecar-pod.yaml");
    let manifest = std::fs::read_to_string(example)
        .expect("the example")
        .replace("127.0.0.1:5000/busybox:test", &node.registry.busybox());
    node.apply("1.33", &manifest);
    let k = |args: &[&str]| node.server.kubectl_ok("1.33", args);
    let ready = || {
        common::wait_for("2/2", Duration::from_secs(60), || {
            let table = k(&["get", "pod", "sidecar-demo"]);
            (common::table_rows(&table)[1][1] == "2/2").then_some(())
        })
    };
    ready();
    let logs = common::wait_for(
        "the sidecar's fetch and shipment",
        Duration::from_secs(60),
        || {
            let out = node
                .server
                .kubectl("1.33", &["logs", "sidecar-demo", "-c", "sidecar"]);
            let logs = String::from_utf8_lossy(&out.stdout).into_owned();
            let shipped = logs
                .lines()
                .any(|l| l.starts_with("shipped ") && l.contains("127.0.0.1"));
            (shipped && logs.contains("fetched written by the WASI sidecar")).then_some(logs)
        },
    );
    assert!(!logs.contains("fetch failed"), "{logs}");
    let page = k(&[
        "exec",
        "sidecar-demo",
        "-c",
        "web",
        "--",
        "wget",
        "-qO-",
        "localhost:80",
    ]);
    assert_eq!(page, "written by the WASI sidecar\n");
    // The pod has one address: its sandbox's.
    let ip = node.jsonpath("1.33", "sidecar-demo", "{.status.podIP}");
    let subnet = PodNetwork::for_dir(&node.server.data_dir.path().join("containerd")).subnet;
    assert!(ip.starts_with(subnet.trim_end_matches("0/24")), "{ip}");
    // Killing the OCI container restarts it alone. The `kill` itself may be killed with
    // the container's process namespace before it exits (exit code 137).
    let out = node.server.kubectl(
        "1.33",
        &["exec", "sidecar-demo", "-c", "web", "--", "kill", "1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("command terminated with exit code 137"),
        "{stderr}"
    );
    let restarts = |c: &str| {
        let path = format!("{{.status.containerStatuses[?(@.name==\"{c}\")].restartCount}}");
        node.jsonpath("1.33", "sidecar-demo", &path)
    };
    common::wait_for("web to restart", Duration::from_secs(60), || {
        (restarts("web") == "1").then_some(())
    });
    assert_eq!(restarts("sidecar"), "0");
    ready();
}

/// The other way round: a WASI server listening in its pod is reached by the pod's OCI
/// container on localhost.
#[test]
fn oci_containers_reach_a_wasi_server_of_their_pod_on_localhost() {
    let node = OciNode::start();
    node.server.import("http-serve", "http-serve:1.0");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: served
spec:
  containers:
  - name: server
    image: http-serve:1.0
    args: ["8080", "served by a WASI guest"]
  - name: client
    image: {image}
    command: ["sh", "-c", "until wget -qO- 127.0.0.1:8080; do sleep 0.2; done; echo; sleep 3600"]
"#,
        image = node.registry.busybox()
    );
    node.apply("1.33", &manifest);
    common::wait_for("the OCI client's fetch", Duration::from_secs(60), || {
        let out = node
            .server
            .kubectl("1.33", &["logs", "served", "-c", "client"]);
        let logs = String::from_utf8_lossy(&out.stdout).into_owned();
        logs.contains("served by a WASI guest").then_some(())
    });
    // Not on the node's own loopback: the guest listens in the pod's network only.
    assert!(std::net::TcpStream::connect("127.0.0.1:8080").is_err());
}

#[test]
fn a_crashing_container_restarts_in_its_sandbox_with_back_off() {
    let node = OciNode::start();
    let script = "echo run; exit 1";
    node.apply("1.27", &node.busybox_pod("crasher", "Always", script, ""));
    let restarts = "{.status.containerStatuses[0].restartCount}";
    let reason = "{.status.containerStatuses[0].state.waiting.reason}";
    common::wait_for("CrashLoopBackOff", Duration::from_secs(60), || {
        let count: u32 = node.jsonpath("1.27", "crasher", restarts).parse().ok()?;
        (count >= 1 && node.jsonpath("1.27", "crasher", reason) == "CrashLoopBackOff").then_some(())
    });
    let last = node.jsonpath(
        "1.27",
        "crasher",
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "1");
    let previous = node
        .server
        .kubectl_ok("1.27", &["logs", "crasher", "--previous"]);
    assert_eq!(previous, "run\n");
    // Every run was in the pod's one sandbox.
    assert_eq!(node.sandboxes(), 1);
}

/// A pod of busybox containers `main` and `side` sleeping, and a WASI component `guest`;
/// returns once all three run.
fn start_trio(node: &OciNode, name: &str) {
    node.server.import("ticker", "ticker:1.0");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    command: ["sleep", "3600"]
  - name: side
    image: {image}
    command: ["sleep", "3600"]
  - name: guest
    image: ticker:1.0
"#,
        image = node.registry.busybox()
    );
    node.apply("1.33", &manifest);
    node.wait_all_running("1.33", name, 3);
}

/// What a finished `wkube` run left: (exit code, stdout, stderr).
fn outcome(out: std::process::Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wkube exec` without a terminal: the streams, the exit code and the messages are
/// kubectl's.
#[test]
fn wkube_exec_runs_commands_like_kubectl() {
    let node = OciNode::start();
    start_trio(&node, "trio");
    let exec = |args: &[&str]| {
        outcome(
            node.server
                .wkube()
                .arg("exec")
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("wkube exec"),
        )
    };
    let script = "echo out; echo err >&2; exit 3";
    assert_eq!(
        exec(&["trio", "--", "sh", "-c", script]),
        (
            Some(3),
            "out\n".to_string(),
            "Defaulted container \"main\" out of: main, side, guest\nerr\n\
             command terminated with exit code 3\n"
                .to_string()
        )
    );
    assert_eq!(
        exec(&["-c", "side", "trio", "--", "sh", "-c", "echo side"]),
        (Some(0), "side\n".to_string(), String::new())
    );
    // `-t` without a terminal on stdin: kubectl's warning, then the command without one.
    let (code, stdout, stderr) = exec(&["-t", "-c", "main", "trio", "--", "echo", "hi"]);
    assert_eq!((code, stdout.as_str()), (Some(0), "hi\n"), "{stderr}");
    assert_eq!(
        stderr,
        "Unable to use a TTY - input is not a terminal or the right kind of file\n"
    );
    // `-i`: stdin reaches the command (its end cannot: containerd speaks v4 only).
    let mut read = node
        .server
        .wkube()
        .args(["exec", "-i", "-c", "main", "trio", "--", "sh", "-c"])
        .arg("read line; echo \"got $line\"; exit 7")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wkube exec -i");
    {
        use std::io::Write as _;
        let mut input = read.stdin.take().expect("stdin");
        input.write_all(b"piped in\n").expect("write stdin");
    }
    let (code, stdout, stderr) = outcome(read.wait_with_output().expect("wkube exec -i"));
    assert_eq!(
        (code, stdout.as_str()),
        (Some(7), "got piped in\n"),
        "{stderr}"
    );
    let (code, _, stderr) = exec(&["-c", "guest", "trio", "--", "ls"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is a WebAssembly component"), "{stderr}");
    assert_eq!(
        exec(&["nosuch", "--", "true"]),
        (
            Some(1),
            String::new(),
            "Error from server (NotFound): pods \"nosuch\" not found\n".to_string()
        )
    );
}

/// Everything `source` yields, collected by a thread until its end, to be polled.
fn record(
    mut source: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = source.read(&mut buf) {
            sink.lock()
                .expect("recorded output")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    seen
}

/// A pseudo-terminal for a process under test: its master, and a slave to hand out as the
/// process's stdin, stdout and stderr.
struct Pty {
    master: std::os::fd::OwnedFd,
    slave: std::os::fd::OwnedFd,
}

impl Pty {
    fn open(rows: u16, cols: u16) -> Pty {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::OpenptFlags;
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        // Not this test process's controlling terminal.
        let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
        let slave = rustix::fs::open(name.as_c_str(), flags, Mode::empty()).expect("open pty");
        let pty = Pty { master, slave };
        pty.resize(rows, cols);
        pty
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.slave, size).expect("set the pty's size");
    }

    fn stdio(&self) -> std::process::Stdio {
        self.slave.try_clone().expect("dup the pty").into()
    }

    /// Everything the master reads from now on (see [`record`]).
    fn record(&self) -> std::sync::Arc<std::sync::Mutex<String>> {
        record(std::fs::File::from(
            self.master.try_clone().expect("dup the pty"),
        ))
    }

    /// Starts `command` with the terminal as its stdin, stdout and stderr.
    fn run(&self, command: &mut std::process::Command) -> std::process::Child {
        command
            .stdin(self.stdio())
            .stdout(self.stdio())
            .stderr(self.stdio())
            .spawn()
            .expect("spawn on the pty")
    }

    /// The terminal is back in its line mode (a program left it raw otherwise).
    fn assert_cooked(&self) {
        use rustix::termios::LocalModes;
        let modes = rustix::termios::tcgetattr(&self.slave)
            .expect("the pty's settings")
            .local_modes;
        assert!(
            modes.contains(LocalModes::ICANON | LocalModes::ECHO),
            "the terminal stayed raw: {modes:?}"
        );
    }

    /// Types `keys` on the terminal.
    fn type_keys(&self, keys: &str) {
        rustix::io::write(&self.master, keys.as_bytes()).expect("write to the pty");
    }
}

/// `wkube exec -it` under a real pseudo-terminal: the local terminal goes raw and drives a
/// remote shell, its size and later resizes (SIGWINCH) reach the remote terminal, the exit
/// code comes back, and the local terminal's settings are restored, after a SIGTERM too.
#[test]
fn wkube_exec_drives_a_terminal() {
    let node = OciNode::start();
    node.apply(
        "1.33",
        &node.busybox_pod("term", "Always", "sleep 3600", ""),
    );
    node.wait_running("1.33", "term");
    let (pty, seen, mut session) = shell_session(&node, 33, 101);
    let shows = |what: &str| seen.lock().expect("recorded output").contains(what);
    pty.type_keys("stty size\n");
    common::wait_for("the initial size", Duration::from_secs(10), || {
        shows("33 101\r\n").then_some(())
    });
    pty.resize(20, 70);
    signal(&session, rustix::process::Signal::WINCH);
    // The resize travels apart from the keys: ask again until the new size shows.
    common::wait_for("the new size", Duration::from_secs(10), || {
        pty.type_keys("stty size\n");
        shows("20 70\r\n").then_some(())
    });
    pty.type_keys("echo $((6*7)); exit 5\n");
    let status = common::wait_for("the session to end", Duration::from_secs(30), || {
        session.try_wait().expect("wkube exec -it")
    });
    assert_eq!(status.code(), Some(5), "{}", seen.lock().unwrap());
    common::wait_for("the exit notice", Duration::from_secs(10), || {
        shows("command terminated with exit code 5").then_some(())
    });
    assert!(shows("\r\n42\r\n"), "{}", seen.lock().unwrap());
    pty.assert_cooked();

    let (pty, seen, mut session) = shell_session(&node, 24, 80);
    let shows = |what: &str| seen.lock().expect("recorded output").contains(what);
    signal(&session, rustix::process::Signal::TERM);
    let status = common::wait_for("the session to end", Duration::from_secs(30), || {
        session.try_wait().expect("wkube exec -it")
    });
    assert_eq!(status.code(), Some(1));
    common::wait_for("the error", Duration::from_secs(10), || {
        shows("error: the session ended on SIGTERM").then_some(())
    });
    pty.assert_cooked();
}

/// `wkube exec -it term -- sh` on a new pty of `rows` x `cols`, once the remote prompt
/// shows: the pty, what it has shown, and the session.
fn shell_session(
    node: &OciNode,
    rows: u16,
    cols: u16,
) -> (
    Pty,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::process::Child,
) {
    let pty = Pty::open(rows, cols);
    let seen = pty.record();
    let session = pty.run(
        node.server
            .wkube()
            .args(["exec", "-it", "term", "--", "sh"]),
    );
    common::wait_for("the remote prompt", Duration::from_secs(30), || {
        seen.lock()
            .expect("recorded output")
            .contains("/ # ")
            .then_some(())
    });
    (pty, seen, session)
}

fn signal(child: &std::process::Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, signal).expect("signal");
}

/// Kubelet's container garbage collection: of a crash-looping container's dead runs, only
/// the newest stays in containerd (with its log, for `--previous`); older ones and their
/// log files go.
#[test]
fn dead_containers_are_collected_but_the_previous_one() {
    let node = OciNode::start();
    node.apply(
        "1.33",
        &node.busybox_pod("looper", "Always", "echo run; exit 1", ""),
    );
    let restarts = "{.status.containerStatuses[0].restartCount}";
    common::wait_for("three restarts", Duration::from_secs(120), || {
        let count: u32 = node.jsonpath("1.33", "looper", restarts).parse().ok()?;
        (count >= 3).then_some(())
    });
    let uid = node.jsonpath("1.33", "looper", "{.metadata.uid}");
    let logs = node
        .server
        .data_dir
        .path()
        .join(format!("logs/pods/default_looper_{uid}/main"));
    // The newest dead run and the latest one (running, or dead and waiting to restart).
    common::wait_for(
        "older runs to be collected",
        Duration::from_secs(30),
        || {
            let log_files = std::fs::read_dir(&logs).ok()?.count();
            (node.containers() == 2 && log_files == 2).then_some(())
        },
    );
    assert!(!logs.join("0.log").exists());
    let previous = node
        .server
        .kubectl_ok("1.33", &["logs", "looper", "--previous"]);
    assert_eq!(previous, "run\n");
}

/// Init containers run wherever their image is: a WASI init container writes to an
/// emptyDir, a busybox init container after it adds to it, and the busybox app reads both.
#[test]
fn wasi_and_oci_init_containers_prepare_a_containers_volume() {
    let node = OciNode::start();
    node.server.import("confwatch", "confwatch:1.0");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: prepared
spec:
  restartPolicy: Never
  volumes: [{{name: data, emptyDir: {{}}}}]
  initContainers:
  - name: wasi
    image: confwatch:1.0
    args: [write, /data/a, from-wasi]
    volumeMounts: [{{name: data, mountPath: /data}}]
  - name: oci
    image: {image}
    command: ["sh", "-c", "echo from-busybox >> /data/a"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: main
    image: {image}
    command: ["cat", "/data/a"]
    volumeMounts: [{{name: data, mountPath: /data}}]
"#,
        image = node.registry.busybox()
    );
    node.apply("1.33", &manifest);
    assert_eq!(
        node.terminated("1.33", "prepared"),
        ("0".into(), "Completed".into())
    );
    let inits = node.jsonpath(
        "1.33",
        "prepared",
        "{range .status.initContainerStatuses[*]}{.name}={.state.terminated.reason} {.containerID} {end}",
    );
    let parts: Vec<&str> = inits.split_whitespace().collect();
    assert_eq!(parts[0], "wasi=Completed", "{inits}");
    assert!(parts[1].starts_with("wasmtime://"), "{inits}");
    assert_eq!(parts[2], "oci=Completed", "{inits}");
    assert!(parts[3].starts_with("containerd://"), "{inits}");
    let logs = node.server.kubectl_ok("1.33", &["logs", "prepared"]);
    assert_eq!(logs, "from-wasifrom-busybox\n");
}
