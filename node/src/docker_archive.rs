//! Reads a Docker archive (`docker save` before Docker 25, `skopeo copy ...
//! docker-archive:FILE`) for `wkube image import`: a `manifest.json` listing each image's
//! config file, its tags and its layer tars. containerd stores images by an OCI manifest,
//! which such an archive lacks, so one is made for each image: its layers are the
//! uncompressed tars, whose digests are the config's `rootfs.diff_ids` (containerd checks
//! each as it commits it).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use oci_spec::image::Descriptor;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::image_archive::{gc_labels, ArchiveError, BlobSource, ContainerBlob, ContainerImage};
use crate::images::normalize_reference;

/// The archive member that makes it a Docker archive.
pub const MANIFEST: &str = "manifest.json";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// One image of `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The part of an image config that names its layers.
#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The container images of the Docker archive at `path`, from its small JSON `files` and
/// the `sizes` of all its members; `name` names an untagged single image.
pub fn images(
    path: &Path,
    files: &HashMap<String, Vec<u8>>,
    sizes: &HashMap<String, u64>,
    name: Option<&str>,
) -> Result<Vec<ContainerImage>, ArchiveError> {
    let malformed = |message: String| ArchiveError::Malformed {
        path: path.to_owned(),
        message,
    };
    let entries: Vec<Entry> = serde_json::from_slice(&files[MANIFEST])
        .map_err(|e| malformed(format!("{MANIFEST}: {e}")))?;
    if name.is_some() && entries.len() != 1 {
        return Err(ArchiveError::NameForMany {
            path: path.to_owned(),
        });
    }
    let mut images = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let config_bytes = files
            .get(&entry.config)
            .ok_or_else(|| malformed(format!("{} is missing", entry.config)))?;
        let config: Config = serde_json::from_slice(config_bytes)
            .map_err(|e| malformed(format!("{}: {e}", entry.config)))?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(malformed(format!(
                "{} names {} layers, {MANIFEST} {}",
                entry.config,
                config.rootfs.diff_ids.len(),
                entry.layers.len()
            )));
        }
        let config_blob = ContainerBlob {
            digest: format!("sha256:{:x}", Sha256::digest(config_bytes)),
            size: config_bytes.len() as u64,
            labels: BTreeMap::new(),
            source: BlobSource::Entry(entry.config.clone()),
        };
        let mut layers = Vec::new();
        for (layer, digest) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let size = *sizes
                .get(layer)
                .ok_or_else(|| malformed(format!("layer {layer} is missing")))?;
            layers.push(ContainerBlob {
                digest: digest.clone(),
                size,
                labels: BTreeMap::new(),
                source: BlobSource::Entry(layer.clone()),
            });
        }
        let descriptor = |media_type: &str, blob: &ContainerBlob| serde_json::json!({"mediaType": media_type, "digest": blob.digest, "size": blob.size});
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config_blob),
            "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
        }))
        .map_err(|e| malformed(e.to_string()))?;
        let manifest_blob = ContainerBlob {
            digest: format!("sha256:{:x}", Sha256::digest(&manifest)),
            size: manifest.len() as u64,
            labels: gc_labels(&config_blob.digest, layers.iter().map(|l| l.digest.clone())),
            source: BlobSource::Made(manifest),
        };
        let target: Descriptor = serde_json::from_value(descriptor(OCI_MANIFEST, &manifest_blob))
            .map_err(|e| malformed(e.to_string()))?;
        let tags = match (&entry.repo_tags, name) {
            (Some(tags), _) if !tags.is_empty() => tags.clone(),
            (_, Some(name)) => vec![name.to_owned()],
            _ => {
                return Err(ArchiveError::Unnamed {
                    path: path.to_owned(),
                    index: i,
                })
            }
        };
        let blobs: Vec<ContainerBlob> = [manifest_blob, config_blob]
            .into_iter()
            .chain(layers)
            .collect();
        for tag in tags {
            let name = normalize_reference(&tag).map_err(|source| ArchiveError::Store {
                path: path.to_owned(),
                source,
            })?;
            images.push(ContainerImage {
                name,
                target: target.clone(),
                blobs: blobs.clone(),
            });
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;

    fn archive(manifest: &str) -> (HashMap<String, Vec<u8>>, HashMap<String, u64>) {
        let files = HashMap::from([
            (MANIFEST.to_string(), manifest.as_bytes().to_vec()),
            ("c.json".to_string(), CONFIG.as_bytes().to_vec()),
        ]);
        let sizes = HashMap::from([("l.tar".to_string(), 2048)]);
        (files, sizes)
    }

    #[test]
    fn each_tag_is_an_image_of_a_made_oci_manifest() {
        let (files, sizes) = archive(
            r#"[{"Config":"c.json","RepoTags":["busybox:1","example.com/bb:2"],"Layers":["l.tar"]}]"#,
        );
        let images = images(Path::new("x.tar"), &files, &sizes, None).unwrap();
        let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["docker.io/library/busybox:1", "example.com/bb:2"]);
        let [manifest, config, layer] = &images[0].blobs[..] else {
            panic!("{:?}", images[0].blobs)
        };
        let BlobSource::Made(bytes) = &manifest.source else {
            panic!("{manifest:?}")
        };
        let made: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(made["layers"][0]["digest"], "sha256:aa");
        assert_eq!(made["layers"][0]["size"], 2048);
        assert_eq!(made["config"]["digest"], config.digest.as_str());
        assert_eq!(images[0].target.digest().to_string(), manifest.digest);
        assert_eq!(layer.digest, "sha256:aa");
        assert_eq!(
            manifest.labels["containerd.io/gc.ref.content.l.0"],
            "sha256:aa"
        );
    }

    #[test]
    fn an_untagged_image_needs_a_name_and_layers_must_match() {
        let (files, sizes) = archive(r#"[{"Config":"c.json","Layers":["l.tar"]}]"#);
        let err = images(Path::new("x.tar"), &files, &sizes, None)
            .err()
            .unwrap();
        assert!(matches!(err, ArchiveError::Unnamed { .. }), "{err}");
        let named = images(Path::new("x.tar"), &files, &sizes, Some("mine:1")).unwrap();
        assert_eq!(named[0].name, "docker.io/library/mine:1");

        let (files, sizes) = archive(r#"[{"Config":"c.json","Layers":["l.tar","m.tar"]}]"#);
        let err = images(Path::new("x.tar"), &files, &sizes, Some("x:1"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("names 1 layers"), "{err}");
    }
}
