//! The Kubernetes Container Runtime Interface, v1: the gRPC contract kubelet uses to drive
//! containerd, generated from `proto/api.proto` (the `runtime.v1` package of
//! `k8s.io/cri-api`, Apache-2.0, The Kubernetes Authors). Only the client is generated.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
