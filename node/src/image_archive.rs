//! Imports an OCI image archive (a tar of an OCI image layout, as written by
//! `skopeo copy ... oci-archive:FILE` or `ctr export`) into the node's [`ImageStore`].
//!
//! Only wasm artifacts belong in that store; a container image in the archive fails the
//! whole import before anything is stored, with a message pointing at the registry path
//! (containerd pulls container images). Each image is named by its
//! `io.containerd.image.name` annotation, else by `org.opencontainers.image.ref.name`
//! read as a reference (skopeo writes the `NAME:TAG` it was given there), else by the
//! name given on the command line when the archive holds one image.
//!
//! The archive is read twice instead of unpacked: first `index.json` and the small blobs
//! (manifests and configs), then only the layers of the wasm artifacts. A container
//! image's layers are never read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ANNOTATION_REF_NAME};

use crate::images::{
    artifact_kind, ArtifactKind, Blob, ImageError, ImageInfo, ImageStore, ANNOTATION_IMAGE_NAME,
};
use crate::registry::{classify, platform_entry, Fetched};

/// Blobs up to this size are read in the first pass: manifests and configs are a few KiB.
const SMALL_BLOB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not an OCI image archive: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("{path}: image {index} has no name: give one (wkube image import FILE NAME)")]
    Unnamed { path: PathBuf, index: usize },
    #[error("{path}: a name can be given only to an archive holding one image")]
    NameForMany { path: PathBuf },
    #[error("{path}: {names} is a container image, not a wasm artifact; nothing was imported. The node's image store holds wasm artifacts only: push the image to a registry and reference it from there (containerd pulls container images)")]
    ContainerImage { path: PathBuf, names: String },
    #[error("{path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
}

/// A wasm artifact found in the archive, ready to store.
struct Artifact {
    name: String,
    manifest: Vec<u8>,
    blobs: Vec<String>,
}

/// Imports every image of the archive at `path`; `name` names an unnamed single image.
pub fn import_archive(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageInfo>, ArchiveError> {
    let malformed = |message: String| ArchiveError::Malformed {
        path: path.to_owned(),
        message,
    };
    let mut files = read_entries(path, |entry, size| {
        entry == "index.json" || (entry.starts_with("blobs/") && size <= SMALL_BLOB)
    })?;
    let index = files
        .get("index.json")
        .ok_or_else(|| malformed("no index.json".into()))?;
    let index: ImageIndex =
        serde_json::from_slice(index).map_err(|e| malformed(format!("index.json: {e}")))?;
    if name.is_some() && index.manifests().len() != 1 {
        return Err(ArchiveError::NameForMany {
            path: path.to_owned(),
        });
    }

    let mut artifacts = Vec::new();
    let mut containers = Vec::new();
    for (i, entry) in index.manifests().iter().enumerate() {
        let annotations = entry.annotations().clone().unwrap_or_default();
        let image_name = annotations
            .get(ANNOTATION_IMAGE_NAME)
            .or_else(|| annotations.get(ANNOTATION_REF_NAME))
            .map(String::as_str)
            .or(name)
            .ok_or_else(|| ArchiveError::Unnamed {
                path: path.to_owned(),
                index: i,
            })?
            .to_owned();
        let blob = |digest: &str| {
            files
                .get(&blob_entry(digest))
                .ok_or_else(|| malformed(format!("blob {digest} is missing")))
        };
        let mut bytes = blob(entry.digest().as_ref())?;
        let mut fetched = classify(bytes).map_err(&malformed)?;
        // A multi-platform index: the entry this node would run, as a pull would pick.
        if let Fetched::Index(index) = &fetched {
            match platform_entry(index) {
                Some(platform) => {
                    bytes = blob(platform.digest().as_ref())?;
                    fetched = classify(bytes).map_err(&malformed)?;
                }
                None => {
                    containers.push(image_name);
                    continue;
                }
            }
        }
        let Fetched::Image(manifest) = fetched else {
            return Err(malformed(format!("{image_name}: an index inside an index")));
        };
        if artifact_kind(&manifest) == ArtifactKind::Oci {
            containers.push(image_name);
            continue;
        }
        let blobs = std::iter::once(manifest.config())
            .chain(manifest.layers())
            .map(|d| d.digest().to_string())
            .collect();
        artifacts.push(Artifact {
            name: image_name,
            manifest: bytes.clone(),
            blobs,
        });
    }
    if !containers.is_empty() {
        return Err(ArchiveError::ContainerImage {
            path: path.to_owned(),
            names: containers.join(", "),
        });
    }

    let missing: Vec<String> = artifacts
        .iter()
        .flat_map(|a| &a.blobs)
        .map(|d| blob_entry(d))
        .filter(|e| !files.contains_key(e))
        .collect();
    if !missing.is_empty() {
        files.extend(read_entries(path, |entry, _| {
            missing.iter().any(|m| m == entry)
        })?);
    }

    let mut imported = Vec::new();
    for artifact in &artifacts {
        let mut blobs = Vec::new();
        for digest in &artifact.blobs {
            let data = files
                .get(&blob_entry(digest))
                .ok_or_else(|| malformed(format!("blob {digest} is missing")))?;
            blobs.push(Blob { digest, data });
        }
        let info = store
            .import_manifest(&artifact.name, &artifact.manifest, &blobs)
            .map_err(|source| ArchiveError::Store {
                path: path.to_owned(),
                source,
            })?;
        imported.push(info);
    }
    Ok(imported)
}

/// The archive member holding the blob `digest` (`sha256:<hex>`).
fn blob_entry(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The regular files of the tar at `path` that `want(name, size)` picks, by their name
/// in the layout (a leading `./` dropped).
fn read_entries(
    path: &Path,
    want: impl Fn(&str, u64) -> bool,
) -> Result<HashMap<String, Vec<u8>>, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(File::open(path).map_err(io_err)?);
    let mut out = HashMap::new();
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(io_err)?;
        let name = name.strip_prefix("./").unwrap_or(&name);
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        if !want(&name, entry.size()) {
            continue;
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(io_err)?;
        out.insert(name, data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    /// A tar holding `files` (name, bytes).
    fn tar_of(dir: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
        let path = dir.join("archive.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
        builder.finish().unwrap();
        path
    }

    /// The layout of the image `reference` exported from a store, as an archive would
    /// hold it, with `ref.name` annotations only (skopeo's way).
    fn layout_files(source: &ImageStore, refs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut entries = Vec::new();
        for (reference, ref_name) in refs {
            let image = source.resolve(reference).unwrap().unwrap();
            let manifest = std::fs::read(source.blob_path(&image.manifest_digest)).unwrap();
            let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&manifest).unwrap();
            for d in std::iter::once(parsed.config()).chain(parsed.layers()) {
                let digest = d.digest().to_string();
                files.push((
                    blob_entry(&digest),
                    std::fs::read(source.blob_path(&digest)).unwrap(),
                ));
            }
            entries.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image.manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }));
            files.push((blob_entry(&image.manifest_digest), manifest));
        }
        let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
        files.push(("index.json".into(), index.to_string().into_bytes()));
        files
    }

    #[test]
    fn wasm_artifacts_are_imported_under_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let source = ImageStore::open(&dir.path().join("source")).unwrap();
        source.import_wasm(COMPONENT, "hello:1.0").unwrap();
        let files = layout_files(&source, &[("hello:1.0", "127.0.0.1:5000/hello:2.0")]);
        let archive = tar_of(dir.path(), &files);

        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let imported = import_archive(&store, &archive, None).unwrap();
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].reference, "127.0.0.1:5000/hello:2.0");
        let resolved = store.resolve("127.0.0.1:5000/hello:2.0").unwrap().unwrap();
        assert_eq!(resolved.artifact, ArtifactKind::Wasm);
        let (_, layer) = resolved.wasm_layer.unwrap();
        assert_eq!(std::fs::read(layer).unwrap(), COMPONENT);
    }

    #[test]
    fn a_container_image_fails_the_import_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let source = ImageStore::open(&dir.path().join("source")).unwrap();
        source.import_wasm(COMPONENT, "hello:1.0").unwrap();
        let mut files = layout_files(&source, &[("hello:1.0", "hello:1.0")]);
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer = b"not really a tarball".to_vec();
        let digest = |d: &[u8]| {
            use sha2::Digest as _;
            format!("sha256:{:x}", sha2::Sha256::digest(d))
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest(&layer), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let mut index: serde_json::Value = serde_json::from_slice(&files.pop().unwrap().1).unwrap();
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "busybox:test"},
            }));
        files.push((blob_entry(&digest(&config)), config));
        files.push((blob_entry(&digest(&layer)), layer));
        files.push((blob_entry(&digest(&manifest)), manifest));
        files.push(("index.json".into(), index.to_string().into_bytes()));
        let archive = tar_of(dir.path(), &files);

        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let err = import_archive(&store, &archive, None).unwrap_err();
        assert!(matches!(err, ArchiveError::ContainerImage { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("busybox:test"), "{message}");
        assert!(message.contains("registry"), "{message}");
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn an_unnamed_image_takes_the_given_name() {
        let dir = tempfile::tempdir().unwrap();
        let source = ImageStore::open(&dir.path().join("source")).unwrap();
        source.import_wasm(COMPONENT, "hello:1.0").unwrap();
        let mut files = layout_files(&source, &[("hello:1.0", "x")]);
        let mut index: serde_json::Value = serde_json::from_slice(&files.pop().unwrap().1).unwrap();
        index["manifests"][0]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        files.push(("index.json".into(), index.to_string().into_bytes()));
        let archive = tar_of(dir.path(), &files);

        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let err = import_archive(&store, &archive, None).unwrap_err();
        assert!(matches!(err, ArchiveError::Unnamed { .. }), "{err}");
        let imported = import_archive(&store, &archive, Some("named:3")).unwrap();
        assert_eq!(imported[0].reference, "docker.io/library/named:3");
    }
}
