//! `wkube image import|ls` and the node pulling from its store: the stored form is an OCI wasm
//! artifact, and a pod naming an image the store lacks shows Kubernetes' pull errors.

mod common;

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use common::Server;

fn blob(server: &Server, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    std::fs::read(server.data_dir.path().join("images/blobs/sha256").join(hex)).expect("blob")
}

fn json_blob(server: &Server, digest: &str) -> Value {
    serde_json::from_slice(&blob(server, digest)).expect("JSON blob")
}

#[test]
fn imported_component_is_an_oci_wasm_artifact() {
    let server = Server::start();
    server.import("hello", "hello:1.0");

    let index: Value = serde_json::from_slice(
        &std::fs::read(server.data_dir.path().join("images/index.json")).unwrap(),
    )
    .unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        "docker.io/library/hello:1.0"
    );
    let manifest = json_blob(&server, entry["digest"].as_str().unwrap());
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/wasm");
    // Content-addressed: the layer is the component, byte for byte, under its sha256.
    let component = std::fs::read(common::guest("hello")).unwrap();
    assert_eq!(
        layer["digest"],
        format!("sha256:{:x}", Sha256::digest(&component))
    );
    assert_eq!(blob(&server, layer["digest"].as_str().unwrap()), component);

    let ls = server.wkube().args(["image", "ls"]).output().unwrap();
    assert!(ls.status.success());
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("docker.io/library/hello:1.0")),
        "{ls}"
    );
}

#[test]
fn importing_something_that_is_not_a_component_fails_clearly() {
    let server = Server::start();
    let not_wasm = server.data_dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "just text").unwrap();
    let out = server
        .wkube()
        .args(["image", "import"])
        .arg(&not_wasm)
        .arg("bad:1.0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notes.wasm"), "names the file: {err}");
    let ls = server.wkube().args(["image", "ls"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ls.stdout).contains("bad:1.0"),
        "nothing stored"
    );
}

#[test]
fn unknown_image_shows_err_image_pull_then_image_pull_back_off() {
    let server = Server::start();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n  - name: app\n    image: nowhere:9.9\n";
    let out = server.kubectl_with_stdin("1.33", &["apply", "-f", "-"], Some(pod));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::new();
    common::wait_for(
        "ErrImagePull then ImagePullBackOff",
        Duration::from_secs(30),
        || {
            let row = server.kubectl_ok("1.33", &["get", "pod", "missing", "--no-headers"]);
            let status = row.split_whitespace().nth(2)?.to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            (status == "ImagePullBackOff").then_some(())
        },
    );
    assert!(
        seen.iter().any(|s| s == "ErrImagePull"),
        "statuses seen: {seen:?}"
    );
    assert_eq!(
        server.jsonpath("1.33", &["pod", "missing"], "{.status.phase}"),
        "Pending"
    );
    let describe = server.kubectl_ok("1.33", &["describe", "pod", "missing"]);
    assert!(describe.contains("nowhere:9.9"), "{describe}");
    assert!(describe.contains("Error: ErrImagePull"), "{describe}");
}
