//! Imports the container images of an OCI image archive into containerd's image store,
//! in the `k8s.io` namespace where its CRI service (and so every pod) finds them: what
//! `ctr images import` does, through containerd's own gRPC API (CRI can only pull).
//!
//! All of it happens under a lease: the blobs are written first (containerd checks each
//! one's size and digest as it commits it), the image records last, so an archive that is
//! corrupt or cut short never leaves a record pointing at missing content; deleting the
//! lease at the end hands the blobs to containerd's garbage collector, which keeps those
//! an image reaches (through the `containerd.io/gc.ref.content.*` labels written with the
//! manifests) and collects the rest. Images are not unpacked here: containerd's CRI service
//! unpacks an image into its snapshotter when a container first needs it.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use cri::containerd::services::content::v1::content_client::ContentClient;
use cri::containerd::services::content::v1::{InfoRequest, WriteAction, WriteContentRequest};
use cri::containerd::services::images::v1::images_client::ImagesClient;
use cri::containerd::services::images::v1::{CreateImageRequest, Image, UpdateImageRequest};
use cri::containerd::services::leases::v1::leases_client::LeasesClient;
use cri::containerd::services::leases::v1::{CreateRequest, DeleteRequest};
use cri::containerd::types::Descriptor;
use tonic::transport::Channel;

use crate::image_archive::{each_entry, ArchiveError, BlobSource, ContainerBlob, ContainerImage};

/// The containerd namespace of CRI's images and containers.
pub const NAMESPACE: &str = "k8s.io";

/// Bytes per message of a blob write (gRPC's default limit is 4 MiB a message).
const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Connect(#[from] super::ContainerdError),
    #[error("{path}: blob {digest} ({image}): containerd refused it: {}", .status.message())]
    Blob {
        path: PathBuf,
        image: String,
        digest: String,
        #[source]
        status: tonic::Status,
    },
    #[error("{path}: blob {digest} ({image}) is missing from the archive")]
    Missing {
        path: PathBuf,
        image: String,
        digest: String,
    },
    #[error("containerd {call}: {}", .status.message())]
    Containerd {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
}

fn failed(call: &'static str) -> impl FnOnce(tonic::Status) -> ImportError {
    move |status| ImportError::Containerd { call, status }
}

/// The containerd services an import uses, on one connection.
pub struct ImageImporter {
    content: ContentClient<Channel>,
    images: ImagesClient<Channel>,
    leases: LeasesClient<Channel>,
}

/// A request in CRI's namespace, under `lease` if given.
fn request<T>(message: T, lease: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("containerd-namespace", NAMESPACE.parse().expect("ascii"));
    if let Some(lease) = lease.and_then(|l| l.parse().ok()) {
        metadata.insert("containerd-lease", lease);
    }
    request
}

impl ImageImporter {
    pub fn new(channel: Channel) -> ImageImporter {
        ImageImporter {
            content: ContentClient::new(channel.clone()),
            images: ImagesClient::new(channel.clone()),
            leases: LeasesClient::new(channel),
        }
    }

    /// Imports `images` from the archive at `path`: all of them, or, on error, no record.
    pub async fn import(
        &mut self,
        path: &Path,
        images: &[ContainerImage],
    ) -> Result<(), ImportError> {
        let lease = format!("wkube-import-{}", uuid::Uuid::new_v4());
        self.leases
            .create(request(
                CreateRequest {
                    id: lease.clone(),
                    labels: HashMap::new(),
                },
                None,
            ))
            .await
            .map_err(failed("Leases.Create"))?;
        let mut result = self.write_blobs(path, images, &lease).await;
        if result.is_ok() {
            result = self.record(images).await;
        }
        let deleted = self
            .leases
            .delete(request(
                DeleteRequest {
                    id: lease,
                    // A failed import's blobs go now rather than at some later collection.
                    sync: result.is_err(),
                },
                None,
            ))
            .await
            .map_err(failed("Leases.Delete"));
        result.and(deleted.map(drop))
    }

    /// Writes the images' blobs that containerd lacks, streaming them from the archive.
    async fn write_blobs(
        &mut self,
        path: &Path,
        images: &[ContainerImage],
        lease: &str,
    ) -> Result<(), ImportError> {
        let refused = |image: &ContainerImage, blob: &ContainerBlob| {
            let (path, image, digest) = (path.to_owned(), image.name.clone(), blob.digest.clone());
            move |status| ImportError::Blob {
                path,
                image,
                digest,
                status,
            }
        };
        let mut wanted: HashMap<String, (&ContainerImage, &ContainerBlob)> = HashMap::new();
        for image in images {
            for blob in &image.blobs {
                if self.has(&blob.digest).await? {
                    continue;
                }
                match &blob.source {
                    BlobSource::Entry(entry) => {
                        wanted.insert(entry.clone(), (image, blob));
                    }
                    BlobSource::Made(bytes) => self
                        .write(blob, bytes.clone(), lease)
                        .await
                        .map_err(refused(image, blob))?,
                }
            }
        }
        // The tar is read on a blocking thread, one blob at a time, so a large layer is
        // never held twice and the archive is read once.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = {
            let path = path.to_owned();
            let entries: Vec<String> = wanted.keys().cloned().collect();
            tokio::task::spawn_blocking(move || {
                each_entry(
                    &path,
                    |name, _| entries.iter().any(|e| e == name),
                    |name, data| match tx.blocking_send((name, data)) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    },
                )
            })
        };
        let mut written = Ok(());
        while let Some((name, data)) = rx.recv().await {
            if let Some((image, blob)) = wanted.remove(&name) {
                written = self
                    .write(blob, data, lease)
                    .await
                    .map_err(refused(image, blob));
                if written.is_err() {
                    break;
                }
            }
        }
        drop(rx);
        let read = reader.await.expect("the archive reader does not panic");
        written?;
        read?;
        match wanted.into_values().next() {
            Some((image, blob)) => Err(ImportError::Missing {
                path: path.to_owned(),
                image: image.name.clone(),
                digest: blob.digest.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether containerd has the blob already.
    async fn has(&mut self, digest: &str) -> Result<bool, ImportError> {
        let info = InfoRequest {
            digest: digest.into(),
        };
        match self.content.info(request(info, None)).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => Err(failed("Content.Info")(status)),
        }
    }

    /// Writes one blob and commits it under its digest, with its labels.
    async fn write(
        &mut self,
        blob: &ContainerBlob,
        data: Vec<u8>,
        lease: &str,
    ) -> Result<(), tonic::Status> {
        let total = blob.size as i64;
        let reference = format!("{lease}-{}", blob.digest);
        let mut messages: Vec<WriteContentRequest> = data
            .chunks(CHUNK)
            .scan(0i64, |offset, chunk| {
                let message = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: reference.clone(),
                    total,
                    expected: blob.digest.clone(),
                    offset: *offset,
                    data: chunk.to_vec(),
                    labels: HashMap::new(),
                };
                *offset += chunk.len() as i64;
                Some(message)
            })
            .collect();
        messages.push(WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: reference,
            total,
            expected: blob.digest.clone(),
            offset: total,
            data: Vec::new(),
            labels: blob.labels.clone().into_iter().collect(),
        });
        drop(data);
        let stream = tokio_stream::iter(messages);
        let mut responses = match self.content.write(request(stream, Some(lease))).await {
            Ok(responses) => responses.into_inner(),
            // Written meanwhile (by a pull or another import): as good as written now.
            Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(status) => return Err(status),
        };
        loop {
            match responses.message().await {
                Ok(Some(response)) if response.action == WriteAction::Commit as i32 => {
                    return Ok(())
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(tonic::Status::data_loss("the write ended without a commit"))
                }
                Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    }

    /// Creates (or points anew) each image's record.
    async fn record(&mut self, images: &[ContainerImage]) -> Result<(), ImportError> {
        for image in images {
            let target = &image.target;
            let record = Image {
                name: image.name.clone(),
                labels: HashMap::new(),
                target: Some(Descriptor {
                    media_type: target.media_type().to_string(),
                    digest: target.digest().to_string(),
                    size: target.size() as i64,
                    annotations: target.annotations().clone().unwrap_or_default(),
                }),
            };
            let create = CreateImageRequest {
                image: Some(record.clone()),
            };
            match self.images.create(request(create, None)).await {
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::AlreadyExists => {
                    let update = UpdateImageRequest {
                        image: Some(record),
                    };
                    self.images
                        .update(request(update, None))
                        .await
                        .map_err(failed("Images.Update"))?;
                }
                Err(status) => return Err(failed("Images.Create")(status)),
            }
        }
        Ok(())
    }
}
