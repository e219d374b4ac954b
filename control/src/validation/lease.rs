//! Lease (coordination.k8s.io/v1): `ValidateLeaseSpec`'s rules on durations and counts.

use super::meta::{self, NameRule};
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    if let Some(d) = obj::get_i64(obj, &["spec", "leaseDurationSeconds"]).filter(|d| *d <= 0) {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            json!(d),
            "must be greater than 0",
        ));
    }
    if let Some(t) = obj::get_i64(obj, &["spec", "leaseTransitions"]).filter(|t| *t < 0) {
        errs.push(FieldError::invalid(
            "spec.leaseTransitions",
            json!(t),
            "must be greater than or equal to 0",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_durations_and_transitions() {
        let ok = json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "leaseTransitions": 0}});
        assert!(validate(&ok, None).is_empty());
        let bad = json!({"metadata": {"name": "n1"},
            "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        let got: Vec<String> = validate(&bad, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }
}
