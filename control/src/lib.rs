//! The wkube control plane: the object store (raft-rs log over sled), the Kubernetes API
//! server, controllers and the scheduler.

pub mod api;
pub mod pki;
pub mod store;
pub mod bootstrap;
pub mod events;
pub mod scheduler;
