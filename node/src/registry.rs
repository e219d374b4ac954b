//! Pulls wasm artifacts from OCI registries into the node's [`ImageStore`].
//!
//! The node pulls only what it runs itself: the manifest decides (by media type, see
//! [`images::artifact_kind`]) whether a reference names a wasm artifact. A container
//! image is reported as [`Pulled::NotWasm`] and left to containerd, which pulls and
//! unpacks it into its own content store.
//!
//! The manifest is fetched as bytes and stored as fetched, so its digest is the one the
//! registry serves (and the one `kubectl get pod -o yaml` shows as `imageID`). An index
//! is followed to its linux/amd64 entry, or else to an entry for the `wasm`
//! architecture (how multi-platform wasm artifacts are published).

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, Os};

use crate::images::{self, ArtifactKind, Blob, ImageError, ImageStore, ResolvedImage};
use crate::registry_auth::Credentials;

const ACCEPTED_MANIFESTS: &[&str] = &[
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(ImageError),
    /// containerd's wording, which kubelet shows in `ErrImagePull`.
    #[error("failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": {reference}: not found")]
    NotFound { reference: String },
    #[error("failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": pull access denied, repository does not exist or may require authorization: {message}")]
    Unauthorized { reference: String, message: String },
    #[error("failed to pull and unpack image \"{reference}\": {message}")]
    Registry { reference: String, message: String },
    #[error("failed to pull and unpack image \"{reference}\": {source}")]
    Store {
        reference: String,
        #[source]
        source: ImageError,
    },
}

/// What a pull found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    /// A wasm artifact, now in the store.
    Wasm { image: ResolvedImage, size: u64 },
    /// A container image, not pulled: containerd's business. The digest is that of
    /// the manifest (or index) the reference names.
    NotWasm { manifest_digest: String },
}

/// Pulls into one store. Cheap to build: one per pull is fine.
pub struct Puller {
    store: ImageStore,
    client: Client,
}

/// What a fetched manifest turned out to be.
#[derive(Debug)]
pub(crate) enum Fetched {
    Index(Box<ImageIndex>),
    Image(Box<ImageManifest>),
}

impl Puller {
    /// `insecure` lists the registries (`HOST:PORT`) spoken to over plain HTTP.
    pub fn new(store: ImageStore, insecure: &[String]) -> Self {
        // reqwest's rustls takes the process's default provider; ring is the one the
        // rest of wkube uses. Installing fails harmlessly when one is already set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
            // The index is followed here, not by the client.
            platform_resolver: None,
            // An unreachable registry fails the pull instead of holding the pod
            // worker; a slow but live one keeps going (timeouts are between reads).
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        Puller {
            store,
            client: Client::new(config),
        }
    }

    /// Pulls `reference` (normalized first). A wasm artifact is stored under the
    /// normalized reference; anything else is only identified.
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Pulled, PullError> {
        let normalized = images::normalize_reference(reference).map_err(PullError::Reference)?;
        let failed = |e: OciDistributionError| registry_error(&normalized, e);
        let target: Reference = normalized.parse().map_err(|e| PullError::Registry {
            reference: normalized.clone(),
            message: format!("{e}"),
        })?;
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };

        let (mut bytes, named_digest) = self
            .client
            .pull_manifest_raw(&target, &auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(failed)?;
        let manifest = match classify(&bytes).map_err(|m| self.malformed(&normalized, m))? {
            Fetched::Image(manifest) => *manifest,
            Fetched::Index(index) => {
                let Some(entry) = platform_entry(&index) else {
                    return Ok(Pulled::NotWasm {
                        manifest_digest: named_digest,
                    });
                };
                let by_digest = target.clone_with_digest(entry.digest().to_string());
                bytes = self
                    .client
                    .pull_manifest_raw(&by_digest, &auth, ACCEPTED_MANIFESTS)
                    .await
                    .map_err(failed)?
                    .0;
                match classify(&bytes).map_err(|m| self.malformed(&normalized, m))? {
                    Fetched::Image(manifest) => *manifest,
                    Fetched::Index(_) => {
                        return Err(self.malformed(&normalized, "an index inside an index".into()))
                    }
                }
            }
        };
        if images::artifact_kind(&manifest) != ArtifactKind::Wasm {
            return Ok(Pulled::NotWasm {
                manifest_digest: named_digest,
            });
        }

        // oci-client checks each blob against its digest as it streams in; the store
        // checks again before it writes anything.
        let mut fetched = Vec::new();
        for descriptor in std::iter::once(manifest.config()).chain(manifest.layers()) {
            let digest = descriptor.digest().to_string();
            let mut data = Vec::with_capacity(descriptor.size() as usize);
            self.client
                .pull_blob(&target, digest.as_str(), &mut data)
                .await
                .map_err(failed)?;
            fetched.push((digest, data));
        }
        let blobs: Vec<Blob<'_>> = fetched
            .iter()
            .map(|(digest, data)| Blob { digest, data })
            .collect();
        let stored = |source| PullError::Store {
            reference: normalized.clone(),
            source,
        };
        let info = self
            .store
            .import_manifest(&normalized, &bytes, &blobs)
            .map_err(stored)?;
        let image = self
            .store
            .resolve(&normalized)
            .map_err(stored)?
            .expect("the image was just stored");
        Ok(Pulled::Wasm {
            image,
            size: info.size,
        })
    }

    fn malformed(&self, reference: &str, message: String) -> PullError {
        PullError::Registry {
            reference: reference.to_owned(),
            message: format!("malformed manifest: {message}"),
        }
    }
}

/// An index or an image manifest, told apart by `mediaType`, or for manifests that
/// omit it (allowed by the OCI spec) by the presence of `manifests`.
pub(crate) fn classify(bytes: &[u8]) -> Result<Fetched, String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let index = match probe.media_type.as_deref() {
        Some(
            oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE
            | oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        ) => true,
        Some(_) => false,
        None => probe.manifests.is_some(),
    };
    if index {
        serde_json::from_slice(bytes)
            .map(|i| Fetched::Index(Box::new(i)))
            .map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(bytes)
            .map(|m| Fetched::Image(Box::new(m)))
            .map_err(|e| e.to_string())
    }
}

/// The entry of `index` this node would run: linux/amd64, else a wasm one.
pub(crate) fn platform_entry(index: &ImageIndex) -> Option<&Descriptor> {
    let platform = |d: &&Descriptor, os: Option<Os>, arch: Arch| {
        d.platform()
            .as_ref()
            .is_some_and(|p| *p.architecture() == arch && os.as_ref().is_none_or(|o| o == p.os()))
    };
    let entries = index.manifests();
    entries
        .iter()
        .find(|d| platform(d, Some(Os::Linux), Arch::Amd64))
        .or_else(|| entries.iter().find(|d| platform(d, None, Arch::Wasm)))
}

fn registry_error(reference: &str, e: OciDistributionError) -> PullError {
    let reference = reference.to_owned();
    match e {
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) =>
        {
            PullError::NotFound { reference }
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => PullError::NotFound { reference },
        OciDistributionError::UnauthorizedError { url } => PullError::Unauthorized {
            reference,
            message: format!("unauthorized: {url}"),
        },
        OciDistributionError::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)) =>
        {
            PullError::Unauthorized {
                reference,
                message: envelope.to_string(),
            }
        }
        other => PullError::Registry {
            reference,
            message: error_chain(&other),
        },
    }
}

/// The error and its causes, as Go's wrapped errors print (`a: b: c`): reqwest hides
/// the useful part (connection refused, DNS) in its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_an_index_from_a_manifest() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":2},
            "layers":[]}"#;
        assert!(matches!(classify(image), Ok(Fetched::Image(_))));
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(classify(index), Ok(Fetched::Index(_))));
        // mediaType is optional in OCI; an index still has `manifests`.
        let bare_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(classify(bare_index), Ok(Fetched::Index(_))));
        let docker_list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(classify(docker_list), Ok(Fetched::Index(_))));
        assert!(classify(b"not json").is_err());
    }

    #[test]
    fn registry_errors_read_as_containerd_reports_them() {
        let reference = "127.0.0.1:5000/app:1";
        let envelope = |code: &str| OciDistributionError::RegistryError {
            envelope: serde_json::from_value(serde_json::json!({
                "errors": [{"code": code, "message": "the registry's words"}]
            }))
            .unwrap(),
            url: "http://127.0.0.1:5000/v2/app/manifests/1".into(),
        };
        let not_found = registry_error(reference, envelope("MANIFEST_UNKNOWN")).to_string();
        assert_eq!(
            not_found,
            format!("failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": {reference}: not found")
        );
        let denied = registry_error(reference, envelope("DENIED")).to_string();
        assert!(
            denied.contains("pull access denied") && denied.contains("the registry's words"),
            "{denied}"
        );
        let other = registry_error(
            reference,
            OciDistributionError::ServerError {
                code: 500,
                url: "http://127.0.0.1:5000/v2/".into(),
                message: "disk full".into(),
            },
        )
        .to_string();
        assert!(
            other.starts_with(&format!(
                "failed to pull and unpack image \"{reference}\": "
            )) && other.contains("disk full"),
            "{other}"
        );
    }

    #[test]
    fn platform_entry_prefers_linux_amd64_then_wasm() {
        let entry = |os: &str, arch: &str, n: u8| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
                "size": 1,
                "platform": {"os": os, "architecture": arch},
            })
        };
        let index = |entries: Vec<serde_json::Value>| -> ImageIndex {
            serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": entries}))
                .unwrap()
        };
        let digest = |i: &ImageIndex| platform_entry(i).map(|d| d.digest().to_string());
        let both = index(vec![
            entry("wasip1", "wasm", 1),
            entry("linux", "arm64", 2),
            entry("linux", "amd64", 3),
        ]);
        assert_eq!(digest(&both), Some(format!("sha256:{}", "03".repeat(32))));
        let wasm = index(vec![entry("linux", "arm64", 2), entry("wasip2", "wasm", 1)]);
        assert_eq!(digest(&wasm), Some(format!("sha256:{}", "01".repeat(32))));
        assert_eq!(digest(&index(vec![entry("linux", "arm64", 2)])), None);
    }
}
