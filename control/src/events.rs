//! Recording `Event` objects about other objects, as Kubernetes components do
//! (`kubectl describe` lists them under "Events:").

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::api::objects::{name_of, now};
use crate::api::{resources, Api};

/// Records events on behalf of one component (e.g. `default-scheduler`, `kubelet`).
#[derive(Clone)]
pub struct EventRecorder {
    api: Api,
    component: String,
    host: Option<String>,
    in_flight: Arc<Semaphore>,
}

/// How many events one recorder may be writing at once (client-go queues 1000).
const IN_FLIGHT: usize = 1000;

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
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Records `reason`/`message` about `object`, without waiting for the write, as
    /// client-go's recorder does: the caller's next write (a pod's status after its
    /// `Started` event, say) then shares a commit with it instead of queueing behind it.
    /// At most [`IN_FLIGHT`] events are being written at once; past that they are dropped,
    /// as client-go drops them when its queue is full. Failing to record is logged, never
    /// fatal: events are informational.
    pub async fn record(&self, object: &Value, kind: EventType, reason: &str, message: &str) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return tracing::warn!(reason, "dropping an event: too many being written");
        };
        let (events, namespace, event) = self.event(object, kind, reason, message);
        let api = self.api.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = api.create(events, Some(&namespace), event, false).await {
                tracing::warn!(reason, error = %e, "cannot record event");
            }
            drop(permit);
        });
    }

    /// The event's resource, namespace and object.
    fn event(
        &self,
        object: &Value,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> (&'static resources::ResourceInfo, String, Value) {
        let events = resources::find("", "v1", "events").expect("events are a resource");
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
        (events, namespace.to_string(), event)
    }
}
