//! Who the control-plane members are and where to reach them. The raft configuration knows
//! members only by id; their addresses travel in the context of the configuration change that
//! adds them and are kept in the state machine, so every member (and every snapshot) has them.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: u64,
    /// Where its QUIC listener for other members is.
    pub peer_addr: SocketAddr,
    /// Where it serves the Kubernetes API.
    pub api_url: String,
    /// The Node its agent registers, if it runs one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
}

/// A new member id: random, so members that join at the same time cannot collide.
pub fn new_member_id() -> u64 {
    loop {
        let id = uuid::Uuid::new_v4().as_u64_pair().0 >> 1; // positive as i64 too
        if id != 0 {
            return id;
        }
    }
}
