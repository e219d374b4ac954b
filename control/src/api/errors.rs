//! API errors, each answered to the client as a Kubernetes `Status` with the code and
//! reason real Kubernetes uses.

use serde_json::{json, Value};

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    NotFound {
        message: String,
        kind: String,
        name: String,
        group: String,
    },
    #[error("{message}")]
    AlreadyExists {
        message: String,
        kind: String,
        name: String,
        group: String,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        kind: String,
        name: String,
        group: String,
    },
    #[error("{message}")]
    Invalid {
        message: String,
        kind: String,
        name: String,
        group: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("too old resource version: {0}")]
    Gone(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(qualified: &str, name: &str) -> Self {
        let (kind, group) = split(qualified);
        ApiError::NotFound {
            message: format!("{qualified} \"{name}\" not found"),
            kind,
            name: name.into(),
            group,
        }
    }

    pub fn already_exists(qualified: &str, name: &str) -> Self {
        let (kind, group) = split(qualified);
        ApiError::AlreadyExists {
            message: format!("{qualified} \"{name}\" already exists"),
            kind,
            name: name.into(),
            group,
        }
    }

    pub fn conflict(qualified: &str, name: &str) -> Self {
        let (kind, group) = split(qualified);
        ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            kind,
            name: name.into(),
            group,
        }
    }

    /// Maps a store outcome for the object `qualified`/`name`.
    pub fn from_store(e: StoreError, qualified: &str, name: &str) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(qualified, name),
            StoreError::AlreadyExists => ApiError::already_exists(qualified, name),
            // A write that kept meeting key rotations is retried like one that lost a race.
            StoreError::Conflict | StoreError::StaleKey => ApiError::conflict(qualified, name),
            StoreError::Unavailable | StoreError::Busy => ApiError::Unavailable(e.to_string()),
            StoreError::Membership(m) => ApiError::BadRequest(m),
            StoreError::Timeout(_) | StoreError::LeaderChanged => ApiError::Timeout(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::Gone(_) => 410,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
            ApiError::Timeout(_) => 504,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::Gone(_) => "Expired",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Timeout(_) => "Timeout",
        }
    }

    /// The `Status` object sent to the client.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound {
                kind, name, group, ..
            }
            | ApiError::AlreadyExists {
                kind, name, group, ..
            }
            | ApiError::Conflict {
                kind, name, group, ..
            } => Some(details(kind, name, group, &[])),
            ApiError::Invalid {
                kind,
                name,
                group,
                causes,
                ..
            } => Some(details(kind, name, group, causes)),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn split(qualified: &str) -> (String, String) {
    match qualified.split_once('.') {
        Some((kind, group)) => (kind.into(), group.into()),
        None => (qualified.into(), String::new()),
    }
}

fn details(kind: &str, name: &str, group: &str, causes: &[Cause]) -> Value {
    let mut d = json!({ "name": name, "kind": kind });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    if !causes.is_empty() {
        d["causes"] = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status_matches_kubernetes() {
        let s = ApiError::not_found("pods", "nope").status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "pods \"nope\" not found");
        assert_eq!(s["details"]["kind"], "pods");
        assert!(s["details"].get("group").is_none());
    }

    #[test]
    fn group_is_split_from_qualified_resource() {
        let s = ApiError::already_exists("runtimeclasses.node.k8s.io", "w").status();
        assert_eq!(s["details"]["kind"], "runtimeclasses");
        assert_eq!(s["details"]["group"], "node.k8s.io");
        assert_eq!(s["code"], 409);
    }
}
