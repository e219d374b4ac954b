//! Kubernetes validation rules as pure functions over an object's JSON.
//!
//! `validate` dispatches on the plural resource name to one module per kind; every rule
//! produces `FieldError`s rendered exactly like apimachinery's `field.Error`, because the
//! messages reach users verbatim (`kubectl` prints the Status message as is). Objects are
//! validated after defaulting, so an absent defaulted field (e.g. `restartPolicy`) is
//! treated as defaulted rather than reported as missing.

mod configmap;
mod downward;
mod event;
mod lease;
mod meta;
pub mod names;
mod namespace;
mod node;
mod pod;
mod quantity;
mod runtimeclass;
mod secret;
mod storage;
mod volume;
mod workload;

use serde_json::{json, Value};
use std::fmt;

pub use names::{is_dns1123_label, is_dns1123_subdomain};
pub use quantity::{parse_quantity, QuantityError};
pub use workload::int_or_percent_value;

/// apimachinery's `field.ErrorType`, limited to the ones wkube produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    NotSupported,
    NotFound,
    Duplicate,
    TooLong,
    Forbidden,
    TooMany,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` Kubernetes reports for this kind.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::NotFound => "FieldValueNotFound",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooMany => "FieldValueTooMany",
        }
    }

    /// The human phrase of `ErrorType.String()`.
    fn phrase(&self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::NotFound => "Not found",
            Self::Duplicate => "Duplicate value",
            Self::TooLong => "Too long",
            Self::Forbidden => "Forbidden",
            Self::TooMany => "Too many",
        }
    }
}

/// One validation failure, as apimachinery's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// The field path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The offending value; `None` omits it from the message (Required, Forbidden, TooLong
    /// never print it, like Go).
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }

    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value), detail)
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value), "")
    }

    pub fn not_found(field: impl Into<String>, value: Value) -> Self {
        Self::new(FieldErrorKind::NotFound, field, Some(value), "")
    }

    /// `field.NotSupported`: the detail lists the supported values, quoted, in the given order.
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(FieldErrorKind::NotSupported, field, Some(value), detail)
    }

    /// `field.TooLong` with a byte limit.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            format!("may not be more than {max_bytes} {unit}"),
        )
    }

    /// `field.TooMany`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self::new(
            FieldErrorKind::TooMany,
            field,
            Some(json!(actual)),
            format!("must have at most {max} {unit}"),
        )
    }

    fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// `ErrorBody()`: the message without the field path (used in `StatusCause.message`).
    pub fn body(&self) -> String {
        let mut s = self.kind.phrase().to_string();
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if shows_value {
            if let Some(v) = &self.value {
                s.push_str(": ");
                s.push_str(&go_value(v));
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The `StatusCause` object for `Status.details.causes`.
    pub fn status_cause(&self) -> Value {
        json!({"reason": self.kind.reason(), "message": self.body(), "field": self.field})
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Renders a bad value as `field.Error.ErrorBody` does: numbers and booleans bare, strings
/// Go-quoted, anything else as JSON.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Go's `strconv.Quote` for valid UTF-8, so messages match Kubernetes byte for byte.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `utilerrors.Aggregate.Error()` over a field error list: duplicates dropped, one error
/// bare, several in brackets.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut msgs: Vec<String> = Vec::new();
    for e in errors {
        let m = e.to_string();
        if !msgs.contains(&m) {
            msgs.push(m);
        }
    }
    match msgs.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The message of `errors.NewInvalid`: `Pod "x" is invalid: <errors>`. `kind` is the
/// qualified kind as Kubernetes prints it: bare for the core group (`Pod`), `Kind.group`
/// otherwise (`Deployment.apps`).
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    format!(
        "{kind} {} is invalid: {}",
        go_quote(name),
        aggregate_message(errors)
    )
}

/// The full 422 `Status` body Kubernetes returns for validation failures, for the HTTP layer.
/// `group` is `""` for the core group.
pub fn invalid_status(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Value {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let causes: Vec<Value> = errors.iter().map(FieldError::status_cause).collect();
    let mut details = json!({"name": name, "kind": kind, "causes": causes});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": invalid_message(&qualified, name, errors),
        "reason": "Invalid",
        "details": details,
        "code": 422
    })
}

/// Validates `obj` of the given plural resource; `old` is the stored object on update.
/// Unknown resources get the generic metadata rules only.
pub fn validate(resource: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match resource {
        "pods" => pod::validate(obj, old),
        "configmaps" => configmap::validate(obj, old),
        "secrets" => secret::validate(obj, old),
        "namespaces" => namespace::validate(obj, old),
        "nodes" => node::validate(obj, old),
        "events" => event::validate(obj, old),
        "runtimeclasses" => runtimeclass::validate(obj, old),
        "leases" => lease::validate(obj, old),
        "deployments" => workload::validate_deployment(obj, old),
        "replicasets" => workload::validate_replicaset(obj, old),
        "statefulsets" => workload::validate_statefulset(obj, old),
        "daemonsets" => workload::validate_daemonset(obj, old),
        "jobs" => workload::validate_job(obj, old),
        "cronjobs" => workload::validate_cronjob(obj, old),
        "services" => meta::validate(obj, old, meta::NameRule::Dns1035Label),
        "persistentvolumes" => storage::validate_volume(obj, old),
        "persistentvolumeclaims" => storage::validate_claim(obj, old),
        "storageclasses" => storage::validate_class(obj, old),
        _ => meta::validate(obj, old, meta::NameRule::Dns1123Subdomain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_apimachinery() {
        let cases: Vec<(FieldError, &str)> = vec![
            (
                FieldError::required("spec.containers[0].image", ""),
                "spec.containers[0].image: Required value",
            ),
            (
                FieldError::required("metadata.name", "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                FieldError::invalid("metadata.name", json!("Bad_Name"), "x"),
                "metadata.name: Invalid value: \"Bad_Name\": x",
            ),
            (
                FieldError::invalid("spec.containers[0].ports[0].containerPort", json!(70000), "must be between 1 and 65535, inclusive"),
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
            (
                FieldError::not_supported("spec.restartPolicy", json!("Sometimes"), &["Always", "OnFailure", "Never"]),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                FieldError::duplicate("spec.containers[1].name", json!("a")),
                "spec.containers[1].name: Duplicate value: \"a\"",
            ),
            (
                FieldError::not_found("spec.containers[0].volumeMounts[0].name", json!("v")),
                "spec.containers[0].volumeMounts[0].name: Not found: \"v\"",
            ),
            (FieldError::too_long("", 1048576), ": Too long: may not be more than 1048576 bytes"),
            (FieldError::forbidden("spec", "nope"), "spec: Forbidden: nope"),
            (FieldError::too_many("spec.x", 5, 1), "spec.x: Too many: 5: must have at most 1 item"),
            (
                FieldError::invalid("x", json!(["a", "b"]), "d"),
                "x: Invalid value: [\"a\",\"b\"]: d",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn go_quote_escapes_like_strconv() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }

    #[test]
    fn invalid_message_single_and_many() {
        let one = [FieldError::required("spec.containers", "")];
        assert_eq!(
            invalid_message("Pod", "x", &one),
            "Pod \"x\" is invalid: spec.containers: Required value"
        );
        let two = [
            FieldError::required("a", ""),
            FieldError::required("b", ""),
            FieldError::required("a", ""),
        ];
        assert_eq!(
            invalid_message("Pod", "x", &two),
            "Pod \"x\" is invalid: [a: Required value, b: Required value]"
        );
        let st = invalid_status("apps", "Deployment", "d", &one);
        assert_eq!(st["code"], 422);
        assert_eq!(
            st["message"],
            "Deployment.apps \"d\" is invalid: spec.containers: Required value"
        );
        assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(st["details"]["causes"][0]["message"], "Required value");
    }
}
