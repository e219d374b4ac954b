//! The node's pod network for OCI pods: one Linux bridge with the pods' interfaces on it,
//! addresses from a /24 of the node's own (CNI `bridge` + `host-local` plugins, Debian's
//! `containernetworking-plugins`). Containers of one pod share its network namespace, so
//! they reach each other on `localhost`.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The pod network of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The Linux bridge (at most 15 bytes: IFNAMSIZ).
    pub bridge: String,
    /// The pods' subnet, a /24 inside 10.244.0.0/16 (Kubernetes' usual pod range).
    pub subnet: String,
}

impl PodNetwork {
    /// A network for the node whose containerd keeps its state in `dir`. The bridge and the
    /// subnet are derived from the directory, so several nodes on one machine (as in the
    /// tests) get their own, and a restarted node gets the same ones again.
    pub fn for_dir(dir: &Path) -> PodNetwork {
        let hash = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        PodNetwork {
            bridge: format!(
                "wk{:02x}{:02x}{:02x}{:02x}",
                hash[0], hash[1], hash[2], hash[3]
            ),
            subnet: format!("10.244.{}.0/24", hash[4]),
        }
    }

    /// The CNI network configuration list; `ipam_dir` keeps the address leases.
    pub fn conflist(&self, ipam_dir: &Path) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "wkube",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    // The bridge gets the subnet's first address, so the node reaches
                    // its pods directly.
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": ipam_dir,
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_directory_gets_its_own_bridge_and_the_same_one_again() {
        let a = PodNetwork::for_dir(Path::new("/var/lib/wkube/a/containerd"));
        let b = PodNetwork::for_dir(Path::new("/var/lib/wkube/b/containerd"));
        assert_ne!(a.bridge, b.bridge);
        assert_eq!(
            a,
            PodNetwork::for_dir(Path::new("/var/lib/wkube/a/containerd"))
        );
        assert!(a.bridge.len() <= 15);
        assert!(a.subnet.starts_with("10.244.") && a.subnet.ends_with(".0/24"));
    }

    #[test]
    fn the_conflist_names_the_bridge_subnet_and_lease_directory() {
        let net = PodNetwork {
            bridge: "wk0".into(),
            subnet: "10.244.7.0/24".into(),
        };
        let conf: serde_json::Value =
            serde_json::from_str(&net.conflist(Path::new("/d/ipam"))).unwrap();
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "wk0");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.7.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/d/ipam");
    }
}
