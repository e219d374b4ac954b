//! Recording `Event` objects about other objects, as Kubernetes components do
//! (`kubectl describe` lists them under "Events:").

use serde_json::{json, Value};

use crate::api::objects::{name_of, now};
use crate::api::{resources, Api, ApiError};

/// Records events on behalf of one component (e.g. `default-scheduler`, `kubelet`).
#[derive(Clone)]
pub struct EventRecorder {
    api: Api,
    component: String,
    host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventRecorder {
    pub fn new(api: Api, component: &str, host: Option<&str>) -> Self {
        EventRecorder {
            api,
            component: component.into(),
            host: host.map(str::to_string),
        }
    }

    /// Records `reason`/`message` about `object`. Failing to record is logged, never fatal:
    /// events are informational.
    pub async fn record(&self, object: &Value, kind: EventType, reason: &str, message: &str) {
        if let Err(e) = self.try_record(object, kind, reason, message).await {
            tracing::warn!(reason, error = %e, "cannot record event");
        }
    }

    async fn try_record(
        &self,
        object: &Value,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let events = resources::find("", "v1", "events")
            .ok_or_else(|| ApiError::Internal("events unknown".into()))?;
        let meta = &object["metadata"];
        let namespace = meta["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("default");
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let name = format!("{}.{:x}", name_of(object), nanos);
        let time = now();
        let mut source = json!({"component": self.component});
        if let Some(h) = &self.host {
            source["host"] = json!(h);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "kind": object["kind"],
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": object["apiVersion"],
                "resourceVersion": meta["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": match kind { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "source": source,
            "firstTimestamp": time,
            "lastTimestamp": time,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host.clone().unwrap_or_default(),
        });
        self.api
            .create(events, Some(namespace), event, false)
            .await
            .map(|_| ())
    }
}
