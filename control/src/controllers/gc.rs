//! The garbage collector: deletes objects whose owners are all gone, and carries out the
//! deletion policies (`propagationPolicy`) through the finalizers the API server sets:
//!
//! - Background: the owner is gone at once; its dependents, now without an owner, are
//!   deleted here.
//! - Foreground (`foregroundDeletion`): the owner's dependents are deleted first; once none
//!   with `blockOwnerDeletion` is left, the finalizer is removed and the owner goes.
//! - Orphan (`orphan`): the owner's references are removed from its dependents, then the
//!   finalizer, and the dependents stay.
//!
//! Kubernetes' collector keeps a graph of every object; here the watch caches are the graph
//! (dependents are found by scanning an owner's namespace), which is plenty at this scale.

use std::sync::Arc;

use serde_json::{json, Value};

use super::owners::{being_deleted, owner_refs, uid};
use super::reflector::Cache;
use super::runner::{self, Action, Source};
use super::{Caches, ControllerError, Key};
use crate::api::objects::{
    DeleteOptions, Part, Propagation, FOREGROUND_FINALIZER, ORPHAN_FINALIZER,
};
use crate::api::resources::{self, ResourceInfo};
use crate::api::{Api, ApiError};
use crate::obj;

/// An object of any cached kind: the kind's qualified name and the object's key.
pub type GcKey = (String, Key);

fn key(res: &ResourceInfo, o: &Value) -> GcKey {
    (res.qualified(), Key::of(o))
}

fn has_finalizer(o: &Value, f: &str) -> bool {
    obj::array(o, &["metadata", "finalizers"])
        .iter()
        .any(|x| x == f)
}

/// What an owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    Present,
    /// Being deleted in the foreground: it waits for its dependents.
    WaitingForDependents,
    Absent,
}

/// What to do about an object given the state of each of its owners (`attemptToDeleteItem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Delete it, in the foreground if an owner waits on it (its own dependents go first).
    Delete(Propagation),
    /// Some owners are gone but not all: drop the references to those (by uid).
    DropReferences(Vec<String>),
}

pub fn verdict(owners: &[(String, OwnerState)]) -> Verdict {
    if owners.is_empty() {
        return Verdict::Keep;
    }
    let present = owners.iter().any(|(_, s)| *s == OwnerState::Present);
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    let absent: Vec<String> = owners
        .iter()
        .filter(|(_, s)| *s == OwnerState::Absent)
        .map(|(u, _)| u.clone())
        .collect();
    match (present, waiting) {
        (false, false) => Verdict::Delete(Propagation::Background),
        (false, true) => Verdict::Delete(Propagation::Foreground),
        (true, _) if !absent.is_empty() => Verdict::DropReferences(absent),
        (true, _) => Verdict::Keep,
    }
}

struct Collector {
    api: Api,
    caches: Arc<Caches>,
}

impl Collector {
    fn cache(&self, qualified: &str) -> Option<&Cache> {
        self.caches
            .all
            .iter()
            .find(|c| c.resource().qualified() == qualified)
    }

    /// Objects (of every cached kind) that name `owner` in their owner references.
    fn dependents(
        &self,
        owner_res: &ResourceInfo,
        owner: &Value,
    ) -> Vec<(&'static ResourceInfo, Arc<Value>)> {
        dependents_in(&self.caches.all, owner_res, owner)
    }

    /// The state of one owner reference of `dependent`. An owner missing from the cache is
    /// looked up in the store before it is called absent: the cache may lag behind an
    /// owner created just now.
    fn owner_state(
        &self,
        dependent_res: &ResourceInfo,
        dependent: &Value,
        r: &Value,
    ) -> Result<OwnerState, ControllerError> {
        let api_version = obj::str_or_empty(r, &["apiVersion"]);
        let Some(res) = resources::find_kind(api_version, obj::str_or_empty(r, &["kind"])) else {
            // A kind this server does not serve cannot be checked: keep the dependent.
            return Ok(OwnerState::Present);
        };
        if res.namespaced && !dependent_res.namespaced {
            return Ok(OwnerState::Absent);
        }
        let ns = res.namespaced.then(|| obj::namespace(dependent));
        let name = obj::str_or_empty(r, &["name"]);
        let cached = self
            .cache(&res.qualified())
            .and_then(|c| c.get(ns.unwrap_or_default(), name));
        let owner = match cached {
            Some(o) if uid(&o) == obj::str_or_empty(r, &["uid"]) => Some((*o).clone()),
            _ => match self.api.get(res, ns, name) {
                Ok(o) => Some(o),
                Err(ApiError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
        };
        Ok(match owner {
            Some(o) if uid(&o) != obj::str_or_empty(r, &["uid"]) => OwnerState::Absent,
            Some(o) if being_deleted(&o) && has_finalizer(&o, FOREGROUND_FINALIZER) => {
                OwnerState::WaitingForDependents
            }
            Some(_) => OwnerState::Present,
            None => OwnerState::Absent,
        })
    }

    async fn reconcile(&self, (qualified, key): GcKey) -> Result<Action, ControllerError> {
        let Some(cache) = self.cache(&qualified) else {
            return Ok(Action::done());
        };
        let Some(o) = cache.get(&key.namespace, &key.name) else {
            return Ok(Action::done());
        };
        let res = cache.resource();
        if being_deleted(&o) {
            if has_finalizer(&o, ORPHAN_FINALIZER) {
                self.orphan(res, &o).await?;
            } else if has_finalizer(&o, FOREGROUND_FINALIZER) {
                self.delete_dependents(res, &o).await?;
            }
            return Ok(Action::done());
        }
        let mut owners = Vec::new();
        for r in owner_refs(&o) {
            owners.push((
                obj::str_or_empty(r, &["uid"]).to_string(),
                self.owner_state(res, &o, r)?,
            ));
        }
        match verdict(&owners) {
            Verdict::Keep => {}
            Verdict::Delete(policy) => {
                let opts = DeleteOptions {
                    precondition_uid: Some(uid(&o).to_string()),
                    propagation: Some(policy),
                    ..Default::default()
                };
                tracing::debug!(kind = res.kind, name = obj::name(&o), ?policy, "collecting");
                self.delete(res, &o, &opts).await?;
            }
            Verdict::DropReferences(uids) => {
                self.edit(res, &o, |current| {
                    let kept: Vec<Value> = owner_refs(current)
                        .iter()
                        .filter(|r| !uids.iter().any(|u| r["uid"] == u.as_str()))
                        .cloned()
                        .collect();
                    (kept.len() != owner_refs(current).len()).then(|| {
                        let mut next = current.clone();
                        next["metadata"]["ownerReferences"] = json!(kept);
                        next
                    })
                })
                .await?;
            }
        }
        Ok(Action::done())
    }

    /// Orphan: every dependent loses its reference to `owner`, then the finalizer goes.
    async fn orphan(&self, res: &ResourceInfo, owner: &Value) -> Result<(), ControllerError> {
        let owner_uid = uid(owner).to_string();
        for (dep_res, dep) in self.dependents(res, owner) {
            self.edit(dep_res, &dep, |current| {
                let mut next = current.clone();
                let kept: Vec<Value> = owner_refs(current)
                    .iter()
                    .filter(|r| r["uid"] != owner_uid.as_str())
                    .cloned()
                    .collect();
                next["metadata"]["ownerReferences"] = json!(kept);
                Some(next)
            })
            .await?;
        }
        self.remove_finalizer(res, owner, ORPHAN_FINALIZER).await
    }

    /// Foreground: deletes the dependents not yet being deleted; once no dependent that
    /// blocks the owner is left, the finalizer goes.
    async fn delete_dependents(
        &self,
        res: &ResourceInfo,
        owner: &Value,
    ) -> Result<(), ControllerError> {
        let owner_uid = uid(owner);
        let mut blocked = false;
        for (dep_res, dep) in self.dependents(res, owner) {
            let blocks = owner_refs(&dep)
                .iter()
                .any(|r| r["uid"] == owner_uid && obj::bool_or_false(r, &["blockOwnerDeletion"]));
            blocked |= blocks;
            if being_deleted(&dep) {
                continue;
            }
            // A dependent with dependents of its own goes in the foreground too, so the
            // owner waits for the whole tree.
            let policy = if self.dependents(dep_res, &dep).is_empty() {
                Propagation::Background
            } else {
                Propagation::Foreground
            };
            let opts = DeleteOptions {
                precondition_uid: Some(uid(&dep).to_string()),
                propagation: Some(policy),
                ..Default::default()
            };
            self.delete(dep_res, &dep, &opts).await?;
        }
        if blocked {
            return Ok(());
        }
        self.remove_finalizer(res, owner, FOREGROUND_FINALIZER)
            .await
    }

    async fn remove_finalizer(
        &self,
        res: &ResourceInfo,
        o: &Value,
        finalizer: &str,
    ) -> Result<(), ControllerError> {
        self.edit(res, o, |current| {
            has_finalizer(current, finalizer).then(|| {
                let mut next = current.clone();
                let kept: Vec<Value> = obj::array(current, &["metadata", "finalizers"])
                    .iter()
                    .filter(|f| *f != finalizer)
                    .cloned()
                    .collect();
                next["metadata"]["finalizers"] = json!(kept);
                next
            })
        })
        .await
    }

    /// Read-modify-write of the latest `o` (if it is still the same object); `None` from
    /// `change` leaves it alone.
    async fn edit(
        &self,
        res: &ResourceInfo,
        o: &Value,
        change: impl Fn(&Value) -> Option<Value>,
    ) -> Result<(), ControllerError> {
        let want_uid = uid(o).to_string();
        let ns = res.namespaced.then(|| obj::namespace(o));
        let result = self
            .api
            .update_with(res, ns, obj::name(o), Part::Main, |current| {
                if uid(current) != want_uid {
                    return Ok(None);
                }
                Ok(change(current))
            })
            .await;
        match result {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(
        &self,
        res: &ResourceInfo,
        o: &Value,
        opts: &DeleteOptions,
    ) -> Result<(), ControllerError> {
        let ns = res.namespaced.then(|| obj::namespace(o));
        match self.api.delete(res, ns, obj::name(o), opts).await {
            Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn dependents_in(
    caches: &[Cache],
    owner_res: &ResourceInfo,
    owner: &Value,
) -> Vec<(&'static ResourceInfo, Arc<Value>)> {
    let owner_uid = uid(owner);
    let mut out = Vec::new();
    for cache in caches {
        let res = cache.resource();
        // A namespaced owner only has dependents in its namespace.
        let candidates = if owner_res.namespaced {
            if !res.namespaced {
                continue;
            }
            cache.list(obj::namespace(owner))
        } else {
            cache.all()
        };
        for c in candidates {
            if owner_refs(&c).iter().any(|r| r["uid"] == owner_uid) {
                out.push((res, c));
            }
        }
    }
    out
}

/// The keys a change of `o` (of kind `res`) concerns: `o` itself when it has owners or a
/// deletion finalizer to act on; its owners (a dependent that went may unblock them); and
/// its dependents when it is gone or going.
fn affected(caches: &[Cache], res: &'static ResourceInfo, o: &Value) -> Vec<GcKey> {
    let mut keys = Vec::new();
    let going = being_deleted(o);
    let gone = caches
        .iter()
        .find(|c| c.resource() == res)
        .and_then(|c| c.get(obj::namespace(o), obj::name(o)))
        .is_none_or(|now| uid(&now) != uid(o));
    if !owner_refs(o).is_empty()
        || (going && (has_finalizer(o, ORPHAN_FINALIZER) || has_finalizer(o, FOREGROUND_FINALIZER)))
    {
        keys.push(key(res, o));
    }
    for r in owner_refs(o) {
        if let Some(owner_res) = resources::find_kind(
            obj::str_or_empty(r, &["apiVersion"]),
            obj::str_or_empty(r, &["kind"]),
        ) {
            let ns = if owner_res.namespaced {
                obj::namespace(o)
            } else {
                ""
            };
            keys.push((
                owner_res.qualified(),
                Key::new(ns, obj::str_or_empty(r, &["name"])),
            ));
        }
    }
    if going || gone {
        for (dep_res, dep) in dependents_in(caches, res, o) {
            keys.push(key(dep_res, &dep));
        }
    }
    keys
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let sources = caches
        .all
        .iter()
        .map(|cache| {
            let (all, res) = (caches.all.clone(), cache.resource());
            Source {
                cache: cache.clone(),
                mapper: Arc::new(move |o: &Value| affected(&all, res, o)) as runner::Mapper<GcKey>,
            }
        })
        .collect();
    let collector = Collector { api, caches };
    runner::run("garbage-collector", sources, |key| collector.reconcile(key)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;

    #[test]
    fn verdicts_follow_attempt_to_delete_item() {
        let o = |states: &[OwnerState]| -> Vec<(String, OwnerState)> {
            states
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("u{i}"), *s))
                .collect()
        };
        let cases = [
            ("no owners", o(&[]), Verdict::Keep),
            ("owner present", o(&[Present]), Verdict::Keep),
            (
                "owner gone",
                o(&[Absent]),
                Verdict::Delete(Propagation::Background),
            ),
            (
                "owner waits for dependents",
                o(&[WaitingForDependents]),
                Verdict::Delete(Propagation::Foreground),
            ),
            (
                "one gone, one waiting",
                o(&[Absent, WaitingForDependents]),
                Verdict::Delete(Propagation::Foreground),
            ),
            (
                "one gone, one present",
                o(&[Absent, Present]),
                Verdict::DropReferences(vec!["u0".into()]),
            ),
        ];
        for (what, owners, want) in cases {
            assert_eq!(verdict(&owners), want, "{what}");
        }
    }
}
