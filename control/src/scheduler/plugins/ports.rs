//! Host ports (`NodePorts`): two pods on one node cannot take the same host port, protocol
//! and address; `0.0.0.0` (or no `hostIP`) takes the port on every address.

use serde_json::Value;

use super::{Fit, Unfit};
use crate::obj;

const ANY_IP: &str = "0.0.0.0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i64,
}

impl HostPort {
    fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == ANY_IP || o.ip == ANY_IP)
    }
}

/// The host ports the pod's containers (and init containers) ask for.
pub fn host_ports(pod: &Value) -> Vec<HostPort> {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|section| obj::array(pod, &["spec", section]))
        .flat_map(|c| obj::array(c, &["ports"]))
        .filter_map(|p| {
            let port = obj::get_i64(p, &["hostPort"]).filter(|p| *p > 0)?;
            let or = |field: &str, default: &str| match obj::str_or_empty(p, &[field]) {
                "" => default.to_string(),
                v => v.to_string(),
            };
            Some(HostPort {
                ip: or("hostIP", ANY_IP),
                protocol: or("protocol", "TCP"),
                port,
            })
        })
        .collect()
}

/// `wanted` against the ports of the pods already on the node.
pub fn filter<'a>(wanted: &[HostPort], used: impl IntoIterator<Item = &'a HostPort>) -> Fit {
    // Most pods want no host port: then the node's pods need not be walked at all.
    if wanted.is_empty() {
        return Ok(());
    }
    let used: Vec<&HostPort> = used.into_iter().collect();
    if wanted.iter().any(|w| used.iter().any(|u| w.conflicts(u))) {
        return Err(Unfit::resolvable(
            "node(s) didn't have free ports for the requested pod ports",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ports: Value) -> Value {
        json!({"spec": {"containers": [{"ports": ports}]}})
    }

    #[test]
    fn host_ports_default_the_address_and_protocol() {
        let p = pod(
            json!([{"containerPort": 80}, {"containerPort": 80, "hostPort": 8080}, {"hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}]),
        );
        let got = host_ports(&p);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            HostPort {
                ip: ANY_IP.into(),
                protocol: "TCP".into(),
                port: 8080
            }
        );
        assert_eq!(
            got[1],
            HostPort {
                ip: "10.0.0.1".into(),
                protocol: "UDP".into(),
                port: 53
            }
        );
    }

    #[test]
    fn filter_table() {
        let used = host_ports(&pod(
            json!([{"hostPort": 80}, {"hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}]),
        ));
        let cases = [
            ("no host port", json!([{"containerPort": 80}]), true),
            ("same port", json!([{"hostPort": 80}]), false),
            (
                "same port, other protocol",
                json!([{"hostPort": 80, "protocol": "UDP"}]),
                true,
            ),
            (
                "same port, any address against one",
                json!([{"hostPort": 53, "protocol": "UDP"}]),
                false,
            ),
            (
                "same port, another address",
                json!([{"hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.2"}]),
                true,
            ),
            (
                "one address against any",
                json!([{"hostPort": 80, "hostIP": "10.0.0.2"}]),
                false,
            ),
            ("other port", json!([{"hostPort": 81}]), true),
        ];
        for (what, ports, fits) in cases {
            let got = filter(&host_ports(&pod(ports)), &used);
            assert_eq!(got.is_ok(), fits, "{what}");
            if let Err(u) = got {
                assert!(u.resolvable);
                assert_eq!(
                    u.reasons,
                    ["node(s) didn't have free ports for the requested pod ports"]
                );
            }
        }
    }
}
