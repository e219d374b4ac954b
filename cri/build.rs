//! Generates the CRI v1 client from `proto/api.proto`, and the clients of the few containerd
//! services CRI lacks (image import) from `proto/containerd/`, with a protoc that cargo
//! fetches (`protoc-bin-vendored`), so building needs no system protoc.

const CONTAINERD: [&str; 4] = [
    "proto/containerd/descriptor.proto",
    "proto/containerd/content.proto",
    "proto/containerd/images.proto",
    "proto/containerd/leases.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC; this build script is its only user in this process.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&CONTAINERD, &["proto/containerd"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
