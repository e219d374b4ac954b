//! Wasm artifacts pulled by the node from an OCI registry (a real `docker-registry` on
//! loopback, spoken to over plain HTTP through `--insecure-registry`), the pull policies,
//! and `wkube image import` of an OCI archive.

#[macro_use]
mod common;

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use common::registry::{wasm_archive, Registry};
use common::Server;

with_each_kubectl!(pulled_from_a_registry);

fn pod(name: &str, image: &str, policy: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: {image}\n    imagePullPolicy: {policy}\n"
    )
}

/// The pod's STATUS column, each new value as it changes, until `done` says stop.
fn statuses_until(server: &Server, version: &str, pod: &str, done: &str) -> Vec<String> {
    let mut seen = Vec::<String>::new();
    common::wait_for(
        &format!("{pod} to show {done}"),
        Duration::from_secs(60),
        || {
            let row = server.kubectl_ok(version, &["get", "pod", pod, "--no-headers"]);
            let status = row.split_whitespace().nth(2)?.to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            (status == done).then_some(())
        },
    );
    seen
}

fn pod_events(server: &Server, version: &str, pod: &str) -> String {
    let selector = format!("involvedObject.name={pod}");
    server.kubectl_ok(
        version,
        &[
            "get",
            "events",
            "--field-selector",
            &selector,
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ],
    )
}

fn pulled_from_a_registry(version: &str) {
    let registry = Registry::start();
    let image = registry.push_wasm("hello", "wasm/hello", "1.0");
    let server = Server::pulling_from(&registry.address);

    // Never imported: the node pulls it, then runs it.
    server.apply(version, &pod("pulled", &image, "IfNotPresent"));
    statuses_until(&server, version, "pulled", "Completed");
    let logs = server.kubectl_ok(version, &["logs", "pulled"]);
    assert!(logs.contains("Hello from wkube!"), "{logs}");
    let events = pod_events(&server, version, "pulled");
    assert!(
        events.contains(&format!("Pulling image \"{image}\"")),
        "{events}"
    );
    let pulled = events
        .lines()
        .find(|l| l.contains("Successfully pulled image"))
        .unwrap_or_else(|| panic!("no Pulled event: {events}"));
    assert!(
        pulled.contains(" including waiting). Image size: "),
        "{pulled}"
    );
    // The image ID is the manifest digest the registry serves.
    let image_id = server.jsonpath(
        version,
        &["pod", "pulled"],
        "{.status.containerStatuses[0].imageID}",
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let served = format!("sha256:{:x}", Sha256::digest(&raw.stdout));
    assert!(image_id.ends_with(&served), "{image_id} vs {served}");
    let ls = server.wkube().args(["image", "ls"]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains(&image), "stored after the pull: {ls}");

    // Present now: IfNotPresent uses the stored copy, Always asks the registry again.
    server.apply(version, &pod("present", &image, "IfNotPresent"));
    server.apply(version, &pod("always", &image, "Always"));
    statuses_until(&server, version, "present", "Completed");
    statuses_until(&server, version, "always", "Completed");
    // Pulled or present, their images are wasm components: the pods need no sandbox, so
    // their guests have the node's address and the node never started containerd.
    for pod in ["pulled", "present", "always"] {
        let ips = server.jsonpath(version, &["pod", pod], "{.status.podIP} {.status.hostIP}");
        let (pod_ip, host_ip) = ips.split_once(' ').unwrap_or((&ips, ""));
        assert_eq!(pod_ip, host_ip, "{pod}: podIP and hostIP");
    }
    let containerd = server.data_dir.path().join("containerd/config.toml");
    assert!(!containerd.exists(), "containerd was started");
    let present = pod_events(&server, version, "present");
    assert!(
        present.contains(&format!(
            "Container image \"{image}\" already present on machine"
        )) && !present.contains("Pulling"),
        "{present}"
    );
    let always = pod_events(&server, version, "always");
    assert!(
        always.contains("Pulling") && always.contains("Successfully pulled image"),
        "{always}"
    );

    // A tag the registry lacks: the registry's answer, then the back-off.
    let missing = format!("{}/wasm/hello:missing", registry.address);
    server.apply(version, &pod("missing", &missing, "IfNotPresent"));
    let seen = statuses_until(&server, version, "missing", "ImagePullBackOff");
    assert!(
        seen.iter().any(|s| s == "ErrImagePull"),
        "statuses: {seen:?}"
    );
    let events = pod_events(&server, version, "missing");
    assert!(
        events.contains(&format!(
            "Failed to pull image \"{missing}\": failed to pull and unpack image \"{missing}\""
        )) && events.contains(": not found"),
        "{events}"
    );

    // Never: what is not on the node is not pulled.
    let absent = format!("{}/wasm/absent:1.0", registry.address);
    server.apply(version, &pod("never", &absent, "Never"));
    statuses_until(&server, version, "never", "ErrImageNeverPull");
    let message = server.jsonpath(
        version,
        &["pod", "never"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert_eq!(
        message,
        format!("Container image \"{absent}\" is not present with pull policy of Never")
    );
    assert!(
        !pod_events(&server, version, "never").contains("Pulling"),
        "no pull attempted"
    );
}

#[test]
fn oci_archive_import_makes_the_artifact_runnable_without_a_registry() {
    let server = Server::start();
    let archive = server.data_dir.path().join("hello.tar");
    wasm_archive("hello", "archived/hello:2.0", &archive);
    let out = server
        .wkube()
        .args(["image", "import"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("docker.io/archived/hello:2.0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    server.apply("1.33", &pod("archived", "archived/hello:2.0", "Never"));
    statuses_until(&server, "1.33", "archived", "Completed");
    let logs = server.kubectl_ok("1.33", &["logs", "archived"]);
    assert!(logs.contains("Hello from wkube!"), "{logs}");
}
