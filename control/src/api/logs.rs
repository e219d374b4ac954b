//! The seam through which the API server reads container logs from the node that runs
//! the pod (kubelet's role in Kubernetes).

use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::Value;

use super::errors::ApiError;

/// The `log` subresource's parameters, as `kubectl logs` sends them.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub since_seconds: Option<i64>,
}

pub type LogStream = BoxStream<'static, std::io::Result<Bytes>>;

pub trait PodLogs: Send + Sync + 'static {
    /// The log of `request.container` of `pod` (a container of its spec, already checked).
    fn open(&self, pod: &Value, request: &LogRequest) -> Result<LogStream, ApiError>;
}
