//! The Kubernetes REST API: resource registry, objects logic, discovery and the HTTPS
//! server.

pub mod admission;
pub mod cluster;
pub mod defaults;
pub mod discovery;
pub mod errors;
pub mod logs;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod protobuf;
pub mod resources;
pub mod routes;
pub mod scale;
pub mod server;
pub mod streams;
pub mod upgrade;

pub use errors::ApiError;
pub use objects::Api;
