//! The node agent (kubelet role): image store, container runtimes and logs.
//!
//! - [`images`]: the local OCI image layout; wasm components are OCI artifacts.
//! - [`runtime`]: the seam the pod worker drives ([`runtime::Runtime`]) with the
//!   wasmtime implementation and a scripted fake.
//! - [`logs`]: CRI-format container log files and the `kubectl logs` reader.

pub mod images;
pub mod logs;
pub mod runtime;
pub mod testing;
