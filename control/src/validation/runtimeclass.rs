//! RuntimeClass (node.k8s.io/v1): `handler` is a DNS-1123 label and immutable.

use super::meta::{self, NameRule};
use super::names::is_dns1123_label;
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    let handler = obj::str_or_empty(obj, &["handler"]);
    for msg in is_dns1123_label(handler) {
        errs.push(FieldError::invalid("handler", json!(handler), msg));
    }
    if let Some(old) = old {
        let old_handler = obj::str_or_empty(old, &["handler"]);
        if old_handler != handler {
            errs.push(FieldError::invalid(
                "handler",
                json!(handler),
                "field is immutable",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimeclass_table() {
        assert!(validate(
            &json!({"metadata": {"name": "wasm"}, "handler": "wasmtime"}),
            None
        )
        .is_empty());
        let e = validate(&json!({"metadata": {"name": "wasm"}}), None);
        assert_eq!(e.len(), 1);
        assert!(e[0]
            .to_string()
            .starts_with("handler: Invalid value: \"\": a lowercase RFC 1123 label"));
        let old = json!({"metadata": {"name": "wasm"}, "handler": "a"});
        let e = validate(
            &json!({"metadata": {"name": "wasm"}, "handler": "b"}),
            Some(&old),
        );
        assert_eq!(
            e[0].to_string(),
            "handler: Invalid value: \"b\": field is immutable"
        );
    }
}
