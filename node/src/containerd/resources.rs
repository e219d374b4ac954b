//! A container's `resources` as the cgroup settings CRI takes, with kubelet's arithmetic:
//! the cpu limit is a CFS quota per 100 ms period, the cpu request becomes cpu shares
//! (1024 per core, at least 2), the memory limit is a byte limit. Pure.

use cri::v1::LinuxContainerResources;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The CFS period kubelet uses, in microseconds.
const CPU_PERIOD: i64 = 100_000;
/// Kubelet's floor for cpu shares (the kernel's minimum).
const MIN_SHARES: i64 = 2;
/// The smallest quota kubelet sets: 1 ms per period.
const MIN_QUOTA: i64 = 1_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("{field}: quantity {value:?} is not valid")]
    Quantity { field: String, value: String },
}

fn quantity(
    field: &str,
    map: Option<&std::collections::BTreeMap<String, Quantity>>,
    name: &str,
) -> Result<Option<f64>, ResourceError> {
    map.and_then(|m| m.get(name))
        .map(|q| {
            control::validation::parse_quantity(&q.0).map_err(|_| ResourceError::Quantity {
                field: format!("{field}.{name}"),
                value: q.0.clone(),
            })
        })
        .transpose()
}

/// `limits.memory` in bytes, if set.
pub fn memory_limit(
    resources: Option<&ResourceRequirements>,
) -> Result<Option<u64>, ResourceError> {
    let limits = resources.and_then(|r| r.limits.as_ref());
    Ok(quantity("limits", limits, "memory")?.map(|bytes| bytes.ceil() as u64))
}

/// The cgroup settings for `resources` (zero fields: no limit).
pub fn linux_resources(
    resources: Option<&ResourceRequirements>,
) -> Result<LinuxContainerResources, ResourceError> {
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let cpu_limit = quantity("limits", limits, "cpu")?;
    let memory_limit = memory_limit(resources)?;
    // A limit without a request requests the limit, as the API server defaults it.
    let cpu_request = quantity("requests", requests, "cpu")?.or(cpu_limit);
    let millis = |cores: f64| (cores * 1000.0).ceil() as i64;
    let mut out = LinuxContainerResources {
        cpu_shares: cpu_request.map_or(MIN_SHARES, |c| (millis(c) * 1024 / 1000).max(MIN_SHARES)),
        ..Default::default()
    };
    if let Some(cores) = cpu_limit {
        out.cpu_period = CPU_PERIOD;
        out.cpu_quota = (millis(cores) * CPU_PERIOD / 1000).max(MIN_QUOTA);
    }
    if let Some(bytes) = memory_limit {
        out.memory_limit_in_bytes = bytes.try_into().unwrap_or(i64::MAX);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resources(v: serde_json::Value) -> ResourceRequirements {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn limits_and_requests_become_quota_shares_and_bytes() {
        let r = linux_resources(Some(&resources(json!({
            "limits": {"cpu": "500m", "memory": "64Mi"},
            "requests": {"cpu": "250m"},
        }))))
        .unwrap();
        assert_eq!(
            (
                r.cpu_period,
                r.cpu_quota,
                r.cpu_shares,
                r.memory_limit_in_bytes
            ),
            (100_000, 50_000, 256, 64 << 20)
        );
    }

    #[test]
    fn a_cpu_limit_alone_is_also_the_request_and_nothing_is_unlimited() {
        let r = linux_resources(Some(&resources(json!({"limits": {"cpu": "2"}})))).unwrap();
        assert_eq!(
            (r.cpu_quota, r.cpu_shares, r.memory_limit_in_bytes),
            (200_000, 2048, 0)
        );
        let none = linux_resources(None).unwrap();
        assert_eq!((none.cpu_quota, none.cpu_shares), (0, 2));
        let tiny = linux_resources(Some(&resources(json!({"limits": {"cpu": "1m"}})))).unwrap();
        assert_eq!(tiny.cpu_quota, 1_000);
    }

    #[test]
    fn a_bad_quantity_names_its_field() {
        let err =
            linux_resources(Some(&resources(json!({"limits": {"memory": "lots"}})))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "limits.memory: quantity \"lots\" is not valid"
        );
    }
}
