//! The pod sandbox image ("pause"), built here instead of pulled: its container only holds
//! the pod's namespaces, so its whole filesystem is one tiny static program that waits in
//! `pause(2)` forever. containerd stops sandboxes with SIGKILL, so it needs no signal
//! handling.
//!
//! The image is written as an OCI image layout in a tar archive, which `ctr images import`
//! loads into the node's containerd (CRI can only pull).

use std::io::Write;

use sha2::{Digest, Sha256};

/// The name the sandbox image has in containerd's store.
pub const IMAGE: &str = "wkube.local/pause:1";

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("no built-in pause program for the {0} architecture")]
    Architecture(&'static str),
    #[error("writing the pause image: {0}")]
    Io(#[from] std::io::Error),
}

/// Load address of the program; the code follows the two ELF headers.
const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// A static x86-64 Linux executable: `loop { pause() }`.
fn pause_program_x86_64() -> Vec<u8> {
    // mov eax, 34 (SYS_pause); syscall; jmp back to the mov (-9 bytes).
    const CODE: [u8; 9] = [0xb8, 34, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];
    let size = (EHDR + PHDR + CODE.len()) as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little-endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // an executable
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + (EHDR + PHDR) as u64).to_le_bytes()); // entry
    elf.extend_from_slice(&(EHDR as u64).to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    elf.extend_from_slice(&(EHDR as u16).to_le_bytes());
    elf.extend_from_slice(&(PHDR as u16).to_le_bytes());
    elf.extend_from_slice(&1u16.to_le_bytes()); // one program header
    elf.extend_from_slice(&[0; 6]); // section header size, count, names index
                                    // One loadable, readable and executable segment: the whole file.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&size.to_le_bytes());
    elf.extend_from_slice(&size.to_le_bytes());
    elf.extend_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(&CODE);
    elf
}

fn pause_program() -> Result<Vec<u8>, PauseError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(pause_program_x86_64()),
        other => Err(PauseError::Architecture(other)),
    }
}

/// A blob of the image: its digest and bytes.
struct Blob {
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
        Blob { digest, bytes }
    }

    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        serde_json::json!({
            "mediaType": media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

fn tar_file(
    archive: &mut tar::Builder<impl Write>,
    path: &str,
    mode: u32,
    bytes: &[u8],
) -> Result<(), PauseError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    archive.append_data(&mut header, path, bytes)?;
    Ok(())
}

/// The sandbox image as an OCI image layout archive, named [`IMAGE`].
pub fn image_archive() -> Result<Vec<u8>, PauseError> {
    let mut layer = tar::Builder::new(Vec::new());
    tar_file(&mut layer, "pause", 0o755, &pause_program()?)?;
    let layer = Blob::new(layer.into_inner()?);
    let config = Blob::new(serde_json::to_vec(&serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Entrypoint": ["/pause"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }))?);
    let manifest = Blob::new(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
        "layers": [layer.descriptor("application/vnd.oci.image.layer.v1.tar")],
    }))?);
    let mut manifest_ref = manifest.descriptor("application/vnd.oci.image.manifest.v1+json");
    manifest_ref["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": IMAGE});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest_ref]});

    let mut archive = tar::Builder::new(Vec::new());
    tar_file(
        &mut archive,
        "oci-layout",
        0o644,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    tar_file(
        &mut archive,
        "index.json",
        0o644,
        &serde_json::to_vec(&index)?,
    )?;
    for blob in [&layer, &config, &manifest] {
        let path = format!("blobs/sha256/{}", &blob.digest["sha256:".len()..]);
        tar_file(&mut archive, &path, 0o644, &blob.bytes)?;
    }
    Ok(archive.into_inner()?)
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl From<serde_json::Error> for PauseError {
    fn from(e: serde_json::Error) -> Self {
        PauseError::Io(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_pause_program_runs_and_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_program_x86_64()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let exited = child.try_wait().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        let _ = child.kill();
        let status = child.wait().unwrap();
        // It was still running, and asleep: it did not crash and uses no CPU.
        assert!(exited.is_none(), "{exited:?}");
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            (fields[0], fields[11], fields[12]),
            ("S", "0", "0"),
            "state, utime, stime"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }
}
