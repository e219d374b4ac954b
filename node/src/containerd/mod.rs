//! containerd, driven through its CRI v1 service (the contract kubelet uses).
//!
//! `wkube server` runs its own containerd, like k3s: configuration, socket, image store and
//! state all live under the node's data directory ([`supervisor`]), so it never touches a
//! containerd the machine may already run. [`connect`] opens the CRI clients on its socket.

use std::path::{Path, PathBuf};

use cri::v1::image_service_client::ImageServiceClient;
use cri::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

pub mod image_import;
pub mod network;
pub mod pause;
pub mod resources;
pub mod sandbox;
pub mod sandbox_pool;
pub mod streams;
pub mod supervisor;

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("containerd is not installed: {0} (apt-get install containerd runc containernetworking-plugins)")]
    NotInstalled(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("containerd exited before serving its socket ({status}); its log: {log}")]
    Exited { status: String, log: PathBuf },
    #[error("containerd did not serve {socket} within {seconds} s; its log: {log}")]
    NotServing {
        socket: PathBuf,
        seconds: u64,
        log: PathBuf,
    },
    #[error("connecting to containerd at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("loading the sandbox image: {0}")]
    SandboxImage(String),
    #[error("CRI {call}: {status}")]
    Cri {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
}

/// The two CRI services on one connection.
#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

/// Opens a gRPC channel to containerd's socket.
pub async fn channel(socket: &Path) -> Result<Channel, ContainerdError> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: every connection goes to the socket.
    Endpoint::from_static("http://containerd.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| ContainerdError::Connect {
            socket: socket.to_path_buf(),
            source,
        })
}

/// Opens the CRI clients on containerd's socket.
pub async fn connect(socket: &Path) -> Result<CriClient, ContainerdError> {
    Ok(CriClient::new(channel(socket).await?))
}

/// Maps a failed CRI call to its error, naming the call.
fn failed(call: &'static str) -> impl FnOnce(tonic::Status) -> ContainerdError {
    move |status| ContainerdError::Cri { call, status }
}

impl CriClient {
    pub fn new(channel: Channel) -> CriClient {
        CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    /// Pulls an image into containerd's store, with the registry's credentials if it needs
    /// them; returns its image id (the config digest).
    pub async fn pull_image(
        &mut self,
        reference: &str,
        auth: Option<cri::v1::AuthConfig>,
    ) -> Result<String, ContainerdError> {
        let request = cri::v1::PullImageRequest {
            image: Some(cri::v1::ImageSpec {
                image: reference.into(),
                ..Default::default()
            }),
            auth,
            ..Default::default()
        };
        self.images
            .pull_image(request)
            .await
            .map(|r| r.into_inner().image_ref)
            .map_err(failed("PullImage"))
    }

    /// The image as containerd has it, or `None` if it has not been pulled.
    pub async fn image_status(
        &mut self,
        reference: &str,
    ) -> Result<Option<cri::v1::Image>, ContainerdError> {
        let request = cri::v1::ImageStatusRequest {
            image: Some(cri::v1::ImageSpec {
                image: reference.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.images
            .image_status(request)
            .await
            .map(|r| r.into_inner().image)
            .map_err(failed("ImageStatus"))
    }

    /// The usage of containerd's containers (CRI `ListContainerStats`, what kubelet's
    /// resource metrics read).
    pub async fn container_stats(
        &mut self,
    ) -> Result<Vec<cri::v1::ContainerStats>, ContainerdError> {
        self.runtime
            .list_container_stats(cri::v1::ListContainerStatsRequest::default())
            .await
            .map(|r| r.into_inner().stats)
            .map_err(failed("ListContainerStats"))
    }

    /// The runtime's name and version, and the CRI version it speaks.
    pub async fn version(&mut self) -> Result<cri::v1::VersionResponse, ContainerdError> {
        let request = cri::v1::VersionRequest {
            version: "v1".into(),
        };
        self.runtime
            .version(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(failed("Version"))
    }
}
