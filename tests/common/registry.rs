//! A real OCI registry (Debian's `docker-registry`) on loopback, served and filled by
//! `scripts/test-images.sh`; images are pushed with skopeo over plain HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, guest, wait_for};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-images.sh");

pub struct Registry {
    process: Child,
    /// `127.0.0.1:PORT`, as image references and `--insecure-registry` name it.
    pub address: String,
    dir: tempfile::TempDir,
}

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

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let port = address.rsplit_once(':').unwrap().1.to_owned();
        let process = Command::new("bash")
            .args([SCRIPT, "serve"])
            .arg(dir.path().join("registry"))
            .arg(port)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            process,
            address,
            dir,
        };
        wait_for("the registry to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(&registry.address).ok()
        });
        registry
    }

    /// Pushes the guest as a wasm artifact to `REPOSITORY:TAG` here; returns the full
    /// reference.
    pub fn push_wasm(&self, guest_name: &str, repository: &str, tag: &str) -> String {
        let layout = wasm_layout(guest_name, tag, self.dir.path());
        let reference = format!("{}/{repository}:{tag}", self.address);
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

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
