//! The Job controller (Kubernetes' `job_controller.go`, NonIndexed completion): runs pods
//! until `completions` of them succeed, at most `parallelism` at a time; fails the Job
//! when more than `backoffLimit` pods failed (`BackoffLimitExceeded`) or it ran longer
//! than `activeDeadlineSeconds` (`DeadlineExceeded`); a failed pod is replaced after
//! Kubernetes' exponential back-off (10 s, doubling, at most 6 min); a finished Job is
//! deleted, with its pods, `ttlSecondsAfterFinished` after it finished (the TTL-after-
//! finished controller's part).
//!
//! Counts come from the Job's pods as they are (Kubernetes before its finalizer-based
//! tracking): finished pods are kept until the Job goes, so nothing is lost, but a
//! finished pod someone deletes by hand is no longer counted.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::owners::{self, being_deleted, claim_all};
use super::pods;
use super::replicaset::{self, is_pod_ready};
use super::runner::{self, Action};
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::{DeleteOptions, Propagation};
use crate::api::ApiError;
use crate::events::EventType;
use crate::obj;
use crate::selectors::LabelSelector;
use crate::store::revision_of;

/// The back-off before a failed pod is replaced: this, doubled per earlier failure.
const BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// One decision of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adopt a matching orphan, or release what stopped matching.
    Owner(owners::OwnerChange),
    CreatePods(usize),
    DeletePods(Vec<Arc<Value>>),
    /// A Warning or Normal event: (reason, message).
    Event(EventType, &'static str, &'static str),
    Status(Value),
    /// The TTL after finishing has passed.
    DeleteJob,
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub action: Action,
}

/// Why a Job fails, with the reason and message Kubernetes gives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    BackoffLimitExceeded,
    DeadlineExceeded,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "BackoffLimitExceeded",
            Failure::DeadlineExceeded => "DeadlineExceeded",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "Job has reached the specified backoff limit",
            Failure::DeadlineExceeded => "Job was active longer than specified deadline",
        }
    }
}

const COMPLETIONS_REACHED: &str = "CompletionsReached";
const COMPLETIONS_MESSAGE: &str = "Reached expected number of succeeded pods";

fn phase(pod: &Value) -> &str {
    obj::str_or_empty(pod, &["status", "phase"])
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The condition `kind` if it holds.
pub fn condition<'a>(job: &'a Value, kind: &str) -> Option<&'a Value> {
    obj::array(job, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

/// When the Job finished (`Complete` or `Failed`), if it has.
pub fn finished_at(job: &Value) -> Option<DateTime<Utc>> {
    ["Complete", "Failed"]
        .iter()
        .find_map(|k| condition(job, k))
        .map(|c| obj::get_time(c, &["lastTransitionTime"]).unwrap_or_default())
}

fn new_condition(kind: &str, reason: &str, message: &str, now: DateTime<Utc>) -> Value {
    json!({"type": kind, "status": "True", "lastProbeTime": stamp(now),
           "lastTransitionTime": stamp(now), "reason": reason, "message": message})
}

/// When a pod finished: its containers' latest termination, else its creation.
fn finished(pod: &Value) -> DateTime<Utc> {
    obj::array(pod, &["status", "containerStatuses"])
        .iter()
        .filter_map(|c| obj::get_time(c, &["state", "terminated", "finishedAt"]))
        .max()
        .or_else(|| obj::get_time(pod, &["metadata", "creationTimestamp"]))
        .unwrap_or_default()
}

/// Container restarts of active pods count as failures with `restartPolicy: OnFailure`
/// (`pastBackoffLimitOnFailure`).
fn restarts(pods: &[&Arc<Value>]) -> i64 {
    pods.iter()
        .flat_map(|p| {
            ["initContainerStatuses", "containerStatuses"]
                .iter()
                .flat_map(|k| obj::array(p, &["status", k]))
        })
        .filter_map(|c| obj::get_i64(c, &["restartCount"]))
        .sum()
}

/// Decides what to do about `job` given its namespace's pods (`syncJob`).
pub fn plan(job: &Value, pods: &[Arc<Value>], now: DateTime<Utc>) -> Plan {
    let mut changes = Vec::new();
    let mut action = Action::done();
    let selector =
        LabelSelector::from_json(obj::get(job, &["spec", "selector"]).unwrap_or(&Value::Null))
            .unwrap_or_else(|_| {
                LabelSelector::from_json(&Value::Null).expect("null selects nothing")
            });
    let claimed = claim_all(job, &selector, pods);
    changes.extend(claimed.changes.iter().cloned().map(Change::Owner));
    let owned = claimed.owned;
    let active: Vec<&Arc<Value>> = owned
        .iter()
        .filter(|p| !["Succeeded", "Failed"].contains(&phase(p)) && !being_deleted(p))
        .collect();
    let terminating = owned.iter().filter(|p| being_deleted(p)).count();
    let succeeded = owned.iter().filter(|p| phase(p) == "Succeeded").count();
    let failed_pods: Vec<&Arc<Value>> = owned.iter().filter(|p| phase(p) == "Failed").collect();
    let failed = failed_pods.len();
    let spec = |k: &str| obj::get_i64(job, &["spec", k]);
    let suspended = obj::bool_or_false(job, &["spec", "suspend"]);
    let mut status = job.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut conditions: Vec<Value> = obj::array(&status, &["conditions"]).to_vec();

    if let Some(done) = finished_at(job) {
        // Finished: only the TTL is left (and stray pods of a failed Job to stop).
        if !active.is_empty() {
            changes.push(Change::DeletePods(
                active.iter().map(|p| Arc::clone(p)).collect(),
            ));
        }
        if let Some(ttl) = spec("ttlSecondsAfterFinished") {
            let at = done + chrono::Duration::seconds(ttl);
            match (at - now).to_std() {
                Ok(wait) if !wait.is_zero() => action = Action::requeue(wait),
                _ => changes.push(Change::DeleteJob),
            }
        }
        return Plan { changes, action };
    }
    if being_deleted(job) {
        return Plan { changes, action };
    }

    let start = obj::get_time(job, &["status", "startTime"]).unwrap_or(now);
    if !suspended && status.get("startTime").is_none() {
        status["startTime"] = json!(stamp(now));
    }
    let backoff_limit = spec("backoffLimit").unwrap_or(6);
    let on_failure =
        obj::str_or_empty(job, &["spec", "template", "spec", "restartPolicy"]) == "OnFailure";
    let past_backoff = failed as i64 > backoff_limit
        || (on_failure && backoff_limit > 0 && restarts(&active) >= backoff_limit)
        || (on_failure && backoff_limit == 0 && restarts(&active) > 0);
    let deadline = spec("activeDeadlineSeconds")
        .filter(|_| !suspended)
        .map(|s| start + chrono::Duration::seconds(s));
    let failure = if past_backoff {
        Some(Failure::BackoffLimitExceeded)
    } else if deadline.is_some_and(|d| d <= now) {
        Some(Failure::DeadlineExceeded)
    } else {
        None
    };
    let completions = spec("completions");
    let parallelism = spec("parallelism").unwrap_or(1).max(0) as usize;
    let complete = match completions {
        Some(c) => succeeded as i64 >= c,
        // A work queue: done when one succeeded and none is left running.
        None => succeeded > 0 && active.is_empty(),
    };

    if let Some(f) = failure {
        // FailureTarget first; Failed once no pod of the Job runs any more.
        if condition(job, "FailureTarget").is_none() {
            conditions.push(new_condition("FailureTarget", f.reason(), f.message(), now));
            changes.push(Change::Event(EventType::Warning, f.reason(), f.message()));
        }
        if !active.is_empty() {
            changes.push(Change::DeletePods(
                active.iter().map(|p| Arc::clone(p)).collect(),
            ));
        } else if terminating == 0 {
            conditions.push(new_condition("Failed", f.reason(), f.message(), now));
        }
    } else if complete {
        if condition(job, "SuccessCriteriaMet").is_none() {
            conditions.push(new_condition(
                "SuccessCriteriaMet",
                COMPLETIONS_REACHED,
                COMPLETIONS_MESSAGE,
                now,
            ));
        }
        if !active.is_empty() {
            // Pods beyond the completions are no longer needed.
            changes.push(Change::DeletePods(
                active.iter().map(|p| Arc::clone(p)).collect(),
            ));
        } else if terminating == 0 {
            conditions.push(new_condition(
                "Complete",
                COMPLETIONS_REACHED,
                COMPLETIONS_MESSAGE,
                now,
            ));
            status["completionTime"] = json!(stamp(now));
            changes.push(Change::Event(
                EventType::Normal,
                "Completed",
                "Job completed",
            ));
        }
    } else {
        let want = if suspended {
            0
        } else {
            match completions {
                Some(c) => parallelism.min((c as usize).saturating_sub(succeeded)),
                None if succeeded > 0 => active.len(),
                None => parallelism,
            }
        };
        if active.len() > want {
            let mut extra: Vec<Arc<Value>> = active.iter().map(|p| Arc::clone(p)).collect();
            // Keep the oldest, ready ones.
            extra.sort_by_key(|p| {
                (
                    is_pod_ready(p),
                    std::cmp::Reverse(obj::get_time(p, &["metadata", "creationTimestamp"])),
                )
            });
            extra.truncate(active.len() - want);
            changes.push(Change::DeletePods(extra));
        } else if active.len() < want {
            let last_failure = failed_pods.iter().map(|p| finished(p)).max();
            let backoff = (failed > 0).then(|| {
                BACKOFF
                    .saturating_mul(1 << (failed - 1).min(16))
                    .min(MAX_BACKOFF)
            });
            let not_before = last_failure
                .zip(backoff)
                .map(|(t, b)| t + chrono::Duration::from_std(b).unwrap_or_default());
            match not_before.map(|t| (t - now).to_std()) {
                Some(Ok(wait)) if !wait.is_zero() => action = Action::requeue(wait),
                _ => changes.push(Change::CreatePods(want - active.len())),
            }
        }
        if let Some(wait) = deadline.and_then(|d| (d - now).to_std().ok()) {
            action = Action::requeue(action.requeue_after.map_or(wait, |a| a.min(wait)));
        }
    }

    // `Suspended` holds while the Job is suspended and turns False once it is resumed.
    let was_suspended = condition(job, "Suspended").is_some();
    if suspended != was_suspended {
        conditions.retain(|c| c["type"] != "Suspended");
        let mut c = if suspended {
            new_condition("Suspended", "JobSuspended", "Job suspended", now)
        } else {
            new_condition("Suspended", "JobResumed", "Job resumed", now)
        };
        if !suspended {
            c["status"] = json!("False");
        }
        conditions.push(c);
    }

    let counts = status.as_object_mut().expect("status is an object");
    set_count(counts, "active", active.len());
    set_count(counts, "succeeded", succeeded);
    set_count(counts, "failed", failed);
    counts.insert(
        "ready".into(),
        json!(active.iter().filter(|p| is_pod_ready(p)).count()),
    );
    counts.insert("terminating".into(), json!(terminating));
    counts.insert("uncountedTerminatedPods".into(), json!({}));
    if !conditions.is_empty() {
        counts.insert("conditions".into(), json!(conditions));
    }
    if Some(&status) != job.get("status") {
        changes.push(Change::Status(status));
    }
    Plan { changes, action }
}

/// Counts are `omitempty` in batch/v1.
fn set_count(status: &mut Map<String, Value>, key: &str, n: usize) {
    if n > 0 {
        status.insert(key.into(), json!(n));
    } else {
        status.remove(key);
    }
}

/// A pod for `job` from its template.
fn new_pod(job: &Value) -> Value {
    let template = obj::get(job, &["spec", "template"]).unwrap_or(&Value::Null);
    let mut meta = json!({
        "generateName": format!("{}-", obj::name(job)),
        "namespace": obj::namespace(job),
        "ownerReferences": [owners::controller_ref(job)],
    });
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = obj::get(template, &["metadata", k]) {
            meta[k] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let (api, caches) = (&ctx.api, &*ctx.caches);
    let Some(job) = caches.jobs.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let plan = plan(&job, &caches.pods.list(&key.namespace), Utc::now());
    let pods = caches.pods.resource();
    let ns = Some(key.namespace.as_str());
    let (mut pod_revision, mut job_revision) = (0, 0);
    for change in plan.changes {
        match change {
            Change::Owner(c) => pod_revision = pod_revision.max(c.write(api, pods, &job).await?),
            Change::CreatePods(n) => {
                let pod = new_pod(&job);
                for _ in 0..n {
                    let created = pods::create(ctx, &job, pod.clone()).await?;
                    pod_revision = pod_revision.max(revision_of(&created));
                }
            }
            Change::DeletePods(victims) => {
                for p in victims {
                    pod_revision = pod_revision.max(pods::delete(ctx, &job, &p).await?);
                }
            }
            Change::Event(kind, reason, message) => {
                ctx.events.record(&job, kind, reason, message).await
            }
            Change::Status(s) => {
                job_revision =
                    job_revision.max(replicaset::write_status(api, caches, &job, s).await?)
            }
            Change::DeleteJob => {
                let opts = DeleteOptions {
                    precondition_uid: Some(owners::uid(&job).to_string()),
                    propagation: Some(Propagation::Background),
                    ..Default::default()
                };
                match api
                    .delete(caches.jobs.resource(), ns, &key.name, &opts)
                    .await
                {
                    Ok((o, _)) => job_revision = job_revision.max(revision_of(&o)),
                    Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    caches.pods.caught_up(pod_revision).await;
    caches.jobs.caught_up(job_revision).await;
    Ok(plan.action)
}

pub async fn run(api: crate::api::Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let sources = owners::sources(&caches.jobs, &caches.pods);
    let ctx = Context::new(api, caches, "job-controller");
    runner::run("job", sources, |key| reconcile(&ctx, key)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controllers::test_now as now;

    fn job(spec: Value) -> Value {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid", "generation": 1},
            "spec": {"parallelism": 1, "backoffLimit": 6, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                     "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}},
            "status": {"startTime": "2024-01-01T00:00:00Z"}});
        for (k, v) in spec.as_object().into_iter().flatten() {
            j["spec"][k] = v.clone();
        }
        j
    }

    /// A pod of the Job in `phase`, finished (or created) at second `at` of the first minute.
    fn pod(name: &str, phase: &str, at: u32) -> Arc<Value> {
        let time = format!("2024-01-01T00:00:{at:02}Z");
        Arc::new(json!({"metadata": {"name": name, "namespace": "default",
                "labels": {"batch.kubernetes.io/controller-uid": "job-uid"}, "creationTimestamp": time,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid", "controller": true}]},
            "status": {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": 0,
                "state": if phase == "Failed" { json!({"terminated": {"finishedAt": time}}) } else { json!({}) }}]}}))
    }

    fn summary(p: &Plan) -> Vec<String> {
        p.changes
            .iter()
            .map(|c| match c {
                Change::Owner(c) => c.to_string(),
                Change::CreatePods(n) => format!("create {n}"),
                Change::DeletePods(ps) => format!(
                    "delete {}",
                    ps.iter()
                        .map(|p| obj::name(p))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Change::Event(_, reason, _) => format!("event {reason}"),
                Change::Status(s) => {
                    let kinds: Vec<&str> = obj::array(s, &["conditions"])
                        .iter()
                        .filter_map(|c| c["type"].as_str())
                        .collect();
                    let n = |k: &str| s[k].as_i64().unwrap_or(0);
                    format!(
                        "status active={} succeeded={} failed={} {}",
                        n("active"),
                        n("succeeded"),
                        n("failed"),
                        kinds.join(",")
                    )
                }
                Change::DeleteJob => "delete job".into(),
            })
            .collect()
    }

    #[test]
    fn plans_follow_sync_job() {
        let three = json!({"completions": 3, "parallelism": 2});
        type Case<'a> = (&'a str, Value, Vec<Arc<Value>>, Vec<&'a str>, Action);
        let done = Action::done();
        let cases: Vec<Case> = vec![
            (
                "start: parallelism pods",
                job(three.clone()),
                vec![],
                vec!["create 2", "status active=0 succeeded=0 failed=0 "],
                done,
            ),
            (
                "one succeeded: one left to run beside the running one",
                job(three.clone()),
                vec![pod("a", "Succeeded", 0), pod("b", "Running", 0)],
                vec!["create 1", "status active=1 succeeded=1 failed=0 "],
                done,
            ),
            (
                "all succeeded: complete",
                job(three.clone()),
                vec![
                    pod("a", "Succeeded", 0),
                    pod("b", "Succeeded", 0),
                    pod("c", "Succeeded", 0),
                ],
                vec![
                    "event Completed",
                    "status active=0 succeeded=3 failed=0 SuccessCriteriaMet,Complete",
                ],
                done,
            ),
            (
                "a failure waits out the back-off (10 s after it failed)",
                job(json!({})),
                vec![pod("a", "Failed", 55)],
                vec!["status active=0 succeeded=0 failed=1 "],
                Action::requeue(Duration::from_secs(5)),
            ),
            (
                "past the back-off: a new pod",
                job(json!({})),
                vec![pod("a", "Failed", 40)],
                vec!["create 1", "status active=0 succeeded=0 failed=1 "],
                done,
            ),
            (
                "more failures than the backoffLimit: the Job fails",
                job(json!({"backoffLimit": 1})),
                vec![pod("a", "Failed", 0), pod("b", "Failed", 20)],
                vec![
                    "event BackoffLimitExceeded",
                    "status active=0 succeeded=0 failed=2 FailureTarget,Failed",
                ],
                done,
            ),
            (
                "past the deadline: running pods are stopped first",
                job(json!({"activeDeadlineSeconds": 30})),
                vec![pod("a", "Running", 0)],
                vec![
                    "event DeadlineExceeded",
                    "delete a",
                    "status active=1 succeeded=0 failed=0 FailureTarget",
                ],
                done,
            ),
            (
                "before the deadline: looked at again when it passes",
                job(json!({"activeDeadlineSeconds": 90})),
                vec![pod("a", "Running", 0)],
                vec!["status active=1 succeeded=0 failed=0 "],
                Action::requeue(Duration::from_secs(30)),
            ),
            (
                "suspended: no pods",
                job(json!({"suspend": true})),
                vec![pod("a", "Running", 0)],
                vec!["delete a", "status active=1 succeeded=0 failed=0 Suspended"],
                done,
            ),
        ];
        for (what, job, pods, want, action) in cases {
            let got = plan(&job, &pods, now());
            assert_eq!(summary(&got), want, "{what}");
            assert_eq!(got.action, action, "{what}");
        }
    }

    #[test]
    fn a_finished_job_is_deleted_after_its_ttl() {
        let mut finished = job(json!({"ttlSecondsAfterFinished": 30}));
        finished["status"]["conditions"] = json!([{"type": "Complete", "status": "True", "lastTransitionTime": "2024-01-01T00:00:40Z"}]);
        let got = plan(&finished, &[pod("a", "Succeeded", 0)], now());
        assert_eq!(got.action, Action::requeue(Duration::from_secs(10)));
        assert!(got.changes.is_empty());
        let later = now() + chrono::Duration::seconds(10);
        assert_eq!(summary(&plan(&finished, &[], later)), vec!["delete job"]);
    }

    #[test]
    fn a_resumed_job_says_so_and_starts_pods() {
        let mut resumed = job(json!({}));
        resumed["status"]["conditions"] =
            json!([{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]);
        let got = plan(&resumed, &[], now());
        assert_eq!(summary(&got)[0], "create 1");
        let Some(Change::Status(s)) = got.changes.last() else {
            panic!("{:?}", got.changes)
        };
        assert_eq!(
            (&s["conditions"][0]["status"], &s["conditions"][0]["reason"]),
            (&json!("False"), &json!("JobResumed"))
        );
    }

    #[test]
    fn restarts_count_as_failures_with_on_failure() {
        let mut j = job(json!({"backoffLimit": 2}));
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        let mut restarting = (*pod("a", "Running", 0)).clone();
        restarting["status"]["containerStatuses"][0]["restartCount"] = json!(2);
        let got = summary(&plan(&j, &[Arc::new(restarting)], now()));
        assert_eq!(got[0], "event BackoffLimitExceeded", "{got:?}");
    }

    #[test]
    fn pods_come_from_the_template() {
        let p = new_pod(&job(json!({})));
        assert_eq!(p["metadata"]["generateName"], "pi-");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(p["spec"]["restartPolicy"], "Never");
    }
}
