//! A pod template's identity: Deployments compare templates without the hash label, and
//! name each ReplicaSet after a hash of its template.

use serde_json::Value;

use super::HASH_LABEL;
use crate::obj;

/// The template as compared and hashed: without the hash label and without nulls (a
/// template that went through a Go client, as in `kubectl rollout undo`, carries
/// `creationTimestamp: null`, which Kubernetes' typed decoding drops).
pub(super) fn normalized_template(template: &Value) -> Value {
    let mut t = obj::strip_nulls(template);
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    t
}

/// `EqualIgnoreHash`.
pub(super) fn same_template(a: &Value, b: &Value) -> bool {
    normalized_template(a) == normalized_template(b)
}

/// JSON with object keys sorted, so equal templates hash equally whatever their key order.
pub(super) fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `ComputeHash`: FNV-32a of the template (and the collision count, if any), rendered
/// with `SafeEncodeString` like Kubernetes (`rand.SafeEncodeString(fmt.Sprint(hash))`).
pub fn template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut text = String::new();
    canonical(&normalized_template(template), &mut text);
    if let Some(c) = collision_count {
        text.push_str(&c.to_string());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_hashes_ignore_key_order_nulls_and_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]},
                       "metadata": {"creationTimestamp": null, "labels": {"app": "web", "pod-template-hash": "x"}}});
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        assert!(template_hash(&a, None)
            .bytes()
            .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
        assert!(same_template(&a, &b));
    }
}
