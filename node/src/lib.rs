//! The node agent (kubelet role): pod workers, image store, container runtimes and logs.
//!
//! - [`agent`]: registers the Node, heartbeats, and runs a worker per bound pod.
//! - [`pod_worker`]: one pod's lifecycle: start, restart with back-off, stop, status.
//! - [`status`]: the pod status rules (phase, conditions), pure.
//! - [`client`]: the node's only way to the control plane.
//! - [`images`]: the local OCI image layout; wasm components are OCI artifacts.
//! - [`registry`]: pulls wasm artifacts from OCI registries into that layout;
//!   [`image_archive`] reads OCI image archives ([`docker_archive`] Docker ones) for
//!   `wkube image import`: wasm artifacts go to that layout, container images to containerd
//!   ([`containerd::image_import`]).
//! - [`runtime`]: the seam the pod worker drives ([`runtime::Runtime`]) with the
//!   wasmtime implementation and a scripted fake.
//! - [`env`], [`downward`]: a container's environment and argv, pure.
//! - [`volumes`]: a pod's volumes (emptyDir, hostPath, and the virtual ones).
//! - [`vfs`]: the in-memory `wasi:filesystem` for ConfigMap/Secret/downwardAPI volumes.
//! - [`pull_policy`], [`registry_auth`]: when and with which credentials OCI images are
//!   pulled, pure.
//! - [`netns`]: the thread on which a pod's WASI guests share its sandbox's network.
//! - [`logs`]: CRI-format container log files and the `kubectl logs` reader;
//!   [`pod_logs`] serves them to the API server.
//! - [`resource_metrics`]: the node's and its containers' CPU and memory usage, sampled
//!   and served to the API server's `metrics.k8s.io` (`kubectl top`).

pub mod agent;
pub mod client;
pub mod containerd;
pub mod docker_archive;
pub mod downward;
pub mod env;
pub mod image_archive;
pub mod images;
pub mod logs;
pub mod netns;
pub mod pod_logs;
pub mod pod_worker;
pub mod pull_policy;
pub mod registry;
pub mod registry_auth;
pub mod resource_metrics;
pub mod runtime;
pub mod status;
pub mod testing;
pub mod vfs;
pub mod volumes;
