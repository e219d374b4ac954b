//! Serves the `log` subresource from this node's CRI log files (what the API server asks
//! kubelet for in Kubernetes).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;

use control::api::logs::{LogRequest, LogStream, PodLogs};
use control::api::ApiError;

use crate::logs::{container_log_path, follow_log, read_log, LogOptions};

/// How often a follower checks whether the container it follows has ended.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

pub struct NodeLogs {
    pub root: PathBuf,
    pub active: Arc<Mutex<HashSet<PathBuf>>>,
}

impl PodLogs for NodeLogs {
    fn open(&self, pod: &Value, req: &LogRequest) -> Result<LogStream, ApiError> {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let status = ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|k| pod["status"][k].as_array())
            .flatten()
            .find(|s| s["name"] == req.container.as_str());
        let waiting = |reason: &str| {
            ApiError::BadRequest(format!(
                "container \"{}\" in pod \"{name}\" is waiting to start: {reason}",
                req.container
            ))
        };
        let Some(status) = status else {
            return Err(waiting("ContainerCreating"));
        };
        let restarts = status["restartCount"].as_u64().unwrap_or(0);
        let ran = status["state"].get("waiting").is_none()
            || restarts > 0
            || status["lastState"].get("terminated").is_some();
        let run = if req.previous {
            if status["lastState"].get("terminated").is_none() {
                return Err(ApiError::BadRequest(format!(
                    "previous terminated container \"{}\" in pod \"{name}\" not found",
                    req.container
                )));
            }
            restarts.saturating_sub(1)
        } else if !ran {
            let reason = status["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or("ContainerCreating");
            return Err(waiting(reason));
        } else {
            // Run N is the one after N restarts; while waiting to restart, the latest run's
            // log is still the current one.
            restarts
        };
        let path = container_log_path(
            &self.root,
            pod["metadata"]["namespace"].as_str().unwrap_or_default(),
            name,
            pod["metadata"]["uid"].as_str().unwrap_or_default(),
            &req.container,
            run as u32,
        );
        let opts = LogOptions {
            tail_lines: req.tail_lines,
            timestamps: req.timestamps,
            limit_bytes: req.limit_bytes,
            since: req
                .since_seconds
                .map(|s| chrono::Utc::now() - chrono::Duration::seconds(s)),
        };
        if req.follow && !req.previous {
            let done = container_ended(self.active.clone(), path.clone());
            let stream = follow_log(path, opts, done).map(|r| r.map_err(std::io::Error::other));
            return Ok(stream.boxed());
        }
        let bytes = read_log(&path, &opts).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(futures::stream::once(async move { Ok(bytes.into()) }).boxed())
    }
}

async fn container_ended(active: Arc<Mutex<HashSet<PathBuf>>>, path: PathBuf) {
    while is_active(&active, &path) {
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

fn is_active(active: &Mutex<HashSet<PathBuf>>, path: &Path) -> bool {
    active
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(path)
}
