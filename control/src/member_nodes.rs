//! Deleting the Node of a control-plane member removes the member, as `wkube cluster remove`
//! does (which deletes the Node too): an operator retiring a machine with `kubectl delete
//! node` shrinks the raft group with it.

use crate::api::objects::{name_of, ListOptions};
use crate::api::resources;
use crate::api::{Api, ApiError};
use crate::store::StoreError;

pub struct MemberNodes {
    api: Api,
}

impl MemberNodes {
    pub fn new(api: Api) -> Self {
        MemberNodes { api }
    }

    /// Runs until the store closes. Watches from now on: a Node deleted while no member led
    /// keeps its member until `wkube cluster remove`.
    pub async fn run(self) -> Result<(), ApiError> {
        let nodes = resources::find("", "v1", "nodes")
            .ok_or_else(|| ApiError::Internal("nodes unknown".into()))?;
        loop {
            let from = ListOptions {
                resource_version: Some(self.api.store().revision()),
                ..Default::default()
            };
            let mut watch = self.api.watch(nodes, None, from)?;
            loop {
                match watch.next().await {
                    Some(e) if e.kind == "DELETED" => self.node_deleted(name_of(&e.object)).await,
                    Some(e) if e.kind == "ERROR" => break,
                    Some(_) => {}
                    None => return Ok(()),
                }
            }
        }
    }

    async fn node_deleted(&self, node: &str) {
        let store = self.api.store();
        let member = match store.status().await {
            Ok(status) => status
                .members
                .into_iter()
                .find(|m| m.member.node_name == node),
            Err(e) => return tracing::warn!(node, error = %e, "cannot read the members"),
        };
        let Some(member) = member else { return };
        match store.remove_member(member.member.id).await {
            Ok(()) => tracing::info!(
                node,
                member = member.member.id,
                "node deleted: member removed"
            ),
            // Removed already (by `wkube cluster remove`, which deletes the Node after).
            Err(StoreError::Membership(_)) => {}
            Err(e) => {
                tracing::warn!(node, error = %e, "node deleted, but its member could not be removed")
            }
        }
    }
}
