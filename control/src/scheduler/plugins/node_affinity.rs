//! Node selection by the pod (`NodeAffinity`): `spec.nodeSelector` and required node
//! affinity filter, preferred node affinity scores.

use serde_json::Value;

use super::{Fit, Unfit};
use crate::obj;

const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// One `NodeSelectorRequirement` against a node: labels for `matchExpressions`, the node's
/// fields (only `metadata.name`) for `matchFields`.
fn requirement_matches(req: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = obj::array(req, &["values"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match obj::str_or_empty(req, &["operator"]) {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => !value.is_some_and(|v| values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Gt and Lt compare integers; a label that is not one never matches.
        op @ ("Gt" | "Lt") => match (
            value.and_then(as_int),
            values.first().and_then(|v| as_int(v)),
        ) {
            (Some(v), Some(bound)) => {
                if op == "Gt" {
                    v > bound
                } else {
                    v < bound
                }
            }
            _ => false,
        },
        _ => false,
    }
}

/// A `NodeSelectorTerm`: all its requirements hold; a term with none matches nothing.
fn term_matches(term: &Value, node: &Value) -> bool {
    let expressions = obj::array(term, &["matchExpressions"]);
    let fields = obj::array(term, &["matchFields"]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let label = |key: &str| {
        obj::labels(node)
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    };
    let field = |key: &str| (key == "metadata.name").then(|| obj::name(node));
    expressions
        .iter()
        .all(|r| requirement_matches(r, label(obj::str_or_empty(r, &["key"]))))
        && fields
            .iter()
            .all(|r| requirement_matches(r, field(obj::str_or_empty(r, &["key"]))))
}

/// `spec.nodeSelector` and the required node affinity's terms (ORed) both hold.
pub fn selected(pod: &Value, node: &Value) -> bool {
    let labels = obj::labels(node);
    let by_selector = obj::object(pod, &["spec", "nodeSelector"])
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let required = obj::get(
        pod,
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
    );
    let by_affinity = required.is_none_or(|r| {
        obj::array(r, &["nodeSelectorTerms"])
            .iter()
            .any(|t| term_matches(t, node))
    });
    by_selector && by_affinity
}

pub fn filter(pod: &Value, node: &Value) -> Fit {
    if selected(pod, node) {
        Ok(())
    } else {
        Err(Unfit::unresolvable(REASON))
    }
}

/// Raw score: the sum of the weights of the preferred terms the node matches.
pub fn score(pod: &Value, node: &Value) -> i64 {
    obj::array(
        pod,
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ],
    )
    .iter()
    .filter(|p| obj::get(p, &["preference"]).is_some_and(|t| term_matches(t, node)))
    .map(|p| obj::get_i64(p, &["weight"]).unwrap_or(0))
    .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({"metadata": {"name": "n1", "labels": {"zone": "a", "gen": "5", "ssd": "true"}}})
    }

    fn required(terms: Value) -> Value {
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> Value {
        json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]})
    }

    #[test]
    fn filter_table() {
        let cases = [
            ("no constraints", json!({"spec": {}}), true),
            (
                "selector matches",
                json!({"spec": {"nodeSelector": {"zone": "a", "ssd": "true"}}}),
                true,
            ),
            (
                "selector misses",
                json!({"spec": {"nodeSelector": {"zone": "b"}}}),
                false,
            ),
            (
                "In",
                required(json!([expr("zone", "In", &["a", "b"])])),
                true,
            ),
            (
                "In misses",
                required(json!([expr("zone", "In", &["b"])])),
                false,
            ),
            (
                "NotIn",
                required(json!([expr("zone", "NotIn", &["b"])])),
                true,
            ),
            (
                "NotIn of a missing label",
                required(json!([expr("rack", "NotIn", &["b"])])),
                true,
            ),
            (
                "Exists",
                required(json!([expr("ssd", "Exists", &[])])),
                true,
            ),
            (
                "DoesNotExist",
                required(json!([expr("ssd", "DoesNotExist", &[])])),
                false,
            ),
            ("Gt", required(json!([expr("gen", "Gt", &["4"])])), true),
            (
                "Gt equal",
                required(json!([expr("gen", "Gt", &["5"])])),
                false,
            ),
            ("Lt", required(json!([expr("gen", "Lt", &["6"])])), true),
            (
                "Lt of a non-integer label",
                required(json!([expr("zone", "Lt", &["6"])])),
                false,
            ),
            (
                "terms are ORed",
                required(json!([
                    expr("zone", "In", &["b"]),
                    expr("gen", "In", &["5"])
                ])),
                true,
            ),
            (
                "an empty term matches nothing",
                required(json!([{}])),
                false,
            ),
            ("no terms match nothing", required(json!([])), false),
            (
                "matchFields metadata.name",
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
                ),
                true,
            ),
            (
                "matchFields other name",
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]),
                ),
                false,
            ),
            (
                "expressions and fields are ANDed",
                required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}], "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
                ),
                false,
            ),
        ];
        for (what, pod, fits) in cases {
            let got = filter(&pod, &node());
            assert_eq!(got.is_ok(), fits, "{what}");
            if let Err(u) = got {
                assert_eq!(
                    (u.reasons, u.resolvable),
                    (vec![REASON.to_string()], false),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn score_sums_matching_preferences() {
        let pod = |prefs: Value| json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": prefs}}}});
        let cases = [
            (json!([]), 0),
            (
                json!([{"weight": 10, "preference": expr("zone", "In", &["a"])}]),
                10,
            ),
            (
                json!([{"weight": 10, "preference": expr("zone", "In", &["a"])}, {"weight": 5, "preference": expr("ssd", "Exists", &[])}]),
                15,
            ),
            (
                json!([{"weight": 10, "preference": expr("zone", "In", &["b"])}, {"weight": 5, "preference": expr("ssd", "Exists", &[])}]),
                5,
            ),
        ];
        for (prefs, want) in cases {
            assert_eq!(score(&pod(prefs.clone()), &node()), want, "{prefs}");
        }
    }
}
