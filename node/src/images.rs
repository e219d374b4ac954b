//! The node's local image store: a content-addressed OCI image layout on disk.
//!
//! Layout (OCI image-layout spec): `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
//! Each image is one manifest listed in `index.json`, named by the containerd-style
//! annotation `io.containerd.image.name` (the full normalized reference); the OCI
//! `org.opencontainers.image.ref.name` annotation carries the tag, as containerd's
//! exporter does, so the directory can be read by other OCI tools.
//!
//! Several processes use one store at once (the CLI imports while the server reads):
//! - blobs are written to a temporary file in the same directory and renamed into
//!   place, so a reader never sees a half-written blob;
//! - `index.json` is rewritten the same way, and read-modify-write cycles are
//!   serialized by an exclusive `flock` on `index.lock` so that two importers cannot
//!   drop each other's tags.
//!
//! Wasm images are OCI artifacts (config `application/vnd.wasm.config.v0+json`,
//! one layer `application/wasm`; the older `application/vnd.wasm.content.layer.v1+wasm`
//! is accepted on read).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oci_spec::image::{
    Descriptor, Digest, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, ANNOTATION_REF_NAME,
};
use sha2::{Digest as _, Sha256};

/// Media type of the config blob of a wasm OCI artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the component layer of a wasm OCI artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Layer media type used by older wasm artifacts (accepted when resolving).
pub const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Annotation on an `index.json` entry holding the full normalized reference.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

const OCI_LAYOUT_VERSION: &str = "1.0.0";
const DEFAULT_DOMAIN: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        reference: String,
        reason: &'static str,
    },
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(&'static str),
    #[error("image store at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image store at {path}: malformed {what}: {message}")]
    Malformed {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("blob {digest} does not match its digest (found {actual})")]
    DigestMismatch { digest: String, actual: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A WASI component packaged as a wasm OCI artifact.
    Wasm,
    /// Anything else: a container image for the OCI runtime.
    Oci,
}

/// A blob to store, under the digest its manifest names it by.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    pub digest: &'a str,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Normalized reference, e.g. `docker.io/library/hello:1.0`.
    pub reference: String,
    /// Manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// Total bytes of the image's blobs: manifest, config and layers (containerd's
    /// notion of image size).
    pub size: u64,
    pub artifact: ArtifactKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Normalized reference as asked for (tag or digest form).
    pub reference: String,
    pub manifest_digest: String,
    pub artifact: ArtifactKind,
    /// For wasm artifacts: the component layer's digest and its blob path.
    pub wasm_layer: Option<(String, PathBuf)>,
}

/// A handle on one image layout directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: Arc<PathBuf>,
}

impl ImageStore {
    /// Opens the layout at `dir`, creating `oci-layout`, `index.json` and
    /// `blobs/sha256/` if missing.
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let store = ImageStore {
            root: Arc::new(dir.to_owned()),
        };
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            let body = serde_json::json!({ "imageLayoutVersion": OCI_LAYOUT_VERSION });
            write_atomic(&layout, body.to_string().as_bytes())?;
        }
        let index = store.index_path();
        if !index.exists() {
            let _lock = store.lock_index()?;
            if !index.exists() {
                store.write_index(&empty_index()?)?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores `wasm` as a wasm OCI artifact and tags it `reference` (normalized).
    /// Importing the same bytes under the same name again is a no-op that yields
    /// the same manifest digest: the manifest and config carry no timestamps.
    pub fn import_wasm(&self, wasm: &[u8], reference: &str) -> Result<ImageInfo, ImageError> {
        let reference = normalize_reference(reference)?;
        if reference.contains('@') {
            return Err(ImageError::InvalidReference {
                reference,
                reason: "cannot tag an import with a digest reference",
            });
        }
        check_component(wasm)?;

        let layer = sha256_digest(wasm)?;
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer.to_string()],
        });
        let config_bytes = serde_json::to_vec(&config).expect("json value serializes");
        let config = sha256_digest(&config_bytes)?;

        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::Other(WASM_CONFIG_MEDIA_TYPE.into()),
                config_bytes.len() as u64,
                config.clone(),
            ))
            .layers(vec![Descriptor::new(
                MediaType::Other(WASM_LAYER_MEDIA_TYPE.into()),
                wasm.len() as u64,
                layer.clone(),
            )])
            .build()
            .map_err(|e| self.malformed("manifest", e))?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| self.malformed("manifest", e))?;
        let blobs = [
            Blob {
                digest: config.as_ref(),
                data: &config_bytes,
            },
            Blob {
                digest: layer.as_ref(),
                data: wasm,
            },
        ];
        self.commit(reference, &manifest_bytes, &manifest, &blobs)
    }

    /// Stores an image manifest (as its exact bytes, so its digest holds) and the blobs
    /// it names, and tags it `reference` (normalized; a digest reference is kept as the
    /// name). Every blob is checked against its digest before anything is written: a
    /// mismatch stores nothing, so the store never tags a partial or corrupt image.
    /// Blobs the store already holds may be left out of `blobs`.
    pub fn import_manifest(
        &self,
        reference: &str,
        manifest_bytes: &[u8],
        blobs: &[Blob<'_>],
    ) -> Result<ImageInfo, ImageError> {
        let reference = normalize_reference(reference)?;
        let manifest: ImageManifest =
            serde_json::from_slice(manifest_bytes).map_err(|e| self.malformed("manifest", e))?;
        self.commit(reference, manifest_bytes, &manifest, blobs)
    }

    /// Verifies, then writes the blobs, then the manifest, then the `index.json` entry:
    /// in that order a reader that finds the tag finds everything it points to.
    fn commit(
        &self,
        reference: String,
        manifest_bytes: &[u8],
        manifest: &ImageManifest,
        blobs: &[Blob<'_>],
    ) -> Result<ImageInfo, ImageError> {
        for blob in blobs {
            let actual = format!("sha256:{}", sha256_hex(blob.data));
            if actual != blob.digest {
                return Err(ImageError::DigestMismatch {
                    digest: blob.digest.to_owned(),
                    actual,
                });
            }
        }
        let named = std::iter::once(manifest.config()).chain(manifest.layers());
        for descriptor in named {
            let digest = descriptor.digest().to_string();
            let given = blobs.iter().any(|b| b.digest == digest);
            if !given && !self.blob_path(&digest).is_file() {
                return Err(self.malformed("image", format!("blob {digest} is missing")));
            }
        }
        for blob in blobs {
            self.write_blob(blob.data)?;
        }
        let manifest_digest = self.write_blob(manifest_bytes)?;

        let mut annotations = HashMap::new();
        annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), reference.clone());
        if let Some(tag) = tag_of(&reference) {
            annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        }
        let mut entry = Descriptor::new(
            MediaType::ImageManifest,
            manifest_bytes.len() as u64,
            manifest_digest.clone(),
        );
        entry.set_annotations(Some(annotations));

        {
            let _lock = self.lock_index()?;
            let mut index = self.read_index()?;
            let mut manifests = index.manifests().clone();
            manifests.retain(|d| image_name(d) != Some(reference.as_str()));
            manifests.push(entry);
            index.set_manifests(manifests);
            self.write_index(&index)?;
        }

        let blob_bytes: u64 =
            manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        Ok(ImageInfo {
            reference,
            digest: manifest_digest.to_string(),
            size: manifest_bytes.len() as u64 + blob_bytes,
            artifact: artifact_kind(manifest),
        })
    }

    /// Finds an image by reference (normalized first) or by digest reference
    /// (`name@sha256:<hex>`, matched on the manifest digest). `Ok(None)` when absent.
    pub fn resolve(&self, reference: &str) -> Result<Option<ResolvedImage>, ImageError> {
        let reference = normalize_reference(reference)?;
        let index = self.read_index()?;
        let entry = match reference.split_once('@') {
            // A digest reference pulled through an index is stored under its own name
            // but with the platform manifest's digest.
            Some((_, digest)) => index.manifests().iter().find(|d| {
                d.digest().as_ref() == digest || image_name(d) == Some(reference.as_str())
            }),
            None => index
                .manifests()
                .iter()
                .find(|d| image_name(d) == Some(reference.as_str())),
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let manifest_digest = entry.digest().to_string();
        let (artifact, wasm_layer) = match entry.media_type() {
            MediaType::ImageManifest => {
                let manifest = self.read_manifest(&manifest_digest)?;
                let artifact = artifact_kind(&manifest);
                let layer = manifest
                    .layers()
                    .iter()
                    .find(|l| is_wasm_layer(l.media_type()))
                    .map(|l| {
                        let digest = l.digest().to_string();
                        let path = self.blob_path(&digest);
                        (digest, path)
                    });
                (artifact, layer.filter(|_| artifact == ArtifactKind::Wasm))
            }
            // A multi-platform index is a container image; picking the platform is
            // the OCI runtime's business.
            _ => (ArtifactKind::Oci, None),
        };
        Ok(Some(ResolvedImage {
            reference,
            manifest_digest,
            artifact,
            wasm_layer,
        }))
    }

    /// Every tagged image, in `index.json` order.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for entry in index.manifests() {
            let Some(reference) = image_name(entry) else {
                continue;
            };
            let digest = entry.digest().to_string();
            let (size, artifact) = match entry.media_type() {
                MediaType::ImageManifest => {
                    let manifest = self.read_manifest(&digest)?;
                    let blobs: u64 = manifest.config().size()
                        + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
                    (entry.size() + blobs, artifact_kind(&manifest))
                }
                _ => (entry.size(), ArtifactKind::Oci),
            };
            out.push(ImageInfo {
                reference: reference.to_owned(),
                digest,
                size,
                artifact,
            });
        }
        Ok(out)
    }

    /// Path of the blob with `digest` (`<algorithm>:<hex>`). A malformed digest maps
    /// to a path under `blobs/` that is never created, so it can never escape the
    /// store or name an unrelated file.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let blobs = self.root.join("blobs");
        match digest.split_once(':') {
            Some((alg, hex))
                if !alg.is_empty()
                    && !hex.is_empty()
                    && alg
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                blobs.join(alg).join(hex)
            }
            _ => blobs.join("invalid-digest"),
        }
    }

    /// Writes `data` as a blob (unless present) and returns its digest.
    fn write_blob(&self, data: &[u8]) -> Result<Digest, ImageError> {
        let digest = sha256_digest(data)?;
        let path = self.blob_path(digest.as_ref());
        if !path.exists() {
            write_atomic(&path, data)?;
        }
        Ok(digest)
    }

    fn read_manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        // Manifests are small, and a corrupt one would send the runtime to the
        // wrong layer, so they are checked on every read.
        let actual = format!("sha256:{}", sha256_hex(&bytes));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_owned(),
                actual,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| self.malformed("manifest", e))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| self.malformed("index.json", e))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), ImageError> {
        let bytes =
            serde_json::to_vec_pretty(index).map_err(|e| self.malformed("index.json", e))?;
        write_atomic(&self.index_path(), &bytes)
    }

    /// Exclusive lock for a read-modify-write of `index.json`, held until the
    /// returned file is dropped (closing the descriptor releases the `flock`).
    fn lock_index(&self) -> Result<File, ImageError> {
        let path = self.root.join("index.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            ImageError::Io {
                path: path.clone(),
                source: e.into(),
            }
        })?;
        Ok(file)
    }

    fn malformed(&self, what: &'static str, e: impl std::fmt::Display) -> ImageError {
        ImageError::Malformed {
            path: self.root.to_path_buf(),
            what,
            message: e.to_string(),
        }
    }
}

fn empty_index() -> Result<ImageIndex, ImageError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .map_err(|e| ImageError::Malformed {
            path: PathBuf::new(),
            what: "index.json",
            message: e.to_string(),
        })
}

fn image_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()?
        .get(ANNOTATION_IMAGE_NAME)
        .map(String::as_str)
}

fn is_wasm_layer(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::Other(m)
        if m == WASM_LAYER_MEDIA_TYPE || m == LEGACY_WASM_LAYER_MEDIA_TYPE)
}

/// Whether `manifest` is a wasm artifact: by its config media type, or by a wasm layer
/// (artifacts from older tools have a generic config).
pub fn artifact_kind(manifest: &ImageManifest) -> ArtifactKind {
    let wasm_config = matches!(manifest.config().media_type(),
        MediaType::Other(m) if m == WASM_CONFIG_MEDIA_TYPE);
    if wasm_config
        || manifest
            .layers()
            .iter()
            .any(|l| is_wasm_layer(l.media_type()))
    {
        ArtifactKind::Wasm
    } else {
        ArtifactKind::Oci
    }
}

fn sha256_digest(data: &[u8]) -> Result<Digest, ImageError> {
    Digest::from_str(&format!("sha256:{}", sha256_hex(data))).map_err(|e| ImageError::Malformed {
        path: PathBuf::new(),
        what: "digest",
        message: e.to_string(),
    })
}

fn sha256_hex(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut hex = String::with_capacity(64);
    for b in hash {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Writes `data` to `path` through a unique temporary file in the same directory
/// and a rename, so concurrent readers see the old content or the new, never a mix.
/// The data is synced before the rename so a crash cannot leave a truncated file
/// under the final name.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("blob");
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Checks the 8-byte preamble: `\0asm`, then version 0x0d and layer 1 for a
/// component (a core module has version 1, layer 0).
pub fn check_component(wasm: &[u8]) -> Result<(), ImageError> {
    const MAGIC: &[u8] = b"\0asm";
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(ImageError::NotAComponent("missing the \\0asm header"));
    }
    match (&wasm[4..6], &wasm[6..8]) {
        (_, [1, 0]) => Ok(()),
        (_, [0, 0]) => Err(ImageError::NotAComponent(
            "this is a core wasm module; build a component (e.g. target wasm32-wasip2, or `wasm-tools component new`)",
        )),
        _ => Err(ImageError::NotAComponent("unknown wasm binary layer")),
    }
}

/// Normalizes an image reference the way Docker and Kubernetes do:
/// `hello` -> `docker.io/library/hello:latest`, `hello:1.0` ->
/// `docker.io/library/hello:1.0`, `user/app` -> `docker.io/user/app:latest`,
/// `127.0.0.1:5000/x/y:t` unchanged. A digest reference keeps its digest and gets
/// no default tag.
pub fn normalize_reference(r: &str) -> Result<String, ImageError> {
    let invalid = |reason| ImageError::InvalidReference {
        reference: r.to_owned(),
        reason,
    };
    if r.is_empty() {
        return Err(invalid("empty reference"));
    }
    if r.len() > 255 {
        return Err(invalid("longer than 255 characters"));
    }
    let (rest, digest) = match r.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (r, None),
    };
    if let Some(digest) = digest {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| invalid("only sha256 digests are supported"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("sha256 digest must be 64 lowercase hex digits"));
        }
    }
    // The tag follows the last ':' after the last '/', so a registry port is not
    // mistaken for a tag.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(invalid("invalid tag"));
        }
    }

    let (domain, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, path.to_owned())
        }
        _ => (DEFAULT_DOMAIN, name.to_owned()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    if !valid_domain(domain) {
        return Err(invalid("invalid registry host"));
    }
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if !path.split('/').all(valid_path_component) {
        return Err(invalid(
            "repository path components must be lowercase alphanumerics separated by '.', '_', '__' or '-'",
        ));
    }

    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(tag), _) => {
            out.push(':');
            out.push_str(tag);
        }
        (None, None) => {
            out.push(':');
            out.push_str(DEFAULT_TAG);
        }
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    Ok(out)
}

/// The tag of a normalized reference; none for a digest reference.
fn tag_of(normalized: &str) -> Option<&str> {
    if normalized.contains('@') {
        return None;
    }
    let last_slash = normalized.rfind('/').map_or(0, |i| i + 1);
    normalized[last_slash..].rsplit_once(':').map(|(_, t)| t)
}

/// `host[:port]`, host being dot-separated labels of alphanumerics and '-'.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    port_ok && host_ok
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, the distribution spec's grammar.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// The smallest valid component preamble: enough for the header check.
    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn normalize_table() {
        let digest = format!("sha256:{HEX}");
        let cases: Vec<(String, Result<String, ()>)> = vec![
            ("hello".into(), Ok("docker.io/library/hello:latest".into())),
            ("hello:1.0".into(), Ok("docker.io/library/hello:1.0".into())),
            ("user/app".into(), Ok("docker.io/user/app:latest".into())),
            (
                "docker.io/hello".into(),
                Ok("docker.io/library/hello:latest".into()),
            ),
            (
                "index.docker.io/user/app:v2".into(),
                Ok("docker.io/user/app:v2".into()),
            ),
            (
                "127.0.0.1:5000/x/y:t".into(),
                Ok("127.0.0.1:5000/x/y:t".into()),
            ),
            ("localhost/app".into(), Ok("localhost/app:latest".into())),
            (
                "localhost:5000/app".into(),
                Ok("localhost:5000/app:latest".into()),
            ),
            (
                "ghcr.io/o/r/deep/path:1".into(),
                Ok("ghcr.io/o/r/deep/path:1".into()),
            ),
            (
                "a.b-c__d--e".into(),
                Ok("docker.io/library/a.b-c__d--e:latest".into()),
            ),
            (
                format!("hello@{digest}"),
                Ok(format!("docker.io/library/hello@{digest}")),
            ),
            (
                format!("hello:1@{digest}"),
                Ok(format!("docker.io/library/hello:1@{digest}")),
            ),
            ("".into(), Err(())),
            ("Hello".into(), Err(())),
            ("hello:".into(), Err(())),
            ("hello:-bad".into(), Err(())),
            ("hello@sha256:abc".into(), Err(())),
            (format!("hello@md5:{HEX}"), Err(())),
            ("a//b".into(), Err(())),
            ("a/b/".into(), Err(())),
            ("a..b".into(), Err(())),
            ("-a".into(), Err(())),
            ("host:port/x".into(), Err(())),
        ];
        for (input, want) in cases {
            let got = normalize_reference(&input).map_err(|_| ());
            assert_eq!(got, want, "normalize_reference({input:?})");
        }
    }

    #[test]
    fn component_header_check() {
        assert!(check_component(COMPONENT).is_ok());
        let core = b"\0asm\x01\x00\x00\x00";
        let err = check_component(core).unwrap_err().to_string();
        assert!(err.contains("core wasm module"), "{err}");
        assert!(check_component(b"\x7fELF\x02\x01\x01\x00").is_err());
        assert!(check_component(b"\0asm").is_err());
    }

    #[test]
    fn import_resolve_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        assert!(dir.path().join("oci-layout").is_file());
        assert!(store.list().unwrap().is_empty());

        let info = store.import_wasm(COMPONENT, "hello:1.0").unwrap();
        assert_eq!(info.reference, "docker.io/library/hello:1.0");
        assert_eq!(info.artifact, ArtifactKind::Wasm);
        assert!(info.digest.starts_with("sha256:"));

        let resolved = store.resolve("hello:1.0").unwrap().expect("tagged image");
        assert_eq!(resolved.manifest_digest, info.digest);
        assert_eq!(resolved.artifact, ArtifactKind::Wasm);
        let (layer_digest, layer_path) = resolved.wasm_layer.clone().expect("wasm layer");
        assert_eq!(layer_digest, format!("sha256:{}", sha256_hex(COMPONENT)));
        assert_eq!(fs::read(&layer_path).unwrap(), COMPONENT);

        let by_digest = store
            .resolve(&format!("hello@{}", info.digest))
            .unwrap()
            .expect("by digest");
        assert_eq!(by_digest.manifest_digest, info.digest);
        assert_eq!(by_digest.wasm_layer, resolved.wasm_layer);

        assert_eq!(store.resolve("hello:2.0").unwrap(), None);
        assert_eq!(store.resolve(&format!("hello@sha256:{HEX}")).unwrap(), None);

        // Re-importing is idempotent; a second tag adds an entry.
        let again = store
            .import_wasm(COMPONENT, "docker.io/library/hello:1.0")
            .unwrap();
        assert_eq!(again, info);
        store.import_wasm(COMPONENT, "other").unwrap();
        let list = store.list().unwrap();
        let refs: Vec<_> = list.iter().map(|i| i.reference.as_str()).collect();
        assert_eq!(
            refs,
            [
                "docker.io/library/hello:1.0",
                "docker.io/library/other:latest"
            ]
        );
        assert_eq!(list[0], info);

        // The layout is readable by a second handle (another process would do the same).
        let other = ImageStore::open(dir.path()).unwrap();
        assert_eq!(other.list().unwrap(), list);
    }

    #[test]
    fn core_module_is_rejected_on_import() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let err = store
            .import_wasm(b"\0asm\x01\x00\x00\x00", "core")
            .unwrap_err();
        assert!(matches!(err, ImageError::NotAComponent(_)), "{err}");
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn legacy_wasm_layer_media_type_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let layer = store.write_blob(COMPONENT).unwrap();
        let config = store.write_blob(b"{}").unwrap();
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(MediaType::EmptyJSON, 2, config))
            .layers(vec![Descriptor::new(
                MediaType::Other(LEGACY_WASM_LAYER_MEDIA_TYPE.into()),
                COMPONENT.len() as u64,
                layer.clone(),
            )])
            .build()
            .unwrap();
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = store.write_blob(&bytes).unwrap();
        let mut entry = Descriptor::new(MediaType::ImageManifest, bytes.len() as u64, digest);
        entry.set_annotations(Some(HashMap::from([(
            ANNOTATION_IMAGE_NAME.to_owned(),
            "docker.io/library/legacy:latest".to_owned(),
        )])));
        let mut index = store.read_index().unwrap();
        let mut manifests = index.manifests().clone();
        manifests.push(entry);
        index.set_manifests(manifests);
        store.write_index(&index).unwrap();

        let resolved = store.resolve("legacy").unwrap().unwrap();
        assert_eq!(resolved.artifact, ArtifactKind::Wasm);
        assert_eq!(resolved.wasm_layer.unwrap().0, layer.to_string());
    }

    fn manifest_with(config: &str, layers: &[&str]) -> ImageManifest {
        let hex = format!("sha256:{HEX}");
        let descriptor = |media_type: &str| {
            Descriptor::new(
                MediaType::from(media_type),
                1,
                Digest::from_str(&hex).unwrap(),
            )
        };
        ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(descriptor(config))
            .layers(layers.iter().map(|l| descriptor(l)).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn artifact_kind_by_media_type() {
        const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
        const TAR_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
        let cases = [
            (
                WASM_CONFIG_MEDIA_TYPE,
                vec![WASM_LAYER_MEDIA_TYPE],
                ArtifactKind::Wasm,
            ),
            // The config alone decides: an artifact may carry extra layers.
            (WASM_CONFIG_MEDIA_TYPE, vec![TAR_GZ], ArtifactKind::Wasm),
            // Older tools: a generic config and a wasm layer.
            (
                "application/vnd.oci.empty.v1+json",
                vec![WASM_LAYER_MEDIA_TYPE],
                ArtifactKind::Wasm,
            ),
            (
                OCI_CONFIG,
                vec![LEGACY_WASM_LAYER_MEDIA_TYPE],
                ArtifactKind::Wasm,
            ),
            (OCI_CONFIG, vec![TAR_GZ], ArtifactKind::Oci),
            (
                "application/vnd.docker.container.image.v1+json",
                vec![],
                ArtifactKind::Oci,
            ),
        ];
        for (config, layers, want) in cases {
            let got = artifact_kind(&manifest_with(config, &layers));
            assert_eq!(got, want, "config {config}, layers {layers:?}");
        }
    }

    /// A pulled artifact: its manifest bytes and the blobs they name.
    fn artifact(config: &[u8], layer: &[u8]) -> Vec<u8> {
        let descriptor = |media_type: &str, data: &[u8]| {
            Descriptor::new(
                MediaType::from(media_type),
                data.len() as u64,
                sha256_digest(data).unwrap(),
            )
        };
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(WASM_CONFIG_MEDIA_TYPE, config))
            .layers(vec![descriptor(WASM_LAYER_MEDIA_TYPE, layer)])
            .build()
            .unwrap();
        serde_json::to_vec(&manifest).unwrap()
    }

    fn blob_files(dir: &Path) -> usize {
        fs::read_dir(dir.join("blobs/sha256")).unwrap().count()
    }

    #[test]
    fn import_manifest_stores_a_pulled_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let manifest = artifact(b"{}", COMPONENT);
        let config_digest = format!("sha256:{}", sha256_hex(b"{}"));
        let layer_digest = format!("sha256:{}", sha256_hex(COMPONENT));
        let blobs = [
            Blob {
                digest: &config_digest,
                data: b"{}",
            },
            Blob {
                digest: &layer_digest,
                data: COMPONENT,
            },
        ];
        let info = store
            .import_manifest("127.0.0.1:5000/hello:1.0", &manifest, &blobs)
            .unwrap();
        assert_eq!(info.digest, format!("sha256:{}", sha256_hex(&manifest)));
        assert_eq!(info.size, (manifest.len() + 2 + COMPONENT.len()) as u64);
        let resolved = store.resolve("127.0.0.1:5000/hello:1.0").unwrap().unwrap();
        assert_eq!(resolved.artifact, ArtifactKind::Wasm);
        assert_eq!(resolved.wasm_layer.unwrap().0, layer_digest);

        // Stored under a digest reference, it is found by that name.
        let by_digest = format!("127.0.0.1:5000/hello@sha256:{HEX}");
        store.import_manifest(&by_digest, &manifest, &[]).unwrap();
        let resolved = store.resolve(&by_digest).unwrap().unwrap();
        assert_eq!(resolved.manifest_digest, info.digest);
    }

    #[test]
    fn import_manifest_with_a_bad_blob_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let manifest = artifact(b"{}", COMPONENT);
        let config_digest = format!("sha256:{}", sha256_hex(b"{}"));
        let layer_digest = format!("sha256:{}", sha256_hex(COMPONENT));
        let corrupt = [
            Blob {
                digest: &config_digest,
                data: b"{}",
            },
            Blob {
                digest: &layer_digest,
                data: b"\0asm tampered",
            },
        ];
        let err = store
            .import_manifest("hello:1.0", &manifest, &corrupt)
            .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        let missing = [Blob {
            digest: &config_digest,
            data: b"{}",
        }];
        let err = store
            .import_manifest("hello:1.0", &manifest, &missing)
            .unwrap_err();
        assert!(err.to_string().contains(&layer_digest), "{err}");

        assert_eq!(blob_files(dir.path()), 0, "no blob written");
        assert!(store.list().unwrap().is_empty(), "no tag written");
        assert_eq!(store.resolve("hello:1.0").unwrap(), None);
    }

    #[test]
    fn corrupt_manifest_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let info = store.import_wasm(COMPONENT, "hello").unwrap();
        fs::write(store.blob_path(&info.digest), b"{}").unwrap();
        let err = store.resolve("hello").unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn blob_path_never_escapes_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let blobs = dir.path().join("blobs");
        assert_eq!(
            store.blob_path(&format!("sha256:{HEX}")),
            blobs.join("sha256").join(HEX)
        );
        for bad in ["sha256:../../etc/passwd", "../x:ab", "nocolon", "sha256:"] {
            assert_eq!(store.blob_path(bad), blobs.join("invalid-digest"), "{bad}");
        }
    }

    #[test]
    fn concurrent_imports_keep_every_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        std::thread::scope(|s| {
            for i in 0..8 {
                let store = ImageStore::open(dir.path()).unwrap();
                s.spawn(move || store.import_wasm(COMPONENT, &format!("img{i}")).unwrap());
            }
        });
        assert_eq!(store.list().unwrap().len(), 8);
    }
}
