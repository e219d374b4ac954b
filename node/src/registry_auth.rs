//! Registry credentials from a pod's `imagePullSecrets`: `kubernetes.io/dockerconfigjson`
//! Secrets hold a Docker `config.json` (`{"auths": {"host": {"username", "password",
//! "auth"}}}`); the entry for the image's registry host is what the node pulls with. Pure.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;

/// The Secret type that holds a Docker `config.json` under the key `.dockerconfigjson`.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const KEY: &str = ".dockerconfigjson";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("secret {secret} is not of type {DOCKER_CONFIG_JSON}")]
    WrongType { secret: String },
    #[error("secret {secret} has no {KEY} key")]
    NoConfig { secret: String },
    #[error("secret {secret}: {KEY} is not a Docker config: {message}")]
    Malformed { secret: String, message: String },
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Never shows the password (these end up in error messages and logs).
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// base64 of `username:password`, used when the two fields are absent.
    #[serde(default)]
    auth: Option<String>,
}

/// The registry host of an image reference, as Docker names it: the first path component
/// when it looks like a host (has a `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The host a `config.json` key names: keys may be bare hosts or URLs
/// (`https://index.docker.io/v1/`).
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The credentials for `image` in the first of `secrets` (in `imagePullSecrets` order) that
/// has an entry for its registry, as kubelet picks them.
pub fn credentials_for(image: &str, secrets: &[Secret]) -> Result<Option<Credentials>, AuthError> {
    let host = registry_host(image);
    for secret in secrets {
        let name = secret.metadata.name.clone().unwrap_or_default();
        if secret.type_.as_deref() != Some(DOCKER_CONFIG_JSON) {
            return Err(AuthError::WrongType { secret: name });
        }
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .ok_or_else(|| AuthError::NoConfig {
                secret: name.clone(),
            })?;
        let malformed = |message: String| AuthError::Malformed {
            secret: name.clone(),
            message,
        };
        let config: DockerConfig =
            serde_json::from_slice(&bytes.0).map_err(|e| malformed(e.to_string()))?;
        let Some((key, entry)) = config.auths.iter().find(|(k, _)| key_host(k) == host) else {
            continue;
        };
        let (username, password) = match (&entry.username, &entry.password, &entry.auth) {
            (Some(u), Some(p), _) => (u.clone(), p.clone()),
            (_, _, Some(auth)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| malformed(format!("auths[{key}].auth: {e}")))?;
                let decoded = String::from_utf8_lossy(&decoded).into_owned();
                let (u, p) = decoded.split_once(':').ok_or_else(|| {
                    malformed(format!("auths[{key}].auth is not username:password"))
                })?;
                (u.to_string(), p.to_string())
            }
            _ => return Err(malformed(format!("auths[{key}] has no credentials"))),
        };
        return Ok(Some(Credentials { username, password }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(name: &str, config: serde_json::Value) -> Secret {
        let data = base64::engine::general_purpose::STANDARD.encode(config.to_string());
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "type": DOCKER_CONFIG_JSON,
            "data": {KEY: data},
        }))
        .unwrap()
    }

    #[test]
    fn the_registry_host_is_the_first_component_when_it_looks_like_one() {
        let cases = [
            ("busybox", "docker.io"),
            ("library/busybox:1", "docker.io"),
            ("127.0.0.1:5000/busybox:test", "127.0.0.1:5000"),
            ("localhost/x", "localhost"),
            ("ghcr.io/a/b@sha256:00", "ghcr.io"),
        ];
        for (image, host) in cases {
            assert_eq!(registry_host(image), host, "{image}");
        }
    }

    #[test]
    fn credentials_come_from_the_entry_of_the_images_registry() {
        let secrets = [
            secret(
                "other",
                json!({"auths": {"ghcr.io": {"username": "g", "password": "h"}}}),
            ),
            secret(
                "mine",
                json!({"auths": {"http://127.0.0.1:5000/v2/": {"auth": "dXNlcjpwYTpzcw=="}}}),
            ),
        ];
        let creds = credentials_for("127.0.0.1:5000/busybox:test", &secrets)
            .unwrap()
            .unwrap();
        assert_eq!(
            creds,
            Credentials {
                username: "user".into(),
                password: "pa:ss".into(),
            }
        );
        let hub = secret(
            "hub",
            json!({"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p"}}}),
        );
        let creds = credentials_for("busybox", &[hub]).unwrap().unwrap();
        assert_eq!(creds.username, "u");
        assert_eq!(credentials_for("quay.io/x", &secrets).unwrap(), None);
    }

    #[test]
    fn a_secret_of_another_type_or_shape_is_an_error() {
        let mut opaque = secret("o", json!({}));
        opaque.type_ = Some("Opaque".into());
        assert_eq!(
            credentials_for("x", &[opaque]),
            Err(AuthError::WrongType { secret: "o".into() })
        );
        let broken = secret("b", json!({"auths": {"docker.io": {"auth": "!!"}}}));
        assert!(matches!(
            credentials_for("x", &[broken]),
            Err(AuthError::Malformed { .. })
        ));
    }
}
