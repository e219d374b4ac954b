//! Strategic merge patch application, following apimachinery's `strategicpatch.mergeMap`
//! (with `MergeParallelList` and `IgnoreUnmatchedNulls` set, as the API server uses it).
//!
//! One deliberate difference: directive keys (`$patch`, `$retainKeys`,
//! `$setElementOrder/..`, `$deleteFromPrimitiveList/..`) are stripped from every value that
//! reaches the result. apimachinery leaves some nested ones in place and relies on typed
//! decoding to drop them; wkube stores JSON, so they must never get that far.

use super::schema::{lookup, root_type, Ty};
use super::PatchError;
use serde_json::{Map, Value};
use std::cmp::Ordering;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PREFIX: &str = "$deleteFromPrimitiveList";
const ORDER_PREFIX: &str = "$setElementOrder";

pub fn apply(kind: &str, original: &Value, patch: Value) -> Result<Value, PatchError> {
    let Value::Object(original) = original.clone() else {
        return Err(PatchError::BadJsonDoc);
    };
    let Value::Object(patch) = patch else {
        // The text of Go's json.Unmarshal into map[string]interface{}.
        return Err(PatchError::Decode(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_type_name(&patch)
        )));
    };
    merge_map(original, patch, root_type(kind)).map(Value::Object)
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn bad_arg(expected: &str, actual: &Value) -> PatchError {
    PatchError::Strategic(format!(
        "expected a {expected}, but received a {}",
        go_type_name(actual)
    ))
}

fn no_merge_key(m: &Value, key: &str) -> PatchError {
    PatchError::Strategic(format!(
        "map: {m} does not contain declared merge key: {key}"
    ))
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => Ok(strip_map(patch)),
            Some("delete") => Ok(Map::new()),
            // `$patch: merge` is not accepted in maps by apimachinery either.
            _ => Err(PatchError::Strategic(format!(
                "unknown patch type: {} in map: {}",
                crate::obj::scalar_string(&directive),
                Value::Object(patch)
            ))),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, ty)?;

    // Deletion lists run after the other keys, so they act on the merged list.
    let mut deletions = Vec::new();
    for (k, v) in patch {
        if k.starts_with(DELETE_PREFIX) {
            deletions.push((k, v));
        } else {
            merge_field(&mut original, k, v, ty, false)?;
        }
    }
    for (k, v) in deletions {
        let key = extract_key(&k, DELETE_PREFIX)?;
        merge_field(&mut original, key, v, ty, true)?;
    }
    Ok(original)
}

fn merge_field(
    original: &mut Map<String, Value>,
    k: String,
    patch_v: Value,
    ty: Ty,
    is_delete_list: bool,
) -> Result<(), PatchError> {
    if patch_v.is_null() {
        original.shift_remove(&k);
        return Ok(());
    }
    let Some(orig_v) = original.get_mut(&k) else {
        if !is_delete_list {
            if let Some(v) = remove_directives(discard_nulls(patch_v)) {
                original.insert(k, v);
            }
        }
        return Ok(());
    };
    if !same_type(orig_v, &patch_v) {
        if !is_delete_list {
            match remove_directives(discard_nulls(patch_v)) {
                Some(v) => *orig_v = v,
                None => {
                    original.shift_remove(&k);
                }
            }
        }
        return Ok(());
    }
    let (child, strategy) = lookup(ty, &k);
    let merged = match (std::mem::take(orig_v), patch_v) {
        (Value::Object(o), Value::Object(p)) => Some(Value::Object(merge_map(o, p, child)?)),
        (Value::Array(o), Value::Array(p)) => {
            if strategy.is_merge() || is_delete_list {
                Some(Value::Array(merge_slice(
                    o,
                    p,
                    child,
                    strategy.merge_key(),
                    is_delete_list,
                )?))
            } else {
                remove_directives(Value::Array(p))
            }
        }
        (_, p) => remove_directives(p),
    };
    match merged {
        Some(v) => *orig_v = v,
        None => {
            original.shift_remove(&k);
        }
    }
    Ok(())
}

/// Go compares `reflect.TypeOf`; JSON numbers count as one type here since a number
/// replacing a number is the same outcome either way.
fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(list) = retain else {
        return Err(PatchError::BadRetainKeys);
    };
    let keep = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PREFIX) || k.starts_with(ORDER_PREFIX) {
            continue;
        }
        if !keep(k) {
            return Err(PatchError::BadRetainKeys);
        }
    }
    original.retain(|k, _| keep(k));
    Ok(())
}

fn extract_key(s: &str, prefix: &str) -> Result<String, PatchError> {
    match s.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest.to_string()),
        _ => Err(if prefix == DELETE_PREFIX {
            PatchError::BadPrimitiveList
        } else {
            PatchError::BadSetElementOrder
        }),
    }
}

fn list_at(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>, PatchError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.clone())),
        Some(other) => Err(bad_arg("[]interface {}", other)),
    }
}

/// `mergePatchIntoOriginal`: merges each list that has a `$setElementOrder/<field>` and
/// orders it as the directive says (directive order > patch order > live order).
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(ORDER_PREFIX))
        .cloned()
        .collect();
    for key in keys {
        let Some(order_v) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(order) = order_v else {
            return Err(bad_arg("[]interface {}", &order_v));
        };
        let field = extract_key(&key, ORDER_PREFIX)?;
        let orig_list = list_at(original, &field)?;
        let patch_list = list_at(patch, &field)?;
        let (child, strategy) = lookup(ty, &field);
        let merge_key = strategy.merge_key();
        validate_patch_with_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;
        let merged = match (&orig_list, patch_list.clone()) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match remove_directives(discard_nulls(Value::Array(p))) {
                Some(Value::Array(a)) => a,
                _ => continue,
            },
            (Some(o), Some(p)) => {
                if strategy.is_merge() {
                    merge_slice(o.clone(), p, child, merge_key, false)?
                } else {
                    strip_list(p)
                }
            }
            (None, None) => continue,
        };
        let (patch_items, server_only) = partition(merged, &order, merge_key)?;
        let is_map = element_kind(&[
            orig_list.as_deref().unwrap_or(&[]),
            patch_list.as_deref().unwrap_or(&[]),
        ])?;
        let server_order = orig_list.unwrap_or_default();
        let both = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &server_order,
            merge_key,
            is_map,
        )?;
        original.insert(field.clone(), Value::Array(both));
        patch.shift_remove(&field);
    }
    Ok(())
}

/// `validatePatchWithSetOrderList`: the patch list must follow the directive's relative
/// order.
fn validate_patch_with_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = match merge_key {
        Some(_) => {
            let mut out = Vec::new();
            for v in patch_list {
                if !v.is_object() {
                    return Err(bad_arg("map[string]interface {}", v));
                }
                if v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                    out.push(v);
                }
            }
            out
        }
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        if non_delete[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(PatchError::Strategic(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn merge_key_value_equal(
    left: &Value,
    right: &Value,
    merge_key: Option<&str>,
) -> Result<bool, PatchError> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let (Some(l), Some(r)) = (left.as_object(), right.as_object()) else {
        let bad = if left.is_object() { right } else { left };
        return Err(bad_arg("map[string]interface {}", bad));
    };
    let lv = l.get(key).ok_or_else(|| no_merge_key(left, key))?;
    let rv = r.get(key).ok_or_else(|| no_merge_key(right, key))?;
    Ok(lv == rv)
}

/// `sliceElementType`: all elements share one JSON type, which is not a list. Returns
/// whether they are objects.
fn element_kind(slices: &[&[Value]]) -> Result<bool, PatchError> {
    let mut first: Option<&Value> = None;
    for v in slices.iter().flat_map(|s| s.iter()) {
        match first {
            None => {
                if v.is_array() {
                    return Err(PatchError::ListOfLists);
                }
                first = Some(v);
            }
            Some(f) if !same_type(f, v) => {
                let all: Vec<Value> = slices.iter().map(|s| Value::Array(s.to_vec())).collect();
                return Err(PatchError::Strategic(format!(
                    "list element types are not identical: {}",
                    Value::Array(all)
                )));
            }
            Some(_) => {}
        }
    }
    match first {
        Some(f) => Ok(f.is_object()),
        None => Err(PatchError::Strategic(
            "no elements in any of the given slices".to_string(),
        )),
    }
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    ty: Ty,
    merge_key: Option<&'static str>,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_map = element_kind(&[&original, &patch])?;
    if !is_map {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (patch_items, server_only) = partition(merged, &patch, None)?;
        return normalize_element_order(patch_items, server_only, &patch, &original, None, false);
    }
    let Some(key) = merge_key else {
        return Err(PatchError::Strategic(format!(
            "cannot merge lists without merge key for {}",
            ty.unwrap_or("unknown type")
        )));
    };
    let (original, patch) = merge_slice_special_elements(original, patch, key)?;
    let merged = merge_slice_plain_elements(original.clone(), patch.clone(), key, ty)?;
    let (patch_items, server_only) = partition(merged, &patch, Some(key))?;
    normalize_element_order(patch_items, server_only, &patch, &original, Some(key), true)
}

/// Handles `$patch: delete|replace` elements; returns the (possibly reduced or replaced)
/// original and the patch without them.
fn merge_slice_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for v in patch {
        let Some(directive) = v.get(DIRECTIVE) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let target = v.get(key).ok_or_else(|| no_merge_key(&v, key))?;
                for (i, o) in original.iter().enumerate() {
                    if !o.is_object() {
                        return Err(PatchError::Strategic(format!(
                            "value for key {i} is not a map"
                        )));
                    }
                }
                original.retain(|o| o.get(key) != Some(target));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Strategic(
                    "merging lists cannot yet be specified in the patch".to_string(),
                ))
            }
            _ => {
                return Err(PatchError::Strategic(format!(
                    "unknown patch type: {} in map: {v}",
                    crate::obj::scalar_string(directive)
                )))
            }
        }
    }
    if replace {
        return Ok((strip_list(plain), Vec::new()));
    }
    Ok((original, plain))
}

fn find_by_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Some(m) = v.as_object() else {
            return Err(PatchError::Strategic(format!(
                "value for key {i} is not a map"
            )));
        };
        if m.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn merge_slice_plain_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    ty: Ty,
) -> Result<Vec<Value>, PatchError> {
    for v in patch {
        let Value::Object(pm) = v else {
            return Err(bad_arg("map[string]interface {}", &v));
        };
        let mv = pm
            .get(key)
            .cloned()
            .ok_or_else(|| no_merge_key(&Value::Object(pm.clone()), key))?;
        match find_by_key(&original, key, &mv)? {
            Some(i) => {
                let Value::Object(om) = std::mem::take(&mut original[i]) else {
                    return Err(PatchError::Strategic(format!(
                        "value for key {i} is not a map"
                    )));
                };
                original[i] = Value::Object(merge_map(om, pm, ty)?);
            }
            None => {
                if let Some(v) = remove_directives(Value::Object(pm)) {
                    original.push(v);
                }
            }
        }
    }
    Ok(original)
}

/// Splits `merged` into the items present in `by` and the server-only rest.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let found = match key {
            None => by.contains(&v),
            Some(key) => {
                if !v.is_object() {
                    return Err(bad_arg("map[string]interface {}", &v));
                }
                let mv = v.get(key).ok_or_else(|| no_merge_key(&v, key))?;
                find_by_key(by, key, mv)?.is_some()
            }
        };
        if found {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

fn index_of(list: &[Value], item: &Value, key: Option<&str>, is_map: bool) -> Option<usize> {
    match key.filter(|_| is_map) {
        Some(k) => {
            let want = item.get(k);
            list.iter().position(|v| v.get(k) == want)
        }
        None => list.iter().position(|v| v == item),
    }
}

fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
    is_map: bool,
) -> Result<Vec<Value>, PatchError> {
    let mut to_sort = to_sort;
    let mut to_delete = Vec::new();
    if is_map {
        let k = key.unwrap_or("");
        for v in to_sort.iter().chain(order.iter()) {
            if !v.is_object() {
                return Err(bad_arg("map[string]interface {}", v));
            }
            if v.get(k).is_none() {
                return Err(no_merge_key(v, k));
            }
        }
        let (del, keep): (Vec<Value>, Vec<Value>) = to_sort
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete"));
        to_sort = keep;
        to_delete = del;
    }
    to_sort.sort_by_key(|v| index_of(order, v, key, is_map).unwrap_or(usize::MAX));
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// `normalizeElementOrder` + `mergeSortedSlice`: patch items in patch order, server-only
/// items in live order, interleaved by their live positions where both are known.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
    is_map: bool,
) -> Result<Vec<Value>, PatchError> {
    let right = normalize_slice_order(patch, patch_order, key, is_map)?;
    let left = normalize_slice_order(server_only, server_order, key, is_map)?;
    let less = |l: &Value, r: &Value| -> bool {
        match (
            index_of(server_order, l, key, is_map),
            index_of(server_order, r, key, is_map),
        ) {
            (Some(li), Some(ri)) => li.cmp(&ri) == Ordering::Less,
            _ => false,
        }
    };
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => less(l, r),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(DELETE_PREFIX)
        || k.starts_with(ORDER_PREFIX)
}

/// `removeDirectives`: a map carrying `$patch` disappears, other directive keys are
/// dropped, recursively.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(strip_map(m)))
        }
        Value::Array(a) => Some(Value::Array(strip_list(a))),
        other => Some(other),
    }
}

fn strip_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, _)| !is_directive_key(k))
        .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
        .collect()
}

fn strip_list(a: Vec<Value>) -> Vec<Value> {
    a.into_iter().filter_map(remove_directives).collect()
}

/// `discardNullValuesFromPatch`: nulls mean "delete", which is meaningless for new values.
fn discard_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, discard_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(discard_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn containers(items: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": items}})
    }

    /// Table of (description, kind, current, patch, expected result). Several list-order
    /// cases restate apimachinery's own fixtures (`patch_test.go`) with PodSpec containers as
    /// the merging list.
    fn cases() -> Vec<(&'static str, &'static str, Value, Value, Value)> {
        vec![
            (
                "maps merge recursively and null deletes",
                "ConfigMap",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}}),
                json!({"metadata": {"labels": {"b": null, "c": "3"}}, "data": {"y": "2"}}),
                json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "data": {"x": "1", "y": "2"}}),
            ),
            (
                "merge lists of maps (setElementOrder puts new items in place)",
                "Pod",
                containers(
                    json!([{"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}]),
                ),
                json!({"spec": {"$setElementOrder/containers": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
                                "containers": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]}}),
                containers(
                    json!([{"name": "4", "value": "4"}, {"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}, {"name": "3", "value": "3"}]),
                ),
            ),
            (
                "set elements order in a list with server-only items",
                "Pod",
                containers(
                    json!([{"name": "1", "other": "a"}, {"name": "3"}, {"name": "4"}, {"name": "2"}, {"name": "9"}]),
                ),
                json!({"spec": {"$setElementOrder/containers": [{"name": "4"}, {"name": "2"}, {"name": "3"}, {"name": "1"}]}}),
                containers(
                    json!([{"name": "4"}, {"name": "2"}, {"name": "3"}, {"name": "1", "other": "a"}, {"name": "9"}]),
                ),
            ),
            (
                "set elements order in a list with server-only items 2",
                "Pod",
                containers(
                    json!([{"name": "1"}, {"name": "2"}, {"name": "9"}, {"name": "3"}, {"name": "4"}]),
                ),
                json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]}}),
                containers(
                    json!([{"name": "2"}, {"name": "1"}, {"name": "9"}, {"name": "4"}, {"name": "3"}]),
                ),
            ),
            (
                "set elements order in a list with server-only items 3",
                "Pod",
                containers(
                    json!([{"name": "1"}, {"name": "2"}, {"name": "7"}, {"name": "9"}, {"name": "8"}, {"name": "3"}, {"name": "4"}]),
                ),
                json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]}}),
                containers(
                    json!([{"name": "2"}, {"name": "1"}, {"name": "7"}, {"name": "9"}, {"name": "8"}, {"name": "4"}, {"name": "3"}]),
                ),
            ),
            (
                "add map to merging list keeps server-only item after it",
                "Pod",
                containers(json!([{"name": "1", "other": "a"}, {"name": "3"}])),
                json!({"spec": {"$setElementOrder/containers": [{"name": "1"}, {"name": "2"}], "containers": [{"name": "2"}]}}),
                containers(json!([{"name": "1", "other": "a"}, {"name": "2"}, {"name": "3"}])),
            ),
            (
                "image change merges by name and keeps other fields",
                "Pod",
                containers(
                    json!([{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}, {"name": "b", "image": "y"}]),
                ),
                json!({"spec": {"containers": [{"name": "b", "image": "z"}]}}),
                containers(
                    json!([{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}, {"name": "b", "image": "z"}]),
                ),
            ),
            (
                "nested merge lists: env by name inside containers",
                "Pod",
                containers(
                    json!([{"name": "a", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
                ),
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}),
                containers(
                    json!([{"name": "a", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]),
                ),
            ),
            (
                "$patch: delete element removes by merge key",
                "Pod",
                containers(json!([{"name": "a"}, {"name": "b"}])),
                json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
                containers(json!([{"name": "b"}])),
            ),
            (
                "$patch: replace element replaces the whole list",
                "Pod",
                containers(json!([{"name": "a", "image": "x"}, {"name": "b"}])),
                json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}),
                containers(json!([{"name": "c"}])),
            ),
            (
                "$patch: replace in a map replaces the map",
                "Pod",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
                json!({"metadata": {"labels": {"c": "3"}}}),
            ),
            (
                "$patch: delete in a map empties it",
                "Pod",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {"$patch": "delete"}}}),
                json!({"metadata": {"labels": {}}}),
            ),
            (
                "finalizers merge as a set",
                "ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            ),
            (
                "delete items in lists of scalars with setElementOrder",
                "Widget",
                json!({"metadata": {"finalizers": ["1", "2", "3", "4"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["1", "2"], "$deleteFromPrimitiveList/finalizers": ["3"]}}),
                json!({"metadata": {"finalizers": ["1", "2", "4"]}}),
            ),
            (
                "$deleteFromPrimitiveList of a missing list adds nothing",
                "Widget",
                json!({"metadata": {}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
                json!({"metadata": {}}),
            ),
            (
                "ownerReferences merge by uid",
                "ReplicaSet",
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}]}}),
            ),
            (
                "lists without strategy are replaced (node taints)",
                "Node",
                json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
                json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}),
                json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}),
            ),
            (
                "pod status conditions merge by type; containerStatuses replace",
                "Pod",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
                                  "containerStatuses": [{"name": "a", "ready": false}, {"name": "b"}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [{"name": "a", "ready": true}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
                                  "containerStatuses": [{"name": "a", "ready": true}]}}),
            ),
            (
                "deployment template containers merge by name",
                "Deployment",
                json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}}),
                json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a", "image": "x2"}]}}}}),
                json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a", "image": "x2"}, {"name": "b", "image": "y"}]}}}}),
            ),
            (
                "cronjob job template pod containers merge by name",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}}}}}),
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x2"}]}}}}}}),
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x2"}, {"name": "b"}]}}}}}}),
            ),
            (
                "unknown kinds replace lists and merge maps",
                "Widget",
                json!({"spec": {"items": [{"name": "a"}], "m": {"x": 1}}}),
                json!({"spec": {"items": [{"name": "b"}], "m": {"y": 2}}}),
                json!({"spec": {"items": [{"name": "b"}], "m": {"x": 1, "y": 2}}}),
            ),
            (
                "retainKeys clears fields not listed",
                "Deployment",
                json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
            (
                "directives never leak into new values",
                "Pod",
                json!({"spec": {}}),
                json!({"spec": {"containers": [{"name": "a", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": null}]},
                                                {"name": "gone", "$patch": "delete"}],
                                "$setElementOrder/containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}),
            ),
            (
                "type change replaces the value",
                "ConfigMap",
                json!({"data": {"a": {"b": 1}}}),
                json!({"data": {"a": "flat"}}),
                json!({"data": {"a": "flat"}}),
            ),
            (
                "top-level $patch: replace replaces the object",
                "ConfigMap",
                json!({"metadata": {"name": "a"}, "data": {"x": "1"}}),
                json!({"$patch": "replace", "metadata": {"name": "a"}}),
                json!({"metadata": {"name": "a"}}),
            ),
        ]
    }

    #[test]
    fn strategic_merge_table() {
        for (desc, kind, current, patch, want) in cases() {
            let got = apply(kind, &current, patch);
            assert_eq!(got, Ok(want), "{desc}");
        }
    }

    #[test]
    fn strategic_merge_preserves_key_order() {
        let cur = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"z": "1", "a": "2"}});
        let got =
            apply("ConfigMap", &cur, json!({"data": {"z": null, "m": "3"}})).unwrap_or_default();
        let keys: Vec<&String> = got["data"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, vec!["a", "m"]);
        let top: Vec<&String> = got
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(top, vec!["apiVersion", "kind", "metadata", "data"]);
    }

    #[test]
    fn strategic_merge_errors() {
        let pod = containers(json!([{"name": "a"}]));
        let cases: Vec<(Value, u16, &str)> = vec![
            (
                json!({"spec": {"containers": [{"image": "x"}]}}),
                500,
                "does not contain declared merge key: name",
            ),
            (
                json!({"spec": {"containers": [{"name": "b"}, {"$patch": "merge"}]}}),
                500,
                "merging lists cannot yet be specified in the patch",
            ),
            (
                json!({"spec": {"$patch": "merge"}}),
                500,
                "unknown patch type: merge in map",
            ),
            (
                json!({"spec": {"$retainKeys": "x"}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                json!({"spec": {"$retainKeys": ["a"], "b": 1}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                json!({"spec": {"$setElementOrderx": []}}),
                400,
                "invalid patch format of setElementOrder list",
            ),
            (
                json!({"spec": {"$deleteFromPrimitiveList": []}}),
                400,
                "invalid patch format of primitive list",
            ),
            (
                json!({"metadata": {"finalizers": [["a"]]}, "x": 1}),
                200,
                "",
            ),
            (
                json!([1]),
                400,
                "json: cannot unmarshal array into Go value of type map[string]interface {}",
            ),
        ];
        for (patch, code, msg) in cases {
            let got = apply("Pod", &pod, patch.clone());
            if code == 200 {
                assert!(got.is_ok(), "{patch}");
                continue;
            }
            let err = got.err().unwrap_or(PatchError::InvalidJson);
            assert_eq!(err.status_code(), code, "{patch}: {err}");
            assert!(err.to_string().contains(msg), "{patch}: {err}");
        }
        let with_list = json!({"metadata": {"finalizers": []}});
        let err = apply(
            "Pod",
            &with_list,
            json!({"metadata": {"finalizers": [["a"]]}}),
        )
        .err();
        assert_eq!(err, Some(PatchError::ListOfLists));
    }

    #[test]
    fn setelementorder_mismatch_is_rejected() {
        let pod = containers(json!([{"name": "a"}, {"name": "b"}]));
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b", "image": "x"}]}});
        let err = apply("Pod", &pod, patch)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("The order in patch list:"), "{err}");
    }
}
