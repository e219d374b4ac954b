//! A container's environment and argv as kubelet builds them (`makeEnvironmentVariables`):
//! `envFrom` first, then `env` in order, each value `$(VAR)`-expanded against what is
//! defined before it; then `command`/`args` expanded against the result.
//!
//! Pure: the ConfigMaps and Secrets the container refers to are fetched by the caller
//! ([`references`] says which) and passed in as [`Sources`]; a missing one is an
//! [`EnvError`] whose text is kubelet's, shown as `CreateContainerConfigError`.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use crate::downward::{self, DownwardError, NodeFacts};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error(transparent)]
    Downward(#[from] DownwardError),
}

/// The ConfigMaps and Secrets of the pod's namespace that were found, by name.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub config_maps: HashMap<String, ConfigMap>,
    pub secrets: HashMap<String, Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    ConfigMap,
    Secret,
}

impl SourceKind {
    /// The kind as kubelet names it in messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "ConfigMap",
            SourceKind::Secret => "Secret",
        }
    }
}

impl Sources {
    /// The keys and values of the ConfigMap or Secret `name`, `None` if it was not found.
    /// A ConfigMap's `binaryData` counts only `with_binary` (volumes do, env does not).
    pub fn entries(
        &self,
        kind: SourceKind,
        name: &str,
        with_binary: bool,
    ) -> Option<Vec<(String, Vec<u8>)>> {
        match kind {
            SourceKind::ConfigMap => self.config_maps.get(name).map(|cm| {
                let text = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
                let binary = cm
                    .binary_data
                    .iter()
                    .flatten()
                    .filter(|_| with_binary)
                    .map(|(k, v)| (k.clone(), v.0.clone()));
                text.chain(binary).collect()
            }),
            SourceKind::Secret => self.secrets.get(name).map(|s| {
                s.data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect()
            }),
        }
    }
}

impl EnvError {
    fn not_found(kind: SourceKind, name: &str) -> Self {
        match kind {
            SourceKind::ConfigMap => EnvError::ConfigMapNotFound(name.to_string()),
            SourceKind::Secret => EnvError::SecretNotFound(name.to_string()),
        }
    }
}

/// Names of the ConfigMaps and Secrets a container's environment refers to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

pub fn references(c: &Container) -> References {
    let mut r = References::default();
    for from in c.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            r.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            r.secrets.insert(s.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(k) = &from.config_map_key_ref {
            r.config_maps.insert(k.name.clone());
        }
        if let Some(k) = &from.secret_key_ref {
            r.secrets.insert(k.name.clone());
        }
    }
    r
}

/// What the runtime gets: the environment in definition order, `command` and `args`
/// after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub env: Vec<(String, String)>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `envFrom` keys that are no valid variable names, skipped: kubelet's
    /// `InvalidEnvironmentVariableNames` warnings, one per source.
    pub skipped: Vec<String>,
}

/// Kubelet's environment rules for `container` of `pod`.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    node: &NodeFacts,
    sources: &Sources,
) -> Result<Resolved, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env = Env::default();
    let mut skipped = Vec::new();
    for from in container.env_from.iter().flatten() {
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            (SourceKind::ConfigMap, &r.name, r.optional)
        } else if let Some(r) = &from.secret_ref {
            (SourceKind::Secret, &r.name, r.optional)
        } else {
            continue;
        };
        let entries = match sources.entries(kind, name, false) {
            Some(entries) => entries,
            None if optional == Some(true) => continue,
            None => return Err(EnvError::not_found(kind, name)),
        };
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let mut invalid = Vec::new();
        for (k, v) in entries {
            let name = format!("{prefix}{k}");
            // Kubelet skips keys that are not valid variable names and says so in an
            // event; they are not an error.
            if control::validation::names::is_env_var_name(&name).is_empty() {
                env.set(name, String::from_utf8_lossy(&v).into_owned());
            } else {
                invalid.push(name);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            let source = match kind {
                SourceKind::ConfigMap => "configMap",
                SourceKind::Secret => "secret",
            };
            skipped.push(format!(
                "Keys [{}] from the EnvFrom {source} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => expand(v, |name| env.get(name)),
            (None, Some(from)) => {
                let key_ref = if let Some(r) = &from.config_map_key_ref {
                    Some((SourceKind::ConfigMap, &r.name, &r.key, r.optional))
                } else {
                    from.secret_key_ref
                        .as_ref()
                        .map(|r| (SourceKind::Secret, &r.name, &r.key, r.optional))
                };
                if let Some((kind, name, key, optional)) = key_ref {
                    let optional = optional == Some(true);
                    let entries = match sources.entries(kind, name, false) {
                        Some(entries) => entries,
                        None if optional => continue,
                        None => return Err(EnvError::not_found(kind, name)),
                    };
                    match entries.into_iter().find(|(k, _)| k == key) {
                        Some((_, v)) => String::from_utf8_lossy(&v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::MissingKey {
                                kind: kind.name(),
                                namespace: namespace.clone(),
                                name: name.clone(),
                                key: key.clone(),
                            })
                        }
                    }
                } else if let Some(f) = &from.field_ref {
                    downward::field(pod, node, f)?
                } else if let Some(r) = &from.resource_field_ref {
                    downward::resource(pod, container, node, r)?
                } else {
                    String::new()
                }
            }
            (None, None) => String::new(),
        };
        env.set(e.name.clone(), value);
    }
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|a| expand(a, |name| env.get(name)))
            .collect()
    };
    Ok(Resolved {
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        env: env.vars,
        skipped,
    })
}

/// Variables in the order they were first defined; a later definition replaces the value.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Kubernetes' `expansion.Expand`: `$(VAR)` becomes the value of `VAR` when defined and
/// stays as written when not; `$$` is a literal `$`; any other `$` is kept.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(close) => {
                    let name = &body[..close];
                    match lookup(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn expand_table() {
        let vars = [("A", "a"), ("EMPTY", ""), ("B", "$(A)")];
        let lookup = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let cases = [
            ("plain", "plain"),
            ("$(A)", "a"),
            ("x$(A)y$(A)", "xaya"),
            ("$(EMPTY)|", "|"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$a"),
            ("$$", "$"),
            ("$", "$"),
            ("a$", "a$"),
            ("$x", "$x"),
            ("$(A", "$(A"),
            ("$()", "$()"),
            // Values are not expanded again.
            ("$(B)", "$(A)"),
            ("ü$(A)ü", "üaü"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup), want, "{input}");
        }
    }

    fn pod(containers: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": containers}
        }))
        .unwrap()
    }

    fn node() -> NodeFacts {
        NodeFacts {
            host_ip: "10.0.0.1".into(),
            pod_ip: "10.0.0.1".into(),
            cpu_cores: 2.0,
            memory_bytes: 1024.0,
        }
    }

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"}, "data": {"GREETING": "hello", "MODE": "dev", "bad key": "x"}
        }))
        .unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "sec"}, "data": {"PASSWORD": "c2VjcmV0"}
        }))
        .unwrap();
        Sources {
            config_maps: [("cfg".to_string(), cm)].into(),
            secrets: [("sec".to_string(), secret)].into(),
        }
    }

    fn run(container: Value) -> Result<Resolved, String> {
        let p = pod(json!([container]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        resolve(&p, c, &node(), &sources()).map_err(|e| e.to_string())
    }

    fn env_of(container: Value) -> Result<Vec<String>, String> {
        run(container).map(|r| r.env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
    }

    #[test]
    fn env_table() {
        let key_ref = |kind: &str, name: &str, key: &str, optional: bool| json!({kind: {"name": name, "key": key, "optional": optional}});
        let cases: Vec<(Value, Result<Vec<&str>, &str>)> = vec![
            (
                json!([{"name": "G", "valueFrom": key_ref("configMapKeyRef", "cfg", "GREETING", false)},
                       {"name": "P", "valueFrom": key_ref("secretKeyRef", "sec", "PASSWORD", false)}]),
                Ok(vec!["G=hello", "P=secret"]),
            ),
            (
                json!([{"name": "G", "valueFrom": key_ref("configMapKeyRef", "nope", "GREETING", false)}]),
                Err("configmap \"nope\" not found"),
            ),
            (
                json!([{"name": "G", "valueFrom": key_ref("configMapKeyRef", "cfg", "k", false)}]),
                Err("couldn't find key k in ConfigMap default/cfg"),
            ),
            (
                json!([{"name": "P", "valueFrom": key_ref("secretKeyRef", "sec", "k", false)}]),
                Err("couldn't find key k in Secret default/sec"),
            ),
            (
                json!([{"name": "P", "valueFrom": key_ref("secretKeyRef", "nope", "k", false)}]),
                Err("secret \"nope\" not found"),
            ),
            (
                json!([{"name": "G", "valueFrom": key_ref("configMapKeyRef", "nope", "k", true)},
                       {"name": "H", "valueFrom": key_ref("configMapKeyRef", "cfg", "k", true)},
                       {"name": "P", "valueFrom": key_ref("secretKeyRef", "sec", "k", true)}]),
                Ok(vec![]),
            ),
            (
                json!([{"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                       {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                       {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                       {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                       {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]),
                Ok(vec![
                    "NAME=p",
                    "APP=web",
                    "IP=10.0.0.1",
                    "NODE=n1",
                    "MEM=1024",
                ]),
            ),
            (
                json!([{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-$(C)-$$(A)"},
                       {"name": "C", "value": "c"}, {"name": "A", "value": "y$(A)"}]),
                Ok(vec!["A=yx", "B=x-$(C)-$(A)", "C=c"]),
            ),
        ];
        for (env, want) in cases {
            let want = want.map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>());
            assert_eq!(
                env_of(json!({"name": "c", "image": "i", "env": env})),
                want.map_err(str::to_string),
                "{env}"
            );
        }
    }

    #[test]
    fn env_from_with_prefix_optional_and_override() {
        let got = env_of(json!({"name": "c", "image": "i",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "sec"}},
                        {"configMapRef": {"name": "nope", "optional": true}}],
            "env": [{"name": "PASSWORD", "value": "override"}]}));
        assert_eq!(
            got.unwrap(),
            ["CFG_GREETING=hello", "CFG_MODE=dev", "PASSWORD=override"]
        );
        let r =
            run(json!({"name": "c", "image": "i", "envFrom": [{"configMapRef": {"name": "cfg"}}]}));
        assert_eq!(
            r.unwrap().skipped,
            ["Keys [bad key] from the EnvFrom configMap default/cfg were skipped since they are considered invalid environment variable names."]
        );
        let missing = env_of(json!({"name": "c", "image": "i",
            "envFrom": [{"secretRef": {"name": "nope"}}]}));
        assert_eq!(missing.unwrap_err(), "secret \"nope\" not found");
    }

    #[test]
    fn command_and_args_expand_against_the_final_env() {
        let r = run(json!({"name": "c", "image": "i",
            "command": ["run", "$(G)"], "args": ["--mode=$(MODE)", "$$(G)", "$(NOPE)"],
            "env": [{"name": "G", "value": "hi"}, {"name": "MODE", "value": "$(G)!"}]}))
        .unwrap();
        assert_eq!(r.command, ["run", "hi"]);
        assert_eq!(r.args, ["--mode=hi!", "$(G)", "$(NOPE)"]);
    }

    #[test]
    fn references_name_every_source() {
        let p = pod(json!([{"name": "c", "image": "i",
            "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s1"}}],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}]}]));
        let r = references(&p.spec.unwrap().containers[0]);
        assert_eq!(r.config_maps, ["a".to_string(), "b".to_string()].into());
        assert_eq!(r.secrets, ["s1".to_string(), "s2".to_string()].into());
    }
}
