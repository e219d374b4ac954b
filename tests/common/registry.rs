//! Wasm artifacts for a real OCI registry on loopback: layouts and archives built by
//! `scripts/test-images.sh wasm`, pushed with skopeo over plain HTTP; and the busybox
//! container image as an OCI archive, for `wkube image import`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::guest;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-images.sh");

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OCI layout (under `dir`) holding the guest `guest_name` as a wasm artifact tagged
/// `tag`, built by `test-images.sh wasm`.
pub fn wasm_layout(guest_name: &str, tag: &str, dir: &Path) -> PathBuf {
    let layout = dir.join(format!("layout-{guest_name}-{tag}"));
    let component = guest(guest_name);
    run(
        "bash",
        &[
            SCRIPT,
            "wasm",
            component.to_str().unwrap(),
            layout.to_str().unwrap(),
            tag,
        ],
    );
    layout
}

/// Writes the guest as a wasm artifact named `reference` into the OCI archive `archive`
/// (what `skopeo copy ... oci-archive:FILE:NAME` writes).
pub fn wasm_archive(guest_name: &str, reference: &str, archive: &Path) {
    let layout = wasm_layout(guest_name, "archived", archive.parent().unwrap());
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:archived", layout.display()),
            &format!("oci-archive:{}:{reference}", archive.display()),
        ],
    );
}

/// A registry on loopback ([`node::testing::Registry`]) that wasm artifacts are pushed to.
pub struct Registry {
    registry: node::testing::Registry,
    /// `127.0.0.1:PORT`, as image references and `--insecure-registry` name it.
    pub address: String,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let registry = node::testing::Registry::empty(dir.path());
        let address = registry.address.clone();
        Registry {
            registry,
            address,
            dir,
        }
    }

    /// Pushes the guest as a wasm artifact to `REPOSITORY:TAG` here; returns the full
    /// reference.
    pub fn push_wasm(&self, guest_name: &str, repository: &str, tag: &str) -> String {
        let layout = wasm_layout(guest_name, tag, self.dir.path());
        let reference = format!("{}/{repository}:{tag}", self.registry.address);
        run(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &format!("oci:{}:{tag}", layout.display()),
                &format!("docker://{reference}"),
            ],
        );
        reference
    }
}

/// Writes the busybox image (built by `test-images.sh build` into `layout`, unless there
/// already), named `reference`, as an OCI archive at `archive`.
pub fn busybox_archive(layout: &Path, reference: &str, archive: &Path) {
    let layout_str = layout.to_str().expect("a UTF-8 path");
    if !layout.exists() {
        run("bash", &[SCRIPT, "build", layout_str]);
    }
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{layout_str}:busybox:test"),
            &format!("oci-archive:{}:{reference}", archive.display()),
        ],
    );
}
