//! The generic resource logic behind every REST verb: defaulting, validation, metadata
//! rules, optimistic concurrency, graceful deletion, finalizers and watches. The HTTP layer
//! and the in-process node client both call this; neither touches the store directly.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::admission::{self, DefaultTolerationSeconds};
use super::defaults;
use super::errors::{ApiError, Cause};
use super::resources::{self, ResourceInfo};
use crate::patch::{self, PatchType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{revision_of, Event, EventKind, Op, Store, StoreError};
use crate::validation;

/// How often an update that lost a race is retried against the latest object before the
/// conflict is reported (apiserver's GuaranteedUpdate does the same).
const UPDATE_RETRIES: usize = 8;

#[derive(Clone)]
pub struct Api {
    store: Store,
    tolerations: DefaultTolerationSeconds,
}

#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    /// Watch start: `None`/`Some(0)` = current state first (synthetic ADDED), then changes.
    pub resource_version: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<u64>,
    pub dry_run: bool,
    /// What happens to the object's dependents; `None` leaves finalizers as they are
    /// (dependents are collected in the background).
    pub propagation: Option<Propagation>,
}

/// `propagationPolicy`: how the garbage collector treats the dependents of a deleted owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes now; the collector deletes dependents afterwards.
    Background,
    /// The owner stays (finalizer `foregroundDeletion`) until its blocking dependents are gone.
    Foreground,
    /// The owner stays (finalizer `orphan`) until its dependents no longer name it.
    Orphan,
}

/// The finalizers the garbage collector acts on.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

impl Propagation {
    /// The policy of a DeleteOptions' `propagationPolicy` and deprecated `orphanDependents`
    /// (`ValidateDeleteOptions`: at most one of them, a known policy).
    pub fn from_options(
        policy: Option<&str>,
        orphan_dependents: Option<bool>,
    ) -> Result<Option<Self>, ApiError> {
        let invalid =
            |e: validation::FieldError| invalid_kind("DeleteOptions", "meta.k8s.io", "", &[e]);
        match (policy, orphan_dependents) {
            (Some(p), Some(_)) => Err(invalid(validation::FieldError::invalid(
                "propagationPolicy",
                json!(p),
                "orphanDependents and deletionPropagation cannot be both set",
            ))),
            (Some("Background"), None) => Ok(Some(Self::Background)),
            (Some("Foreground"), None) => Ok(Some(Self::Foreground)),
            (Some("Orphan"), None) => Ok(Some(Self::Orphan)),
            (Some(other), None) => Err(invalid(validation::FieldError::not_supported(
                "propagationPolicy",
                json!(other),
                &["Foreground", "Background", "Orphan", "nil"],
            ))),
            (None, Some(true)) => Ok(Some(Self::Orphan)),
            (None, Some(false)) => Ok(Some(Self::Background)),
            (None, None) => Ok(None),
        }
    }

    /// `obj`'s finalizers after a delete with this policy (`deletionFinalizersForGarbageCollection`):
    /// the policy's finalizer added, the other one dropped.
    fn finalizers(self, obj: &Value) -> Vec<Value> {
        let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        finalizers.retain(|f| f != FOREGROUND_FINALIZER && f != ORPHAN_FINALIZER);
        match self {
            Self::Background => {}
            Self::Foreground => finalizers.push(json!(FOREGROUND_FINALIZER)),
            Self::Orphan => finalizers.push(json!(ORPHAN_FINALIZER)),
        }
        finalizers
    }
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object itself: status changes are ignored for kinds with a status subresource.
    Main,
    /// The `status` subresource: only status changes are kept.
    Status,
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn has_status_subresource(res: &ResourceInfo) -> bool {
    res.subresources.contains(&"status")
}

fn invalid(res: &ResourceInfo, name: &str, errors: &[validation::FieldError]) -> ApiError {
    invalid_kind(res.kind, res.group, name, errors)
}

/// The 422 for `errors` found in an object of `kind` in `group` (messages name the kind
/// qualified by its group, `Deployment.apps`, as Kubernetes does).
pub fn invalid_kind(
    kind: &str,
    group: &str,
    name: &str,
    errors: &[validation::FieldError],
) -> ApiError {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    ApiError::Invalid {
        message: validation::invalid_message(&qualified, name, errors),
        kind: kind.into(),
        name: name.into(),
        group: group.into(),
        causes: errors
            .iter()
            .map(|e| Cause {
                reason: e.kind.reason().into(),
                message: e
                    .to_string()
                    .split_once(": ")
                    .map(|(_, m)| m.to_string())
                    .unwrap_or_else(|| e.to_string()),
                field: e.field.clone(),
            })
            .collect(),
    }
}

/// A random suffix for `generateName`, from the same alphabet Kubernetes uses (no vowels,
/// no confusable characters).
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl Api {
    pub fn new(store: Store) -> Self {
        Api {
            store,
            tolerations: DefaultTolerationSeconds::default(),
        }
    }

    /// The same API, giving new pods these default tolerations.
    pub fn with_default_tolerations(self, tolerations: DefaultTolerationSeconds) -> Self {
        Api {
            tolerations,
            ..self
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn read(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        self.store
            .get(&res.key(ns, name))
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    pub fn get(&self, res: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.read(res, ns, name)?
            .ok_or_else(|| ApiError::not_found(&res.qualified(), name))
    }

    pub fn list(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        if let Some(fs) = &opts.field_selector {
            fs.check_supported(res.plural)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        let (items, revision) = self
            .store
            .list(&res.prefix(ns))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let items = items.into_iter().filter(|o| matches(opts, o)).collect();
        Ok((items, revision))
    }

    /// The StorageClasses, for the DefaultStorageClass admission of claims.
    fn storage_classes(&self) -> Result<Vec<Value>, ApiError> {
        let classes = resources::find("storage.k8s.io", "v1", "storageclasses")
            .ok_or_else(|| ApiError::Internal("storageclasses unknown".into()))?;
        Ok(self.list(classes, None, &ListOptions::default())?.0)
    }

    fn check_namespace(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        let namespaces = resources::find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::Internal("namespaces unknown".into()))?;
        match self.read(namespaces, None, ns)? {
            None => Err(ApiError::not_found("namespaces", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::Forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                res.qualified()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Checks kind/apiVersion/namespace in a request body against the URL, filling them in.
    fn conform(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let Some(o) = obj.as_object_mut() else {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        };
        let api_version = res.api_version();
        match o.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != api_version => {
                return Err(ApiError::BadRequest(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )))
            }
            _ => {}
        }
        match o.get("kind").and_then(Value::as_str) {
            Some(k) if k != res.kind => {
                return Err(ApiError::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )))
            }
            _ => {}
        }
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(res.kind));
        let meta = o
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
        if res.namespaced {
            let url_ns = ns.unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != url_ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ))
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        check_bytes_fields(res.kind, obj)
    }

    pub async fn create(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.conform(res, ns, &mut obj)?;
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                name = format!("{prefix}{}", name_suffix());
                meta.insert("name".into(), json!(name));
            }
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if res.has_spec {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        defaults::apply(res.kind, &mut obj);
        self.tolerations.admit(res.kind, &mut obj);
        if res.kind == "Pod" {
            obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(&obj)});
        }
        if res.kind == "PersistentVolumeClaim" {
            admission::default_storage_class(&mut obj, &self.storage_classes()?);
            admission::protect_claim(&mut obj);
        }
        let errors = validation::validate(res.plural, &obj, None);
        if !errors.is_empty() {
            return Err(invalid(res, &name, &errors));
        }
        self.check_namespace(res, ns, &name)?;
        if dry_run {
            if self.read(res, ns, &name)?.is_some() {
                return Err(ApiError::already_exists(&res.qualified(), &name));
            }
            return Ok(obj);
        }
        self.store
            .write(Op::Create {
                key: res.key(ns, &name),
                object: obj,
            })
            .await
            .map_err(|e| ApiError::from_store(e, &res.qualified(), &name))
    }

    /// PUT: replaces the object (or its status), conditional on the body's resourceVersion
    /// when it carries one.
    pub async fn update(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.conform(res, ns, &mut obj)?;
        let body_name = name_of(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = revision_of(&obj);
        let current = self.get(res, ns, name)?;
        let expected = if precondition == 0 {
            revision_of(&current)
        } else {
            precondition
        };
        if expected != revision_of(&current) {
            return Err(ApiError::conflict(&res.qualified(), name));
        }
        self.commit_update(res, ns, name, current, obj, part, dry_run)
            .await
    }

    /// PATCH: applies a JSON, merge or strategic-merge patch to the latest object; retried
    /// against newer versions unless the patch itself pins a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        ty: PatchType,
        patch_body: &[u8],
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut attempt = 0;
        loop {
            let current = self.get(res, ns, name)?;
            let patched = patch::apply(res.kind, &current, patch_body, ty)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            // A resourceVersion in the patch is a precondition. One that names the current
            // version leaves the patched object's as it was; after a conflict, the retry
            // sees a newer current version and so fails here. Without one, conflicts with
            // concurrent writers (a node's status updates) are retried.
            let pinned = revision_of(&patched);
            if pinned != 0 && pinned != revision_of(&current) {
                return Err(ApiError::conflict(&res.qualified(), name));
            }
            match self
                .commit_update(res, ns, name, current, patched, part, dry_run)
                .await
            {
                Err(ApiError::Conflict { .. }) if attempt < UPDATE_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    /// Read-modify-write for internal callers (controllers, the node agent): `change` gets
    /// the latest object and returns the new one, or `None` to leave it as is.
    pub async fn update_with(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        part: Part,
        mut change: impl FnMut(&Value) -> Result<Option<Value>, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut attempt = 0;
        loop {
            let current = self.get(res, ns, name)?;
            let Some(new) = change(&current)? else {
                return Ok(current);
            };
            match self
                .commit_update(res, ns, name, current, new, part, false)
                .await
            {
                Err(ApiError::Conflict { .. }) if attempt < UPDATE_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_update(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        current: Value,
        mut obj: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.conform(res, ns, &mut obj)?;
        let expected = revision_of(&current);
        match part {
            Part::Status => {
                let status = obj.get("status").cloned();
                obj = current.clone();
                match status {
                    Some(s) => obj["status"] = s,
                    None => {
                        if let Some(o) = obj.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            Part::Main => {
                if has_status_subresource(res) {
                    match current.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(o) = obj.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
            }
        }
        // Metadata the server owns is kept from the stored object.
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match current["metadata"].get(k) {
                Some(v) => obj["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        defaults::apply(res.kind, &mut obj);
        self.tolerations.admit(res.kind, &mut obj);
        if res.has_spec && obj.get("spec") != current.get("spec") {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            obj["metadata"]["generation"] = json!(generation);
        }
        obj["metadata"]["resourceVersion"] = json!(expected.to_string());
        if obj == current {
            // Kubernetes skips no-op writes: same object, same resourceVersion. An object that
            // is already finalized (a crash came between its last update and its removal)
            // is removed now.
            if finalized(res, &current) && !dry_run {
                return self.remove(res, ns, name, Some(expected)).await;
            }
            return Ok(current);
        }
        let errors = validation::validate(res.plural, &obj, Some(&current));
        if !errors.is_empty() {
            return Err(invalid(res, name, &errors));
        }
        if dry_run {
            return Ok(obj);
        }
        let finished = finalized(res, &obj);
        let key = res.key(ns, name);
        let stored = self
            .store
            .write(Op::Update {
                key: key.clone(),
                object: obj,
                expected_revision: expected,
            })
            .await
            .map_err(|e| ApiError::from_store(e, &res.qualified(), name))?;
        if finished {
            return self.remove(res, ns, name, Some(revision_of(&stored))).await;
        }
        Ok(stored)
    }

    async fn remove(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        expected_revision: Option<u64>,
    ) -> Result<Value, ApiError> {
        self.store
            .write(Op::Delete {
                key: res.key(ns, name),
                expected_revision,
            })
            .await
            .map_err(|e| ApiError::from_store(e, &res.qualified(), name))
    }

    /// DELETE. Returns the object and whether it is gone already (`true`) or only marked
    /// for deletion (graceful pod termination, finalizers, namespaces): Kubernetes answers
    /// 200 for the former and 202 for the latter.
    pub async fn delete(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        if res.kind == "Namespace" && PERMANENT_NAMESPACES.contains(&name) {
            return Err(ApiError::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let mut attempt = 0;
        loop {
            let current = self.get(res, ns, name)?;
            if let Some(uid) = &opts.precondition_uid {
                if current["metadata"]["uid"].as_str() != Some(uid) {
                    return Err(ApiError::Conflict {
                        message: format!(
                            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            res.qualified(),
                            current["metadata"]["uid"].as_str().unwrap_or_default()
                        ),
                        kind: res.plural.into(),
                        name: name.into(),
                        group: res.group.into(),
                    });
                }
            }
            if let Some(rv) = opts.precondition_resource_version {
                if rv != revision_of(&current) {
                    return Err(ApiError::conflict(&res.qualified(), name));
                }
            }
            // The policy becomes finalizers the garbage collector acts on; a later delete
            // of an object being deleted may change them (Kubernetes allows that too).
            let mut current = current;
            let mut finalizers_changed = false;
            if let Some(policy) = opts.propagation {
                let finalizers = policy.finalizers(&current);
                finalizers_changed = current["metadata"]["finalizers"]
                    .as_array()
                    .map_or(!finalizers.is_empty(), |f| *f != finalizers);
                if finalizers_changed {
                    current["metadata"]["finalizers"] = json!(finalizers);
                }
            }
            let result = match deletion_plan(res, &current, opts.grace_period_seconds) {
                DeletionPlan::Now => {
                    if opts.dry_run {
                        return Ok((current, true));
                    }
                    self.remove(res, ns, name, Some(revision_of(&current)))
                        .await
                        .map(|o| (o, true))
                }
                DeletionPlan::Mark { grace } => {
                    let mut marked = current.clone();
                    let meta = &mut marked["metadata"];
                    let already = meta.get("deletionTimestamp").is_some();
                    let shorter = meta["deletionGracePeriodSeconds"]
                        .as_i64()
                        .is_none_or(|g| grace < g);
                    if already && !shorter && !finalizers_changed {
                        return Ok((current, false));
                    }
                    if !already || shorter {
                        let at = Utc::now() + chrono::Duration::seconds(grace);
                        meta["deletionTimestamp"] =
                            json!(at.to_rfc3339_opts(SecondsFormat::Secs, true));
                        meta["deletionGracePeriodSeconds"] = json!(grace);
                    }
                    if res.kind == "Namespace" {
                        marked["status"]["phase"] = json!("Terminating");
                    }
                    if opts.dry_run {
                        return Ok((marked, false));
                    }
                    self.store
                        .write(Op::Update {
                            key: res.key(ns, name),
                            object: marked,
                            expected_revision: revision_of(&current),
                        })
                        .await
                        .map_err(|e| ApiError::from_store(e, &res.qualified(), name))
                        .map(|o| (o, false))
                }
            };
            match result {
                Err(ApiError::Conflict { .. }) if attempt < UPDATE_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    /// Changes to objects of `res` (in `ns`, if given) that match `opts`.
    pub fn watch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        opts: ListOptions,
    ) -> Result<Watch, ApiError> {
        let (initial, from) = match opts.resource_version {
            None | Some(0) => {
                let (items, rev) = self.list(res, ns, &opts)?;
                (items, rev)
            }
            Some(rv) => {
                if let Some(fs) = &opts.field_selector {
                    fs.check_supported(res.plural)
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                }
                (Vec::new(), rv)
            }
        };
        let prefix = res.prefix(ns);
        match self.store.watch(from) {
            Ok(sub) => Ok(Watch {
                store: self.store.clone(),
                initial: initial.into(),
                backlog: sub.backlog.into(),
                live: Some(sub.live),
                prefix,
                opts: Box::new(opts),
                expired: None,
            }),
            Err(e) => Ok(Watch {
                store: self.store.clone(),
                initial: VecDeque::new(),
                backlog: VecDeque::new(),
                live: None,
                prefix,
                opts: Box::new(opts),
                expired: Some(e.to_string()),
            }),
        }
    }
}

/// `[]byte` fields travel as base64; Kubernetes refuses a body whose bytes do not decode
/// while decoding it, before defaulting or validation (Go's `CorruptInputError` offsets).
fn check_bytes_fields(kind: &str, obj: &Value) -> Result<(), ApiError> {
    use base64::{DecodeError, Engine as _};
    let field = match kind {
        "Secret" => "data",
        "ConfigMap" => "binaryData",
        _ => return Ok(()),
    };
    for value in obj[field].as_object().into_iter().flat_map(|m| m.values()) {
        let text = value.as_str().unwrap_or_default();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(text) {
            let at = match e {
                DecodeError::InvalidByte(at, _) | DecodeError::InvalidLastSymbol(at, _) => at,
                _ => text.len(),
            };
            return Err(ApiError::BadRequest(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: illegal base64 data at input byte {at}"
            )));
        }
    }
    Ok(())
}

fn matches(opts: &ListOptions, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    opts.label_selector
        .as_ref()
        .is_none_or(|s| s.matches(labels))
        && opts.field_selector.as_ref().is_none_or(|s| s.matches(obj))
}

/// An object marked for deletion whose last finalizer is gone is removed. Pods also wait
/// for their node to confirm the containers stopped (it deletes them with grace 0), and
/// namespaces for the namespace controller to empty them.
fn finalized(res: &ResourceInfo, obj: &Value) -> bool {
    let meta = &obj["metadata"];
    let marked = meta.get("deletionTimestamp").is_some();
    let no_finalizers = meta["finalizers"].as_array().is_none_or(Vec::is_empty);
    let done = match res.kind {
        "Pod" => meta["deletionGracePeriodSeconds"].as_i64() == Some(0),
        // The namespace controller removes its `spec.finalizers` entry once the namespace is empty.
        "Namespace" => obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty),
        _ => true,
    };
    marked && no_finalizers && done
}

/// Namespaces Kubernetes refuses to delete.
const PERMANENT_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

enum DeletionPlan {
    Now,
    Mark { grace: i64 },
}

fn deletion_plan(res: &ResourceInfo, obj: &Value, grace: Option<i64>) -> DeletionPlan {
    let has_finalizers = obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    match res.kind {
        "Namespace" => DeletionPlan::Mark { grace: 0 },
        "Pod" => {
            let bound = obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                obj["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            let grace = grace
                .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .max(0);
            if (!bound || terminal || grace == 0) && !has_finalizers {
                DeletionPlan::Now
            } else {
                DeletionPlan::Mark {
                    grace: if bound && !terminal { grace } else { 0 },
                }
            }
        }
        _ if has_finalizers => DeletionPlan::Mark { grace: 0 },
        _ => DeletionPlan::Now,
    }
}

/// Kubernetes' QoS class from the containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c["resources"]["requests"].as_object();
        let limits = c["resources"]["limits"].as_object();
        any |= requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty());
        for r in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(r));
            let request = requests.and_then(|q| q.get(r)).or(limit);
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// One change delivered to a watcher.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED or ERROR.
    pub kind: &'static str,
    pub object: Value,
}

pub struct Watch {
    /// Opens the events of sealed Secrets.
    store: Store,
    initial: VecDeque<Value>,
    backlog: VecDeque<Arc<Event>>,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    prefix: String,
    /// Boxed: a watch sits inside every reflector's state, and selectors are large.
    opts: Box<ListOptions>,
    expired: Option<String>,
}

impl Watch {
    /// The next event, or `None` when the watch has ended (after an ERROR event).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(message) = self.expired.take() {
            self.live = None;
            return Some(WatchEvent {
                kind: "ERROR",
                object: ApiError::Gone(message).status(),
            });
        }
        if let Some(obj) = self.initial.pop_front() {
            return Some(WatchEvent {
                kind: "ADDED",
                object: obj,
            });
        }
        loop {
            let event = match self.backlog.pop_front() {
                Some(e) => e,
                None => match self.live.as_mut()?.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.live = None;
                        return Some(WatchEvent {
                            kind: "ERROR",
                            object: ApiError::Gone("the watcher fell too far behind".into())
                                .status(),
                        });
                    }
                    // The store replaced its history (it installed a snapshot): what
                    // changed in between cannot be told, so the watcher must list again,
                    // as after a 410 from etcd compaction.
                    Err(broadcast::error::RecvError::Closed) => {
                        self.live = None;
                        return Some(WatchEvent {
                            kind: "ERROR",
                            object: ApiError::Gone(
                                "the store was restored from a snapshot; list again".into(),
                            )
                            .status(),
                        });
                    }
                },
            };
            if let Some(e) = self.filter(&event) {
                return Some(e);
            }
        }
    }

    /// Applies the watch's scope and selectors; an object that starts or stops matching is
    /// reported as ADDED or DELETED, as Kubernetes does.
    fn filter(&mut self, event: &Event) -> Option<WatchEvent> {
        if !event.key.starts_with(&self.prefix) {
            return None;
        }
        let reveal = |o: &Arc<Value>| self.store.reveal(&event.key, o);
        let (object, previous) = match (
            reveal(&event.object),
            event.previous.as_ref().map(reveal).transpose(),
        ) {
            (Ok(o), Ok(p)) => (o, p),
            (Err(e), _) | (_, Err(e)) => {
                // A Secret this member cannot open ends the watch, as any error does.
                self.live = None;
                self.backlog.clear();
                return Some(WatchEvent {
                    kind: "ERROR",
                    object: ApiError::Internal(e.to_string()).status(),
                });
            }
        };
        let now = matches(&self.opts, &object);
        let before = previous.as_deref().is_some_and(|p| matches(&self.opts, p));
        let kind = match (event.kind, before, now) {
            (EventKind::Added, _, true) => "ADDED",
            (EventKind::Deleted, true, _) => "DELETED",
            (EventKind::Modified, true, true) => "MODIFIED",
            (EventKind::Modified, false, true) => "ADDED",
            (EventKind::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some(WatchEvent {
            kind,
            object: (*object).clone(),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// Used by callers that render ages and timestamps.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Api {
    /// The `binding` subresource: assigns an unbound pod to a node (what the scheduler
    /// does). A pod that is already bound keeps its node: 409, as in Kubernetes.
    pub async fn bind(&self, ns: &str, name: &str, node: &str) -> Result<Value, ApiError> {
        let pods = resources::find("", "v1", "pods")
            .ok_or_else(|| ApiError::Internal("pods unknown".into()))?;
        let mut attempt = 0;
        loop {
            let current = self.get(pods, Some(ns), name)?;
            if let Some(bound) = current["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::Conflict {
                    message: format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{bound}\""),
                    kind: "pods/binding".into(),
                    name: name.into(),
                    group: String::new(),
                });
            }
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Err(ApiError::Conflict {
                    message: format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
                    kind: "pods/binding".into(),
                    name: name.into(),
                    group: String::new(),
                });
            }
            let mut bound = current.clone();
            bound["spec"]["nodeName"] = json!(node);
            let conditions = bound["status"]
                .as_object_mut()
                .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
            if let Some(Value::Array(conditions)) = conditions {
                conditions.retain(|c| c["type"] != "PodScheduled");
                conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
            }
            let result = self
                .store
                .write(Op::Update {
                    key: pods.key(Some(ns), name),
                    object: bound,
                    expected_revision: revision_of(&current),
                })
                .await
                .map_err(|e| ApiError::from_store(e, "pods", name));
            match result {
                Err(ApiError::Conflict { .. }) if attempt < UPDATE_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_policies_are_validated_like_kubernetes() {
        assert_eq!(
            Propagation::from_options(Some("Orphan"), None).unwrap(),
            Some(Propagation::Orphan)
        );
        assert_eq!(
            Propagation::from_options(None, Some(false)).unwrap(),
            Some(Propagation::Background)
        );
        let bad = Propagation::from_options(Some("Sideways"), None).unwrap_err();
        assert_eq!(bad.code(), 422);
        assert_eq!(
            bad.to_string(),
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        );
        let both = Propagation::from_options(Some("Orphan"), Some(true)).unwrap_err();
        assert!(both
            .to_string()
            .ends_with("orphanDependents and deletionPropagation cannot be both set"));
    }

    #[tokio::test]
    async fn a_watch_whose_history_was_replaced_ends_with_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let (sender, live) = broadcast::channel(1);
        let mut watch = Watch {
            store,
            initial: VecDeque::new(),
            backlog: VecDeque::new(),
            live: Some(live),
            prefix: String::new(),
            opts: Box::default(),
            expired: None,
        };
        drop(sender); // what `WatchHub::reset` does to every live watch
        let end = watch.next().await.unwrap();
        assert_eq!(end.kind, "ERROR");
        assert_eq!(end.object["code"], 410);
        assert!(watch.next().await.is_none());
    }

    #[test]
    fn bytes_that_are_not_base64_are_refused_like_kubernetes() {
        let bad = json!({"data": {"ok": "eA==", "a": "eA!="}});
        assert_eq!(
            check_bytes_fields("Secret", &bad).unwrap_err().to_string(),
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 2"
        );
        assert!(check_bytes_fields("ConfigMap", &bad).is_ok());
        let binary = json!({"binaryData": {"b": "!"}});
        assert_eq!(
            check_bytes_fields("ConfigMap", &binary).unwrap_err().code(),
            400
        );
    }

    #[test]
    fn a_delete_policy_becomes_the_finalizer_the_collector_acts_on() {
        let o = json!({"metadata": {"finalizers": ["example.com/keep", "orphan"]}});
        assert_eq!(
            Propagation::Foreground.finalizers(&o),
            vec![json!("example.com/keep"), json!("foregroundDeletion")]
        );
        assert_eq!(
            Propagation::Background.finalizers(&o),
            vec![json!("example.com/keep")]
        );
    }
}
