//! Node: name, taints.

use super::meta::{self, NameRule};
use super::names::{is_qualified_name, is_valid_label_value};
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, t) in obj::array(obj, &["spec", "taints"]).iter().enumerate() {
        let p = format!("spec.taints[{i}]");
        let key = obj::str_or_empty(t, &["key"]);
        for msg in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{p}.key"), json!(key), msg));
        }
        let value = obj::str_or_empty(t, &["value"]);
        for msg in is_valid_label_value(value) {
            errs.push(FieldError::invalid(format!("{p}.value"), json!(value), msg));
        }
        let effect = obj::str_or_empty(t, &["effect"]);
        if effect.is_empty() {
            errs.push(FieldError::required(format!("{p}.effect"), ""));
        } else if !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                format!("{p}.effect"),
                json!(effect),
                &TAINT_EFFECTS,
            ));
        }
        let pair = (key.to_string(), effect.to_string());
        if seen.contains(&pair) {
            errs.push(FieldError::invalid(
                format!("{p}.effect"),
                json!(effect),
                "taints must be unique by key and effect pair",
            ));
        }
        seen.push(pair);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_taints() {
        let n = json!({"metadata": {"name": "n1"}, "spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"},
            {"key": "a", "effect": "NoSchedule"},
            {"key": "b", "effect": "Sometimes"}
        ]}});
        let got: Vec<String> = validate(&n, None).iter().map(ToString::to_string).collect();
        assert_eq!(got, vec![
            "spec.taints[1].effect: Invalid value: \"NoSchedule\": taints must be unique by key and effect pair",
            "spec.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        ]);
    }
}
