//! apps/v1 Deployment and ReplicaSet: `ValidateDeploymentSpec`, `ValidateReplicaSetSpec`
//! and `ValidatePodTemplateSpecForReplicaSet`, with their update rules.

use super::meta::{self, NameRule};
use super::names::regex_error;
use super::{pod, FieldError};
use crate::controllers::cronjob::schedule::{self, Schedule, ScheduleError};
use crate::obj;
use crate::selectors::LabelSelector;
use serde_json::{json, Value};

const NONNEGATIVE: &str = "must be greater than or equal to 0";

pub fn validate_deployment(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = common(obj, old);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.extend(strategy(spec));
    if let Some(limit) = obj::get_i64(spec, &["revisionHistoryLimit"]) {
        nonnegative(&mut errs, "spec.revisionHistoryLimit", limit);
    }
    if let Some(deadline) = obj::get_i64(spec, &["progressDeadlineSeconds"]) {
        nonnegative(&mut errs, "spec.progressDeadlineSeconds", deadline);
        if deadline <= obj::get_i64(spec, &["minReadySeconds"]).unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                json!(deadline),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

pub fn validate_replicaset(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    common(obj, old)
}

/// `ValidateDaemonSetSpec`: the ReplicaSet rules and the update strategy.
pub fn validate_daemonset(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = common(obj, old);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    one_of(
        &mut errs,
        spec,
        &["updateStrategy", "type"],
        &["OnDelete", "RollingUpdate"],
    );
    errs
}

/// `spec.<path>` must be one of `allowed` (defaulting fills it in).
fn one_of(errs: &mut Vec<FieldError>, spec: &Value, path: &[&str], allowed: &[&str]) {
    let value = obj::str_or_empty(spec, path);
    if !allowed.contains(&value) {
        errs.push(FieldError::not_supported(
            format!("spec.{}", path.join(".")),
            json!(value),
            allowed,
        ));
    }
}

/// `ValidateStatefulSetSpec`: the ReplicaSet rules plus the pod management policy and the
/// update strategy. The template is checked with a volume per claim template, as its pods
/// get them, so containers may mount the claims.
pub fn validate_statefulset(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut with_claims = obj.clone();
    let claims: Vec<Value> = obj::array(obj, &["spec", "volumeClaimTemplates"])
        .iter()
        .map(
            |t| json!({"name": obj::name(t), "persistentVolumeClaim": {"claimName": obj::name(t)}}),
        )
        .collect();
    if let Some(spec) = with_claims
        .pointer_mut("/spec/template/spec")
        .filter(|_| !claims.is_empty())
    {
        let mut volumes = obj::array(spec, &["volumes"]).to_vec();
        volumes.extend(claims);
        spec["volumes"] = json!(volumes);
    }
    let mut errs = common(&with_claims, old);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    one_of(
        &mut errs,
        spec,
        &["podManagementPolicy"],
        &["OrderedReady", "Parallel"],
    );
    one_of(
        &mut errs,
        spec,
        &["updateStrategy", "type"],
        &["OnDelete", "RollingUpdate"],
    );
    if let Some(partition) = obj::get_i64(spec, &["updateStrategy", "rollingUpdate", "partition"]) {
        nonnegative(
            &mut errs,
            "spec.updateStrategy.rollingUpdate.partition",
            partition,
        );
    }
    errs
}

/// What Deployment and ReplicaSet share: the selected template (restarting `Always`),
/// replicas, minReadySeconds, and no activeDeadlineSeconds.
fn common(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = selected_template(obj, old, &["Always"]);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(replicas) = obj::get_i64(spec, &["replicas"]) {
        nonnegative(&mut errs, "spec.replicas", replicas);
    }
    if let Some(min_ready) = obj::get_i64(spec, &["minReadySeconds"]) {
        nonnegative(&mut errs, "spec.minReadySeconds", min_ready);
    }
    if obj::get(spec, &["template", "spec", "activeDeadlineSeconds"]).is_some() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errs
}

/// `ValidateJobSpec` and `ValidateJobUpdate` (the parts wkube's Jobs use): the selected
/// template restarting `OnFailure` or `Never`, nonnegative counts, and an immutable
/// template.
pub fn validate_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = selected_template(obj, old, &["OnFailure", "Never"]);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(v) = obj::get_i64(spec, &[field]) {
            nonnegative(&mut errs, &format!("spec.{field}"), v);
        }
    }
    if let Some(old) = old {
        let template = spec.get("template").unwrap_or(&Value::Null);
        if Some(template) != obj::get(old, &["spec", "template"]) {
            errs.push(FieldError::invalid(
                "spec.template",
                template.clone(),
                "field is immutable",
            ));
        }
    }
    errs
}

/// `ValidateCronJobCreate`/`Update` (the parts wkube's CronJobs use): the schedule and its
/// time zone, the concurrency policy, nonnegative limits, and the Job template's pods.
pub fn validate_cronjob(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    let name = obj::name(obj);
    // Job names add 11 characters (`-` and minutes since the epoch) and must fit 63.
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be no more than 52 characters",
        ));
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let time_zone = obj::get_str(spec, &["timeZone"]);
    let zone_ok = match time_zone.map(schedule::zone) {
        Some(Err(e)) => {
            errs.push(FieldError::invalid(
                "spec.timeZone",
                json!(time_zone),
                e.to_string(),
            ));
            false
        }
        _ => true,
    };
    match obj::str_or_empty(spec, &["schedule"]) {
        "" => errs.push(FieldError::required("spec.schedule", "")),
        text => {
            match Schedule::parse(text, time_zone) {
                // Reported on spec.timeZone already.
                Err(ScheduleError::TimeZone(_)) if !zone_ok => {}
                Err(e) => errs.push(FieldError::invalid(
                    "spec.schedule",
                    json!(text),
                    e.to_string(),
                )),
                Ok(_) => {}
            }
        }
    }
    one_of(
        &mut errs,
        spec,
        &["concurrencyPolicy"],
        &["Allow", "Forbid", "Replace"],
    );
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        if let Some(v) = obj::get_i64(spec, &[field]) {
            nonnegative(&mut errs, &format!("spec.{field}"), v);
        }
    }
    let job_spec = obj::get(spec, &["jobTemplate", "spec"]).unwrap_or(&Value::Null);
    // The Jobs' selectors are generated when they are created: none to match yet.
    let everything = LabelSelector::from_json(&json!({})).expect("{} selects everything");
    errs.extend(
        template(job_spec, &everything, &["OnFailure", "Never"])
            .into_iter()
            .map(|mut e| {
                e.field = format!("spec.jobTemplate.{}", e.field);
                e
            }),
    );
    errs
}

/// Metadata, the selector and the template it must select (with a restart policy of
/// `restart`), and the selector's immutability.
fn selected_template(obj: &Value, old: Option<&Value>, restart: &[&str]) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let selector_json = spec.get("selector").unwrap_or(&Value::Null);
    if selector_json.is_null() {
        errs.push(FieldError::required("spec.selector", ""));
    } else if obj::object(selector_json, &["matchLabels"]).is_none_or(|m| m.is_empty())
        && obj::array(selector_json, &["matchExpressions"]).is_empty()
    {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector_json.clone(),
            "empty selector is invalid for deployment",
        ));
    }
    match LabelSelector::from_json(selector_json) {
        Err(_) => errs.push(FieldError::invalid(
            "spec.selector",
            selector_json.clone(),
            "invalid label selector",
        )),
        Ok(selector) => errs.extend(template(spec, &selector, restart)),
    }
    if let Some(old) = old {
        let old_selector = obj::get(old, &["spec", "selector"]).unwrap_or(&Value::Null);
        if selector_json != old_selector {
            errs.push(FieldError::invalid(
                "spec.selector",
                selector_json.clone(),
                "field is immutable",
            ));
        }
    }
    errs
}

fn nonnegative(errs: &mut Vec<FieldError>, field: &str, value: i64) {
    if value < 0 {
        errs.push(FieldError::invalid(field, json!(value), NONNEGATIVE));
    }
}

/// `ValidatePodTemplateSpecForReplicaSet`, with the restart policies allowed.
fn template(spec: &Value, selector: &LabelSelector, restart: &[&str]) -> Vec<FieldError> {
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        return vec![FieldError::required("spec.template", "")];
    };
    let mut errs = Vec::new();
    let labels = obj::object(template, &["metadata", "labels"]);
    if !selector.is_empty() && !selector.matches(labels) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            json!(labels),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(meta::validate_labels(
        labels,
        "spec.template.metadata.labels",
    ));
    let pod_spec = template.get("spec").unwrap_or(&Value::Null);
    errs.extend(pod::validate_spec(pod_spec, "spec.template.spec"));
    let policy = obj::str_or_empty(pod_spec, &["restartPolicy"]);
    if !restart.contains(&policy) {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            json!(policy),
            restart,
        ));
    }
    errs
}

/// `ValidateDeploymentStrategy` and `ValidateRollingUpdateDeployment`.
fn strategy(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match obj::str_or_empty(strategy, &["type"]) {
        "Recreate" => {
            if rolling.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let Some(rolling) = rolling else {
                errs.push(FieldError::required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                ));
                return errs;
            };
            let path = "spec.strategy.rollingUpdate";
            let unavailable = rolling.get("maxUnavailable").unwrap_or(&Value::Null);
            let surge = rolling.get("maxSurge").unwrap_or(&Value::Null);
            errs.extend(int_or_percent(
                unavailable,
                &format!("{path}.maxUnavailable"),
            ));
            errs.extend(int_or_percent(surge, &format!("{path}.maxSurge")));
            if int_or_percent_value(unavailable) == Some(0)
                && int_or_percent_value(surge) == Some(0)
            {
                errs.push(FieldError::invalid(
                    format!("{path}.maxUnavailable"),
                    unavailable.clone(),
                    "may not be 0 when `maxSurge` is 0 as well",
                ));
            }
            if unavailable.is_string() && int_or_percent_value(unavailable).is_some_and(|v| v > 100)
            {
                errs.push(FieldError::invalid(
                    format!("{path}.maxUnavailable"),
                    unavailable.clone(),
                    "must not be greater than 100%",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.strategy",
            json!(other),
            &["Recreate", "RollingUpdate"],
        )),
    }
    errs
}

/// The number of an int or a `N%` string (its N), `None` when it is neither.
pub fn int_or_percent_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
        _ => None,
    }
}

/// `ValidatePositiveIntOrPercent`.
fn int_or_percent(v: &Value, path: &str) -> Vec<FieldError> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) if i >= 0 => vec![],
            _ => vec![FieldError::invalid(path, v.clone(), NONNEGATIVE)],
        },
        Value::String(s) => {
            let digits = s.strip_suffix('%').unwrap_or("");
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                vec![]
            } else {
                let msg = regex_error(
                    "a valid percent string must be a numeric string followed by an ending '%'",
                    "[0-9]+%",
                    &["1%", "93%"],
                );
                vec![FieldError::invalid(path, v.clone(), msg)]
            }
        }
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::defaults;

    fn deployment(spec: Value) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        json_patch::merge(&mut d["spec"], &spec);
        defaults::apply("Deployment", &mut d);
        d
    }

    #[test]
    fn deployment_rules_match_kubernetes_messages() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({}), vec![]),
            (
                json!({"replicas": -1}),
                vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                json!({"template": {"metadata": {"labels": {"app": "b"}}}}),
                vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"b\"}: `selector` does not match template `labels`"],
            ),
            (
                json!({"selector": null}),
                // A missing selector selects nothing, so the template does not match it
                // either: Kubernetes reports both.
                vec![
                    "spec.selector: Required value",
                    "spec.template.metadata.labels: Invalid value: {\"app\":\"a\"}: `selector` does not match template `labels`",
                ],
            ),
            (
                json!({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}),
                vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0 as well"],
            ),
            (
                json!({"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}}),
                vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"],
            ),
            (
                json!({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}),
                vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"],
            ),
            (
                json!({"minReadySeconds": 10, "progressDeadlineSeconds": 5}),
                vec!["spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"],
            ),
            (
                json!({"template": {"spec": {"restartPolicy": "Never"}}}),
                vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""],
            ),
        ];
        for (spec, want) in cases {
            let d = deployment(spec.clone());
            let got: Vec<String> = validate_deployment(&d, None)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, want, "spec {spec}");
        }
    }

    #[test]
    fn the_selector_is_immutable() {
        let old = deployment(json!({}));
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "a", "x": "y"}});
        new["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let errs = validate_replicaset(&new, Some(&old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].to_string().ends_with("field is immutable"));
    }
}
