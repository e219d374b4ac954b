//! `wkube image import` of a container image: an OCI image archive (busybox, built from
//! Debian's busybox-static, written by skopeo) lands in the node's containerd and runs with
//! `imagePullPolicy: Never`, no registry anywhere, and so does a Docker archive; a corrupt
//! or cut archive fails clearly and leaves no image record. Needs root, containerd, runc,
//! the CNI plugins and skopeo.

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::registry::busybox_archive;
use common::Server;

fn import(server: &Server, archive: &Path) -> std::process::Output {
    server
        .wkube()
        .args(["image", "import"])
        .arg(archive)
        .output()
        .expect("wkube image import")
}

/// The image records in the node's containerd, in CRI's namespace.
fn containerd_images(server: &Server) -> String {
    let socket = server.data_dir.path().join("containerd/containerd.sock");
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "ls", "-q"])
        .output()
        .expect("ctr");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Runs a pod `name` of `image` with `imagePullPolicy: Never`; checks its log.
fn run_imported(server: &Server, name: &str, image: &str) {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo ran from an imported image\"]\n"
    );
    let out = server.kubectl_with_stdin("1.33", &["apply", "-f", "-"], Some(&pod));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_for(
        &format!("{name} to succeed"),
        Duration::from_secs(60),
        || {
            let phase = server.jsonpath("1.33", &["pod", name], "{.status.phase}");
            (phase == "Succeeded").then_some(())
        },
    );
    let logs = server.kubectl_ok("1.33", &["logs", name]);
    assert_eq!(logs, "ran from an imported image\n");
}

#[test]
fn an_imported_container_image_runs_without_a_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let server = Server::start();

    // Cut short: the archive ends inside the layer.
    let cut = dir.path().join("cut.tar");
    busybox_archive(&layout, "busybox:cut", &cut);
    let bytes = std::fs::read(&cut).expect("archive");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let out = import(&server, &cut);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated"), "{stderr}");

    // Corrupt: one byte of the layer changed, so its digest does not match. Its manifest
    // and config are written before containerd refuses the layer.
    let corrupt = dir.path().join("corrupt.tar");
    busybox_archive(&layout, "busybox:corrupt", &corrupt);
    let mut bytes = std::fs::read(&corrupt).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&corrupt, &bytes).expect("write");
    let out = import(&server, &corrupt);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docker.io/library/busybox:corrupt")
            && stderr.contains("containerd refused it"),
        "{stderr}"
    );

    let good = dir.path().join("busybox.tar");
    busybox_archive(&layout, "busybox:imported", &good);
    let out = import(&server, &good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("imported docker.io/library/busybox:imported"),
        "{stdout}"
    );

    run_imported(&server, "imported", "busybox:imported");

    // A Docker archive (`docker save`'s format) imports the same way.
    let docker = dir.path().join("docker.tar");
    let copied = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:busybox:test", layout.display()))
        .arg(format!(
            "docker-archive:{}:busybox:docker",
            docker.display()
        ))
        .status()
        .expect("skopeo");
    assert!(copied.success(), "skopeo copy");
    let out = import(&server, &docker);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_imported(&server, "from-docker", "busybox:docker");

    // The failed imports left no record, so nothing points at content that is not there.
    let images = containerd_images(&server);
    assert!(
        images.contains("docker.io/library/busybox:imported"),
        "{images}"
    );
    assert!(!images.contains("busybox:cut"), "{images}");
    assert!(!images.contains("busybox:corrupt"), "{images}");
}
