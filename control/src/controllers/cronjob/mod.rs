//! The CronJob controller (Kubernetes' `cronjob_controllerv2.go`): at each scheduled time
//! it creates a Job `<cronjob>-<scheduled time in minutes since the epoch>` from the
//! `jobTemplate`, unless suspended, too late (`startingDeadlineSeconds`), or a Job still
//! runs and `concurrencyPolicy` says Forbid (Replace deletes it first); it keeps the
//! `status.active` list, `lastScheduleTime` and `lastSuccessfulTime`, and deletes the
//! oldest finished Jobs beyond the history limits.
//!
//! The decision, [`plan`], takes the time as an argument, so it is tested at any instant
//! without waiting for one; [`schedule`] holds the cron parsing.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::job::{condition, finished_at};
use super::owners::{self, being_deleted, controlled_by, controller_of};
use super::replicaset;
use super::runner::{self, Action, Source};
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::{DeleteOptions, Propagation};
use crate::api::{Api, ApiError};
use crate::events::EventType;
use crate::obj;
use crate::store::revision_of;
use schedule::Schedule;

/// Beyond this many missed times the controller warns (`TooManyMissedTimes`).
const MISSED_LIMIT: usize = 100;
/// The annotation recording when a Job was scheduled (Kubernetes 1.28+).
const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// One decision of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Replace: a running Job to stop first.
    DeleteActive(Arc<Value>),
    CreateJob(Value),
    /// A finished Job beyond the history limits.
    DeleteOld(Arc<Value>),
    Event(EventType, &'static str, String),
    Status(Value),
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub action: Action,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The name of the Job for `scheduled` (`getJobName`).
pub fn job_name(cronjob: &Value, scheduled: DateTime<Utc>) -> String {
    format!("{}-{}", obj::name(cronjob), scheduled.timestamp() / 60)
}

/// The reference `status.active` holds for a Job.
fn active_ref(job: &Value) -> Value {
    json!({"kind": "Job", "namespace": obj::namespace(job), "name": obj::name(job),
           "uid": owners::uid(job), "apiVersion": "batch/v1",
           "resourceVersion": obj::str_or_empty(job, &["metadata", "resourceVersion"])})
}

/// The Job for `scheduled` from the template (`getJobFromTemplate2`).
fn new_job(cronjob: &Value, scheduled: DateTime<Utc>) -> Value {
    let template = obj::get(cronjob, &["spec", "jobTemplate"]).unwrap_or(&Value::Null);
    let mut annotations = obj::object(template, &["metadata", "annotations"])
        .cloned()
        .unwrap_or_default();
    annotations.insert(SCHEDULED_AT.into(), json!(stamp(scheduled)));
    let mut meta = json!({
        "name": job_name(cronjob, scheduled),
        "namespace": obj::namespace(cronjob),
        "annotations": annotations,
        "ownerReferences": [owners::controller_ref(cronjob)],
    });
    if let Some(labels) = obj::get(template, &["metadata", "labels"]) {
        meta["labels"] = labels.clone();
    }
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec})
}

/// Decides what to do about `cronjob` at `now`, given its namespace's Jobs (`syncCronJob`).
pub fn plan(cronjob: &Value, jobs: &[Arc<Value>], now: DateTime<Utc>) -> Plan {
    let mut changes = Vec::new();
    let owned: Vec<&Arc<Value>> = jobs
        .iter()
        .filter(|j| controlled_by(j, owners::uid(cronjob)))
        .collect();
    let running: Vec<&Arc<Value>> = owned
        .iter()
        .copied()
        .filter(|j| finished_at(j).is_none() && !being_deleted(j))
        .collect();
    let mut status = cronjob.get("status").cloned().unwrap_or_else(|| json!({}));
    let last_success = owned
        .iter()
        .filter(|j| condition(j, "Complete").is_some())
        .filter_map(|j| obj::get_time(j, &["status", "completionTime"]))
        .chain(obj::get_time(cronjob, &["status", "lastSuccessfulTime"]))
        .max();
    if let Some(t) = last_success {
        status["lastSuccessfulTime"] = json!(stamp(t));
    }
    let mut active: Vec<Value> = running.iter().map(|j| active_ref(j)).collect();
    let mut action = Action::done();

    let spec = |k: &str| obj::get(cronjob, &["spec", k]);
    let suspended = spec("suspend").and_then(Value::as_bool).unwrap_or(false);
    let parsed = Schedule::parse(
        obj::str_or_empty(cronjob, &["spec", "schedule"]),
        spec("timeZone").and_then(Value::as_str),
    );
    match parsed {
        _ if being_deleted(cronjob) || suspended => {}
        Err(e) => changes.push(Change::Event(
            EventType::Warning,
            "UnparseableSchedule",
            format!("unparseable schedule: {e}"),
        )),
        Ok(schedule) => {
            let mut earliest = obj::get_time(cronjob, &["status", "lastScheduleTime"])
                .or_else(|| obj::get_time(cronjob, &["metadata", "creationTimestamp"]))
                .unwrap_or(now);
            let deadline = spec("startingDeadlineSeconds").and_then(Value::as_i64);
            if let Some(d) = deadline {
                earliest = earliest.max(now - chrono::Duration::seconds(d));
            }
            let (scheduled, missed) = schedule.missed(earliest, now, MISSED_LIMIT);
            if missed > MISSED_LIMIT {
                changes.push(Change::Event(
                    EventType::Warning,
                    "TooManyMissedTimes",
                    format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
                ));
            }
            if let Some(at) = scheduled {
                let started = start(cronjob, &owned, &running, at);
                if started.iter().any(|c| matches!(c, Change::DeleteActive(_))) {
                    active.clear();
                }
                if started.iter().any(|c| matches!(c, Change::CreateJob(_))) {
                    status["lastScheduleTime"] = json!(stamp(at));
                }
                changes.extend(started);
            }
            // Look again just after the next time.
            if let Some(next) = schedule.next_after(now) {
                let wait = (next - now).to_std().unwrap_or_default();
                action = Action::requeue(wait + Duration::from_millis(100));
            }
        }
    }
    changes.extend(old_jobs(cronjob, &owned).into_iter().map(Change::DeleteOld));
    status["active"] = json!(active);
    if active.is_empty() {
        status.as_object_mut().map(|s| s.remove("active"));
    }
    if Some(&status) != cronjob.get("status") {
        changes.push(Change::Status(status));
    }
    Plan { changes, action }
}

/// The Job for the scheduled time `at`, as the concurrency policy allows. (`at` is never
/// past the starting deadline: the search for it starts no earlier than the deadline.)
fn start(
    cronjob: &Value,
    owned: &[&Arc<Value>],
    running: &[&Arc<Value>],
    at: DateTime<Utc>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let name = job_name(cronjob, at);
    if owned.iter().any(|j| obj::name(j) == name) {
        return changes;
    }
    match obj::str_or_empty(cronjob, &["spec", "concurrencyPolicy"]) {
        "Forbid" if !running.is_empty() => {
            let msg = "Not starting job because prior execution is running and concurrency policy is Forbid".to_string();
            changes.push(Change::Event(EventType::Normal, "JobAlreadyActive", msg));
            return changes;
        }
        "Replace" => {
            changes.extend(running.iter().map(|j| Change::DeleteActive(Arc::clone(j))));
        }
        _ => {}
    }
    changes.push(Change::CreateJob(new_job(cronjob, at)));
    changes
}

/// Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, oldest
/// first (`cleanupFinishedJobs`).
fn old_jobs(cronjob: &Value, owned: &[&Arc<Value>]) -> Vec<Arc<Value>> {
    let mut out = Vec::new();
    for (kind, field, default) in [
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ] {
        let limit = obj::get_i64(cronjob, &["spec", field])
            .unwrap_or(default)
            .max(0) as usize;
        let mut finished: Vec<&Arc<Value>> = owned
            .iter()
            .copied()
            .filter(|j| condition(j, kind).is_some() && !being_deleted(j))
            .collect();
        finished.sort_by_key(|j| {
            obj::get_time(j, &["status", "startTime"])
                .or_else(|| obj::get_time(j, &["metadata", "creationTimestamp"]))
        });
        let excess = finished.len().saturating_sub(limit);
        out.extend(finished.into_iter().take(excess).cloned());
    }
    out
}

async fn delete_job(api: &Api, caches: &Caches, job: &Value) -> Result<u64, ControllerError> {
    let opts = DeleteOptions {
        precondition_uid: Some(owners::uid(job).to_string()),
        propagation: Some(Propagation::Background),
        ..Default::default()
    };
    let res = caches.jobs.resource();
    match api
        .delete(res, Some(obj::namespace(job)), obj::name(job), &opts)
        .await
    {
        Ok((o, _)) => Ok(revision_of(&o)),
        Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let (api, caches) = (&ctx.api, &*ctx.caches);
    let Some(cronjob) = caches.cronjobs.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let plan = plan(&cronjob, &caches.jobs.list(&key.namespace), Utc::now());
    let (mut job_revision, mut cronjob_revision) = (0, 0);
    // The status goes last, with the Job created meanwhile in its active list.
    let mut status = None;
    let mut created = None;
    for change in plan.changes {
        match change {
            Change::DeleteActive(j) => {
                job_revision = job_revision.max(delete_job(api, caches, &j).await?);
                let msg = format!("Deleted job {}", obj::name(&j));
                ctx.events
                    .record(&cronjob, EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
            Change::DeleteOld(j) => {
                job_revision = job_revision.max(delete_job(api, caches, &j).await?);
                let msg = format!("Deleted job {}", obj::name(&j));
                ctx.events
                    .record(&cronjob, EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
            Change::CreateJob(j) => {
                let ns = Some(key.namespace.as_str());
                match api.create(caches.jobs.resource(), ns, j, false).await {
                    Ok(job) => {
                        job_revision = job_revision.max(revision_of(&job));
                        let msg = format!("Created job {}", obj::name(&job));
                        ctx.events
                            .record(&cronjob, EventType::Normal, "SuccessfulCreate", &msg)
                            .await;
                        created = Some(job);
                    }
                    // Created by an earlier pass the cache had not shown yet.
                    Err(ApiError::AlreadyExists { .. }) => {}
                    Err(e) => {
                        let msg = format!("Error creating job: {e}");
                        ctx.events
                            .record(&cronjob, EventType::Warning, "FailedCreate", &msg)
                            .await;
                        return Err(e.into());
                    }
                }
            }
            Change::Event(kind, reason, msg) => {
                ctx.events.record(&cronjob, kind, reason, &msg).await
            }
            Change::Status(s) => status = Some(s),
        }
    }
    if let Some(job) = &created {
        let s = status.get_or_insert_with(|| cronjob["status"].clone());
        let mut active: Vec<Value> = obj::array(s, &["active"]).to_vec();
        active.push(active_ref(job));
        s["active"] = json!(active);
    }
    caches.jobs.caught_up(job_revision).await;
    if let Some(s) = status {
        cronjob_revision = replicaset::write_status(api, caches, &cronjob, s).await?;
    }
    caches.cronjobs.caught_up(cronjob_revision).await;
    Ok(plan.action)
}

/// The CronJob controlling a Job.
fn owner_of_job(job: &Value) -> Vec<Key> {
    controller_of(job)
        .filter(|r| r["kind"] == "CronJob")
        .map(|r| Key::new(obj::namespace(job), obj::str_or_empty(r, &["name"])))
        .into_iter()
        .collect()
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let sources = vec![
        Source {
            cache: caches.cronjobs.clone(),
            mapper: Arc::new(|c: &Value| vec![Key::of(c)]),
        },
        Source {
            cache: caches.jobs.clone(),
            mapper: Arc::new(owner_of_job),
        },
    ];
    let ctx = Context::new(api, caches, "cronjob-controller");
    runner::run("cronjob", sources, |key| reconcile(&ctx, key)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// 2024-03-01 at `h:m:s` UTC.
    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, h, m, s)
            .single()
            .unwrap_or_default()
    }

    fn cronjob(spec: Value, last: Option<DateTime<Utc>>) -> Value {
        let mut c = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                         "creationTimestamp": "2024-03-01T09:00:30Z"},
            "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": "Allow",
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"app": "tick"}},
                                     "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}},
            "status": {}});
        for (k, v) in spec.as_object().into_iter().flatten() {
            c["spec"][k] = v.clone();
        }
        if let Some(t) = last {
            c["status"]["lastScheduleTime"] = json!(stamp(t));
        }
        c
    }

    /// A Job of the CronJob scheduled at `scheduled`, finished with `outcome` if any.
    fn job(scheduled: DateTime<Utc>, outcome: Option<&str>) -> Arc<Value> {
        let c = cronjob(json!({}), None);
        let mut j = new_job(&c, scheduled);
        j["metadata"]["uid"] = json!(format!("uid-{}", scheduled.timestamp()));
        j["status"] = json!({"startTime": stamp(scheduled)});
        if let Some(kind) = outcome {
            j["status"]["conditions"] = json!([{"type": kind, "status": "True",
                "lastTransitionTime": stamp(scheduled + chrono::Duration::seconds(5))}]);
            if kind == "Complete" {
                j["status"]["completionTime"] =
                    json!(stamp(scheduled + chrono::Duration::seconds(5)));
            }
        }
        Arc::new(j)
    }

    fn summary(p: &Plan) -> Vec<String> {
        p.changes
            .iter()
            .map(|c| match c {
                Change::DeleteActive(j) => format!("replace {}", obj::name(j)),
                Change::CreateJob(j) => format!("create {}", obj::name(j)),
                Change::DeleteOld(j) => format!("delete {}", obj::name(j)),
                Change::Event(_, reason, _) => format!("event {reason}"),
                Change::Status(s) => format!(
                    "status last={} active={}",
                    s["lastScheduleTime"].as_str().unwrap_or("-"),
                    obj::array(s, &["active"]).len()
                ),
            })
            .collect()
    }

    #[test]
    fn plans_follow_sync_cron_job() {
        let t10 = at(10, 0, 0);
        let minute = |m: u32| at(10, m, 0);
        let name = |m: u32| format!("tick-{}", minute(m).timestamp() / 60);
        type Case = (
            &'static str,
            Value,
            Vec<Arc<Value>>,
            DateTime<Utc>,
            Vec<String>,
        );
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: Vec<Case> = vec![
            (
                "nothing due yet",
                cronjob(json!({}), Some(t10)),
                vec![],
                at(10, 0, 30),
                vec![],
            ),
            (
                "due: a Job named after the minute",
                cronjob(json!({}), Some(t10)),
                vec![],
                at(10, 1, 2),
                vec![
                    format!("create {}", name(1)),
                    "status last=2024-03-01T10:01:00Z active=0".into(),
                ],
            ),
            (
                "already created for that time",
                cronjob(json!({}), Some(t10)),
                vec![job(minute(1), None)],
                at(10, 1, 2),
                s(&["status last=2024-03-01T10:00:00Z active=1"]),
            ),
            (
                "forbid: not while one runs",
                cronjob(json!({"concurrencyPolicy": "Forbid"}), Some(t10)),
                vec![job(t10, None)],
                at(10, 1, 2),
                s(&[
                    "event JobAlreadyActive",
                    "status last=2024-03-01T10:00:00Z active=1",
                ]),
            ),
            (
                "replace: the running one goes",
                cronjob(json!({"concurrencyPolicy": "Replace"}), Some(t10)),
                vec![job(t10, None)],
                at(10, 1, 2),
                vec![
                    format!("replace {}", name(0)),
                    format!("create {}", name(1)),
                    "status last=2024-03-01T10:01:00Z active=0".into(),
                ],
            ),
            (
                "suspended: nothing",
                cronjob(json!({"suspend": true}), Some(t10)),
                vec![],
                at(10, 5, 0),
                vec![],
            ),
            (
                "too late for the deadline: skipped",
                cronjob(json!({"startingDeadlineSeconds": 10}), Some(t10)),
                vec![],
                at(10, 1, 30),
                vec![],
            ),
            (
                "missed several: only the latest runs",
                cronjob(json!({}), Some(t10)),
                vec![],
                at(10, 4, 10),
                vec![
                    format!("create {}", name(4)),
                    "status last=2024-03-01T10:04:00Z active=0".into(),
                ],
            ),
            (
                "history: the oldest finished beyond the limits go",
                cronjob(json!({}), Some(minute(5))),
                vec![
                    job(minute(1), Some("Complete")),
                    job(minute(2), Some("Failed")),
                    job(minute(3), Some("Complete")),
                    job(minute(4), Some("Failed")),
                    job(minute(5), Some("Complete")),
                    job(at(9, 59, 0), Some("Complete")),
                ],
                at(10, 5, 30),
                vec![
                    format!("delete tick-{}", at(9, 59, 0).timestamp() / 60),
                    format!("delete {}", name(2)),
                    "status last=2024-03-01T10:05:00Z active=0".into(),
                ],
            ),
            (
                "an unparseable schedule is reported",
                cronjob(json!({"schedule": "every minute"}), Some(t10)),
                vec![],
                at(10, 1, 0),
                s(&["event UnparseableSchedule"]),
            ),
        ];
        for (what, c, jobs, now, want) in cases {
            let got = plan(&c, &jobs, now);
            assert_eq!(summary(&got), want, "{what}");
        }
    }

    #[test]
    fn time_zones_and_requeues() {
        // 09:00 in New York (EST) is 14:00 UTC.
        let c = cronjob(
            json!({"schedule": "0 9 * * *", "timeZone": "America/New_York"}),
            Some(at(0, 0, 0)),
        );
        let got = plan(&c, &[], at(14, 0, 1));
        assert_eq!(
            summary(&got)[0],
            format!("create tick-{}", at(14, 0, 0).timestamp() / 60)
        );
        let quiet = plan(&c, &[], at(13, 0, 0));
        assert_eq!(
            quiet.action,
            Action::requeue(Duration::from_millis(3_600_100))
        );
    }

    #[test]
    fn jobs_come_from_the_template() {
        let c = cronjob(json!({}), None);
        let j = new_job(&c, at(10, 1, 0));
        assert_eq!(
            j["metadata"]["name"],
            format!("tick-{}", at(10, 1, 0).timestamp() / 60)
        );
        assert_eq!(j["metadata"]["labels"]["app"], "tick");
        assert_eq!(
            j["metadata"]["annotations"][SCHEDULED_AT],
            "2024-03-01T10:01:00Z"
        );
        assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
        let success = job(at(10, 1, 0), Some("Complete"));
        let got = plan(
            &cronjob(json!({}), Some(at(10, 1, 0))),
            &[success],
            at(10, 1, 30),
        );
        let Some(Change::Status(s)) = got.changes.last() else {
            panic!("{:?}", got.changes)
        };
        assert_eq!(s["lastSuccessfulTime"], "2024-03-01T10:01:05Z");
    }
}
