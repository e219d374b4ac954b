//! Node taints and pod tolerations: the matching rule (`ToleratesTaint`) and the taints the
//! node lifecycle controller manages, shared by the controllers and admission.

use serde_json::Value;

use crate::obj;

/// On a node whose Ready condition is False (the node says it is not ready).
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// On a node whose Ready condition is Unknown (the node stopped heartbeating).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// `ToleratesTaint`: an empty effect or key in the toleration matches any.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = obj::str_or_empty(toleration, &["effect"]);
    if !effect.is_empty() && effect != obj::str_or_empty(taint, &["effect"]) {
        return false;
    }
    let key = obj::str_or_empty(toleration, &["key"]);
    if !key.is_empty() && key != obj::str_or_empty(taint, &["key"]) {
        return false;
    }
    match obj::str_or_empty(toleration, &["operator"]) {
        "Exists" => true,
        "" | "Equal" => {
            obj::str_or_empty(toleration, &["value"]) == obj::str_or_empty(taint, &["value"])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toleration_matching_table() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoExecute"});
        let cases = [
            (json!({"operator": "Exists"}), true),
            (
                json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
                true,
            ),
            (json!({"key": "k", "value": "v"}), true),
            (
                json!({"key": "k", "operator": "Equal", "value": "w"}),
                false,
            ),
            (
                json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"key": "k", "operator": "Lt"}), false),
        ];
        for (toleration, want) in cases {
            assert_eq!(tolerates(&toleration, &taint), want, "{toleration}");
        }
    }
}
