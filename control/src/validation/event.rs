//! core/v1 Event: `legacyValidateEvent` as applied to requests in version v1.

use super::meta::{self, NameRule};
use super::names::{is_dns1123_subdomain, is_qualified_name};
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    let ns = obj::namespace(obj);
    let involved_ns = obj::str_or_empty(obj, &["involvedObject", "namespace"]);
    let has_event_time = obj::get(obj, &["eventTime"]).is_some_and(|v| !v.is_null());
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            json!(involved_ns),
            "does not match event.namespace",
        )
    };
    if !has_event_time {
        if involved_ns.is_empty() {
            // Old clients put cluster-scoped objects' events in "default".
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let rc = obj::str_or_empty(obj, &["reportingComponent"]);
        if rc.is_empty() {
            errs.push(FieldError::required("reportingComponent", ""));
        }
        for msg in is_qualified_name(rc) {
            errs.push(FieldError::invalid("reportingComponent", json!(rc), msg));
        }
        for (field, limit) in [
            ("reportingInstance", REPORTING_INSTANCE_LIMIT),
            ("action", ACTION_LIMIT),
            ("reason", REASON_LIMIT),
        ] {
            let v = obj::str_or_empty(obj, &[field]);
            if v.is_empty() {
                errs.push(FieldError::required(field, ""));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(
                    field,
                    json!(""),
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if obj::str_or_empty(obj, &["message"]).len() > NOTE_LIMIT {
            errs.push(FieldError::invalid(
                "message",
                json!(""),
                format!("can have at most {NOTE_LIMIT} characters"),
            ));
        }
    }
    for msg in is_dns1123_subdomain(ns) {
        errs.push(FieldError::invalid("namespace", json!(ns), msg));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_table() {
        let ok = json!({"metadata": {"name": "e.1", "namespace": "default"}, "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p"}});
        assert!(validate(&ok, None).is_empty());
        let bad = json!({"metadata": {"name": "e.1", "namespace": "a"}, "involvedObject": {"namespace": "b"}});
        assert_eq!(
            validate(&bad, None)[0].to_string(),
            "involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"
        );
        let new_style = json!({"metadata": {"name": "e", "namespace": "default"}, "eventTime": "2024-01-01T00:00:00.000000Z", "involvedObject": {"namespace": "default"}});
        let got: Vec<String> = validate(&new_style, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            got.contains(&"reportingComponent: Required value".to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"action: Required value".to_string()));
    }
}
