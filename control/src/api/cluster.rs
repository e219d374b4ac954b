//! wkube's own endpoints for control-plane members, beside the Kubernetes API:
//!
//! - `GET /cacerts`: the cluster CA, unauthenticated, like k3s. A joining member checks it
//!   against the hash its token pins before trusting anything else from this server.
//! - `GET /wkube/v1/bootstrap`: the CA's key, for a bearer of the join token's secret, so the
//!   joining member can issue its own certificates; and the key-encryption key of Secrets,
//!   which every member needs to read them (see `store::encryption`).
//! - `POST /wkube/v1/members`: adds a member (client certificate required).
//! - `DELETE /wkube/v1/members/<id>`: removes one (client certificate required).
//! - `GET /wkube/v1/cluster`: this member's view of the cluster (client certificate required).
//! - `POST /wkube/v1/secrets/rotate-key`: a new data key for Secrets, every Secret sealed
//!   again with it, unused keys retired (client certificate required).
//! - `GET /wkube/v1/secrets/check`: what this member's raw storage holds of Secrets, sealed
//!   and plaintext (client certificate required).
//! - `GET /wkube/v1/resource-usage`: what this member's node measured, for the other members'
//!   `metrics.k8s.io` (client certificate required; see [`super::metrics`]).

use http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ApiError;
use crate::pki::{CertPair, JoinToken};
use crate::store::{Member, Store};

pub const CACERTS: &str = "/cacerts";
pub const BOOTSTRAP: &str = "/wkube/v1/bootstrap";
pub const MEMBERS: &str = "/wkube/v1/members";
pub const STATUS: &str = "/wkube/v1/cluster";
pub const ROTATE_KEY: &str = "/wkube/v1/secrets/rotate-key";
pub const CHECK_SECRETS: &str = "/wkube/v1/secrets/check";

/// What the server needs to let members in.
pub struct ClusterAccess {
    pub token: JoinToken,
    pub ca: CertPair,
    /// The key-encryption key, base64 (see [`crate::store::Kek::encoded`]).
    pub encryption_key: String,
}

/// The answer to [`BOOTSTRAP`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    pub ca_cert: String,
    pub ca_key: String,
    pub encryption_key: String,
}

impl ClusterAccess {
    pub fn bootstrap(&self, headers: &HeaderMap) -> Result<Bootstrap, ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(self.token.secret.as_str()) {
            return Err(ApiError::Unauthorized);
        }
        Ok(Bootstrap {
            ca_cert: self.ca.cert_pem.clone(),
            ca_key: self.ca.key_pem.clone(),
            encryption_key: self.encryption_key.clone(),
        })
    }
}

pub async fn add_member(store: &Store, body: Value) -> Result<(StatusCode, Value), ApiError> {
    let member: Member = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("not a member: {e}")))?;
    store
        .add_member(member)
        .await
        .map_err(|e| ApiError::from_store(e, "members", ""))?;
    status(store).await.map(|s| (StatusCode::CREATED, s))
}

pub async fn remove_member(store: &Store, id: &str) -> Result<Value, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a member id")))?;
    store
        .remove_member(id)
        .await
        .map_err(|e| ApiError::from_store(e, "members", ""))?;
    status(store).await
}

pub async fn rotate_key(store: &Store) -> Result<Value, ApiError> {
    let rotation = store
        .rotate_key()
        .await
        .map_err(|e| ApiError::from_store(e, "secrets", ""))?;
    to_json(rotation)
}

pub fn check_secrets(store: &Store) -> Result<Value, ApiError> {
    to_json(store.check_encryption()?)
}

pub async fn status(store: &Store) -> Result<Value, ApiError> {
    let status = store
        .status()
        .await
        .map_err(|e| ApiError::from_store(e, "members", ""))?;
    to_json(status)
}

fn to_json(answer: impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(answer).map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ClusterPki;

    #[test]
    fn bootstrap_needs_the_token_secret() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &[]).unwrap();
        let access = ClusterAccess {
            token: pki.join_token().unwrap(),
            ca: pki.ca.clone(),
            encryption_key: "a2V5".into(),
        };
        let mut headers = HeaderMap::new();
        assert!(matches!(
            access.bootstrap(&headers),
            Err(ApiError::Unauthorized)
        ));
        headers.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(matches!(
            access.bootstrap(&headers),
            Err(ApiError::Unauthorized)
        ));
        let good = format!("Bearer {}", access.token.secret);
        headers.insert(header::AUTHORIZATION, good.parse().unwrap());
        let bootstrap = access.bootstrap(&headers).unwrap();
        assert_eq!(bootstrap.ca_key, pki.ca.key_pem);
        assert_eq!(bootstrap.encryption_key, access.encryption_key);
    }
}
