//! The wkube control plane: the object store (raft-rs log over sled), the Kubernetes API
//! server, controllers (namespaces, workloads, node lifecycle, garbage collection) and the
//! scheduler.
//!
//! The pure API modules (`selectors`, `patch`, `validation`, `table`) do no I/O; the HTTP
//! layer calls them with objects as `serde_json::Value` (the Kubernetes JSON, unknown fields
//! preserved).

pub mod api;
pub mod bootstrap;
pub mod controllers;
pub mod events;
pub mod leadership;
pub mod member_nodes;
pub mod namespaces;
pub mod obj;
pub mod patch;
pub mod persistent_volumes;
pub mod pki;
pub mod scheduler;
pub mod selectors;
pub mod storage_class;
pub mod store;
pub mod table;
pub mod taints;
pub mod transport;
pub mod validation;
