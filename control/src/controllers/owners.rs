//! Owner references: who controls an object, and how a controller claims the objects its
//! selector matches (`ControllerRefManager.ClaimObject`): adopt matching orphans, release
//! owned objects that stopped matching, leave other controllers' objects alone.

use std::sync::Arc;

use serde_json::{json, Value};

use super::reflector::Cache;
use super::runner::Source;
use super::{ControllerError, Key};
use crate::api::objects::Part;
use crate::api::resources::ResourceInfo;
use crate::api::{Api, ApiError};
use crate::obj;
use crate::selectors::LabelSelector;
use crate::store::revision_of;

pub fn uid(o: &Value) -> &str {
    obj::str_or_empty(o, &["metadata", "uid"])
}

pub fn being_deleted(o: &Value) -> bool {
    obj::get(o, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null())
}

pub fn owner_refs(o: &Value) -> &[Value] {
    obj::array(o, &["metadata", "ownerReferences"])
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(o: &Value) -> Option<&Value> {
    owner_refs(o)
        .iter()
        .find(|r| obj::bool_or_false(r, &["controller"]))
}

/// Whether `o`'s controller is the object with `owner_uid`.
pub fn controlled_by(o: &Value, owner_uid: &str) -> bool {
    controller_of(o).is_some_and(|r| obj::str_or_empty(r, &["uid"]) == owner_uid)
}

/// The controller reference a controller puts on what it creates or adopts.
pub fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": obj::name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// What claiming does to one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Owned and matching: the controller counts it.
    Owned,
    /// A matching orphan to adopt (then counted).
    Adopt,
    /// Owned but no longer matching: to release.
    Release,
    /// Someone else's, or nothing to do with this owner.
    Ignore,
}

/// `ClaimObject` for one candidate of `owner` (whose pods or ReplicaSets `selector` picks).
pub fn claim(owner: &Value, selector: &LabelSelector, candidate: &Value) -> Claim {
    let matches = selector.matches(obj::labels(candidate));
    match controller_of(candidate) {
        Some(r) if obj::str_or_empty(r, &["uid"]) != uid(owner) => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        Some(_) if being_deleted(owner) => Claim::Ignore,
        Some(_) => Claim::Release,
        None if matches && !being_deleted(owner) && !being_deleted(candidate) => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The objects in `cache` (in `o`'s namespace) whose selector matches `o`'s labels.
pub fn selecting(cache: &Cache, o: &Value) -> Vec<Key> {
    cache
        .list(obj::namespace(o))
        .iter()
        .filter(|owner| {
            LabelSelector::from_json(obj::get(owner, &["spec", "selector"]).unwrap_or(&Value::Null))
                .is_ok_and(|s| !s.is_empty() && s.matches(obj::labels(o)))
        })
        .map(|owner| Key::of(owner))
        .collect()
}

/// The owners (of `owners`' kind) a change of `o` concerns: its controller if of that
/// kind, or for an orphan every owner of its namespace that selects it (a candidate for
/// adoption).
pub fn owner_keys(owners: &Cache, o: &Value) -> Vec<Key> {
    match controller_of(o) {
        Some(r) if obj::str_or_empty(r, &["kind"]) == owners.resource().kind => {
            vec![Key::new(obj::namespace(o), obj::str_or_empty(r, &["name"]))]
        }
        Some(_) => vec![],
        None => selecting(owners, o),
    }
}

/// What a controller of `owners` over `owned` watches: an owner's change reconciles it,
/// an owned object's change its owners.
pub fn sources(owners: &Cache, owned: &Cache) -> Vec<Source<Key>> {
    let by_owner = owners.clone();
    vec![
        Source {
            cache: owners.clone(),
            mapper: Arc::new(|o: &Value| vec![Key::of(o)]),
        },
        Source {
            cache: owned.clone(),
            mapper: Arc::new(move |o: &Value| owner_keys(&by_owner, o)),
        },
    ]
}

/// The candidates `owner` controls after claiming, and the claims to write.
pub struct Claimed {
    /// Owned and matching, adoptions included.
    pub owned: Vec<Arc<Value>>,
    /// Adoptions first, then releases.
    pub changes: Vec<OwnerChange>,
}

/// A claim a controller's plan writes: adopt a matching orphan, or release an owned object
/// that stopped matching.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerChange {
    Adopt(Arc<Value>),
    Release(Arc<Value>),
}

impl OwnerChange {
    /// Writes the claim (see [`write_claim`]); returns the revision written, 0 if none.
    pub async fn write(
        &self,
        api: &Api,
        res: &ResourceInfo,
        owner: &Value,
    ) -> Result<u64, ControllerError> {
        match self {
            OwnerChange::Adopt(o) => write_claim(api, res, owner, o, true).await,
            OwnerChange::Release(o) => write_claim(api, res, owner, o, false).await,
        }
    }
}

impl std::fmt::Display for OwnerChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerChange::Adopt(o) => write!(f, "adopt {}", obj::name(o)),
            OwnerChange::Release(o) => write!(f, "release {}", obj::name(o)),
        }
    }
}

pub fn claim_all(owner: &Value, selector: &LabelSelector, candidates: &[Arc<Value>]) -> Claimed {
    let mut owned = Vec::new();
    let (mut adopt, mut release) = (Vec::new(), Vec::new());
    for c in candidates {
        match claim(owner, selector, c) {
            Claim::Owned => owned.push(c.clone()),
            Claim::Adopt => {
                owned.push(c.clone());
                adopt.push(OwnerChange::Adopt(c.clone()));
            }
            Claim::Release => release.push(OwnerChange::Release(c.clone())),
            Claim::Ignore => {}
        }
    }
    adopt.extend(release);
    Claimed {
        owned,
        changes: adopt,
    }
}

/// Adopts `o` for `owner` (adds the controller reference) or releases it (removes the
/// owner's reference); returns the revision written, 0 if nothing was. The latest version
/// is re-checked: an object that found another controller meanwhile, or that no longer
/// needs the change, is left alone.
async fn write_claim(
    api: &Api,
    res: &ResourceInfo,
    owner: &Value,
    o: &Value,
    adopt: bool,
) -> Result<u64, ControllerError> {
    let owner_uid = uid(owner);
    let result = api
        .update_with(
            res,
            Some(obj::namespace(o)),
            obj::name(o),
            Part::Main,
            |current| {
                let has_controller = controller_of(current).is_some();
                if (adopt && has_controller) || (!adopt && !controlled_by(current, owner_uid)) {
                    return Ok(None);
                }
                let mut refs: Vec<Value> = owner_refs(current)
                    .iter()
                    .filter(|r| obj::str_or_empty(r, &["uid"]) != owner_uid)
                    .cloned()
                    .collect();
                if adopt {
                    refs.push(controller_ref(owner));
                }
                let mut next = current.clone();
                next["metadata"]["ownerReferences"] = json!(refs);
                Ok(Some(next))
            },
        )
        .await;
    match result {
        Ok(written) => Ok(revision_of(&written)),
        Err(ApiError::NotFound { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(deleting: bool) -> Value {
        let mut o = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "uid": "u1"}});
        if deleting {
            o["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        o
    }

    fn pod(labels: Value, controller: Option<&str>) -> Value {
        let refs: Vec<Value> = controller
            .map(|u| json!({"uid": u, "controller": true, "kind": "ReplicaSet", "name": "x"}))
            .into_iter()
            .collect();
        json!({"metadata": {"name": "p", "labels": labels, "ownerReferences": refs}})
    }

    #[test]
    fn claims_follow_controller_ref_manager() {
        let sel = LabelSelector::from_json(&json!({"matchLabels": {"app": "a"}})).unwrap();
        let yes = json!({"app": "a"});
        let no = json!({"app": "b"});
        let cases = [
            (
                "owned and matching",
                false,
                pod(yes.clone(), Some("u1")),
                Claim::Owned,
            ),
            (
                "owned, stopped matching",
                false,
                pod(no.clone(), Some("u1")),
                Claim::Release,
            ),
            (
                "owned, stopped matching, owner going",
                true,
                pod(no.clone(), Some("u1")),
                Claim::Ignore,
            ),
            (
                "another controller's",
                false,
                pod(yes.clone(), Some("u2")),
                Claim::Ignore,
            ),
            (
                "matching orphan",
                false,
                pod(yes.clone(), None),
                Claim::Adopt,
            ),
            (
                "matching orphan, owner going",
                true,
                pod(yes.clone(), None),
                Claim::Ignore,
            ),
            ("orphan not matching", false, pod(no, None), Claim::Ignore),
        ];
        for (what, deleting, candidate, want) in cases {
            assert_eq!(claim(&owner(deleting), &sel, &candidate), want, "{what}");
        }
        let r = controller_ref(&owner(false));
        assert_eq!(r["blockOwnerDeletion"], true);
        assert_eq!(r["kind"], "ReplicaSet");
    }
}
