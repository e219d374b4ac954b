//! The Kubernetes Container Runtime Interface, v1: the gRPC contract kubelet uses to drive
//! containerd, generated from `proto/api.proto` (the `runtime.v1` package of
//! `k8s.io/cri-api`, Apache-2.0, The Kubernetes Authors). Only the client is generated.
//!
//! CRI can pull images but not import them; [`containerd`] holds the clients of the
//! containerd services that can (content store, image records, leases), from the minimal,
//! wire-compatible protos in `proto/containerd/`.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

/// containerd's own API, nested as its protobuf packages are (the generated code refers
/// to `containerd.types` by relative paths).
#[allow(clippy::all, missing_docs)]
pub mod containerd {
    pub mod types {
        tonic::include_proto!("containerd.types");
    }
    pub mod services {
        pub mod content {
            pub mod v1 {
                tonic::include_proto!("containerd.services.content.v1");
            }
        }
        pub mod images {
            pub mod v1 {
                tonic::include_proto!("containerd.services.images.v1");
            }
        }
        pub mod leases {
            pub mod v1 {
                tonic::include_proto!("containerd.services.leases.v1");
            }
        }
    }
}
