//! Namespace: the name is a DNS-1123 label.

use super::meta::{self, NameRule};
use super::FieldError;
use serde_json::Value;

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    meta::validate(obj, old, NameRule::Dns1123Label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespace_names() {
        assert!(validate(&json!({"metadata": {"name": "team-a"}}), None).is_empty());
        let e = validate(&json!({"metadata": {"name": "a.b"}}), None);
        assert_eq!(
            e[0].to_string(),
            "metadata.name: Invalid value: \"a.b\": must not contain dots"
        );
    }
}
