//! Reads an OCI image archive (a tar of an OCI image layout, as written by
//! `skopeo copy ... oci-archive:FILE` or `ctr export`) for `wkube image import`; a Docker
//! archive (`docker save`, `skopeo ... docker-archive:FILE`) is read by
//! [`crate::docker_archive`].
//!
//! Wasm artifacts go to the node's [`ImageStore`] ([`ArchiveContents::import_wasm`]); the
//! container images are described ([`ContainerImage`]) for
//! [`crate::containerd::image_import`], which writes them into containerd's store. Each
//! image is named by its `io.containerd.image.name` annotation, else by
//! `org.opencontainers.image.ref.name` read as a reference (skopeo writes the `NAME:TAG`
//! it was given there), else by the name given on the command line when the archive holds
//! one image.
//!
//! The archive is read in passes instead of unpacked: first `index.json`, the small blobs
//! (manifests and configs) and the names and sizes of all members, then only the layers
//! wanted ([`each_entry`]). Everything an image needs is checked to be in the archive
//! before anything is stored.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, ANNOTATION_REF_NAME};

use crate::images::{
    artifact_kind, normalize_reference, ArtifactKind, Blob, ImageError, ImageInfo, ImageStore,
    ANNOTATION_IMAGE_NAME,
};
use crate::registry::{classify, platform_entry, Fetched};

/// Blobs up to this size are read in the first pass: manifests and configs are a few KiB.
const SMALL_BLOB: u64 = 1 << 20;

/// The label by which containerd's garbage collector follows a blob to another one.
const GC_REF: &str = "containerd.io/gc.ref.content";

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

/// A container image of the archive: what containerd needs to run it.
#[derive(Debug, Clone)]
pub struct ContainerImage {
    /// The normalized reference (`docker.io/library/busybox:1`), as CRI looks it up.
    pub name: String,
    /// The manifest, or multi-platform index, the image record points at.
    pub target: Descriptor,
    /// Every blob the node needs, all present in the archive.
    pub blobs: Vec<ContainerBlob>,
}

/// A blob of a container image and the labels that keep its children from containerd's
/// garbage collector (a manifest's config and layers, an index's manifests).
#[derive(Debug, Clone)]
pub struct ContainerBlob {
    pub digest: String,
    pub size: u64,
    pub labels: BTreeMap<String, String>,
    pub source: BlobSource,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// This member of the archive.
    Entry(String),
    /// Made by the import: the OCI manifest of a Docker archive's image.
    Made(Vec<u8>),
}

/// What an archive holds, read and checked.
pub struct ArchiveContents {
    path: PathBuf,
    artifacts: Vec<Artifact>,
    pub containers: Vec<ContainerImage>,
}

/// Reads the archive at `path`; `name` names an unnamed single image.
pub fn read_archive(path: &Path, name: Option<&str>) -> Result<ArchiveContents, ArchiveError> {
    let malformed = |message: String| ArchiveError::Malformed {
        path: path.to_owned(),
        message,
    };
    let mut sizes = HashMap::new();
    let files = read_entries(path, |entry, size| {
        sizes.insert(entry.to_owned(), size);
        // A Docker archive's manifest.json and image configs are JSON files at the top.
        let small_json = entry.ends_with(".json") && !entry.contains('/') && size <= SMALL_BLOB;
        small_json || (entry.starts_with("blobs/") && size <= SMALL_BLOB)
    })?;
    let Some(index) = files.get("index.json") else {
        if files.contains_key(crate::docker_archive::MANIFEST) {
            return Ok(ArchiveContents {
                path: path.to_owned(),
                artifacts: Vec::new(),
                containers: crate::docker_archive::images(path, &files, &sizes, name)?,
            });
        }
        return Err(malformed("no index.json".into()));
    };
    let index: ImageIndex =
        serde_json::from_slice(index).map_err(|e| malformed(format!("index.json: {e}")))?;
    if name.is_some() && index.manifests().len() != 1 {
        return Err(ArchiveError::NameForMany {
            path: path.to_owned(),
        });
    }
    let blob = |digest: &str| {
        files
            .get(&blob_entry(digest))
            .ok_or_else(|| malformed(format!("blob {digest} is missing")))
    };
    // A blob the node needs: in the archive, at the size its descriptor says.
    let needed = |d: &Descriptor, labels: BTreeMap<String, String>| {
        let digest = d.digest().to_string();
        match sizes.get(&blob_entry(&digest)) {
            None => Err(malformed(format!("blob {digest} is missing"))),
            Some(&size) if size != d.size() => Err(malformed(format!(
                "blob {digest} is {size} bytes, its descriptor says {}",
                d.size()
            ))),
            Some(_) => Ok(ContainerBlob {
                source: BlobSource::Entry(blob_entry(&digest)),
                digest,
                size: d.size(),
                labels,
            }),
        }
    };

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
        let mut bytes = blob(entry.digest().as_ref())?;
        let mut fetched = classify(bytes).map_err(&malformed)?;
        let mut blobs = Vec::new();
        // A multi-platform index: the entry this node would run, as a pull would pick.
        if let Fetched::Index(index) = &fetched {
            let children = index.manifests().iter().enumerate();
            let labels = children
                .map(|(i, m)| (format!("{GC_REF}.m.{i}"), m.digest().to_string()))
                .collect();
            blobs.push(needed(entry, labels)?);
            let platform = platform_entry(index).cloned().ok_or_else(|| {
                malformed(format!(
                    "{image_name}: no manifest for this node's platform"
                ))
            })?;
            bytes = blob(platform.digest().as_ref())?;
            fetched = classify(bytes).map_err(&malformed)?;
            let Fetched::Image(manifest) = &fetched else {
                return Err(malformed(format!("{image_name}: an index inside an index")));
            };
            blobs.push(needed(&platform, manifest_labels(manifest))?);
        }
        let Fetched::Image(manifest) = fetched else {
            return Err(malformed(format!("{image_name}: an index inside an index")));
        };
        let children = std::iter::once(manifest.config())
            .chain(manifest.layers())
            .map(|d| needed(d, BTreeMap::new()))
            .collect::<Result<Vec<_>, _>>()?;
        if artifact_kind(&manifest) == ArtifactKind::Oci {
            if blobs.is_empty() {
                blobs.push(needed(entry, manifest_labels(&manifest))?);
            }
            blobs.extend(children);
            let name = normalize_reference(&image_name).map_err(|source| ArchiveError::Store {
                path: path.to_owned(),
                source,
            })?;
            containers.push(ContainerImage {
                name,
                target: entry.clone(),
                blobs,
            });
            continue;
        }
        artifacts.push(Artifact {
            name: image_name,
            manifest: bytes.clone(),
            blobs: children.into_iter().map(|b| b.digest).collect(),
        });
    }
    Ok(ArchiveContents {
        path: path.to_owned(),
        artifacts,
        containers,
    })
}

/// The labels of a manifest blob naming its config and layers.
fn manifest_labels(manifest: &ImageManifest) -> BTreeMap<String, String> {
    let layers = manifest.layers().iter().map(|l| l.digest().to_string());
    gc_labels(manifest.config().digest().as_ref(), layers)
}

/// The labels of a manifest blob naming its `config` and `layers`.
pub(crate) fn gc_labels(
    config: &str,
    layers: impl Iterator<Item = String>,
) -> BTreeMap<String, String> {
    let layers = layers.enumerate();
    std::iter::once((format!("{GC_REF}.config"), config.to_owned()))
        .chain(layers.map(|(i, l)| (format!("{GC_REF}.l.{i}"), l)))
        .collect()
}

impl ArchiveContents {
    /// Stores the wasm artifacts of the archive in `store`.
    pub fn import_wasm(&self, store: &ImageStore) -> Result<Vec<ImageInfo>, ArchiveError> {
        let malformed = |message: String| ArchiveError::Malformed {
            path: self.path.clone(),
            message,
        };
        let entries: Vec<String> = self
            .artifacts
            .iter()
            .flat_map(|a| &a.blobs)
            .map(|d| blob_entry(d))
            .collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let files = read_entries(&self.path, |entry, _| entries.iter().any(|e| e == entry))?;
        let mut imported = Vec::new();
        for artifact in &self.artifacts {
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
                    path: self.path.clone(),
                    source,
                })?;
            imported.push(info);
        }
        Ok(imported)
    }
}

/// The archive member holding the blob `digest` (`sha256:<hex>`).
fn blob_entry(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The regular files of the tar at `path` that `want(name, size)` picks, by their name
/// in the layout (a leading `./` dropped).
fn read_entries(
    path: &Path,
    want: impl FnMut(&str, u64) -> bool,
) -> Result<HashMap<String, Vec<u8>>, ArchiveError> {
    let mut out = HashMap::new();
    each_entry(path, want, |name, data| {
        out.insert(name, data);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Hands each regular file of the tar at `path` that `want(name, size)` picks to `f`,
/// one at a time, until `f` breaks off.
pub fn each_entry(
    path: &Path,
    mut want: impl FnMut(&str, u64) -> bool,
    mut f: impl FnMut(String, Vec<u8>) -> ControlFlow<()>,
) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(File::open(path).map_err(io_err)?);
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
        if data.len() as u64 != entry.size() {
            return Err(io_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} is cut short: the archive is truncated"),
            )));
        }
        if f(name, data).is_break() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn import_archive(
        store: &ImageStore,
        path: &Path,
        name: Option<&str>,
    ) -> Result<Vec<ImageInfo>, ArchiveError> {
        read_archive(path, name)?.import_wasm(store)
    }

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
    fn a_container_image_is_described_for_containerd_next_to_the_wasm_artifacts() {
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
        let (config_bytes, layer_bytes, manifest_bytes) =
            (config.clone(), layer.clone(), manifest.clone());
        files.push((blob_entry(&digest(&config)), config));
        files.push((blob_entry(&digest(&layer)), layer));
        files.push((blob_entry(&digest(&manifest)), manifest));
        files.push(("index.json".into(), index.to_string().into_bytes()));
        let archive = tar_of(dir.path(), &files);

        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let contents = read_archive(&archive, None).unwrap();
        assert_eq!(contents.import_wasm(&store).unwrap().len(), 1);
        let [image] = &contents.containers[..] else {
            panic!("{:?}", contents.containers)
        };
        assert_eq!(image.name, "docker.io/library/busybox:test");
        assert_eq!(image.target.digest().to_string(), digest(&manifest_bytes));
        let blobs: Vec<&str> = image.blobs.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(
            blobs,
            [
                digest(&manifest_bytes),
                digest(&config_bytes),
                digest(&layer_bytes)
            ]
        );
        let labels = &image.blobs[0].labels;
        assert_eq!(
            labels["containerd.io/gc.ref.content.config"],
            digest(&config_bytes)
        );
        assert_eq!(
            labels["containerd.io/gc.ref.content.l.0"],
            digest(&layer_bytes)
        );
    }

    #[test]
    fn a_truncated_layer_fails_before_anything_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let source = ImageStore::open(&dir.path().join("source")).unwrap();
        source.import_wasm(COMPONENT, "hello:1.0").unwrap();
        let mut files = layout_files(&source, &[("hello:1.0", "hello:1.0")]);
        let layer = files
            .iter_mut()
            .find(|(_, data)| data == COMPONENT)
            .unwrap();
        layer.1.truncate(3);
        let archive = tar_of(dir.path(), &files);
        let err = read_archive(&archive, None).err().unwrap();
        assert!(err.to_string().contains("its descriptor says"), "{err}");
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
